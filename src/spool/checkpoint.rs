//! Checkpoints: a compact summary of one spool directory's log up to a
//! *cut*, so that recovery reads the summary plus the log after the cut
//! instead of every segment (issue 13 item 2).
//!
//! # What a checkpoint holds
//! The records of directory `dir` before the cut that can still change what
//! recovery returns, by place, never by content:
//! - every message, moved copy and suppression entry not made final by a
//!   tombstone of this directory (with its recipient count);
//! - every tombstone whose target segment still existed (it may keep its
//!   target final, and it pins its target's segment in the ledger);
//! - the latest recipient state per (target, recipient) whose target may
//!   still be live;
//! - the highest queue id;
//! - the envelope (the message record without its body) of every message
//!   and moved copy held, and the contents of every state held, so that
//!   recovery reads neither the live messages' records nor the state
//!   records before the cut (issue 13: a backlog's restart no longer
//!   decodes every queued message), and a state outlives its segment (a
//!   segment holding states is reclaimed only once a checkpoint after it
//!   holds them: see `Ledger::checkpointed`).
//!
//! Recovery feeds these to the same fold as scanned records (see
//! `recovery`), takes the envelopes of the messages that turn out live
//! from the checkpoint (left undecoded for a server's restart: see
//! `recovery_held`; from the segment maps for a checkpoint without them),
//! and scans the log from the cut. A message dropped
//! here is dead; a tombstone dropped here pins nothing that exists; so the
//! ledger, the live messages and the reclaimable segments come out the
//! same as from a full scan.
//!
//! # The cut
//! The cut is the place of a `Checkpoint` record the owning core appended
//! and made durable first: every record before it is durable (the durable
//! records of a directory form a prefix), and recovery trusts a checkpoint
//! only if a good `Checkpoint` record is found at its cut (so a cut beyond
//! a torn tail, or in a deleted segment, is not trusted).
//!
//! # File format (`core-<dir>/checkpoint`, all integers little-endian)
//! ```text
//! 0   4  magic b"RMCK"
//! 4   1  version 1
//! 5   3  reserved, 0
//! 8   4  body length
//! 12  4  crc32c over bytes 0..12 followed by the body
//! 16  …  body: sections, each tag u16, length u32, value
//! ```
//! Sections: 1 cut (dir u16, segment u32, offset u32, has-id u8, queue id
//! u64), 2 records (segment u32, offset u32, kind u8, recipients u16 each),
//! 3 tombstones (segment u32, offset u32, target dir u16, segment u32,
//! offset u32, recipient u16 each), 4 states (as tombstones, then seq u64),
//! 5 envelopes (segment u32, offset u32, body length u64, length u32, the
//! envelope as `encode_message_envelope` writes it; each), 6 state contents
//! (a string table: count u32, then length u16 and bytes each; then, for
//! each state of section 4 in its order: flags u8 (1 warned, 2 held, 0x80
//! content present), attempts u32, next attempt ms u64, last error u32:
//! index in the table plus one, 0 for none).
//! Unknown tags are skipped, so later versions can add sections (per-message
//! data of other issues) that older readers ignore; a change of meaning
//! takes a new version. The file is written whole to `checkpoint.tmp`,
//! synced, renamed and the directory synced: a torn one is never under the
//! final name, and a damaged one fails its crc and is ignored (recovery
//! falls back to a full scan).

use std::collections::HashMap;
use std::sync::Arc;

use memmap2::Mmap;

use super::checkpoint_view::View;
use super::ids::{QueueId, SpoolRef};

/// The first four bytes of a checkpoint file.
pub const MAGIC: [u8; 4] = *b"RMCK";
/// The version this code writes and reads.
pub const VERSION: u8 = 1;
pub(super) const HEAD_LEN: usize = 16;

pub(super) const TAG_CUT: u16 = 1;
pub(super) const TAG_RECORDS: u16 = 2;
pub(super) const TAG_TOMBSTONES: u16 = 3;
pub(super) const TAG_STATES: u16 = 4;
pub(super) const TAG_ENVELOPES: u16 = 5;
pub(super) const TAG_STATE_CONTENTS: u16 = 6;

pub(super) const CUT_LEN: usize = 19;
pub(super) const RECORD_LEN: usize = 11;
pub(super) const TOMBSTONE_LEN: usize = 20;
pub(super) const STATE_LEN: usize = 28;
pub(super) const ENVELOPE_HEAD_LEN: usize = 20;
pub(super) const CONTENT_LEN: usize = 17;
pub(super) const HAS_CONTENT: u8 = 0x80;
pub(super) const WARNED: u8 = 1;
pub(super) const HELD: u8 = 2;

/// What kind of live record a checkpoint holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// A message record.
    Message,
    /// A compaction copy (a `Moved` record).
    Moved,
    /// A suppression-list entry (one "recipient").
    Suppression,
}

impl Held {
    pub(super) fn to_byte(self) -> u8 {
        match self {
            Held::Message => 1,
            Held::Moved => 2,
            Held::Suppression => 3,
        }
    }

    pub(super) fn from_byte(b: u8) -> Option<Held> {
        match b {
            1 => Some(Held::Message),
            2 => Some(Held::Moved),
            3 => Some(Held::Suppression),
            _ => None,
        }
    }
}

/// A record that may still be live, at `at` in the checkpoint's directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldRecord {
    pub at: SpoolRef,
    pub kind: Held,
    /// Recipients it has (1 for a suppression entry).
    pub recipients: u16,
    /// Where its envelope is in [`Checkpoint::envelope_bytes`] (a message
    /// or moved copy; None in a checkpoint written without envelopes).
    pub envelope: Option<EnvelopeAt>,
}

/// A held message's envelope: `len` bytes at `start` of the checkpoint's
/// envelope bytes, and the length of the body its record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvelopeAt {
    pub start: usize,
    pub len: u32,
    pub body_len: u64,
}

/// What a held state says (the rest of a `RecipientState`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateContent {
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub warned: bool,
    pub held: bool,
    /// Shared: a destination that is down gives most states the same one.
    pub last_error: Arc<str>,
}

/// A tombstone (or the tombstone part of a moved copy or a replacing
/// suppression entry) written at `at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldTombstone {
    pub at: SpoolRef,
    pub target: SpoolRef,
    pub recipient: u16,
}

/// The latest recipient-state record for (target, recipient), at `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldState {
    pub at: SpoolRef,
    pub target: SpoolRef,
    pub recipient: u16,
    pub seq: u64,
    /// What it says (None in a checkpoint written without contents: read
    /// it back at `at`).
    pub content: Option<StateContent>,
}

/// One directory's log up to `cut`, summarized (see the module docs).
/// Two are equal when they hold the same things, envelopes compared by
/// their bytes wherever each keeps them.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// Place of the `Checkpoint` record the summary stops before; its `dir`
    /// is the directory summarized.
    pub cut: SpoolRef,
    /// Highest queue id of the directory before the cut.
    pub last_queue_id: Option<QueueId>,
    pub records: Vec<HeldRecord>,
    pub tombstones: Vec<HeldTombstone>,
    pub states: Vec<HeldState>,
    /// Where the envelopes of `records` are (each names its bytes here):
    /// back to back in their order, or, read by [`decode_owned`], the
    /// whole file.
    pub envelope_bytes: EnvelopeBytes,
}

/// The bytes a checkpoint's envelopes are read from: an arena of their
/// own, or the checkpoint file itself, as read or mapped. Mapped, a
/// restart does not copy the file into memory (about 800 MB per directory
/// at 10 M queued): its pages are the page cache's, read as recovery and
/// the queue's adoption reach them, and given back under pressure.
#[derive(Clone)]
pub enum EnvelopeBytes {
    Owned(Vec<u8>),
    /// A checkpoint file is never written in place (see `checkpoint_roll`),
    /// so a map of one stays as it was read.
    Mapped(Arc<Mmap>),
}

impl Default for EnvelopeBytes {
    fn default() -> EnvelopeBytes {
        EnvelopeBytes::Owned(Vec::new())
    }
}

impl From<Vec<u8>> for EnvelopeBytes {
    fn from(bytes: Vec<u8>) -> EnvelopeBytes {
        EnvelopeBytes::Owned(bytes)
    }
}

impl From<Mmap> for EnvelopeBytes {
    fn from(map: Mmap) -> EnvelopeBytes {
        EnvelopeBytes::Mapped(Arc::new(map))
    }
}

impl std::ops::Deref for EnvelopeBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            EnvelopeBytes::Owned(bytes) => bytes,
            EnvelopeBytes::Mapped(map) => map,
        }
    }
}

impl std::fmt::Debug for EnvelopeBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if matches!(self, EnvelopeBytes::Mapped(_)) { "mapped" } else { "owned" };
        write!(f, "EnvelopeBytes({} bytes, {kind})", self.len())
    }
}

impl PartialEq for Checkpoint {
    fn eq(&self, other: &Checkpoint) -> bool {
        let same = |a: &HeldRecord, b: &HeldRecord| {
            (a.at, a.kind, a.recipients) == (b.at, b.kind, b.recipients)
                && a.envelope.map(|e| e.body_len) == b.envelope.map(|e| e.body_len)
                && self.envelope(a) == other.envelope(b)
        };
        (self.cut, self.last_queue_id) == (other.cut, other.last_queue_id)
            && self.tombstones == other.tombstones
            && self.states == other.states
            && self.records.len() == other.records.len()
            && self.records.iter().zip(&other.records).all(|(a, b)| same(a, b))
    }
}

impl Eq for Checkpoint {}

impl Checkpoint {
    /// A summary of nothing: the directory `cut.dir` from its start.
    pub fn empty(cut: SpoolRef) -> Checkpoint {
        Checkpoint {
            cut,
            last_queue_id: None,
            records: Vec::new(),
            tombstones: Vec::new(),
            states: Vec::new(),
            envelope_bytes: EnvelopeBytes::default(),
        }
    }

    /// The envelope bytes of a held record, if it has some.
    pub fn envelope(&self, r: &HeldRecord) -> Option<&[u8]> {
        let e = r.envelope?;
        self.envelope_bytes.get(e.start..e.start + e.len as usize)
    }
}

/// Why bytes are not a checkpoint this version reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint too short ({len} bytes)")]
    Truncated { len: usize },
    #[error("not a checkpoint (bad magic)")]
    BadMagic,
    #[error("unsupported checkpoint version {version}")]
    UnsupportedVersion { version: u8 },
    #[error("checkpoint crc mismatch: stored {stored:08x}, computed {computed:08x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("checkpoint section {tag} is malformed")]
    Malformed { tag: u16 },
    #[error("checkpoint has no cut section")]
    NoCut,
}

/// The file bytes of `ck`.
pub fn encode(ck: &Checkpoint) -> Vec<u8> {
    let mut body = Vec::with_capacity(
        64 + ck.records.len() * RECORD_LEN + ck.tombstones.len() * TOMBSTONE_LEN + ck.states.len() * STATE_LEN,
    );
    section(&mut body, TAG_CUT, CUT_LEN, |b| {
        b.extend_from_slice(&ck.cut.dir.to_le_bytes());
        put_place(b, ck.cut);
        b.push(u8::from(ck.last_queue_id.is_some()));
        b.extend_from_slice(&ck.last_queue_id.map_or(0, |q| q.0).to_le_bytes());
    });
    section(&mut body, TAG_RECORDS, ck.records.len() * RECORD_LEN, |b| {
        for r in &ck.records {
            put_place(b, r.at);
            b.push(r.kind.to_byte());
            b.extend_from_slice(&r.recipients.to_le_bytes());
        }
    });
    section(&mut body, TAG_TOMBSTONES, ck.tombstones.len() * TOMBSTONE_LEN, |b| {
        for t in &ck.tombstones {
            put_place(b, t.at);
            put_ref(b, t.target);
            b.extend_from_slice(&t.recipient.to_le_bytes());
        }
    });
    section(&mut body, TAG_STATES, ck.states.len() * STATE_LEN, |b| {
        for s in &ck.states {
            put_place(b, s.at);
            put_ref(b, s.target);
            b.extend_from_slice(&s.recipient.to_le_bytes());
            b.extend_from_slice(&s.seq.to_le_bytes());
        }
    });
    let envelopes: Vec<(&HeldRecord, &[u8])> = ck.records.iter().filter_map(|r| Some((r, ck.envelope(r)?))).collect();
    let len = envelopes.iter().map(|(_, e)| ENVELOPE_HEAD_LEN + e.len()).sum();
    section(&mut body, TAG_ENVELOPES, len, |b| {
        for (r, e) in &envelopes {
            put_place(b, r.at);
            b.extend_from_slice(&r.envelope.map_or(0, |e| e.body_len).to_le_bytes());
            b.extend_from_slice(&(e.len() as u32).to_le_bytes());
            b.extend_from_slice(e);
        }
    });
    put_state_contents(&mut body, &ck.states);
    let mut out = Vec::with_capacity(HEAD_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&[0; 3]);
    // Sections are u32-sized; a body past 4 GiB is not written (the caller
    // checks `encode`'s length against the limit before writing).
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out), &body);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// The body of checkpoint file `bytes`, once its head, length and crc are
/// checked.
pub(super) fn checked_body(bytes: &[u8]) -> Result<&[u8], CheckpointError> {
    let head = bytes.get(..HEAD_LEN).ok_or(CheckpointError::Truncated { len: bytes.len() })?;
    if head[..4] != MAGIC {
        return Err(CheckpointError::BadMagic);
    }
    let len = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) as usize;
    let body =
        bytes.get(HEAD_LEN..).filter(|b| b.len() == len).ok_or(CheckpointError::Truncated { len: bytes.len() })?;
    let stored = u32::from_le_bytes(head[12..16].try_into().expect("4 bytes"));
    let computed = crc32c::crc32c_append(crc32c::crc32c(&head[..12]), body);
    if stored != computed {
        return Err(CheckpointError::BadCrc { stored, computed });
    }
    // Checked after the crc, like records: only intact bytes are refused.
    if head[4] != VERSION {
        return Err(CheckpointError::UnsupportedVersion { version: head[4] });
    }
    Ok(body)
}

/// Reads checkpoint file bytes. Never panics, whatever the bytes. The one
/// reader is [`View`]: this builds the whole summary from it.
pub fn decode(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    Ok(summary(&View::parse(bytes)?, None))
}

/// [`decode`], keeping the file's bytes (read or mapped) as the
/// checkpoint's envelope bytes instead of copying each envelope out of them
/// (at a large backlog the envelopes are most of a checkpoint).
pub fn decode_owned(bytes: impl Into<EnvelopeBytes>) -> Result<Checkpoint, CheckpointError> {
    let bytes = bytes.into();
    let mut ck = summary(&View::parse(&bytes)?, Some(&bytes));
    ck.envelope_bytes = bytes;
    Ok(ck)
}

/// What `view` holds, its envelopes copied into an arena of their own, or,
/// with `file` (the bytes `view` reads), each naming its place in `file`.
fn summary(view: &View<'_>, file: Option<&[u8]>) -> Checkpoint {
    let mut ck = Checkpoint { last_queue_id: view.last_queue_id, ..Checkpoint::empty(view.cut) };
    ck.records = view
        .records()
        .map(|r| HeldRecord { at: r.at, kind: r.kind, recipients: r.recipients, envelope: None })
        .collect();
    let mut arena = Vec::with_capacity(if file.is_none() { view.envelope_section_len() } else { 0 });
    for (i, e) in view.envelopes() {
        let start = match file {
            // `e.bytes` is a subslice of `file`.
            Some(file) => e.bytes.as_ptr() as usize - file.as_ptr() as usize,
            None => {
                arena.extend_from_slice(e.bytes);
                arena.len() - e.bytes.len()
            }
        };
        ck.records[i].envelope = Some(EnvelopeAt { start, len: e.bytes.len() as u32, body_len: e.body_len });
    }
    ck.envelope_bytes = arena.into();
    ck.tombstones = view.tombstones().collect();
    // One shared text per last error, as the file has one per table entry.
    let table: Vec<Arc<str>> = (1..=view.table_len() as u32).map(|i| Arc::from(view.error_text(i))).collect();
    let none: Arc<str> = Arc::from("");
    let text = |error: u32| error.checked_sub(1).map_or(&none, |i| &table[i as usize]).clone();
    ck.states = view
        .states()
        .enumerate()
        .map(|(i, s)| {
            let content = view.content(i).map(|c| StateContent {
                attempts: c.attempts,
                next_attempt_ms: c.next_attempt_ms,
                warned: c.warned,
                held: c.held,
                last_error: text(c.error),
            });
            HeldState { content, ..s }
        })
        .collect();
    ck
}

fn put_state_contents(body: &mut Vec<u8>, states: &[HeldState]) {
    let mut ids: HashMap<&str, u32> = HashMap::new();
    let mut table: Vec<&str> = Vec::new();
    for c in states.iter().filter_map(|s| s.content.as_ref()).filter(|c| !c.last_error.is_empty()) {
        ids.entry(&c.last_error).or_insert_with(|| {
            table.push(&c.last_error);
            table.len() as u32
        });
    }
    let len = 4 + table.iter().map(|t| 2 + t.len()).sum::<usize>() + states.len() * CONTENT_LEN;
    section(body, TAG_STATE_CONTENTS, len, |b| {
        b.extend_from_slice(&(table.len() as u32).to_le_bytes());
        for t in &table {
            // Last errors are at most 4 KiB (`LAST_ERROR_MAX_LEN`).
            b.extend_from_slice(&(t.len() as u16).to_le_bytes());
            b.extend_from_slice(t.as_bytes());
        }
        for s in states {
            let (flags, attempts, next, error) = match &s.content {
                None => (0, 0, 0, 0),
                Some(c) => (
                    HAS_CONTENT | if c.warned { WARNED } else { 0 } | if c.held { HELD } else { 0 },
                    c.attempts,
                    c.next_attempt_ms,
                    ids.get(&*c.last_error).copied().unwrap_or(0),
                ),
            };
            b.push(flags);
            b.extend_from_slice(&attempts.to_le_bytes());
            b.extend_from_slice(&next.to_le_bytes());
            b.extend_from_slice(&error.to_le_bytes());
        }
    });
}

fn section(body: &mut Vec<u8>, tag: u16, len: usize, fill: impl FnOnce(&mut Vec<u8>)) {
    body.extend_from_slice(&tag.to_le_bytes());
    body.extend_from_slice(&(len as u32).to_le_bytes());
    let start = body.len();
    fill(body);
    debug_assert_eq!(body.len() - start, len);
}

pub(super) fn put_place(b: &mut Vec<u8>, at: SpoolRef) {
    b.extend_from_slice(&at.segment.to_le_bytes());
    b.extend_from_slice(&at.offset.to_le_bytes());
}

pub(super) fn put_ref(b: &mut Vec<u8>, at: SpoolRef) {
    b.extend_from_slice(&at.dir.to_le_bytes());
    put_place(b, at);
}

/// (tag, value, what follows) of the section at the start of `bytes`.
pub(super) fn split_section(bytes: &[u8]) -> Result<(u16, &[u8], &[u8]), CheckpointError> {
    let mut r = Reader(bytes);
    let tag = r.u16().ok_or(CheckpointError::Malformed { tag: 0 })?;
    let len = r.u32().ok_or(CheckpointError::Malformed { tag })? as usize;
    let rest = r.0;
    if rest.len() < len {
        return Err(CheckpointError::Malformed { tag });
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// Little-endian reads off the front of a slice.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    pub(super) fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    pub(super) fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    pub(super) fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    pub(super) fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
    pub(super) fn place_raw(&mut self) -> Option<(u32, u32)> {
        Some((self.u32()?, self.u32()?))
    }
    pub(super) fn place(&mut self, dir: u16) -> Option<SpoolRef> {
        let (segment, offset) = self.place_raw()?;
        Some(SpoolRef { dir, segment, offset })
    }
    pub(super) fn spool_ref(&mut self) -> Option<SpoolRef> {
        let dir = self.u16()?;
        self.place(dir)
    }
}
