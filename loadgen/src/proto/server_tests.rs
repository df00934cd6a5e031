//! Transcript tests for the sink's server session, including a chunk-size
//! sweep over a whole pipelined session.

use super::*;
use std::rc::Rc;

fn cfg() -> Rc<ServerConfig> {
    Rc::new(ServerConfig {
        hostname: "sink.test".into(),
        starttls: false,
        auth: None,
        max_size: 1000,
        keep_content: true,
        chunking: true,
    })
}

/// Runs a whole client transcript through a session in chunks of `size`,
/// answering every message with 250, and returns (output, messages).
fn run(cfg: Rc<ServerConfig>, input: &[u8], size: usize) -> (String, Vec<Received>) {
    let mut s = ServerSession::new(cfg, false);
    let mut out = Vec::new();
    let mut msgs = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    for chunk in input.chunks(size) {
        pending.extend_from_slice(chunk);
        loop {
            let (used, action) = s.handle_input(&pending);
            pending.drain(..used);
            match action {
                Some(Action::Message(m)) => {
                    msgs.push(*m);
                    s.reply_to_message(250, "ok");
                }
                Some(Action::Close) => {
                    s.take_output(&mut out);
                    return (String::from_utf8(out).unwrap(), msgs);
                }
                Some(Action::StartTls) => panic!("no tls here"),
                None if used == 0 => break,
                None => {}
            }
        }
    }
    s.take_output(&mut out);
    (String::from_utf8(out).unwrap(), msgs)
}

const SESSION: &[u8] =
    b"EHLO gen.test\r\nMAIL FROM:<a@gen.test> SIZE=50\r\nRCPT TO:<x@a.test>\r\nRCPT TO:<y@b.test>\r\nDATA\r\n\
Message-ID: <r.1.1@loadgen>\r\nSubject: hi\r\n\r\n..dot\r\nbody\r\n.\r\n\
MAIL FROM:<b@gen.test>\r\nRCPT TO:<z@a.test>\r\nDATA\r\nSubject: no id\r\n\r\nx\r\n.\r\nQUIT\r\n";

#[test]
fn pipelined_session_gives_same_result_at_every_chunk_size() {
    let (want_out, want_msgs) = run(cfg(), SESSION, SESSION.len());
    assert_eq!(want_msgs.len(), 2);
    for size in [1, 2, 3, 4, 8, 16, 64, 512] {
        let (out, msgs) = run(cfg(), SESSION, size);
        assert_eq!(out, want_out, "chunk size {size}");
        assert_eq!(msgs, want_msgs, "chunk size {size}");
    }
}

#[test]
fn received_message_carries_envelope_id_and_unstuffed_content() {
    let (out, msgs) = run(cfg(), SESSION, 7);
    let m = &msgs[0];
    assert_eq!(m.mail_from, "a@gen.test");
    assert_eq!(m.rcpts, vec!["x@a.test", "y@b.test"]);
    assert_eq!(m.message_id.as_deref(), Some("<r.1.1@loadgen>"));
    let content = m.content.as_deref().unwrap();
    assert_eq!(content, b"Message-ID: <r.1.1@loadgen>\r\nSubject: hi\r\n\r\n.dot\r\nbody\r\n");
    assert_eq!(m.size, content.len() as u64);
    assert_eq!(msgs[1].message_id, None);
    assert!(out.starts_with("220 sink.test"));
    assert!(out.contains("250-PIPELINING\r\n"));
    assert!(out.ends_with("221 2.0.0 Bye\r\n"));
}

#[test]
fn rcpt_before_mail_gets_503() {
    let (out, _) = run(cfg(), b"EHLO x\r\nRCPT TO:<a@b>\r\n", 100);
    assert!(out.ends_with("503 5.5.1 MAIL first\r\n"), "{out}");
}

#[test]
fn mail_before_ehlo_gets_503() {
    let (out, _) = run(cfg(), b"MAIL FROM:<a@b>\r\n", 100);
    assert!(out.ends_with("503 5.5.1 EHLO first\r\n"), "{out}");
}

#[test]
fn data_without_recipients_gets_554() {
    let (out, _) = run(cfg(), b"EHLO x\r\nMAIL FROM:<a@b>\r\nDATA\r\n", 100);
    assert!(out.ends_with("554 5.5.1 No valid recipients\r\n"), "{out}");
}

#[test]
fn declared_size_over_limit_gets_552() {
    let (out, _) = run(cfg(), b"EHLO x\r\nMAIL FROM:<a@b> SIZE=5000\r\n", 100);
    assert!(out.ends_with("552 5.3.4 Message size exceeds limit\r\n"), "{out}");
}

#[test]
fn content_over_limit_is_flagged_oversize() {
    let mut input = b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 1500));
    input.extend_from_slice(b"\r\n.\r\n");
    let (_, msgs) = run(cfg(), &input, 64);
    assert!(msgs[0].oversize);
}

#[test]
fn unknown_command_gets_502_and_session_continues() {
    let (out, _) = run(cfg(), b"FOO\r\nNOOP\r\n", 100);
    assert!(out.contains("502 5.5.2"), "{out}");
    assert!(out.ends_with("250 2.0.0 Ok\r\n"), "{out}");
}

#[test]
fn overlong_line_closes_the_session() {
    let input = vec![b'A'; MAX_LINE + 10];
    let (out, _) = run(cfg(), &input, MAX_LINE + 10);
    assert!(out.ends_with("500 5.5.2 Line too long\r\n"), "{out}");
}

#[test]
fn auth_is_required_when_configured_and_checked() {
    let c = Rc::new(ServerConfig { auth: Some(("u".into(), "pw".into())), ..(*cfg()).clone() });
    let (out, _) = run(c.clone(), b"EHLO x\r\nMAIL FROM:<a@b>\r\n", 100);
    assert!(out.contains("250-AUTH PLAIN\r\n"));
    assert!(out.ends_with("530 5.7.0 Authentication required\r\n"), "{out}");
    // base64("\0u\0pw") = AHUAcHc=
    let (out, _) = run(c.clone(), b"EHLO x\r\nAUTH PLAIN AHUAcHc=\r\nMAIL FROM:<a@b>\r\n", 100);
    assert!(out.contains("235 2.7.0"), "{out}");
    assert!(out.ends_with("250 2.1.0 Ok\r\n"), "{out}");
    let (out, _) = run(c.clone(), b"EHLO x\r\nAUTH PLAIN\r\nAHUAcHc=\r\n", 100);
    assert!(out.contains("334 \r\n") && out.ends_with("235 2.7.0 Authentication successful\r\n"), "{out}");
    let (out, _) = run(c, b"EHLO x\r\nAUTH PLAIN AHUAeHg=\r\n", 100);
    assert!(out.ends_with("535 5.7.8 Authentication credentials invalid\r\n"), "{out}");
}

#[test]
fn starttls_is_offered_only_when_configured_and_resets_state() {
    let c = Rc::new(ServerConfig { starttls: true, ..(*cfg()).clone() });
    let mut s = ServerSession::new(c, false);
    let (used, a) = s.handle_input(b"EHLO x\r\n");
    assert_eq!((used, a), (8, None));
    let (_, a) = s.handle_input(b"STARTTLS\r\n");
    assert_eq!(a, Some(Action::StartTls));
    let mut out = Vec::new();
    s.take_output(&mut out);
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("250-STARTTLS") && out.ends_with("220 2.0.0 Ready to start TLS\r\n"));
    s.tls_established();
    let (_, a) = s.handle_input(b"MAIL FROM:<a@b>\r\n");
    assert_eq!(a, None);
    let mut out = Vec::new();
    s.take_output(&mut out);
    assert_eq!(out, b"503 5.5.1 EHLO first\r\n");
}

#[test]
fn message_id_is_found_case_insensitively_in_headers_only() {
    assert_eq!(find_message_id(b"message-id:   <a@b> \r\n\r\n").as_deref(), Some("<a@b>"));
    assert_eq!(find_message_id(b"Subject: x\r\n\r\nMessage-ID: <a@b>\r\n"), None);
}

/// BDAT in two chunks (one holding a line that DATA would have to stuff),
/// then BDAT 0 LAST, then a message refused at RCPT whose chunk is read
/// and refused: same result at every chunk size.
const BDAT_SESSION: &[u8] = b"EHLO gen.test\r\nMAIL FROM:<a@gen.test>\r\nRCPT TO:<x@a.test>\r\nBDAT 25 \r\n\
Message-ID: <b.1@gen>\r\n\r\nBDAT 8 LAST\r\n.\r\nend\r\n\
MAIL FROM:<a@gen.test>\r\nRCPT TO:<y@a.test>\r\nBDAT 0 LAST\r\n\
MAIL FROM:<a@gen.test>\r\nBDAT 5 LAST\r\nhello\
RSET\r\nQUIT\r\n";

#[test]
fn bdat_chunks_make_one_message_and_refused_chunks_are_skipped() {
    let (want_out, want_msgs) = run(cfg(), BDAT_SESSION, BDAT_SESSION.len());
    assert!(want_out.contains("250-CHUNKING\r\n"), "{want_out}");
    assert!(want_out.contains("250 2.0.0 25 octets received\r\n"), "{want_out}");
    assert!(want_out.contains("554 5.5.1 No valid recipients\r\n250 2.0.0 Ok\r\n221"), "{want_out}");
    assert_eq!(want_msgs.len(), 2);
    assert_eq!(want_msgs[0].content.as_deref(), Some(&b"Message-ID: <b.1@gen>\r\n\r\n.\r\nend\r\n"[..]));
    assert_eq!(want_msgs[0].size, 33);
    assert_eq!(want_msgs[0].message_id.as_deref(), Some("<b.1@gen>"));
    assert_eq!(want_msgs[1].size, 0);
    assert_eq!(want_msgs[1].rcpts, ["y@a.test"]);
    for size in [1, 2, 3, 7, 16, 64] {
        let (out, msgs) = run(cfg(), BDAT_SESSION, size);
        assert_eq!(out, want_out, "chunk size {size}");
        assert_eq!(msgs, want_msgs, "chunk size {size}");
    }
}

#[test]
fn without_chunking_bdat_is_refused_but_its_chunk_still_read() {
    let c = Rc::new(ServerConfig { chunking: false, ..(*cfg()).clone() });
    let (out, msgs) = run(
        c,
        b"EHLO gen.test\r\nMAIL FROM:<a@gen.test>\r\nRCPT TO:<x@a.test>\r\nBDAT 4 LAST\r\nQUITNOOP\r\nQUIT\r\n",
        64,
    );
    assert!(!out.contains("250-CHUNKING"), "{out}");
    assert!(out.contains("502 5.5.1 CHUNKING not offered\r\n250 2.0.0 Ok\r\n221"), "{out}");
    assert!(msgs.is_empty());
}

#[test]
fn bdat_without_a_size_closes_and_data_after_bdat_is_refused() {
    let (out, _) = run(cfg(), b"EHLO g\r\nMAIL FROM:<a@g>\r\nRCPT TO:<x@a>\r\nBDAT lots\r\nQUIT\r\n", 64);
    assert!(out.ends_with("501 5.5.4 Syntax: BDAT size [LAST]\r\n"), "{out}");
    let (out, msgs) = run(cfg(), b"EHLO g\r\nMAIL FROM:<a@g>\r\nRCPT TO:<x@a>\r\nBDAT 2\r\nabDATA\r\nQUIT\r\n", 64);
    assert!(out.contains("250 2.0.0 2 octets received\r\n503 5.5.1 DATA after BDAT\r\n221"), "{out}");
    assert!(msgs.is_empty());
}

#[test]
fn dkim_signature_field_is_seen_in_the_header_only() {
    let session = b"EHLO gen.test\r\nMAIL FROM:<a@gen.test>\r\nRCPT TO:<x@a.test>\r\nDATA\r\n\
DKIM-Signature: v=1; a=ed25519-sha256; d=gen.test; s=s1;\r\n\tb=abc\r\nFrom: <a@gen.test>\r\n\r\nx\r\n.\r\n\
MAIL FROM:<a@gen.test>\r\nRCPT TO:<x@a.test>\r\nDATA\r\ndkim-signature: v=1\r\n\r\nx\r\n.\r\n\
MAIL FROM:<a@gen.test>\r\nRCPT TO:<x@a.test>\r\nDATA\r\nFrom: <a@gen.test>\r\n\r\nDKIM-Signature: in the body\r\n.\r\n\
QUIT\r\n";
    for size in [1, 7, session.len()] {
        let (_, msgs) = run(cfg(), session, size);
        let signed: Vec<bool> = msgs.iter().map(|m| m.dkim_signed).collect();
        assert_eq!(signed, [true, true, false], "chunk size {size}");
    }
}

#[test]
fn refused_mail_gets_the_reply_and_closes_even_when_pipelined() {
    let session = b"EHLO gen.test\r\nMAIL FROM:<a@gen.test>\r\nRCPT TO:<x@a.test>\r\nBDAT 1 LAST\r\nxQUIT\r\n";
    for size in [1, 5, session.len()] {
        let mut s = ServerSession::new(cfg(), false);
        s.refuse_mail(Some("421 4.7.0 rate limited, try again later"));
        let mut out = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut closed = false;
        'feed: for chunk in session.chunks(size) {
            pending.extend_from_slice(chunk);
            loop {
                let (used, action) = s.handle_input(&pending);
                pending.drain(..used);
                match action {
                    Some(Action::Close) => {
                        closed = true;
                        break 'feed;
                    }
                    Some(a) => panic!("unexpected {a:?}"),
                    None if used == 0 => break,
                    None => {}
                }
            }
        }
        s.take_output(&mut out);
        let out = String::from_utf8(out).unwrap();
        assert!(closed && s.refused(), "chunk size {size}: {out}");
        assert!(out.ends_with("250 ENHANCEDSTATUSCODES\r\n421 4.7.0 rate limited, try again later\r\n"), "{out}");
    }
}

#[test]
fn mail_is_accepted_again_once_the_refusal_is_lifted() {
    let mut s = ServerSession::new(cfg(), false);
    s.refuse_mail(Some("421 4.7.0 rate limited, try again later"));
    s.refuse_mail(None);
    let (used, action) = s.handle_input(b"EHLO g\r\n");
    assert_eq!((used, action), (8, None));
    let (_, action) = s.handle_input(b"MAIL FROM:<a@g>\r\n");
    assert_eq!(action, None);
    let mut out = Vec::new();
    s.take_output(&mut out);
    assert!(String::from_utf8(out).unwrap().ends_with("250 2.1.0 Ok\r\n"));
}
