//! `ringmail trace QUEUE_ID|MESSAGE_ID`: a message's whole history from
//! the spool: how it arrived, where each recipient was routed, every
//! recorded delivery state (attempts, deferrals with the remote reply,
//! holds), how each recipient ended, and the bounces or delay notices it
//! caused (they carry `X-Ringmail-Queue-ID`), and what the filters
//! decided (`trace_filters`). The log has the same queue
//! id on every line for the live view; the spool is the durable record.

use super::format_time;
use super::report::Report;
pub use super::trace_filters::FilterNote;
use crate::spool::{
    decode_any_message, decode_moved, decode_recipient_state, decode_tombstone_via, walk, Outcome, QueueId,
    RecipientState, RecordKind, Route, SpoolError, SpoolRef,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// What is looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Needle {
    QueueId(QueueId),
    /// Without angle brackets.
    MessageId(String),
}

impl Needle {
    /// A 16-hex-digit queue id, else a Message-ID (`<...>` optional).
    pub fn parse(s: &str) -> Needle {
        match s.parse::<QueueId>() {
            Ok(q) => Needle::QueueId(q),
            Err(_) => Needle::MessageId(s.trim().trim_start_matches('<').trim_end_matches('>').to_string()),
        }
    }
}

/// One message found, with everything recorded about it.
struct Found {
    at: SpoolRef,
    queue_id: QueueId,
    received_at_ms: u64,
    client: String,
    helo: String,
    sender: String,
    size: usize,
    message_id: Option<String>,
    recipients: Vec<(String, Route)>,
    /// recipient index -> states in seq order.
    states: BTreeMap<u16, Vec<RecipientState>>,
    /// Where compaction copied it from (older places, oldest first).
    moved_from: Vec<SpoolRef>,
    /// recipient index -> how it ended (None: final before a compaction
    /// copied the message, the original record is gone).
    outcomes: BTreeMap<u16, Option<Outcome>>,
    /// recipient index -> the host that took it (relayed recipients).
    via: BTreeMap<u16, String>,
    /// Bounces and delay notices about it: (queue id, to, subject).
    notices: Vec<(QueueId, String, String)>,
    /// Recipient address -> bounce class, from its bounces'
    /// `X-Ringmail-Bounce-Class` fields.
    classes: BTreeMap<String, String>,
    /// The filter fields of the stored message.
    filters: Vec<FilterNote>,
}

/// The history of every message matching `needle`; an error if none is
/// in the spool.
pub fn trace(spool_root: &Path, needle: &Needle) -> Result<Trace, TraceError> {
    let mut found: Vec<Found> = Vec::new();
    let mut notices: Vec<(String, QueueId, String, String)> = Vec::new();
    // (original queue id, recipient, class) from bounces.
    let mut classes: Vec<(String, String, String)> = Vec::new();
    // Pass 1: the messages themselves, and notices naming a queue id.
    let mut moves: Vec<(SpoolRef, SpoolRef)> = Vec::new(); // (new, old)
    walk::for_each_record(spool_root, |at, kind, payload| {
        if kind == RecordKind::Moved {
            if let Ok(m) = decode_moved(payload) {
                moves.push((at, m.old));
            }
        }
        let Some(m) = decode_any_message(kind, payload) else { return };
        let message_id = crate::message::message_id(m.body);
        let hit = match needle {
            Needle::QueueId(q) => m.queue_id == *q,
            Needle::MessageId(id) => message_id.as_deref() == Some(id.as_str()),
        };
        if m.sender.is_empty() {
            // Our DSNs carry it in the delivery-status part, not the top
            // header section.
            if let Some(orig) =
                crate::message::header(m.body, "X-Ringmail-Queue-ID", 64).or_else(|| dsn_queue_id(m.body))
            {
                let to = m.recipients.iter().map(|r| r.address.as_str()).collect::<Vec<_>>().join(",");
                let subject = crate::message::header(m.body, "Subject", 200).unwrap_or_default();
                for (rcpt, class) in bounce_classes(m.body) {
                    classes.push((orig.clone(), rcpt, class));
                }
                notices.push((orig, m.queue_id, to, subject));
            }
        }
        if hit {
            found.push(Found {
                at,
                queue_id: m.queue_id,
                received_at_ms: m.received_at_ms,
                client: m.client,
                helo: m.helo,
                sender: m.sender,
                size: m.body.len(),
                message_id,
                recipients: m.recipients.into_iter().map(|r| (r.address, r.route)).collect(),
                states: BTreeMap::new(),
                moved_from: Vec::new(),
                outcomes: BTreeMap::new(),
                via: BTreeMap::new(),
                notices: Vec::new(),
                classes: BTreeMap::new(),
                filters: super::trace_filters::from_message(m.body),
            });
        }
    })?;
    // A copy that compaction superseded is the same message: follow each
    // message's moves back, and drop the older copies as separate finds.
    let old_of: std::collections::HashMap<SpoolRef, SpoolRef> = moves.iter().copied().collect();
    for f in &mut found {
        let mut at = f.at;
        while let Some(&old) = old_of.get(&at) {
            if f.moved_from.contains(&old) || f.moved_from.len() >= 64 {
                break;
            }
            f.moved_from.insert(0, old);
            at = old;
        }
    }
    let older: std::collections::HashSet<SpoolRef> = found.iter().flat_map(|f| f.moved_from.iter().copied()).collect();
    found.retain(|f| !older.contains(&f.at));
    if found.is_empty() {
        return Err(TraceError::NotFound(match needle {
            Needle::QueueId(q) => format!("queue id {q}"),
            Needle::MessageId(id) => format!("message-id <{id}>"),
        }));
    }
    // Pass 2: the states and outcomes recorded for them.
    let is = |f: &Found, at: SpoolRef| f.at == at || f.moved_from.contains(&at);
    walk::for_each_record(spool_root, |at, kind, payload| match kind {
        RecordKind::Tombstone => {
            if let Ok((t, via)) = decode_tombstone_via(payload) {
                if let Some(f) = found.iter_mut().find(|f| is(f, t.target)) {
                    f.outcomes.insert(t.recipient, Some(t.outcome));
                    if let Some(via) = via {
                        f.via.insert(t.recipient, via.to_string());
                    }
                }
            }
        }
        RecordKind::RecipientState => {
            if let Ok(s) = decode_recipient_state(payload) {
                if let Some(f) = found.iter_mut().find(|f| is(f, s.target)) {
                    f.states.entry(s.recipient).or_default().push(s);
                }
            }
        }
        RecordKind::Moved => {
            if let Ok(m) = decode_moved(payload) {
                if let Some(f) = found.iter_mut().find(|f| is(f, at)) {
                    for d in m.done {
                        f.outcomes.entry(d).or_insert(None);
                    }
                }
            }
        }
        RecordKind::Message | RecordKind::Checkpoint | RecordKind::Suppression => {}
    })?;
    for f in &mut found {
        let id = f.queue_id.to_string();
        f.notices =
            notices.iter().filter(|(orig, ..)| *orig == id).map(|(_, q, to, s)| (*q, to.clone(), s.clone())).collect();
        f.classes = classes
            .iter()
            .filter(|(orig, ..)| *orig == id)
            .map(|(_, rcpt, class)| (rcpt.to_ascii_lowercase(), class.clone()))
            .collect();
        for states in f.states.values_mut() {
            states.sort_by_key(|s| s.seq);
        }
    }
    Ok(Trace { messages: found.iter().map(traced).collect() })
}

impl Trace {
    /// Add the milter decisions `log` (the server's log text) has about
    /// each message found.
    pub fn add_log(&mut self, log: &str) {
        for m in &mut self.messages {
            m.filters.extend(super::trace_filters::from_log(log, &m.queue_id));
        }
    }
}

/// `ringmail trace`'s answer (text and `--json`, see `admin::report`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trace {
    /// Every message found (one Message-ID can name several).
    pub messages: Vec<TracedMessage>,
}

/// One message's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TracedMessage {
    pub queue_id: String,
    /// Without angle brackets; null when it has none.
    pub message_id: Option<String>,
    pub received_ms: u64,
    /// The client's address and its HELO name.
    pub client: String,
    pub helo: String,
    /// The envelope sender; "" for the null sender.
    pub sender: String,
    pub size: usize,
    /// Where its record is (`DIR:SEGMENT:OFFSET`, the last two in hex).
    pub spool: String,
    /// Older places compaction copied it from, oldest first.
    pub moved_from: Vec<String>,
    pub recipients: Vec<TracedRecipient>,
    /// Bounces and delay notices about it.
    pub notices: Vec<Notice>,
    /// What the filters decided: the fields they left in the message and
    /// (with `--log`) the milter decisions logged under its queue id.
    pub filters: Vec<FilterNote>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TracedRecipient {
    pub address: String,
    /// "local" (a mailbox here) or "relay".
    pub route: &'static str,
    /// The user (local) or the domain (relay).
    pub destination: String,
    /// Every recorded delivery state, oldest first.
    pub states: Vec<TracedState>,
    pub status: TraceStatus,
    /// The bounce class its bounce gave, if it bounced.
    pub bounce_class: Option<String>,
    /// The host that took it, as the logs name it (relayed and delivered).
    pub via: Option<String>,
    /// What the session to that host was (`dane-verified`, `sts-enforced`,
    /// `verified`, `encrypted`, `opportunistic`, `none`), as `tls=` in the
    /// logs; null when not recorded (delivered before it was).
    pub tls: Option<String>,
    /// Why the TLS requirement was what it was, as `tls_basis=`.
    pub tls_basis: Option<String>,
}

/// A tombstone's `via` as the relay writes it, `HOST tls=RESULT
/// tls_basis=WHY`, into its three parts (older tombstones hold the host
/// only).
fn split_via(via: &str) -> (String, Option<String>, Option<String>) {
    let Some(at) = via.rfind(" tls=") else { return (via.to_string(), None, None) };
    let (host, rest) = (&via[..at], &via[at + " tls=".len()..]);
    match rest.split_once(" tls_basis=") {
        Some((tls, basis)) => (host.to_string(), Some(tls.to_string()), Some(basis.to_string())),
        None => (host.to_string(), Some(rest.to_string()), None),
    }
}

/// One recorded delivery state of a recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TracedState {
    /// When it was recorded.
    pub at_ms: u64,
    pub attempts: u32,
    pub held: bool,
    /// The next attempt; null when none was scheduled.
    pub next_attempt_ms: Option<u64>,
    /// A delay notice was sent.
    pub warned: bool,
    pub last_reply: Option<String>,
}

/// How a recipient ended, or that it has not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceStatus {
    Delivered,
    Bounced,
    Expired,
    /// Delivered to the mailbox, since deleted from it.
    DeletedFromMailbox,
    /// Deleted from the queue by the operator.
    DeletedFromQueue,
    /// Final, recorded before a spool compaction copied the message.
    Final,
    /// Delivered and still in the mailbox.
    InMailbox,
    /// Still queued.
    Queued,
}

impl TraceStatus {
    fn text(self) -> &'static str {
        match self {
            TraceStatus::Delivered => "delivered",
            TraceStatus::Bounced => "bounced (sender notified)",
            TraceStatus::Expired => "expired in the queue (sender notified)",
            TraceStatus::DeletedFromMailbox => "delivered; since deleted from the mailbox",
            TraceStatus::DeletedFromQueue => "deleted from the queue by the operator",
            TraceStatus::Final => "final (recorded before a spool compaction)",
            TraceStatus::InMailbox => "delivered; in the mailbox",
            TraceStatus::Queued => "queued (not final yet)",
        }
    }
}

/// A bounce or delay notice the message caused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    pub queue_id: String,
    pub to: String,
    pub subject: String,
}

fn traced(f: &Found) -> TracedMessage {
    let recipients = f
        .recipients
        .iter()
        .enumerate()
        .map(|(i, (address, route))| {
            let i = i as u16;
            let (route, destination, local) = match route {
                Route::Local { user } => ("local", user.clone(), true),
                Route::Remote { domain } => ("relay", domain.clone(), false),
            };
            let status = match (f.outcomes.get(&i), local) {
                (Some(Some(Outcome::Delivered)), _) => TraceStatus::Delivered,
                (Some(Some(Outcome::Bounced)), _) => TraceStatus::Bounced,
                (Some(Some(Outcome::Expired)), _) => TraceStatus::Expired,
                (Some(Some(Outcome::Deleted)), true) => TraceStatus::DeletedFromMailbox,
                (Some(Some(Outcome::Deleted)), false) => TraceStatus::DeletedFromQueue,
                (Some(None), _) => TraceStatus::Final,
                (None, true) => TraceStatus::InMailbox,
                (None, false) => TraceStatus::Queued,
            };
            let (via, tls, tls_basis) = match f.via.get(&i) {
                Some(v) => {
                    let (host, tls, basis) = split_via(v);
                    (Some(host), tls, basis)
                }
                None => (None, None, None),
            };
            TracedRecipient {
                address: address.clone(),
                route,
                destination,
                states: f
                    .states
                    .get(&i)
                    .into_iter()
                    .flatten()
                    .map(|s| TracedState {
                        // seq is at least the time of writing in microseconds.
                        at_ms: s.seq / 1000,
                        attempts: s.attempts,
                        held: s.held,
                        next_attempt_ms: (s.next_attempt_ms > 0).then_some(s.next_attempt_ms),
                        warned: s.warned,
                        last_reply: (!s.last_error.is_empty()).then(|| s.last_error.clone()),
                    })
                    .collect(),
                status,
                bounce_class: f.classes.get(&address.to_ascii_lowercase()).cloned(),
                via,
                tls,
                tls_basis,
            }
        })
        .collect();
    TracedMessage {
        queue_id: f.queue_id.to_string(),
        message_id: f.message_id.clone(),
        received_ms: f.received_at_ms,
        client: f.client.clone(),
        helo: f.helo.clone(),
        sender: f.sender.clone(),
        size: f.size,
        spool: f.at.to_string(),
        moved_from: f.moved_from.iter().map(ToString::to_string).collect(),
        recipients,
        notices: f
            .notices
            .iter()
            .map(|(q, to, subject)| Notice { queue_id: q.to_string(), to: to.clone(), subject: subject.clone() })
            .collect(),
        filters: f.filters.clone(),
    }
}

impl Report for Trace {
    fn text(&self) -> String {
        self.messages.iter().map(render).collect::<Vec<_>>().join("\n")
    }
}

fn render(f: &TracedMessage) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "queue id {}  message-id <{}>", f.queue_id, f.message_id.as_deref().unwrap_or(""));
    let _ = writeln!(
        out,
        "  {}  received from {} (helo {}) from=<{}> size={} spool={}",
        format_time(f.received_ms),
        f.client,
        f.helo,
        f.sender.trim_matches(['<', '>']),
        f.size,
        f.spool
    );
    if !f.moved_from.is_empty() {
        let _ = writeln!(out, "  moved by spool compaction from {}", f.moved_from.join(", "));
    }
    for n in &f.filters {
        let _ = writeln!(out, "  filter ({}): {}", n.source, n.text);
    }
    for r in &f.recipients {
        let route = match r.route {
            "local" => format!("local mailbox {}", r.destination),
            _ => format!("relay to {}", r.destination),
        };
        let _ = writeln!(out, "  to=<{}> ({route})", r.address);
        for s in &r.states {
            let mut line = format!("    {}  attempts={}", format_time(s.at_ms), s.attempts);
            if s.held {
                line.push_str(" held by the operator");
            } else if let Some(next) = s.next_attempt_ms {
                let _ = write!(line, " deferred until {}", format_time(next));
            }
            if s.warned {
                line.push_str(" (delay notice sent)");
            }
            if let Some(e) = &s.last_reply {
                let _ = write!(line, " last error: {e}");
            }
            let _ = writeln!(out, "{line}");
        }
        let mut status = format!("    status: {}", r.status.text());
        if let Some(via) = &r.via {
            let _ = write!(status, " via {via}");
        }
        if let Some(tls) = &r.tls {
            let _ = write!(status, " tls={tls}");
        }
        if let Some(basis) = &r.tls_basis {
            let _ = write!(status, " tls_basis={basis}");
        }
        if let Some(class) = &r.bounce_class {
            let _ = write!(status, " class={class}");
        }
        let _ = writeln!(out, "{status}");
    }
    for n in &f.notices {
        let _ = writeln!(out, "  notice {} to=<{}>: {}", n.queue_id, n.to, n.subject);
    }
    out
}

/// The `X-Ringmail-Queue-ID` field of a DSN's delivery-status part.
fn dsn_queue_id(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let id = text.lines().find_map(|l| l.strip_prefix("X-Ringmail-Queue-ID:"))?;
    Some(id.trim().chars().filter(|c| c.is_ascii_alphanumeric()).take(64).collect())
}

/// (recipient, class) of each per-recipient block of a DSN that carries an
/// `X-Ringmail-Bounce-Class` field.
fn bounce_classes(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    let mut out = Vec::new();
    let mut recipient = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("Final-Recipient:") {
            recipient = Some(v.rsplit(';').next().unwrap_or("").trim().to_string());
        } else if let Some(v) = line.strip_prefix("X-Ringmail-Bounce-Class:") {
            if let Some(r) = recipient.take() {
                out.push((r, v.trim().to_string()));
            }
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("no message with {0} in the spool (delivered mail stays until its segment is reclaimed)")]
    NotFound(String),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

#[cfg(test)]
mod tests {
    #[test]
    fn via_splits_into_host_tls_and_basis() {
        assert_eq!(super::split_via("mx.test[127.0.0.1:25]"), ("mx.test[127.0.0.1:25]".into(), None, None));
        assert_eq!(
            super::split_via("mx.test[127.0.0.1:25] tls=dane-verified tls_basis=dane:3 1 1"),
            ("mx.test[127.0.0.1:25]".into(), Some("dane-verified".into()), Some("dane:3 1 1".into()))
        );
    }
}
