//! Backup and restore: an online backup taken under load restores into
//! another data dir with every acknowledged message intact; damaged
//! archives and non-empty targets are refused with the reason.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::Duration;

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Subject -> full message, for every message in `user`'s mailbox.
fn by_subject(server: &Server, user: &str) -> BTreeMap<String, Vec<u8>> {
    fetch_all(server, user)
        .into_iter()
        .map(|m| {
            let s = String::from_utf8_lossy(&m);
            let subject = s.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap().to_string();
            (subject, m)
        })
        .collect()
}

#[test]
fn online_backup_under_load_restores_every_acknowledged_message() {
    let source = Server::start();
    let backup = source.dir.path().join("live.tar");
    let (before, report) = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        let source = &source;
        let load = s.spawn(move || {
            let mut c = source.smtp();
            c.expect("EHLO load.test", "250");
            for i in 0..150 {
                if i == 50 {
                    // Messages 0..50 have their 250; the backup starts now.
                    tx.send(i).unwrap();
                }
                let to = if i % 2 == 0 { "alice@localhost" } else { "bob@localhost" };
                let body = format!("Subject: m{i}\r\n\r\n{}\r\n", "z".repeat(i * 37 % 3000));
                let r = c.send_mail("load@localhost", &[to], body.as_bytes());
                assert!(r.starts_with("250"), "{r}");
            }
        });
        let before: usize = rx.recv().unwrap();
        let out = source.cli(&["backup", backup.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        load.join().unwrap();
        (before, text(&out))
    });
    assert!(report.contains("files") && report.contains("messages"), "{report}");
    assert!(
        source.log_containing(&["backup: spool released"]).contains("backup: spool released"),
        "the pin was released"
    );

    let mut target = Server::start();
    target.kill9();
    std::fs::remove_dir_all(target.data_dir()).unwrap();
    let out = target.cli(&["restore", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("every checksum verified"), "{}", text(&out));
    target.spawn();

    for user in ["alice@localhost", "bob@localhost"] {
        let original = by_subject(&source, user);
        let restored = by_subject(&target, user);
        // Everything acknowledged before the backup began is there...
        for i in (0..before).filter(|i| (i % 2 == 0) == (user == "alice@localhost")) {
            assert!(restored.contains_key(&format!("m{i}")), "{user}: m{i} acknowledged before the backup is missing");
        }
        // ...byte for byte, and nothing that was never sent.
        for (subject, msg) in &restored {
            assert_eq!(original.get(subject), Some(msg), "{user}: {subject} differs from the original");
        }
    }
}

#[test]
fn damaged_archives_and_non_empty_targets_are_refused() {
    let mut server = Server::start();
    let mut c = server.smtp();
    c.expect("EHLO b.test", "250");
    for i in 0..5 {
        c.send_mail("x@localhost", &["alice@localhost"], format!("Subject: s{i}\r\n\r\nbody {i}\r\n").as_bytes());
    }
    let good = server.dir.path().join("good.tar");
    assert!(server.cli(&["backup", good.to_str().unwrap()]).status.success());

    // Into the running server's (non-empty) data dir: refused.
    let out = server.cli(&["restore", good.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("needs an empty"), "{}", text(&out));

    server.kill9();
    let data = server.data_dir();
    std::fs::remove_dir_all(&data).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    // Truncated in the middle: refused, nothing left in data_dir.
    let cut = server.dir.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let out = server.cli(&["restore", cut.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("truncated"), "{}", text(&out));
    assert!(!data.exists() || std::fs::read_dir(&data).unwrap().next().is_none());

    // One byte changed in a message body: refused, naming the file.
    let needle = b"body 3";
    let at = bytes.windows(needle.len()).position(|w| w == needle).expect("the body is in the archive");
    let mut altered = bytes.clone();
    altered[at + 5] = b'7';
    let bad = server.dir.path().join("altered.tar");
    std::fs::write(&bad, &altered).unwrap();
    let out = server.cli(&["restore", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("altered") && t.contains("spool/core-"), "{t}");

    // Not a backup at all.
    let junk = server.dir.path().join("junk.tar");
    std::fs::write(&junk, b"hello").unwrap();
    assert!(!server.cli(&["restore", junk.to_str().unwrap()]).status.success());

    // The good one still restores, and the server starts on it.
    let out = server.cli(&["restore", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    server.spawn();
    eventually(Duration::from_secs(5), || (mailbox_count(&server, "alice@localhost") == 5).then_some(()));
}
