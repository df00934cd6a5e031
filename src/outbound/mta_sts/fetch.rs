//! Fetching a policy over HTTPS (RFC 8461 §3.3) on threads of their own,
//! never on the executor.
//!
//! Why threads: ureq is a blocking client, and a policy server may take
//! the whole timeout to answer; glommio's blocking pool is small and also
//! signs DKIM, so it must not wait on the network. Each core starts
//! [`THREADS`] threads on its first fetch (they inherit the core's CPU);
//! jobs reach them over a bounded channel and answers come back on a
//! oneshot, so the core awaits without blocking. A full queue is a failed
//! fetch at once (no unbounded memory).
//!
//! The address of `mta-sts.<domain>` is resolved on the core by ringmail's
//! own resolver and handed in: the fetch connects to that address only
//! (never the system resolver), checks the certificate against the roots
//! of `tls` for the name `mta-sts.<domain>`, follows no redirect, takes
//! only a `200` with `Content-Type: text/plain` and a body of at most
//! 64 KiB, all within [`TIMEOUT`]. A policy that reads is written to the
//! cache file before it is answered.

use super::cache::{self, StsPolicy};
use super::policy::{parse_policy, PolicyError, MAX_POLICY_BYTES};
use futures_channel::oneshot;
use rustls::ClientConfig;
use std::cell::RefCell;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The whole fetch (connect, TLS, request, body) must be done by then.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Fetch threads per core.
pub const THREADS: usize = 2;
/// Fetches waiting for a thread, per core.
const QUEUE: usize = 256;

/// One fetch to make.
pub struct Job {
    /// The policy domain (lower case A-labels).
    pub domain: String,
    /// The TXT id it is fetched under.
    pub id: String,
    /// Where `mta-sts.<domain>` is, as ringmail's resolver found it.
    pub addrs: Vec<IpAddr>,
    /// The HTTPS port (443 but in tests).
    pub port: u16,
    /// Certificate checks: PKIX against the configured roots.
    pub tls: Arc<ClientConfig>,
    /// The cache directory the policy is written to.
    pub dir: PathBuf,
    /// Now, in Unix seconds (the policy's `fetched_at`).
    pub now: u64,
}

/// A fetched policy, and whether it reached its file.
#[derive(Debug)]
pub struct Fetched {
    pub policy: StsPolicy,
    /// Why it is in memory only, if it is.
    pub not_stored: Option<cache::CacheError>,
}

/// Why no policy came back.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("too many policy fetches waiting")]
    Busy,
    #[error("the fetch thread did not answer")]
    Lost,
    #[error("{host} has no address")]
    NoAddress { host: String },
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    #[error("{url}: HTTP status {status} (only 200 is taken, redirects are not followed)")]
    Status { url: String, status: u16 },
    #[error("{url}: Content-Type {content_type:?}, not text/plain")]
    ContentType { url: String, content_type: String },
    #[error("{url}: body over 64 KiB")]
    TooLarge { url: String },
    #[error("{url}: {source}")]
    Policy { url: String, source: PolicyError },
}

type Reply = oneshot::Sender<Result<Fetched, FetchError>>;

/// One core's fetch threads, started on first use.
#[derive(Default)]
pub struct Fetcher {
    jobs: RefCell<Option<crossbeam_channel::Sender<(Job, Reply)>>>,
}

impl Fetcher {
    /// Fetch, parse and store one policy; waits at most [`TIMEOUT`] and a
    /// little grace, without blocking the executor.
    pub async fn fetch(&self, job: Job) -> Result<Fetched, FetchError> {
        let (tx, rx) = oneshot::channel();
        let sent = match self.sender() {
            Some(jobs) => jobs.try_send((job, tx)).is_ok(),
            None => false,
        };
        if !sent {
            return Err(FetchError::Busy);
        }
        let wait = TIMEOUT + Duration::from_secs(5);
        futures_lite::future::or(async { rx.await.unwrap_or(Err(FetchError::Lost)) }, async {
            glommio::timer::sleep(wait).await;
            Err(FetchError::Lost)
        })
        .await
    }

    fn sender(&self) -> Option<crossbeam_channel::Sender<(Job, Reply)>> {
        let mut jobs = self.jobs.borrow_mut();
        if jobs.is_none() {
            let (tx, rx) = crossbeam_channel::bounded::<(Job, Reply)>(QUEUE);
            for n in 0..THREADS {
                let rx = rx.clone();
                let started = std::thread::Builder::new().name(format!("ringmail-mta-sts-{n}")).spawn(move || {
                    for (job, reply) in rx {
                        let _ = reply.send(run(&job));
                    }
                });
                if let Err(e) = started {
                    tracing::warn!(error = %e, "cannot start an MTA-STS fetch thread");
                }
            }
            *jobs = Some(tx);
        }
        jobs.clone()
    }
}

/// The blocking part: fetch, parse, store.
fn run(job: &Job) -> Result<Fetched, FetchError> {
    let body = get(job)?;
    let url = url(job);
    let policy = parse_policy(&body).map_err(|source| FetchError::Policy { url, source })?;
    // The parser took it, so it is UTF-8.
    let policy = StsPolicy {
        id: job.id.clone(),
        fetched_at: job.now,
        policy,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let not_stored = cache::store(&job.dir, &job.domain, &policy).err();
    Ok(Fetched { policy, not_stored })
}

fn url(job: &Job) -> String {
    match job.port {
        443 => format!("https://mta-sts.{}/.well-known/mta-sts.txt", job.domain),
        port => format!("https://mta-sts.{}:{port}/.well-known/mta-sts.txt", job.domain),
    }
}

/// The policy body, as RFC 8461 §3.3 allows it to be served.
fn get(job: &Job) -> Result<Vec<u8>, FetchError> {
    let url = url(job);
    if job.addrs.is_empty() {
        return Err(FetchError::NoAddress { host: format!("mta-sts.{}", job.domain) });
    }
    let addrs: Vec<SocketAddr> = job.addrs.iter().map(|ip| SocketAddr::new(*ip, job.port)).collect();
    let agent = ureq::AgentBuilder::new()
        .tls_config(job.tls.clone())
        // Only the address ringmail's resolver found.
        .resolver(move |_: &str| Ok(addrs.clone()))
        .redirects(0)
        .timeout(TIMEOUT)
        .user_agent(concat!("ringmail/", env!("CARGO_PKG_VERSION")))
        .build();
    let response = match agent.get(&url).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(status, _)) => return Err(FetchError::Status { url, status }),
        Err(e) => return Err(FetchError::Http { url, reason: e.to_string() }),
    };
    if response.status() != 200 {
        return Err(FetchError::Status { url, status: response.status() });
    }
    // Not `content_type()`: it says text/plain when the header is missing.
    let content_type = response.header("content-type").unwrap_or("").to_string();
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("text/plain") {
        return Err(FetchError::ContentType { url, content_type });
    }
    let mut body = Vec::new();
    response
        .into_reader()
        .take(MAX_POLICY_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| FetchError::Http { url: url.clone(), reason: e.to_string() })?;
    if body.len() > MAX_POLICY_BYTES {
        return Err(FetchError::TooLarge { url });
    }
    Ok(body)
}
