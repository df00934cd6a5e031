//! Outbound shaping end to end on loopback (issue 12 items 1-4 and 7):
//! sites grouped by MX host set and named by rules, per-site limits that
//! hold for the whole server (both cores), response-driven backoff
//! (suspend, halve-rate) and recovery, the message-rate ceiling, egress
//! pools (source address and EHLO name), SIGHUP reloads of the rules file,
//! fairness between sites, and the `ringmail queue sites` format.
//!
//! Every test has its own loopback addresses (127.0.N.x for test N) so the
//! sinks of tests running in parallel never meet. Sinks are the scripted
//! ones of `common/sink.rs`; MX lookups go to a `TestDns` on loopback.

mod common;
#[path = "common/sink.rs"]
mod sink;

use common::*;
use ringmail::outbound::testdns::{TestDns, Zone};
use ringmail::shard::owner::domain_owner;
use sink::{once_at, Script, Sink};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Start a server whose `[relay]` has the lines `relay` and, when `rules`
/// is given, `shaping = "shaping.toml"` (next to the config) with that
/// text. `relay` may end with `[[relay.pool]]` tables.
fn shaped(relay: &str, rules: Option<&str>) -> Server {
    let shaping = if rules.is_some() { "shaping = \"shaping.toml\"\n" } else { "" };
    let mut server = Server::configure(Options { relay: format!("{shaping}{relay}"), ..Options::default() });
    if let Some(rules) = rules {
        std::fs::write(rules_path(&server), rules).unwrap();
    }
    server.spawn();
    server
}

fn rules_path(server: &Server) -> std::path::PathBuf {
    server.dir.path().join("shaping.toml")
}

/// `[relay]` lines that send MX lookups to `dns` and connect to MX hosts
/// on `port`.
fn via_dns(dns: &TestDns, port: u16) -> String {
    format!("dns_server = \"{}\"\nmx_port = {port}\nretry = [\"1s\"]\n", dns.addr())
}

/// Send one message per `(from, to)` over one SMTP connection, each with
/// a Subject naming its index; every one must be accepted.
fn submit(server: &Server, mail: &[(&str, &str)]) {
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    for (i, (from, to)) in mail.iter().enumerate() {
        let r = c.send_mail(from, &[to], format!("Subject: shaping {i}\r\n\r\nbody {i}\r\n").as_bytes());
        assert!(r.starts_with("250"), "{from} -> {to}: {r}");
    }
    c.cmd("QUIT");
}

/// `n` messages from bob to `to(i)`.
fn submit_n(server: &Server, n: usize, to: impl Fn(usize) -> String) {
    let to: Vec<String> = (0..n).map(to).collect();
    let mail: Vec<(&str, &str)> = to.iter().map(|t| ("bob@localhost", t.as_str())).collect();
    submit(server, &mail);
}

/// `ringmail queue sites` against the running server.
fn sites(server: &Server) -> String {
    let out = server.cli(&["queue", "sites"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "queue sites: {text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

/// One site of a `queue sites` report: its `site ...` line and its
/// `  source=...` lines.
#[derive(Debug)]
struct SiteReport {
    head: String,
    sources: Vec<String>,
}

impl SiteReport {
    /// A field of the site line (`queued`, `delivered`, ...).
    fn get(&self, key: &str) -> String {
        field(&self.head, key).unwrap_or_else(|| panic!("no {key}= in {:?}", self.head))
    }

    fn count(&self, key: &str) -> usize {
        self.get(key).parse().unwrap_or_else(|_| panic!("{key} is not a number in {:?}", self.head))
    }

    /// The line of source `source` ("default" or an address).
    fn source(&self, source: &str) -> &str {
        let want = format!("  source={source}  ");
        self.sources.iter().find(|l| l.starts_with(&want)).unwrap_or_else(|| panic!("no source {source} in {self:?}"))
    }
}

/// The block of site `name` in a `queue sites` report, if listed.
fn site(report: &str, name: &str) -> Option<SiteReport> {
    let head = format!("site {name}  ");
    let mut lines = report.lines().skip_while(|l| !l.starts_with(&head));
    let head = lines.next()?.to_string();
    let sources = lines.take_while(|l| l.starts_with("  source=")).map(str::to_string).collect();
    Some(SiteReport { head, sources })
}

/// The value of `key=` in a report line: fields are separated by two
/// spaces; `last_reply` (quoted) runs to the end of the line.
fn field(line: &str, key: &str) -> Option<String> {
    let at = line.trim_start().split("  ").position(|f| f.starts_with(&format!("{key}=")))?;
    if key == "last_reply" {
        let start = line.find("  last_reply=")? + "  last_reply=".len();
        return Some(line[start..].to_string());
    }
    let f = line.trim_start().split("  ").nth(at)?;
    Some(f[key.len() + 1..].to_string())
}

/// Wait (up to `secs`) for a `queue sites` report in which `ok` holds of
/// site `name`; the report.
fn sites_until(server: &Server, secs: u64, name: &str, ok: impl Fn(&SiteReport) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let report = sites(server);
        if site(&report, name).is_some_and(|s| ok(&s)) {
            return report;
        }
        assert!(std::time::Instant::now() < deadline, "site {name} not as wanted after {secs}s:\n{report}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Domains `prefix0.test`, `prefix1.test`, ... (`n` of them), checked to be
/// owned by both cores of a two-core server, so their mail is sent from
/// both.
fn domains_on_both_cores(prefix: &str, n: usize) -> Vec<String> {
    let domains: Vec<String> = (0..n).map(|i| format!("{prefix}{i}.test")).collect();
    let owners: BTreeSet<usize> = domains.iter().map(|d| domain_owner(d, 2)).collect();
    assert_eq!(owners.len(), 2, "{domains:?} all hash to one core: pick other names");
    domains
}

fn log_count(server: &Server, needle: &str) -> usize {
    server.log().lines().filter(|l| l.contains(needle)).count()
}

/// The backoff log lines of `site`.
fn backoffs(server: &Server, site: &str) -> usize {
    let site = format!("site={site} ");
    server.log().lines().filter(|l| l.contains(&site) && l.contains(" action=") && l.contains("backoff")).count()
}

// ---- 1. sites group domains by MX host set ----

/// a.test and b.test list the same two MX hosts in opposite preference
/// order (both hosts at `shared`); c.test has another host (at `other`).
fn two_site_zone(shared: &str, other: &str) -> Zone {
    Zone::new()
        .mx("a.test", 10, "mx2.mx.test")
        .mx("a.test", 20, "mx1.mx.test")
        .mx("b.test", 10, "mx1.mx.test")
        .mx("b.test", 20, "mx2.mx.test")
        .mx("c.test", 10, "mx.other.test")
        .a("mx1.mx.test", shared)
        .a("mx2.mx.test", shared)
        .a("mx.other.test", other)
}

#[test]
fn domains_with_the_same_mx_hosts_share_one_site_named_by_the_sorted_set() {
    let port = free_port();
    let shared = Sink::start("127.0.1.1", port, Script::default());
    let other = Sink::start("127.0.1.2", port, Script::default());
    let dns = TestDns::start(two_site_zone("127.0.1.1", "127.0.1.2"));
    let server = shaped(&via_dns(&dns, port), None);
    submit(&server, &[("bob@localhost", "x@a.test"), ("bob@localhost", "y@b.test"), ("bob@localhost", "z@c.test")]);
    eventually(Duration::from_secs(20), || (shared.count() == 2 && other.count() == 1).then_some(()));
    let report = sites_until(&server, 10, "mx1.mx.test,mx2.mx.test", |s| s.count("delivered") == 2);
    let mx = site(&report, "mx1.mx.test,mx2.mx.test").unwrap();
    assert_eq!(mx.sources.len(), 1, "one source (no pools): {report}");
    assert!(mx.source("default").contains("connections="), "{report}");
    let report = sites_until(&server, 10, "mx.other.test", |s| s.count("delivered") == 1);
    assert!(report.contains("-- 2 site(s)"), "exactly two sites:\n{report}");
    for alone in ["a.test", "b.test", "c.test", "mx1.mx.test", "mx2.mx.test", "mx2.mx.test,mx1.mx.test"] {
        assert!(site(&report, alone).is_none(), "{alone} is not a site of its own:\n{report}");
    }
    let delivered =
        |site: &str| server.metric("ringmail_site_messages_total", &[("site", site), ("result", "delivered")]);
    assert_eq!(delivered("mx1.mx.test,mx2.mx.test"), 2.0);
    assert_eq!(delivered("mx.other.test"), 1.0);
}

#[test]
fn a_rule_claims_its_site_by_mx_suffix_or_by_domain() {
    let port = free_port();
    let shared = Sink::start("127.0.1.11", port, Script::default());
    let other = Sink::start("127.0.1.12", port, Script::default());
    let dns = TestDns::start(two_site_zone("127.0.1.11", "127.0.1.12"));
    let rules = "[site.\"mx.test\"]\nmax_connections = 3\n\n[site.\"c.test\"]\nmax_connections = 4\n";
    let server = shaped(&via_dns(&dns, port), Some(rules));
    submit(&server, &[("bob@localhost", "x@a.test"), ("bob@localhost", "y@b.test"), ("bob@localhost", "z@c.test")]);
    eventually(Duration::from_secs(20), || (shared.count() == 2 && other.count() == 1).then_some(()));
    let report = sites_until(&server, 10, "mx.test", |s| s.count("delivered") == 2);
    let mx = site(&report, "mx.test").unwrap();
    assert!(mx.source("default").contains("/3  "), "the rule's max_connections: {report}");
    let report = sites_until(&server, 10, "c.test", |s| s.count("delivered") == 1);
    assert!(site(&report, "c.test").unwrap().source("default").contains("/4  "), "the rule's limit: {report}");
    assert!(report.contains("-- 2 site(s)"), "{report}");
    assert!(site(&report, "mx1.mx.test,mx2.mx.test").is_none(), "{report}");
}

// ---- 2. a site's connection limit holds across cores ----

#[test]
fn a_site_connection_limit_holds_for_both_cores_together() {
    let port = free_port();
    let sink = Sink::start("127.0.2.1", port, Script { delay: Duration::from_millis(100), ..Script::default() });
    let domains = domains_on_both_cores("limit", 20);
    let mut zone = Zone::new().a("mx.limit.test", "127.0.2.1");
    for d in &domains {
        zone = zone.mx(d, 10, "mx.limit.test");
    }
    let dns = TestDns::start(zone);
    // [relay] would allow 10 per domain: only the rule keeps it at 2.
    let relay = format!("{}max_connections_per_domain = 10\n", via_dns(&dns, port));
    let server = shaped(&relay, Some("[site.\"limit.test\"]\nmax_connections = 2\n"));
    submit_n(&server, 40, |i| format!("u{i}@{}", domains[i % 20]));
    eventually(Duration::from_secs(60), || (sink.count() == 40).then_some(()));
    let max = sink.max_concurrent.load(Ordering::SeqCst);
    assert!(max <= 2, "{max} connections at once to a site limited to 2");
    assert_eq!(max, 2, "the test never had two connections open: it proves nothing");
    // Every permit comes back once the idle connections close, and the
    // queue keeps nothing for the 20 finished domains.
    let report = sites_until(&server, 15, "limit.test", |s| {
        s.count("delivered") == 40 && s.source("default").contains("connections=0/2")
    });
    assert!(!report.contains("(not tried yet)"), "finished destinations linger in the queue:\n{report}");
}

// ---- 3. a 421 suspends the site; others continue; it recovers ----

#[test]
fn a_rate_limit_reply_suspends_the_site_while_others_flow_and_it_recovers() {
    // `await_next`: each end of data is answered only once the next
    // message's commands are in (or after 2 s), so a message is pipelined
    // behind the one the 421 answers whenever more mail is ready: that one
    // is deferred too, but the site is suspended once.
    let script = Script { data_end: once_at(3, "421 4.7.0 rate limited"), await_next: true, ..Script::default() };
    let a = Sink::start("127.0.3.1", 0, script);
    let b = Sink::start("127.0.3.2", 0, Script::default());
    let relay = format!("routes = {{ \"a.test\" = \"{}\", \"b.test\" = \"{}\" }}\nretry = [\"1h\"]\n", a.addr, b.addr);
    let rules = r#"
[site."a.test"]
max_connections = 2
retry = ["1s"]

[[site."a.test".backoff]]
match = "4\\.7\\.0|rate limit"
action = "suspend"
duration = "5s"
"#;
    let server = shaped(&relay, Some(rules));
    submit_n(&server, 10, |i| format!("x{i}@a.test"));
    server.log_containing(&["site=a.test ", "backoff"]);
    assert_eq!(backoffs(&server, "a.test"), 1, "{}", server.log());
    let tried_at_suspension = a.attempt_count();
    let report = sites(&server);
    let a_site = site(&report, "a.test").expect("a.test listed");
    let suspended = field(a_site.source("default"), "suspended_until").unwrap();
    assert_ne!(suspended, "no", "{report}");
    assert!(suspended.contains(" +0000 (in "), "a date: {report}");
    assert!(a_site.count("queued") > 0, "{report}");
    assert!(a_site.source("default").contains("421 4.7.0 rate limited"), "last reply: {report}");

    // While a.test is suspended, b.test gets all its mail.
    submit_n(&server, 10, |i| format!("y{i}@b.test"));
    eventually(Duration::from_secs(20), || (b.count() == 10).then_some(()));
    let report = sites(&server);
    let still = field(site(&report, "a.test").unwrap().source("default"), "suspended_until").unwrap();
    assert_ne!(still, "no", "b.test's mail went while a.test was suspended, not after:\n{report}");
    // A second connection may finish what it had in hand: a message, and
    // the one pipelined behind it (its commands went out before the 421).
    assert!(a.attempt_count() <= tried_at_suspension + 2, "a.test got mail while suspended");

    // After the suspension a.test gets the rest, the deferred one too.
    eventually(Duration::from_secs(30), || (a.count() == 10).then_some(()));
    let report = sites_until(&server, 10, "a.test", |s| {
        s.count("delivered") == 10 && field(s.source("default"), "suspended_until").as_deref() == Some("no")
    });
    assert_eq!(site(&report, "a.test").unwrap().count("queued"), 0, "{report}");
    let got: BTreeSet<String> = a.received().iter().flat_map(|m| m.to.clone()).collect();
    assert_eq!(got.len(), 10, "every a.test recipient once: {got:?}");
    assert!(a.pipelined.load(Ordering::SeqCst) > 0, "no message went behind another: the test proves less");
    assert_eq!(backoffs(&server, "a.test"), 1, "{}", server.log());
}

// ---- 4. halve-rate ----

#[test]
fn a_halve_rate_rule_halves_the_site_rate_shown_in_queue_sites() {
    let sink =
        Sink::start("127.0.4.1", 0, Script { data_end: once_at(0, "451 4.7.1 slow down please"), ..Script::default() });
    let relay = format!("routes = {{ \"h.test\" = \"{}\" }}\nretry = [\"1h\"]\n", sink.addr);
    let rules = r#"
[site."h.test"]
max_message_rate = "600/min"
retry = ["1s"]

[[site."h.test".backoff]]
match = "slow down"
action = "halve-rate"
"#;
    let server = shaped(&relay, Some(rules));
    submit_n(&server, 3, |i| format!("h{i}@h.test"));
    let log = server.log_containing(&["site=h.test ", "backoff"]);
    assert!(log.lines().any(|l| l.contains("site=h.test ") && l.contains("HalveRate")), "{log}");
    let report = sites(&server);
    let line = site(&report, "h.test").expect("h.test listed").source("default").to_string();
    assert_eq!(field(&line, "rate").as_deref(), Some("300/min (max 600/min)"), "{report}");
    assert_eq!(field(&line, "suspended_until").as_deref(), Some("no"), "halving does not suspend: {report}");
    assert_eq!(server.metric("ringmail_site_rate_limit", &[("site", "h.test")]), 5.0);
    // Mail still flows at the lower rate; the deferred one is retried.
    eventually(Duration::from_secs(20), || (sink.count() == 3).then_some(()));
}

// ---- 5. max_message_rate is never exceeded ----

#[test]
fn the_message_rate_of_a_site_is_never_exceeded_by_both_cores_together() {
    let port = free_port();
    let sink = Sink::start("127.0.5.1", port, Script::default());
    let domains = domains_on_both_cores("rate", 4);
    let mut zone = Zone::new().a("mx.rate.test", "127.0.5.1");
    for d in &domains {
        zone = zone.mx(d, 10, "mx.rate.test");
    }
    let dns = TestDns::start(zone);
    let server = shaped(&via_dns(&dns, port), Some("[site.\"rate.test\"]\nmax_message_rate = \"10/s\"\n"));
    submit_n(&server, 40, |i| format!("r{i}@{}", domains[i % 4]));
    eventually(Duration::from_secs(60), || (sink.count() == 40).then_some(()));
    let mut at: Vec<_> = sink.tried().iter().map(|m| m.mail_at).collect();
    at.sort();
    assert_eq!(at.len(), 40, "each message tried once");
    // An upper bound, not a timing: no 1-second window holds more than the
    // rate (plus one for where the window's edges fall).
    for (i, start) in at.iter().enumerate() {
        let within = at[i..].iter().take_while(|t| t.duration_since(*start) < Duration::from_secs(1)).count();
        assert!(within <= 11, "{within} messages within 1 s of message {i} at 10/s");
    }
}

// ---- 6. egress pools ----

#[test]
fn a_pool_sends_from_its_source_address_with_its_ehlo_name() {
    let sink = Sink::start("127.0.6.1", 0, Script::default());
    let relay = format!(
        r#"routes = {{ "p.test" = "{}" }}
retry = ["1s"]
max_messages_per_connection = 1
pool_by_sender_domain = {{ "news.example.org" = "bulk", "two.example.org" = "two" }}

[[relay.pool]]
name = "bulk"
sources = [{{ ip = "127.0.0.2", ehlo = "out1.example.net" }}]

[[relay.pool]]
name = "two"
sources = [{{ ip = "127.0.0.3", ehlo = "out3.example.net", weight = 2 }}, {{ ip = "127.0.0.4", weight = 1 }}]
"#,
        sink.addr
    );
    let server = shaped(&relay, None);
    submit(&server, &[("news@news.example.org", "n@p.test"), ("bob@localhost", "b@p.test")]);
    let two: Vec<String> = (0..30).map(|i| format!("t{i}@p.test")).collect();
    let mail: Vec<(&str, &str)> = two.iter().map(|t| ("list@two.example.org", t.as_str())).collect();
    submit(&server, &mail);
    eventually(Duration::from_secs(30), || (sink.count() == 32).then_some(()));
    let got = sink.received();
    let by_to = |to: &str| got.iter().find(|m| m.to == [to]).unwrap_or_else(|| panic!("nothing for {to}"));
    let news = by_to("n@p.test");
    assert_eq!(news.peer, "127.0.0.2".parse::<IpAddr>().unwrap(), "the bulk pool's address");
    assert_eq!(news.ehlo, "out1.example.net");
    let plain = by_to("b@p.test");
    assert_eq!(plain.peer, "127.0.0.1".parse::<IpAddr>().unwrap(), "no pool: the system's default source");
    assert_eq!(plain.ehlo, "mx.test", "no pool: the server's hostname");
    let mut used = BTreeSet::new();
    for m in got.iter().filter(|m| m.from == "list@two.example.org") {
        let want = match m.peer.to_string().as_str() {
            "127.0.0.3" => "out3.example.net",
            "127.0.0.4" => "mx.test",
            other => panic!("pool two sent from {other}"),
        };
        assert_eq!(m.ehlo, want, "EHLO name of source {}", m.peer);
        used.insert(m.peer);
    }
    assert_eq!(used.len(), 2, "both sources of pool two carried mail over 30 connections: {used:?}");
    let report = sites_until(&server, 10, &sink.addr.to_string(), |s| s.count("delivered") == 32);
    let s = site(&report, &sink.addr.to_string()).unwrap();
    for source in ["default", "127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        s.source(source); // limits are kept per source address
    }
}

// ---- 7. SIGHUP reload ----

#[test]
fn sighup_reloads_the_rules_and_a_broken_file_keeps_the_old_ones() {
    let refuse = Arc::new(AtomicBool::new(true));
    let r = refuse.clone();
    let sink = Sink::start(
        "127.0.7.1",
        0,
        Script {
            rcpt: Box::new(move |a| {
                if a.starts_with("slow") && r.load(Ordering::SeqCst) {
                    "451 4.7.0 rate limited".into()
                } else {
                    "250 2.1.5 Ok".into()
                }
            }),
            ..Script::default()
        },
    );
    let relay = format!("routes = {{ \"r.test\" = \"{}\" }}\nretry = [\"1h\"]\n", sink.addr);
    let server = shaped(&relay, Some("[site.\"r.test\"]\nretry = [\"1s\"]\n"));
    submit(&server, &[("bob@localhost", "slow@r.test")]);
    server.log_containing(&["to=slow@r.test", "status=\"deferred\""]);
    assert_eq!(backoffs(&server, "r.test"), 0, "no backoff rule yet");

    // A backoff rule arrives by SIGHUP.
    let with_backoff = r#"[site."r.test"]
retry = ["1s"]

[[site."r.test".backoff]]
match = "rate limited"
action = "suspend"
duration = "1s"
"#;
    std::fs::write(rules_path(&server), with_backoff).unwrap();
    server.signal(libc::SIGHUP);
    let log = server.log_containing(&["SIGHUP: shaping rules loaded"]);
    let loaded = log.lines().find(|l| l.contains("SIGHUP: shaping rules loaded")).unwrap();
    assert!(loaded.contains("rules=1"), "{loaded}");
    // The retried message now meets the rule.
    eventually(Duration::from_secs(15), || (backoffs(&server, "r.test") >= 1).then_some(()));
    submit_n(&server, 20, |i| format!("ok{i}@r.test"));

    // A broken file: the error names the file and line, the old rule stays.
    let broken = with_backoff.replace("match = \"rate limited\"", "match = \"(rate limited\"");
    std::fs::write(rules_path(&server), broken).unwrap();
    server.signal(libc::SIGHUP);
    let log = server.log_containing(&["SIGHUP: shaping rules not reloaded"]);
    let line = log.lines().find(|l| l.contains("shaping rules not reloaded")).unwrap();
    let at = format!("{}:5:", rules_path(&server).display());
    assert!(line.contains(&at), "names the file and line ({at}): {line}");
    assert!(line.contains("regex"), "says why: {line}");
    let before = backoffs(&server, "r.test");
    eventually(Duration::from_secs(15), || (backoffs(&server, "r.test") > before).then_some(()));
    assert_eq!(log_count(&server, "SIGHUP: shaping rules loaded"), 1, "the broken file was not loaded");

    // Nothing queued was lost across the reloads.
    refuse.store(false, Ordering::SeqCst);
    eventually(Duration::from_secs(30), || (sink.count() == 21).then_some(()));
    let got: BTreeSet<String> = sink.received().iter().flat_map(|m| m.to.clone()).collect();
    assert_eq!(got.len(), 21, "{got:?}");
}

// ---- 8. fairness ----

#[test]
fn a_slow_site_with_a_backlog_does_not_hold_back_another_site() {
    let port = free_port();
    let slow = Sink::start("127.0.8.1", port, Script { delay: Duration::from_millis(500), ..Script::default() });
    let fast = Sink::start("127.0.8.2", port, Script::default());
    let slow_domains = domains_on_both_cores("slow", 10);
    let fast_domains = domains_on_both_cores("fast", 4);
    let mut zone = Zone::new().a("mx.slow.test", "127.0.8.1").a("mx.fast.test", "127.0.8.2");
    for d in &slow_domains {
        zone = zone.mx(d, 10, "mx.slow.test");
    }
    for d in &fast_domains {
        zone = zone.mx(d, 10, "mx.fast.test");
    }
    let dns = TestDns::start(zone);
    let server = shaped(&via_dns(&dns, port), Some("[site.\"slow.test\"]\nmax_connections = 1\n"));
    submit_n(&server, 200, |i| format!("s{i}@{}", slow_domains[i % 10]));
    submit_n(&server, 20, |i| format!("f{i}@{}", fast_domains[i % 4]));
    eventually(Duration::from_secs(30), || (fast.count() == 20).then_some(()));
    let report = sites(&server);
    let backlog = site(&report, "slow.test").expect("slow.test listed").count("queued");
    assert!(backlog > 0 && slow.count() < 200, "the slow site still had mail queued: {report}");
    assert!(slow.max_concurrent.load(Ordering::SeqCst) <= 1, "slow.test's limit held");
}

// ---- 9. the queue sites format ----

#[test]
fn queue_sites_lists_every_field_and_a_suspension_date() {
    let held =
        Sink::start("127.0.9.1", 0, Script { data_end: once_at(0, "421 4.7.0 rate limited"), ..Script::default() });
    let open = Sink::start("127.0.9.2", 0, Script::default());
    let relay = format!(
        "routes = {{ \"held.test\" = \"{}\", \"open.test\" = \"{}\" }}\nretry = [\"1h\"]\n",
        held.addr, open.addr
    );
    let rules = r#"
[site."held.test"]
max_connections = 3
max_message_rate = "100/min"

[[site."held.test".backoff]]
match = "rate limited"
action = "suspend"
duration = "10m"
"#;
    let server = shaped(&relay, Some(rules));
    submit(&server, &[("bob@localhost", "x@held.test"), ("bob@localhost", "y@open.test")]);
    eventually(Duration::from_secs(20), || (open.count() == 1).then_some(()));
    server.log_containing(&["site=held.test ", "backoff"]);
    let open_site = open.addr.to_string();
    let report = sites_until(&server, 10, &open_site, |s| s.count("delivered") == 1);

    let head =
        regex::Regex::new(r"^site (\S+)  queued=(\d+)  delivered=(\d+)  deferred=(\d+)  bounced=(\d+)$").unwrap();
    let source = regex::Regex::new(
        r#"^  source=(\S+)  in_flight=(\d+)  connections=(\d+)/(\d+)  rate=(.+)  suspended_until=(.+)  last_reply="(.*)"$"#,
    )
    .unwrap();
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.last(), Some(&"-- 2 site(s)"), "{report}");
    for l in &lines[..lines.len() - 1] {
        assert!(head.is_match(l) || source.is_match(l), "unexpected line {l:?} in\n{report}");
    }

    let fields = |name: &str| -> Vec<String> {
        let line = site(&report, name).unwrap().source("default").to_string();
        source.captures(&line).unwrap().iter().map(|c| c.unwrap().as_str().to_string()).collect()
    };
    let h = fields("held.test");
    assert_eq!(h[4], "3", "max connections from the rule: {report}");
    assert_eq!(h[5], "100/min", "rate: {report}");
    let date = regex::Regex::new(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000 \(in (\d+)s\)$")
        .unwrap();
    let left: u64 = date.captures(&h[6]).unwrap_or_else(|| panic!("a date: {:?}", h[6]))[1].parse().unwrap();
    assert!((1..=600).contains(&left), "10 minutes at most: {}", h[6]);
    assert!(h[7].starts_with("421 4.7.0 rate limited"), "{report}");
    let held_site = site(&report, "held.test").unwrap();
    assert_eq!((held_site.count("queued"), held_site.count("deferred")), (1, 1), "{report}");

    let o = fields(&open_site);
    assert_eq!(o[2], "0", "nothing in flight: {report}");
    assert_eq!(o[5], "unlimited");
    assert_eq!(o[6], "no");
    assert!(o[7].starts_with("250"), "{report}");
    assert_eq!(server.metric("ringmail_site_suspended", &[("site", "held.test")]), 1.0);
    assert_eq!(server.metric("ringmail_site_suspended", &[("site", &open_site)]), 0.0);
}

// ---- 9. a hot destination lent to the other core (issue 13 item 5) ----

/// One destination owned by one core gets more mail than that core's
/// connections take at once (a slow site): its owner lends ready mail to
/// the other core, whose connections carry it; each message arrives
/// once, and the site's connection limit holds for both cores together.
#[test]
fn a_hot_destination_is_lent_to_the_other_core_within_its_site_limit() {
    let (sink, _dns, server) = hot_destination("127.0.12.1", "hot.test", 200, 4);
    let n = 80;
    submit_n(&server, n, |i| format!("u{i}@hot.test"));
    eventually(Duration::from_secs(60), || (sink.count() == n).then_some(()));
    let loans: Vec<String> =
        server.log().lines().filter(|l| l.contains("lent ready mail to a less busy core")).map(String::from).collect();
    assert!(!loans.is_empty(), "no loan: the owner core relayed everything");
    let owner = domain_owner("hot.test", 2);
    let to = format!("to_core={}", 1 - owner);
    assert!(loans.iter().all(|l| l.contains(&to) && l.contains("domain=hot.test")), "{loans:?}");
    let lent: usize = loans.iter().filter_map(|l| log_number(l, "messages=")).sum();
    assert!((1..n).contains(&lent), "{loans:?}");
    assert_eq!(server.metric("ringmail_relay_lent_total", &[]), lent as f64, "the metric counts what the log says");
    let subjects: BTreeSet<String> = sink
        .received()
        .iter()
        .map(|m| String::from_utf8_lossy(&m.data).lines().find(|l| l.starts_with("Subject:")).unwrap_or("").to_string())
        .collect();
    assert_eq!(subjects.len(), n, "every message exactly once");
    // Every outcome settled (the borrower's included), and still n.
    eventually(Duration::from_secs(10), || (log_count(&server, " delivered ") == n).then_some(()));
    assert_eq!(sink.count(), n, "nothing sent twice");
    let max = sink.max_concurrent.load(Ordering::SeqCst);
    assert!(max <= 4, "{max} connections at once to a site limited to 4");
}

// ---- 10. an idle connection makes way for another core's destination ----

/// Two domains with one MX host are one site, limited to one connection,
/// and owned by different cores. The first domain's connection stays open
/// for more of its mail (`connection_idle` is an hour); mail for the
/// second waits for the site on the other core. The idle connection sees
/// it and closes, and the second domain's mail goes.
#[test]
fn an_idle_connection_closes_for_a_destination_waiting_on_another_core() {
    let port = free_port();
    let sink = Sink::start("127.0.13.1", port, Script::default());
    let domains = domains_on_both_cores("idle", 8);
    let first = &domains[0];
    let second = domains.iter().find(|d| domain_owner(d, 2) != domain_owner(first, 2)).unwrap();
    let mut zone = Zone::new().a("mx.idle.test", "127.0.13.1");
    for d in [first, second] {
        zone = zone.mx(d, 10, "mx.idle.test");
    }
    let dns = TestDns::start(zone);
    let relay = format!("{}connection_idle = \"1h\"\n", via_dns(&dns, port));
    let server = shaped(&relay, Some("[site.\"idle.test\"]\nmax_connections = 1\n"));
    submit(&server, &[("bob@localhost", &format!("a@{first}"))]);
    eventually(Duration::from_secs(30), || (sink.count() == 1).then_some(()));
    server.log_containing(&["delivered", &format!("to=a@{first}")]);
    submit(&server, &[("bob@localhost", &format!("b@{second}"))]);
    // Without the yield it would wait for the hour.
    eventually(Duration::from_secs(30), || (sink.count() == 2).then_some(()));
    assert_eq!(sink.connections.load(Ordering::SeqCst), 2, "the second went over a connection of its own core");
    assert_eq!(sink.max_concurrent.load(Ordering::SeqCst), 1, "the site's limit held");
}

/// The same hot destination, but its site takes one connection at a time:
/// the borrower's mail could only wait for the owner's connection, so
/// nothing is lent.
#[test]
fn a_destination_whose_site_takes_one_connection_is_not_lent() {
    let (sink, _dns, server) = hot_destination("127.0.12.2", "one.test", 100, 1);
    let n = 30;
    submit_n(&server, n, |i| format!("u{i}@one.test"));
    eventually(Duration::from_secs(60), || (sink.count() == n).then_some(()));
    let log = server.log_containing(&[&format!("to=u{}@one.test", n - 1)]);
    assert!(!log.contains("lent ready mail"), "{log}");
    assert_eq!(server.metric("ringmail_relay_lent_total", &[]), 0.0);
    assert_eq!(sink.max_concurrent.load(Ordering::SeqCst), 1);
}

/// A sink at `ip` answering each message after `delay_ms`, as the MX host
/// of `domain`, whose site rule allows `max_connections`; and a server
/// that lends a destination with more than 4 shares ready, however busy
/// its cores are.
fn hot_destination(ip: &str, domain: &str, delay_ms: u64, max_connections: usize) -> (Sink, TestDns, Server) {
    let port = free_port();
    let sink = Sink::start(ip, port, Script { delay: Duration::from_millis(delay_ms), ..Script::default() });
    let mx = format!("mx.{domain}");
    let dns = TestDns::start(Zone::new().a(&mx, ip).mx(domain, 10, &mx));
    let relay = format!(
        "{}max_connections_per_domain = 10\nmax_messages_per_connection = 10\nlend_after = 4\nlend_busy = 0\n",
        via_dns(&dns, port)
    );
    let server = shaped(&relay, Some(&format!("[site.\"{domain}\"]\nmax_connections = {max_connections}\n")));
    (sink, dns, server)
}

/// The number after `key` (e.g. `messages=`) in a log line.
fn log_number(line: &str, key: &str) -> Option<usize> {
    let rest = &line[line.find(key)? + key.len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Lent mail, some of it deferred on the borrower, then a kill -9: at the
/// restart every share is queued again from the spool (back with its
/// domain's owner); every message is delivered, and each one the site had
/// not taken before the kill exactly once (one it took may go again: its
/// tombstone may not have been on disk yet, the documented at-least-once).
#[test]
fn lent_mail_deferred_on_the_borrower_is_delivered_once_after_a_kill9() {
    let port = free_port();
    let accept = Arc::new(AtomicBool::new(false));
    let open = accept.clone();
    // Before the kill every other message is deferred: the site takes
    // mail (so its destination may be lent) and deferrals happen.
    let script = Script {
        delay: Duration::from_millis(300),
        data_end: Box::new(move |n| match open.load(Ordering::SeqCst) || n % 2 == 0 {
            true => "250 2.0.0 Ok: queued".into(),
            false => "451 4.3.0 try again later".into(),
        }),
        ..Script::default()
    };
    let sink = Sink::start("127.0.12.2", port, script);
    let dns = TestDns::start(Zone::new().a("mx.hot2.test", "127.0.12.2").mx("hot2.test", 10, "mx.hot2.test"));
    let relay = format!("{}max_connections_per_domain = 10\nlend_after = 4\nlend_busy = 0\n", via_dns(&dns, port));
    let mut server = shaped(&relay, Some("[site.\"hot2.test\"]\nmax_connections = 4\n"));
    let n = 40;
    submit_n(&server, n, |i| format!("u{i}@hot2.test"));
    let recipients = |got: Vec<sink::Received>| got.iter().map(|m| m.to.join(",")).collect::<Vec<_>>();
    eventually(Duration::from_secs(60), || {
        let tried: BTreeSet<String> = recipients(sink.tried()).into_iter().collect();
        (tried.len() == n).then_some(())
    });
    assert!(log_count(&server, "lent ready mail to a less busy core") >= 1, "nothing was lent");
    server.kill9();
    // A body the sink answers after the kill is not acknowledged to the
    // relay: let the killed process's connections close first.
    eventually(Duration::from_secs(10), || (sink.active.load(Ordering::SeqCst) == 0).then_some(()));
    let before: BTreeSet<String> = recipients(sink.received()).into_iter().collect();
    assert!(before.len() < n, "everything was delivered before the kill: the test proves nothing");
    accept.store(true, Ordering::SeqCst);
    server.spawn();
    eventually(Duration::from_secs(60), || {
        let got: BTreeSet<String> = recipients(sink.received()).into_iter().collect();
        (got.len() == n).then_some(())
    });
    eventually(Duration::from_secs(10), || (log_count(&server, " delivered ") >= n - before.len()).then_some(()));
    let mut times = std::collections::BTreeMap::new();
    for r in recipients(sink.received()) {
        *times.entry(r).or_insert(0) += 1;
    }
    let twice: Vec<_> = times.iter().filter(|(r, &t)| t > 1 && !before.contains(*r)).collect();
    assert!(twice.is_empty(), "delivered more than once though not taken before the kill: {twice:?}");
}
