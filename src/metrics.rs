//! Per-core counters and latency histograms, and their Prometheus text.
//!
//! Each core owns one [`CoreMetrics`]: plain `Cell` counters and
//! fixed-bucket latency histograms, bumped on the hot path without locks or
//! atomics. A scrape (GET /metrics, `ringmail status`) asks every core for a
//! [`Snapshot`] over the shard mesh and renders them together, every series
//! per core (label `core`): counters, gauges and Prometheus histograms,
//! which add up across cores and servers with `sum by (le)`.
//! [`process`] adds the process-wide series (`process_*`, build info).
//! [`history`] and [`recent`] keep the last 15 minutes of samples and the
//! latest errors for the web status page.
//!
//! The metric names are a contract with `tuning/grafana-dashboard.json` and
//! `tuning/alerts.yml`.

pub mod history;
mod latency;
pub mod process;
pub mod recent;
mod status;

use crate::outbound::classify::BounceClass;
use crate::outbound::tls_policy::TlsResult;
use latency::Latency;
pub use latency::{LatencyCounts, BOUNDS_US};
pub use status::Status;
use std::cell::Cell;
use std::fmt::Write;

/// Protocols with sessions, in label order (`net::Protocol` maps onto it).
pub const PROTOCOLS: [&str; 5] = ["smtp", "submission", "smtps", "pop3", "pop3s"];

/// Reply classes of our SMTP replies (2xx/4xx/5xx; 3xx are intermediate).
const SMTP_CLASSES: [&str; 3] = ["2xx", "4xx", "5xx"];

/// Reply classes of remote servers, per recipient; `none` = no reply (the
/// connection or the DNS lookup failed).
pub const RELAY_CLASSES: [&str; 4] = ["2xx", "4xx", "5xx", "none"];

/// One core's counters. Only its own executor touches them.
pub struct CoreMetrics {
    received: Cell<u64>,
    smtp_replies: [Cell<u64>; 3],
    delivered_local: Cell<u64>,
    relay_delivered: Cell<u64>,
    relay_deferred: Cell<u64>,
    relay_bounced: Cell<u64>,
    relay_replies: [Cell<u64>; 4],
    /// Recipients relayed, by the TLS of their session (index order of
    /// `TlsResult::ALL`).
    relay_tls: [Cell<u64>; 6],
    /// Final failures by [`BounceClass`] (index order of `BounceClass::ALL`).
    bounces: [Cell<u64>; 9],
    tls_ok: Cell<u64>,
    tls_failed: Cell<u64>,
    auth_ok: Cell<u64>,
    auth_failed: Cell<u64>,
    /// Password checks answered from the login cache / by Argon2id.
    auth_cache: [Cell<u64>; 2],
    sessions: [Cell<u64>; 5],
    /// Connections accepted here and handed to a less busy core.
    handed_over: [Cell<u64>; 5],
    /// Message shares lent to another core (`outbound::lend`).
    relay_lent: Cell<u64>,
    /// End of DATA to the 250, microseconds.
    data_ack: Latency,
    /// Arrival to the remote 2xx, per recipient, microseconds.
    relay_delivery: Latency,
    /// Content filter decisions by (filter, action); the filters are the
    /// configured ones, so the map stays small.
    filter_actions: std::cell::RefCell<std::collections::BTreeMap<(String, &'static str), u64>>,
    /// Samples of the last 15 minutes (web status page).
    history: std::cell::RefCell<history::History>,
    /// The latest deferrals, bounces and TLS failures (web status page).
    recent: std::cell::RefCell<recent::Recent>,
}

impl Default for CoreMetrics {
    fn default() -> CoreMetrics {
        CoreMetrics {
            received: Cell::new(0),
            smtp_replies: Default::default(),
            delivered_local: Cell::new(0),
            relay_delivered: Cell::new(0),
            relay_deferred: Cell::new(0),
            relay_bounced: Cell::new(0),
            relay_replies: Default::default(),
            relay_tls: Default::default(),
            bounces: Default::default(),
            tls_ok: Cell::new(0),
            tls_failed: Cell::new(0),
            auth_ok: Cell::new(0),
            auth_failed: Cell::new(0),
            auth_cache: Default::default(),
            handed_over: Default::default(),
            relay_lent: Cell::new(0),
            sessions: Default::default(),
            data_ack: Latency::default(),
            relay_delivery: Latency::default(),
            filter_actions: Default::default(),
            history: Default::default(),
            recent: Default::default(),
        }
    }
}

fn bump(c: &Cell<u64>, n: u64) {
    c.set(c.get() + n);
}

/// What a relay attempt came to for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayResult {
    Delivered,
    Deferred,
    Bounced,
}

impl CoreMetrics {
    /// A message was stored and answered 250, `ack_us` after its DATA ended.
    pub fn message_received(&self, ack_us: u64) {
        bump(&self.received, 1);
        self.data_ack.record(ack_us);
    }

    /// Count the final reply lines (`NNN ` at a line start) in bytes we are
    /// about to send to an SMTP client.
    pub fn smtp_output(&self, out: &[u8]) {
        for line in out.split(|&b| b == b'\n') {
            if line.len() >= 4 && line[3] == b' ' && line[1].is_ascii_digit() && line[2].is_ascii_digit() {
                match line[0] {
                    b'2' => bump(&self.smtp_replies[0], 1),
                    b'4' => bump(&self.smtp_replies[1], 1),
                    b'5' => bump(&self.smtp_replies[2], 1),
                    _ => {}
                }
            }
        }
    }

    pub fn delivered_local(&self, recipients: u64) {
        bump(&self.delivered_local, recipients);
    }

    /// One recipient's relay outcome; `class` is the first digit of the
    /// remote reply, if there was one; `delay_us` counts from arrival.
    pub fn relay(&self, result: RelayResult, class: Option<u8>, delay_us: u64) {
        match result {
            RelayResult::Delivered => {
                bump(&self.relay_delivered, 1);
                self.relay_delivery.record(delay_us);
            }
            RelayResult::Deferred => bump(&self.relay_deferred, 1),
            RelayResult::Bounced => bump(&self.relay_bounced, 1),
        }
        let i = match class {
            Some(b'2') => 0,
            Some(b'4') => 1,
            Some(b'5') => 2,
            _ => 3,
        };
        bump(&self.relay_replies[i], 1);
    }

    /// One recipient relayed over a session whose TLS was `tls`.
    pub fn relay_tls(&self, tls: TlsResult) {
        if let Some(i) = TlsResult::ALL.iter().position(|&t| t == tls) {
            bump(&self.relay_tls[i], 1);
        }
    }

    /// One recipient failed for good, for the reason `class`.
    pub fn bounce(&self, class: BounceClass) {
        bump(&self.bounces[class.index()], 1);
    }

    pub fn tls_handshake(&self, ok: bool) {
        bump(if ok { &self.tls_ok } else { &self.tls_failed }, 1);
    }

    pub fn auth(&self, ok: bool) {
        bump(if ok { &self.auth_ok } else { &self.auth_failed }, 1);
    }

    /// A password check was answered from the login cache (`hit`) or
    /// needed Argon2id.
    pub fn auth_cache(&self, hit: bool) {
        bump(&self.auth_cache[usize::from(!hit)], 1);
    }

    /// A session of protocol `proto` (index into [`PROTOCOLS`]) opened; the
    /// guard closes it when dropped.
    pub fn session(&self, proto: usize) -> SessionGuard<'_> {
        bump(&self.sessions[proto], 1);
        SessionGuard { metrics: self, proto }
    }

    /// A connection of protocol `proto` accepted here went to another core
    /// (see `net::balance`).
    pub fn handed_over(&self, proto: usize) {
        bump(&self.handed_over[proto], 1);
    }

    /// `shares` of a hot destination's ready mail went to another core.
    pub fn lent(&self, shares: u64) {
        bump(&self.relay_lent, shares);
    }

    /// A content filter (`milter:ADDRESS`) decided `action` about a message.
    pub fn filter_action(&self, filter: &str, action: &'static str) {
        *self.filter_actions.borrow_mut().entry((filter.to_string(), action)).or_default() += 1;
    }

    /// Keep a problem for the status page's recent errors (it is logged by
    /// the caller as usual).
    pub fn problem(&self, kind: recent::ErrorKind, subject: &str, detail: &str) {
        self.recent.borrow_mut().push(recent::ErrorEvent {
            at_ms: crate::clock::now_ms(),
            core: 0, // set by `view`: the counters do not know their core
            kind,
            subject: subject.to_string(),
            detail: detail.to_string(),
        });
    }

    /// Keep a sample in the 15-minute history.
    pub fn sample(&self, s: history::Sample) {
        self.history.borrow_mut().push(s);
    }

    /// What the status page needs of this core: `snapshot` (taken now),
    /// the history and the recent errors.
    pub fn view(&self, core: usize, snapshot: Snapshot) -> history::CoreView {
        let mut errors = self.recent.borrow().events();
        for e in &mut errors {
            e.core = core;
        }
        history::CoreView { snapshot, history: self.history.borrow().samples(), errors }
    }

    /// Sessions open now, all protocols.
    pub fn sessions_open(&self) -> u64 {
        self.sessions.iter().map(Cell::get).sum()
    }

    /// Copy everything for a scrape; `gauges` are read by the caller from
    /// the state they describe (queue, spool, mailboxes).
    pub fn snapshot(&self, core: usize, gauges: Gauges) -> Snapshot {
        let get = |cs: &[Cell<u64>]| cs.iter().map(Cell::get).collect::<Vec<_>>();
        Snapshot {
            core,
            received: self.received.get(),
            smtp_replies: get(&self.smtp_replies),
            delivered_local: self.delivered_local.get(),
            relay_delivered: self.relay_delivered.get(),
            relay_deferred: self.relay_deferred.get(),
            relay_bounced: self.relay_bounced.get(),
            relay_replies: get(&self.relay_replies),
            relay_tls: get(&self.relay_tls),
            bounces: get(&self.bounces),
            tls: [self.tls_ok.get(), self.tls_failed.get()],
            auth: [self.auth_ok.get(), self.auth_failed.get()],
            auth_cache: [self.auth_cache[0].get(), self.auth_cache[1].get()],
            sessions: get(&self.sessions),
            handed_over: get(&self.handed_over),
            relay_lent: self.relay_lent.get(),
            gauges,
            data_ack: self.data_ack.snapshot(),
            relay_delivery: self.relay_delivery.snapshot(),
            filter_actions: self
                .filter_actions
                .borrow()
                .iter()
                .map(|((f, a), n)| (f.clone(), a.to_string(), *n))
                .collect(),
        }
    }
}

/// Keeps a session counted as open until dropped.
pub struct SessionGuard<'a> {
    metrics: &'a CoreMetrics,
    proto: usize,
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        let c = &self.metrics.sessions[self.proto];
        c.set(c.get().saturating_sub(1));
    }
}

/// Point-in-time values a core reads from its own state at a scrape.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Queued message shares by state.
    pub queue_ready: u64,
    pub queue_deferred: u64,
    pub queue_held: u64,
    pub queue_inflight: u64,
    /// Age of the oldest queued message on this core, seconds (0 if none).
    pub queue_oldest_age_s: f64,
    /// Messages in the mailboxes this core owns.
    pub mailbox_messages: u64,
    /// Bytes of segment files in this core's spool dir.
    pub spool_used_bytes: u64,
    /// Spool writer counters.
    pub spool_syncs: u64,
    pub spool_records: u64,
    pub spool_bytes_written: u64,
    pub spool_failed_batches: u64,
    /// Free bytes on the spool's file system (the same on every core).
    pub spool_free_bytes: u64,
    /// The spool refuses new mail (disk or `spool.max_size` full).
    pub spool_full: bool,
    /// This core has not yet adopted the spool recovered behind it.
    pub recovering: bool,
    /// Segments the recovery thread has read, of how many (the same on
    /// every core).
    pub recovery_segments: (u64, u64),
}

/// One core's metrics at a scrape. Sent across cores.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub core: usize,
    pub received: u64,
    pub smtp_replies: Vec<u64>,
    pub delivered_local: u64,
    pub relay_delivered: u64,
    pub relay_deferred: u64,
    pub relay_bounced: u64,
    pub relay_replies: Vec<u64>,
    /// Per [`TlsResult::ALL`].
    pub relay_tls: Vec<u64>,
    /// Per [`BounceClass::ALL`].
    pub bounces: Vec<u64>,
    pub tls: [u64; 2],
    pub auth: [u64; 2],
    /// Password checks from the login cache, and by Argon2id.
    pub auth_cache: [u64; 2],
    pub sessions: Vec<u64>,
    pub handed_over: Vec<u64>,
    pub relay_lent: u64,
    pub gauges: Gauges,
    pub data_ack: LatencyCounts,
    pub relay_delivery: LatencyCounts,
    /// (filter, action, count) for content filter decisions.
    pub filter_actions: Vec<(String, String, u64)>,
}

/// Render every core's snapshot as Prometheus text exposition (0.0.4).
pub fn render(snaps: &[Snapshot]) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let _ = writeln!(out, "# HELP ringmail_cores Executors (cores) serving.\n# TYPE ringmail_cores gauge");
    let _ = writeln!(out, "ringmail_cores {}", snaps.len());
    let per_core = |out: &mut String, name: &str, kind: &str, help: &str, value: &dyn Fn(&Snapshot) -> f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in snaps {
            let _ = writeln!(out, "{name}{{core=\"{}\"}} {}", s.core, value(s));
        }
    };
    let labelled = |out: &mut String,
                    name: &str,
                    kind: &str,
                    help: &str,
                    label: &str,
                    values: &[&str],
                    value: &dyn Fn(&Snapshot, usize) -> u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in snaps {
            for (i, v) in values.iter().enumerate() {
                let _ = writeln!(out, "{name}{{core=\"{}\",{label}=\"{v}\"}} {}", s.core, value(s, i));
            }
        }
    };
    per_core(&mut out, "ringmail_smtp_messages_received_total", "counter", "Messages stored and answered 250.", &|s| {
        s.received as f64
    });
    labelled(
        &mut out,
        "ringmail_smtp_replies_total",
        "counter",
        "Final SMTP replies sent to clients, by class.",
        "class",
        &SMTP_CLASSES,
        &|s, i| s.smtp_replies[i],
    );
    per_core(&mut out, "ringmail_delivered_local_total", "counter", "Recipients stored in local mailboxes.", &|s| {
        s.delivered_local as f64
    });
    per_core(&mut out, "ringmail_relay_delivered_total", "counter", "Recipients relayed (remote 2xx).", &|s| {
        s.relay_delivered as f64
    });
    per_core(
        &mut out,
        "ringmail_relay_deferred_total",
        "counter",
        "Recipient delivery attempts deferred for a retry.",
        &|s| s.relay_deferred as f64,
    );
    per_core(
        &mut out,
        "ringmail_relay_bounced_total",
        "counter",
        "Recipients bounced (5xx, no route, expired).",
        &|s| s.relay_bounced as f64,
    );
    labelled(
        &mut out,
        "ringmail_relay_replies_total",
        "counter",
        "Remote replies per recipient by class (none: no connection or DNS failure).",
        "class",
        &RELAY_CLASSES,
        &|s, i| s.relay_replies[i],
    );
    let tls_results: Vec<&str> = TlsResult::ALL.iter().map(|t| t.as_str()).collect();
    labelled(
        &mut out,
        "ringmail_relay_tls_total",
        "counter",
        "Recipients relayed (remote 2xx), by the TLS of the session (tls= in the logs).",
        "tls",
        &tls_results,
        &|s, i| s.relay_tls.get(i).copied().unwrap_or(0),
    );
    labelled(
        &mut out,
        "ringmail_tls_handshakes_total",
        "counter",
        "Server TLS handshakes (STARTTLS, STLS, implicit).",
        "result",
        &["ok", "failed"],
        &|s, i| s.tls[i],
    );
    let bounce_classes: Vec<&str> = BounceClass::ALL.iter().map(|c| c.as_str()).collect();
    labelled(
        &mut out,
        "ringmail_bounces_total",
        "counter",
        "Recipients that failed for good (5xx, no route, expired), by bounce class.",
        "class",
        &bounce_classes,
        &|s, i| s.bounces.get(i).copied().unwrap_or(0),
    );
    labelled(
        &mut out,
        "ringmail_auth_total",
        "counter",
        "Logins (SMTP AUTH, POP3).",
        "result",
        &["success", "failure"],
        &|s, i| s.auth[i],
    );
    labelled(
        &mut out,
        "ringmail_auth_cache_total",
        "counter",
        "Password checks answered from the login cache (hit) or by Argon2id (miss).",
        "result",
        &["hit", "miss"],
        &|s, i| s.auth_cache[i],
    );
    per_core(&mut out, "ringmail_spool_syncs_total", "counter", "Group commits (fdatasync) of the spool.", &|s| {
        s.gauges.spool_syncs as f64
    });
    per_core(&mut out, "ringmail_spool_records_total", "counter", "Records appended to the spool.", &|s| {
        s.gauges.spool_records as f64
    });
    per_core(&mut out, "ringmail_spool_bytes_written_total", "counter", "Bytes appended to the spool.", &|s| {
        s.gauges.spool_bytes_written as f64
    });
    per_core(
        &mut out,
        "ringmail_spool_failed_batches_total",
        "counter",
        "Spool write batches that failed (their messages were refused).",
        &|s| s.gauges.spool_failed_batches as f64,
    );
    labelled(
        &mut out,
        "ringmail_sessions_open",
        "gauge",
        "Client sessions open, by protocol.",
        "proto",
        &PROTOCOLS,
        &|s, i| s.sessions[i],
    );
    labelled(
        &mut out,
        "ringmail_sessions_handed_over_total",
        "counter",
        "Connections this core accepted and handed to a core with fewer sessions of the protocol.",
        "proto",
        &PROTOCOLS,
        &|s, i| s.handed_over[i],
    );
    per_core(
        &mut out,
        "ringmail_relay_lent_total",
        "counter",
        "Message shares of a hot destination this core lent to a core with a smaller active window.",
        &|s| s.relay_lent as f64,
    );
    let states = ["ready", "deferred", "held", "inflight"];
    labelled(
        &mut out,
        "ringmail_queue_messages",
        "gauge",
        "Queued message shares (one per message and destination domain) by state.",
        "state",
        &states,
        &|s, i| {
            let g = &s.gauges;
            [g.queue_ready, g.queue_deferred, g.queue_held, g.queue_inflight][i]
        },
    );
    per_core(&mut out, "ringmail_queue_oldest_age_seconds", "gauge", "Age of the oldest queued message.", &|s| {
        s.gauges.queue_oldest_age_s
    });
    per_core(&mut out, "ringmail_mailbox_messages", "gauge", "Messages in local mailboxes.", &|s| {
        s.gauges.mailbox_messages as f64
    });
    per_core(&mut out, "ringmail_spool_used_bytes", "gauge", "Bytes of spool segment files.", &|s| {
        s.gauges.spool_used_bytes as f64
    });
    per_core(&mut out, "ringmail_spool_full", "gauge", "1 while the spool refuses new mail (452 4.3.1).", &|s| {
        u8::from(s.gauges.spool_full) as f64
    });
    per_core(
        &mut out,
        "ringmail_recovering",
        "gauge",
        "1 until this core has adopted the spool recovered behind it after a start.",
        &|s| u8::from(s.gauges.recovering) as f64,
    );
    let _ = writeln!(
        out,
        "# HELP ringmail_filter_actions_total Content filter (milter) decisions, by filter and action.\n# TYPE ringmail_filter_actions_total counter"
    );
    for s in snaps {
        for (filter, action, n) in &s.filter_actions {
            let _ = writeln!(
                out,
                "ringmail_filter_actions_total{{core=\"{}\",filter=\"{}\",action=\"{action}\"}} {n}",
                s.core,
                label_value(filter)
            );
        }
    }
    let free = snaps.first().map_or(0, |s| s.gauges.spool_free_bytes);
    let _ = writeln!(out, "# HELP ringmail_spool_free_bytes Free bytes on the spool's file system.\n# TYPE ringmail_spool_free_bytes gauge\nringmail_spool_free_bytes {free}");
    let per_core_latency = |f: &dyn Fn(&Snapshot) -> LatencyCounts| {
        snaps.iter().map(|s| (format!("core=\"{}\"", s.core), f(s))).collect::<Vec<_>>()
    };
    latency::render(
        &mut out,
        "ringmail_smtp_data_ack_seconds",
        "From the end of DATA to the 250 (the group commit covering the message).",
        &per_core_latency(&|s| s.data_ack),
    );
    latency::render(
        &mut out,
        "ringmail_relay_delivery_seconds",
        "From arrival to the remote server's 2xx, per recipient.",
        &per_core_latency(&|s| s.relay_delivery),
    );
    out
}

/// A label value as the exposition format wants it (RFC-less, see the
/// Prometheus text format): backslash, quote and newline escaped.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(core: usize, m: &CoreMetrics) -> Snapshot {
        m.snapshot(core, Gauges { queue_ready: 2, spool_free_bytes: 1000, ..Gauges::default() })
    }

    #[test]
    fn counters_and_histograms_render_per_core() {
        let a = CoreMetrics::default();
        let b = CoreMetrics::default();
        a.message_received(1000);
        a.message_received(3000);
        b.message_received(2000);
        b.relay(RelayResult::Delivered, Some(b'2'), 5_000_000);
        b.relay(RelayResult::Deferred, Some(b'4'), 0);
        b.relay(RelayResult::Deferred, None, 0);
        b.bounce(BounceClass::InvalidRecipient);
        let text = render(&[snap(0, &a), snap(1, &b)]);
        assert!(text.contains("ringmail_bounces_total{core=\"1\",class=\"invalid-recipient\"} 1\n"), "{text}");
        assert!(text.contains("ringmail_bounces_total{core=\"0\",class=\"policy-block\"} 0\n"), "{text}");
        assert!(text.contains("ringmail_smtp_messages_received_total{core=\"0\"} 2\n"), "{text}");
        assert!(text.contains("ringmail_smtp_messages_received_total{core=\"1\"} 1\n"), "{text}");
        assert!(text.contains("ringmail_relay_replies_total{core=\"1\",class=\"none\"} 1\n"));
        assert!(text.contains("ringmail_relay_replies_total{core=\"1\",class=\"4xx\"} 1\n"));
        assert!(text.contains("ringmail_relay_deferred_total{core=\"1\"} 2\n"));
        assert!(text.contains("ringmail_smtp_data_ack_seconds_count{core=\"0\"} 2\n"), "{text}");
        assert!(text.contains("ringmail_smtp_data_ack_seconds_count{core=\"1\"} 1\n"), "{text}");
        assert!(text.contains("ringmail_relay_delivery_seconds_count{core=\"1\"} 1\n"));
        assert!(text.contains("ringmail_queue_messages{core=\"0\",state=\"ready\"} 2\n"));
        assert!(text.contains("ringmail_spool_free_bytes 1000\n"));
        // 1 and 3 ms on core 0: one in (0.5 ms, 1 ms], one in (2.5 ms, 5 ms].
        assert!(text.contains("ringmail_smtp_data_ack_seconds_bucket{core=\"0\",le=\"0.001\"} 1\n"), "{text}");
        assert!(text.contains("ringmail_smtp_data_ack_seconds_bucket{core=\"0\",le=\"0.0025\"} 1\n"), "{text}");
        assert!(text.contains("ringmail_smtp_data_ack_seconds_bucket{core=\"0\",le=\"0.005\"} 2\n"), "{text}");
        assert!(text.contains("ringmail_smtp_data_ack_seconds_sum{core=\"0\"} 0.004\n"), "{text}");
        // The 5 s delivery is in the 5 s bucket, not the 2.5 s one.
        assert!(text.contains("ringmail_relay_delivery_seconds_bucket{core=\"1\",le=\"2.5\"} 0\n"), "{text}");
        assert!(text.contains("ringmail_relay_delivery_seconds_bucket{core=\"1\",le=\"5\"} 1\n"), "{text}");
        assert!(!text.contains("quantile"), "no summaries left: {text}");
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').expect(line);
            value.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        }
    }

    #[test]
    fn only_final_reply_lines_are_counted() {
        let m = CoreMetrics::default();
        m.smtp_output(b"250-host\r\n250-PIPELINING\r\n250 SIZE 10\r\n354 go\r\n550 5.1.1 no\r\n451 4.3.0 later\r\n");
        let s = snap(0, &m);
        assert_eq!(s.smtp_replies, vec![1, 1, 1]);
    }

    #[test]
    fn session_guard_counts_open_sessions() {
        let m = CoreMetrics::default();
        let g1 = m.session(0);
        let g2 = m.session(3);
        assert_eq!(m.sessions_open(), 2);
        drop(g1);
        assert_eq!(m.sessions_open(), 1);
        drop(g2);
        assert_eq!(m.sessions_open(), 0);
    }

    #[test]
    fn status_sums_the_cores() {
        let a = CoreMetrics::default();
        a.message_received(10);
        let _s = a.session(1);
        let text = crate::admin::report::Report::text(&Status::from_snapshots(&[snap(0, &a), snap(1, &a)]));
        assert!(text.contains("cores: 2"), "{text}");
        assert!(text.contains("sessions: 2 (smtp 0, submission 2"), "{text}");
        assert!(text.contains("queue: 4 (ready 4"), "{text}");
        assert!(text.contains("2 received"), "{text}");
    }
}
