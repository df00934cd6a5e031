//! Mailbox management: `ringmail mailbox list|delete`, retention by age,
//! delete after retrieve, quota (452 4.2.2).

mod common;

use common::*;
use std::time::Duration;

fn out(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn list_sorts_and_delete_removes_exactly_one() {
    let server = Server::start();
    let mut c = server.smtp();
    c.expect("EHLO admin.test", "250");
    c.send_mail("zed@localhost", &["alice@localhost"], b"Subject: first\r\n\r\nshort\r\n");
    c.send_mail(
        "adam@localhost",
        &["alice@localhost"],
        format!("Subject: second\r\n\r\n{}\r\n", "x".repeat(500)).as_bytes(),
    );
    c.send_mail("mia@localhost", &["alice@localhost"], b"Subject: third\r\n\r\nmid sized body\r\n");
    eventually(Duration::from_secs(5), || (mailbox_count(&server, "alice@localhost") == 3).then_some(()));

    let by_date = server.cli(&["mailbox", "list", "alice@localhost"]);
    let text = out(&by_date);
    assert!(by_date.status.success(), "{text}");
    let subjects = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with("--"))
            .map(|l| l.rsplit("  ").next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(subjects(&text), ["first", "second", "third"], "{text}");
    assert!(text.contains("zed@localhost") && text.contains("-- alice@localhost: 3 message(s)"), "{text}");
    assert_eq!(
        subjects(&out(&server.cli(&["mailbox", "list", "alice@localhost", "--sort", "sender"]))),
        ["second", "third", "first"]
    );
    assert_eq!(
        subjects(&out(&server.cli(&["mailbox", "list", "alice@localhost", "--sort", "size"]))),
        ["second", "third", "first"]
    );

    // The uid is the POP3 UIDL.
    let second_uid = text.lines().nth(1).unwrap().split("  ").next().unwrap().to_string();
    let deleted = server.cli(&["mailbox", "delete", "alice@localhost", &second_uid]);
    assert!(deleted.status.success(), "{}", out(&deleted));
    let mut p = server.pop3();
    assert!(p.login("alice@localhost", PASSWORD).starts_with("+OK"));
    let uids: Vec<String> = p.uidl().into_iter().map(|(_, u)| u).collect();
    assert_eq!(uids.len(), 2);
    assert!(!uids.contains(&second_uid));
    // While POP3 holds the mailbox, the operator's delete waits its turn.
    let first_uid = uids[0].clone();
    let busy = server.cli(&["mailbox", "delete", "alice@localhost", &first_uid]);
    assert!(!busy.status.success() && out(&busy).contains("locked"), "{}", out(&busy));
    p.cmd("QUIT");

    let again = server.cli(&["mailbox", "delete", "alice@localhost", &second_uid]);
    assert!(!again.status.success() && out(&again).contains("no message"), "{}", out(&again));
    let nobody = server.cli(&["mailbox", "list", "nobody@localhost"]);
    assert!(!nobody.status.success() && out(&nobody).contains("not a user"));
}

#[test]
fn retention_removes_exactly_the_expired_messages() {
    let server = Server::start_with(Options {
        extra: "[retention]\nmax_age = \"3s\"\ncheck_interval = \"200ms\"\n\
                [retention.users.\"bob@localhost\"]\nmax_age = \"1000d\"\n"
            .into(),
        ..Options::default()
    });
    let mut c = server.smtp();
    c.expect("EHLO ret.test", "250");
    c.send_mail("x@localhost", &["alice@localhost", "bob@localhost"], b"Subject: old\r\n\r\nold\r\n");
    std::thread::sleep(Duration::from_millis(1500));
    c.send_mail("x@localhost", &["alice@localhost"], b"Subject: new\r\n\r\nnew\r\n");
    assert_eq!(mailbox_count(&server, "alice@localhost"), 2);
    // The old one goes at ~3 s; the new one (1.5 s younger) is still there.
    eventually(Duration::from_secs(10), || (mailbox_count(&server, "alice@localhost") == 1).then_some(()));
    let left = fetch_all(&server, "alice@localhost");
    assert!(String::from_utf8_lossy(&left[0]).contains("Subject: new"), "the expired one went, not the new one");
    // bob's own policy keeps his copy of the old message.
    assert_eq!(mailbox_count(&server, "bob@localhost"), 1);
    assert!(server.log_containing(&["mailbox messages expired"]).contains("mailbox messages expired"));
}

#[test]
fn quota_gives_452_and_delete_after_retrieve_frees_it() {
    let server = Server::start_with(Options {
        extra: "[retention.users.\"carol@example.test\"]\nmax_mailbox_size = 1000\ndelete_after_retrieve = true\n"
            .into(),
        ..Options::default()
    });
    let body = format!("Subject: big\r\n\r\n{}\r\n", "y".repeat(600));
    let mut c = server.smtp();
    c.expect("EHLO q.test", "250");
    assert!(c.send_mail("x@localhost", &["carol@example.test"], body.as_bytes()).starts_with("250"));
    assert!(c.send_mail("x@localhost", &["carol@example.test"], body.as_bytes()).starts_with("250"));
    // Over 1000 bytes now: refused for now, others still accepted.
    eventually(Duration::from_secs(5), || {
        let mut c = server.smtp();
        c.expect("EHLO q.test", "250");
        c.expect("MAIL FROM:<x@localhost>", "250");
        let r = c.cmd("RCPT TO:<carol@example.test>");
        r.starts_with("452 4.2.2").then_some(())
    });
    c.expect("MAIL FROM:<x@localhost>", "250");
    c.expect("RCPT TO:<carol@example.test>", "452");
    c.expect("RCPT TO:<alice@localhost>", "250");
    c.expect("RSET", "250");

    // RETR without DELE deletes at QUIT for this user.
    let mut p = server.pop3();
    assert!(p.login("carol@example.test", PASSWORD).starts_with("+OK"));
    assert_eq!(p.stat().0, 2);
    p.retr(1);
    assert!(p.cmd("QUIT").starts_with("+OK"));
    assert_eq!(mailbox_count(&server, "carol@example.test"), 1);
    // Under the quota again.
    eventually(Duration::from_secs(5), || {
        let mut c = server.smtp();
        c.expect("EHLO q.test", "250");
        c.expect("MAIL FROM:<x@localhost>", "250");
        c.cmd("RCPT TO:<carol@example.test>").starts_with("250").then_some(())
    });
}
