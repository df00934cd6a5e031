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
    assert!(!data.exists(), "a failed restore left data_dir behind");
    assert!(!names(server.dir.path()).iter().any(|n| n.contains("restoring")), "{:?}", names(server.dir.path()));

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

/// Turn a configured (not started) server into the default layout: no
/// `users_file` in the config, so the users file is `<data_dir>/users`.
/// With `keep_users`, the users file moves there; otherwise it is gone.
fn default_layout(server: &Server, keep_users: bool) {
    let config = std::fs::read_to_string(&server.config).unwrap();
    let without = config.replace("users_file = \"users\"\n", "");
    assert_ne!(config, without, "the test config names its users file");
    std::fs::write(&server.config, without).unwrap();
    let outside = server.dir.path().join("users");
    if keep_users {
        std::fs::create_dir_all(server.data_dir()).unwrap();
        std::fs::rename(&outside, server.data_dir().join("users")).unwrap();
    } else {
        std::fs::remove_file(&outside).unwrap();
    }
}

/// Names in `dir`, sorted.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// A source in the default layout with three messages for alice, backed up.
fn default_layout_backup() -> (Server, std::path::PathBuf) {
    let mut source = Server::configure(Options::default());
    default_layout(&source, true);
    source.spawn();
    let mut c = source.smtp();
    c.expect("EHLO b.test", "250");
    for i in 0..3 {
        let r =
            c.send_mail("x@localhost", &["alice@localhost"], format!("Subject: d{i}\r\n\r\nbody {i}\r\n").as_bytes());
        assert!(r.starts_with("250"), "{r}");
    }
    let archive = source.dir.path().join("default.tar");
    let out = source.cli(&["backup", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    (source, archive)
}

#[test]
fn restore_with_the_users_file_inside_data_dir_fails_cleanly_then_succeeds() {
    let (_source, archive) = default_layout_backup();
    let mut target = Server::configure(Options::default());
    default_layout(&target, false);
    let data = target.data_dir();
    assert!(!data.exists());

    // A truncated archive: refused, and nothing left behind (no data_dir,
    // no staging directory next to or inside it).
    let bytes = std::fs::read(&archive).unwrap();
    let cut = target.dir.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = target.cli(&["restore", cut.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("truncated"), "{}", text(&out));
    assert!(!data.exists(), "a failed restore left {:?}", names(&data));
    assert!(!names(target.dir.path()).iter().any(|n| n.contains("restoring")), "{:?}", names(target.dir.path()));

    // The retry succeeds at once: the users file lands inside data_dir.
    let out = target.cli(&["restore", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(names(&data), ["spool", "users"]);
    target.spawn();
    assert_eq!(mailbox_count(&target, "alice@localhost"), 3);
    assert!(target.pop3().login("bob@localhost", PASSWORD).starts_with("+OK"), "the restored users file is in use");
}

#[test]
fn restore_keeps_a_users_file_already_inside_data_dir() {
    let (_source, archive) = default_layout_backup();
    let mut target = Server::configure(Options::default());
    default_layout(&target, true);
    let users = target.data_dir().join("users");
    std::fs::remove_file(&users).unwrap();
    add_user(&target.config, "dave@localhost", "dave's password");
    let mine = std::fs::read_to_string(&users).unwrap();

    // A data_dir holding anything else is refused; the users file alone is
    // an empty one.
    std::fs::write(target.data_dir().join("stray"), "x").unwrap();
    let out = target.cli(&["restore", archive.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("needs an empty"), "{}", text(&out));
    std::fs::remove_file(target.data_dir().join("stray")).unwrap();

    let out = target.cli(&["restore", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(names(&target.data_dir()), ["spool", "users", "users.restored"]);
    assert_eq!(std::fs::read_to_string(&users).unwrap(), mine, "the operator's users file is left alone");
    assert!(std::fs::read_to_string(target.data_dir().join("users.restored")).unwrap().contains("alice@localhost:"));
    target.spawn();
    assert!(!target.pop3().login("alice@localhost", PASSWORD).starts_with("+OK"), "dave's file is the one in use");
}

#[test]
fn backup_archive_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start();
    let dest = server.dir.path().join("b.tar");
    // Even over an archive someone left world-readable.
    std::fs::write(&dest, "old").unwrap();
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = server.cli(&["backup", dest.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(names(server.dir.path()).iter().filter(|n| n.starts_with("b.tar")).count(), 1, "no temporary left");
}

#[test]
fn restore_as_root_gives_the_spool_to_the_owner_of_data_dir() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let (_source, archive) = default_layout_backup();
    let target = Server::configure(Options::default());
    // The service user's (empty) data_dir; `sudo ringmail restore` into it.
    let data = target.data_dir();
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test runs as root");
    let out = target.cli(&["restore", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let mut todo = vec![data.join("spool")];
    let mut files = 0;
    while let Some(p) = todo.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!((m.uid(), m.gid()), (65534, 65534), "{}", p.display());
        if m.is_dir() {
            assert_eq!(m.permissions().mode() & 0o7777, 0o700, "{}", p.display());
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(m.permissions().mode() & 0o7777, 0o600, "{}", p.display());
            files += 1;
        }
    }
    assert!(files > 0);
}
