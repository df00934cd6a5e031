//! Taking a checkpoint: the previous one of the directory rolled forward
//! over the log between its cut and the new one ([`plan`], pure), and the
//! file written atomically ([`take`], blocking: run it off the executor),
//! the previous one's kept entries copied from its file as it goes.
//! See `checkpoint` for what is kept and why.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use super::checkpoint::{
    self, put_place, put_ref, Checkpoint, EnvelopeAt, Held, HeldRecord, HeldState, HeldTombstone, StateContent,
    CONTENT_LEN, CUT_LEN, ENVELOPE_HEAD_LEN, HAS_CONTENT, HEAD_LEN, HELD, MAGIC, RECORD_LEN, STATE_LEN, TAG_CUT,
    TAG_ENVELOPES, TAG_RECORDS, TAG_STATES, TAG_STATE_CONTENTS, TAG_TOMBSTONES, TOMBSTONE_LEN, VERSION, WARNED,
};
use super::checkpoint_view::{RawContent, View};
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

/// What the log between the previous checkpoint's cut and the new one
/// adds (bounded by the log since the last checkpoint, not the backlog).
struct Fresh {
    last_queue_id: Option<QueueId>,
    records: Vec<HeldRecord>,
    /// Their envelopes, back to back.
    envelope_bytes: Vec<u8>,
    tombstones: Vec<HeldTombstone>,
    /// The latest state per (target, recipient), in the order first seen;
    /// `state_index` says where each is. (A map of the states themselves
    /// held ~280 B per state at its peak, a million of them after a
    /// minute of deferrals at 1 M queued; the list and an index of places
    /// hold about half as much, and the index goes before the list is
    /// sorted.)
    states: Vec<HeldState>,
    state_index: HashMap<(SpoolRef, u16), usize>,
}

/// The records of `images` from `from` on: the directory's segments from
/// `from.segment` to the cut's, the last one cut at the cut.
fn scan_fresh<'a>(
    from: SpoolRef,
    cut: SpoolRef,
    images: impl IntoIterator<Item = SegmentImage<'a>>,
) -> Result<Fresh, SpoolError> {
    let dir = cut.dir;
    let mut fresh = Fresh {
        last_queue_id: None,
        records: Vec::new(),
        envelope_bytes: Vec::new(),
        tombstones: Vec::new(),
        states: Vec::new(),
        state_index: HashMap::new(),
    };
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
                    note_id(&mut fresh.last_queue_id, m.queue_id);
                    let recipients = m.recipients.len() as u16;
                    let envelope = put_envelope(&mut fresh.envelope_bytes, &m);
                    fresh.records.push(HeldRecord { at, kind: Held::Message, recipients, envelope });
                }
                RecordKind::Moved => {
                    let moved = decode_moved(payload).map_err(undecodable)?;
                    note_id(&mut fresh.last_queue_id, moved.message.queue_id);
                    let recipients = moved.message.recipients.len() as u16;
                    let envelope = put_envelope(&mut fresh.envelope_bytes, &moved.message);
                    fresh.records.push(HeldRecord { at, kind: Held::Moved, recipients, envelope });
                    let old = (0..recipients).map(|r| HeldTombstone { at, target: moved.old, recipient: r });
                    fresh.tombstones.extend(old);
                    let done = moved.done.iter().map(|&r| HeldTombstone { at, target: at, recipient: r });
                    fresh.tombstones.extend(done);
                }
                RecordKind::Suppression => {
                    let s = decode_suppression(payload).map_err(undecodable)?;
                    fresh.records.push(HeldRecord { at, kind: Held::Suppression, recipients: 1, envelope: None });
                    if let Some(old) = s.replaces {
                        fresh.tombstones.push(HeldTombstone { at, target: old, recipient: 0 });
                    }
                }
                RecordKind::Tombstone => {
                    let t = decode_tombstone(payload).map_err(undecodable)?;
                    fresh.tombstones.push(HeldTombstone { at, target: t.target, recipient: t.recipient });
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
                    match fresh.state_index.entry((s.target, s.recipient)) {
                        Entry::Occupied(i) => {
                            let kept = &mut fresh.states[*i.get()];
                            if (new.seq, new.at) > (kept.seq, kept.at) {
                                *kept = new;
                            }
                        }
                        Entry::Vacant(slot) => {
                            slot.insert(fresh.states.len());
                            fresh.states.push(new);
                        }
                    }
                }
                RecordKind::Checkpoint => {}
            }
        }
    }
    Ok(fresh)
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

/// The next checkpoint: the previous one (`prev`, read in place) rolled
/// forward to `cut` over the log after its cut, as what to keep of each
/// (a flag per entry of `prev`) and what the log adds. Writing it
/// ([`Plan::write`]) copies the kept entries of `prev` from its file, so
/// a roll's memory grows with the log since the last checkpoint, not with
/// the backlog.
pub struct Plan<'v> {
    cut: SpoolRef,
    last_queue_id: Option<QueueId>,
    prev_records: Vec<bool>,
    fresh: Fresh,
    fresh_records: Vec<bool>,
    tombstones: Vec<HeldTombstone>,
    prev_states: Vec<bool>,
    fresh_states: Vec<HeldState>,
    /// The written string table of last errors, and where each of
    /// `prev`'s entries went in it (index plus one, 0: dropped).
    table: Vec<&'v str>,
    prev_errors: Vec<u32>,
}

/// Plans the roll of `prev` to `cut` over `images` (the directory's
/// segments from `prev.cut.segment` to `cut.segment`, the last one cut at
/// `cut.offset`; a segment missing among them was reclaimed: its records
/// no longer count). `present` says whether a segment still exists; what
/// lies in one that does not is dropped (see `checkpoint` for what is
/// kept and why).
pub fn plan<'v, 'a>(
    prev: &View<'v>,
    cut: SpoolRef,
    images: impl IntoIterator<Item = SegmentImage<'a>>,
    present: &dyn Fn(SegmentKey) -> bool,
) -> Result<Plan<'v>, SpoolError> {
    let dir = cut.dir;
    let mut fresh = scan_fresh(prev.cut, cut, images)?;
    let last_queue_id = prev.last_queue_id.max(fresh.last_queue_id);
    let tombstones: Vec<HeldTombstone> = prev
        .tombstones()
        .chain(fresh.tombstones.drain(..))
        .filter(|t| present(t.at.segment_key()) && present(t.target.segment_key()))
        .collect();
    // Recipients made final by this directory's tombstones, by target.
    let mut finals: Vec<(SpoolRef, u16)> = tombstones.iter().map(|t| (t.target, t.recipient)).collect();
    finals.sort_unstable();
    finals.dedup();
    let alive = |at: SpoolRef, recipients: u16| {
        let first = finals.partition_point(|&(t, _)| t < at);
        let done = finals[first..].iter().take_while(|&&(t, r)| t == at && r < recipients).count();
        present(at.segment_key()) && done < usize::from(recipients)
    };
    // Live `Moved` records (compaction's copies), by place.
    let mut moved: Vec<SpoolRef> = Vec::new();
    let mut note = |at: SpoolRef, recipients: u16, kind: Held| {
        let live = alive(at, recipients);
        if live && kind == Held::Moved {
            moved.push(at);
        }
        live
    };
    let prev_records: Vec<bool> = prev.records().map(|r| note(r.at, r.recipients, r.kind)).collect();
    let fresh_records: Vec<bool> = fresh.records.iter().map(|r| note(r.at, r.recipients, r.kind)).collect();
    moved.sort_unstable();
    let fresh_index: HashMap<SpoolRef, usize> = fresh.records.iter().enumerate().map(|(i, r)| (r.at, i)).collect();
    let live = |target: SpoolRef| match prev.record_index(target) {
        Some(i) => prev_records[i],
        None => fresh_index.get(&target).is_some_and(|&i| fresh_records[i]),
    };
    // A tombstone of a dead message of this directory in its own segment
    // neither keeps anything final nor pins anything.
    let tombstones: Vec<HeldTombstone> = tombstones
        .into_iter()
        .filter(|t| t.target.dir != dir || live(t.target) || t.target.segment_key() != t.at.segment_key())
        .collect();
    // Old places of this directory's live messages that compaction moved,
    // while the old copy's segment exists: recovery carries their states to
    // the new place (the cores may not have recorded them there yet).
    // (A compaction never copies into the segment it empties, so the
    // tombstone that names the old place is kept by the filter above.)
    let mut moved_from: Vec<SpoolRef> = tombstones
        .iter()
        .filter(|t| t.at != t.target && !moved.is_empty() && moved.binary_search(&t.at).is_ok())
        .map(|t| t.target)
        .collect();
    moved_from.sort_unstable();
    moved_from.dedup();
    // A state with its content outlives its own segment (see `checkpoint`).
    let keep_state = |s: &HeldState, has_content: bool| {
        (has_content || present(s.at.segment_key()))
            && present(s.target.segment_key())
            && (s.target.dir != dir || live(s.target) || moved_from.binary_search(&s.target).is_ok())
    };
    let mut prev_states = Vec::with_capacity(prev.state_count());
    // Fresh states no newer than `prev`'s for the same recipient.
    let mut stale = vec![false; fresh.states.len()];
    for (i, s) in prev.states().enumerate() {
        let fresh_state = fresh.state_index.get(&(s.target, s.recipient)).map(|&j| (j, &fresh.states[j]));
        let newer = fresh_state.is_some_and(|(_, f)| (f.seq, f.at) > (s.seq, s.at));
        if let (false, Some((j, _))) = (newer, fresh_state) {
            stale[j] = true;
        }
        prev_states.push(!newer && keep_state(&s, prev.content(i).is_some()));
    }
    // The index goes now, not with the plan, which lives while the file
    // is written.
    fresh.state_index = HashMap::new();
    let mut fresh_states = std::mem::take(&mut fresh.states);
    let mut stale = stale.into_iter();
    fresh_states.retain(|s| !stale.next().unwrap_or(true) && keep_state(s, s.content.is_some()));
    fresh_states.sort_unstable_by_key(|s| (s.at, s.target, s.recipient));
    // The last errors the kept states name, each once.
    let mut prev_errors = vec![0; prev.table_len()];
    let mut table: Vec<&'v str> = Vec::new();
    for c in (0..prev_states.len()).filter(|&i| prev_states[i]).filter_map(|i| prev.content(i)) {
        if let Some(slot) = c.error.checked_sub(1).and_then(|i| prev_errors.get_mut(i as usize)) {
            if *slot == 0 {
                table.push(prev.error_text(c.error));
                *slot = table.len() as u32;
            }
        }
    }
    Ok(Plan {
        cut,
        last_queue_id,
        prev_records,
        fresh,
        fresh_records,
        tombstones,
        prev_states,
        fresh_states,
        table,
        prev_errors,
    })
}

/// What a written checkpoint holds.
#[derive(Clone, Copy, Debug)]
pub struct Written {
    pub records: usize,
    pub tombstones: usize,
    pub states: usize,
    pub bytes: usize,
}

impl Plan<'_> {
    /// Writes the planned checkpoint file to `w` (from its start), taking
    /// the kept entries of `prev` (the view the plan was made from) from
    /// its file.
    pub fn write<W: Write + Seek>(&self, prev: &View<'_>, w: W) -> std::io::Result<Written> {
        let kept_prev = |i: usize| self.prev_records[i];
        let records =
            self.prev_records.iter().filter(|&&k| k).count() + self.fresh_records.iter().filter(|&&k| k).count();
        let states = self.prev_states.iter().filter(|&&k| k).count() + self.fresh_states.len();
        let fresh_envelopes = || {
            self.fresh.records.iter().zip(&self.fresh_records).filter(|(_, &k)| k).filter_map(|(r, _)| {
                let e = r.envelope?;
                Some((r.at, e.body_len, &self.fresh.envelope_bytes[e.start..e.start + e.len as usize]))
            })
        };
        let prev_envelopes =
            || prev.envelopes().filter(move |(i, _)| kept_prev(*i)).map(|(_, e)| (e.at, e.body_len, e.bytes));
        let envelopes_len: usize =
            prev_envelopes().chain(fresh_envelopes()).map(|(_, _, e)| ENVELOPE_HEAD_LEN + e.len()).sum();
        // Fresh last errors not among the kept ones get their own entries.
        let mut table = self.table.clone();
        let mut ids: HashMap<&str, u32> = table.iter().enumerate().map(|(i, t)| (*t, i as u32 + 1)).collect();
        for c in self.fresh_states.iter().filter_map(|s| s.content.as_ref()).filter(|c| !c.last_error.is_empty()) {
            if !ids.contains_key(&*c.last_error) {
                table.push(&c.last_error);
                ids.insert(&c.last_error, table.len() as u32);
            }
        }
        let contents_len = 4 + table.iter().map(|t| 2 + t.len()).sum::<usize>() + states * CONTENT_LEN;
        let lens = [
            CUT_LEN,
            records * RECORD_LEN,
            self.tombstones.len() * TOMBSTONE_LEN,
            states * STATE_LEN,
            envelopes_len,
            contents_len,
        ];
        let body_len: usize = lens.iter().map(|l| SECTION_HEAD_LEN + l).sum();
        let body_len = u32::try_from(body_len).map_err(|_| std::io::Error::other("checkpoint over 4 GiB"))?;
        let mut out = Out::start(w, body_len)?;

        out.section(TAG_CUT, CUT_LEN, |b| {
            b.extend_from_slice(&self.cut.dir.to_le_bytes());
            put_place(b, self.cut);
            b.push(u8::from(self.last_queue_id.is_some()));
            b.extend_from_slice(&self.last_queue_id.map_or(0, |q| q.0).to_le_bytes());
        })?;
        out.section(TAG_RECORDS, lens[1], |_| {})?;
        let prev_records =
            prev.records().zip(&self.prev_records).filter(|(_, &k)| k).map(|(r, _)| (r.at, r.kind, r.recipients));
        let fresh_records = self
            .fresh
            .records
            .iter()
            .zip(&self.fresh_records)
            .filter(|(_, &k)| k)
            .map(|(r, _)| (r.at, r.kind, r.recipients));
        for (at, kind, recipients) in prev_records.chain(fresh_records) {
            out.entry(|b| {
                put_place(b, at);
                b.push(kind.to_byte());
                b.extend_from_slice(&recipients.to_le_bytes());
            })?;
        }
        out.section(TAG_TOMBSTONES, lens[2], |_| {})?;
        for t in &self.tombstones {
            out.entry(|b| {
                put_place(b, t.at);
                put_ref(b, t.target);
                b.extend_from_slice(&t.recipient.to_le_bytes());
            })?;
        }
        out.section(TAG_STATES, lens[3], |_| {})?;
        for s in self.kept_states(prev) {
            out.entry(|b| {
                put_place(b, s.at);
                put_ref(b, s.target);
                b.extend_from_slice(&s.recipient.to_le_bytes());
                b.extend_from_slice(&s.seq.to_le_bytes());
            })?;
        }
        out.section(TAG_ENVELOPES, lens[4], |_| {})?;
        for (at, body_len, e) in prev_envelopes().chain(fresh_envelopes()) {
            out.entry(|b| {
                put_place(b, at);
                b.extend_from_slice(&body_len.to_le_bytes());
                b.extend_from_slice(&(e.len() as u32).to_le_bytes());
                b.extend_from_slice(e);
            })?;
        }
        out.section(TAG_STATE_CONTENTS, lens[5], |b| {
            b.extend_from_slice(&(table.len() as u32).to_le_bytes());
            for t in &table {
                // Last errors are at most 4 KiB (`LAST_ERROR_MAX_LEN`).
                b.extend_from_slice(&(t.len() as u16).to_le_bytes());
                b.extend_from_slice(t.as_bytes());
            }
        })?;
        let prev_contents = (0..self.prev_states.len()).filter(|&i| self.prev_states[i]).map(|i| {
            prev.content(i).map(|c| {
                let error = c.error.checked_sub(1).and_then(|e| self.prev_errors.get(e as usize)).copied().unwrap_or(0);
                RawContent { error, ..c }
            })
        });
        let fresh_contents = self.fresh_states.iter().map(|s| {
            s.content.as_ref().map(|c| RawContent {
                attempts: c.attempts,
                next_attempt_ms: c.next_attempt_ms,
                warned: c.warned,
                held: c.held,
                error: ids.get(&*c.last_error).copied().unwrap_or(0),
            })
        });
        for c in prev_contents.chain(fresh_contents) {
            out.entry(|b| put_content(b, c))?;
        }
        let bytes = out.finish()?;
        Ok(Written { records, tombstones: self.tombstones.len(), states, bytes })
    }

    /// The kept states, in the written order: `prev`'s, then the fresh ones
    /// (all after the previous cut).
    fn kept_states<'s>(&'s self, prev: &'s View<'_>) -> impl Iterator<Item = HeldState> + 's {
        let prev_states = prev.states().zip(&self.prev_states).filter(|(_, &k)| k).map(|(s, _)| s);
        prev_states.chain(self.fresh_states.iter().cloned())
    }
}

/// Reads directory `dir`'s checkpoint under `root`, in place from a map of
/// the file: None if there is none, Err if it is damaged or not this
/// version's (the caller then does without).
pub fn load(root: &Path, dir: u16) -> Result<Option<Checkpoint>, checkpoint::CheckpointError> {
    let Some(map) = map_file(&checkpoint_path(root, dir)) else { return Ok(None) };
    let ck = checkpoint::decode_owned(map)?;
    // A file copied into the wrong directory is not this one's.
    Ok((ck.cut.dir == dir).then_some(ck))
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
/// durable `Checkpoint` record) and writes it atomically. Blocking. The
/// previous checkpoint is read in place from a map of its file (see
/// `checkpoint_view`); one that is damaged, not this directory's or not
/// before `cut` is not used: the directory is then read from its start.
pub fn take(root: &Path, cut: SpoolRef) -> Result<Taken, SpoolError> {
    let dir = cut.dir;
    let file = map_file(&checkpoint_path(root, dir));
    let prev = file.as_deref().and_then(|bytes| View::parse(bytes).ok()).filter(|p| p.cut.dir == dir && p.cut < cut);
    let incremental = prev.is_some();
    let prev = prev.unwrap_or_else(|| View::empty(dir));
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
    let plan = plan(&prev, cut, images, &|k| segments.contains_key(&k))?;
    let written = write_atomically(&dir_path(root, dir), |file| plan.write(&prev, file))
        .map_err(|e| SpoolError::Directory { path: checkpoint_path(root, dir), source: Arc::new(e) })?;
    Ok(Taken {
        records: written.records,
        tombstones: written.tombstones,
        states: written.states,
        bytes: written.bytes,
        incremental,
    })
}

/// The bytes of the file at `path`, mapped (None if it cannot be).
fn map_file(path: &Path) -> Option<Mmap> {
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: a checkpoint file is never written in place: a new one is
    // written under another name and renamed over it, which leaves this
    // map on the old file. Its bytes are checked (crc) before use.
    unsafe { Mmap::map(&file) }.ok()
}

/// `checkpoint.tmp` written by `write` and synced, renamed to
/// `checkpoint`, the directory synced.
fn write_atomically<T>(dir: &Path, write: impl FnOnce(&mut std::fs::File) -> std::io::Result<T>) -> std::io::Result<T> {
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    let written = write(&mut f)?;
    f.sync_data()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(FILE_NAME))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(written)
}

/// Bytes of a section's head (tag u16, length u32).
const SECTION_HEAD_LEN: usize = 6;
/// How much of a checkpoint is buffered before it goes to the file.
const OUT_BUFFER: usize = 1 << 20;

/// A checkpoint file being written front to back: a buffer that goes to
/// the file as it fills, and the crc of the head's first 12 bytes and the
/// body, put in the head at the end.
struct Out<W: Write + Seek> {
    w: W,
    buf: Vec<u8>,
    crc: u32,
    /// Bytes written to `w` so far, and how many the file must have.
    len: usize,
    expected: usize,
}

impl<W: Write + Seek> Out<W> {
    fn start(mut w: W, body_len: u32) -> std::io::Result<Out<W>> {
        let mut head = Vec::with_capacity(HEAD_LEN);
        head.extend_from_slice(&MAGIC);
        head.push(VERSION);
        head.extend_from_slice(&[0; 3]);
        head.extend_from_slice(&body_len.to_le_bytes());
        let crc = crc32c::crc32c(&head);
        head.extend_from_slice(&[0; 4]); // the crc, once known
        w.write_all(&head)?;
        let expected = HEAD_LEN + body_len as usize;
        Ok(Out { w, buf: Vec::with_capacity(OUT_BUFFER), crc, len: HEAD_LEN, expected })
    }

    /// A section's head, then what `fill` puts (its entries may follow).
    fn section(&mut self, tag: u16, len: usize, fill: impl FnOnce(&mut Vec<u8>)) -> std::io::Result<()> {
        self.entry(|b| {
            b.extend_from_slice(&tag.to_le_bytes());
            b.extend_from_slice(&(len as u32).to_le_bytes());
            fill(b);
        })
    }

    fn entry(&mut self, fill: impl FnOnce(&mut Vec<u8>)) -> std::io::Result<()> {
        fill(&mut self.buf);
        if self.buf.len() >= OUT_BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, &self.buf);
        self.w.write_all(&self.buf)?;
        self.len += self.buf.len();
        self.buf.clear();
        Ok(())
    }

    /// The file's length, once its crc is in place.
    fn finish(mut self) -> std::io::Result<usize> {
        self.flush()?;
        if self.len != self.expected {
            // A section's announced length was wrong: the file would fail
            // its check at recovery; better not to write it at all.
            return Err(std::io::Error::other(format!(
                "checkpoint of {} bytes where its head says {}",
                self.len, self.expected
            )));
        }
        self.w.seek(SeekFrom::Start(12))?;
        self.w.write_all(&self.crc.to_le_bytes())?;
        self.w.flush()?;
        Ok(self.len)
    }
}

/// One state's entry of section 6 (flags, attempts, next attempt, error).
fn put_content(b: &mut Vec<u8>, content: Option<RawContent>) {
    let (flags, attempts, next, error) = match content {
        None => (0, 0, 0, 0),
        Some(c) => (
            HAS_CONTENT | if c.warned { WARNED } else { 0 } | if c.held { HELD } else { 0 },
            c.attempts,
            c.next_attempt_ms,
            c.error,
        ),
    };
    b.push(flags);
    b.extend_from_slice(&attempts.to_le_bytes());
    b.extend_from_slice(&next.to_le_bytes());
    b.extend_from_slice(&error.to_le_bytes());
}

/// `prev` rolled forward to `cut` over `images`, as a [`Checkpoint`]: what
/// [`take`] would write, decoded (the tests' way to compare a roll with a
/// full scan).
#[cfg(test)]
pub fn roll<'a>(
    prev: Checkpoint,
    cut: SpoolRef,
    images: impl IntoIterator<Item = SegmentImage<'a>>,
    present: &dyn Fn(SegmentKey) -> bool,
) -> Result<Checkpoint, SpoolError> {
    let bytes = checkpoint::encode(&prev);
    let view = View::parse(&bytes).expect("what encode writes parses");
    let mut out = std::io::Cursor::new(Vec::new());
    plan(&view, cut, images, present)?.write(&view, &mut out).expect("writing to memory");
    Ok(checkpoint::decode(out.get_ref()).expect("what a roll writes decodes"))
}
