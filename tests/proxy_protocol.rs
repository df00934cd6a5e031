//! PROXY protocol behind a real HAProxy (Debian `haproxy`): with
//! `[listen] proxy_from` naming the balancer, ringmail logs, limits and
//! stamps the real client's address, not the balancer's; a listed peer
//! without a header and an unlisted peer with one are cut and logged.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A HAProxy in front of `server`: SMTP with a v1 header, SMTP and POP3
/// with v2 headers. Killed (by its PID) on drop.
struct Haproxy {
    child: Child,
    smtp_v1: SocketAddr,
    smtp_v2: SocketAddr,
    pop3_v2: SocketAddr,
    /// To the implicit-TLS POP3 listener: the header, then the handshake.
    pop3s_v2: SocketAddr,
}

impl Haproxy {
    fn start(server: &Server) -> Haproxy {
        let port = || -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
        let (smtp_v1, smtp_v2, pop3_v2, pop3s_v2) = (port(), port(), port(), port());
        let config = server.data_dir().parent().unwrap().join("haproxy.cfg");
        let frontend = |name: &str, bind: SocketAddr, to: SocketAddr, send: &str| {
            format!(
                "frontend f_{name}\n  bind {bind}\n  default_backend b_{name}\nbackend b_{name}\n  server rm {to} {send}\n"
            )
        };
        let text = format!(
            "global\n  maxconn 200\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n{}{}{}{}",
            frontend("smtp_v1", smtp_v1, server.smtp, "send-proxy"),
            frontend("smtp_v2", smtp_v2, server.smtp, "send-proxy-v2"),
            frontend("pop3_v2", pop3_v2, server.pop3, "send-proxy-v2"),
            frontend("pop3s_v2", pop3s_v2, server.pop3s, "send-proxy-v2"),
        );
        std::fs::write(&config, text).unwrap();
        let bin = if std::path::Path::new("/usr/sbin/haproxy").exists() { "/usr/sbin/haproxy" } else { "haproxy" };
        let child = Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (Debian package haproxy; tests/run.sh installs it)");
        let h = Haproxy { child, smtp_v1, smtp_v2, pop3_v2, pop3s_v2 };
        let deadline = Instant::now() + Duration::from_secs(10);
        for addr in [smtp_v1, smtp_v2, pop3_v2, pop3s_v2] {
            // Probes come from 127.0.0.5, so the tests can tell them apart.
            while try_socket_from("127.0.0.5", addr).is_err() {
                assert!(Instant::now() < deadline, "haproxy did not listen on {addr}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        h
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proxied_server(limits: &str) -> Server {
    let mut server = Server::configure(Options {
        limits: limits.to_string(),
        // 127.0.0.2 may relay; HAProxy's own 127.0.0.1 may not. Relay mail
        // waits for a port nobody listens on (no DNS involved).
        permit_relay_from: r#"["127.0.0.2/32"]"#,
        relay: format!("routes = {{ \"remote.example\" = \"127.0.0.1:{}\" }}\nretry = [\"1h\"]", free_port()),
        ..Options::default()
    });
    // HAProxy reaches ringmail from 127.0.0.1; clients come from .2 and .3.
    let text = std::fs::read_to_string(&server.config).unwrap();
    let text = text.replace("[listen]\n", "[listen]\nproxy_from = [\"127.0.0.1/32\"]\n");
    std::fs::write(&server.config, text).unwrap();
    server.spawn();
    server
}

#[test]
fn the_real_client_is_logged_stamped_and_permitted_through_haproxy() {
    let server = proxied_server("");
    let haproxy = Haproxy::start(&server);
    for (version, front) in [("v1", haproxy.smtp_v1), ("v2", haproxy.smtp_v2)] {
        let mut c = Smtp::from_stream(socket_from("127.0.0.2", front));
        c.expect("EHLO client.test", "250");
        // 127.0.0.2 may relay (permit_relay_from); HAProxy's 127.0.0.1 may not.
        let body = format!("Subject: via {version}\r\n\r\nhello\r\n");
        let r = c.send_mail("a@client.test", &["alice@localhost", "far@remote.example"], body.as_bytes());
        assert!(r.starts_with("250"), "{version}: {r}");
        c.cmd("QUIT");
    }
    // Directly, from 127.0.0.4 (127.0.0.1 is the balancer: it must send a header).
    let mut p = Pop3::from_stream(socket_from("127.0.0.4", server.pop3));
    assert!(p.login("alice@localhost", PASSWORD).starts_with("+OK"));
    assert_eq!(p.stat().0, 2);
    for i in 1..=2 {
        let msg = String::from_utf8_lossy(&p.retr(i)).into_owned();
        let received = msg.lines().find(|l| l.starts_with("Received: ")).unwrap();
        assert!(received.contains("127.0.0.2") && !received.contains("127.0.0.1"), "{received}");
    }
    p.cmd("QUIT");
    let log = server.log_containing(&["client=127.0.0.2"]);
    let connects: Vec<&str> = log.lines().filter(|l| l.contains(" connect ") && l.contains("proto=\"smtp\"")).collect();
    assert!(connects.iter().any(|l| l.contains("client=127.0.0.2")), "{log}");
    assert!(!connects.iter().any(|l| l.contains("client=127.0.0.1:")), "HAProxy's address was logged:\n{log}");

    // POP3 through a v2 header: the login is logged from the real client.
    let mut p = Pop3::from_stream(socket_from("127.0.0.3", haproxy.pop3_v2));
    assert!(p.login("alice@localhost", PASSWORD).starts_with("+OK"));
    p.cmd("QUIT");
    let log = server.log_containing(&["client=127.0.0.3 user=alice@localhost"]);
    assert!(log.lines().any(|l| l.contains("pop3 login") && l.contains("client=127.0.0.3 user=")), "{log}");
}

#[test]
fn connection_limits_count_the_real_client_not_the_balancer() {
    let server = proxied_server("max_connections_per_ip = 1");
    let haproxy = Haproxy::start(&server);
    // Two clients at once through one balancer: each is one connection.
    let mut a = Smtp::from_stream(socket_from("127.0.0.2", haproxy.smtp_v2));
    let mut b = Smtp::from_stream(socket_from("127.0.0.3", haproxy.smtp_v2));
    a.expect("NOOP", "250");
    b.expect("NOOP", "250");
    // A second from the same client is over its limit.
    let mut again = BufReader::new(socket_from("127.0.0.2", haproxy.smtp_v2));
    let mut line = String::new();
    again.read_line(&mut line).unwrap();
    assert!(line.starts_with("421"), "{line}");
    // (HAProxy's readiness probes may have been refused too: wait for this one.)
    let needle = "client=127.0.0.2 proto=\"smtp\" reason=\"too many connections";
    let log = server.log_containing(&[needle]);
    assert!(log.lines().any(|l| l.contains("WARN refused") && l.contains(needle)), "{log}");
}

#[test]
fn headers_from_the_wrong_peers_and_missing_headers_are_cut() {
    let server = proxied_server("");
    // An unlisted client claiming to be someone else.
    let mut c = Smtp::from_stream(socket_from("127.0.0.3", server.smtp));
    c.send(b"PROXY TCP4 192.0.2.1 127.0.0.1 1234 25\r\nEHLO liar.test\r\n");
    assert!(c.is_closed(), "an unlisted peer's PROXY header must close the connection");
    server.log_containing(&["PROXY header from a peer not in listen.proxy_from"]);
    // The listed balancer's address, without a header.
    let mut raw = socket_from("127.0.0.1", server.smtp);
    raw.write_all(b"EHLO direct.test\r\n").unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut reply = String::new();
    let n = BufReader::new(raw).read_line(&mut reply).unwrap_or(0);
    assert_eq!(n, 0, "no greeting without a header, then closed: {reply:?}");
    let log = server.log_containing(&["PROXY header refused"]);
    assert!(log.contains("PROXY header refused"), "{log}");
}

#[test]
fn implicit_tls_works_after_the_header() {
    let server = proxied_server("");
    let haproxy = Haproxy::start(&server);
    // Python's ssl client (tests/fixtures/tls_client.py) through HAProxy:
    // ringmail must consume exactly the header, leaving the ClientHello.
    let out = std::process::Command::new("python3")
        .arg(format!("{}/tests/fixtures/tls_client.py", env!("CARGO_MANIFEST_DIR")))
        .args(["pop3s", &haproxy.pop3s_v2.port().to_string(), "alice@localhost", PASSWORD])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}\n{}", server.log());
    // (HAProxy's readiness probes from 127.0.0.5 close without a handshake.)
    let log = server.log_containing(&["client=127.0.0.1", "proto=\"pop3s\""]);
    assert!(log.lines().any(|l| l.contains(" connect ") && l.contains("client=127.0.0.1:")), "{log}");
    assert!(!log.lines().any(|l| l.contains("TLS handshake failed") && l.contains("client=127.0.0.1 ")), "{log}");
}
