//! No open relay, abuse limits, and certificate handling at start-up and
//! on SIGHUP.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::Command;
use std::time::Duration;

#[test]
fn every_open_relay_trick_is_refused_outside_permit_relay_from() {
    let server = Server::start_with(Options { permit_relay_from: "[]", ..Options::default() });
    let mut c = server.smtp();
    c.expect("EHLO tester.example", "250");
    c.expect("MAIL FROM:<spammer@example.net>", "250");
    let cases = [
        "<victim@remote.test>",
        "<victim%remote.test@localhost>",
        "<remote.test!victim@localhost>",
        "<@localhost:victim@remote.test>",
        "<@localhost,@mx.test:victim@remote.test>",
        "<\"victim@remote.test\"@localhost>",
        "<\"victim%remote.test\"@localhost>",
        "<victim@[192.0.2.1]>",
        "<victim@[IPv6:2001:db8::1]>",
        "<victim@remote.test.>",
        "<Victim@REMOTE.Test>",
        "<victim@localhost.remote.test>",
        "<victim@remote.test@localhost>",
    ];
    for rcpt in cases {
        let r = c.cmd(&format!("RCPT TO:{rcpt}"));
        assert!(r.starts_with("554 5.7.1") || r.starts_with("550 5.1.1") || r.starts_with("501"), "{rcpt} -> {r}");
        assert!(!r.starts_with('2'), "{rcpt} was accepted: {r}");
    }
    // The real local user still works.
    c.expect("RCPT TO:<alice@localhost>", "250");
}

#[test]
fn too_many_connections_from_one_address_get_421_and_a_log_line() {
    let server = Server::start_with(Options { cores: 1, ..limits("max_connections_per_ip = 3\n") });
    let held: Vec<_> = (0..3).map(|_| server.smtp()).collect();
    let s = std::net::TcpStream::connect(server.smtp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut line = String::new();
    BufReader::new(s.try_clone().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("421 4.7.0"), "{line}");
    eventually(Duration::from_secs(5), || {
        server.log().lines().any(|l| l.contains("refused") && l.contains("client=127.0.0.1")).then_some(())
    });
    drop(held);
    // Capacity comes back when they leave.
    eventually(Duration::from_secs(5), || std::panic::catch_unwind(|| server.smtp()).ok().map(|_| ()));
}

#[test]
fn slow_loris_clients_are_timed_out() {
    let server = Server::start_with(limits("smtp_idle_timeout = \"1s\"\n"));
    let mut c = server.smtp();
    c.send(b"EHLO slow");
    // ... and never finishes the line.
    let r = c.reply();
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(c.is_closed());
}

/// Options with extra `[limits]` lines.
fn limits(lines: &str) -> Options {
    Options { limits: lines.to_string(), ..Options::default() }
}

fn write_cert(
    dir: &std::path::Path,
    name: &str,
    not_after: Option<(i32, u8, u8)>,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["mx.test".to_string()]).unwrap();
    if let Some((y, m, d)) = not_after {
        params.not_before = rcgen::date_time_ymd(y - 1, m, d);
        params.not_after = rcgen::date_time_ymd(y, m, d);
    }
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.join(format!("{name}-cert.pem")), dir.join(format!("{name}-key.pem")));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn serve_with_tls(cert: &std::path::Path, key: &std::path::Path) -> std::process::Output {
    let dir = tempfile::tempdir_in(test_tmp()).unwrap();
    let cfg = dir.path().join("r.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"d\"\n[listen]\nsmtp = \"127.0.0.1:{}\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n[runtime]\nio_memory = 1048576\n",
            free_port(),
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_ringmail")).args(["serve", "--config"]).arg(&cfg).output().unwrap()
}

#[test]
fn expired_or_mismatched_certificates_stop_start_up_with_the_reason() {
    let dir = tempfile::tempdir_in(test_tmp()).unwrap();
    let (old_cert, old_key) = write_cert(dir.path(), "old", Some((2020, 1, 1)));
    let out = serve_with_tls(&old_cert, &old_key);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("old-cert.pem") && err.contains("expired"), "{err}");

    let (a_cert, _) = write_cert(dir.path(), "a", None);
    let (_, b_key) = write_cert(dir.path(), "b", None);
    let out = serve_with_tls(&a_cert, &b_key);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("b-key.pem") && err.contains("does not fit"), "{err}");
}

fn fingerprint(port: u16) -> String {
    let out = Command::new("python3")
        .arg(format!("{}/tests/fixtures/tls_client.py", env!("CARGO_MANIFEST_DIR")))
        .args(["cert_serial", &port.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_sessions() {
    let work = tempfile::tempdir_in(test_tmp()).unwrap();
    let (cert, key) = write_cert(work.path(), "live", None);
    let server = Server::start_with(Options {
        extra: format!("[tls]\ncert = \"{}\"\nkey = \"{}\"\n", cert.display(), key.display()),
        ..Options::default()
    });
    let before = fingerprint(server.smtps.port());
    let mut open = server.smtp();
    open.expect("EHLO client.test", "250");
    let (new_cert, new_key) = write_cert(work.path(), "next", None);
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    server.signal(libc::SIGHUP);
    eventually(Duration::from_secs(10), || server.log().contains("certificate reloaded").then_some(()));
    let after = fingerprint(server.smtps.port());
    assert_ne!(before, after, "new handshakes use the new certificate");
    // The session opened before the reload carries on.
    let r = open.send_mail("bob@localhost", &["alice@localhost"], b"Subject: still here\r\n\r\nx\r\n");
    assert!(r.starts_with("250"), "{r}");
    let _ = open.stream.write_all(b"QUIT\r\n");
}

#[test]
fn message_rate_messages_and_commands_per_session_are_limited() {
    let server =
        Server::start_with(Options { cores: 1, ..limits("max_messages_per_minute_per_ip = 2\nmax_commands = 12\n") });
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    for _ in 0..2 {
        let r = c.send_mail("bob@localhost", &["alice@localhost"], b"Subject: r\r\n\r\nx\r\n");
        assert!(r.starts_with("250"), "{r}");
    }
    c.expect("MAIL FROM:<bob@localhost>", "450 4.7.1");
    assert!(server.log_containing(&["message rate exceeded"]).contains("message rate exceeded"));
    // 1 EHLO + 2 x (MAIL RCPT DATA) + 1 refused MAIL = 8 commands so far.
    for _ in 0..4 {
        c.expect("NOOP", "250");
    }
    c.expect("NOOP", "421 4.7.0");
    assert!(c.is_closed());
}
