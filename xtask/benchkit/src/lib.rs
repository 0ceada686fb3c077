//! The report every benchmark of the workspace writes, and `cargo xtask bench` reads.
//!
//! A bench binary measures its subject and, in the same run, the baselines it is judged
//! against: the machine's floor for the same work (a raw syscall, a null server, a
//! cache-line hand-off) and, where one can run here, the original implementation or a peer.
//! It then writes one [`Report`] as JSON to the path named by its `<NAME>_BENCH_REPORT`
//! variable ([`Report::write_if_requested`]). Nothing here times anything or asserts a
//! figure: it only carries numbers from the bench to the renderer.
//!
//! ```
//! use mq_benchkit::{Better, Report, Row, Scenario};
//!
//! let mut report = Report::new("demo", "demo: a queue that does nothing", true);
//! report.command = "DEMO_BENCH_QUICK=1 cargo bench -p demo".into();
//! let mut scenario = Scenario::new("send_64B", "Send, 64 B payloads");
//! scenario.rows.push(
//!     Row::new("send, 1 producer", 9_000.0, "msg/s", Better::Higher)
//!         .floor("pwrite + fdatasync of 64 B", 10_000.0)
//!         .original("the original", 4_500.0)
//!         .target("≥ 0.9× floor", true)
//!         .headline(),
//! );
//! report.scenarios.push(scenario);
//! let row = &report.scenarios[0].rows[0];
//! assert_eq!(row.ratio, Some(0.9));
//! assert_eq!(row.original_ratio, Some(2.0));
//! let json = report.to_json();
//! assert!(json.contains("\"backend\": \"demo\""));
//! ```

use serde::{Deserialize, Serialize};

/// Which direction of a figure is better: rates are `Higher`, latencies and sizes `Lower`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// A rate or a throughput.
    Higher,
    /// A latency, a duration or a size.
    Lower,
}

/// One bench binary's results.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// The backend's id, as `cargo xtask bench --only` names it (`dmq`, `floors`, …).
    pub backend: String,
    /// A one-line title.
    pub title: String,
    /// Whether this was a short smoke run (`<NAME>_BENCH_QUICK=1`).
    pub quick: bool,
    /// The command that produced this report.
    pub command: String,
    /// Free-form settings worth printing (sizes, sample counts, file system), in order.
    pub settings: Vec<(String, String)>,
    /// The scenarios, in the order they ran.
    pub scenarios: Vec<Scenario>,
}

/// One group of measurements that share a set-up.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Scenario {
    /// A short identifier (`durable_64B`).
    pub name: String,
    /// A human title.
    pub title: String,
    /// The figures.
    pub rows: Vec<Row>,
    /// How it was measured, briefly.
    pub notes: Vec<String>,
    /// Baselines or cases that could not run here, each with the reason.
    pub skipped: Vec<String>,
}

/// One figure, with its floor, its original and its target where there are any.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// What was measured (`send + fdatasync, 1 producer`).
    pub measure: String,
    /// The figure.
    pub value: f64,
    /// Its unit: `msg/s`, `ns`, `µs`, `ms`, `s`, `B/s`, `B`, …
    pub unit: String,
    /// Which direction is better.
    pub better: Better,
    /// The floor it is compared with, measured in the same run, in the same unit.
    pub baseline: Option<String>,
    /// The floor's figure.
    pub baseline_value: Option<f64>,
    /// `value / baseline_value`.
    pub ratio: Option<f64>,
    /// The original or peer it is compared with, measured in the same run.
    pub original: Option<String>,
    /// The original's figure, in the same unit.
    pub original_value: Option<f64>,
    /// `value / original_value`.
    pub original_ratio: Option<f64>,
    /// The spec's target, in words.
    pub target: Option<String>,
    /// Whether the target was met.
    pub pass: Option<bool>,
    /// Whether this row belongs in the cross-backend summary.
    pub headline: bool,
}

impl Report {
    /// An empty report.
    pub fn new(backend: &str, title: &str, quick: bool) -> Self {
        Self {
            backend: backend.into(),
            title: title.into(),
            quick,
            command: String::new(),
            settings: Vec::new(),
            scenarios: Vec::new(),
        }
    }

    /// Adds a setting line.
    pub fn setting(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        self.settings.push((key.into(), value.to_string()));
        self
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report is plain data") + "\n"
    }

    /// Parses a report written by [`Report::to_json`].
    pub fn from_json(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }

    /// Writes the report to the path in the environment variable `var`, if it is set.
    pub fn write_if_requested(&self, var: &str) -> std::io::Result<()> {
        match std::env::var_os(var) {
            Some(path) => std::fs::write(&path, self.to_json()).map_err(|error| {
                std::io::Error::new(
                    error.kind(),
                    format!(
                        "cannot write the bench report to {} ({var}): {error}",
                        path.display()
                    ),
                )
            }),
            None => Ok(()),
        }
    }
}

impl Scenario {
    /// An empty scenario.
    pub fn new(name: &str, title: &str) -> Self {
        Self {
            name: name.into(),
            title: title.into(),
            rows: Vec::new(),
            notes: Vec::new(),
            skipped: Vec::new(),
        }
    }
}

impl Row {
    /// A figure with no baseline yet.
    pub fn new(measure: &str, value: f64, unit: &str, better: Better) -> Self {
        Self {
            measure: measure.into(),
            value,
            unit: unit.into(),
            better,
            baseline: None,
            baseline_value: None,
            ratio: None,
            original: None,
            original_value: None,
            original_ratio: None,
            target: None,
            pass: None,
            headline: false,
        }
    }

    /// Compares with the floor `name`, whose figure is `value` in the same unit.
    pub fn floor(mut self, name: &str, value: f64) -> Self {
        self.baseline = Some(name.into());
        self.baseline_value = Some(value);
        self.ratio = ratio(self.value, value);
        self
    }

    /// Compares with the original or peer `name`, whose figure is `value` in the same unit.
    pub fn original(mut self, name: &str, value: f64) -> Self {
        self.original = Some(name.into());
        self.original_value = Some(value);
        self.original_ratio = ratio(self.value, value);
        self
    }

    /// The spec's target and whether it was met.
    pub fn target(mut self, target: &str, pass: bool) -> Self {
        self.target = Some(target.into());
        self.pass = Some(pass);
        self
    }

    /// Puts the row in the cross-backend summary.
    pub fn headline(mut self) -> Self {
        self.headline = true;
        self
    }
}

/// One line per row, note and skipped baseline, under a `name — title` line: what a bench
/// prints on its console.
impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} — {}", self.name, self.title)?;
        for row in &self.rows {
            writeln!(f, "  {row}")?;
        }
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        for skipped in &self.skipped {
            writeln!(f, "  skipped: {skipped}")?;
        }
        Ok(())
    }
}

/// `measure: value unit; floor …: ratio×; original …: ratio×; target …: met`.
impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {:.1} {}", self.measure, self.value, self.unit)?;
        if let (Some(name), Some(value), Some(ratio)) =
            (&self.baseline, self.baseline_value, self.ratio)
        {
            write!(f, "; floor {value:.1} ({name}): {ratio:.2}×")?;
        }
        if let (Some(name), Some(value), Some(ratio)) =
            (&self.original, self.original_value, self.original_ratio)
        {
            write!(f, "; original {value:.1} ({name}): {ratio:.2}×")?;
        }
        if let (Some(target), Some(pass)) = (&self.target, self.pass) {
            write!(
                f,
                "; target {target}: {}",
                if pass { "met" } else { "NOT met" }
            )?;
        }
        Ok(())
    }
}

fn ratio(value: f64, baseline: f64) -> Option<f64> {
    (baseline.is_finite() && baseline != 0.0 && value.is_finite()).then(|| value / baseline)
}

/// Whether the quick mode variable `var` is set to something other than `0` or empty.
pub fn quick(var: &str) -> bool {
    std::env::var(var).is_ok_and(|value| !value.is_empty() && value != "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let mut report = Report::new("x", "x", false);
        report.setting("ring", "64 MiB");
        let mut scenario = Scenario::new("s", "S");
        scenario
            .rows
            .push(Row::new("m", 2.0, "µs", Better::Lower).floor("f", 4.0));
        scenario.skipped.push("peer: not installed".into());
        report.scenarios.push(scenario);
        let back = Report::from_json(&report.to_json()).unwrap();
        assert_eq!(
            back.settings,
            vec![("ring".to_string(), "64 MiB".to_string())]
        );
        assert_eq!(back.scenarios[0].rows[0].ratio, Some(0.5));
        assert_eq!(back.scenarios[0].rows[0].better, Better::Lower);
        assert_eq!(back.scenarios[0].skipped.len(), 1);
    }

    #[test]
    fn a_scenario_prints_a_line_per_row() {
        let mut scenario = Scenario::new("s", "S");
        scenario.rows.push(
            Row::new("m", 3.0, "msg/s", Better::Higher)
                .floor("f", 2.0)
                .target("t", true),
        );
        scenario.skipped.push("peer: not installed".into());
        assert_eq!(
            scenario.to_string(),
            "s — S\n  m: 3.0 msg/s; floor 2.0 (f): 1.50×; target t: met\n  skipped: peer: not installed\n"
        );
    }

    #[test]
    fn a_zero_baseline_has_no_ratio() {
        let row = Row::new("m", 1.0, "msg/s", Better::Higher).floor("f", 0.0);
        assert_eq!(row.ratio, None);
    }
}
