//! The DSN extension (RFC 3461) end to end: Python's smtplib sends
//! NOTIFY, ORCPT, RET and ENVID; ringmail's notices honour them (read back
//! with Python's email package), and a next hop that offers DSN gets them
//! passed on.

mod common;
#[path = "common/postfix.rs"]
mod postfix;
#[path = "common/sink.rs"]
mod sink;

use common::*;
use sink::{Script, Sink};
use std::process::Command;
use std::time::Duration;

fn relay_to(sink: &Sink) -> Options {
    Options {
        relay: format!("routes = {{ \"remote.test\" = \"{}\" }}\nretry = [\"1s\"]\n", sink.addr),
        ..Options::default()
    }
}

/// Sends one message to `at` with Python's smtplib, with MAIL and RCPT options.
fn send_with_smtplib(
    at: std::net::SocketAddr,
    from: &str,
    to: &[&str],
    mail_opts: &[&str],
    rcpt_opts: &[&str],
    body: &str,
) {
    let script = r#"
import json, smtplib, sys
addr, port, sender, rcpts, mopts, ropts, body = json.loads(sys.argv[1])
with smtplib.SMTP(addr, port, timeout=30) as s:
    s.ehlo("client.test")
    assert s.has_extn("dsn"), s.esmtp_features
    refused = s.sendmail(sender, rcpts, body.encode(), mail_options=mopts, rcpt_options=ropts)
    assert not refused, refused
"#;
    let args = serde_json::json!([at.ip().to_string(), at.port(), from, to, mail_opts, rcpt_opts, body]);
    let out = Command::new("python3").args(["-c", script, &args.to_string()]).output().unwrap();
    assert!(
        out.status.success(),
        "smtplib: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A notice as Python's email package reads it (tests/fixtures/dsn_fields.py).
fn parse_notice(notice: &[u8]) -> serde_json::Value {
    let work = tempfile::tempdir_in(test_tmp()).unwrap();
    let path = work.path().join("notice.eml");
    std::fs::write(&path, notice).unwrap();
    let out = Command::new("python3")
        .arg(format!("{}/tests/fixtures/dsn_fields.py", env!("CARGO_MANIFEST_DIR")))
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["defects"], serde_json::json!([]), "{v}");
    v
}

fn one_notice(server: &Server, user: &str) -> serde_json::Value {
    eventually(Duration::from_secs(15), || (mailbox_count(server, user) >= 1).then_some(()));
    let mut all = fetch_all(server, user);
    assert_eq!(all.len(), 1, "exactly one notice");
    parse_notice(&all.remove(0))
}

const BODY: &str = "Subject: dsn test\r\nFrom: bob@localhost\r\n\r\nthe secret body\r\n";

#[test]
fn notify_success_on_local_delivery_sends_a_delivered_notice_echoing_envid_and_orcpt() {
    let server = Server::start();
    send_with_smtplib(
        server.smtp,
        "bob@localhost",
        &["alice@localhost", "carol@example.test"],
        &["RET=HDRS", "ENVID=QQ+2B314159"],
        &["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;Alice+2Bold@localhost"],
        BODY,
    );
    // Both recipients asked (smtplib gives every RCPT the same options).
    eventually(Duration::from_secs(10), || (mailbox_count(&server, "alice@localhost") == 1).then_some(()));
    let notice = one_notice(&server, "bob@localhost");
    assert_eq!(notice["subject"], "Successful Mail Delivery Report");
    assert_eq!(notice["per_message"]["Original-Envelope-Id"], "QQ+314159");
    let recipients = notice["recipients"].as_array().unwrap();
    assert_eq!(recipients.len(), 2, "{notice}");
    for r in recipients {
        assert_eq!(r["Action"], "delivered");
        assert_eq!(r["Status"], "2.0.0");
        assert_eq!(r["Original-Recipient"], "rfc822; Alice+old@localhost");
    }
    assert_eq!(notice["returned_type"], "text/rfc822-headers");
    assert!(!notice["returned"].as_str().unwrap().contains("the secret body"), "RET=HDRS: headers only");
    // The delivered copy is untouched: only alice's own message is there.
    assert!(String::from_utf8_lossy(&fetch_all(&server, "alice@localhost")[0]).contains("the secret body"));
}

#[test]
fn without_notify_success_no_delivered_notice_is_sent() {
    let server = Server::start();
    send_with_smtplib(server.smtp, "bob@localhost", &["alice@localhost"], &[], &["NOTIFY=FAILURE"], BODY);
    eventually(Duration::from_secs(10), || (mailbox_count(&server, "alice@localhost") == 1).then_some(()));
    // A second message asking for success proves notices flow at all; the
    // first one must not have produced one before it.
    send_with_smtplib(server.smtp, "bob@localhost", &["alice@localhost"], &["ENVID=second"], &["NOTIFY=SUCCESS"], BODY);
    let notice = one_notice(&server, "bob@localhost");
    assert_eq!(notice["per_message"]["Original-Envelope-Id"], "second");
}

fn refusing_sink(dsn: bool) -> Sink {
    Sink::start(
        "127.0.0.1",
        0,
        Script {
            rcpt: Box::new(|a| {
                if a.starts_with("nobody") {
                    "550 5.1.1 <nobody@remote.test>: user unknown".into()
                } else {
                    "250 2.1.5 Ok".into()
                }
            }),
            extensions: if dsn { &["DSN"] } else { &[] },
            ..Script::default()
        },
    )
}

#[test]
fn notify_never_suppresses_the_bounce_and_ret_full_returns_the_whole_message() {
    let sink = refusing_sink(false);
    let server = Server::start_with(relay_to(&sink));
    send_with_smtplib(server.smtp, "bob@localhost", &["nobody@remote.test"], &[], &["NOTIFY=NEVER"], BODY);
    server.log_containing(&["to=nobody@remote.test", "no notice: NOTIFY declines it"]);
    // The refused recipient is final: nothing stays queued for it.
    eventually(Duration::from_secs(10), || {
        let out = server.cli(&["queue", "list"]);
        (!String::from_utf8_lossy(&out.stdout).contains("nobody@remote.test")).then_some(())
    });
    assert_eq!(mailbox_count(&server, "bob@localhost"), 0, "NOTIFY=NEVER: no bounce");

    // Another address: the first one is on the suppression list now.
    send_with_smtplib(server.smtp, "bob@localhost", &["nobody2@remote.test"], &["RET=FULL", "ENVID=full-1"], &[], BODY);
    let notice = one_notice(&server, "bob@localhost");
    assert_eq!(notice["subject"], "Undelivered Mail Returned to Sender");
    assert_eq!(notice["per_message"]["Original-Envelope-Id"], "full-1");
    assert_eq!(notice["recipients"][0]["Action"], "failed");
    assert_eq!(notice["recipients"][0]["Status"], "5.1.1");
    assert_eq!(notice["returned_type"], "message/rfc822");
    assert!(notice["returned"].as_str().unwrap().contains("the secret body"), "{notice}");
}

#[test]
fn dsn_parameters_pass_to_a_next_hop_that_offers_dsn_and_nobody_else_notifies() {
    let sink = refusing_sink(true);
    let server = Server::start_with(relay_to(&sink));
    send_with_smtplib(
        server.smtp,
        "bob@localhost",
        &["ok@remote.test"],
        &["RET=HDRS", "ENVID=a+2Bb"],
        &["NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;Ok+2Btag@remote.test"],
        BODY,
    );
    eventually(Duration::from_secs(10), || (sink.count() == 1).then_some(()));
    let got = &sink.received()[0];
    assert!(got.mail_line.ends_with(" RET=HDRS ENVID=a+2Bb"), "{}", got.mail_line);
    assert_eq!(got.rcpt_lines, ["RCPT TO:<ok@remote.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;Ok+2Btag@remote.test"]);
    // The next hop owns the success notice now; a second message without
    // DSN parameters shows the queue moved on without one from us.
    send_with_smtplib(server.smtp, "bob@localhost", &["ok@remote.test"], &[], &[], BODY);
    eventually(Duration::from_secs(10), || (sink.count() == 2).then_some(()));
    assert_eq!(sink.received()[1].rcpt_lines, ["RCPT TO:<ok@remote.test>"]);
    assert!(!server.log().contains("sender notified"), "no notice from ringmail");
}

#[test]
fn a_next_hop_without_dsn_gets_no_parameters_and_the_sender_a_relayed_notice() {
    let sink = refusing_sink(false);
    let server = Server::start_with(relay_to(&sink));
    send_with_smtplib(server.smtp, "bob@localhost", &["ok@remote.test"], &["ENVID=rel"], &["NOTIFY=SUCCESS"], BODY);
    eventually(Duration::from_secs(10), || (sink.count() == 1).then_some(()));
    let got = &sink.received()[0];
    assert!(!got.mail_line.contains("ENVID") && !got.rcpt_lines[0].contains("NOTIFY"), "{got:?}");
    let notice = one_notice(&server, "bob@localhost");
    assert_eq!(notice["recipients"][0]["Action"], "relayed");
    assert_eq!(notice["per_message"]["Original-Envelope-Id"], "rel");
}

#[test]
fn malformed_dsn_parameters_get_501_and_unknown_ones_555() {
    let server = Server::start();
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    c.expect("MAIL FROM:<bob@localhost> RET=SOME", "501 5.5.4");
    c.expect("MAIL FROM:<bob@localhost> ENVID=x+zz", "501 5.5.4");
    c.expect("MAIL FROM:<bob@localhost> RET=FULL", "250");
    c.expect("RCPT TO:<alice@localhost> NOTIFY=NEVER,DELAY", "501 5.5.4");
    c.expect("RCPT TO:<alice@localhost> ORCPT=alice@localhost", "501 5.5.4");
    c.expect("RCPT TO:<alice@localhost> XFORWARD=1", "555 5.5.4");
    c.expect("RCPT TO:<alice@localhost> NOTIFY=DELAY ORCPT=rfc822;alice@localhost", "250");
}

/// Both ways through a real Postfix: smtplib → ringmail → Postfix → sink,
/// and smtplib → Postfix → ringmail → sink. The sink (offering DSN) sees
/// the sender's NOTIFY, ORCPT, RET and ENVID each time.
#[test]
fn dsn_parameters_pass_through_postfix_both_ways() {
    let sink = refusing_sink(true);
    let pf_port = free_port();
    let server = Server::start_with(Options {
        relay: format!(
            "routes = {{ \"final.test\" = \"127.0.0.1:{pf_port}\", \"remote.test\" = \"{}\" }}\nretry = [\"1s\"]\n",
            sink.addr
        ),
        ..Options::default()
    });
    let postfix = postfix::Postfix::start(pf_port, &[("final.test", sink.addr), ("remote.test", server.smtp)], "");

    // ringmail → Postfix → sink.
    send_with_smtplib(
        server.smtp,
        "bob@localhost",
        &["x@final.test"],
        &["RET=HDRS", "ENVID=via-ringmail"],
        &["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;X+2Bold@final.test"],
        BODY,
    );
    eventually(Duration::from_secs(20), || (sink.count() == 1).then_some(()));
    let got = &sink.received()[0];
    assert!(got.mail_line.contains(" RET=HDRS") && got.mail_line.contains(" ENVID=via-ringmail"), "{}", got.mail_line);
    assert!(got.rcpt_lines[0].contains(" NOTIFY=SUCCESS,FAILURE"), "{:?}", got.rcpt_lines);
    assert!(got.rcpt_lines[0].contains(" ORCPT=rfc822;X+2Bold@final.test"), "{:?}", got.rcpt_lines);

    // Postfix → ringmail → sink.
    send_with_smtplib(
        postfix.smtp,
        "someone@postfix.test",
        &["y@remote.test"],
        &["RET=FULL", "ENVID=via-postfix"],
        &["NOTIFY=DELAY", "ORCPT=rfc822;Y@remote.test"],
        BODY,
    );
    eventually(Duration::from_secs(20), || (sink.count() == 2).then_some(()));
    let got = &sink.received()[1];
    assert!(got.mail_line.contains(" RET=FULL") && got.mail_line.contains(" ENVID=via-postfix"), "{}", got.mail_line);
    assert!(got.rcpt_lines[0].contains(" NOTIFY=DELAY"), "{:?}", got.rcpt_lines);
    assert!(got.rcpt_lines[0].contains(" ORCPT=rfc822;Y@remote.test"), "{:?}", got.rcpt_lines);
    // Each core writes its log lines out every 20 ms: wait for the line.
    let needle = "from=someone@postfix.test";
    assert!(server.log_containing(&[needle]).contains(needle), "it went through ringmail");
}
