//! The DNS side of client screening: each list asked at once, and the
//! client's FCrDNS, through the core's resolver (and its TTL cache).
//!
//! Runs as its own task from connect time on (while the greeting goes out,
//! as postscreen does); the session driver awaits it before feeding the
//! client's first MAIL or RCPT. Bounded by [`SCREEN_TIMEOUT`]: what has
//! not answered by then is a temporary error, never a stall.

use super::site::{unmapped, Site};
use crate::outbound::dns::{Lookup, Resolver};
use futures_lite::FutureExt;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The bound on all of a client's lookups (one query's worst case with
/// the resolver's three tries).
pub const SCREEN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a list that refused our queries is left alone.
pub const DISABLE_FOR: Duration = Duration::from_secs(3600);
/// PTR names checked at most (each costs an A/AAAA lookup).
pub const MAX_PTR_NAMES: usize = 10;

/// What one list said about the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListOutcome {
    /// An answer its filter matches.
    Listed(Ipv4Addr),
    /// No record, or none its filter matches.
    NotListed,
    /// 127.255.255.x: the list refused us (Spamhaus: "public resolver" or
    /// over quota); it is disabled for [`DISABLE_FOR`].
    Refused(Ipv4Addr),
    /// Disabled after an earlier refusal: not asked.
    Disabled,
    /// No answer (timeout, SERVFAIL): not counted.
    Failed,
}

/// One list's entry and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    pub site: Site,
    pub outcome: ListOutcome,
}

/// The FCrDNS result (RFC 8601 `iprev`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Iprev {
    /// `name` is a PTR name of the client that resolves back to it.
    Pass { name: String },
    /// No PTR, or no PTR name resolves to the client.
    Fail { reason: &'static str },
    /// The lookups failed for now.
    TempError,
    /// Not checked (`reverse_dns = "ignore"`).
    NotChecked,
}

/// Everything the DNS said about a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Findings {
    pub dnsbl: Vec<ListResult>,
    pub dnswl: Vec<ListResult>,
    pub iprev: Iprev,
}

/// Lists disabled after refusing us, shared by every core, so the warning
/// is logged once per refusal, not once per core or client.
#[derive(Debug, Default)]
pub struct Disabled {
    until: Mutex<HashMap<String, Instant>>,
}

impl Disabled {
    fn is_disabled(&self, domain: &str, now: Instant) -> bool {
        self.until.lock().unwrap_or_else(PoisonError::into_inner).get(domain).is_some_and(|t| now < *t)
    }

    /// Disable `domain`; true if it was not disabled already (so warn).
    fn disable(&self, domain: &str, now: Instant) -> bool {
        let mut until = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = until.get(domain).is_none_or(|t| now >= *t);
        if fresh {
            until.insert(domain.to_string(), now + DISABLE_FOR);
        }
        fresh
    }
}

/// What to look up for one client.
#[derive(Debug, Clone)]
pub struct Plan {
    pub dnsbl: Vec<Site>,
    pub dnswl: Vec<Site>,
    pub reverse_dns: bool,
}

/// Run every lookup of `plan` for `client` at once; within
/// [`SCREEN_TIMEOUT`] whatever happens.
pub async fn run(resolver: Resolver, client: IpAddr, plan: Plan, disabled: std::sync::Arc<Disabled>) -> Findings {
    let client = unmapped(client);
    let rdns_wanted = plan.reverse_dns;
    let list_task = |site: Site| {
        let (resolver, disabled) = (resolver.clone(), disabled.clone());
        glommio::spawn_local(async move {
            let outcome = ask_list(&resolver, client, &site, &disabled).await;
            ListResult { site, outcome }
        })
    };
    let bl: Vec<_> = plan.dnsbl.into_iter().map(list_task).collect();
    let wl: Vec<_> = plan.dnswl.into_iter().map(list_task).collect();
    let rdns = rdns_wanted.then(|| {
        let resolver = resolver.clone();
        glommio::spawn_local(async move { fcrdns(&resolver, client).await })
    });
    let all = async move {
        let mut findings = Findings { dnsbl: Vec::new(), dnswl: Vec::new(), iprev: Iprev::NotChecked };
        for t in bl {
            findings.dnsbl.push(t.await);
        }
        for t in wl {
            findings.dnswl.push(t.await);
        }
        if let Some(t) = rdns {
            findings.iprev = t.await;
        }
        findings
    };
    all.or(async {
        glommio::timer::sleep(SCREEN_TIMEOUT).await;
        tracing::info!(client = %client, "screening lookups timed out");
        // Lists that did not answer count as not asked; FCrDNS as temperror.
        Findings {
            dnsbl: Vec::new(),
            dnswl: Vec::new(),
            iprev: if rdns_wanted { Iprev::TempError } else { Iprev::NotChecked },
        }
    })
    .await
}

/// Ask one list about `client`.
async fn ask_list(resolver: &Resolver, client: IpAddr, site: &Site, disabled: &Disabled) -> ListOutcome {
    if disabled.is_disabled(&site.domain, Instant::now()) {
        return ListOutcome::Disabled;
    }
    let name = site.query_name(client);
    let answers = match resolver.ipv4(&name).await {
        Ok(Lookup::Found(ips)) => ips,
        Ok(Lookup::NoData | Lookup::NxDomain) => return ListOutcome::NotListed,
        Err(e) => {
            tracing::info!(list = %site.domain, error = %e, "DNS list lookup failed");
            return ListOutcome::Failed;
        }
    };
    let v4 = answers.iter().filter_map(|ip| match ip {
        IpAddr::V4(v4) => Some(*v4),
        IpAddr::V6(_) => None,
    });
    let mut listed = None;
    for answer in v4 {
        if answer.octets()[..3] == [127, 255, 255] {
            if disabled.disable(&site.domain, Instant::now()) {
                tracing::warn!(list = %site.domain, answer = %answer, disabled_for = ?DISABLE_FOR, "DNS list refused our query (127.255.255.x: blocked or over quota); not used for now");
            }
            return ListOutcome::Refused(answer);
        }
        if listed.is_none() && site.matches(answer) {
            listed = Some(answer);
        }
    }
    listed.map_or(ListOutcome::NotListed, ListOutcome::Listed)
}

/// Forward-confirmed reverse DNS: a PTR name of `client` whose addresses
/// include it.
async fn fcrdns(resolver: &Resolver, client: IpAddr) -> Iprev {
    let names = match resolver.ptr(client).await {
        Ok(Lookup::Found(names)) => names,
        Ok(Lookup::NoData | Lookup::NxDomain) => return Iprev::Fail { reason: "no PTR record" },
        Err(_) => return Iprev::TempError,
    };
    let tasks: Vec<_> = names
        .into_iter()
        .take(MAX_PTR_NAMES)
        .map(|name| {
            let resolver = resolver.clone();
            glommio::spawn_local(async move {
                let addrs = resolver.addresses(&name).await;
                (name, addrs)
            })
        })
        .collect();
    let mut failed = false;
    for t in tasks {
        match t.await {
            (name, Ok(addrs)) if addrs.iter().any(|a| unmapped(*a) == client) => return Iprev::Pass { name },
            (_, Ok(_)) => {}
            (_, Err(_)) => failed = true,
        }
    }
    if failed {
        Iprev::TempError
    } else {
        Iprev::Fail { reason: "PTR name does not resolve to the client" }
    }
}
