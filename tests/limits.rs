//! Abuse limits hold for the whole server, not per core: connections per
//! client address and login failures per address and per user, under
//! parallel attempts.

mod common;

use base64::Engine;
use common::{socket_from, Options, Server, Smtp, PASSWORD};
use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

fn plain(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

#[test]
fn connections_per_address_are_limited_across_cores() {
    let server = Server::start_with(Options { cores: 2, limits: "max_connections_per_ip = 5\n".into(), ..Options::default() });
    let greetings: Vec<(std::net::TcpStream, String)> = (0..14)
        .map(|_| {
            let s = socket_from("127.0.0.6", server.smtp);
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut line = String::new();
            BufReader::new(s.try_clone().unwrap()).read_line(&mut line).unwrap();
            (s, line)
        })
        .collect();
    let admitted = greetings.iter().filter(|(_, l)| l.starts_with("220 ")).count();
    let refused = greetings.iter().filter(|(_, l)| l.starts_with("421 4.7.0")).count();
    assert_eq!((admitted, refused), (5, 9), "{greetings:?}");
    // Both cores took some of them (else this proves nothing about cores).
    let log = common::eventually(Duration::from_secs(10), || {
        let log = server.log();
        (log.matches("client=127.0.0.6").count() >= 14).then_some(log)
    });
    assert!(log.contains("core=0 client=127.0.0.6") && log.contains("core=1 client=127.0.0.6"), "{log}");
    // Another address is not affected.
    drop(Smtp::from_stream(socket_from("127.0.0.16", server.smtp)));
}

#[test]
fn parallel_wrong_passwords_are_counted_before_they_are_checked() {
    let server = Server::start_with(Options { cores: 2, auth: "max_auth_failures = 10\n".into(), ..Options::default() });
    let mut sessions: Vec<Smtp> = (0..40)
        .map(|_| {
            let mut c = Smtp::from_stream(socket_from("127.0.0.7", server.submission));
            c.expect("EHLO guesser", "250");
            c
        })
        .collect();
    // Every guess is on the wire before any answer comes back.
    for c in &mut sessions {
        c.stream.write_all(format!("AUTH PLAIN {}\r\n", plain("alice@localhost", "guess")).as_bytes()).unwrap();
    }
    let replies: Vec<String> = sessions.iter_mut().map(|c| c.reply()).collect();
    let checked = replies.iter().filter(|r| r.starts_with("535")).count();
    let locked = replies.iter().filter(|r| r.starts_with("454")).count();
    assert_eq!((checked, locked), (10, 30), "{replies:?}");
}

#[test]
fn a_good_login_to_another_account_buys_no_guesses() {
    let server = Server::start_with(Options { cores: 2, auth: "max_auth_failures = 10\n".into(), ..Options::default() });
    let mut guesses = 0;
    for _ in 0..3 {
        let mut c = Smtp::from_stream(socket_from("127.0.0.8", server.submission));
        c.expect("EHLO guesser", "250");
        for _ in 0..9 {
            if c.cmd(&format!("AUTH PLAIN {}", plain("alice@localhost", "guess"))).starts_with("535") {
                guesses += 1;
            }
        }
        // The attacker's own account.
        let mut own = Smtp::from_stream(socket_from("127.0.0.8", server.submission));
        own.expect("EHLO guesser", "250");
        own.cmd(&format!("AUTH PLAIN {}", plain("bob@localhost", PASSWORD)));
    }
    assert_eq!(guesses, 10, "only max_auth_failures guesses were checked");
    let mut c = Smtp::from_stream(socket_from("127.0.0.8", server.submission));
    c.expect("EHLO guesser", "250");
    c.expect(&format!("AUTH PLAIN {}", plain("alice@localhost", PASSWORD)), "454 4.7.0");
    // alice herself, from elsewhere, still logs in.
    let mut c = Smtp::from_stream(socket_from("127.0.0.9", server.submission));
    c.expect("EHLO alice", "250");
    c.expect(&format!("AUTH PLAIN {}", plain("alice@localhost", PASSWORD)), "235");
}

#[test]
fn a_user_guessed_at_from_many_addresses_is_locked() {
    let server = Server::start_with(Options {
        cores: 2,
        auth: "max_auth_failures = 100\nmax_auth_failures_per_user = 4\n".into(),
        ..Options::default()
    });
    let mut replies = Vec::new();
    for n in 0..6 {
        let mut c = Smtp::from_stream(socket_from(&format!("127.0.1.{n}"), server.submission));
        c.expect("EHLO spread", "250");
        replies.push(c.cmd(&format!("AUTH PLAIN {}", plain("carol@example.test", "guess"))));
    }
    let checked = replies.iter().filter(|r| r.starts_with("535")).count();
    assert_eq!(checked, 4, "{replies:?}");
    // Other users are not affected.
    let mut c = Smtp::from_stream(socket_from("127.0.1.9", server.submission));
    c.expect("EHLO bob", "250");
    c.expect(&format!("AUTH PLAIN {}", plain("bob@localhost", PASSWORD)), "235");
}
