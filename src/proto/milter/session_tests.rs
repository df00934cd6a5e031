//! Transcript tests of [`Session`]: the exact bytes sent for each step,
//! the negotiation flags honoured, and every reply, fed at every chunk
//! size.

use super::frame::{action, protocol, MAX_FRAME};
use super::session::*;
use std::net::{IpAddr, Ipv4Addr};

fn conv() -> Conversation {
    Conversation {
        hostname: "mx.test".into(),
        client_addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)),
        client_port: 4242,
        client_name: "[127.0.0.9]".into(),
        helo: "client.test".into(),
        sender: "a@b.test".into(),
        recipients: vec!["u@mx.test".into()],
        auth_user: None,
        message: b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
    }
}

/// A frame as a milter would send it.
pub(super) fn reply(code: u8, data: &[u8]) -> Vec<u8> {
    let mut f = ((data.len() + 1) as u32).to_be_bytes().to_vec();
    f.push(code);
    f.extend_from_slice(data);
    f
}

pub(super) fn optneg(actions: u32, proto: u32) -> Vec<u8> {
    let mut d = 6u32.to_be_bytes().to_vec();
    d.extend_from_slice(&actions.to_be_bytes());
    d.extend_from_slice(&proto.to_be_bytes());
    reply(b'O', &d)
}

/// The command codes in `out`, in order.
pub(super) fn codes(out: &[u8]) -> String {
    let mut codes = String::new();
    let mut rest = out;
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        codes.push(char::from(rest[4]));
        rest = &rest[4 + len..];
    }
    assert!(rest.is_empty(), "trailing bytes");
    codes
}

/// Feed `input` in pieces of `chunk` bytes, as a driver would.
fn feed(s: &mut Session<'_>, input: &[u8], chunk: usize) -> Result<(), SessionError> {
    let mut buf = Vec::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        let n = s.handle_input(&buf)?;
        buf.drain(..n);
    }
    Ok(())
}

#[test]
fn every_step_is_sent_byte_for_byte_and_answered() {
    let c = conv();
    let mut s = Session::new(&c, 1 << 20);
    let mut want = Vec::new();
    want.extend_from_slice(b"\0\0\0\x0dO\0\0\0\x06\0\0\0\xff\0\x1f\xf7\xff");
    assert_eq!(s.take_output(), want, "OPTNEG: version 6, actions 0xff, protocol");
    s.handle_input(&optneg(action::ADDHDRS, 0)).unwrap();
    let mut connect = Vec::new();
    connect.extend_from_slice(b"\0\0\0\x55DC");
    connect.extend_from_slice(b"j\0mx.test\0{daemon_name}\0ringmail\0{client_addr}\x00127.0.0.9\0");
    connect.extend_from_slice(b"{client_name}\0[127.0.0.9]\0");
    connect.extend_from_slice(b"\0\0\0\x1aC[127.0.0.9]\0" as &[u8]);
    connect.extend_from_slice(b"4\x10\x92127.0.0.9\0");
    assert_eq!(s.take_output(), connect);
    let steps: [(&[u8], &[u8]); 7] = [
        (b"H", b"\0\0\0\x0dHclient.test\0"),
        (b"M", b"\0\0\0\x17DM{mail_addr}\0a@b.test\0\0\0\0\x0cM<a@b.test>\0"),
        (b"R", b"\0\0\0\x18DR{rcpt_addr}\0u@mx.test\0\0\0\0\x0dR<u@mx.test>\0"),
        (b"T", b"\0\0\0\x01T"),
        (b"L", b"\0\0\0\x0cLSubject\0hi\0"),
        (b"N", b"\0\0\0\x01N"),
        (b"B", b"\0\0\0\x07Bbody\r\n"),
    ];
    for (name, bytes) in steps {
        s.handle_input(&reply(b'c', b"")).unwrap();
        assert_eq!(s.take_output(), bytes, "step {}", String::from_utf8_lossy(name));
    }
    s.handle_input(&reply(b'c', b"")).unwrap();
    assert_eq!(s.take_output(), b"\0\0\0\x01E");
    assert!(s.verdict().is_none());
    let mut end = reply(b'h', b"X-Spam\0no\0");
    end.extend(reply(b'a', b""));
    s.handle_input(&end).unwrap();
    assert_eq!(s.take_output(), b"\0\0\0\x01Q", "QUIT after the verdict");
    assert_eq!(
        s.into_verdict(),
        Some(Verdict::Accept(vec![Modification::AddHeader { name: "X-Spam".into(), value: "no".into() }]))
    );
}

#[test]
fn declined_steps_are_not_sent_and_no_reply_steps_not_waited_for() {
    let c = conv();
    let mut s = Session::new(&c, 1 << 20);
    s.take_output();
    let flags = protocol::NOCONNECT
        | protocol::NOHELO
        | protocol::NR_MAIL
        | protocol::NR_RCPT
        | protocol::NODATA
        | protocol::NR_HDR
        | protocol::NOEOH
        | protocol::NR_BODY;
    s.handle_input(&optneg(0, flags)).unwrap();
    // Everything up to the end of the message goes in one go.
    assert_eq!(codes(&s.take_output()), "DMDRLBE");
    s.handle_input(&reply(b'c', b"")).unwrap();
    assert_eq!(s.into_verdict(), Some(Verdict::Accept(vec![])));
}

#[test]
fn flags_we_did_not_offer_are_ignored() {
    let c = conv();
    let mut s = Session::new(&c, 1 << 20);
    s.take_output();
    // RCPT_REJ and a bit from the future: neither may change the replay.
    s.handle_input(&optneg(0, protocol::RCPT_REJ | 0x4000_0000)).unwrap();
    assert_eq!(codes(&s.take_output()), "DC");
}

#[test]
fn header_values_keep_their_blank_with_leadspc() {
    let mut c = conv();
    c.message = b"Subject:  two\r\n  lines\r\n\r\n".to_vec();
    let mut s = Session::new(&c, 1 << 20);
    s.take_output();
    let skip_to_headers = protocol::NOCONNECT | protocol::NOHELO | protocol::NOMAIL | protocol::NORCPT;
    s.handle_input(&optneg(0, skip_to_headers | protocol::NODATA | protocol::HDR_LEADSPC)).unwrap();
    assert_eq!(s.take_output(), b"\0\0\0\x17LSubject\0  two\n  lines\0");
    let mut s = Session::new(&c, 1 << 20);
    s.take_output();
    s.handle_input(&optneg(0, skip_to_headers | protocol::NODATA)).unwrap();
    assert_eq!(s.take_output(), b"\0\0\0\x15LSubject\0two\n  lines\0");
}

#[test]
fn large_bodies_go_in_64k_chunks_and_skip_jumps_to_the_end() {
    let mut c = conv();
    let mut m = b"Subject: big\r\n\r\n".to_vec();
    m.extend(std::iter::repeat_n(b'x', 65535 * 2 + 10));
    c.message = m;
    let mut s = Session::new(&c, 1 << 20);
    s.take_output();
    let early = protocol::NOCONNECT | protocol::NOHELO | protocol::NOMAIL | protocol::NORCPT | protocol::NODATA;
    s.handle_input(&optneg(0, early | protocol::NOHDRS | protocol::NOEOH)).unwrap();
    let first = s.take_output();
    assert_eq!(&first[..5], b"\0\x01\0\0B", "a full 65535-byte chunk (+1 for the code)");
    s.handle_input(&reply(b'c', b"")).unwrap();
    assert_eq!(codes(&s.take_output()), "B");
    s.handle_input(&reply(b's', b"")).unwrap();
    assert_eq!(codes(&s.take_output()), "E", "SKIP: the third chunk is not sent");
}

#[test]
fn every_final_reply_becomes_its_verdict_at_any_chunk_size() {
    let cases: Vec<(Vec<u8>, Verdict)> = vec![
        (reply(b'r', b""), Verdict::Reject),
        (reply(b't', b""), Verdict::Tempfail),
        (reply(b'd', b""), Verdict::Discard),
        (
            reply(b'y', b"554 5.7.1 Spam message rejected\0"),
            Verdict::ReplyCode { code: 554, text: "5.7.1 Spam message rejected".into() },
        ),
        (
            reply(b'y', b"451-4.7.1 first\r\n451 4.7.1 second\0"),
            Verdict::ReplyCode { code: 451, text: "4.7.1 first 4.7.1 second".into() },
        ),
        (
            [reply(b'p', b""), reply(b'q', b"looks odd\0"), reply(b'c', b"")].concat(),
            Verdict::Accept(vec![Modification::Quarantine("looks odd".into())]),
        ),
    ];
    for (end, want) in cases {
        for chunk in [1, 2, 3, 4, 7, 512] {
            let c = conv();
            let mut s = Session::new(&c, 1 << 20);
            let mut input = optneg(action::QUARANTINE, 0);
            // connect, helo, mail, rcpt, data, header, eoh, body
            for _ in 0..8 {
                input.extend(reply(b'c', b""));
            }
            input.extend_from_slice(&end);
            feed(&mut s, &input, chunk).unwrap();
            assert_eq!(s.verdict(), Some(&want), "chunk {chunk}");
            assert!(!s.verdict().map_or("", Verdict::action).is_empty());
        }
    }
}

#[test]
fn an_early_reject_ends_the_conversation_at_that_step() {
    let c = conv();
    let mut s = Session::new(&c, 1 << 20);
    s.take_output();
    s.handle_input(&[optneg(0, 0), reply(b'c', b""), reply(b'y', b"550 5.7.1 bad helo\0")].concat()).unwrap();
    assert_eq!(codes(&s.take_output()), "DCHQ");
    assert_eq!(s.verdict(), Some(&Verdict::ReplyCode { code: 550, text: "5.7.1 bad helo".into() }));
}

#[test]
fn protocol_errors_are_named() {
    let c = conv();
    let run = |input: Vec<u8>| {
        let mut s = Session::new(&c, 16);
        s.handle_input(&input).map(|_| ())
    };
    let cont = |n: usize| (0..n).flat_map(|_| reply(b'c', b"")).collect::<Vec<u8>>();
    let huge = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
    assert!(matches!(run(huge), Err(SessionError::Frame(super::FrameError::TooLong { .. }))));
    assert!(matches!(run(reply(b'c', b"")), Err(SessionError::Unexpected { step: "negotiation", .. })));
    let mut v1 = 1u32.to_be_bytes().to_vec();
    v1.extend([0; 8]);
    assert_eq!(run(reply(b'O', &v1)), Err(SessionError::Version(1)));
    let header_without_right = [optneg(0, 0), cont(8), reply(b'h', b"X\0y\0")].concat();
    assert_eq!(run(header_without_right), Err(SessionError::NotNegotiated("header addition")));
    let early_change = [optneg(action::ADDHDRS, 0), reply(b'h', b"X\0y\0")].concat();
    assert!(matches!(run(early_change), Err(SessionError::Unexpected { step: "connect", .. })));
    let long_body = [optneg(action::CHGBODY, 0), cont(8), reply(b'b', &[b'x'; 17])].concat();
    assert_eq!(run(long_body), Err(SessionError::TooMuch(16)));
    let bad_code = [optneg(0, 0), reply(b'y', b"250 ok\0")].concat();
    assert!(matches!(run(bad_code), Err(SessionError::Frame(super::FrameError::Malformed { .. }))));
    let bad_name = [optneg(action::ADDHDRS, 0), cont(8), reply(b'h', b"Evil: x\0y\0")].concat();
    assert!(matches!(run(bad_name), Err(SessionError::Frame(super::FrameError::Malformed { .. }))));
}
