//! Latency histograms with fixed buckets, as Prometheus histograms.
//!
//! Fixed bucket bounds (the same in every core and every server) are what
//! make the series add up: `sum by (le) (rate(NAME_bucket[5m]))` over cores
//! and instances, then `histogram_quantile`, gives a windowed percentile.
//! The summaries they replace were lifetime quantiles per process, which
//! flatten over days and cannot be combined. Recording is one bounded
//! search over [`BOUNDS_US`] and two `Cell` bumps: no locks, no allocation.

use std::cell::Cell;
use std::fmt::Write;

/// Upper bounds of the buckets in microseconds: 0.1 ms to 60 s, about
/// three per decade. Longer waits (relay delivery after retries) land in
/// `+Inf` only; their `_sum` still counts them in full.
pub const BOUNDS_US: [u64; 18] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// Buckets plus the `+Inf` one.
const SLOTS: usize = BOUNDS_US.len() + 1;

/// One core's histogram: per-bucket (not cumulative) counts and the sum,
/// bumped only by the core that owns it.
#[derive(Default)]
pub struct Latency {
    counts: [Cell<u64>; SLOTS],
    sum_us: Cell<u64>,
}

impl Latency {
    /// Count one observation of `us` microseconds.
    pub fn record(&self, us: u64) {
        // The first bound >= us: Prometheus buckets are `le` (inclusive).
        let i = BOUNDS_US.partition_point(|&b| b < us);
        let c = &self.counts[i];
        c.set(c.get() + 1);
        self.sum_us.set(self.sum_us.get().saturating_add(us));
    }

    /// A copy for a scrape.
    pub fn snapshot(&self) -> LatencyCounts {
        LatencyCounts { counts: self.counts.each_ref().map(Cell::get), sum_us: self.sum_us.get() }
    }
}

/// A histogram's counts at a scrape; sent across cores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencyCounts {
    /// Per bucket of [`BOUNDS_US`], then `+Inf`; not cumulative.
    pub counts: [u64; SLOTS],
    /// Sum of every observation, microseconds.
    pub sum_us: u64,
}

impl LatencyCounts {
    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Write the `_bucket` (cumulative), `_sum` (seconds) and `_count` lines of
/// one histogram family, one label set per entry of `series`
/// (`labels` is e.g. `core="0"`).
pub fn render(out: &mut String, name: &str, help: &str, series: &[(String, LatencyCounts)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (labels, h) in series {
        let mut cumulative = 0;
        for (bound, n) in BOUNDS_US.iter().zip(&h.counts) {
            cumulative += n;
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count());
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum_us as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_on_a_bound_counts_in_that_bucket() {
        let h = Latency::default();
        h.record(100);
        h.record(101);
        h.record(0);
        h.record(60_000_000);
        h.record(60_000_001);
        let s = h.snapshot();
        assert_eq!(s.counts[0], 2, "0 and 100 us are <= 0.0001 s");
        assert_eq!(s.counts[1], 1, "101 us is in (0.0001, 0.00025]");
        assert_eq!(s.counts[BOUNDS_US.len() - 1], 1, "60 s is <= 60");
        assert_eq!(s.counts[BOUNDS_US.len()], 1, "over 60 s only in +Inf");
        assert_eq!(s.count(), 5);
        assert_eq!(s.sum_us, 100 + 101 + 60_000_000 + 60_000_001);
    }

    #[test]
    fn buckets_render_cumulative_and_end_with_inf_equal_to_count() {
        let h = Latency::default();
        for us in [50, 700, 700, 3_000_000, 90_000_000] {
            h.record(us);
        }
        let mut out = String::new();
        render(&mut out, "x_seconds", "help", &[("core=\"0\"".into(), h.snapshot())]);
        assert!(out.contains("# TYPE x_seconds histogram\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{core=\"0\",le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{core=\"0\",le=\"0.0005\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{core=\"0\",le=\"0.001\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{core=\"0\",le=\"2.5\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{core=\"0\",le=\"5\"} 4\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{core=\"0\",le=\"60\"} 4\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{core=\"0\",le=\"+Inf\"} 5\n"), "{out}");
        assert!(out.contains("x_seconds_count{core=\"0\"} 5\n"), "{out}");
        assert!(out.contains("x_seconds_sum{core=\"0\"} 93.00145\n"), "{out}");
    }
}
