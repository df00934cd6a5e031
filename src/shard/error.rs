//! What can go wrong in the shard layer's work, as one type that names the
//! fact (the answers of [`Request`](super::Request)s carry it between
//! cores, so it is `Send` and cheap to clone). Start-up has its own
//! (`BootError`, `CoreError`), compaction too (`CompactError`).

use super::PeerGone;
use crate::mailbox::MailboxError;
use crate::spool::SpoolError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ShardError {
    /// Appending or syncing a record failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The mailbox is locked by someone else, or the lock was lost.
    #[error(transparent)]
    Mailbox(#[from] MailboxError),
    /// The core that owns the work is stopping.
    #[error(transparent)]
    PeerGone(#[from] PeerGone),
    /// A dead segment of a spool dir adopted from a run with more cores
    /// could not be deleted.
    #[error("{path}: {error}")]
    Remove { path: std::path::PathBuf, error: std::sync::Arc<std::io::Error> },
    /// A record field is longer than the spool can store.
    #[error("{what} too long to store")]
    TooLong { what: &'static str },
    /// The owning core has not adopted its recovered spool yet (restart).
    #[error("the server is still recovering its spool after a restart; try again shortly")]
    Recovering,
    /// `mailbox delete` named a UID the mailbox does not hold.
    #[error("no message {uid} in the mailbox of {user}")]
    NoSuchMessage { user: String, uid: String },
}
