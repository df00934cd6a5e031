//! What the client asks of its driver: bytes to write ([`Transmit`]),
//! things that happened ([`Event`]), and where it is ([`Phase`], for the
//! RFC 5321 §4.5.3.2 timeouts the driver runs).

use std::fmt;

use thiserror::Error;

use super::message::{MessageOutcome, OutgoingMessage};
use super::reply::{Reply, ReplyError};

/// Something the driver must write to the connection, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// Command lines, each ending in CRLF (several at once when pipelining).
    Command(Vec<u8>),
    /// Write the body of the message in flight, dot-stuffed with CRLF line
    /// ends and the final `.\r\n` (what `proto::smtp::dot_stuff` makes of
    /// it), then call `Client::body_sent`.
    Body,
    /// Write the body of the message in flight exactly as stored (no
    /// dot-stuffing, no final dot): the `BDAT` chunk the command before it
    /// announced. Then call `Client::body_sent`.
    Chunk,
}

/// Something that happened, for the driver (and through it the queue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Greeted, EHLO (and TLS) done, no message in flight: the driver may
    /// call `Client::send_message` once. Comes again after each outcome
    /// while the connection stays usable.
    Ready,
    /// The body of the message in flight is written and the server offers
    /// PIPELINING: the driver may call `Client::send_message` now, and the
    /// next message's MAIL, RCPT and DATA (or BDAT and its chunk) go out
    /// behind this one's end of data (RFC 2920 §3.1) instead of a round
    /// trip later. Outcomes still come in the order the messages were
    /// given. A driver that ignores this waits for `Ready` as before.
    ReadyBehind,
    /// The server said go to STARTTLS: write what is pending, discard any
    /// unread input, run the TLS handshake, then call
    /// `Client::tls_established` (or `Client::connection_lost`).
    StartTls,
    /// The message in flight is finished, recipient by recipient.
    Outcome(MessageOutcome),
    /// A message that went out behind another (PIPELINING) when the
    /// session ended before any reply of its own: deferred by that end,
    /// in order like an `Outcome`. What ended the session (a 421, a
    /// timeout) came with the `Outcome` of the message before it, so this
    /// one says nothing more about the server: settle it, but do not count
    /// it as another reply from the site (its backoff rules see the 421
    /// once per session, not once per message in flight).
    Abandoned(MessageOutcome),
    /// The session ended cleanly (QUIT answered, or the server closed an
    /// idle connection): close the socket.
    Closed,
    /// The session is over and the connection unusable: write what
    /// `poll_transmit` still yields (at most a QUIT) and close without
    /// waiting for a reply. A message in flight got its `Outcome` first.
    Failed(ConnectionFailure),
}

/// Why a connection failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{cause}")]
pub struct ConnectionFailure {
    pub cause: FailureCause,
    /// Another attempt (later, or at another MX host) may work. Only a 5xx
    /// greeting or a 5xx to both EHLO and HELO is permanent.
    pub temporary: bool,
}

/// What ended a connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FailureCause {
    /// The greeting was not 2xx.
    #[error("greeting refused: {0}")]
    GreetingRefused(Reply),
    /// EHLO and HELO (or EHLO with a 4xx) were refused.
    #[error("EHLO/HELO refused: {0}")]
    HelloRefused(Reply),
    /// The policy requires TLS and the server does not offer STARTTLS.
    #[error("TLS required but not offered")]
    TlsNotOffered,
    /// The policy requires TLS and STARTTLS was refused.
    #[error("TLS required but STARTTLS refused: {0}")]
    TlsRefused(Reply),
    /// The RSET after a failed transaction was refused.
    #[error("RSET refused: {0}")]
    ResetRefused(Reply),
    /// A 421: the server is closing the connection.
    #[error("server closing connection: {0}")]
    ServiceClosing(Reply),
    /// A reply that fits nothing sent (unsolicited, or 2xx to DATA).
    #[error("unexpected reply while {phase}: {reply}")]
    UnexpectedReply { phase: Phase, reply: Reply },
    /// The reply stream could not be read (garbage, overlong line).
    #[error("bad reply while {phase}: {error}")]
    BadReply { phase: Phase, error: ReplyError },
    /// Bytes followed the 220 to STARTTLS in plain text: a response
    /// injection attempt (CVE-2011-0411 style) or a broken server.
    #[error("plaintext after the reply to STARTTLS")]
    PlaintextAfterStartTls,
    /// The driver's timer for `phase` expired.
    #[error("conversation timed out while {phase}")]
    Timeout { phase: Phase },
    /// The driver saw the connection end (EOF, reset, TLS failure).
    #[error("lost connection while {phase}")]
    ConnectionLost { phase: Phase },
}

impl FailureCause {
    /// The server reply behind this failure, when there is one.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            FailureCause::GreetingRefused(reply)
            | FailureCause::HelloRefused(reply)
            | FailureCause::TlsRefused(reply)
            | FailureCause::ResetRefused(reply)
            | FailureCause::ServiceClosing(reply)
            | FailureCause::UnexpectedReply { reply, .. } => Some(reply),
            FailureCause::TlsNotOffered
            | FailureCause::BadReply { .. }
            | FailureCause::PlaintextAfterStartTls
            | FailureCause::Timeout { .. }
            | FailureCause::ConnectionLost { .. } => None,
        }
    }

    /// The reply the unfinished recipients of a message in flight are
    /// deferred with: the 421 itself, or a made-up 451 naming the cause.
    pub(crate) fn deferral(&self) -> Reply {
        let enhanced = match self {
            FailureCause::ServiceClosing(reply) => return reply.clone(),
            FailureCause::Timeout { .. } | FailureCause::ConnectionLost { .. } => (4, 4, 2),
            FailureCause::TlsNotOffered | FailureCause::TlsRefused(_) => (4, 7, 0),
            FailureCause::UnexpectedReply { .. }
            | FailureCause::BadReply { .. }
            | FailureCause::PlaintextAfterStartTls => (4, 5, 0),
            FailureCause::GreetingRefused(_) | FailureCause::HelloRefused(_) | FailureCause::ResetRefused(_) => {
                (4, 4, 0)
            }
        };
        Reply::local(451, enhanced, self.to_string())
    }
}

/// Where the session is: which reply it waits for (with pipelining, the
/// earliest outstanding one). The driver picks its timeout by phase; RFC
/// 5321 §4.5.3.2 gives Greeting 5 min, Mail 5 min, Rcpt 5 min, DataInit
/// 2 min, DataBlock 3 min (per write), DataTermination 10 min.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the 220 greeting.
    Greeting,
    /// EHLO sent.
    Ehlo,
    /// HELO sent (EHLO was refused).
    Helo,
    /// STARTTLS sent.
    StartTls,
    /// The driver is running the TLS handshake.
    TlsHandshake,
    /// Idle, no reply awaited: the driver's idle timer runs.
    Ready,
    /// MAIL FROM sent.
    Mail,
    /// RCPT TO sent.
    Rcpt,
    /// DATA sent, waiting for 354.
    DataInit,
    /// The driver is writing the body.
    DataBlock,
    /// The body is written, waiting for the final reply.
    DataTermination,
    /// RSET sent after a failed transaction.
    Rset,
    /// QUIT sent.
    Quit,
    /// Closed or failed: nothing more will happen.
    Closed,
}

impl fmt::Display for Phase {
    /// Postfix-style, for "timed out while ..." texts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Greeting => "receiving the initial server greeting",
            Phase::Ehlo => "sending EHLO",
            Phase::Helo => "sending HELO",
            Phase::StartTls => "sending STARTTLS",
            Phase::TlsHandshake => "performing the TLS handshake",
            Phase::Ready => "idle between messages",
            Phase::Mail => "sending MAIL FROM",
            Phase::Rcpt => "sending RCPT TO",
            Phase::DataInit => "sending DATA",
            Phase::DataBlock => "sending message body",
            Phase::DataTermination => "sending end of data -- message may be sent more than once",
            Phase::Rset => "sending RSET",
            Phase::Quit => "sending QUIT",
            Phase::Closed => "closed",
        })
    }
}

/// What `Client::send_message` did with a message it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Sent {
    /// Its commands are queued; its body is asked for ([`Transmit::Body`]
    /// or [`Transmit::Chunk`]) unless the server refuses it first. Bodies
    /// are asked for in the order the messages were taken.
    OnTheWire,
    /// Decided without the server (over the SIZE limit, no valid address,
    /// an extension it needs not offered): its outcome comes in its turn,
    /// and its body is never asked for.
    Decided,
}

/// `Client::send_message` refused the message; it is handed back.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SendError {
    /// Only after `Event::Ready`, or `Event::ReadyBehind` while the message
    /// it announced is the only one in flight (not after `quit`, a failure
    /// or the end).
    #[error("client not ready for a message (phase: {phase:?})")]
    NotReady { phase: Phase, message: OutgoingMessage },
    /// A message needs at least one recipient.
    #[error("message has no recipients")]
    NoRecipients { message: OutgoingMessage },
}

impl SendError {
    /// The message, back to the caller.
    pub fn into_message(self) -> OutgoingMessage {
        match self {
            SendError::NotReady { message, .. } | SendError::NoRecipients { message } => message,
        }
    }
}
