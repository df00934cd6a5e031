//! What an SMTP session decides with and hands over: the policy it asks
//! about senders and recipients, and the envelope of a message it accepted.
//!
//! This file holds plain data and one trait; it must not parse or reply.

use super::address::{Address, ReversePath};
use crate::spool::{DsnRet, RecipientDsn};

/// The answer of a [`RecipientPolicy`] for one RCPT.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RcptDecision {
    /// Accept: a mailbox here, owned by `user`.
    Local { user: String },
    /// Accept: relay to `domain`.
    Remote { domain: String },
    /// Accept: an alias, catch-all or role address that stands for these
    /// targets (at least one); each becomes its own recipient entry.
    Expanded { targets: Vec<crate::address_map::Target> },
    /// Refuse for now with 451 4.3.0: the address's aliases are broken
    /// (a loop, nested too deep, too many targets, a missing target);
    /// `reason` says which, for the reply.
    AliasFailed { reason: String },
    /// Refuse with 550 5.1.1: a local domain without that user.
    UnknownUser,
    /// Refuse with 554 5.7.1: not a domain we take mail for or relay to.
    RelayDenied,
    /// Refuse for now with 452 4.2.2: a local user over their quota
    /// (`retention.max_mailbox_size`).
    MailboxFull,
    /// Refuse with 550 5.1.1: a remote recipient on the suppression list
    /// (it hard-bounced); `since` is when, as text for the reply.
    Suppressed { since: String },
}

/// The answer of [`RecipientPolicy::check_sender`] for one MAIL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenderDecision {
    /// Accept the sender.
    Ok,
    /// Refuse with 553 5.7.1: the authenticated user may not send as this
    /// address (not theirs, nor an alias of theirs).
    NotOwned,
    /// Refuse for now with 450 4.7.1: the client's or user's message rate
    /// is exhausted (not counted as a client error).
    RateLimited,
    /// Refuse for now with 452 4.3.1: the spool is full (disk or its
    /// configured cap); new mail is taken again once there is room.
    SpoolFull,
}

/// What [`RecipientPolicy::screen`] is asked about: one recipient that
/// [`RecipientPolicy::check`] accepted, in its transaction.
#[derive(Debug, Clone, Copy)]
pub struct ScreenRequest<'a> {
    /// The HELO/EHLO argument, as sent.
    pub helo: &'a str,
    pub sender: &'a ReversePath,
    pub rcpt: &'a Address,
    /// The authenticated user, if any.
    pub auth: Option<&'a str>,
}

/// The answer of [`RecipientPolicy::screen`]: the client screening's
/// word on one recipient. Texts are ours, never the client's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ScreenDecision {
    /// Accept the recipient.
    Pass,
    /// Refuse with 554 5.7.1: the client is on DNS blocklists; `lists`
    /// names them ("zen.test, bl.test"), `client` is its address.
    Blocklisted { client: String, lists: String },
    /// Refuse with 550 5.7.25: the client's reverse DNS does not confirm
    /// (no PTR, or no PTR name resolving back to it).
    ReverseDnsFailed { client: String },
    /// Refuse for now with 450 4.7.25: the reverse DNS could not be had.
    ReverseDnsUnavailable { client: String },
    /// Refuse with 550 5.7.1: the HELO name is refused; `why` says what
    /// is wrong with it (not the name itself).
    HeloRejected { why: &'static str },
    /// Refuse for now with 451 4.7.1: greylisted for `seconds` more.
    Greylisted { seconds: u64 },
}

/// Decides senders and recipients for a session.
///
/// `auth` is the user the session authenticated as (SMTP AUTH), `None`
/// before or without AUTH; it is exactly the user name the driver
/// confirmed with `AuthOutcome::Success`.
pub trait RecipientPolicy {
    /// Decide one RCPT. Must be cheap: no I/O. Called once per RCPT TO
    /// whose address parsed, within the recipient limit, not for a
    /// recipient already accepted in the same transaction. An
    /// authenticated user may relay to any domain: return `Remote` then.
    fn check(&self, rcpt: &Address, auth: Option<&str>) -> RcptDecision;

    /// Decide the sender of one MAIL that parsed and passed the sequence
    /// and size checks. Must be cheap: no I/O. The default accepts every
    /// sender.
    fn check_sender(&self, sender: &ReversePath, auth: Option<&str>) -> SenderDecision {
        let _ = (sender, auth);
        SenderDecision::Ok
    }

    /// Screen the client for a recipient [`RecipientPolicy::check`]
    /// accepted (DNS lists, reverse DNS, HELO, greylisting). Must be cheap:
    /// no I/O (the driver has the DNS results ready before it feeds the
    /// first MAIL or RCPT). The default passes everyone.
    fn screen(&self, request: &ScreenRequest<'_>) -> ScreenDecision {
        let _ = request;
        ScreenDecision::Pass
    }
}

/// One recipient the session accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedRecipient {
    pub address: Address,
    /// Only [`RcptDecision::Local`], [`RcptDecision::Remote`] or
    /// [`RcptDecision::Expanded`].
    pub decision: RcptDecision,
    /// Its DSN parameters (`NOTIFY=`, `ORCPT=`).
    pub dsn: RecipientDsn,
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
    /// `BODY=BINARYMIME` was declared (RFC 3030): the body came by BDAT and
    /// is stored as sent (bare CR and LF included); it may only be relayed
    /// to a next hop offering BINARYMIME and CHUNKING.
    pub binarymime: bool,
    /// MAIL had `SMTPUTF8` (RFC 6531): addresses and headers may be UTF-8.
    pub smtputf8: bool,
    /// MAIL had `REQUIRETLS` (RFC 8689): relayed only over verified TLS.
    pub requiretls: bool,
    /// The user the session authenticated as (SMTP AUTH), if any: for the
    /// Received header and the logs.
    pub auth_user: Option<String>,
    /// DSN `RET=` (RFC 3461 §4.3).
    pub ret: Option<DsnRet>,
    /// DSN `ENVID=`, xtext-decoded.
    pub envid: Option<String>,
}
