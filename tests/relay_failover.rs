//! Relay failover: a `relay.routes` value may list smarthosts, tried in
//! order when one refuses the connection or answers 4xx at the greeting;
//! `relay.fallback_relay` takes the mail when every MX host of a domain
//! failed (Postfix's `smtp_fallback_relay`). Logs name the host that took it.

mod common;
#[path = "common/sink.rs"]
mod sink;

use common::*;
use ringmail::outbound::testdns::{TestDns, Zone};
use sink::{Script, Sink};
use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A server that answers every connection `421` at the greeting; how many
/// it turned away.
fn busy_greeter() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let turned = Arc::new(AtomicUsize::new(0));
    let count = turned.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(b"421 4.3.2 too busy, try elsewhere\r\n");
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (addr, turned)
}

fn submit(server: &Server, to: &str, subject: &str) {
    let mut c = server.smtp();
    c.expect("EHLO failover.test", "250");
    let body = format!("Subject: {subject}\r\n\r\nfailover\r\n");
    assert!(c.send_mail("bob@localhost", &[to], body.as_bytes()).starts_with("250"));
}

/// `ringmail trace` of the message in a `status="sent"` log line, once
/// its delivery is recorded in the spool (tombstones are written just
/// after the log line).
fn trace_of_sent(server: &Server, sent: &str) -> String {
    let qid = sent.split("queue_id=").nth(1).and_then(|r| r.split_whitespace().next()).expect("queue_id in the line");
    eventually(Duration::from_secs(10), || {
        let out = server.cli(&["trace", qid]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("status: delivered").then_some(text)
    })
}

#[test]
fn a_route_list_fails_over_past_a_refused_and_a_busy_smarthost() {
    let closed = free_port();
    let (busy, turned) = busy_greeter();
    let sink = Sink::start("127.0.0.1", 0, Script::default());
    let server = Server::start_with(Options {
        relay: format!(
            "routes = {{ \"remote.test\" = [\"127.0.0.1:{closed}\", \"{busy}\", \"{}\"] }}\nretry = [\"1h\"]\n",
            sink.addr
        ),
        ..Options::default()
    });
    submit(&server, "x@remote.test", "route list");
    eventually(Duration::from_secs(15), || (sink.count() == 1).then_some(()));
    assert_eq!(turned.load(Ordering::SeqCst), 1, "the busy smarthost was tried, once");
    let log = server.log_containing(&["status=\"sent\""]);
    let sent = log.lines().find(|l| l.contains("status=\"sent\"")).unwrap();
    assert!(sent.contains(&format!("[{}]", sink.addr)), "the log names the host that took it: {sent}");
    let trace = trace_of_sent(&server, sent);
    assert!(trace.contains(&format!("status: delivered via {}[{}]", sink.addr.ip(), sink.addr)), "and trace: {trace}");
    let tries: Vec<&str> = log.lines().filter(|l| l.contains("trying next host")).collect();
    assert_eq!(tries.len(), 2, "{log}");
    assert!(tries[0].contains(&closed.to_string()) && tries[1].contains("421"), "{tries:?}");
}

#[test]
fn fallback_relay_takes_mail_when_every_mx_host_is_down() {
    let sink = Sink::start("127.0.0.4", 0, Script::default());
    // Both MX hosts listen on nothing at mx_port.
    let dns = TestDns::start(
        Zone::new()
            .mx("down.test", 10, "mx1.down.test")
            .mx("down.test", 20, "mx2.down.test")
            .a("mx1.down.test", "127.0.0.2")
            .a("mx2.down.test", "127.0.0.3"),
    );
    let server = Server::start_with(Options {
        relay: format!(
            "dns_server = \"{}\"\nmx_port = {}\nfallback_relay = [\"{}\"]\nretry = [\"1h\"]\n",
            dns.addr(),
            free_port(),
            sink.addr
        ),
        ..Options::default()
    });
    submit(&server, "y@down.test", "fallback");
    eventually(Duration::from_secs(15), || (sink.count() == 1).then_some(()));
    let log = server.log_containing(&["status=\"sent\""]);
    let mx1 = log.find("127.0.0.2").expect("mx1 tried");
    let mx2 = log.find("127.0.0.3").expect("mx2 tried");
    let sent = log.find("status=\"sent\"").unwrap();
    assert!(mx1 < mx2 && mx2 < sent, "every MX first, then the fallback:\n{log}");
    let delivered = log.lines().find(|l| l.contains("status=\"sent\"")).unwrap();
    assert!(delivered.contains(&format!("[{}]", sink.addr)), "the fallback took it: {delivered}");
    let trace = trace_of_sent(&server, delivered);
    assert!(trace.contains(&format!("via {}[{}]", sink.addr.ip(), sink.addr)), "trace names the fallback: {trace}");
}

#[test]
fn an_empty_route_list_is_refused_at_start_naming_the_key() {
    let server = Server::configure(Options::default());
    let text = std::fs::read_to_string(&server.config).unwrap();
    let text =
        text.replace("[relay]\n", "[relay]\nroutes = { \"remote.test\" = [] }\nfallback_relay = [\"nohostport\"]\n");
    std::fs::write(&server.config, text).unwrap();
    let out = server.cli(&["check-config"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("relay.routes.\"remote.test\": an empty list"), "{text}");
    assert!(text.contains("relay.fallback_relay \"nohostport\""), "{text}");
}
