//! The spool's error type: one enum for the module boundary, each variant
//! naming the fact and carrying the ids needed to find it on disk.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::ids::{SegmentKey, SpoolRef};
use super::payload::DecodeError;
use super::record::BadRecord;

/// Everything the spool can fail with.
///
/// `Clone` because one failed write or sync is reported to every waiter of
/// the batch; I/O errors are shared behind an `Arc` for that.
#[derive(Clone, Debug, thiserror::Error)]
pub enum SpoolError {
    /// The configured segment size is unusable.
    #[error("segment size {size} is invalid: it must be a multiple of 4096 between 4096 and 4 GiB - 4096")]
    InvalidSegmentSize { size: u64 },
    /// The resume point does not lie inside its segment.
    #[error("resume offset {offset} is beyond segment core-{dir}/segment-{segment:08x} of {size} bytes")]
    InvalidTail { dir: u16, segment: u32, offset: u32, size: u64 },
    /// A record can never fit in a segment, however empty.
    #[error("a record of {len} bytes can never fit in a segment of {segment_size} bytes")]
    RecordTooLarge { len: u64, segment_size: u32 },
    /// Creating (zero-filling, syncing) or opening a segment failed.
    #[error("preparing segment core-{dir}/segment-{segment:08x} failed: {source}")]
    PrepareSegment {
        dir: u16,
        segment: u32,
        #[source]
        source: Arc<io::Error>,
    },
    /// Writing a batch at the tail of a segment failed; its records are in
    /// an unknown state and the segment takes no further appends.
    #[error("writing to core-{dir}/segment-{segment:08x} at {offset} failed: {source}")]
    WriteFailed {
        dir: u16,
        segment: u32,
        offset: u32,
        #[source]
        source: Arc<io::Error>,
    },
    /// `fdatasync` of a segment failed; its unsynced records are in an
    /// unknown state and the segment takes no further appends.
    #[error("syncing core-{dir}/segment-{segment:08x} failed: {source}")]
    SyncFailed {
        dir: u16,
        segment: u32,
        #[source]
        source: Arc<io::Error>,
    },
    /// The record was placed in a segment that an earlier failure made the
    /// spool give up before the record's bytes were written.
    #[error("segment core-{dir}/segment-{segment:08x} was abandoned after a failure; the record was not written")]
    SegmentAbandoned { dir: u16, segment: u32 },
    /// The segment is still written to (or will be): it cannot be removed.
    #[error("segment {key} is in use by the writer")]
    SegmentInUse { key: SegmentKey },
    /// Deleting a reclaimed segment failed.
    #[error("removing segment {key} failed: {source}")]
    RemoveSegment {
        key: SegmentKey,
        #[source]
        source: Arc<io::Error>,
    },
    /// Opening or mapping a segment for reading or recovery failed.
    #[error("opening segment {key} failed: {source}")]
    OpenSegment {
        key: SegmentKey,
        #[source]
        source: Arc<io::Error>,
    },
    /// Listing or preparing a spool directory failed.
    #[error("spool directory {path:?}: {source}")]
    Directory {
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    /// Zeroing the torn tail of a segment during recovery failed.
    #[error("zeroing torn bytes {from}..{to} of {key} failed: {source}")]
    Repair {
        key: SegmentKey,
        from: u32,
        to: u32,
        #[source]
        source: Arc<io::Error>,
    },
    /// There is no record at this reference (zero header or past the end).
    #[error("no record at {at}")]
    NoRecord { at: SpoolRef },
    /// The bytes at this reference are not a good record.
    #[error("bad record at {at}: {reason}")]
    BadRecord { at: SpoolRef, reason: BadRecord },
    /// Recovery found an intact record it must not cut (newer version,
    /// misplaced segment file): it refuses to start rather than destroy it.
    #[error("record at {dir}:{segment:08x}:{offset:x} cannot be read by this version: {reason}")]
    UnreadableRecord { dir: u16, segment: u32, offset: u32, reason: BadRecord },
    /// A record with a good checksum whose payload does not decode.
    #[error("record at {at} does not decode: {source}")]
    Undecodable {
        at: SpoolRef,
        #[source]
        source: DecodeError,
    },
    /// The segment of a checkpoint's cut is gone: the checkpoint is not taken.
    #[error("checkpoint cut {at} lies in a segment that is gone")]
    CheckpointCutGone { at: SpoolRef },
    /// Recovery cannot use a checkpoint (it falls back to a full scan).
    #[error("checkpoint of core-{dir} is unusable: {reason} (at {at})")]
    CheckpointUnusable { dir: u16, at: SpoolRef, reason: &'static str },
}

impl SpoolError {
    /// The disk (or a quota) is full: ENOSPC/EDQUOT while creating or
    /// writing a segment.
    pub fn is_out_of_space(&self) -> bool {
        let source = match self {
            SpoolError::PrepareSegment { source, .. }
            | SpoolError::WriteFailed { source, .. }
            | SpoolError::SyncFailed { source, .. } => source,
            _ => return false,
        };
        source.kind() == io::ErrorKind::StorageFull
            || matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
    }
}
