//! The recovered spool split into each core's part (see `recovery`): every
//! live recipient goes to the core that owns it, local ones as mailbox
//! entries, relayed ones as compact queue shares (`queue::Adopted`: each
//! destination and last error listed once per core, no address kept).
//!
//! Messages a checkpoint held are read in place from its envelope bytes
//! (`spool::recovery_held`), so a restart at a large backlog allocates no
//! string per queued message; those decoded from the log after the cut
//! take the same path.

use super::owner;
use super::recovery::Adoption;
use crate::mailbox::{MailboxEntry, Trace};
use crate::queue::{Adopted, Dest, Share};
use crate::spool::envelope_view::RouteView;
use crate::spool::recovery_held::LiveState;
use crate::spool::{self, QueueId, RecipientState, Route, SpoolRef};
use std::collections::HashMap;
use std::sync::Arc;

/// Route every live recipient to the core that owns it; relayed shares
/// leave from the egress pool their sender selects under `relay`.
pub(super) fn distribute(mut recovered: spool::Recovered, cores: usize, relay: &crate::config::Relay) -> Vec<Adoption> {
    let live = recovered.live_count();
    let carried = Arc::new(std::mem::take(&mut recovered.carried));
    let ledgers = recovered.ledger.split(cores, |dir| owner::dir_owner(dir, cores));
    let mut parts: Vec<Part<'_>> =
        ledgers.into_iter().map(|ledger| Part::new(ledger, recovered.suppressions.clone(), live)).collect();
    let mut remote = Vec::new();
    for m in &recovered.messages {
        let recipients = m.recipients.iter().map(|(i, r)| {
            let route = match &r.route {
                Route::Local { user } => RouteView::Local { user },
                Route::Remote { domain } => RouteView::Remote { domain },
            };
            (*i, r.address.as_str(), route)
        });
        let state = |i: u16| m.states.iter().find(|(j, _)| *j == i).map(|(_, s)| StateRef::from(s));
        let msg = Message {
            at: m.at,
            queue_id: m.queue_id,
            received_at_ms: m.received_at_ms,
            body_len: m.body_len,
            sender: &m.sender,
            client: &m.client,
        };
        route(&msg, recipients, state, &mut parts, &mut remote, relay);
    }
    let held = &recovered.held;
    for (h, states) in held.iter() {
        // Parsed when recovery held it: always there.
        let Some(envelope) = held.envelope(h) else { continue };
        let recipients = envelope.recipients().filter(|(i, _, _)| h.live.contains(*i));
        let state = |i: u16| states.iter().find(|s| s.recipient == i).map(StateRef::from);
        let msg = Message {
            at: h.at,
            queue_id: envelope.queue_id,
            received_at_ms: envelope.received_at_ms,
            body_len: h.body_len,
            sender: envelope.sender,
            client: envelope.client,
        };
        route(&msg, recipients, state, &mut parts, &mut remote, relay);
    }
    parts.into_iter().map(|p| p.finish(&carried)).collect()
}

/// What routing needs of a live message.
struct Message<'a> {
    at: SpoolRef,
    queue_id: QueueId,
    received_at_ms: u64,
    body_len: u64,
    sender: &'a str,
    client: &'a str,
}

/// The latest state of a recipient, borrowed from recovery's output.
#[derive(Clone, Copy)]
struct StateRef<'a> {
    seq: u64,
    attempts: u32,
    next_attempt_ms: u64,
    warned: bool,
    held: bool,
    last_error: &'a str,
}

impl<'a> From<&'a RecipientState> for StateRef<'a> {
    fn from(s: &'a RecipientState) -> StateRef<'a> {
        let (seq, attempts, next_attempt_ms, warned, held) = (s.seq, s.attempts, s.next_attempt_ms, s.warned, s.held);
        StateRef { seq, attempts, next_attempt_ms, warned, held, last_error: &s.last_error }
    }
}

impl<'a> From<&'a LiveState> for StateRef<'a> {
    fn from(s: &'a LiveState) -> StateRef<'a> {
        let c = &s.content;
        let (attempts, next_attempt_ms, warned, held) = (c.attempts, c.next_attempt_ms, c.warned, c.held);
        StateRef { seq: s.seq, attempts, next_attempt_ms, warned, held, last_error: &c.last_error }
    }
}

/// The recipients of `m` to their cores: one mailbox entry per local one,
/// one share per destination domain for the relayed ones (`remote` is a
/// buffer reused between messages).
fn route<'a>(
    m: &Message<'a>,
    recipients: impl Iterator<Item = (u16, &'a str, RouteView<'a>)>,
    state: impl Fn(u16) -> Option<StateRef<'a>>,
    parts: &mut [Part<'a>],
    remote: &mut Vec<(&'a str, u16)>,
    relay: &crate::config::Relay,
) {
    let cores = parts.len();
    remote.clear();
    for (index, address, route) in recipients {
        match route {
            RouteView::Local { user } => {
                let trace = (m.client != super::intake::IMPORT_CLIENT)
                    .then_some(Trace { sender: m.sender, delivered_to: address });
                let entry = MailboxEntry::new(m.at, index, m.queue_id, m.received_at_ms, m.body_len, trace);
                parts[owner::user_owner(user, cores)].mailboxes.push((user.to_string(), entry));
            }
            RouteView::Remote { domain } => remote.push((domain, index)),
        }
    }
    if remote.is_empty() {
        return;
    }
    let pool = crate::outbound::source::pool_for(relay, m.sender);
    let mut indexes = Vec::new();
    // One share per domain, in the order the domains first appear.
    while let Some(&(domain, _)) = remote.first() {
        indexes.clear();
        // Keep the deferral the queue had before the restart: the latest
        // state among the share's recipients.
        let mut latest: Option<StateRef<'a>> = None;
        remote.retain(|&(d, i)| {
            if d != domain {
                return true;
            }
            indexes.push(i);
            if let Some(s) = state(i).filter(|s| latest.is_none_or(|l| s.seq >= l.seq)) {
                latest = Some(s);
            }
            false
        });
        parts[owner::domain_owner(domain, cores)].share(m, DestRef { domain, pool }, &indexes, latest);
    }
}

/// A destination, borrowed.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct DestRef<'a> {
    domain: &'a str,
    pool: Option<u16>,
}

/// One core's part while it is built. Destinations and errors are listed
/// once each (keyed by peer-chosen text: hashed with the standard,
/// randomly keyed hasher, behind a one-entry cache that a backlog for one
/// destination nearly always hits).
struct Part<'a> {
    ledger: spool::Ledger,
    suppressions: Vec<spool::LiveSuppression>,
    mailboxes: Vec<(String, MailboxEntry)>,
    queue: Adopted,
    dest_ids: HashMap<DestRef<'a>, u32>,
    last_dest: Option<(DestRef<'a>, u32)>,
    error_ids: HashMap<&'a str, u32>,
    last_error: Option<(&'a str, u32)>,
}

impl<'a> Part<'a> {
    fn new(ledger: spool::Ledger, suppressions: Vec<spool::LiveSuppression>, live: usize) -> Part<'a> {
        // Room for every message on each core: only what is written is
        // faulted in, and growing it copied hundreds of megabytes.
        let queue = Adopted { shares: Vec::with_capacity(live), ..Adopted::default() };
        Part {
            ledger,
            suppressions,
            mailboxes: Vec::new(),
            queue,
            dest_ids: HashMap::new(),
            last_dest: None,
            error_ids: HashMap::new(),
            last_error: None,
        }
    }

    fn share(&mut self, m: &Message<'a>, dest: DestRef<'a>, indexes: &[u16], state: Option<StateRef<'a>>) {
        let dest = self.dest(dest);
        let (recipient, multi) = match indexes {
            [one] => (*one, 0),
            more => {
                self.queue.multi.push(more.into());
                (0, self.queue.multi.len() as u32)
            }
        };
        let mut share = Share {
            at: m.at,
            queue_id: m.queue_id,
            dest,
            arrived_ms: m.received_at_ms,
            recipient,
            multi,
            attempts: 0,
            error: 0,
            next_attempt_ms: 0,
            warned: false,
            held: false,
        };
        if let Some(s) = state {
            share.attempts = s.attempts;
            share.next_attempt_ms = s.next_attempt_ms;
            share.warned = s.warned;
            share.held = s.held;
            share.error = if s.last_error.is_empty() { 0 } else { self.error(s.last_error) };
            self.queue.state_seq = self.queue.state_seq.max(s.seq);
        }
        self.queue.shares.push(share);
    }

    /// Index of `dest` in the part's destinations.
    fn dest(&mut self, dest: DestRef<'a>) -> u32 {
        if let Some((_, id)) = self.last_dest.filter(|(last, _)| *last == dest) {
            return id;
        }
        let dests = &mut self.queue.dests;
        let id = *self.dest_ids.entry(dest).or_insert_with(|| {
            dests.push(Dest { domain: dest.domain.to_string(), pool: dest.pool });
            (dests.len() - 1) as u32
        });
        self.last_dest = Some((dest, id));
        id
    }

    /// Index of `text` in the part's errors, plus one.
    fn error(&mut self, text: &'a str) -> u32 {
        if let Some((_, id)) = self.last_error.filter(|(last, _)| *last == text) {
            return id;
        }
        let errors = &mut self.queue.errors;
        let id = *self.error_ids.entry(text).or_insert_with(|| {
            errors.push(Arc::from(text));
            errors.len() as u32
        });
        self.last_error = Some((text, id));
        id
    }

    fn finish(self, carried: &Arc<spool::Carried>) -> Adoption {
        let Part { ledger, suppressions, mailboxes, queue, .. } = self;
        Adoption { ledger, mailboxes, queue, suppressions, carried: carried.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A core's part, comparable: mailbox entries and shares (with their
    /// destination, error and recipients resolved) in place order.
    type Summary =
        (Vec<(String, MailboxEntry)>, Vec<(SpoolRef, Dest, Vec<u16>, u32, Option<String>, u64, bool, bool)>, u64);

    fn summary(a: &Adoption) -> Summary {
        let mut mailboxes = a.mailboxes.clone();
        mailboxes.sort_by_key(|(_, e)| (e.at, e.recipient));
        let q = &a.queue;
        let mut shares: Vec<_> = q
            .shares
            .iter()
            .map(|s| {
                let error = s.error.checked_sub(1).map(|i| q.errors[i as usize].to_string());
                let dest = q.dests[s.dest as usize].clone();
                (s.at, dest, q.recipients(s).to_vec(), s.attempts, error, s.next_attempt_ms, s.warned, s.held)
            })
            .collect();
        shares.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        (mailboxes, shares, q.state_seq)
    }

    /// Messages a checkpoint holds, read in place, go to the cores exactly
    /// as the same messages decoded do.
    #[test]
    fn held_messages_are_distributed_as_decoded_ones() {
        let relay = crate::config::Config::load(None).unwrap().relay;
        let (mut held, mut shares) = (0, 0);
        for seed in 0..100 {
            for cores in [1, 2, 3] {
                let in_place = spool::random_recovery(seed);
                let mut decoded = spool::random_recovery(seed);
                held += in_place.held.messages.len();
                decoded.decode_held();
                assert!(decoded.held.is_empty());
                let a = distribute(in_place, cores, &relay);
                let b = distribute(decoded, cores, &relay);
                for (core, (a, b)) in a.iter().zip(&b).enumerate() {
                    assert_eq!(summary(a), summary(b), "seed {seed}, core {core} of {cores}");
                    shares += a.queue.shares.len();
                    // Each destination and error listed once.
                    let dests: std::collections::BTreeSet<_> = a.queue.dests.iter().collect();
                    assert_eq!(dests.len(), a.queue.dests.len());
                }
            }
        }
        assert!(held > 1000 && shares > 1000, "held {held}, shares {shares}");
    }
}
