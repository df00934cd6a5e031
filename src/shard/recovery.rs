//! Serving before the spool is recovered: how a core adopts what recovery
//! found behind it (see `spool::phased` and `boot`).
//!
//! A core starts with its writer open (phase 1) and everything else empty,
//! and serves at once: SMTP accepts and acknowledges new mail as always
//! (durably), and new mail is delivered to mailboxes and queued. What
//! waits for the recovered part:
//! - POP3 logins to this core's mailboxes (`Request::Lock` answers
//!   `Recovering`; the session retries for up to [`LOGIN_WAIT`]);
//! - relay from this core's queue (`kick` does nothing; the relay timer
//!   starts on adoption), so the suppression list is complete before any
//!   mail is relayed from here;
//! - suppression changes owned by this core (answered `Recovering`);
//! - everything that deletes or rewrites: reclaim (held), compaction,
//!   retention and the suppression sweep (started on adoption).
//!
//! Adoption ([`Shard::adopt`]) applies the recovered part in steps, each
//! opening its gate: the ledger catches up on its journal, the suppression
//! list is rebuilt and the changes received meanwhile re-applied, mailbox
//! entries are added (yielding every [`CHUNK`]), then queue entries (compact
//! shares: see `distribute`).
//!
//! The part behind the cores runs on its own thread ([`spawn_recovery`]):
//! it reads the spool (phase 2), logs what it found damaged, deletes the
//! segments that died before the restart, splits the rest into each core's
//! part and sends each core its [`Adoption`].

use super::Shard;
use crate::mailbox::MailboxEntry;
use crate::queue::Adopted;
use crate::spool::{self, phased::Progress, SegmentKey};
use crate::suppression::{Suppressions, Update};
use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a POP3 login waits for its mailbox to be recovered before
/// `-ERR [SYS/TEMP]`.
pub const LOGIN_WAIT: Duration = Duration::from_secs(10);

/// Entries added between yields while adopting, so sessions keep being
/// served during a large adoption.
const CHUNK: usize = 4096;

/// What recovery found for one core: the records of the dirs it owns and
/// the mailboxes and destinations it owns.
#[derive(Default)]
pub struct Adoption {
    /// Liveness of every recovered record (each core asks only about the
    /// dirs it owns).
    pub ledger: spool::Ledger,
    pub mailboxes: Vec<(String, MailboxEntry)>,
    /// This core's queue shares, compact.
    pub queue: Adopted,
    /// The live suppression entries (every core holds the whole list).
    pub suppressions: Vec<spool::LiveSuppression>,
    /// States recovery carried across a compaction's move
    /// (`spool::Recovered::carried`): recorded again once adopted, and the
    /// old places' segments kept until every core has.
    pub carried: Arc<spool::Carried>,
}

/// Shared by the recovery thread and every core, for `status` and for the
/// one line that says the whole server has caught up.
#[derive(Debug, Default)]
pub struct Shared {
    /// Segments read so far.
    pub progress: Progress,
    /// Cores that have adopted their part.
    pub adopted: AtomicUsize,
    /// A core could not record the states recovery carried across a
    /// compaction's move: their old segments stay until the next start.
    pub carry_failed: AtomicBool,
}

/// One core's recovery state (see the module docs).
pub struct Recovery {
    mailboxes: Cell<bool>,
    queue: Cell<bool>,
    done: Cell<bool>,
    /// Suppression changes received before the recovered list arrived.
    suppression_updates: RefCell<Vec<Update>>,
    /// Segments kept for queue states recovery carried across a
    /// compaction's move.
    carried_from: RefCell<KeptForCarried>,
    pub shared: Arc<Shared>,
}

/// Segments holding queue states recovery carried across a compaction's
/// move (`spool::Carried::from`): kept, however dead, until every core has
/// recorded the states at the new places.
#[derive(Default)]
struct KeptForCarried {
    keep: Vec<SegmentKey>,
    /// Those of them offered for reclaim meanwhile.
    offered: Vec<SegmentKey>,
}

impl Recovery {
    /// A core whose recovered part is still to come.
    pub fn pending(shared: Arc<Shared>) -> Recovery {
        Recovery {
            mailboxes: Cell::new(false),
            queue: Cell::new(false),
            done: Cell::new(false),
            suppression_updates: RefCell::new(Vec::new()),
            carried_from: RefCell::default(),
            shared,
        }
    }

    /// Whether this core's mailbox indexes are complete.
    pub fn mailboxes_ready(&self) -> bool {
        self.mailboxes.get()
    }

    /// Whether this core's relay queue is complete.
    pub fn queue_ready(&self) -> bool {
        self.queue.get()
    }

    /// Whether everything is adopted.
    pub fn is_done(&self) -> bool {
        self.done.get()
    }

    /// Takes out of `dead` the segments kept for carried states (see
    /// `carried_from`), to be reclaimed once they are recorded elsewhere.
    pub fn keep_carried(&self, dead: &mut Vec<SegmentKey>) {
        let mut carried = self.carried_from.borrow_mut();
        let KeptForCarried { keep, offered } = &mut *carried;
        if keep.is_empty() {
            return;
        }
        dead.retain(|k| {
            let kept = keep.contains(k);
            if kept && !offered.contains(k) {
                offered.push(*k);
            }
            !kept
        });
    }

    /// Keep a suppression change (which the caller applies now as well) to
    /// re-apply over the recovered list, until that list has arrived.
    pub fn hold_suppression_update(&self, update: &Update) {
        if !self.done.get() {
            self.suppression_updates.borrow_mut().push(update.clone());
        }
    }
}

impl Shard {
    /// Wait for this core's part of the recovered spool and adopt it, then
    /// start what waited for it. Returns early if the server stops or the
    /// recovery thread ended without an answer (it failed: the server is
    /// being stopped).
    pub async fn adopt(self: Rc<Self>, from: crossbeam_channel::Receiver<Adoption>) {
        let started = Instant::now();
        let part = loop {
            match from.try_recv() {
                Ok(part) => break part,
                Err(crossbeam_channel::TryRecvError::Empty) => {
                    if !self.stop.sleep(Duration::from_millis(5)).await {
                        return;
                    }
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => return,
            }
        };
        let Adoption { ledger, mailboxes, queue, suppressions, carried } = part;
        let (boxes, queued) = (mailboxes.len(), queue.shares.len());
        let dead = self.ledger.borrow_mut().catch_up(ledger);
        let mut list = Suppressions::from_recovered(suppressions);
        for update in self.recovery.suppression_updates.take() {
            list.apply(update);
        }
        *self.suppressions.borrow_mut() = list;

        in_chunks(mailboxes, |(user, entry)| self.mailboxes.borrow_mut().deliver(&user, entry)).await;
        self.mailboxes.borrow_mut().sort_by_arrival();
        self.recovery.mailboxes.set(true);
        self.check_all_quotas();

        let ids = self.queue.borrow_mut().begin_adoption(&queue);
        in_chunks(&queue.shares, |share| {
            self.queue.borrow_mut().adopt(&queue, &ids, share);
        })
        .await;
        drop(queue);
        self.recovery.carried_from.borrow_mut().keep = carried.from.clone();
        if !self.record_carried(&carried.to).await {
            self.recovery.shared.carry_failed.store(true, Ordering::Release);
        }
        self.recovery.queue.set(true);
        // The recovery thread's full entries, made compact and freed here.
        crate::memory::give_back();
        glommio::spawn_local(self.clone().relay_timer()).detach();

        self.recovery.done.set(true);
        let mut held = self.held_reclaim.take();
        // The ledger knows every dir; this core deletes only its own.
        held.extend(dead.into_iter().filter(|k| super::owner::dir_owner(k.dir, self.cores) == self.id));
        self.reclaim(held).await;
        if !carried.from.is_empty() {
            glommio::spawn_local(self.clone().release_carried()).detach();
        }
        glommio::spawn_local(self.clone().retention_sweeper()).detach();
        glommio::spawn_local(self.clone().compactor()).detach();
        glommio::spawn_local(self.clone().checkpointer()).detach();
        glommio::spawn_local(self.clone().suppression_sweeper()).detach();
        tracing::info!(
            core = self.id,
            mailbox_messages = boxes,
            queued = queued,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "recovered spool adopted"
        );
        let adopted = self.recovery.shared.adopted.fetch_add(1, Ordering::AcqRel) + 1;
        if adopted == self.cores {
            tracing::info!(cores = self.cores, "recovery complete: every core serves its whole spool");
        }
    }

    /// Once every core has adopted its part (each records the carried
    /// states at their new places first), reclaim the old segments kept
    /// for them; if a core could not, they stay until the next start.
    async fn release_carried(self: Rc<Self>) {
        let shared = &self.recovery.shared;
        while shared.adopted.load(Ordering::Acquire) < self.cores {
            if !self.stop.sleep(Duration::from_millis(10)).await {
                return;
            }
        }
        if shared.carry_failed.load(Ordering::Acquire) {
            tracing::warn!(
                core = self.id,
                "queue states carried across a compaction not recorded: their old segments stay until the next start"
            );
            return;
        }
        let offered = std::mem::take(&mut *self.recovery.carried_from.borrow_mut()).offered;
        self.reclaim(offered).await;
    }
}

/// `each` on every item, letting other tasks run between chunks of
/// [`CHUNK`] (each call's borrows end before a yield).
async fn in_chunks<T>(items: impl IntoIterator<Item = T>, mut each: impl FnMut(T)) {
    let mut items = items.into_iter();
    loop {
        let mut n = 0;
        for item in items.by_ref().take(CHUNK) {
            each(item);
            n += 1;
        }
        if n < CHUNK {
            return;
        }
        glommio::yield_if_needed().await;
    }
}

/// What the recovery thread needs.
pub(super) struct RecoverBehind {
    pub(super) root: PathBuf,
    pub(super) boundaries: spool::phased::Boundaries,
    /// Damage phase 1 found and logged in the segments it read (phase 2
    /// reads them again: logged once).
    pub(super) reported: Vec<spool::DamagedRecord>,
    pub(super) relay: crate::config::Relay,
    pub(super) shared: Arc<Shared>,
    /// One per core, in core order.
    pub(super) adoptions: Vec<crossbeam_channel::Sender<Adoption>>,
    pub(super) stopping: Arc<AtomicBool>,
}

/// What recovery found wrong in the spool: torn tails it cut (a crash
/// interrupted their writes, so they were never acknowledged) and damage in
/// the middle of a segment it passed over (whatever record was there is
/// lost, possibly acknowledged mail: an error for the operator).
pub(super) fn log_spool_damage(torn: &[spool::TornRecord], damaged: &[spool::DamagedRecord]) {
    for t in torn {
        tracing::warn!(dir = t.dir, segment = t.segment, offset = t.offset, reason = %t.reason, "cut torn spool tail (never acknowledged)");
    }
    for d in damaged {
        tracing::error!(
            dir = d.dir,
            segment = d.segment,
            offset = d.offset,
            bytes = d.len,
            reason = %d.reason,
            "spool record damaged: passed over, the records after it kept"
        );
    }
}

/// Phase 2 of recovery on its own thread: read the spool behind the
/// serving cores, delete what died before the restart, and hand each core
/// its part. On failure (a record this version cannot read) the server
/// stops, and `boot::run` returns the error: cutting data it cannot read would
/// destroy mail. The returned slot holds that error.
pub(super) fn spawn_recovery(job: RecoverBehind) -> Arc<Mutex<Option<spool::SpoolError>>> {
    let failed = Arc::new(Mutex::new(None));
    let slot = failed.clone();
    std::thread::Builder::new()
        .name("ringmail-recovery".into())
        .spawn(move || {
            let started = std::time::Instant::now();
            match spool::phased::recover_behind(&job.root, &job.boundaries, &job.shared.progress) {
                Ok(mut recovered) => {
                    let place = |d: &spool::DamagedRecord| (d.dir, d.segment, d.offset);
                    recovered.damaged.retain(|d| !job.reported.iter().any(|r| place(r) == place(d)));
                    log_spool_damage(&recovered.torn, &recovered.damaged);
                    reclaim_at_start(&job.root, &mut recovered);
                    let live = recovered.live_count();
                    // The spool read (checkpoints, log, decode) apart from
                    // the split into each core's part.
                    let read_ms = started.elapsed().as_millis() as u64;
                    let parts = super::distribute::distribute(recovered, job.adoptions.len(), &job.relay);
                    let elapsed_ms = started.elapsed().as_millis() as u64;
                    tracing::info!(messages = live, read_ms, elapsed_ms, "spool recovered");
                    #[cfg(debug_assertions)]
                    hold_for_tests();
                    for (tx, part) in job.adoptions.iter().zip(parts) {
                        let _ = tx.send(part);
                    }
                    // The decoded spool is gone: return its pages now,
                    // before this thread ends and abandons them.
                    crate::memory::give_back();
                }
                Err(e) => {
                    tracing::error!(error = %e, "spool recovery failed: stopping (mail acknowledged since the start is in the spool)");
                    if let Ok(mut f) = slot.lock() {
                        *f = Some(e);
                    }
                    job.stopping.store(true, Ordering::Release);
                }
            }
        })
        .expect("spawning a thread at start-up");
    failed
}

/// Debug builds only: while the file `RINGMAIL_TEST_HOLD_RECOVERY` names
/// exists, keep the recovered spool from the cores, so that tests can
/// exercise a server serving behind a recovery that lasts.
#[cfg(debug_assertions)]
fn hold_for_tests() {
    if let Some(path) = std::env::var_os("RINGMAIL_TEST_HOLD_RECOVERY").filter(|p| std::path::Path::new(p).exists()) {
        tracing::info!(file = ?path, "holding the recovered spool while this file exists (test hook)");
        while std::path::Path::new(&path).exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Delete segments that died before the restart (all their mail final),
/// before any core adopts the ledger (so none of them is ever mapped: a
/// dead segment holds nothing to read, and no writer appends to it).
///
/// The segments of old places whose states recovery carried to where a
/// compaction moved their messages stay until the cores have recorded
/// those states there (`Shard::adopt`): a crash before that would lose them.
fn reclaim_at_start(root: &std::path::Path, recovered: &mut spool::Recovered) {
    let mut dead = std::mem::take(&mut recovered.reclaimable);
    while let Some(key) = dead.pop() {
        if recovered.carried.from.contains(&key) {
            continue;
        }
        let path = spool::layout::segment_path(root, key);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::debug!(segment = %key, "reclaimed dead segment");
                dead.extend(recovered.ledger.segment_removed(key));
                if let Some(dir) = path.parent() {
                    let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
                }
            }
            Err(e) => tracing::warn!(segment = %key, error = %e, "could not delete dead segment"),
        }
    }
}
