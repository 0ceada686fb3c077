//! The SVG charts of the report: horizontal bars on a log axis, drawn with `plotters`' SVG
//! backend and its built-in text estimate (no system font is read: the SVG names a generic
//! `sans-serif` family and the viewer draws the text).

use mq_benchkit::{Better, Report};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::render::{byte_rate_unit, format_value, time_unit};

/// Headline figures as multiples of their floor's cost.
pub(crate) const RATIO: &str = "ratio-to-floor.svg";
/// Every latency, in µs.
pub(crate) const LATENCY: &str = "latency.svg";
/// Every count per second (messages, operations, pairs).
pub(crate) const RATE: &str = "throughput.svg";
/// Every byte rate, in MB/s.
pub(crate) const BANDWIDTH: &str = "bandwidth.svg";
/// Every chart this module may write.
pub(crate) const NAMES: [&str; 4] = [RATIO, LATENCY, RATE, BANDWIDTH];

const BACKEND: RGBColor = RGBColor(0x2b, 0x6c, 0xb0);
const FLOOR: RGBColor = RGBColor(0xa0, 0xa0, 0xa0);
const LABEL_CHARS: usize = 64;

/// One bar: its label, its value and whether it is a floor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bar {
    pub(crate) label: String,
    pub(crate) value: f64,
    pub(crate) floor: bool,
    /// The value as printed at the end of the bar.
    pub(crate) text: String,
}

/// Every chart there is data for, as `(file name, SVG)`.
pub(crate) fn all(reports: &[&Report]) -> Vec<(String, String)> {
    let mut charts = Vec::new();
    let mut add = |name: &str, title: &str, axis: &str, bars: Vec<Bar>| {
        if let Some(svg) = bar_chart(title, axis, &bars) {
            charts.push((name.to_owned(), svg));
        }
    };
    add(
        RATIO,
        "Headline figures: multiples of the floor's cost",
        "× the floor's cost (log scale; 1 = the floor; lower is better)",
        ratio_bars(reports),
    );
    add(
        LATENCY,
        "Latency",
        "µs (log scale; lower is better)",
        unit_bars(reports, |unit| time_unit(unit).map(|ns| ns / 1e3), "µs"),
    );
    add(
        RATE,
        "Throughput: operations per second",
        "per second (log scale; higher is better)",
        unit_bars(
            reports,
            |unit| (unit.ends_with("/s") && byte_rate_unit(unit).is_none()).then_some(1.0),
            "",
        ),
    );
    add(
        BANDWIDTH,
        "Throughput: bytes per second",
        "MB/s (log scale; higher is better)",
        unit_bars(
            reports,
            |unit| byte_rate_unit(unit).map(|b| b / 1e6),
            "MB/s",
        ),
    );
    charts
}

/// The headline rows that have a floor, as multiples of the floor's cost: floor ÷ figure for
/// rates, figure ÷ floor for latencies (so lower is better for all of them).
pub(crate) fn ratio_bars(reports: &[&Report]) -> Vec<Bar> {
    let mut bars = Vec::new();
    for report in reports.iter().filter(|r| r.backend != "floors") {
        for row in report.scenarios.iter().flat_map(|s| &s.rows) {
            let Some(ratio) = row.ratio.filter(|r| row.headline && *r > 0.0) else {
                continue;
            };
            let cost = match row.better {
                Better::Higher => 1.0 / ratio,
                Better::Lower => ratio,
            };
            bars.push(Bar {
                label: format!("{}: {}", report.backend, row.measure),
                value: cost,
                floor: false,
                text: super::render::format_ratio(Some(cost)),
            });
        }
    }
    bars
}

/// Every row whose unit `scale` accepts, converted by the factor it returns; the unit is
/// added to the label when `unit` is empty (counts of different things per second).
fn unit_bars(reports: &[&Report], scale: impl Fn(&str) -> Option<f64>, unit: &str) -> Vec<Bar> {
    let mut bars = Vec::new();
    for report in reports {
        for row in report.scenarios.iter().flat_map(|s| &s.rows) {
            let Some(factor) = scale(&row.unit) else {
                continue;
            };
            let value = row.value * factor;
            if !(value.is_finite() && value > 0.0) {
                continue;
            }
            let label = if unit.is_empty() {
                format!("{}: {} ({})", report.backend, row.measure, row.unit)
            } else {
                format!("{}: {}", report.backend, row.measure)
            };
            bars.push(Bar {
                label,
                value,
                floor: report.backend == "floors",
                text: format_value(row.value, &row.unit),
            });
        }
    }
    bars
}

/// A horizontal bar chart on a log axis, first bar at the top; `None` when there is nothing
/// to draw.
pub(crate) fn bar_chart(title: &str, axis: &str, bars: &[Bar]) -> Option<String> {
    let bars: Vec<&Bar> = bars
        .iter()
        .filter(|bar| bar.value.is_finite() && bar.value > 0.0)
        .collect();
    if bars.is_empty() {
        return None;
    }
    let (min, max) = bars.iter().fold((f64::MAX, f64::MIN), |(lo, hi), bar| {
        (lo.min(bar.value), hi.max(bar.value))
    });
    // Whole decades, with room on the right for the value printed after each bar.
    let mut lo = 10f64.powf(min.log10().floor());
    if lo >= min {
        lo /= 10.0;
    }
    let hi = 10f64.powf((max * 8.0).log10().ceil());
    let labels: Vec<String> = bars.iter().map(|bar| shorten(&bar.label)).collect();
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let n = bars.len() as i32;
    let width = 1000u32;
    let height = 90 + 24 * bars.len() as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .margin_right(36)
            .x_label_area_size(40)
            .y_label_area_size((longest as u32 * 6 + 16).min(520))
            .build_cartesian_2d((lo..hi).log_scale(), (0..n - 1).into_segmented())
            .ok()?;
        // A discrete i32 range includes its end: `0..n - 1` is n segments.
        let label_of = |value: &SegmentValue<i32>| match value {
            // Segment 0 is at the bottom: the first bar goes in the top segment.
            SegmentValue::CenterOf(i) => labels
                .get((n - 1 - i) as usize)
                .cloned()
                .unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(bars.len())
            .y_label_formatter(&label_of)
            .x_label_formatter(&|x: &f64| axis_number(*x))
            .x_desc(axis)
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 13))
            .draw()
            .ok()?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, bar)| {
                let segment = n - 1 - i as i32;
                let color = if bar.floor { FLOOR } else { BACKEND };
                let mut rectangle = Rectangle::new(
                    [
                        (lo, SegmentValue::Exact(segment)),
                        (bar.value, SegmentValue::Exact(segment + 1)),
                    ],
                    color.filled(),
                );
                rectangle.set_margin(4, 4, 0, 0);
                rectangle
            }))
            .ok()?;
        let value_style =
            TextStyle::from(("sans-serif", 11).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        chart
            .draw_series(bars.iter().enumerate().map(|(i, bar)| {
                // Just past the bar's end (SVG drops leading spaces).
                Text::new(
                    bar.text.clone(),
                    (bar.value * 1.06, SegmentValue::CenterOf(n - 1 - i as i32)),
                    value_style.clone(),
                )
            }))
            .ok()?;
        root.present().ok()?;
    }
    Some(svg)
}

/// A label cut to fit the label area.
fn shorten(label: &str) -> String {
    if label.chars().count() <= LABEL_CHARS {
        label.to_owned()
    } else {
        let cut: String = label.chars().take(LABEL_CHARS - 1).collect();
        format!("{cut}…")
    }
}

/// An axis tick: `0.01`, `1`, `100`, `10k`, `1M`.
fn axis_number(x: f64) -> String {
    if x >= 1e6 {
        format!("{}M", trim(x / 1e6))
    } else if x >= 1e3 {
        format!("{}k", trim(x / 1e3))
    } else {
        trim(x)
    }
}

fn trim(x: f64) -> String {
    let text = format!("{x:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mq_benchkit::{Row, Scenario};

    fn report(backend: &str, rows: Vec<Row>) -> Report {
        let mut report = Report::new(backend, backend, true);
        let mut scenario = Scenario::new("s", "S");
        scenario.rows = rows;
        report.scenarios.push(scenario);
        report
    }

    #[test]
    fn headline_ratios_become_costs_relative_to_the_floor() {
        let rate = Row::new("send", 500.0, "msg/s", Better::Higher)
            .floor("fdatasync", 1000.0)
            .headline();
        let latency = Row::new("p50", 300.0, "ns", Better::Lower)
            .floor("hand-off", 100.0)
            .headline();
        let not_headline = Row::new("p99", 900.0, "ns", Better::Lower).floor("hand-off", 100.0);
        let no_floor = Row::new("memory", 9.0, "B", Better::Lower).headline();
        let q = report("q", vec![rate, latency, not_headline, no_floor]);
        let bars = ratio_bars(&[&q]);
        let costs: Vec<(&str, f64)> = bars.iter().map(|b| (b.label.as_str(), b.value)).collect();
        assert_eq!(costs, [("q: send", 2.0), ("q: p50", 3.0)]);
    }

    #[test]
    fn unit_charts_take_their_rows_converted() {
        let floors = report(
            "floors",
            vec![
                Row::new("hand-off", 80.0, "ns", Better::Lower),
                Row::new("fdatasync", 1200.0, "ops/s", Better::Higher),
                Row::new("write", 2.0, "GB/s", Better::Higher),
            ],
        );
        let q = report("q", vec![Row::new("p50", 2.5, "ms", Better::Lower)]);
        let latency = unit_bars(&[&floors, &q], |u| time_unit(u).map(|ns| ns / 1e3), "µs");
        assert_eq!(latency.len(), 2);
        assert!(latency[0].floor && !latency[1].floor);
        assert_eq!(latency[0].value, 0.08);
        assert_eq!(latency[1].value, 2500.0);
        assert_eq!(latency[1].text, "2.50 ms");
        let all = all(&[&floors, &q]);
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [LATENCY, RATE, BANDWIDTH]);
    }

    #[test]
    fn a_chart_is_an_svg_with_its_text() {
        let bars = vec![
            Bar {
                label: "floors: pwrite + fdatasync of 64 B".into(),
                value: 1200.0,
                floor: true,
                text: "1.20 k ops/s".into(),
            },
            Bar {
                label: "duraqueue: durable send <64 B> & more".into(),
                value: 950.0,
                floor: false,
                text: "950 ops/s".into(),
            },
        ];
        let svg = bar_chart("Throughput", "per second (log scale)", &bars).expect("a chart");
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("<text"), "{svg}");
        assert!(svg.contains("sans-serif"), "{svg}");
        assert!(svg.contains("floors: pwrite + fdatasync of 64 B"), "{svg}");
        // Markup in a label is escaped, so the SVG stays well-formed.
        assert!(
            svg.contains("durable send &lt;64 B&gt; &amp; more"),
            "{svg}"
        );
        assert!(svg.contains("Throughput"), "{svg}");
        assert!(svg.contains("1.20 k ops/s"), "{svg}");
        assert!(svg.contains("per second (log scale)"), "{svg}");
        assert!(svg.contains("#2B6CB0") || svg.contains("#2b6cb0"), "{svg}");
        assert!(svg.contains("#A0A0A0") || svg.contains("#a0a0a0"), "{svg}");
    }

    #[test]
    fn nothing_to_draw_is_no_chart() {
        assert_eq!(bar_chart("t", "a", &[]), None);
        let zero = Bar {
            label: "x".into(),
            value: 0.0,
            floor: false,
            text: "0".into(),
        };
        assert_eq!(bar_chart("t", "a", &[zero]), None);
    }

    #[test]
    fn long_labels_are_cut_and_axis_numbers_are_short() {
        let long = "x".repeat(100);
        assert_eq!(shorten(&long).chars().count(), LABEL_CHARS);
        assert!(shorten(&long).ends_with('…'));
        assert_eq!(axis_number(0.01), "0.01");
        assert_eq!(axis_number(100.0), "100");
        assert_eq!(axis_number(10_000.0), "10k");
        assert_eq!(axis_number(2_000_000.0), "2M");
    }
}
