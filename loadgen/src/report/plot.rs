//! The report's two plots as inline SVG:
//! - latency by percentile, HdrHistogram style: x is log10(1/(1-p)) up to
//!   99.999 %, y is log10(ms), one curve per step;
//! - latency over time: p50, p99 and max of the main metric per bucket of
//!   time (log y), above completions per second (bars), on one time axis.
//!
//! Every plot carries `data-plot`, and every series `data-series` and
//! `data-points` (its number of points), so tests and scripts can check
//! what was drawn without parsing coordinates.

use super::svg::{esc, fmt_num, linear_ticks, nice_step, Area, LogAxis, COLORS};
use super::LatencyOverTime;
use crate::stats::over_time::Point;
use hdrhistogram::Histogram;
use std::fmt::Write;

const W: f64 = 760.0;
/// Reads one quantile of a time bucket.
type Quantile = fn(&Point) -> f64;
/// The percentile axis ends at 99.999% (x = 5 decades).
const DECADES: f64 = 5.0;

fn open_svg(o: &mut String, plot: &str, h: f64) {
    let _ = writeln!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" data-plot=\"{plot}\" width=\"{W}\" height=\"{h}\" viewBox=\"0 0 {W} {h}\">\n\
         <rect width=\"{W}\" height=\"{h}\" fill=\"#fff\"/>"
    );
}

fn polyline(o: &mut String, series: &str, color: &str, pts: &[(f64, f64)]) {
    let coords: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = writeln!(
        o,
        "<polyline data-series=\"{}\" data-points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.8\" points=\"{}\"/>",
        esc(series),
        pts.len(),
        coords.join(" ")
    );
}

/// Latency percentile curves of every non-empty histogram (µs values).
pub fn percentiles(hists: &[(String, Histogram<u64>)]) -> String {
    let area = Area { left: 70.0, right: W - 130.0, top: 20.0, bottom: 300.0 };
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
    let axis = LogAxis::fit(series.iter().flat_map(|(_, p)| p.iter().map(|(_, v)| *v)));
    let x_of = |q: f64| {
        let decades = if q >= 1.0 { DECADES } else { (1.0 / (1.0 - q)).log10().min(DECADES) };
        area.left + decades / DECADES * (area.right - area.left)
    };
    let mut o = String::new();
    open_svg(&mut o, "percentiles", 340.0);
    axis.ticks(&mut o, &area);
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"].iter().enumerate() {
        area.x_tick(&mut o, area.left + i as f64 / DECADES * (area.right - area.left), label);
    }
    area.axes(&mut o);
    if series.is_empty() {
        no_data(&mut o, &area, "no latencies measured");
    }
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let xy: Vec<(f64, f64)> = pts.iter().map(|(q, v)| (x_of(*q), axis.y(&area, *v))).collect();
        polyline(&mut o, name, color, &xy);
        area.legend(&mut o, i, color, name);
    }
    caption(&mut o, &area, 335.0, "percentile (log scale of 1/(1-p)); latency on a log scale");
    o.push_str("</svg>\n");
    o
}

/// Latency quantiles over time above completions per second.
pub fn over_time(lat: Option<&LatencyOverTime>, timeline: &[u64]) -> String {
    let top = Area { left: 70.0, right: W - 130.0, top: 20.0, bottom: 250.0 };
    let bottom = Area { top: 290.0, bottom: 420.0, ..top };
    let points = lat.map_or(&[][..], |l| &l.points[..]);
    let bucket = lat.map_or(1, |l| l.bucket_s.max(1)) as f64;
    let end = points.last().map_or(0.0, |p| p.t_s as f64 + bucket).max(timeline.len() as f64).max(1.0);
    let x_of = |t: f64| top.left + t / end * (top.right - top.left);

    let mut o = String::new();
    open_svg(&mut o, "over-time", 460.0);
    let step = nice_step(end, 10).max(1.0);
    let mut t = 0.0;
    while t <= end + 1e-9 {
        top.x_tick(&mut o, x_of(t), "");
        bottom.x_tick(&mut o, x_of(t), &format!("{}s", fmt_num(t)));
        t += step;
    }

    // Top: p50 / p99 / max, each at the middle of its bucket.
    let axis = LogAxis::fit(points.iter().flat_map(|p| [p.p50, p.p99, p.max]));
    axis.ticks(&mut o, &top);
    top.axes(&mut o);
    if points.is_empty() {
        no_data(&mut o, &top, "no latencies measured");
    }
    let series: [(&str, &str, Quantile); 3] =
        [("p50", COLORS[0], |p| p.p50), ("p99", COLORS[1], |p| p.p99), ("max", COLORS[3], |p| p.max)];
    for (row, (name, color, value)) in series.iter().enumerate() {
        let xy: Vec<(f64, f64)> =
            points.iter().map(|p| (x_of(p.t_s as f64 + bucket / 2.0), axis.y(&top, value(p)))).collect();
        polyline(&mut o, name, color, &xy);
        // Dots make single points and short runs visible.
        if xy.len() <= 120 {
            for (x, y) in &xy {
                let _ = write!(o, "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.2\" fill=\"{color}\"/>");
            }
            o.push('\n');
        }
        top.legend(&mut o, row, color, name);
    }
    let metric = lat.map_or("latency".to_string(), |l| format!("{} latency", l.metric));
    let per = if bucket == 1.0 { "per second".to_string() } else { format!("per {bucket} s") };
    let _ = writeln!(
        o,
        "<text x=\"{:.1}\" y=\"14\" text-anchor=\"middle\" font-weight=\"bold\">{} {per} (log scale)</text>",
        (top.left + top.right) / 2.0,
        esc(&metric)
    );

    // Bottom: completions per one-second bucket.
    let ymax = timeline.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.05;
    linear_ticks(&mut o, &bottom, ymax, "/s");
    bottom.axes(&mut o);
    let bw = (bottom.right - bottom.left) / end;
    let _ = writeln!(o, "<g data-series=\"throughput\" data-points=\"{}\" fill=\"{}\">", timeline.len(), COLORS[2]);
    for (i, c) in timeline.iter().enumerate() {
        let h = *c as f64 / ymax * (bottom.bottom - bottom.top);
        let _ = writeln!(
            o,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>second {i}: {c}</title></rect>",
            x_of(i as f64) + 0.5,
            bottom.bottom - h,
            (bw - 1.0).max(0.5)
        );
    }
    o.push_str("</g>\n");
    bottom.legend(&mut o, 0, COLORS[2], "completions/s");
    caption(&mut o, &bottom, 455.0, "seconds since the measured start");
    o.push_str("</svg>\n");
    o
}

fn no_data(o: &mut String, area: &Area, why: &str) {
    let _ = writeln!(
        o,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#888\">{}</text>",
        (area.left + area.right) / 2.0,
        (area.top + area.bottom) / 2.0,
        esc(why)
    );
}

fn caption(o: &mut String, area: &Area, y: f64, text: &str) {
    let _ = writeln!(
        o,
        "<text x=\"{:.1}\" y=\"{y}\" text-anchor=\"middle\">{}</text>",
        (area.left + area.right) / 2.0,
        esc(text)
    );
}
