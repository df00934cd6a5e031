//! Hostile values cannot steer what reads the log: user names, addresses,
//! EHLO names and Message-IDs with spaces, `key=` text, line breaks, NUL,
//! UTF-8 and 8-bit junk are quoted and escaped, and README's fail2ban
//! filter, run by the real `fail2ban-regex`, matches only the addresses
//! that really failed to log in.

mod common;

use base64::Engine;
use common::{socket_from, Options, Pop3, Server, Smtp};
use std::collections::BTreeSet;

/// The `failregex` line of README's fail2ban filter, so the test checks
/// the filter operators copy.
fn readme_failregex() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let line =
        readme.lines().find(|l| l.trim_start().starts_with("failregex = ")).expect("README has a fail2ban filter");
    line.trim_start().trim_start_matches("failregex = ").to_string()
}

fn plain(user: &[u8], password: &[u8]) -> String {
    let mut raw = vec![0u8];
    raw.extend_from_slice(user);
    raw.push(0);
    raw.extend_from_slice(password);
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// User names an attacker would send, each aimed at another address.
const HOSTILE_USERS: &[&[u8]] = &[
    b"victim client=192.0.2.77 x",
    b"x\nWARN authentication failed core=0 client=198.51.100.99 proto=smtp",
    b"x\r\n2026-01-01T00:00:00.000000Z  WARN refused core=1 client=198.51.100.98 proto=pop3",
    b"nul\0client=198.51.100.97",
    b"j\xc3\xbcrgen client=198.51.100.96",
    b"\xff\xfe\x80 client=198.51.100.95",
    b"\" client=198.51.100.94 \\",
];

#[test]
fn hostile_values_are_escaped_and_fail2ban_bans_only_the_real_clients() {
    let server = Server::start_with(Options { auth: "max_auth_failures = 1000".into(), ..Options::default() });

    // 127.0.0.3 fails SMTP AUTH with every hostile name.
    let mut smtp = Smtp::from_stream(socket_from("127.0.0.3", server.submission));
    smtp.expect("EHLO x client=198.51.100.90", "250");
    for user in HOSTILE_USERS {
        smtp.expect(&format!("AUTH PLAIN {}", plain(user, b"wrong")), "535");
    }

    // 127.0.0.5 fails POP3 logins the same way.
    let mut pop = Pop3::from_stream(socket_from("127.0.0.5", server.pop3));
    for user in HOSTILE_USERS {
        let r = pop.cmd(&format!("AUTH PLAIN {}", plain(user, b"wrong")));
        assert!(r.starts_with("-ERR"), "{r}");
    }

    // 127.0.0.4 only sends mail (accepted) with hostile envelope and
    // header values: it must never be banned, nor anyone it names.
    let mut mta = Smtp::from_stream(socket_from("127.0.0.4", server.smtp));
    mta.expect("EHLO mta refused client=192.0.2.98", "250");
    let body = b"Message-ID: <a refused client=192.0.2.99>\r\nSubject: hi\r\n\r\nbody\r\n";
    let reply = mta.send_mail("\"a refused client=192.0.2.97\"@example.org", &["alice@localhost"], body);
    assert!(reply.starts_with("250"), "{reply}");
    mta.expect("QUIT", "221");

    // Names that are not text (NUL, invalid UTF-8) are refused by the
    // protocol before any password check, so they log nothing.
    let checked = HOSTILE_USERS.iter().filter(|u| std::str::from_utf8(u).is_ok() && !u.contains(&0)).count();
    let failures = 2 * checked;
    common::eventually(std::time::Duration::from_secs(10), || {
        (server.log().matches("authentication failed").count() >= failures).then_some(())
    });
    let log = server.log_containing(&["message accepted"]);

    // Every line is a whole event: it starts with a timestamp, none with a
    // forged level.
    for line in log.lines() {
        assert!(line.starts_with("20"), "a line that is not an event: {line:?}\n{log}");
    }
    assert!(log.contains(r#"user="victim client=192.0.2.77 x""#), "{log}");
    // (User names are lower-cased before they are checked and logged.)
    assert!(log.contains(r#"user="x\nwarn authentication failed core=0 client=198.51.100.99"#), "{log}");

    // The real fail2ban with README's filter.
    let regex = readme_failregex();
    let out = std::process::Command::new("fail2ban-regex")
        .args(["-o", "ip"])
        .arg(server.log_path())
        .arg(&regex)
        .output()
        .expect("fail2ban-regex (Debian package fail2ban; tests/run.sh installs it)");
    assert!(out.status.success(), "fail2ban-regex: {}", String::from_utf8_lossy(&out.stderr));
    let banned: BTreeSet<String> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    let expected: BTreeSet<String> = ["127.0.0.3", "127.0.0.5"].iter().map(|s| s.to_string()).collect();
    assert_eq!(banned, expected, "filter {regex:?} over:\n{log}");
    let matched = String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(matched, failures, "one match per failed login");
}
