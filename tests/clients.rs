//! Real clients against the real server: Python's smtplib and poplib, and
//! curl's smtp:// and pop3://.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("running a client");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn smtplib_sends_and_poplib_downloads_byte_for_byte() {
    let server = Server::start();
    let work = tempfile::tempdir_in(test_tmp()).unwrap();
    let msg = b"From: Bob <bob@localhost>\r\nTo: alice@localhost\r\nSubject: hello\r\nMessage-ID: <1@client.test>\r\n\r\nHi Alice,\r\n.leading dot line\r\n\xc3\xa9t\xc3\xa9 8-bit text\r\n";
    let path = work.path().join("msg.eml");
    std::fs::write(&path, msg).unwrap();
    let port = server.smtp.port().to_string();
    run(Command::new("python3")
        .args([&fixture("smtplib_send.py"), "127.0.0.1", &port, "bob@localhost", "alice@localhost,carol@example.test"])
        .arg(&path));

    for user in ["alice@localhost", "carol@example.test"] {
        eventually(Duration::from_secs(5), || (mailbox_count(&server, user) == 1).then_some(()));
        let out = tempfile::tempdir_in(test_tmp()).unwrap();
        let pop_port = server.pop3.port().to_string();
        let count = run(Command::new("python3")
            .args([&fixture("poplib_fetch.py"), "127.0.0.1", &pop_port, user, PASSWORD])
            .arg(out.path())
            .arg("--delete"));
        assert_eq!(count.trim(), "1");
        let got = std::fs::read(out.path().join("1.eml")).unwrap();
        assert_eq!(strip_received(&got), msg.to_vec(), "{user} got a different message");
        assert!(String::from_utf8_lossy(&got).contains("by mx.test (ringmail)"));
    }
    // --delete + QUIT removed them.
    assert_eq!(mailbox_count(&server, "alice@localhost"), 0);
}

#[test]
fn smtplib_sees_unknown_user_and_relay_refusals() {
    let server = Server::start_with(Options { permit_relay_from: "[]", ..Options::default() });
    let work = tempfile::tempdir_in(test_tmp()).unwrap();
    let path = work.path().join("msg.eml");
    std::fs::write(&path, b"Subject: x\r\n\r\nbody\r\n").unwrap();
    let port = server.smtp.port().to_string();
    for rcpt in ["nobody@localhost", "someone@remote.test"] {
        let out = Command::new("python3")
            .args([&fixture("smtplib_send.py"), "127.0.0.1", &port, "bob@localhost", rcpt])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{rcpt} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        let want = if rcpt.ends_with("localhost") { "550" } else { "554" };
        assert!(err.contains(want), "{rcpt}: {err}");
    }
}

#[test]
fn curl_sends_over_smtp_and_fetches_over_pop3() {
    let server = Server::start();
    let work = tempfile::tempdir_in(test_tmp()).unwrap();
    let body = b"From: bob@localhost\r\nTo: alice@localhost\r\nSubject: via curl\r\n\r\nline one\r\n.dot line\r\n";
    let path = work.path().join("m.eml");
    std::fs::write(&path, body).unwrap();
    run(Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .arg(format!("smtp://{}/client.test", server.smtp))
        .args(["--mail-from", "bob@localhost", "--mail-rcpt", "alice@localhost", "--upload-file"])
        .arg(&path));
    eventually(Duration::from_secs(5), || (mailbox_count(&server, "alice@localhost") == 1).then_some(()));
    let listing = run(Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20", "--user", &format!("alice@localhost:{PASSWORD}")])
        .arg(format!("pop3://{}/", server.pop3)));
    assert!(listing.starts_with("1 "), "LIST via curl: {listing:?}");
    let msg = run(Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20", "--user", &format!("alice@localhost:{PASSWORD}")])
        .arg(format!("pop3://{}/1", server.pop3)));
    assert_eq!(strip_received(msg.as_bytes()), body.to_vec());
}
