//! SMTPUTF8 and CHUNKING against a real peer: a private Postfix instance
//! (Debian's postfix, its own config and queue directories, loopback only)
//! relaying into ringmail, and ringmail relaying into it (`tests/run.sh`
//! runs as root and installs postfix; see tests/common/postfix.rs).
//!
//! Postfix's own SMTP client never sends BDAT (only its smtpd takes it),
//! so the Postfix -> ringmail direction exercises SMTPUTF8 only; BDAT is
//! exercised by ringmail -> Postfix.

mod common;
#[path = "common/postfix.rs"]
mod postfix;
#[path = "common/sink.rs"]
mod sink;

use common::*;
use postfix::Postfix;
use sink::{Script, Sink};
use std::process::Command;
use std::time::Duration;

const UTF8_USER: &str = "\u{7528}\u{6237}@example.test";

/// Python's smtplib sends `msg` with SMTPUTF8 to `port`.
fn smtplib_send(port: u16, from: &str, to: &str) {
    let script = r#"
import smtplib, sys
port, sender, rcpt = int(sys.argv[1]), sys.argv[2], sys.argv[3]
msg = ("From: " + sender + "\r\nTo: " + rcpt + "\r\nSubject: caf\u00e9\r\n\r\nhello " + rcpt + "\r\n").encode("utf-8")
with smtplib.SMTP("127.0.0.1", port) as s:
    s.ehlo("client.test")
    assert s.has_extn("smtputf8"), s.esmtp_features
    assert s.sendmail(sender, [rcpt], msg, mail_options=["SMTPUTF8"]) == {}
"#;
    let out = Command::new("python3").args(["-c", script, &port.to_string(), from, to]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn postfix_relays_smtputf8_mail_into_ringmail_for_a_utf8_user() {
    let mut server = Server::configure(Options::default());
    add_user(&server.config, UTF8_USER, PASSWORD);
    server.spawn();
    let postfix = Postfix::start(free_port(), &[("example.test", server.smtp)], "");
    smtplib_send(postfix.smtp.port(), "sender@postfix.test", UTF8_USER);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let msgs = loop {
        let msgs = fetch_all(&server, UTF8_USER);
        if !msgs.is_empty() {
            break msgs;
        }
        assert!(std::time::Instant::now() < deadline, "not delivered; Postfix's log:\n{}", postfix.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = String::from_utf8_lossy(&msgs[0]).into_owned();
    assert!(text.contains(&format!("hello {UTF8_USER}")), "{text}");
    assert!(text.contains("Subject: caf\u{e9}"), "{text}");
    postfix_sent(&postfix);
}

#[test]
fn ringmail_relays_smtputf8_mail_by_bdat_into_postfix_which_passes_it_on() {
    let sink = Sink::start("127.0.0.1", 0, Script { extensions: &["SMTPUTF8"], ..Script::default() });
    let postfix = Postfix::start(free_port(), &[("remote.test", sink.addr)], "");
    let server = Server::start_with(Options {
        relay: format!("routes = {{ \"remote.test\" = \"127.0.0.1:{}\" }}\nretry = [\"1s\"]\n", postfix.smtp.port()),
        ..Options::default()
    });
    let to = "j\u{e4}ne@remote.test";
    smtplib_send(server.smtp.port(), "bob@localhost", to);
    let got = eventually(Duration::from_secs(30), || sink.received().pop());
    assert_eq!(got.to, [to]);
    // Postfix passes SMTPUTF8 on only for mail that came to it with it.
    assert!(got.mail_line.ends_with(" SMTPUTF8"), "{}", got.mail_line);
    // Postfix's smtpd words its reply to BDAT LAST "Ok: N bytes queued as"
    // (after DATA: "Ok: queued as"); its per-session `bdat=1` count is
    // logged only at disconnect, and ringmail keeps the connection open.
    let log = server.log_containing(&["delivered", "bytes queued as"]);
    assert!(log.lines().any(|l| l.contains("delivered") && l.contains("bytes queued as")), "{log}");
    postfix_sent(&postfix);
}

#[test]
fn binarymime_mail_for_postfix_bounces_5_6_3_as_postfix_does_not_offer_binarymime() {
    let sink = Sink::start("127.0.0.1", 0, Script::default());
    let postfix = Postfix::start(free_port(), &[("remote.test", sink.addr)], "");
    let server = Server::start_with(Options {
        relay: format!("routes = {{ \"remote.test\" = \"127.0.0.1:{}\" }}\nretry = [\"1s\"]\n", postfix.smtp.port()),
        ..Options::default()
    });
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    c.expect("MAIL FROM:<bob@localhost> BODY=BINARYMIME", "250");
    c.expect("RCPT TO:<x@remote.test>", "250");
    c.send(b"BDAT 12 LAST\r\nSubject: b\r\n\r\n");
    assert!(c.reply().starts_with("250 2.0.0 Ok: queued"));
    eventually(Duration::from_secs(30), || (mailbox_count(&server, "bob@localhost") == 1).then_some(()));
    let dsn = String::from_utf8_lossy(&fetch_all(&server, "bob@localhost").remove(0)).into_owned();
    assert!(dsn.contains("5.6.3"), "{dsn}");
    assert_eq!(sink.received().len(), 0);
}

/// Postfix logs `status=sent` once it has read the next hop's reply, after
/// the next hop has the message: wait for it.
fn postfix_sent(postfix: &Postfix) {
    let wait = Duration::from_secs(10);
    let sent = std::time::Instant::now() + wait;
    while !postfix.log().contains("status=sent") {
        assert!(
            std::time::Instant::now() < sent,
            "no status=sent in Postfix's log within {wait:?}:\n{}",
            postfix.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
