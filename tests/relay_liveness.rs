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
