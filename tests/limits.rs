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
    let server =
        Server::start_with(Options { cores: 2, limits: "max_connections_per_ip = 5\n".into(), ..Options::default() });
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
    let server =
        Server::start_with(Options { cores: 2, auth: "max_auth_failures = 10\n".into(), ..Options::default() });
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
    // One core, so that every attempt meets the same table even on code
    // that kept one per core.
    let server =
        Server::start_with(Options { cores: 1, auth: "max_auth_failures = 10\n".into(), ..Options::default() });
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

/// Send `bytes` one at a time, `every` apart, on a thread, until done or
/// the peer closes.
fn trickle(stream: &std::net::TcpStream, bytes: &'static [u8], every: Duration) -> std::thread::JoinHandle<()> {
    let mut s = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        for b in bytes {
            std::thread::sleep(every);
            if s.write_all(&[*b]).is_err() {
                return;
            }
        }
    })
}

fn slow_server(limits: &str) -> Server {
    Server::start_with(Options {
        cores: 1,
        limits: format!("smtp_idle_timeout = \"30s\"\npop3_idle_timeout = \"30s\"\n{limits}"),
        ..Options::default()
    })
}

#[test]
fn a_command_trickled_a_byte_at_a_time_meets_the_command_deadline() {
    let server = slow_server("command_deadline = \"2s\"\n");
    let mut c = server.smtp();
    // 40 bytes, one every 300 ms: each byte is well inside the idle
    // timeout, the line is not within the deadline.
    let t = trickle(&c.stream, b"EHLO aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", Duration::from_millis(300));
    let r = c.reply();
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(c.is_closed());
    server.log_containing(&["command deadline passed"]);
    t.join().unwrap();

    let mut p = server.pop3();
    let t = trickle(&p.stream, b"USER aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", Duration::from_millis(300));
    let r = p.line();
    assert!(r.starts_with("-ERR"), "{r}");
    t.join().unwrap();
}

#[test]
fn data_trickled_below_the_minimum_rate_is_cut_off() {
    let server = slow_server("min_data_rate = 1024\n");
    let mut c = server.smtp();
    c.expect("EHLO slow", "250");
    c.expect("MAIL FROM:<a@example.org>", "250");
    c.expect("RCPT TO:<alice@localhost>", "250");
    c.expect("DATA", "354");
    // A byte every 500 ms for 30 s: never idle, far below 1 KiB/s.
    let body: &'static [u8] = &[b'x'; 60];
    let t = trickle(&c.stream, body, Duration::from_millis(500));
    let r = c.reply();
    assert!(r.starts_with("421 4.4.2"), "{r}");
    server.log_containing(&["data rate below limits.min_data_rate"]);
    t.join().unwrap();
    assert_eq!(common::mailbox_count(&server, "alice@localhost"), 0, "nothing of it was stored");
}

#[test]
fn a_busy_session_ends_at_the_session_time_limit() {
    let server = slow_server("max_session_time = \"2s\"\n");
    let mut c = server.smtp();
    c.expect("EHLO busy", "250");
    let end = std::time::Instant::now() + Duration::from_secs(20);
    let closed = loop {
        assert!(std::time::Instant::now() < end, "still open after 20 s");
        c.send(b"NOOP\r\n");
        let r = c.reply();
        if !r.starts_with("250") {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(closed.starts_with("421 4.4.2"), "{closed}");
    server.log_containing(&["session time limit"]);
}

#[test]
fn slow_metrics_clients_are_closed_and_counted_against_the_connection_limits() {
    let server = slow_server("max_connections_per_ip = 3\n");
    let slow: Vec<std::net::TcpStream> = (0..3)
        .map(|_| {
            let s = socket_from("127.0.0.10", server.metrics);
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s
        })
        .collect();
    // A fourth from the same address is closed at once, without an answer.
    let mut fourth = socket_from("127.0.0.10", server.metrics);
    fourth.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let _ = std::io::Read::read_to_end(&mut fourth, &mut buf);
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));
    // The three trickle a request a byte a second; each is answered (408)
    // and closed at the 10 s request deadline, long before it is complete
    // (35 s; complete, it would be answered 200).
    let threads: Vec<_> =
        slow.iter().map(|s| trickle(s, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(1))).collect();
    for mut s in slow {
        let mut answer = String::new();
        let _ = std::io::Read::read_to_string(&mut s, &mut answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    }
    for t in threads {
        t.join().unwrap();
    }
    // Capacity came back.
    let (status, _) = server.http("GET /metrics HTTP/1.1");
    assert!(status.contains("200"), "{status}");
}
