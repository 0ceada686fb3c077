//! The libtest-mimic runner and the JSON report.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use libtest_mimic::{Arguments, Trial};
use serde::{Deserialize, Serialize};

use super::{Case, Harness, cases, child};

/// How one case went for one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The backend did what the case asks.
    Pass,
    /// It did not; the row's `detail` says how.
    Fail,
    /// The backend's capabilities exclude the case; `detail` says which.
    #[serde(rename = "n/a")]
    NotApplicable,
}

/// One cell of the backend × case table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// The harness's name.
    pub backend: String,
    /// The case's name.
    pub case: String,
    /// Pass, fail or n/a.
    pub outcome: Outcome,
    /// Why it failed, or why it is n/a; empty on a pass.
    pub detail: String,
    /// How long the case ran, in milliseconds.
    pub millis: u64,
}

/// What the runner writes to `MQ_CONFORMANCE_REPORT`: every row that the trial filter
/// selected, in backend then case order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The cases in the suite's order, with their summaries.
    pub cases: Vec<(String, String)>,
    /// One row per (backend, case) that ran or was n/a.
    pub rows: Vec<Row>,
}

/// Runs `case` against `harness`: n/a when its capabilities exclude it, otherwise the
/// check's verdict. Third-party test code can call this per case.
pub fn run_case(case: &Case, harness: &dyn Harness) -> Row {
    let started = Instant::now();
    let (outcome, detail) = match case.applies(&harness.capabilities()) {
        Err(reason) => (Outcome::NotApplicable, reason.to_owned()),
        Ok(()) => match case.check(harness) {
            Ok(()) => (Outcome::Pass, String::new()),
            Err(failure) => (Outcome::Fail, failure.0),
        },
    };
    Row {
        backend: harness.name().to_owned(),
        case: case.name.to_owned(),
        outcome,
        detail,
        millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// The entry point of a conformance test binary (`harness = false`): see the module docs.
///
/// Call it first thing in `main`: when the process was started as the crash case's child,
/// it plays the child and exits.
pub fn main(harnesses: Vec<Arc<dyn Harness>>) -> ExitCode {
    if let Some(code) = child::run_if_child(&harnesses) {
        return code;
    }
    let args = Arguments::from_args();
    let rows = Arc::new(Mutex::new(Vec::new()));
    let mut trials = Vec::new();
    for harness in &harnesses {
        let caps = harness.capabilities();
        for case in cases() {
            let name = format!("{}::{}", harness.name(), case.name);
            let not_applicable = case.applies(&caps).err();
            let (harness, rows) = (Arc::clone(harness), Arc::clone(&rows));
            if not_applicable.is_some() && selected(&args, &name) {
                // Ignored trials do not run, so their row is recorded here.
                lock(&rows).push(run_case(case, harness.as_ref()));
            }
            let trial = Trial::test(name, move || {
                let row = run_case(case, harness.as_ref());
                let result = match row.outcome {
                    Outcome::Fail => Err(row.detail.clone().into()),
                    Outcome::Pass | Outcome::NotApplicable => Ok(()),
                };
                if row.outcome != Outcome::NotApplicable {
                    lock(&rows).push(row);
                }
                result
            })
            .with_ignored_flag(not_applicable.is_some());
            trials.push(trial);
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    if let Ok(path) = std::env::var("MQ_CONFORMANCE_REPORT") {
        let mut rows = lock(&rows).clone();
        let order = |row: &Row| {
            let b = harnesses.iter().position(|h| h.name() == row.backend);
            let c = cases().iter().position(|c| c.name == row.case);
            (b, c)
        };
        rows.sort_by_key(order);
        let report = Report {
            cases: cases()
                .iter()
                .map(|c| (c.name.to_owned(), c.summary.to_owned()))
                .collect(),
            rows,
        };
        let written = serde_json::to_vec_pretty(&report)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(&path, json));
        if let Err(e) = written {
            eprintln!("conformance: cannot write the report to {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if conclusion.has_failed() {
        ExitCode::from(101)
    } else {
        ExitCode::SUCCESS
    }
}

/// Whether libtest-mimic's filter selects `name` (its own rule: substring, or `--exact`).
fn selected(args: &Arguments, name: &str) -> bool {
    let matches = |filter: &str| {
        if args.exact {
            name == filter
        } else {
            name.contains(filter)
        }
    };
    args.filter.as_deref().is_none_or(matches) && !args.skip.iter().any(|s| matches(s))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
