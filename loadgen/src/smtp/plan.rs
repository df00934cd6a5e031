//! The immutable plan of an SMTP run, built once from the command line and
//! shared (read-only) by every core: what to send, where, and each core's
//! share of connections, messages and rate.

use super::schedule::Pace;
use crate::cli::{SmtpArgs, TlsMode};
use crate::net::tls;
use crate::proto::client::Settings;
use crate::proto::message::rfc5322_date;
use crate::spec::Mix;
use crate::target::{self, Target};
use anyhow::{bail, Result};
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Default message count when neither --messages nor --duration is given.
const DEFAULT_MESSAGES: u64 = 10_000;

/// TLS for the client connections.
#[derive(Debug, Clone)]
pub struct TlsSetup {
    /// true: TLS from the first byte; false: STARTTLS after EHLO.
    pub implicit: bool,
    pub config: Arc<rustls::ClientConfig>,
    pub name: ServerName<'static>,
}

/// How recipients are chosen.
#[derive(Debug, Clone)]
pub enum Recipients {
    /// `user{n}@domain`, domains round robin, n below `users_per_domain`.
    Domains { domains: Vec<String>, users_per_domain: u64 },
    /// These addresses, round robin.
    Fixed(Vec<String>),
}

/// One core's share.
#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    pub connections: usize,
    /// Global number of this core's first worker (for Message-IDs).
    pub first_worker: u64,
    /// Measured messages for this core (None: until the duration ends).
    pub messages: Option<u64>,
    pub pace: Pace,
}

/// Everything a core needs to run its part.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    pub settings: Settings,
    pub tls: Option<TlsSetup>,
    pub timeout: Duration,
    pub warmup: Duration,
    pub duration: Option<Duration>,
    pub sizes: Mix<usize>,
    pub recipients_per_message: usize,
    pub recipients: Recipients,
    pub from: String,
    /// Messages per connection before reconnecting (1 = new connection per message).
    pub per_connection: Option<u64>,
    /// Unique per run; part of every Message-ID.
    pub run_id: String,
    /// RFC 5322 date for the Date header (fixed for the run).
    pub date: String,
    pub seed: u64,
    pub shares: Vec<Share>,
}

impl Plan {
    /// Validates the arguments and builds the plan for `cores` cores.
    pub fn build(args: &SmtpArgs, cores: usize) -> Result<Plan> {
        let target = target::resolve(&args.target, args.allow_remote)?;
        if args.connections == 0 {
            bail!("--connections must be at least 1");
        }
        if args.recipients == 0 {
            bail!("--recipients must be at least 1");
        }
        if args.to_domains.iter().any(|d| d.is_empty()) || args.users_per_domain == 0 {
            bail!("--to-domains needs non-empty domains and --users-per-domain at least 1");
        }
        if let Some(r) = args.rate {
            if !(r.is_finite() && r > 0.0) {
                bail!("--rate must be a positive number of messages per second");
            }
        }
        if args.messages == Some(0) {
            bail!("--messages must be at least 1");
        }
        let tls = match args.tls.tls {
            TlsMode::None => None,
            mode => Some(TlsSetup {
                implicit: mode == TlsMode::Implicit,
                config: tls::client_config(args.tls.insecure, args.tls.ca.as_deref())?,
                name: tls::server_name(args.tls.tls_name.as_deref().unwrap_or(&target.host))?,
            }),
        };
        let messages = match (args.messages, args.duration) {
            (None, None) => Some(DEFAULT_MESSAGES),
            (m, _) => m,
        };
        let recipients = if args.to.is_empty() {
            Recipients::Domains { domains: args.to_domains.clone(), users_per_domain: args.users_per_domain }
        } else {
            Recipients::Fixed(args.to.clone())
        };
        let per_connection =
            if args.new_connection_per_message { Some(1) } else { args.messages_per_connection.filter(|n| *n > 0) };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Ok(Plan {
            settings: Settings {
                helo_name: args.helo.clone(),
                pipelining: args.pipelining,
                starttls: tls.as_ref().is_some_and(|t| !t.implicit),
                auth: args.auth.clone(),
            },
            tls,
            timeout: args.timeout_or_default(),
            warmup: args.warmup,
            duration: args.duration,
            sizes: args.size.clone(),
            recipients_per_message: args.recipients,
            recipients,
            from: args.from.clone(),
            per_connection,
            run_id: format!("{:x}{:04x}", now.as_secs(), std::process::id() & 0xffff),
            date: rfc5322_date(now.as_secs()),
            seed: args.seed,
            shares: split(args.connections, cores, messages, args.rate),
            target,
        })
    }
}

impl SmtpArgs {
    fn timeout_or_default(&self) -> Duration {
        self.core.timeout.max(Duration::from_millis(1))
    }
}

/// Splits connections across cores as evenly as possible; messages and
/// rate follow the connections. Cores past the connection count get nothing.
pub fn split(connections: usize, cores: usize, messages: Option<u64>, rate: Option<f64>) -> Vec<Share> {
    let cores = cores.max(1);
    let mut shares = Vec::with_capacity(cores);
    let mut first_worker = 0u64;
    let mut given = 0u64;
    for i in 0..cores {
        let conns = connections / cores + usize::from(i < connections % cores);
        let msgs = messages.map(|m| {
            // Proportional to connections; the last core with connections
            // takes the rounding remainder so the total is exact.
            let upto = m * (first_worker + conns as u64) / connections as u64;
            let mine = upto - given;
            given = upto;
            mine
        });
        let pace = match rate {
            Some(r) => Pace::Open { rate: (r * conns as f64 / connections as f64).max(f64::MIN_POSITIVE) },
            None => Pace::Closed,
        };
        shares.push(Share { connections: conns, first_worker, messages: msgs, pace });
        first_worker += conns as u64;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_and_messages_split_exactly() {
        let s = split(5, 2, Some(1001), None);
        assert_eq!(s.iter().map(|x| x.connections).collect::<Vec<_>>(), vec![3, 2]);
        assert_eq!(s.iter().map(|x| x.messages.unwrap()).sum::<u64>(), 1001);
        assert_eq!(s[1].first_worker, 3);
    }

    #[test]
    fn more_cores_than_connections_leaves_cores_idle() {
        let s = split(1, 4, Some(10), Some(100.0));
        assert_eq!(s[0].connections, 1);
        assert_eq!(s[0].messages, Some(10));
        assert!(s[1..].iter().all(|x| x.connections == 0 && x.messages == Some(0)));
        assert_eq!(s[0].pace, Pace::Open { rate: 100.0 });
    }

    #[test]
    fn rate_follows_connections() {
        let s = split(4, 2, None, Some(1000.0));
        assert_eq!(s[0].pace, Pace::Open { rate: 500.0 });
        assert_eq!(s[0].messages, None);
    }
}
