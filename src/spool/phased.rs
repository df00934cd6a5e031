//! Recovery in two phases, so that a restart serves at once whatever the
//! backlog ([`recover`](super::recover) reads every segment first, which
//! takes time in proportion to what is queued).
//!
//! 1. [`open_tails`] (blocking, before any writer starts): deletes
//!    unfinished `.tmp` segments and, for each directory a writer will
//!    append to, reads only its highest segment: where appends resume
//!    (cutting and zeroing a torn tail, exactly as [`recover`] does), and
//!    the highest queue id (reading further back only while segments hold
//!    no message). Its cost is one segment per directory.
//! 2. [`recover_behind`] (on any thread, while the writers append):
//!    everything [`recover`] returns, computed from the spool as it was
//!    when phase 1 ended. A written directory is read up to its
//!    *boundary*, the tail phase 1 found; the bytes and segments after it
//!    are the writer's, whose records the shard tracks itself (its ledger
//!    journals them until it catches up: see `Ledger::behind`).
//!
//! Phase 2 reads each directory's checkpoint (see `checkpoint`) plus the
//! log after its cut; if a checkpoint does not fit the spool, every
//! segment instead.
//!
//! Why reading behind a running writer is sound: a writer only ever writes
//! after its boundary; and until every core has adopted phase 2's result,
//! nothing is reclaimed, compacted or tombstoned in the recovered part, so
//! no segment phase 2 reads changes or vanishes. A crash in between loses
//! nothing: the next start recovers everything again, new records too.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::checkpoint::Checkpoint;
use super::checkpoint_roll;
use super::error::SpoolError;
use super::ids::{QueueId, SegmentKey};
use super::recovery::{
    apply_repairs, list_segments, map_segment, recover_held, recover_images, recover_images_observed, DamagedRecord,
    Recovered, SegmentImage, TornRecord,
};
use super::writer::Tail;

/// Where a written directory's records ended when phase 1 ran (None: it
/// had no segment yet, so everything in it is the writer's).
pub type Boundaries = BTreeMap<u16, Option<Tail>>;

/// What phase 1 found: enough to start the writers.
#[derive(Debug, Default)]
pub struct Opened {
    /// Per written directory, where its appends resume (None: no segment
    /// yet). Also the boundaries for [`recover_behind`].
    pub tails: Boundaries,
    /// Highest queue id found per written directory.
    pub last_queue_ids: BTreeMap<u16, QueueId>,
    /// Where highest segments were cut.
    pub torn: Vec<TornRecord>,
    /// Damage passed over in the middle of highest segments.
    pub damaged: Vec<DamagedRecord>,
}

/// How far phase 2 has read (shared with whoever reports it).
#[derive(Debug, Default)]
pub struct Progress {
    segments: AtomicU64,
    scanned: AtomicU64,
}

impl Progress {
    /// (segments read, segments to read); (0, 0) before the count is known.
    pub fn segments(&self) -> (u64, u64) {
        (self.scanned.load(Ordering::Relaxed), self.segments.load(Ordering::Relaxed))
    }
}

/// Phase 1 for the directories in `written` (see the module docs).
pub fn open_tails(root: &Path, written: impl IntoIterator<Item = u16>) -> Result<Opened, SpoolError> {
    let segments = list_segments(root, true)?;
    let mut out = Opened::default();
    for dir in written {
        let mut keys = segments.range(SegmentKey { dir, seq: 0 }..=SegmentKey { dir, seq: u32::MAX }).rev();
        let Some((&highest, path)) = keys.next() else {
            out.tails.insert(dir, None);
            continue;
        };
        let file = map_segment(highest, path)?;
        let image = SegmentImage { key: highest, bytes: file.1.as_deref().unwrap_or(&[]) };
        let found = recover_images([image])?;
        apply_repairs(&BTreeMap::from([(highest, file)]), &found.repairs)?;
        out.tails.insert(dir, found.tails.get(&dir).copied());
        out.torn.extend(found.torn);
        out.damaged.extend(found.damaged);
        let mut last = found.last_queue_ids.get(&dir).copied();
        // A segment of tombstones only (the queue draining) holds no id:
        // look further back, so ids stay increasing even if the clock
        // went back.
        for (&key, path) in keys {
            if last.is_some() {
                break;
            }
            let (_, map) = map_segment(key, path)?;
            let image = SegmentImage { key, bytes: map.as_deref().unwrap_or(&[]) };
            last = recover_images([image])?.last_queue_ids.get(&dir).copied();
        }
        if let Some(id) = last {
            out.last_queue_ids.insert(dir, id);
        }
    }
    Ok(out)
}

/// Phase 2: everything before `boundaries` (directories not in it are read
/// whole: nobody writes them), with the repairs of segments no writer
/// appends to applied. `progress` is kept up to date. Live messages whose
/// envelopes a checkpoint holds stay undecoded in `Recovered::held`.
pub fn recover_behind(root: &Path, boundaries: &Boundaries, progress: &Progress) -> Result<Recovered, SpoolError> {
    // `.tmp` files now belong to writers preparing their next segment.
    let mut files = BTreeMap::new();
    for (key, path) in list_segments(root, false)? {
        let end = match boundaries.get(&key.dir) {
            None => None,
            Some(None) => continue,
            Some(Some(tail)) if key.seq > tail.segment => continue,
            Some(Some(tail)) if key.seq == tail.segment => Some(tail.offset as usize),
            Some(Some(_)) => None,
        };
        files.insert(key, (map_segment(key, &path)?, end));
    }
    progress.segments.store(files.len() as u64, Ordering::Relaxed);
    let images = files.iter().map(|(&key, ((_, map), end))| {
        let bytes = map.as_deref().unwrap_or(&[]);
        SegmentImage { key, bytes: end.map_or(bytes, |end| &bytes[..end.min(bytes.len())]) }
    });
    let checkpoints = load_checkpoints(root, files.keys().map(|k| k.dir));
    let mut observe = |_: SegmentImage<'_>| {
        progress.scanned.fetch_add(1, Ordering::Relaxed);
    };
    let used = checkpoints.len();
    let recovered = match recover_held(images.clone(), checkpoints, &mut observe) {
        Err(e @ SpoolError::CheckpointUnusable { .. }) => {
            tracing::warn!(error = %e, "spool checkpoint not used: reading every segment");
            progress.scanned.store(0, Ordering::Relaxed);
            recover_images_observed(images, &mut observe)?
        }
        Ok(r) => {
            if used > 0 {
                tracing::info!(
                    dirs = used,
                    gone_with_segments = r.gone_with_segments,
                    "spool recovered from checkpoints and the log after them"
                );
            }
            r
        }
        Err(e) => return Err(e),
    };
    // A boundary segment was repaired by phase 1 and is being written now:
    // its cut image has nothing to repair, and nothing here may touch it.
    let repairs: Vec<_> = recovered.repairs.iter().filter(|r| files[&r.key].1.is_none()).copied().collect();
    let files = files.into_iter().map(|(key, (file, _))| (key, file)).collect();
    apply_repairs(&files, &repairs)?;
    Ok(recovered)
}

/// The checkpoint of each of `dirs` that reads back whole (a damaged one
/// is reported and done without).
fn load_checkpoints(root: &Path, dirs: impl IntoIterator<Item = u16>) -> BTreeMap<u16, Checkpoint> {
    let mut out = BTreeMap::new();
    for dir in dirs.into_iter().collect::<std::collections::BTreeSet<_>>() {
        match checkpoint_roll::load(root, dir) {
            Ok(Some(ck)) => {
                out.insert(dir, ck);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(dir, error = %e, "spool checkpoint damaged: ignored"),
        }
    }
    out
}
