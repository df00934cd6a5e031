//! Spool compaction: a segment kept alive by one old mailbox message is
//! copied forward and deleted while the server runs; the message stays
//! readable (even by a POP3 session that listed it before the move),
//! deletions after the move are honoured, and nothing comes back or goes
//! missing across a kill -9.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn a_mostly_dead_segment_is_compacted_and_nothing_is_lost_or_resurrected() {
    let mut server = Server::start_with(Options {
        cores: 1,
        segment_size: 256 * 1024,
        spool: "compact_below = 50\ncompact_interval = \"200ms\"\n".into(),
        ..Options::default()
    });
    let mut c = server.smtp();
    c.expect("EHLO compact.test", "250");
    let keep = b"Subject: keeper\r\n\r\nthe one message that keeps the first segment alive\r\n";
    assert!(c.send_mail("x@localhost", &["alice@localhost"], keep).starts_with("250"));
    assert!(c.send_mail("x@localhost", &["carol@example.test"], b"Subject: to go\r\n\r\nbye\r\n").starts_with("250"));
    let filler = format!("Subject: filler\r\n\r\n{}\r\n", "f".repeat(20_000));
    for _ in 0..30 {
        assert!(c.send_mail("x@localhost", &["bob@localhost"], filler.as_bytes()).starts_with("250"));
    }
    let first = segment_files(&server)[0].clone();
    assert!(segment_files(&server).len() >= 3, "{:?}", segment_files(&server));

    // alice lists her mailbox before the move and keeps the session open.
    let mut alice = server.pop3();
    assert!(alice.login("alice@localhost", PASSWORD).starts_with("+OK"));
    let uid_before = alice.uidl()[0].1.clone();
    // So does carol, who will delete hers after the move.
    let mut carol = server.pop3();
    assert!(carol.login("carol@example.test", PASSWORD).starts_with("+OK"));
    assert_eq!(carol.stat().0, 1);

    // bob deletes everything: the first segment now holds only alice's.
    let mut bob = server.pop3();
    assert!(bob.login("bob@localhost", PASSWORD).starts_with("+OK"));
    let (n, _) = bob.stat();
    for i in 1..=n {
        assert!(bob.cmd(&format!("DELE {i}")).starts_with("+OK"));
    }
    assert!(bob.cmd("QUIT").starts_with("+OK"));

    eventually(Duration::from_secs(20), || server.log().contains("spool segment compacted").then_some(()));
    eventually(Duration::from_secs(10), || (!segment_files(&server).contains(&first)).then_some(()));

    // A deletion from a listing taken before the move reaches the moved copy.
    assert!(carol.cmd("DELE 1").starts_with("+OK"));
    assert!(carol.cmd("QUIT").starts_with("+OK"));
    assert_eq!(mailbox_count(&server, "carol@example.test"), 0);

    // The session that listed before the move reads the moved message.
    let got = alice.retr(1);
    assert_eq!(strip_received(&got), keep.to_vec());
    assert!(alice.cmd("QUIT").starts_with("+OK"));
    // New sessions see it under the same UID.
    let mut again = server.pop3();
    assert!(again.login("alice@localhost", PASSWORD).starts_with("+OK"));
    assert_eq!(again.uidl()[0].1, uid_before, "the UIDL survives the move");
    again.cmd("QUIT");

    // trace knows it moved.
    let qid = uid_before.split('.').next().unwrap().to_string();
    let trace = server.cli(&["trace", &qid]);
    let text = String::from_utf8_lossy(&trace.stdout);
    assert!(text.contains("moved by spool compaction"), "{text}");

    // A kill -9: alice still has exactly her one message, bob nothing.
    server.restart();
    assert_eq!(fetch_all(&server, "alice@localhost"), vec![keep.to_vec()]);
    assert_eq!(mailbox_count(&server, "bob@localhost"), 0, "deleted mail came back");
    assert_eq!(mailbox_count(&server, "carol@example.test"), 0, "a deletion after the move was lost");

    // Deleting the moved message is honoured across a restart too.
    let mut p = server.pop3();
    assert!(p.login("alice@localhost", PASSWORD).starts_with("+OK"));
    assert!(p.cmd("DELE 1").starts_with("+OK"));
    assert!(p.cmd("QUIT").starts_with("+OK"));
    server.restart();
    assert_eq!(mailbox_count(&server, "alice@localhost"), 0);
}

#[path = "common/sink.rs"]
mod sink;

/// One core, 256 KiB segments, eager compaction, and remote.test routed to
/// `127.0.0.1:port` with one retry wait of `retry`.
fn compacting_relay(port: u16, retry: &str) -> Server {
    Server::start_with(Options {
        cores: 1,
        segment_size: 256 * 1024,
        spool: "compact_below = 50\ncompact_interval = \"200ms\"\n".into(),
        relay: format!("routes = {{ \"remote.test\" = \"127.0.0.1:{port}\" }}\nretry = [\"{retry}\"]\n"),
        ..Options::default()
    })
}

#[test]
fn a_queued_message_moved_by_compaction_is_relayed_exactly_once() {
    let port = free_port();
    let mut server = compacting_relay(port, "1s");
    let mut c = server.smtp();
    c.expect("EHLO compact.test", "250");
    let body = b"Subject: queued\r\n\r\nwaiting for its MX\r\n";
    assert!(c.send_mail("x@localhost", &["far@remote.test"], body).starts_with("250"));
    bury_under_deleted_mail(&server, &mut c);
    eventually(Duration::from_secs(20), || server.log().contains("spool segment compacted").then_some(()));
    assert!(
        server.log_containing(&["moved=1"]).contains("moved=1"),
        "the queued message was the one moved: {}",
        server.log()
    );

    // Its MX comes up: delivered once, from the moved copy.
    let sink = sink::Sink::start("127.0.0.1", port, sink::Script::default());
    eventually(Duration::from_secs(20), || (sink.count() == 1).then_some(()));
    assert_eq!(strip_received(&sink.received()[0].data), body.to_vec());
    eventually(Duration::from_secs(5), || server.log().contains("status=\"sent\"").then_some(()));
    server.restart();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sink.count(), 1, "a delivered message was sent again after the restart");
    let list = server.cli(&["queue", "list"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("-- 0 queued"), "{}", String::from_utf8_lossy(&list.stdout));
}

#[test]
fn a_deferred_message_moved_by_compaction_keeps_its_retry_schedule() {
    let port = free_port(); // nothing listens yet: the first attempt is deferred
    let mut server = compacting_relay(port, "1h");
    let mut c = server.smtp();
    c.expect("EHLO compact.test", "250");
    let body = b"Subject: later\r\n\r\nin an hour\r\n";
    assert!(c.send_mail("x@localhost", &["far@remote.test"], body).starts_with("250"));
    server.log_containing(&["will retry"]);
    bury_under_deleted_mail(&server, &mut c);
    let log = server.log_containing(&["spool segment compacted", "moved=1"]);
    assert!(log.contains("moved=1"), "the deferred message was the one moved: {log}");
    std::thread::sleep(Duration::from_millis(300)); // the re-recorded state reaches the disk

    // Its MX comes up, then the server restarts: the retry is still an
    // hour away (a message without its state would be tried at start).
    let sink = sink::Sink::start("127.0.0.1", port, sink::Script::default());
    server.restart();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sink.connections.load(std::sync::atomic::Ordering::SeqCst), 0, "retried before its time");
    let list = String::from_utf8_lossy(&server.cli(&["queue", "list"]).stdout).into_owned();
    assert!(list.contains("far@remote.test") && list.contains("-- 1 queued"), "{list}");
}
