//! Typed configuration: the TOML file, its defaults, and validation.
//!
//! Owns: the key names (a contract shared with every admin subcommand and the
//! later issues), the embedded default config, and resolving relative paths
//! against the config file's directory. It must not open sockets or spool
//! files; it only says what the operator asked for, or every reason the
//! request is wrong.

pub mod aliases;
mod checks;
mod dane;
pub mod filter;
pub mod pool;
mod routes;
pub use routes::{LmtpAddr, RouteTarget, RouteTargets, TargetError};
mod sender_auth;
mod units;

pub use filter::{CheckAction, Filter, ListAction, Milter, MilterAddr, MilterStage, OnError};
pub use pool::Pool;
/// The pool source type under the name the outbound stage uses (`Source`
/// in this module is the config file's origin).
pub use pool::Source as PoolSource;
pub use sender_auth::{parse_canonicalization, Dkim, DkimSign, DmarcPolicy, Verify, DEFAULT_HEADERS};
pub use units::Span;

pub use dane::DaneSetting;
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Where every subcommand looks for its config when given no `--config`.
pub const DEFAULT_PATH: &str = "/etc/ringmail/ringmail.toml";

/// Overrides [`DEFAULT_PATH`] (for tests, which must not depend on /etc).
pub const DEFAULT_PATH_ENV: &str = "RINGMAIL_DEFAULT_CONFIG";

/// The config file to use when none was given: [`DEFAULT_PATH`] (or the
/// file named by `$RINGMAIL_DEFAULT_CONFIG`) when it exists, else None for
/// the embedded default.
pub fn default_file() -> Option<PathBuf> {
    let path = default_path();
    path.exists().then_some(path)
}

/// [`DEFAULT_PATH`], or `$RINGMAIL_DEFAULT_CONFIG` when set.
pub fn default_path() -> PathBuf {
    std::env::var_os(DEFAULT_PATH_ENV).map_or_else(|| PathBuf::from(DEFAULT_PATH), PathBuf::from)
}

/// The config used when no `--config` is given and no default file
/// exists: loopback only, data under `./ringmail-data`, local domain
/// `localhost`.
pub const EMBEDDED_DEFAULT: &str = r#"# ringmail embedded default: loopback only, for trying it out.
hostname = "localhost"
data_dir = "ringmail-data"
local_domains = ["localhost"]

[listen]
smtp = "127.0.0.1:2525"
pop3 = "127.0.0.1:1110"

[relay]
permit_relay_from = ["127.0.0.0/8", "::1/128"]
"#;

/// Everything `ringmail serve` needs to know, with defaults applied and paths
/// made absolute (relative to the config file, or to the working directory
/// for the embedded default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Our name in the SMTP greeting, EHLO, Received: headers and bounces.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// Root of the spool and the default users file.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Executors to run, one per core. 0 (the default) = every CPU the
    /// process may use.
    #[serde(default)]
    pub cores: usize,
    /// The user to become after binding the listeners and starting the
    /// executors when started as root (its primary group and groups too;
    /// every capability is dropped). None: keep running as started (a
    /// warning when that is root).
    #[serde(default)]
    pub run_as: Option<String>,
    /// Domains whose recipients are delivered to local mailboxes.
    #[serde(default)]
    pub local_domains: Vec<String>,
    /// More local domains, one per line (`#` comments); read with the
    /// config (and again at SIGHUP).
    #[serde(default)]
    pub local_domains_file: Option<PathBuf>,
    /// `address:{ARGON2ID}hash` lines; default `<data_dir>/users`.
    #[serde(default)]
    pub users_file: Option<PathBuf>,
    /// Sub-addressing (Postfix's name): with `"+"`, `bob+tag@d` reaches
    /// `bob@d` when no user or alias `bob+tag@d` exists. Unset or empty: off.
    #[serde(default)]
    pub recipient_delimiter: Option<String>,
    /// Where `postmaster@` and `abuse@` of every local domain (and the bare
    /// `<postmaster>`) are delivered; unset: `postmaster@<first local domain>`.
    #[serde(default)]
    pub postmaster: Option<String>,
    /// `"user@domain"` or `"@domain"` (catch-all) to a target or a list of
    /// targets, local or remote.
    #[serde(default)]
    pub aliases: BTreeMap<String, aliases::AliasValue>,
    /// More aliases in the `[aliases]` format (TOML `key = value` lines);
    /// default `<data_dir>/aliases` when that file exists.
    #[serde(default)]
    pub aliases_file: Option<PathBuf>,
    /// Built from the keys above and both files at load: what RCPT checks
    /// ask. Shared by every core's copy of the config.
    #[serde(skip)]
    pub address_map: std::sync::Arc<crate::address_map::AddressMap>,
    /// Largest message accepted, in bytes (advertised as SIZE).
    #[serde(default = "default_max_message_size")]
    pub max_message_size: u64,
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub tls: Option<Tls>,
    #[serde(default)]
    pub relay: Relay,
    #[serde(default)]
    pub spool: SpoolConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub runtime: Runtime,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub retention: Retention,
    #[serde(default)]
    pub dkim: Dkim,
    #[serde(default)]
    pub verify: Verify,
    /// `[filter]`: milters (and later DNSBL, greylisting) in front of the
    /// spool.
    #[serde(default)]
    pub filter: Filter,
    /// `[http]`: the HTTP admin and injection API on `[listen] http`.
    #[serde(default)]
    pub http: HttpApi,
}

/// `[http]`: the API served on `[listen] http` (see [`crate::http`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpApi {
    /// `SCOPE TOKEN` lines (`read`, `admin`, `inject`); default
    /// `<data_dir>/http-tokens`. Refused when group- or world-readable;
    /// re-read at SIGHUP.
    #[serde(default)]
    pub tokens_file: Option<PathBuf>,
    /// Serve HTTPS on `[listen] http` with the `[tls]` certificate.
    #[serde(default)]
    pub tls: bool,
    /// A request must arrive whole (head and body) within this of its
    /// first byte; a silent connection is closed after it too.
    #[serde(default = "default_http_request_timeout")]
    pub request_timeout: Span,
}

impl Default for HttpApi {
    fn default() -> HttpApi {
        HttpApi { tokens_file: None, tls: false, request_timeout: default_http_request_timeout() }
    }
}

fn default_http_request_timeout() -> Span {
    Span::secs(30)
}

/// `[retention]`: how long mail stays in local mailboxes and how much of
/// it. The top-level keys apply to everyone; `[retention.domains."d"]` and
/// `[retention.users."a@d"]` override them key by key (user over domain
/// over global). Enforced by the core owning each mailbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// The global level (see [`RetentionPolicy`] for each key).
    pub delete_after_retrieve: Option<bool>,
    pub max_age: Option<Span>,
    pub max_mailbox_size: Option<u64>,
    pub login_delay: Option<Span>,
    /// How often each core sweeps its mailboxes for expired mail.
    #[serde(default = "default_retention_interval")]
    pub check_interval: Span,
    #[serde(default)]
    pub domains: BTreeMap<String, RetentionPolicy>,
    #[serde(default)]
    pub users: BTreeMap<String, RetentionPolicy>,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            delete_after_retrieve: None,
            max_age: None,
            max_mailbox_size: None,
            login_delay: None,
            check_interval: default_retention_interval(),
            domains: BTreeMap::new(),
            users: BTreeMap::new(),
        }
    }
}

fn default_retention_interval() -> Span {
    Span::secs(60)
}

/// One level of retention settings; unset keys fall through to the next
/// level.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Delete messages a POP3 client retrieved (RETR) at its QUIT, even
    /// without DELE (default false: POP3 clients decide).
    pub delete_after_retrieve: Option<bool>,
    /// Delete messages older than this ("30d").
    pub max_age: Option<Span>,
    /// Octets a mailbox may hold; while over it, RCPT gets 452 4.2.2.
    pub max_mailbox_size: Option<u64>,
    /// The least time POP3 clients should leave between logins, announced
    /// as LOGIN-DELAY in CAPA (RFC 2449 §6.5). Announced only: logins
    /// sooner are not refused (the login cache makes them cheap).
    pub login_delay: Option<Span>,
}

/// The settings in force for one user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EffectiveRetention {
    pub delete_after_retrieve: bool,
    pub max_age: Option<std::time::Duration>,
    pub max_mailbox_size: Option<u64>,
    pub login_delay: Option<std::time::Duration>,
}

impl Retention {
    /// The policy for `user` (a lowercase address).
    pub fn for_user(&self, user: &str) -> EffectiveRetention {
        let domain = user.rsplit_once('@').map_or("", |(_, d)| d);
        let global = self.global();
        let levels = [self.users.get(user), self.domains.get(domain), Some(&global)];
        let pick = |f: &dyn Fn(&RetentionPolicy) -> bool| levels.iter().flatten().find(|p| f(p)).copied();
        EffectiveRetention {
            delete_after_retrieve: pick(&|p| p.delete_after_retrieve.is_some())
                .and_then(|p| p.delete_after_retrieve)
                .unwrap_or(false),
            max_age: pick(&|p| p.max_age.is_some()).and_then(|p| p.max_age).map(Span::get),
            max_mailbox_size: pick(&|p| p.max_mailbox_size.is_some()).and_then(|p| p.max_mailbox_size),
            login_delay: pick(&|p| p.login_delay.is_some()).and_then(|p| p.login_delay).map(Span::get),
        }
    }

    /// The top level alone: what applies to a user no level names.
    pub fn site(&self) -> EffectiveRetention {
        let g = self.global();
        EffectiveRetention {
            delete_after_retrieve: g.delete_after_retrieve.unwrap_or(false),
            max_age: g.max_age.map(Span::get),
            max_mailbox_size: g.max_mailbox_size,
            login_delay: g.login_delay.map(Span::get),
        }
    }

    /// Whether a domain or user level sets something `f` looks for (so a
    /// user's policy may differ from the site's).
    pub fn varies(&self, f: impl Fn(&RetentionPolicy) -> bool) -> bool {
        self.domains.values().chain(self.users.values()).any(f)
    }

    fn global(&self) -> RetentionPolicy {
        RetentionPolicy {
            delete_after_retrieve: self.delete_after_retrieve,
            max_age: self.max_age,
            max_mailbox_size: self.max_mailbox_size,
            login_delay: self.login_delay,
        }
    }

    /// Whether any level sets something `f` looks for (so the sweep and
    /// the quota bookkeeping know whether they have work).
    pub fn any(&self, f: impl Fn(&RetentionPolicy) -> bool) -> bool {
        f(&self.global()) || self.domains.values().any(&f) || self.users.values().any(&f)
    }

    /// Keys are addresses and domains: compare them lowercase.
    fn normalize(&mut self) {
        self.domains = std::mem::take(&mut self.domains)
            .into_iter()
            .map(|(k, v)| (k.trim_end_matches('.').to_ascii_lowercase(), v))
            .collect();
        self.users = std::mem::take(&mut self.users).into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    }
}

/// `[log]`: how ringmail writes its log (to stderr; journald or a file
/// redirect keep it).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// "text" (one line per event, key=value fields) or "json" (one
    /// object per line).
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter ("info", "debug", "ringmail=debug"); the
    /// RINGMAIL_LOG environment variable overrides it.
    #[serde(default)]
    pub level: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Executor tuning (see tuning/README.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// io_uring buffer memory per executor, in bytes. glommio locks
    /// 3 x this per core, so an unprivileged service needs LimitMEMLOCK
    /// above cores x 3 x io_memory.
    #[serde(default = "default_io_memory")]
    pub io_memory: usize,
    /// On SIGTERM: how long sessions inside DATA (and relay connections
    /// inside a message) may take to finish before the server exits.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: Span,
}

impl Default for Runtime {
    fn default() -> Runtime {
        Runtime { io_memory: default_io_memory(), drain_timeout: default_drain_timeout() }
    }
}

fn default_drain_timeout() -> Span {
    Span::secs(30)
}

fn default_io_memory() -> usize {
    10 << 20
}

/// Listening addresses; each is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    pub smtp: Option<SocketAddr>,
    pub submission: Option<SocketAddr>,
    pub smtps: Option<SocketAddr>,
    pub pop3: Option<SocketAddr>,
    pub pop3s: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    /// The HTTP admin and injection API (and /metrics); off by default.
    pub http: Option<SocketAddr>,
    /// Load balancers whose connections start with a PROXY protocol
    /// header (v1 or v2) naming the real client; reloaded on SIGHUP. A
    /// listed peer without one, or an unlisted peer sending one, is cut.
    #[serde(default)]
    pub proxy_from: Vec<IpNet>,
    /// Spread sessions evenly over the cores: a core that accepts a
    /// connection while it has more sessions of that protocol than the
    /// least busy core (by more than an eighth) hands it over (see
    /// `net::balance`). Reloaded on SIGHUP.
    #[serde(default = "default_true")]
    pub balance: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relay {
    /// Clients in these networks may relay to any domain without AUTH.
    #[serde(default = "default_permit_relay_from")]
    pub permit_relay_from: Vec<IpNet>,
    /// Domain -> "host:port", "lmtp:unix:/path" or "lmtp:host:port" (or a
    /// failover list of them) overriding DNS; "*" is a smarthost for all.
    /// The grammar and its rules: the module docs of `config::routes`.
    #[serde(default)]
    pub routes: BTreeMap<String, RouteTargets>,
    /// Relays tried, in order, after every MX host of a domain failed to
    /// take a connection (Postfix's `smtp_fallback_relay`); not used for
    /// `routes` destinations.
    #[serde(default)]
    pub fallback_relay: Vec<String>,
    /// DNS resolver "ip" or "ip:port"; default: first nameserver in
    /// /etc/resolv.conf.
    #[serde(default)]
    pub dns_server: Option<String>,
    /// Waits between delivery attempts; the last one repeats.
    #[serde(default = "default_retry")]
    pub retry: Vec<Span>,
    /// Give up and bounce after this long in the queue.
    #[serde(default = "default_max_queue_lifetime")]
    pub max_queue_lifetime: Span,
    /// Send one delay notice after this long ("0s" = never).
    #[serde(default = "default_delay_warning")]
    pub delay_warning: Span,
    /// STARTTLS to remote servers: the default policy, below DANE,
    /// MTA-STS and `tls_policy` entries (see [`crate::outbound::tls_policy`]).
    #[serde(default)]
    pub tls: RelayTlsPolicy,
    /// Per-destination TLS policy (Postfix's `smtp_tls_policy_maps`):
    /// domain (A-label, lower case) -> level. An entry wins over DANE,
    /// MTA-STS and `tls`.
    #[serde(default)]
    pub tls_policy: BTreeMap<String, TlsLevel>,
    /// Honour recipient domains' MTA-STS policies (RFC 8461; see
    /// [`crate::outbound::mta_sts`]).
    #[serde(default = "default_true")]
    pub mta_sts: bool,
    /// Port of the HTTPS servers MTA-STS policies are fetched from. Always
    /// 443 in production; tests on loopback use another.
    #[serde(default = "default_mta_sts_port")]
    pub mta_sts_port: u16,
    /// PEM bundle of the roots that certificate checks trust (`verify`,
    /// MTA-STS `enforce` sessions and policy fetches), instead of the
    /// built-in webpki roots; relative to the config file. Read at start
    /// only.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// DANE (RFC 7672) for MX hosts: "auto" (on when `dns_server` sets AD
    /// on `dnssec_probe`), true or false. Start-up only.
    #[serde(default)]
    pub dane: DaneSetting,
    /// A DNSSEC-signed name whose SOA answer must carry AD for `dane =
    /// "auto"` to turn DANE on. Start-up only.
    #[serde(default = "dane::default_dnssec_probe")]
    pub dnssec_probe: String,
    /// Simultaneous connections to one destination domain. The default
    /// of `max_connections` in the shaping rules' `[site.default]` (a rule
    /// overrides it).
    #[serde(default = "default_max_connections_per_domain")]
    pub max_connections_per_domain: usize,
    /// Messages sent over one connection before it is closed. The default
    /// of `max_deliveries_per_connection` in the shaping rules'
    /// `[site.default]` (a rule overrides it).
    #[serde(default = "default_max_messages_per_connection")]
    pub max_messages_per_connection: usize,
    /// Message shares per core in the active window (ready or being
    /// sent), like Postfix's `qmgr_message_active_limit`. The rest wait in
    /// the compact deferred index, their envelopes read back from the
    /// spool when their turn comes; fresh and retried mail take turns.
    #[serde(default = "default_active_limit")]
    pub active_limit: usize,
    /// Lending (see `outbound::lend`): a destination with more than this
    /// many shares ready on the core that owns it, while that core is busy
    /// for at least `lend_busy` of its time (its executor or its signing
    /// thread) and the site takes mail, has batches of them lent to a less
    /// busy core, which relays them over its own connections (the site's
    /// limits are server-wide). 0: never.
    #[serde(default = "default_lend_after")]
    pub lend_after: usize,
    /// The busy share (0 to 1) from which the owner core of a destination
    /// it is behind on lends.
    #[serde(default = "default_lend_busy")]
    pub lend_busy: f64,
    /// How long an idle relay connection waits for more mail to its
    /// destination before QUIT (Postfix's connection cache time: 2s).
    #[serde(default = "default_connection_idle")]
    pub connection_idle: Span,
    /// Port of MX hosts found in DNS. Always 25 in production; tests on
    /// loopback use another.
    #[serde(default = "default_mx_port")]
    pub mx_port: u16,
    #[serde(default)]
    pub timeouts: RelayTimeouts,
    /// How long a recipient that hard-bounced (or that the operator added)
    /// stays on the suppression list. Applies to entries made from now on.
    #[serde(default = "default_suppression_expiry")]
    pub suppression_expiry: Span,
    /// The shaping rules file (per-site limits and backoff, see
    /// [`crate::outbound::shaping`]); relative to the config file. The
    /// path is read at start only; the file is re-read at SIGHUP. None:
    /// every site gets `max_connections_per_domain` and
    /// `max_messages_per_connection`.
    #[serde(default)]
    pub shaping: Option<PathBuf>,
    /// Egress pools: source addresses for outbound connections (start-up
    /// only). Empty: the system picks the source address.
    #[serde(default)]
    pub pool: Vec<Pool>,
    /// Envelope sender domain (compared lower-case) -> pool name.
    #[serde(default)]
    pub pool_by_sender_domain: BTreeMap<String, String>,
    /// The pool for senders not in `pool_by_sender_domain` (and for the
    /// null sender). None: no binding for them.
    #[serde(default)]
    pub default_pool: Option<String>,
}

/// `relay.tls`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayTlsPolicy {
    /// STARTTLS when offered, any certificate; plain text otherwise.
    #[default]
    Opportunistic,
    /// STARTTLS or no delivery (deferred); any certificate.
    Required,
    /// STARTTLS with the certificate chain and MX name checked.
    Verify,
}

/// A `[relay.tls_policy]` level, as Postfix names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsLevel {
    /// Never STARTTLS, even when offered.
    None,
    /// STARTTLS when offered, any certificate (opportunistic).
    May,
    /// STARTTLS or no delivery; any certificate.
    Encrypt,
    /// STARTTLS with a PKIX-verified chain naming the MX host.
    Verify,
    /// Only to MX hosts with usable DNSSEC-validated TLSA records, and
    /// only with a certificate that matches them.
    DaneOnly,
}

impl TlsLevel {
    /// The word the config and the logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsLevel::None => "none",
            TlsLevel::May => "may",
            TlsLevel::Encrypt => "encrypt",
            TlsLevel::Verify => "verify",
            TlsLevel::DaneOnly => "dane-only",
        }
    }
}

impl From<RelayTlsPolicy> for TlsLevel {
    /// `relay.tls` as a level: opportunistic = may, required = encrypt,
    /// verify = verify.
    fn from(p: RelayTlsPolicy) -> TlsLevel {
        match p {
            RelayTlsPolicy::Opportunistic => TlsLevel::May,
            RelayTlsPolicy::Required => TlsLevel::Encrypt,
            RelayTlsPolicy::Verify => TlsLevel::Verify,
        }
    }
}

/// RFC 5321 §4.5.3.2 client timeouts (`[relay.timeouts]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayTimeouts {
    #[serde(default = "default_connect_timeout")]
    pub connect: Span,
    #[serde(default = "default_5m")]
    pub greeting: Span,
    /// EHLO, MAIL, RCPT, RSET, QUIT.
    #[serde(default = "default_5m")]
    pub command: Span,
    #[serde(default = "default_2m")]
    pub data_init: Span,
    #[serde(default = "default_3m")]
    pub data_block: Span,
    #[serde(default = "default_10m")]
    pub data_done: Span,
}

impl Default for RelayTimeouts {
    fn default() -> RelayTimeouts {
        RelayTimeouts {
            connect: default_connect_timeout(),
            greeting: default_5m(),
            command: default_5m(),
            data_init: default_2m(),
            data_block: default_3m(),
            data_done: default_10m(),
        }
    }
}

fn default_connect_timeout() -> Span {
    Span::secs(30)
}
fn default_2m() -> Span {
    Span::secs(120)
}
fn default_3m() -> Span {
    Span::secs(180)
}
fn default_5m() -> Span {
    Span::secs(300)
}
fn default_10m() -> Span {
    Span::secs(600)
}
fn default_delay_warning() -> Span {
    Span::secs(4 * 3600)
}
fn default_max_connections_per_domain() -> usize {
    20
}
fn default_connection_idle() -> Span {
    Span::secs(2)
}
fn default_max_messages_per_connection() -> usize {
    100
}
fn default_active_limit() -> usize {
    crate::queue::DEFAULT_ACTIVE_LIMIT
}
fn default_lend_after() -> usize {
    500
}
fn default_lend_busy() -> f64 {
    0.9
}

fn default_mx_port() -> u16 {
    25
}
fn default_mta_sts_port() -> u16 {
    443
}

impl Default for Relay {
    fn default() -> Relay {
        Relay {
            permit_relay_from: default_permit_relay_from(),
            routes: BTreeMap::new(),
            fallback_relay: Vec::new(),
            dns_server: None,
            retry: default_retry(),
            max_queue_lifetime: default_max_queue_lifetime(),
            delay_warning: default_delay_warning(),
            tls: RelayTlsPolicy::default(),
            tls_policy: BTreeMap::new(),
            mta_sts: true,
            mta_sts_port: default_mta_sts_port(),
            ca_file: None,
            dane: DaneSetting::default(),
            dnssec_probe: dane::default_dnssec_probe(),
            max_connections_per_domain: default_max_connections_per_domain(),
            max_messages_per_connection: default_max_messages_per_connection(),
            active_limit: default_active_limit(),
            lend_after: default_lend_after(),
            lend_busy: default_lend_busy(),
            connection_idle: default_connection_idle(),
            mx_port: default_mx_port(),
            timeouts: RelayTimeouts::default(),
            suppression_expiry: default_suppression_expiry(),
            shaping: None,
            pool: Vec::new(),
            pool_by_sender_domain: BTreeMap::new(),
            default_pool: None,
        }
    }
}

fn default_suppression_expiry() -> Span {
    Span::secs(30 * 86400)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Size of each fixed, zero-filled segment file, in bytes. A message
    /// record must fit in one segment.
    #[serde(default = "default_segment_size")]
    pub segment_size: u64,
    /// Cap on the bytes of all spool segments; at or over it new mail gets
    /// 452 4.3.1 until deliveries and deletions free segments. None: no cap.
    #[serde(default)]
    pub max_size: Option<u64>,
    /// Free disk to keep: below it new mail gets 452 4.3.1. Default: one
    /// segment (a core must be able to start its next segment).
    #[serde(default)]
    pub min_free: Option<u64>,
    /// Compact a segment (copy its live records forward, then delete it)
    /// when its live records fill less than this percentage of it; 0
    /// turns compaction off.
    #[serde(default = "default_compact_below")]
    pub compact_below: u8,
    /// How often each core looks for a segment to compact.
    #[serde(default = "default_compact_interval")]
    pub compact_interval: Span,
    /// How often each core writes a checkpoint of its spool directory (when
    /// anything was appended since the last), so that a restart reads the
    /// checkpoint plus the log after it instead of every segment. One is
    /// also written at a clean stop. 0 turns the periodic ones off.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: Span,
}

fn default_compact_below() -> u8 {
    25
}
fn default_compact_interval() -> Span {
    Span::secs(60)
}
fn default_checkpoint_interval() -> Span {
    Span::secs(60)
}

impl Default for SpoolConfig {
    fn default() -> SpoolConfig {
        SpoolConfig {
            segment_size: default_segment_size(),
            max_size: None,
            min_free: None,
            compact_below: default_compact_below(),
            compact_interval: default_compact_interval(),
            checkpoint_interval: default_checkpoint_interval(),
        }
    }
}

impl SpoolConfig {
    /// Free bytes below which the spool counts as full.
    pub fn min_free(&self) -> u64 {
        self.min_free.unwrap_or(self.segment_size)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Recipients per message (more get 452 4.5.3).
    #[serde(default = "default_max_recipients")]
    pub max_recipients: usize,
    /// Bad commands before an SMTP session is closed with 421.
    #[serde(default = "default_max_errors")]
    pub max_errors: u32,
    /// SMTP idle timeout (RFC 5321 §4.5.3.2 says at least 5 minutes).
    #[serde(default = "default_smtp_timeout")]
    pub smtp_idle_timeout: Span,
    /// POP3 idle timeout (RFC 1939: at least 10 minutes).
    #[serde(default = "default_pop3_timeout")]
    pub pop3_idle_timeout: Span,
    /// Concurrent connections per core (all listeners); more are closed
    /// at once with 421 / -ERR.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Concurrent connections from one client IP per core.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// A TLS handshake must finish within this.
    #[serde(default = "default_tls_handshake_timeout")]
    pub tls_handshake_timeout: Span,
    /// SMTP commands in one session before 421 and close.
    #[serde(default = "default_max_commands")]
    pub max_commands: u32,
    /// Messages in one SMTP session before 421 and close.
    #[serde(default = "default_max_messages_per_session")]
    pub max_messages_per_connection: u32,
    /// Messages per minute from one client IP (per core); 0 = no limit.
    /// Over it MAIL gets 450 4.7.1.
    #[serde(default)]
    pub max_messages_per_minute_per_ip: u32,
    /// Messages per minute from one authenticated user (per core); 0 = no
    /// limit.
    #[serde(default)]
    pub max_messages_per_minute_per_user: u32,
    /// A whole command line (SMTP or POP3) must arrive within this of its
    /// first byte, however often bytes trickle in (RFC 5321 §4.5.3.2's
    /// 5 minutes per command).
    #[serde(default = "default_command_deadline")]
    pub command_deadline: Span,
    /// Bytes per second a client must average over DATA, after a 10 s
    /// grace; slower gets 421 4.4.2. 0 = no minimum.
    #[serde(default = "default_min_data_rate")]
    pub min_data_rate: u64,
    /// Longest SMTP or POP3 session, busy or not.
    #[serde(default = "default_max_session_time")]
    pub max_session_time: Span,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_recipients: default_max_recipients(),
            max_errors: default_max_errors(),
            smtp_idle_timeout: default_smtp_timeout(),
            pop3_idle_timeout: default_pop3_timeout(),
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_connections_per_ip(),
            tls_handshake_timeout: default_tls_handshake_timeout(),
            max_commands: default_max_commands(),
            max_messages_per_connection: default_max_messages_per_session(),
            max_messages_per_minute_per_ip: 0,
            max_messages_per_minute_per_user: 0,
            command_deadline: default_command_deadline(),
            min_data_rate: default_min_data_rate(),
            max_session_time: default_max_session_time(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Every failed login is answered only after this delay, whether the
    /// user exists or not (Dovecot's auth_failure_delay).
    #[serde(default = "default_failure_delay")]
    pub failure_delay: Span,
    /// Failed logins on one POP3 connection before it is closed.
    #[serde(default = "default_max_failures_per_connection")]
    pub max_failures_per_connection: u32,
    /// Accept passwords over plain connections from loopback (as Dovecot
    /// treats localhost as secured). Elsewhere only after STARTTLS/STLS or
    /// on implicit TLS.
    #[serde(default = "default_true")]
    pub plaintext_on_loopback: bool,
    /// An authenticated user may send only as their own address.
    #[serde(default = "default_true")]
    pub sender_must_match: bool,
    /// Failed logins from one client IP within `failure_window`, on the
    /// whole server, before further attempts from it are refused (454
    /// 4.7.0 / -ERR [AUTH]).
    #[serde(default = "default_max_auth_failures")]
    pub max_auth_failures: u32,
    /// Failed logins for one user within `failure_window`, from any
    /// address, before further attempts at that user are refused: slows a
    /// guesser spread over many addresses. Higher than the per-address
    /// limit, because the real user is locked out too while it holds.
    #[serde(default = "default_max_auth_failures_per_user")]
    pub max_auth_failures_per_user: u32,
    #[serde(default = "default_failure_window")]
    pub failure_window: Span,
    /// How long a right password is remembered (Dovecot's `auth_cache_ttl`),
    /// so that polling clients skip Argon2id; see [`crate::auth_cache`].
    /// A changed or deleted user is forgotten at once, whatever this says.
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl: Span,
    /// How long a wrong password is remembered. A remembered refusal still
    /// counts as a failure and still waits `failure_delay`.
    #[serde(default = "default_cache_negative_ttl")]
    pub cache_negative_ttl: Span,
    /// Entries in the login cache, per core; 0 turns it off.
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            failure_delay: default_failure_delay(),
            max_failures_per_connection: default_max_failures_per_connection(),
            plaintext_on_loopback: true,
            sender_must_match: true,
            max_auth_failures: default_max_auth_failures(),
            max_auth_failures_per_user: default_max_auth_failures_per_user(),
            failure_window: default_failure_window(),
            cache_ttl: default_cache_ttl(),
            cache_negative_ttl: default_cache_negative_ttl(),
            cache_size: default_cache_size(),
        }
    }
}

fn default_hostname() -> String {
    system_hostname().unwrap_or_else(|| "localhost".to_string())
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("ringmail-data")
}
fn default_max_message_size() -> u64 {
    10 * 1024 * 1024
}
fn default_permit_relay_from() -> Vec<IpNet> {
    vec!["127.0.0.0/8".parse().expect("literal"), "::1/128".parse().expect("literal")]
}
fn default_retry() -> Vec<Span> {
    [60, 300, 900, 1800, 3600, 7200, 14400].into_iter().map(Span::secs).collect()
}
fn default_max_queue_lifetime() -> Span {
    Span::secs(5 * 86400)
}
fn default_segment_size() -> u64 {
    64 * 1024 * 1024
}
fn default_max_recipients() -> usize {
    1000
}
fn default_max_errors() -> u32 {
    20
}
fn default_smtp_timeout() -> Span {
    Span::secs(300)
}
fn default_pop3_timeout() -> Span {
    Span::secs(600)
}
fn default_failure_delay() -> Span {
    Span::secs(2)
}
fn default_max_failures_per_connection() -> u32 {
    10
}
fn default_true() -> bool {
    true
}
fn default_command_deadline() -> Span {
    Span::secs(300)
}
fn default_min_data_rate() -> u64 {
    1024
}
fn default_max_session_time() -> Span {
    Span::secs(3600)
}
fn default_max_auth_failures_per_user() -> u32 {
    50
}
fn default_max_auth_failures() -> u32 {
    10
}
fn default_failure_window() -> Span {
    Span::secs(600)
}
fn default_cache_ttl() -> Span {
    Span::secs(3600)
}
fn default_cache_negative_ttl() -> Span {
    Span::secs(30)
}
fn default_cache_size() -> usize {
    10_000
}
fn default_max_connections() -> usize {
    10_000
}
fn default_max_connections_per_ip() -> usize {
    100
}
fn default_max_commands() -> u32 {
    100_000
}
fn default_max_messages_per_session() -> u32 {
    10_000
}
fn default_tls_handshake_timeout() -> Span {
    Span::secs(30)
}

fn system_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    (!name.is_empty()).then_some(name)
}

/// Why a config could not be used. The message always names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    /// Syntax errors and unknown keys; toml's message carries line and column.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// Every semantic problem found, one per line.
    #[error("{path}: invalid configuration:\n  {}", problems.join("\n  "))]
    Invalid { path: PathBuf, problems: Vec<String> },
}

/// Where a config came from; used for messages and for relative paths.
#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    Embedded,
}

impl Source {
    fn display_path(&self) -> PathBuf {
        match self {
            Source::File(p) => p.clone(),
            Source::Embedded => PathBuf::from("<embedded default config>"),
        }
    }
}

impl Config {
    /// Load `path`, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|error| ConfigError::Read { path: p.to_path_buf(), error })?;
                Config::parse(&text, Source::File(p.to_path_buf()))
            }
            None => Config::parse(EMBEDDED_DEFAULT, Source::Embedded),
        }
    }

    /// Parse and validate `text`; relative paths are resolved against the
    /// directory of `source` (the working directory for the embedded one).
    pub fn parse(text: &str, source: Source) -> Result<Config, ConfigError> {
        let path = source.display_path();
        let mut cfg: Config =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.clone(), message: e.to_string() })?;
        let base = match &source {
            Source::File(p) => p.parent().map(Path::to_path_buf).unwrap_or_default(),
            Source::Embedded => PathBuf::new(),
        };
        let aliases_file_named = cfg.aliases_file.is_some();
        cfg.resolve_paths(&base);
        cfg.retention.normalize();
        cfg.relay.normalize();
        // The address map first: the route checks ask it which domains are local.
        let mut map_problems = Vec::new();
        cfg.build_address_map(aliases_file_named, &mut map_problems);
        let mut problems = cfg.problems();
        problems.extend(map_problems);
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid { path, problems })
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        let abs = |p: &Path| -> PathBuf {
            let joined = if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
            std::path::absolute(&joined).unwrap_or(joined)
        };
        self.data_dir = abs(&self.data_dir);
        self.users_file = Some(match &self.users_file {
            Some(p) => abs(p),
            None => self.data_dir.join("users"),
        });
        if let Some(tls) = &mut self.tls {
            tls.cert = abs(&tls.cert);
            tls.key = abs(&tls.key);
        }
        // The spelling parsed addresses have (A-labels): `例子.test` in the
        // config matches `<用户@例子.test>` and `<用户@xn--fsqu00a.test>`.
        self.local_domains = self
            .local_domains
            .iter()
            .map(|d| {
                let d = d.trim_end_matches('.');
                crate::proto::smtp::ascii_domain(d).unwrap_or_else(|_| d.to_ascii_lowercase())
            })
            .collect();
        self.aliases_file = Some(match &self.aliases_file {
            Some(p) => abs(p),
            None => self.data_dir.join("aliases"),
        });
        self.local_domains_file = self.local_domains_file.as_deref().map(abs);
        self.http.tokens_file = Some(match &self.http.tokens_file {
            Some(p) => abs(p),
            None => self.data_dir.join("http-tokens"),
        });
        self.relay.shaping = self.relay.shaping.as_deref().map(abs);
        self.relay.ca_file = self.relay.ca_file.as_deref().map(abs);
        self.dkim.resolve(abs);
    }

    /// Every semantic problem, each naming the key.
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.cores > 256 {
            p.push(format!("cores = {}: at most 256 executors are supported", self.cores));
        }
        if self.hostname.is_empty() || self.hostname.contains(char::is_whitespace) {
            p.push(format!("hostname = {:?}: must be a non-empty name without spaces", self.hostname));
        }
        for d in &self.local_domains {
            if d.is_empty() || d.contains(|c: char| c.is_whitespace() || c == '@') {
                p.push(format!("local_domains: {d:?} is not a domain name"));
            }
        }
        if self.max_message_size < 1024 {
            p.push(format!("max_message_size = {}: must be at least 1024 bytes", self.max_message_size));
        }
        // A record holds the envelope and a trace header besides the body.
        let needed = self.max_message_size + 64 * 1024;
        if self.spool.segment_size < needed {
            p.push(format!(
                "spool.segment_size = {}: must be at least max_message_size + 64 KiB ({needed}) so that any message fits in one segment",
                self.spool.segment_size
            ));
        }
        if !self.spool.segment_size.is_multiple_of(4096) {
            p.push(format!("spool.segment_size = {}: must be a multiple of 4096", self.spool.segment_size));
        }
        if self.spool.segment_size > u32::MAX as u64 {
            p.push(format!("spool.segment_size = {}: must be below 4 GiB", self.spool.segment_size));
        }
        let l = &self.listen;
        if l.smtp.is_none() && l.submission.is_none() && l.smtps.is_none() && l.pop3.is_none() && l.pop3s.is_none() {
            p.push("[listen]: no listener configured (set at least smtp or pop3)".to_string());
        }
        if self.limits.max_connections == 0 || self.limits.max_connections_per_ip == 0 {
            p.push("limits.max_connections and limits.max_connections_per_ip: must be at least 1".to_string());
        }
        for (domain, route) in &self.relay.routes {
            let local = self.is_local_domain(domain);
            p.extend(route.problems(domain, local));
        }
        for target in &self.relay.fallback_relay {
            if let Err(e) = parse_host_port(target) {
                p.push(format!("relay.fallback_relay {target:?}: {e}"));
            }
        }
        if let Some(dns) = &self.relay.dns_server {
            if dns.parse::<IpAddr>().is_err() && dns.parse::<SocketAddr>().is_err() {
                p.push(format!("relay.dns_server = {dns:?}: expected an IP address or ip:port"));
            }
        }
        if self.relay.max_connections_per_domain == 0 {
            p.push("relay.max_connections_per_domain: must be at least 1".to_string());
        }
        if self.relay.max_messages_per_connection == 0 {
            p.push("relay.max_messages_per_connection: must be at least 1".to_string());
        }
        if !(0.0..=1.0).contains(&self.relay.lend_busy) {
            p.push(format!("relay.lend_busy: {} is not a share of the time (0 to 1)", self.relay.lend_busy));
        }
        if self.relay.active_limit == 0 {
            p.push("relay.active_limit: must be at least 1".to_string());
        }
        if self.relay.retry.is_empty() {
            p.push("relay.retry: needs at least one duration".to_string());
        }
        if self.runtime.io_memory < 64 * 1024 {
            p.push(format!("runtime.io_memory = {}: must be at least 65536", self.runtime.io_memory));
        }
        if self.limits.max_recipients == 0 || self.limits.max_recipients > crate::spool::MAX_RECIPIENTS {
            p.push(format!(
                "limits.max_recipients = {}: must be between 1 and {} (what one spool record can hold)",
                self.limits.max_recipients,
                crate::spool::MAX_RECIPIENTS
            ));
        }
        checks::problems(self, crate::startup::cpus::allowed().len(), &mut p);
        self.dkim.problems(&mut p);
        self.filter.problems(&mut p);
        if self.http.request_timeout.get() < std::time::Duration::from_secs(1) {
            p.push("http.request_timeout: must be at least 1s".to_string());
        }
        if self.http.tls && self.tls.is_none() {
            p.push(
                "http.tls = true: needs [tls] cert and key (the API is not served with the self-signed pair)"
                    .to_string(),
            );
        }
        if self.auth.max_auth_failures_per_user == 0 {
            p.push("auth.max_auth_failures_per_user: must be at least 1".to_string());
        }
        p
    }

    /// The users file path (always set after loading).
    /// Settings that differ in `new` but take effect only at a restart
    /// (sockets, executors, the spool layout, files opened at start).
    pub fn needs_restart(&self, new: &Config) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |name, same: bool| {
            if !same {
                out.push(name);
            }
        };
        check("data_dir", self.data_dir == new.data_dir);
        check("cores", self.cores == new.cores);
        check("run_as", self.run_as == new.run_as);
        check("users_file", self.users_path() == new.users_path());
        let l = (&self.listen, &new.listen);
        check(
            "listen",
            (l.0.smtp, l.0.submission, l.0.smtps, l.0.pop3, l.0.pop3s, l.0.metrics, l.0.http)
                == (l.1.smtp, l.1.submission, l.1.smtps, l.1.pop3, l.1.pop3s, l.1.metrics, l.1.http),
        );
        check(
            "http.tls and http.tokens_file (the path; the file itself is reloaded)",
            (self.http.tls, &self.http.tokens_file) == (new.http.tls, &new.http.tokens_file),
        );
        let tls = |c: &Config| c.tls.as_ref().map(|t| (t.cert.clone(), t.key.clone()));
        check("tls (cert and key paths; the files themselves are reloaded)", tls(self) == tls(new));
        check("spool.segment_size", self.spool.segment_size == new.spool.segment_size);
        check("runtime.io_memory", self.runtime.io_memory == new.runtime.io_memory);
        check("relay.dns_server", self.relay.dns_server == new.relay.dns_server);
        check(
            "relay.dane and relay.dnssec_probe",
            (self.relay.dane, &self.relay.dnssec_probe) == (new.relay.dane, &new.relay.dnssec_probe),
        );
        check("relay.shaping (the path; the file itself is reloaded)", self.relay.shaping == new.relay.shaping);
        check("relay.ca_file", self.relay.ca_file == new.relay.ca_file);
        let (a, b) = (&self.relay, &new.relay);
        check(
            "relay.pool, relay.default_pool and relay.pool_by_sender_domain",
            a.pool == b.pool && a.default_pool == b.default_pool && a.pool_by_sender_domain == b.pool_by_sender_domain,
        );
        check("log", self.log == new.log);
        out
    }

    /// `new`, but with the restart-only settings ([`Config::needs_restart`])
    /// kept from `self`.
    pub fn with_reloadable(&self, mut new: Config) -> Config {
        new.data_dir = self.data_dir.clone();
        new.cores = self.cores;
        new.run_as = self.run_as.clone();
        new.users_file = self.users_file.clone();
        let proxy_from = std::mem::take(&mut new.listen.proxy_from);
        new.listen = self.listen.clone();
        new.listen.proxy_from = proxy_from;
        new.tls = self.tls.clone();
        new.http = self.http.clone();
        new.spool.segment_size = self.spool.segment_size;
        new.runtime.io_memory = self.runtime.io_memory;
        new.relay.dns_server = self.relay.dns_server.clone();
        new.relay.dane = self.relay.dane;
        new.relay.dnssec_probe = self.relay.dnssec_probe.clone();
        new.relay.shaping = self.relay.shaping.clone();
        new.relay.ca_file = self.relay.ca_file.clone();
        // The sender map is kept with the pools: its indexes point into them.
        new.relay.pool = self.relay.pool.clone();
        new.relay.default_pool = self.relay.default_pool.clone();
        new.relay.pool_by_sender_domain = self.relay.pool_by_sender_domain.clone();
        new.log = self.log.clone();
        new
    }

    pub fn users_path(&self) -> &Path {
        self.users_file.as_deref().expect("resolve_paths sets users_file")
    }

    /// The API tokens file path (always set after loading).
    pub fn http_tokens_path(&self) -> &Path {
        self.http.tokens_file.as_deref().expect("resolve_paths sets http.tokens_file")
    }

    /// The spool root under data_dir.
    pub fn spool_root(&self) -> PathBuf {
        self.data_dir.join("spool")
    }

    /// Is `domain` (lowercase, no trailing dot) one of ours
    /// (`local_domains` or `local_domains_file`)?
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.address_map.is_local_domain(domain)
    }

    /// Read `local_domains_file` and `aliases_file`, check the address keys
    /// and build [`Config::address_map`]; every problem goes to `p`.
    fn build_address_map(&mut self, aliases_file_named: bool, p: &mut Vec<String>) {
        let mut domains = self.local_domains.clone();
        if let Some(path) = &self.local_domains_file {
            match aliases::load_domains_file(path) {
                Ok(more) => domains.extend(more),
                Err(e) => p.push(e),
            }
        }
        let delimiter = self.recipient_delimiter.clone().unwrap_or_default();
        if delimiter.contains(|c: char| c.is_whitespace() || c == '@') {
            p.push(format!("recipient_delimiter = {delimiter:?}: must not contain spaces or '@'"));
        }
        if let Some(pm) = &self.postmaster {
            if aliases::alias_problem(pm, std::slice::from_ref(pm)).is_some() || pm.starts_with('@') {
                p.push(format!("postmaster = {pm:?}: must be an address (user@domain)"));
            }
        }
        let mut table = Vec::new();
        for (key, value) in &self.aliases {
            let targets = value.targets();
            match aliases::alias_problem(key, &targets) {
                Some(reason) => p.push(format!("aliases: {reason}")),
                None => table.push((key.clone(), targets)),
            }
        }
        if let Some(path) = &self.aliases_file {
            match aliases::load_aliases_file(path, aliases_file_named) {
                Ok(more) => table.extend(more),
                Err(e) => p.push(e),
            }
        }
        self.address_map =
            std::sync::Arc::new(crate::address_map::AddressMap::new(crate::address_map::AddressSettings {
                hostname: self.hostname.clone(),
                local_domains: domains,
                delimiter,
                postmaster: self.postmaster.clone(),
                aliases: table,
            }));
    }

    /// Is `domain` delivered to an LMTP server (its `relay.routes` entry is
    /// LMTP; see `config::routes`)? Such a domain is a final destination:
    /// RCPT for it is accepted from any client. `"*"` never counts (config
    /// validation refuses an LMTP route for it).
    /// `domain` as an RCPT carries it: lowercase, no trailing dot (route
    /// keys are normalised so at load).
    pub fn is_lmtp_domain(&self, domain: &str) -> bool {
        domain != "*" && self.relay.routes.get(domain).is_some_and(RouteTargets::is_lmtp)
    }
}

/// Check a "host:port" route target; the host may be a name or an IP
/// (IPv6 in brackets).
pub fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| "expected host:port".to_string())?;
    let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("empty host".to_string());
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Source::File(PathBuf::from("/etc/ringmail/ringmail.toml")))
    }

    #[test]
    fn embedded_default_is_valid_and_loopback_only() {
        let c = Config::load(None).unwrap();
        assert_eq!(c.listen.smtp, Some("127.0.0.1:2525".parse().unwrap()));
        assert_eq!(c.listen.pop3, Some("127.0.0.1:1110".parse().unwrap()));
        assert_eq!(c.local_domains, vec!["localhost".to_string()]);
        assert!(c.data_dir.ends_with("ringmail-data"));
        assert!(c.users_path().ends_with("ringmail-data/users"));
    }

    #[test]
    fn relative_paths_resolve_against_the_config_file() {
        let c = parse("data_dir = \"data\"\nusers_file = \"users.txt\"\n[listen]\nsmtp = \"127.0.0.1:25\"\n").unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/etc/ringmail/data"));
        assert_eq!(c.users_path(), Path::new("/etc/ringmail/users.txt"));
    }

    #[test]
    fn unknown_key_is_an_error_naming_the_key_and_line() {
        let e = parse("hostname = \"a\"\nbogus_key = 1\n[listen]\nsmtp = \"127.0.0.1:25\"\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("bogus_key"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
        assert!(msg.contains("/etc/ringmail/ringmail.toml"), "{msg}");
    }

    #[test]
    fn unknown_key_in_a_table_is_an_error() {
        let e = parse("[listen]\nsmtp = \"127.0.0.1:25\"\nsmpt = \"127.0.0.1:26\"\n").unwrap_err();
        assert!(e.to_string().contains("smpt"), "{e}");
    }

    #[test]
    fn bad_values_report_line_and_reason() {
        let e = parse("[listen]\nsmtp = \"not an address\"\n").unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        let e =
            parse("[listen]\nsmtp = \"127.0.0.1:25\"\n[relay]\nretry = [\"1m\", \"soon\"]\n").unwrap_err().to_string();
        assert!(e.contains("soon") && e.contains("line 4"), "{e}");
        let e = parse("[listen]\nsmtp = \"127.0.0.1:25\"\n[relay]\npermit_relay_from = [\"10.0.0.0/33\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn lmtp_routes_are_checked_at_load_and_make_final_destinations() {
        let listen = "[listen]\nsmtp = \"127.0.0.1:25\"\n";
        let bad = format!(
            "local_domains = [\"example.net\"]\n{listen}[relay]\nroutes = {{ \"*\" = \"lmtp:unix:/run/lmtp\", \"example.net\" = \"lmtp:127.0.0.1:24\", \"x.test\" = \"lmtp:unix:run/lmtp\" }}\n"
        );
        let ConfigError::Invalid { problems, .. } = parse(&bad).unwrap_err() else { panic!("not Invalid") };
        let all = problems.join("\n");
        assert!(all.contains("relay.routes.\"*\"") && all.contains("open relay"), "{all}");
        assert!(all.contains("relay.routes.\"example.net\"") && all.contains("local_domains"), "{all}");
        assert!(all.contains("relay.routes.\"x.test\" = \"lmtp:unix:run/lmtp\"") && all.contains("absolute"), "{all}");
        let good = format!(
            "{listen}[relay]\nroutes = {{ \"Example.ORG\" = \"lmtp:unix:/run/dovecot/lmtp\", \"smart.test\" = \"10.0.0.1:25\" }}\n"
        );
        let c = parse(&good).unwrap();
        assert!(c.is_lmtp_domain("example.org"));
        assert!(!c.is_lmtp_domain("smart.test"), "an SMTP route is not a final destination");
        assert!(!c.is_lmtp_domain("other.test"));
    }

    #[test]
    fn every_semantic_problem_is_reported_at_once() {
        let e = parse(
            "max_message_size = 10\nlocal_domains = [\"a b\"]\n[relay]\nroutes = { \"x.test\" = \"nohostport\" }\n",
        )
        .unwrap_err();
        let ConfigError::Invalid { problems, .. } = e else { panic!("{e}") };
        let all = problems.join("\n");
        assert!(all.contains("max_message_size"), "{all}");
        assert!(all.contains("local_domains"), "{all}");
        assert!(all.contains("relay.routes"), "{all}");
        assert!(all.contains("no listener"), "{all}");
    }

    #[test]
    fn segment_must_hold_the_largest_message() {
        let e =
            parse("max_message_size = 2000000\n[spool]\nsegment_size = 1000000\n[listen]\nsmtp = \"127.0.0.1:25\"\n")
                .unwrap_err();
        assert!(e.to_string().contains("spool.segment_size"), "{e}");
    }

    #[test]
    fn local_domains_are_lowercased_without_trailing_dot() {
        let c = parse("local_domains = [\"Example.ORG.\"]\n[listen]\nsmtp = \"127.0.0.1:25\"\n").unwrap();
        assert!(c.is_local_domain("example.org"));
    }

    #[test]
    fn local_domains_are_held_as_a_labels() {
        let c = parse("local_domains = [\"\u{4f8b}\u{5b50}.Test\"]\n[listen]\nsmtp = \"127.0.0.1:25\"\n").unwrap();
        assert!(c.is_local_domain("xn--fsqu00a.test"));
    }

    #[test]
    fn retention_levels_override_key_by_key() {
        let cfg = parse(
            "[listen]\nsmtp = \"127.0.0.1:25\"\n[retention]\nmax_age = \"30d\"\nmax_mailbox_size = 1000\n\
             [retention.domains.\"Big.Test\"]\nmax_mailbox_size = 5000\n\
             [retention.users.\"Ann@big.test\"]\ndelete_after_retrieve = true\nmax_age = \"1d\"\n",
        )
        .unwrap();
        let r = &cfg.retention;
        let ann = r.for_user("ann@big.test");
        assert!(ann.delete_after_retrieve);
        assert_eq!(ann.max_age, Some(std::time::Duration::from_secs(86400)));
        assert_eq!(ann.max_mailbox_size, Some(5000), "from the domain");
        let bob = r.for_user("bob@big.test");
        assert!(!bob.delete_after_retrieve);
        assert_eq!(bob.max_age, Some(std::time::Duration::from_secs(30 * 86400)), "global");
        assert_eq!(r.for_user("eve@other.test").max_mailbox_size, Some(1000));
        assert_eq!(r.site().max_age, Some(std::time::Duration::from_secs(30 * 86400)));
        assert!(r.varies(|p| p.max_age.is_some()) && !r.varies(|p| p.login_delay.is_some()));
        assert!(parse("[retention]\nmax_age = 30\n").is_err(), "a bare number is not a duration");
        assert!(parse("[retention.users.\"a@b\"]\nquota = 1\n").is_err(), "unknown key");
    }

    #[test]
    fn host_port_targets() {
        assert_eq!(parse_host_port("127.0.0.1:2600").unwrap(), ("127.0.0.1".to_string(), 2600));
        assert_eq!(parse_host_port("[::1]:25").unwrap(), ("::1".to_string(), 25));
        assert!(parse_host_port("mx.example").is_err());
        assert!(parse_host_port("mx.example:x").is_err());
    }
}
