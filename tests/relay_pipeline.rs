//! Pipelined relay transactions (RFC 2920 §3.1) against real peers: the
//! next message's MAIL, RCPT and DATA (or BDAT) go behind the previous
//! body on one connection, every message arrives exactly once (counted by
//! Message-ID), and each refusal settles its own message.

mod common;
#[path = "common/postfix.rs"]
mod postfix;
#[path = "common/sink.rs"]
mod sink;

use common::*;
use sink::{Script, Sink};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Every message to `remote.test` goes to `to` over one connection at most.
fn one_connection_to(to: &str) -> Options {
    Options {
        relay: format!(
            "routes = {{ \"remote.test\" = \"{to}\" }}\nretry = [\"1s\"]\nmax_connections_per_domain = 1\n\
             connection_idle = \"5s\""
        ),
        ..Options::default()
    }
}

/// Submits `n` messages over one session, message `i` to `rcpt(i)` with
/// Message-ID `<p{i}@client.test>`; returns the Message-IDs.
fn submit_many(server: &Server, n: usize, rcpt: impl Fn(usize) -> String) -> Vec<String> {
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    (0..n)
        .map(|i| {
            let id = format!("<p{i}@client.test>");
            let body = format!("Message-ID: {id}\r\nSubject: pipelined {i}\r\n\r\nbody {i}\r\n.dot line\r\n");
            let r = c.send_mail("bob@localhost", &[&rcpt(i)], body.as_bytes());
            assert!(r.starts_with("250"), "{r}");
            id
        })
        .collect()
}

/// How many times each of `ids` is in `texts`.
fn count_ids(ids: &[String], texts: &[String]) -> HashMap<String, usize> {
    ids.iter().map(|id| (id.clone(), texts.iter().filter(|t| t.contains(id.as_str())).count())).collect()
}

fn delivered_texts(sink: &Sink) -> Vec<String> {
    sink.received().iter().map(|m| String::from_utf8_lossy(&m.data).into_owned()).collect()
}

/// `n` messages through a sink that answers no end of data until all are
/// queued, so that mail waits behind the one connection and goes pipelined.
fn relay_backlog(chunking: bool) {
    const N: usize = 40;
    let hold = Arc::new(AtomicBool::new(false));
    let script = Script { hold: Some(hold.clone()), await_next: true, chunking, ..Script::default() };
    let sink = Sink::start("127.0.0.1", 0, script);
    let server = Server::start_with(one_connection_to(&sink.addr.to_string()));
    let ids = submit_many(&server, N, |i| format!("u{i}@remote.test"));
    hold.store(true, Ordering::SeqCst);
    eventually(Duration::from_secs(30), || (sink.count() >= N).then_some(()));
    std::thread::sleep(Duration::from_millis(200)); // a duplicate would come now
    let counts = count_ids(&ids, &delivered_texts(&sink));
    assert!(counts.values().all(|&c| c == 1), "each Message-ID exactly once: {counts:?}");
    assert_eq!(sink.count(), N);
    assert!(sink.received().iter().all(|m| m.bdat == chunking && m.data.ends_with(b".dot line\r\n")));
    assert_eq!(sink.connections.load(Ordering::SeqCst), 1, "one connection carried all");
    let pipelined = sink.pipelined.load(Ordering::SeqCst);
    // All but the first message went behind a body (and the last body had
    // nothing behind it).
    assert!(pipelined >= N - 2, "only {pipelined} of {N} transactions went behind the previous body");
}

#[test]
fn backlog_goes_pipelined_over_data_and_every_message_arrives_once() {
    relay_backlog(false);
}

#[test]
fn backlog_goes_pipelined_over_bdat_and_every_message_arrives_once() {
    relay_backlog(true);
}

#[test]
fn refusals_in_a_pipeline_settle_their_own_message_only() {
    // RCPT refusals for two addresses, and among the ends of data one 554
    // (that message bounces) and one 451 (that one is retried and arrives):
    // none of them may settle the message pipelined behind it.
    const N: usize = 20;
    let hold = Arc::new(AtomicBool::new(false));
    let script = Script {
        hold: Some(hold.clone()),
        rcpt: Box::new(|a: &str| match a {
            "u3@remote.test" | "u7@remote.test" => "550 5.1.1 no such user".into(),
            _ => "250 2.1.5 Ok".into(),
        }),
        data_end: Box::new(|n| match n {
            2 => "554 5.7.1 content refused".into(),
            5 => "451 4.3.0 try again later".into(),
            _ => "250 2.0.0 Ok: queued".into(),
        }),
        ..Script::default()
    };
    let sink = Sink::start("127.0.0.1", 0, script);
    let server = Server::start_with(one_connection_to(&sink.addr.to_string()));
    let ids = submit_many(&server, N, |i| format!("u{i}@remote.test"));
    hold.store(true, Ordering::SeqCst);
    // The message whose end of data got the 554 is known from the sink.
    let refused = eventually(Duration::from_secs(30), || sink.tried().get(2).map(|m| m.to[0].clone()));
    let bounced = ["u3@remote.test", "u7@remote.test", refused.as_str()];
    eventually(Duration::from_secs(30), || (sink.count() >= N - 3).then_some(()));
    let bounced_line = |log: &str, to: &str| {
        let to = format!("to={to} ");
        log.lines().any(|l| l.contains(&to) && l.contains("status=\"bounced\""))
    };
    eventually(Duration::from_secs(30), || {
        let log = server.log();
        bounced.iter().all(|to| bounced_line(&log, to)).then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500)); // past the 1 s retry: nothing more may come
    let delivered = delivered_texts(&sink);
    for (i, id) in ids.iter().enumerate() {
        let to = format!("u{i}@remote.test");
        let want = usize::from(!bounced.contains(&to.as_str()));
        let got = delivered.iter().filter(|t| t.contains(id.as_str())).count();
        assert_eq!(got, want, "{to} {id}: delivered {got} times");
    }
    let log = server.log();
    let wrongly: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("status=\"bounced\""))
        .filter(|l| !bounced.iter().any(|to| l.contains(&format!("to={to} "))))
        .collect();
    assert!(wrongly.is_empty(), "a refusal settled another message: {wrongly:?}");
}

#[test]
fn postfix_smtp_sink_takes_pipelined_transactions_each_message_once() {
    // A real peer: Postfix's smtp-sink (Debian package postfix; tests/run.sh
    // installs it) offers PIPELINING; it keeps one file per message. The
    // mail is deferred first (nothing listens yet), then flushed at once
    // when it does, so that it all waits behind the one connection.
    const N: usize = 30;
    let port = free_port();
    let dump = tempfile::tempdir_in(test_tmp()).unwrap();
    let mut opts = one_connection_to(&format!("127.0.0.1:{port}"));
    opts.relay = opts.relay.replace("retry = [\"1s\"]", "retry = [\"1h\"]");
    let server = Server::start_with(opts);
    let ids = submit_many(&server, N, |i| format!("u{i}@remote.test"));
    eventually(Duration::from_secs(30), || (server.log().matches("status=\"deferred\"").count() >= N).then_some(()));
    let mut peer = postfix::smtp_sink(port, dump.path());
    let flush = std::process::Command::new(env!("CARGO_BIN_EXE_ringmail"))
        .args(["queue", "flush", "--config"])
        .arg(&server.config)
        .output()
        .unwrap();
    assert!(flush.status.success(), "{}", String::from_utf8_lossy(&flush.stderr));
    let read_all = || -> Vec<String> {
        let files = std::fs::read_dir(dump.path()).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default();
        files.iter().filter_map(|e| std::fs::read_to_string(e.path()).ok()).collect()
    };
    eventually(Duration::from_secs(30), || (count_ids(&ids, &read_all()).values().all(|&c| c >= 1)).then_some(()));
    server.log_containing(&["to=u29@remote.test", "status=\"sent\""]);
    std::thread::sleep(Duration::from_millis(300));
    let counts = count_ids(&ids, &read_all());
    let _ = peer.kill();
    let _ = peer.wait();
    assert!(counts.values().all(|&c| c == 1), "each Message-ID exactly once: {counts:?}");
    let sent = server.log().lines().filter(|l| l.contains("status=\"sent\"")).count();
    assert_eq!(sent, N, "one delivery logged per message");
}
