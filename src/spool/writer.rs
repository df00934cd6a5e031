//! The asynchronous half of the write path: [`Spool`], one per core, owning
//! one spool directory. It hands out locations synchronously (`append`), runs
//! group-commit rounds (a `write_at` per extent, see `batch.rs`, and one
//! `sync_data` per segment touched),
//! and prepares segments ahead of need in background tasks.
//!
//! The segment after the write segment is always made as soon as the write
//! segment is (the *spare*): its disk space is then taken, so that on a
//! full disk there is still a whole segment for tombstones. Deleting is the
//! way out of a full disk and must not need room that is not there. While
//! the spare cannot be made, [`Spool::has_spare`] is false and new mail is
//! refused at MAIL (452 4.3.1) rather than after DATA.
//!
//! The durability contract it implements is written in `spool/mod.rs`. This
//! module must never write a byte after bytes that failed to write or sync in
//! the same segment, and never start a write while another is in flight.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};

use super::batch::{Batch, Commit, Extent, WriteState};
use super::error::SpoolError;
use super::ids::{SegmentKey, SpoolRef};
use super::io::{SegmentFile, SegmentStore};
use super::record::RecordKind;

/// Settings of the write path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Size of each new segment file in bytes: a multiple of 4096, at least
    /// 4096 and below 4 GiB (offsets are 32-bit). The largest record is a
    /// segment minus nothing: one record may fill a segment.
    pub segment_size: u32,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig { segment_size: 64 << 20 }
    }
}

impl SpoolConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), SpoolError> {
        let size = self.segment_size;
        if size < 4096 || !size.is_multiple_of(4096) {
            return Err(SpoolError::InvalidSegmentSize { size: size.into() });
        }
        Ok(())
    }
}

/// Where a spool directory's appends resume after recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tail {
    /// The highest segment of the directory.
    pub segment: u32,
    /// Just past its last good record.
    pub offset: u32,
    /// The segment's size in bytes.
    pub size: u64,
}

/// Counters for metrics. Monotonic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Records appended (placed in a batch).
    pub records: u64,
    /// Bytes appended, headers and padding included.
    pub bytes: u64,
    /// `write_at` calls completed.
    pub writes: u64,
    /// `sync_data` calls completed successfully.
    pub syncs: u64,
    /// Batches that failed (write, sync, segment preparation, abandonment).
    pub failed_batches: u64,
}

/// A record's place, and the ticket to wait for its durability.
#[derive(Debug)]
pub struct Appended {
    /// Where the record starts.
    pub at: SpoolRef,
    /// Pass to [`Spool::durable`].
    pub ticket: CommitTicket,
}

/// Names the batch a record was placed in. Records appended together share
/// one; cloning is cheap.
#[derive(Clone, Debug)]
pub struct CommitTicket {
    commit: Rc<Commit>,
}

/// A segment being created or opened in the background.
enum Prep<F> {
    Pending(Vec<Waker>),
    Ready(Rc<F>),
    Failed(SpoolError),
}

type PrepCell<F> = Rc<RefCell<Prep<F>>>;

struct Shared<S: SegmentStore> {
    store: S,
    dir: u16,
    segment_size: u32,
    /// Reservations and batches waiting to be written.
    state: RefCell<WriteState>,
    /// A commit round (write + sync) is running; only one ever is.
    in_flight: Cell<bool>,
    /// The segment the committer writes into now.
    file: RefCell<Option<(u32, Rc<S::File>)>>,
    /// Segments being created or opened, by sequence number.
    preparing: RefCell<BTreeMap<u32, PrepCell<S::File>>>,
    /// The recovered tail segment, to be opened rather than created.
    resume_seq: Cell<Option<u32>>,
    /// The last segment preparation failed (typically: no room on the
    /// disk). Appends stop re-trying at once; [`Spool::ensure_spare`] does.
    prepare_failed: Cell<bool>,
    stats: Cell<SpoolStats>,
}

/// The append-only spool of one directory, with group commit.
///
/// A cheap handle (clones share the spool); `!Send`, lives on one core.
pub struct Spool<S: SegmentStore + 'static> {
    shared: Rc<Shared<S>>,
}

impl<S: SegmentStore + 'static> Clone for Spool<S> {
    fn clone(&self) -> Self {
        Spool { shared: self.shared.clone() }
    }
}

impl<S: SegmentStore + 'static> Spool<S> {
    /// A spool appending to directory `dir` through `store`: at `resume`
    /// (the recovered tail), or from segment 0 if the directory is empty.
    /// Must be used inside a glommio executor (it spawns local tasks).
    pub fn new(store: S, dir: u16, config: SpoolConfig, resume: Option<Tail>) -> Result<Self, SpoolError> {
        config.validate()?;
        let (seq, offset, capacity) = match resume {
            None => (0, 0, config.segment_size),
            Some(t) => {
                let capacity = u32::try_from(t.size).ok().filter(|_| t.offset as u64 <= t.size && t.offset % 8 == 0);
                let Some(capacity) = capacity else {
                    return Err(SpoolError::InvalidTail { dir, segment: t.segment, offset: t.offset, size: t.size });
                };
                (t.segment, t.offset, capacity)
            }
        };
        let shared = Shared {
            store,
            dir,
            segment_size: config.segment_size,
            state: RefCell::new(WriteState::new(dir, config.segment_size, seq, offset, capacity)),
            in_flight: Cell::new(false),
            file: RefCell::new(None),
            preparing: RefCell::new(BTreeMap::new()),
            resume_seq: Cell::new(resume.map(|t| t.segment)),
            prepare_failed: Cell::new(false),
            stats: Cell::new(SpoolStats::default()),
        };
        Ok(Spool { shared: Rc::new(shared) })
    }

    /// The spool directory this spool writes.
    pub fn dir(&self) -> u16 {
        self.shared.dir
    }

    /// Where the next record would start if it fits the current segment;
    /// its `segment` is the write segment (never to be reclaimed).
    pub fn write_position(&self) -> SpoolRef {
        self.shared.state.borrow().position()
    }

    /// Counters since this spool was made.
    pub fn stats(&self) -> SpoolStats {
        self.shared.stats.get()
    }

    /// The spare segment exists or is being made, and the last attempt to
    /// make a segment did not fail: there is room for new mail and, beyond
    /// it, a whole segment for deletions.
    pub fn has_spare(&self) -> bool {
        !self.shared.prepare_failed.get()
    }

    /// Make the write segment and the spare if either is missing (after a
    /// failed attempt: this is the retry). Called periodically.
    pub fn ensure_spare(&self) {
        self.shared.prepare_now();
    }

    /// Places a record made of `parts` (concatenated: the payload) and copies
    /// it into the current write batch. Returns at once; the record is durable
    /// only once [`Spool::durable`] on its ticket returned Ok.
    ///
    /// `RecordTooLarge` if it could not fit even an empty segment. A record
    /// that does not fit the rest of the current segment starts the next one.
    pub fn append(&self, kind: RecordKind, parts: &[&[u8]]) -> Result<Appended, SpoolError> {
        self.append_owned(kind, parts, Vec::new())
    }

    /// [`Spool::append`] for a record whose payload is `parts` then `tail`,
    /// given up to the spool: a large tail (a message body) is written
    /// from where it is, not copied into the batch. Same bytes on disk, same
    /// durability: the tail is one more extent of the batch, written before
    /// its sync like every other.
    pub fn append_owned(&self, kind: RecordKind, parts: &[&[u8]], tail: Vec<u8>) -> Result<Appended, SpoolError> {
        let sh = &self.shared;
        let (at, commit, len) = sh.state.borrow_mut().reserve_owned(kind, parts, tail)?;
        let mut stats = sh.stats.get();
        stats.records += 1;
        stats.bytes += len as u64;
        sh.stats.set(stats);
        if !sh.prepare_failed.get() {
            sh.prepare_now();
        }
        Ok(Appended { at, ticket: CommitTicket { commit } })
    }

    /// Waits until the ticket's batch is durable (Ok) or known to have failed
    /// (Err: the records may or may not survive a crash; treat as not stored).
    ///
    /// Group commit: if no write+sync is in flight, this call starts a round
    /// that takes every pending batch; otherwise it waits for the round in
    /// flight and re-checks. Dropping this future does not cancel the round.
    pub async fn durable(&self, ticket: &CommitTicket) -> Result<(), SpoolError> {
        loop {
            if let Some(outcome) = ticket.commit.outcome() {
                return outcome;
            }
            if !self.shared.in_flight.get() {
                self.shared.in_flight.set(true);
                // A task of its own, so that a cancelled caller cannot leave
                // a round half done with `in_flight` set forever.
                glommio::spawn_local(Shared::commit_round(self.shared.clone())).detach();
            }
            ticket.commit.wait(&self.shared.in_flight).await;
        }
    }

    /// [`Spool::append`] then [`Spool::durable`].
    pub async fn append_durable(&self, kind: RecordKind, parts: &[&[u8]]) -> Result<SpoolRef, SpoolError> {
        let appended = self.append(kind, parts)?;
        self.durable(&appended.ticket).await?;
        Ok(appended.at)
    }

    /// Waits until every record appended so far is durable (Err if the
    /// newest batch failed) and no segment is being prepared in the
    /// background. For shutdown: afterwards dropping the spool loses nothing
    /// and leaves no half-created segment behind.
    pub async fn flush(&self) -> Result<(), SpoolError> {
        let newest = self.shared.state.borrow().newest_commit();
        let result = match newest {
            Some(commit) => self.durable(&CommitTicket { commit }).await,
            None => Ok(()),
        };
        loop {
            let busy =
                self.shared.preparing.borrow().values().find(|p| matches!(&*p.borrow(), Prep::Pending(_))).cloned();
            match busy {
                Some(prep) => drop(wait_prep(&prep).await),
                None => return result,
            }
        }
    }

    /// Deletes a reclaimed segment of this directory (see `Ledger`). Refuses
    /// the write segment and any later one. Durable when it returns Ok.
    pub async fn remove_segment(&self, seq: u32) -> Result<(), SpoolError> {
        let sh = &self.shared;
        let key = SegmentKey { dir: sh.dir, seq };
        let in_use = seq >= sh.state.borrow().position().segment
            || sh.file.borrow().as_ref().is_some_and(|(s, _)| *s <= seq)
            || sh.preparing.borrow().contains_key(&seq);
        if in_use {
            return Err(SpoolError::SegmentInUse { key });
        }
        sh.store.remove(seq).await.map_err(|e| SpoolError::RemoveSegment { key, source: Arc::new(e) })
    }
}

/// Waits for a segment preparation to finish.
async fn wait_prep<F>(prep: &PrepCell<F>) -> Result<Rc<F>, SpoolError> {
    std::future::poll_fn(|cx| match &mut *prep.borrow_mut() {
        Prep::Pending(wakers) => {
            wakers.push(cx.waker().clone());
            Poll::Pending
        }
        Prep::Ready(f) => Poll::Ready(Ok(f.clone())),
        Prep::Failed(e) => Poll::Ready(Err(e.clone())),
    })
    .await
}

impl<S: SegmentStore + 'static> Shared<S> {
    /// Starts preparing the write segment if it has no file yet, and the
    /// spare after it (see the module doc), so that rollover never waits
    /// for zero-filling and a full disk still has room for tombstones.
    fn prepare_now(self: &Rc<Self>) {
        let pos = self.state.borrow().position();
        let has_file = self.file.borrow().as_ref().is_some_and(|(s, _)| *s == pos.segment);
        if !has_file {
            self.prepare(pos.segment);
        }
        self.prepare(pos.segment + 1);
    }

    /// The preparation of segment `seq`, started if it is not under way.
    fn prepare(self: &Rc<Self>, seq: u32) -> PrepCell<S::File> {
        if let Some(p) = self.preparing.borrow().get(&seq) {
            return p.clone();
        }
        let prep = Rc::new(RefCell::new(Prep::Pending(Vec::new())));
        self.preparing.borrow_mut().insert(seq, prep.clone());
        let shared = self.clone();
        let cell = prep.clone();
        glommio::spawn_local(async move {
            let open = shared.resume_seq.get() == Some(seq);
            let result = if open {
                shared.store.open(seq).await
            } else {
                shared.store.create(seq, shared.segment_size.into()).await
            };
            shared.prepare_failed.set(result.is_err());
            let next = match result {
                Ok(file) => {
                    if open {
                        shared.resume_seq.set(None);
                    }
                    Prep::Ready(Rc::new(file))
                }
                Err(e) => {
                    // Forget the attempt so that a later need tries again.
                    let mut map = shared.preparing.borrow_mut();
                    if map.get(&seq).is_some_and(|p| Rc::ptr_eq(p, &cell)) {
                        map.remove(&seq);
                    }
                    Prep::Failed(SpoolError::PrepareSegment { dir: shared.dir, segment: seq, source: Arc::new(e) })
                }
            };
            let old = std::mem::replace(&mut *cell.borrow_mut(), next);
            if let Prep::Pending(wakers) = old {
                wakers.into_iter().for_each(Waker::wake);
            }
        })
        .detach();
        prep
    }

    /// The open file of segment `seq`, waiting for its preparation if needed.
    async fn file_for(self: &Rc<Self>, seq: u32) -> Result<Rc<S::File>, SpoolError> {
        if let Some((s, f)) = &*self.file.borrow() {
            if *s == seq {
                return Ok(f.clone());
            }
        }
        let prep = self.prepare(seq);
        let result = wait_prep(&prep).await;
        {
            let mut map = self.preparing.borrow_mut();
            if map.get(&seq).is_some_and(|p| Rc::ptr_eq(p, &prep)) {
                map.remove(&seq);
            }
        }
        let file = result?;
        *self.file.borrow_mut() = Some((seq, file.clone()));
        Ok(file)
    }

    /// One group-commit round: every batch pending when it starts is
    /// written and synced, oldest first, its extents written one after the
    /// other and one sync per segment.
    async fn commit_round(self: Rc<Self>) {
        // glommio polls a spawned task at once, inside `durable`. Step back
        // behind the tasks already runnable (typically the waiters the last
        // round just woke, about to append again) so they join this round.
        futures_lite::future::yield_now().await;
        let batches = self.state.borrow_mut().take_pending();
        for batch in batches {
            self.commit_batch(batch).await;
        }
        self.in_flight.set(false);
        // Records appended during the round: wake their waiters so that one
        // of them starts the next round right away (no timer).
        let pending = self.state.borrow().pending_commits();
        pending.iter().for_each(|c| c.wake_all());
    }

    async fn commit_batch(self: &Rc<Self>, batch: Batch) {
        let Batch { seq, extents, commit, .. } = batch;
        if self.state.borrow().is_abandoned(seq) {
            self.count_failure(1);
            commit.settle(Err(self.abandoned(seq)));
            return;
        }
        match self.write_and_sync(seq, extents).await {
            Ok(()) => commit.settle(Ok(())),
            Err(e) => {
                let failed = self.state.borrow_mut().abandon(seq);
                self.preparing.borrow_mut().retain(|&s, _| s > seq);
                let mut slot = self.file.borrow_mut();
                if slot.as_ref().is_some_and(|(s, _)| *s <= seq) {
                    *slot = None;
                }
                drop(slot);
                self.count_failure(1 + failed.len() as u64);
                commit.settle(Err(e));
                for b in failed {
                    b.commit.settle(Err(self.abandoned(b.seq)));
                }
            }
        }
    }

    /// Writes the extents in order (one write in flight at a time), then
    /// syncs once.
    async fn write_and_sync(self: &Rc<Self>, seq: u32, extents: Vec<Extent>) -> Result<(), SpoolError> {
        let file = self.file_for(seq).await?;
        let (dir, segment) = (self.dir, seq);
        for Extent { start, buf } in extents {
            file.write_at(buf, start.into()).await.map_err(|e| SpoolError::WriteFailed {
                dir,
                segment,
                offset: start,
                source: Arc::new(e),
            })?;
            self.bump(|s| s.writes += 1);
        }
        file.sync_data().await.map_err(|e| SpoolError::SyncFailed { dir, segment, source: Arc::new(e) })?;
        self.bump(|s| s.syncs += 1);
        Ok(())
    }

    fn abandoned(&self, seq: u32) -> SpoolError {
        SpoolError::SegmentAbandoned { dir: self.dir, segment: seq }
    }

    fn count_failure(&self, n: u64) {
        self.bump(|s| s.failed_batches += n);
    }

    fn bump(&self, f: impl FnOnce(&mut SpoolStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }
}
