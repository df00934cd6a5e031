//! What an SMTP session decides with and hands over: the recipient policy it
//! asks, and the envelope of a message it accepted.
//!
//! This file holds plain data and one trait; it must not parse or reply.

use super::address::{Address, ReversePath};

/// The answer of a [`RecipientPolicy`] for one RCPT.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RcptDecision {
    /// Accept: a mailbox here, owned by `user`.
    Local { user: String },
    /// Accept: relay to `domain`.
    Remote { domain: String },
    /// Refuse with 550 5.1.1: a local domain without that user.
    UnknownUser,
    /// Refuse with 554 5.7.1: not a domain we take mail for or relay to.
    RelayDenied,
}

/// Decides recipients for a session.
pub trait RecipientPolicy {
    /// Decide one RCPT. Must be cheap: no I/O. Called once per RCPT TO
    /// whose address parsed, within the recipient limit, not for a
    /// recipient already accepted in the same transaction.
    fn check(&self, rcpt: &Address) -> RcptDecision;
}

/// One recipient the session accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedRecipient {
    pub address: Address,
    /// Only [`RcptDecision::Local`] or [`RcptDecision::Remote`].
    pub decision: RcptDecision,
}

/// The envelope of one accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The HELO/EHLO argument, as sent (trimmed).
    pub helo: String,
    /// True after EHLO, false after HELO.
    pub esmtp: bool,
    pub sender: ReversePath,
    /// At least one; each address once, in RCPT order.
    pub recipients: Vec<AcceptedRecipient>,
    /// `BODY=8BITMIME` was declared or a byte >= 0x80 was seen in the body.
    pub body_8bit: bool,
}
