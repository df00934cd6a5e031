//! Latency over time: one coarse HDR histogram per time bucket, so that the
//! report can plot p50, p99 and max second by second.
//!
//! Memory is bounded whatever the run length: there are at most
//! [`MAX_BUCKETS`] buckets; when a run outgrows them, neighbouring buckets
//! are merged pairwise and the bucket width doubles (1 s, 2 s, 4 s, …), so a
//! run of up to ten minutes keeps true per-second points. Each bucket holds
//! a histogram with 2 significant digits (about 13 KB), allocated only once
//! something lands in it.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Duration;

/// Most buckets kept (10 minutes at one second each).
pub const MAX_BUCKETS: usize = 600;
/// Highest latency recorded exactly (1 hour, µs), as in the whole-run histograms.
const MAX_US: u64 = 3_600_000_000;

/// Latencies bucketed by when they completed, relative to the measured start.
#[derive(Debug, Clone)]
pub struct OverTime {
    /// Bucket width in seconds: a power of two, grown when the run outlasts
    /// [`MAX_BUCKETS`] buckets.
    width_s: u64,
    /// Bucket `i` covers `[i * width_s, (i + 1) * width_s)`; `None` until used.
    buckets: Vec<Option<Histogram<u32>>>,
}

/// One bucket's figures, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// Start of the bucket, seconds after the measured start.
    pub t_s: u64,
    /// Latencies recorded in the bucket.
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Default for OverTime {
    fn default() -> Self {
        OverTime { width_s: 1, buckets: Vec::new() }
    }
}

fn new_bucket() -> Histogram<u32> {
    Histogram::new_with_bounds(1, MAX_US, 2).expect("static histogram bounds are valid")
}

impl OverTime {
    /// Records latency `d` of something that completed `since` the measured start.
    pub fn record(&mut self, since: Duration, d: Duration) {
        let mut i = (since.as_secs() / self.width_s) as usize;
        while i >= MAX_BUCKETS {
            self.coarsen();
            i = (since.as_secs() / self.width_s) as usize;
        }
        if self.buckets.len() <= i {
            self.buckets.resize(i + 1, None);
        }
        let us = (d.as_micros() as u64).clamp(1, MAX_US);
        self.buckets[i].get_or_insert_with(new_bucket).saturating_record(us);
    }

    /// Adds another core's buckets (aligned to the same measured start).
    pub fn merge(&mut self, other: &OverTime) {
        let mut other = other.clone();
        while self.width_s < other.width_s {
            self.coarsen();
        }
        while other.width_s < self.width_s {
            other.coarsen();
        }
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), None);
        }
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            add(a, b);
        }
    }

    /// Bucket width in seconds.
    pub fn width_s(&self) -> u64 {
        self.width_s
    }

    /// The non-empty buckets, in time order.
    pub fn points(&self) -> Vec<Point> {
        let ms = |us: u64| us as f64 / 1000.0;
        self.buckets
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                let h = h.as_ref().filter(|h| !h.is_empty())?;
                Some(Point {
                    t_s: i as u64 * self.width_s,
                    count: h.len(),
                    p50: ms(h.highest_equivalent(h.value_at_quantile(0.5))),
                    p99: ms(h.highest_equivalent(h.value_at_quantile(0.99))),
                    max: ms(h.highest_equivalent(h.max())),
                })
            })
            .collect()
    }

    /// Doubles the bucket width, merging buckets pairwise.
    fn coarsen(&mut self) {
        let old = std::mem::take(&mut self.buckets);
        let mut it = old.into_iter();
        while let Some(mut a) = it.next() {
            if let Some(b) = it.next() {
                add(&mut a, b);
            }
            self.buckets.push(a);
        }
        self.width_s *= 2;
    }
}

/// `a += b` for optional buckets.
fn add(a: &mut Option<Histogram<u32>>, b: Option<Histogram<u32>>) {
    match (a.as_mut(), b) {
        (_, None) => {}
        (None, b) => *a = b,
        // Same bounds on both sides, and counts saturate: cannot fail.
        (Some(x), Some(y)) => x.add(&y).expect("buckets share bounds"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn buckets_by_completion_second_with_quantiles() {
        let mut t = OverTime::default();
        for i in 1..=100 {
            t.record(Duration::from_millis(200), ms(i));
        }
        t.record(Duration::from_millis(2100), ms(7));
        let p = t.points();
        assert_eq!(p.len(), 2, "empty second 1 is not a point");
        assert_eq!((p[0].t_s, p[0].count), (0, 100));
        assert!((p[0].p50 - 50.0).abs() < 1.0, "{}", p[0].p50);
        assert!((p[0].p99 - 99.0).abs() < 1.0, "{}", p[0].p99);
        assert!((p[0].max - 100.0).abs() < 1.0, "{}", p[0].max);
        assert_eq!((p[1].t_s, p[1].count), (2, 1));
        assert!((p[1].max - 7.0).abs() < 0.1);
    }

    #[test]
    fn long_runs_coarsen_instead_of_growing() {
        let mut t = OverTime::default();
        for s in 0..(3 * MAX_BUCKETS as u64) {
            t.record(Duration::from_secs(s), ms(1));
        }
        assert_eq!(t.width_s(), 4);
        assert!(t.buckets.len() <= MAX_BUCKETS);
        let p = t.points();
        assert_eq!(p.iter().map(|p| p.count).sum::<u64>(), 3 * MAX_BUCKETS as u64, "nothing lost");
        assert_eq!(p[1].t_s, 4);
        assert_eq!(p[0].count, 4);
    }

    #[test]
    fn merge_aligns_widths_and_adds() {
        let mut a = OverTime::default();
        a.record(Duration::from_secs(1), ms(10));
        let mut b = OverTime::default();
        b.record(Duration::from_secs(MAX_BUCKETS as u64 + 1), ms(20));
        b.record(Duration::from_secs(0), ms(30));
        assert_eq!(b.width_s(), 2);
        a.merge(&b);
        assert_eq!(a.width_s(), 2);
        let p = a.points();
        assert_eq!((p[0].t_s, p[0].count), (0, 2), "seconds 0 and 1 share a 2 s bucket");
        assert!((p[0].max - 30.0).abs() < 0.5);
        assert_eq!(p.last().map(|p| (p.t_s, p.count)), Some((MAX_BUCKETS as u64, 1)));
    }
}
