//! The POP3 mode against a small scripted POP3 server (std threads): logs
//! in as every user, retrieves and deletes every message; wrong passwords
//! and refused connections give one line and a non-zero exit.

mod common;

use common::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// Mailboxes by user: list of message bodies. Password is "pw" for all.
type Boxes = Arc<Mutex<HashMap<String, Vec<Vec<u8>>>>>;

fn pop3_server(boxes: Boxes) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let boxes = Arc::clone(&boxes);
            std::thread::spawn(move || serve(s.unwrap(), boxes));
        }
    });
    addr
}

fn serve(mut s: std::net::TcpStream, boxes: Boxes) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let _ = s.write_all(b"+OK test pop3\r\n");
    let mut user = String::new();
    let mut authed = false;
    let mut deleted = Vec::new();
    let mut line = String::new();
    while r.read_line(&mut line).unwrap_or(0) > 0 {
        let cmd: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        line.clear();
        let verb = cmd.first().map(|v| v.to_ascii_uppercase()).unwrap_or_default();
        let arg = cmd.get(1).cloned().unwrap_or_default();
        let mut out: Vec<u8> = Vec::new();
        match verb.as_str() {
            "USER" => {
                user = arg;
                out.extend_from_slice(b"+OK\r\n");
            }
            "PASS" if arg == "pw" && boxes.lock().unwrap().contains_key(&user) => {
                authed = true;
                out.extend_from_slice(b"+OK logged in\r\n");
            }
            "PASS" => out.extend_from_slice(b"-ERR [AUTH] invalid credentials\r\n"),
            "LIST" if authed => {
                let b = boxes.lock().unwrap();
                out.extend_from_slice(b"+OK\r\n");
                for (i, m) in b[&user].iter().enumerate() {
                    out.extend_from_slice(format!("{} {}\r\n", i + 1, m.len()).as_bytes());
                }
                out.extend_from_slice(b".\r\n");
            }
            "RETR" if authed => {
                let b = boxes.lock().unwrap();
                let i: usize = arg.parse().unwrap();
                out.extend_from_slice(b"+OK\r\n");
                for l in b[&user][i - 1].split_inclusive(|c| *c == b'\n') {
                    if l.starts_with(b".") {
                        out.push(b'.');
                    }
                    out.extend_from_slice(l);
                }
                out.extend_from_slice(b".\r\n");
            }
            "STAT" if authed => {
                let b = boxes.lock().unwrap();
                let octets: usize = b[&user].iter().map(Vec::len).sum();
                out.extend_from_slice(format!("+OK {} {octets}\r\n", b[&user].len()).as_bytes());
            }
            "DELE" if authed => {
                deleted.push(arg.parse::<usize>().unwrap());
                out.extend_from_slice(b"+OK\r\n");
            }
            "QUIT" => {
                if authed {
                    let mut b = boxes.lock().unwrap();
                    let mb = b.get_mut(&user).unwrap();
                    deleted.sort_unstable();
                    for i in deleted.iter().rev() {
                        mb.remove(i - 1);
                    }
                }
                let _ = s.write_all(b"+OK bye\r\n");
                return;
            }
            _ => out.extend_from_slice(b"-ERR\r\n"),
        }
        let _ = s.write_all(&out);
    }
}

fn users_file(dir: &std::path::Path, users: &[(&str, &str)]) -> String {
    let p = dir.join("users");
    let text: String = users.iter().map(|(u, p)| format!("{u}:{p}\n")).collect();
    std::fs::write(&p, format!("# test users\n\n{text}")).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn retrieves_and_deletes_every_message() {
    let boxes: Boxes = Arc::default();
    for u in ["a@l.test", "b@l.test", "c@l.test"] {
        let msgs = (0..4).map(|i| format!("Subject: {i}\r\n\r\n.dotted\r\nbody\r\n").into_bytes()).collect();
        boxes.lock().unwrap().insert(u.to_string(), msgs);
    }
    let addr = pop3_server(Arc::clone(&boxes));
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path(), &[("a@l.test", "pw"), ("b@l.test", "pw"), ("c@l.test", "pw")]);
    let json = dir.path().join("p.json");
    let out = loadgen(&[
        "pop3",
        "--target",
        &addr,
        "--users",
        &users,
        "--connections",
        "2",
        "--delete",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = read_json(&json);
    assert_eq!(count(&s, "sessions"), 3);
    assert_eq!(count(&s, "messages"), 12);
    assert_eq!(count(&s, "deleted"), 12);
    assert_eq!(count(&s, "bytes"), 12 * "Subject: 0\r\n\r\n.dotted\r\nbody\r\n".len() as u64);
    assert!(boxes.lock().unwrap().values().all(|m| m.is_empty()));
    let names: Vec<&str> = s["latency_ms"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"login") && names.contains(&"retr"), "{names:?}");
}

#[test]
fn wrong_password_fails_with_one_line() {
    let boxes: Boxes = Arc::default();
    boxes.lock().unwrap().insert("a@l.test".into(), vec![]);
    let addr = pop3_server(boxes);
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path(), &[("a@l.test", "nope")]);
    let out = loadgen(&["pop3", "--target", &addr, "--users", &users]);
    assert_one_line_failure(&out, "rejected our credentials: -ERR [AUTH] invalid credentials");
}

#[test]
fn refused_pop3_connection_fails_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path(), &[("a@l.test", "pw")]);
    let target = format!("127.0.0.1:{}", free_port());
    let out = loadgen(&["pop3", "--target", &target, "--users", &users]);
    assert_one_line_failure(&out, "cannot connect to");
}

#[test]
fn malformed_users_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("users");
    std::fs::write(&p, "no-colon-here\n").unwrap();
    let out = loadgen(&["pop3", "--target", "127.0.0.1:110", "--users", p.to_str().unwrap()]);
    assert_one_line_failure(&out, "expected address:password");
}

#[test]
fn pipelined_retrieval_deletes_everything_and_logins_mode_only_logs_in() {
    let boxes: Boxes = Arc::default();
    for u in ["a@l.test", "b@l.test"] {
        let msgs = (0..5).map(|i| format!("Subject: {i}\r\n\r\n.dotted\r\nbody\r\n").into_bytes()).collect();
        boxes.lock().unwrap().insert(u.to_string(), msgs);
    }
    let addr = pop3_server(Arc::clone(&boxes));
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path(), &[("a@l.test", "pw"), ("b@l.test", "pw")]);
    let json = dir.path().join("logins.json");
    let out = loadgen(&["pop3", "--target", &addr, "--users", &users, "--logins", "--json", json.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = read_json(&json);
    assert_eq!((count(&s, "sessions"), count(&s, "messages")), (2, 0));
    assert!(s["headline"].as_str().unwrap().contains("logins/s"), "{}", s["headline"]);
    assert!(boxes.lock().unwrap().values().all(|m| m.len() == 5), "logins touch nothing");

    let json = dir.path().join("pipelined.json");
    let args = ["pop3", "--target", &addr, "--users", &users, "--pipeline", "4", "--delete"];
    let out = loadgen(&[&args[..], &["--json", json.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = read_json(&json);
    assert_eq!((count(&s, "messages"), count(&s, "deleted")), (10, 10));
    assert!(count(&s, "retrieval_reads") >= 1);
    assert!(s["headline"].as_str().unwrap().contains("reads/msg"), "{}", s["headline"]);
    assert!(boxes.lock().unwrap().values().all(|m| m.is_empty()));
}
