//! Sans-I/O protocol logic: SMTP reply parsing, the SMTP client session,
//! the sink's SMTP server session, the POP3 client session, dot-terminated
//! content and generated messages.
//!
//! Nothing in here touches a socket, a file or the clock; the drivers in
//! `smtp/`, `pop3/` and `sink/` do. Kept separate from ringmail's own
//! `proto/` on purpose: the load generator must keep working while the
//! server is being changed.

pub mod client;
pub mod dotdata;
pub mod http;
pub mod message;
pub mod pop3;
pub mod reply;
pub mod server;
