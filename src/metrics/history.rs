//! The last 15 minutes of one core's figures, for the web status page's
//! plots: a bounded ring of [`Sample`]s, one every [`SAMPLE_EVERY_MS`],
//! each the core's cumulative counters and latency bucket counts at that
//! moment plus its queue depth. Rates and windowed quantiles are the
//! differences of neighbouring samples (see `web::dashboard`).
//!
//! Pure: the sampling task (`Shard::sample_history`) passes the time in.
//! Memory is bounded: [`KEEP`] samples of about 400 bytes per core.

use super::{LatencyCounts, Snapshot};
use std::collections::VecDeque;

/// How often each core takes a sample (aligned to the wall clock, so every
/// core samples at about the same moment).
pub const SAMPLE_EVERY_MS: u64 = 10_000;
/// Samples kept: 15 minutes, plus one to difference the oldest against.
pub const KEEP: usize = 91;

/// One core's cumulative figures at `at_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// Wall-clock time of the sample, Unix ms.
    pub at_ms: u64,
    /// Messages stored and answered 250.
    pub received: u64,
    /// Recipients relayed (remote 2xx).
    pub relayed: u64,
    /// Recipient attempts deferred.
    pub deferred: u64,
    /// Recipients bounced.
    pub bounced: u64,
    /// Recipients stored in local mailboxes.
    pub delivered_local: u64,
    /// Queued message shares, all states (a gauge).
    pub queue: u64,
    /// End of DATA to the 250.
    pub data_ack: LatencyCounts,
    /// Arrival to the remote 2xx.
    pub relay_delivery: LatencyCounts,
}

impl Sample {
    /// The figures of `s`, taken at `at_ms`.
    pub fn of(s: &Snapshot, at_ms: u64) -> Sample {
        let g = &s.gauges;
        Sample {
            at_ms,
            received: s.received,
            relayed: s.relay_delivered,
            deferred: s.relay_deferred,
            bounced: s.relay_bounced,
            delivered_local: s.delivered_local,
            queue: g.queue_ready + g.queue_deferred + g.queue_held + g.queue_inflight,
            data_ack: s.data_ack,
            relay_delivery: s.relay_delivery,
        }
    }
}

/// The ring of one core's samples, oldest first.
#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<Sample>,
}

impl History {
    /// Adds a sample, dropping the oldest beyond [`KEEP`].
    pub fn push(&mut self, s: Sample) {
        if self.samples.len() == KEEP {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.iter().copied().collect()
    }
}

/// Milliseconds until the next multiple of [`SAMPLE_EVERY_MS`] after `now_ms`.
pub fn until_next_sample(now_ms: u64) -> u64 {
    SAMPLE_EVERY_MS - now_ms % SAMPLE_EVERY_MS
}

/// What one core tells the status page: its metrics now, its history and
/// its recent errors. Sent across cores.
#[derive(Debug, Clone)]
pub struct CoreView {
    pub snapshot: Snapshot,
    pub history: Vec<Sample>,
    pub errors: Vec<super::recent::ErrorEvent>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_newest_fifteen_minutes() {
        let mut h = History::default();
        for i in 0..200u64 {
            h.push(Sample { at_ms: i * SAMPLE_EVERY_MS, received: i, ..Sample::default() });
        }
        let s = h.samples();
        assert_eq!(s.len(), KEEP);
        assert_eq!(s[0].received, 200 - KEEP as u64);
        assert_eq!(s.last().map(|s| s.received), Some(199));
        assert_eq!((s.last().unwrap().at_ms - s[0].at_ms) / 1000, 900, "15 minutes from first to last");
    }

    #[test]
    fn samples_align_to_the_wall_clock() {
        assert_eq!(until_next_sample(1_000_000), SAMPLE_EVERY_MS);
        assert_eq!(until_next_sample(1_000_001), SAMPLE_EVERY_MS - 1);
        assert_eq!(until_next_sample(1_009_999), 1);
    }
}
