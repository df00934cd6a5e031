//! STARTTLS, implicit TLS and AUTH PLAIN between the generator and its own
//! sink, with a throw-away self-signed certificate; and the one-line
//! failures for a certificate we do not trust and for wrong credentials.

mod common;

use common::*;
use std::path::PathBuf;

/// Writes a self-signed certificate for `localhost` and its key; returns
/// (dir guard, cert path, key path).
fn self_signed() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (dir, c, k)
}

#[test]
fn starttls_with_insecure_delivers() {
    let (_d, cert, key) = self_signed();
    let sink =
        Sink::start(&["--messages", "50", "--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    let gen = smtp_ok(
        &sink.addr,
        &["--messages", "50", "--connections", "2", "--tls", "starttls", "--insecure", "--pipelining"],
    );
    assert_eq!(count(&gen, "accepted"), 50);
    assert!(gen["latency_ms"].as_array().unwrap().iter().any(|r| r["name"] == "starttls"));
    assert!(gen["latency_ms"].as_array().unwrap().iter().any(|r| r["name"] == "tls"));
    assert_eq!(count(&sink.finish(), "messages"), 50);
}

#[test]
fn starttls_verifies_against_a_given_ca() {
    let (_d, cert, key) = self_signed();
    let sink =
        Sink::start(&["--messages", "5", "--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    let gen = smtp_ok(
        &sink.addr,
        &["--messages", "5", "--tls", "starttls", "--ca", cert.to_str().unwrap(), "--tls-name", "localhost"],
    );
    assert_eq!(count(&gen, "accepted"), 5);
    sink.finish();
}

#[test]
fn implicit_tls_delivers() {
    let (_d, cert, key) = self_signed();
    let sink = Sink::start(&[
        "--messages",
        "20",
        "--implicit-tls",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let gen = smtp_ok(&sink.addr, &["--messages", "20", "--tls", "implicit", "--insecure"]);
    assert_eq!(count(&gen, "accepted"), 20);
    assert_eq!(count(&sink.finish(), "messages"), 20);
}

#[test]
fn untrusted_certificate_fails_with_one_line() {
    let (_d, cert, key) = self_signed();
    let sink = Sink::start(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    let out =
        loadgen(&["smtp", "--target", &sink.addr, "--tls", "starttls", "--messages", "5", "--tls-name", "localhost"]);
    assert_one_line_failure(&out, "TLS handshake with");
    assert!(String::from_utf8_lossy(&out.stderr).contains("certificate"));
}

#[test]
fn starttls_not_offered_fails_with_one_line() {
    let sink = Sink::start(&[]);
    let out = loadgen(&["smtp", "--target", &sink.addr, "--tls", "starttls", "--insecure", "--messages", "1"]);
    assert_one_line_failure(&out, "does not offer STARTTLS");
}

#[test]
fn auth_plain_with_right_credentials_delivers() {
    let sink = Sink::start(&["--messages", "10", "--auth", "u@x.test:s3cret"]);
    let gen = smtp_ok(&sink.addr, &["--messages", "10", "--auth", "u@x.test:s3cret"]);
    assert_eq!(count(&gen, "accepted"), 10);
    sink.finish();
}

#[test]
fn auth_failure_fails_with_one_line() {
    let sink = Sink::start(&["--auth", "u@x.test:s3cret"]);
    let out = loadgen(&["smtp", "--target", &sink.addr, "--auth", "u@x.test:wrong", "--messages", "5"]);
    assert_one_line_failure(&out, "rejected our credentials: 535");
}

#[test]
fn missing_auth_is_rejected_per_message_not_fatal() {
    // The session sets up fine; MAIL gets 530, which is a rejection outcome.
    let sink = Sink::start(&["--auth", "u@x.test:s3cret"]);
    let gen = smtp_ok(&sink.addr, &["--messages", "5", "--connections", "1"]);
    assert_eq!(count(&gen, "rejected"), 5);
    assert_eq!(tally(&gen, "rejections", "mail 530"), 5);
}
