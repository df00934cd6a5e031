//! Whole-transcript tests: PIPELINING, actions holding back pipelined
//! commands, the chunk-size sweep, and DATA edge cases through the session.

use std::rc::Rc;

use super::envelope::Envelope;
use super::interface::{Action, ServerConfig, StoreOutcome};
use super::server::Server;
use super::testkit::{config, Session, TestPolicy};

#[test]
fn pipelined_commands_get_their_replies_in_order() {
    let mut s = Session::new();
    s.ehlo("client.test", "250 ");
    let reply = s.send(
        b"MAIL FROM:<a@relay.test>\r\nRCPT TO:<jane@example.test>\r\n\
          RCPT TO:<nobody@example.test>\r\nDATA\r\n",
    );
    assert_eq!(
        reply,
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n\
         550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown\r\n\
         354 End data with <CR><LF>.<CR><LF>\r\n"
    );
    let reply = s.send(
        b"one\r\n.\r\nMAIL FROM:<b@relay.test>\r\nRCPT TO:<john@example.test>\r\nDATA\r\n\
          two\r\n.\r\nQUIT\r\n",
    );
    assert_eq!(
        reply,
        "250 2.0.0 Ok: queued as Q1\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n\
         354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as Q2\r\n221 2.0.0 Bye\r\n"
    );
    assert_eq!(s.stored[0].1, b"one\r\n");
    assert_eq!(s.stored[1].1, b"two\r\n");
    assert!(s.server.is_closed());
}

#[test]
fn commands_after_the_final_dot_wait_for_the_store() {
    let checked = Default::default();
    let mut server = Server::new(Rc::new(config()), Box::new(TestPolicy { checked }));
    let input = b"EHLO c.test\r\nMAIL FROM:<a@relay.test>\r\nRCPT TO:<jane@example.test>\r\n\
                  DATA\r\nbody\r\n.\r\nNOOP\r\n";
    let consumed = server.handle_input(input);
    let rest = &input[consumed..];
    assert_eq!(rest, b"NOOP\r\n");
    assert!(!String::from_utf8_lossy(server.output()).contains("250 2.0.0"));
    // Nothing more is consumed until the store is reported.
    assert_eq!(server.handle_input(rest), 0);
    let Some(Action::Store { envelope, body }) = server.poll_action() else {
        panic!("expected a store");
    };
    assert_eq!(body, b"body\r\n");
    assert_eq!(envelope.recipients.len(), 1);
    assert!(server.poll_action().is_none(), "each action is returned once");
    assert_eq!(server.handle_input(rest), 0);
    server.clear_output();
    server.store_done(StoreOutcome::Stored { queue_id: "ABC".into() });
    assert_eq!(server.handle_input(rest), rest.len());
    assert_eq!(server.output(), b"250 2.0.0 Ok: queued as ABC\r\n250 2.0.0 Ok\r\n");
}

/// A transcript touching every path that a chunk boundary could upset.
fn sweep_transcript() -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(
        b"EHLO client.test\r\nMAIL FROM:<a@relay.test> BODY=8BITMIME\r\n\
          RCPT TO:<jane@example.test>\r\nRCPT TO:<nobody@example.test>\r\nRCPT TO:<x@relay.test>\r\n\
          DATA\r\nSubject: one\r\n..stuffed\r\na\n.\nMAIL FROM:<evil@relay.test>\r\n\
          b\r.\r\nc\n.\r\nd\r\n.\rx\r\ncaf\xc3\xa9\r\n.\r\n\
          NOOP\nMAIL FROM:<b@relay.test>\r\nRCPT TO:<john@example.test>\r\nDATA\r\n",
    );
    for _ in 0..30 {
        t.extend_from_slice(b"0123456789012345678901234567890123456789\r\n");
    }
    t.extend_from_slice(
        b".\r\nMAIL FROM:<c@relay.test> SIZE=10\r\nRCPT TO:<Jane@example.test>\r\n\
          RCPT TO:<jane@example.test>\r\nDATA\r\n.\r\nRSET\r\nBOGUS\r\nNO\0OP\r\n\
          MAIL FROM:<d@relay.test>\r\nRCPT TO:<postmaster>\r\nDATA\r\n.a\r\n..\r\n.\r\nQUIT\r\n",
    );
    t
}

/// Feeds `input` in chunks; returns all replies and all stored messages.
fn run_chunked(input: &[u8], chunk: usize, config: ServerConfig) -> (String, Vec<(Envelope, Vec<u8>)>, bool) {
    let mut s = Session::with(config);
    let mut replies = String::new();
    for piece in input.chunks(chunk.min(input.len()).max(1)) {
        replies.push_str(&s.send(piece));
    }
    (replies, s.stored, s.server.is_closed())
}

#[test]
fn replies_and_bodies_do_not_depend_on_chunk_sizes() {
    let transcript = sweep_transcript();
    let cfg = || ServerConfig { max_errors: 100, ..config() };
    let whole = run_chunked(&transcript, usize::MAX, cfg());
    for chunk in [1, 2, 3, 4, 7, 16, 64, 512] {
        assert_eq!(run_chunked(&transcript, chunk, cfg()), whole, "chunk size {chunk}");
    }
    let (replies, stored, closed) = whole;
    assert!(closed);
    assert_eq!(stored.len(), 3);
    assert_eq!(
        stored[0].1,
        b"Subject: one\r\n.stuffed\r\na\r\n.\r\nMAIL FROM:<evil@relay.test>\r\n\
          b\r\n.\r\nc\r\n.\r\nd\r\n\r\nx\r\ncaf\xc3\xa9\r\n"
    );
    assert!(stored[0].0.body_8bit);
    assert_eq!(stored[1].1, b"");
    assert_eq!(stored[2].1, b"a\r\n.\r\n");
    let codes: Vec<&str> = replies.lines().map(|l| &l[..3]).collect();
    assert_eq!(
        codes,
        [
            "250", "250", "250", "250", "250", "250", "250", "250", "250", "250", // EHLO (10 lines)
            "250", "250", "550", "250", "354", "250", // first message
            "250", "250", "250", "354", "552", // NOOP, oversized message
            "250", "550", "250", "354", "250", // third transaction, empty message
            "250", "500", "500", // RSET, BOGUS, NUL
            "250", "250", "354", "250", "221", // postmaster
        ]
    );
}

#[test]
fn overlong_line_closes_the_same_way_at_every_chunk_size() {
    let mut transcript = b"EHLO client.test\r\nNOOP ".to_vec();
    transcript.resize(transcript.len() + 600, b'x');
    transcript.extend_from_slice(b"\r\nNOOP\r\n");
    let whole = run_chunked(&transcript, usize::MAX, config());
    assert!(whole.0.ends_with("250 SMTPUTF8\r\n500 5.5.6 Error: line too long\r\n"));
    assert!(whole.2);
    for chunk in [1, 2, 3, 4, 7, 16, 64, 512] {
        assert_eq!(run_chunked(&transcript, chunk, config()), whole, "chunk size {chunk}");
    }
}

#[test]
fn lf_dot_lf_does_not_end_data() {
    let mut s = Session::new();
    s.transaction();
    s.cmd("DATA", "354");
    assert_eq!(s.send(b"hello\n.\nMAIL FROM:<evil@relay.test>\nRCPT TO:<x@relay.test>\nDATA\n"), "");
    s.message(b"real end\r\n.\r\n", "250 2.0.0 Ok: queued as Q1");
    assert_eq!(s.stored.len(), 1);
    assert_eq!(
        s.stored[0].1,
        b"hello\r\n.\r\nMAIL FROM:<evil@relay.test>\r\nRCPT TO:<x@relay.test>\r\nDATA\r\nreal end\r\n"
    );
}

#[test]
fn smuggling_sequences_never_end_data() {
    for smuggle in [&b"\n.\n"[..], b"\n.\r\n", b"\r.\r", b"\r.\r\n", b"\r\n.\n", b"\r\n.\r"] {
        let mut s = Session::new();
        s.transaction();
        s.cmd("DATA", "354");
        let mut wire = b"x".to_vec();
        wire.extend_from_slice(smuggle);
        wire.extend_from_slice(b"MAIL FROM:<evil@relay.test>\r\n");
        assert_eq!(s.send(&wire), "", "{smuggle:?}");
        s.message(b".\r\n", "250");
        assert_eq!(s.stored.len(), 1, "{smuggle:?}");
    }
}

#[test]
fn dot_unstuffing_happens_only_at_real_line_starts() {
    let mut s = Session::new();
    s.transaction();
    s.cmd("DATA", "354");
    s.message(b"..a\r\n.b\r\nc\n..d\r\n...\r\n.\r\n", "250");
    assert_eq!(s.stored[0].1, b".a\r\nb\r\nc\r\n..d\r\n..\r\n");
}

#[test]
fn oversized_message_gets_552_and_then_a_normal_message_works() {
    let mut s = Session::new();
    s.transaction();
    s.cmd("DATA", "354");
    let big = vec![b'y'; 5000];
    assert_eq!(s.send(&big), "");
    s.message(b"\r\n.\r\n", "552 5.3.4 Message size exceeds fixed limit\r\n");
    assert!(s.stored.is_empty());
    s.cmd("DATA", "503"); // transaction reset
    s.mail_from("a@relay.test", "250");
    s.rcpt_to("jane@example.test", "250");
    s.data(b"small\r\n", "250 2.0.0 Ok: queued as Q1");
    assert_eq!(s.stored[0].1, b"small\r\n");
}

#[test]
fn message_of_exactly_the_limit_is_accepted() {
    let mut s = Session::new();
    s.transaction();
    let mut body = vec![b'z'; 998];
    body.extend_from_slice(b"\r\n");
    s.data(&body, "250");
    assert_eq!(s.stored[0].1.len(), 1000);
}

/// Pieces of protocol and of trouble, glued at random (a fixed xorshift).
fn byte_soup(seed: u64, pieces: usize) -> Vec<u8> {
    const PIECES: &[&[u8]] = &[
        b"EHLO c.test\r\n",
        b"MAIL FROM:<a@relay.test>\r\n",
        b"MAIL FROM:<a@relay.test> BODY=8BITMIME SIZE=50\r\n",
        b"RCPT TO:<jane@example.test>\r\n",
        b"RCPT TO:<\"a b\"@[1.2.3.4]>\r\n",
        b"DATA\r\n",
        b"DATA\r\n",
        b"RSET\r\n",
        b"NOOP",
        b"VRFY x",
        b"\r\n",
        b"\n",
        b"\r",
        b".",
        b"\r\n.\r\n",
        b"\r\n.\r\n",
        b"\0",
        b"\xff\xc3",
        b"  ",
        b"x",
        b"<@>",
        b"..\r\n",
    ];
    let mut state = seed | 1;
    let mut out = Vec::new();
    for _ in 0..pieces {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(PIECES[(state % PIECES.len() as u64) as usize]);
    }
    out
}

#[test]
fn random_byte_soup_never_panics_and_does_not_depend_on_chunking() {
    let cfg = || ServerConfig { max_errors: 1000, max_line_len: 64, max_message_size: 200, ..config() };
    let mut messages = 0;
    for seed in 0..300 {
        let soup = byte_soup(seed, 200);
        let whole = run_chunked(&soup, usize::MAX, cfg());
        for chunk in [1, 5, 64] {
            assert_eq!(run_chunked(&soup, chunk, cfg()), whole, "seed {seed} chunk {chunk}");
        }
        for (_, body) in &whole.1 {
            assert!(body.len() <= 200, "seed {seed}");
        }
        messages += whole.1.len();
    }
    assert!(messages > 50, "the soup should get some messages through");
}
