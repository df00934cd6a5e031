//! The HTML report of a real run against the generator's own sink: both
//! plots are there with one curve per measured step and one point per
//! second, and headless Chromium renders the page (the screenshot is left
//! in target/test-output/loadgen-report.png for people to look at).

mod common;

use common::*;
use serde_json::Value;

/// (series, number of points) of every series in the plot `plot`.
fn series(page: &str, plot: &str) -> Vec<(String, u64)> {
    let start = page.find(&format!("data-plot=\"{plot}\"")).unwrap_or_else(|| panic!("no {plot} plot"));
    let end = page[start..].find("</svg>").unwrap_or_else(|| panic!("{plot} plot not closed"));
    page[start..start + end]
        .split("data-series=\"")
        .skip(1)
        .map(|rest| {
            let (name, rest) = rest.split_once('"').unwrap();
            let n = rest.split_once("data-points=\"").unwrap().1.split_once('"').unwrap().0;
            (name.to_string(), n.parse().unwrap())
        })
        .collect()
}

#[test]
fn html_report_has_percentile_and_over_time_plots_matching_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let sink = Sink::start(&["--messages", "300"]);
    // Open loop: 300 messages on a schedule spread over 2 s, so the run
    // has at least two seconds of completions however fast the machine is.
    let gen = smtp_ok(
        &sink.addr,
        &["--rate", "150", "--messages", "300", "--connections", "4", "--html", html.to_str().unwrap()],
    );
    sink.finish();
    assert_eq!(count(&gen, "accepted"), 300);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains("<script"), "the report has no scripts");

    // One percentile curve per latency row of the summary, in order.
    let rows: Vec<String> =
        gen["latency_ms"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect();
    let curves = series(&page, "percentiles");
    assert_eq!(curves.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), rows);
    assert!(curves.iter().all(|(_, n)| *n >= 2), "{curves:?}");

    // Over time: p50, p99 and max with one point per second that saw a
    // completion, and one throughput bar per second of the timeline.
    let over: &Value = &gen["latency_over_time"];
    assert_eq!(over["metric"], "message");
    assert_eq!(over["bucket_s"], 1);
    let points = over["points"].as_array().unwrap();
    assert!(points.len() >= 2, "a 2 s schedule spans at least two seconds: {points:?}");
    assert_eq!(points.iter().map(|p| p["count"].as_u64().unwrap()).sum::<u64>(), 300);
    for p in points {
        let (p50, p99, max) = (p["p50"].as_f64().unwrap(), p["p99"].as_f64().unwrap(), p["max"].as_f64().unwrap());
        assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{p}");
    }
    let timeline = gen["timeline"].as_array().unwrap().len() as u64;
    let n = points.len() as u64;
    assert_eq!(
        series(&page, "over-time"),
        [("p50".to_string(), n), ("p99".to_string(), n), ("max".to_string(), n), ("throughput".to_string(), timeline)]
    );

    let png = test_output_dir().join("loadgen-report.png");
    screenshot(&format!("file://{}", html.display()), &png, 900, 1100);
    eprintln!("screenshot: {}", png.display());
}
