//! Client screening on port 25 (issue 18): DNSBL and DNSWL, FCrDNS, HELO
//! checks and greylisting, against the in-process test DNS, with clients
//! connecting from chosen 127.0.0.x addresses. Loopback is not in
//! relay.permit_relay_from here, so every client is screened.

mod common;

use common::*;
use ringmail::outbound::testdns::{TestDns, Zone};
use std::time::{Duration, Instant};

struct World {
    _dns: TestDns,
    server: Server,
}

/// A server screening with `[filter]` lines `filter`, asking `zone`.
fn world(zone: Zone, filter: &str) -> World {
    let dns = TestDns::start(zone);
    let server = Server::start_with(Options {
        permit_relay_from: r#"["10.255.255.0/24"]"#,
        relay: format!("dns_server = \"{}\"", dns.addr()),
        extra: format!("\n[filter]\n{filter}\n"),
        ..Options::default()
    });
    World { _dns: dns, server }
}

/// A session from `from`, greeted with `helo`.
fn client(server: &Server, from: &str, helo: &str) -> Smtp {
    let mut c = Smtp::from_stream(socket_from(from, server.smtp));
    c.expect(&format!("EHLO {helo}"), "250");
    c
}

/// The reply to RCPT TO alice in a fresh transaction from `from`.
fn rcpt_reply(server: &Server, from: &str, helo: &str) -> String {
    let mut c = client(server, from, helo);
    c.expect("MAIL FROM:<sender@example.com>", "250");
    c.cmd("RCPT TO:<alice@localhost>")
}

const BODY: &[u8] = b"Subject: screened\r\n\r\nhello\r\n";

/// Send a message from `from` to alice; the reply to the final dot.
fn deliver(server: &Server, from: &str, helo: &str) -> String {
    client(server, from, helo).send_mail("sender@example.com", &["alice@localhost"], BODY)
}

fn filter_metric(server: &Server, filter: &str, action: &str) -> f64 {
    server.metric("ringmail_filter_actions_total", &[("filter", filter), ("action", action)])
}

#[test]
fn dnsbl_listed_client_gets_554_naming_the_list_and_unlisted_one_is_accepted() {
    let w = world(
        Zone::new().a("2.0.0.127.zen.test", "127.0.0.2"),
        r#"dnsbl = ["zen.test=127.0.0.[2..11]*3"]
dnsbl_threshold = 3
reverse_dns = "ignore""#,
    );
    let r = rcpt_reply(&w.server, "127.0.0.2", "client.example.com");
    assert!(r.starts_with("554 5.7.1 "), "{r}");
    assert!(r.contains("zen.test") && r.contains("127.0.0.2"), "{r}");
    assert!(deliver(&w.server, "127.0.0.5", "client.example.com").starts_with("250"));
    let log = w.server.log_containing(&["filter=dnsbl action=reject", "filter=dnsbl action=pass"]);
    assert!(log.contains("client=127.0.0.2") && log.contains("zen.test=127.0.0.2"), "{log}");
    assert!(filter_metric(&w.server, "dnsbl", "reject") >= 1.0);
}

#[test]
fn a_list_answering_127_255_255_x_is_disabled_with_one_warning_and_mail_flows() {
    let w = world(
        Zone::new().a("2.0.0.127.blocked.test", "127.255.255.254").a("3.0.0.127.blocked.test", "127.255.255.254"),
        "dnsbl = [\"blocked.test\"]\nreverse_dns = \"ignore\"",
    );
    assert!(deliver(&w.server, "127.0.0.2", "client.example.com").starts_with("250"));
    assert!(deliver(&w.server, "127.0.0.3", "client.example.com").starts_with("250"));
    let log = w.server.log_containing(&["refused our query"]);
    assert_eq!(log.matches("refused our query").count(), 1, "{log}");
    assert!(log.contains("blocked.test"), "{log}");
}

#[test]
fn weights_add_up_to_the_threshold() {
    let w = world(
        Zone::new()
            .a("2.0.0.127.bl1.test", "127.0.0.2")
            .a("2.0.0.127.bl2.test", "127.0.0.4")
            .a("3.0.0.127.bl1.test", "127.0.0.2"),
        "dnsbl = [\"bl1.test\", \"bl2.test=127.0.0.[1;4]\"]\ndnsbl_threshold = 2\nreverse_dns = \"ignore\"",
    );
    // One list of weight 1: under the threshold.
    assert!(deliver(&w.server, "127.0.0.3", "client.example.com").starts_with("250"));
    let r = rcpt_reply(&w.server, "127.0.0.2", "client.example.com");
    assert!(r.starts_with("554 5.7.1") && r.contains("bl1.test") && r.contains("bl2.test"), "{r}");
}

#[test]
fn tag_mode_accepts_and_says_so_in_a_header() {
    let w = world(
        Zone::new().a("2.0.0.127.zen.test", "127.0.0.2"),
        "dnsbl = [\"zen.test\"]\ndnsbl_action = \"tag\"\nreverse_dns = \"ignore\"",
    );
    assert!(deliver(&w.server, "127.0.0.2", "client.example.com").starts_with("250"));
    let head = newest_header(&w.server, 1);
    assert!(head.contains("X-Ringmail-Filter: mx.test; dnsbl=listed score=1 (zen.test=127.0.0.2)"), "{head}");
    // The same finding ends the one Authentication-Results field, as a
    // comment (no registered method), which a real parser accepts.
    assert_eq!(head.matches("Authentication-Results:").count(), 1, "{head}");
    // (newest_header unfolds: the comment is the field's last line.)
    assert!(head.contains(" (dnsbl=listed score=1 \\(zen.test=127.0.0.2\\))\r\nX-Ringmail-Filter:"), "{head}");
    let parsed = authres_parse(&head);
    assert!(parsed.starts_with("mx.test\n") && parsed.contains("spf none"), "{parsed}");
    w.server.log_containing(&["filter=dnsbl action=tag"]);
}

#[test]
fn a_helo_finding_let_through_ends_the_authentication_results_field() {
    let w = world(Zone::new(), "reverse_dns = \"ignore\"");
    assert!(deliver(&w.server, "127.0.0.2", "192.0.2.1").starts_with("250"));
    let head = newest_header(&w.server, 1);
    assert!(
        head.contains(" (helo=fail \\(bare IP address, not an address literal\\))\r\nX-Ringmail-Filter:"),
        "{head}"
    );
    assert!(head.contains("X-Ringmail-Filter: mx.test; helo=fail (bare IP"), "{head}");
    assert!(authres_parse(&head).starts_with("mx.test\n"), "{head}");
}

/// The top Authentication-Results field of `head` (unfolded, one line, as
/// `newest_header` gives it) as Debian's
/// python3-authres (the RFC 8601 parser dkimpy uses) reads it: the
/// authserv-id, then a line per result, "method result ptype.prop=value…".
fn authres_parse(head: &str) -> String {
    let start = head.find("Authentication-Results:").expect("an Authentication-Results field");
    let field = head[start..].lines().next().unwrap();
    let script = r#"
import sys, authres
h = authres.AuthenticationResultsHeader.parse(sys.stdin.read())
print(h.authserv_id)
for r in h.results:
    print(r.method, r.result, " ".join("%s.%s=%s" % (p.type, p.name, p.value) for p in r.properties))
"#;
    let out = python_stdin(script, field.as_bytes());
    assert!(out.status.success(), "authres refused {field:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn dnswl_listed_client_skips_dnsbl_and_helo_checks() {
    let w = world(
        Zone::new().a("2.0.0.127.zen.test", "127.0.0.2").a("2.0.0.127.wl.test", "127.0.10.2"),
        r#"dnsbl = ["zen.test"]
dnswl = ["wl.test=127.0.[0..255].[1..3]"]
helo_checks = "reject"
reverse_dns = "ignore""#,
    );
    assert!(deliver(&w.server, "127.0.0.2", "192.0.2.1").starts_with("250"));
    w.server.log_containing(&["filter=dnswl action=pass"]);
    let head = newest_header(&w.server, 1);
    assert!(head.contains("dnswl=pass (wl.test=127.0.10.2)"), "{head}");
    // RFC 8904's method in the Authentication-Results field.
    assert!(head.contains("; dnswl=pass dns.zone=wl.test policy.ip=127.0.10.2 "), "{head}");
    let parsed = authres_parse(&head);
    assert!(parsed.contains("\ndnswl pass policy.ip=127.0.10.2"), "{parsed}");
}

fn rdns_zone() -> Zone {
    Zone::new()
        .ptr("127.0.0.2", "mail.good.test")
        .a("mail.good.test", "127.0.0.2")
        .ptr("127.0.0.3", "mail.liar.test")
        .a("mail.liar.test", "192.0.2.1")
}

#[test]
fn fcrdns_pass_is_accepted_and_mismatch_refused_under_reject() {
    let w = world(rdns_zone(), "reverse_dns = \"reject\"");
    assert!(deliver(&w.server, "127.0.0.2", "client.example.com").starts_with("250"));
    let head = newest_header(&w.server, 1);
    assert!(head.contains("iprev=pass policy.iprev=127.0.0.2 (mail.good.test)"), "{head}");
    let r = rcpt_reply(&w.server, "127.0.0.3", "client.example.com");
    assert!(r.starts_with("550 5.7.25 "), "{r}");
    // No PTR at all.
    let r = rcpt_reply(&w.server, "127.0.0.4", "client.example.com");
    assert!(r.starts_with("550 5.7.25 "), "{r}");
    w.server.log_containing(&["filter=rdns action=reject", "filter=rdns action=pass"]);
}

#[test]
fn fcrdns_mismatch_is_tagged_by_default() {
    let w = world(rdns_zone(), "");
    assert!(deliver(&w.server, "127.0.0.3", "client.example.com").starts_with("250"));
    let head = newest_header(&w.server, 1);
    // One Authentication-Results field: the sender checks' and iprev.
    assert_eq!(head.matches("Authentication-Results:").count(), 1, "{head}");
    assert!(head.contains("spf=none") && head.contains("; iprev=fail policy.iprev=127.0.0.3 ("), "{head}");
}

#[test]
fn helo_as_bare_ip_or_our_name_is_refused_under_reject() {
    let w = world(Zone::new(), "helo_checks = \"reject\"\nreverse_dns = \"ignore\"");
    for helo in ["192.0.2.1", "mx.test", "example.test"] {
        let r = rcpt_reply(&w.server, "127.0.0.2", helo);
        assert!(r.starts_with("550 5.7.1 Helo command rejected"), "{helo}: {r}");
    }
    assert!(deliver(&w.server, "127.0.0.2", "[192.0.2.1]").starts_with("250"));
    assert!(deliver(&w.server, "127.0.0.2", "client.example.com").starts_with("250"));
    w.server.log_containing(&["filter=helo action=reject"]);
}

#[test]
fn relay_clients_are_not_screened() {
    // Loopback in permit_relay_from: the bare-IP HELO is not looked at.
    let dns = TestDns::start(Zone::new());
    let server = Server::start_with(Options {
        relay: format!("dns_server = \"{}\"", dns.addr()),
        extra: "\n[filter]\nhelo_checks = \"reject\"\ngreylist = true\n".into(),
        ..Options::default()
    });
    assert!(deliver(&server, "127.0.0.2", "192.0.2.1").starts_with("250"));
}

/// Wait until the greylist file has a line for alice's triplet from
/// 127.0.0.0/24 that ends with `passed` (0 or 1) in its state field.
fn wait_greylist_file(server: &Server, rcpt: &str, passed: &str) {
    let path = server.data_dir().join("greylist");
    eventually(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        text.lines()
            .any(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                f.len() == 6 && f[1] == passed && f[3] == "127.0.0.0/24" && f[5] == rcpt
            })
            .then_some(())
    });
}

#[test]
fn greylisting_defers_then_passes_after_the_delay_across_restarts() {
    let mut w = world(Zone::new(), "greylist = true\ngreylist_delay = \"2s\"\nreverse_dns = \"ignore\"");
    let first = Instant::now();
    let r = rcpt_reply(&w.server, "127.0.0.2", "client.example.com");
    assert!(r.starts_with("451 4.7.1 Greylisted, try again in "), "{r}");
    // Too soon, from another address of the same /24.
    let r = rcpt_reply(&w.server, "127.0.0.9", "client.example.com");
    assert!(r.starts_with("451 4.7.1"), "{r}");
    // The first sight survives a crash.
    wait_greylist_file(&w.server, "alice@localhost", "0");
    w.server.restart();
    let delay = Duration::from_millis(2200);
    std::thread::sleep(delay.saturating_sub(first.elapsed()));
    assert!(deliver(&w.server, "127.0.0.2", "client.example.com").starts_with("250"));
    // Another recipient is a new triplet.
    let mut c = client(&w.server, "127.0.0.2", "client.example.com");
    c.expect("MAIL FROM:<sender@example.com>", "250");
    assert!(c.cmd("RCPT TO:<bob@localhost>").starts_with("451 4.7.1"));
    // Whitelisted, also after another crash.
    wait_greylist_file(&w.server, "alice@localhost", "1");
    w.server.restart();
    assert!(deliver(&w.server, "127.0.0.2", "client.example.com").starts_with("250"));
    w.server.log_containing(&["filter=greylist action=defer", "filter=greylist action=pass"]);
    assert!(filter_metric(&w.server, "greylist", "pass") >= 1.0);
}
