//! SPF, DKIM, DMARC and ARC checks of mail arriving for local mailboxes,
//! against a test DNS on loopback: messages signed (and ARC-sealed) by
//! dkimpy, SPF records that pass, fail, softfail, are missing or never
//! answer, DMARC p=reject with "tag" and "enforce", forged
//! Authentication-Results removed. The client is not in
//! relay.permit_relay_from, so it is checked like any Internet sender.

mod common;

use common::*;
use ringmail::outbound::testdns::{TestDns, Zone};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const DKIM_CHECK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dkim_check.py");

/// An RSA key made by openssl (PKCS#1, which dkimpy reads), and the `p=`
/// of its DNS record.
fn rsa_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(format!("{name}.pem"));
    let ok = Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .expect("openssl")
        .status
        .success();
    assert!(ok, "openssl genrsa");
    let der = Command::new("openssl").args(["rsa", "-pubout", "-outform", "DER", "-in"]).arg(&key).output().unwrap();
    assert!(der.status.success());
    use base64::Engine;
    (key, base64::engine::general_purpose::STANDARD.encode(der.stdout))
}

/// `msg` as dkimpy signs (`sign`) or ARC-seals (`arc`) it.
fn dkimpy(mode: &str, msg: &[u8], key: &Path, domain: &str, selector: &str, extra: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir_in(test_tmp()).unwrap();
    let file = dir.path().join("in.eml");
    std::fs::write(&file, msg).unwrap();
    let out = Command::new("/usr/bin/python3")
        .arg(DKIM_CHECK)
        .arg(mode)
        .arg(&file)
        .arg(key)
        .args([domain, selector])
        .args(extra)
        .output()
        .expect("python3 with python3-dkim");
    assert!(out.status.success(), "dkimpy {mode}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

struct World {
    dns: TestDns,
    server: Server,
    key: PathBuf,
    _keys: tempfile::TempDir,
}

/// The zone: example.com passes everything (SPF for 127.0.0.1, a DKIM key
/// at sel._domainkey, DMARC p=reject); softfail.example and fail.example
/// have SPF ~all / -all for another address and DMARC p=reject;
/// nospf.example has no TXT at all; slow.example never answers;
/// loop.example includes itself; void3.example needs three lookups of
/// names that do not exist (void2.example two).
fn world(verify: &str) -> World {
    let keys = tempfile::tempdir_in(test_tmp()).unwrap();
    let (key, public) = rsa_key(keys.path(), "sel");
    let (arc_key, arc_public) = rsa_key(keys.path(), "arc");
    std::fs::copy(&arc_key, keys.path().join("arc-key.pem")).unwrap();
    let dns = TestDns::start(
        Zone::new()
            .txt("example.com", "v=spf1 ip4:127.0.0.1 -all")
            .txt("sel._domainkey.example.com", &format!("v=DKIM1; k=rsa; p={public}"))
            .txt("_dmarc.example.com", "v=DMARC1; p=reject")
            .txt("softfail.example", "v=spf1 ip4:192.0.2.1 ~all")
            .txt("fail.example", "v=spf1 ip4:192.0.2.1 -all")
            .txt("_dmarc.fail.example", "v=DMARC1; p=reject")
            .a("nospf.example", "192.0.2.7")
            .silent("slow.example")
            .txt("loop.example", "v=spf1 include:loop.example -all")
            .txt("void3.example", "v=spf1 a:n1.void.example a:n2.void.example a:n3.void.example -all")
            .txt("void2.example", "v=spf1 a:n1.void.example a:n2.void.example -all")
            .txt("arc._domainkey.forwarder.example", &format!("v=DKIM1; k=rsa; p={arc_public}")),
    );
    let server = Server::start_with(Options {
        // Nothing on loopback is ours: the test client is checked.
        permit_relay_from: r#"["10.255.255.0/24"]"#,
        relay: format!("dns_server = \"{}\"", dns.addr()),
        extra: format!("\n[verify]\ntimeout = \"2s\"\n{verify}\n"),
        ..Options::default()
    });
    World { dns, server, key, _keys: keys }
}

/// Send `msg` over port 25 from 127.0.0.1 as `from` to alice; the reply.
fn deliver(server: &Server, from: &str, msg: &[u8]) -> String {
    let mut c = server.smtp();
    c.expect("EHLO client.example.com", "250");
    c.send_mail(from, &["alice@localhost"], msg)
}

/// The Authentication-Results fields of a header section.
fn results(head: &str) -> Vec<String> {
    head.lines().filter(|l| l.starts_with("Authentication-Results:")).map(str::to_string).collect()
}

#[test]
fn dkim_spf_and_dmarc_pass_fail_and_errors_are_recorded_in_one_header() {
    let w = world("");
    let plain = b"From: Ann <ann@example.com>\r\nTo: alice@localhost\r\nSubject: hello\r\nDate: Sun, 06 Dec 2026 03:00:00 +0000\r\n\r\nbody line\r\n";
    let signed = dkimpy("sign", plain, &w.key, "example.com", "sel", &[]);
    let mut n = 0;
    let mut check = |from: &str, msg: &[u8]| -> String {
        let r = deliver(&w.server, from, msg);
        assert!(r.starts_with("250"), "{r}");
        n += 1;
        let head = newest_header(&w.server, n);
        let found = results(&head);
        assert_eq!(found.len(), 1, "exactly one Authentication-Results: {head}");
        assert!(head.starts_with("Authentication-Results: mx.test;"), "on top: {head}");
        found[0].clone()
    };

    // Everything passes.
    let ar = check("ann@example.com", &signed);
    for want in [
        "spf=pass",
        "smtp.mailfrom=ann@example.com",
        "dkim=pass",
        "header.d=example.com",
        "header.s=sel",
        "dmarc=pass",
        "header.from=example.com",
    ] {
        assert!(ar.contains(want), "{want} in {ar}");
    }

    // Body tampered, then a signed header tampered: the signature fails
    // (SPF still passes, so DMARC passes through SPF alignment).
    let body_changed = String::from_utf8_lossy(&signed).replace("body line", "body lime");
    let ar = check("ann@example.com", body_changed.as_bytes());
    assert!(ar.contains("dkim=fail") && ar.contains("spf=pass"), "{ar}");
    let subject_changed = String::from_utf8_lossy(&signed).replace("Subject: hello", "Subject: hellO");
    let ar = check("ann@example.com", subject_changed.as_bytes());
    assert!(ar.contains("dkim=fail"), "{ar}");

    // An unknown selector: no key, not a pass.
    let other = dkimpy("sign", plain, &w.key, "example.com", "nosuchsel", &[]);
    let ar = check("ann@example.com", &other);
    assert!(ar.contains("dkim=permerror") || ar.contains("dkim=neutral") || ar.contains("dkim=none"), "{ar}");
    assert!(!ar.contains("dkim=pass"), "{ar}");

    // Unsigned mail: dkim=none.
    let ar = check("ann@example.com", plain);
    assert!(ar.contains("dkim=none"), "{ar}");

    // SPF softfail, fail, none and temperror (a DNS server that never answers).
    let from_domain = |d: &str| format!("From: x@{d}\r\nSubject: spf\r\n\r\nx\r\n");
    let ar = check("x@softfail.example", from_domain("softfail.example").as_bytes());
    assert!(ar.contains("spf=softfail"), "{ar}");
    let ar = check("x@fail.example", from_domain("fail.example").as_bytes());
    assert!(ar.contains("spf=fail") && ar.contains("dmarc=fail"), "p=reject under \"tag\" is stored, marked: {ar}");
    let ar = check("x@nospf.example", from_domain("nospf.example").as_bytes());
    assert!(ar.contains("spf=none"), "{ar}");
    // SPF's limits: an include loop (10 lookups), three void lookups; two
    // void lookups are still allowed (the record then simply fails).
    let ar = check("x@loop.example", from_domain("loop.example").as_bytes());
    assert!(ar.contains("spf=permerror"), "{ar}");
    let ar = check("x@void3.example", from_domain("void3.example").as_bytes());
    assert!(ar.contains("spf=permerror"), "{ar}");
    let ar = check("x@void2.example", from_domain("void2.example").as_bytes());
    assert!(ar.contains("spf=fail"), "{ar}");
    let started = std::time::Instant::now();
    let ar = check("x@slow.example", from_domain("slow.example").as_bytes());
    assert!(ar.contains("spf=temperror"), "{ar}");
    assert!(started.elapsed() < Duration::from_secs(30), "the session was not stalled past the timeout");
    assert!(w.dns.queries() > 0);
    // Each message's results are in the log, by queue id.
    w.server.log_containing(&["sender authentication", "spf=softfail"]);
}

#[test]
fn forged_results_naming_us_are_removed_others_kept() {
    let w = world("");
    let msg = b"Authentication-Results: mx.test; dkim=pass header.d=paypal.example; dmarc=pass\r\n\
Authentication-Results: MX.TEST (forged) 1; spf=pass\r\n\
Authentication-Results: relay.elsewhere.example; spf=pass smtp.mailfrom=x@fail.example\r\n\
From: x@fail.example\r\nSubject: forged\r\n\r\nx\r\n";
    let r = deliver(&w.server, "x@fail.example", msg);
    assert!(r.starts_with("250"), "{r}");
    let head = newest_header(&w.server, 1);
    let found = results(&head);
    assert_eq!(found.len(), 2, "ours and the foreign one: {head}");
    assert!(found[0].starts_with("Authentication-Results: mx.test;") && found[0].contains("dmarc=fail"), "{head}");
    assert!(found[1].contains("relay.elsewhere.example"), "{head}");
    assert!(!head.contains("paypal.example") && !head.contains("(forged)"), "forgeries removed: {head}");
}

#[test]
fn dmarc_reject_is_enforced_with_550_and_nothing_stored() {
    let w = world("dmarc_policy = \"enforce\"");
    let r = deliver(&w.server, "x@fail.example", b"From: x@fail.example\r\nSubject: spoof\r\n\r\nx\r\n");
    assert!(r.starts_with("550 5.7.1"), "{r}");
    assert!(r.contains("DMARC"), "{r}");
    // A passing message still goes through, so the 550 was about DMARC.
    let r = deliver(&w.server, "ann@example.com", b"From: ann@example.com\r\nSubject: fine\r\n\r\nx\r\n");
    assert!(r.starts_with("250"), "{r}");
    let head = newest_header(&w.server, 1);
    assert!(head.contains("dmarc=pass"), "{head}");
    assert_eq!(mailbox_count(&w.server, "alice@localhost"), 1, "the refused message was not stored");
    w.server.log_containing(&["message refused by DMARC policy"]);
}

#[test]
fn an_arc_chain_sealed_by_a_forwarder_validates() {
    let w = world("");
    let msg = b"From: list@forwarder.example\r\nTo: alice@localhost\r\nSubject: via a list\r\n\r\nforwarded\r\n";
    let key = w._keys.path().join("arc-key.pem");
    let sealed = dkimpy("arc", msg, &key, "forwarder.example", "arc", &["lists.forwarder.example"]);
    let r = deliver(&w.server, "list@forwarder.example", &sealed);
    assert!(r.starts_with("250"), "{r}");
    let ar = results(&newest_header(&w.server, 1)).remove(0);
    assert!(ar.contains("arc=pass"), "{ar}");
    // A broken seal (the body changed after sealing) does not pass.
    let broken = String::from_utf8_lossy(&sealed).replace("forwarded", "f0rwarded");
    let r = deliver(&w.server, "list@forwarder.example", broken.as_bytes());
    assert!(r.starts_with("250"), "{r}");
    let ar = results(&newest_header(&w.server, 2)).remove(0);
    assert!(ar.contains("arc=fail"), "{ar}");
}

#[test]
fn our_own_clients_are_not_checked() {
    // permit_relay_from covers loopback here: our clients, no header.
    let dns =
        TestDns::start(Zone::new().txt("fail.example", "v=spf1 -all").txt("_dmarc.fail.example", "v=DMARC1; p=reject"));
    // (DANE off: its start-up probe would be a query of its own.)
    let server = Server::start_with(Options {
        relay: format!("dns_server = \"{}\"\ndane = false", dns.addr()),
        extra: "\n[verify]\ndmarc_policy = \"enforce\"\n".into(),
        ..Options::default()
    });
    let r = deliver(&server, "x@fail.example", b"From: x@fail.example\r\nSubject: ours\r\n\r\nx\r\n");
    assert!(r.starts_with("250"), "{r}");
    let head = newest_header(&server, 1);
    assert!(results(&head).is_empty(), "{head}");
    assert_eq!(dns.queries(), 0, "no lookups for our own clients");
}
