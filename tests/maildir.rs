//! Moving mailboxes: Maildirs and mboxes made by Python's `mailbox`
//! module are imported, retrieved over POP3 intact, and exported back into
//! a Maildir that `mailbox` reads.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

fn tool(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mailbox_tool.py");
    let out = Command::new("python3").arg(script).args(args).output().expect("python3");
    assert!(out.status.success(), "mailbox_tool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn maildir_and_mbox_import_then_pop3_and_export_round_trip() {
    let server = Server::start();
    let work = server.dir.path();
    let maildir = work.join("Maildir");
    let mbox = work.join("old.mbox");
    tool(&["make-maildir", maildir.to_str().unwrap(), "3"]);
    tool(&["make-mbox", mbox.to_str().unwrap(), "2"]);

    let out = server.cli(&["import-maildir", "alice@localhost", maildir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("imported 3 message(s)"), "{}", text(&out));
    let out = server.cli(&["import-mbox", "alice@localhost", mbox.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("imported 2 message(s)"), "{}", text(&out));

    // POP3 hands them out with CRLF line ends and every line intact (the
    // mbox's "From " body line unquoted).
    let mut p = server.pop3();
    assert!(p.login("alice@localhost", PASSWORD).starts_with("+OK"));
    let (n, _) = p.stat();
    let got: Vec<Vec<u8>> = (1..=n).map(|i| p.retr(i)).collect();
    p.cmd("QUIT");
    assert_eq!(got.len(), 5);
    let all = got.iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect::<Vec<_>>().join("\n---\n");
    for subject in ["maildir 0", "maildir 1", "maildir 2", "mbox 0", "mbox 1"] {
        assert!(all.contains(&format!("Subject: {subject}\r\n")), "{subject} missing:\n{all}");
    }
    assert_eq!(all.matches("\r\nFrom here on, quoting matters\r\n").count(), 5, "{all}");
    assert!(!all.contains(">From here"), "mbox quoting undone: {all}");
    // Imported mail keeps the trace fields it came with: POP3 adds none.
    assert!(!all.contains("Delivered-To: "), "{all}");
    assert!(got.iter().all(|m| !m.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r')), "bare LF in a POP3 message");

    // Export to a Maildir Python reads; the bodies match what was imported.
    let export = work.join("Export");
    let out = server.cli(&["export-maildir", "alice@localhost", export.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("exported 5 message(s)"), "{}", text(&out));
    let before = tool(&["read-maildir", maildir.to_str().unwrap()]);
    let after = tool(&["read-maildir", export.to_str().unwrap()]);
    for line in before.lines() {
        assert!(after.contains(line), "{line} not exported identically:\n{after}");
    }
    assert_eq!(after.lines().count(), 5);

    // Bad input: not a Maildir, not an mbox, not a user.
    let out = server.cli(&["import-maildir", "alice@localhost", work.to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("not a Maildir"), "{}", text(&out));
    let junk = work.join("junk");
    std::fs::write(&junk, "hello\n").unwrap();
    let out = server.cli(&["import-mbox", "alice@localhost", junk.to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("line 1"), "{}", text(&out));
    let out = server.cli(&["import-mbox", "nobody@localhost", mbox.to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("not a user"), "{}", text(&out));
}

/// The files of `dir/new/`, LF line ends turned back into CRLF, sorted.
fn exported_crlf(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir.join("new"))
        .unwrap()
        .map(|e| {
            let lf = std::fs::read(e.unwrap().path()).unwrap();
            lf.split(|&b| b == b'\n').collect::<Vec<_>>().join(&b"\r\n"[..])
        })
        .collect();
    out.sort();
    out
}

#[test]
fn export_writes_the_bytes_pop3_serves_for_mail_delivered_over_smtp() {
    // bench/compare's pop3 variant has Dovecot serve exported Maildirs: the
    // export must carry the Return-Path and Delivered-To that ringmail puts
    // above a delivered message when serving it, each recipient its own.
    let server = Server::start();
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    let r = c.send_mail("carol@example.test", &["alice@localhost", "bob@localhost"], b"Subject: both\r\n\r\n.dot\r\n");
    assert!(r.starts_with("250"), "{r}");
    let r = c.send_mail("", &["alice@localhost"], b"Subject: bounce\r\n\r\nbody\r\n");
    assert!(r.starts_with("250"), "{r}");
    eventually(Duration::from_secs(10), || (mailbox_count(&server, "alice@localhost") == 2).then_some(()));
    for (user, n) in [("alice@localhost", 2), ("bob@localhost", 1)] {
        let mut p = server.pop3();
        assert!(p.login(user, PASSWORD).starts_with("+OK"));
        let mut served: Vec<Vec<u8>> = (1..=n).map(|i| p.retr(i)).collect();
        p.cmd("QUIT");
        served.sort();
        assert!(served.iter().all(|m| m.starts_with(b"Return-Path: <")), "{served:?}");
        let dir = server.dir.path().join(format!("export-{user}"));
        let out = server.cli(&["export-maildir", user, dir.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(exported_crlf(&dir), served, "{user}: exported files differ from what POP3 serves");
        let delivered_to = format!("Delivered-To: {user}\r\n");
        assert!(served.iter().all(|m| m.windows(delivered_to.len()).any(|w| w == delivered_to.as_bytes())));
    }
}

#[test]
fn imports_refuse_a_message_over_max_message_size_and_import_nothing() {
    // The test server's max_message_size is 64 KiB.
    let server = Server::start();
    let work = server.dir.path();
    let big = format!("Subject: big\n\n{}\n", "x".repeat(100)).repeat(1000); // ~115 KB
    let mbox = work.join("big.mbox");
    std::fs::write(
        &mbox,
        format!("From a@x Thu Nov 26 10:00:00 2026\nSubject: small\n\nhi\n\nFrom b@y Fri Nov 27 11:30:00 2026\n{big}"),
    )
    .unwrap();
    let out = server.cli(&["import-mbox", "alice@localhost", mbox.to_str().unwrap()]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains(&format!("{}:6", mbox.display())) && t.contains("max_message_size"), "{t}");

    let maildir = work.join("Big");
    std::fs::create_dir_all(maildir.join("new")).unwrap();
    std::fs::write(maildir.join("new/1.small.host"), "Subject: small\n\nhi\n").unwrap();
    std::fs::write(maildir.join("new/2.big.host"), &big).unwrap();
    let out = server.cli(&["import-maildir", "alice@localhost", maildir.to_str().unwrap()]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("2.big.host") && t.contains("max_message_size"), "{t}");
    assert_eq!(mailbox_count(&server, "alice@localhost"), 0, "nothing imported, not even the small ones");

    // The server enforces it too, for a client that does not check.
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(server.data_dir().join("control.sock")).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    s.write_all(b"import alice@localhost\n").unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    s.write_all(format!("message {} 0\n", 65537).as_bytes()).unwrap();
    line.clear();
    r.read_line(&mut line).expect("an answer before the body is sent");
    assert!(line.starts_with("error:") && line.contains("max_message_size (65536)"), "{line}");
    assert_eq!(mailbox_count(&server, "alice@localhost"), 0);
}
