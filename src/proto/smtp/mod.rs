//! The SMTP server side, sans-I/O (RFC 5321 with PIPELINING, SIZE, 8BITMIME,
//! ENHANCEDSTATUSCODES, the STARTTLS advertisement, AUTH PLAIN/LOGIN
//! (RFC 4954), CHUNKING and BINARYMIME (RFC 3030) and SMTPUTF8 (RFC 6531)).
//!
//! This module owns the protocol: framing command lines, parsing commands and
//! addresses, scanning DATA, choosing every reply, and the session state
//! machine that strings them together. It must not do I/O: no sockets, no
//! files, no clock reads, no glommio. A driver feeds bytes into
//! [`Server::handle_input`], writes [`Server::output`], performs the
//! [`Action`]s it polls (store a message, start TLS, check a password) and
//! reports back.
//!
//! It is self-contained (std, `thiserror` and `base64` only) so the relay
//! client, POP3 and the load generator can reuse its pieces ([`dot_stuff`],
//! [`Address`], [`sasl`]).
//!
//! Files, one concern each:
//! - `line`: CRLF command-line framing with a length limit.
//! - `address`: mailbox and path parsing (`<local@domain>`, `<>`, routes).
//! - `command`: one command line -> [`Command`] (unknown verbs are a value).
//! - `data`: the resumable DATA scanner and [`dot_stuff`] for the way out.
//! - `chunk`: the body of a message sent in BDAT chunks (RFC 3030).
//! - `sasl`: the AUTH exchange (PLAIN, LOGIN), protocol-neutral.
//! - `reply`: every reply the server sends, as a named constant.
//! - `envelope`: what a session hands over (envelope, sender and recipient
//!   policy).
//! - `interface`: the session's contract with its driver (config, actions,
//!   outcomes).
//! - `server`: the session state machine.

pub mod address;
pub mod chunk;
pub mod command;
pub mod data;
pub mod envelope;
pub mod interface;
pub mod line;
pub mod reply;
pub mod sasl;
pub mod server;

#[cfg(test)]
mod auth_limits_tests;
#[cfg(test)]
mod auth_tests;
#[cfg(test)]
mod bdat_tests;
#[cfg(test)]
mod filter_tests;
#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod pipeline_tests;
#[cfg(test)]
mod screen_tests;
#[cfg(test)]
mod server_tests;
#[cfg(test)]
mod testkit;

pub use address::{
    ascii_domain, parse_forward_path, parse_forward_path_utf8, parse_mailbox, parse_mailbox_utf8, parse_reverse_path,
    parse_reverse_path_utf8, Address, AddressError, ForwardPath, ReversePath,
};
pub use command::{parse_command, BodyType, Command, CommandError, MailFrom, RcptTo, Verb};
pub use data::{dot_stuff, dot_stuff_lines, dot_stuff_piece, next_piece, DataProgress, DataScanner, Piece};
pub use envelope::{
    AcceptedRecipient, Envelope, RcptDecision, RecipientPolicy, ScreenDecision, ScreenRequest, SenderDecision,
};
pub use interface::{Action, AuthMode, AuthOutcome, FilterRefusal, FilterStep, ServerConfig, StoreOutcome};
pub use line::{next_line, LineStatus};
pub use reply::Reply;
pub use sasl::Mechanism;
pub use server::Server;
