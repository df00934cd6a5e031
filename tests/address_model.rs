//! The address model (issue 15, item 5) and trace fields (item 8), over
//! real sockets: aliases to local and remote targets, alias loops,
//! catch-all, sub-addressing, postmaster/abuse and the bare
//! `<postmaster>`, `local_domains_file`, the default `<data_dir>/aliases`,
//! SIGHUP, broken alias files; Received `with` keywords, Return-Path and
//! Delivered-To with exact POP3 sizes (poplib), Message-ID/Date on
//! submission.

mod common;
#[path = "common/sink.rs"]
mod sink;

use common::*;
use sink::{Script, Sink};
use std::process::Command;
use std::time::Duration;

/// A server whose config gets `top` among the top-level keys and `tables`
/// at the end; not started.
fn configure(opts: Options, top: &str, tables: &str) -> Server {
    let server = Server::configure(opts);
    let text = std::fs::read_to_string(&server.config).unwrap();
    let text = text.replace("max_message_size = 65536\n", &format!("max_message_size = 65536\n{top}\n"));
    std::fs::write(&server.config, format!("{text}\n{tables}\n")).unwrap();
    server
}

/// Each message in `user`'s mailbox as text, trace fields included.
fn messages(server: &Server, user: &str) -> Vec<String> {
    let mut p = server.pop3();
    assert!(p.login(user, PASSWORD).starts_with("+OK"));
    let (n, _) = p.stat();
    let out = (1..=n).map(|i| String::from_utf8_lossy(&p.retr(i)).into_owned()).collect();
    p.cmd("QUIT");
    out
}

/// The messages of `user` whose text contains `Subject: {subject}`.
fn with_subject(all: &[String], subject: &str) -> Vec<String> {
    let needle = format!("Subject: {subject}\r\n");
    all.iter().filter(|m| m.contains(&needle)).cloned().collect()
}

fn send(server: &Server, to: &[&str], subject: &str) {
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    let body = format!("Subject: {subject}\r\n\r\nhello\r\n");
    let r = c.send_mail("sender@elsewhere.test", to, body.as_bytes());
    assert!(r.starts_with("250"), "{to:?}: {r}");
    c.cmd("QUIT");
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn aliases_catch_all_sub_addressing_and_role_addresses_deliver_where_configured() {
    let sink = Sink::start("127.0.0.1", 0, Script::default());
    // The client is not permitted to relay: everything accepted below is
    // accepted as local, and the remote alias target is relayed anyway.
    let server = configure(
        Options {
            permit_relay_from: "[]",
            relay: format!("routes = {{ \"partner.test\" = \"{}\" }}\nretry = [\"1h\"]\n", sink.addr),
            ..Options::default()
        },
        "recipient_delimiter = \"+\"\npostmaster = \"carol@example.test\"\nlocal_domains_file = \"domains\"",
        r#"[aliases]
"sales@localhost" = ["alice@localhost", "bob@localhost", "Fwd@partner.test"]
"loop1@localhost" = "loop2@localhost"
"loop2@localhost" = ["loop1@localhost"]
"@example.test" = "alice@localhost"
"@virtual.test" = ["bob@localhost"]
"#,
    );
    std::fs::write(server.dir.path().join("domains"), "# hosted for others\nvirtual.test\n").unwrap();
    let mut server = server;
    server.spawn();

    send(&server, &["sales@localhost"], "alias");
    // Two RCPTs reaching alice (directly and through the alias): one copy.
    send(&server, &["sales@localhost", "alice@localhost"], "twice");
    send(&server, &["bob+news@localhost"], "extension");
    send(&server, &["nobody@example.test"], "catch-all");
    send(&server, &["someone@virtual.test"], "domains file");
    send(&server, &["postmaster@localhost", "abuse@example.test"], "roles");
    send(&server, &["postmaster"], "bare postmaster");

    // An alias loop: refused with a reply naming the reason, logged, and
    // nothing stored.
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    c.expect("MAIL FROM:<sender@elsewhere.test>", "250");
    let r = c.cmd("RCPT TO:<loop1@localhost>");
    assert!(r.starts_with("451 4.3.0") && r.contains("alias loop") && r.contains("loop1@localhost"), "{r}");
    let r = c.cmd("DATA");
    assert!(r.starts_with("5"), "no valid recipient, no DATA: {r}");
    c.cmd("QUIT");
    let log = server.log_containing(&["alias expansion failed"]);
    let warn = log.lines().find(|l| l.contains("alias expansion failed")).unwrap();
    assert!(warn.contains("WARN") && warn.contains("loop1@localhost -> loop2@localhost -> loop1@localhost"), "{warn}");

    // Unknown addresses in a domain without a catch-all are still refused.
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    c.expect("MAIL FROM:<sender@elsewhere.test>", "250");
    c.expect("RCPT TO:<nobody@localhost>", "550 5.1.1");
    c.expect("RCPT TO:<someone@partner.test>", "554 5.7.1");
    c.cmd("QUIT");

    eventually(Duration::from_secs(15), || (sink.count() == 2).then_some(()));
    let relayed = sink.received();
    assert!(relayed.iter().all(|m| m.to == ["Fwd@partner.test"]), "{relayed:?}");
    assert!(relayed.iter().all(|m| m.from == "sender@elsewhere.test"), "no SRS: the envelope sender is kept");

    eventually(Duration::from_secs(10), || (mailbox_count(&server, "alice@localhost") == 3).then_some(()));
    let alice = messages(&server, "alice@localhost");
    assert_eq!(alice.len(), 3, "alias, twice (once), catch-all: {alice:#?}");
    let alias = with_subject(&alice, "alias");
    assert_eq!(alias.len(), 1);
    // On top of the stored message (Authentication-Results, Received, ...).
    assert!(
        alias[0].starts_with("Return-Path: <sender@elsewhere.test>\r\nDelivered-To: alice@localhost\r\n"),
        "{}",
        alias[0]
    );
    assert_eq!(with_subject(&alice, "twice").len(), 1, "one copy for two RCPTs reaching alice");
    let catch_all = with_subject(&alice, "catch-all");
    assert_eq!(catch_all.len(), 1);
    assert!(catch_all[0].contains("Delivered-To: alice@localhost\r\n"), "{}", catch_all[0]);

    let bob = messages(&server, "bob@localhost");
    assert_eq!(bob.len(), 4, "alias, twice, extension, domains file: {bob:#?}");
    let ext = with_subject(&bob, "extension");
    assert_eq!(ext.len(), 1);
    assert!(ext[0].contains("Delivered-To: bob+news@localhost\r\n"), "the address with its extension: {}", ext[0]);
    assert_eq!(with_subject(&bob, "domains file").len(), 1);

    let carol = messages(&server, "carol@example.test");
    assert_eq!(carol.len(), 2, "roles (once for postmaster@ and abuse@), bare postmaster: {carol:#?}");
    assert_eq!(with_subject(&carol, "roles").len(), 1);
    assert_eq!(with_subject(&carol, "bare postmaster").len(), 1);
}

#[test]
fn check_config_warns_when_postmaster_has_no_mailbox() {
    // The test users are alice, bob and carol: no postmaster@localhost.
    let server = configure(Options::default(), "", "");
    let out = server.cli(&["check-config"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "a warning, not an error: {err}");
    assert!(err.contains("warning: postmaster@localhost") && err.contains("set `postmaster`"), "{err}");
    let fixed = configure(Options::default(), "postmaster = \"alice@localhost\"", "");
    let out = fixed.cli(&["check-config"]);
    assert!(out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("warning"), "{out:?}");
}

#[test]
fn sighup_with_changed_aliases_takes_effect_and_the_default_aliases_file_is_read() {
    let mut server = configure(Options::default(), "", "[aliases]\n\"team@localhost\" = \"alice@localhost\"\n");
    std::fs::create_dir_all(server.data_dir()).unwrap();
    std::fs::write(server.data_dir().join("aliases"), "# default layout\n\"filed@localhost\" = [\"bob@localhost\"]\n")
        .unwrap();
    server.spawn();
    send(&server, &["team@localhost"], "before");
    send(&server, &["filed@localhost"], "from the file");
    eventually(Duration::from_secs(10), || (mailbox_count(&server, "alice@localhost") == 1).then_some(()));
    eventually(Duration::from_secs(10), || (mailbox_count(&server, "bob@localhost") == 1).then_some(()));

    let text = std::fs::read_to_string(&server.config).unwrap();
    std::fs::write(
        &server.config,
        text.replace("\"team@localhost\" = \"alice@localhost\"", "\"team@localhost\" = \"bob@localhost\""),
    )
    .unwrap();
    let reloads = server.log().matches("SIGHUP: config reloaded").count();
    server.signal(libc::SIGHUP);
    eventually(Duration::from_secs(10), || {
        (server.log().matches("SIGHUP: config reloaded").count() > reloads).then_some(())
    });
    send(&server, &["team@localhost"], "after");
    eventually(Duration::from_secs(10), || (mailbox_count(&server, "bob@localhost") == 2).then_some(()));
    assert_eq!(mailbox_count(&server, "alice@localhost"), 1);
    assert_eq!(with_subject(&messages(&server, "bob@localhost"), "after").len(), 1);
}

#[test]
fn a_broken_aliases_file_is_named_with_its_line_by_check_config_start_up_and_sighup() {
    let mut server = configure(Options::default(), "aliases_file = \"aliases.toml\"", "");
    let file = server.dir.path().join("aliases.toml");
    std::fs::write(
        &file,
        "\"a@localhost\" = \"alice@localhost\"\n\n\"b@localhost\" = [\"alice@localhost\", \"not-an-address\"]\n",
    )
    .unwrap();
    let expect_named = |text: &str| {
        assert!(
            text.contains(&file.display().to_string())
                && text.contains("line 3")
                && text.contains("\"not-an-address\" is not an address"),
            "{text}"
        );
    };
    let out = server.cli(&["check-config"]);
    assert!(!out.status.success());
    expect_named(&String::from_utf8_lossy(&out.stderr));

    let out =
        Command::new(env!("CARGO_BIN_EXE_ringmail")).args(["serve", "--config"]).arg(&server.config).output().unwrap();
    assert!(!out.status.success(), "serve must refuse the config");
    expect_named(&format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));

    // Fixed, started; broken again at SIGHUP: the old aliases stay.
    std::fs::write(&file, "\"a@localhost\" = \"alice@localhost\"\n").unwrap();
    server.spawn();
    std::fs::write(&file, "\"a@localhost\" = \"bob@localhost\"\n\"b@localhost\" = 7\n").unwrap();
    server.signal(libc::SIGHUP);
    let log = server.log_containing(&["SIGHUP: config not reloaded"]);
    let line = log.lines().find(|l| l.contains("SIGHUP: config not reloaded")).unwrap();
    assert!(line.contains("aliases.toml") && line.contains("line 2"), "{line}");
    send(&server, &["a@localhost"], "kept");
    eventually(Duration::from_secs(10), || (mailbox_count(&server, "alice@localhost") == 1).then_some(()));
    assert_eq!(mailbox_count(&server, "bob@localhost"), 0);
}

#[test]
fn received_names_tls_and_auth_and_poplib_sizes_include_the_trace_fields() {
    let mut server = Server::start();
    let msg = server.dir.path().join("msg.eml");
    for (mode, port) in [
        ("helo", server.smtp.port()),
        ("esmtp", server.smtp.port()),
        ("esmtps", server.smtp.port()),
        ("esmtpa", server.submission.port()),
        ("esmtpsa", server.submission.port()),
    ] {
        std::fs::write(&msg, format!("From: alice@localhost\r\nSubject: {mode}\r\nMessage-ID: <{mode}@client.test>\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n\r\nbody\r\n")).unwrap();
        let out = Command::new("python3")
            .args([&fixture("trace_send.py"), mode, &port.to_string(), "alice@localhost", "bob@localhost"])
            .arg(&msg)
            .args(["alice@localhost", PASSWORD])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{mode}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eventually(Duration::from_secs(10), || (mailbox_count(&server, "bob@localhost") == 5).then_some(()));
    let bob = messages(&server, "bob@localhost");
    for (mode, with) in
        [("helo", "SMTP"), ("esmtp", "ESMTP"), ("esmtps", "ESMTPS"), ("esmtpa", "ESMTPA"), ("esmtpsa", "ESMTPSA")]
    {
        let m = with_subject(&bob, mode);
        assert_eq!(m.len(), 1, "{mode}");
        let received = m[0].lines().find(|l| l.starts_with("Received: ")).unwrap();
        assert!(received.contains(&format!(" with {with} id ")), "{mode}: {received}");
    }

    let poplib_sizes = |server: &Server| {
        let out = Command::new("python3")
            .args([
                &fixture("poplib_sizes.py"),
                "127.0.0.1",
                &server.pop3.port().to_string(),
                "bob@localhost",
                PASSWORD,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(text.lines().count(), 5, "{text}");
        for line in text.lines() {
            assert_eq!(line, "Return-Path: <alice@localhost> | Delivered-To: bob@localhost");
        }
    };
    poplib_sizes(&server);
    // The same after a restart, with the mailboxes rebuilt from the spool.
    server.restart();
    poplib_sizes(&server);
}

#[test]
fn submission_adds_message_id_and_date_only_when_missing_and_port_25_never() {
    let server = Server::start();
    let msg = server.dir.path().join("msg.eml");
    let send_with = |mode: &str, port: u16, text: &str| {
        std::fs::write(&msg, text).unwrap();
        let out = Command::new("python3")
            .args([&fixture("trace_send.py"), mode, &port.to_string(), "alice@localhost", "bob@localhost"])
            .arg(&msg)
            .args(["alice@localhost", PASSWORD])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    send_with("esmtpa", server.submission.port(), "From: alice@localhost\r\nSubject: bare submission\r\n\r\nx\r\n");
    send_with(
        "esmtpa",
        server.submission.port(),
        "From: alice@localhost\r\nSubject: complete submission\r\nMessage-ID: <mine@client.test>\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n\r\nx\r\n",
    );
    send_with("esmtp", server.smtp.port(), "From: alice@localhost\r\nSubject: bare relay\r\n\r\nx\r\n");
    eventually(Duration::from_secs(10), || (mailbox_count(&server, "bob@localhost") == 3).then_some(()));
    let bob = messages(&server, "bob@localhost");
    let header = |subject: &str| -> String {
        let m = with_subject(&bob, subject);
        assert_eq!(m.len(), 1, "{subject}");
        m[0].split("\r\n\r\n").next().unwrap().to_string()
    };
    let count = |head: &str, field: &str| head.lines().filter(|l| l.to_ascii_lowercase().starts_with(field)).count();

    let bare = header("bare submission");
    assert_eq!((count(&bare, "message-id:"), count(&bare, "date:")), (1, 1), "{bare}");
    assert!(bare.contains("Message-ID: <") && bare.contains("@mx.test>"), "{bare}");
    // Added at the top of the header block, under our Received field.
    let after_received = bare.split_once("\r\nReceived: ").unwrap().1.split_once("\r\n").unwrap().1;
    assert!(after_received.starts_with("Message-ID: <") && after_received.contains("\r\nDate: "), "{bare}");

    let complete = header("complete submission");
    assert_eq!((count(&complete, "message-id:"), count(&complete, "date:")), (1, 1), "{complete}");
    assert!(
        complete.contains("Message-ID: <mine@client.test>")
            && complete.contains("Date: Sun, 06 Dec 2026 10:00:00 +0000")
    );

    let relay = header("bare relay");
    assert_eq!((count(&relay, "message-id:"), count(&relay, "date:")), (0, 0), "port 25 adds nothing: {relay}");
}
