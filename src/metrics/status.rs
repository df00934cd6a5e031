//! `ringmail status`: the running server at a glance, built from every
//! core's [`Snapshot`]. One struct gives both the text and `--json`; a new
//! figure is a field here (and a line in [`Status::text`]).

use super::{Gauges, Snapshot, PROTOCOLS};
use crate::admin::report::Report;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The summary; see README "JSON output" for the field contract.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub cores: usize,
    pub sessions: Sessions,
    pub queue: QueueStatus,
    /// Messages in local mailboxes.
    pub mailbox_messages: u64,
    pub spool: SpoolStatus,
    pub recovery: RecoveryStatus,
    pub since_start: SinceStart,
}

/// Open sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sessions {
    pub total: u64,
    /// By protocol: smtp, submission, smtps, pop3, pop3s.
    pub by_protocol: BTreeMap<String, u64>,
}

/// Relay queue depth, in message shares (a message's recipients at one
/// domain), by state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueStatus {
    pub total: u64,
    pub ready: u64,
    pub deferred: u64,
    pub held: u64,
    pub in_flight: u64,
    /// Age of the oldest queued share; 0 when the queue is empty.
    pub oldest_age_s: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpoolStatus {
    pub used_bytes: u64,
    pub free_bytes: u64,
    /// New mail is refused (452 4.3.1) while true.
    pub full: bool,
}

/// The spool read behind serving after a start (see README, "Serving while
/// the spool is recovered").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecoveryStatus {
    /// Every core serves its whole spool.
    pub complete: bool,
    pub segments_read: u64,
    pub segments_total: u64,
    /// Cores that have adopted their part (all of them once complete).
    pub cores_recovered: usize,
}

/// Counters since the server started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SinceStart {
    pub received: u64,
    pub delivered_local: u64,
    pub relayed: u64,
    pub deferred: u64,
    pub bounced: u64,
}

impl Status {
    /// Sum the cores' snapshots.
    pub fn from_snapshots(snaps: &[Snapshot]) -> Status {
        let sum = |f: &dyn Fn(&Snapshot) -> u64| snaps.iter().map(f).sum::<u64>();
        let g = |f: &dyn Fn(&Gauges) -> u64| sum(&|s| f(&s.gauges));
        let by_protocol: BTreeMap<String, u64> =
            PROTOCOLS.iter().enumerate().map(|(i, p)| (p.to_string(), sum(&|s| s.sessions[i]))).collect();
        Status {
            cores: snaps.len(),
            sessions: Sessions { total: by_protocol.values().sum(), by_protocol },
            queue: QueueStatus {
                total: g(&|g| g.queue_ready + g.queue_deferred + g.queue_held + g.queue_inflight),
                ready: g(&|g| g.queue_ready),
                deferred: g(&|g| g.queue_deferred),
                held: g(&|g| g.queue_held),
                in_flight: g(&|g| g.queue_inflight),
                oldest_age_s: snaps.iter().map(|s| s.gauges.queue_oldest_age_s).fold(0.0, f64::max).round(),
            },
            mailbox_messages: g(&|g| g.mailbox_messages),
            spool: SpoolStatus {
                used_bytes: g(&|g| g.spool_used_bytes),
                // The same file system for every core: any core's figure.
                free_bytes: snaps.first().map_or(0, |s| s.gauges.spool_free_bytes),
                full: snaps.iter().any(|s| s.gauges.spool_full),
            },
            recovery: {
                let (read, total) = snaps.first().map_or((0, 0), |s| s.gauges.recovery_segments);
                let recovering = snaps.iter().filter(|s| s.gauges.recovering).count();
                RecoveryStatus {
                    complete: recovering == 0,
                    segments_read: read,
                    segments_total: total,
                    cores_recovered: snaps.len() - recovering,
                }
            },
            since_start: SinceStart {
                received: sum(&|s| s.received),
                delivered_local: sum(&|s| s.delivered_local),
                relayed: sum(&|s| s.relay_delivered),
                deferred: sum(&|s| s.relay_deferred),
                bounced: sum(&|s| s.relay_bounced),
            },
        }
    }
}

impl Report for Status {
    fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "cores: {}", self.cores);
        let by_protocol: Vec<String> = PROTOCOLS
            .iter()
            .map(|p| format!("{p} {}", self.sessions.by_protocol.get(*p).copied().unwrap_or(0)))
            .collect();
        let _ = writeln!(out, "sessions: {} ({})", self.sessions.total, by_protocol.join(", "));
        let q = &self.queue;
        let _ = writeln!(
            out,
            "queue: {} (ready {}, deferred {}, held {}, in flight {}); oldest {}s",
            q.total, q.ready, q.deferred, q.held, q.in_flight, q.oldest_age_s
        );
        let _ = writeln!(out, "mailboxes: {} messages", self.mailbox_messages);
        let _ = writeln!(
            out,
            "spool: {} used, {} free{}",
            human_bytes(self.spool.used_bytes),
            human_bytes(self.spool.free_bytes),
            if self.spool.full { ", FULL: new mail refused (452 4.3.1)" } else { "" }
        );
        let r = &self.recovery;
        let _ = if r.complete {
            writeln!(out, "recovery: complete ({} segments read)", r.segments_total)
        } else {
            writeln!(
                out,
                "recovery: in progress: {}/{} segments read, {} of {} cores serving their whole spool (new mail is accepted meanwhile)",
                r.segments_read, r.segments_total, r.cores_recovered, self.cores
            )
        };
        let s = &self.since_start;
        let _ = writeln!(
            out,
            "since start: {} received, {} delivered locally, {} relayed, {} deferred, {} bounced",
            s.received, s.delivered_local, s.relayed, s.deferred, s.bounced
        );
        out
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
