//! Recovered shares in compact form, adopted without a `QueuedMessage` or
//! an address string each (issue 13): recovery lists each destination and
//! last error once per core, and each share names them by index. Sender
//! and recipient addresses are read back from the spool when a share is
//! taken, as for any share outside the active window.

use super::entry::{Entry, ERROR_MAX};
use super::{Dest, Key, QueueShard};
use crate::spool::{QueueId, SpoolRef};
use std::sync::Arc;

/// One recovered share (see the module docs), 56 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub at: SpoolRef,
    pub queue_id: QueueId,
    /// Index into [`Adopted::dests`].
    pub dest: u32,
    pub arrived_ms: u64,
    /// The pending recipient, when it is the only one.
    pub recipient: u16,
    /// Index into [`Adopted::multi`] plus one, when other than one
    /// recipient is pending; else 0.
    pub multi: u32,
    pub attempts: u32,
    /// Index into [`Adopted::errors`] plus one; 0 for none.
    pub error: u32,
    /// Next attempt, when deferred (0: due now).
    pub next_attempt_ms: u64,
    pub warned: bool,
    pub held: bool,
}

/// One core's recovered shares (see the module docs).
#[derive(Debug, Default)]
pub struct Adopted {
    pub dests: Vec<Dest>,
    pub errors: Vec<Arc<str>>,
    /// Pending recipients of the shares with other than one.
    pub multi: Vec<Box<[u16]>>,
    pub shares: Vec<Share>,
    /// The highest `seq` of the shares' state records.
    pub state_seq: u64,
}

impl Adopted {
    /// The pending recipient indexes of `s`.
    pub fn recipients<'a>(&'a self, s: &'a Share) -> &'a [u16] {
        match s.multi.checked_sub(1) {
            None => std::slice::from_ref(&s.recipient),
            Some(i) => self.multi.get(i as usize).map_or(&[], |m| m),
        }
    }
}

/// The queue's ids for an [`Adopted`]'s destinations and errors, taken
/// once for all its shares by [`QueueShard::begin_adoption`].
#[derive(Debug)]
pub struct AdoptionIds {
    dests: Vec<u32>,
    errors: Vec<u32>,
}

impl QueueShard {
    /// Take the destination and error ids of every share of `a` at once
    /// (one use per share), so that [`QueueShard::adopt`] hashes nothing
    /// per share.
    pub fn begin_adoption(&mut self, a: &Adopted) -> AdoptionIds {
        let mut dest_uses = vec![0usize; a.dests.len()];
        let mut error_uses = vec![0u32; a.errors.len()];
        for s in &a.shares {
            if let Some(n) = dest_uses.get_mut(s.dest as usize) {
                *n += 1;
            }
            if let Some(n) = s.error.checked_sub(1).and_then(|i| error_uses.get_mut(i as usize)) {
                *n += 1;
            }
        }
        let dests = a.dests.iter().zip(dest_uses).map(|(d, n)| self.dest_id_uses(d, n)).collect();
        let errors = a.errors.iter().zip(error_uses).map(|(e, n)| self.errors.acquire_uses(e, n, ERROR_MAX)).collect();
        AdoptionIds { dests, errors }
    }

    /// Queue a recovered share of `a` (an adoption `ids` was begun for):
    /// like [`QueueShard::enqueue`], its envelope read back when it is
    /// taken. None if its destination is not one of the adoption's.
    pub fn adopt(&mut self, a: &Adopted, ids: &AdoptionIds, s: &Share) -> Option<Key> {
        let dest = *ids.dests.get(s.dest as usize)?;
        let (slot, generation) = self.allocate();
        let mut e = Entry::new(s.at, s.queue_id, dest, s.arrived_ms, generation);
        e.set_attempts(s.attempts);
        e.set_warned(s.warned);
        e.set_held(s.held);
        e.set_error(s.error.checked_sub(1).and_then(|i| ids.errors.get(i as usize)).copied().unwrap_or(0));
        self.state_seq = self.state_seq.max(a.state_seq);
        if s.multi == 0 {
            e.set_recipient(s.recipient);
        } else {
            e.set_multi(true);
            self.multi.insert(slot, a.recipients(s).into());
        }
        let next = (s.next_attempt_ms > 0).then_some(s.next_attempt_ms);
        Some(self.place(slot, e, next, None))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{NoEnvelopes, PendingRecipient, QueuedMessage, RetryPolicy};
    use super::*;

    #[test]
    fn a_share_is_56_bytes() {
        assert_eq!(std::mem::size_of::<Share>(), 56);
    }

    /// Shares of every kind (fresh, deferred, held, several recipients,
    /// with and without an error, two destinations), as an adoption and
    /// as the messages `enqueue` takes.
    fn shares(n: u32) -> (Adopted, Vec<QueuedMessage>) {
        let dests = vec![Dest { domain: "a.test".into(), pool: None }, Dest { domain: "b.test".into(), pool: Some(1) }];
        let errors: Vec<Arc<str>> = vec![Arc::from("451 down"), Arc::from("421 busy")];
        let mut a = Adopted { dests, errors, ..Adopted::default() };
        let mut msgs = Vec::new();
        for i in 0..n {
            let at = SpoolRef { dir: 0, segment: i / 100, offset: (i % 100) * 8 };
            let dest = i % 2;
            let indexes: Vec<u16> = if i % 7 == 0 { vec![0, 2, 5] } else { vec![(i % 3) as u16] };
            let multi = if indexes.len() == 1 {
                0
            } else {
                a.multi.push(indexes.clone().into());
                a.multi.len() as u32
            };
            let share = Share {
                at,
                queue_id: QueueId(u64::from(i) + 1),
                dest,
                arrived_ms: 1_000 + u64::from(i),
                recipient: if multi == 0 { indexes[0] } else { 0 },
                multi,
                attempts: i % 4,
                error: i % 3,
                next_attempt_ms: if i % 5 < 2 { 0 } else { 90_000 + u64::from(i) },
                warned: i % 6 == 0,
                held: i % 11 == 0,
            };
            let d = &a.dests[dest as usize];
            let mut m = QueuedMessage::new(
                at,
                share.queue_id,
                d.domain.clone(),
                String::new(),
                indexes.iter().map(|&index| PendingRecipient { index, address: String::new() }).collect(),
                share.arrived_ms,
            )
            .in_pool(d.pool);
            m.attempts = share.attempts;
            m.last_error = share.error.checked_sub(1).map(|e| a.errors[e as usize].to_string());
            m.next_attempt_ms = (share.next_attempt_ms > 0).then_some(share.next_attempt_ms);
            m.warned = share.warned;
            m.held = share.held;
            m.state_seq = u64::from(i);
            a.shares.push(share);
            msgs.push(m);
        }
        a.state_seq = u64::from(n - 1);
        (a, msgs)
    }

    /// Everything `queue list` and `status` see, in queue-id order.
    fn contents(q: &QueueShard) -> (Vec<QueuedMessage>, super::super::QueueDepth) {
        let mut all: Vec<QueuedMessage> = q.listing().filter_map(|l| q.message(l.key, &NoEnvelopes)).collect();
        all.sort_by_key(|m| m.queue_id);
        (all, q.depth())
    }

    #[test]
    fn adopting_shares_equals_enqueueing_their_messages() {
        let (a, msgs) = shares(500);
        // A small window: some fresh shares wait in line.
        let (mut adopted, mut enqueued) = (QueueShard::new(40), QueueShard::new(40));
        let ids = adopted.begin_adoption(&a);
        for s in &a.shares {
            assert!(adopted.adopt(&a, &ids, s).is_some());
        }
        for m in msgs {
            enqueued.enqueue(m);
        }
        assert_eq!(contents(&adopted), contents(&enqueued));
        assert_eq!(adopted.errors.len(), 2, "each error text once");
        // And they drain alike: every share comes out once, and the
        // destinations and errors are forgotten with their last share.
        let policy = RetryPolicy { waits_ms: vec![1000], max_lifetime_ms: u64::MAX, delay_warning_ms: 0 };
        for q in [&mut adopted, &mut enqueued] {
            for key in q.listing().filter(|l| l.held).map(|l| l.key).collect::<Vec<_>>() {
                assert!(q.release(key, 0));
            }
            q.flush(0);
            q.promote_due(0, &policy, &NoEnvelopes);
            let mut taken = 0;
            while let Some(dest) = q.domains_wanting_connections(usize::MAX).first().cloned() {
                while let Some((key, _)) = q.next_ready(&dest, &NoEnvelopes) {
                    assert!(q.finish(key));
                    taken += 1;
                }
                q.promote_due(0, &policy, &NoEnvelopes);
            }
            assert_eq!(taken, 500);
            assert!(q.is_empty() && q.queued_by_dest().count() == 0 && q.errors.len() == 0);
        }
    }
}
