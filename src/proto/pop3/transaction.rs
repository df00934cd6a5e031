//! Answers to the commands of the TRANSACTION state (RFC 1939 §5, §7).
//!
//! Owns: what each command does to the maildrop snapshot and which reply it
//! gets. Must not: send message bodies or apply deletions; it says so with a
//! [`Step`] and the state machine turns that into an action.

use super::command::Command;
use super::maildrop::{Deletion, Maildrop};
use super::policy::Policy;
use super::reply;

/// What the state machine does after a TRANSACTION command was answered.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// The reply is in `out`; read the next command.
    Continue,
    /// The `+OK` status line is in `out`; the body of message `index`
    /// (0-based) follows, cut to `top_lines` body lines for TOP.
    Send { index: usize, top_lines: Option<u32> },
    /// QUIT: nothing is in `out` yet; the session enters UPDATE.
    Quit,
}

/// Answers one command given in the TRANSACTION state; `policy` is the
/// user's, for CAPA.
pub(super) fn handle(command: Command, maildrop: &mut Maildrop, policy: &Policy, out: &mut Vec<u8>) -> Step {
    match command {
        Command::Stat => {
            let (count, octets) = maildrop.stat();
            reply::stat(out, count, octets);
        }
        Command::List(None) => {
            let (count, octets) = maildrop.stat();
            reply::list_header(out, count, octets);
            for (number, message) in maildrop.live() {
                reply::list_entry(out, number, message);
            }
            put(out, reply::END_OF_MULTILINE);
        }
        Command::List(Some(n)) => match maildrop.get(n) {
            Some((_, message)) => reply::list_one(out, n, message),
            None => put(out, reply::ERR_NO_SUCH_MESSAGE),
        },
        Command::Uidl(None) => {
            put(out, reply::OK_UIDL_ALL);
            for (number, message) in maildrop.live() {
                reply::uidl_entry(out, number, message);
            }
            put(out, reply::END_OF_MULTILINE);
        }
        Command::Uidl(Some(n)) => match maildrop.get(n) {
            Some((_, message)) => reply::uidl_one(out, n, message),
            None => put(out, reply::ERR_NO_SUCH_MESSAGE),
        },
        Command::Retr(n) => match maildrop.get(n) {
            Some((index, message)) => {
                reply::retr(out, message);
                return Step::Send { index, top_lines: None };
            }
            None => put(out, reply::ERR_NO_SUCH_MESSAGE),
        },
        Command::Top { message, lines } => match maildrop.get(message) {
            Some((index, _)) => {
                put(out, reply::OK_TOP);
                return Step::Send { index, top_lines: Some(lines) };
            }
            None => put(out, reply::ERR_NO_SUCH_MESSAGE),
        },
        Command::Dele(n) => match maildrop.delete(n) {
            Deletion::Marked => reply::deleted(out, n),
            Deletion::AlreadyMarked => reply::already_deleted(out, n),
            Deletion::NoSuchMessage => put(out, reply::ERR_NO_SUCH_MESSAGE),
        },
        Command::Rset => {
            maildrop.reset();
            put(out, reply::OK);
        }
        Command::Noop => put(out, reply::OK),
        // STLS is only for the AUTHORIZATION state (RFC 2595 §4).
        // Logging in proved passwords may be sent on this connection.
        Command::Capa => reply::capabilities(out, false, true, policy),
        Command::Quit => return Step::Quit,
        // RFC 6856 §2: UTF8 is an AUTHORIZATION-state command.
        Command::User(_) | Command::Pass(_) | Command::Stls | Command::Utf8 | Command::Auth { .. } => {
            put(out, reply::ERR_ALREADY_LOGGED_IN);
        }
        Command::Unknown(_) => put(out, reply::ERR_UNKNOWN_COMMAND),
    }
    Step::Continue
}

fn put(out: &mut Vec<u8>, line: &str) {
    out.extend_from_slice(line.as_bytes());
}
