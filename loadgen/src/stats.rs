//! Per-core measurements: named latency histograms (microseconds), counters
//! by name, and a throughput timeline in one-second buckets. Each core owns
//! its own; they are merged once, after the run (no sharing on the hot path).
//! [`over_time`] keeps latency quantiles per second for the report's plot.

pub mod over_time;

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::Duration;

/// Highest latency recorded exactly (1 hour, in µs); larger values saturate.
const MAX_US: u64 = 3_600_000_000;

/// A fresh histogram with 3 significant digits from 1 µs to 1 hour.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("static histogram bounds are valid")
}

/// Records `d` in µs, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, MAX_US);
    h.saturating_record(us);
}

/// A fixed list of named latency histograms, indexed by position.
#[derive(Debug, Clone)]
pub struct LatencySet {
    names: &'static [&'static str],
    hists: Vec<Histogram<u64>>,
}

impl LatencySet {
    /// One empty histogram per name.
    pub fn new(names: &'static [&'static str]) -> Self {
        LatencySet { names, hists: names.iter().map(|_| new_histogram()).collect() }
    }

    /// Records a latency under metric `idx`.
    pub fn record(&mut self, idx: usize, d: Duration) {
        record(&mut self.hists[idx], d);
    }

    /// Adds another core's histograms.
    pub fn merge(&mut self, other: &LatencySet) {
        for (a, b) in self.hists.iter_mut().zip(&other.hists) {
            a.add(b).expect("histograms share bounds");
        }
    }

    /// (name, histogram) pairs in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Histogram<u64>)> {
        self.names.iter().copied().zip(self.hists.iter())
    }
}

/// Counts by name (error kinds, reply codes). Allocates only for a new key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally(BTreeMap<String, u64>);

impl Tally {
    /// Adds one to `key`.
    pub fn bump(&mut self, key: &str) {
        self.add(key, 1);
    }

    /// Adds `n` to `key`.
    pub fn add(&mut self, key: &str, n: u64) {
        match self.0.get_mut(key) {
            Some(v) => *v += n,
            None => {
                self.0.insert(key.to_string(), n);
            }
        }
    }

    /// Adds another tally.
    pub fn merge(&mut self, other: &Tally) {
        for (k, v) in &other.0 {
            self.add(k, *v);
        }
    }

    /// Sum of all counts.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// The counts, sorted by key.
    pub fn map(&self) -> &BTreeMap<String, u64> {
        &self.0
    }
}

/// Completions per second since the measured start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline(Vec<u64>);

/// The timeline stops growing after a day, whatever the run length.
const MAX_BUCKETS: usize = 86_400;

impl Timeline {
    /// Counts one completion `since` the measured start.
    pub fn add(&mut self, since: Duration, n: u64) {
        let i = (since.as_secs() as usize).min(MAX_BUCKETS - 1);
        if self.0.len() <= i {
            self.0.resize(i + 1, 0);
        }
        self.0[i] += n;
    }

    /// Adds another core's timeline.
    pub fn merge(&mut self, other: &Timeline) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a += b;
        }
    }

    /// Per-second counts.
    pub fn buckets(&self) -> &[u64] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_sets_merge_per_metric() {
        const NAMES: &[&str] = &["a", "b"];
        let mut x = LatencySet::new(NAMES);
        let mut y = LatencySet::new(NAMES);
        x.record(0, Duration::from_micros(100));
        y.record(0, Duration::from_micros(300));
        y.record(1, Duration::from_millis(2));
        x.merge(&y);
        let h: Vec<_> = x.iter().map(|(_, h)| h).collect();
        assert_eq!(h[0].len(), 2);
        assert_eq!(h[1].len(), 1);
        assert!(h[0].max() >= 299);
    }

    #[test]
    fn zero_and_huge_latencies_are_clamped_not_lost() {
        let mut h = new_histogram();
        record(&mut h, Duration::ZERO);
        record(&mut h, Duration::from_secs(100_000));
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn tally_adds_and_merges() {
        let mut a = Tally::default();
        a.bump("x");
        a.bump("x");
        let mut b = Tally::default();
        b.add("y", 3);
        a.merge(&b);
        assert_eq!(a.map()["x"], 2);
        assert_eq!(a.total(), 5);
    }

    #[test]
    fn timeline_buckets_by_second() {
        let mut t = Timeline::default();
        t.add(Duration::from_millis(100), 1);
        t.add(Duration::from_millis(2500), 2);
        let mut u = Timeline::default();
        u.add(Duration::from_millis(999), 1);
        t.merge(&u);
        assert_eq!(t.buckets(), &[2, 0, 2]);
    }
}
