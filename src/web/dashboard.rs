//! `GET /api/v1/dashboard`: everything the status page shows, as one JSON
//! document built from every core's [`CoreView`] and the site table.
//!
//! Pure: the handler gathers the views and passes the time in. The
//! document's `status` is exactly `ringmail status --json` (the same
//! [`Status`]), so the page and the CLI cannot disagree; the rest is
//! derived here:
//! - `series`: per 10-second slot of the last 15 minutes, rates (the
//!   difference of neighbouring samples over their distance) and windowed
//!   latency quantiles (from the difference of the fixed histogram
//!   buckets, interpolated inside a bucket like Prometheus'
//!   `histogram_quantile`), summed over the cores slot by slot; the last
//!   slot runs from the newest sample to now;
//! - `cores`: each core's rates over the last minute;
//! - `sites`: the busiest destination sites (`queue sites --json` rows);
//! - `recent_errors`: the newest problems of every core, newest first.

use crate::metrics::history::{CoreView, Sample, SAMPLE_EVERY_MS};
use crate::metrics::recent::ErrorEvent;
use crate::metrics::{LatencyCounts, Status, BOUNDS_US};
use crate::outbound::sites::SiteSummary;
use serde::Serialize;
use std::collections::BTreeMap;

/// Plot window: 15 minutes.
pub const WINDOW_MS: u64 = 15 * 60 * 1000;
/// Sites shown.
pub const TOP_SITES: usize = 8;
/// Errors shown (every core keeps as many; the newest win).
pub const ERRORS_SHOWN: usize = crate::metrics::recent::KEEP;
/// Per-core rates are taken over this much of the recent past.
const CORE_RATE_WINDOW_MS: u64 = 60_000;
/// A "now" interval shorter than this is left out of the plots: its rates
/// would be noise.
const MIN_LIVE_MS: u64 = 1_000;

/// The status page's document.
#[derive(Debug, Clone, Serialize)]
pub struct Dashboard {
    pub generated_unix_ms: u64,
    /// `ringmail status --json`.
    pub status: Status,
    pub cores: Vec<CoreRates>,
    pub series: Series,
    pub sites: Vec<SiteSummary>,
    pub recent_errors: Vec<ErrorEvent>,
}

/// One core's throughput.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoreRates {
    pub core: usize,
    /// Messages received (250 after DATA) per second over the last minute.
    pub received_per_s: f64,
    /// Recipients relayed per second over the last minute.
    pub relayed_per_s: f64,
    /// Since start.
    pub received: u64,
    pub relayed: u64,
    pub sessions_open: u64,
}

/// The plots' data: one point per slot, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub slot_s: u64,
    pub points: Vec<Point>,
}

/// One slot of the last 15 minutes, summed over the cores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// End of the slot, Unix ms.
    pub t_ms: u64,
    pub received_per_s: f64,
    pub relayed_per_s: f64,
    pub deferred_per_s: f64,
    pub bounced_per_s: f64,
    /// Queued message shares at the end of the slot.
    pub queue: u64,
    /// End of DATA to the 250 in the slot, ms (null: none in the slot).
    pub data_ack_p50_ms: Option<f64>,
    pub data_ack_p99_ms: Option<f64>,
    /// Arrival to the remote 2xx, ms.
    pub relay_delivery_p50_ms: Option<f64>,
    pub relay_delivery_p99_ms: Option<f64>,
}

/// One core's changes within one slot.
#[derive(Debug, Clone, Default)]
struct Acc {
    dur_ms: u64,
    received: u64,
    relayed: u64,
    deferred: u64,
    bounced: u64,
    queue: u64,
    data_ack: LatencyCounts,
    relay_delivery: LatencyCounts,
}

/// Builds the document at `now_ms` from every core's view and the site
/// summaries (`queue sites --json`).
pub fn build(views: &[CoreView], sites: Vec<SiteSummary>, now_ms: u64) -> Dashboard {
    let snapshots: Vec<_> = views.iter().map(|v| v.snapshot.clone()).collect();
    let mut slots: BTreeMap<u64, Acc> = BTreeMap::new();
    let mut cores = Vec::with_capacity(views.len());
    for v in views {
        let mut samples = v.history.clone();
        samples.push(Sample::of(&v.snapshot, now_ms));
        merge_core(&mut slots, &core_slots(&samples, now_ms));
        cores.push(core_rates(v, &samples, now_ms));
    }
    let points = slots
        .into_iter()
        .filter(|(slot, _)| slot * SAMPLE_EVERY_MS + WINDOW_MS >= now_ms)
        .map(|(slot, a)| {
            let per_s = |n: u64| if a.dur_ms == 0 { 0.0 } else { n as f64 * 1000.0 / a.dur_ms as f64 };
            Point {
                t_ms: (slot * SAMPLE_EVERY_MS).min(now_ms),
                received_per_s: per_s(a.received),
                relayed_per_s: per_s(a.relayed),
                deferred_per_s: per_s(a.deferred),
                bounced_per_s: per_s(a.bounced),
                queue: a.queue,
                data_ack_p50_ms: quantile_ms(&a.data_ack, 0.5),
                data_ack_p99_ms: quantile_ms(&a.data_ack, 0.99),
                relay_delivery_p50_ms: quantile_ms(&a.relay_delivery, 0.5),
                relay_delivery_p99_ms: quantile_ms(&a.relay_delivery, 0.99),
            }
        })
        .collect();
    let mut recent_errors: Vec<ErrorEvent> = views.iter().flat_map(|v| v.errors.iter().cloned()).collect();
    recent_errors.sort_by_key(|e| std::cmp::Reverse(e.at_ms));
    recent_errors.truncate(ERRORS_SHOWN);
    Dashboard {
        generated_unix_ms: now_ms,
        status: Status::from_snapshots(&snapshots),
        cores,
        series: Series { slot_s: SAMPLE_EVERY_MS / 1000, points },
        sites: top_sites(sites),
        recent_errors,
    }
}

/// One core's samples (oldest first, the last taken now) as changes per
/// slot. A sample belongs to the slot whose boundary it is nearest.
fn core_slots(samples: &[Sample], now_ms: u64) -> BTreeMap<u64, Acc> {
    let mut out: BTreeMap<u64, Acc> = BTreeMap::new();
    for pair in samples.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let dur_ms = b.at_ms.saturating_sub(a.at_ms);
        let live = b.at_ms == now_ms;
        if dur_ms == 0 || (live && dur_ms < MIN_LIVE_MS) {
            continue;
        }
        let slot =
            if live { b.at_ms.div_ceil(SAMPLE_EVERY_MS) } else { (b.at_ms + SAMPLE_EVERY_MS / 2) / SAMPLE_EVERY_MS };
        let acc = out.entry(slot).or_default();
        acc.dur_ms += dur_ms;
        acc.received += b.received.saturating_sub(a.received);
        acc.relayed += b.relayed.saturating_sub(a.relayed);
        acc.deferred += b.deferred.saturating_sub(a.deferred);
        acc.bounced += b.bounced.saturating_sub(a.bounced);
        acc.queue = b.queue;
        add(&mut acc.data_ack, &delta(&b.data_ack, &a.data_ack));
        add(&mut acc.relay_delivery, &delta(&b.relay_delivery, &a.relay_delivery));
    }
    out
}

/// Adds one core's slots into the server's: counts add up, and a slot
/// lasts as long as its longest core's part.
fn merge_core(all: &mut BTreeMap<u64, Acc>, core: &BTreeMap<u64, Acc>) {
    for (slot, c) in core {
        let a = all.entry(*slot).or_default();
        a.dur_ms = a.dur_ms.max(c.dur_ms);
        a.received += c.received;
        a.relayed += c.relayed;
        a.deferred += c.deferred;
        a.bounced += c.bounced;
        a.queue += c.queue;
        add(&mut a.data_ack, &c.data_ack);
        add(&mut a.relay_delivery, &c.relay_delivery);
    }
}

fn core_rates(v: &CoreView, samples: &[Sample], now_ms: u64) -> CoreRates {
    let now = samples.last().copied().unwrap_or_default();
    let base =
        samples.iter().find(|s| s.at_ms + CORE_RATE_WINDOW_MS >= now_ms && s.at_ms < now_ms).copied().unwrap_or(now);
    let dur_ms = now_ms.saturating_sub(base.at_ms);
    let per_s = |n: u64| if dur_ms < MIN_LIVE_MS { 0.0 } else { n as f64 * 1000.0 / dur_ms as f64 };
    CoreRates {
        core: v.snapshot.core,
        received_per_s: per_s(now.received.saturating_sub(base.received)),
        relayed_per_s: per_s(now.relayed.saturating_sub(base.relayed)),
        received: now.received,
        relayed: now.relayed,
        sessions_open: v.snapshot.sessions.iter().sum(),
    }
}

/// The sites an operator looks at first: suspended ones, then those with
/// the most queued, then the busiest.
fn top_sites(mut sites: Vec<SiteSummary>) -> Vec<SiteSummary> {
    let suspended = |s: &SiteSummary| s.sources.iter().any(|x| x.suspended_until_ms.is_some());
    sites.sort_by(|a, b| {
        suspended(b)
            .cmp(&suspended(a))
            .then(b.queued.cmp(&a.queued))
            .then((b.delivered + b.deferred + b.bounced).cmp(&(a.delivered + a.deferred + a.bounced)))
            .then(a.site.cmp(&b.site))
    });
    sites.truncate(TOP_SITES);
    sites
}

fn delta(new: &LatencyCounts, old: &LatencyCounts) -> LatencyCounts {
    let mut d = LatencyCounts::default();
    for (i, c) in d.counts.iter_mut().enumerate() {
        *c = new.counts[i].saturating_sub(old.counts[i]);
    }
    d.sum_us = new.sum_us.saturating_sub(old.sum_us);
    d
}

fn add(into: &mut LatencyCounts, other: &LatencyCounts) {
    for (a, b) in into.counts.iter_mut().zip(other.counts) {
        *a += b;
    }
    into.sum_us += other.sum_us;
}

/// The `q` quantile of bucket counts in ms, interpolated linearly inside
/// its bucket (as `histogram_quantile` does); past the last bound, the
/// last bound. None without observations.
pub fn quantile_ms(h: &LatencyCounts, q: f64) -> Option<f64> {
    let total = h.count();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &n) in h.counts.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            let Some(&hi) = BOUNDS_US.get(i) else { break };
            let lo = if i == 0 { 0 } else { BOUNDS_US[i - 1] };
            let frac = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
            return Some((lo as f64 + (hi - lo) as f64 * frac) / 1000.0);
        }
        below += n;
    }
    BOUNDS_US.last().map(|&b| b as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{CoreMetrics, Gauges};

    const T0: u64 = 1_700_000_000_000;

    fn counts(pairs: &[(usize, u64)]) -> LatencyCounts {
        let mut h = LatencyCounts::default();
        for &(i, n) in pairs {
            h.counts[i] = n;
        }
        h
    }

    fn view(core: usize, m: &CoreMetrics, queue: u64) -> CoreView {
        m.view(core, m.snapshot(core, Gauges { queue_ready: queue, ..Gauges::default() }))
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        // 100 observations in (1 ms, 2.5 ms]: the median is half way.
        let h = counts(&[(4, 100)]);
        assert_eq!(quantile_ms(&h, 0.5), Some(1.75));
        assert_eq!(quantile_ms(&h, 1.0), Some(2.5));
        // 99 fast, 1 very slow: p99 is still fast, the slow one is past it.
        let h = counts(&[(0, 99), (BOUNDS_US.len(), 1)]);
        assert!(quantile_ms(&h, 0.99).unwrap() <= 0.1);
        assert_eq!(quantile_ms(&h, 1.0), Some(60_000.0));
        assert_eq!(quantile_ms(&LatencyCounts::default(), 0.5), None);
    }

    #[test]
    fn rates_and_latencies_per_slot_add_up_over_cores() {
        let (a, b) = (CoreMetrics::default(), CoreMetrics::default());
        for m in [&a, &b] {
            m.sample(Sample::of(&m.snapshot(0, Gauges::default()), T0));
        }
        // Core 0: 20 messages in the first 10 s at 2 ms; core 1: 10 at 20 ms.
        for _ in 0..20 {
            a.message_received(2_000);
        }
        for _ in 0..10 {
            b.message_received(20_000);
        }
        a.sample(Sample::of(&a.snapshot(0, Gauges::default()), T0 + 10_000));
        b.sample(Sample::of(&b.snapshot(1, Gauges::default()), T0 + 10_003));
        // Then 5 s more of core 0 only, read live.
        for _ in 0..5 {
            a.message_received(2_000);
        }
        let d = build(&[view(0, &a, 3), view(1, &b, 4)], Vec::new(), T0 + 15_000);
        assert_eq!(d.status.since_start.received, 35);
        assert_eq!(d.status.queue.total, 7);
        let p = &d.series.points;
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].t_ms, T0 + 10_000);
        assert!((p[0].received_per_s - 3.0).abs() < 0.01, "30 messages in 10 s: {}", p[0].received_per_s);
        let p50 = p[0].data_ack_p50_ms.unwrap();
        assert!(p50 > 1.0 && p50 <= 2.5, "two thirds were 2 ms: {p50}");
        let p99 = p[0].data_ack_p99_ms.unwrap();
        assert!(p99 > 10.0 && p99 <= 25.0, "{p99}");
        assert_eq!(p[1].t_ms, T0 + 15_000, "the live slot ends now");
        assert!((p[1].received_per_s - 1.0).abs() < 0.01, "5 in 5 s: {}", p[1].received_per_s);
        assert_eq!(p[1].queue, 7);
        assert_eq!(p[1].relay_delivery_p50_ms, None);
        assert_eq!(d.cores.len(), 2);
        assert!((d.cores[0].received_per_s - 25.0 / 15.0).abs() < 0.01, "{:?}", d.cores[0]);
        assert_eq!(d.cores[1].received, 10);
    }

    #[test]
    fn old_slots_fall_out_of_the_window() {
        let m = CoreMetrics::default();
        m.sample(Sample::of(&m.snapshot(0, Gauges::default()), T0));
        m.sample(Sample::of(&m.snapshot(0, Gauges::default()), T0 + 10_000));
        let d = build(&[view(0, &m, 0)], Vec::new(), T0 + WINDOW_MS + 20_000);
        assert!(d.series.points.iter().all(|p| p.t_ms + WINDOW_MS >= T0 + WINDOW_MS + 20_000), "{:?}", d.series);
    }

    #[test]
    fn newest_errors_first_over_all_cores() {
        use crate::metrics::recent::ErrorKind;
        let (a, b) = (CoreMetrics::default(), CoreMetrics::default());
        a.problem(ErrorKind::Deferred, "x@a.test", "451 4.7.1 later");
        b.problem(ErrorKind::TlsHandshake, "127.0.0.1", "no shared cipher");
        let d = build(&[view(0, &a, 0), view(1, &b, 0)], Vec::new(), T0);
        assert_eq!(d.recent_errors.len(), 2);
        assert!(d.recent_errors[0].at_ms >= d.recent_errors[1].at_ms);
        let tls = d.recent_errors.iter().find(|e| e.kind == ErrorKind::TlsHandshake).unwrap();
        assert_eq!(tls.core, 1);
    }
}
