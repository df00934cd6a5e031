//! Relay end to end on loopback: routes and MX lookups (against a test DNS
//! server), exact bytes at the destination, retries, DSN bounces, expiry,
//! connection limits, and kill -9 in the middle of relaying.

mod common;
#[path = "common/postfix.rs"]
mod postfix;
#[path = "common/sink.rs"]
mod sink;

use common::*;
use ringmail::outbound::testdns::{TestDns, Zone};
use sink::{Script, Sink};
use std::time::Duration;

fn relay_to(sink: &Sink, extra: &str) -> Options {
    Options {
        relay: format!("routes = {{ \"remote.test\" = \"{}\" }}\nretry = [\"1s\"]\n{extra}", sink.addr),
        ..Options::default()
    }
}

fn submit(server: &Server, from: &str, to: &[&str], body: &[u8]) -> String {
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    let r = c.send_mail(from, to, body);
    assert!(r.starts_with("250"), "{r}");
    r
}

#[test]
fn relays_over_a_route_with_exact_bytes_in_one_transaction() {
    let sink = Sink::start("127.0.0.1", 0, Script::default());
    let server = Server::start_with(relay_to(&sink, ""));
    let body = b"From: bob@localhost\r\nSubject: relay\r\nMessage-ID: <r1@client.test>\r\n\r\nline\r\n.dot\r\n\xe2\x82\xac 8-bit\r\n";
    submit(&server, "bob@localhost", &["x@remote.test", "y@Remote.Test"], body);
    eventually(Duration::from_secs(10), || (sink.count() == 1).then_some(()));
    let got = &sink.received()[0];
    assert!(!got.bdat, "no CHUNKING offered: DATA");
    assert_eq!(got.from, "bob@localhost");
    assert_eq!(got.to, vec!["x@remote.test".to_string(), "y@remote.test".to_string()]);
    assert_eq!(strip_received(&got.data), body.to_vec());
    eventually(Duration::from_secs(5), || server.log().contains("status=\"sent\"").then_some(()));
}

#[test]
fn a_bare_cr_is_relayed_as_a_line_end_never_as_is() {
    // `CR . CR` must not reach a next hop that ends lines on a bare CR:
    // intake stores each bare CR as CRLF, and the dot line goes out stuffed.
    let sink = Sink::start("127.0.0.1", 0, Script::default());
    let server = Server::start_with(relay_to(&sink, ""));
    let body = b"Subject: smuggle\r\n\r\nx\r.\rMAIL FROM:<evil@example.org>\r\n";
    submit(&server, "bob@localhost", &["x@remote.test"], body);
    eventually(Duration::from_secs(10), || (sink.count() == 1).then_some(()));
    let got = strip_received(&sink.received()[0].data);
    assert_eq!(got, b"Subject: smuggle\r\n\r\nx\r\n.\r\nMAIL FROM:<evil@example.org>\r\n".to_vec());
    assert!(!got.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n'));
}

#[test]
fn bdat_carries_the_exact_bytes_when_the_mx_offers_chunking() {
    let sink = Sink::start(
        "127.0.0.1",
        0,
        Script {
            chunking: true,
            rcpt: Box::new(|a| match a.starts_with("nobody") {
                true => "550 5.1.1 <nobody@remote.test>: user unknown".into(),
                false => "250 Ok".into(),
            }),
            ..Script::default()
        },
    );
    let server = Server::start_with(relay_to(&sink, ""));
    // Lines DATA would have to dot-stuff go as they are in a chunk.
    let body = b"Subject: chunked\r\nMessage-ID: <c1@client.test>\r\n\r\n.\r\n..two\r\n\xe2\x82\xac 8-bit\r\n";
    submit(&server, "bob@localhost", &["x@remote.test", "nobody@remote.test"], body);
    submit(&server, "bob@localhost", &["y@remote.test"], b"Subject: second\r\n\r\nshort\r\n");
    eventually(Duration::from_secs(10), || (sink.count() == 2).then_some(()));
    let got = sink.received();
    assert!(got.iter().all(|m| m.bdat), "both went as BDAT");
    let first = got.iter().find(|m| m.to == ["x@remote.test"]).expect("first message");
    assert_eq!(strip_received(&first.data), body.to_vec());
    // The refused recipient bounces to the sender.
    eventually(Duration::from_secs(10), || (mailbox_count(&server, "bob@localhost") == 1).then_some(()));
    let dsn = String::from_utf8_lossy(&fetch_all(&server, "bob@localhost")[0]).into_owned();
    assert!(dsn.contains("nobody@remote.test") && dsn.contains("550 5.1.1"), "{dsn}");
}

#[test]
fn mx_preference_order_with_fallback_to_the_next_host() {
    // mx1 (preference 10) has nothing listening; mx2 (20) is the sink.
    let sink = Sink::start("127.0.0.3", 0, Script::default());
    let dns = TestDns::start(
        Zone::new()
            .mx("remote.test", 20, "mx2.remote.test")
            .mx("remote.test", 10, "mx1.remote.test")
            .a("mx1.remote.test", "127.0.0.2")
            .a("mx2.remote.test", "127.0.0.3"),
    );
    let server = Server::start_with(Options {
        relay: format!("dns_server = \"{}\"\nmx_port = {}\nretry = [\"1s\"]\n", dns.addr(), sink.addr.port()),
        ..Options::default()
    });
    submit(&server, "bob@localhost", &["x@remote.test"], b"Subject: mx\r\n\r\nvia mx2\r\n");
    eventually(Duration::from_secs(10), || (sink.count() == 1).then_some(()));
    let log = server.log_containing(&["127.0.0.2", "status=\"sent\""]);
    let tried_mx1 = log.find("127.0.0.2").expect("mx1 was tried first");
    let sent = log.find("status=\"sent\"").expect("delivered");
    assert!(tried_mx1 < sent, "mx1 tried before delivery via mx2");
}

#[test]
fn temporary_failure_is_retried_then_delivered() {
    let sink = Sink::start(
        "127.0.0.1",
        0,
        Script {
            data_end: Box::new(|n| if n == 0 { "451 4.3.0 try again later".into() } else { "250 2.0.0 Ok".into() }),
            ..Script::default()
        },
    );
    let server = Server::start_with(relay_to(&sink, ""));
    submit(&server, "bob@localhost", &["x@remote.test"], b"Subject: retry\r\n\r\nx\r\n");
    eventually(Duration::from_secs(15), || (sink.count() == 1).then_some(()));
    let log = server.log_containing(&["status=\"deferred\"", "451 4.3.0 try again later"]);
    assert!(log.contains("status=\"deferred\""), "first attempt deferred");
    assert!(log.contains("451 4.3.0 try again later"));
}

#[test]
fn permanent_failure_bounces_a_dsn_to_the_local_sender() {
    let sink = Sink::start(
        "127.0.0.1",
        0,
        Script {
            rcpt: Box::new(|a| {
                if a.starts_with("nobody") {
                    "550 5.1.1 <nobody@remote.test>: user unknown".into()
                } else {
                    "250 Ok".into()
                }
            }),
            ..Script::default()
        },
    );
    let server = Server::start_with(relay_to(&sink, ""));
    submit(&server, "bob@localhost", &["nobody@remote.test", "ok@remote.test"], b"Subject: bounce me\r\n\r\nx\r\n");
    eventually(Duration::from_secs(10), || (mailbox_count(&server, "bob@localhost") == 1).then_some(()));
    assert_eq!(sink.count(), 1, "the good recipient was delivered");
    let dsn = fetch_all(&server, "bob@localhost").remove(0);
    let text = String::from_utf8_lossy(&dsn);
    assert!(text.contains("550 5.1.1"), "names the remote reply: {text}");
    let work = tempfile::tempdir_in(test_tmp()).unwrap();
    let path = work.path().join("dsn.eml");
    std::fs::write(&path, &dsn).unwrap();
    let out = std::process::Command::new("python3")
        .arg(format!("{}/tests/fixtures/dsn_check.py", env!("CARGO_MANIFEST_DIR")))
        .arg(&path)
        .args(["nobody@remote.test", "5.1.1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn mail_that_keeps_failing_expires_into_a_bounce() {
    let sink = Sink::start(
        "127.0.0.1",
        0,
        Script { data_end: Box::new(|_| "451 4.7.1 greylisted".into()), ..Script::default() },
    );
    let server = Server::start_with(relay_to(&sink, "max_queue_lifetime = \"3s\""));
    submit(&server, "bob@localhost", &["x@remote.test"], b"Subject: expire\r\n\r\nx\r\n");
    eventually(Duration::from_secs(20), || (mailbox_count(&server, "bob@localhost") == 1).then_some(()));
    let dsn = String::from_utf8_lossy(&fetch_all(&server, "bob@localhost")[0]).into_owned();
    assert!(dsn.contains("x@remote.test") && dsn.contains("expired"), "{dsn}");
    assert!(dsn.contains("greylisted"), "names the last error: {dsn}");
}

#[test]
fn a_bounce_is_never_bounced() {
    let sink = Sink::start("127.0.0.1", 0, Script { rcpt: Box::new(|_| "550 5.1.1 no".into()), ..Script::default() });
    let server = Server::start_with(relay_to(&sink, ""));
    submit(&server, "", &["x@remote.test"], b"Subject: a bounce\r\n\r\nx\r\n");
    eventually(Duration::from_secs(10), || server.log().contains("bounce of a bounce dropped").then_some(()));
    assert_eq!(sink.count(), 0);
    for u in USERS {
        assert_eq!(mailbox_count(&server, u), 0, "{u} got something");
    }
}

#[test]
fn a_trickle_of_mail_reuses_the_idle_connection() {
    let sink = Sink::start("127.0.0.1", 0, Script::default());
    let server = Server::start_with(relay_to(&sink, "connection_idle = \"3s\""));
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    for i in 0..8 {
        let r = c.send_mail("bob@localhost", &["x@remote.test"], format!("Subject: t{i}\r\n\r\nx\r\n").as_bytes());
        assert!(r.starts_with("250"), "{r}");
        // Each is relayed before the next arrives: the queue is empty in
        // between, and the connection waits instead of QUIT.
        eventually(Duration::from_secs(10), || (sink.count() == i + 1).then_some(()));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sink.connections.load(std::sync::atomic::Ordering::SeqCst), 1, "one connection carried all");
}

#[test]
fn connections_per_domain_stay_under_the_limit() {
    let sink = Sink::start("127.0.0.1", 0, Script { delay: Duration::from_millis(30), ..Script::default() });
    let server = Server::start_with(relay_to(&sink, "max_connections_per_domain = 2\nmax_messages_per_connection = 5"));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let addr = server.smtp;
            std::thread::spawn(move || {
                let mut c = Smtp::connect(addr);
                c.expect("EHLO client.test", "250");
                for i in 0..10 {
                    let r = c.send_mail(
                        "bob@localhost",
                        &["x@remote.test"],
                        format!("Subject: {t}-{i}\r\n\r\nx\r\n").as_bytes(),
                    );
                    assert!(r.starts_with("250"), "{r}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    eventually(Duration::from_secs(30), || (sink.count() == 40).then_some(()));
    let max = sink.max_concurrent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(max <= 2, "{max} connections at once");
    assert!(
        sink.connections.load(std::sync::atomic::Ordering::SeqCst) >= 8,
        "connections were recycled after 5 messages"
    );
}

#[test]
fn deferred_mail_keeps_its_next_attempt_across_a_restart() {
    let sink =
        Sink::start("127.0.0.1", 0, Script { data_end: Box::new(|_| "451 4.3.0 later".into()), ..Script::default() });
    let mut opts = relay_to(&sink, "");
    opts.relay = opts.relay.replace("retry = [\"1s\"]", "retry = [\"1h\"]");
    let mut server = Server::start_with(opts);
    submit(&server, "bob@localhost", &["x@remote.test"], b"Subject: later\r\n\r\nx\r\n");
    eventually(Duration::from_secs(10), || server.log().contains("will retry").then_some(()));
    let attempts = sink.connections.load(std::sync::atomic::Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300)); // let the state record reach the disk
    server.restart();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        sink.connections.load(std::sync::atomic::Ordering::SeqCst),
        attempts,
        "the restart must not retry before the scheduled hour"
    );
    let list = queue_list(&server);
    assert!(list.contains("x@remote.test") && list.contains("451 4.3.0 later"), "{list}");
}

#[test]
fn queue_flush_starts_the_deferred_attempts_before_it_returns() {
    // The MX is down: the message is deferred for an hour. Then it
    // listens without ever greeting, so an attempt, once started, stays
    // in flight. When `queue flush` returns the attempt is under way (the
    // message is active, not deferred and due), instead of waiting for
    // the relay timer's next tick, up to a second later.
    let port = free_port();
    let server = Server::start_with(Options {
        relay: format!("routes = {{ \"remote.test\" = \"127.0.0.1:{port}\" }}\nretry = [\"1h\"]\n"),
        ..Options::default()
    });
    submit(&server, "bob@localhost", &["x@remote.test"], b"Subject: flush\r\n\r\nx\r\n");
    eventually(Duration::from_secs(10), || server.log().contains("status=\"deferred\"").then_some(()));
    let _mx = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let state = |server: &Server| {
        let out = server.cli(&["queue", "list", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        list["messages"][0]["state"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(state(&server), "deferred");
    let out = server.cli(&["queue", "flush"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(state(&server), "active", "flushed mail waits for the relay timer");
}

#[test]
fn kill_9_mid_relay_loses_nothing_acknowledged() {
    let sink = Sink::start("127.0.0.1", 0, Script { delay: Duration::from_millis(20), ..Script::default() });
    let mut server = Server::start_with(relay_to(&sink, "max_connections_per_domain = 2"));
    let mut ids = Vec::new();
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    for i in 0..40 {
        let id = format!("<k{i}@client.test>");
        let r = c.send_mail(
            "bob@localhost",
            &["x@remote.test"],
            format!("Message-ID: {id}\r\n\r\nbody {i}\r\n").as_bytes(),
        );
        assert!(r.starts_with("250"), "{r}");
        ids.push(id);
    }
    server.kill9(); // relaying is in progress (20 ms per message)
    let before = sink.count();
    server.spawn();
    eventually(Duration::from_secs(30), || {
        let got: Vec<String> = sink.received().iter().map(|m| String::from_utf8_lossy(&m.data).into_owned()).collect();
        ids.iter().all(|id| got.iter().any(|m| m.contains(id.as_str()))).then_some(())
    });
    assert!(before < 40, "the kill came before relaying finished ({before} delivered)");
    // At most the transactions in flight at the kill (two connections)
    // are sent twice, plus deliveries whose tombstone had not been synced.
    assert!(sink.count() <= 40 + 4, "{} deliveries for 40 messages", sink.count());
}

fn queue_list(server: &Server) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringmail"))
        .args(["queue", "list", "--config"])
        .arg(&server.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn postfix_smtp_sink_receives_relayed_mail() {
    // A real peer: Postfix's smtp-sink (Debian package postfix; tests/run.sh
    // installs it).
    let port = free_port();
    let dump = tempfile::tempdir_in(test_tmp()).unwrap();
    let mut sink = postfix::smtp_sink(port, dump.path());
    let server = Server::start_with(Options {
        relay: format!("routes = {{ \"remote.test\" = \"127.0.0.1:{port}\" }}\nretry = [\"1s\"]\n"),
        ..Options::default()
    });
    submit(&server, "bob@localhost", &["x@remote.test"], b"Subject: to postfix\r\n\r\nmarker-5f3a\r\n");
    let found = eventually(Duration::from_secs(15), || {
        std::fs::read_dir(dump.path()).ok()?.flatten().find_map(|e| {
            let text = std::fs::read_to_string(e.path()).ok()?;
            text.contains("marker-5f3a").then_some(text)
        })
    });
    let _ = sink.kill();
    let _ = sink.wait();
    assert!(found.contains("Subject: to postfix"), "{found}");
    assert!(server.log_containing(&["status=\"sent\""]).contains("status=\"sent\""));
}

#[test]
fn starttls_is_used_when_offered_and_required_when_configured() {
    let work = tempfile::tempdir_in(test_tmp()).unwrap();
    let tls_sink = common::tls_sink::TlsSink::start(work.path(), &[]);
    let (port, out) = (tls_sink.port, tls_sink.out.clone());
    // Required TLS: the STARTTLS host gets the mail encrypted; a plain host
    // (no STARTTLS) gets nothing and the mail waits.
    let plain = Sink::start("127.0.0.1", 0, Script::default());
    let server = Server::start_with(Options {
        relay: format!(
            "tls = \"required\"\nretry = [\"1h\"]\nroutes = {{ \"remote.test\" = \"127.0.0.1:{port}\", \"plain.test\" = \"{}\" }}\n",
            plain.addr
        ),
        ..Options::default()
    });
    submit(&server, "bob@localhost", &["x@remote.test"], b"Subject: secret\r\n\r\nencrypted-7c1d\r\n");
    submit(&server, "bob@localhost", &["y@plain.test"], b"Subject: nope\r\n\r\nx\r\n");
    let text =
        eventually(Duration::from_secs(15), || std::fs::read_to_string(&out).ok().filter(|t| t.contains("--END--")));
    eventually(Duration::from_secs(10), || server.log().contains("TLS required but not offered").then_some(()));
    drop(tls_sink);
    assert!(text.starts_with("TLS TLSv1."), "{text}");
    assert!(text.lines().next().is_some_and(|l| l.contains(" BDAT MAIL FROM:")), "CHUNKING offered after TLS: {text}");
    assert!(text.contains("encrypted-7c1d"));
    assert_eq!(plain.count(), 0, "nothing in plain text under relay.tls = required");
}
