//! ringmail: a thread-per-core, durable SMTP relay and POP3 server for ISPs.
//!
//! The map (see also `../shared/DESIGN.md` in the steering repo):
//!
//! ```text
//! client -> net (listener, per-core, SO_REUSEPORT) -> proto::smtp (sans-I/O)
//!        -> shard::intake -> spool (append + group commit) -> 250
//!        -> mailbox owner core (local users)  |  queue owner core (remote domains)
//!                                                 -> outbound (MX, SMTP client) -> 2xx / 4xx retry / 5xx DSN
//! POP3 client -> net -> proto::pop3 (sans-I/O) -> mailbox owner (lock, listing)
//!             -> bodies straight from the spool maps -> QUIT: tombstones, synced
//! ```
//!
//! - [`config`]: the TOML contract and its validation.
//! - [`address_map`]: the address model (aliases, catch-all,
//!   sub-addressing, postmaster): one RCPT address to its mailboxes and
//!   remote targets; pure, built per config load.
//! - [`proto`]: protocol state machines; no I/O, no clock.
//! - [`spool`]: the append-only, memory-mapped, group-committed store and
//!   its durability contract.
//! - [`shard`]: one executor's world, the cross-core mesh, start-up.
//! - [`net`]: the glommio drivers.
//! - [`mailbox`], [`queue`]: per-core indexes owned by hash.
//! - [`outbound`]: the relay stage of one core: dispatcher, connections,
//!   MX plan, DNS, client TLS, DSNs and bounces.
//! - [`screen`]: client screening at RCPT (DNSBL/DNSWL, FCrDNS, HELO,
//!   greylisting): pure verdicts, the lookups, the greylist file.
//! - [`sender_auth`]: DKIM signing of relayed mail; SPF, DKIM, DMARC and ARC
//!   checks of inbound mail on a thread of their own.
//! - [`auth`]: the users file and Argon2id.
//! - [`clock`]: the wall clock (`now_ms`), read in one place.
//! - [`memory`]: giving freed memory back to the system after a burst.
//! - [`files`]: modes of what ringmail creates (0700/0600) and the one
//!   atomic rewrite that keeps a file's owner, group and mode.
//! - [`logging`]: log lines batched per executor.
//! - [`metrics`]: per-core counters and histograms, Prometheus text.
//! - [`web`]: the status page's embedded assets and dashboard document.
//! - [`startup`]: checks shared by `serve` and `check-config`, port probe,
//!   privilege drop.

pub mod address_map;
pub mod admin;
pub mod auth;
pub mod auth_cache;
pub mod clock;
pub mod config;
pub mod files;
pub mod http;
pub mod logging;
pub mod mailbox;
pub mod memory;
pub mod message;
pub mod metrics;
pub mod net;
pub mod outbound;
pub mod proto;
pub mod queue;
pub mod screen;
pub mod sender_auth;
pub mod shard;
pub mod spool;
pub mod startup;
pub mod suppression;
pub mod web;
