//! A full disk: new mail gets 452 4.3.1, nothing acknowledged is lost, and
//! mail is taken again once there is room. The data dir is a small tmpfs
//! (the tests run as root, as CI does).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A tmpfs mounted for the test; lazily unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Wait until core 0's write segment and its spare are both on disk (they
/// are made in the background after the first message).
fn write_segment_and_spare_exist(server: &Server) {
    let core0 = server.data_dir().join("spool/core-0");
    eventually(Duration::from_secs(10), || {
        let segments = std::fs::read_dir(&core0)
            .ok()?
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with("segment-") && !name.ends_with(".tmp")
            })
            .count();
        (segments >= 2).then_some(())
    });
}

fn free_bytes(p: &Path) -> u64 {
    let out = Command::new("df").args(["-B1", "--output=avail"]).arg(p).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
}

#[test]
fn a_full_disk_refuses_with_452_loses_nothing_and_recovers() {
    let mut server = Server::configure(Options { cores: 1, ..Options::default() });
    let _mount = Tmpfs::mount(&server.data_dir(), "6m");
    server.spawn();
    // The first message makes the write segment and its spare (in the
    // background): let both exist before measuring, or the filler could
    // take the spare's room and refuse mail from the second message on.
    let mut first = server.smtp();
    first.expect("EHLO full.test", "250");
    let r = first.send_mail("x@localhost", &["bob@localhost"], b"Subject: for bob\r\n\r\nhi\r\n");
    assert!(r.starts_with("250"), "{r}");
    write_segment_and_spare_exist(&server);
    // Leave about 1.6 MiB: room for one more 1 MiB segment, then none.
    let filler = server.data_dir().join("filler");
    let take = free_bytes(&server.data_dir()).saturating_sub(1_600_000);
    std::fs::write(&filler, vec![1u8; take as usize]).unwrap();

    let body = |i: usize| format!("Subject: m{i}\r\n\r\n{}\r\n", "f".repeat(40_000));
    let mut acked = Vec::new();
    let mut refusal = None;
    let mut c = server.smtp();
    c.expect("EHLO full.test", "250");
    for i in 0..200 {
        let mail = c.cmd("MAIL FROM:<x@localhost>");
        if mail.starts_with("452") {
            refusal = Some(mail);
            break;
        }
        assert!(mail.starts_with("250"), "{mail}");
        c.expect("RCPT TO:<alice@localhost>", "250");
        c.expect("DATA", "354");
        c.send(&dot_stuff(body(i).as_bytes()));
        c.send(b".\r\n");
        let r = c.reply();
        if r.starts_with("250") {
            acked.push(i);
        } else {
            assert!(r.starts_with("452 4.3.1"), "{r}");
            refusal = Some(r);
            break;
        }
    }
    let refusal = refusal.expect("the disk filled up within 200 messages of 40 KB");
    assert!(refusal.starts_with("452 4.3.1"), "{refusal}");
    assert!(acked.len() >= 3, "some mail fitted before the disk was full: {acked:?}");
    // Still refusing, on a new session too.
    let mut c2 = server.smtp();
    c2.expect("EHLO full.test", "250");
    c2.expect("MAIL FROM:<x@localhost>", "452");
    assert!(server.log_containing(&["spool full"]).contains("spool full"), "{}", server.log());

    // Room again: mail is taken within a moment.
    std::fs::remove_file(&filler).unwrap();
    eventually(Duration::from_secs(10), || {
        let mut c = server.smtp();
        c.expect("EHLO full.test", "250");
        c.cmd("MAIL FROM:<x@localhost>").starts_with("250").then_some(())
    });
    let mut c3 = server.smtp();
    c3.expect("EHLO full.test", "250");
    let r = c3.send_mail("x@localhost", &["alice@localhost"], b"Subject: after\r\n\r\nroom again\r\n");
    assert!(r.starts_with("250"), "{r}");
    assert!(server.log_containing(&["spool has room again"]).contains("spool has room again"));

    // Nothing acknowledged was lost, across a kill -9 too.
    server.restart();
    let got = fetch_all(&server, "alice@localhost");
    let subjects: Vec<String> = got
        .iter()
        .map(|m| String::from_utf8_lossy(m).lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap().to_string())
        .collect();
    for i in &acked {
        assert!(subjects.contains(&format!("m{i}")), "acknowledged m{i} was lost");
    }
    assert!(subjects.contains(&"after".to_string()));
    assert_eq!(subjects.len(), acked.len() + 1, "{subjects:?}");
    server.kill9();
}

#[test]
fn deleting_works_on_a_full_disk_and_frees_it_without_a_restart() {
    let mut server = Server::configure(Options { cores: 1, ..Options::default() });
    let _mount = Tmpfs::mount(&server.data_dir(), "6m");
    server.spawn();
    let mut c = server.smtp();
    c.expect("EHLO full.test", "250");
    let r = c.send_mail("x@localhost", &["bob@localhost"], b"Subject: for bob\r\n\r\nhi\r\n");
    assert!(r.starts_with("250"), "{r}");
    write_segment_and_spare_exist(&server);
    let filler = server.data_dir().join("filler");
    let take = free_bytes(&server.data_dir()).saturating_sub(1_600_000);
    std::fs::write(&filler, vec![1u8; take as usize]).unwrap();

    // Fill the disk: the refusal comes at MAIL (452 4.3.1), never as a
    // failure after DATA.
    let body = format!("Subject: m\r\n\r\n{}\r\n", "f".repeat(40_000));
    let mut acked = 0;
    let refusal = loop {
        assert!(acked < 200, "the disk never filled");
        let mail = c.cmd("MAIL FROM:<x@localhost>");
        if !mail.starts_with("250") {
            break mail;
        }
        c.expect("RCPT TO:<alice@localhost>", "250");
        c.expect("DATA", "354");
        c.send(&dot_stuff(body.as_bytes()));
        c.send(b".\r\n");
        let r = c.reply();
        assert!(r.starts_with("250"), "refused after DATA, not at MAIL: {r}");
        acked += 1;
    };
    assert!(refusal.starts_with("452 4.3.1"), "{refusal}");

    // The way out: delete. POP3 QUIT commits its deletions ...
    let mut p = server.pop3();
    p.login("alice@localhost", PASSWORD);
    let (n, _) = p.stat();
    assert_eq!(n, acked);
    for i in 1..=n {
        let r = p.cmd(&format!("DELE {i}"));
        assert!(r.starts_with("+OK"), "{r}");
    }
    let quit = p.cmd("QUIT");
    assert!(quit.starts_with("+OK"), "{quit}");
    // ... and so does the operator's delete.
    let listing = server.cli(&["mailbox", "list", "bob@localhost"]);
    let uid =
        String::from_utf8_lossy(&listing.stdout).lines().next().and_then(|l| l.split("  ").next().map(str::to_string));
    let uid = uid.unwrap_or_else(|| panic!("no uid in {:?}", String::from_utf8_lossy(&listing.stdout)));
    let out = server.cli(&["mailbox", "delete", "bob@localhost", &uid]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    // The dead segments are reclaimed: mail is taken again with the filler
    // still there, no restart.
    eventually(Duration::from_secs(10), || {
        let mut c = server.smtp();
        c.expect("EHLO full.test", "250");
        c.cmd("MAIL FROM:<x@localhost>").starts_with("250").then_some(())
    });
    assert!(filler.exists());
    server.restart();
    assert_eq!(mailbox_count(&server, "alice@localhost"), 0, "deletions are durable");
    assert_eq!(mailbox_count(&server, "bob@localhost"), 0);
}

#[test]
fn the_configured_cap_refuses_new_mail_and_counts_in_metrics() {
    // Each core makes its first 1 MiB segment and the spare after it: over
    // the cap from the start.
    let server = Server::start_with(Options { spool: "max_size = 1500000\n".into(), ..Options::default() });
    let refused = eventually(Duration::from_secs(20), || {
        let mut c = server.smtp();
        c.expect("EHLO cap.test", "250");
        let r = c.cmd("MAIL FROM:<x@localhost>");
        if r.starts_with("452") {
            return Some(r);
        }
        c.expect("RCPT TO:<alice@localhost>", "250");
        c.expect("DATA", "354");
        c.send(b"Subject: fill\r\n\r\nx\r\n.\r\n");
        let stored = c.reply();
        assert!(stored.starts_with("250") || stored.starts_with("452 4.3.1"), "{stored}");
        None
    });
    assert!(refused.starts_with("452 4.3.1"), "{refused}");
    assert!(server.metric("ringmail_spool_full", &[]) >= 1.0);
    // Log lines are written in batches: wait for it rather than race it.
    assert!(server.log_containing(&["spool.max_size = 1500000"]).contains("spool.max_size = 1500000"));
}
