//! MTA-STS (RFC 8461) end to end on loopback: the `_mta-sts` TXT record
//! and the MX records from the in-process test DNS, the policy from a
//! Python HTTPS server (`tests/fixtures/mta_sts_server.py`) whose
//! certificate, like the MX sink's, comes from a test CA given to
//! ringmail as `relay.ca_file`.

mod common;
#[path = "common/sink.rs"]
mod sink;

use common::pki::Pki;
use common::tls_sink::TlsSink;
use common::*;
use ringmail::outbound::testdns::{TestDns, Zone};
use sink::{Script, Sink};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const DOMAIN: &str = "sts.test";
const MX: &str = "mx.sts.test";

/// A fixture script we started; killed (by its own PID) on drop.
struct Fixture(Child);

impl Fixture {
    /// `python3 tests/fixtures/SCRIPT ARGS`, once it printed "ready".
    fn start(script: &str, args: &[&Path]) -> Fixture {
        let mut child = Command::new("python3")
            .arg(format!("{}/tests/fixtures/{script}", env!("CARGO_MANIFEST_DIR")))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "{script} did not start");
        Fixture(child)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The policy server for `mta-sts.sts.test`, serving the file `policy`.
struct PolicyServer {
    port: u16,
    cert: (PathBuf, PathBuf),
    policy: PathBuf,
    log: PathBuf,
    running: Option<Fixture>,
}

impl PolicyServer {
    fn start(pki: &Pki, text: &str) -> PolicyServer {
        let cert = pki.issue(&format!("mta-sts.{DOMAIN}"));
        let policy = pki.dir.path().join("policy.txt");
        std::fs::write(&policy, text).unwrap();
        let log = pki.dir.path().join("policy-requests.log");
        let mut s = PolicyServer { port: free_port(), cert, policy, log, running: None };
        s.resume();
        s
    }

    fn resume(&mut self) {
        let port = PathBuf::from(self.port.to_string());
        let args = [port.as_path(), &self.cert.0, &self.cert.1, &self.policy, &self.log];
        self.running = Some(Fixture::start("mta_sts_server.py", &args));
    }

    fn stop(&mut self) {
        self.running = None;
    }

    fn set_policy(&self, text: &str) {
        std::fs::write(&self.policy, text).unwrap();
    }

    /// The requests it has served, one line each.
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log).unwrap_or_default().lines().map(str::to_string).collect()
    }
}

/// An SMTP sink with STARTTLS and a certificate for `mx.sts.test` from the
/// test CA.
fn tls_sink(pki: &Pki) -> TlsSink {
    let (cert, key) = pki.issue(MX);
    TlsSink::with_cert(pki.dir.path(), &cert, &key, &[])
}

fn policy(mode: &str, mx: &str) -> String {
    format!("version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n")
}

/// sts.test's records: its MX, their addresses, and the `_mta-sts` record
/// with `id`. TTL 0: ringmail's resolver caches none of them, so a test
/// that changes the zone needs no wait.
fn zone(id: &str) -> Zone {
    Zone::new()
        .ttl(0)
        .mx(DOMAIN, 10, MX)
        .a(MX, "127.0.0.1")
        .a(&format!("mta-sts.{DOMAIN}"), "127.0.0.1")
        .txt(&format!("_mta-sts.{DOMAIN}"), &format!("v=STSv1; id={id};"))
}

/// ringmail relaying to the test DNS's MX hosts on `mx_port`. No idle
/// connections: each message opens its own, under the policy of its time
/// (a connection kept open would carry the next message under the policy
/// it was opened with).
fn server(dns: SocketAddr, mx_port: u16, policy: &PolicyServer, pki: &Pki) -> Server {
    Server::start_with(Options {
        relay: format!(
            "dns_server = \"{dns}\"\nmx_port = {mx_port}\nmta_sts_port = {}\nca_file = \"{}\"\nretry = [\"1s\"]\nconnection_idle = \"0s\"\n",
            policy.port,
            pki.ca_file().display()
        ),
        ..Options::default()
    })
}

fn submit(server: &Server, to: &str, marker: &str) {
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    let body = format!("Subject: sts\r\n\r\n{marker}\r\n");
    let r = c.send_mail("bob@localhost", &[to], body.as_bytes());
    assert!(r.starts_with("250"), "{r}");
}

/// The log lines of deliveries (`status="sent"`).
fn sent_lines(server: &Server) -> Vec<String> {
    server
        .log()
        .lines()
        .filter(|l| l.contains("status=\"sent\"") || l.contains("status=sent"))
        .map(String::from)
        .collect()
}

#[test]
fn enforce_with_a_listed_mx_and_a_valid_certificate_is_delivered_sts_enforced() {
    let pki = Pki::new();
    let sink = tls_sink(&pki);
    let https = PolicyServer::start(&pki, &policy("enforce", "*.sts.test"));
    let dns = TestDns::start(zone("e1"));
    let server = server(dns.addr(), sink.port, &https, &pki);
    submit(&server, "x@sts.test", "enforced-41c2");
    let text = sink.wait_for(1);
    assert!(text.starts_with("TLS TLSv1."), "sent over TLS: {text}");
    assert!(text.contains("enforced-41c2"));
    let log = server.log_containing(&["sts-enforced"]);
    let sent = sent_lines(&server);
    assert_eq!(sent.len(), 1, "{log}");
    assert!(sent[0].contains("tls=sts-enforced"), "{}", sent[0]);
    assert!(sent[0].contains("mta-sts:enforce id=e1"), "{}", sent[0]);
    assert!(log.contains("MTA-STS policy fetched"), "{log}");
    let requests = https.requests();
    assert_eq!(requests.len(), 1, "one fetch: {requests:?}");
    assert!(requests[0].starts_with("GET /.well-known/mta-sts.txt mta-sts.sts.test"), "{requests:?}");
}

#[test]
fn enforce_with_an_unlisted_mx_defers_4_7_5_and_sends_nothing() {
    let pki = Pki::new();
    let plain = Sink::start("127.0.0.1", 0, Script::default());
    let https = PolicyServer::start(&pki, &policy("enforce", "mail.elsewhere.test"));
    let dns = TestDns::start(zone("e2"));
    let server = server(dns.addr(), plain.addr.port(), &https, &pki);
    submit(&server, "x@sts.test", "refused-9d0e");
    let log = server.log_containing(&["host not used", "4.7.5"]);
    let skipped = log.lines().find(|l| l.contains("host not used")).unwrap_or_else(|| panic!("{log}"));
    assert!(skipped.contains("mx.sts.test") && skipped.contains("mta-sts:enforce id=e2"), "{skipped}");
    let deferred = log.lines().find(|l| l.contains("will retry")).unwrap_or_else(|| panic!("{log}"));
    assert!(deferred.contains("4.7.5"), "{deferred}");
    assert!(sent_lines(&server).is_empty(), "{log}");
    assert_eq!(plain.connections.load(std::sync::atomic::Ordering::SeqCst), 0, "no connection to an unlisted MX");
}

#[test]
fn enforce_with_a_listed_mx_whose_certificate_is_not_trusted_sends_nothing() {
    let pki = Pki::new();
    // The MX's certificate names it but comes from a CA ringmail does not
    // trust (not in relay.ca_file). The same set-up with the trusted CA
    // delivers (the first test), so the handshake fails on the certificate.
    let stranger = Pki::new();
    let sink = tls_sink(&stranger);
    let https = PolicyServer::start(&pki, &policy("enforce", MX));
    let dns = TestDns::start(zone("e3"));
    let server = server(dns.addr(), sink.port, &https, &pki);
    submit(&server, "x@sts.test", "untrusted-77e0");
    let log = server.log_containing(&["connection failed", "will retry"]);
    let failed = log.lines().find(|l| l.contains("connection failed")).unwrap_or_else(|| panic!("{log}"));
    assert!(failed.contains("mx.sts.test") && failed.contains("TLS handshake"), "{failed}");
    assert!(sent_lines(&server).is_empty(), "{log}");
    assert_eq!(sink.count(), 0, "nothing sent over an unverified session");
}

#[test]
fn testing_mode_delivers_and_logs_what_enforce_would_refuse() {
    let pki = Pki::new();
    let plain = Sink::start("127.0.0.1", 0, Script::default());
    let https = PolicyServer::start(&pki, &policy("testing", "mail.elsewhere.test"));
    let dns = TestDns::start(zone("t1"));
    let server = server(dns.addr(), plain.addr.port(), &https, &pki);
    submit(&server, "x@sts.test", "testing-5b7a");
    eventually(Duration::from_secs(20), || (plain.count() == 1).then_some(()));
    // The sink counts the message before ringmail has read its 250 and
    // logged the delivery: wait for that line too.
    let log = server.log_containing(&["mta-sts testing: would refuse", "status=\"sent\""]);
    assert!(log.contains("mta-sts testing: would refuse mx.sts.test"), "{log}");
    assert!(log.contains("id=t1"), "{log}");
    let sent = sent_lines(&server);
    assert_eq!(sent.len(), 1, "{log}");
    assert!(sent[0].contains("tls=none") && sent[0].contains("relay.tls:may"), "{}", sent[0]);
}

#[test]
fn the_policy_cache_survives_a_restart_and_a_new_id_replaces_it() {
    let pki = Pki::new();
    let sink = tls_sink(&pki);
    let mut https = PolicyServer::start(&pki, &policy("enforce", MX));
    let dns = TestDns::start(zone("one"));
    let dns_addr = dns.addr();
    let mut server = server(dns_addr, sink.port, &https, &pki);
    submit(&server, "x@sts.test", "first-0a11");
    sink.wait_for(1);
    server.log_containing(&["tls=sts-enforced"]);
    let file = server.data_dir().join("mta-sts").join(DOMAIN);
    let cached = std::fs::read_to_string(&file).expect("the policy is cached in the data dir");
    assert!(cached.contains("\"id\":\"one\""), "{cached}");

    // The policy server is gone; after a restart the cached policy (same
    // id in DNS) still applies: without it the mail would go out
    // opportunistically.
    https.stop();
    server.restart();
    submit(&server, "x@sts.test", "second-0a12");
    let text = sink.wait_for(2);
    assert!(text.contains("second-0a12"));
    eventually(Duration::from_secs(10), || (sent_lines(&server).len() == 2).then_some(()));
    let sent = sent_lines(&server);
    assert!(sent[1].contains("tls=sts-enforced") && sent[1].contains("id=one"), "{}", sent[1]);
    assert_eq!(https.requests().len(), 1, "no fetch while the id is unchanged");

    // A new id and a new policy that no longer lists the MX: refetched,
    // and the new one applies.
    https.set_policy(&policy("enforce", "mail.elsewhere.test"));
    https.resume();
    drop(dns);
    let _dns = TestDns::start_at(dns_addr, zone("two"));
    submit(&server, "x@sts.test", "third-0a13");
    let log = server.log_containing(&["mta-sts:enforce id=two: MX host mx.sts.test is not in the policy"]);
    assert!(log.contains("mta-sts:enforce id=two: MX host mx.sts.test is not in the policy"), "{log}");
    assert_eq!(https.requests().len(), 2, "refetched for the new id");
    assert_eq!(sink.count(), 2, "nothing sent under the new policy");
    let cached = std::fs::read_to_string(&file).unwrap();
    assert!(cached.contains("\"id\":\"two\""), "{cached}");
}

#[test]
fn an_unreadable_ca_file_stops_start_up_naming_it() {
    let missing = test_tmp().join("no-such-ca-4f1e.pem");
    let server =
        Server::configure(Options { relay: format!("ca_file = \"{}\"\n", missing.display()), ..Options::default() });
    let out = server.cli(&["check-config"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("relay.ca_file") && text.contains("no-such-ca-4f1e.pem"), "{text}");
}
