//! The milter client (`ringmail::proto::milter`): what a milter answers,
//! fed to the MTA side of a conversation, and its changes applied.
//!
//! Input: byte 0 picks how the replies are cut into reads (see
//! `ringmail_fuzz::ChunkPlan`); the rest is what the milter sends.
//!
//! Properties:
//! - Nothing panics, whatever the milter sends.
//! - The outcome (verdict, error, or still waiting) does not depend on how
//!   the bytes were cut into reads.
//! - What is left unread is less than one frame: memory stays bounded.
//! - Applying an accepted verdict's changes keeps the message's body where
//!   a parser finds it: no header value can end the header section early
//!   or start a field of its own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::proto::milter::{apply, headers, Conversation, Modification, Session, Verdict, MAX_FRAME};
use ringmail_fuzz::{split_control, ChunkPlan};

const MESSAGE: &[u8] = b"Subject: x\r\nFrom: a@b.test\r\n\r\nbody\r\n";

fn conversation() -> Conversation {
    Conversation {
        hostname: "mx.test".into(),
        client_addr: "127.0.0.9".parse().unwrap(),
        client_port: 4242,
        client_name: "[127.0.0.9]".into(),
        helo: "client.test".into(),
        sender: "a@b.test".into(),
        recipients: vec!["u@mx.test".into(), "v@mx.test".into()],
        auth_user: None,
        message: MESSAGE.to_vec(),
    }
}

/// Feed `chunks`, as a driver would; the outcome and the bytes left over.
fn run(conv: &Conversation, chunks: &[&[u8]]) -> (Result<Option<Verdict>, String>, bool, usize) {
    let mut s = Session::new(conv, 4096);
    let mut buf: Vec<u8> = Vec::new();
    for c in chunks {
        buf.extend_from_slice(c);
        match s.handle_input(&buf) {
            Ok(n) => {
                assert!(n <= buf.len());
                buf.drain(..n);
            }
            Err(e) => return (Err(e.to_string()), false, buf.len()),
        }
        if s.verdict().is_some() {
            break;
        }
        assert!(buf.len() < 4 + MAX_FRAME, "{} bytes held", buf.len());
    }
    let lead = s.leading_space();
    (Ok(s.into_verdict()), lead, buf.len())
}

fuzz_target!(|data: &[u8]| {
    let Some((control, replies)) = split_control(data) else { return };
    let conv = conversation();
    let (whole, lead, _) = run(&conv, &[replies]);
    let chunks = ChunkPlan::new(control).chunks(replies);
    let (cut, _, _) = run(&conv, &chunks);
    assert_eq!(whole, cut, "the outcome depends on the reads");
    if let Ok(Some(Verdict::Accept(mods))) = whole {
        let edited = apply(MESSAGE, &mods, lead);
        let (_, body_start) = headers::split(&edited.message);
        let replaced: Option<Vec<u8>> = mods
            .iter()
            .filter_map(|m| match m {
                Modification::ReplBody(c) => Some(c.clone()),
                _ => None,
            })
            .reduce(|mut a, b| {
                a.extend(b);
                a
            });
        let body = &edited.message[body_start..];
        match replaced {
            // Bare LFs become CRLF; the length can only grow.
            Some(new) => assert!(body.len() >= new.len(), "body lost"),
            None => {
                let changed_headers = mods.iter().any(|m| {
                    matches!(
                        m,
                        Modification::AddHeader { .. }
                            | Modification::ChgHeader { .. }
                            | Modification::InsHeader { .. }
                    )
                });
                if changed_headers {
                    assert_eq!(body, b"body\r\n", "a header value moved the body");
                }
            }
        }
    }
});
