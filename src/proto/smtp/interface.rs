//! The contract between an SMTP session and its driver: the settings it is
//! started with, the [`Action`]s it asks for, and the outcomes the driver
//! reports back.
//!
//! Plain data only; the session logic is in `server`.

use std::fmt;

use super::address::{Address, ReversePath};
use super::envelope::Envelope;
use super::sasl::Mechanism;

/// Settings of the listener a session belongs to; shared by its sessions.
///
/// `plaintext_auth_ok` depends on the client too (loopback or not), so a
/// driver keeps one value of this per (listener, loopback) pair, or builds
/// one per connection; the rest is per listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Our name: in the greeting, the EHLO/HELO reply, 421s, and the domain
    /// of a bare `RCPT TO:<postmaster>`.
    pub hostname: String,
    /// Largest stored body in bytes (after unstuffing), advertised as
    /// `SIZE n`; must be > 0 (`SIZE 0` would mean "no limit").
    pub max_message_size: usize,
    /// Recipients per transaction; more get 452 4.5.3.
    pub max_recipients: usize,
    /// Longest command line including CRLF; longer gets 500 5.5.6 and
    /// close. Lines of an AUTH exchange may be longer, up to
    /// [`super::sasl::MAX_RESPONSE_LINE`].
    pub max_line_len: usize,
    /// Counted errors before 421 4.7.0 and close.
    pub max_errors: u32,
    /// Advertise and accept STARTTLS.
    pub starttls: bool,
    /// The connection is TLS from its first byte (port 465): what depends
    /// on TLS (REQUIRETLS) holds from the start.
    pub tls_at_start: bool,
    /// Whether AUTH (RFC 4954) is offered, and whether MAIL needs it.
    pub auth: AuthMode,
    /// Commands in one session before 421 and close (abuse limit).
    pub max_commands: u32,
    /// Messages stored in one session before MAIL gets 421 and close.
    pub max_messages: u32,
    /// Passwords may be sent on this connection as it starts: it is TLS
    /// (implicit, port 465), or plain from loopback with
    /// `[auth] plaintext_on_loopback`. Until it holds, AUTH is neither
    /// advertised nor accepted (538 5.7.11, RFC 4954 §4). A completed
    /// STARTTLS makes it hold for the rest of the session
    /// ([`super::Server::starttls_done`]); the driver need not update it.
    pub plaintext_auth_ok: bool,
}

/// Whether a listener offers SMTP AUTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Never offered; AUTH gets 503 5.5.1 (port 25 by default).
    Off,
    /// Offered, not needed (port 25 with authentication configured):
    /// authenticated clients may relay, others are subject to the
    /// recipient policy as usual.
    Offered,
    /// Offered and needed: MAIL before a successful AUTH gets
    /// 530 5.7.0 (submission 587, smtps 465).
    Required,
}

/// Something the driver must do for the session, then report back.
#[derive(Clone, PartialEq, Eq)]
pub enum Action {
    /// Make this message durable in the spool, then call
    /// [`super::Server::store_done`]. The body has CRLF line ends and no
    /// final dot.
    Store { envelope: Envelope, body: Vec<u8> },
    /// Flush the output (it ends with 220 Ready to start TLS), run the TLS
    /// handshake, then call [`super::Server::starttls_done`] and feed only
    /// decrypted bytes from then on.
    StartTls,
    /// Check this password (slowly, off the I/O path), then call
    /// [`super::Server::auth_done`]. `user` and `password` are non-empty
    /// UTF-8 without NUL, as sent (not case-folded). Its `{:?}` never shows
    /// the password.
    Authenticate { mechanism: Mechanism, user: String, password: String },
    /// Ask the live content filters (milters at `stage = "connect"`)
    /// about a command the session accepted, then call
    /// [`super::Server::filter_done`]; its reply waits for their word.
    /// Only after [`super::Server::filter_commands`].
    Filter(FilterStep),
}

/// A command the live content filters are asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterStep {
    /// HELO/EHLO with this argument.
    Helo(String),
    /// MAIL from this sender.
    Mail(ReversePath),
    /// RCPT to this recipient.
    Rcpt(Address),
}

// Hand-written so that a password never reaches a log through `{:?}`.
impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Store { envelope, body } => {
                f.debug_struct("Store").field("envelope", envelope).field("body_len", &body.len()).finish()
            }
            Action::StartTls => f.write_str("StartTls"),
            Action::Filter(step) => f.debug_tuple("Filter").field(step).finish(),
            Action::Authenticate { mechanism, user, .. } => f
                .debug_struct("Authenticate")
                .field("mechanism", mechanism)
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

/// How [`Action::Store`] went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Durable: 250 2.0.0 Ok: queued as `queue_id`.
    Stored { queue_id: String },
    /// The write failed: 451 4.3.0.
    TempFailure,
    /// No room: 452 4.3.1.
    SpoolFull,
    /// Refused by policy after the data was read (a DMARC `p=reject` fail
    /// under `verify.dmarc_policy = "enforce"`): 550 5.7.1 with this text
    /// (one line, no CR/LF); nothing was stored.
    PolicyRejected { text: String },
    /// Refused by a content filter (milter) after the data was read;
    /// nothing was stored.
    Filtered(FilterRefusal),
}

/// How a content filter refused a message (see [`StoreOutcome::Filtered`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterRefusal {
    /// 550 5.7.1.
    Rejected,
    /// 451 4.7.1: the filter said try again later.
    TempFailed,
    /// 451 4.7.1: the filter could not be asked.
    Unavailable,
    /// The filter's own reply: a 4xx/5xx code and its text (one line).
    Reply { code: u16, text: String },
}

/// How [`Action::Authenticate`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The password is right: 235 2.7.0; the session is authenticated as
    /// the user of the action.
    Success,
    /// Unknown user or wrong password (the client is not told which):
    /// 535 5.7.8, counted as an error.
    Failure,
    /// The check could not be made: 454 4.7.0, not counted.
    TempFailure,
    /// Too many recent failures from this client; not checked:
    /// 454 4.7.0, counted as an error (it is the client's doing).
    Locked,
}
