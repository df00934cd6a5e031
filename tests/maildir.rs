//! Moving mailboxes: Maildirs and mboxes made by Python's `mailbox`
//! module are imported, retrieved over POP3 intact, and exported back into
//! a Maildir that `mailbox` reads.

mod common;

use common::*;
use std::process::Command;

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
