//! Spool checkpoints across crashes: a restart reads each core's checkpoint
//! plus the log after it, delivers every acknowledged message exactly once
//! (kill -9 at any point, during background recovery too), keeps deferred
//! mail on its schedule, and does without a checkpoint that is damaged.

mod common;

use common::*;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

const WRITTEN: &str = "spool checkpoint written";
const USED: &str = "spool recovered from checkpoints";

/// A server checkpointing every 200 ms, whose mail for far.test waits an
/// hour (nobody listens at its MX), and the file that holds its recovery.
fn server() -> (Server, PathBuf) {
    let hold = test_tmp().join(format!("hold-recovery-{}", free_port()));
    let _ = std::fs::remove_file(&hold);
    let server = Server::configure(Options {
        relay: format!("routes = {{ \"far.test\" = \"127.0.0.1:{}\" }}\nretry = [\"1h\"]", free_port()),
        spool: "checkpoint_interval = \"200ms\"\n".into(),
        env: vec![("RINGMAIL_TEST_HOLD_RECOVERY".into(), hold.display().to_string())],
        ..Options::default()
    });
    (server, hold)
}

/// Queue id -> (attempts, next attempt ms) of every queued share.
fn schedule(server: &Server) -> BTreeMap<String, (u64, Option<u64>)> {
    let out = server.cli(&["queue", "list", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    list["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            let id = m["queue_id"].as_str().unwrap().to_string();
            (id, (m["attempts"].as_u64().unwrap(), m["next_attempt_ms"].as_u64()))
        })
        .collect()
}

/// Wait until `n` more checkpoints than `before` were written.
fn checkpoints_after(server: &Server, before: usize, n: usize) {
    eventually(Duration::from_secs(30), || (server.log().matches(WRITTEN).count() >= before + n).then_some(()));
}

/// Every local message exactly once: the X-Seq tags, each counted.
fn tags(server: &Server, user: &str) -> HashMap<String, usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for m in fetch_all(server, user) {
        let text = String::from_utf8_lossy(&m);
        let seq = text.lines().find_map(|l| l.strip_prefix("X-Seq: ")).expect("X-Seq").to_string();
        *seen.entry(seq).or_default() += 1;
    }
    seen
}

#[test]
fn checkpointed_spool_survives_kill9_during_recovery_exactly_once_and_keeps_schedules() {
    let (mut server, hold) = server();
    server.spawn();
    let mut local = send_tagged(&server, "before", "alice@localhost", 40).len();
    let mut relayed = send_tagged(&server, "before-relay", "x@far.test", 10);
    // Deferred (the MX refuses), with an hour to wait.
    let deferred = eventually(Duration::from_secs(30), || {
        let s = schedule(&server);
        (s.len() == relayed.len() && s.values().all(|(a, next)| *a >= 1 && next.is_some())).then_some(s)
    });
    // A checkpoint after the deferrals: one more message makes one due (a
    // core whose spool has not changed since its last checkpoint takes
    // none, so waiting without appending could wait for ever).
    let before = server.log().matches(WRITTEN).count();
    local += send_tagged(&server, "mark", "alice@localhost", 1).len();
    checkpoints_after(&server, before, 1);

    // Crash; the restart reads the checkpoints.
    server.kill9();
    server.spawn();
    assert!(server.log_containing(&[USED]).contains(USED), "the restart did not use the checkpoints");
    assert_eq!(schedule(&server), deferred, "deferred mail keeps its schedule across checkpoint + restart");

    // More mail, a newer checkpoint, then a crash, and another during the
    // (held) background recovery after more mail arrived.
    let before = server.log().matches(WRITTEN).count();
    local += send_tagged(&server, "after", "alice@localhost", 20).len();
    relayed.extend(send_tagged(&server, "after-relay", "x@far.test", 5));
    checkpoints_after(&server, before, 1);
    server.kill9();
    std::fs::write(&hold, b"").unwrap();
    server.spawn_serving();
    assert!(server.log_containing(&["holding the recovered spool"]).contains("holding"));
    local += send_tagged(&server, "during", "alice@localhost", 15).len();
    relayed.extend(send_tagged(&server, "during-relay", "x@far.test", 5));
    server.kill9();
    server.spawn_serving();
    local += send_tagged(&server, "last", "alice@localhost", 5).len();
    std::fs::remove_file(&hold).unwrap();
    eventually(Duration::from_secs(30), || (server.log().matches(RECOVERY_COMPLETE).count() >= 3).then_some(()));

    let seen = tags(&server, "alice@localhost");
    assert_eq!(seen.len(), local, "{seen:?}");
    assert!(seen.values().all(|&n| n == 1), "duplicated: {seen:?}");
    let now = schedule(&server);
    for id in &relayed {
        assert!(now.contains_key(id), "{id} lost");
    }
    assert_eq!(now.len(), relayed.len());
    // The first deferrals keep their schedules across all these crashes
    // (their states' segments go only once a checkpoint holds them).
    for (id, due) in &deferred {
        assert_eq!(now.get(id), Some(due), "{id}: schedule lost after several restarts");
    }
}

/// Issue 13: a deferred message keeps its schedule exactly across three
/// kill -9 restarts with compaction and reclaim in between, though every
/// segment that held its first states (and its record) is deleted. Two
/// cores, mail sent over several sessions: most messages are accepted by
/// one core and their states written by the other (the owner of
/// far.test), in segments of nothing else that matters.
#[test]
fn deferred_mail_keeps_its_schedule_across_three_restarts_with_reclaim_between() {
    let mut server = Server::configure(Options {
        cores: 2,
        segment_size: 256 * 1024,
        relay: format!("routes = {{ \"far.test\" = \"127.0.0.1:{}\" }}\nretry = [\"1h\"]", free_port()),
        spool: "checkpoint_interval = \"200ms\"\ncompact_below = 50\ncompact_interval = \"200ms\"\n".into(),
        ..Options::default()
    });
    server.spawn();
    let relayed: Vec<String> = (0..8).flat_map(|i| send_tagged(&server, &format!("q{i}"), "x@far.test", 1)).collect();
    let deferred = eventually(Duration::from_secs(30), || {
        let s = schedule(&server);
        (s.len() == relayed.len() && s.values().all(|(a, next)| *a >= 1 && next.is_some())).then_some(s)
    });
    let initial = segment_files(&server);
    for round in 1..=3 {
        let mut c = server.smtp();
        c.expect("EHLO bury.test", "250");
        bury_under_deleted_mail(&server, &mut c);
        let before = server.log().matches(WRITTEN).count();
        send_tagged(&server, &format!("mark{round}"), "alice@localhost", 1);
        checkpoints_after(&server, before, 1);
        server.kill9();
        server.spawn();
        eventually(Duration::from_secs(30), || (server.log().matches(USED).count() >= round).then_some(()));
        assert_eq!(schedule(&server), deferred, "round {round}: schedules changed");
    }
    // Every segment that held the first deferrals' states is gone now.
    eventually(Duration::from_secs(20), || {
        let now = segment_files(&server);
        initial.iter().all(|s| !now.contains(s)).then_some(())
    });
    assert!(server.log_containing(&["spool segment compacted"]).contains("spool segment compacted"));
    server.kill9();
    server.spawn();
    assert_eq!(schedule(&server), deferred, "after the first segment was deleted");
}

/// Whether the server exits (it is left unreaped: a zombie) within `t`.
fn exited_within(server: &Server, t: Duration) -> bool {
    let stat = format!("/proc/{}/stat", server.pid());
    let deadline = std::time::Instant::now() + t;
    while std::time::Instant::now() < deadline {
        // The state follows the parenthesised command name.
        let state = std::fs::read_to_string(&stat).ok().and_then(|s| s.rsplit(") ").next().map(|r| r.starts_with('Z')));
        if state != Some(false) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Held: queue id -> whether `queue list` shows it held.
fn held(server: &Server) -> BTreeMap<String, bool> {
    let out = server.cli(&["queue", "list", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let messages = list["messages"].as_array().expect("messages");
    messages.iter().map(|m| (m["queue_id"].as_str().unwrap().to_string(), m["state"] == "held")).collect()
}

/// A crash after compaction's `Moved` records are durable, before any core
/// recorded the moved messages' states at the new places (the test hook
/// kills the server there): a restart carries each state from the old
/// place, so held mail stays held and deferred mail keeps its schedule,
/// and records them at the new place, so a second restart keeps them too.
#[test]
fn a_crash_in_the_middle_of_a_compaction_keeps_holds_and_schedules() {
    let crash = test_tmp().join(format!("crash-after-move-{}", free_port()));
    let _ = std::fs::remove_file(&crash);
    let mut server = Server::configure(Options {
        cores: 2,
        segment_size: 256 * 1024,
        relay: format!("routes = {{ \"far.test\" = \"127.0.0.1:{}\" }}\nretry = [\"1h\"]", free_port()),
        spool: "checkpoint_interval = \"200ms\"\ncompact_below = 50\ncompact_interval = \"200ms\"\n".into(),
        env: vec![("RINGMAIL_TEST_CRASH_AFTER_MOVE".into(), crash.display().to_string())],
        ..Options::default()
    });
    server.spawn();
    // Over several sessions, so that both cores' directories hold some.
    let relayed: Vec<String> = (0..6).flat_map(|i| send_tagged(&server, &format!("q{i}"), "x@far.test", 1)).collect();
    eventually(Duration::from_secs(30), || {
        let s = schedule(&server);
        (s.len() == relayed.len() && s.values().all(|(a, next)| *a >= 1 && next.is_some())).then_some(())
    });
    for id in &relayed[..3] {
        let out = server.cli(&["queue", "hold", id]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let (holds, schedules) = (held(&server), schedule(&server));
    assert_eq!(holds.values().filter(|h| **h).count(), 3, "{holds:?}");
    let queued_in = segment_files(&server);
    // The queued mail's segment, once the filler after it is deleted, is
    // worth compacting: the server dies as it moves the mail forward.
    std::fs::write(&crash, b"").unwrap();
    // A session's filler goes to the directory of the core it lands on:
    // bury again until one of them compacts queued mail.
    for _ in 0..6 {
        let mut c = server.smtp();
        c.expect("EHLO bury.test", "250");
        bury_under_deleted_mail(&server, &mut c);
        drop(c);
        if exited_within(&server, Duration::from_secs(3)) {
            break;
        }
    }
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(!status.success(), "killed by the hook: {status:?}");
    std::fs::remove_file(&crash).unwrap();

    let start = server.log().len();
    server.spawn();
    assert_eq!(held(&server), holds, "holds after the crash");
    assert_eq!(schedule(&server), schedules, "schedules after the crash");
    let carried = eventually(Duration::from_secs(10), || {
        let log = server.log()[start..].to_string();
        log.lines().find(|l| l.contains("recorded at its new place")).map(str::to_string)
    });
    // The restart reclaimed the moved mail's old segment; the states now
    // recorded at the new place outlive it.
    let now = segment_files(&server);
    assert!(queued_in.iter().any(|s| !now.contains(s)), "an old segment went: {queued_in:?} -> {now:?}");
    // Synced: that core's next checkpoint cut is after them.
    let core = carried.split_whitespace().find(|w| w.starts_with("core=")).expect("core=").to_string();
    eventually(Duration::from_secs(10), || {
        let log = server.log()[start..].to_string();
        let after = &log[log.find(carried.as_str())?..];
        after.lines().any(|l| l.contains(WRITTEN) && l.split_whitespace().any(|w| w == core)).then_some(())
    });
    server.restart();
    assert_eq!(held(&server), holds, "holds after a second restart");
    assert_eq!(schedule(&server), schedules, "schedules after a second restart");
}

#[test]
fn a_damaged_checkpoint_is_ignored_and_nothing_is_lost() {
    let (mut server, _hold) = server();
    server.spawn();
    let before = server.log().matches(WRITTEN).count();
    let local = send_tagged(&server, "m", "alice@localhost", 30).len();
    checkpoints_after(&server, before, 1);
    server.kill9();
    // Damage every checkpoint: one truncated, the other with a byte flipped.
    let spool = server.data_dir().join("spool");
    let mut damaged = 0;
    for (i, dir) in std::fs::read_dir(&spool).unwrap().flatten().enumerate() {
        let path = dir.path().join("checkpoint");
        let Ok(mut bytes) = std::fs::read(&path) else { continue };
        if i % 2 == 0 {
            bytes.truncate(bytes.len() / 2);
        } else {
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
        }
        std::fs::write(&path, &bytes).unwrap();
        damaged += 1;
    }
    assert!(damaged > 0, "no checkpoint written under {}", spool.display());
    server.spawn();
    let damaged_line = "spool checkpoint damaged: ignored";
    assert!(server.log_containing(&[damaged_line]).contains(damaged_line));
    assert!(!server.log().contains(USED), "a damaged checkpoint was used");
    let seen = tags(&server, "alice@localhost");
    assert_eq!(seen.len(), local, "{seen:?}");
    assert!(seen.values().all(|&n| n == 1), "duplicated: {seen:?}");
}

/// Whether a thread of process `pid` sleeps opening a FIFO nobody reads.
fn opening_a_fifo(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.flatten().any(|t| std::fs::read_to_string(t.path().join("wchan")).is_ok_and(|w| w == "wait_for_partner"))
}

#[test]
fn a_clean_stop_waits_for_the_checkpoint_being_taken_then_takes_its_own() {
    // One core, so that its directory is the only one written to.
    let mut server = Server::start_with(Options {
        cores: 1,
        spool: "checkpoint_interval = \"200ms\"\n".into(),
        ..Options::default()
    });
    // The next checkpoint's file is written as `checkpoint.tmp`: a FIFO
    // there holds the periodic one in its open(2) until someone reads.
    let fifo = server.data_dir().join("spool").join("core-0").join("checkpoint.tmp");
    let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo {}", fifo.display());
    let sent = send_tagged(&server, "s", "alice@localhost", 3).len();
    eventually(Duration::from_secs(30), || opening_a_fifo(server.pid()).then_some(()));
    let before = server.log().matches(WRITTEN).count();
    server.signal(libc::SIGTERM);
    let stopping = "stopping: no new connections";
    server.log_containing(&[stopping]);
    // Let the periodic checkpoint go on (it fails: a FIFO cannot be
    // synced) and the stop's own create a plain file.
    // SAFETY: open(2) with a NUL-terminated path; the fd is owned below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK) };
    assert!(fd >= 0, "open {}", fifo.display());
    std::fs::remove_file(&fifo).unwrap();
    // SAFETY: `fd` was just opened and is owned by nobody else.
    let mut reader = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match std::io::Read::read(&mut reader, &mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("reading the FIFO: {e}"),
            }
        }
    });
    assert!(server.wait_exit(Duration::from_secs(30)).success(), "{}", server.log());
    drain.join().unwrap();
    let log = server.log();
    let after_stop = &log[log.find(stopping).unwrap()..];
    let failed = after_stop.find("spool checkpoint not written").unwrap_or_else(|| panic!("{log}"));
    assert!(after_stop[failed..].contains(WRITTEN), "no checkpoint at the stop after the one being taken:\n{log}");
    assert_eq!(log.matches(WRITTEN).count(), before + 1, "{log}");
    // The next start reads that checkpoint and nothing before it.
    server.spawn();
    assert!(server.log_containing(&[USED]).contains(USED), "{}", server.log());
    let seen = tags(&server, "alice@localhost");
    assert_eq!(seen.len(), sent, "{seen:?}");
}
