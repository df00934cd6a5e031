//! Mailbox retention and quota, enforced by the core owning each mailbox
//! (`[retention]` in the config): the periodic sweep of mail older than
//! `max_age`, the over-quota state every core consults at RCPT, and the
//! operator's `mailbox delete`.

use super::{Shard, ShardError, ShardMsg};
use crate::mailbox::LockToken;
use crate::mailbox::MailboxEntry;
use std::rc::Rc;
use std::time::Duration;

impl Shard {
    /// Put a delivered message into a mailbox this core owns.
    pub(super) fn deliver_owned(self: &Rc<Self>, user: String, entry: MailboxEntry) {
        self.mailboxes.borrow_mut().deliver(&user, entry);
        self.check_quota(&user);
    }

    /// Tell every core when `user` (owned here) crossed its quota.
    pub(super) fn check_quota(self: &Rc<Self>, user: &str) {
        let user = user.to_ascii_lowercase();
        let limit = self.config().retention.for_user(&user).max_mailbox_size;
        let over = limit.is_some_and(|max| self.mailboxes.borrow().size(&user) >= max);
        if over == self.over_quota.borrow().contains(&user) {
            return;
        }
        tracing::info!(core = self.id, user = %user, over, limit = ?limit, "mailbox quota state changed");
        self.broadcast_quota(user, over);
    }

    /// At start: the quota state of every mailbox this core owns.
    pub(super) fn check_all_quotas(self: &Rc<Self>) {
        let users: Vec<String> = self.mailboxes.borrow().sizes().map(|(u, _)| u.to_string()).collect();
        for user in users {
            self.check_quota(&user);
        }
    }

    fn broadcast_quota(self: &Rc<Self>, user: String, over: bool) {
        if over {
            self.over_quota.borrow_mut().insert(user.clone());
        } else {
            self.over_quota.borrow_mut().remove(&user);
        }
        let me = self.clone();
        glommio::spawn_local(async move {
            for to in (0..me.cores).filter(|&c| c != me.id) {
                let _ = me.mesh.send(to, ShardMsg::Quota { user: user.clone(), over }).await;
            }
        })
        .detach();
    }

    /// Runs until the core stops: every `retention.check_interval`, delete
    /// mail older than its user's `max_age` from unlocked mailboxes.
    pub async fn retention_sweeper(self: Rc<Self>) {
        loop {
            let interval = self.config().retention.check_interval.get().max(Duration::from_millis(100));
            if !self.stop.sleep(interval).await {
                return;
            }
            let config = self.config();
            if !config.retention.any(|p| p.max_age.is_some()) {
                continue;
            }
            let now = crate::clock::now_ms();
            let expired = self.mailboxes.borrow().expired(|user, e| {
                config
                    .retention
                    .for_user(user)
                    .max_age
                    .is_some_and(|age| now.saturating_sub(e.received_at_ms) > age.as_millis() as u64)
            });
            for (user, entries) in expired {
                let n = entries.len();
                match self.delete_entries(&user, &entries).await {
                    Ok(()) => {
                        tracing::info!(core = self.id, user = %user, deleted = n, reason = "retention.max_age", "mailbox messages expired")
                    }
                    Err(e) => {
                        tracing::warn!(core = self.id, user = %user, error = %e, "retention sweep could not delete; will retry")
                    }
                }
            }
        }
    }

    /// `mailbox delete USER UID` on the owning core.
    pub(super) async fn delete_by_uid(self: &Rc<Self>, user: &str, uid: &str) -> Result<(), ShardError> {
        let entry = self.mailboxes.borrow().entries(user).iter().find(|e| e.uid() == uid).cloned();
        let Some(entry) = entry else {
            return Err(ShardError::NoSuchMessage { user: user.to_string(), uid: uid.to_string() });
        };
        self.delete_entries(user, std::slice::from_ref(&entry)).await?;
        tracing::info!(core = self.id, user = %user, uid, queue_id = %entry.queue_id, "deleted by the operator");
        Ok(())
    }

    /// Delete messages of an unlocked mailbox durably: lock it (a POP3
    /// session holding it wins), tombstone, drop from the index, unlock.
    async fn delete_entries(self: &Rc<Self>, user: &str, entries: &[MailboxEntry]) -> Result<(), ShardError> {
        let token: LockToken = self.new_lock_token();
        self.mailboxes.borrow_mut().lock(user, token)?;
        let gone = entries.iter().map(|e| (e.at, e.recipient)).collect();
        let result = self.commit(user, token, gone).await;
        if result.is_err() {
            self.mailboxes.borrow_mut().unlock(user, token);
        }
        result
    }
}
