//! Bad targets and hostile or broken servers: one clear line on stderr, a
//! non-zero exit, and no hang. Errors during a run are counted, not fatal.

mod common;

use common::*;
use std::io::Write;
use std::net::TcpListener;
use std::time::Duration;

#[test]
fn non_loopback_target_is_refused_without_sending_anything() {
    let out = loadgen(&["smtp", "--target", "192.0.2.1:25", "--messages", "1"]);
    assert_one_line_failure(&out, "not a loopback address");
}

#[test]
fn unresolvable_target_fails_with_one_line() {
    let out = loadgen(&["smtp", "--target", "no-such-host.invalid:25", "--messages", "1"]);
    assert_one_line_failure(&out, "cannot resolve target no-such-host.invalid:25");
}

#[test]
fn refused_connection_fails_with_one_line() {
    let port = free_port().to_string();
    let target = format!("127.0.0.1:{port}");
    let out = loadgen(&["smtp", "--target", &target, "--messages", "10", "--connections", "3"]);
    assert_one_line_failure(&out, &format!("cannot connect to {target}"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no connection succeeded"));
}

#[test]
fn refused_connection_per_message_mode_also_fails_fast() {
    let target = format!("127.0.0.1:{}", free_port());
    let out = loadgen(&["smtp", "--target", &target, "--messages", "10", "--new-connection-per-message"]);
    assert_one_line_failure(&out, "Connection refused");
}

#[test]
fn server_that_never_greets_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    // Accept and hold connections, never saying anything.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let out = loadgen(&["smtp", "--target", &target, "--timeout", "1s", "--connections", "2", "--messages", "5"]);
    assert_one_line_failure(&out, "sent no greeting within 1s");
}

#[test]
fn server_speaking_garbage_is_a_protocol_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let mut s = s.unwrap();
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let out = loadgen(&["smtp", "--target", &target, "--timeout", "2s", "--connections", "1", "--messages", "1"]);
    assert_one_line_failure(&out, "does not speak SMTP");
}

#[test]
fn server_refusing_service_at_greeting_is_reported() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let mut s = s.unwrap();
            let _ = s.write_all(b"554 5.3.2 no service for you\r\n");
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let out = loadgen(&["smtp", "--target", &target, "--connections", "2", "--messages", "1"]);
    assert_one_line_failure(&out, "greeting refused: 554 5.3.2 no service for you");
}

#[test]
fn sink_refuses_a_port_already_in_use() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let out = loadgen(&["sink", "--listen", &addr, "--duration", "1s"]);
    assert_one_line_failure(&out, "already in use");
}

#[test]
fn errors_during_a_run_are_counted_not_fatal() {
    // A server that accepts one message per connection and then drops the
    // connection: later messages on it fail, the run goes on and reports.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        use std::io::{BufRead, BufReader};
        for s in listener.incoming() {
            std::thread::spawn(move || {
                let mut s = s.unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let _ = s.write_all(b"220 flaky\r\n");
                let mut line = String::new();
                let mut in_data = false;
                while r.read_line(&mut line).unwrap_or(0) > 0 {
                    let reply: &[u8] = if in_data {
                        if line == ".\r\n" {
                            let _ = s.write_all(b"250 ok\r\n");
                            return; // drop the connection after one message
                        }
                        b""
                    } else if line.starts_with("DATA") {
                        in_data = true;
                        b"354 go\r\n"
                    } else {
                        b"250 ok\r\n"
                    };
                    let _ = s.write_all(reply);
                    line.clear();
                }
            });
        }
    });
    let gen = smtp_ok(&target, &["--messages", "20", "--connections", "2"]);
    let accepted = count(&gen, "accepted");
    let failed = count(&gen, "failed");
    assert_eq!(accepted + failed + count(&gen, "rejected"), 20);
    assert!(accepted >= 5, "accepted {accepted}");
    assert!(failed > 0);
    let errors = &gen["tallies"]["errors"];
    assert!(errors.as_object().unwrap().keys().any(|k| k.starts_with("closed by server")), "{errors}");
}
