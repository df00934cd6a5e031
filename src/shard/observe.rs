//! What a core reports about itself: its metrics snapshot (gauges read
//! from the queue, mailboxes and spool at the moment of the scrape), and
//! the scrape that gathers every core's.

use super::{Request, Shard};
use crate::metrics::history::{until_next_sample, CoreView, Sample};
use crate::metrics::{Gauges, Snapshot};
use std::rc::Rc;

impl Shard {
    /// This core's counters plus gauges read now.
    pub fn metrics_snapshot(&self) -> Snapshot {
        let now = crate::clock::now_ms();
        let depth = self.queue.borrow().depth();
        let stats = self.spool.stats();
        let gauges = Gauges {
            queue_ready: depth.ready,
            queue_deferred: depth.deferred,
            queue_held: depth.held,
            queue_inflight: depth.inflight,
            queue_oldest_age_s: depth.oldest_arrived_ms.map_or(0.0, |t| now.saturating_sub(t) as f64 / 1000.0),
            mailbox_messages: self.mailboxes.borrow().total() as u64,
            spool_used_bytes: self.spool_measure.get().own_used,
            spool_syncs: stats.syncs,
            spool_records: stats.records,
            spool_bytes_written: stats.bytes,
            spool_failed_batches: stats.failed_batches,
            spool_free_bytes: self.spool_measure.get().free,
            spool_full: self.spool_full.get(),
            recovering: !self.recovery.is_done(),
            recovery_segments: self.recovery.shared.progress.segments(),
        };
        self.metrics.snapshot(self.id, gauges)
    }

    /// Re-evaluate whether the spool has room from a fresh measurement;
    /// log transitions. The measurement is file-system calls: at start-up
    /// it is taken here, afterwards `spool_watch` takes it off the executor.
    pub fn check_spool_room(&self) {
        let config = self.config();
        self.apply_spool_room(measure_spool(&config.spool_root(), self.id as u16, config.spool.max_size.is_some()));
    }

    fn apply_spool_room(&self, m: SpoolMeasure) {
        self.spool_measure.set(m);
        let config = self.config();
        let SpoolMeasure { free, total_used: used, .. } = m;
        let min_free = config.spool.min_free();
        let reason = if free < min_free {
            Some(format!("{free} bytes free on the spool's disk, below spool.min_free = {min_free}"))
        } else if !self.spool.has_spare() {
            Some("no room to make the next spool segment (kept for deletions)".to_string())
        } else {
            match (used, config.spool.max_size) {
                (Some(used), Some(max)) if used >= max => {
                    Some(format!("{used} bytes of segments, spool.max_size = {max}"))
                }
                _ => None,
            }
        };
        let full = reason.is_some();
        if full != self.spool_full.replace(full) {
            match reason {
                Some(why) => {
                    tracing::error!(core = self.id, reason = %why, "spool full: new mail refused with 452 4.3.1")
                }
                None => tracing::info!(core = self.id, free, "spool has room again: taking mail"),
            }
        }
    }

    /// Runs until the core stops: measure the spool's room every 250 ms
    /// on a blocking thread.
    pub async fn spool_watch(self: Rc<Self>) {
        while self.stop.sleep(std::time::Duration::from_millis(250)).await {
            let config = self.config();
            let (root, dir, total) = (config.spool_root(), self.id as u16, config.spool.max_size.is_some());
            let m = glommio::executor().spawn_blocking(move || measure_spool(&root, dir, total)).await;
            // Retry the spare only when it could fit: each attempt writes
            // zeros until the disk is full.
            if !self.spool.has_spare() && m.free >= config.spool.segment_size {
                self.spool.ensure_spare();
            }
            self.apply_spool_room(m);
        }
    }

    /// Every core's snapshot, in core order (a core that does not answer
    /// is left out and logged).
    pub async fn gather_metrics(self: &Rc<Self>) -> Vec<Snapshot> {
        let mut out = Vec::with_capacity(self.cores);
        for core in 0..self.cores {
            match self.ask(core, |answer| Request::Metrics { answer }).await {
                Ok(s) => out.push(*s),
                Err(e) => tracing::warn!(core, error = %e, "metrics request failed"),
            }
        }
        out
    }

    /// Every core's status-page view, in core order (a core that does not
    /// answer is left out and logged).
    pub async fn gather_views(self: &Rc<Self>) -> Vec<CoreView> {
        let mut out = Vec::with_capacity(self.cores);
        for core in 0..self.cores {
            match self.ask(core, |answer| Request::Dashboard { answer }).await {
                Ok(v) => out.push(*v),
                Err(e) => tracing::warn!(core, error = %e, "dashboard request failed"),
            }
        }
        out
    }

    /// Runs until the core stops: a history sample (for the status page)
    /// at every multiple of `SAMPLE_EVERY_MS` of the wall clock, and one
    /// at once so that the first interval starts at the start.
    pub async fn sample_history(self: Rc<Self>) {
        loop {
            self.metrics.sample(Sample::of(&self.metrics_snapshot(), crate::clock::now_ms()));
            let wait = std::time::Duration::from_millis(until_next_sample(crate::clock::now_ms()));
            if !self.stop.sleep(wait).await {
                return;
            }
        }
    }
}

/// The spool's use, as `spool_watch` last measured it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpoolMeasure {
    /// Free bytes on the spool's file system.
    pub free: u64,
    /// Bytes of this core's spool dir.
    pub own_used: u64,
    /// Bytes of all spool dirs, when `spool.max_size` needs it.
    pub total_used: Option<u64>,
}

/// Measure the spool under `root` (blocking file-system calls).
fn measure_spool(root: &std::path::Path, dir: u16, total: bool) -> SpoolMeasure {
    SpoolMeasure {
        free: free_bytes(root),
        own_used: dir_bytes(&crate::spool::layout::dir_path(root, dir)),
        total_used: total
            .then(|| std::fs::read_dir(root).map_or(0, |rd| rd.flatten().map(|d| dir_bytes(&d.path())).sum::<u64>())),
    }
}

/// Total size of the files in `dir` (a spool dir holds only segments).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

/// Bytes available to us on the file system holding `path`.
fn free_bytes(path: &std::path::Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return 0 };
    // SAFETY: statvfs writes into the zeroed struct we own.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return 0;
    }
    s.f_bavail as u64 * s.f_frsize as u64
}
