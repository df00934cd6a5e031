//! Recovery: from the segment images that survived a stop or a crash, the
//! live messages, where each directory's appends resume, what may be
//! reclaimed, and which bytes must be zeroed first.
//!
//! [`recover_images`] is pure (tests feed it simulated disk images);
//! [`recover`] is the thin loader that maps the files under a spool root,
//! calls it, and applies the repairs before returning.
//!
//! Each segment is cut at its first bad record (a torn write: the durability
//! contract guarantees nothing durable lies after it in that segment). Every
//! non-zero byte after the cut is zeroed and synced, so that no stale record
//! can reappear behind new appends. An intact record this version cannot
//! read (newer version, misplaced file) stops recovery with an error instead:
//! cutting it would destroy data.
//!
//! Recipient states are advisory: only the latest one of each recipient that
//! is still live is returned, and one pointing at a message that is dead or
//! gone (its segment reclaimed) is ignored. An intact state record that does
//! not decode is still an error, like an undecodable message: it means the
//! writer and this reader disagree about the format.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use rustc_hash::FxBuildHasher;

use super::checkpoint::{Checkpoint, HeldRecord, StateContent};
use super::error::SpoolError;
use super::ids::{QueueId, SegmentKey, SpoolRef};
use super::layout::{parse_dir_name, parse_segment_name, SegmentName};
use super::ledger::Ledger;
use super::payload::{
    decode_any_message, decode_message, decode_moved, decode_recipient_state, decode_tombstone, MessageRecord,
    RecipientEntry, RecipientState,
};
use super::record::{end_of_nonzero, parse_at, scan_segment_from, BadRecord, Parsed, RecordKind, ScanEnd};
use super::recovery_checkpoint::{check_cut, forget_gone, hold, Fold, Found, FoundSuppression, States};
use super::recovery_held::{held_message, HeldMessages, LiveRecipients, LiveState};
use super::suppression::{decode_suppression, SuppressionRecord};
use super::writer::Tail;

/// One segment file's bytes as found on disk.
#[derive(Clone, Copy, Debug)]
pub struct SegmentImage<'a> {
    /// Which segment.
    pub key: SegmentKey,
    /// All of its bytes.
    pub bytes: &'a [u8],
}

/// A message with at least one recipient not yet final. The body stays on
/// disk: read it through `SegmentMaps` at `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveMessage {
    /// Where the message record is.
    pub at: SpoolRef,
    /// Its queue id.
    pub queue_id: QueueId,
    /// When it was accepted (ms since the Unix epoch).
    pub received_at_ms: u64,
    /// `MAIL FROM`; empty for the null sender.
    pub sender: String,
    /// The client's address as text.
    pub client: String,
    /// The client's HELO/EHLO name.
    pub helo: String,
    /// Length of the body in bytes.
    pub body_len: u64,
    /// The recipients not yet final, with their index in the message.
    pub recipients: Vec<(u16, RecipientEntry)>,
    /// The latest stored state of each recipient in `recipients` that has
    /// one, by ascending index (see [`RecipientState`] for "latest"). A
    /// recipient without one was never deferred, or its states were lost:
    /// it is due now.
    pub states: Vec<(u16, RecipientState)>,
}

/// A suppression entry whose record is live (no tombstone ended it). One
/// address may have several after a crash between writing a new entry and
/// ending the old one: the caller keeps the latest `since_ms` and ends the
/// others with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveSuppression {
    /// Where the record is.
    pub at: SpoolRef,
    /// What it says.
    pub record: SuppressionRecord,
}

/// A bad record where a segment was cut (reported, not an error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornRecord {
    /// Spool directory of the segment.
    pub dir: u16,
    /// Segment sequence number.
    pub segment: u32,
    /// Where the bad record starts: the segment now ends here.
    pub offset: u32,
    /// What was wrong with it.
    pub reason: BadRecord,
}

/// Damaged bytes in the middle of a segment, with good records after them:
/// recovery passes over them and keeps what follows (see
/// [`super::record::scan_segment_from`]). Whatever record they held is
/// lost; nothing is zeroed, so the bytes stay for an operator to look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedRecord {
    /// Spool directory of the segment.
    pub dir: u16,
    /// Segment sequence number.
    pub segment: u32,
    /// Where the damage starts.
    pub offset: u32,
    /// Bytes passed over, up to the next good record.
    pub len: u32,
    /// What was wrong at `offset`.
    pub reason: BadRecord,
}

/// Bytes `from..to` of segment `key` must be (and, after [`recover`], have
/// been) zeroed and synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repair {
    /// The segment.
    pub key: SegmentKey,
    /// First byte zeroed (the cut).
    pub from: u32,
    /// Just past the last non-zero byte that was found.
    pub to: u32,
}

/// Everything a restart needs from the spool.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Live messages in (dir, segment, offset) order.
    pub messages: Vec<LiveMessage>,
    /// Per directory with segments: where appends resume (its highest segment).
    pub tails: BTreeMap<u16, Tail>,
    /// Where segments were cut.
    pub torn: Vec<TornRecord>,
    /// Damage passed over in the middle of segments.
    pub damaged: Vec<DamagedRecord>,
    /// Regions zeroed after the cut (or after a clean end, if stale bytes
    /// followed it).
    pub repairs: Vec<Repair>,
    /// The reclaim ledger, fed with every record; tails are its write segments.
    pub ledger: Ledger,
    /// Segments that may be deleted right away.
    pub reclaimable: Vec<SegmentKey>,
    /// Highest queue id found per directory (seed `QueueIdGen` with it).
    pub last_queue_ids: BTreeMap<u16, QueueId>,
    /// Live suppression entries in (dir, segment, offset) order.
    pub suppressions: Vec<LiveSuppression>,
    /// Live messages whose envelopes checkpoints hold, undecoded (only
    /// from [`recover_held`]; `messages` has the others).
    pub held: HeldMessages,
    /// Records a checkpoint held live whose segments are gone, with the
    /// tombstones that ended them (see `recovery_checkpoint::forget_gone`):
    /// dead.
    pub gone_with_segments: usize,
    /// States found only at the place compaction moved a message from
    /// (see `live_states`): the relocation's own state records were lost,
    /// so the restarted cores record them again at the new place.
    pub carried: Carried,
}

impl Recovered {
    /// Every live message in `messages`, the held ones decoded (the
    /// output of a full scan).
    pub fn decode_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        self.messages.extend(held.into_live());
        self.messages.sort_by_key(|m| m.at);
    }

    /// Live messages, held ones included.
    pub fn live_count(&self) -> usize {
        self.messages.len() + self.held.messages.len()
    }
}

/// Decoded message record, kept until tombstones have been applied.
pub(super) struct FoundMessage {
    pub(super) at: SpoolRef,
    pub(super) queue_id: QueueId,
    pub(super) received_at_ms: u64,
    pub(super) sender: String,
    pub(super) client: String,
    pub(super) helo: String,
    pub(super) body_len: u64,
    pub(super) recipients: Vec<RecipientEntry>,
}

impl FoundMessage {
    /// The message found at `at`, noting its queue id as the highest of
    /// its directory if it is.
    pub(super) fn new(at: SpoolRef, m: MessageRecord<'_>, last_queue_ids: &mut BTreeMap<u16, QueueId>) -> FoundMessage {
        note_queue_id(last_queue_ids, at.dir, m.queue_id);
        FoundMessage {
            at,
            queue_id: m.queue_id,
            received_at_ms: m.received_at_ms,
            sender: m.sender,
            client: m.client,
            helo: m.helo,
            body_len: m.body.len() as u64,
            recipients: m.recipients,
        }
    }
}

pub(super) fn note_queue_id(last_queue_ids: &mut BTreeMap<u16, QueueId>, dir: u16, id: QueueId) {
    let last = last_queue_ids.entry(dir).or_insert(id);
    *last = (*last).max(id);
}

/// The pure core of recovery. Images may come in any order; a key given
/// twice counts once (the last one).
pub fn recover_images<'a>(images: impl IntoIterator<Item = SegmentImage<'a>>) -> Result<Recovered, SpoolError> {
    recover_images_observed(images, &mut |_| {})
}

/// [`recover_images`], calling `scanned` after each segment is scanned (to
/// report progress).
pub fn recover_images_observed<'a>(
    images: impl IntoIterator<Item = SegmentImage<'a>>,
    scanned: &mut dyn FnMut(SegmentImage<'_>),
) -> Result<Recovered, SpoolError> {
    recover_with_checkpoints(images, &BTreeMap::new(), scanned)
}

/// [`recover_images_observed`] where a directory with a checkpoint is read
/// from its checkpoint plus its log after the cut: its segments before the
/// cut are not scanned (they must still be among `images`, whole, for the
/// live records the checkpoint names). `CheckpointUnusable` if a checkpoint
/// does not fit the images (its cut is not a good `Checkpoint` record, or a
/// record it holds is live but gone): do without it.
pub fn recover_with_checkpoints<'a>(
    images: impl IntoIterator<Item = SegmentImage<'a>>,
    checkpoints: &BTreeMap<u16, Checkpoint>,
    scanned: &mut dyn FnMut(SegmentImage<'_>),
) -> Result<Recovered, SpoolError> {
    let mut out = recover_held(images, checkpoints.clone(), scanned)?;
    out.decode_held();
    Ok(out)
}

/// [`recover_with_checkpoints`], leaving the live messages whose envelopes
/// the checkpoints hold undecoded in [`Recovered::held`] (a server's
/// restart: see `recovery_held`). [`Recovered::decode_held`] turns the
/// result into [`recover_with_checkpoints`]'s.
pub fn recover_held<'a>(
    images: impl IntoIterator<Item = SegmentImage<'a>>,
    mut checkpoints: BTreeMap<u16, Checkpoint>,
    scanned: &mut dyn FnMut(SegmentImage<'_>),
) -> Result<Recovered, SpoolError> {
    let images: BTreeMap<SegmentKey, &[u8]> = images.into_iter().map(|i| (i.key, i.bytes)).collect();
    let mut out = Recovered::default();
    let mut fold = Fold::default();
    for ck in checkpoints.values_mut() {
        check_cut(ck, &images)?;
        hold(ck, &mut fold, &mut out.last_queue_ids);
    }
    for (&key, &bytes) in &images {
        let from = match checkpoints.get(&key.dir) {
            Some(ck) if key.seq < ck.cut.segment => {
                scanned(SegmentImage { key, bytes });
                continue;
            }
            Some(ck) if key.seq == ck.cut.segment => ck.cut.offset,
            _ => 0,
        };
        scan_into(key, bytes, from, &mut out, &mut fold)?;
        scanned(SegmentImage { key, bytes });
    }
    for &key in images.keys() {
        out.ledger.segment_added(key);
    }
    for (&dir, tail) in &out.tails {
        out.ledger.set_write_segment(SegmentKey { dir, seq: tail.segment });
    }
    for m in &fold.found {
        out.ledger.message_written(m.at(), m.recipients());
    }
    // A suppression entry is live like a message with one recipient.
    for s in &fold.suppressions {
        out.ledger.message_written(s.at(), 1);
    }
    // Tombstones last: one may target a message in any directory, scanned
    // before or after it.
    for &(at, target, recipient) in &fold.tombstones {
        out.ledger.tombstone_written(at, target, recipient);
    }
    out.gone_with_segments = forget_gone(&fold, &images, &mut out.ledger);
    for ck in checkpoints.values() {
        out.ledger.checkpointed(ck.cut);
    }
    // The latest states a scan found: their segments wait for a checkpoint
    // that holds them before they are reclaimed.
    fold.states.resolve();
    for (at, _, _) in fold.states.scanned.values() {
        out.ledger.state_written(at.segment_key());
    }
    finish(fold, &images, checkpoints, out)
}

/// Scans segment `key` from `from` into the fold (and `out`'s tails,
/// repairs, torn records and queue ids).
fn scan_into(key: SegmentKey, bytes: &[u8], from: u32, out: &mut Recovered, fold: &mut Fold) -> Result<(), SpoolError> {
    let scan = scan_segment_from(bytes, key, from);
    if let ScanEnd::Bad { offset, reason } = &scan.end {
        if !reason.is_torn() {
            return Err(SpoolError::UnreadableRecord {
                dir: key.dir,
                segment: key.seq,
                offset: *offset,
                reason: reason.clone(),
            });
        }
        out.torn.push(TornRecord { dir: key.dir, segment: key.seq, offset: *offset, reason: reason.clone() });
    }
    for d in &scan.skipped {
        let (dir, segment) = (key.dir, key.seq);
        out.damaged.push(DamagedRecord { dir, segment, offset: d.offset, len: d.len, reason: d.reason.clone() });
    }
    let cut = scan.tail();
    if let Some(end) = end_of_nonzero(bytes, cut as usize) {
        out.repairs.push(Repair { key, from: cut, to: u32::try_from(end).unwrap_or(u32::MAX) });
    }
    out.tails.insert(key.dir, Tail { segment: key.seq, offset: cut, size: bytes.len() as u64 });
    for rec in &scan.records {
        let at = SpoolRef { dir: key.dir, segment: key.seq, offset: rec.offset };
        let payload = &bytes[rec.payload.clone()];
        let undecodable = |source| SpoolError::Undecodable { at, source };
        match rec.kind {
            RecordKind::Message => {
                let m = decode_message(payload).map_err(undecodable)?;
                fold.found.push(Found::Scanned(Box::new(FoundMessage::new(at, m, &mut out.last_queue_ids))));
            }
            RecordKind::Tombstone => {
                let t = decode_tombstone(payload).map_err(undecodable)?;
                fold.tombstones.push((at, t.target, t.recipient));
            }
            RecordKind::RecipientState => {
                let s = decode_recipient_state(payload).map_err(undecodable)?;
                fold.states.scanned(at, s);
            }
            RecordKind::Moved => {
                let moved = decode_moved(payload).map_err(undecodable)?;
                fold.moved.push(at);
                // The old copy: every recipient final, held here.
                for r in 0..moved.message.recipients.len() as u16 {
                    fold.tombstones.push((at, moved.old, r));
                }
                for &r in &moved.done {
                    fold.tombstones.push((at, at, r));
                }
                fold.found.push(Found::Scanned(Box::new(FoundMessage::new(
                    at,
                    moved.message,
                    &mut out.last_queue_ids,
                ))));
            }
            RecordKind::Suppression => {
                let record = decode_suppression(payload).map_err(undecodable)?;
                // A compaction copy: its old place is final, held here.
                if let Some(old) = record.replaces {
                    fold.tombstones.push((at, old, 0));
                }
                fold.suppressions.push(FoundSuppression::Scanned(LiveSuppression { at, record }));
            }
            // The marker of a checkpoint's cut: nothing to apply.
            RecordKind::Checkpoint => {}
        }
    }
    Ok(())
}

/// Live messages, states and suppression entries from the fold, reading
/// back what a checkpoint held by place.
fn finish(
    mut fold: Fold,
    images: &BTreeMap<SegmentKey, &[u8]>,
    checkpoints: BTreeMap<u16, Checkpoint>,
    mut out: Recovered,
) -> Result<Recovered, SpoolError> {
    let read = |at: SpoolRef| -> Option<(RecordKind, &[u8])> {
        let bytes = images.get(&at.segment_key())?;
        match parse_at(bytes, at.offset as usize, at.segment_key()) {
            Parsed::Record { kind, payload, .. } => Some((kind, &bytes[payload])),
            Parsed::End | Parsed::Bad(_) => None,
        }
    };
    let unusable = |at: SpoolRef| SpoolError::CheckpointUnusable {
        dir: at.dir,
        at,
        reason: "a live record it holds does not read back",
    };
    let moved_to = moved_to(&mut fold, images);
    let (mut states, carried) = live_states(fold.states, &moved_to, &out.ledger, read);
    out.carried = carried;
    let mut held = Vec::new();
    for f in fold.found {
        let at = f.at();
        if (0..f.recipients()).all(|i| out.ledger.is_final(at, i)) {
            continue;
        }
        let m = match f {
            Found::Scanned(m) => *m,
            Found::Held(h) => match held_envelope(&checkpoints, &h) {
                // Read from the checkpoint: the record is not touched, and
                // the envelope is left undecoded if it reads in place.
                Some((start, envelope, body_len)) => {
                    let live = |n| LiveRecipients::of(n, |i| out.ledger.is_final(at, i));
                    if let Some((m, view)) = held_message(at, body_len, start, envelope, live) {
                        note_queue_id(&mut out.last_queue_ids, at.dir, view.queue_id);
                        held.push(m);
                        continue;
                    }
                    let record = decode_message(envelope).map_err(|_| unusable(at))?;
                    FoundMessage { body_len, ..FoundMessage::new(at, record, &mut out.last_queue_ids) }
                }
                None => {
                    let (kind, payload) = read(at).ok_or_else(|| unusable(at))?;
                    let record = decode_any_message(kind, payload).ok_or_else(|| unusable(at))?;
                    FoundMessage::new(at, record, &mut out.last_queue_ids)
                }
            },
        };
        let recipients: Vec<(u16, RecipientEntry)> =
            (0u16..).zip(m.recipients).filter(|(i, _)| !out.ledger.is_final(m.at, *i)).collect();
        out.messages.push(LiveMessage {
            at: m.at,
            queue_id: m.queue_id,
            received_at_ms: m.received_at_ms,
            sender: m.sender,
            client: m.client,
            helo: m.helo,
            body_len: m.body_len,
            recipients,
            states: Vec::new(),
        });
    }
    // Checkpointed messages come first: keep (dir, segment, offset) order.
    out.messages.sort_by_key(|m| m.at);
    held.sort_by_key(|m| m.at);
    // Each state to its message: the decoded ones take theirs, the held
    // ones keep theirs in `states` (those of neither are dropped).
    let mut decoded = out.messages.iter_mut().peekable();
    let mut held_at = held.iter().map(|m| m.at).peekable();
    states.retain(|s| {
        while decoded.next_if(|m| m.at < s.target).is_some() {}
        if let Some(m) = decoded.peek_mut().filter(|m| m.at == s.target) {
            m.states.push((s.recipient, s.clone().into_state()));
            return false;
        }
        while held_at.next_if(|&at| at < s.target).is_some() {}
        held_at.peek() == Some(&s.target)
    });
    states.shrink_to_fit();
    let envelopes = checkpoints.into_iter().map(|(dir, ck)| (dir, ck.envelope_bytes)).collect();
    out.held = HeldMessages::new(held, states, envelopes);
    for s in fold.suppressions {
        if !out.ledger.is_live(s.at()) {
            continue;
        }
        out.suppressions.push(match s {
            FoundSuppression::Scanned(s) => s,
            FoundSuppression::Held(at) => {
                let (_, payload) = read(at).ok_or_else(|| unusable(at))?;
                let record = decode_suppression(payload).map_err(|_| unusable(at))?;
                LiveSuppression { at, record }
            }
        });
    }
    out.suppressions.sort_by_key(|s| s.at);
    out.reclaimable = out.ledger.deletable();
    Ok(out)
}

/// Old place -> new place of every message a `Moved` record (compaction's
/// copy) holds, while the old copy's segment is on disk: the compaction
/// reclaims it only after every core recorded the moved messages' states
/// at the new place, and checkpoints keep an old place's states exactly
/// that long (`checkpoint_roll::plan`). Hashed with Fx: spool places from
/// this server's own disk.
fn moved_to(fold: &mut Fold, images: &BTreeMap<SegmentKey, &[u8]>) -> HashMap<SpoolRef, SpoolRef, FxBuildHasher> {
    let mut moved = std::mem::take(&mut fold.moved);
    if moved.is_empty() {
        return HashMap::default();
    }
    moved.sort_unstable();
    // A `Moved` record's tombstones name its old place, or itself (the
    // recipients final before the move). Most tombstones are plain ones
    // whose target's segment is gone: that test comes first.
    fold.tombstones
        .iter()
        .filter(|(at, old, _)| old != at && images.contains_key(&old.segment_key()) && moved.binary_search(at).is_ok())
        .map(|&(at, old, _)| (old, at))
        .collect()
}

/// The latest state of each recipient not yet final, in (target,
/// recipient) order, reading back at its place one a checkpoint holds
/// without its content. States are fed to no ledger: they neither keep
/// their segment nor pin their target's. `is_final` is also true for a
/// target that is not a live message (never was, or its segment is gone).
///
/// A state of a message's old place is carried to where compaction moved
/// it (`moved_to`) unless the new place has a later one: a crash after the
/// `Moved` record was durable and before the relocation's state records
/// were would otherwise lose the message's schedule and its hold (see
/// `shard::compact`).
fn live_states<'a>(
    states: States,
    moved_to: &HashMap<SpoolRef, SpoolRef, FxBuildHasher>,
    ledger: &Ledger,
    read: impl Fn(SpoolRef) -> Option<(RecordKind, &'a [u8])>,
) -> (Vec<LiveState>, Carried) {
    let place = |mut at: SpoolRef| {
        // Bounded: a message moved more often is not worth the loop.
        for _ in 0..64 {
            match moved_to.get(&at) {
                Some(&next) => at = next,
                None => break,
            }
        }
        at
    };
    let mut out = Vec::with_capacity(states.held.len() + states.scanned.len());
    // States of old places, at the place their message is now.
    let mut carried = Vec::new();
    // Where the state of `target`'s recipient goes (None: it is final).
    let to = |target: SpoolRef, recipient: u16| {
        let now = if moved_to.is_empty() { target } else { place(target) };
        (!ledger.is_final(now, recipient)).then_some(now)
    };
    for h in states.held {
        let Some(now) = to(h.target, h.recipient) else { continue };
        let content = match h.content {
            Some(c) => c,
            // Advisory: one that does not read back means an earlier retry.
            None => match read(h.at).and_then(|(_, p)| decode_recipient_state(p).ok()) {
                Some(s) => content_of(s),
                None => continue,
            },
        };
        let s = LiveState { target: now, recipient: h.recipient, seq: h.seq, content };
        if now == h.target {
            out.push(s)
        } else {
            carried.push(s)
        }
    }
    for ((target, recipient), (_, seq, s)) in states.scanned {
        let Some(now) = to(target, recipient) else { continue };
        let s = LiveState { target: now, recipient, seq, content: content_of(s) };
        if now == target {
            out.push(s)
        } else {
            carried.push(s)
        }
    }
    let key = |s: &LiveState| (s.target, s.recipient);
    out.sort_unstable_by_key(key);
    if carried.is_empty() {
        return (out, Carried::default());
    }
    // A carried state counts only if later than any state at the new
    // place (on an equal seq, the one recorded there wins).
    carried.sort_unstable_by_key(|s| (s.target, s.recipient, s.seq));
    carried.dedup_by(|later, kept| {
        let same = key(later) == key(kept);
        if same {
            std::mem::swap(later, kept);
        }
        same
    });
    let mut replaced = Vec::new();
    carried.retain(|c| match out.binary_search_by_key(&key(c), key) {
        Ok(i) if out[i].seq >= c.seq => false,
        Ok(i) => {
            replaced.push(i);
            true
        }
        Err(_) => true,
    });
    let mut i = 0;
    out.retain(|_| {
        i += 1;
        replaced.binary_search(&(i - 1)).is_err()
    });
    let mut to: Vec<SpoolRef> = carried.iter().map(|s| s.target).collect();
    to.dedup();
    let mut from: Vec<SegmentKey> =
        moved_to.keys().filter(|&&old| to.binary_search(&place(old)).is_ok()).map(|old| old.segment_key()).collect();
    from.sort_unstable();
    from.dedup();
    out.append(&mut carried);
    out.sort_unstable_by_key(key);
    (out, Carried { to, from })
}

/// Where recovery carried states across a compaction's move.
#[derive(Debug, Default)]
pub struct Carried {
    /// The places of the live messages that took them (to be recorded
    /// there again).
    pub to: Vec<SpoolRef>,
    /// The segments of the old places they were found at (kept until they
    /// are recorded again: a second crash would need them).
    pub from: Vec<SegmentKey>,
}

/// What a state record says.
fn content_of(s: RecipientState) -> StateContent {
    let (attempts, next_attempt_ms, warned, held) = (s.attempts, s.next_attempt_ms, s.warned, s.held);
    StateContent { attempts, next_attempt_ms, warned, held, last_error: Arc::from(s.last_error) }
}

/// Where a checkpoint holds the envelope of `h` (its start in the
/// checkpoint's envelope bytes), the envelope, and its body's length.
fn held_envelope<'a>(checkpoints: &'a BTreeMap<u16, Checkpoint>, h: &HeldRecord) -> Option<(usize, &'a [u8], u64)> {
    let ck = checkpoints.get(&h.at.dir)?;
    let e = h.envelope?;
    Some((e.start, ck.envelope(h)?, e.body_len))
}

/// Keeps the state at `at` with `seq` for `key` if it is later than the
/// one kept so far: a higher `seq`, or an equal one written later in
/// (dir, segment, offset) order. Not the order records are found in, so the
/// rule does not depend on how images are iterated.
pub(super) fn keep_latest<S, H: std::hash::BuildHasher>(
    states: &mut HashMap<(SpoolRef, u16), (SpoolRef, u64, S), H>,
    key: (SpoolRef, u16),
    at: SpoolRef,
    seq: u64,
    s: S,
) {
    match states.entry(key) {
        Entry::Occupied(mut kept) => {
            let (kept_at, kept_seq, _) = kept.get();
            if (seq, at) > (*kept_seq, *kept_at) {
                kept.insert((at, seq, s));
            }
        }
        Entry::Vacant(slot) => {
            slot.insert((at, seq, s));
        }
    }
}

/// Recovers the spool under `root` (`core-<dir>/segment-<seq>` files):
/// deletes unfinished `.tmp` segments, maps every segment, runs
/// [`recover_images`], and zeroes and syncs the repair regions before
/// returning. Blocking; run at start-up, before any `Spool` appends. A
/// missing root is an empty spool. (A server recovers in two phases
/// instead, so that it serves at once: see [`super::phased`].)
pub fn recover(root: &Path) -> Result<Recovered, SpoolError> {
    let files = list_segments(root, true)?
        .into_iter()
        .map(|(key, path)| Ok((key, map_segment(key, &path)?)))
        .collect::<Result<BTreeMap<_, _>, SpoolError>>()?;
    let recovered = recover_images(
        files.iter().map(|(&key, (_, map))| SegmentImage { key, bytes: map.as_deref().unwrap_or(&[]) }),
    )?;
    apply_repairs(&files, &recovered.repairs)?;
    Ok(recovered)
}

/// Every segment file under `root` by key. With `remove_temp`, unfinished
/// `segment-<seq>.tmp` files are deleted (durably) on the way: only safe
/// while no writer is preparing a segment. A missing root has none.
pub(super) fn list_segments(root: &Path, remove_temp: bool) -> Result<BTreeMap<SegmentKey, PathBuf>, SpoolError> {
    let dir_err = |path: &Path| {
        let path = path.to_path_buf();
        move |e| SpoolError::Directory { path, source: Arc::new(e) }
    };
    let mut out = BTreeMap::new();
    if !root.exists() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(root).map_err(dir_err(root))? {
        let entry = entry.map_err(dir_err(root))?;
        let Some(dir) = entry.file_name().to_str().and_then(parse_dir_name) else {
            continue;
        };
        let dir_path = entry.path();
        let mut removed_temp = false;
        for seg in std::fs::read_dir(&dir_path).map_err(dir_err(&dir_path))? {
            let seg = seg.map_err(dir_err(&dir_path))?;
            match seg.file_name().to_str().and_then(parse_segment_name) {
                Some(SegmentName::Temp(_)) if remove_temp => {
                    std::fs::remove_file(seg.path()).map_err(dir_err(&seg.path()))?;
                    removed_temp = true;
                }
                Some(SegmentName::Segment(seq)) => {
                    out.insert(SegmentKey { dir, seq }, seg.path());
                }
                Some(SegmentName::Temp(_)) | None => {}
            }
        }
        if removed_temp {
            File::open(&dir_path).and_then(|d| d.sync_all()).map_err(dir_err(&dir_path))?;
        }
    }
    Ok(out)
}

/// Opens segment `key` at `path` for repair and maps it (None when empty).
pub(super) fn map_segment(key: SegmentKey, path: &Path) -> Result<(File, Option<Mmap>), SpoolError> {
    let open_err = |e| SpoolError::OpenSegment { key, source: Arc::new(e) };
    let file = OpenOptions::new().read(true).write(true).open(path).map_err(open_err)?;
    let len = file.metadata().map_err(open_err)?.len();
    // SAFETY: nothing truncates spool segments (see reader.rs); the map is
    // dropped by the recovery that made it.
    let map = (len > 0).then(|| unsafe { Mmap::map(&file) }).transpose().map_err(open_err)?;
    Ok((file, map))
}

/// Zero and sync each repair region of the segments in `files`.
pub(super) fn apply_repairs(
    files: &BTreeMap<SegmentKey, (File, Option<Mmap>)>,
    repairs: &[Repair],
) -> Result<(), SpoolError> {
    for r in repairs {
        let Some((file, _)) = files.get(&r.key) else {
            continue;
        };
        zero_range(file, r.from, r.to).map_err(|e| SpoolError::Repair {
            key: r.key,
            from: r.from,
            to: r.to,
            source: Arc::new(e),
        })?;
    }
    Ok(())
}

fn zero_range(file: &File, from: u32, to: u32) -> std::io::Result<()> {
    let zeros = vec![0u8; 1 << 20];
    let mut pos = u64::from(from);
    while pos < u64::from(to) {
        let len = (u64::from(to) - pos).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..len], pos)?;
        pos += len as u64;
    }
    file.sync_data()
}
