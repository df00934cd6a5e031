//! A message as the client takes it (envelope and size; the body stays in
//! the spool) and what became of each of its recipients.

use super::reply::{Class, Reply};

/// One message for one destination, handed to `Client::send_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The reverse-path without brackets; `""` is the null sender (bounces).
    pub sender: String,
    /// Forward-paths without brackets, in the order outcomes are reported.
    pub recipients: Vec<String>,
    /// Body size in bytes, for `SIZE=` and the advertised-limit check;
    /// exact (the length of the body the driver writes), since a `BDAT`
    /// chunk announces it.
    pub size: u64,
    /// The body has 8-bit bytes: declared as `BODY=8BITMIME` when the
    /// server offers 8BITMIME. When it does not, the body is sent anyway
    /// (Postfix's default): converting to 7 bit would need a MIME rewriter,
    /// and refusing would bounce mail almost every server accepts.
    pub body_8bit: bool,
}

/// What became of one message, recipient by recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageOutcome {
    /// One entry per `OutgoingMessage::recipients`, same order.
    pub per_recipient: Vec<RecipientOutcome>,
}

/// The fate of one recipient, with the reply that decided it. Replies the
/// client made up itself (SIZE exceeded, a malformed address, a timeout,
/// a lost connection) look like server replies; their texts say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientOutcome {
    /// The server took responsibility (the 2xx after the end of data).
    Delivered { reply: Reply },
    /// Try again later (4xx, or the connection failed first).
    Deferred { reply: Reply },
    /// Refused for good (5xx): bounce.
    Bounced { reply: Reply },
}

impl RecipientOutcome {
    /// The outcome a reply stands for: the one place where a reply class
    /// becomes delivered, deferred or bounced.
    pub fn from_reply(reply: Reply) -> RecipientOutcome {
        match reply.class() {
            Class::Positive => RecipientOutcome::Delivered { reply },
            Class::Transient => RecipientOutcome::Deferred { reply },
            Class::Permanent => RecipientOutcome::Bounced { reply },
        }
    }

    /// The reply that decided this outcome.
    pub fn reply(&self) -> &Reply {
        match self {
            RecipientOutcome::Delivered { reply }
            | RecipientOutcome::Deferred { reply }
            | RecipientOutcome::Bounced { reply } => reply,
        }
    }
}
