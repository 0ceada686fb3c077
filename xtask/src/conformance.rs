//! `cargo xtask conformance`: run the suite's test binary with a report file, print the table.

use std::fmt::Write as _;
use std::process::{ExitCode, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{cargo, workspace_root};

/// Options of `cargo xtask conformance`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Run only this backend (e.g. `mem`).
    #[arg(long, value_name = "NAME")]
    backend: Option<String>,
    /// Print the JSON report instead of the table.
    #[arg(long)]
    json: bool,
}

/// One cell of the table, as the runner's JSON report gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    backend: String,
    case: String,
    outcome: String,
    detail: String,
}

pub(crate) fn run(args: &Args) -> Result<ExitCode> {
    let report_path = workspace_root()
        .join("target")
        .join("conformance-report.json");
    let _ = std::fs::remove_file(&report_path);
    let mut command = cargo();
    command
        .args([
            "test",
            "--package",
            "mq-facade",
            "--all-features",
            "--test",
            "conformance",
        ])
        .env("MQ_CONFORMANCE_REPORT", &report_path)
        .stdout(Stdio::piped());
    if let Some(backend) = &args.backend {
        command.args(["--", &format!("{backend}::")]);
    }
    eprintln!(
        "xtask: building and running the conformance suite (cargo test -p mq-facade --test conformance)"
    );
    let output = command.output().context("cannot run cargo")?;
    let runner_ok = output.status.success();
    let json = std::fs::read_to_string(&report_path).with_context(|| {
        format!(
            "the conformance runner wrote no report to {} (exit status {}); its output:\n{}",
            report_path.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout)
        )
    })?;
    let report: Value = serde_json::from_str(&json)
        .with_context(|| format!("cannot parse the report {}", report_path.display()))?;
    let (cases, rows) = parse_report(&report)?;
    if rows.is_empty() {
        bail!(
            "no backend named `{}` (the runner selected no trial)",
            args.backend.as_deref().unwrap_or_default()
        );
    }
    if args.json {
        println!("{json}");
    } else {
        print!("{}", render_table(&cases, &rows));
    }
    let failed = rows.iter().any(|r| r.outcome == "fail");
    if !runner_ok && !failed {
        // A failure the report does not show (a panic outside a case, a crash).
        eprintln!("{}", String::from_utf8_lossy(&output.stdout));
        bail!("the conformance runner failed ({})", output.status);
    }
    Ok(if failed || !runner_ok {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The cases (name, summary) in suite order, and the rows.
type Parsed = (Vec<(String, String)>, Vec<Row>);

fn parse_report(report: &Value) -> Result<Parsed> {
    let text = |v: &Value, field: &str| -> Result<String> {
        v.get(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("report row without a string `{field}`: {v}"))
    };
    let cases = report
        .get("cases")
        .and_then(Value::as_array)
        .context("report without `cases`")?
        .iter()
        .map(|pair| {
            let name = pair.get(0).and_then(Value::as_str).unwrap_or_default();
            let summary = pair.get(1).and_then(Value::as_str).unwrap_or_default();
            (name.to_owned(), summary.to_owned())
        })
        .collect();
    let rows = report
        .get("rows")
        .and_then(Value::as_array)
        .context("report without `rows`")?
        .iter()
        .map(|row| {
            Ok(Row {
                backend: text(row, "backend")?,
                case: text(row, "case")?,
                outcome: text(row, "outcome")?,
                detail: text(row, "detail")?,
            })
        })
        .collect::<Result<_>>()?;
    Ok((cases, rows))
}

/// Cases down, backends across; then the details of every failure and a count.
fn render_table(cases: &[(String, String)], rows: &[Row]) -> String {
    let mut backends: Vec<&str> = Vec::new();
    for row in rows {
        if !backends.contains(&row.backend.as_str()) {
            backends.push(&row.backend);
        }
    }
    let case_width = cases.iter().map(|(c, _)| c.len()).max().unwrap_or(4).max(4);
    let widths: Vec<usize> = backends.iter().map(|b| b.len().max(4)).collect();
    let mut out = String::new();
    let _ = write!(out, "{:case_width$}", "case");
    for (b, w) in backends.iter().zip(&widths) {
        let _ = write!(out, "  {b:^w$}");
    }
    out.push('\n');
    let _ = write!(out, "{}", "-".repeat(case_width));
    for w in &widths {
        let _ = write!(out, "  {}", "-".repeat(*w));
    }
    out.push('\n');
    let (mut passed, mut failed, mut na) = (0, 0, 0);
    for (case, _) in cases {
        if !rows.iter().any(|r| &r.case == case) {
            continue;
        }
        let _ = write!(out, "{case:case_width$}");
        for (b, w) in backends.iter().zip(&widths) {
            let cell = match rows.iter().find(|r| r.backend == *b && &r.case == case) {
                Some(r) if r.outcome == "pass" => {
                    passed += 1;
                    "pass"
                }
                Some(r) if r.outcome == "fail" => {
                    failed += 1;
                    "FAIL"
                }
                Some(_) => {
                    na += 1;
                    "n/a"
                }
                None => "-",
            };
            let _ = write!(out, "  {cell:^w$}");
        }
        out.push('\n');
    }
    let failures: Vec<&Row> = rows.iter().filter(|r| r.outcome == "fail").collect();
    if !failures.is_empty() {
        out.push_str("\nfailures:\n");
        for r in failures {
            let _ = writeln!(out, "  {}::{}: {}", r.backend, r.case, r.detail);
        }
    }
    let _ = writeln!(
        out,
        "\nconformance: {passed} passed, {failed} failed, {na} n/a"
    );
    // Centred cells pad the last column; lines end at their last character.
    out.lines().map(|l| format!("{}\n", l.trim_end())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Value {
        serde_json::json!({
            "cases": [["fifo_order", "in order"], ["ttl_expiry", "expires"], ["unused", "not run"]],
            "rows": [
                {"backend": "mem", "case": "fifo_order", "outcome": "pass", "detail": "", "millis": 3},
                {"backend": "mem", "case": "ttl_expiry", "outcome": "n/a", "detail": "no per-message ttl", "millis": 0},
                {"backend": "disk", "case": "fifo_order", "outcome": "fail", "detail": "message 1: expected a, got b", "millis": 9},
                {"backend": "disk", "case": "ttl_expiry", "outcome": "pass", "detail": "", "millis": 400},
            ]
        })
    }

    #[test]
    fn the_table_has_a_column_per_backend_and_lists_failures() {
        let (cases, rows) = parse_report(&report()).unwrap();
        let table = render_table(&cases, &rows);
        let expected = "\
case        mem   disk
----------  ----  ----
fifo_order  pass  FAIL
ttl_expiry  n/a   pass

failures:
  disk::fifo_order: message 1: expected a, got b

conformance: 2 passed, 1 failed, 1 n/a
";
        assert_eq!(table, expected);
    }

    #[test]
    fn a_malformed_report_is_an_error_naming_the_field() {
        let bad = serde_json::json!({"cases": [], "rows": [{"backend": "mem", "case": "x"}]});
        let err = parse_report(&bad).unwrap_err();
        assert!(
            err.to_string().contains("without a string `outcome`"),
            "{err}"
        );
    }
}
