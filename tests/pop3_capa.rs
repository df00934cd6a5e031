//! CAPA tells clients the site's retention (issue 14, item 6; RFC 2449
//! §6.5 LOGIN-DELAY, §6.7 EXPIRE): the site's values before login, with
//! USER where some users differ, and the user's own after login.

mod common;
use common::*;

fn capa(p: &mut Pop3) -> Vec<String> {
    let r = p.cmd("CAPA");
    assert!(r.starts_with("+OK"), "{r}");
    String::from_utf8(p.multiline()).unwrap().lines().map(str::to_string).collect()
}

fn policy_lines(lines: &[String]) -> Vec<&str> {
    lines.iter().map(String::as_str).filter(|l| l.starts_with("EXPIRE") || l.starts_with("LOGIN-DELAY")).collect()
}

#[test]
fn capa_reflects_retention_before_and_after_login() {
    let server = Server::start_with(Options {
        extra: "[retention]\nmax_age = \"30d\"\nlogin_delay = \"5m\"\n\
                [retention.users.\"alice@localhost\"]\ndelete_after_retrieve = true\n\
                [retention.domains.\"example.test\"]\nmax_age = \"36h\"\nlogin_delay = \"15m\"\n"
            .into(),
        ..Options::default()
    });
    let mut p = server.pop3();
    assert_eq!(policy_lines(&capa(&mut p)), ["EXPIRE 30 USER", "LOGIN-DELAY 300 USER"]);
    assert!(p.login("alice@localhost", PASSWORD).starts_with("+OK"));
    assert_eq!(policy_lines(&capa(&mut p)), ["EXPIRE 0", "LOGIN-DELAY 300"], "alice may not leave mail");
    p.cmd("QUIT");
    let mut p = server.pop3();
    assert!(p.login("bob@localhost", PASSWORD).starts_with("+OK"));
    assert_eq!(policy_lines(&capa(&mut p)), ["EXPIRE 30", "LOGIN-DELAY 300"]);
    p.cmd("QUIT");
    let mut p = server.pop3();
    assert!(p.login("carol@example.test", PASSWORD).starts_with("+OK"));
    assert_eq!(policy_lines(&capa(&mut p)), ["EXPIRE 1", "LOGIN-DELAY 900"], "36h is one whole day");
    p.cmd("QUIT");
}

#[test]
fn without_retention_capa_says_expire_never() {
    let server = Server::start();
    let mut p = server.pop3();
    assert_eq!(policy_lines(&capa(&mut p)), ["EXPIRE NEVER"]);
}
