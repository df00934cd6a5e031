//! A self-contained HTML report: summary tables and two inline SVG plots
//! (latency by percentile, latency and throughput over time; see `plot`).
//! No scripts, no external resources.

use super::plot;
use super::svg::esc;
use super::Summary;
use std::fmt::Write;

/// Renders the whole page.
pub fn render(s: &Summary) -> String {
    let mut o = String::new();
    let title = format!("ringmail-loadgen {} {}", s.mode, s.target);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
         body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}th{{background:#eee}}\
         td:first-child,th:first-child{{text-align:left}}pre{{background:#f6f6f6;padding:8px}}\
         svg text{{font-size:11px}}</style></head><body>\n",
        esc(&title)
    );
    let _ = writeln!(o, "<h1>{}</h1>", esc(&title));
    let _ = writeln!(o, "<p><b>{}</b></p>", esc(&s.headline));
    let m = &s.machine;
    let _ = writeln!(
        o,
        "<p>Machine: {} — {} CPUs, {}, Linux {}. Started {}; measured {:.2} s.{}</p>",
        esc(&m.hostname),
        m.cpus,
        esc(&m.cpu_model),
        esc(&m.kernel),
        crate::proto::message::rfc5322_date(s.started_unix_ms / 1000),
        s.elapsed_s,
        if s.interrupted { " Interrupted: partial results." } else { "" }
    );
    o.push_str("<h2>Latency percentiles</h2>\n");
    o.push_str(&plot::percentiles(&s.hists));
    o.push_str("<h2>Latency and throughput over time</h2>\n");
    o.push_str(&plot::over_time(s.latency_over_time.as_ref(), &s.timeline));
    o.push_str("<h2>Latency (ms)</h2>\n<table><tr><th>metric</th><th>count</th><th>mean</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>\n");
    for r in &s.latency_ms {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            esc(&r.name),
            r.count,
            r.mean,
            r.p50,
            r.p90,
            r.p99,
            r.p999,
            r.max
        );
    }
    o.push_str("</table>\n<h2>Counts</h2>\n<table><tr><th>name</th><th>value</th></tr>\n");
    for (k, v) in &s.counts {
        let _ = writeln!(o, "<tr><td>{}</td><td>{v}</td></tr>", esc(k));
    }
    for (k, v) in &s.throughput {
        let _ = writeln!(o, "<tr><td>{}</td><td>{v:.1}</td></tr>", esc(k));
    }
    o.push_str("</table>\n");
    for (name, tally) in &s.tallies {
        let _ = writeln!(o, "<h3>{}</h3>", esc(name));
        if tally.is_empty() {
            o.push_str("<p>none</p>\n");
            continue;
        }
        o.push_str("<table>\n");
        for (k, v) in tally {
            let _ = writeln!(o, "<tr><td>{}</td><td>{v}</td></tr>", esc(k));
        }
        o.push_str("</table>\n");
    }
    let settings = serde_json::to_string_pretty(&s.settings).unwrap_or_default();
    let _ = writeln!(o, "<h2>Settings</h2>\n<pre>{}</pre>", esc(&settings));
    o.push_str("</body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::over_time::OverTime;
    use crate::stats::LatencySet;
    use std::time::{Duration, SystemTime};

    /// (series, points) of every series in the plot named `plot`.
    fn series(page: &str, plot: &str) -> Vec<(String, usize)> {
        let start = page.find(&format!("data-plot=\"{plot}\"")).expect("plot present");
        let svg = &page[start..start + page[start..].find("</svg>").expect("plot closed")];
        svg.split("data-series=\"")
            .skip(1)
            .map(|rest| {
                let (name, rest) = rest.split_once('"').unwrap();
                let n = rest.split_once("data-points=\"").unwrap().1.split_once('"').unwrap().0;
                (name.to_string(), n.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn page_is_self_contained_with_both_plots_and_their_series() {
        const NAMES: &[&str] = &["connect", "tls", "message"];
        let mut lat = LatencySet::new(NAMES);
        let mut over = OverTime::default();
        for i in 1..500u64 {
            lat.record(0, Duration::from_micros(i));
            lat.record(2, Duration::from_micros(i * 70));
            over.record(Duration::from_millis(i * 10), Duration::from_micros(i * 70));
        }
        let mut s = Summary::new("smtp", "127.0.0.1:1 <x>", SystemTime::now(), Duration::from_secs(5));
        s.set_latencies(&lat, 2);
        s.set_over_time("message", &over);
        s.timeline = vec![100, 100, 100, 100, 99];
        let page = render(&s);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert_eq!(page.matches("<svg").count(), 2);
        // "tls" has no samples and is not drawn.
        let p = series(&page, "percentiles");
        assert_eq!(p.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["connect", "message"]);
        assert!(p.iter().all(|(_, n)| *n > 10), "{p:?}");
        let t = series(&page, "over-time");
        assert_eq!(
            t,
            [("p50".to_string(), 5), ("p99".to_string(), 5), ("max".to_string(), 5), ("throughput".to_string(), 5)]
        );
        assert!(page.contains("message latency per second (log scale)"));
        assert!(page.contains("127.0.0.1:1 &lt;x&gt;"));
        assert!(!page.contains("<script"));
        assert!(
            !page.contains("http://")
                || page.matches("http://").count() == page.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
        );
    }

    #[test]
    fn sink_page_without_latencies_still_draws_throughput() {
        let mut s = Summary::new("sink", "127.0.0.1:2525", SystemTime::now(), Duration::from_secs(2));
        s.timeline = vec![3, 4];
        let page = render(&s);
        assert_eq!(series(&page, "percentiles"), []);
        let t = series(&page, "over-time");
        assert_eq!(t.last(), Some(&("throughput".to_string(), 2)));
        assert!(t[..3].iter().all(|(_, n)| *n == 0));
        assert!(page.contains("no latencies measured"));
    }
}
