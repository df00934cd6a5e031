//! SMTP command parser and server session.
//!
//! Input: a control byte, then the bytes a client sends. Control bits 0-2
//! pick the chunking (see `ringmail_fuzz`), bits 5-6 the AUTH mode (off,
//! offered, required, offered), bit 3 forbids passwords before STARTTLS,
//! bit 7 turns STARTTLS off. The scripted driver accepts user `alice` with
//! password `secret` (passwords `temp` and `locked` get those outcomes).
//!
//! Properties:
//! - `parse_command` never panics, on the whole input or on any line of it;
//!   a mailbox it accepts is canonical: its `Display` parses back to itself.
//! - `Server::handle_input` never panics and never reports more bytes
//!   consumed than it was given; with no action pending, what it leaves
//!   unconsumed is a partial line shorter than `max_line_len` (or than
//!   `sasl::MAX_RESPONSE_LINE` while an AUTH exchange waits for a line).
//! - A stored message respects the limits (body size, recipient count,
//!   distinct recipients, messages per session) and carries the authenticated user, which AUTH
//!   required mode insists on; output is whole CRLF-terminated lines.
//! - A password is asked to be checked only when it may be sent (allowed
//!   in plaintext, or after STARTTLS), and is never empty.
//! - The SASL PLAIN decoder never panics.
//! - Chunking does not matter: the replies and stored messages are the same
//!   when the stream arrives all at once (up to a STARTTLS, after which a
//!   real client speaks TLS instead).
#![no_main]

use std::rc::Rc;

use libfuzzer_sys::fuzz_target;
use ringmail::proto::smtp::{
    parse_command, parse_forward_path_utf8, parse_mailbox_utf8, sasl, Action, Address, AuthMode, AuthOutcome, Command,
    Envelope, ForwardPath, RcptDecision, RecipientPolicy, ReversePath, SenderDecision, Server, ServerConfig,
    StoreOutcome,
};
use ringmail_fuzz::{split_control, ChunkPlan};

/// Accepts a fixed set of shapes, so every decision is reachable.
struct Policy;

impl RecipientPolicy for Policy {
    fn check(&self, rcpt: &Address, auth: Option<&str>) -> RcptDecision {
        match rcpt.domain.as_str() {
            "relay.test" => RcptDecision::Remote { domain: rcpt.domain.clone() },
            "example.test" if rcpt.local.starts_with('x') => RcptDecision::UnknownUser,
            "example.test" => RcptDecision::Local { user: rcpt.local.clone() },
            _ if auth.is_some() => RcptDecision::Remote { domain: rcpt.domain.clone() },
            _ => RcptDecision::RelayDenied,
        }
    }

    fn check_sender(&self, sender: &ReversePath, auth: Option<&str>) -> SenderDecision {
        match sender {
            ReversePath::Mailbox(a) if auth.is_some() && a.local.starts_with("other") => SenderDecision::NotOwned,
            _ => SenderDecision::Ok,
        }
    }
}

fn config(control: u8) -> ServerConfig {
    ServerConfig {
        hostname: "mx.example.test".into(),
        max_message_size: 200,
        max_recipients: 3,
        max_line_len: 80,
        max_errors: 6,
        max_commands: 40,
        max_messages: 3,
        starttls: control & 0x80 == 0,
        tls_at_start: control & 0x04 != 0,
        auth: match (control >> 5) & 3 {
            0 => AuthMode::Off,
            2 => AuthMode::Required,
            _ => AuthMode::Offered,
        },
        plaintext_auth_ok: control & 0x08 == 0,
    }
}

/// What a session did, for comparing two chunkings.
#[derive(Debug, Default, PartialEq)]
struct Transcript {
    output: Vec<u8>,
    stored: Vec<(Envelope, Vec<u8>)>,
    /// STARTTLS was accepted: the plaintext part of the session is over.
    tls: bool,
}

/// Checks a canonical mailbox parses back to itself.
fn check_canonical(address: &Address) {
    let text = address.to_string();
    // UTF-8 parsers: an SMTPUTF8 transaction may hold UTF-8 local parts.
    assert_eq!(parse_mailbox_utf8(text.as_bytes()).as_ref(), Ok(address), "{text:?}");
    let path = format!("<{text}>");
    match parse_forward_path_utf8(path.as_bytes()) {
        Ok((ForwardPath::Mailbox(again), rest)) => {
            assert_eq!(&again, address, "{path:?}");
            assert!(rest.is_empty());
        }
        // A local part "postmaster" with a domain is a mailbox, never this.
        other => panic!("{path:?} did not parse back: {other:?}"),
    }
}

fn check_command(line: &[u8]) {
    match parse_command(line) {
        Ok(Command::Mail(from)) => {
            if let ReversePath::Mailbox(address) = &from.sender {
                check_canonical(address);
            }
        }
        Ok(Command::Rcpt(to)) => {
            if let ForwardPath::Mailbox(address) = &to.recipient {
                check_canonical(address);
            }
        }
        Ok(_) | Err(_) => {}
    }
}

/// Drives a session the way `net/` does: keep unconsumed bytes, perform
/// each action at once, feed the rest again. Stops at STARTTLS unless
/// `past_tls`.
fn run(control: u8, chunks: &[&[u8]], past_tls: bool, stop_at_tls: &mut Option<Transcript>) -> Transcript {
    let config = Rc::new(config(control));
    let mut server = Server::new(Rc::clone(&config), Box::new(Policy));
    let mut t = Transcript::default();
    // The greeting.
    t.output.extend_from_slice(server.output());
    server.clear_output();
    let mut buffer: Vec<u8> = Vec::new();
    let mut tls_active = false;
    let mut stored_ok = 0;
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
                    Action::Store { envelope, body } => {
                        assert!(body.len() <= config.max_message_size);
                        // BINARYMIME bodies (BDAT) are stored as sent.
                        assert!(envelope.binarymime || body.is_empty() || body.ends_with(b"\r\n"));
                        let n = envelope.recipients.len();
                        assert!(n >= 1 && n <= config.max_recipients);
                        assert_eq!(envelope.auth_user.as_deref(), server.authenticated_user());
                        assert!(config.auth != AuthMode::Required || envelope.auth_user.is_some());
                        for (i, r) in envelope.recipients.iter().enumerate() {
                            assert!(envelope.recipients[..i].iter().all(|o| o.address != r.address));
                            check_canonical(&r.address);
                        }
                        t.stored.push((envelope, body));
                        // The outcome depends on the count only, not on chunking.
                        let outcome = match t.stored.len() % 4 {
                            2 => StoreOutcome::TempFailure,
                            3 => StoreOutcome::SpoolFull,
                            _ => StoreOutcome::Stored { queue_id: format!("Q{}", t.stored.len()) },
                        };
                        if let StoreOutcome::Stored { .. } = outcome {
                            stored_ok += 1;
                            assert!(stored_ok <= config.max_messages, "more messages than max_messages");
                        }
                        server.store_done(outcome);
                    }
                    Action::Authenticate { mechanism: _, user, password } => {
                        assert!(config.plaintext_auth_ok || tls_active, "password asked for in plaintext");
                        assert!(config.auth != AuthMode::Off);
                        for text in [&user, &password] {
                            assert!(!text.is_empty() && !text.contains('\0'));
                        }
                        let outcome = match (user.as_str(), password.as_str()) {
                            ("alice", "secret") => AuthOutcome::Success,
                            (_, "temp") => AuthOutcome::TempFailure,
                            (_, "locked") => AuthOutcome::Locked,
                            _ => AuthOutcome::Failure,
                        };
                        server.auth_done(outcome);
                        if outcome == AuthOutcome::Success {
                            assert_eq!(server.authenticated_user(), Some(user.as_str()));
                        }
                    }
                    // Only asked after `filter_commands`, which this driver
                    // never calls; answered "go on" like a driver with no
                    // live milters would.
                    Action::Filter(_) => server.filter_done(None),
                    Action::StartTls => {
                        assert!(server.output().ends_with(b"220 2.0.0 Ready to start TLS\r\n"));
                        t.output.extend_from_slice(server.output());
                        server.clear_output();
                        t.tls = true;
                        if stop_at_tls.is_none() {
                            *stop_at_tls =
                                Some(Transcript { output: t.output.clone(), stored: t.stored.clone(), tls: true });
                        }
                        if !past_tls {
                            break 'feed;
                        }
                        // Until the handshake, plaintext is discarded unanswered
                        // (CVE-2011-0411).
                        assert_eq!(server.handle_input(b"RSET\r\n"), 6);
                        assert!(server.output().is_empty());
                        server.starttls_done();
                        tls_active = true;
                        assert_eq!(server.authenticated_user(), None);
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
    check_command(stream);
    let _ = sasl::plain(stream);
    for line in stream.split(|&b| b == b'\n') {
        check_command(line.strip_suffix(b"\r").unwrap_or(line));
    }

    let mut at_tls_chunked = None;
    let chunked = run(control, &ChunkPlan::new(control).chunks(stream), true, &mut at_tls_chunked);
    let mut at_tls_whole = None;
    let whole = run(control, &[stream], false, &mut at_tls_whole);
    match (at_tls_whole, at_tls_chunked) {
        (Some(whole), Some(chunked)) => assert_eq!(whole, chunked, "chunking changed the session before STARTTLS"),
        (None, None) => assert_eq!(whole, chunked, "chunking changed the session"),
        (whole, chunked) => panic!("STARTTLS seen in one chunking only: whole {whole:?} chunked {chunked:?}"),
    }
});
