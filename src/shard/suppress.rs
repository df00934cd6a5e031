//! The suppression list on the shard: recipients that hard-bounced are not
//! sent to again until their entry expires (`relay.suppression_expiry`).
//!
//! Ownership: an address's entry is written only by the core owning its
//! domain ([`owner::domain_owner`]) — the core that relays to that domain
//! and so sees its bounces first-hand. It appends a `Suppression` record to
//! its own spool, waits for its sync, and sends the change to every other
//! core, each of which keeps a full read-only copy ([`Suppressions`]): the
//! check at RCPT and at dispatch is then a local hash lookup, O(1), with no
//! cross-core hop on the hot path. The list is small next to the queue
//! (one entry per bad address), so a copy per core costs little.
//!
//! Durability: the record is live like a message with one recipient; an
//! entry ends (deleted, replaced, expired) by a tombstone on its record(s),
//! written by the core owning the record's spool dir (`Request::Settle`).
//! Recovery replays the live records; compaction copies live ones forward;
//! a backup copies the segments that hold them.

use super::{owner, Request, Shard, ShardError, ShardMsg};
use crate::clock::now_ms;
use crate::outbound::classify::BounceClass;
use crate::spool::{encode_suppression, Outcome, RecordKind, SpoolRef, SuppressionRecord};
use crate::suppression::{domain_of, key, Entry, Update};
use std::rc::Rc;
use std::time::Duration;

/// What an operator (or a bounce on another core) asks an address's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SuppressOp {
    /// Suppress `address` for `relay.suppression_expiry` (replacing an
    /// entry it has).
    Add { address: String, class: String, reason: String },
    /// End `address`'s suppression; answered `None` if it had none.
    Delete { address: String },
}

/// Longest reason kept with an entry.
const MAX_REASON: usize = 1024;

/// Expired entries ended per sweep, so one sweep never holds the core long.
const SWEEP_BATCH: usize = 256;

impl Shard {
    /// When `address` was suppressed, if it is now.
    pub fn suppressed_since(&self, address: &str) -> Option<u64> {
        self.suppressions.borrow().active(address, now_ms()).map(|e| e.since_ms)
    }

    /// A recipient hard-bounced with `class`: have its owner suppress it,
    /// in the background (the bounce does not wait for it).
    pub(crate) fn suppress_later(self: &Rc<Self>, address: &str, class: BounceClass, reason: &str) {
        let op = SuppressOp::Add { address: key(address), class: class.to_string(), reason: reason.to_string() };
        let me = self.clone();
        let busy = super::Background::new(self);
        glommio::spawn_local(async move {
            let _busy = busy;
            if let Err(e) = me.suppression_request(op).await {
                tracing::warn!(error = %e, "recipient not suppressed");
            }
        })
        .detach();
    }

    /// Do `op` on the core owning its address (directly when that is this
    /// one); the entry added, or the one deleted.
    pub async fn suppression_request(self: &Rc<Self>, op: SuppressOp) -> Result<Option<Entry>, ShardError> {
        let address = match &op {
            SuppressOp::Add { address, .. } | SuppressOp::Delete { address } => address.clone(),
        };
        let to = owner::domain_owner(domain_of(&address), self.cores);
        self.ask_result(to, |answer| Request::Suppression { op, answer }).await
    }

    /// `op` on this core, which owns its address.
    pub(super) async fn suppression_owned(self: &Rc<Self>, op: SuppressOp) -> Result<Option<Entry>, ShardError> {
        match op {
            SuppressOp::Add { address, class, reason } => self.suppress_owned(key(&address), class, reason).await,
            SuppressOp::Delete { address } => {
                let Some(entry) = self.suppressions.borrow_mut().remove(&address) else { return Ok(None) };
                self.end_records(&entry.records, Outcome::Deleted).await?;
                self.broadcast(Update::Remove { address: entry.address.clone(), since_ms: entry.since_ms }).await;
                tracing::info!(to = %entry.address, "suppression deleted by the operator");
                Ok(Some(entry))
            }
        }
    }

    async fn suppress_owned(
        self: &Rc<Self>,
        address: String,
        class: String,
        reason: String,
    ) -> Result<Option<Entry>, ShardError> {
        let now = now_ms();
        let previous = self.suppressions.borrow().get(&address).cloned();
        // Strictly after the entry it replaces, so every core's copy and a
        // recovery agree on which is the latest.
        let since_ms = previous.as_ref().map_or(now, |p| now.max(p.since_ms + 1));
        let expiry = self.config().relay.suppression_expiry.get().as_millis() as u64;
        let reason: String = reason.chars().take(MAX_REASON).collect();
        let record = SuppressionRecord {
            address: address.clone(),
            since_ms,
            until_ms: since_ms.saturating_add(expiry),
            class,
            reason,
            replaces: None,
        };
        // Addresses are at most a few hundred bytes and the reason is cut:
        // the record always encodes.
        let bytes = encode_suppression(&record).map_err(|_| ShardError::TooLong { what: "suppression entry" })?;
        let appended = self.append(RecordKind::Suppression, &[&bytes])?;
        let entry = Entry {
            address: address.clone(),
            since_ms,
            until_ms: record.until_ms,
            class: record.class,
            reason: record.reason,
            records: vec![appended.at],
        };
        // In force here at once: a second bounce in the meantime replaces
        // this entry instead of adding another.
        self.suppressions.borrow_mut().apply(Update::Set(entry.clone()));
        if let Err(e) = self.spool.durable(&appended.ticket).await {
            // Not stored: put back what was in force before.
            let mut list = self.suppressions.borrow_mut();
            list.apply(Update::Remove { address: address.clone(), since_ms });
            if let Some(previous) = previous {
                list.apply(Update::Set(previous));
            }
            return Err(e.into());
        }
        self.message_written(appended.at, 1);
        if let Some(previous) = previous {
            self.end_records(&previous.records, Outcome::Deleted).await?;
        }
        self.broadcast(Update::Set(entry.clone())).await;
        tracing::info!(
            to = %address, class = %entry.class, until = %crate::admin::format_time(entry.until_ms),
            reason = %entry.reason, "recipient suppressed"
        );
        Ok(Some(entry))
    }

    /// Tombstone the records of an entry that ended, on the cores owning
    /// their spool dirs, and wait until that is durable.
    async fn end_records(self: &Rc<Self>, records: &[SpoolRef], outcome: Outcome) -> Result<(), ShardError> {
        let mut by_owner: Vec<Vec<super::msg::Settled>> = vec![Vec::new(); self.cores];
        for &at in records {
            by_owner[owner::dir_owner(at.dir, self.cores)].push(super::msg::Settled::new(at, 0, outcome));
        }
        for (to, items) in by_owner.into_iter().enumerate().filter(|(_, v)| !v.is_empty()) {
            self.ask_result(to, |answer| Request::Settle { items, answer }).await?;
        }
        Ok(())
    }

    /// Tell every other core of a change (this core has applied it).
    async fn broadcast(self: &Rc<Self>, update: Update) {
        for to in (0..self.cores).filter(|&c| c != self.id) {
            if self.mesh.send(to, ShardMsg::Suppression(update.clone())).await.is_err() {
                tracing::warn!(core = self.id, to, "suppression update not delivered: peer gone");
            }
        }
    }

    /// Runs until the core stops: end the entries of this core's addresses
    /// that expired. (Lookups ignore an expired entry already; this frees
    /// its record and every core's copy.)
    pub async fn suppression_sweeper(self: Rc<Self>) {
        loop {
            let every = self.config().relay.suppression_expiry.get().min(Duration::from_secs(1));
            if !self.stop.sleep(every).await {
                return;
            }
            let now = now_ms();
            let cores = self.cores;
            let expired = self
                .suppressions
                .borrow()
                .expired(now, SWEEP_BATCH, |a| owner::domain_owner(domain_of(a), cores) == self.id);
            for address in expired {
                let Some(entry) = self.suppressions.borrow_mut().remove(&address) else { continue };
                if let Err(e) = self.end_records(&entry.records, Outcome::Expired).await {
                    tracing::warn!(to = %address, error = %e, "expired suppression not ended in the spool; retried after a restart");
                }
                self.broadcast(Update::Remove { address: address.clone(), since_ms: entry.since_ms }).await;
                tracing::info!(to = %address, class = %entry.class, "suppression expired");
            }
        }
    }

    /// `suppression list|add ADDRESS|delete ADDRESS`, from the control
    /// socket.
    pub async fn suppression_admin(
        self: &Rc<Self>,
        args: &str,
        format: crate::admin::report::Format,
    ) -> Result<String, super::admin::AdminError> {
        use super::admin::AdminError;
        const USAGE: &str = "suppression list | suppression add ADDRESS | suppression delete ADDRESS";
        let words: Vec<&str> = args.split_whitespace().collect();
        match words.as_slice() {
            ["list"] => Ok(crate::admin::report::emit(&self.suppression_listing(), format)),
            ["add", address] if address.contains('@') => {
                let op = SuppressOp::Add {
                    address: key(address),
                    class: "manual".into(),
                    reason: "added by the operator".into(),
                };
                match self.suppression_request(op).await? {
                    Some(e) => {
                        Ok(format!("suppressed {} until {}\n", e.address, crate::admin::format_time(e.until_ms)))
                    }
                    None => Err(AdminError::NotSuppressed(key(address))),
                }
            }
            ["delete", address] => {
                match self.suppression_request(SuppressOp::Delete { address: key(address) }).await? {
                    Some(e) => Ok(format!("deleted {}\n", e.address)),
                    None => Err(AdminError::NotSuppressed(key(address))),
                }
            }
            _ => Err(AdminError::Usage(USAGE)),
        }
    }

    /// The entries in force, by address.
    fn suppression_listing(&self) -> crate::admin::listing::SuppressionListing {
        let list = self.suppressions.borrow();
        let entries: Vec<_> = list
            .list(now_ms())
            .into_iter()
            .map(|e| crate::admin::listing::SuppressionEntry {
                address: e.address.clone(),
                since_ms: e.since_ms,
                until_ms: e.until_ms,
                class: e.class.clone(),
                reason: e.reason.clone(),
            })
            .collect();
        crate::admin::listing::SuppressionListing { count: entries.len(), entries }
    }
}
