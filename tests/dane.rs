//! DANE for SMTP (RFC 7672) over real sockets: ringmail relays to a
//! STARTTLS sink (tests/fixtures/tls_sink.py) whose MX host has TLSA
//! records. Most cases use the loopback test DNS playing a validating
//! resolver (it sets AD on names marked signed); one goes end to end
//! through a zone signed with ldns-signzone, served by NSD and validated
//! by Unbound (Debian packages nsd, unbound, ldnsutils; tests/run.sh
//! installs them).

mod common;

use common::*;
use ringmail::outbound::testdns::{TestDns, Zone};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const MX: &str = "mx.remote.test";

/// A process started by this test, killed (by its PID) when dropped.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The STARTTLS sink on 127.0.0.1 with a fresh certificate for the MX
/// host: where it writes, and the SHA-256 of its public key (a `3 1 1`
/// record's data).
struct TlsSink {
    port: u16,
    received: PathBuf,
    commands: PathBuf,
    spki_sha256: Vec<u8>,
    _process: Started,
}

impl TlsSink {
    fn start(dir: &Path) -> TlsSink {
        let certified = rcgen::generate_simple_self_signed(vec![MX.to_string()]).unwrap();
        let (cert, key) = (dir.join("sink-cert.pem"), dir.join("sink-key.pem"));
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
        let spki = ringmail::outbound::dane::spki(certified.cert.der()).unwrap().to_vec();
        assert_eq!(spki, certified.key_pair.public_key_der(), "the SPKI the sink will present");
        let port = free_port();
        let (received, commands) = (dir.join("received.txt"), dir.join("commands.txt"));
        let process = Command::new("python3")
            .arg(format!("{}/tests/fixtures/tls_sink.py", env!("CARGO_MANIFEST_DIR")))
            .arg(port.to_string())
            .args([&cert, &key, &received])
            .arg("--commands")
            .arg(&commands)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut process = Started(process);
        wait_until_ready(&mut process.0);
        TlsSink { port, received, commands, spki_sha256: Sha256::digest(&spki).to_vec(), _process: process }
    }

    /// The TLSA owner name of the sink's MX host (the port is the one
    /// connected to: `relay.mx_port` here, 25 in the wild).
    fn tlsa_name(&self) -> String {
        format!("_{}._tcp.{MX}", self.port)
    }

    fn received(&self) -> String {
        std::fs::read_to_string(&self.received).unwrap_or_default()
    }

    fn commands(&self) -> String {
        std::fs::read_to_string(&self.commands).unwrap_or_default()
    }
}

/// remote.test's MX is the sink, at 127.0.0.1; with `signed`, every answer
/// (the root for the start-up probe, the MX, its address, its TLSA) has AD.
fn zone(sink: &TlsSink, tlsa: Option<&[u8]>, signed: bool) -> Zone {
    let mut zone = Zone::new().mx("remote.test", 10, MX).a(MX, "127.0.0.1");
    if let Some(data) = tlsa {
        zone = zone.tlsa(&sink.tlsa_name(), 3, 1, 1, data);
    }
    if signed {
        zone = zone.signed(".").signed("remote.test").signed(MX).signed(&sink.tlsa_name());
    }
    zone
}

fn server(dns: std::net::SocketAddr, sink: &TlsSink, dane: &str) -> Server {
    Server::start_with(Options {
        relay: format!("dns_server = \"{dns}\"\nmx_port = {}\nretry = [\"1h\"]\n{dane}\n", sink.port),
        ..Options::default()
    })
}

fn submit(server: &Server, body: &str) {
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    let r = c.send_mail("bob@localhost", &["x@remote.test"], body.as_bytes());
    assert!(r.starts_with("250"), "{r}");
}

fn delivered_line(server: &Server) -> String {
    let log = eventually(Duration::from_secs(20), || {
        let log = server.log();
        log.contains("status=\"sent\"").then_some(log)
    });
    log.lines().find(|l| l.contains("status=\"sent\"")).unwrap_or_default().to_string()
}

#[test]
fn a_certificate_matching_its_tlsa_record_is_delivered_dane_verified() {
    let work = tempfile::tempdir_in(test_tmp()).unwrap();
    let sink = TlsSink::start(work.path());
    let dns = TestDns::start(zone(&sink, Some(&sink.spki_sha256), true));
    let server = server(dns.addr(), &sink, "");
    submit(&server, "Subject: dane\r\n\r\ndane-5e1f\r\n");
    let line = delivered_line(&server);
    assert!(line.contains("tls=dane-verified"), "{line}");
    assert!(line.contains("tls_basis=\"dane:3 1 1\""), "{line}");
    let got = eventually(Duration::from_secs(10), || Some(sink.received()).filter(|t| t.contains("--END--")));
    assert!(got.starts_with("TLS TLSv1.") && got.contains("dane-5e1f"), "{got}");
    assert!(server.log().contains("dane=on"), "the start-up probe turned DANE on");
}

#[test]
fn a_dane_only_entry_delivers_under_dane_and_skips_a_host_without_records() {
    let work = tempfile::tempdir_in(test_tmp()).unwrap();
    let sink = TlsSink::start(work.path());
    let dns = TestDns::start(
        zone(&sink, Some(&sink.spki_sha256), true)
            .mx("unsigned.test", 10, "mx.unsigned.test")
            .a("mx.unsigned.test", "127.0.0.1"),
    );
    let entries = r#"tls_policy = { "remote.test" = "dane-only", "unsigned.test" = "dane-only" }"#;
    let server = server(dns.addr(), &sink, entries);
    submit(&server, "Subject: dane-only\r\n\r\nx\r\n");
    let line = delivered_line(&server);
    assert!(line.contains("tls=dane-verified") && line.contains("tls_basis=\"dane:3 1 1\""), "{line}");
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    assert!(c.send_mail("bob@localhost", &["y@unsigned.test"], b"Subject: no\r\n\r\nx\r\n").starts_with("250"));
    let log = eventually(Duration::from_secs(20), || {
        let log = server.log();
        log.contains("status=\"deferred\"").then_some(log)
    });
    let deferred = log.lines().find(|l| l.contains("status=\"deferred\"")).unwrap();
    assert!(deferred.contains("y@unsigned.test") && deferred.contains("dsn=4.7.5"), "{deferred}");
}

#[test]
fn a_tlsa_mismatch_defers_with_4_7_5_and_sends_nothing_in_clear() {
    let work = tempfile::tempdir_in(test_tmp()).unwrap();
    let sink = TlsSink::start(work.path());
    let dns = TestDns::start(zone(&sink, Some(&[0x5a; 32]), true));
    let server = server(dns.addr(), &sink, "");
    submit(&server, "Subject: dane\r\n\r\nsecret\r\n");
    let log = eventually(Duration::from_secs(20), || {
        let log = server.log();
        log.contains("status=\"deferred\"").then_some(log)
    });
    let line = log.lines().find(|l| l.contains("status=\"deferred\"")).unwrap();
    assert!(line.contains("4.7.5") && line.contains("TLSA mismatch"), "{line}");
    let commands = sink.commands();
    assert!(commands.contains("PLAIN STARTTLS"), "ringmail did try STARTTLS: {commands}");
    assert!(!commands.contains("MAIL"), "no MAIL after a failed handshake, nor in clear: {commands}");
    assert!(!sink.received().contains("--END--"));
    assert!(!log.contains("status=\"sent\""));
}

#[test]
fn a_failed_tlsa_lookup_of_a_secure_mx_defers_with_4_7_5() {
    let work = tempfile::tempdir_in(test_tmp()).unwrap();
    let sink = TlsSink::start(work.path());
    // What a validating resolver answers for a bogus TLSA RRset.
    let dns = TestDns::start(zone(&sink, None, true).servfail(&sink.tlsa_name()));
    let server = server(dns.addr(), &sink, "");
    submit(&server, "Subject: dane\r\n\r\nsecret\r\n");
    let log = eventually(Duration::from_secs(20), || {
        let log = server.log();
        log.contains("status=\"deferred\"").then_some(log)
    });
    let line = log.lines().find(|l| l.contains("status=\"deferred\"")).unwrap();
    assert!(line.contains("4.7.5") && line.contains("TLSA lookup"), "{line}");
    assert_eq!(sink.commands(), "", "the host was not even connected to");
}

#[test]
fn an_unsigned_zone_gets_opportunistic_tls_whatever_its_tlsa_records_say() {
    let work = tempfile::tempdir_in(test_tmp()).unwrap();
    let sink = TlsSink::start(work.path());
    // The resolver validates (the probe's answer has AD), the zone is not
    // signed: its mismatching TLSA record must not count.
    let dns = TestDns::start(zone(&sink, Some(&[0x5a; 32]), false).signed("."));
    let server = server(dns.addr(), &sink, "");
    submit(&server, "Subject: plain dns\r\n\r\nx\r\n");
    let line = delivered_line(&server);
    assert!(line.contains("tls=opportunistic") && line.contains("tls_basis=\"relay.tls:may\""), "{line}");
    assert!(server.log().contains("dane=on"));
}

#[test]
fn with_dane_false_tlsa_records_are_not_looked_up() {
    let work = tempfile::tempdir_in(test_tmp()).unwrap();
    let sink = TlsSink::start(work.path());
    let dns = TestDns::start(zone(&sink, Some(&[0x5a; 32]), true));
    let server = server(dns.addr(), &sink, "dane = false");
    submit(&server, "Subject: no dane\r\n\r\nx\r\n");
    let line = delivered_line(&server);
    assert!(line.contains("tls=opportunistic"), "{line}");
    assert!(server.log().contains("dane=off"));
}

#[test]
fn dane_auto_stays_off_when_the_resolver_does_not_validate_and_true_warns() {
    let work = tempfile::tempdir_in(test_tmp()).unwrap();
    let sink = TlsSink::start(work.path());
    // No AD on the probe's answer: not a validating resolver.
    let unvalidated = TestDns::start(Zone::new().mx("remote.test", 10, MX).a(MX, "127.0.0.1"));
    let auto = server(unvalidated.addr(), &sink, "");
    eventually(Duration::from_secs(20), || auto.log().contains("dane=off").then_some(()));
    assert!(auto.log().contains("does not set AD"), "{}", auto.log());
    let forced = server(unvalidated.addr(), &sink, "dane = true\ndnssec_probe = \"remote.test\"");
    let warned = eventually(Duration::from_secs(20), || {
        Some(forced.log()).filter(|l| l.contains("the resolver does not validate"))
    });
    assert!(warned.contains("WARN"), "{warned}");
}

// End to end: ldns-signzone, NSD, Unbound.

/// Runs `program` in `dir`; panics with its output when it fails.
fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).current_dir(dir).output().unwrap_or_else(|e| {
        panic!("{program}: {e} (Debian packages nsd, unbound, ldnsutils; tests/run.sh installs them)")
    });
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{program} {args:?}: {text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

/// remote.test signed with a fresh Ed25519 key: the signed zone file and
/// the DS record to trust it by.
fn signed_zone(dir: &Path, sink: &TlsSink) -> (PathBuf, PathBuf) {
    let hex: String = sink.spki_sha256.iter().map(|b| format!("{b:02x}")).collect();
    let zone = format!(
        "$ORIGIN remote.test.\n$TTL 300\n\
         @ IN SOA ns.remote.test. hostmaster.remote.test. 1 3600 600 86400 300\n\
         @ IN NS ns.remote.test.\n\
         ns IN A 127.0.0.1\n\
         @ IN MX 10 mx.remote.test.\n\
         mx IN A 127.0.0.1\n\
         _{}._tcp.mx IN TLSA 3 1 1 {hex}\n",
        sink.port
    );
    std::fs::write(dir.join("remote.test.zone"), zone).unwrap();
    let key = run(dir, "ldns-keygen", &["-a", "ED25519", "-k", "remote.test"]);
    let key = key.trim();
    run(dir, "ldns-signzone", &["remote.test.zone", key]);
    (dir.join("remote.test.zone.signed"), dir.join(format!("{key}.ds")))
}

#[test]
fn end_to_end_through_unbound_validating_an_nsd_signed_zone() {
    let work = tempfile::tempdir_in(test_tmp()).unwrap();
    let dir = work.path();
    let sink = TlsSink::start(dir);
    let (zone_file, ds) = signed_zone(dir, &sink);
    let (nsd_port, unbound_port) = (free_port(), free_port());
    let nsd_conf = format!(
        "server:\n  ip-address: 127.0.0.1@{nsd_port}\n  do-ip6: no\n  username: \"\"\n  chroot: \"\"\n  \
         zonesdir: \"{d}\"\n  database: \"\"\n  pidfile: \"{d}/nsd.pid\"\n  xfrdfile: \"{d}/xfrd.state\"\n  \
         xfrdir: \"{d}\"\n  zonelistfile: \"{d}/zone.list\"\n  logfile: \"{d}/nsd.log\"\n  server-count: 1\n\
         remote-control:\n  control-enable: no\n\
         zone:\n  name: remote.test\n  zonefile: \"{z}\"\n",
        d = dir.display(),
        z = zone_file.display()
    );
    std::fs::write(dir.join("nsd.conf"), nsd_conf).unwrap();
    let unbound_conf = format!(
        "server:\n  interface: 127.0.0.1@{unbound_port}\n  port: {unbound_port}\n  do-ip6: no\n  \
         do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  \
         use-syslog: no\n  logfile: \"{d}/unbound.log\"\n  access-control: 127.0.0.0/8 allow\n  \
         do-not-query-localhost: no\n  module-config: \"validator iterator\"\n  trust-anchor-file: \"{ds}\"\n  \
         qname-minimisation: no\n  val-log-level: 2\n  local-zone: \"test.\" nodefault\n\
         remote-control:\n  control-enable: no\n\
         stub-zone:\n  name: \"remote.test\"\n  stub-addr: 127.0.0.1@{nsd_port}\n",
        d = dir.display(),
        ds = ds.display()
    );
    std::fs::write(dir.join("unbound.conf"), unbound_conf).unwrap();
    let daemon = |program: &str, args: &[&str]| {
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e} (Debian package; tests/run.sh installs it)"));
        Started(child)
    };
    let _nsd = daemon("/usr/sbin/nsd", &["-d", "-c", "nsd.conf"]);
    let _unbound = daemon("/usr/sbin/unbound", &["-d", "-c", "unbound.conf"]);
    let resolver: std::net::SocketAddr = format!("127.0.0.1:{unbound_port}").parse().unwrap();
    // Ready when Unbound answers for the zone and validated the answer.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ringmail::outbound::dns::probe_ad(resolver, "remote.test", Duration::from_millis(500)).ok() != Some(true) {
        if std::time::Instant::now() > deadline {
            let log = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
            panic!(
                "Unbound gave no validated answer\nnsd.log:\n{}\nunbound.log:\n{}",
                log("nsd.log"),
                log("unbound.log")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let server = server(resolver, &sink, "dnssec_probe = \"remote.test\"");
    submit(&server, "Subject: via unbound\r\n\r\ne2e-9b2c\r\n");
    let line = delivered_line(&server);
    assert!(line.contains("tls=dane-verified") && line.contains("tls_basis=\"dane:3 1 1\""), "{line}");
    assert!(sink.received().contains("e2e-9b2c"));
}
