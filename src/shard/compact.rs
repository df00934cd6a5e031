//! Spool compaction: a segment kept alive by a few live records is copied
//! forward and deleted, without stopping service.
//!
//! A segment is deleted only when nothing in it matters any more (see
//! `spool::ledger`). One old mailbox message nobody retrieves, or one
//! tombstone whose target still exists, keeps a whole segment on disk.
//! When the live messages of a segment fill less than
//! `spool.compact_below` percent of it, the core owning its directory:
//!
//! 1. appends, for each live message, one `Moved` record: the message
//!    payload verbatim, the old place, and the recipients already final.
//!    One record (one checksum) makes both facts true at once: the message
//!    is here now, and every recipient of the old copy is final. A crash
//!    finds either the old copy alone or the new one alone;
//! 2. appends again, as plain tombstones, every tombstone of the segment
//!    whose target lies in another segment that still exists (and the old
//!    places named by `Moved` records in it), so that deleting the segment
//!    cannot bring their targets back;
//! 3. from the moment of those appends, tombstones for an old place are
//!    written for its new place (`forward`), so a POP3 DELE or a relay
//!    delivery racing the move is never lost;
//! 4. once the records are durable, every core updates its mailbox and
//!    queue references (`Request::Relocate`), records the state of every
//!    queued share it moved (a deferral, a hold) again at the new place,
//!    and answers once those state records are durable; it keeps
//!    translating old places it may still be handed (a POP3 listing taken
//!    before the move) for `FORWARD_KEEP`;
//! 5. the segment is then dead to the ledger and reclaimed as usual.
//!
//! Recipient-state records are not copied by the move itself (they live
//! on the cores that own the recipients, not in the segment). A crash
//! between steps 1 and 4 leaves the states at the old place only, the old
//! segment still on disk: recovery carries them to the new place
//! (`spool::recovery`, `live_states`) and the restarted core records them
//! there ([`Shard::record_carried`]).

use super::{owner, Request, Shard};
use crate::spool::{
    copy_replacing, decode_moved, decode_tombstone, encode_moved_head, encode_tombstone, record::scan_segment, walk,
    Outcome, RecordKind, SegmentKey, SpoolRef, Tombstone,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long a core keeps translating a moved record's old place. Longer
/// than any POP3 session holds a listing in practice (idle timeout 10 min).
const FORWARD_KEEP: Duration = Duration::from_secs(6 * 3600);

/// Old place -> new place of moved records, forgotten after
/// [`FORWARD_KEEP`].
#[derive(Debug, Default)]
pub struct Forward {
    map: HashMap<SpoolRef, SpoolRef>,
    order: VecDeque<(Instant, SpoolRef)>,
    /// Moves appended but not durable yet: tombstones already go to the
    /// new place, reads still to the old one (the new bytes may not be
    /// on disk).
    pending: HashMap<SpoolRef, SpoolRef>,
}

impl Forward {
    fn insert_pending(&mut self, old: SpoolRef, new: SpoolRef) {
        self.pending.insert(old, new);
    }

    /// The move is durable (or abandoned, `keep` false).
    fn settle_pending(&mut self, old: SpoolRef, keep: bool, now: Instant) {
        if let Some(new) = self.pending.remove(&old) {
            if keep {
                self.insert(old, new, now);
            }
        }
    }

    /// Where a tombstone for `at` must go: its newest place, durable or not.
    fn resolve_for_tombstone(&self, mut at: SpoolRef) -> SpoolRef {
        for _ in 0..64 {
            match self.map.get(&at).or_else(|| self.pending.get(&at)) {
                Some(next) => at = *next,
                None => break,
            }
        }
        at
    }

    fn insert(&mut self, old: SpoolRef, new: SpoolRef, now: Instant) {
        self.map.insert(old, new);
        self.order.push_back((now, old));
        while self.order.front().is_some_and(|(t, _)| now.duration_since(*t) > FORWARD_KEEP) {
            if let Some((_, gone)) = self.order.pop_front() {
                self.map.remove(&gone);
            }
        }
    }

    /// Follow moves (a record may move more than once).
    fn resolve(&self, mut at: SpoolRef) -> SpoolRef {
        for _ in 0..64 {
            match self.map.get(&at) {
                Some(next) => at = *next,
                None => break,
            }
        }
        at
    }
}

/// What one compaction wrote, for the ledger once durable.
struct Written {
    /// (old place, new place, recipients) of messages and suppression
    /// entries.
    moves: Vec<(SpoolRef, SpoolRef, u16)>,
    /// How many of `moves` are messages.
    messages: usize,
    /// (where, target, recipient) of re-appended tombstones.
    tombstones: Vec<(SpoolRef, SpoolRef, u16)>,
}

impl Shard {
    /// Where the record once at `at` is now (itself unless compaction
    /// moved it), for reading and for mailbox and queue references.
    pub fn resolve(&self, at: SpoolRef) -> SpoolRef {
        self.forward.borrow().resolve(at)
    }

    /// Where a tombstone for the record once at `at` must be written.
    pub(super) fn resolve_for_tombstone(&self, at: SpoolRef) -> SpoolRef {
        self.forward.borrow().resolve_for_tombstone(at)
    }

    /// Another core moved records: point mailbox and queue entries at the
    /// new places and translate the old ones from now on. Returns once the
    /// states recorded at the new places are durable: whether they all are.
    pub(super) async fn apply_relocation(self: &Rc<Self>, moves: &[(SpoolRef, SpoolRef)]) -> bool {
        let now = Instant::now();
        {
            let mut forward = self.forward.borrow_mut();
            for &(old, new) in moves {
                forward.insert(old, new, now);
            }
        }
        let map: HashMap<SpoolRef, SpoolRef> = moves.iter().copied().collect();
        self.relocate_references(&map).await
    }

    /// Point this core's mailbox entries and queued messages at the new
    /// places. A queued message with state (a deferral, a hold) has it
    /// recorded again at its new place: the old records name the old
    /// place, which goes with its segment. Waits until those records are
    /// durable (the compaction reclaims the old segment after this, and
    /// only if every core's are): whether they all are.
    async fn relocate_references(self: &Rc<Self>, map: &HashMap<SpoolRef, SpoolRef>) -> bool {
        self.mailboxes.borrow_mut().relocate(map);
        self.suppressions.borrow_mut().relocate(map);
        let stateful = self.queue.borrow_mut().relocate(map);
        self.record_durably(stateful).await
    }

    /// Recovery carried the states of the messages at `places` over from
    /// the places a compaction moved them from (the server stopped before
    /// they were recorded here): record the states of those messages'
    /// shares now, durably (the old segments go after:
    /// `Shard::release_carried`). Whether they all are.
    pub(super) async fn record_carried(self: &Rc<Self>, places: &[SpoolRef]) -> bool {
        if places.is_empty() {
            return true;
        }
        let places: HashSet<SpoolRef> = places.iter().copied().collect();
        let stateful = self.queue.borrow().stateful_at(&places);
        if stateful.is_empty() {
            return true;
        }
        tracing::info!(
            core = self.id,
            shares = stateful.len(),
            "queue states found at a compacted message's old place recorded at its new place"
        );
        self.record_durably(stateful).await
    }

    /// Record the queue states of `keys` and wait until they are durable:
    /// whether they all are.
    async fn record_durably(self: &Rc<Self>, keys: Vec<crate::queue::Key>) -> bool {
        let mut last = None;
        for key in keys {
            match self.append_deferral(key) {
                Ok(ticket) => last = ticket.or(last),
                Err(e) => {
                    tracing::warn!(core = self.id, error = %e, "queue state of a moved message not recorded");
                    return false;
                }
            }
        }
        let Some(ticket) = last else { return true };
        match self.spool.durable(&ticket).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(core = self.id, error = %e, "queue states of moved messages not synced");
                false
            }
        }
    }

    /// Runs until the core stops: every `spool.compact_interval`, compact
    /// the emptiest eligible segment of the directories this core owns.
    pub async fn compactor(self: Rc<Self>) {
        loop {
            let interval = self.config().spool.compact_interval.get().max(Duration::from_millis(50));
            if !self.stop.sleep(interval).await {
                return;
            }
            // Every core must have adopted its recovered part first: a move
            // tells the others where their entries went, and an entry not
            // yet adopted would miss the news.
            let adopted = self.recovery.shared.adopted.load(std::sync::atomic::Ordering::Acquire);
            if self.backup_pins.get() > 0 || self.config().spool.compact_below == 0 || adopted < self.cores {
                continue;
            }
            let Some(key) = self.compaction_candidate().await else { continue };
            match self.compact(key).await {
                Ok(moved) => tracing::info!(core = self.id, segment = %key, moved, "spool segment compacted"),
                Err(e) => {
                    tracing::warn!(core = self.id, segment = %key, error = %e, "spool compaction failed; will retry")
                }
            }
        }
    }

    /// The segment (not a write segment) whose live messages fill the
    /// smallest share of it, if under `spool.compact_below` percent. Only
    /// the `SCAN_PER_RUN` segments with the fewest live messages are
    /// scanned, so a large spool costs no more per run than a small one.
    /// Segments without live messages are left alone: what keeps them is
    /// tombstones whose targets still exist, and they go when those do.
    async fn compaction_candidate(&self) -> Option<SegmentKey> {
        const SCAN_PER_RUN: usize = 8;
        let config = self.config();
        let root = config.spool_root();
        let threshold = config.spool.segment_size * u64::from(config.spool.compact_below) / 100;
        let write = self.spool.write_position().segment_key();
        let mut fewest: Vec<(u32, SegmentKey)> = {
            let ledger = self.ledger.borrow();
            walk::segments(&root)
                .ok()?
                .into_iter()
                .filter(|k| owner::dir_owner(k.dir, self.cores) == self.id)
                .filter(|k| !(k.dir == write.dir && k.seq >= write.seq))
                .map(|k| (ledger.live_in(k), k))
                .filter(|(live, _)| *live > 0)
                .collect()
        };
        fewest.sort_unstable();
        let mut best: Option<(u64, SegmentKey)> = None;
        for (_, key) in fewest.into_iter().take(SCAN_PER_RUN) {
            let Ok(Some((_map, scan))) = map_and_scan(&root, key).await else { continue };
            let ledger = self.ledger.borrow();
            let live: u64 = scan
                .records
                .iter()
                // Live suppression entries count as live bytes: a segment
                // full of them is not worth copying forward again and again.
                .filter(|r| matches!(r.kind, RecordKind::Message | RecordKind::Moved | RecordKind::Suppression))
                .filter(|r| ledger.is_live(SpoolRef { dir: key.dir, segment: key.seq, offset: r.offset }))
                .map(|r| r.payload.len() as u64)
                .sum();
            if live < threshold && best.is_none_or(|(b, _)| live < b) {
                best = Some((live, key));
            }
        }
        best.map(|(_, k)| k)
    }

    /// Copy `key`'s live records forward, relocate every reference, and
    /// let the segment go. Returns how many messages moved.
    async fn compact(self: &Rc<Self>, key: SegmentKey) -> Result<usize, CompactError> {
        let _busy = super::Background::new(self); // the drain waits for it
        let root = self.config().spool_root();
        let (map, scan) = map_and_scan(&root, key).await?.ok_or(CompactError::Gone(key))?;
        let undecodable = |at: SpoolRef| move |error| CompactError::Undecodable { at, error };
        let mut written = Written { moves: Vec::new(), messages: 0, tombstones: Vec::new() };
        let mut last = None;
        // Steps 1 to 3 without an await: no tombstone can slip in between.
        for rec in &scan.records {
            let at = SpoolRef { dir: key.dir, segment: key.seq, offset: rec.offset };
            let payload = &map[rec.payload.clone()];
            let message_bytes = match rec.kind {
                RecordKind::Message => payload,
                RecordKind::Moved => {
                    let m = decode_moved(payload).map_err(undecodable(at))?;
                    // Its old place must stay superseded once this segment goes.
                    for r in 0..m.message.recipients.len() as u16 {
                        self.copy_tombstone(key, m.old, r, Outcome::Deleted, &mut written, &mut last)?;
                    }
                    &payload[12 + 2 * m.done.len()..]
                }
                RecordKind::Tombstone => {
                    let t = decode_tombstone(payload).map_err(undecodable(at))?;
                    self.copy_tombstone(key, t.target, t.recipient, t.outcome, &mut written, &mut last)?;
                    continue;
                }
                RecordKind::Suppression => {
                    if self.ledger.borrow().is_live(at) {
                        self.copy_suppression(at, payload, &mut written, &mut last)?;
                    }
                    continue;
                }
                RecordKind::RecipientState | RecordKind::Checkpoint => continue,
            };
            if !self.ledger.borrow().is_live(at) {
                continue;
            }
            let count = crate::spool::decode_message(message_bytes).map_err(undecodable(at))?.recipients.len() as u16;
            let mut done = self.ledger.borrow().finals(at);
            for &(target, r) in self.finalizing.borrow().keys() {
                if target == at && !done.contains(&r) {
                    done.push(r);
                }
            }
            done.sort_unstable();
            let head = encode_moved_head(at, &done);
            let appended = self.append(RecordKind::Moved, &[&head, message_bytes])?;
            let new = appended.at;
            {
                let mut ledger = self.ledger.borrow_mut();
                ledger.message_written(new, count);
                for &d in &done {
                    ledger.tombstone_written(new, new, d);
                }
            }
            self.forward.borrow_mut().insert_pending(at, new);
            written.moves.push((at, new, count));
            written.messages += 1;
            last = Some(appended.ticket);
        }
        let synced = match &last {
            Some(ticket) => self.spool.durable(ticket).await,
            None => Ok(()),
        };
        {
            let now = Instant::now();
            let mut forward = self.forward.borrow_mut();
            for &(old, _, _) in &written.moves {
                forward.settle_pending(old, synced.is_ok(), now);
            }
        }
        // A failed sync: the old copies stay the truth (the ledger still
        // counts the new ones live, which only keeps a segment longer).
        synced?;
        #[cfg(debug_assertions)]
        if written.messages > 0 {
            crash_for_tests();
        }
        // Step 4: every core points at the new places before the old
        // segment can go.
        let moves: Vec<(SpoolRef, SpoolRef)> = written.moves.iter().map(|&(o, n, _)| (o, n)).collect();
        let mut relocated = Ok(());
        if !moves.is_empty() {
            let map: HashMap<SpoolRef, SpoolRef> = moves.iter().copied().collect();
            if !self.relocate_references(&map).await {
                relocated = Err(CompactError::StatesNotRecorded { core: self.id });
            }
            for core in (0..self.cores).filter(|&c| c != self.id) {
                let moves = moves.clone();
                match self.ask(core, |answer| Request::Relocate { moves, answer }).await {
                    Ok(true) => {}
                    Ok(false) => relocated = Err(CompactError::StatesNotRecorded { core }),
                    Err(e) => relocated = Err(CompactError::Relocation(e)),
                }
            }
        }
        // Step 5: the old copies and the segment's tombstones are
        // superseded on disk. Tell the ledger even if a core missed the
        // relocation (else a later run would move the old copy again), but
        // then keep the segment for that core's readers.
        let mut dead = Vec::new();
        {
            let mut ledger = self.ledger.borrow_mut();
            for &(old, new, count) in &written.moves {
                for r in 0..count {
                    dead.extend(ledger.tombstone_written(new, old, r));
                }
            }
            for &(at, target, r) in &written.tombstones {
                dead.extend(ledger.tombstone_written(at, target, r));
            }
            dead.extend(ledger.release_pins(key));
        }
        relocated?;
        self.reclaim(dead).await;
        Ok(written.moves.len())
    }

    /// Re-append the effect "recipient `r` of `target` is final", held by
    /// segment `key`, if `target` lies in another segment still on disk.
    fn copy_tombstone(
        self: &Rc<Self>,
        key: SegmentKey,
        target: SpoolRef,
        r: u16,
        outcome: Outcome,
        written: &mut Written,
        last: &mut Option<crate::spool::CommitTicket>,
    ) -> Result<(), CompactError> {
        let target_seg = target.segment_key();
        if target_seg == key || !self.segment_exists(target_seg) {
            return Ok(());
        }
        let t = Tombstone { target, recipient: r, outcome };
        let appended = self.append(RecordKind::Tombstone, &[&encode_tombstone(&t)])?;
        written.tombstones.push((appended.at, target, r));
        *last = Some(appended.ticket);
        Ok(())
    }

    /// Copy the live suppression entry at `at` forward; the copy names
    /// `at` as the record it replaces, so one checksum makes the copy live
    /// and the old place final (as a `Moved` record does for a message).
    /// Every core learns the new place with the message moves.
    fn copy_suppression(
        self: &Rc<Self>,
        at: SpoolRef,
        payload: &[u8],
        written: &mut Written,
        last: &mut Option<crate::spool::CommitTicket>,
    ) -> Result<(), CompactError> {
        let bytes = copy_replacing(payload, at).map_err(|error| CompactError::Undecodable { at, error })?;
        let appended = self.append(RecordKind::Suppression, &[&bytes])?;
        self.ledger.borrow_mut().message_written(appended.at, 1);
        self.forward.borrow_mut().insert_pending(at, appended.at);
        written.moves.push((at, appended.at, 1));
        *last = Some(appended.ticket);
        Ok(())
    }

    fn segment_exists(&self, key: SegmentKey) -> bool {
        crate::spool::layout::segment_path(&self.config().spool_root(), key).exists()
    }
}

/// Debug builds only: while the file `RINGMAIL_TEST_CRASH_AFTER_MOVE`
/// names exists, a compaction that moved messages kills the server (as
/// kill -9 would) once its `Moved` records are durable and before any core
/// has recorded the moved messages' states at their new places.
#[cfg(debug_assertions)]
fn crash_for_tests() {
    let armed = std::env::var_os("RINGMAIL_TEST_CRASH_AFTER_MOVE").filter(|p| std::path::Path::new(p).exists());
    if armed.is_some() {
        // SAFETY: kill(2) on our own pid has no memory effects.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}

/// Why a compaction run stopped (it is retried at the next interval).
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    #[error("segment {0} is gone")]
    Gone(SegmentKey),
    #[error("{at}: {error}")]
    Undecodable { at: SpoolRef, error: crate::spool::DecodeError },
    /// A core missed the relocation: the segment is kept for its readers.
    #[error("a core did not take the relocation: {0}")]
    Relocation(super::PeerGone),
    /// A core could not record a moved message's queue state at its new
    /// place: the segment is kept, so that a restart still finds it at the
    /// old one.
    #[error("core {core} could not record the queue states of moved messages")]
    StatesNotRecorded { core: usize },
}

/// Map and scan a segment on a blocking thread: the scan reads (and checks
/// the checksum of) every record, which page-faults the whole segment in
/// from disk; the executor then works on resident pages.
async fn map_and_scan(
    root: &std::path::Path,
    key: SegmentKey,
) -> Result<Option<(memmap2::Mmap, crate::spool::SegmentScan)>, crate::spool::SpoolError> {
    let root = root.to_path_buf();
    glommio::executor()
        .spawn_blocking(move || {
            let Some(map) = walk::map_segment(&root, key)? else { return Ok(None) };
            let scan = scan_segment(&map, key);
            Ok(Some((map, scan)))
        })
        .await
}
