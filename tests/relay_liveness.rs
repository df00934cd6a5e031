//! The relay never holds its core: a remote server that answers `421` and
//! closes the connection (as the big providers do when they rate-limit a
//! sender), and a site whose connections are all taken while another of its
//! domains has mail, each once left an executor looping without yielding
//! (no greeting, no delivery, no log line from that core again). Each test
//! checks that the core still serves and the mail is delivered.

mod common;
#[path = "common/sink.rs"]
mod sink;

use common::*;
use sink::{Script, Sink};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

/// A remote MX on loopback: its first connection gets `421 4.7.0 rate
/// limited` to MAIL FROM and is closed at once; later ones accept mail.
/// Sends each accepted message's MAIL FROM line on the channel.
fn throttling_mx() -> (SocketAddr, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = serve(conn, n == 0, &tx);
            });
        }
    });
    (addr, rx)
}

fn serve(conn: TcpStream, throttle: bool, tx: &mpsc::Sender<String>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    w.write_all(b"220 mx.remote.test ESMTP\r\n")?;
    let mut from = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            "250-mx.remote.test\r\n250-PIPELINING\r\n250 8BITMIME"
        } else if upper.starts_with("MAIL FROM:") && throttle {
            // Answer and hang up, without reading the rest of the pipeline.
            w.write_all(b"421 4.7.0 rate limited, try again later\r\n")?;
            return Ok(());
        } else if upper.starts_with("MAIL FROM:") {
            from = line.trim_end().to_string();
            "250 2.1.0 Ok"
        } else if upper.starts_with("RCPT TO:") {
            "250 2.1.5 Ok"
        } else if upper.starts_with("DATA") {
            w.write_all(b"354 go ahead\r\n")?;
            loop {
                let mut l = String::new();
                if r.read_line(&mut l)? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" {
                    break;
                }
            }
            let _ = tx.send(std::mem::take(&mut from));
            "250 2.0.0 Ok: queued"
        } else if upper.starts_with("QUIT") {
            w.write_all(b"221 Bye\r\n")?;
            return Ok(());
        } else {
            "250 Ok"
        };
        w.write_all(format!("{reply}\r\n").as_bytes())?;
    }
}

#[test]
fn a_421_that_closes_the_connection_is_deferred_and_retried() {
    let (mx, delivered) = throttling_mx();
    let server = Server::start_with(Options {
        cores: 1,
        relay: format!("routes = {{ \"remote.test\" = \"{mx}\" }}\nretry = [\"1s\"]\n"),
        ..Options::default()
    });
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    let r = c.send_mail("bob@localhost", &["x@remote.test"], b"Subject: throttled\r\n\r\nx\r\n");
    assert!(r.starts_with("250"), "{r}");
    // The first attempt meets the 421 and is deferred ...
    server.log_containing(&["status=\"deferred\"", "421 4.7.0 rate limited"]);
    // ... and the one core still serves: a new session gets its greeting
    // and EHLO answered while the message waits for its retry ...
    let mut c2 = server.smtp();
    c2.expect("EHLO client.test", "250");
    // ... which delivers it.
    let got = delivered.recv_timeout(Duration::from_secs(20)).expect("the retry was delivered");
    assert!(got.contains("bob@localhost"), "{got}");
}

#[test]
fn a_second_domain_on_a_full_site_waits_instead_of_holding_the_core() {
    // Two domains routed to one target are one site; one connection to it
    // at a time, held for a while by the slow end of DATA.
    let sink = Sink::start("127.0.0.1", 0, Script { delay: Duration::from_millis(500), ..Script::default() });
    let server = Server::start_with(Options {
        cores: 1,
        relay: format!(
            "routes = {{ \"a.remote.test\" = \"{0}\", \"b.remote.test\" = \"{0}\" }}\nretry = [\"1s\"]\n\
             max_connections_per_domain = 1\n",
            sink.addr
        ),
        ..Options::default()
    });
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    let r = c.send_mail("bob@localhost", &["x@a.remote.test", "y@b.remote.test"], b"Subject: one site\r\n\r\nx\r\n");
    assert!(r.starts_with("250"), "{r}");
    let mut c2 = server.smtp();
    c2.expect("EHLO client.test", "250");
    eventually(Duration::from_secs(20), || (sink.count() == 2).then_some(()));
    assert!(sink.max_concurrent.load(std::sync::atomic::Ordering::SeqCst) <= 1, "one connection to the site at a time");
}

/// Spool files under `dir` holding `needle`, with its offset in each.
fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<(std::path::PathBuf, usize)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
                found.push((path, at));
            }
        }
    }
    found
}

#[test]
fn a_queued_message_damaged_on_disk_stays_queued_and_a_restart_keeps_the_records_after_it() {
    // far.test's MX is down at first: both messages are deferred.
    let port = free_port();
    let mut server = Server::start_with(Options {
        cores: 1,
        relay: format!("routes = {{ \"far.test\" = \"127.0.0.1:{port}\" }}\nretry = [\"1h\"]\n"),
        ..Options::default()
    });
    let damaged = send_tagged(&server, "damaged", "x@far.test", 1).remove(0);
    let intact = send_tagged(&server, "intact", "y@far.test", 1).remove(0);
    let attempts = |server: &Server| -> std::collections::HashMap<String, u64> {
        let out = server.cli(&["queue", "list", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let messages = list["messages"].as_array().expect("messages").iter();
        messages.map(|m| (m["queue_id"].as_str().unwrap().to_string(), m["attempts"].as_u64().unwrap())).collect()
    };
    eventually(Duration::from_secs(30), || {
        let a = attempts(&server);
        (a.len() == 2 && a.values().all(|&n| n >= 1)).then_some(())
    });

    // A byte of the first message's body goes bad in its spool segment
    // (the server maps the file shared, so it reads the damage).
    let marker = b"body of damaged-0";
    let holding = files_holding(&server.data_dir(), marker);
    assert_eq!(holding.len(), 1, "the damaged message's body is in one spool file: {holding:?}");
    let (path, at) = &holding[0];
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    std::os::unix::fs::FileExt::write_at(&file, b"B", *at as u64).unwrap();
    drop(file);

    // The MX comes up. The intact message goes; the damaged one cannot be
    // read back to be sent: it stays queued, deferred like a temporary
    // failure with its attempt counted, instead of vanishing from the
    // queue while its record stays live.
    let sink = Sink::start("127.0.0.1", port, Script::default());
    let out = server.cli(&["queue", "flush"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eventually(Duration::from_secs(30), || (sink.count() == 1).then_some(()));
    assert!(sink.received()[0].to == ["y@far.test"], "only the intact message went");
    let left = eventually(Duration::from_secs(30), || {
        let a = attempts(&server);
        (a.get(&damaged) >= Some(&2)).then_some(a)
    });
    assert!(left.len() == 1 && !left.contains_key(&intact), "{left:?}");
    let log = server.log_containing(&["cannot read queued message from the spool"]);
    assert!(log.contains("cannot read queued message from the spool"), "{log}");
    // The core goes on taking mail.
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    let r = c.send_mail("bob@localhost", &["alice@localhost"], b"Subject: after\r\n\r\nx\r\n");
    assert!(r.starts_with("250"), "{r}");
    drop(c);

    // A crash and restart: recovery passes over the damaged record (its
    // message is lost: nothing readable is left of it) and keeps every
    // record after it in the segment (the intact message, its delivery's
    // tombstone, the local message), instead of cutting the segment there
    // as if it were a torn tail.
    server.restart();
    let log = server.log();
    // Logged once, though both phases of recovery read its segment.
    assert_eq!(log.matches("spool record damaged: passed over").count(), 1, "{log}");
    let after = attempts(&server);
    assert!(
        after.is_empty(),
        "nothing to relay: the damaged message is unreadable, the intact one delivered: {after:?}"
    );
    assert_eq!(mailbox_count(&server, "alice@localhost"), 1, "the local message after the damage survived");
}
