//! The relay engine of one core: for the destination domains this core
//! owns, open connections (at most `relay.max_connections_per_domain`),
//! send the ready messages over them, and turn every recipient's reply
//! into its fate — delivered (tombstone), deferred (retry schedule), or
//! bounced (a DSN to the sender, then a tombstone).
//!
//! The queue itself ([`crate::queue`]) is pure; this module is the glue
//! that waits on sockets, DNS and the clock. Every outcome is classified
//! by the SMTP client's single exhaustive match; here each class has one
//! handler.

mod bounce;
mod conn;
mod dispatch;
pub mod tls;

pub use conn::{ConnectError, RelayConnection, Timeouts};
