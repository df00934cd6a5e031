//! The outbound stage of one core: everything between a message waiting in
//! this core's queue shard and its fate at the destination.
//!
//! It owns, for the destination domains this core owns (by hash, see
//! [`crate::shard::owner`]):
//! - `dispatch`: the timer that promotes due mail, one connection task per
//!   destination (at most `relay.max_connections_per_domain`), and the
//!   handler of every outcome — delivered (tombstone), deferred (retry
//!   schedule), bounced (a DSN to the sender, then a tombstone);
//! - `conn`: one outbound SMTP connection, the glommio/rustls driver
//!   around the sans-I/O [`crate::proto::smtp_client::Client`];
//! - [`mx`]: where mail for a domain goes (routes, MX plan, null MX);
//! - [`dns`]: the core's stub resolver and its TTL cache;
//! - [`tls`]: the client TLS configs (`relay.tls`);
//! - [`dsn`] and `bounce`: the bytes of a DSN, and sending it back through
//!   the spool with the null sender (a bounce is never bounced);
//! - `testdns`: a loopback DNS server for tests, compiled only for this
//!   crate's tests and with the `test-support` feature (never shipped).
//!
//! It must not accept mail, write the spool except through the shard's one
//! writer (bounces enter like any other message), or touch the queue of a
//! domain another core owns. The queue itself ([`crate::queue`]) is pure;
//! this stage is the glue that waits on sockets, DNS and the clock. Every
//! outcome is classified by the SMTP client's single exhaustive match; here
//! each class has one handler.

mod bounce;
mod conn;
mod dispatch;
pub mod dns;
pub mod dsn;
pub mod mx;
#[cfg(any(test, feature = "test-support"))]
pub mod testdns;
pub mod tls;

pub use conn::{ConnectError, RelayConnection, Timeouts};
