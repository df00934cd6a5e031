//! The command line: config checking, user management, start-up errors,
//! and the running server picking up new users.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

fn ringmail(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ringmail")).args(args).output().unwrap()
}

#[test]
fn check_config_names_file_line_and_unknown_key() {
    let dir = tempfile::tempdir_in(test_tmp()).unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "hostname = \"a\"\n[listen]\nsmtp = \"127.0.0.1:2525\"\nsmpt = \"x\"\n").unwrap();
    let out = ringmail(&["check-config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("line 4") && err.contains("smpt"), "{err}");

    let out = ringmail(&["serve", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success(), "serve refuses a bad config");

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "hostname = \"a\"\n[listen]\nsmtp = \"127.0.0.1:2525\"\n").unwrap();
    let out = ringmail(&["check-config", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn malformed_users_file_stops_start_up_with_file_and_line() {
    let dir = tempfile::tempdir_in(test_tmp()).unwrap();
    let cfg = dir.path().join("r.toml");
    let port = free_port();
    std::fs::write(
        &cfg,
        format!("data_dir = \"d\"\n[listen]\nsmtp = \"127.0.0.1:{port}\"\n[runtime]\nio_memory = 1048576\n"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("d")).unwrap();
    std::fs::write(dir.path().join("d/users"), "# ok\nalice@localhost:{PLAIN}secret\n").unwrap();
    let out = ringmail(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("users:2:") && err.contains("{PLAIN}"), "{err}");
}

#[test]
fn busy_port_stops_start_up_with_a_reason() {
    let hog = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hog.local_addr().unwrap().port();
    let dir = tempfile::tempdir_in(test_tmp()).unwrap();
    let cfg = dir.path().join("r.toml");
    std::fs::write(
        &cfg,
        format!("data_dir = \"d\"\n[listen]\nsmtp = \"127.0.0.1:{port}\"\n[runtime]\nio_memory = 1048576\n"),
    )
    .unwrap();
    let out = ringmail(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("127.0.0.1:{port}")));
}

#[test]
fn user_add_is_picked_up_by_a_running_server() {
    let server = Server::start();
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    c.expect("MAIL FROM:<bob@localhost>", "250");
    c.expect("RCPT TO:<dave@localhost>", "550 5.1.1");
    add_user(&server.config, "dave@localhost", "dave's password");
    eventually(Duration::from_secs(10), || c.cmd("RCPT TO:<dave@localhost>").starts_with("250").then_some(()));
    let text = std::fs::read_to_string(server.dir.path().join("users")).unwrap();
    assert!(!text.contains("dave's password"), "only the hash is stored");
    let mut p = server.pop3();
    assert!(p.login("dave@localhost", "dave's password").starts_with("+OK"));
}

#[test]
fn broken_users_file_on_reload_keeps_the_old_users() {
    let server = Server::start();
    let users = server.dir.path().join("users");
    let mut text = std::fs::read_to_string(&users).unwrap();
    text.push_str("garbage line\n");
    std::fs::write(&users, text).unwrap();
    eventually(Duration::from_secs(10), || server.log().contains("users file not reloaded").then_some(()));
    assert!(server.pop3().login("alice@localhost", PASSWORD).starts_with("+OK"));
}
