//! Suppression and bounce classes end to end on loopback: a hard bounce
//! from a scripted sink suppresses the recipient (visible in `ringmail
//! suppression list`, the log, the metrics and `ringmail trace`); later
//! mail to it is refused at RCPT and queued mail bounces at dispatch; the
//! entry survives kill -9, compaction and backup/restore; `delete` lifts
//! it, expiry ends it; policy blocks and temporary failures never
//! suppress.

mod common;
#[path = "common/sink.rs"]
mod sink;

use common::*;
use sink::{Script, Sink};
use std::time::Duration;

/// A sink that refuses `nobody@...` with 550 5.1.1, `blocked@...` with a
/// Spamhaus listing (5.7.1), defers `later@...` with 450 4.2.1 and takes
/// everyone else.
fn scripted_sink() -> Sink {
    Sink::start(
        "127.0.0.1",
        0,
        Script {
            rcpt: Box::new(|a| {
                if a.starts_with("nobody") {
                    "550 5.1.1 no such user".into()
                } else if a.starts_with("blocked") {
                    "550 5.7.1 Service unavailable, Client host [127.0.0.1] blocked using Spamhaus".into()
                } else if a.starts_with("later") {
                    "450 4.2.1 try again later".into()
                } else {
                    "250 Ok".into()
                }
            }),
            ..Script::default()
        },
    )
}

fn relay_to(sink: &Sink, extra: &str) -> Options {
    Options {
        relay: format!("routes = {{ \"remote.test\" = \"{}\" }}\nretry = [\"1s\"]\n{extra}", sink.addr),
        ..Options::default()
    }
}

/// Send one message from bob (relaying is permitted from loopback); the
/// 250 reply.
fn submit(server: &Server, to: &[&str], subject: &str) -> String {
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    let r = c.send_mail("bob@localhost", to, format!("Subject: {subject}\r\n\r\nx\r\n").as_bytes());
    assert!(r.starts_with("250"), "{r}");
    r
}

/// The reply to `RCPT TO:<to>` in a fresh transaction from bob.
fn rcpt_reply(server: &Server, to: &str) -> String {
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    c.expect("MAIL FROM:<bob@localhost>", "250");
    c.cmd(&format!("RCPT TO:<{to}>"))
}

fn cli_ok(server: &Server, args: &[&str]) -> String {
    let out = server.cli(args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "ringmail {args:?}: {text}");
    text
}

fn suppression_list(server: &Server) -> String {
    cli_ok(server, &["suppression", "list"])
}

#[test]
fn a_hard_bounce_suppresses_the_recipient_until_deleted_across_kill_9() {
    let sink = scripted_sink();
    let mut server = Server::start_with(relay_to(&sink, ""));
    let queued = submit(&server, &["nobody@remote.test"], "first");
    let queue_id = queued.trim().rsplit(' ').next().unwrap().to_string();
    let log = server.log_containing(&["recipient suppressed", "class=invalid-recipient"]);
    assert!(log.contains("class=invalid-recipient"), "the bounce log line has its class:\n{log}");
    assert!(log.contains("recipient suppressed"), "{log}");
    let list = suppression_list(&server);
    assert!(list.contains("nobody@remote.test") && list.contains("class=invalid-recipient"), "{list}");
    assert!(list.contains("550 5.1.1 no such user") && list.contains("-- 1 suppressed"), "{list}");

    // The sender got a DSN naming the class; trace shows it too.
    eventually(Duration::from_secs(10), || (mailbox_count(&server, "bob@localhost") == 1).then_some(()));
    let dsn = String::from_utf8_lossy(&fetch_all(&server, "bob@localhost")[0]).into_owned();
    assert!(dsn.contains("X-Ringmail-Bounce-Class: invalid-recipient"), "{dsn}");
    // The bounce record the trace reads is written once the notice is stored.
    eventually(Duration::from_secs(10), || {
        cli_ok(&server, &["trace", &queue_id])
            .contains("bounced (sender notified) class=invalid-recipient")
            .then_some(())
    });
    assert_eq!(server.metric("ringmail_bounces_total", &[("class", "invalid-recipient")]), 1.0);

    // Later mail to it is refused at RCPT; others still go.
    let r = rcpt_reply(&server, "nobody@remote.test");
    assert!(r.starts_with("550 5.1.1 recipient suppressed (hard bounce on 20"), "{r}");
    assert!(rcpt_reply(&server, "Nobody@Remote.Test").starts_with("550 5.1.1"), "case does not matter");
    assert!(rcpt_reply(&server, "somebody@remote.test").starts_with("250"));

    // kill -9 and start again: still suppressed.
    server.restart();
    assert!(rcpt_reply(&server, "nobody@remote.test").starts_with("550 5.1.1 recipient suppressed"));
    assert!(suppression_list(&server).contains("nobody@remote.test"));

    // The operator lifts it, durably.
    let out = cli_ok(&server, &["suppression", "delete", "nobody@remote.test"]);
    assert!(out.contains("deleted nobody@remote.test"), "{out}");
    assert!(rcpt_reply(&server, "nobody@remote.test").starts_with("250"));
    let again = server.cli(&["suppression", "delete", "nobody@remote.test"]);
    assert!(!again.status.success(), "deleting what is not there is an error");
    server.restart();
    assert!(rcpt_reply(&server, "nobody@remote.test").starts_with("250"), "the deletion survived kill -9");
    assert!(suppression_list(&server).contains("-- 0 suppressed"));
}

#[test]
fn queued_mail_to_a_newly_suppressed_recipient_bounces_at_dispatch() {
    let sink = scripted_sink();
    let server = Server::start_with(relay_to(&sink, ""));
    // `later@` is deferred (450) and retried every second...
    submit(&server, &["later@remote.test"], "queued");
    server.log_containing(&["will retry"]);
    // ...until the operator suppresses it: the next attempt bounces it
    // without sending.
    let out = cli_ok(&server, &["suppression", "add", "later@remote.test"]);
    assert!(out.contains("suppressed later@remote.test until"), "{out}");
    let log = server.log_containing(&["\"suppressed\""]);
    assert!(log.contains("status=\"bounced\""), "{log}");
    eventually(Duration::from_secs(10), || (mailbox_count(&server, "bob@localhost") == 1).then_some(()));
    let dsn = String::from_utf8_lossy(&fetch_all(&server, "bob@localhost")[0]).into_owned();
    assert!(dsn.contains("later@remote.test") && dsn.contains("recipient suppressed"), "{dsn}");
    assert_eq!(sink.count(), 0, "nothing was sent");
    assert!(suppression_list(&server).contains("class=manual"));
}

#[test]
fn policy_blocks_and_temporary_failures_never_suppress() {
    let sink = scripted_sink();
    let server = Server::start_with(relay_to(&sink, "max_queue_lifetime = \"3s\""));
    submit(&server, &["blocked@remote.test", "later@remote.test"], "not hard");
    let log = server.log_containing(&["class=reputation-block", "class=transient-expired"]);
    assert!(log.contains("class=reputation-block"), "a Spamhaus 5.7.1 is a reputation block:\n{log}");
    assert!(log.contains("class=transient-expired"), "a 450 that expired:\n{log}");
    assert!(!log.contains("recipient suppressed"), "{log}");
    assert!(suppression_list(&server).contains("-- 0 suppressed"));
    assert!(rcpt_reply(&server, "blocked@remote.test").starts_with("250"));
    assert!(rcpt_reply(&server, "later@remote.test").starts_with("250"));
    assert_eq!(server.metric("ringmail_bounces_total", &[("class", "reputation-block")]), 1.0);
    assert_eq!(server.metric("ringmail_bounces_total", &[("class", "transient-expired")]), 1.0);
}

#[test]
fn a_suppression_expires_after_suppression_expiry() {
    let sink = scripted_sink();
    let server = Server::start_with(relay_to(&sink, "suppression_expiry = \"2s\""));
    submit(&server, &["nobody@remote.test"], "expiring");
    server.log_containing(&["recipient suppressed"]);
    assert!(rcpt_reply(&server, "nobody@remote.test").starts_with("550 5.1.1 recipient suppressed"));
    let log = server.log_containing(&["suppression expired"]);
    assert!(log.contains("suppression expired"), "{log}");
    assert!(rcpt_reply(&server, "nobody@remote.test").starts_with("250"));
    assert!(suppression_list(&server).contains("-- 0 suppressed"));
}

#[test]
fn an_entry_survives_compaction_of_its_segment_and_a_restart() {
    let mut server = Server::start_with(Options {
        cores: 1,
        segment_size: 256 * 1024,
        spool: "compact_below = 50\ncompact_interval = \"200ms\"\n".into(),
        ..Options::default()
    });
    cli_ok(&server, &["suppression", "add", "gone@remote.test"]);
    let first = segment_files(&server)[0].clone();
    // Bury the entry's segment under mail that is then deleted: only the
    // entry keeps it, and compaction copies it forward.
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    bury_under_deleted_mail(&server, &mut c);
    eventually(Duration::from_secs(20), || (!segment_files(&server).contains(&first)).then_some(()));
    // The line is logged after the segment goes, and logs are batched.
    assert!(server.log_containing(&["spool segment compacted"]).contains("spool segment compacted"));
    assert!(rcpt_reply(&server, "gone@remote.test").starts_with("550 5.1.1"));
    server.restart();
    assert!(rcpt_reply(&server, "gone@remote.test").starts_with("550 5.1.1"), "the copy was recovered");
    assert!(suppression_list(&server).contains("gone@remote.test"));
}

#[test]
fn an_entry_survives_backup_and_restore() {
    let source = Server::start();
    cli_ok(&source, &["suppression", "add", "gone@remote.test"]);
    let archive = source.dir.path().join("backup.tar");
    cli_ok(&source, &["backup", archive.to_str().unwrap()]);
    let mut target = Server::start();
    target.kill9();
    std::fs::remove_dir_all(target.data_dir()).unwrap();
    cli_ok(&target, &["restore", archive.to_str().unwrap()]);
    target.spawn();
    assert!(rcpt_reply(&target, "gone@remote.test").starts_with("550 5.1.1 recipient suppressed"));
    assert!(suppression_list(&target).contains("gone@remote.test"));
}

#[test]
fn our_own_dns_verdicts_bounce_but_never_suppress() {
    // A null MX (RFC 7505) bounces at once as bad-domain; it is ringmail's
    // resolver speaking, not the receiver, so nobody is suppressed.
    let dns =
        ringmail::outbound::testdns::TestDns::start(ringmail::outbound::testdns::Zone::new().null_mx("nomail.test"));
    let server =
        Server::start_with(Options { relay: format!("dns_server = \"{}\"", dns.addr()), ..Options::default() });
    submit(&server, &["x@nomail.test"], "null mx");
    server.log_containing(&["no route", "class=bad-domain"]);
    eventually(Duration::from_secs(10), || (mailbox_count(&server, "bob@localhost") == 1).then_some(()));
    let out = server.cli(&["suppression", "list"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(!list.contains("x@nomail.test"), "suppressed by our own DNS verdict: {list}");
    assert!(rcpt_reply(&server, "x@nomail.test").starts_with("250"), "RCPT still taken");
}
