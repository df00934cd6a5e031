//! A restarted server serves before its spool is recovered: new mail is
//! acknowledged (durably) while the old mail is read behind the cores, and
//! a crash in the middle of that loses and duplicates nothing.
//!
//! The recovery is held back with the debug-build hook
//! `RINGMAIL_TEST_HOLD_RECOVERY` (while the file it names exists, the
//! recovered spool is not handed to the cores), so the "during" is as long
//! as a test needs, not a race against a fast disk.

mod common;

use common::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// A server whose relay mail for far.test waits an hour (its MX is a port
/// nobody listens on), and the file that holds its recovery back.
fn server() -> (Server, PathBuf) {
    let hold = test_tmp().join(format!("hold-recovery-{}", free_port()));
    let _ = std::fs::remove_file(&hold);
    let server = Server::configure(Options {
        relay: format!("routes = {{ \"far.test\" = \"127.0.0.1:{}\" }}\nretry = [\"1h\"]", free_port()),
        env: vec![("RINGMAIL_TEST_HOLD_RECOVERY".into(), hold.display().to_string())],
        ..Options::default()
    });
    (server, hold)
}

fn status(server: &Server) -> String {
    let out = server.cli(&["status"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn mail_acknowledged_during_recovery_survives_a_second_crash_exactly_once() {
    let (mut server, hold) = server();
    server.spawn();
    let mut local = send_tagged(&server, "before", "alice@localhost", 60);
    let mut relayed = send_tagged(&server, "before-relay", "x@far.test", 20);

    // Restart with the recovery held: the server serves anyway.
    server.kill9();
    std::fs::write(&hold, b"").unwrap();
    server.spawn_serving();
    server.log_containing(&["holding the recovered spool"]);
    let s = status(&server);
    assert!(s.contains("recovery: in progress") && s.contains("0 of 2 cores"), "{s}");
    assert_eq!(server.metric("ringmail_recovering", &[]), 2.0);
    local.extend(send_tagged(&server, "during", "alice@localhost", 15));
    relayed.extend(send_tagged(&server, "during-relay", "x@far.test", 5));
    // A login to a mailbox not yet rebuilt waits (10 s), then says why.
    let mut p = server.pop3();
    let r = p.login("alice@localhost", PASSWORD);
    assert!(r.starts_with("-ERR [SYS/TEMP] recovering"), "{r}");

    // Crash again in the middle of the recovery, then once more mail.
    server.kill9();
    server.spawn_serving();
    local.extend(send_tagged(&server, "after", "alice@localhost", 10));
    relayed.extend(send_tagged(&server, "after-relay", "x@far.test", 5));
    assert_eq!(server.log().matches(RECOVERY_COMPLETE).count(), 1, "only the first run completed so far");
    std::fs::remove_file(&hold).unwrap();
    eventually(Duration::from_secs(30), || (server.log().matches(RECOVERY_COMPLETE).count() == 2).then_some(()));
    assert!(status(&server).contains("recovery: complete"), "{}", status(&server));
    assert_eq!(server.metric("ringmail_recovering", &[]), 0.0);

    // Every acknowledged local message exactly once, nothing else.
    let got = fetch_all(&server, "alice@localhost");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for m in &got {
        let text = String::from_utf8_lossy(m);
        let seq = text.lines().find_map(|l| l.strip_prefix("X-Seq: ")).expect("X-Seq").to_string();
        *seen.entry(seq).or_default() += 1;
    }
    assert_eq!(got.len(), local.len(), "{seen:?}");
    for tag in ["before", "during", "after"] {
        let n = seen.keys().filter(|k| k.starts_with(&format!("{tag}-"))).count();
        assert!(n > 0, "no {tag} message");
    }
    assert!(seen.values().all(|&n| n == 1), "duplicated: {seen:?}");
    // Every acknowledged relay message queued exactly once.
    let list = String::from_utf8_lossy(&server.cli(&["queue", "list"]).stdout).into_owned();
    for id in &relayed {
        assert_eq!(list.matches(id.as_str()).count(), 1, "{id} in\n{list}");
    }
    assert!(list.contains(&format!("-- {} queued", relayed.len())), "{list}");
}

#[test]
fn a_pop3_login_during_recovery_waits_for_its_mailbox() {
    let (mut server, hold) = server();
    server.spawn();
    send_tagged(&server, "old", "bob@localhost", 5);
    server.kill9();
    std::fs::write(&hold, b"").unwrap();
    server.spawn_serving();
    server.log_containing(&["holding the recovered spool"]);
    let addr = server.pop3;
    let login = std::thread::spawn(move || {
        let mut p = Pop3::connect(addr);
        let r = p.login("bob@localhost", PASSWORD);
        let stat = r.starts_with("+OK").then(|| p.stat());
        (r, stat)
    });
    // Released while the login waits (it waits up to 10 s).
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::remove_file(&hold).unwrap();
    let (r, stat) = login.join().unwrap();
    assert!(r.starts_with("+OK"), "{r}");
    assert_eq!(stat.map(|s| s.0), Some(5), "the whole recovered mailbox");
    // Each core flushes its own log lines, so the file's order is not the
    // events' order across cores: wait for both lines (the adopting core
    // may flush after the login's), then compare their timestamps.
    let log = server.log_containing(&["pop3 login", "mailbox_messages=5"]);
    let at = |needle: &str| -> String {
        let line = log.lines().rev().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle}:\n{log}"));
        line.split(' ').next().unwrap().to_string()
    };
    // The mailbox's owner is the core that adopted the 5 messages.
    let adopted = at("mailbox_messages=5");
    let logged_in = at("pop3 login");
    assert!(adopted <= logged_in, "the login was answered only after adoption:\n{log}");
}
