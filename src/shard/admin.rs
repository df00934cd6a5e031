//! Queue administration (`ringmail queue ...`): operations every core
//! runs on its own queue shard, merged by the core serving the control
//! socket.

use super::{Request, Shard};
use crate::queue::Key;
use crate::spool::{Outcome, QueueId};
use std::fmt::Write;
use std::rc::Rc;

/// The site named in `queue sites` for mail whose destination has not
/// been resolved since start (its site is known after the first MX lookup).
pub const NOT_TRIED: &str = "(not tried yet)";

/// A queue operation, run on every core.
#[derive(Debug, Clone)]
pub enum QueueOp {
    /// One block per queued message share.
    List,
    /// Everything deferred is due now.
    Flush,
    /// Drop the message (its queued recipients are tombstoned, no bounce).
    Delete(QueueId),
    /// Never dispatch until released.
    Hold(QueueId),
    /// Due now.
    Release(QueueId),
    /// Per site and source: queued, in flight, connections, rate,
    /// suspension, last reply (`ringmail queue sites`).
    Sites,
}

/// A control-socket line the admin commands do not understand, told to
/// the operator as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminParseError {
    #[error("unknown queue command {0:?}")]
    UnknownQueueCommand(String),
    #[error("{verb} needs a queue id")]
    MissingQueueId { verb: String },
    #[error("bad queue id {id:?}: {error}")]
    BadQueueId { id: String, error: crate::spool::ParseIdError },
    #[error("unknown sort {0:?} (date, sender or size)")]
    UnknownSort(String),
}

impl QueueOp {
    /// Parse a control-socket command line.
    pub fn parse(line: &str) -> Result<QueueOp, AdminParseError> {
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or("").to_ascii_lowercase();
        let id = |w: Option<&str>| -> Result<QueueId, AdminParseError> {
            let w = w.ok_or_else(|| AdminParseError::MissingQueueId { verb: verb.clone() })?;
            w.parse().map_err(|error| AdminParseError::BadQueueId { id: w.to_string(), error })
        };
        match verb.as_str() {
            "list" => Ok(QueueOp::List),
            "flush" => Ok(QueueOp::Flush),
            "delete" => Ok(QueueOp::Delete(id(words.next())?)),
            "hold" => Ok(QueueOp::Hold(id(words.next())?)),
            "release" => Ok(QueueOp::Release(id(words.next())?)),
            "sites" => Ok(QueueOp::Sites),
            other => Err(AdminParseError::UnknownQueueCommand(other.to_string())),
        }
    }
}

impl Shard {
    /// Run `op` on every core and merge the answers into text for the
    /// operator.
    pub async fn queue_admin(self: &Rc<Self>, op: QueueOp) -> String {
        if let QueueOp::Sites = op {
            return self.sites_report().await;
        }
        let mut out = String::new();
        let mut count = 0usize;
        for core in 0..self.cores {
            let op = op.clone();
            match self.ask(core, |answer| Request::Queue { op, answer }).await {
                Ok((text, n)) => {
                    out.push_str(&text);
                    count += n;
                }
                Err(e) => out.push_str(&format!("core {core}: {e}\n")),
            }
        }
        match op {
            QueueOp::Sites => {}
            QueueOp::List => out.push_str(&format!("-- {count} queued message share(s)\n")),
            QueueOp::Flush => out.push_str(&format!("flushed {count} deferred message share(s)\n")),
            QueueOp::Delete(id) | QueueOp::Hold(id) | QueueOp::Release(id) if count == 0 => {
                out.push_str(&format!("error: no queued message {id}\n"));
            }
            QueueOp::Delete(id) => out.push_str(&format!("deleted {id} ({count} share(s))\n")),
            QueueOp::Hold(id) => out.push_str(&format!("held {id} ({count} share(s))\n")),
            QueueOp::Release(id) => out.push_str(&format!("released {id} ({count} share(s))\n")),
        }
        out
    }

    /// `queue sites`: the site table, with what every core has queued for
    /// each site.
    async fn sites_report(self: &Rc<Self>) -> String {
        let mut queued: std::collections::HashMap<String, usize> = Default::default();
        let mut out = String::new();
        for core in 0..self.cores {
            match self.ask(core, |answer| Request::SiteQueues { answer }).await {
                Ok(sites) => {
                    for (site, n) in sites {
                        *queued.entry(site).or_default() += n;
                    }
                }
                Err(e) => out.push_str(&format!("core {core}: {e}\n")),
            }
        }
        let now = crate::clock::now_ms();
        out.push_str(&crate::outbound::sites::report(&self.outbound.sites.rows(now), &queued, now));
        out
    }

    /// Message shares queued on this core, by site (destinations not
    /// tried since start are under the name "(not tried yet)").
    pub(super) fn site_queues_local(&self) -> Vec<(String, usize)> {
        let mut by_site: std::collections::HashMap<String, usize> = Default::default();
        for (dest, n) in self.queue.borrow().queued_by_dest() {
            let site = self.outbound.limits_of(dest).map_or_else(|| NOT_TRIED.to_string(), |l| l.site.clone());
            *by_site.entry(site).or_default() += n;
        }
        by_site.into_iter().collect()
    }

    /// This core's part of `op`: (text, how many shares it touched).
    pub(super) fn queue_op_local(self: &Rc<Self>, op: QueueOp) -> (String, usize) {
        let now = crate::clock::now_ms();
        match op {
            QueueOp::Sites => (String::new(), 0),
            QueueOp::List => {
                let q = self.queue.borrow();
                let mut text = String::new();
                let mut items: Vec<_> = q.iter().collect();
                items.sort_by_key(|(_, m)| (m.arrived_ms, m.queue_id));
                for (_, m) in &items {
                    let state = if m.held {
                        "held".to_string()
                    } else {
                        match m.next_attempt_ms {
                            Some(t) => format!("deferred, next attempt in {}s", t.saturating_sub(now) / 1000),
                            None => "ready".to_string(),
                        }
                    };
                    let sender = if m.sender.is_empty() { "<>" } else { &m.sender };
                    let _ = writeln!(
                        text,
                        "{}  from={}  domain={}  age={}s  attempts={}  {}",
                        m.queue_id,
                        sender,
                        m.domain,
                        now.saturating_sub(m.arrived_ms) / 1000,
                        m.attempts,
                        state
                    );
                    for r in &m.recipients {
                        let _ = writeln!(text, "    to={}", r.address);
                    }
                    if let Some(e) = &m.last_error {
                        let _ = writeln!(text, "    last error: {e}");
                    }
                }
                (text, items.len())
            }
            QueueOp::Flush => (String::new(), self.queue.borrow_mut().flush(now)),
            QueueOp::Delete(id) => {
                let keys = self.queue.borrow().find(id);
                for key in &keys {
                    if let Some(m) = self.queue.borrow_mut().remove(*key) {
                        tracing::info!(queue_id = %m.queue_id, domain = %m.domain, "deleted by the operator");
                        self.settle_later(m.recipients.iter().map(|r| (m.at, r.index, Outcome::Deleted)).collect());
                    }
                }
                (String::new(), keys.len())
            }
            QueueOp::Hold(id) => self.update_each(id, |q, k| q.hold(k)),
            QueueOp::Release(id) => self.update_each(id, |q, k| q.release(k, now)),
        }
    }

    fn update_each(
        self: &Rc<Self>,
        id: QueueId,
        f: impl Fn(&mut crate::queue::QueueShard, Key) -> bool,
    ) -> (String, usize) {
        let keys = self.queue.borrow().find(id);
        let mut n = 0;
        for key in keys {
            if f(&mut self.queue.borrow_mut(), key) {
                self.record_deferral(key);
                n += 1;
            }
        }
        (String::new(), n)
    }
}

/// `mailbox list` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxSort {
    Date,
    Sender,
    Size,
}

impl std::str::FromStr for MailboxSort {
    type Err = AdminParseError;
    fn from_str(s: &str) -> Result<MailboxSort, AdminParseError> {
        match s.to_ascii_lowercase().as_str() {
            "date" => Ok(MailboxSort::Date),
            "sender" => Ok(MailboxSort::Sender),
            "size" => Ok(MailboxSort::Size),
            other => Err(AdminParseError::UnknownSort(other.to_string())),
        }
    }
}

impl Shard {
    /// `mailbox list USER [SORT]` and `mailbox delete USER UID`, from the
    /// control socket: asks the core owning the mailbox.
    pub async fn mailbox_admin(self: &Rc<Self>, args: &str) -> String {
        let words: Vec<&str> = args.split_whitespace().collect();
        let (verb, user) = match words.as_slice() {
            [verb, user, ..] => (verb.to_ascii_lowercase(), user.to_ascii_lowercase()),
            _ => return "error: usage: mailbox list ADDRESS [date|sender|size] | mailbox delete ADDRESS UID\n".into(),
        };
        if !self.users().contains(&user) {
            return format!("error: {user} is not a user\n");
        }
        let owner = super::owner::user_owner(&user, self.cores);
        match (verb.as_str(), words.get(2)) {
            ("list", sort) => {
                let sort = match sort.map_or(Ok(MailboxSort::Date), |s| s.parse()) {
                    Ok(s) => s,
                    Err(e) => return format!("error: {e}\n"),
                };
                let listed = self.ask(owner, |answer| Request::MailboxList { user: user.clone(), answer }).await;
                match listed {
                    Ok(entries) => self.render_mailbox(&user, entries, sort),
                    Err(e) => format!("error: {e}\n"),
                }
            }
            ("delete", Some(uid)) => {
                let (u, id) = (user.clone(), uid.to_string());
                match self.ask_result(owner, |answer| Request::MailboxDelete { user: u, uid: id, answer }).await {
                    Ok(()) => format!("deleted {uid} from {user}\n"),
                    Err(e) => format!("error: {e}\n"),
                }
            }
            _ => "error: usage: mailbox list ADDRESS [date|sender|size] | mailbox delete ADDRESS UID\n".into(),
        }
    }

    /// One line per message: uid, date, sender, size, subject.
    fn render_mailbox(&self, user: &str, mut entries: Vec<crate::mailbox::MailboxEntry>, sort: MailboxSort) -> String {
        match sort {
            MailboxSort::Date => entries.sort_by_key(|e| (e.received_at_ms, e.queue_id)),
            MailboxSort::Sender => {
                entries.sort_by(|a, b| a.sender.cmp(&b.sender).then(a.received_at_ms.cmp(&b.received_at_ms)))
            }
            MailboxSort::Size => entries.sort_by_key(|e| (std::cmp::Reverse(e.size), e.received_at_ms)),
        }
        let mut out = String::new();
        let total: u64 = entries.iter().map(|e| e.size).sum();
        for e in &entries {
            let subject = self
                .maps
                .borrow_mut()
                .record(self.resolve(e.at))
                .ok()
                .and_then(|v| v.message().ok().and_then(|m| crate::message::header(m.body, "Subject", 200)))
                .unwrap_or_default();
            let sender = if e.sender.is_empty() { "<>" } else { &e.sender };
            let _ = writeln!(
                out,
                "{}  {}  {}  {}  {}",
                e.uid(),
                crate::admin::format_time(e.received_at_ms),
                sender,
                e.size,
                subject
            );
        }
        let _ = writeln!(out, "-- {user}: {} message(s), {total} bytes", entries.len());
        out
    }
}
