//! The on-disk record format: encoding a record into a write batch, parsing
//! one record at an offset, and scanning a whole segment image.
//!
//! Pure functions over byte slices; they must never panic, whatever the bytes
//! (recovery feeds them whatever survived a crash, and they are fuzzed).
//!
//! # Layout (all integers little-endian)
//!
//! ```text
//! offset size field
//!  0      4   magic      b"RMSP"
//!  4      1   version    1
//!  5      1   kind       1 message, 2 tombstone, 3 recipient-state, 4 checkpoint,
//!                         5 moved, 6 suppression
//!  6      2   dir        spool directory the record was written to
//!  8      4   segment    segment sequence number the record was written to
//! 12      4   length     payload length in bytes
//! 16      4   flags      reserved, 0
//! 20      4   crc32c     over bytes 0..20 followed by the payload
//! 24      …   payload, then zero padding to the next multiple of 8
//! ```
//!
//! A header of 24 zero bytes marks the end of data in a segment (segments are
//! zero-filled before use). Every future version must keep the meaning of
//! magic, length and crc (bytes 0..4, 12..16, 20..24): the crc is checked
//! before the version, because a torn header (straddling a sector that was
//! not written) can show the right magic next to a stale version byte, and
//! only a crc-valid record may be refused instead of cut. `dir`/`segment` make a record know its own place,
//! so a segment file copied or renamed to the wrong name is refused instead of
//! being read as someone else's records.

use std::ops::Range;

use super::ids::SegmentKey;

/// Size of a record header.
pub const HEADER_LEN: usize = 24;
/// Records start at multiples of this.
pub const RECORD_ALIGN: usize = 8;
/// The first four bytes of every record.
pub const MAGIC: [u8; 4] = *b"RMSP";
/// The only format version this code reads and writes.
pub const VERSION: u8 = 1;

/// What a record holds. Unknown kind bytes are refused, not skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A message: envelope and body (see `payload::encode_message`).
    Message,
    /// A recipient of a message reached a final state.
    Tombstone,
    /// A recipient's delivery state: deferred until …, last reply (see
    /// `payload::encode_recipient_state`).
    RecipientState,
    /// Reserved: a checkpoint bounding how much recovery must scan.
    Checkpoint,
    /// A live message copied forward by compaction: the message at its
    /// new place, and, in the same record (so one checksum makes both
    /// true or neither), every recipient of the old copy made final (see
    /// `payload::encode_moved`).
    Moved,
    /// A suppression-list entry: an address not to send to until a time
    /// (see `suppression::encode_suppression`). Live, like a message with
    /// one recipient, until a tombstone ends it.
    Suppression,
}

impl RecordKind {
    /// The kind's byte in the header.
    pub fn to_byte(self) -> u8 {
        match self {
            RecordKind::Message => 1,
            RecordKind::Tombstone => 2,
            RecordKind::RecipientState => 3,
            RecordKind::Checkpoint => 4,
            RecordKind::Moved => 5,
            RecordKind::Suppression => 6,
        }
    }

    /// The kind for a header byte, if this version knows it.
    pub fn from_byte(b: u8) -> Option<RecordKind> {
        match b {
            1 => Some(RecordKind::Message),
            2 => Some(RecordKind::Tombstone),
            3 => Some(RecordKind::RecipientState),
            4 => Some(RecordKind::Checkpoint),
            5 => Some(RecordKind::Moved),
            6 => Some(RecordKind::Suppression),
            _ => None,
        }
    }
}

/// Why the bytes at an offset are not an acceptable record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadRecord {
    /// Fewer than a header's worth of bytes are left and they are not zero.
    #[error("truncated header")]
    TruncatedHeader,
    /// The header does not start with the magic bytes.
    #[error("bad magic {found:02x?}")]
    BadMagic { found: [u8; 4] },
    /// The payload would run past the end of the segment.
    #[error("payload of {len} bytes runs past the end of the segment")]
    LengthPastEnd { len: u32 },
    /// The checksum does not match the header and payload.
    #[error("crc mismatch: stored {stored:08x}, computed {computed:08x}")]
    BadCrc { stored: u32, computed: u32 },
    /// The magic is right but the version is not one this code reads.
    #[error("unsupported record version {version}")]
    UnsupportedVersion { version: u8 },
    /// The checksum is right but the reserved flags are set.
    #[error("unsupported record flags {flags:#x}")]
    UnsupportedFlags { flags: u32 },
    /// The checksum is right but the kind byte is unknown to this version.
    #[error("unknown record kind {kind}")]
    UnknownKind { kind: u8 },
    /// The checksum is right but the record says it belongs elsewhere.
    #[error("record belongs to core-{dir}/segment-{segment:08x}")]
    Misplaced { dir: u16, segment: u32 },
}

impl BadRecord {
    /// True when the bytes look like an interrupted write (or random damage):
    /// recovery may cut the segment here. False when the record is intact but
    /// not ours to read (newer version, misplaced file): recovery must refuse
    /// rather than destroy it.
    pub fn is_torn(&self) -> bool {
        match self {
            BadRecord::TruncatedHeader
            | BadRecord::BadMagic { .. }
            | BadRecord::LengthPastEnd { .. }
            | BadRecord::BadCrc { .. } => true,
            BadRecord::UnsupportedVersion { .. }
            | BadRecord::UnsupportedFlags { .. }
            | BadRecord::UnknownKind { .. }
            | BadRecord::Misplaced { .. } => false,
        }
    }
}

/// A good record found in a segment image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedRecord {
    /// Offset of the header within the segment.
    pub offset: u32,
    /// What the record holds.
    pub kind: RecordKind,
    /// Where the payload lies within the segment image.
    pub payload: Range<usize>,
}

/// How a segment scan ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// A zero header (or the end of the segment) at `offset`: where the next
    /// record would go.
    Clean { offset: u32 },
    /// The record at `offset` is not acceptable for `reason`.
    Bad { offset: u32, reason: BadRecord },
}

/// Damaged bytes in the middle of a segment that a scan passed over: a
/// record that fails its checks with good records after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Where the damaged record starts.
    pub offset: u32,
    /// Bytes passed over, up to the next good record.
    pub len: u32,
    /// What was wrong at `offset`.
    pub reason: BadRecord,
}

/// The result of [`scan_segment`]: good records in order, the damaged
/// ranges passed over, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentScan {
    /// Every good record before the end, in offset order.
    pub records: Vec<ScannedRecord>,
    /// Damaged ranges with good records after them, in offset order.
    pub skipped: Vec<Skipped>,
    /// Why the scan stopped.
    pub end: ScanEnd,
}

impl SegmentScan {
    /// Offset just past the last good record: where appends resume.
    pub fn tail(&self) -> u32 {
        match &self.end {
            ScanEnd::Clean { offset } | ScanEnd::Bad { offset, .. } => *offset,
        }
    }
}

/// What [`parse_at`] found at an offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A zero header, or no room left for one: no record here.
    End,
    /// A good record; the next one starts at `next`.
    Record { kind: RecordKind, payload: Range<usize>, next: usize },
    /// Something that is not an acceptable record.
    Bad(BadRecord),
}

/// Bytes a record with `payload_len` payload bytes takes, padding included.
pub fn record_len(payload_len: usize) -> usize {
    (HEADER_LEN + payload_len).div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

/// Appends one record (header, the `parts` of its payload, padding) to `buf`.
///
/// The caller has checked that the payload length fits a `u32` (it does
/// whenever the record fits a segment). Each part is copied exactly once.
pub fn encode_into(buf: &mut Vec<u8>, kind: RecordKind, at: SegmentKey, parts: &[&[u8]]) {
    let payload_len: usize = parts.iter().map(|p| p.len()).sum();
    let start = buf.len();
    buf.reserve(record_len(payload_len));
    encode_head(buf, kind, at, parts, &[]);
    buf.resize(start + record_len(payload_len), 0);
}

/// Appends the start of a record whose payload is `parts` then `tail` to
/// `buf`: its header (the crc covers `tail` too) and `parts`, but neither
/// `tail` nor the padding, which the caller writes right after.
pub fn encode_head(buf: &mut Vec<u8>, kind: RecordKind, at: SegmentKey, parts: &[&[u8]], tail: &[u8]) {
    let payload_len: usize = parts.iter().map(|p| p.len()).sum::<usize>() + tail.len();
    let start = buf.len();
    let mut header = [0u8; HEADER_LEN];
    header[0..4].copy_from_slice(&MAGIC);
    header[4] = VERSION;
    header[5] = kind.to_byte();
    header[6..8].copy_from_slice(&at.dir.to_le_bytes());
    header[8..12].copy_from_slice(&at.seq.to_le_bytes());
    header[12..16].copy_from_slice(&(payload_len as u32).to_le_bytes());
    let mut crc = crc32c::crc32c(&header[..20]);
    buf.extend_from_slice(&header);
    for part in parts {
        crc = crc32c::crc32c_append(crc, part);
        buf.extend_from_slice(part);
    }
    crc = crc32c::crc32c_append(crc, tail);
    buf[start + 20..start + 24].copy_from_slice(&crc.to_le_bytes());
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Parses the record at `offset` of a segment image that should belong to
/// `key`. Never panics; any `offset` is allowed.
pub fn parse_at(bytes: &[u8], offset: usize, key: SegmentKey) -> Parsed {
    let Some(rest) = bytes.get(offset..) else {
        return Parsed::End;
    };
    if rest.len() < HEADER_LEN {
        return if rest.iter().all(|&b| b == 0) { Parsed::End } else { Parsed::Bad(BadRecord::TruncatedHeader) };
    }
    let h = &rest[..HEADER_LEN];
    if h.iter().all(|&b| b == 0) {
        return Parsed::End;
    }
    if h[0..4] != MAGIC {
        return Parsed::Bad(BadRecord::BadMagic { found: [h[0], h[1], h[2], h[3]] });
    }
    let len = le_u32(&h[12..16]);
    let total = record_len(len as usize);
    if total > rest.len() {
        // Padding included: a record always ends on the alignment inside its segment.
        return Parsed::Bad(BadRecord::LengthPastEnd { len });
    }
    let payload = offset + HEADER_LEN..offset + HEADER_LEN + len as usize;
    let stored = le_u32(&h[20..24]);
    let computed = crc32c::crc32c_append(crc32c::crc32c(&h[..20]), &bytes[payload.clone()]);
    if stored != computed {
        return Parsed::Bad(BadRecord::BadCrc { stored, computed });
    }
    // Everything below is covered by the crc, so it cannot be a torn write
    // (a header can straddle two sectors, one of them stale): refuse, not cut.
    if h[4] != VERSION {
        return Parsed::Bad(BadRecord::UnsupportedVersion { version: h[4] });
    }
    let flags = le_u32(&h[16..20]);
    if flags != 0 {
        return Parsed::Bad(BadRecord::UnsupportedFlags { flags });
    }
    let Some(kind) = RecordKind::from_byte(h[5]) else {
        return Parsed::Bad(BadRecord::UnknownKind { kind: h[5] });
    };
    let dir = u16::from_le_bytes([h[6], h[7]]);
    let segment = le_u32(&h[8..12]);
    if dir != key.dir || segment != key.seq {
        return Parsed::Bad(BadRecord::Misplaced { dir, segment });
    }
    Parsed::Record { kind, payload, next: offset + total }
}

/// Scans a segment image from offset 0: the good records in order, and how
/// the scan ended (clean end of data, or the first bad record).
///
/// Never panics. Only the first 4 GiB are scanned (offsets are 32-bit).
pub fn scan_segment(bytes: &[u8], key: SegmentKey) -> SegmentScan {
    scan_segment_from(bytes, key, 0)
}

/// [`scan_segment`] from offset `from` (a record boundary, e.g. a
/// checkpoint's cut) instead of 0.
///
/// A damaged record (one that looks torn: [`BadRecord::is_torn`]) ends the
/// scan only when no good record follows it: that is a torn tail, which a
/// crash leaves and recovery cuts. With a good record after it, the damage
/// is in the middle (a bad sector, a stray write): the scan notes it in
/// `skipped` and goes on, so one bad record never costs the durable
/// records behind it.
pub fn scan_segment_from(bytes: &[u8], key: SegmentKey, from: u32) -> SegmentScan {
    // Offsets are 32-bit: look at the first 4 GiB only (segments are smaller).
    let bytes = &bytes[..bytes.len().min(u32::MAX as usize)];
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    let mut offset = (from as usize).min(bytes.len());
    let end = loop {
        // Every offset reached is at most bytes.len(), so it fits.
        let offset32 = offset as u32;
        match parse_at(bytes, offset, key) {
            Parsed::End => break ScanEnd::Clean { offset: offset32 },
            Parsed::Bad(reason) => match reason.is_torn().then(|| next_good(bytes, offset, key)).flatten() {
                Some(next) => {
                    skipped.push(Skipped { offset: offset32, len: (next - offset) as u32, reason });
                    offset = next;
                }
                None => break ScanEnd::Bad { offset: offset32, reason },
            },
            Parsed::Record { kind, payload, next } => {
                records.push(ScannedRecord { offset: offset32, kind, payload });
                offset = next;
            }
        }
    };
    SegmentScan { records, skipped, end }
}

/// The offset of the first good record after the damaged one at `bad`, if
/// any. First where the damaged record's own length says the next one
/// starts (damage in a payload leaves the header whole), then at every
/// aligned offset that starts with the magic; only bytes before the last
/// non-zero one are searched (a segment is zero past its data). A good
/// record is one [`parse_at`] accepts: crc-checked and naming this very
/// segment.
fn next_good(bytes: &[u8], bad: usize, key: SegmentKey) -> Option<usize> {
    let good = |at: usize| matches!(parse_at(bytes, at, key), Parsed::Record { .. });
    let end = end_of_nonzero(bytes, bad)?;
    if let Some(h) = bytes.get(bad..bad + HEADER_LEN) {
        let by_length = bad + record_len(le_u32(&h[12..16]) as usize);
        if by_length < end && good(by_length) {
            return Some(by_length);
        }
    }
    let from = bad + RECORD_ALIGN;
    let hay = bytes.get(from..end)?;
    memchr::memmem::find_iter(hay, &MAGIC).map(|i| from + i).find(|&at| at % RECORD_ALIGN == 0 && good(at))
}

/// Offset just past the last non-zero byte at or after `from`, if any.
pub fn end_of_nonzero(bytes: &[u8], from: usize) -> Option<usize> {
    let tail = bytes.get(from..)?;
    // Whole 64-byte chunks compare fast; find the last chunk with data first.
    let chunks = tail.len() / 64;
    let mut end = tail.len();
    if tail[chunks * 64..].iter().all(|&b| b == 0) {
        end = chunks * 64;
        while end > 0 && tail[end - 64..end].iter().all(|&b| b == 0) {
            end -= 64;
        }
    }
    let last = tail[..end].iter().rposition(|&b| b != 0)?;
    Some(from + last + 1)
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
