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
    // Wait for the reload, not by retrying RCPT: every 550 counts towards
    // limits.max_errors, which would end the session first.
    eventually(Duration::from_secs(10), || server.log().contains("users file reloaded users=4").then_some(()));
    c.expect("RCPT TO:<dave@localhost>", "250");
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

fn out_text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Wait until the server has reloaded the users file `n` times in all.
fn reloads(server: &Server, n: usize) {
    eventually(Duration::from_secs(10), || (server.log().matches("users file reloaded").count() >= n).then_some(()));
}

#[test]
fn user_add_as_root_keeps_the_users_files_owner_group_and_mode() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let server = Server::start();
    let users = server.dir.path().join("users");
    // As a packaged service would have it: owned by the service user, 0640.
    std::os::unix::fs::chown(&users, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test runs as root, as `sudo ringmail user add` does");

    let out = user_cli(&server.config, &["add", "dave@localhost"], "dave's password\n");
    assert!(out.status.success(), "{}", out_text(&out));
    let m = std::fs::metadata(&users).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (65534, 65534, 0o640), "owner, group and mode kept");
    let leftovers: Vec<_> = std::fs::read_dir(server.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("users."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    reloads(&server, 1);
    assert!(server.pop3().login("dave@localhost", "dave's password").starts_with("+OK"));
    assert!(!server.log().contains("users file not reloaded"), "{}", server.log());
}

#[test]
fn user_list_passwd_and_delete_reach_a_running_server() {
    let server = Server::start();
    let out = user_cli(&server.config, &["list"], "");
    assert!(out.status.success(), "{}", out_text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().collect::<Vec<_>>(), USERS);

    // passwd: the new password from stdin's first line works, the old one not.
    let out = user_cli(&server.config, &["passwd", "bob@localhost"], "new bob secret\nignored\n");
    assert!(out.status.success(), "{}", out_text(&out));
    reloads(&server, 1);
    assert!(server.pop3().login("bob@localhost", "new bob secret").starts_with("+OK"));
    assert!(!server.pop3().login("bob@localhost", PASSWORD).starts_with("+OK"));
    let text = std::fs::read_to_string(server.dir.path().join("users")).unwrap();
    assert!(!text.contains("new bob secret"), "only the hash is stored");

    // delete: gone from the list, and the server no longer takes mail for them.
    let out = user_cli(&server.config, &["delete", "carol@example.test"], "");
    assert!(out.status.success(), "{}", out_text(&out));
    let out = user_cli(&server.config, &["list"], "");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().collect::<Vec<_>>(), USERS[..2]);
    reloads(&server, 2);
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    c.expect("MAIL FROM:<bob@localhost>", "250");
    c.expect("RCPT TO:<carol@example.test>", "550 5.1.1");
    assert!(server.pop3().login("alice@localhost", PASSWORD).starts_with("+OK"), "the others are untouched");

    // Mistakes are refused with the reason, and change nothing.
    let before = std::fs::read_to_string(server.dir.path().join("users")).unwrap();
    let out = user_cli(&server.config, &["delete", "carol@example.test"], "");
    assert!(!out.status.success() && out_text(&out).contains("no user carol@example.test"), "{}", out_text(&out));
    let out = user_cli(&server.config, &["passwd", "alice@localhost"], "\n");
    assert!(!out.status.success() && out_text(&out).contains("no password on stdin"), "{}", out_text(&out));
    assert_eq!(std::fs::read_to_string(server.dir.path().join("users")).unwrap(), before);
}

#[test]
fn a_new_users_file_gets_the_owner_of_data_dir_and_mode_0600() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir_in(test_tmp()).unwrap();
    let cfg = dir.path().join("r.toml");
    // The default layout: the users file is <data_dir>/users.
    std::fs::write(&cfg, "data_dir = \"d\"\n[listen]\nsmtp = \"127.0.0.1:2525\"\n").unwrap();
    let data = dir.path().join("d");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
    let out = user_cli(&cfg, &["add", "erin@localhost"], "erin's password\n");
    assert!(out.status.success(), "{}", out_text(&out));
    let m = std::fs::metadata(data.join("users")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (65534, 65534, 0o600));
}
