//! SMTP TLS reporting (RFC 8460, issue 16 item 3): sessions counted per
//! policy domain and day, `ringmail tls-report show`, and `tls-report send`
//! queueing a gzipped JSON report to the domain's `rua` through ringmail's
//! own relay, DKIM-signed with the reporting host's key.

mod common;
#[path = "common/sink.rs"]
mod sink;

use common::tls_sink::TlsSink;
use common::*;
use ringmail::outbound::testdns::{TestDns, Zone};
use sink::{Script, Sink};
use std::io::Read;
use std::process::Command;
use std::time::Duration;

/// The decoded `application/tlsrpt+gzip` part of a report message.
fn report_of(message: &[u8]) -> serde_json::Value {
    use base64::Engine;
    let text = String::from_utf8_lossy(message);
    let at = text.find("Content-Type: application/tlsrpt+gzip").expect("a tlsrpt+gzip part");
    let body_at = at + text[at..].find("\r\n\r\n").unwrap() + 4;
    let b64: String = text[body_at..].lines().take_while(|l| !l.starts_with("--")).collect();
    let gz = base64::engine::general_purpose::STANDARD.decode(b64.trim()).expect("base64");
    let mut json = String::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut json).expect("gzip");
    serde_json::from_str(&json).expect("JSON")
}

#[test]
fn sessions_are_counted_shown_and_reported_to_the_rua_as_rfc_8460_says() {
    let work = tempfile::tempdir_in(test_tmp()).unwrap();
    let tls = TlsSink::start(work.path(), &[]);
    let collector = Sink::start("127.0.0.1", 0, Script::default());
    let dns = TestDns::start(
        Zone::new()
            .txt("_smtp._tls.remote.test", "v=TLSRPTv1; rua=mailto:tlsrpt@collector.test")
            .txt("_smtp._tls.strict.test", "v=TLSRPTv1;rua=mailto:tlsrpt@collector.test,https://x.test/r"),
    );
    let mut server = Server::configure(Options {
        relay: format!(
            "dns_server = \"{}\"\nretry = [\"1h\"]\n\
             routes = {{ \"remote.test\" = \"127.0.0.1:{port}\", \"strict.test\" = \"127.0.0.1:{port}\", \
             \"collector.test\" = \"{collector}\" }}\n\
             [relay.tls_policy]\n\"strict.test\" = \"verify\"\n",
            dns.addr(),
            port = tls.port,
            collector = collector.addr,
        ),
        ..Options::default()
    });
    // The reports are signed with the reporting host's key.
    let keygen = server.cli(&["dkim", "keygen", "mx.test", "rpt", "--algorithm", "ed25519"]);
    assert!(keygen.status.success(), "{}", String::from_utf8_lossy(&keygen.stderr));
    let mut text = std::fs::read_to_string(&server.config).unwrap();
    text.push_str("\n[[dkim.sign]]\ndomain = \"mx.test\"\nselector = \"rpt\"\nkey = \"dkim/mx.test.rpt.pem\"\n");
    std::fs::write(&server.config, text).unwrap();
    server.spawn();

    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    assert!(c.send_mail("bob@localhost", &["a@remote.test"], b"Subject: ok\r\n\r\nx\r\n").starts_with("250"));
    assert!(c.send_mail("bob@localhost", &["b@strict.test"], b"Subject: no\r\n\r\ny\r\n").starts_with("250"));
    eventually(Duration::from_secs(20), || {
        let log = server.log();
        (log.contains("to=a@remote.test") && log.contains("status=\"sent\"") && log.contains("will retry"))
            .then_some(())
    });

    let show = server.cli(&["tls-report", "show", "remote.test"]);
    assert!(show.status.success(), "{}", String::from_utf8_lossy(&show.stderr));
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(shown.contains("policy no-policy-found: successful=1 failed=0"), "{shown}");
    let show = server.cli(&["tls-report", "show", "strict.test"]);
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(shown.contains("successful=0 failed=1"), "{shown}");
    assert!(shown.contains("failure certificate-not-trusted count=1"), "{shown}");
    let bad = server.cli(&["tls-report", "show", "x.test", "--date", "06/12/2026"]);
    assert!(!bad.status.success(), "a bad date is refused");

    let today = String::from_utf8(Command::new("date").args(["-u", "+%Y-%m-%d"]).output().unwrap().stdout).unwrap();
    let send = server.cli(&["tls-report", "send", "--date", today.trim()]);
    assert!(send.status.success(), "{}", String::from_utf8_lossy(&send.stderr));
    let said = String::from_utf8_lossy(&send.stdout);
    assert_eq!(said.matches("report queued as").count(), 2, "{said}");
    let reports = eventually(Duration::from_secs(20), || Some(collector.received()).filter(|r| r.len() == 2));
    for r in &reports {
        assert_eq!(r.from, "", "reports go from the null sender");
        assert_eq!(r.to, ["tlsrpt@collector.test"]);
        let text = String::from_utf8_lossy(&r.data);
        assert!(text.contains("Content-Type: multipart/report; report-type=\"tlsrpt\""), "{text}");
        assert!(text.contains("TLS-Report-Submitter: mx.test"), "{text}");
        assert!(text.lines().any(|l| l.starts_with("DKIM-Signature:") && text.contains("d=mx.test")), "signed: {text}");
        let report = report_of(&r.data);
        assert_eq!(report["organization-name"], "mx.test");
        assert_eq!(report["date-range"]["start-datetime"], format!("{}T00:00:00Z", today.trim()));
        assert!(report["report-id"].as_str().is_some_and(|s| !s.is_empty()));
        let policy = &report["policies"][0];
        let summary = &policy["summary"];
        match policy["policy"]["policy-domain"].as_str() {
            Some("remote.test") => {
                assert_eq!(summary["total-successful-session-count"], 1, "{report}");
                assert_eq!(summary["total-failure-session-count"], 0, "{report}");
            }
            Some("strict.test") => {
                assert_eq!(summary["total-failure-session-count"], 1, "{report}");
                let detail = &policy["failure-details"][0];
                assert_eq!(detail["result-type"], "certificate-not-trusted", "{report}");
                assert_eq!(detail["receiving-ip"], "127.0.0.1", "{report}");
                assert_eq!(detail["failed-session-count"], 1, "{report}");
            }
            other => panic!("unexpected policy domain {other:?}: {report}"),
        }
        assert_eq!(policy["policy"]["policy-type"], "no-policy-found");
    }
}
