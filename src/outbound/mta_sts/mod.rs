//! MTA-STS (RFC 8461): which policy a recipient domain publishes, kept in a
//! durable cache.
//!
//! Owns, per core: the in-memory view of the policy cache (loaded from
//! `data_dir/mta-sts/` at start; the files are the truth across
//! restarts), the lookups in flight (one per domain at a time: connections
//! for a domain whose policy is being looked up wait for that lookup), the
//! domains whose last fetch failed, and the fetch threads.
//!
//! [`MtaSts::policy`] is the driver: the `_mta-sts` TXT record through the
//! core's resolver, the RFC 8461 §5.1 rules ([`cache::plan`], pure), a
//! fetch when they say so ([`fetch`]). What a policy means for one MX host
//! is `tls_policy::decide`'s, not this module's; it must not connect to
//! MX hosts or decide routing.
//!
//! Parsing is [`policy`]'s (pure).

pub mod cache;
pub mod fetch;
pub mod policy;

pub use cache::StsPolicy;

use crate::outbound::dns::{Lookup, Resolver};
use cache::{Step, Txt};
use futures_channel::oneshot;
use rustls::ClientConfig;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// After a failed fetch, the domain's web server is not asked again for
/// this long (its cached policy, if any, applies meanwhile): a server
/// that hangs would otherwise cost every connection the fetch timeout.
pub const FETCH_RETRY: Duration = Duration::from_secs(300);

/// The `_mta-sts` TXT lookup is given up after this long (no answer: the
/// cached policy, if any, applies): the resolver's own retries could hold
/// every connection to a domain whose name servers ignore TXT questions
/// for three times its timeout.
pub const TXT_TIMEOUT: Duration = Duration::from_secs(5);

/// Past this many domains with a failed fetch remembered, the expired ones
/// are dropped (the table stays as small as the failures of the last
/// [`FETCH_RETRY`]).
const FAILED_PRUNE_AT: usize = 1024;

/// The MTA-STS state of one core (see the module doc).
pub struct MtaSts {
    /// `data_dir/mta-sts`.
    dir: PathBuf,
    /// Policies by domain, as fetched (mode `none` included: it is
    /// cached like any other).
    cache: RefCell<HashMap<String, StsPolicy>>,
    /// Lookups in flight, with the connections waiting for each.
    in_flight: RefCell<HashMap<String, Vec<oneshot::Sender<Option<StsPolicy>>>>>,
    /// Domains whose last fetch failed, until when not to fetch again.
    failed: RefCell<HashMap<String, Instant>>,
    fetcher: fetch::Fetcher,
}

impl MtaSts {
    /// The state of one core, its cache read from `dir` (bad files are
    /// logged and skipped). Reads files: call it at start-up.
    pub fn load(dir: PathBuf) -> MtaSts {
        let (cache, problems) = cache::load_dir(&dir);
        for problem in problems {
            tracing::warn!(error = %problem, "MTA-STS cache file skipped");
        }
        if !cache.is_empty() {
            tracing::debug!(policies = cache.len(), dir = %dir.display(), "MTA-STS policy cache loaded");
        }
        MtaSts {
            dir,
            cache: RefCell::new(cache),
            in_flight: RefCell::default(),
            failed: RefCell::default(),
            fetcher: fetch::Fetcher::default(),
        }
    }

    /// The policy `domain` asks senders to apply now, if any (modes
    /// `enforce` and `testing`; `none` and no policy are `None`). Looks the
    /// TXT record up through `resolver`, and fetches from
    /// `https://mta-sts.<domain>:<port>/` with certificates checked by
    /// `tls` when RFC 8461 §5.1 says so. At most one lookup per domain
    /// runs at a time; the others wait for its answer.
    pub async fn policy(
        &self,
        resolver: &Resolver,
        tls: &Arc<ClientConfig>,
        port: u16,
        domain: &str,
    ) -> Option<StsPolicy> {
        let domain = crate::outbound::mx::normalize(domain);
        let waiting = {
            let mut in_flight = self.in_flight.borrow_mut();
            match in_flight.get_mut(&domain) {
                Some(waiters) => {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    Some(rx)
                }
                None => {
                    in_flight.insert(domain.clone(), Vec::new());
                    None
                }
            }
        };
        if let Some(rx) = waiting {
            // Cancelled (the lookup's task was dropped): no policy this
            // time; the next connection looks again.
            return rx.await.ok().flatten();
        }
        let lookup = InFlight { sts: self, domain: &domain };
        let found = self.look_up(resolver, tls, port, &domain).await.filter(StsPolicy::is_active);
        for waiter in lookup.finish() {
            let _ = waiter.send(found.clone());
        }
        found
    }

    async fn look_up(
        &self,
        resolver: &Resolver,
        tls: &Arc<ClientConfig>,
        port: u16,
        domain: &str,
    ) -> Option<StsPolicy> {
        let name = format!("_mta-sts.{domain}");
        // Each resolver try has a socket of its own, so dropping the lookup
        // at the deadline loses no other lookup's reply.
        let asked = futures_lite::future::or(async { Some(resolver.txt(&name).await) }, async {
            glommio::timer::sleep(TXT_TIMEOUT).await;
            None
        });
        let txt = match asked.await {
            None => {
                tracing::debug!(domain, "MTA-STS TXT lookup timed out");
                Txt::Unknown
            }
            Some(Ok(Lookup::Found(records))) => match policy::parse_txt(&records) {
                Ok(id) => Txt::Id(id),
                Err(e) => {
                    if !matches!(e, policy::TxtError::None) {
                        tracing::info!(domain, error = %e, "MTA-STS TXT record not usable: no policy");
                    }
                    Txt::NoRecord
                }
            },
            Some(Ok(Lookup::NoData | Lookup::NxDomain)) => Txt::NoRecord,
            Some(Err(e)) => {
                tracing::debug!(domain, error = %e, "MTA-STS TXT lookup failed");
                Txt::Unknown
            }
        };
        let now = unix_now();
        let cached = self.cache.borrow().get(domain).cloned();
        let failed_recently = self.failed.borrow().get(domain).is_some_and(|until| Instant::now() < *until);
        let id = match cache::plan(&txt, cached.as_ref(), now, failed_recently) {
            Step::Use(p) => return Some(p),
            Step::NoPolicy => return None,
            Step::Fetch { id } => id,
        };
        let host = format!("mta-sts.{domain}");
        let fetched = match resolver.addresses(&host).await {
            Ok(addrs) => {
                let job = fetch::Job {
                    domain: domain.to_string(),
                    id: id.clone(),
                    addrs,
                    port,
                    tls: tls.clone(),
                    dir: self.dir.clone(),
                    now,
                };
                self.fetcher.fetch(job).await
            }
            Err(e) => Err(fetch::FetchError::Http { url: host, reason: e.to_string() }),
        };
        match fetched {
            Ok(f) => {
                let p = f.policy;
                tracing::info!(domain, id = %p.id, mode = %p.policy.mode, max_age = p.policy.max_age, "MTA-STS policy fetched");
                if let Some(e) = f.not_stored {
                    tracing::warn!(domain, error = %e, "MTA-STS policy not cached on disk");
                }
                self.failed.borrow_mut().remove(domain);
                self.cache.borrow_mut().insert(domain.to_string(), p.clone());
                Some(p)
            }
            Err(e) => {
                let keep = cache::after_failed_fetch(cached.as_ref(), now);
                let kept = match &keep {
                    Step::Use(p) => format!("cached id={} still applies", p.id),
                    Step::Fetch { .. } | Step::NoPolicy => "no policy applies".to_string(),
                };
                tracing::warn!(domain, id = %id, error = %e, "MTA-STS policy fetch failed; {kept}");
                let mut failed = self.failed.borrow_mut();
                if failed.len() >= FAILED_PRUNE_AT {
                    let now = Instant::now();
                    failed.retain(|_, until| now < *until);
                }
                failed.insert(domain.to_string(), Instant::now() + FETCH_RETRY);
                drop(failed);
                match keep {
                    Step::Use(p) => Some(p),
                    Step::Fetch { .. } | Step::NoPolicy => None,
                }
            }
        }
    }
}

/// A domain's lookup in flight: removed from the table when it ends, even
/// when its task is dropped midway (its waiters then see a cancelled
/// channel instead of waiting forever).
struct InFlight<'a> {
    sts: &'a MtaSts,
    domain: &'a str,
}

impl InFlight<'_> {
    /// The connections that waited for this lookup.
    fn finish(self) -> Vec<oneshot::Sender<Option<StsPolicy>>> {
        self.sts.in_flight.borrow_mut().remove(self.domain).unwrap_or_default()
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.sts.in_flight.borrow_mut().remove(self.domain);
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
