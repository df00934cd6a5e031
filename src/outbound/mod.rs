//! The outbound stage of one core: everything between a message waiting in
//! this core's queue shard and its fate at the destination.
//!
//! It owns, for the destination domains this core owns (by hash, see
//! [`crate::shard::owner`]):
//! - `dispatch`: the timer that promotes due mail, connection tasks per
//!   destination (a recipient domain and egress pool) within the limits of
//!   its site, and the handler of every outcome — delivered (tombstone),
//!   deferred (retry schedule), bounced (a DSN to the sender, then a
//!   tombstone);
//! - [`shaping`]: the rules file (`relay.shaping`): which site a domain's
//!   mail goes to and that site's limits and backoff rules (pure: parsing
//!   and matching);
//! - [`sites`]: the server-wide state of each (site, source address):
//!   connections, pace, suspensions, AIMD rate; `held`: destinations
//!   waiting for their site on this core;
//! - `source`: the egress pools (`[[relay.pool]]`) and the bound socket;
//! - `slot`: a connection slot per destination, returned by `Drop`;
//! - [`lend`]: a hot destination's ready mail lent to a less busy core
//!   when its owner core is saturated;
//! - `pipeline`: the message loop of one open connection: ready mail given
//!   to it within its site's limits, pipelined behind the previous body
//!   when the server allows, outcomes applied in order;
//! - `conn`: one outbound SMTP or LMTP connection (TCP, or a Unix socket
//!   for LMTP), the glommio/rustls driver around the sans-I/O
//!   [`crate::proto::smtp_client::Client`];
//! - [`mx`]: where mail for a domain goes (routes, MX plan, null MX), and
//!   over which protocol ([`mx::Endpoint`]);
//! - [`dns`]: the core's stub resolver and its TTL cache;
//! - [`tls`]: the client TLS configs (`relay.tls`, `relay.ca_file`);
//! - [`tls_policy`]: which TLS each target requires and why;
//!   [`dane`]: TLSA matching and its certificate verifier; [`dane_mode`]:
//!   DANE on or off (the start-up DNSSEC probe) and the TLSA lookup;
//! - [`mta_sts`]: recipient domains' MTA-STS policies (RFC 8461), their
//!   durable cache (`data_dir/mta-sts/`) and their HTTPS fetch;
//! - [`tls_rpt`]: TLS report counts and the RFC 8460 report;
//! - `signing`: DKIM signatures made on the blocking thread in batches
//!   (RSA keys); `sign_ahead`: those of the messages next in line asked
//!   before their connections take them;
//! - [`dsn`] and `bounce`: the bytes of a DSN, and sending it back through
//!   the spool with the null sender (a bounce is never bounced);
//! - [`classify`]: the bounce class of every final failure (one table);
//! - `suppressed`: queued mail to a suppressed recipient bounces at
//!   dispatch (the list itself is `shard::suppress`);
//! - `testdns`: a loopback DNS server for tests, compiled only for this
//!   crate's tests and with the `test-support` feature (never shipped).
//!
//! It must not accept mail, write the spool except through the shard's one
//! writer (bounces enter like any other message), or touch the queue of a
//! domain another core owns. The queue itself ([`crate::queue`]) is pure;
//! this stage is the glue that waits on sockets, DNS and the clock. Every
//! outcome is classified by the SMTP client's single exhaustive match; here
//! each class has one handler.
//!
//! ## Who holds what
//! [`Outbound`] is the stage's own state, one per core, held by the shard
//! as `shard.outbound`: the resolver and its cache, the client TLS configs,
//! the process-wide DANE switch, and the connections idle between messages.
//! Its methods need nothing else. The dispatcher, the outcome handlers and
//! the bounces are still `impl Shard` blocks in this folder taking `self:
//! &Rc<Shard>`, on purpose: they read and write the queue shard, append to
//! the spool through the shard's one writer, count in the core's metrics,
//! watch the stop flag and send `Settle` over the mesh, all of which the
//! shard owns and shares with the SMTP path. Passing those one by one would
//! widen every call without making the ownership any clearer; they move
//! when the queue does.

pub(crate) mod bounce;
pub mod classify;
mod conn;
pub mod dane;
pub mod dane_mode;
mod dispatch;
pub mod dns;
pub mod dsn;
mod held;
mod idle;
pub mod lend;
pub mod mta_sts;
pub mod mx;
mod pipeline;
pub mod shaping;
mod sign_ahead;
mod signing;
pub mod sites;
mod slot;
pub mod source;
mod suppressed;
#[cfg(any(test, feature = "test-support"))]
pub mod testdns;
pub mod tls;
pub mod tls_policy;
pub mod tls_rpt;

pub use conn::{ConnectError, RelayConnection, Timeouts};

use crate::sender_auth::{NotSigned, Signed, Signers};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// How long one DNS try waits for its answer.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// The outbound stage's own state on one core (see the module doc for what
/// stays on the shard and why). Created once per executor; never shared
/// with another core.
pub struct Outbound {
    /// DNS for MX lookups, with this core's cache.
    pub resolver: dns::Resolver,
    /// Client TLS configs for relaying.
    pub tls: tls::RelayTls,
    /// MTA-STS policies of the domains this core relays to.
    pub sts: mta_sts::MtaSts,
    /// DANE on or off, for the whole process (`relay.dane`).
    pub dane: Arc<dane_mode::DaneSwitch>,
    /// Relay connections idle between messages, by destination: woken when
    /// mail for it is ready.
    idle: idle::IdleConnections,
    /// The server-wide site table: per (site, source address) connection
    /// counts, rates, suspensions, and the shaping rules in force.
    pub sites: Arc<sites::Sites>,
    /// Destinations held back by their site on this core.
    held: RefCell<held::Held>,
    /// How busy every core is (server-wide), and this core's loans.
    loads: Arc<lend::CoreLoads>,
    lender: lend::Lender,
    /// DKIM keys as last loaded; replaced when SIGHUP reloads them.
    signers: RefCell<Arc<Signers>>,
    signer_updates: crossbeam_channel::Receiver<Arc<Signers>>,
    /// RSA signatures waiting for the blocking thread, handed over in batches.
    batch_signer: Rc<signing::BatchSigner>,
    /// RSA signatures asked ahead for the shares next in line.
    sign_ahead: sign_ahead::SignAhead,
    /// This core's TLS report counts of today (RFC 8460).
    pub tls_report: RefCell<tls_rpt::Recorder>,
}

/// The outbound tables every core shares.
pub struct ServerWide {
    /// Per (site, source address) limits and state.
    pub sites: Arc<sites::Sites>,
    /// How busy every core is, for lending.
    pub loads: Arc<lend::CoreLoads>,
}

impl Outbound {
    /// How busy every core is, and the loans between them.
    pub(crate) fn loads(&self) -> &lend::CoreLoads {
        &self.loads
    }

    /// The stage for one core, asking `dns_server` for MX, address and
    /// TLSA records, with DANE as `dane` says, trusting `roots` where a
    /// certificate is checked, and keeping MTA-STS policies under
    /// `data_dir` (read here: call it at start-up).
    pub fn new(
        dns_server: SocketAddr,
        roots: Arc<rustls::RootCertStore>,
        dane: Arc<dane_mode::DaneSwitch>,
        data_dir: &Path,
        signers: Arc<Signers>,
        signer_updates: crossbeam_channel::Receiver<Arc<Signers>>,
        shared: ServerWide,
    ) -> Outbound {
        let ServerWide { sites, loads } = shared;
        Outbound {
            resolver: dns::Resolver::new(dns_server, DNS_TIMEOUT),
            tls: tls::RelayTls::with_roots(roots),
            sts: mta_sts::MtaSts::load(data_dir.join("mta-sts")),
            dane,
            idle: idle::IdleConnections::default(),
            sites,
            held: RefCell::default(),
            loads,
            lender: lend::Lender::default(),
            signers: RefCell::new(signers),
            signer_updates,
            batch_signer: Rc::default(),
            sign_ahead: sign_ahead::SignAhead::default(),
            tls_report: RefCell::default(),
        }
    }

    /// The MTA-STS policy in force for mail to `domain` over `targets`:
    /// looked up only when `relay.mta_sts` is on, no `[relay.tls_policy]`
    /// entry overrides it, and some target is an MX host (routes, fallback
    /// relays and literals are never subject to it).
    pub async fn sts_policy(
        &self,
        relay: &crate::config::Relay,
        domain: &str,
        targets: &[mx::Target],
    ) -> Option<mta_sts::StsPolicy> {
        let applies = relay.mta_sts
            && !relay.tls_policy.contains_key(&mx::normalize(domain))
            && targets.iter().any(|t| matches!(t.origin, mx::Origin::Mx { .. }));
        if !applies {
            return None;
        }
        self.sts.policy(&self.resolver, &self.tls.verified, relay.mta_sts_port, domain).await
    }

    /// The DKIM keys now in force (picks up a SIGHUP reload).
    pub fn signers(&self) -> Arc<Signers> {
        if let Some(newest) = self.signer_updates.try_iter().last() {
            *self.signers.borrow_mut() = newest;
        }
        self.signers.borrow().clone()
    }

    /// The DKIM-Signature fields of `result` (signing `msg`) to send in
    /// front of its stored message, logged; empty when it is not signed.
    fn dkim_fields(&self, msg: &crate::queue::QueuedMessage, result: Result<Signed, NotSigned>) -> Vec<u8> {
        match result {
            Ok(signed) => {
                if tracing::enabled!(tracing::Level::DEBUG) {
                    let by: Vec<String> = signed.by.iter().map(|(d, s)| format!("{d}/{s}")).collect();
                    tracing::debug!(queue_id = %msg.queue_id, dkim = "signed", by = %by.join(","), "signed");
                }
                signed.fields
            }
            Err(NotSigned::NoKey(domain)) => {
                tracing::debug!(queue_id = %msg.queue_id, dkim = "none", from_domain = %domain, "no DKIM key for the From domain");
                Vec::new()
            }
            Err(reason) => {
                tracing::info!(queue_id = %msg.queue_id, dkim = "none", reason = %reason, "relayed unsigned");
                Vec::new()
            }
        }
    }
}
