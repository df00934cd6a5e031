//! The login cache (issue 14, item 1) seen from outside: it never lets in
//! a password the users file no longer accepts, and it changes nothing in
//! how failures are counted and locked out.

mod common;
use common::*;
use std::time::Duration;

/// `ringmail user ARGS` with `stdin`, which must succeed.
fn user_ok(config: &std::path::Path, args: &[&str], stdin: &str) {
    let out = user_cli(config, args, stdin);
    assert!(out.status.success(), "user {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Wait until the server has reloaded the users file `n` times in all.
fn reloads(server: &Server, n: usize) {
    eventually(Duration::from_secs(10), || (server.log().matches("users file reloaded").count() >= n).then_some(()));
}

/// One POP3 login from `from` (a loopback address): the PASS reply.
fn login_from(server: &Server, from: &str, user: &str, password: &str) -> String {
    let mut p = Pop3::from_stream(socket_from(from, server.pop3));
    let r = p.login(user, password);
    if r.starts_with("+OK") {
        p.cmd("QUIT");
    }
    r
}

fn cache(server: &Server, result: &str) -> f64 {
    server.metric("ringmail_auth_cache_total", &[("result", result)])
}

#[test]
fn a_changed_password_or_a_deleted_user_is_refused_at_once_though_cached() {
    // One core: every login meets the same cache.
    let server = Server::start_with(Options { cores: 1, ..Options::default() });
    for user in ["alice@localhost", "bob@localhost"] {
        for _ in 0..2 {
            assert!(login_from(&server, "127.0.0.1", user, PASSWORD).starts_with("+OK"));
        }
    }
    assert_eq!((cache(&server, "miss"), cache(&server, "hit")), (2.0, 2.0), "the second logins came from the cache");

    user_ok(&server.config, &["passwd", "alice@localhost"], "a new password\n");
    reloads(&server, 1);
    let r = login_from(&server, "127.0.0.1", "alice@localhost", PASSWORD);
    assert!(r.starts_with("-ERR [AUTH]"), "the old password, cached a moment ago, is refused: {r}");
    assert!(login_from(&server, "127.0.0.1", "alice@localhost", "a new password").starts_with("+OK"));

    user_ok(&server.config, &["delete", "bob@localhost"], "");
    reloads(&server, 2);
    let r = login_from(&server, "127.0.0.1", "bob@localhost", PASSWORD);
    assert!(r.starts_with("-ERR [AUTH]"), "a deleted user cannot log in from the cache: {r}");
    // Carol's line did not change: her entries outlive both reloads.
    assert!(login_from(&server, "127.0.0.1", "carol@example.test", PASSWORD).starts_with("+OK"));
    let hits = cache(&server, "hit");
    assert!(login_from(&server, "127.0.0.1", "carol@example.test", PASSWORD).starts_with("+OK"));
    assert_eq!(cache(&server, "hit"), hits + 1.0);
}

#[test]
fn a_wrong_password_after_a_cached_success_is_refused_counted_and_locks_out() {
    let server = Server::start_with(Options { cores: 1, auth: "max_auth_failures = 3\n".into(), ..Options::default() });
    for _ in 0..2 {
        assert!(login_from(&server, "127.0.0.5", "alice@localhost", PASSWORD).starts_with("+OK"));
    }
    // Three wrong guesses from one address: the same wrong password, so
    // the second and third are refused from the cache.
    for _ in 0..3 {
        let r = login_from(&server, "127.0.0.5", "alice@localhost", "guess");
        assert!(r.starts_with("-ERR [AUTH]"), "{r}");
    }
    assert_eq!(cache(&server, "hit"), 3.0, "one cached success, two cached refusals");
    assert_eq!(server.metric("ringmail_auth_total", &[("result", "failure")]), 3.0, "cached refusals count");
    // Locked out: even the right (and cached) password is refused from there.
    let r = login_from(&server, "127.0.0.5", "alice@localhost", PASSWORD);
    assert!(r.starts_with("-ERR [AUTH]"), "{r}");
    assert_eq!(server.metric("ringmail_auth_total", &[("result", "failure")]), 4.0);
    // The user herself, from elsewhere, still gets in.
    assert!(login_from(&server, "127.0.0.6", "alice@localhost", PASSWORD).starts_with("+OK"));
}
