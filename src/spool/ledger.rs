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
//! - Recipient-state records keep no message alive and pin nothing (letting
//!   them pin would keep every segment a deferral touched), but a segment
//!   holding one ([`Ledger::state_written`]) is deleted only once a durable
//!   checkpoint of its directory holds it ([`Ledger::checkpointed`]: the
//!   checkpoint's cut lies in a later segment). The checkpoint keeps each
//!   latest state's contents, so a deferral keeps its schedule across any
//!   number of restarts, whatever was reclaimed in between.
//! - The segment of a directory's newest checkpoint cut stays, so that the
//!   checkpoint stays usable (recovery trusts it only if its `Checkpoint`
//!   record is still there); so does the cut's segment of a checkpoint
//!   being taken ([`Ledger::checkpoint_pending`]), until it is written or
//!   fails.
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
    /// Its messages this ledger tracks, by offset (a segment is written
    /// front to back, so they are mostly appended); dead ones linger
    /// until they outnumber the live ones. 12 bytes each, where a hash
    /// map of messages cost about 100 (issue 13 item 3).
    messages: Vec<MessageState>,
    /// Dead entries in `messages`.
    dead: u32,
    /// It holds recipient-state records.
    states: bool,
}

impl SegmentState {
    fn find(&self, offset: u32) -> Option<usize> {
        self.messages.binary_search_by_key(&offset, |m| m.offset).ok()
    }

    /// The live message at `offset`.
    fn message(&self, offset: u32) -> Option<&MessageState> {
        self.find(offset).map(|i| &self.messages[i]).filter(|m| m.remaining > 0)
    }

    /// A message became final: drop the dead once they are the majority.
    fn died(&mut self) {
        self.dead += 1;
        if self.dead as usize * 2 > self.messages.len() {
            self.messages.retain(|m| m.remaining > 0);
            self.dead = 0;
            if self.messages.capacity() > 2 * self.messages.len() + 16 {
                self.messages.shrink_to_fit();
            }
        }
    }
}

/// A live message of a segment.
#[derive(Debug, Clone, Copy)]
struct MessageState {
    offset: u32,
    /// Number of recipients the message has.
    count: u16,
    /// Recipients not yet final (0: dead, awaiting removal).
    remaining: u16,
    /// Bit per recipient: final already (tombstones may repeat). The first
    /// 32 inline; the rest in the ledger's `wide` table.
    first: u32,
}

/// Recipients kept inline in [`MessageState::first`].
const INLINE: u16 = 32;

/// One change to a ledger, journaled while it is [behind](Ledger::behind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    SegmentAdded(SegmentKey),
    WriteSegment(SegmentKey),
    Message { at: SpoolRef, recipients: u16 },
    Tombstone { at: SpoolRef, target: SpoolRef, recipient: u16 },
    SegmentRemoved(SegmentKey),
    ReleasePins(SegmentKey),
    States(SegmentKey),
    Checkpointed(SpoolRef),
}

/// See the module docs. Operations are O(log n) (plus the size of the
/// returned list).
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    segments: BTreeMap<SegmentKey, SegmentState>,
    /// Final-bits of recipients from [`INLINE`] up, for the few messages
    /// with more.
    wide: HashMap<SpoolRef, Box<[u64]>>,
    /// Live messages tracked.
    live: usize,
    write_segments: BTreeMap<u16, u32>,
    /// target segment → segments holding tombstones that point into it.
    pinned_by: BTreeMap<SegmentKey, BTreeSet<SegmentKey>>,
    /// Some while behind recovery: the changes to replay on catching up.
    journal: Option<Vec<Change>>,
    /// Per directory, the segment of its newest durable checkpoint's cut.
    checkpoint_cuts: BTreeMap<u16, u32>,
    /// Per directory, the segment of the cut of a checkpoint being taken
    /// (its record appended, its file not written yet).
    pending_cuts: BTreeMap<u16, u32>,
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
            Change::States(key) => {
                self.state_written(key);
                Vec::new()
            }
            Change::Checkpointed(cut) => self.checkpointed(cut),
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
        if recipients == 0 {
            return;
        }
        let state = MessageState { offset: at.offset, count: recipients, remaining: recipients, first: 0 };
        match seg.messages.binary_search_by_key(&at.offset, |m| m.offset) {
            Ok(i) if seg.messages[i].remaining > 0 => return,
            Ok(i) => {
                seg.messages[i] = state;
                seg.dead -= 1;
            }
            Err(i) => seg.messages.insert(i, state),
        }
        seg.live += 1;
        self.live += 1;
        if recipients > INLINE {
            let words = usize::from(recipients - INLINE).div_ceil(64);
            self.wide.insert(at, vec![0; words].into_boxed_slice());
        }
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
        let Some(seg) = self.segments.get_mut(&target_seg) else {
            return Vec::new();
        };
        let Some(i) = seg.find(target.offset).filter(|&i| seg.messages[i].remaining > 0) else {
            return Vec::new();
        };
        let msg = &mut seg.messages[i];
        if recipient >= msg.count {
            return Vec::new();
        }
        let newly_final = if recipient < INLINE {
            let bit = 1u32 << recipient;
            let was = msg.first & bit == 0;
            msg.first |= bit;
            was
        } else {
            let r = usize::from(recipient - INLINE);
            match self.wide.get_mut(&target).and_then(|w| w.get_mut(r / 64)) {
                Some(w) if *w & (1 << (r % 64)) == 0 => {
                    *w |= 1 << (r % 64);
                    true
                }
                _ => false,
            }
        };
        if !newly_final {
            return Vec::new();
        }
        msg.remaining -= 1;
        if msg.remaining > 0 {
            return Vec::new();
        }
        seg.live -= 1;
        seg.died();
        self.live -= 1;
        self.wide.remove(&target);
        self.deletable_now(target_seg).into_iter().collect()
    }

    /// A recipient-state record was written in segment `key`: the segment
    /// stays until a checkpoint holds it (see the module docs).
    pub fn state_written(&mut self, key: SegmentKey) {
        if self.journaled(Change::States(key)) {
            return;
        }
        self.segments.entry(key).or_default().states = true;
    }

    /// A checkpoint of `cut.dir` with its cut at `cut` is being taken: the
    /// cut's segment stays until [`Ledger::checkpointed`] or
    /// [`Ledger::checkpoint_failed`]. (Taking one can last seconds, and
    /// under load the writer moves on and the cut's segment may die
    /// meanwhile: deleted then, the checkpoint written after it would have
    /// no cut, and a restart would read every segment instead.)
    pub fn checkpoint_pending(&mut self, cut: SpoolRef) {
        self.pending_cuts.insert(cut.dir, cut.segment);
    }

    /// The checkpoint being taken of `dir` was not written. Returns
    /// segments this made deletable.
    pub fn checkpoint_failed(&mut self, dir: u16) -> Vec<SegmentKey> {
        let Some(seq) = self.pending_cuts.remove(&dir) else { return Vec::new() };
        self.deletable_now(SegmentKey { dir, seq }).into_iter().collect()
    }

    /// A checkpoint of `cut.dir` with its cut at `cut` is durable: it holds
    /// every state written before it. Returns segments this made deletable.
    pub fn checkpointed(&mut self, cut: SpoolRef) -> Vec<SegmentKey> {
        if self.journaled(Change::Checkpointed(cut)) {
            return Vec::new();
        }
        if self.pending_cuts.get(&cut.dir) == Some(&cut.segment) {
            self.pending_cuts.remove(&cut.dir);
        }
        // An older cut reported late must not move the protected one back.
        if self.checkpoint_cuts.get(&cut.dir).is_some_and(|&seq| seq >= cut.segment) {
            return Vec::new();
        }
        self.checkpoint_cuts.insert(cut.dir, cut.segment);
        let range = SegmentKey { dir: cut.dir, seq: 0 }..SegmentKey { dir: cut.dir, seq: cut.segment };
        let keys: Vec<SegmentKey> = self.segments.range(range).map(|(k, _)| *k).collect();
        keys.into_iter().filter_map(|k| self.deletable_now(k)).collect()
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
                self.live -= state.messages.iter().filter(|m| m.remaining > 0).count();
                self.wide.retain(|at, _| at.segment_key() != key);
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
        let Some(msg) = self.message(at) else {
            return true;
        };
        if recipient >= msg.count {
            return true;
        }
        if recipient < INLINE {
            return msg.first & (1 << recipient) != 0;
        }
        let r = usize::from(recipient - INLINE);
        self.wide.get(&at).and_then(|w| w.get(r / 64)).is_none_or(|w| w & (1 << (r % 64)) != 0)
    }

    /// The final recipients of a live message (empty if not tracked).
    pub fn finals(&self, at: SpoolRef) -> Vec<u16> {
        self.message(at).map_or(Vec::new(), |m| (0..m.count).filter(|&r| self.is_final(at, r)).collect())
    }

    fn message(&self, at: SpoolRef) -> Option<&MessageState> {
        self.segments.get(&at.segment_key())?.message(at.offset)
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

    /// Split into one ledger per core: every core gets every segment's
    /// counts and pins, but only the messages of the directories it owns
    /// (`owner(dir)`, below `cores`), since a core only ever asks about
    /// records in its own dirs. The messages are moved, not copied: a
    /// restart at a large backlog holds one ledger's worth of them, not
    /// one per core. A core's ledger answers wrongly about other dirs'
    /// messages and never offers their segments for deletion (their
    /// owner's ledger does that).
    pub fn split(self, cores: usize, owner: impl Fn(u16) -> usize) -> Vec<Ledger> {
        let Ledger { segments, wide, live, write_segments, pinned_by, journal, checkpoint_cuts, pending_cuts } = self;
        let empty =
            Ledger { live, write_segments, pinned_by, journal, checkpoint_cuts, pending_cuts, ..Ledger::default() };
        let mut parts: Vec<Ledger> = (0..cores).map(|_| empty.clone()).collect();
        // Live messages each core's ledger does not keep (all minus its own).
        let mut owned_live = vec![0usize; cores];
        for (key, mut seg) in segments {
            let core = owner(key.dir);
            owned_live[core] += seg.messages.iter().filter(|m| m.remaining > 0).count();
            for (i, part) in parts.iter_mut().enumerate() {
                if i != core {
                    let bare = SegmentState { messages: Vec::new(), dead: 0, ..seg };
                    part.segments.insert(key, bare);
                }
            }
            seg.messages.shrink_to_fit();
            parts[core].segments.insert(key, seg);
        }
        let counted: usize = owned_live.iter().sum();
        for (part, own) in parts.iter_mut().zip(owned_live) {
            part.live = live.saturating_sub(counted - own);
        }
        for (at, bits) in wide {
            parts[owner(at.dir)].wide.insert(at, bits);
        }
        parts
    }

    /// Give back the memory of a drained backlog: each segment's message
    /// list shrinks when it is less than half full (its dead entries go
    /// as they die; see `SegmentState::died`).
    pub fn shrink(&mut self) {
        for seg in self.segments.values_mut() {
            if seg.messages.capacity() > 2 * seg.messages.len() + 64 {
                seg.messages.shrink_to_fit();
            }
        }
        if self.wide.capacity() > 4 * self.wide.len() + 1024 {
            self.wide.shrink_to_fit();
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
        self.message(at).is_some()
    }

    /// Number of live messages.
    pub fn live_messages(&self) -> usize {
        self.live
    }

    /// Every segment that may be deleted now (a full scan; for start-up).
    pub fn deletable(&self) -> Vec<SegmentKey> {
        self.segments.keys().copied().filter(|&k| self.deletable_now(k).is_some()).collect()
    }

    fn deletable_now(&self, key: SegmentKey) -> Option<SegmentKey> {
        let state = self.segments.get(&key)?;
        let is_write = self.write_segments.get(&key.dir) == Some(&key.seq);
        let cut = self.checkpoint_cuts.get(&key.dir).copied();
        // States not yet held by a checkpoint, or the newest cut's segment,
        // or that of a checkpoint being taken.
        let kept = (state.states && cut.is_none_or(|c| key.seq >= c))
            || cut == Some(key.seq)
            || self.pending_cuts.get(&key.dir) == Some(&key.seq);
        (state.live == 0 && state.pins == 0 && !is_write && !kept).then_some(key)
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
    fn a_segment_of_states_waits_for_a_checkpoint_after_it() {
        let mut l = Ledger::new();
        l.set_write_segment(seg(0, 0));
        l.message_written(at(0, 0, 0), 1);
        l.state_written(seg(0, 0));
        l.set_write_segment(seg(0, 1));
        assert!(l.tombstone_written(at(0, 1, 0), at(0, 0, 0), 0).is_empty(), "states not yet checkpointed");
        l.set_write_segment(seg(0, 2));
        // A cut in segment 0 does not hold the states after it in 0.
        assert!(l.checkpointed(at(0, 0, 900)).is_empty());
        // The newest cut's segment stays; an older cut's goes.
        assert_eq!(l.checkpointed(at(0, 1, 64)), [seg(0, 0)]);
        assert!(l.segment_removed(seg(0, 0)).is_empty(), "segment 1 holds the newest cut");
        assert_eq!(l.checkpointed(at(0, 2, 8)), [seg(0, 1)]);
        // An older cut than the newest changes nothing: segment 2 still
        // holds the newest cut, so it is not offered once it is dead.
        assert!(l.checkpointed(at(0, 1, 0)).is_empty());
        l.set_write_segment(seg(0, 3));
        assert!(!l.deletable().contains(&seg(0, 2)), "{:?}", l.deletable());
    }

    #[test]
    fn the_cut_of_a_checkpoint_being_taken_stays_until_it_is_written_or_fails() {
        let mut l = Ledger::new();
        l.set_write_segment(seg(0, 0));
        l.message_written(at(0, 0, 0), 1);
        l.checkpoint_pending(at(0, 0, 64));
        l.set_write_segment(seg(0, 1));
        // The writer moved on and the cut's segment died meanwhile.
        assert!(l.tombstone_written(at(0, 1, 0), at(0, 0, 0), 0).is_empty(), "the pending cut's segment stays");
        assert!(l.deletable().is_empty());
        assert!(l.checkpointed(at(0, 0, 64)).is_empty(), "now the newest cut's segment");
        // The next one, cut in segment 1, fails: segment 0 keeps the newest
        // (written) cut, and segment 1 its tombstone while segment 0 exists.
        l.checkpoint_pending(at(0, 1, 64));
        l.set_write_segment(seg(0, 2));
        assert!(l.checkpoint_failed(0).is_empty());
        assert!(l.deletable().is_empty(), "{:?}", l.deletable());
        assert_eq!(l.checkpointed(at(0, 2, 8)), [seg(0, 0)]);
    }

    #[test]
    fn a_ledger_behind_replays_states_and_checkpoints() {
        let mut behind = Ledger::behind();
        behind.state_written(seg(0, 1));
        behind.set_write_segment(seg(0, 2));
        let mut recovered = Ledger::new();
        recovered.set_write_segment(seg(0, 1));
        assert!(behind.catch_up(recovered).is_empty(), "states of segment 1 not checkpointed");
        assert_eq!(behind.checkpointed(at(0, 2, 0)), [seg(0, 1)]);
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
    fn a_split_gives_each_core_its_dirs_messages_and_every_segment() {
        let mut l = Ledger::new();
        l.set_write_segment(seg(0, 0));
        l.set_write_segment(seg(1, 0));
        l.message_written(at(0, 0, 0), 1);
        l.message_written(at(1, 0, 0), 40);
        l.message_written(at(1, 0, 64), 1);
        l.tombstone_written(at(1, 0, 128), at(1, 0, 0), 35);
        let [mut zero, mut one]: [Ledger; 2] = l.split(2, |dir| dir as usize).try_into().unwrap();
        assert_eq!((zero.live_messages(), one.live_messages()), (1, 2));
        assert!(zero.is_live(at(0, 0, 0)));
        assert!(one.is_live(at(1, 0, 0)) && one.is_final(at(1, 0, 0), 35) && !one.is_final(at(1, 0, 0), 34));
        assert!(zero.tracks(seg(1, 0)) && one.tracks(seg(0, 0)), "every core keeps every segment's counts");
        assert_eq!(zero.live_in(seg(1, 0)), 2);
        assert!(one.wide.contains_key(&at(1, 0, 0)) && zero.wide.is_empty(), "the wide bits go to the owner");
        zero.set_write_segment(seg(1, 1));
        assert!(zero.deletable().is_empty(), "dir 1's segment is its owner's to offer");
        zero.set_write_segment(seg(0, 1));
        assert_eq!(zero.tombstone_written(at(0, 1, 0), at(0, 0, 0), 0), [seg(0, 0)]);
        one.set_write_segment(seg(1, 1));
        assert_eq!(one.tombstone_written(at(1, 1, 0), at(1, 0, 64), 0), Vec::<SegmentKey>::new());
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

    #[test]
    fn a_tracked_message_costs_12_bytes() {
        assert_eq!(std::mem::size_of::<MessageState>(), 12);
    }

    #[test]
    fn messages_written_out_of_order_are_found_and_the_dead_are_dropped() {
        let mut l = Ledger::new();
        l.set_write_segment(seg(0, 0));
        for offset in [64, 0, 128, 32, 96] {
            l.message_written(at(0, 0, offset), 1);
        }
        assert_eq!(l.live_messages(), 5);
        for offset in [0, 32, 64] {
            l.tombstone_written(at(0, 0, 1024), at(0, 0, offset), 0);
        }
        assert_eq!(l.segments[&seg(0, 0)].messages.len(), 2, "dead entries go once they are the majority");
        assert!(!l.is_live(at(0, 0, 32)));
        assert!(l.is_live(at(0, 0, 96)) && l.is_live(at(0, 0, 128)));
        assert_eq!(l.live_messages(), 2);
        assert_eq!(l.live_in(seg(0, 0)), 2);
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
