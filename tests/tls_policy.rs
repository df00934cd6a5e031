//! Outbound TLS policy (issue 16 items 4 and 5): `[relay.tls_policy]`
//! entries per destination, REQUIRETLS (RFC 8689) from MAIL FROM to the
//! next hop, and `tls=` / `tls_basis=` in the logs, trace and metrics.
//! The TLS peer is a Python STARTTLS sink (tests/fixtures/tls_sink.py).

mod common;
#[path = "common/sink.rs"]
mod sink;

use common::tls_sink::TlsSink;
use common::*;
use ringmail::outbound::testdns::{TestDns, Zone};
use sink::{Script, Sink};
use std::process::Command;
use std::time::Duration;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn submit(server: &Server, to: &[&str], body: &[u8]) {
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    let r = c.send_mail("bob@localhost", to, body);
    assert!(r.starts_with("250"), "{r}");
}

/// The first log line that holds every one of `needles` (waits for it).
fn log_line(server: &Server, needles: &[&str]) -> String {
    eventually(Duration::from_secs(20), || {
        server.log().lines().find(|l| needles.iter().all(|n| l.contains(n))).map(str::to_string)
    })
}

/// The queue id of the message delivered to `to`, from its log line.
fn queue_id_of(server: &Server, to: &str) -> String {
    let line = log_line(server, &["delivered", to]);
    let at = line.find("queue_id=").unwrap() + "queue_id=".len();
    line[at..].split([' ', '"']).find(|s| !s.is_empty()).unwrap().to_string()
}

#[test]
fn a_policy_entry_decides_tls_per_destination_and_logs_trace_and_metrics_say_what_it_was() {
    let work = tempfile::tempdir_in(test_tmp()).unwrap();
    let sink = TlsSink::start(work.path(), &[]);
    let port = sink.port;
    let server = Server::start_with(Options {
        relay: format!(
            "retry = [\"1h\"]\n\
             routes = {{ \"plain.test\" = \"127.0.0.1:{port}\", \"may.test\" = \"127.0.0.1:{port}\", \
             \"strict.test\" = \"127.0.0.1:{port}\" }}\n\
             [relay.tls_policy]\n\"Plain.Test.\" = \"none\"\n\"strict.test\" = \"verify\"\n"
        ),
        ..Options::default()
    });
    submit(&server, &["a@plain.test"], b"Subject: one\r\n\r\nin-clear-4e1f\r\n");
    let text = eventually(Duration::from_secs(15), || Some(sink.received()).filter(|t| t.contains("in-clear-4e1f")));
    assert!(text.starts_with("PLAIN "), "level none: no STARTTLS although offered: {text}");
    let line = log_line(&server, &["delivered", "a@plain.test"]);
    assert!(line.contains("tls=none") && line.contains("tls_basis=\"tls_policy:none\""), "{line}");

    submit(&server, &["b@may.test"], b"Subject: two\r\n\r\nopportunistic-77a0\r\n");
    eventually(Duration::from_secs(15), || Some(sink.received()).filter(|t| t.contains("opportunistic-77a0")));
    let line = log_line(&server, &["delivered", "b@may.test"]);
    assert!(line.contains("tls=opportunistic") && line.contains("tls_basis=\"route:may\""), "{line}");
    let id = queue_id_of(&server, "b@may.test");
    // The delivery record the trace reads is written after the log line.
    eventually(Duration::from_secs(10), || {
        let trace = server.cli(&["trace", &id]);
        String::from_utf8_lossy(&trace.stdout).contains("tls=opportunistic tls_basis=route:may").then_some(())
    });
    let json = server.cli(&["trace", &id, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("trace --json");
    let r = &json["messages"][0]["recipients"][0];
    assert_eq!(r["tls"], "opportunistic", "{json}");
    assert!(r["via"].as_str().is_some_and(|v| v.ends_with(&format!("[127.0.0.1:{port}]"))), "{json}");

    // `verify` refuses the self-signed certificate: nothing is sent, the
    // mail waits.
    submit(&server, &["c@strict.test"], b"Subject: three\r\n\r\nmust-not-leak-31c9\r\n");
    let line = log_line(&server, &["will retry", "c@strict.test"]);
    assert!(line.contains("status=\"deferred\""), "{line}");
    assert!(!sink.received().contains("must-not-leak-31c9"));
    let (_, metrics) = server.http("GET /metrics HTTP/1.0");
    assert_eq!(sum_metric(&metrics, "ringmail_relay_tls_total", &[("tls", "none")]), 1.0, "{metrics}");
    assert_eq!(sum_metric(&metrics, "ringmail_relay_tls_total", &[("tls", "opportunistic")]), 1.0);
    assert_eq!(sum_metric(&metrics, "ringmail_relay_tls_total", &[("tls", "verified")]), 0.0);
}

#[test]
fn requiretls_is_taken_over_tls_and_bounced_5_7_10_when_the_next_hop_is_not_verified() {
    let work = tempfile::tempdir_in(test_tmp()).unwrap();
    // An encrypting next hop that offers REQUIRETLS, but whose certificate
    // nobody verified (opportunistic), and a plain one without STARTTLS.
    let tls = TlsSink::start(work.path(), &["REQUIRETLS"]);
    let plain = Sink::start("127.0.0.1", 0, Script::default());
    let server = Server::start_with(Options {
        relay: format!(
            "retry = [\"1h\"]\nroutes = {{ \"tls.test\" = \"127.0.0.1:{}\", \"plain.test\" = \"{}\" }}\n",
            tls.port, plain.addr
        ),
        ..Options::default()
    });
    let msg = work.path().join("msg.eml");
    std::fs::write(&msg, b"From: bob@localhost\r\nSubject: strict\r\n\r\nrequire-tls-9b2e\r\n").unwrap();
    let out = Command::new("python3")
        .args([&fixture("requiretls_send.py"), "127.0.0.1", &server.smtp.port().to_string(), "bob@localhost"])
        .arg("x@plain.test,y@tls.test")
        .arg(&msg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Both recipients bounce: one has no TLS at all, the other's session
    // was not verified. The bounce tells the sender why.
    // (One notice per destination domain; each names its recipient.)
    let notices = eventually(Duration::from_secs(20), || {
        let all = fetch_all(&server, "bob@localhost");
        let notices: Vec<String> = all.iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect();
        let about = |rcpt: &str| notices.iter().any(|n| n.contains(rcpt) && n.contains("Status: 5.7.10"));
        (about("x@plain.test") && about("y@tls.test")).then(|| notices.concat())
    });
    assert!(notices.contains("REQUIRETLS"), "the notice says why: {notices}");
    assert_eq!(plain.count(), 0, "nothing sent in plain text");
    assert!(!tls.received().contains("require-tls-9b2e"), "nothing sent over an unverified session");
    let line = log_line(&server, &["bounced", "y@tls.test"]);
    assert!(line.contains("tls=opportunistic") && line.contains("5.7.10"), "{line}");
}

#[test]
fn requiretls_goes_declared_over_a_verified_session_to_a_next_hop_offering_it() {
    let work = tempfile::tempdir_in(test_tmp()).unwrap();
    // A next hop with a certificate for its name from a CA ringmail trusts
    // (`ca_file`), offering REQUIRETLS; the domain's policy is `verify`.
    let pki = common::pki::Pki::new();
    let (cert, key) = pki.issue("mx.remote.test");
    let sink = TlsSink::with_cert(work.path(), &cert, &key, &["REQUIRETLS"]);
    let dns = TestDns::start(Zone::new().a("mx.remote.test", "127.0.0.1"));
    let server = Server::start_with(Options {
        relay: format!(
            "dns_server = \"{}\"\nretry = [\"1h\"]\nca_file = \"{}\"\n\
             routes = {{ \"strict.test\" = \"mx.remote.test:{}\" }}\n\
             [relay.tls_policy]\n\"strict.test\" = \"verify\"\n",
            dns.addr(),
            pki.ca_file().display(),
            sink.port
        ),
        ..Options::default()
    });
    let msg = work.path().join("msg.eml");
    std::fs::write(&msg, b"From: bob@localhost\r\nSubject: strict\r\n\r\nverified-only-5d0c\r\n").unwrap();
    let out = Command::new("python3")
        .args([&fixture("requiretls_send.py"), "127.0.0.1", &server.smtp.port().to_string(), "bob@localhost"])
        .arg("z@strict.test")
        .arg(&msg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = sink.wait_for(1);
    let first = got.lines().next().unwrap_or_default();
    assert!(first.starts_with("TLS TLSv1."), "{got}");
    assert!(first.ends_with(" REQUIRETLS"), "REQUIRETLS passed on in MAIL FROM: {first}");
    assert!(got.contains("verified-only-5d0c"));
    let line = log_line(&server, &["delivered", "z@strict.test"]);
    assert!(line.contains("tls=verified") && line.contains("tls_basis=\"tls_policy:verify\""), "{line}");
}
