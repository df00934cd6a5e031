//! The per-core world: everything one executor owns, and how cores talk.
//!
//! Each executor builds one [`Shard`] and shares it (`Rc`) with its tasks.
//! The shard owns this core's spool writer, its segment maps, its mailbox
//! indexes and relay queue shard. Other cores reach them only through
//! [`ShardMsg`]s; when this core owns the key the call is made directly
//! (the local fast path). No `Mutex`, no globals; `RefCell` borrows are never
//! held across an `.await`.

pub mod admin;
mod boot;
pub mod checks;
mod filter;
pub mod filter_live;
pub mod limits;
mod login;
pub use login::Login;
mod checkpoints;
mod compact;
mod control;
mod distribute;
mod envelopes;
pub(crate) mod intake;
mod mesh;
mod msg;
mod observe;
pub mod recovery;
mod retention;
mod stop;
mod tls_report;
pub use tls_report::FLUSH_EVERY_MS as TLS_REPORT_FLUSH_MS;
pub mod suppress;
pub use stop::{Background, Stop};
pub mod owner;

pub use boot::{run, BootError};
mod error;
pub use error::ShardError;
pub use mesh::{Mesh, PeerGone};
pub use msg::{Answer, Request, Settled, ShardMsg};

use crate::auth::UserDb;
use crate::config::Config;
use crate::mailbox::{LockToken, MailboxEntry, MailboxIndex};
use crate::queue::{QueueShard, QueuedMessage};
use crate::spool::{self, DirStore, Ledger, Outcome, QueueIdGen, SegmentKey, SegmentMaps, Spool, SpoolRef};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

/// One core's state. Created once per executor at start.
pub struct Shard {
    /// This executor's index (also the spool dir it writes).
    pub id: usize,
    pub cores: usize,
    /// The config as last loaded; replaced when SIGHUP reloads it. This
    /// core's own copy: the reference count that every `config()` call
    /// touches is not shared with other cores.
    config: RefCell<Arc<Config>>,
    config_updates: crossbeam_channel::Receiver<Arc<Config>>,
    /// The users file as last loaded; replaced when the watcher thread sends
    /// a newer one.
    users: RefCell<Arc<UserDb>>,
    users_updates: crossbeam_channel::Receiver<Arc<UserDb>>,
    /// Password-check outcomes remembered on this core (see
    /// [`crate::auth_cache`]; used by `check_login` only).
    auth_cache: RefCell<crate::auth_cache::AuthCache>,
    /// Appends to `spool/core-<id>`.
    pub spool: Spool<DirStore>,
    /// The segment the spool wrote last, to tell the ledger of rollovers.
    write_segment: Cell<u32>,
    /// Read-only maps of any core's segments, for POP3 and relay reads.
    pub maps: RefCell<SegmentMaps>,
    /// Liveness of records in the spool dirs this core owns.
    ledger: RefCell<Ledger>,
    pub queue_ids: RefCell<QueueIdGen>,
    pub mailboxes: RefCell<MailboxIndex>,
    pub queue: RefCell<QueueShard>,
    pub mesh: Mesh,
    next_session: Cell<u64>,
    /// The outbound stage's own state: resolver, client TLS, idle
    /// connections (see [`crate::outbound`]).
    pub outbound: crate::outbound::Outbound,
    /// The SPF/DKIM/DMARC/ARC checks of mail for local mailboxes (one
    /// thread for the server; see [`crate::sender_auth::verify`]).
    pub verifier: crate::sender_auth::Verifier,
    /// Client screening state shared by every core: the greylist and the
    /// DNS lists disabled after refusing us (see [`crate::screen`]).
    pub screening: std::sync::Arc<crate::screen::Shared>,
    /// Server TLS (STARTTLS, STLS, implicit TLS); replaced on SIGHUP.
    tls: RefCell<Arc<rustls::ServerConfig>>,
    tls_updates: crossbeam_channel::Receiver<Arc<rustls::ServerConfig>>,
    /// Connection, message-rate and login-failure limits of the whole
    /// server (the same table on every core).
    pub limits: Arc<limits::Limits>,
    /// Sessions open per core, to place new ones (the same table on every
    /// core; see [`crate::net::balance`]).
    pub balancer: Arc<crate::net::balance::Balancer>,
    /// This core's counters and histograms.
    pub metrics: crate::metrics::CoreMetrics,
    /// Raised when the server is stopping (SIGTERM): drain, then exit.
    pub stop: Stop,
    /// Background tasks the drain waits for (see [`Background`]).
    pub background: Cell<usize>,
    /// The spool has no room (disk below `spool.min_free`, or over
    /// `spool.max_size`): MAIL gets 452 4.3.1. Kept by `spool_watch`.
    pub spool_full: Cell<bool>,
    /// The spool's use, last measured (for `spool_full` and metrics).
    spool_measure: Cell<observe::SpoolMeasure>,
    /// Where compaction moved records: old place -> new place.
    forward: RefCell<compact::Forward>,
    /// Tombstones appended but not yet durable (so not in the ledger yet):
    /// compaction counts their recipients final too.
    finalizing: RefCell<std::collections::HashMap<(SpoolRef, u16), u32>>,
    /// Open backups pinning the spool: while > 0, dead segments are kept
    /// (in `held_reclaim`) instead of deleted.
    backup_pins: Cell<u32>,
    held_reclaim: RefCell<Vec<SegmentKey>>,
    /// This core's spool checkpoints (see `checkpoints`).
    checkpoints: checkpoints::Checkpoints,
    /// Delivery outcomes waiting to be settled, per owning core: the
    /// deliveries that finish in one turn of the executor go in one
    /// `Settle` (see `settle_later`).
    pub(crate) settling: RefCell<Vec<Vec<Settled>>>,
    /// Local users over their quota (told by their owners); RCPT to them
    /// gets 452 4.2.2.
    pub over_quota: RefCell<std::collections::HashSet<String>>,
    /// This core's copy of the suppression list (see [`suppress`]).
    pub suppressions: RefCell<crate::suppression::Suppressions>,
    /// How far this core has adopted the spool recovered behind it.
    pub recovery: recovery::Recovery,
}

impl Shard {
    /// The current config (picks up a SIGHUP reload). Sessions keep the
    /// settings they started with; new sessions and relay attempts get
    /// the new ones.
    pub fn config(&self) -> Arc<Config> {
        if let Some(newest) = self.config_updates.try_iter().last() {
            *self.config.borrow_mut() = Arc::new(Config::clone(&newest));
        }
        self.config.borrow().clone()
    }

    /// The current users database (picks up a reload if one arrived).
    pub fn users(&self) -> Arc<UserDb> {
        if let Some(newest) = self.users_updates.try_iter().last() {
            *self.users.borrow_mut() = newest;
        }
        self.users.borrow().clone()
    }

    /// The current server TLS config (picks up a SIGHUP reload).
    pub fn tls_config(&self) -> Arc<rustls::ServerConfig> {
        if let Some(newest) = self.tls_updates.try_iter().last() {
            *self.tls.borrow_mut() = newest;
        }
        self.tls.borrow().clone()
    }

    /// A token naming a new POP3 session on this core.
    pub fn new_lock_token(&self) -> LockToken {
        let n = self.next_session.get();
        self.next_session.set(n + 1);
        LockToken { core: self.id as u16, session: n }
    }

    /// Handle a message from another core. Must not await: work that waits
    /// is spawned.
    pub fn handle(self: &Rc<Self>, msg: ShardMsg) {
        match msg {
            ShardMsg::Deliver { user, entry } => self.deliver_owned(user, entry),
            ShardMsg::Quota { user, over } => {
                if over {
                    self.over_quota.borrow_mut().insert(user);
                } else {
                    self.over_quota.borrow_mut().remove(&user);
                }
            }
            ShardMsg::Enqueue(msg) => {
                let dest = msg.dest();
                self.queue.borrow_mut().enqueue(msg);
                self.kick(&dest);
            }
            ShardMsg::Lend(msgs) => self.take_loan(msgs),
            ShardMsg::Suppression(update) => {
                // Applied now for RCPT checks, and again over the
                // recovered list when it arrives.
                self.recovery.hold_suppression_update(&update);
                self.suppressions.borrow_mut().apply(update);
            }
            ShardMsg::SegmentGone { dir, segment } => self.maps.borrow_mut().forget(dir, segment),
            ShardMsg::Adopt(handoff) => crate::net::adopt(self, handoff),
            ShardMsg::Request(req) => {
                let me = self.clone();
                let busy = Background::new(self);
                glommio::spawn_local(async move {
                    let _busy = busy;
                    me.serve(req).await;
                })
                .detach();
            }
        }
    }

    /// Have core `to` do the request `make` builds around an answer
    /// channel, and wait for the answer: directly when `to` is this core.
    ///
    /// ```ignore
    /// let entries = shard.ask(owner, |answer| Request::MailboxList { user, answer }).await?;
    /// ```
    pub async fn ask<T>(self: &Rc<Self>, to: usize, make: impl FnOnce(Answer<T>) -> Request) -> Result<T, PeerGone> {
        let (answer, answered) = futures_channel::oneshot::channel();
        let req = make(answer);
        if to == self.id {
            // Boxed: serve(Commit) asks back into serve(Settle).
            Box::pin(self.serve(req)).await;
        } else {
            self.mesh.send(to, ShardMsg::Request(req)).await?;
        }
        answered.await.map_err(|_| PeerGone { to })
    }

    /// [`ask`](Shard::ask) for a request whose answer is itself a result:
    /// a peer gone and a failure on the peer come back as one error.
    pub async fn ask_result<T>(
        self: &Rc<Self>,
        to: usize,
        make: impl FnOnce(Answer<Result<T, ShardError>>) -> Request,
    ) -> Result<T, ShardError> {
        self.ask(to, make).await?
    }

    /// Hand a mailbox delivery to its owner.
    pub async fn deliver(self: &Rc<Self>, user: String, entry: MailboxEntry) {
        let to = owner::user_owner(&user, self.cores);
        if to == self.id {
            self.deliver_owned(user, entry);
        } else if self.mesh.send(to, ShardMsg::Deliver { user, entry }).await.is_err() {
            // The record is durable; recovery will deliver it at next start.
            tracing::warn!(core = self.id, to, "delivery hand-off failed: peer gone");
        }
    }

    /// Hand relay work to the domain's owner.
    pub async fn enqueue(self: &Rc<Self>, msg: QueuedMessage) {
        let to = owner::domain_owner(&msg.domain, self.cores);
        if to == self.id {
            let dest = msg.dest();
            self.queue.borrow_mut().enqueue(msg);
            self.kick(&dest);
        } else if self.mesh.send(to, ShardMsg::Enqueue(msg)).await.is_err() {
            tracing::warn!(core = self.id, to, "queue hand-off failed: peer gone");
        }
    }

    /// Do `req` and send its answer. (A send fails only when the asker
    /// is gone; there is no one left to tell.)
    async fn serve(self: &Rc<Self>, req: Request) {
        match req {
            Request::Lock { user, token, answer } => {
                let locked = if self.recovery.mailboxes_ready() {
                    self.mailboxes.borrow_mut().lock(&user, token)
                } else {
                    Err(crate::mailbox::MailboxError::Recovering(user))
                };
                let _ = answer.send(locked);
            }
            Request::Unlock { user, token, answer } => {
                self.mailboxes.borrow_mut().unlock(&user, token);
                let _ = answer.send(());
            }
            Request::Commit { user, token, deleted, answer } => {
                let _ = answer.send(self.commit(&user, token, deleted).await);
            }
            Request::Settle { items, answer } => {
                let _ = answer.send(self.settle(items).await);
            }
            Request::Queue { op, answer } => {
                let _ = answer.send(self.queue_op_local(op));
            }
            Request::SiteQueues { answer } => {
                let _ = answer.send(self.site_queues_local());
            }
            Request::Metrics { answer } => {
                let _ = answer.send(Box::new(self.metrics_snapshot()));
            }
            Request::Dashboard { answer } => {
                let _ = answer.send(Box::new(self.metrics.view(self.id, self.metrics_snapshot())));
            }
            Request::Pin { answer } => {
                self.backup_pins.set(self.backup_pins.get() + 1);
                let end = self.spool.write_position();
                if let Err(e) = self.spool.flush().await {
                    tracing::warn!(core = self.id, error = %e, "spool flush for a backup failed");
                }
                let _ = answer.send(end);
            }
            Request::Unpin { answer } => {
                self.backup_pins.set(self.backup_pins.get().saturating_sub(1));
                if self.backup_pins.get() == 0 {
                    let held = self.held_reclaim.take();
                    if !held.is_empty() {
                        let me = self.clone();
                        glommio::spawn_local(async move { me.reclaim(held).await }).detach();
                    }
                }
                let _ = answer.send(());
            }
            Request::TlsFlush { answer } => {
                self.tls_flush().await;
                let _ = answer.send(());
            }
            Request::Relocate { moves, answer } => {
                let recorded = self.apply_relocation(&moves).await;
                let _ = answer.send(recorded);
            }
            Request::Suppression { op, answer } => {
                let done = if self.recovery.is_done() {
                    self.suppression_owned(op).await
                } else {
                    Err(ShardError::Recovering)
                };
                let _ = answer.send(done);
            }
            Request::MailboxList { user, answer } => {
                let _ = answer.send(self.mailboxes.borrow().entries(&user).to_vec());
            }
            Request::MailboxDelete { user, uid, answer } => {
                let deleted = if self.recovery.mailboxes_ready() {
                    self.delete_by_uid(&user, &uid).await
                } else {
                    Err(ShardError::Recovering)
                };
                let _ = answer.send(deleted);
            }
        }
    }

    /// POP3 QUIT on a mailbox this core owns: make the deletions durable on
    /// the cores owning the records, then drop them from the index.
    async fn commit(
        self: &Rc<Self>,
        user: &str,
        token: LockToken,
        deleted: Vec<(SpoolRef, u16)>,
    ) -> Result<(), ShardError> {
        self.mailboxes.borrow().check_lock(user, token)?;
        // A session's listing may predate a compaction that moved messages.
        let deleted: Vec<(SpoolRef, u16)> = deleted.into_iter().map(|(at, r)| (self.resolve(at), r)).collect();
        let mut by_owner: Vec<Vec<Settled>> = vec![Vec::new(); self.cores];
        for &(at, rcpt) in &deleted {
            by_owner[owner::dir_owner(at.dir, self.cores)].push(Settled::new(at, rcpt, Outcome::Deleted));
        }
        for (to, items) in by_owner.into_iter().enumerate().filter(|(_, v)| !v.is_empty()) {
            self.ask_result(to, |answer| Request::Settle { items, answer }).await?;
        }
        self.mailboxes.borrow_mut().remove_and_unlock(user, token, &deleted);
        self.check_quota(user);
        Ok(())
    }

    /// Append tombstones for records in dirs this core owns, wait for their
    /// sync, then reclaim any segment that died.
    async fn settle(self: &Rc<Self>, items: Vec<Settled>) -> Result<(), ShardError> {
        let mut written = Vec::with_capacity(items.len());
        let mut last = None;
        for Settled { at, recipient, outcome, via } in items {
            // A message compaction moved is tombstoned at its new place.
            let target = self.resolve_for_tombstone(at);
            let t = spool::Tombstone { target, recipient, outcome };
            let appended = match via {
                Some(via) => self.append(spool::RecordKind::Tombstone, &[&spool::encode_tombstone_via(&t, &via)])?,
                None => self.append(spool::RecordKind::Tombstone, &[&spool::encode_tombstone(&t)])?,
            };
            // Final from now on for compaction, though the ledger hears of
            // it only once durable.
            *self.finalizing.borrow_mut().entry((target, recipient)).or_insert(0) += 1;
            written.push((appended.at, target, recipient));
            last = Some(appended.ticket);
        }
        let synced = match last {
            Some(ticket) => self.spool.durable(&ticket).await,
            None => Ok(()),
        };
        let mut dead = Vec::new();
        {
            let mut ledger = self.ledger.borrow_mut();
            let mut finalizing = self.finalizing.borrow_mut();
            for &(at, target, recipient) in &written {
                if let std::collections::hash_map::Entry::Occupied(mut e) = finalizing.entry((target, recipient)) {
                    *e.get_mut() -= 1;
                    if *e.get() == 0 {
                        e.remove();
                    }
                }
                if synced.is_ok() {
                    dead.extend(ledger.tombstone_written(at, target, recipient));
                }
            }
        }
        synced?;
        self.reclaim(dead).await;
        Ok(())
    }

    /// Append a record to this core's spool, keeping the ledger told of
    /// segment rollovers (the old write segment may become deletable).
    pub fn append(
        self: &Rc<Self>,
        kind: spool::RecordKind,
        parts: &[&[u8]],
    ) -> Result<spool::Appended, spool::SpoolError> {
        self.append_owned(kind, parts, Vec::new())
    }

    /// [`Shard::append`] of `parts` then `tail`, the tail given up to the
    /// spool so that a large one is written without a copy
    /// ([`spool::Spool::append_owned`]).
    pub fn append_owned(
        self: &Rc<Self>,
        kind: spool::RecordKind,
        parts: &[&[u8]],
        tail: Vec<u8>,
    ) -> Result<spool::Appended, spool::SpoolError> {
        let appended = self.spool.append_owned(kind, parts, tail)?;
        let seq = appended.at.segment;
        if seq != self.write_segment.get() {
            self.write_segment.set(seq);
            let dead = self.ledger.borrow_mut().set_write_segment(SegmentKey { dir: self.spool.dir(), seq });
            if !dead.is_empty() {
                let me = self.clone();
                glommio::spawn_local(async move { me.reclaim(dead).await }).detach();
            }
        }
        if kind == spool::RecordKind::RecipientState {
            self.ledger.borrow_mut().state_written(appended.at.segment_key());
        }
        Ok(appended)
    }

    /// Shrink the tables a drained backlog left mostly empty (queue,
    /// mailboxes, ledger); a no-op when they are in use. Run every few
    /// seconds by the relay timer.
    pub fn give_back_memory(&self) {
        self.queue.borrow_mut().shrink();
        self.mailboxes.borrow_mut().shrink();
        self.ledger.borrow_mut().shrink();
    }

    /// Note a durable message record in the ledger.
    pub fn message_written(&self, at: SpoolRef, recipients: u16) {
        self.ledger.borrow_mut().message_written(at, recipients);
    }

    /// Delete dead segments, and tell every core to drop its maps of them.
    async fn reclaim(self: &Rc<Self>, mut dead: Vec<SegmentKey>) {
        if self.backup_pins.get() > 0 || !self.recovery.is_done() {
            // A backup is copying the spool as it was, or recovery is still
            // reading it: keep everything (adoption releases what waited).
            self.held_reclaim.borrow_mut().append(&mut dead);
            return;
        }
        self.recovery.keep_carried(&mut dead);
        while let Some(key) = dead.pop() {
            // The same segment can be offered twice (compaction's last
            // tombstone and its released pins both free it).
            if !self.ledger.borrow().tracks(key) || dead.contains(&key) {
                continue;
            }
            let removed = if key.dir == self.spool.dir() {
                self.spool.remove_segment(key.seq).await.map_err(ShardError::from)
            } else {
                // A dir adopted from a run with more cores: nobody writes it.
                remove_adopted_segment(&self.config().spool_root(), key)
            };
            if let Err(e) = removed {
                tracing::warn!(core = self.id, segment = %key, error = %e, "could not delete dead segment");
                continue;
            }
            tracing::debug!(core = self.id, segment = %key, "reclaimed segment");
            self.maps.borrow_mut().forget(key.dir, key.seq);
            for to in (0..self.cores).filter(|&c| c != self.id) {
                let _ = self.mesh.send(to, ShardMsg::SegmentGone { dir: key.dir, segment: key.seq }).await;
            }
            dead.extend(self.ledger.borrow_mut().segment_removed(key));
            self.recovery.keep_carried(&mut dead);
        }
    }
}

/// Delete a segment of a spool dir no executor writes (left by a run with
/// more cores), durably.
fn remove_adopted_segment(root: &std::path::Path, key: SegmentKey) -> Result<(), ShardError> {
    let path = spool::layout::segment_path(root, key);
    let failed = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |error| ShardError::Remove { path, error: std::sync::Arc::new(error) }
    };
    std::fs::remove_file(&path).map_err(failed(&path))?;
    if let Some(dir) = path.parent() {
        crate::files::sync_dir(dir).map_err(failed(dir))?;
    }
    Ok(())
}
