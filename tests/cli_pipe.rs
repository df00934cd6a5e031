//! A CLI command whose output is cut short by its reader (`… | head -1`)
//! ends quietly with status 0 (issue 14, item 6), not with a panic.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Run `ringmail ARGS --config CONFIG` with stdout a pipe whose reading end
/// is closed before the command writes; its exit status and stderr.
fn with_reader_gone(config: &std::path::Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringmail"))
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // What `head -1` does once it has its line; here before the first one.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn mailbox_list_and_user_list_into_a_closed_pipe_exit_0_quietly() {
    let server = Server::start();
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    for i in 0..3 {
        let r = c.send_mail("bob@localhost", &["alice@localhost"], format!("Subject: m{i}\r\n\r\nbody\r\n").as_bytes());
        assert!(r.starts_with("250"), "{r}");
    }
    eventually(Duration::from_secs(10), || (mailbox_count(&server, "alice@localhost") == 3).then_some(()));
    for args in [&["mailbox", "list", "alice@localhost"][..], &["user", "list"], &["status"]] {
        let (status, stderr) = with_reader_gone(&server.config, args);
        assert!(status.success(), "{args:?}: {status}: {stderr}");
        assert_eq!(stderr, "", "{args:?}: nothing on stderr");
    }
    // Still a normal failure when the failure is not stdout's.
    let out = server.cli(&["mailbox", "list", "nobody@nowhere.test"]);
    assert!(!out.status.success() || !out.stdout.is_empty() || !out.stderr.is_empty());
}
