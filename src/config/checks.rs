//! Semantic checks that need more than one key at a time or a fact about
//! the machine: listener addresses that would collide, more cores than the
//! process may use, counts and durations that are zero where zero makes no
//! sense.
//!
//! Zero is allowed, and documented at the key, only where it has a
//! meaning: `cores` (every allowed CPU), `limits.max_messages_per_minute_per_ip`
//! and `_per_user` (no limit), `spool.compact_below` (no compaction),
//! `spool.min_free` (no reserve), `relay.delay_warning` ("0s": never),
//! `relay.connection_idle` ("0s": QUIT as soon as the destination's mail is
//! sent), `runtime.drain_timeout` ("0s": stop without waiting for sessions),
//! `auth.failure_delay` ("0s": answer failures at once).
//!
//! The egress pools are checked here too (names, sources, weights, EHLO
//! names, the pool names the sender map uses); whether each source
//! address belongs to this machine is a start-up check
//! (`startup::preflight`), since `check-config` may run elsewhere.

use super::{Config, Listen, Relay, Span};
use std::collections::HashSet;
use std::net::SocketAddr;

/// Push every problem found onto `p`, each naming its key.
pub(super) fn problems(cfg: &Config, allowed_cpus: usize, p: &mut Vec<String>) {
    listener_clashes(&cfg.listen, p);
    if cfg.cores > allowed_cpus {
        p.push(format!(
            "cores = {}: this process may use {allowed_cpus} CPU(s) (its affinity mask); set cores to at most {allowed_cpus}, or 0 for all of them",
            cfg.cores
        ));
    }
    zero_counts(cfg, p);
    zero_durations(cfg, p);
    pools(&cfg.relay, p);
}

/// `[[relay.pool]]`, `relay.default_pool` and `relay.pool_by_sender_domain`.
fn pools(relay: &Relay, p: &mut Vec<String>) {
    let mut names = HashSet::new();
    for pool in &relay.pool {
        let key = format!("relay.pool {:?}", pool.name);
        if pool.name.is_empty() {
            p.push("relay.pool: a pool has an empty name".to_string());
        } else if !names.insert(pool.name.as_str()) {
            p.push(format!("{key}: two pools have this name"));
        }
        if pool.sources.is_empty() {
            p.push(format!("{key}: sources is empty; give at least one {{ ip = \"...\" }}"));
        }
        let mut ips = HashSet::new();
        for source in &pool.sources {
            if !ips.insert(source.ip) {
                p.push(format!("{key}: source {} is listed twice", source.ip));
            }
            if source.weight == 0 {
                p.push(format!("{key}: source {} has weight = 0: must be at least 1", source.ip));
            }
            if let Some(ehlo) = source.ehlo.as_deref().filter(|e| !is_host_name(e)) {
                p.push(format!("{key}: source {} has ehlo = {ehlo:?}: not a host name", source.ip));
            }
        }
    }
    if let Some(name) = relay.default_pool.as_ref().filter(|n| !names.contains(n.as_str())) {
        p.push(format!("relay.default_pool = {name:?}: no [[relay.pool]] has that name"));
    }
    for (domain, name) in &relay.pool_by_sender_domain {
        if !names.contains(name.as_str()) {
            p.push(format!("relay.pool_by_sender_domain.{domain:?} = {name:?}: no [[relay.pool]] has that name"));
        }
    }
}

/// A DNS host name as EHLO wants it (RFC 5321 §4.1.2 Domain): labels of
/// letters, digits and `-` (not first or last), 1 to 63 bytes each, at
/// most 253 in all. `_` is accepted as Postfix does.
fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The `[listen]` keys with their addresses.
fn listeners(l: &Listen) -> Vec<(&'static str, SocketAddr)> {
    [
        ("listen.smtp", l.smtp),
        ("listen.submission", l.submission),
        ("listen.smtps", l.smtps),
        ("listen.pop3", l.pop3),
        ("listen.pop3s", l.pop3s),
        ("listen.metrics", l.metrics),
        ("listen.http", l.http),
    ]
    .into_iter()
    .filter_map(|(k, a)| a.map(|a| (k, a)))
    .collect()
}

/// Two listeners that the kernel would let share a port: glommio binds
/// with SO_REUSEPORT, so both would bind and clients would reach either.
fn listener_clashes(l: &Listen, p: &mut Vec<String>) {
    let all = listeners(l);
    for (i, &(k1, a1)) in all.iter().enumerate() {
        for &(k2, a2) in &all[i + 1..] {
            if clash(a1, a2) {
                let how = if a1 == a2 { format!("both use {a1}") } else { format!("{a1} and {a2} overlap") };
                p.push(format!("{k1} and {k2}: {how}; one address:port takes one listener only"));
            }
        }
    }
}

/// Same port, and the same address, or a wildcard covering the other:
/// 0.0.0.0 covers every IPv4 address; [::] covers every address of both
/// families (ringmail does not set IPV6_V6ONLY, so it also takes IPv4).
fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() {
        return false;
    }
    let v6_any = |x: SocketAddr| x.is_ipv6() && x.ip().is_unspecified();
    let v4_any = |x: SocketAddr| x.is_ipv4() && x.ip().is_unspecified();
    a.ip() == b.ip() || v6_any(a) || v6_any(b) || (a.is_ipv4() && b.is_ipv4() && (v4_any(a) || v4_any(b)))
}

fn zero_counts(cfg: &Config, p: &mut Vec<String>) {
    let l = &cfg.limits;
    let a = &cfg.auth;
    let counts: [(&str, u64); 9] = [
        ("limits.max_errors", l.max_errors.into()),
        ("limits.max_commands", l.max_commands.into()),
        ("limits.max_messages_per_connection", l.max_messages_per_connection.into()),
        ("auth.max_failures_per_connection", a.max_failures_per_connection.into()),
        ("auth.max_auth_failures", a.max_auth_failures.into()),
        ("relay.mx_port", cfg.relay.mx_port.into()),
        ("relay.mta_sts_port", cfg.relay.mta_sts_port.into()),
        ("spool.max_size", cfg.spool.max_size.unwrap_or(1)),
        ("retention.max_mailbox_size", cfg.retention.max_mailbox_size.unwrap_or(1)),
    ];
    for (key, value) in counts {
        if value == 0 {
            p.push(format!("{key} = 0: must be at least 1"));
        }
    }
    for (level, policy) in cfg.retention.domains.iter().chain(&cfg.retention.users) {
        if policy.max_mailbox_size == Some(0) {
            p.push(format!("retention.{level:?}.max_mailbox_size = 0: must be at least 1"));
        }
        if policy.max_age.is_some_and(|s| s.get().is_zero()) {
            p.push(format!("retention.{level:?}.max_age = \"0s\": must be longer than zero"));
        }
    }
    if cfg.spool.compact_below > 100 {
        p.push(format!(
            "spool.compact_below = {}: a percentage, at most 100 (0 = no compaction)",
            cfg.spool.compact_below
        ));
    }
}

fn zero_durations(cfg: &Config, p: &mut Vec<String>) {
    let t = &cfg.relay.timeouts;
    let l = &cfg.limits;
    let mut spans: Vec<(String, Span)> = vec![
        ("limits.smtp_idle_timeout".into(), l.smtp_idle_timeout),
        ("limits.pop3_idle_timeout".into(), l.pop3_idle_timeout),
        ("limits.tls_handshake_timeout".into(), l.tls_handshake_timeout),
        ("limits.command_deadline".into(), l.command_deadline),
        ("limits.max_session_time".into(), l.max_session_time),
        ("auth.failure_window".into(), cfg.auth.failure_window),
        ("relay.max_queue_lifetime".into(), cfg.relay.max_queue_lifetime),
        ("relay.suppression_expiry".into(), cfg.relay.suppression_expiry),
        ("relay.timeouts.connect".into(), t.connect),
        ("relay.timeouts.greeting".into(), t.greeting),
        ("relay.timeouts.command".into(), t.command),
        ("relay.timeouts.data_init".into(), t.data_init),
        ("relay.timeouts.data_block".into(), t.data_block),
        ("relay.timeouts.data_done".into(), t.data_done),
        ("spool.compact_interval".into(), cfg.spool.compact_interval),
        ("retention.check_interval".into(), cfg.retention.check_interval),
    ];
    spans.extend(cfg.retention.max_age.map(|s| ("retention.max_age".to_string(), s)));
    spans.extend(cfg.relay.retry.iter().enumerate().map(|(i, s)| (format!("relay.retry[{i}]"), *s)));
    for (key, span) in spans {
        if span.get().is_zero() {
            p.push(format!("{key} = \"0s\": must be longer than zero"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn same_port_clashes_when_addresses_overlap() {
        assert!(clash(a("127.0.0.1:25"), a("127.0.0.1:25")));
        assert!(clash(a("0.0.0.0:25"), a("127.0.0.1:25")));
        assert!(clash(a("[::]:25"), a("127.0.0.1:25")));
        assert!(clash(a("[::1]:25"), a("[::]:25")));
        assert!(!clash(a("127.0.0.1:25"), a("127.0.0.2:25")));
        assert!(!clash(a("0.0.0.0:25"), a("[::1]:25")), "a v4 wildcard leaves IPv6 alone");
        assert!(!clash(a("0.0.0.0:25"), a("0.0.0.0:587")));
    }

    #[test]
    fn host_names_for_ehlo() {
        for ok in ["out1.example.net", "localhost", "a-b.c_d.example.", "x1"] {
            assert!(is_host_name(ok), "{ok}");
        }
        for bad in [
            "",
            "a b.example",
            "-a.example",
            "a-.example",
            "a..example",
            "caf\u{e9}.example",
            "[192.0.2.1]",
            &"a".repeat(64),
        ] {
            assert!(!is_host_name(bad), "{bad:?}");
        }
    }
}
