//! Operations: metrics, status, graceful shutdown, reloads.

mod common;
#[path = "common/sink.rs"]
mod sink;

use common::*;
use sink::{Script, Sink};
use std::time::Duration;

#[test]
fn metrics_add_up_with_what_was_sent_and_other_paths_get_404() {
    let server = Server::start();
    const THREADS: usize = 3;
    const EACH: usize = 20;
    let scrapes_during_load = std::thread::scope(|s| {
        for t in 0..THREADS {
            let server = &server;
            s.spawn(move || {
                let mut c = server.smtp();
                c.expect("EHLO load.test", "250");
                for i in 0..EACH {
                    let r = c.send_mail(
                        "bob@localhost",
                        &["alice@localhost"],
                        format!("Subject: {t}/{i}\r\n\r\nx\r\n").as_bytes(),
                    );
                    assert!(r.starts_with("250"), "{r}");
                }
                c.expect("QUIT", "221");
            });
        }
        // Scrapes while the load runs are answered (the endpoint shares the
        // cores with mail).
        let mut n = 0;
        for _ in 0..5 {
            let (status, body) = server.http("GET /metrics HTTP/1.1");
            assert!(status.contains("200 OK"), "{status}");
            assert!(body.contains("# TYPE ringmail_smtp_messages_received_total counter"));
            n += 1;
        }
        n
    });
    assert_eq!(scrapes_during_load, 5);
    let sent = (THREADS * EACH) as f64;
    eventually(Duration::from_secs(10), || {
        (server.metric("ringmail_delivered_local_total", &[]) == sent).then_some(())
    });
    let (_, body) = server.http("GET /metrics HTTP/1.1");
    assert_eq!(sum_metric(&body, "ringmail_smtp_messages_received_total", &[]), sent, "{body}");
    assert_eq!(sum_metric(&body, "ringmail_smtp_data_ack_seconds_count", &[]), sent);
    assert_eq!(sum_metric(&body, "ringmail_mailbox_messages", &[]), sent);
    // Per message: 250 MAIL, RCPT, after DATA; plus EHLO and QUIT per session.
    let replies_2xx = sum_metric(&body, "ringmail_smtp_replies_total", &[("class", "2xx")]);
    assert!(replies_2xx >= 3.0 * sent + 2.0 * THREADS as f64, "{replies_2xx}");
    assert_eq!(sum_metric(&body, "ringmail_smtp_replies_total", &[("class", "5xx")]), 0.0);
    // Both cores report; the records synced include every message.
    assert!(body.contains("ringmail_smtp_messages_received_total{core=\"0\"}"));
    assert!(body.contains("ringmail_smtp_messages_received_total{core=\"1\"}"));
    assert!(sum_metric(&body, "ringmail_spool_records_total", &[]) >= sent);
    assert!(sum_metric(&body, "ringmail_spool_syncs_total", &[]) >= 1.0);
    assert!(sum_metric(&body, "ringmail_spool_free_bytes", &[]) > 0.0);
    // Every 250 came within a minute (the last finite bucket), and took some time.
    assert_eq!(sum_metric(&body, "ringmail_smtp_data_ack_seconds_bucket", &[("le", "60")]), sent, "{body}");
    assert!(sum_metric(&body, "ringmail_smtp_data_ack_seconds_sum", &[]) > 0.0, "{body}");
    // Sessions are closed again (the SMTP ones; the scrape is not a session).
    eventually(Duration::from_secs(5), || {
        (server.metric("ringmail_sessions_open", &[("proto", "smtp")]) == 0.0).then_some(())
    });

    for bad in ["GET / HTTP/1.1", "POST /metrics HTTP/1.1", "GET /metricsX HTTP/1.0"] {
        assert!(server.http(bad).0.contains("404"), "{bad}");
    }
    assert!(server.http("HELO there").0.contains("400"));

    let status = server.cli(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(text.contains("cores: 2"), "{text}");
    assert!(text.contains("mailboxes: 60 messages"), "{text}");
    assert!(text.contains("60 received, 60 delivered locally"), "{text}");
}

#[test]
fn auth_and_tls_are_counted() {
    let server = Server::start();
    let mut p = server.pop3();
    assert!(p.login("alice@localhost", "wrong").starts_with("-ERR"));
    drop(p);
    let mut p = server.pop3();
    assert!(p.login("alice@localhost", PASSWORD).starts_with("+OK"));
    assert_eq!(server.metric("ringmail_auth_total", &[("result", "success")]), 1.0);
    assert_eq!(server.metric("ringmail_auth_total", &[("result", "failure")]), 1.0);
    eventually(Duration::from_secs(5), || {
        (server.metric("ringmail_sessions_open", &[("proto", "pop3")]) == 1.0).then_some(())
    });
    // A plain-text client on the implicit-TLS port fails its handshake.
    let mut s = std::net::TcpStream::connect(server.smtps).unwrap();
    std::io::Write::write_all(&mut s, b"EHLO plain\r\n\r\n\r\n").unwrap();
    eventually(Duration::from_secs(10), || {
        (server.metric("ringmail_tls_handshakes_total", &[("result", "failed")]) == 1.0).then_some(())
    });
}

#[test]
fn sigterm_drains_sessions_keeps_the_message_in_data_and_exits_zero() {
    let mut server = Server::start();
    let mut idle = server.smtp();
    idle.expect("EHLO idle.test", "250");
    let mut pop = server.pop3();
    assert!(pop.login("bob@localhost", PASSWORD).starts_with("+OK"));
    let mut busy = server.smtp();
    busy.expect("EHLO busy.test", "250");
    busy.expect("MAIL FROM:<bob@localhost>", "250");
    busy.expect("RCPT TO:<alice@localhost>", "250");
    busy.expect("DATA", "354");
    busy.send(b"Subject: in flight\r\n\r\nfirst half\r\n");
    // Let the server read the first half, so the session is inside DATA.
    std::thread::sleep(Duration::from_millis(300));

    server.signal(libc::SIGTERM);
    // Idle sessions are told and closed at once.
    let bye = idle.reply();
    assert!(bye.starts_with("421 4.3.2"), "{bye}");
    assert!(idle.is_closed());
    let bye = pop.line();
    assert!(bye.starts_with("-ERR [SYS/TEMP]"), "{bye}");
    // The session inside DATA finishes its message and gets its 250.
    std::thread::sleep(Duration::from_millis(300));
    busy.send(b"second half\r\n.\r\n");
    let stored = busy.reply();
    assert!(stored.starts_with("250"), "{stored}");
    let bye = busy.reply();
    assert!(bye.starts_with("421 4.3.2"), "{bye}");
    let status = server.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "exit status {status}\n{}", server.log());
    let log = server.log();
    assert!(log.contains("stopping: no new connections"), "{log}");
    assert!(log.contains("ringmail stopped"), "{log}");

    // Nothing accepted was lost.
    server.spawn();
    let got = fetch_all(&server, "alice@localhost");
    assert_eq!(got.len(), 1);
    assert!(String::from_utf8_lossy(&got[0]).contains("first half\r\nsecond half\r\n"));
}

#[test]
fn sighup_reloads_the_config_and_a_broken_one_is_kept_out() {
    let server = Server::start();
    let mut kept = server.smtp();
    kept.expect("EHLO kept.test", "250");
    let good = std::fs::read_to_string(&server.config).unwrap();

    std::fs::write(&server.config, format!("{good}\nthis is = = not toml\n")).unwrap();
    server.signal(libc::SIGHUP);
    eventually(Duration::from_secs(10), || server.log().contains("SIGHUP: config not reloaded").then_some(()));
    let log = server.log();
    assert!(log.contains("ringmail.toml"), "the log names the file: {log}");
    // Still serving, with the old settings (50 recipients allowed).
    let mut c = server.smtp();
    c.expect("EHLO a.test", "250");
    c.expect("MAIL FROM:<bob@localhost>", "250");
    for rcpt in ["alice@localhost", "bob@localhost", "carol@example.test"] {
        c.expect(&format!("RCPT TO:<{rcpt}>"), "250");
    }

    let tighter = good.replace("max_recipients = 50", "max_recipients = 2");
    assert_ne!(tighter, good);
    std::fs::write(&server.config, tighter).unwrap();
    server.signal(libc::SIGHUP);
    eventually(Duration::from_secs(10), || server.log().contains("SIGHUP: config reloaded").then_some(()));
    // New sessions get the new limit...
    let mut c = server.smtp();
    c.expect("EHLO b.test", "250");
    c.expect("MAIL FROM:<bob@localhost>", "250");
    c.expect("RCPT TO:<alice@localhost>", "250");
    c.expect("RCPT TO:<bob@localhost>", "250");
    c.expect("RCPT TO:<carol@example.test>", "452");
    // ...and the session open across both reloads was never dropped.
    kept.expect("NOOP", "250");
    let r = kept.send_mail("bob@localhost", &["alice@localhost"], b"Subject: kept\r\n\r\nstill here\r\n");
    assert!(r.starts_with("250"), "{r}");
}

/// The queue id in a `250 2.0.0 Ok: queued as ID` reply.
fn queue_id_of(reply: &str) -> String {
    reply.rsplit(' ').next().unwrap().trim().to_string()
}

#[test]
fn one_queue_id_ties_the_log_and_trace_tells_the_whole_history() {
    let closed = free_port(); // nobody listens: every attempt is deferred
    let server = Server::start_with(Options {
        relay: format!("routes = {{ \"remote.test\" = \"127.0.0.1:{closed}\" }}\nretry = [\"1h\"]\n"),
        extra: "[log]\nformat = \"json\"\n".into(),
        ..Options::default()
    });
    let mut c = server.smtp();
    c.expect("EHLO trace.test", "250");
    let reply = c.send_mail(
        "bob@localhost",
        &["alice@localhost", "far@remote.test"],
        b"Message-ID: <trace-me@client.test>\r\nSubject: follow me\r\n\r\nbody\r\n",
    );
    assert!(reply.starts_with("250"), "{reply}");
    let qid = queue_id_of(&reply);
    eventually(Duration::from_secs(10), || server.log().contains("will retry").then_some(()));

    // Every line about the message carries its queue id; the log is JSON.
    let log = server.log_containing(&["\"message accepted\"", "\"stored in mailbox\"", "\"will retry\""]);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&qid)).collect();
    for l in &lines {
        assert!(l.starts_with('{') && l.ends_with('}'), "not a JSON line: {l}");
    }
    let has = |what: &str| lines.iter().any(|l| l.contains(what));
    assert!(has("\"message accepted\"") && has("trace-me@client.test") && has("bob@localhost"), "{lines:#?}");
    assert!(has("\"stored in mailbox\""), "{lines:#?}");
    assert!(has("\"will retry\"") && has("far@remote.test"), "{lines:#?}");

    for needle in [qid.as_str(), "<trace-me@client.test>"] {
        let out = server.cli(&["trace", needle]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{needle}: {text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains(&format!("queue id {qid}")), "{text}");
        assert!(text.contains("message-id <trace-me@client.test>"), "{text}");
        assert!(text.contains("from=<bob@localhost>"), "{text}");
        assert!(text.contains("to=<alice@localhost> (local mailbox alice@localhost)"), "{text}");
        assert!(text.contains("delivered; in the mailbox"), "{text}");
        assert!(text.contains("to=<far@remote.test> (relay to remote.test)"), "{text}");
        assert!(text.contains("attempts=1 deferred until"), "{text}");
        assert!(text.contains("queued (not final yet)"), "{text}");
    }
    let missing = server.cli(&["trace", "0000000000000001"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no message with queue id 0000000000000001"));
}

#[test]
fn relay_outcomes_and_delivery_latency_are_counted() {
    // Recipients "later*" get 451 once; "never*" get 550; others 250.
    let seen_later = std::sync::atomic::AtomicBool::new(false);
    let seen_later = std::sync::Arc::new(seen_later);
    let flag = seen_later.clone();
    let sink = Sink::start(
        "127.0.0.1",
        0,
        Script {
            rcpt: Box::new(move |rcpt| {
                if rcpt.contains("never") {
                    "550 5.1.1 no such user".into()
                } else if rcpt.contains("later") && !flag.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    "451 4.3.0 try again".into()
                } else {
                    "250 2.1.5 Ok".into()
                }
            }),
            ..Script::default()
        },
    );
    let server = Server::start_with(Options {
        relay: format!("routes = {{ \"remote.test\" = \"{}\" }}\nretry = [\"1s\"]\n", sink.addr),
        ..Options::default()
    });
    let mut c = server.smtp();
    c.expect("EHLO relay.test", "250");
    for to in ["a@remote.test", "later@remote.test", "never@remote.test"] {
        let r = c.send_mail("bob@localhost", &[to], b"Subject: r\r\n\r\nx\r\n");
        assert!(r.starts_with("250"), "{r}");
    }
    eventually(Duration::from_secs(20), || (server.metric("ringmail_relay_delivered_total", &[]) == 2.0).then_some(()));
    assert!(seen_later.load(std::sync::atomic::Ordering::SeqCst));
    let (_, body) = server.http("GET /metrics HTTP/1.1");
    assert_eq!(sum_metric(&body, "ringmail_relay_deferred_total", &[]), 1.0, "{body}");
    assert_eq!(sum_metric(&body, "ringmail_relay_bounced_total", &[]), 1.0);
    assert_eq!(sum_metric(&body, "ringmail_relay_replies_total", &[("class", "2xx")]), 2.0);
    assert_eq!(sum_metric(&body, "ringmail_relay_replies_total", &[("class", "4xx")]), 1.0);
    assert_eq!(sum_metric(&body, "ringmail_relay_replies_total", &[("class", "5xx")]), 1.0);
    assert_eq!(sum_metric(&body, "ringmail_relay_delivery_seconds_count", &[]), 2.0);
    // The deferred one waited about a second for its retry.
    assert!(sum_metric(&body, "ringmail_relay_delivery_seconds_bucket", &[("le", "0.5")]) <= 1.0, "{body}");
    assert!(sum_metric(&body, "ringmail_relay_delivery_seconds_sum", &[]) >= 0.5, "{body}");
    // Three accepted from the client plus the bounce (DSN) to bob.
    eventually(Duration::from_secs(5), || (mailbox_count(&server, "bob@localhost") == 1).then_some(()));
    assert_eq!(server.metric("ringmail_smtp_messages_received_total", &[]), 3.0);
    assert_eq!(server.metric("ringmail_queue_messages", &[]), 0.0);
}

#[test]
fn sigterm_during_relay_then_restart_delivers_each_message_exactly_once() {
    let sink = Sink::start("127.0.0.1", 0, Script { delay: Duration::from_millis(150), ..Script::default() });
    let mut server = Server::start_with(Options {
        relay: format!(
            "routes = {{ \"remote.test\" = \"{}\" }}\nretry = [\"1s\"]\nmax_connections_per_domain = 2\n",
            sink.addr
        ),
        ..Options::default()
    });
    let mut c = server.smtp();
    c.expect("EHLO relay.test", "250");
    for i in 0..12 {
        let r = c.send_mail("bob@localhost", &["x@remote.test"], format!("Subject: once {i}\r\n\r\nx\r\n").as_bytes());
        assert!(r.starts_with("250"), "{r}");
    }
    drop(c);
    // Stop while deliveries are in flight (each takes 150 ms at the sink).
    eventually(Duration::from_secs(10), || (sink.count() >= 2).then_some(()));
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}\n{}", server.log());
    assert!(sink.count() < 12, "stopped before the queue was empty");
    server.spawn();
    eventually(Duration::from_secs(20), || (sink.count() >= 12).then_some(()));
    std::thread::sleep(Duration::from_millis(500)); // a duplicate would show up now
    let mut subjects: Vec<String> = sink
        .received()
        .iter()
        .map(|m| {
            String::from_utf8_lossy(&m.data).lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap().to_string()
        })
        .collect();
    subjects.sort();
    let before = subjects.len();
    subjects.dedup();
    assert_eq!(before, subjects.len(), "a message finished before the stop was sent again");
    assert_eq!(subjects.len(), 12);
}

#[test]
fn under_journald_each_line_starts_with_its_syslog_priority() {
    let server =
        Server::start_with(Options { env: vec![("JOURNAL_STREAM".into(), "8:4242".into())], ..Options::default() });
    let mut p = server.pop3();
    assert!(p.cmd("USER alice@localhost").starts_with("+OK"));
    assert!(p.cmd("PASS wrong").starts_with("-ERR"));
    let log = server.log_containing(&["authentication failed"]);
    let lines: Vec<&str> = log.lines().filter(|l| !l.starts_with("ringmail: ")).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let ok = ["<3>ERROR ", "<4> WARN ", "<6> INFO ", "<7>DEBUG "].iter().any(|p| line.starts_with(p));
        assert!(ok, "no priority prefix (or a timestamp journald adds itself): {line:?}\n{log}");
    }
    assert!(lines.iter().any(|l| l.starts_with("<6> INFO ringmail ready")), "{log}");
    assert!(lines.iter().any(|l| l.starts_with("<4> WARN authentication failed core=")), "{log}");
}

#[test]
fn head_metrics_answers_the_headers_of_get_without_a_body() {
    use std::io::{Read, Write};
    let server = Server::start();
    let mut s = std::net::TcpStream::connect(server.metrics).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(b"HEAD /metrics HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("a Content-Length");
    assert!(length > 0, "the length GET's body would have");
    assert!(body.is_empty(), "HEAD has no body: {body:?}");
}
