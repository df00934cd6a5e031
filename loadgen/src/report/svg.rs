//! Small SVG building blocks for the report's plots: a plot area, a log10
//! axis in whole decades, a linear axis, and text escaping. Pure string
//! building; nothing here knows what is plotted.

use std::fmt::Write;

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Series colours, distinguishable in a screenshot.
pub const COLORS: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#000000",
];

/// A rectangle of the drawing that holds one plot (pixels).
#[derive(Debug, Clone, Copy)]
pub struct Area {
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
}

impl Area {
    /// Draws the left and bottom axis lines.
    pub fn axes(&self, o: &mut String) {
        let Area { left, right, top, bottom } = *self;
        let _ = writeln!(
            o,
            "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{bottom}\" stroke=\"#000\"/>\
             <line x1=\"{left}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\" stroke=\"#000\"/>"
        );
    }

    /// A horizontal grid line at `y` with `label` left of the axis.
    pub fn y_tick(&self, o: &mut String, y: f64, label: &str, strong: bool) {
        let stroke = if strong { "#ddd" } else { "#f2f2f2" };
        let _ = write!(
            o,
            "<line x1=\"{}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"{stroke}\"/>",
            self.left, self.right
        );
        if !label.is_empty() {
            let _ = write!(
                o,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                self.left - 4.0,
                y + 4.0,
                esc(label)
            );
        }
        o.push('\n');
    }

    /// A vertical grid line at `x` with `label` under the axis.
    pub fn x_tick(&self, o: &mut String, x: f64, label: &str) {
        let _ = writeln!(
            o,
            "<line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#eee\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            self.top,
            self.bottom,
            self.bottom + 15.0,
            esc(label)
        );
    }

    /// A legend entry (colour swatch and name), `row` lines below the top,
    /// right of the plot.
    pub fn legend(&self, o: &mut String, row: usize, color: &str, name: &str) {
        let ly = self.top + 14.0 * row as f64 + 10.0;
        let lx = self.right + 10.0;
        let _ = writeln!(
            o,
            "<rect x=\"{lx}\" y=\"{:.1}\" width=\"12\" height=\"4\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            ly - 4.0,
            lx + 16.0,
            ly + 1.0,
            esc(name)
        );
    }
}

/// A vertical log10 axis over whole decades, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct LogAxis {
    lo: i32,
    hi: i32,
}

/// Smallest value a log axis shows: 1 µs.
const FLOOR_MS: f64 = 0.001;

impl LogAxis {
    /// The decades that cover every value (at least one decade; values
    /// below 1 µs are shown at 1 µs).
    pub fn fit(values: impl Iterator<Item = f64>) -> LogAxis {
        let (mut min, mut max) = (f64::INFINITY, 0.0f64);
        for v in values.map(|v| v.max(FLOOR_MS)) {
            min = min.min(v);
            max = max.max(v);
        }
        if !min.is_finite() {
            return LogAxis { lo: -1, hi: 1 };
        }
        let lo = min.log10().floor() as i32;
        let hi = (max.log10().ceil() as i32).max(lo + 1);
        LogAxis { lo, hi }
    }

    /// y position of `v` ms in `area`.
    pub fn y(&self, area: &Area, v: f64) -> f64 {
        let l = v.max(FLOOR_MS).log10();
        area.bottom - (l - self.lo as f64) / (self.hi - self.lo) as f64 * (area.bottom - area.top)
    }

    /// Decade lines with labels, and fainter lines at 2× and 5×.
    pub fn ticks(&self, o: &mut String, area: &Area) {
        for e in self.lo..=self.hi {
            let v = 10f64.powi(e);
            area.y_tick(o, self.y(area, v), &fmt_ms(v), true);
            if e < self.hi {
                for m in [2.0, 5.0] {
                    area.y_tick(o, self.y(area, v * m), "", false);
                }
            }
        }
    }
}

/// A latency in ms as a short axis label: "0.01 ms", "10 ms", "1 s".
pub fn fmt_ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{} s", fmt_num(v / 1000.0))
    } else {
        format!("{} ms", fmt_num(v))
    }
}

/// A number with as few digits as its size needs.
pub fn fmt_num(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

/// A vertical linear axis from 0 to `max` with four gridlines.
pub fn linear_ticks(o: &mut String, area: &Area, max: f64, unit: &str) {
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        let y = area.bottom - v / max * (area.bottom - area.top);
        area.y_tick(o, y, &format!("{} {unit}", fmt_num(v)), true);
    }
}

/// A "nice" step (1, 2, 5 × 10^k) that cuts `span` into at most `n` pieces.
pub fn nice_step(span: f64, n: usize) -> f64 {
    let raw = (span / n as f64).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_axis_covers_whole_decades() {
        let a = LogAxis::fit([0.05, 3.0, 250.0].into_iter());
        assert_eq!((a.lo, a.hi), (-2, 3));
        let area = Area { left: 0.0, right: 100.0, top: 0.0, bottom: 500.0 };
        assert!((a.y(&area, 0.01) - 500.0).abs() < 1e-9);
        assert!((a.y(&area, 1000.0) - 0.0).abs() < 1e-9);
        assert!((a.y(&area, 1.0) - 300.0).abs() < 1e-9, "each decade is 100 px");
        let one = LogAxis::fit([5.0, 5.0].into_iter());
        assert_eq!((one.lo, one.hi), (0, 1));
    }

    #[test]
    fn labels_are_short() {
        assert_eq!(fmt_ms(0.01), "0.01 ms");
        assert_eq!(fmt_ms(10.0), "10 ms");
        assert_eq!(fmt_ms(10_000.0), "10 s");
        assert_eq!(nice_step(95.0, 10), 10.0);
        assert_eq!(nice_step(7.0, 10), 1.0);
        assert_eq!(nice_step(400.0, 8), 50.0);
    }
}
