//! What recovery folds records into, and the parts of recovery that use a
//! checkpoint (see `checkpoint`): checking its cut, feeding what it holds
//! into the fold, and forgetting segments reclaimed after it was taken.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rustc_hash::FxBuildHasher;

use super::checkpoint::{Checkpoint, Held, HeldRecord, HeldState};
use super::error::SpoolError;
use super::ids::{QueueId, SegmentKey, SpoolRef};
use super::ledger::Ledger;
use super::payload::RecipientState;
use super::record::{parse_at, Parsed, RecordKind};
use super::recovery::{keep_latest, note_queue_id, FoundMessage, LiveSuppression};

/// A message found by a scan (decoded), or held by a checkpoint (decoded
/// only if it turns out live).
pub(super) enum Found {
    /// Boxed: a checkpoint holds most messages at a large backlog, and a
    /// held one needs a fifth of the room.
    Scanned(Box<FoundMessage>),
    Held(HeldRecord),
}

impl Found {
    pub(super) fn at(&self) -> SpoolRef {
        match self {
            Found::Scanned(m) => m.at,
            Found::Held(h) => h.at,
        }
    }

    pub(super) fn recipients(&self) -> u16 {
        match self {
            // Decoding guarantees at most u16::MAX recipients.
            Found::Scanned(m) => m.recipients.len() as u16,
            Found::Held(h) => h.recipients,
        }
    }
}

/// A suppression entry found by a scan, or held by a checkpoint.
pub(super) enum FoundSuppression {
    Scanned(LiveSuppression),
    Held(SpoolRef),
}

impl FoundSuppression {
    pub(super) fn at(&self) -> SpoolRef {
        match self {
            FoundSuppression::Scanned(s) => s.at,
            FoundSuppression::Held(at) => *at,
        }
    }
}

/// The latest recipient state per (target, recipient), once
/// [`resolve`](States::resolve)d: those checkpoints hold in a list, those
/// scanned in a map. At a large backlog nearly all come from checkpoints:
/// in a hash map a million of them took 220 MB (its table grows by
/// doubling), in the list they take what the checkpoint read anyway.
#[derive(Default)]
pub(super) struct States {
    /// From checkpoints, in their order: a key appears once per checkpoint
    /// (a target's states may be held by more than one directory's).
    pub(super) held: Vec<HeldState>,
    /// Scanned: the latest per key (see [`keep_latest`]), where and its
    /// seq. Hashed with rustc-hash's Fx hasher: the keys are spool places
    /// from this server's own disk, not a peer's input.
    pub(super) scanned: HashMap<(SpoolRef, u16), (SpoolRef, u64, RecipientState), FxBuildHasher>,
}

impl States {
    /// A state record scanned at `at`.
    pub(super) fn scanned(&mut self, at: SpoolRef, s: RecipientState) {
        keep_latest(&mut self.scanned, (s.target, s.recipient), at, s.seq, s);
    }

    /// Leaves one state per key, the latest (see [`keep_latest`]): in
    /// `held` if a checkpoint holds it, else in `scanned`.
    pub(super) fn resolve(&mut self) {
        let key = |s: &HeldState| (s.target, s.recipient);
        self.held.sort_unstable_by_key(|s| (s.target, s.recipient, s.seq, s.at));
        // Of each key's run the last is the latest: keep that one.
        self.held.dedup_by(|later, kept| {
            let same = key(later) == key(kept);
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
        let scanned = &mut self.scanned;
        self.held.retain(|h| match scanned.get(&key(h)) {
            Some(&(at, seq, _)) if (seq, at) > (h.seq, h.at) => false,
            Some(_) => {
                scanned.remove(&key(h));
                true
            }
            None => true,
        });
    }
}

/// Everything found so far, before tombstones are applied.
#[derive(Default)]
pub(super) struct Fold {
    pub(super) found: Vec<Found>,
    /// (where, target, recipient).
    pub(super) tombstones: Vec<(SpoolRef, SpoolRef, u16)>,
    pub(super) suppressions: Vec<FoundSuppression>,
    pub(super) states: States,
    /// Places of `Moved` records (compaction's copies), held or scanned.
    pub(super) moved: Vec<SpoolRef>,
}

/// The cut of `ck` must be a good `Checkpoint` record among `images`.
pub(super) fn check_cut(ck: &Checkpoint, images: &BTreeMap<SegmentKey, &[u8]>) -> Result<(), SpoolError> {
    let key = ck.cut.segment_key();
    let good = images.get(&key).is_some_and(|bytes| {
        matches!(parse_at(bytes, ck.cut.offset as usize, key), Parsed::Record { kind: RecordKind::Checkpoint, .. })
    });
    if good {
        Ok(())
    } else {
        Err(SpoolError::CheckpointUnusable { dir: ck.cut.dir, at: ck.cut, reason: "no checkpoint record at its cut" })
    }
}

/// What `ck` holds, into the fold. Its records, tombstones and states are
/// moved out (freed as they go in, not held twice through the rest of
/// recovery): only its cut and envelope bytes stay.
pub(super) fn hold(ck: &mut Checkpoint, fold: &mut Fold, last_queue_ids: &mut BTreeMap<u16, QueueId>) {
    if let Some(id) = ck.last_queue_id {
        note_queue_id(last_queue_ids, ck.cut.dir, id);
    }
    let records = std::mem::take(&mut ck.records);
    fold.found.reserve(records.len());
    for r in records {
        match r.kind {
            Held::Message => fold.found.push(Found::Held(r)),
            Held::Moved => {
                fold.moved.push(r.at);
                fold.found.push(Found::Held(r));
            }
            Held::Suppression => fold.suppressions.push(FoundSuppression::Held(r.at)),
        }
    }
    fold.tombstones.extend(std::mem::take(&mut ck.tombstones).into_iter().map(|t| (t.at, t.target, t.recipient)));
    let states = std::mem::take(&mut ck.states);
    if fold.states.held.is_empty() {
        fold.states.held = states;
    } else {
        fold.states.held.extend(states);
    }
}

/// A checkpoint may hold records of segments reclaimed after it was taken:
/// the ledger forgets those segments as if it had seen the deletion, so
/// their records are dead. Returns how many of them the log after the
/// checkpoint did not show dead.
///
/// Those were live when the checkpoint was taken and died after it: the
/// tombstones that ended them were reclaimed too, once their targets'
/// segments were gone (a segment of tombstones is kept only while what it
/// points at exists). Only a segment deleted by hand would otherwise look
/// like this, and its records are gone whatever recovery does: a full
/// scan would not find them either, and would lose the schedules of every
/// deferral the checkpoint alone still holds.
pub(super) fn forget_gone(fold: &Fold, images: &BTreeMap<SegmentKey, &[u8]>, ledger: &mut Ledger) -> usize {
    let mut gone = BTreeSet::new();
    let mut were_live = 0;
    let held_at = fold.found.iter().filter(|f| matches!(f, Found::Held(_))).map(Found::at);
    let held_supp = fold.suppressions.iter().filter(|s| matches!(s, FoundSuppression::Held(_))).map(|s| s.at());
    for at in held_at.chain(held_supp) {
        if !images.contains_key(&at.segment_key()) {
            were_live += usize::from(ledger.is_live(at));
            gone.insert(at.segment_key());
        }
    }
    gone.extend(fold.tombstones.iter().map(|t| t.0.segment_key()).filter(|k| !images.contains_key(k)));
    for key in gone {
        ledger.segment_removed(key);
    }
    were_live
}
