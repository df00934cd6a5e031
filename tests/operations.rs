//! Operations: metrics, status, graceful shutdown, reloads.

mod common;

use common::*;
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
    let p99 = sum_metric(&body, "ringmail_smtp_data_ack_seconds", &[("quantile", "0.99")]);
    assert!(p99 > 0.0 && p99 < 60.0, "{p99}");
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
