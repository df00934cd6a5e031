//! The typed messages cores send each other.
//!
//! Everything that crosses a core boundary is one of these: deliveries to a
//! mailbox owner, relay work for a domain owner, and requests (lock a
//! mailbox, commit deletions, write tombstones) that carry the typed
//! channel for their answer. They carry [`SpoolRef`]s, never message
//! bodies.

use super::ShardError;
use crate::mailbox::{LockToken, MailboxEntry, MailboxError};
use crate::queue::QueuedMessage;
use crate::spool::{Outcome, SpoolRef};
use futures_channel::oneshot;

/// Where the answer to one [`Request`] goes. The serving core sends
/// exactly one value; if it drops the sender unsent (it is stopping), the
/// asker gets [`PeerGone`](super::PeerGone). Each request names its own
/// answer type, so a caller never meets an answer meant for another
/// request.
pub type Answer<T> = oneshot::Sender<T>;

/// A message on the shard mesh.
#[derive(Debug)]
pub enum ShardMsg {
    /// One-way: a durable message for a user this core owns.
    Deliver { user: String, entry: MailboxEntry },
    /// One-way: durable relay work for a domain this core owns.
    Enqueue(QueuedMessage),
    /// One-way: ready shares of one hot destination, lent by its owner
    /// core to relay here (see `outbound::lend`).
    Lend(Vec<QueuedMessage>),
    /// One-way, to every core: `user`'s mailbox went over (or back under)
    /// its quota; RCPT answers 452 4.2.2 while over.
    Quota { user: String, over: bool },
    /// One-way, from an address's owner to every other core: a change of
    /// the suppression list (see `shard::suppress`).
    Suppression(crate::suppression::Update),
    /// One-way: a spool segment was deleted; drop any map of it.
    SegmentGone { dir: u16, segment: u32 },
    /// Work for this core; it answers through the request's [`Answer`].
    Request(Request),
    /// One-way: a client connection to serve here, handed over by the core
    /// that accepted it (see `net::balance`).
    Adopt(crate::net::Handoff),
}

/// One recipient made final: a tombstone to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The message record (possibly moved since; resolved by the owner).
    pub at: SpoolRef,
    pub recipient: u16,
    pub outcome: Outcome,
    /// The host that took it (`Delivered` by relay), kept for `trace`.
    pub via: Option<std::sync::Arc<str>>,
}

impl Settled {
    /// A final outcome without a host.
    pub fn new(at: SpoolRef, recipient: u16, outcome: Outcome) -> Settled {
        Settled { at, recipient, outcome, via: None }
    }
}

/// Work a core asks its owner to do, each with the channel for its answer.
#[derive(Debug)]
pub enum Request {
    /// Lock a mailbox for a POP3 session and return its listing.
    Lock { user: String, token: LockToken, answer: Answer<Result<Vec<MailboxEntry>, MailboxError>> },
    /// Release a mailbox lock without deleting anything.
    Unlock { user: String, token: LockToken, answer: Answer<()> },
    /// POP3 QUIT: delete these messages durably, then unlock.
    Commit { user: String, token: LockToken, deleted: Vec<(SpoolRef, u16)>, answer: Answer<Result<(), ShardError>> },
    /// Append tombstones for records in a spool dir this core owns and wait
    /// for their sync.
    Settle { items: Vec<Settled>, answer: Answer<Result<(), ShardError>> },
    /// An operator's queue command, for this core's shard: the entries
    /// `queue list` shows and how many message shares it matched or touched.
    Queue { op: super::admin::QueueOp, answer: Answer<(Vec<crate::admin::queue_list::QueueEntry>, usize)> },
    /// Message shares queued on this core, by site (`queue sites`).
    SiteQueues { answer: Answer<Vec<(String, usize)>> },
    /// This core's metrics, for a scrape or `ringmail status`.
    Metrics { answer: Answer<Box<crate::metrics::Snapshot>> },
    /// This core's metrics, 15-minute history and recent errors, for the
    /// web status page.
    Dashboard { answer: Answer<Box<crate::metrics::history::CoreView>> },
    /// `backup begin`: make everything appended durable, answer where this
    /// core's spool log ends, and keep every segment until [`Request::Unpin`].
    Pin { answer: Answer<SpoolRef> },
    /// `backup end`: segments may be reclaimed again.
    Unpin { answer: Answer<()> },
    /// Write this core's TLS report counts of today now (`tls-report`).
    TlsFlush { answer: Answer<()> },
    /// Compaction moved these records (old place, new place): update every
    /// reference this core holds, and read and tombstone them at the new
    /// place from now on. Answered true once the moved messages' queue
    /// states are recorded at their new places, durably (false: one could
    /// not be, and the old segment must stay).
    Relocate { moves: Vec<(SpoolRef, SpoolRef)>, answer: Answer<bool> },
    /// Add or delete a suppression entry of an address whose domain this
    /// core owns, durably; answers the entry added or deleted.
    Suppression {
        op: super::suppress::SuppressOp,
        answer: Answer<Result<Option<crate::suppression::Entry>, ShardError>>,
    },
    /// `mailbox list`: the entries of a mailbox this core owns.
    MailboxList { user: String, answer: Answer<Vec<MailboxEntry>> },
    /// `mailbox delete`: delete one message (by UID) from a mailbox this
    /// core owns, durably.
    MailboxDelete { user: String, uid: String, answer: Answer<Result<(), ShardError>> },
}
