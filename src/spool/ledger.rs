//! The reclaim ledger: which messages are still live, and which segments may
//! be deleted without changing what a restart would recover.
//!
//! Pure bookkeeping; it deletes nothing itself. The owner of a spool
//! directory feeds it what was written and removed, and deletes what it
//! returns (then reports the removal back).
//!
//! # Rules
//! - A message is live while any of its recipients is not final (no
//!   tombstone for it yet). A suppression-list record is fed as a message
//!   with one recipient: live until a tombstone ends the entry.
//! - A segment may be deleted when it holds no live message, it is not the
//!   write segment of its directory, and every segment its tombstones point
//!   into is already gone. Deleting tombstones while their target still
//!   exists would resurrect the targets' mail after a restart. Same-directory
//!   pins always point to older segments, so they cannot form cycles.
//! - A directory is *managed* once [`Ledger::set_write_segment`] was called
//!   for it. A target segment in a managed directory that the ledger does
//!   not know is gone; a target in an unmanaged directory is assumed to
//!   exist until [`Ledger::segment_removed`] is called for it. (Cross-
//!   directory pins can form cycles that keep segments forever: this is why
//!   tombstones are written by the owner of the message's directory.)
//! - The write segment stays even when dead, so a directory's highest
//!   sequence number survives restarts and is never reused.
//! - Recipient-state records are not fed to the ledger: they keep no segment
//!   alive and pin none. Losing one is harmless (a retry comes sooner), and
//!   letting them pin would keep every segment a deferral touched.
//!
//! # Behind recovery
//! A core serves before its spool's older records are recovered (see
//! `spool::phased`). Its ledger then starts [`Ledger::behind`]: every change
//! is journaled in order and none is applied, so it answers nothing and
//! offers no segment for deletion; [`Ledger::catch_up`] later replays the
//! journal onto the recovered ledger, which gives exactly the ledger that
//! feeding every record in order would have built. Nothing may be reclaimed
//! or compacted while a ledger is behind.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::ids::{SegmentKey, SpoolRef};

#[derive(Debug, Default, Clone)]
struct SegmentState {
    /// Live messages stored in the segment.
    live: u32,
    /// Distinct other segments, still present, that its tombstones target.
    pins: u32,
}

#[derive(Debug, Clone)]
struct MessageState {
    /// Number of recipients the message has.
    count: u16,
    /// Recipients not yet final.
    remaining: u16,
    /// Bit per recipient: final already (tombstones may repeat). The first
    /// 64 inline, so the common message costs no allocation here.
    first: u64,
    /// Recipients 64 and up (empty, unallocated, for most messages).
    more: Box<[u64]>,
}

impl MessageState {
    fn word(&self, i: usize) -> u64 {
        match i {
            0 => self.first,
            _ => self.more.get(i - 1).copied().unwrap_or(0),
        }
    }

    fn word_mut(&mut self, i: usize) -> Option<&mut u64> {
        match i {
            0 => Some(&mut self.first),
            _ => self.more.get_mut(i - 1),
        }
    }
}

/// One change to a ledger, journaled while it is [behind](Ledger::behind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    SegmentAdded(SegmentKey),
    WriteSegment(SegmentKey),
    Message { at: SpoolRef, recipients: u16 },
    Tombstone { at: SpoolRef, target: SpoolRef, recipient: u16 },
    SegmentRemoved(SegmentKey),
    ReleasePins(SegmentKey),
}

/// See the module docs. Operations are O(log n) (plus the size of the
/// returned list).
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    segments: BTreeMap<SegmentKey, SegmentState>,
    messages: HashMap<SpoolRef, MessageState>,
    write_segments: BTreeMap<u16, u32>,
    /// target segment → segments holding tombstones that point into it.
    pinned_by: BTreeMap<SegmentKey, BTreeSet<SegmentKey>>,
    /// Some while behind recovery: the changes to replay on catching up.
    journal: Option<Vec<Change>>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// A ledger for a spool whose older records are still being recovered:
    /// it journals every change until [`catch_up`](Ledger::catch_up), and
    /// until then answers as an empty ledger and offers nothing for
    /// deletion.
    pub fn behind() -> Ledger {
        Ledger { journal: Some(Vec::new()), ..Ledger::default() }
    }

    /// Whether changes are still being journaled (see [`behind`](Ledger::behind)).
    pub fn is_behind(&self) -> bool {
        self.journal.is_some()
    }

    /// Become `recovered` (the ledger of every record written before this
    /// one started) with the journaled changes applied in order. Returns
    /// every segment that may be deleted now. On a ledger that is not
    /// behind, `recovered` replaces it.
    pub fn catch_up(&mut self, recovered: Ledger) -> Vec<SegmentKey> {
        let journal = self.journal.take().unwrap_or_default();
        *self = recovered;
        self.journal = None;
        for change in journal {
            self.apply(change);
        }
        self.deletable()
    }

    /// Journal `change` if behind (true), else leave it to the caller.
    fn journaled(&mut self, change: Change) -> bool {
        match &mut self.journal {
            Some(journal) => {
                journal.push(change);
                true
            }
            None => false,
        }
    }

    fn apply(&mut self, change: Change) -> Vec<SegmentKey> {
        match change {
            Change::SegmentAdded(key) => {
                self.segment_added(key);
                Vec::new()
            }
            Change::WriteSegment(key) => self.set_write_segment(key),
            Change::Message { at, recipients } => {
                self.message_written(at, recipients);
                Vec::new()
            }
            Change::Tombstone { at, target, recipient } => self.tombstone_written(at, target, recipient),
            Change::SegmentRemoved(key) => self.segment_removed(key),
            Change::ReleasePins(key) => self.release_pins(key),
        }
    }

    /// A segment exists on disk (created, or found by recovery).
    pub fn segment_added(&mut self, key: SegmentKey) {
        if self.journaled(Change::SegmentAdded(key)) {
            return;
        }
        self.segments.entry(key).or_default();
    }

    /// Appends to `key.dir` now go to `key` (which exists). Returns the
    /// previous write segment if that made it deletable.
    pub fn set_write_segment(&mut self, key: SegmentKey) -> Vec<SegmentKey> {
        if self.journaled(Change::WriteSegment(key)) {
            return Vec::new();
        }
        self.segment_added(key);
        let old = self.write_segments.insert(key.dir, key.seq);
        match old {
            Some(seq) if seq != key.seq => {
                let old = SegmentKey { dir: key.dir, seq };
                self.deletable_now(old).into_iter().collect()
            }
            _ => Vec::new(),
        }
    }

    /// A message with `recipients` recipients was written at `at`.
    pub fn message_written(&mut self, at: SpoolRef, recipients: u16) {
        if self.journaled(Change::Message { at, recipients }) {
            return;
        }
        let seg = self.segments.entry(at.segment_key()).or_default();
        if recipients == 0 || self.messages.contains_key(&at) {
            return;
        }
        seg.live += 1;
        self.messages.insert(
            at,
            MessageState {
                count: recipients,
                remaining: recipients,
                first: 0,
                more: vec![0; usize::from(recipients).div_ceil(64) - 1].into_boxed_slice(),
            },
        );
    }

    /// A tombstone written at `at` made recipient `recipient` of the message
    /// at `target` final. Returns segments this made deletable.
    pub fn tombstone_written(&mut self, at: SpoolRef, target: SpoolRef, recipient: u16) -> Vec<SegmentKey> {
        if self.journaled(Change::Tombstone { at, target, recipient }) {
            return Vec::new();
        }
        let holder = at.segment_key();
        self.segments.entry(holder).or_default();
        let target_seg = target.segment_key();
        let target_exists =
            self.segments.contains_key(&target_seg) || !self.write_segments.contains_key(&target_seg.dir);
        if target_seg != holder && target_exists && self.pinned_by.entry(target_seg).or_default().insert(holder) {
            if let Some(h) = self.segments.get_mut(&holder) {
                h.pins += 1;
            }
        }
        let Some(msg) = self.messages.get_mut(&target) else {
            return Vec::new();
        };
        let (word, bit) = (usize::from(recipient) / 64, 1u64 << (recipient % 64));
        let count = msg.count;
        let Some(w) = msg.word_mut(word).filter(|_| recipient < count) else {
            return Vec::new();
        };
        if *w & bit != 0 {
            return Vec::new();
        }
        *w |= bit;
        msg.remaining -= 1;
        if msg.remaining > 0 {
            return Vec::new();
        }
        self.messages.remove(&target);
        if let Some(seg) = self.segments.get_mut(&target_seg) {
            seg.live -= 1;
        }
        self.deletable_now(target_seg).into_iter().collect()
    }

    /// Segment `key` was deleted (durably). Returns segments this made
    /// deletable. May be called for segments of other directories, to
    /// release pins on them.
    pub fn segment_removed(&mut self, key: SegmentKey) -> Vec<SegmentKey> {
        if self.journaled(Change::SegmentRemoved(key)) {
            return Vec::new();
        }
        if let Some(state) = self.segments.remove(&key) {
            // Only on misuse (deleting a segment the ledger did not offer):
            // drop what it still tracked, so the counts stay consistent.
            if state.live > 0 {
                self.messages.retain(|at, _| at.segment_key() != key);
            }
            if state.pins > 0 {
                for holders in self.pinned_by.values_mut() {
                    holders.remove(&key);
                }
            }
        }
        let mut out = Vec::new();
        for holder in self.pinned_by.remove(&key).unwrap_or_default() {
            if let Some(h) = self.segments.get_mut(&holder) {
                h.pins -= 1;
                out.extend(self.deletable_now(holder));
            }
        }
        out
    }

    /// Whether recipient `recipient` of the message at `at` is final (true
    /// for messages the ledger does not track: they are dead).
    pub fn is_final(&self, at: SpoolRef, recipient: u16) -> bool {
        let Some(msg) = self.messages.get(&at) else {
            return true;
        };
        let word = usize::from(recipient) / 64;
        recipient >= msg.count || msg.word(word) & (1u64 << (recipient % 64)) != 0
    }

    /// The final recipients of a live message (empty if not tracked).
    pub fn finals(&self, at: SpoolRef) -> Vec<u16> {
        self.messages.get(&at).map_or(Vec::new(), |m| (0..m.count).filter(|&r| self.is_final(at, r)).collect())
    }

    /// `holder`'s tombstones were all written again elsewhere (compaction):
    /// it no longer keeps any segment alive. Returns segments this made
    /// deletable (`holder` itself, if nothing else keeps it).
    pub fn release_pins(&mut self, holder: SegmentKey) -> Vec<SegmentKey> {
        if self.journaled(Change::ReleasePins(holder)) {
            return Vec::new();
        }
        for holders in self.pinned_by.values_mut() {
            holders.remove(&holder);
        }
        self.pinned_by.retain(|_, hs| !hs.is_empty());
        if let Some(h) = self.segments.get_mut(&holder) {
            h.pins = 0;
        }
        self.deletable_now(holder).into_iter().collect()
    }

    /// Forget the messages of directories `owned` rejects, keeping every
    /// segment's counts and pins. For a core that asks only about records
    /// in the dirs it owns (every core gets a copy of the recovered
    /// ledger): the other dirs' messages would otherwise sit in every copy
    /// for good. Afterwards answers about those messages are wrong, and
    /// their segments are never offered for deletion here (their owner's
    /// copy does that).
    pub fn keep_messages_of(&mut self, owned: impl Fn(u16) -> bool) {
        self.messages.retain(|at, _| owned(at.dir));
        self.messages.shrink_to_fit();
    }

    /// Give back the memory of a drained backlog: the message table shrinks
    /// when it is less than a quarter full.
    pub fn shrink(&mut self) {
        if self.messages.capacity() > 4 * self.messages.len() + 1024 {
            self.messages.shrink_to_fit();
        }
    }

    /// Whether `key` is a segment the ledger knows (not yet removed).
    pub fn tracks(&self, key: SegmentKey) -> bool {
        self.segments.contains_key(&key)
    }

    /// Live messages in `key`.
    pub fn live_in(&self, key: SegmentKey) -> u32 {
        self.segments.get(&key).map_or(0, |s| s.live)
    }

    /// Whether the message at `at` is live.
    pub fn is_live(&self, at: SpoolRef) -> bool {
        self.messages.contains_key(&at)
    }

    /// Number of live messages.
    pub fn live_messages(&self) -> usize {
        self.messages.len()
    }

    /// Every segment that may be deleted now (a full scan; for start-up).
    pub fn deletable(&self) -> Vec<SegmentKey> {
        self.segments.keys().copied().filter(|&k| self.deletable_now(k).is_some()).collect()
    }

    fn deletable_now(&self, key: SegmentKey) -> Option<SegmentKey> {
        let state = self.segments.get(&key)?;
        let is_write = self.write_segments.get(&key.dir) == Some(&key.seq);
        (state.live == 0 && state.pins == 0 && !is_write).then_some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(dir: u16, seq: u32) -> SegmentKey {
        SegmentKey { dir, seq }
    }

    fn at(dir: u16, seq: u32, offset: u32) -> SpoolRef {
        SpoolRef { dir, segment: seq, offset }
    }

    /// Messages in segment 0 of dir 0; the write segment is 1, holding the
    /// tombstones.
    fn two_segments() -> Ledger {
        let mut l = Ledger::new();
        l.set_write_segment(seg(0, 0));
        l.message_written(at(0, 0, 0), 2);
        l.message_written(at(0, 0, 64), 1);
        assert!(l.set_write_segment(seg(0, 1)).is_empty());
        l
    }

    #[test]
    fn segment_becomes_deletable_when_its_last_recipient_is_final() {
        let mut l = two_segments();
        assert!(l.tombstone_written(at(0, 1, 0), at(0, 0, 0), 0).is_empty());
        assert!(l.tombstone_written(at(0, 1, 8), at(0, 0, 64), 0).is_empty());
        assert!(l.is_live(at(0, 0, 0)));
        assert!(!l.is_final(at(0, 0, 0), 1));
        assert_eq!(l.tombstone_written(at(0, 1, 16), at(0, 0, 0), 1), [seg(0, 0)]);
        assert_eq!(l.live_messages(), 0);
    }

    #[test]
    fn repeated_tombstone_counts_once() {
        let mut l = two_segments();
        l.tombstone_written(at(0, 1, 0), at(0, 0, 0), 0);
        l.tombstone_written(at(0, 1, 8), at(0, 0, 0), 0);
        assert!(l.is_live(at(0, 0, 0)));
        assert!(l.tombstone_written(at(0, 1, 16), at(0, 0, 0), 9).is_empty());
        assert!(l.is_live(at(0, 0, 0)));
    }

    #[test]
    fn write_segment_is_never_deletable_until_writes_move_on() {
        let mut l = Ledger::new();
        l.set_write_segment(seg(0, 0));
        l.message_written(at(0, 0, 0), 1);
        assert!(l.tombstone_written(at(0, 0, 64), at(0, 0, 0), 0).is_empty());
        assert!(l.deletable().is_empty());
        assert_eq!(l.set_write_segment(seg(0, 1)), [seg(0, 0)]);
    }

    #[test]
    fn tombstone_segment_waits_until_its_target_segment_is_gone() {
        // seg 1 holds a message and tombstones for seg 0; seg 2 is written.
        let mut l = two_segments();
        l.message_written(at(0, 1, 0), 1);
        l.tombstone_written(at(0, 1, 64), at(0, 0, 0), 0);
        l.tombstone_written(at(0, 1, 72), at(0, 0, 0), 1);
        l.set_write_segment(seg(0, 2));
        // seg 1's own message dies; it still pins seg 0 (one live message left).
        assert!(l.tombstone_written(at(0, 2, 0), at(0, 1, 0), 0).is_empty());
        assert!(l.deletable().is_empty());
        // seg 0's last message dies: seg 0 may go, seg 1 not yet.
        assert_eq!(l.tombstone_written(at(0, 2, 8), at(0, 0, 64), 0), [seg(0, 0)]);
        assert_eq!(l.deletable(), [seg(0, 0)]);
        // Once seg 0 is gone, seg 1 (pinning it) may go; seg 2 pins seg 1.
        assert_eq!(l.segment_removed(seg(0, 0)), [seg(0, 1)]);
        assert!(l.segment_removed(seg(0, 1)).is_empty());
        assert!(l.deletable().is_empty(), "seg 2 is the write segment");
    }

    #[test]
    fn repeated_tombstone_for_a_removed_segment_does_not_pin() {
        let mut l = Ledger::new();
        l.set_write_segment(seg(0, 0));
        l.message_written(at(0, 0, 0), 1);
        l.set_write_segment(seg(0, 1));
        assert_eq!(l.tombstone_written(at(0, 1, 0), at(0, 0, 0), 0), [seg(0, 0)]);
        assert!(l.segment_removed(seg(0, 0)).is_empty());
        // A retried tombstone after the target's segment is gone.
        assert!(l.tombstone_written(at(0, 1, 8), at(0, 0, 0), 0).is_empty());
        assert_eq!(l.set_write_segment(seg(0, 2)), [seg(0, 1)]);
    }

    #[test]
    fn tombstone_into_unmanaged_dir_keeps_its_pin_until_told() {
        let mut l = Ledger::new();
        l.set_write_segment(seg(0, 5));
        l.tombstone_written(at(0, 5, 0), at(7, 3, 0), 0);
        l.set_write_segment(seg(0, 6));
        assert!(l.deletable().is_empty());
        assert_eq!(l.segment_removed(seg(7, 3)), [seg(0, 5)]);
    }

    #[test]
    fn tombstone_into_known_segment_of_another_dir_pins_exactly() {
        let mut l = Ledger::new();
        l.set_write_segment(seg(1, 0));
        l.message_written(at(1, 0, 0), 1);
        l.set_write_segment(seg(1, 1));
        l.set_write_segment(seg(0, 0));
        l.tombstone_written(at(0, 0, 0), at(1, 0, 0), 0);
        assert_eq!(l.set_write_segment(seg(0, 1)), Vec::<SegmentKey>::new());
        assert_eq!(l.deletable(), [seg(1, 0)]);
        assert_eq!(l.segment_removed(seg(1, 0)), [seg(0, 0)]);
    }

    #[test]
    fn message_without_recipients_is_dead_on_arrival() {
        let mut l = Ledger::new();
        l.set_write_segment(seg(0, 0));
        l.message_written(at(0, 0, 0), 0);
        assert!(!l.is_live(at(0, 0, 0)));
        assert_eq!(l.set_write_segment(seg(0, 1)), [seg(0, 0)]);
    }

    #[test]
    fn a_copy_keeping_one_dirs_messages_still_answers_for_that_dir() {
        let mut l = Ledger::new();
        l.set_write_segment(seg(0, 0));
        l.set_write_segment(seg(1, 0));
        l.message_written(at(0, 0, 0), 1);
        l.message_written(at(1, 0, 0), 1);
        l.keep_messages_of(|dir| dir == 0);
        assert_eq!(l.live_messages(), 1);
        assert!(l.is_live(at(0, 0, 0)));
        l.set_write_segment(seg(1, 1));
        assert!(l.deletable().is_empty(), "dir 1's segment is its owner's to offer");
        l.set_write_segment(seg(0, 1));
        assert_eq!(l.tombstone_written(at(0, 1, 0), at(0, 0, 0), 0), [seg(0, 0)]);
    }

    #[test]
    fn many_recipients_use_several_bitset_words() {
        let mut l = Ledger::new();
        l.set_write_segment(seg(0, 0));
        l.message_written(at(0, 0, 0), 130);
        for r in 0..129 {
            l.tombstone_written(at(0, 0, 8), at(0, 0, 0), r);
        }
        assert!(l.is_live(at(0, 0, 0)));
        assert!(!l.is_final(at(0, 0, 0), 129));
        l.tombstone_written(at(0, 0, 8), at(0, 0, 0), 130);
        assert!(l.is_live(at(0, 0, 0)), "index 130 is not a recipient");
        l.tombstone_written(at(0, 0, 8), at(0, 0, 0), 129);
        assert!(!l.is_live(at(0, 0, 0)));
    }

    /// The same history fed to one ledger directly and, split at a
    /// boundary, to a recovered ledger plus a journal, ends in the same
    /// state: catching up is replay, not approximation.
    #[test]
    fn catching_up_equals_feeding_everything_in_order() {
        let before = |l: &mut Ledger| {
            l.set_write_segment(seg(0, 0));
            l.message_written(at(0, 0, 0), 2);
            l.message_written(at(0, 0, 64), 1);
            l.set_write_segment(seg(0, 1));
            l.message_written(at(0, 1, 0), 1);
            l.tombstone_written(at(0, 1, 64), at(0, 0, 0), 0);
        };
        let after = |l: &mut Ledger| -> Vec<SegmentKey> {
            let mut dead = Vec::new();
            dead.extend(l.set_write_segment(seg(0, 1)));
            l.message_written(at(0, 1, 128), 1);
            dead.extend(l.tombstone_written(at(0, 1, 192), at(0, 0, 0), 1));
            dead.extend(l.tombstone_written(at(0, 1, 200), at(0, 0, 64), 0));
            dead.extend(l.set_write_segment(seg(0, 2)));
            dead.extend(l.tombstone_written(at(0, 2, 0), at(0, 1, 128), 0));
            dead
        };
        let mut direct = Ledger::new();
        before(&mut direct);
        let direct_dead = after(&mut direct);
        assert_eq!(direct_dead, [seg(0, 0)], "seg 0 dies once its three recipients are final");

        let mut recovered = Ledger::new();
        before(&mut recovered);
        let mut live = Ledger::behind();
        assert!(after(&mut live).is_empty(), "a ledger behind recovery offers nothing");
        assert!(live.is_behind());
        assert!(!live.is_live(at(0, 1, 128)), "nor answers before catching up");
        let dead = live.catch_up(recovered);
        assert!(!live.is_behind());
        assert_eq!(dead, direct.deletable());
        assert_eq!(dead, [seg(0, 0)]);
        for a in [at(0, 0, 0), at(0, 0, 64), at(0, 1, 0), at(0, 1, 128)] {
            assert_eq!(live.is_live(a), direct.is_live(a), "{a:?}");
        }
        assert_eq!(live.live_messages(), direct.live_messages());
        // Both go on identically: seg 1 pins seg 0 in each.
        assert_eq!(live.segment_removed(seg(0, 0)), direct.segment_removed(seg(0, 0)));
    }
}
