//! BDAT (RFC 3030 CHUNKING, BINARYMIME) through the SMTP server session.
//!
//! Input: a control byte, then what the client sends after the session
//! prefix below (EHLO, MAIL, RCPT). Control bits 0-2 pick the read
//! splitting (see `ringmail_fuzz`), bit 3 declares `BODY=BINARYMIME`,
//! bits 4-5 the size limit.
//!
//! Properties:
//! - `handle_input` never panics and never reports more bytes consumed
//!   than it was given.
//! - No stored message is larger than `max_message_size`, whatever the
//!   BDAT sizes announced.
//! - A non-BINARYMIME body stored by BDAT has only CRLF line ends and
//!   ends with one (or is empty), like a DATA body.
//! - How the stream is split across reads does not matter: the replies and
//!   the stored messages are the same as when it arrives all at once.
#![no_main]

use std::rc::Rc;

use libfuzzer_sys::fuzz_target;
use ringmail::proto::smtp::{
    Action, Address, AuthMode, Envelope, RcptDecision, RecipientPolicy, Server, ServerConfig, StoreOutcome,
};
use ringmail_fuzz::{split_control, ChunkPlan};

const LIMITS: [usize; 4] = [1, 16, 200, 4096];

struct Policy;

impl RecipientPolicy for Policy {
    fn check(&self, rcpt: &Address, _auth: Option<&str>) -> RcptDecision {
        match rcpt.domain.as_str() {
            "example.test" => RcptDecision::Local { user: rcpt.local.clone() },
            _ => RcptDecision::Remote { domain: rcpt.domain.clone() },
        }
    }
}

fn config(control: u8) -> ServerConfig {
    ServerConfig {
        hostname: "mx.example.test".into(),
        max_message_size: LIMITS[usize::from((control >> 4) & 3)],
        max_recipients: 3,
        max_line_len: 80,
        max_errors: 20,
        max_commands: 200,
        max_messages: 5,
        starttls: false,
        tls_at_start: false,
        auth: AuthMode::Off,
        plaintext_auth_ok: false,
    }
}

fn run(control: u8, chunks: &[&[u8]]) -> (Vec<u8>, Vec<(Envelope, Vec<u8>)>) {
    let config = Rc::new(config(control));
    let mut server = Server::new(Rc::clone(&config), Box::new(Policy));
    let mut output = server.output().to_vec();
    server.clear_output();
    let mut stored = Vec::new();
    let mut buffer: Vec<u8> = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        loop {
            let consumed = server.handle_input(&buffer);
            assert!(consumed <= buffer.len(), "consumed {consumed} of {}", buffer.len());
            buffer.drain(..consumed);
            let mut acted = false;
            while let Some(action) = server.poll_action() {
                acted = true;
                if let Action::Store { envelope, body } = action {
                    assert!(body.len() <= config.max_message_size, "stored {} bytes", body.len());
                    if !envelope.binarymime {
                        assert!(body.is_empty() || body.ends_with(b"\r\n"));
                        assert!(body.windows(2).all(|w| (w[0] == b'\r') == (w[1] == b'\n')));
                    }
                    stored.push((envelope, body));
                    let queue_id = format!("Q{}", stored.len());
                    server.store_done(StoreOutcome::Stored { queue_id });
                }
            }
            output.extend_from_slice(server.output());
            server.clear_output();
            if !acted {
                break;
            }
        }
    }
    (output, stored)
}

fuzz_target!(|data: &[u8]| {
    let Some((control, input)) = split_control(data) else {
        return;
    };
    let body = if control & 0x08 != 0 { " BODY=BINARYMIME" } else { "" };
    let mut stream =
        format!("EHLO c.test\r\nMAIL FROM:<a@relay.test>{body}\r\nRCPT TO:<jane@example.test>\r\n").into_bytes();
    stream.extend_from_slice(input);
    let whole = run(control, &[&stream]);
    let chunks = ChunkPlan::new(control).chunks(&stream);
    assert_eq!(run(control, &chunks), whole, "read splitting changed the session");
});
