//! The spool: ringmail's storage engine. Every message, and every later fact
//! about it, is a record appended to a per-core, append-only log of
//! fixed-size segment files, made durable by group commit and read back
//! through read-only memory maps.
//!
//! This module owns the files under `<spool_root>/core-<dir>/` and their
//! format. It knows nothing of SMTP, mailboxes or queues: callers hand it
//! bytes (via the payload codecs) and get back [`SpoolRef`]s.
//!
//! # Map
//! - [`record`]: header format, `scan_segment` (pure).
//! - [`payload`]: message, tombstone and recipient-state codecs (pure).
//! - [`ids`]: `QueueId` and its generator, `SpoolRef`, `SegmentKey` (pure).
//! - [`layout`]: file names (pure).
//! - `batch`: reservation, rollover and write batches (sync, no I/O).
//! - [`writer`]: [`Spool`], group commit, segment preparation (async).
//! - [`io`]: the [`SegmentStore`]/[`SegmentFile`] seam and the glommio store.
//! - [`reader`]: [`SegmentMaps`], checked zero-copy reads.
//! - [`recovery`]: rebuilding state at start-up (pure core + loader).
//! - [`phased`]: the same in two phases, so a restart serves at once.
//! - [`ledger`]: what may be reclaimed (pure).
//! - [`checkpoint`]: the checkpoint format (pure); [`checkpoint_roll`]:
//!   taking one (roll forward, pure; atomic file write).
//! - [`suppression`]: the suppression-list record codec (pure).
//!
//! # On disk
//! `<spool_root>/core-<dir>/segment-<seq as 8 hex digits>`. `dir` is a `u16`
//! spool directory id (normally the index of the executor writing it), `seq`
//! increases per directory and is never reused (the highest segment of a
//! directory is never reclaimed). A segment is created as
//! `segment-<seq>.tmp`, filled with written zeros, fdatasync'ed, renamed and
//! the directory fsync'ed, so that a segment under its final name always has
//! its full size with allocated blocks: appends never extend or allocate.
//! Segments are never truncated, so mapped pages never vanish (no SIGBUS).
//! Records are described in [`record`].
//!
//! # Durability contract
//!
//! **A record is durable once an fdatasync of its segment that started after
//! its bytes were written has completed successfully.** [`Spool::durable`]
//! returns Ok only then. Nothing may be acknowledged to a peer (`250` after
//! DATA, `+OK` after QUIT's deletions, a "delivered" state) before that.
//!
//! How the writer keeps it:
//! 1. `append` copies the record into the current *batch* of its segment and
//!    returns its place at once (`append_owned` takes a large body as it is,
//!    as an extent of the batch, instead of copying it). A record that does
//!    not fit the rest of the segment starts the next one (the batch is
//!    sealed: one batch never spans two segments).
//! 2. A *commit round* takes every pending batch and, per batch, oldest
//!    first, writes its extents in file order (one `write_at` each, one at a
//!    time: contiguous buffers, so a large record is copied at most once and
//!    never moved as a buffer grows), then issues ONE `sync_data`;
//!    when the sync returns Ok every record of the batch is
//!    durable and all its waiters are woken. Group commit needs no timer: a
//!    round starts whenever someone waits and none is in flight; the records
//!    appended meanwhile go into the next round.
//! 3. Only one round is ever in flight, so writes are serialized: at any
//!    moment at most the batch being written is unsynced, and it lies after
//!    every durable byte of its segment. The durable records of a segment
//!    therefore always form a contiguous prefix. This matters because
//!    recovery cuts a segment at its first bad record: if a later record
//!    could be durable while an earlier one was torn, the cut would throw
//!    away acknowledged mail.
//! 4. If a write, a sync, or the preparation of a segment fails, every
//!    record of that batch gets the error (its state is *unknown*: it may or
//!    may not be recovered; callers treat it as not stored), and the segment
//!    is *abandoned*: batches already placed after it in the same segment
//!    fail with `SegmentAbandoned` without being written, and appends move
//!    on to a fresh segment. Nothing is ever written after possibly torn
//!    bytes, and a file whose fdatasync failed (its dirty pages may have
//!    been dropped) is never trusted again.
//! 5. Segment creation is durable before the segment is written (see
//!    above), so an fdatasync of the file suffices for its records.
//!
//! Recovery ([`recovery`]) cuts each segment at its first bad record, zeroes
//! and syncs every non-zero byte after the cut before any new append, and
//! resumes appending at the tail of each directory's highest segment.
//!
//! # Reclaiming
//! A segment is deleted only when it holds no live message (a live
//! suppression-list entry counts as one) and no tombstone
//! whose target segment still exists (see [`ledger`]); deleting tombstones
//! first would resurrect mail after a restart. Recipient-state records count
//! for nothing: losing one only makes a retry come sooner (recovery falls
//! back to an older state, or none), so they never keep a segment.

mod batch;
pub mod checkpoint;
pub mod checkpoint_roll;
pub mod checkpoint_view;
pub mod envelope_view;
pub mod error;
pub mod ids;
pub mod io;
pub mod layout;
pub mod ledger;
pub mod payload;
pub mod phased;
pub mod reader;
pub mod record;
pub mod recovery;
mod recovery_checkpoint;
pub mod recovery_held;
pub mod suppression;
pub mod walk;
pub mod writer;

#[cfg(test)]
mod checkpoint_tests;
#[cfg(test)]
pub(crate) use checkpoint_tests::random_recovery;
#[cfg(test)]
mod checkpoint_view_tests;
#[cfg(test)]
mod fs_tests;
#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod writer_tests;

pub use error::SpoolError;
pub use ids::{ParseIdError, QueueId, QueueIdGen, SegmentKey, SpoolRef};
pub use io::{BufferedSegment, DirStore, SegmentFile, SegmentStore};
pub use ledger::Ledger;
pub use payload::{
    decode_any_message, decode_message, decode_moved, decode_recipient_state, decode_tombstone, decode_tombstone_via,
    encode_message, encode_message_envelope, encode_moved_head, encode_recipient_state, encode_tombstone,
    encode_tombstone_via, BodyKind, DecodeError, DsnRet, EncodeError, MessageExt, MessageRecord, Moved, Notify,
    Outcome, RecipientDsn, RecipientEntry, RecipientState, Route, Tombstone, LAST_ERROR_MAX_LEN, MAX_RECIPIENTS,
};
pub use reader::{RecordView, SegmentMaps};
pub use record::{scan_segment, BadRecord, RecordKind, ScanEnd, ScannedRecord, SegmentScan, Skipped};
pub use recovery::{
    recover, recover_held, recover_images, recover_images_observed, recover_with_checkpoints, Carried, DamagedRecord,
    LiveMessage, LiveSuppression, Recovered, Repair, SegmentImage, TornRecord,
};
pub use suppression::{copy_replacing, decode_suppression, encode_suppression, SuppressionRecord};
pub use writer::{Appended, CommitTicket, Spool, SpoolConfig, SpoolStats, Tail};
