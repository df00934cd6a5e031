//! The SMTP server side, sans-I/O (RFC 5321 with PIPELINING, SIZE, 8BITMIME,
//! ENHANCEDSTATUSCODES and the STARTTLS advertisement).
//!
//! This module owns the protocol: framing command lines, parsing commands and
//! addresses, scanning DATA, choosing every reply, and the session state
//! machine that strings them together. It must not do I/O: no sockets, no
//! files, no clock reads, no glommio. A driver feeds bytes into
//! [`Server::handle_input`], writes [`Server::output`], performs the
//! [`Action`]s it polls (store a message, start TLS) and reports back.
//!
//! It is self-contained (std and `thiserror` only) so the relay client, POP3
//! and the load generator can reuse its pieces ([`dot_stuff`], [`Address`]).
//!
//! Files, one concern each:
//! - `line`: CRLF command-line framing with a length limit.
//! - `address`: mailbox and path parsing (`<local@domain>`, `<>`, routes).
//! - `command`: one command line -> [`Command`] (unknown verbs are a value).
//! - `data`: the resumable DATA scanner and [`dot_stuff`] for the way out.
//! - `reply`: every reply the server sends, as a named constant.
//! - `envelope`: what a session hands over (envelope, recipient policy).
//! - `server`: the session state machine.

pub mod address;
pub mod command;
pub mod data;
pub mod envelope;
pub mod line;
pub mod reply;
pub mod server;

#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod pipeline_tests;
#[cfg(test)]
mod server_tests;
#[cfg(test)]
mod testkit;

pub use address::{
    parse_forward_path, parse_mailbox, parse_reverse_path, Address, AddressError, ForwardPath, ReversePath,
};
pub use command::{parse_command, BodyType, Command, CommandError, MailFrom, RcptTo, Verb};
pub use data::{dot_stuff, DataProgress, DataScanner};
pub use envelope::{AcceptedRecipient, Envelope, RcptDecision, RecipientPolicy};
pub use line::{next_line, LineStatus};
pub use reply::Reply;
pub use server::{Action, Server, ServerConfig, StoreOutcome};
