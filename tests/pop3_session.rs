//! POP3 over a real socket: locking, deletion at QUIT, stable UIDs,
//! failed logins.

mod common;

use common::*;
use std::time::Duration;

fn deliver(server: &Server, to: &str, n: usize) {
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    for i in 0..n {
        let r = c.send_mail("bob@localhost", &[to], format!("Subject: m{i}\r\n\r\nbody {i}\r\n").as_bytes());
        assert!(r.starts_with("250"), "{r}");
    }
    eventually(Duration::from_secs(5), || (mailbox_count(server, to) >= n).then_some(()));
}

#[test]
fn second_session_on_a_mailbox_gets_in_use() {
    let server = Server::start();
    deliver(&server, "alice@localhost", 1);
    let mut a = server.pop3();
    assert!(a.login("alice@localhost", PASSWORD).starts_with("+OK"));
    let mut b = server.pop3();
    let r = b.login("alice@localhost", PASSWORD);
    assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
    a.cmd("QUIT");
    let mut c = server.pop3();
    assert!(c.login("alice@localhost", PASSWORD).starts_with("+OK"), "lock released at QUIT");
}

#[test]
fn dele_takes_effect_at_quit_and_survives_a_restart() {
    let mut server = Server::start();
    deliver(&server, "alice@localhost", 3);
    let mut p = server.pop3();
    assert!(p.login("alice@localhost", PASSWORD).starts_with("+OK"));
    let uids = p.uidl();
    assert!(p.cmd("DELE 2").starts_with("+OK"));
    assert!(p.cmd("RETR 2").starts_with("-ERR"));
    assert_eq!(p.stat().0, 2);
    drop(p); // no QUIT: nothing deleted (RFC 1939 §6)
    eventually(Duration::from_secs(5), || (mailbox_count(&server, "alice@localhost") == 3).then_some(()));

    let mut p = server.pop3();
    assert!(p.login("alice@localhost", PASSWORD).starts_with("+OK"));
    assert!(p.cmd("DELE 2").starts_with("+OK"));
    assert!(p.cmd("RSET").starts_with("+OK"));
    assert_eq!(p.stat().0, 3, "RSET undeletes");
    assert!(p.cmd("DELE 2").starts_with("+OK"));
    assert!(p.cmd("QUIT").starts_with("+OK"));

    server.restart();
    let mut p = server.pop3();
    assert!(p.login("alice@localhost", PASSWORD).starts_with("+OK"));
    let after = p.uidl();
    let want: Vec<String> = vec![uids[0].1.clone(), uids[2].1.clone()];
    assert_eq!(after.iter().map(|(_, u)| u.clone()).collect::<Vec<_>>(), want, "UIDs stable, deleted one gone");
    let body = p.retr(2);
    assert!(String::from_utf8_lossy(&body).contains("body 2"));
}

#[test]
fn top_returns_headers_and_n_lines() {
    let server = Server::start();
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    c.send_mail("bob@localhost", &["alice@localhost"], b"Subject: t\r\n\r\nl1\r\n..l2\r\nl3\r\n");
    eventually(Duration::from_secs(5), || (mailbox_count(&server, "alice@localhost") == 1).then_some(()));
    let mut p = server.pop3();
    assert!(p.login("alice@localhost", PASSWORD).starts_with("+OK"));
    assert!(p.cmd("TOP 1 1").starts_with("+OK"));
    let top = strip_received(&p.multiline());
    assert_eq!(top, b"Subject: t\r\n\r\nl1\r\n");
}

#[test]
fn ten_wrong_passwords_each_get_the_same_err() {
    let server = Server::start();
    let mut p = server.pop3();
    let mut replies = Vec::new();
    for i in 0..10 {
        // A failed PASS forgets the USER, so each attempt sends both.
        let user = if i % 2 == 0 { "alice@localhost" } else { "nosuchuser@localhost" };
        replies.push(p.login(user, "wrong password"));
    }
    // The same answer whether the user exists or not; the tenth failure
    // also says the connection is being closed.
    assert!(replies[..9].iter().all(|r| r == &replies[0]), "{replies:?}");
    assert!(replies.iter().all(|r| r.starts_with("-ERR [AUTH]")), "{replies:?}");
    let log = server.log_containing(&["authentication failed"]);
    assert!(
        log.contains("authentication failed") && log.contains("client=127.0.0.1"),
        "failures are logged for fail2ban"
    );
    assert!(!log.contains("wrong password"), "passwords never reach the log");
    // Ten failures lock 127.0.0.1 out (limits.max_auth_failures); the real
    // user, from another address, still gets in.
    let mut other = Pop3::from_stream(socket_from("127.0.0.2", server.pop3));
    assert!(other.login("alice@localhost", PASSWORD).starts_with("+OK"));
}

#[test]
fn a_client_logging_in_again_right_after_quit_never_finds_its_mailbox_in_use() {
    // Pollers reconnect at once; with the login cache the second login is
    // fast enough to beat an unlock sent after the goodbye (issue 14's
    // logins benchmark saw a few [IN-USE] per thousand before the fix).
    let server = Server::start();
    deliver(&server, "carol@example.test", 1);
    for i in 0..200 {
        let mut p = server.pop3();
        let r = p.login("carol@example.test", PASSWORD);
        assert!(r.starts_with("+OK"), "login {i}: {r}");
        assert!(p.cmd("QUIT").starts_with("+OK"));
    }
}

/// Sessions spread over the cores whatever socket the kernel picked (issue
/// 14 item 3): four POP3 sessions on two cores run two per core, in three
/// rounds. The kernel's hash alone gives 2 + 2 about three times in eight,
/// so without the balancer all three rounds pass about one time in twenty.
/// A handed-over session works like any other: it logs in and lists.
#[test]
fn four_pop3_sessions_run_two_per_core() {
    let server = Server::start();
    deliver(&server, "alice@localhost", 1);
    for round in 0..3 {
        // Each greeting is written by the session's driver, after the
        // session was counted on the core it runs on.
        let mut sessions: Vec<Pop3> = (0..4).map(|_| server.pop3()).collect();
        let (_, body) = server.http("GET /metrics HTTP/1.1");
        let on = |core: &str| sum_metric(&body, "ringmail_sessions_open", &[("core", core), ("proto", "pop3")]);
        assert_eq!((on("0"), on("1")), (2.0, 2.0), "round {round}: POP3 sessions per core");
        let r = sessions[3].login("alice@localhost", PASSWORD);
        assert!(r.starts_with("+OK"), "round {round}: {r}");
        assert_eq!(sessions[3].stat().0, 1);
        sessions[3].cmd("QUIT");
        drop(sessions);
        eventually(Duration::from_secs(10), || {
            (server.metric("ringmail_sessions_open", &[("proto", "pop3")]) == 0.0).then_some(())
        });
    }
    let (_, body) = server.http("GET /metrics HTTP/1.1");
    assert!(body.contains("ringmail_sessions_handed_over_total{core=\"0\",proto=\"pop3\"}"), "{body}");
}
