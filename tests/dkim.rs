//! DKIM signing of relayed mail, checked by independent verifiers: dkimpy
//! (Debian's python3-dkim) for RSA and Ed25519, and opendkim-testmsg
//! (opendkim-tools) for RSA, each given the TXT record that
//! `ringmail dkim keygen` printed.

mod common;
#[path = "common/sink.rs"]
mod sink;

use common::*;
use ringmail::outbound::testdns::{TestDns, Zone};
use sink::{Script, Sink};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DKIM_CHECK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dkim_check.py");

/// `ringmail dkim keygen` for `server`: (TXT name, TXT value) from the one
/// line it printed.
fn keygen(server: &Server, domain: &str, selector: &str, algorithm: &str) -> (String, String) {
    let out = server.cli(&["dkim", "keygen", domain, selector, "--algorithm", algorithm]);
    assert!(out.status.success(), "keygen: {}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8(out.stdout).unwrap();
    assert_eq!(line.lines().count(), 1, "exactly one line on stdout: {line:?}");
    let (name, rest) = line.split_once(" IN TXT ").expect("a zone-file TXT line");
    let value: String = rest.trim().split('"').skip(1).step_by(2).collect();
    assert!(name.ends_with('.'), "{name}");
    (name.trim_end_matches('.').to_string(), value)
}

/// Append `[[dkim.sign]]` entries (key paths relative to the config).
fn add_keys(server: &Server, entries: &[(&str, &str, bool)]) {
    let mut text = std::fs::read_to_string(&server.config).unwrap();
    for (domain, selector, subdomains) in entries {
        text.push_str(&format!(
            "\n[[dkim.sign]]\ndomain = \"{domain}\"\nselector = \"{selector}\"\nkey = \"dkim/{domain}.{selector}.pem\"\nsubdomains = {subdomains}\n"
        ));
    }
    std::fs::write(&server.config, text).unwrap();
}

fn relay_opts(sink: &Sink, extra: &str) -> Options {
    Options {
        relay: format!("routes = {{ \"remote.test\" = \"{}\" }}\nretry = [\"1s\"]\n{extra}", sink.addr),
        ..Options::default()
    }
}

/// dkimpy's verdict on `msg`: its output lines, and whether all passed.
fn dkimpy(msg: &[u8], records: &[(String, String)]) -> (String, bool) {
    let dir = tempfile::tempdir_in(test_tmp()).unwrap();
    let file = dir.path().join("msg.eml");
    std::fs::write(&file, msg).unwrap();
    let out = Command::new("/usr/bin/python3")
        .arg(DKIM_CHECK)
        .arg("verify")
        .arg(&file)
        .args(records.iter().map(|(n, v)| format!("{n}={v}")))
        .output()
        .expect("python3 with python3-dkim");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (text, out.status.success())
}

fn tag(sig_header: &str, name: &str) -> Option<String> {
    let unfolded: String = sig_header.split_whitespace().collect::<Vec<_>>().join(" ");
    unfolded.split(';').find_map(|t| {
        let (k, v) = t.trim().split_once('=')?;
        (k.trim() == name).then(|| v.trim().to_string())
    })
}

/// The DKIM-Signature fields of a message, unfolded into one string each.
fn signatures(msg: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(msg);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut fields: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        match (line.starts_with(' ') || line.starts_with('\t'), fields.last_mut()) {
            (true, Some(last)) => last.push_str(line),
            _ => fields.push(line.to_string()),
        }
    }
    fields.into_iter().filter(|f| f.to_ascii_lowercase().starts_with("dkim-signature:")).collect()
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn keygen_records_verify_rsa_and_ed25519_signatures_with_dkimpy() {
    let sink = Sink::start("127.0.0.1", 0, Script::default());
    let mut server = Server::configure(relay_opts(&sink, ""));
    let rsa = keygen(&server, "example.org", "s2026", "rsa2048");
    let ed = keygen(&server, "example.org", "ed2026", "ed25519");
    assert!(rsa.1.starts_with("v=DKIM1; k=rsa; p=") && ed.1.starts_with("v=DKIM1; k=ed25519; p="));
    let key = server.dir.path().join("dkim/example.org.s2026.pem");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "key file mode");
    // A second keygen never overwrites the key.
    let again = server.cli(&["dkim", "keygen", "example.org", "s2026"]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("already exists"));
    add_keys(&server, &[("example.org", "s2026", false), ("example.org", "ed2026", false)]);
    server.spawn();

    // Dot-stuffed lines, bare LF lines (stored as CRLF), 8-bit text.
    let body = b"From: Alice <alice@Example.ORG>\r\nTo: x@remote.test\r\nSubject: signed\r\nMessage-ID: <d1@client.test>\r\n\r\n.leading dot\r\nbare\nlf lines\n\r\n\xe2\x82\xac\r\n";
    let before = now_secs();
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    let r = c.send_mail("alice@example.org", &["x@remote.test"], body);
    assert!(r.starts_with("250"), "{r}");
    let after = now_secs();
    eventually(Duration::from_secs(10), || (sink.count() == 1).then_some(()));
    let got = sink.received()[0].data.clone();

    let sigs = signatures(&got);
    assert_eq!(sigs.len(), 2, "RSA and Ed25519 side by side: {sigs:?}");
    let algs: Vec<String> = sigs.iter().filter_map(|s| tag(s, "a")).collect();
    assert!(algs.contains(&"rsa-sha256".to_string()) && algs.contains(&"ed25519-sha256".to_string()), "{algs:?}");
    for s in &sigs {
        assert_eq!(tag(s, "d").as_deref(), Some("example.org"));
        assert_eq!(tag(s, "c").as_deref(), Some("relaxed/relaxed"));
        let t: u64 = tag(s, "t").expect("t=").parse().unwrap();
        assert!((before..=after).contains(&t), "t={t} is the arrival time, within [{before}, {after}]");
        let h = tag(s, "h").expect("h=").to_ascii_lowercase();
        assert_eq!(h.split(':').filter(|n| n.trim() == "from").count(), 2, "From over-signed: {h}");
    }
    let (verdict, ok) = dkimpy(&got, &[rsa.clone(), ed.clone()]);
    assert!(ok, "dkimpy: {verdict}");
    assert_eq!(verdict.matches(" ok").count(), 2, "{verdict}");

    // The verifier can fail: a changed body is caught.
    let mut tampered = got.clone();
    let at = tampered.windows(5).position(|w| w == b"dot\r\n").unwrap();
    tampered[at] = b'D';
    let (verdict, ok) = dkimpy(&tampered, &[rsa, ed]);
    assert!(!ok && verdict.contains("FAIL"), "{verdict}");
}

/// `opendkim-testmsg` has no DNS option: run it in a private mount
/// namespace whose /etc/resolv.conf points at a test DNS on port 53.
fn opendkim_testmsg(msg: &[u8], dns_ip: &str, work: &Path) -> (bool, String) {
    let resolv = work.join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {dns_ip}\noptions attempts:1 timeout:2\n")).unwrap();
    let file = work.join("testmsg.eml");
    std::fs::write(&file, msg).unwrap();
    let script =
        format!("mount --bind {} /etc/resolv.conf && exec opendkim-testmsg -C < {}", resolv.display(), file.display());
    let out = Command::new("unshare").args(["-m", "sh", "-c", &script]).output().expect("unshare and opendkim-testmsg");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn opendkim_testmsg_verifies_the_rsa_signature_of_bdat_mail() {
    let sink = Sink::start("127.0.0.1", 0, Script { chunking: true, ..Script::default() });
    let mut server = Server::configure(relay_opts(&sink, ""));
    let rsa = keygen(&server, "example.org", "od", "rsa2048");
    add_keys(&server, &[("example.org", "od", false)]);
    server.spawn();
    let body = b"From: alice@example.org\r\nTo: x@remote.test\r\nSubject: for opendkim\r\nDate: Sun, 06 Dec 2026 03:00:00 +0000\r\n\r\n..two dots as sent\r\nend\r\n";
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    assert!(c.send_mail("alice@example.org", &["x@remote.test"], body).starts_with("250"));
    eventually(Duration::from_secs(10), || (sink.count() == 1).then_some(()));
    let got = sink.received()[0].clone();
    assert!(got.bdat, "went as BDAT");

    let dns = TestDns::start_at("127.0.53.1:53".parse().unwrap(), Zone::new().txt(&rsa.0, &rsa.1));
    let work = tempfile::tempdir_in(test_tmp()).unwrap();
    let (ok, text) = opendkim_testmsg(&got.data, "127.0.53.1", work.path());
    assert!(ok, "opendkim-testmsg refused the signature: {text}");
    assert!(dns.queries() > 0, "opendkim asked the test DNS");
    // And it can say no: a changed Subject breaks the signature.
    let tampered = String::from_utf8_lossy(&got.data).replace("for opendkim", "for 0pendkim");
    let (ok, text) = opendkim_testmsg(tampered.as_bytes(), "127.0.53.1", work.path());
    assert!(!ok, "a tampered message must not verify: {text}");
}

#[test]
fn a_retry_after_a_restart_sends_the_same_signature() {
    let sink = Sink::start(
        "127.0.0.1",
        0,
        Script {
            data_end: Box::new(|n| if n == 0 { "451 4.3.0 later".into() } else { "250 2.0.0 Ok".into() }),
            ..Script::default()
        },
    );
    let mut opts = relay_opts(&sink, "");
    opts.relay = opts.relay.replace("retry = [\"1s\"]", "retry = [\"2s\"]");
    let mut server = Server::configure(opts);
    let ed = keygen(&server, "example.org", "ed", "ed25519");
    add_keys(&server, &[("example.org", "ed", false)]);
    server.spawn();
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    let body = b"From: alice@example.org\r\nSubject: twice\r\n\r\nsame bytes\r\n";
    assert!(c.send_mail("alice@example.org", &["x@remote.test"], body).starts_with("250"));
    drop(c);
    server.log_containing(&["will retry"]);
    // Let a second or more pass, so a signature made "now" would differ.
    std::thread::sleep(Duration::from_millis(1100));
    server.restart();
    eventually(Duration::from_secs(20), || (sink.count() == 1).then_some(()));
    let attempts = sink.attempts.lock().unwrap().clone();
    assert_eq!(attempts.len(), 2, "one deferred attempt, one delivery");
    let (first, second) = (signatures(&attempts[0].data), signatures(&attempts[1].data));
    assert_eq!(first.len(), 1);
    assert_eq!(first, second, "the retry after the restart sends the same DKIM-Signature");
    let (verdict, ok) = dkimpy(&attempts[1].data, &[ed]);
    assert!(ok, "{verdict}");
}

#[test]
fn mail_without_a_single_from_domain_is_relayed_unsigned_and_logged() {
    let sink = Sink::start("127.0.0.1", 0, Script::default());
    let mut server = Server::configure(relay_opts(&sink, ""));
    keygen(&server, "example.org", "s1", "ed25519");
    add_keys(&server, &[("example.org", "s1", false)]);
    server.spawn();
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    let cases: [&[u8]; 3] = [
        b"Subject: no from\r\n\r\nx\r\n",
        b"From: a@example.org\r\nFrom: b@example.org\r\nSubject: two\r\n\r\nx\r\n",
        b"From: undisclosed-recipients\r\nSubject: no domain\r\n\r\nx\r\n",
    ];
    for body in cases {
        assert!(c.send_mail("alice@example.org", &["x@remote.test"], body).starts_with("250"));
    }
    // A domain without a key is not signed either (and not an error).
    assert!(c
        .send_mail("bob@other.example", &["x@remote.test"], b"From: bob@other.example\r\n\r\nx\r\n")
        .starts_with("250"));
    eventually(Duration::from_secs(10), || (sink.count() == 4).then_some(()));
    for m in sink.received() {
        assert!(signatures(&m.data).is_empty(), "unsigned: {}", String::from_utf8_lossy(&m.data));
    }
    let log = server.log_containing(&[
        "reason=\"no From header\"",
        "reason=\"more than one From header\"",
        "reason=\"From has no domain\"",
    ]);
    assert!(log.contains("dkim=\"none\""), "{log}");
}

#[test]
fn bounces_are_signed_by_the_parent_entry_with_subdomains() {
    // The DSN's From is MAILER-DAEMON@mx.mail.test; the entry for
    // "mail.test" with subdomains = true signs it. The bounce goes to a remote sender, so
    // it is relayed (to the same sink) like any other message.
    let sink = Sink::start(
        "127.0.0.1",
        0,
        Script {
            rcpt: Box::new(|a| if a.starts_with("nobody") { "550 5.1.1 no such user".into() } else { "250 Ok".into() }),
            ..Script::default()
        },
    );
    let mut server = Server::configure(relay_opts(&sink, ""));
    let text = std::fs::read_to_string(&server.config).unwrap();
    std::fs::write(&server.config, text.replace("hostname = \"mx.test\"", "hostname = \"mx.mail.test\"")).unwrap();
    let rsa = keygen(&server, "mail.test", "bounces", "rsa2048");
    add_keys(&server, &[("mail.test", "bounces", true)]);
    server.spawn();
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    let r = c.send_mail("sender@remote.test", &["nobody@remote.test"], b"From: sender@remote.test\r\n\r\nx\r\n");
    assert!(r.starts_with("250"), "{r}");
    eventually(Duration::from_secs(15), || (sink.count() == 1).then_some(()));
    let dsn = sink.received()[0].clone();
    assert_eq!(dsn.from, "", "a bounce has the null sender");
    let sigs = signatures(&dsn.data);
    assert_eq!(sigs.len(), 1, "{}", String::from_utf8_lossy(&dsn.data));
    assert_eq!(tag(&sigs[0], "d").as_deref(), Some("mail.test"));
    let (verdict, ok) = dkimpy(&dsn.data, &[rsa]);
    assert!(ok, "{verdict}");
}

#[test]
fn an_unusable_key_stops_start_up_and_a_reload_keeps_the_old_keys() {
    let sink = Sink::start("127.0.0.1", 0, Script::default());
    let mut server = Server::configure(relay_opts(&sink, ""));
    let dir = server.dir.path().join("dkim");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("example.org.bad.pem"), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        .unwrap();
    add_keys(&server, &[("example.org", "bad", false)]);
    let out =
        Command::new(env!("CARGO_BIN_EXE_ringmail")).args(["serve", "--config"]).arg(&server.config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must not start");
    assert!(err.contains("example.org.bad.pem"), "names the file: {err}");

    // A good key, then a reload whose key is missing: the old key stays.
    let text = std::fs::read_to_string(&server.config).unwrap();
    let start = text.find("\n[[dkim.sign]]").unwrap();
    std::fs::write(&server.config, &text[..start]).unwrap();
    let ed = keygen(&server, "example.org", "good", "ed25519");
    add_keys(&server, &[("example.org", "good", false)]);
    server.spawn();
    let text = std::fs::read_to_string(&server.config).unwrap();
    std::fs::write(&server.config, text.replace("dkim/example.org.good.pem", "dkim/missing.pem")).unwrap();
    server.signal(libc::SIGHUP);
    server.log_containing(&["DKIM keys not reloaded", "missing.pem"]);
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    assert!(c.send_mail("a@example.org", &["x@remote.test"], b"From: a@example.org\r\n\r\nx\r\n").starts_with("250"));
    eventually(Duration::from_secs(10), || (sink.count() == 1).then_some(()));
    let (verdict, ok) = dkimpy(&sink.received()[0].data, &[ed]);
    assert!(ok, "still signed with the old key: {verdict}");
}
