//! Command-line interface: `smtp`, `pop3`, `sink` and `milter` with their options.
//! Values are parsed into typed form here (sizes, durations, mixes), so the
//! modes never see raw strings.

use crate::spec::{self, Mix};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Load generator for SMTP and POP3 servers, thread-per-core on glommio.
///
/// Targets must be loopback addresses unless --allow-remote is given.
#[derive(Debug, Parser)]
#[command(name = "ringmail-loadgen", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Send mail to an SMTP server and measure throughput and latency.
    Smtp(SmtpArgs),
    /// Log in to a POP3 server as many users, retrieve (and delete) mail.
    Pop3(Pop3Args),
    /// Run an SMTP sink that accepts, counts and checks mail.
    Sink(SinkArgs),
    Milter(MilterArgs),
    /// Inject mail through an HTTP injection API (ringmail's
    /// POST /api/v1/inject) and measure throughput and latency.
    Http(HttpArgs),
}

#[derive(Debug, Clone, Args)]
pub struct MilterArgs {
    /// Address to listen on (printed on stdout as `listening on ADDR`).
    #[arg(long, default_value = "127.0.0.1:8891")]
    pub listen: std::net::SocketAddr,
    /// Allow a non-loopback --listen address.
    #[arg(long)]
    pub allow_remote: bool,
}

/// TLS for client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsMode {
    /// Plain text.
    None,
    /// STARTTLS (SMTP) or STLS (POP3) after the greeting.
    Starttls,
    /// TLS from the first byte (ports 465 / 995).
    Implicit,
}

/// Options every mode shares.
#[derive(Debug, Clone, Args)]
pub struct CoreArgs {
    /// Executors (one thread each, pinned to a CPU). Default: all CPUs.
    #[arg(long)]
    pub cores: Option<usize>,
    /// Do not pin executors to CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// Timeout for connect, greeting and every read or write.
    #[arg(long, default_value = "30s", value_parser = spec::parse_duration)]
    pub timeout: Duration,
    /// Write the summary as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Client-side TLS options.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// TLS mode.
    #[arg(long, value_enum, default_value = "none")]
    pub tls: TlsMode,
    /// Do not verify the server certificate (self-signed test servers).
    #[arg(long)]
    pub insecure: bool,
    /// Verify the server against the CA certificates in FILE (PEM) instead
    /// of the public web roots.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Name to verify the certificate against (default: the target host).
    #[arg(long, value_name = "NAME")]
    pub tls_name: Option<String>,
}

/// Latency report files shared by the client modes.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Write the whole-message (POP3: RETR) latency distribution in
    /// HdrHistogram's percentile text format to FILE.
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
    /// Write a self-contained HTML report (percentile plot, throughput over time).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct SmtpArgs {
    /// Server to load, HOST:PORT.
    #[arg(long)]
    pub target: String,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// Concurrent connections, split across cores.
    #[arg(long, short = 'c', default_value_t = 16)]
    pub connections: usize,
    /// Messages to send (after warm-up). Default 10000 unless --duration is given.
    #[arg(long, short = 'm')]
    pub messages: Option<u64>,
    /// Send for this long (after warm-up) instead of a message count.
    #[arg(long, short = 'd', value_parser = spec::parse_duration)]
    pub duration: Option<Duration>,
    /// Open loop: start messages at this rate (msgs/s) on a fixed schedule,
    /// measuring latency from the intended start. Default: closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Message size or weighted mix, e.g. 4k or 1k:70,16k:25,1m:5.
    #[arg(long, default_value = "1k", value_parser = |s: &str| Mix::parse(s, spec::parse_size))]
    pub size: Mix<usize>,
    /// Recipients per message.
    #[arg(long, short = 'r', default_value_t = 1)]
    pub recipients: usize,
    /// Recipient domains, used round robin (recipients are user{n}@domain).
    #[arg(long, value_delimiter = ',', default_value = "example.test")]
    pub to_domains: Vec<String>,
    /// Distinct users per recipient domain.
    #[arg(long, default_value_t = 1000)]
    pub users_per_domain: u64,
    /// Fixed recipient addresses, used round robin (e.g. local mailboxes).
    #[arg(long, value_delimiter = ',', conflicts_with = "to_domains")]
    pub to: Vec<String>,
    /// Envelope sender.
    #[arg(long, default_value = "loadgen@loadgen.test")]
    pub from: String,
    /// Name sent in EHLO.
    #[arg(long, default_value = "loadgen.test")]
    pub helo: String,
    /// Pipeline MAIL, RCPT and DATA (RFC 2920) when the server offers it.
    #[arg(long)]
    pub pipelining: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// AUTH PLAIN as USER:PASS.
    #[arg(long, value_name = "USER:PASS", value_parser = spec::parse_credentials)]
    pub auth: Option<(String, String)>,
    /// Run this long before measuring; warm-up messages are not counted.
    #[arg(long, default_value = "0s", value_parser = spec::parse_duration)]
    pub warmup: Duration,
    /// Open a new connection for every message (default: reuse connections).
    #[arg(long)]
    pub new_connection_per_message: bool,
    /// Reconnect after this many messages on one connection.
    #[arg(long, conflicts_with = "new_connection_per_message")]
    pub messages_per_connection: Option<u64>,
    /// Seed for the size mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub core: CoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct Pop3Args {
    /// Server to load, HOST:PORT.
    #[arg(long)]
    pub target: String,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// File of `address:password` lines (blank lines and # comments skipped).
    #[arg(long, value_name = "FILE")]
    pub users: PathBuf,
    /// Concurrent sessions, split across cores; users are shared out round robin.
    #[arg(long, short = 'c', default_value_t = 4)]
    pub connections: usize,
    /// DELE every retrieved message (made durable at QUIT).
    #[arg(long)]
    pub delete: bool,
    /// RETR/DELE commands sent ahead without waiting for their replies
    /// (RFC 2449 PIPELINING); 1 is one at a time.
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Logins only: connect, USER/PASS, STAT, QUIT (reports logins/s).
    #[arg(long)]
    pub logins: bool,
    /// Keep cycling through the users for this long (default: one pass).
    #[arg(long, short = 'd', value_parser = spec::parse_duration)]
    pub duration: Option<Duration>,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub core: CoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct SinkArgs {
    /// Address to listen on (port 0 picks a free port; the chosen address is
    /// printed on stdout as `listening on ADDR`).
    #[arg(long, default_value = "127.0.0.1:2525")]
    pub listen: std::net::SocketAddr,
    /// Reply mix at end of DATA, e.g. 250:90,451:9,550:1.
    #[arg(long, default_value = "250", value_parser = |s: &str| Mix::parse(s, spec::parse_reply_code))]
    pub reply: Mix<u16>,
    /// Wait this long before answering end of DATA.
    #[arg(long, default_value = "0s", value_parser = spec::parse_duration)]
    pub delay: Duration,
    /// Stop after this many messages.
    #[arg(long, short = 'm')]
    pub messages: Option<u64>,
    /// Stop after this long.
    #[arg(long, short = 'd', value_parser = spec::parse_duration)]
    pub duration: Option<Duration>,
    /// Write every message to DIR (N.eml content, N.json envelope).
    #[arg(long, value_name = "DIR")]
    pub save: Option<PathBuf>,
    /// Certificate chain (PEM) to offer STARTTLS with.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Speak TLS from the first byte instead of offering STARTTLS.
    #[arg(long, requires = "tls_cert")]
    pub implicit_tls: bool,
    /// Require AUTH PLAIN with USER:PASS before MAIL.
    #[arg(long, value_name = "USER:PASS", value_parser = spec::parse_credentials)]
    pub auth: Option<(String, String)>,
    /// Host name in the greeting.
    #[arg(long, default_value = "sink.loadgen.test")]
    pub hostname: String,
    /// Do not offer CHUNKING (BDAT): clients must use DATA.
    #[arg(long)]
    pub no_chunking: bool,
    /// Announced SIZE limit; bigger messages get 552.
    #[arg(long, default_value = "64m", value_parser = spec::parse_size)]
    pub max_size: usize,
    /// Message-IDs remembered per core for duplicate detection (16 bytes
    /// each plus table overhead); past this, new IDs are not checked.
    #[arg(long, default_value_t = 4_000_000)]
    pub dedup_cap: usize,
    /// Seed for the reply mix (core i uses seed + i).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Start throttling this long after the sink's first accepted
    /// connection: every MAIL FROM then gets `421 4.7.0 rate limited, try
    /// again later` and the connection is closed. Needs --throttle-for.
    #[arg(long, value_name = "D", value_parser = spec::parse_duration)]
    pub throttle_after: Option<Duration>,
    /// How long the throttle lasts. Needs --throttle-after.
    #[arg(long, value_name = "D", value_parser = spec::parse_duration)]
    pub throttle_for: Option<Duration>,
    #[command(flatten)]
    pub core: CoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Server to load, HOST:PORT (the `[listen] http` address).
    #[arg(long)]
    pub target: String,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// Path of the injection endpoint.
    #[arg(long, default_value = "/api/v1/inject")]
    pub path: String,
    /// Bearer token with inject scope.
    #[arg(long, env = "RINGMAIL_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Concurrent connections (kept alive), split across cores.
    #[arg(long, short = 'c', default_value_t = 16)]
    pub connections: usize,
    /// Requests to send. Default 1000 unless --duration is given.
    #[arg(long, short = 'n')]
    pub requests: Option<u64>,
    /// Send for this long instead of a request count.
    #[arg(long, short = 'd', value_parser = spec::parse_duration)]
    pub duration: Option<Duration>,
    /// Message size (headers and body of the raw content).
    #[arg(long, default_value = "1k", value_parser = spec::parse_size)]
    pub size: usize,
    /// Recipients per request.
    #[arg(long, short = 'r', default_value_t = 1)]
    pub recipients: usize,
    /// Each recipient gets its own copy (a substitution per recipient, as
    /// personalised bulk mail does): messages = requests x recipients.
    /// Without it one message goes to all of a request's recipients.
    #[arg(long)]
    pub personal: bool,
    /// Recipient domains, used round robin (recipients are user{n}@domain).
    #[arg(long, value_delimiter = ',', default_value = "example.test")]
    pub to_domains: Vec<String>,
    /// Distinct users per recipient domain.
    #[arg(long, default_value_t = 1000)]
    pub users_per_domain: u64,
    /// Fixed recipient addresses, used round robin (e.g. local mailboxes).
    #[arg(long, value_delimiter = ',', conflicts_with = "to_domains")]
    pub to: Vec<String>,
    /// Envelope sender.
    #[arg(long, default_value = "loadgen@loadgen.test")]
    pub from: String,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub core: CoreArgs,
}
