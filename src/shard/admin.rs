//! Queue and mailbox administration (`ringmail queue ...`, `ringmail
//! mailbox ...`): operations every core runs on its own queue shard (or
//! the owner core on its mailbox), merged by the core serving the control
//! socket into a [`Report`](crate::admin::report::Report) or an error.

use super::{PeerGone, Request, Settled, Shard, ShardError};
use crate::admin::listing::{MailboxListing, MailboxMessage};
use crate::admin::queue_list::{ListFilter, ListParseError, QueueEntry, QueueList, QueueState, QueuedRecipient};
use crate::admin::report::{emit, Format};
use crate::queue::Key;
use crate::spool::{Outcome, QueueId};
use std::rc::Rc;

/// The site named in `queue sites` for mail whose destination has not
/// been resolved since start (its site is known after the first MX lookup).
pub const NOT_TRIED: &str = "(not tried yet)";

/// A queue operation, run on every core.
#[derive(Debug, Clone)]
pub enum QueueOp {
    /// The queued message shares the filter admits.
    List(ListFilter),
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
    #[error(transparent)]
    List(#[from] ListParseError),
}

/// Why an admin command was refused or failed; the control socket answers
/// it as `error: ...` and the CLI prints it on stderr and exits non-zero.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Parse(#[from] AdminParseError),
    /// A core did not answer (it is stopping): a partial answer would
    /// look complete, so there is none.
    #[error(transparent)]
    PeerGone(#[from] PeerGone),
    #[error("no queued message {0}")]
    NoQueuedMessage(QueueId),
    #[error("{0} is not a user")]
    NotUser(String),
    #[error("{0} is not suppressed")]
    NotSuppressed(String),
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error("usage: {0}")]
    Usage(&'static str),
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
}

/// The most walks over the cores' queues one queue command makes while
/// lent mail moves between them (see `Shard::queue_parts`).
const WALKS: usize = 8;

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
            "list" => Ok(QueueOp::List(ListFilter::parse(words)?)),
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
    /// Run `op` on every core and merge the answers: the report for
    /// `list` and `sites` in `format`, one line of text for the actions.
    pub async fn queue_admin(self: &Rc<Self>, op: QueueOp, format: Format) -> Result<String, AdminError> {
        if let QueueOp::Sites = op {
            return Ok(emit(&self.sites_report().await?, format));
        }
        let parts = self.queue_parts(&op).await?;
        let count: usize = parts.iter().map(|(_, n)| n).sum();
        Ok(match op {
            QueueOp::Sites => String::new(),
            QueueOp::List(filter) => emit(&QueueList::merge(parts, filter.limit), format),
            QueueOp::Flush => format!("flushed {count} deferred message share(s)\n"),
            QueueOp::Delete(id) | QueueOp::Hold(id) | QueueOp::Release(id) if count == 0 => {
                return Err(AdminError::NoQueuedMessage(id));
            }
            QueueOp::Delete(id) => format!("deleted {id} ({count} share(s))\n"),
            QueueOp::Hold(id) => format!("held {id} ({count} share(s))\n"),
            QueueOp::Release(id) => format!("released {id} ({count} share(s))\n"),
        })
    }

    /// Run a queue action (flush, hold, release, delete) on every core:
    /// the message shares it touched. Hold, release and delete of an id
    /// no core has queued are [`AdminError::NoQueuedMessage`]. The HTTP
    /// API answers this count as JSON where the CLI prints a line.
    pub async fn queue_action(self: &Rc<Self>, op: QueueOp) -> Result<usize, AdminError> {
        let count: usize = self.queue_parts(&op).await?.iter().map(|(_, n)| n).sum();
        match op {
            QueueOp::Delete(id) | QueueOp::Hold(id) | QueueOp::Release(id) if count == 0 => {
                Err(AdminError::NoQueuedMessage(id))
            }
            _ => Ok(count),
        }
    }

    /// Every core's part of `op`, in core order.
    ///
    /// Lent mail moves between cores (`outbound::lend`): a walk over the
    /// cores while a loan was made or on its way may miss a share or see it
    /// twice. For `delete` and `hold` that would leave mail to be sent
    /// ("no queued message" for mail then delivered), so such a walk is
    /// done again, up to [`WALKS`] times: delete counts what each walk
    /// deleted, hold what the last walk found (held ones included). Lent
    /// mail is ready mail, never held, so `release` and `flush` have
    /// nothing in transit; `list` is a snapshot and is walked once.
    async fn queue_parts(self: &Rc<Self>, op: &QueueOp) -> Result<Vec<(Vec<QueueEntry>, usize)>, AdminError> {
        let loads = self.outbound.loads();
        let mut deleted_before = 0;
        let mut walk = 1;
        loop {
            let start = loads.walk_start();
            let mut parts = Vec::with_capacity(self.cores);
            for core in 0..self.cores {
                let op = op.clone();
                parts.push(self.ask(core, |answer| Request::Queue { op, answer }).await?);
            }
            let again = matches!(op, QueueOp::Delete(_) | QueueOp::Hold(_)) && walk < WALKS;
            if !again || loads.settled_since(start) {
                if let (QueueOp::Delete(_), Some(first)) = (op, parts.first_mut()) {
                    first.1 += deleted_before;
                }
                return Ok(parts);
            }
            if let QueueOp::Delete(_) = op {
                deleted_before += parts.iter().map(|(_, n)| n).sum::<usize>();
            }
            walk += 1;
            // Until the loan on its way has arrived.
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// `queue sites`: the site table, with what every core has queued for
    /// each site.
    async fn sites_report(self: &Rc<Self>) -> Result<crate::outbound::sites::SitesReport, AdminError> {
        let mut queued: std::collections::HashMap<String, usize> = Default::default();
        for core in 0..self.cores {
            for (site, n) in self.ask(core, |answer| Request::SiteQueues { answer }).await? {
                *queued.entry(site).or_default() += n;
            }
        }
        let now = crate::clock::now_ms();
        Ok(crate::outbound::sites::report(&self.outbound.sites.rows(now), &queued))
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

    /// This core's part of `op`: the entries `list` shows (at most its
    /// limit, the oldest) and how many shares it matched or touched.
    pub(super) fn queue_op_local(self: &Rc<Self>, op: QueueOp) -> (Vec<QueueEntry>, usize) {
        let now = crate::clock::now_ms();
        match op {
            QueueOp::Sites => (Vec::new(), 0),
            QueueOp::List(filter) => {
                let (mut entries, matched) = self.queue_entries(&filter, now);
                crate::admin::queue_list::sort_oldest_first(&mut entries);
                (entries, matched)
            }
            QueueOp::Flush => {
                let n = self.queue.borrow_mut().flush(now);
                // Due now: sent now, not at the relay timer's next tick.
                self.promote_due_now();
                (Vec::new(), n)
            }
            QueueOp::Delete(id) => {
                let keys = self.queue.borrow().find(id);
                for key in &keys {
                    if let Some(m) = self.queue.borrow_mut().remove(*key, &crate::queue::NoEnvelopes) {
                        tracing::info!(queue_id = %m.queue_id, domain = %m.domain, "deleted by the operator");
                        let items =
                            m.recipients.iter().map(|r| Settled::new(m.at, r.index, Outcome::Deleted)).collect();
                        self.settle_later(items);
                    }
                }
                (Vec::new(), keys.len())
            }
            QueueOp::Hold(id) => self.update_each(id, |q, k| q.hold(k)),
            QueueOp::Release(id) => {
                let out = self.update_each(id, |q, k| q.release(k, now));
                self.promote_due_now();
                out
            }
        }
    }

    /// The shares on this core that `filter` admits, the oldest first and
    /// at most its limit, and how many it admits. Envelopes are read from
    /// the spool only for the shares shown.
    fn queue_entries(&self, filter: &ListFilter, now: u64) -> (Vec<QueueEntry>, usize) {
        let config = self.config();
        let q = self.queue.borrow();
        let state_of = |held: bool, next: Option<u64>| match (held, next) {
            (true, _) => QueueState::Held,
            (false, Some(_)) => QueueState::Deferred,
            (false, None) => QueueState::Active,
        };
        let admitted = q
            .listing()
            .filter(|l| filter.admits(&l.dest.domain, state_of(l.held, l.next_attempt_ms), l.arrived_ms, now));
        let (shown, matched) = smallest(admitted, filter.limit.unwrap_or(usize::MAX), |a, b| {
            (a.arrived_ms, a.queue_id, &a.dest.domain).cmp(&(b.arrived_ms, b.queue_id, &b.dest.domain))
        });
        let envelopes = self.envelopes();
        let entries = shown
            .iter()
            .filter_map(|l| q.message(l.key, &envelopes))
            .map(|m| {
                let state = state_of(m.held, m.next_attempt_ms);
                QueueEntry {
                    queue_id: m.queue_id.to_string(),
                    domain: m.domain.clone(),
                    pool: m.pool.and_then(|p| config.relay.pool.get(usize::from(p))).map(|p| p.name.clone()),
                    site: self.outbound.limits_of(&m.dest()).map(|l| l.site.clone()),
                    state,
                    arrived_ms: m.arrived_ms,
                    age_s: now.saturating_sub(m.arrived_ms) / 1000,
                    attempts: m.attempts,
                    next_attempt_ms: if state == QueueState::Deferred { m.next_attempt_ms } else { None },
                    last_reply: m.last_error.clone(),
                    recipients: m
                        .recipients
                        .iter()
                        .map(|r| QueuedRecipient { address: r.address.clone(), state })
                        .collect(),
                    sender: m.sender,
                }
            })
            .collect();
        (entries, matched)
    }

    fn update_each(
        self: &Rc<Self>,
        id: QueueId,
        f: impl Fn(&mut crate::queue::QueueShard, Key) -> bool,
    ) -> (Vec<QueueEntry>, usize) {
        let keys = self.queue.borrow().find(id);
        let mut n = 0;
        for key in keys {
            if f(&mut self.queue.borrow_mut(), key) {
                self.record_deferral(key);
                n += 1;
            }
        }
        (Vec::new(), n)
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

/// What `mailbox` takes.
const MAILBOX_USAGE: &str = "mailbox list ADDRESS [date|sender|size] | mailbox delete ADDRESS UID";

impl Shard {
    /// `mailbox list USER [SORT]` and `mailbox delete USER UID`, from the
    /// control socket: asks the core owning the mailbox.
    pub async fn mailbox_admin(self: &Rc<Self>, args: &str, format: Format) -> Result<String, AdminError> {
        let words: Vec<&str> = args.split_whitespace().collect();
        let (verb, user) = match words.as_slice() {
            [verb, user, ..] => (verb.to_ascii_lowercase(), user.to_ascii_lowercase()),
            _ => return Err(AdminError::Usage(MAILBOX_USAGE)),
        };
        if !self.users().contains(&user) {
            return Err(AdminError::NotUser(user));
        }
        let owner = super::owner::user_owner(&user, self.cores);
        match (verb.as_str(), words.get(2)) {
            ("list", sort) => {
                let sort = sort.map_or(Ok(MailboxSort::Date), |s| s.parse())?;
                let entries = self.ask(owner, |answer| Request::MailboxList { user: user.clone(), answer }).await?;
                Ok(emit(&self.mailbox_listing(&user, entries, sort), format))
            }
            ("delete", Some(uid)) => {
                let (u, id) = (user.clone(), uid.to_string());
                self.ask_result(owner, |answer| Request::MailboxDelete { user: u, uid: id, answer }).await?;
                Ok(format!("deleted {uid} from {user}\n"))
            }
            _ => Err(AdminError::Usage(MAILBOX_USAGE)),
        }
    }

    /// The mailbox in `sort` order, with each message's subject.
    fn mailbox_listing(
        &self,
        user: &str,
        entries: Vec<crate::mailbox::MailboxEntry>,
        sort: MailboxSort,
    ) -> MailboxListing {
        // Sender and subject are in each message's record (the index keeps
        // neither).
        let mut messages: Vec<(&crate::mailbox::MailboxEntry, MailboxMessage)> = entries
            .iter()
            .map(|e| {
                let mut maps = self.maps.borrow_mut();
                let view = maps.record(self.resolve(e.at)).ok();
                let record = view.as_ref().and_then(|v| v.message().ok());
                let message = MailboxMessage {
                    uid: e.uid(),
                    queue_id: e.queue_id.to_string(),
                    received_ms: e.received_at_ms,
                    sender: record.as_ref().map(|m| m.sender.clone()).unwrap_or_default(),
                    size: e.size,
                    subject: record
                        .as_ref()
                        .and_then(|m| crate::message::header(m.body, "Subject", 200))
                        .unwrap_or_default(),
                };
                (e, message)
            })
            .collect();
        match sort {
            MailboxSort::Date => messages.sort_by_key(|(e, _)| (e.received_at_ms, e.queue_id)),
            MailboxSort::Sender => messages
                .sort_by(|(a, am), (b, bm)| am.sender.cmp(&bm.sender).then(a.received_at_ms.cmp(&b.received_at_ms))),
            MailboxSort::Size => messages.sort_by_key(|(e, _)| (std::cmp::Reverse(e.size), e.received_at_ms)),
        }
        let messages: Vec<MailboxMessage> = messages.into_iter().map(|(_, m)| m).collect();
        MailboxListing {
            user: user.to_string(),
            count: messages.len(),
            bytes: entries.iter().map(|e| e.size).sum(),
            messages,
        }
    }
}

/// The `limit` smallest of `items` by `order`, sorted, and how many items
/// there were. Holds at most 2 × `limit` at a time (a `queue list --limit
/// 20` over a million queued shares must not collect and sort them all on
/// a serving core): when the buffer fills, the smallest `limit` are
/// selected in linear time and the rest dropped.
fn smallest<T>(
    items: impl Iterator<Item = T>,
    limit: usize,
    mut order: impl FnMut(&T, &T) -> std::cmp::Ordering,
) -> (Vec<T>, usize) {
    let mut kept: Vec<T> = Vec::new();
    let mut count = 0;
    for item in items {
        count += 1;
        kept.push(item);
        if kept.len() >= limit.saturating_mul(2).max(1024) {
            if limit == 0 {
                kept.clear();
            } else {
                kept.select_nth_unstable_by(limit - 1, &mut order);
                kept.truncate(limit);
            }
        }
    }
    kept.sort_by(&mut order);
    kept.truncate(limit);
    (kept, count)
}

#[cfg(test)]
mod tests {
    use super::smallest;

    #[test]
    fn smallest_is_the_head_of_the_full_sort_whatever_the_limit() {
        // A scrambled sequence with ties, long enough to pass the buffer's
        // selection step several times.
        let items: Vec<u32> = (0..5000u32).map(|i| i.wrapping_mul(2_654_435_761) % 1500).collect();
        let mut sorted = items.clone();
        sorted.sort();
        for limit in [0, 1, 7, 511, 512, 513, 1500, 4999, 5000, 9000, usize::MAX] {
            let (got, count) = smallest(items.iter().copied(), limit, |a, b| a.cmp(b));
            assert_eq!(count, items.len());
            assert_eq!(got, sorted[..limit.min(sorted.len())], "limit {limit}");
        }
    }
}
