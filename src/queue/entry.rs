//! The compact form of a queued message share: 48 bytes, nothing on the
//! heap (issue 13 item 3). Sender and recipient addresses are not kept:
//! they are read back from the spool when the share is sent or listed.
//!
//! Packed by hand because a million of them wait during an outage: the
//! times are milliseconds since the Unix epoch in 48 bits (good until the
//! year 10889), each sharing a word with a 16-bit field.

use crate::spool::{QueueId, SpoolRef};

/// Largest time (ms since the epoch) an entry stores; later ones clamp.
const TIME_MAX: u64 = (1 << 48) - 1;

/// Where a share is in its life on this core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// The slot holds no share.
    Free,
    /// In the due-time heap, waiting for its next attempt.
    Deferred,
    /// Due (or fresh) but outside the active window: in a waiting line.
    Waiting,
    /// In its destination's ready list (inside the active window).
    Ready,
    /// Taken by a connection (inside the active window).
    InFlight,
    /// Held by the operator (and not in flight): in no list.
    Parked,
}

impl State {
    const ALL: [State; 6] =
        [State::Free, State::Deferred, State::Waiting, State::Ready, State::InFlight, State::Parked];

    fn bits(self) -> u32 {
        match self {
            State::Free => 0,
            State::Deferred => 1,
            State::Waiting => 2,
            State::Ready => 3,
            State::InFlight => 4,
            State::Parked => 5,
        }
    }
}

/// Flag bits (above the 24-bit error id).
const HELD: u32 = 1 << 27;
const WARNED: u32 = 1 << 28;
/// The pending recipients are in the shard's side table, not inline.
const MULTI: u32 = 1 << 29;
/// `next_ms` is a scheduled attempt (kept while held).
const SCHEDULED: u32 = 1 << 30;
const STATE_SHIFT: u32 = 24;
const STATE_MASK: u32 = 0b111 << STATE_SHIFT;
/// Interned last-error ids: 0 is "none".
pub(super) const ERROR_MAX: u32 = (1 << 24) - 1;

/// One queued share. See the module docs for the packing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    pub queue_id: QueueId,
    /// arrived_ms (48 bits) | the single pending recipient's index (16).
    arrived_recipient: u64,
    /// next attempt ms (48 bits) | attempts so far (16, saturating).
    next_attempts: u64,
    pub at: SpoolRef,
    /// Interned destination (see `QueueShard`'s destination table).
    pub dest: u32,
    /// Bumped each time the slot is reused, so a stale key misses.
    pub generation: u32,
    /// error id (24 bits) | state (3) | held | warned | multi | scheduled.
    bits: u32,
}

impl Entry {
    /// A free slot of generation `generation`.
    pub fn free(generation: u32) -> Entry {
        Entry {
            queue_id: QueueId(0),
            arrived_recipient: 0,
            next_attempts: 0,
            at: SpoolRef { dir: 0, segment: 0, offset: 0 },
            dest: 0,
            generation,
            bits: 0,
        }
    }

    /// A new share in state `Free` (the caller sets it).
    pub fn new(at: SpoolRef, queue_id: QueueId, dest: u32, arrived_ms: u64, generation: u32) -> Entry {
        Entry { queue_id, at, dest, generation, arrived_recipient: arrived_ms.min(TIME_MAX), ..Entry::free(generation) }
    }

    pub fn arrived_ms(&self) -> u64 {
        self.arrived_recipient & TIME_MAX
    }

    /// The single pending recipient (meaningless when `multi`).
    pub fn recipient(&self) -> u16 {
        (self.arrived_recipient >> 48) as u16
    }

    pub fn set_recipient(&mut self, index: u16) {
        self.arrived_recipient = self.arrived_ms() | (u64::from(index) << 48);
    }

    pub fn next_ms(&self) -> u64 {
        self.next_attempts & TIME_MAX
    }

    pub fn attempts(&self) -> u32 {
        u32::from((self.next_attempts >> 48) as u16)
    }

    pub fn set_attempts(&mut self, attempts: u32) {
        let a = u64::from(attempts.min(u32::from(u16::MAX)));
        self.next_attempts = self.next_ms() | (a << 48);
    }

    /// Schedule the next attempt at `due_ms` (see [`Entry::scheduled`]).
    pub fn schedule(&mut self, due_ms: u64) {
        self.next_attempts = (self.next_attempts & !TIME_MAX) | due_ms.min(TIME_MAX);
        self.bits |= SCHEDULED;
    }

    /// Due now: the attempt time is no longer a schedule.
    pub fn unschedule(&mut self) {
        self.bits &= !SCHEDULED;
    }

    /// The next attempt, if one is scheduled.
    pub fn scheduled(&self) -> Option<u64> {
        (self.bits & SCHEDULED != 0).then(|| self.next_ms())
    }

    pub fn state(&self) -> State {
        State::ALL[((self.bits & STATE_MASK) >> STATE_SHIFT) as usize]
    }

    pub fn set_state(&mut self, state: State) {
        self.bits = (self.bits & !STATE_MASK) | (state.bits() << STATE_SHIFT);
    }

    pub fn error(&self) -> u32 {
        self.bits & ERROR_MAX
    }

    pub fn set_error(&mut self, id: u32) {
        self.bits = (self.bits & !ERROR_MAX) | (id & ERROR_MAX);
    }

    fn flag(&self, f: u32) -> bool {
        self.bits & f != 0
    }

    fn set_flag(&mut self, f: u32, on: bool) {
        if on {
            self.bits |= f;
        } else {
            self.bits &= !f;
        }
    }

    pub fn held(&self) -> bool {
        self.flag(HELD)
    }

    pub fn set_held(&mut self, on: bool) {
        self.set_flag(HELD, on)
    }

    pub fn warned(&self) -> bool {
        self.flag(WARNED)
    }

    /// Whether it has a queue state worth recording in the spool (a
    /// restart would otherwise try it at once as new mail).
    pub fn has_state(&self) -> bool {
        self.attempts() > 0 || self.scheduled().is_some() || self.held() || self.warned()
    }

    pub fn set_warned(&mut self, on: bool) {
        self.set_flag(WARNED, on)
    }

    pub fn multi(&self) -> bool {
        self.flag(MULTI)
    }

    pub fn set_multi(&mut self, on: bool) {
        self.set_flag(MULTI, on)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_48_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 48);
    }

    #[test]
    fn packed_fields_do_not_disturb_each_other() {
        let at = SpoolRef { dir: 3, segment: 9, offset: 64 };
        let mut e = Entry::new(at, QueueId(7), 5, 1_765_000_000_123, 2);
        e.set_recipient(65_535);
        e.schedule(1_765_000_360_456);
        e.set_attempts(70_000);
        e.set_state(State::Parked);
        e.set_error(ERROR_MAX);
        e.set_held(true);
        e.set_warned(true);
        assert_eq!(e.arrived_ms(), 1_765_000_000_123);
        assert_eq!(e.recipient(), 65_535);
        assert_eq!(e.scheduled(), Some(1_765_000_360_456));
        assert_eq!(e.attempts(), 65_535, "saturates");
        assert_eq!(e.state(), State::Parked);
        assert_eq!(e.error(), ERROR_MAX);
        assert!(e.held() && e.warned() && !e.multi());
        e.set_error(0);
        e.set_held(false);
        e.unschedule();
        assert_eq!((e.state(), e.error(), e.held(), e.warned()), (State::Parked, 0, false, true));
        assert_eq!(e.scheduled(), None);
        for s in State::ALL {
            e.set_state(s);
            assert_eq!(e.state(), s);
        }
    }
}
