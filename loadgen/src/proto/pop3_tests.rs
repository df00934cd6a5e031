//! Transcript tests for the POP3 client, with a chunk-size sweep over the
//! server's side of a whole session.

use super::*;

fn settings(delete: bool, starttls: bool) -> Pop3Settings {
    Pop3Settings { user: "u@x.test".into(), pass: "pw".into(), starttls, delete, pipeline: 1, logins_only: false }
}

const SERVER: &[u8] = b"+OK ready\r\n+OK\r\n+OK logged in\r\n+OK 2 messages\r\n1 13\r\n2 5\r\n.\r\n\
+OK 13 octets\r\n..a\r\nbcdefgh\r\n.\r\n+OK deleted\r\n+OK\r\nxyz\r\n.\r\n+OK deleted\r\n+OK bye\r\n";

/// Feeds the server side in chunks; returns client output and progress events.
fn run(delete: bool, input: &[u8], size: usize) -> (String, Vec<Pop3Progress>) {
    run_with(settings(delete, false), input, size)
}

fn run_with(settings: Pop3Settings, input: &[u8], size: usize) -> (String, Vec<Pop3Progress>) {
    let mut c = Pop3Client::new(settings, false);
    let mut out = Vec::new();
    let mut events = Vec::new();
    let mut pending = Vec::new();
    for chunk in input.chunks(size) {
        pending.extend_from_slice(chunk);
        loop {
            let (used, p) = c.handle_input(&pending).unwrap();
            pending.drain(..used);
            c.take_output(&mut out);
            match p {
                Some(p) => events.push(p),
                None if used == 0 => break,
                None => {}
            }
        }
    }
    (String::from_utf8(out).unwrap(), events)
}

#[test]
fn full_session_with_delete_sends_the_right_commands() {
    let (out, events) = run(true, SERVER, SERVER.len());
    assert_eq!(out, "USER u@x.test\r\nPASS pw\r\nLIST\r\nRETR 1\r\nDELE 1\r\nRETR 2\r\nDELE 2\r\nQUIT\r\n");
    let retr: Vec<u64> = events.iter().filter(|e| e.step == Pop3Step::Retr).map(|e| e.bytes).collect();
    assert_eq!(retr, vec![13, 5]);
    assert_eq!(events.last().unwrap().next, Pop3Next::Closed);
}

#[test]
fn session_is_the_same_at_every_chunk_size() {
    let want = run(true, SERVER, SERVER.len());
    for size in [1, 2, 3, 5, 8, 64] {
        assert_eq!(run(true, SERVER, size), want, "chunk size {size}");
    }
}

#[test]
fn without_delete_no_dele_is_sent() {
    let server = b"+OK ready\r\n+OK\r\n+OK\r\n+OK\r\n1 3\r\n.\r\n+OK\r\nabc\r\n.\r\n+OK bye\r\n";
    let (out, _) = run(false, server, 4);
    assert_eq!(out, "USER u@x.test\r\nPASS pw\r\nLIST\r\nRETR 1\r\nQUIT\r\n");
}

#[test]
fn empty_mailbox_quits_after_list() {
    let server = b"+OK ready\r\n+OK\r\n+OK\r\n+OK 0\r\n.\r\n+OK bye\r\n";
    let (out, events) = run(false, server, 3);
    assert_eq!(out, "USER u@x.test\r\nPASS pw\r\nLIST\r\nQUIT\r\n");
    assert_eq!(events.last().unwrap().next, Pop3Next::Closed);
}

#[test]
fn bad_password_is_refused() {
    let mut c = Pop3Client::new(settings(false, false), false);
    c.handle_input(b"+OK hi\r\n").unwrap();
    c.handle_input(b"+OK\r\n").unwrap();
    let err = c.handle_input(b"-ERR [AUTH] invalid\r\n").unwrap_err();
    assert_eq!(err, Pop3Error::Refused { step: Pop3Step::Pass, line: "-ERR [AUTH] invalid".into() });
}

#[test]
fn retr_error_skips_to_next_message() {
    let server = b"+OK\r\n+OK\r\n+OK\r\n+OK\r\n1 3\r\n2 3\r\n.\r\n-ERR gone\r\n+OK\r\nabc\r\n.\r\n+OK\r\n";
    let (out, events) = run(false, server, 100);
    assert_eq!(out, "USER u@x.test\r\nPASS pw\r\nLIST\r\nRETR 1\r\nRETR 2\r\nQUIT\r\n");
    assert!(events.iter().any(|e| e.step == Pop3Step::Retr && !e.ok));
}

#[test]
fn stls_comes_before_user() {
    let mut c = Pop3Client::new(settings(false, true), false);
    let (_, p) = c.handle_input(b"+OK hi\r\n").unwrap();
    assert_eq!(p.unwrap().next, Pop3Next::Wait);
    let mut out = Vec::new();
    c.take_output(&mut out);
    assert_eq!(out, b"STLS\r\n");
    let (_, p) = c.handle_input(b"+OK begin\r\n").unwrap();
    assert_eq!(p.unwrap().next, Pop3Next::StartTls);
    c.tls_established();
    out.clear();
    c.take_output(&mut out);
    assert_eq!(out, b"USER u@x.test\r\n");
}

#[test]
fn garbage_response_is_malformed() {
    let mut c = Pop3Client::new(settings(false, false), false);
    assert!(matches!(c.handle_input(b"220 smtp?\r\n"), Err(Pop3Error::Malformed(_))));
}

#[test]
fn pipelined_commands_keep_the_window_full_and_answers_match_in_order() {
    let pipelined = Pop3Settings { pipeline: 3, ..settings(true, false) };
    // The whole server side at once: the client answers as far as it can.
    let (out, events) = run_with(pipelined.clone(), SERVER, SERVER.len());
    assert_eq!(out, "USER u@x.test\r\nPASS pw\r\nLIST\r\nRETR 1\r\nDELE 1\r\nRETR 2\r\nDELE 2\r\nQUIT\r\n");
    let retr: Vec<u64> = events.iter().filter(|e| e.step == Pop3Step::Retr).map(|e| e.bytes).collect();
    assert_eq!(retr, vec![13, 5]);
    for size in [1, 2, 7, 64] {
        assert_eq!(run_with(pipelined.clone(), SERVER, size), (out.clone(), events.clone()), "chunk size {size}");
    }
    // After LIST, three commands go out before any answer.
    let mut c = Pop3Client::new(pipelined, false);
    let mut sent = Vec::new();
    for answer in [&b"+OK hi\r\n"[..], b"+OK\r\n", b"+OK\r\n", b"+OK 2\r\n1 1\r\n2 1\r\n.\r\n"] {
        let mut rest = answer;
        while !rest.is_empty() {
            let (used, _) = c.handle_input(rest).unwrap();
            rest = &rest[used..];
        }
        sent.clear();
        c.take_output(&mut sent);
    }
    assert_eq!(sent, b"RETR 1\r\nDELE 1\r\nRETR 2\r\n");
}

#[test]
fn logins_mode_sends_stat_and_quits() {
    let logins = Pop3Settings { logins_only: true, ..settings(false, false) };
    let (out, events) = run_with(logins, b"+OK hi\r\n+OK\r\n+OK in\r\n+OK 3 300\r\n+OK bye\r\n", 3);
    assert_eq!(out, "USER u@x.test\r\nPASS pw\r\nSTAT\r\nQUIT\r\n");
    assert!(events.iter().any(|e| e.step == Pop3Step::Stat && e.ok));
    assert_eq!(events.last().unwrap().next, Pop3Next::Closed);
}
