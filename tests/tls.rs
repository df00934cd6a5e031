//! TLS everywhere: STARTTLS (RFC 3207), STLS (RFC 2595), implicit TLS
//! (RFC 8314), the STARTTLS injection case, handshakes that never finish
//! or are garbage, certificate checks at start-up and reload on SIGHUP.

mod common;

use common::*;
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

fn scenario(name: &str, port: u16, creds: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(format!("{}/tests/fixtures/tls_client.py", env!("CARGO_MANIFEST_DIR")))
        .arg(name)
        .arg(port.to_string())
        .args(creds)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{name}: {text}");
    text
}

#[test]
fn smtp_starttls_then_mail_and_the_self_signed_certificate_is_announced() {
    let server = Server::start();
    let out = scenario("smtp_starttls", server.smtp.port(), &[]);
    assert!(out.contains("tls TLSv1.3") || out.contains("tls TLSv1.2"), "{out}");
    eventually(Duration::from_secs(5), || (mailbox_count(&server, "alice@localhost") == 1).then_some(()));
    assert!(server.log().contains("created a self-signed certificate"));
    assert!(server.data_dir().join("tls/self-signed-cert.pem").exists());
}

#[test]
fn commands_pipelined_after_starttls_are_discarded() {
    let server = Server::start();
    scenario("smtp_injection", server.smtp.port(), &[]);
}

#[test]
fn pop3_over_stls_and_implicit_tls() {
    let server = Server::start();
    scenario("pop3_stls", server.pop3.port(), &["alice@localhost", PASSWORD]);
    scenario("pop3s", server.pop3s.port(), &["alice@localhost", PASSWORD]);
}

#[test]
fn curl_requires_tls_and_gets_it() {
    let server = Server::start();
    let work = tempfile::tempdir_in(test_tmp()).unwrap();
    let path = work.path().join("m.eml");
    std::fs::write(&path, b"Subject: curl tls\r\n\r\nx\r\n").unwrap();
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20", "--ssl-reqd", "--insecure"])
        .arg(format!("smtp://{}/client.test", server.smtp))
        .args(["--mail-from", "bob@localhost", "--mail-rcpt", "alice@localhost", "--upload-file"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eventually(Duration::from_secs(5), || (mailbox_count(&server, "alice@localhost") == 1).then_some(()));
}

#[test]
fn garbage_or_a_stalled_handshake_is_dropped_and_others_are_served() {
    let server = Server::start_with(Options { extra: String::new(), ..Options::default() });
    // Garbage instead of a ClientHello on the implicit-TLS port.
    let mut g = std::net::TcpStream::connect(server.smtps).unwrap();
    g.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    g.write_all(b"EHLO this is not tls\r\n\r\n").unwrap();
    let mut buf = [0u8; 64];
    let n = g.read(&mut buf).unwrap_or(0);
    assert!(n == 0 || buf[0] == 0x15, "garbage got a non-alert answer: {:?}", &buf[..n]);
    // A client that connects and never starts the handshake.
    let _stalled = std::net::TcpStream::connect(server.smtps).unwrap();
    // Everyone else is still served.
    scenario("smtp_starttls", server.smtp.port(), &[]);
}

#[test]
fn submission_and_smtps_require_auth_and_the_sender_must_match() {
    let server = Server::start();
    scenario("submission", server.submission.port(), &["alice@localhost", PASSWORD]);
    scenario("smtps", server.smtps.port(), &["alice@localhost", PASSWORD]);
    eventually(Duration::from_secs(5), || (mailbox_count(&server, "carol@example.test") == 2).then_some(()));
    assert!(server.log_containing(&["authenticated"]).contains("authenticated"));
}

#[test]
fn swaks_submits_with_starttls_and_auth() {
    let server = Server::start();
    let out = Command::new("swaks")
        .args(["--server", &server.submission.to_string(), "--tls", "--auth", "PLAIN"])
        .args(["--auth-user", "alice@localhost", "--auth-password", PASSWORD])
        .args(["--from", "alice@localhost", "--to", "bob@localhost", "--header", "Subject: via swaks"])
        .args(["--timeout", "20"])
        .output()
        .expect("swaks (Debian package swaks; tests/run.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("235 2.7.0"), "{text}");
    eventually(Duration::from_secs(5), || (mailbox_count(&server, "bob@localhost") == 1).then_some(()));
}

#[test]
fn passwords_are_not_taken_in_plain_text_off_loopback() {
    // plaintext_on_loopback = false makes this loopback client count as
    // "elsewhere".
    let server = Server::start_with(Options { auth: "plaintext_on_loopback = false\n".into(), ..Options::default() });
    let mut c = Smtp::connect(server.submission);
    let ehlo = c.expect("EHLO client.test", "250");
    assert!(!ehlo.contains("AUTH"), "AUTH offered before STARTTLS: {ehlo}");
    c.expect("AUTH PLAIN AGFsaWNlQGxvY2FsaG9zdABwdw==", "538 5.7.11");
    let mut p = server.pop3();
    let r = p.cmd("USER alice@localhost");
    assert!(r.starts_with("-ERR"), "{r}");
}

#[test]
fn password_guessing_is_locked_out_per_address_and_logged() {
    let server = Server::start_with(Options {
        cores: 1,
        auth: "max_auth_failures = 3\nmax_failures_per_connection = 20\n".into(),
        ..Options::default()
    });
    let mut p = server.pop3();
    for _ in 0..3 {
        assert!(p.login("alice@localhost", "guess").starts_with("-ERR [AUTH]"));
    }
    // Locked: even the right password is refused from this address now.
    assert!(p.login("alice@localhost", PASSWORD).starts_with("-ERR [AUTH]"));
    let log = server.log_containing(&["too many authentication failures"]);
    assert!(log.contains("too many authentication failures") && log.contains("client=127.0.0.1"), "{log}");
    // The real user, from another address, still gets in.
    let sock = socket_from("127.0.0.2", server.pop3);
    let mut other = Pop3::from_stream(sock);
    assert!(other.login("alice@localhost", PASSWORD).starts_with("+OK"));
}
