//! Each core's checkpoints of its own spool directory (see
//! `spool::checkpoint`): every `spool.checkpoint_interval` when anything
//! was appended since the last one, and at a clean stop, so that a restart
//! reads the checkpoint plus the log after it instead of every segment.
//!
//! Taking one: append a `Checkpoint` record and wait until it is durable
//! (its place is the cut: everything before it is durable too), then roll
//! the previous checkpoint forward to the cut and write the file, off the
//! executor. Nothing in memory is read: the checkpoint is computed from
//! the log, so it cannot disagree with it.

use super::Shard;
use crate::spool::{checkpoint_roll, RecordKind, SpoolRef};
use glommio::sync::Semaphore;
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Per core: where the last checkpoint's record ended, and the one permit
/// to take a checkpoint (held while one is being taken).
pub struct Checkpoints {
    /// The write position just after the last `Checkpoint` record: if the
    /// spool is still there, nothing new needs a checkpoint.
    after_last: Cell<Option<SpoolRef>>,
    taking: Semaphore,
}

impl Default for Checkpoints {
    fn default() -> Self {
        Checkpoints { after_last: Cell::new(None), taking: Semaphore::new(1) }
    }
}

/// Whether a checkpoint that is being taken is waited for or skipped.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum IfTaking {
    /// The periodic one: the one being taken will do.
    Skip,
    /// The one at a clean stop: the one being taken stops at an earlier
    /// cut, so wait for it and take another, unless less than
    /// [`LOG_WORTH_A_CHECKPOINT`] was appended after its cut. (Skipping it
    /// left the core with the most mail, whose checkpoint takes longest,
    /// stopping with none after its fill: the next start then read a
    /// minute of log.)
    Wait,
}

/// Log after a checkpoint that a restart reads in well under a second:
/// a clean stop that had to wait for a checkpoint does not take another
/// for less (a checkpoint at 10 M queued takes seconds to write).
const LOG_WORTH_A_CHECKPOINT: u64 = 16 << 20;

impl Shard {
    /// Runs until the core stops: a checkpoint every
    /// `spool.checkpoint_interval` (0: never, except at a clean stop).
    pub async fn checkpointer(self: Rc<Self>) {
        loop {
            let interval = self.config().spool.checkpoint_interval.get();
            let wait =
                if interval.is_zero() { Duration::from_secs(1) } else { interval.max(Duration::from_millis(50)) };
            if !self.stop.sleep(wait).await {
                return;
            }
            if !interval.is_zero() {
                self.checkpoint(IfTaking::Skip).await;
            }
        }
    }

    /// Takes a checkpoint of this core's directory if anything was
    /// appended since the last one (`if_taking` says what to do when one is
    /// being taken). Only once this core has adopted its recovered spool:
    /// before that, reading the whole directory would compete with
    /// recovery for the disk.
    pub async fn checkpoint(self: &Rc<Self>, if_taking: IfTaking) {
        let cp = &self.checkpoints;
        if !self.recovery.is_done() {
            return;
        }
        let (permit, waited) = match (cp.taking.try_acquire_permit(1), if_taking) {
            (Ok(permit), _) => (Some(permit), false),
            (Err(_), IfTaking::Skip) => (None, false),
            (Err(_), IfTaking::Wait) => (cp.taking.acquire_permit(1).await.ok(), true),
        };
        let Some(_permit) = permit else { return };
        let Some(last) = cp.after_last.get() else { return self.checkpoint_now().await };
        let now = self.spool.write_position();
        let segment_size = self.config().spool.segment_size;
        if now == last || (waited && log_between(last, now, segment_size) < LOG_WORTH_A_CHECKPOINT) {
            return;
        }
        self.checkpoint_now().await;
    }

    /// Takes a checkpoint (the caller holds the permit) and logs how it went.
    async fn checkpoint_now(self: &Rc<Self>) {
        let started = Instant::now();
        let result = self.take_checkpoint().await;
        match result {
            Ok(taken) => tracing::info!(
                core = self.id,
                records = taken.records,
                tombstones = taken.tombstones,
                states = taken.states,
                bytes = taken.bytes,
                incremental = taken.incremental,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "spool checkpoint written"
            ),
            Err(e) => tracing::warn!(core = self.id, error = %e, "spool checkpoint not written; will retry"),
        }
    }

    async fn take_checkpoint(self: &Rc<Self>) -> Result<checkpoint_roll::Taken, crate::spool::SpoolError> {
        let cut = self.spool.append_durable(RecordKind::Checkpoint, &[]).await?;
        self.ledger.borrow_mut().checkpoint_pending(cut);
        self.checkpoints.after_last.set(Some(self.spool.write_position()));
        let root = self.config().spool_root();
        let taken = glommio::executor().spawn_blocking(move || checkpoint_roll::take(&root, cut)).await;
        let taken = match taken {
            Ok(taken) => taken,
            Err(e) => {
                // Its record is in the spool, but no checkpoint holds it:
                // the next one must not think it has nothing to do.
                self.checkpoints.after_last.set(None);
                let dead = self.ledger.borrow_mut().checkpoint_failed(cut.dir);
                self.reclaim(dead).await;
                return Err(e);
            }
        };
        // It holds every state before the cut: their segments may go now.
        let dead = self.ledger.borrow_mut().checkpointed(cut);
        self.reclaim(dead).await;
        Ok(taken)
    }
}

/// About how many bytes were appended to a directory between `from` and
/// `to` (every segment counted full but the last).
fn log_between(from: SpoolRef, to: SpoolRef, segment_size: u64) -> u64 {
    let segments = u64::from(to.segment.saturating_sub(from.segment));
    (segments * segment_size + u64::from(to.offset)).saturating_sub(u64::from(from.offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_between_counts_whole_segments_and_the_offsets() {
        let at = |segment, offset| SpoolRef { dir: 3, segment, offset };
        assert_eq!(log_between(at(4, 100), at(4, 100), 1000), 0);
        assert_eq!(log_between(at(4, 100), at(4, 900), 1000), 800);
        assert_eq!(log_between(at(4, 900), at(6, 50), 1000), 1150);
    }
}
