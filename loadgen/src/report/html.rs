//! A self-contained HTML report: summary tables, a latency percentile plot
//! (HdrHistogram style, log scale of 1/(1-p)) and throughput over time, as
//! inline SVG. No scripts, no external resources.

use super::Summary;
use hdrhistogram::Histogram;
use std::fmt::Write;

const W: f64 = 760.0;
const H: f64 = 320.0;
/// Plot margins: left, right, top, bottom.
const ML: f64 = 60.0;
const MR: f64 = 140.0;
const MT: f64 = 20.0;
const MB: f64 = 40.0;
/// The percentile axis ends at 99.999% (x = 5 decades).
const DECADES: f64 = 5.0;
const COLORS: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#000000",
];

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

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
    o.push_str(&percentile_svg(&s.hists));
    o.push_str("<h2>Throughput over time</h2>\n");
    o.push_str(&timeline_svg(&s.timeline));
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

/// x position for quantile `q` on the log(1/(1-q)) axis.
fn x_of(q: f64) -> f64 {
    let decades = if q >= 1.0 { DECADES } else { (1.0 / (1.0 - q)).log10().min(DECADES) };
    ML + decades / DECADES * (W - ML - MR)
}

fn percentile_svg(hists: &[(String, Histogram<u64>)]) -> String {
    let series: Vec<(&str, Vec<(f64, f64)>)> = hists
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(name, h)| {
            let pts = h
                .iter_quantiles(5)
                .map(|v| (v.quantile_iterated_to(), h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0))
                .collect();
            (name.as_str(), pts)
        })
        .collect();
    let ymax = series.iter().flat_map(|(_, p)| p.iter().map(|(_, v)| *v)).fold(0.0f64, f64::max).max(0.001) * 1.05;
    let y_of = |v: f64| H - MB - v / ymax * (H - MT - MB);
    let mut o =
        format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\">\n");
    axes(&mut o);
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"].iter().enumerate() {
        let x = ML + i as f64 / DECADES * (W - ML - MR);
        let _ = writeln!(
            o,
            "<line x1=\"{x:.1}\" y1=\"{MT}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            H - MB,
            H - MB + 15.0
        );
    }
    y_ticks(&mut o, ymax, "ms");
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = pts.iter().map(|(q, v)| format!("{:.1},{:.1}", x_of(*q), y_of(*v))).collect();
        let _ = writeln!(
            o,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>",
            path.join(" ")
        );
        let ly = MT + 14.0 * i as f64 + 10.0;
        let lx = W - MR + 10.0;
        let _ = writeln!(
            o,
            "<rect x=\"{lx}\" y=\"{:.1}\" width=\"10\" height=\"3\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            ly - 3.0,
            lx + 14.0,
            ly + 1.0,
            esc(name)
        );
    }
    let _ = writeln!(
        o,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">percentile</text></svg>",
        (W - MR + ML) / 2.0,
        H - 5.0
    );
    o
}

fn timeline_svg(timeline: &[u64]) -> String {
    let mut o =
        format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\">\n");
    axes(&mut o);
    let ymax = timeline.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.05;
    y_ticks(&mut o, ymax, "/s");
    let n = timeline.len().max(1) as f64;
    let bw = (W - ML - MR) / n;
    for (i, c) in timeline.iter().enumerate() {
        let h = *c as f64 / ymax * (H - MT - MB);
        let _ = writeln!(
            o,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#1f77b4\"><title>second {i}: {c}</title></rect>",
            ML + i as f64 * bw,
            H - MB - h,
            (bw - 1.0).max(0.5)
        );
    }
    let step = (timeline.len() / 10).max(1);
    for i in (0..timeline.len()).step_by(step) {
        let _ = writeln!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{i}s</text>",
            ML + (i as f64 + 0.5) * bw,
            H - MB + 15.0
        );
    }
    let _ = writeln!(
        o,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">seconds (1 s buckets)</text></svg>",
        (W - MR + ML) / 2.0,
        H - 5.0
    );
    o
}

fn axes(o: &mut String) {
    let _ = writeln!(
        o,
        "<line x1=\"{ML}\" y1=\"{MT}\" x2=\"{ML}\" y2=\"{:.1}\" stroke=\"#000\"/><line x1=\"{ML}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#000\"/>",
        H - MB,
        H - MB,
        W - MR,
        H - MB
    );
}

fn y_ticks(o: &mut String, ymax: f64, unit: &str) {
    for i in 0..=4 {
        let v = ymax * i as f64 / 4.0;
        let y = H - MB - v / ymax * (H - MT - MB);
        let _ = writeln!(
            o,
            "<line x1=\"{ML}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{} {unit}</text>",
            W - MR,
            ML - 4.0,
            y + 4.0,
            fmt_num(v)
        );
    }
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::LatencySet;
    use std::time::{Duration, SystemTime};

    #[test]
    fn page_is_self_contained_with_two_plots() {
        const NAMES: &[&str] = &["connect", "message"];
        let mut lat = LatencySet::new(NAMES);
        for i in 1..500u64 {
            lat.record(1, Duration::from_micros(i * 7));
        }
        let mut s = Summary::new("smtp", "127.0.0.1:1 <x>", SystemTime::now(), Duration::from_secs(2));
        s.set_latencies(&lat, 1);
        s.timeline = vec![100, 200, 150];
        let page = render(&s);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert_eq!(page.matches("<svg").count(), 2);
        assert!(page.contains("<polyline"));
        assert!(page.contains("127.0.0.1:1 &lt;x&gt;"));
        assert!(!page.contains("<script"));
        assert!(
            !page.contains("http://")
                || page.matches("http://").count() == page.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
        );
    }
}
