//! The POP3 server as a sans-I/O state machine: RFC 1939 (the protocol),
//! RFC 2449 (CAPA, RESP-CODES, PIPELINING), RFC 3206 (the `[AUTH]` and
//! `[SYS/...]` response codes), RFC 2595 (STLS) and RFC 5034 (AUTH, with
//! the PLAIN mechanism of RFC 4616).
//!
//! What it owns: turning the bytes a client sends into replies and into
//! [`Action`]s the driver must carry out (check a password, send a message
//! body, make deletions durable, start TLS), and the wire form of a stored
//! message ([`write_message`]: dot-stuffing, TOP).
//!
//! What it must not do: touch sockets, files, clocks, the spool or any other
//! ringmail module but `proto::smtp::sasl` (the AUTH exchange, shared with
//! SMTP). The driver (`net/pop3_driver`) reads, calls
//! [`Server::handle_input`], performs what [`Server::poll_action`] returns,
//! reports back through the `*_done` methods and writes [`Server::output`].
//! Time is the driver's too: it calls [`Server::handle_timeout`] when the
//! client has been idle too long.
//!
//! Framing: command lines end in CRLF, but a bare LF is accepted as well
//! (several widespread clients and most test scripts send one); a CR anywhere
//! else in a line is rejected. A line longer than
//! [`Pop3Config::max_line_len`] (RFC 2449 §4: 255 octets including CRLF) is
//! answered with `-ERR line too long` and closes the session, so a client
//! cannot make the driver buffer without bound. The one exception is the
//! line answering an AUTH challenge, which may be as long as
//! `smtp::sasl::MAX_RESPONSE_LINE` (12288 octets, as in RFC 4954).
//!
//! Layout: [`command`] parses one line, [`reply`] holds every reply text,
//! `maildrop` is the snapshot a session works on, `policy` is what CAPA says
//! of EXPIRE and LOGIN-DELAY, `transaction` answers the
//! TRANSACTION-state commands, `server` is the state machine, `stuff` writes
//! message bodies and `line` finds line ends.

pub mod command;
mod line;
mod maildrop;
mod policy;
pub mod reply;
mod server;
mod stuff;
mod transaction;

#[cfg(test)]
mod tests;

pub use maildrop::{MessageInfo, Uid};
pub use policy::Policy;
pub use server::{Action, AuthOutcome, CommitOutcome, Pop3Config, Server};
pub use stuff::write_message;
