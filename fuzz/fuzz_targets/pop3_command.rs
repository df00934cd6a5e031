//! POP3 command parser, server session and `write_message`.
//!
//! Input: a control byte, then the bytes a client sends. Control bits 0-2
//! pick the chunking (see `ringmail_fuzz`), bit 3 forbids passwords before
//! STLS, bit 7 turns STLS off. The scripted driver logs in `alice` with
//! password `secret` (the passwords `inuse` and `temp` get those outcomes)
//! to a maildrop of three messages, and answers every action at once.
//!
//! Properties:
//! - `command::parse` never panics, on the whole input or any line of it.
//! - `Server::handle_input` never panics and never reports more bytes
//!   consumed than it was given; with no action pending, what it leaves is
//!   a partial line shorter than `max_line_len` (or than
//!   `sasl::MAX_RESPONSE_LINE` while an AUTH exchange waits for a line).
//! - Actions are sane: a password is asked to be checked only when it may
//!   be sent (allowed in plaintext, or after STLS); a message index is in
//!   the maildrop; a commit's indices are ascending, distinct, in range and
//!   not empty.
//! - Output is whole CRLF-terminated lines, and every body written by
//!   `write_message` is dot-stuffed: it ends in the one CRLF "." CRLF a
//!   client would stop at (checked with the SMTP DATA scanner, which reads
//!   the same framing strictly), and no other line starts with a lone dot.
//! - Chunking does not matter: the whole transcript is the same when the
//!   stream arrives at once (up to STLS).
#![no_main]

use std::rc::Rc;

use libfuzzer_sys::fuzz_target;
use ringmail::proto::pop3::{
    command, write_message, Action, AuthOutcome, CommitOutcome, MessageInfo, Policy, Pop3Config, Server,
};
use ringmail::proto::smtp::{sasl, DataProgress, DataScanner};
use ringmail_fuzz::{split_control, ChunkPlan};

const MESSAGES: &[&[u8]] = &[
    b"Subject: one\r\n\r\nfirst body\r\n",
    b"Subject: two\r\n\r\n.dotted\r\nline\n.\nbare lf\r\n.\r\n",
    b"no header end\r\n.",
];

fn config(control: u8) -> Pop3Config {
    Pop3Config {
        hostname: "pop.example.test".into(),
        stls: control & 0x80 == 0,
        max_line_len: 64,
        max_auth_failures: 3,
        plaintext_auth_ok: control & 0x08 == 0,
        policy: Policy { expire_days: (control & 0x10 != 0).then_some(30), ..Policy::default() },
    }
}

fn listing() -> Vec<MessageInfo> {
    MESSAGES
        .iter()
        .enumerate()
        .map(|(i, body)| MessageInfo { uid: format!("uid-{i}").into(), size: body.len() as u64 })
        .collect()
}

/// Checks the wire form of a message body (RFC 1939 §3 byte-stuffing).
fn check_wire(wire: &[u8]) {
    assert!(wire.ends_with(b".\r\n"), "{wire:?}");
    assert!(wire == b".\r\n" || wire.ends_with(b"\r\n.\r\n"), "{wire:?}");
    let mut scanner = DataScanner::new(usize::MAX);
    let mut body = Vec::new();
    assert_eq!(scanner.feed(wire, &mut body), DataProgress::Ended { consumed: wire.len() }, "{wire:?}");
    // A lenient client ends at any "." line after any LF: none but the last.
    let last_dot = wire.len() - 3;
    for i in 0..wire.len() {
        if wire[i] == b'.' && (i == 0 || wire[i - 1] == b'\n') && i != last_dot {
            assert_eq!(wire.get(i + 1), Some(&b'.'), "unstuffed dot at {i} in {wire:?}");
        }
    }
}

#[derive(Debug, Default, PartialEq)]
struct Transcript {
    output: Vec<u8>,
    tls: bool,
}

fn run(control: u8, chunks: &[&[u8]], past_tls: bool, at_tls: &mut Option<Transcript>) -> Transcript {
    let config = Rc::new(config(control));
    let mut server = Server::new(Rc::clone(&config));
    let mut t = Transcript::default();
    // The greeting.
    t.output.extend_from_slice(server.output());
    server.clear_output();
    let mut buffer: Vec<u8> = Vec::new();
    let mut maildrop_len = 0;
    let mut tls_active = false;
    // What a driver may have to buffer: a command line, or an AUTH response.
    let max_buffered = config.max_line_len.max(sasl::MAX_RESPONSE_LINE);
    'feed: for chunk in chunks {
        buffer.extend_from_slice(chunk);
        loop {
            let consumed = server.handle_input(&buffer);
            assert!(consumed <= buffer.len(), "consumed {consumed} of {}", buffer.len());
            buffer.drain(..consumed);
            let mut acted = false;
            while let Some(action) = server.poll_action() {
                acted = true;
                match action {
                    Action::Authenticate { user, password } => {
                        assert!(config.plaintext_auth_ok || tls_active, "password asked for in plaintext");
                        assert!(!user.is_empty());
                        let outcome = match (user.as_str(), password.as_str()) {
                            ("alice", "secret") => AuthOutcome::LoggedIn(listing()),
                            (_, "inuse") => AuthOutcome::InUse,
                            (_, "temp") => AuthOutcome::TempFailure,
                            _ => AuthOutcome::BadCredentials,
                        };
                        if let AuthOutcome::LoggedIn(list) = &outcome {
                            maildrop_len = list.len();
                        }
                        server.auth_done(outcome);
                    }
                    Action::SendMessage { index, top_lines } => {
                        assert!(index < maildrop_len, "index {index} of {maildrop_len}");
                        assert!(server.output().ends_with(b"\r\n"));
                        let mut wire = Vec::new();
                        write_message(MESSAGES[index], top_lines, &mut wire);
                        check_wire(&wire);
                        let before = server.output().len();
                        server.message_body(MESSAGES[index]);
                        assert_eq!(&server.output()[before..], &wire[..], "the body goes behind the status line");
                        t.output.extend_from_slice(server.output());
                        server.clear_output();
                    }
                    Action::Commit { deleted } => {
                        assert!(!deleted.is_empty());
                        assert!(deleted.windows(2).all(|w| w[0] < w[1]), "{deleted:?}");
                        assert!(deleted.iter().all(|&i| i < maildrop_len), "{deleted:?}");
                        let outcome = if deleted.len() == 1 { CommitOutcome::Done } else { CommitOutcome::Failed };
                        server.commit_done(outcome);
                        assert!(server.is_closed());
                    }
                    Action::StartTls => {
                        t.output.extend_from_slice(server.output());
                        server.clear_output();
                        t.tls = true;
                        if at_tls.is_none() {
                            *at_tls = Some(Transcript { output: t.output.clone(), tls: true });
                        }
                        if !past_tls {
                            break 'feed;
                        }
                        // Until the handshake, plaintext is discarded unanswered.
                        assert_eq!(server.handle_input(b"CAPA\r\n"), 6);
                        assert!(server.output().is_empty());
                        server.stls_done();
                        tls_active = true;
                    }
                }
            }
            let out = server.output();
            assert!(out.is_empty() || out.ends_with(b"\r\n"), "partial reply {out:?}");
            t.output.extend_from_slice(out);
            server.clear_output();
            if !acted {
                break;
            }
        }
        if !server.is_closed() {
            assert!(buffer.len() < max_buffered, "{} bytes left unconsumed", buffer.len());
        }
    }
    server.handle_timeout();
    server.handle_eof();
    t
}

fuzz_target!(|data: &[u8]| {
    let Some((control, stream)) = split_control(data) else {
        return;
    };
    let _ = command::parse(stream);
    for line in stream.split(|&b| b == b'\n') {
        let _ = command::parse(line.strip_suffix(b"\r").unwrap_or(line));
    }

    // The stream as a stored message, whole and cut by TOP.
    let mut wire = Vec::new();
    write_message(stream, None, &mut wire);
    check_wire(&wire);
    wire.clear();
    write_message(stream, Some(u32::from(control & 7)), &mut wire);
    check_wire(&wire);

    let mut at_tls_chunked = None;
    let chunked = run(control, &ChunkPlan::new(control).chunks(stream), true, &mut at_tls_chunked);
    let mut at_tls_whole = None;
    let whole = run(control, &[stream], false, &mut at_tls_whole);
    match (at_tls_whole, at_tls_chunked) {
        (Some(whole), Some(chunked)) => assert_eq!(whole, chunked, "chunking changed the session before STLS"),
        (None, None) => assert_eq!(whole, chunked, "chunking changed the session"),
        (whole, chunked) => panic!("STLS seen in one chunking only: whole {whole:?} chunked {chunked:?}"),
    }
});
