//! systemd integration: the sd_notify protocol as systemd speaks it (the
//! test binds the notification socket itself and reads the datagrams the
//! server sends), and the shipped unit `tuning/ringmail.service` as
//! `systemd-analyze` (Debian package systemd; tests/run.sh installs it)
//! rates it.

mod common;

use common::*;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// A notification socket like systemd's: the server sends one datagram
/// per notification, `KEY=VALUE` lines.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = tempfile::tempdir_in(test_tmp()).unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        NotifySocket { socket, path, _dir: dir }
    }

    /// The next datagram's lines.
    fn next(&self) -> Vec<String> {
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).expect("a notification within 30 s");
        String::from_utf8_lossy(&buf[..n]).lines().map(str::to_string).collect()
    }
}

#[test]
fn the_server_notifies_ready_reloading_and_stopping() {
    let notify = NotifySocket::bind();
    let mut server = Server::start_with(Options {
        env: vec![("NOTIFY_SOCKET".into(), notify.path.display().to_string())],
        ..Options::default()
    });
    // `start_with` returned once the log said "ringmail ready"; READY=1
    // comes after it, when the listeners accept.
    let ready = notify.next();
    assert!(ready.contains(&"READY=1".to_string()), "{ready:?}");
    // The listeners accept (Smtp::connect checks the 220 greeting).
    server.smtp().expect("EHLO notify.test", "250");

    server.signal(libc::SIGHUP);
    let reloading = notify.next();
    assert!(reloading.contains(&"RELOADING=1".to_string()), "{reloading:?}");
    // systemd >= 253 refuses RELOADING=1 without the time it began.
    let usec = reloading.iter().find_map(|l| l.strip_prefix("MONOTONIC_USEC=")).expect("MONOTONIC_USEC");
    assert!(usec.parse::<u64>().is_ok_and(|u| u > 0), "{reloading:?}");
    let reloaded = notify.next();
    assert!(reloaded.contains(&"READY=1".to_string()), "READY=1 ends the reload: {reloaded:?}");
    assert!(server.log_containing(&["SIGHUP: config reloaded"]).contains("SIGHUP: config reloaded"));

    server.signal(libc::SIGTERM);
    let stopping = notify.next();
    assert!(stopping.contains(&"STOPPING=1".to_string()), "{stopping:?}");
    assert!(server.wait_exit(Duration::from_secs(30)).success());
}

fn unit_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tuning/ringmail.service")
}

/// The values of `key=` in the unit, in order.
fn unit_values(key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(unit_path()).unwrap();
    let prefix = format!("{key}=");
    text.lines().filter_map(|l| l.trim().strip_prefix(&prefix)).map(str::to_string).collect()
}

#[test]
fn the_unit_is_notify_and_validates_the_config_before_a_reload() {
    assert_eq!(unit_values("Type"), ["notify"]);
    let reload = unit_values("ExecReload");
    assert_eq!(reload.len(), 2, "{reload:?}");
    // systemd runs ExecReload= lines in order and stops at the first that
    // fails: a config check-config refuses never reaches the server.
    assert!(reload[0].contains("ringmail check-config"), "{reload:?}");
    assert_eq!(reload[0].split_whitespace().last(), unit_values("ExecStart")[0].split_whitespace().last());
    assert!(reload[1].contains("kill -HUP $MAINPID"), "{reload:?}");
}

#[test]
fn the_unit_syscall_filter_never_blocks_io_uring() {
    let filters = unit_values("SystemCallFilter");
    for filter in &filters {
        // A deny-list: only what it names is blocked.
        let groups = filter.strip_prefix('~').unwrap_or_else(|| panic!("an allow-list would block io_uring: {filter}"));
        for group in groups.split_whitespace() {
            let out = Command::new("systemd-analyze")
                .args(["syscall-filter", group])
                .output()
                .expect("systemd-analyze (install systemd; tests/run.sh does)");
            let calls = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success() && calls.contains(group), "{group}: {calls}");
            assert!(!calls.contains("io_uring"), "{group} holds an io_uring call: {calls}");
        }
    }
}

#[test]
fn systemd_analyze_rates_the_unit_exposure_at_most_3() {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit_path())
        .output()
        .expect("systemd-analyze (install systemd; tests/run.sh does)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // "→ Overall exposure level for ringmail.service: 1.7 OK 🙂"
    let line = text.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| panic!("{text}"));
    let score: f64 = line
        .rsplit_once(": ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no score in {line:?}"));
    assert!(score <= 3.0, "exposure {score} > 3.0:\n{text}");
}
