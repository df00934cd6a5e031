//! The queue's operator side: `queue list`, `flush`, `hold`, `release`,
//! compaction's `relocate`, depth for `status`, and giving memory back.
//! Whole-queue passes over the compact entries; envelopes are read back
//! only for what is shown.

use super::entry::{Entry, State};
use super::{Dest, Due, Key, QueueDepth, QueueShard};
use crate::spool::{QueueId, SpoolRef};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// A queued share as `queue list` first sees it (no envelope: read it
/// with [`QueueShard::message`] for the shares shown).
#[derive(Debug, Clone)]
pub struct Listed<'a> {
    pub key: Key,
    pub queue_id: QueueId,
    pub dest: &'a Dest,
    pub arrived_ms: u64,
    pub held: bool,
    /// Its next attempt, when deferred.
    pub next_attempt_ms: Option<u64>,
}

impl QueueShard {
    /// Every queued share, in no particular order.
    pub fn listing(&self) -> impl Iterator<Item = Listed<'_>> {
        self.live_slots().map(|(slot, e)| Listed {
            key: Key::new(slot, e.generation),
            queue_id: e.queue_id,
            dest: self.dest_of(slot),
            arrived_ms: e.arrived_ms(),
            held: e.held(),
            next_attempt_ms: (e.state() == State::Deferred || e.state() == State::Parked)
                .then(|| e.scheduled())
                .flatten(),
        })
    }

    /// Compaction moved records: point queued messages at their new places.
    ///
    /// Returns the moved messages that carry queue state (attempts, a
    /// scheduled retry, a hold, a delay notice sent): their state records
    /// name the old place, so the caller records them again at the new one.
    pub fn relocate(&mut self, moves: &HashMap<SpoolRef, SpoolRef>) -> Vec<Key> {
        let mut stateful = Vec::new();
        for (slot, e) in self.entries.iter_mut().enumerate() {
            if e.state() == State::Free {
                continue;
            }
            if let Some(new) = moves.get(&e.at) {
                e.at = *new;
                if e.has_state() {
                    stateful.push(Key::new(slot as u32, e.generation));
                }
            }
        }
        stateful
    }

    /// The shares of the messages at `places` that have a queue state to
    /// record (attempts, a schedule, a hold or a delay notice sent).
    pub fn stateful_at(&self, places: &std::collections::HashSet<SpoolRef>) -> Vec<Key> {
        let shares = self.entries.iter().enumerate().filter(|(_, e)| e.state() != State::Free);
        shares
            .filter(|(_, e)| places.contains(&e.at) && e.has_state())
            .map(|(slot, e)| Key::new(slot as u32, e.generation))
            .collect()
    }

    /// `queue flush`: everything deferred becomes due at `now_ms`.
    ///
    /// The deferred index is built afresh with one item per deferred
    /// share (O(n)): pushing a new item for each would leave the old one
    /// behind, stale, and after a long outage a million stale items would
    /// be popped one by one (O(n log n)) while the backlog drains.
    pub fn flush(&mut self, now_ms: u64) -> usize {
        let mut n = 0;
        let mut items = Vec::with_capacity(self.deferred.len().min(self.live));
        for (slot, e) in self.entries.iter_mut().enumerate() {
            if e.state() != State::Deferred {
                continue;
            }
            if !e.held() {
                e.schedule(now_ms);
                n += 1;
            }
            if let Some(due) = e.scheduled() {
                items.push(Reverse(Due::new(due, slot as u32)));
            }
        }
        self.deferred = BinaryHeap::from(items);
        n
    }

    /// Keys of the messages with this queue id (one per domain share).
    pub fn find(&self, queue_id: QueueId) -> Vec<Key> {
        self.live_slots().filter(|(_, e)| e.queue_id == queue_id).map(|(s, e)| Key::new(s, e.generation)).collect()
    }

    /// `queue hold`: never dispatched until released. In-flight attempts
    /// finish (a deferral then parks it).
    pub fn hold(&mut self, key: Key) -> bool {
        let Some(state) = self.entry(key).map(Entry::state) else { return false };
        self.entries[key.slot() as usize].set_held(true);
        if matches!(state, State::Deferred | State::Waiting | State::Ready) {
            self.set_state(key.slot(), State::Parked);
        }
        true
    }

    /// `queue release`: due now (a share in flight just goes on).
    pub fn release(&mut self, key: Key, now_ms: u64) -> bool {
        let Some(e) = self.entry(key).copied() else { return false };
        if !e.held() {
            return false;
        }
        let slot = key.slot();
        self.entries[slot as usize].set_held(false);
        if e.state() == State::Parked {
            self.entries[slot as usize].schedule(now_ms);
            self.set_state(slot, State::Deferred);
            self.deferred.push(Reverse(Due::new(now_ms, slot)));
        }
        true
    }

    /// How many message shares are in each state, and when the oldest
    /// arrived. One pass over the queue (a metrics scrape or `status`).
    pub fn depth(&self) -> QueueDepth {
        let mut d = QueueDepth::default();
        for (_, e) in self.live_slots() {
            match (e.held(), e.state()) {
                (true, _) => d.held += 1,
                (false, State::Deferred | State::Parked) => d.deferred += 1,
                (false, State::InFlight) => d.inflight += 1,
                (false, _) => d.ready += 1,
            }
            let arrived = e.arrived_ms();
            d.oldest_arrived_ms = Some(d.oldest_arrived_ms.map_or(arrived, |o: u64| o.min(arrived)));
        }
        d
    }

    /// Give back the memory of a drained backlog: each table shrinks when
    /// less than a quarter of it is used (tables never shrink by
    /// themselves, so a million messages relayed would otherwise keep
    /// their room); the slab drops its free slots at the end. O(1) when
    /// nothing is to be done; the caller runs it now and then. (A
    /// destination's ready list gives its room back where it empties, in
    /// `next_ready`, and the waiting lines in `refill`.)
    pub fn shrink(&mut self) {
        fn sparse(capacity: usize, len: usize) -> bool {
            capacity > 4 * len + 1024
        }
        if sparse(self.entries.capacity(), self.live) {
            // Slots past the last live one go; a key naming one misses
            // (its generation is never given again).
            let end = self.entries.iter().rposition(|e| e.state() != State::Free).map_or(0, |i| i + 1);
            self.entries.truncate(end);
            self.entries.shrink_to_fit();
            self.free.retain(|&Reverse(s)| (s as usize) < end);
            self.free.shrink_to_fit();
        }
        if sparse(self.deferred.capacity(), self.deferred.len()) {
            self.deferred.shrink_to_fit();
        }
        if sparse(self.destinations.capacity(), self.destinations.len()) {
            self.destinations.shrink_to_fit();
        }
        if sparse(self.multi.capacity(), self.multi.len()) {
            self.multi.shrink_to_fit();
        }
        if sparse(self.loaded.capacity(), self.loaded.len()) {
            self.loaded.shrink_to_fit();
        }
        self.errors.shrink();
    }

    /// Bytes the queue's index structures hold for its entries (capacity
    /// times item size of the slab, its free list, the due-time heap, the
    /// waiting lines and ready lists), for tests of the memory bound.
    /// Envelopes kept for the active window and interned texts are not
    /// counted.
    pub fn index_bytes(&self) -> usize {
        use std::mem::size_of;
        let ready: usize = self.destinations.values().map(|d| d.ready.capacity()).sum();
        self.entries.capacity() * size_of::<Entry>()
            + self.free.capacity() * size_of::<u32>()
            + self.deferred.capacity() * size_of::<Due>()
            + (self.fresh.capacity() + self.retried.capacity() + ready) * size_of::<Key>()
    }

    fn live_slots(&self) -> impl Iterator<Item = (u32, &Entry)> {
        self.entries.iter().enumerate().filter(|(_, e)| e.state() != State::Free).map(|(s, e)| (s as u32, e))
    }
}
