//! Taking a checkpoint: the previous one of the directory rolled forward
//! over the log between its cut and the new one ([`roll`], pure), and the
//! file written atomically ([`take`], blocking: run it off the executor).
//! See `checkpoint` for what is kept and why.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::checkpoint::{self, Checkpoint, EnvelopeAt, Held, HeldRecord, HeldState, HeldTombstone, StateContent};
use super::error::SpoolError;
use super::ids::{QueueId, SegmentKey, SpoolRef};
use super::layout::dir_path;
use super::payload::{
    decode_message, decode_moved, decode_recipient_state, decode_tombstone, encode_message_envelope, MessageRecord,
};
use super::record::{scan_segment_from, RecordKind, ScanEnd};
use super::recovery::{list_segments, SegmentImage};
use super::suppression::decode_suppression;
use super::walk::map_segment;

/// File name of a directory's checkpoint.
pub const FILE_NAME: &str = "checkpoint";

/// Where directory `dir`'s checkpoint is.
pub fn checkpoint_path(root: &Path, dir: u16) -> PathBuf {
    dir_path(root, dir).join(FILE_NAME)
}

/// `prev` rolled forward to `cut` over `images`: the directory's segments
/// from `prev.cut.segment` to `cut.segment`, the last one cut at
/// `cut.offset` (a segment missing among them was reclaimed: its records
/// no longer count). `present` says whether a segment still exists; what
/// lies in one that does not is dropped.
pub fn roll<'a>(
    prev: Checkpoint,
    cut: SpoolRef,
    images: impl IntoIterator<Item = SegmentImage<'a>>,
    present: &dyn Fn(SegmentKey) -> bool,
) -> Result<Checkpoint, SpoolError> {
    let dir = cut.dir;
    let from = prev.cut;
    let mut ck = Checkpoint { cut, ..prev };
    let mut states: HashMap<(SpoolRef, u16), HeldState> =
        ck.states.drain(..).map(|s| ((s.target, s.recipient), s)).collect();
    let mut errors: HashMap<String, Arc<str>> = HashMap::new();
    for image in images {
        let key = image.key;
        let start = if key.seq == from.segment { from.offset } else { 0 };
        let scan = scan_segment_from(image.bytes, key, start);
        if let ScanEnd::Bad { offset, reason } = &scan.end {
            // Before the cut everything is durable: a bad record there is
            // an old torn tail (recovery cuts it too) unless it is intact.
            if !reason.is_torn() || key.seq == cut.segment {
                return Err(SpoolError::UnreadableRecord {
                    dir,
                    segment: key.seq,
                    offset: *offset,
                    reason: reason.clone(),
                });
            }
        }
        for rec in &scan.records {
            let at = SpoolRef { dir, segment: key.seq, offset: rec.offset };
            let payload = &image.bytes[rec.payload.clone()];
            let undecodable = |source| SpoolError::Undecodable { at, source };
            match rec.kind {
                RecordKind::Message => {
                    let m = decode_message(payload).map_err(undecodable)?;
                    note_id(&mut ck.last_queue_id, m.queue_id);
                    let recipients = m.recipients.len() as u16;
                    let envelope = put_envelope(&mut ck.envelope_bytes, &m);
                    ck.records.push(HeldRecord { at, kind: Held::Message, recipients, envelope });
                }
                RecordKind::Moved => {
                    let moved = decode_moved(payload).map_err(undecodable)?;
                    note_id(&mut ck.last_queue_id, moved.message.queue_id);
                    let recipients = moved.message.recipients.len() as u16;
                    let envelope = put_envelope(&mut ck.envelope_bytes, &moved.message);
                    ck.records.push(HeldRecord { at, kind: Held::Moved, recipients, envelope });
                    let old = (0..recipients).map(|r| HeldTombstone { at, target: moved.old, recipient: r });
                    ck.tombstones.extend(old);
                    let done = moved.done.iter().map(|&r| HeldTombstone { at, target: at, recipient: r });
                    ck.tombstones.extend(done);
                }
                RecordKind::Suppression => {
                    let s = decode_suppression(payload).map_err(undecodable)?;
                    ck.records.push(HeldRecord { at, kind: Held::Suppression, recipients: 1, envelope: None });
                    if let Some(old) = s.replaces {
                        ck.tombstones.push(HeldTombstone { at, target: old, recipient: 0 });
                    }
                }
                RecordKind::Tombstone => {
                    let t = decode_tombstone(payload).map_err(undecodable)?;
                    ck.tombstones.push(HeldTombstone { at, target: t.target, recipient: t.recipient });
                }
                RecordKind::RecipientState => {
                    let s = decode_recipient_state(payload).map_err(undecodable)?;
                    let last_error = match errors.get(s.last_error.as_str()) {
                        Some(e) => e.clone(),
                        None => errors.entry(s.last_error.clone()).or_insert_with(|| Arc::from(s.last_error)).clone(),
                    };
                    let content = StateContent {
                        attempts: s.attempts,
                        next_attempt_ms: s.next_attempt_ms,
                        warned: s.warned,
                        held: s.held,
                        last_error,
                    };
                    let new =
                        HeldState { at, target: s.target, recipient: s.recipient, seq: s.seq, content: Some(content) };
                    states
                        .entry((s.target, s.recipient))
                        .and_modify(|kept| {
                            if (new.seq, new.at) > (kept.seq, kept.at) {
                                *kept = new.clone();
                            }
                        })
                        .or_insert(new);
                }
                RecordKind::Checkpoint => {}
            }
        }
    }
    prune(&mut ck, states, present);
    Ok(ck)
}

/// `m`'s envelope appended to `arena` (None if it does not encode: it
/// then reads back from its record at recovery).
fn put_envelope(arena: &mut Vec<u8>, m: &MessageRecord<'_>) -> Option<EnvelopeAt> {
    let bytes = encode_message_envelope(m).ok()?;
    let at = EnvelopeAt { start: arena.len(), len: u32::try_from(bytes.len()).ok()?, body_len: m.body.len() as u64 };
    arena.extend_from_slice(&bytes);
    Some(at)
}

fn note_id(last: &mut Option<QueueId>, id: QueueId) {
    *last = Some(last.map_or(id, |q| q.max(id)));
}

/// Drops what can no longer change recovery (see `checkpoint`).
fn prune(ck: &mut Checkpoint, states: HashMap<(SpoolRef, u16), HeldState>, present: &dyn Fn(SegmentKey) -> bool) {
    ck.records.retain(|r| present(r.at.segment_key()));
    ck.tombstones.retain(|t| present(t.at.segment_key()) && present(t.target.segment_key()));
    // Recipients made final by this directory's tombstones.
    let mut finals: HashMap<SpoolRef, HashSet<u16>> = HashMap::new();
    for t in &ck.tombstones {
        finals.entry(t.target).or_default().insert(t.recipient);
    }
    ck.records.retain(|r| {
        let done = finals.get(&r.at).map_or(0, |f| f.iter().filter(|&&i| i < r.recipients).count());
        done < usize::from(r.recipients)
    });
    let live: HashSet<SpoolRef> = ck.records.iter().map(|r| r.at).collect();
    let dir = ck.cut.dir;
    // A tombstone of a dead message of this directory in its own segment
    // neither keeps anything final nor pins anything.
    ck.tombstones
        .retain(|t| t.target.dir != dir || live.contains(&t.target) || t.target.segment_key() != t.at.segment_key());
    // A state with its content outlives its own segment (see `checkpoint`).
    ck.states = states
        .into_values()
        .filter(|s| (s.content.is_some() || present(s.at.segment_key())) && present(s.target.segment_key()))
        .filter(|s| s.target.dir != dir || live.contains(&s.target))
        .collect();
    ck.states.sort_unstable_by_key(|s| (s.at, s.target, s.recipient));
    // The kept records' envelopes, back to back in their order.
    let old = std::mem::take(&mut ck.envelope_bytes);
    for r in &mut ck.records {
        if let Some(e) = r.envelope.as_mut() {
            let start = ck.envelope_bytes.len();
            ck.envelope_bytes.extend_from_slice(&old[e.start..e.start + e.len as usize]);
            e.start = start;
        }
    }
}

/// Reads directory `dir`'s checkpoint under `root`: None if there is none,
/// Err if it is damaged or not this version's (the caller then does
/// without).
pub fn load(root: &Path, dir: u16) -> Result<Option<Checkpoint>, checkpoint::CheckpointError> {
    match std::fs::read(checkpoint_path(root, dir)) {
        Ok(bytes) => {
            let ck = checkpoint::decode_owned(bytes)?;
            // A file copied into the wrong directory is not this one's.
            Ok((ck.cut.dir == dir).then_some(ck))
        }
        Err(_) => Ok(None),
    }
}

/// What [`take`] wrote.
#[derive(Clone, Copy, Debug)]
pub struct Taken {
    pub records: usize,
    pub tombstones: usize,
    pub states: usize,
    pub bytes: usize,
    /// Whether it rolled the previous checkpoint forward (else it read the
    /// directory from its start).
    pub incremental: bool,
}

/// Takes a checkpoint of directory `cut.dir` at `cut` (the place of a
/// durable `Checkpoint` record) and writes it atomically. Blocking.
pub fn take(root: &Path, cut: SpoolRef) -> Result<Taken, SpoolError> {
    let dir = cut.dir;
    let prev = load(root, dir).ok().flatten().filter(|p| p.cut < cut);
    let incremental = prev.is_some();
    let prev = prev.unwrap_or_else(|| Checkpoint::empty(SpoolRef { dir, segment: 0, offset: 0 }));
    let segments = list_segments(root, false)?;
    if !segments.contains_key(&cut.segment_key()) {
        return Err(SpoolError::CheckpointCutGone { at: cut });
    }
    let mut maps = Vec::new();
    for &key in segments.keys().filter(|k| k.dir == dir && (prev.cut.segment..=cut.segment).contains(&k.seq)) {
        // Reclaimed since it was listed: its records no longer count.
        if let Some(map) = map_segment(root, key)? {
            maps.push((key, map));
        }
    }
    let images = maps.iter().map(|(key, map)| {
        let end = if key.seq == cut.segment { (cut.offset as usize).min(map.len()) } else { map.len() };
        SegmentImage { key: *key, bytes: &map[..end] }
    });
    let ck = roll(prev, cut, images, &|k| segments.contains_key(&k))?;
    let bytes = checkpoint::encode(&ck);
    write_atomically(&dir_path(root, dir), &bytes)
        .map_err(|e| SpoolError::Directory { path: checkpoint_path(root, dir), source: Arc::new(e) })?;
    Ok(Taken {
        records: ck.records.len(),
        tombstones: ck.tombstones.len(),
        states: ck.states.len(),
        bytes: bytes.len(),
        incremental,
    })
}

/// `checkpoint.tmp` written and synced, renamed to `checkpoint`, the
/// directory synced.
fn write_atomically(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(FILE_NAME))?;
    std::fs::File::open(dir)?.sync_all()
}
