//! Every reply the POP3 server sends, in one place.
//!
//! Owns: reply texts, each a whole line with its CRLF, and the writers of
//! the replies that carry values (STAT, LIST, UIDL, CAPA ...). Must not:
//! decide which reply applies; that is the state machine's job.
//!
//! POP3 has no RFC 3463 enhanced status codes. Its machine-readable part is
//! the bracketed response code of RFC 2449 §8 (`[IN-USE]`, `[LOGIN-DELAY]`)
//! and RFC 3206 (`[AUTH]`, `[SYS/TEMP]`, `[SYS/PERM]`); replies that carry
//! one say so in their name's doc. `RESP-CODES` and `AUTH-RESP-CODE` in
//! CAPA promise clients that these codes are used consistently.

use std::fmt;
use std::io::Write as _;

use super::command::{MessageNumber, ParseError};
use super::maildrop::MessageInfo;
use super::policy::Policy;

/// Ends every multi-line response (RFC 1939 §3).
pub const END_OF_MULTILINE: &str = ".\r\n";

// ----- AUTHORIZATION -----

/// USER, whatever the name: saying whether it exists would let a client
/// probe for accounts.
pub const OK_USER: &str = "+OK send PASS\r\n";
/// PASS accepted, the maildrop is locked and the session is in TRANSACTION.
pub const OK_LOGGED_IN: &str = "+OK Logged in.\r\n";
/// `[AUTH]` (RFC 3206): wrong user or password; the same text either way.
pub const ERR_AUTH_FAILED: &str = "-ERR [AUTH] Authentication failed.\r\n";
/// `[AUTH]`: the failure that reaches `max_auth_failures`; the session closes.
pub const ERR_TOO_MANY_FAILURES: &str = "-ERR [AUTH] too many failures\r\n";
/// `[IN-USE]` (RFC 2449): another session holds the maildrop lock.
pub const ERR_IN_USE: &str = "-ERR [IN-USE] Mailbox is locked by another session\r\n";
/// `[SYS/TEMP]` (RFC 3206): the credentials could not be checked just now.
/// The mailbox index is still being rebuilt after a restart (RFC 3206).
pub const ERR_RECOVERING: &str = "-ERR [SYS/TEMP] recovering: the mailbox is not ready yet, try again shortly\r\n";

pub const ERR_AUTH_TEMP_FAILURE: &str = "-ERR [SYS/TEMP] Temporary authentication failure, try again later\r\n";
/// PASS with no USER before it.
pub const ERR_PASS_WITHOUT_USER: &str = "-ERR USER first\r\n";
/// QUIT before login: nothing to update.
pub const OK_BYE: &str = "+OK bye\r\n";
/// STLS accepted (RFC 2595 §4); the TLS handshake follows.
pub const OK_BEGIN_TLS: &str = "+OK Begin TLS negotiation\r\n";
/// STLS when this listener does not offer it.
pub const ERR_STLS_UNAVAILABLE: &str = "-ERR STLS not available\r\n";
/// STLS on a connection that already runs TLS.
pub const ERR_TLS_ACTIVE: &str = "-ERR TLS already active\r\n";
/// `[AUTH]`: USER, PASS or AUTH before passwords may be sent on the
/// connection (before STLS, not from loopback).
pub const ERR_PLAINTEXT_DISALLOWED: &str =
    "-ERR [AUTH] Plaintext authentication disallowed on non-secure connection\r\n";
/// AUTH PLAIN without an initial response: the empty challenge (RFC 5034 §4).
pub const SASL_CONTINUE: &str = "+ \r\n";
/// The client answered the challenge with `*`.
pub const ERR_AUTH_ABORTED: &str = "-ERR authentication aborted\r\n";
/// `[AUTH]`: a response (or initial response) that is not base64.
pub const ERR_BAD_BASE64: &str = "-ERR [AUTH] bad base64\r\n";
/// AUTH with a mechanism other than PLAIN.
pub const ERR_UNSUPPORTED_MECHANISM: &str = "-ERR unsupported authentication mechanism\r\n";
/// Precedes the mechanism list of AUTH without an argument.
pub const OK_MECHANISMS: &str = "+OK\r\n";
/// The SASL mechanisms offered, in CAPA's `SASL` line and AUTH's list.
const MECHANISMS: &[&str] = &["PLAIN"];
/// A TRANSACTION-state command before login.
pub const ERR_NOT_LOGGED_IN: &str = "-ERR not logged in\r\n";

// ----- TRANSACTION -----

/// USER, PASS or STLS after login.
pub const ERR_ALREADY_LOGGED_IN: &str = "-ERR already logged in\r\n";
/// NOOP and RSET.
pub const OK: &str = "+OK\r\n";
/// A message number that is out of range or names a deleted message.
pub const ERR_NO_SUCH_MESSAGE: &str = "-ERR no such message\r\n";
/// Precedes the header and body lines TOP sends.
pub const OK_TOP: &str = "+OK top of message follows\r\n";
/// Precedes the unique-id listing of UIDL without an argument.
pub const OK_UIDL_ALL: &str = "+OK unique-id listing follows\r\n";
/// `[SYS/TEMP]`: QUIT's deletions could not be made durable; the session
/// closes and the messages stay.
pub const ERR_COMMIT_FAILED: &str = "-ERR [SYS/TEMP] some deleted messages not removed\r\n";

// ----- any state -----

/// A keyword the server does not implement, or an empty line.
pub const ERR_UNKNOWN_COMMAND: &str = "-ERR unknown command\r\n";
/// A command line over `max_line_len`; the session closes.
pub const ERR_LINE_TOO_LONG: &str = "-ERR line too long\r\n";
/// The driver's idle timer fired; the session closes without UPDATE.
pub const ERR_AUTOLOGOUT: &str = "-ERR autologout; idle for too long\r\n";
/// The server is stopping (RFC 3206 SYS/TEMP: try again later).
pub const ERR_SHUTTING_DOWN: &str = "-ERR [SYS/TEMP] server shutting down\r\n";
/// A command line with a NUL byte.
pub const ERR_NUL_BYTE: &str = "-ERR NUL byte in command\r\n";
/// A command line with a CR that is not part of its CRLF.
pub const ERR_BARE_CR: &str = "-ERR bare CR in command\r\n";
/// A command line that is not UTF-8.
pub const ERR_NOT_UTF8: &str = "-ERR command is not valid UTF-8\r\n";
/// A command given fewer arguments than it needs.
pub const ERR_MISSING_ARGUMENT: &str = "-ERR missing argument\r\n";
/// A command given more arguments than it takes.
pub const ERR_TOO_MANY_ARGUMENTS: &str = "-ERR too many arguments\r\n";
/// A message number with anything but decimal digits.
pub const ERR_INVALID_MESSAGE_NUMBER: &str = "-ERR invalid message number\r\n";
/// A TOP line count with anything but decimal digits.
pub const ERR_INVALID_LINE_COUNT: &str = "-ERR invalid line count\r\n";
/// UTF8 (RFC 6856 §2) in AUTHORIZATION.
pub const OK_UTF8: &str = "+OK UTF8 enabled\r\n";
/// Precedes the capability list.
pub const OK_CAPA: &str = "+OK Capability list follows\r\n";

/// Capabilities offered in every state (RFC 2449 §6), one per line; the
/// login ones (USER, SASL) go between the two lists.
const CAPABILITIES: (&[&str], &[&str]) =
    (&["TOP", "UIDL"], &["RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "UTF8 USER", "IMPLEMENTATION ringmail"]);

/// The reply to a line that does not parse.
pub fn for_parse_error(error: &ParseError) -> &'static str {
    match error {
        ParseError::NulByte => ERR_NUL_BYTE,
        ParseError::BareCr => ERR_BARE_CR,
        ParseError::NotUtf8 => ERR_NOT_UTF8,
        ParseError::MissingArgument { .. } => ERR_MISSING_ARGUMENT,
        ParseError::TooManyArguments { .. } => ERR_TOO_MANY_ARGUMENTS,
        ParseError::InvalidMessageNumber { .. } => ERR_INVALID_MESSAGE_NUMBER,
        ParseError::InvalidLineCount { .. } => ERR_INVALID_LINE_COUNT,
    }
}

/// Appends one formatted line. Writing into a `Vec` cannot fail, which is
/// why the `io::Result` is dropped here and only here.
fn put(out: &mut Vec<u8>, line: fmt::Arguments<'_>) {
    let _ = out.write_fmt(line);
}

/// The greeting sent on connect. (No APOP timestamp: APOP is not offered.)
pub fn greeting(out: &mut Vec<u8>, hostname: &str) {
    put(out, format_args!("+OK {hostname} ringmail POP3 ready\r\n"));
}

/// QUIT's goodbye after a successful UPDATE (or with nothing to update).
pub fn signing_off(out: &mut Vec<u8>, hostname: &str) {
    put(out, format_args!("+OK {hostname} signing off\r\n"));
}

/// CAPA's multi-line list; `login` adds USER and `SASL PLAIN` (only when
/// passwords may be sent on the connection), `stls` adds STLS (only before
/// login, only when the listener offers it and TLS is not already on);
/// `policy` gives EXPIRE and LOGIN-DELAY.
pub fn capabilities(out: &mut Vec<u8>, stls: bool, login: bool, policy: &Policy) {
    out.extend_from_slice(OK_CAPA.as_bytes());
    for capability in CAPABILITIES.0 {
        put(out, format_args!("{capability}\r\n"));
    }
    if login {
        put(out, format_args!("USER\r\nSASL {}\r\n", MECHANISMS.join(" ")));
    }
    for capability in CAPABILITIES.1 {
        put(out, format_args!("{capability}\r\n"));
    }
    policy.write_capabilities(out);
    if stls {
        out.extend_from_slice(b"STLS\r\n");
    }
    out.extend_from_slice(END_OF_MULTILINE.as_bytes());
}

/// AUTH without a mechanism: the mechanisms, one per line. RFC 5034's
/// grammar has no bare AUTH; this is the list its predecessor drafts
/// defined and that clients which send bare AUTH (Outlook among them)
/// parse. CAPA-aware clients never send it.
pub fn mechanisms(out: &mut Vec<u8>) {
    out.extend_from_slice(OK_MECHANISMS.as_bytes());
    for mechanism in MECHANISMS {
        put(out, format_args!("{mechanism}\r\n"));
    }
    out.extend_from_slice(END_OF_MULTILINE.as_bytes());
}

/// STAT: `+OK count octets`, exactly as RFC 1939 §5 fixes it (clients parse it).
pub fn stat(out: &mut Vec<u8>, count: usize, octets: u64) {
    put(out, format_args!("+OK {count} {octets}\r\n"));
}

/// The first line of a LIST without an argument.
pub fn list_header(out: &mut Vec<u8>, count: usize, octets: u64) {
    put(out, format_args!("+OK {count} messages ({octets} octets)\r\n"));
}

/// One scan line of LIST: `n size`.
pub fn list_entry(out: &mut Vec<u8>, number: usize, message: &MessageInfo) {
    put(out, format_args!("{number} {}\r\n", message.size));
}

/// LIST n: `+OK n size`.
pub fn list_one(out: &mut Vec<u8>, number: MessageNumber, message: &MessageInfo) {
    put(out, format_args!("+OK {number} {}\r\n", message.size));
}

/// One line of UIDL without an argument: `n uid`.
pub fn uidl_entry(out: &mut Vec<u8>, number: usize, message: &MessageInfo) {
    put(out, format_args!("{number} {}\r\n", message.uid));
}

/// UIDL n: `+OK n uid`.
pub fn uidl_one(out: &mut Vec<u8>, number: MessageNumber, message: &MessageInfo) {
    put(out, format_args!("+OK {number} {}\r\n", message.uid));
}

/// The status line before RETR's body; the size is the stored one.
pub fn retr(out: &mut Vec<u8>, message: &MessageInfo) {
    put(out, format_args!("+OK {} octets\r\n", message.size));
}

/// DELE accepted.
pub fn deleted(out: &mut Vec<u8>, number: MessageNumber) {
    put(out, format_args!("+OK message {number} deleted\r\n"));
}

/// DELE of a message already marked.
pub fn already_deleted(out: &mut Vec<u8>, number: MessageNumber) {
    put(out, format_args!("-ERR message {number} already deleted\r\n"));
}
