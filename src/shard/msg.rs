//! The typed messages cores send each other.
//!
//! Everything that crosses a core boundary is one of these: deliveries to a
//! mailbox owner, relay work for a domain owner, and request/reply pairs
//! (lock a mailbox, commit deletions, write tombstones). They carry
//! [`SpoolRef`]s, never message bodies.

use crate::mailbox::{LockToken, MailboxEntry, MailboxError};
use crate::queue::QueuedMessage;
use crate::spool::{Outcome, SpoolRef};

/// A message on the shard mesh.
#[derive(Debug)]
pub enum ShardMsg {
    /// One-way: a durable message for a user this core owns.
    Deliver {
        user: String,
        entry: MailboxEntry,
    },
    /// One-way: durable relay work for a domain this core owns.
    Enqueue(QueuedMessage),
    /// One-way, to every core: `user`'s mailbox went over (or back under)
    /// its quota; RCPT answers 452 4.2.2 while over.
    Quota {
        user: String,
        over: bool,
    },
    /// One-way: a spool segment was deleted; drop any map of it.
    SegmentGone {
        dir: u16,
        segment: u32,
    },
    /// A request; the receiver answers with `Reply { id, .. }` to `from`.
    Request {
        from: usize,
        id: u64,
        req: Request,
    },
    Reply {
        id: u64,
        reply: Reply,
    },
}

/// Work a core asks its owner to do.
#[derive(Debug)]
pub enum Request {
    /// Lock a mailbox for a POP3 session and return its listing.
    Lock { user: String, token: LockToken },
    /// Release a mailbox lock without deleting anything.
    Unlock { user: String, token: LockToken },
    /// POP3 QUIT: delete these messages durably, then unlock.
    Commit { user: String, token: LockToken, deleted: Vec<(SpoolRef, u16)> },
    /// Append tombstones for records in a spool dir this core owns and wait
    /// for their sync.
    Settle { items: Vec<(SpoolRef, u16, Outcome)> },
    /// An operator's queue command, for this core's shard.
    Queue(super::admin::QueueOp),
    /// This core's metrics, for a scrape or `ringmail status`.
    Metrics,
    /// `backup begin` (true): make everything appended durable, report where
    /// this core's spool log ends, and keep every segment until the
    /// matching unpin (false).
    Pin(bool),
    /// Compaction moved these records (old place, new place): update every
    /// reference this core holds, and read and tombstone them at the new
    /// place from now on.
    Relocate(Vec<(SpoolRef, SpoolRef)>),
    /// `mailbox list`: the entries of a mailbox this core owns.
    MailboxList { user: String },
    /// `mailbox delete`: delete one message (by UID) from a mailbox this
    /// core owns, durably.
    MailboxDelete { user: String, uid: String },
}

#[derive(Debug)]
pub enum Reply {
    Locked(Result<Vec<MailboxEntry>, MailboxError>),
    /// Done, or why not (a spool error, a lost lock), as text for the log.
    Done(Result<(), String>),
    /// This core's part of a queue command.
    Queue {
        text: String,
        count: usize,
    },
    Metrics(Box<crate::metrics::Snapshot>),
    Mailbox(Vec<MailboxEntry>),
    /// This core's spool dir and where its log ends (segment, offset).
    Pinned {
        dir: u16,
        segment: u32,
        offset: u32,
    },
}
