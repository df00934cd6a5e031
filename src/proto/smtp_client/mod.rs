//! The SMTP client side, sans-I/O: RFC 5321 as the relay speaks it to a
//! remote MX, with PIPELINING (RFC 2920), CHUNKING (RFC 3030), SIZE
//! (RFC 1870), STARTTLS (RFC 3207), 8BITMIME (RFC 6152) and enhanced
//! status codes (RFC 2034); and LMTP (RFC 2033) to a local store, with its
//! per-recipient replies after the body ([`Client::lmtp`]).
//!
//! This module owns the conversation: which command goes next, what each
//! reply means for each recipient, when the connection is done for. It must
//! not do I/O: no sockets, no TLS, no files, no clock. A driver (in `net/`)
//! owns the socket and the TLS session and writes the body straight from
//! the spool map when told to ([`Transmit::Body`], or [`Transmit::Chunk`]
//! for BDAT); it feeds replies to [`Client::handle_input`], writes
//! [`Client::poll_transmit`], acts on [`Client::poll_event`] and runs the
//! RFC 5321 §4.5.3.2 timers by [`Client::phase`], calling
//! [`Client::handle_timeout`] when one expires.
//!
//! The session, from the driver's side:
//! ```text
//! connect ─► handle_input(greeting) ─► EHLO ─► [StartTls ─► handshake ─► tls_established ─► EHLO]
//!         ─► Ready ─► send_message ─► MAIL/RCPT/DATA ─► Body ─► body_sent ─► Outcome ─► Ready ...
//!                                  (or MAIL/RCPT/BDAT ─► Chunk ─► body_sent ─► Outcome)
//!         (with PIPELINING: body_sent ─► ReadyBehind ─► send_message: the next MAIL/RCPT/DATA
//!          go before the Outcome of the one in flight; outcomes stay in order)
//!         ─► quit ─► QUIT ─► Closed          (or at any point: Outcome of the message in flight, Failed)
//! ```
//!
//! Files, one concern each:
//! - `reply`: reply lines -> [`Reply`], and [`classify`] of reply codes.
//! - `capabilities`: the EHLO keywords this client uses.
//! - `command`: every command line this client sends.
//! - `config`: [`ClientConfig`] and the [`TlsPolicy`].
//! - `message`: [`OutgoingMessage`] in, [`MessageOutcome`] out.
//! - `event`: [`Transmit`], [`Event`], [`Phase`] and the failure types.
//! - `transaction`: one MAIL transaction and its per-recipient outcome.
//! - `flight`: the transactions in flight, two when one is pipelined
//!   behind another's end of data.
//! - `client`: the session state machine.

mod capabilities;
mod client;
mod command;
mod config;
mod event;
mod flight;
mod message;
mod reply;
mod transaction;

#[cfg(test)]
mod tests;

pub use capabilities::Capabilities;
pub use client::Client;
pub use config::{ClientConfig, ConfigError, TlsPolicy};
pub use event::{ConnectionFailure, Event, FailureCause, Phase, SendError, Sent, Transmit};
pub use message::{needs_smtputf8, DsnParams, MessageOutcome, OutgoingMessage, RecipientOutcome};
pub use reply::{classify, Class, Reply, ReplyError, MAX_LINES, MAX_LINE_LEN};
