//! Where mail for a domain goes: RFC 5321 §5.1 routing, RFC 7505 null MX,
//! address literals, and the operator's `relay.routes` overrides (SMTP
//! smarthosts and LMTP stores; the grammar is in `config::routes`).
//!
//! This module owns the *decision*. [`route_override`], [`ip_literal`] and
//! [`route`] are pure: no I/O, no clock, and randomness only from the `rng`
//! they are handed, so every rule is tested without a network. [`plan`] is
//! the thin driver that asks the core's [`Resolver`] and feeds the answers
//! through them, producing the ordered [`Target`]s the dispatcher tries.
//!
//! It must not connect to anything, keep state between calls, or decide
//! what a failed *delivery* means; that is the dispatcher's job.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use rand::seq::SliceRandom;
use rand::Rng;

use crate::config::{LmtpAddr, RouteTarget, RouteTargets};
use crate::outbound::dns::{DnsError, Resolver};

/// The well-known port for server-to-server SMTP; MX hosts listen here.
pub const SMTP_PORT: u16 = 25;

/// At most this many MX hosts (lowest preferences first) are resolved for
/// one domain, so a domain publishing hundreds of MX records cannot make a
/// core send hundreds of queries. Postfix resolves at most 5 addresses by
/// default; 10 hosts is generous.
pub const MAX_MX_HOSTS: usize = 10;

/// At most this many targets come out of [`plan`]; the dispatcher will not
/// get through more before the next retry anyway.
pub const MAX_TARGETS: usize = 20;

/// One mail exchanger: a host name and its preference (lower is tried first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    /// Lower-case, without the trailing dot; empty for the root (null MX).
    pub name: String,
    /// RFC 5321 §5.1: hosts are tried in ascending preference.
    pub pref: u16,
}

/// What DNS said about a domain's MX records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxAnswer {
    /// The domain publishes these MX records, in no particular order.
    Records(Vec<MxHost>),
    /// The domain exists but has no MX records (NODATA): use its own
    /// addresses (the implicit MX).
    NoRecords,
    /// The domain does not exist (NXDOMAIN).
    NxDomain,
}

/// Which hosts to try for a domain, before their addresses are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// MX hosts in the order to try them: ascending preference, hosts of
    /// equal preference shuffled, duplicates and the root removed, at most
    /// [`MAX_MX_HOSTS`].
    Mx(Vec<MxHost>),
    /// No MX records: the domain itself is the only host (preference 0).
    Implicit(String),
    /// RFC 7505: the domain declares it accepts no mail. Bounce at once.
    NullMx,
    /// NXDOMAIN: the domain does not exist. Bounce at once.
    NoSuchDomain,
}

/// One place to try: the host name (for logs, TLS name checks and the DSN)
/// and where to connect, in which protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// MX host, override host or the address literal as written; for an
    /// LMTP route, the route target as the grammar writes it
    /// (`lmtp:127.0.0.1:24`, `lmtp:unix:/run/dovecot/lmtp`).
    pub host: String,
    /// Where to connect, and whether to speak SMTP or LMTP there.
    pub addr: Endpoint,
    /// Where the host came from: DANE and MTA-STS apply only to MX hosts.
    pub origin: Origin,
}

/// Where a [`Target`]'s host came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The domain's MX records (or its implicit MX). `secure`: the MX
    /// answer (for the implicit MX, the secure denial of MX records) and
    /// the host's A and AAAA answers were all DNSSEC-validated (AD bit from
    /// a validating resolver), which DANE requires (RFC 7672 §2.2.1,
    /// §2.2.2).
    Mx { secure: bool },
    /// The operator's choice: a `relay.routes` override, a fallback relay
    /// or an address literal.
    Configured,
}

impl Target {
    /// How logs (`relay=`) and DSNs name the server that answered:
    /// `host[addr]` over TCP, the route target for a Unix socket.
    pub fn relay_name(&self) -> String {
        match &self.addr {
            Endpoint::Smtp(addr) | Endpoint::LmtpTcp(addr) => format!("{}[{addr}]", self.host),
            Endpoint::LmtpUnix(_) => self.host.clone(),
        }
    }

    /// The DSN's `Remote-MTA` (RFC 3464 §2.3.5, a host name): the
    /// relay name over TCP; none for a Unix socket, which is on this host
    /// and has no name in DNS (the diagnostic still quotes its reply).
    pub fn remote_mta(&self) -> Option<String> {
        match &self.addr {
            Endpoint::Smtp(_) | Endpoint::LmtpTcp(_) => Some(self.relay_name()),
            Endpoint::LmtpUnix(_) => None,
        }
    }
}

/// Where a [`Target`] is reached, and in which protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// SMTP over TCP (an MX host, a smarthost).
    Smtp(SocketAddr),
    /// LMTP (RFC 2033) over TCP.
    LmtpTcp(SocketAddr),
    /// LMTP over a Unix stream socket.
    LmtpUnix(PathBuf),
}

impl Endpoint {
    /// The TCP address, when the endpoint is one.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Endpoint::Smtp(addr) | Endpoint::LmtpTcp(addr) => Some(*addr),
            Endpoint::LmtpUnix(_) => None,
        }
    }
}

/// `127.0.0.1:25` over TCP, `unix:/path` for a socket.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Smtp(addr) | Endpoint::LmtpTcp(addr) => write!(f, "{addr}"),
            Endpoint::LmtpUnix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Where mail for one domain goes: the [`Target`]s to try, and the MX
/// host names they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// In the order to try them; never empty, no repeated address.
    pub targets: Vec<Target>,
    /// Every MX host of the domain in the order they are tried, whether
    /// its addresses resolved or repeated another's (the implicit MX or an
    /// address literal: the domain; an override: its host). The site is
    /// named from this set: two MX names for one address are still two
    /// hosts, and `targets` keeps only the first of them.
    pub hosts: Vec<String>,
}

/// Why a domain cannot be routed. [`RouteError::is_permanent`] separates the
/// bounces from the deferrals; [`RouteError::status`] is the RFC 3463 code
/// for the DSN, and `Display` is the human-readable diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// RFC 7505 §4.2's wording, so the DSN reads as the RFC suggests.
    #[error("Recipient address has null MX")]
    NullMx {
        /// The destination domain.
        domain: String,
    },
    /// NXDOMAIN for the domain (or a domain that cannot be a DNS name).
    #[error("Domain {domain} does not exist (DNS NXDOMAIN)")]
    NoSuchDomain {
        /// The destination domain.
        domain: String,
    },
    /// DNS answered definitively, but none of the mail servers (or the
    /// domain itself, with no MX) has an address.
    #[error("No address found for the mail servers of {domain}")]
    NoAddress {
        /// The destination domain.
        domain: String,
    },
    /// DNS failed for now (SERVFAIL, timeout, I/O), or a `relay.routes`
    /// host did not resolve: try again later.
    #[error("Cannot route mail for {domain} now: {reason}")]
    Temporary {
        /// The destination domain.
        domain: String,
        /// What failed, for the log and the eventual DSN.
        reason: String,
    },
}

impl RouteError {
    /// True when the mail should bounce now; false when it should be deferred.
    pub fn is_permanent(&self) -> bool {
        match self {
            RouteError::NullMx { .. } | RouteError::NoSuchDomain { .. } | RouteError::NoAddress { .. } => true,
            RouteError::Temporary { .. } => false,
        }
    }

    /// The RFC 3463 enhanced status code for the DSN.
    pub fn status(&self) -> &'static str {
        match self {
            // RFC 7505 §4.2.
            RouteError::NullMx { .. } => "5.1.10",
            // "Bad destination system address".
            RouteError::NoSuchDomain { .. } => "5.1.2",
            // "Unable to route".
            RouteError::NoAddress { .. } => "5.4.4",
            // "Directory server failure".
            RouteError::Temporary { .. } => "4.4.3",
        }
    }
}

/// The `relay.routes` entry for `domain`, if any: the exact domain first
/// (case and a trailing dot ignored), then `"*"`, the smarthost for all.
/// Its valid targets in the order tried (config validation has already
/// reported the malformed ones, which are never tried); never empty.
pub fn route_override<'a>(routes: &'a BTreeMap<String, RouteTargets>, domain: &str) -> Option<&'a [RouteTarget]> {
    let domain = normalize(domain);
    let exact = routes.get(&domain).or_else(|| {
        routes.iter().find(|(key, _)| key.as_str() != "*" && normalize(key) == domain).map(|(_, value)| value)
    });
    let valid = |route: &'a RouteTargets| Some(route.targets()).filter(|t| !t.is_empty());
    exact.and_then(valid).or_else(|| routes.get("*").and_then(valid))
}

/// The address of an RFC 5321 §4.1.3 address literal: `[192.0.2.1]` or
/// `[IPv6:2001:db8::1]`. Anything else, including a general address literal
/// or an untagged IPv6 address, is not one.
pub fn ip_literal(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner[5..].parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6),
        _ => inner.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// RFC 5321 §5.1 and RFC 7505: turn an MX answer into the hosts to try.
///
/// - NXDOMAIN is [`Route::NoSuchDomain`]; no records (or an empty list) is
///   [`Route::Implicit`] with the domain itself.
/// - Records whose only exchange is the root (`"."`) are [`Route::NullMx`],
///   whatever their preference. A root exchange published *beside* real
///   ones violates RFC 7505 §3; it is dropped and the real ones are used,
///   since mail the domain can receive should not bounce.
/// - Otherwise hosts are sorted by preference, equal preferences shuffled
///   with `rng` (spreading load as §5.1 asks), a host listed twice keeps
///   its first place, and at most [`MAX_MX_HOSTS`] remain.
pub fn route(domain: &str, answer: MxAnswer, rng: &mut impl Rng) -> Route {
    let records = match answer {
        MxAnswer::NxDomain => return Route::NoSuchDomain,
        MxAnswer::NoRecords => return Route::Implicit(normalize(domain)),
        MxAnswer::Records(records) => records,
    };
    if records.is_empty() {
        return Route::Implicit(normalize(domain));
    }
    let mut hosts: Vec<MxHost> = records
        .into_iter()
        .map(|h| MxHost { name: normalize(&h.name), pref: h.pref })
        .filter(|h| !h.name.is_empty())
        .collect();
    if hosts.is_empty() {
        return Route::NullMx;
    }
    hosts.sort_by_key(|h| h.pref);
    for run in hosts.chunk_by_mut(|a, b| a.pref == b.pref) {
        run.shuffle(rng);
    }
    let mut seen = std::collections::HashSet::new();
    hosts.retain(|h| seen.insert(h.name.clone()));
    hosts.truncate(MAX_MX_HOSTS);
    Route::Mx(hosts)
}

/// Everything to try for `domain`, in order, ready to connect to: the
/// `relay.routes` override if there is one, else the address literal, else
/// DNS (MX by preference, each host's A then AAAA addresses, implicit MX,
/// null MX), on port [`SMTP_PORT`].
///
/// Errors say whether to bounce or defer ([`RouteError::is_permanent`]).
/// MX hosts that do not resolve are skipped; if none resolves, the error is
/// temporary when any lookup failed for now, else [`RouteError::NoAddress`].
/// An override host that does not resolve is always temporary: that is the
/// operator's to fix, and mail must not bounce meanwhile. The returned list
/// is never empty, has no repeated address, and holds at most
/// [`MAX_TARGETS`] entries.
pub async fn plan(
    resolver: &Resolver,
    routes: &BTreeMap<String, RouteTargets>,
    domain: &str,
    rng: &mut impl Rng,
) -> Result<Vec<Target>, RouteError> {
    plan_with_port(resolver, routes, &[], domain, SMTP_PORT, rng).await.map(|p| p.targets)
}

/// [`plan`] with MX hosts reached on `mx_port` instead of 25, so tests on
/// loopback need not take port 25 (overrides keep their own ports), with
/// the host names the targets came from, and with `fallback` relays
/// (`relay.fallback_relay`, `"host:port"`) tried after every MX address.
pub async fn plan_with_port(
    resolver: &Resolver,
    routes: &BTreeMap<String, RouteTargets>,
    fallback: &[String],
    domain: &str,
    mx_port: u16,
    rng: &mut impl Rng,
) -> Result<Plan, RouteError> {
    if let Some(route) = route_override(routes, domain) {
        let mut resolved: Vec<Target> = Vec::with_capacity(route.len());
        let mut first_failure = None;
        for target in route {
            let (host, port, lmtp) = match target {
                RouteTarget::Smtp { host, port } => (host, *port, false),
                RouteTarget::Lmtp(LmtpAddr::Tcp { host, port }) => (host, *port, true),
                RouteTarget::Lmtp(LmtpAddr::Unix(path)) => {
                    resolved.push(Target {
                        host: target.to_string(),
                        addr: Endpoint::LmtpUnix(path.clone()),
                        origin: Origin::Configured,
                    });
                    continue;
                }
            };
            match resolver.addresses(host).await {
                Ok(addrs) if !addrs.is_empty() => {
                    let found = targets(&[(host.clone(), addrs, Origin::Configured)], port);
                    resolved.extend(found.into_iter().map(|t| match (lmtp, &t.addr) {
                        (true, Endpoint::Smtp(addr)) => {
                            Target { host: target.to_string(), addr: Endpoint::LmtpTcp(*addr), ..t }
                        }
                        (_, _) => t,
                    }));
                }
                Ok(_) => {
                    first_failure.get_or_insert_with(|| format!("relay.routes host {host} has no address"));
                }
                Err(e) => {
                    first_failure.get_or_insert_with(|| format!("relay.routes host {host}: {e}"));
                }
            }
        }
        let hosts = route
            .iter()
            .map(|t| match t {
                RouteTarget::Smtp { host, .. } => host.clone(),
                RouteTarget::Lmtp(_) => t.to_string(),
            })
            .collect();
        return match (resolved.is_empty(), first_failure) {
            (false, _) => Ok(Plan { targets: resolved, hosts }),
            (true, reason) => Err(temporary(domain, reason.unwrap_or_default())),
        };
    }
    if let Some(ip) = ip_literal(domain) {
        let targets = vec![Target {
            host: domain.to_string(),
            addr: Endpoint::Smtp(SocketAddr::new(ip, mx_port)),
            origin: Origin::Configured,
        }];
        return Ok(Plan { targets, hosts: vec![domain.to_string()] });
    }
    let (answer, mx_secure) = match resolver.secure_mx(domain).await {
        Ok(answer) => answer,
        // A name that cannot exist in DNS is as good as NXDOMAIN.
        Err(e) if e.is_permanent() => (MxAnswer::NxDomain, false),
        Err(e) => return Err(temporary(domain, e.to_string())),
    };
    let hosts = match route(domain, answer, rng) {
        Route::Mx(hosts) => hosts,
        Route::Implicit(name) => vec![MxHost { name, pref: 0 }],
        Route::NullMx => return Err(RouteError::NullMx { domain: domain.to_string() }),
        Route::NoSuchDomain => return Err(RouteError::NoSuchDomain { domain: domain.to_string() }),
    };
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let mut resolved = Vec::with_capacity(hosts.len());
    let mut first_failure: Option<DnsError> = None;
    for host in hosts {
        match resolver.secure_addresses(&host.name).await {
            Ok((addrs, secure)) => resolved.push((host.name, addrs, Origin::Mx { secure: mx_secure && secure })),
            // A name that cannot exist is as good as NXDOMAIN: skip it.
            Err(e) if e.is_permanent() => {}
            Err(e) => {
                first_failure.get_or_insert(e);
            }
        }
    }
    let mut out = targets(&resolved, mx_port);
    match (out.is_empty(), first_failure) {
        (false, _) => {
            out.extend(fallback_targets(resolver, fallback, &out).await);
            Ok(Plan { targets: out, hosts: names })
        }
        // The MX hosts are known but unreachable by name for now: the
        // fallback relays can still take the mail.
        (true, Some(e)) => {
            let out = fallback_targets(resolver, fallback, &[]).await;
            match out.is_empty() {
                true => Err(temporary(domain, e.to_string())),
                false => Ok(Plan { targets: out, hosts: names }),
            }
        }
        (true, None) => Err(RouteError::NoAddress { domain: domain.to_string() }),
    }
}

/// The addresses of the `fallback` relays not already in `planned` (a
/// relay that does not resolve is left out: the MX hosts come first).
async fn fallback_targets(resolver: &Resolver, fallback: &[String], planned: &[Target]) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    for (host, port) in fallback.iter().filter_map(|f| parse_host_port(f)) {
        if let Ok(addrs) = resolver.addresses(&host).await {
            for t in targets(&[(host.clone(), addrs, Origin::Configured)], port) {
                if !planned.iter().chain(&out).any(|p| p.addr == t.addr) {
                    out.push(t);
                }
            }
        }
    }
    out
}

/// Flattens hosts and their addresses in order, dropping repeated
/// addresses (two MX names for one server) and stopping at [`MAX_TARGETS`].
fn targets(hosts: &[(String, Vec<IpAddr>, Origin)], port: u16) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    for (host, addrs, origin) in hosts {
        for ip in addrs {
            let addr = Endpoint::Smtp(SocketAddr::new(*ip, port));
            if out.len() < MAX_TARGETS && !out.iter().any(|t| t.addr == addr) {
                out.push(Target { host: host.clone(), addr, origin: *origin });
            }
        }
    }
    out
}

fn temporary(domain: &str, reason: String) -> RouteError {
    RouteError::Temporary { domain: domain.to_string(), reason }
}

/// Domain names compare case-insensitively and with or without the root dot.
pub(crate) fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// `"host:port"`, `"[v6]:port"`; `None` when malformed or the host is empty.
fn parse_host_port(value: &str) -> Option<(String, u16)> {
    let (host, port) = value.trim().rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = match host.strip_prefix('[') {
        Some(rest) => rest.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::testdns::{TestDns, Zone};
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::time::Duration;

    fn mx(name: &str, pref: u16) -> MxHost {
        MxHost { name: name.to_string(), pref }
    }

    fn smtp(host: &str, port: u16) -> RouteTarget {
        RouteTarget::Smtp { host: host.to_string(), port }
    }

    fn routes(pairs: &[(&str, &str)]) -> BTreeMap<String, RouteTargets> {
        pairs.iter().map(|(k, v)| (k.to_string(), RouteTargets::from(*v))).collect()
    }

    fn hosts(route: Route) -> Vec<(String, u16)> {
        match route {
            Route::Mx(hosts) => hosts.into_iter().map(|h| (h.name, h.pref)).collect(),
            other => panic!("expected Route::Mx, got {other:?}"),
        }
    }

    #[test]
    fn mx_hosts_are_tried_in_ascending_preference() {
        let answer = MxAnswer::Records(vec![mx("c.test", 30), mx("a.test", 10), mx("b.test", 20)]);
        let got = hosts(route("d.test", answer, &mut StdRng::seed_from_u64(1)));
        assert_eq!(got, [("a.test".into(), 10), ("b.test".into(), 20), ("c.test".into(), 30)]);
    }

    #[test]
    fn equal_preferences_are_shuffled_but_never_cross_preferences() {
        let answer = MxAnswer::Records(vec![
            mx("late1.test", 20),
            mx("early1.test", 10),
            mx("late2.test", 20),
            mx("early2.test", 10),
            mx("early3.test", 10),
            mx("last.test", 50),
        ]);
        let mut first_seen = std::collections::BTreeSet::new();
        for seed in 0..500 {
            let got = hosts(route("d.test", answer.clone(), &mut StdRng::seed_from_u64(seed)));
            let prefs: Vec<u16> = got.iter().map(|(_, p)| *p).collect();
            assert_eq!(prefs, [10, 10, 10, 20, 20, 50], "seed {seed}");
            assert!(got[..3].iter().all(|(n, _)| n.starts_with("early")), "seed {seed}: {got:?}");
            first_seen.insert(got[0].0.clone());
        }
        // Every host of the best preference gets to be first sometimes.
        assert_eq!(first_seen.len(), 3, "{first_seen:?}");
    }

    #[test]
    fn names_are_lowercased_and_duplicates_keep_their_best_place() {
        let answer = MxAnswer::Records(vec![mx("MX.Example.TEST.", 20), mx("mx.example.test", 10)]);
        let got = hosts(route("d.test", answer, &mut StdRng::seed_from_u64(0)));
        assert_eq!(got, [("mx.example.test".into(), 10)]);
    }

    #[test]
    fn at_most_max_mx_hosts_are_kept_lowest_first() {
        let many = (0..40u16).map(|i| mx(&format!("mx{i}.test"), 100 - i)).collect();
        let got = hosts(route("d.test", MxAnswer::Records(many), &mut StdRng::seed_from_u64(0)));
        assert_eq!(got.len(), MAX_MX_HOSTS);
        assert_eq!(got[0], ("mx39.test".into(), 61));
    }

    #[test]
    fn single_root_mx_is_null_mx() {
        let answer = MxAnswer::Records(vec![mx(".", 0)]);
        assert_eq!(route("d.test", answer, &mut StdRng::seed_from_u64(0)), Route::NullMx);
        let odd_pref = MxAnswer::Records(vec![mx("", 10)]);
        assert_eq!(route("d.test", odd_pref, &mut StdRng::seed_from_u64(0)), Route::NullMx);
    }

    #[test]
    fn root_mx_beside_real_ones_is_ignored() {
        let answer = MxAnswer::Records(vec![mx(".", 0), mx("mx.test", 10)]);
        let got = hosts(route("d.test", answer, &mut StdRng::seed_from_u64(0)));
        assert_eq!(got, [("mx.test".into(), 10)]);
    }

    #[test]
    fn no_mx_records_means_the_domain_itself() {
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(route("Plain.TEST.", MxAnswer::NoRecords, &mut rng), Route::Implicit("plain.test".into()));
        assert_eq!(route("plain.test", MxAnswer::Records(vec![]), &mut rng), Route::Implicit("plain.test".into()));
    }

    #[test]
    fn nxdomain_means_no_such_domain() {
        assert_eq!(route("nx.test", MxAnswer::NxDomain, &mut StdRng::seed_from_u64(0)), Route::NoSuchDomain);
    }

    #[test]
    fn ip_literals_are_recognised() {
        assert_eq!(ip_literal("[192.0.2.1]"), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(ip_literal("[IPv6:2001:db8::1]"), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(ip_literal("[ipv6:::1]"), Some("::1".parse().unwrap()));
        assert_eq!(ip_literal("192.0.2.1"), None);
        assert_eq!(ip_literal("[2001:db8::1]"), None);
        assert_eq!(ip_literal("[300.1.1.1]"), None);
        assert_eq!(ip_literal("[x-tag:whatever]"), None);
        assert_eq!(ip_literal("[]"), None);
    }

    #[test]
    fn exact_override_wins_over_smarthost() {
        let r = routes(&[("example.net", "127.0.0.1:2600"), ("*", "smart.test:587")]);
        assert_eq!(route_override(&r, "example.net"), Some(&[smtp("127.0.0.1", 2600)][..]));
        assert_eq!(route_override(&r, "EXAMPLE.net."), Some(&[smtp("127.0.0.1", 2600)][..]));
        assert_eq!(route_override(&r, "other.net"), Some(&[smtp("smart.test", 587)][..]));
    }

    #[test]
    fn override_keys_match_case_insensitively() {
        let r = routes(&[("Example.NET", "[::1]:25")]);
        assert_eq!(route_override(&r, "example.net"), Some(&[smtp("::1", 25)][..]));
    }

    #[test]
    fn no_override_without_a_matching_entry_or_star() {
        let r = routes(&[("example.net", "127.0.0.1:2600")]);
        assert_eq!(route_override(&r, "sub.example.net"), None);
        assert_eq!(route_override(&BTreeMap::new(), "example.net"), None);
    }

    #[test]
    fn malformed_override_values_are_ignored() {
        let r = routes(&[("a.test", "nohostport"), ("b.test", "::1:25"), ("c.test", ":25"), ("d.test", "h:x")]);
        for d in ["a.test", "b.test", "c.test", "d.test"] {
            assert_eq!(route_override(&r, d), None, "{d}");
        }
    }

    #[test]
    fn route_errors_say_bounce_or_defer() {
        let d = || "d.test".to_string();
        let null = RouteError::NullMx { domain: d() };
        assert!(null.is_permanent());
        assert_eq!(null.status(), "5.1.10");
        assert_eq!(null.to_string(), "Recipient address has null MX");
        assert!(RouteError::NoSuchDomain { domain: d() }.is_permanent());
        assert_eq!(RouteError::NoSuchDomain { domain: d() }.status(), "5.1.2");
        assert!(RouteError::NoAddress { domain: d() }.is_permanent());
        let temp = RouteError::Temporary { domain: d(), reason: "SERVFAIL".into() };
        assert!(!temp.is_permanent());
        assert!(temp.status().starts_with('4'));
    }

    // `plan` against a real (loopback) DNS server.

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .make()
            .expect("glommio executor")
            .run(f)
    }

    fn plan_for(dns: &TestDns, r: &BTreeMap<String, RouteTargets>, domain: &str) -> Result<Vec<Target>, RouteError> {
        let resolver = Resolver::new(dns.addr(), Duration::from_millis(300));
        run(async { plan(&resolver, r, domain, &mut StdRng::seed_from_u64(7)).await })
    }

    /// An MX host's target.
    fn target(host: &str, addr: &str) -> Target {
        Target {
            host: host.to_string(),
            addr: Endpoint::Smtp(addr.parse().unwrap()),
            origin: Origin::Mx { secure: false },
        }
    }

    /// A route's, fallback relay's or address literal's target.
    fn configured(host: &str, addr: &str) -> Target {
        Target { origin: Origin::Configured, ..target(host, addr) }
    }

    #[test]
    fn plan_lists_mx_hosts_by_preference_a_before_aaaa() {
        let dns = TestDns::start(
            Zone::new()
                .mx("example.test", 20, "mx2.example.test")
                .mx("example.test", 10, "mx1.example.test")
                .a("mx1.example.test", "127.0.0.2")
                .aaaa("mx1.example.test", "::1")
                .a("mx2.example.test", "127.0.0.3"),
        );
        let got = plan_for(&dns, &BTreeMap::new(), "example.test").unwrap();
        assert_eq!(
            got,
            [
                target("mx1.example.test", "127.0.0.2:25"),
                target("mx1.example.test", "[::1]:25"),
                target("mx2.example.test", "127.0.0.3:25"),
            ]
        );
    }

    #[test]
    fn plan_names_every_mx_host_even_when_two_share_an_address() {
        // The site is named from `hosts`: it must not depend on which of
        // two names for one server kept the address.
        let dns = TestDns::start(
            Zone::new()
                .mx("example.test", 10, "mx1.example.test")
                .mx("example.test", 20, "mx2.example.test")
                .a("mx1.example.test", "127.0.0.2")
                .a("mx2.example.test", "127.0.0.2"),
        );
        let resolver = Resolver::new(dns.addr(), Duration::from_millis(300));
        let got = run(async {
            plan_with_port(&resolver, &BTreeMap::new(), &[], "example.test", 25, &mut StdRng::seed_from_u64(7)).await
        })
        .unwrap();
        assert_eq!(got.targets, [target("mx1.example.test", "127.0.0.2:25")]);
        assert_eq!(got.hosts, ["mx1.example.test", "mx2.example.test"]);
    }

    #[test]
    fn a_route_list_keeps_its_order_and_drops_malformed_entries() {
        let mut r = BTreeMap::new();
        let list = vec!["127.0.0.9:2500".to_string(), "bad".to_string(), "[::1]:26".to_string()];
        r.insert("x.test".to_string(), RouteTargets::new(list));
        assert_eq!(route_override(&r, "x.test"), Some(&[smtp("127.0.0.9", 2500), smtp("::1", 26)][..]));
        let dns = TestDns::start(Zone::new());
        let got = plan_for(&dns, &r, "x.test").unwrap();
        assert_eq!(got, [configured("127.0.0.9", "127.0.0.9:2500"), configured("::1", "[::1]:26")]);
    }

    #[test]
    fn fallback_relays_come_after_every_mx_address_and_only_for_mx_routes() {
        let dns =
            TestDns::start(Zone::new().mx("example.test", 10, "mx1.example.test").a("mx1.example.test", "127.0.0.2"));
        let resolver = Resolver::new(dns.addr(), Duration::from_millis(300));
        let fallback = ["127.0.0.7:2525".to_string(), "127.0.0.2:25".to_string()];
        let mut routes = BTreeMap::new();
        routes.insert("routed.test".to_string(), RouteTargets::from("127.0.0.8:25"));
        let (mx, routed) = run(async {
            let mut rng = StdRng::seed_from_u64(7);
            let mx = plan_with_port(&resolver, &routes, &fallback, "example.test", 25, &mut rng).await;
            let routed = plan_with_port(&resolver, &routes, &fallback, "routed.test", 25, &mut rng).await;
            (mx, routed)
        });
        assert_eq!(
            mx.unwrap().targets,
            [target("mx1.example.test", "127.0.0.2:25"), configured("127.0.0.7", "127.0.0.7:2525")],
            "after the MX, and an address already planned is not tried twice"
        );
        assert_eq!(routed.unwrap().targets, [configured("127.0.0.8", "127.0.0.8:25")]);
    }

    #[test]
    fn mx_hosts_are_secure_only_when_the_mx_and_their_addresses_validated() {
        let dns = TestDns::start(
            Zone::new()
                .mx("example.test", 10, "mx1.example.test")
                .mx("example.test", 20, "mx2.example.test")
                .a("mx1.example.test", "127.0.0.2")
                .a("mx2.example.test", "127.0.0.3")
                .signed("example.test")
                .signed("mx1.example.test")
                .mx("insecure.test", 10, "mx1.example.test"),
        );
        let got = plan_for(&dns, &BTreeMap::new(), "example.test").unwrap();
        let secure = Target { origin: Origin::Mx { secure: true }, ..target("mx1.example.test", "127.0.0.2:25") };
        assert_eq!(got, [secure, target("mx2.example.test", "127.0.0.3:25")]);
        let got = plan_for(&dns, &BTreeMap::new(), "insecure.test").unwrap();
        assert_eq!(got, [target("mx1.example.test", "127.0.0.2:25")], "an insecure MX makes every host insecure");
    }

    #[test]
    fn plan_skips_mx_hosts_without_addresses() {
        let dns = TestDns::start(
            Zone::new()
                .mx("example.test", 10, "gone.example.test")
                .mx("example.test", 20, "mx2.example.test")
                .a("mx2.example.test", "127.0.0.3"),
        );
        let got = plan_for(&dns, &BTreeMap::new(), "example.test").unwrap();
        assert_eq!(got, [target("mx2.example.test", "127.0.0.3:25")]);
    }

    #[test]
    fn plan_uses_the_domain_address_without_mx() {
        let dns = TestDns::start(Zone::new().a("plain.test", "127.0.0.4"));
        let got = plan_for(&dns, &BTreeMap::new(), "plain.test").unwrap();
        assert_eq!(got, [target("plain.test", "127.0.0.4:25")]);
    }

    #[test]
    fn plan_bounces_null_mx_nxdomain_and_addressless_domains() {
        let dns =
            TestDns::start(Zone::new().null_mx("null.test").nxdomain("nx.test").mx("lost.test", 10, "nowhere.test"));
        let none = BTreeMap::new();
        assert_eq!(plan_for(&dns, &none, "null.test"), Err(RouteError::NullMx { domain: "null.test".into() }));
        assert_eq!(plan_for(&dns, &none, "nx.test"), Err(RouteError::NoSuchDomain { domain: "nx.test".into() }));
        assert_eq!(plan_for(&dns, &none, "lost.test"), Err(RouteError::NoAddress { domain: "lost.test".into() }));
    }

    #[test]
    fn plan_defers_on_servfail() {
        let dns = TestDns::start(Zone::new().servfail("broken.test"));
        let err = plan_for(&dns, &BTreeMap::new(), "broken.test").unwrap_err();
        assert!(!err.is_permanent(), "{err}");
        assert!(err.to_string().contains("SERVFAIL") || err.to_string().contains("Server Failure"), "{err}");
    }

    #[test]
    fn plan_override_and_literal_skip_dns() {
        let dns = TestDns::start(Zone::new().mx("example.net", 10, "mx.example.net"));
        let r = routes(&[("example.net", "127.0.0.1:2600")]);
        assert_eq!(plan_for(&dns, &r, "example.net").unwrap(), [configured("127.0.0.1", "127.0.0.1:2600")]);
        let literal = plan_for(&dns, &BTreeMap::new(), "[127.0.0.9]").unwrap();
        assert_eq!(literal, [configured("[127.0.0.9]", "127.0.0.9:25")]);
        assert_eq!(dns.queries(), 0);
    }

    #[test]
    fn plan_smarthost_name_is_resolved() {
        let dns = TestDns::start(Zone::new().a("smart.test", "127.0.0.5"));
        let r = routes(&[("*", "smart.test:2525")]);
        assert_eq!(plan_for(&dns, &r, "anything.test").unwrap(), [configured("smart.test", "127.0.0.5:2525")]);
    }

    #[test]
    fn plan_defers_when_the_override_host_does_not_resolve() {
        let dns = TestDns::start(Zone::new());
        let r = routes(&[("*", "missing.test:25")]);
        let err = plan_for(&dns, &r, "anything.test").unwrap_err();
        assert!(!err.is_permanent(), "{err}");
    }

    #[test]
    fn lmtp_routes_plan_unix_sockets_and_tcp_ports_without_dns() {
        let dns = TestDns::start(Zone::new());
        let r = routes(&[("unix.test", "lmtp:unix:/run/dovecot/lmtp"), ("tcp.test", "lmtp:127.0.0.1:24")]);
        let unix = plan_for(&dns, &r, "unix.test").unwrap();
        let want = Target {
            host: "lmtp:unix:/run/dovecot/lmtp".into(),
            addr: Endpoint::LmtpUnix("/run/dovecot/lmtp".into()),
            origin: Origin::Configured,
        };
        assert_eq!(unix, [want]);
        assert_eq!(unix[0].relay_name(), "lmtp:unix:/run/dovecot/lmtp");
        let tcp = plan_for(&dns, &r, "tcp.test").unwrap();
        let want = Target {
            host: "lmtp:127.0.0.1:24".into(),
            addr: Endpoint::LmtpTcp("127.0.0.1:24".parse().unwrap()),
            origin: Origin::Configured,
        };
        assert_eq!(tcp, [want]);
        assert_eq!(tcp[0].relay_name(), "lmtp:127.0.0.1:24[127.0.0.1:24]");
        assert_eq!(dns.queries(), 0);
    }
}
