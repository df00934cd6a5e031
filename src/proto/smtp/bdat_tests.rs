//! CHUNKING and BINARYMIME (RFC 3030) and SMTPUTF8 (RFC 6531) through the
//! session: chunk-size and read-split sweeps, pipelined BDAT, the size
//! limit in the middle of a chunk, refused BDATs whose octets are still
//! read, and UTF-8 addresses with and without the parameter.

use super::address::Address;
use super::interface::ServerConfig;
use super::testkit::{config, Session};

/// A body that DATA could not carry unchanged: an end-of-data line, bare
/// CR and LF, NUL and 8-bit bytes.
fn binary_body() -> Vec<u8> {
    let mut body = b"Subject: bin\r\n\r\nline\r\n.\r\nMAIL FROM:<evil@relay.test>\r\n\rbare\nlf\0\xff\xfe".to_vec();
    body.extend((0..=255u8).cycle().take(300));
    body
}

/// The wire form of `body` sent as BDAT chunks of `size` octets, then
/// `BDAT 0 LAST`.
fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    for part in body.chunks(size) {
        wire.extend_from_slice(format!("BDAT {}\r\n", part.len()).as_bytes());
        wire.extend_from_slice(part);
    }
    wire.extend_from_slice(b"BDAT 0 LAST\r\n");
    wire
}

fn big() -> ServerConfig {
    ServerConfig { max_message_size: 100_000, ..config() }
}

#[test]
fn binarymime_body_is_stored_byte_identical_at_every_chunk_size_and_read_split() {
    let body = binary_body();
    for size in [1, 2, 3, 7, 64, 4096] {
        let mut wire =
            b"EHLO client.test\r\nMAIL FROM:<a@relay.test> BODY=BINARYMIME\r\nRCPT TO:<jane@example.test>\r\n".to_vec();
        wire.extend_from_slice(&chunked(&body, size));
        wire.extend_from_slice(b"QUIT\r\n");
        for split in [1, 2, 3, 7, 64, usize::MAX] {
            let mut s = Session::with(big());
            let mut replies = String::new();
            for piece in wire.chunks(split.min(wire.len())) {
                replies.push_str(&s.send(piece));
            }
            assert_eq!(s.stored.len(), 1, "chunk {size} split {split}: {replies}");
            assert_eq!(s.stored[0].1, body, "chunk {size} split {split}");
            assert!(s.stored[0].0.binarymime);
            let chunks = body.len().div_ceil(size);
            let octets = replies.matches("octets received").count();
            assert_eq!(octets, chunks, "chunk {size} split {split}");
            assert!(replies.ends_with("250 2.0.0 Ok: queued as Q1\r\n221 2.0.0 Bye\r\n"), "{replies}");
            assert!(s.server.is_closed());
        }
    }
}

#[test]
fn first_chunk_reply_names_its_size() {
    let mut s = Session::in_state("rcpt");
    assert_eq!(s.send(b"BDAT 5\r\nhello"), "250 2.0.0 5 octets received\r\n");
    assert_eq!(s.send(b"BDAT 7 LAST\r\n, world"), "250 2.0.0 Ok: queued as Q1\r\n");
    assert_eq!(s.stored[0].1, b"hello, world\r\n");
}

#[test]
fn bdat_zero_last_alone_stores_an_empty_message() {
    let mut s = Session::in_state("rcpt");
    s.cmd("BDAT 0 LAST", "250 2.0.0 Ok: queued as Q1");
    assert_eq!(s.stored[0].1, b"");
}

#[test]
fn text_bodies_by_bdat_get_bare_line_ends_normalised_and_no_unstuffing() {
    let mut s = Session::in_state("rcpt");
    s.send(b"BDAT 8\r\n..a\rb\nc\r");
    s.send(b"BDAT 4 LAST\r\n\nd\ne");
    // The CR ending one chunk and the LF starting the next are one CRLF.
    // ... and a last line without a line end gets CRLF, as through DATA.
    assert_eq!(s.stored[0].1, b"..a\r\nb\r\nc\r\nd\r\ne\r\n");
    assert!(!s.stored[0].0.binarymime);
}

#[test]
fn pipelined_bdat_rset_and_a_new_transaction() {
    let mut s = Session::in_state("greeted");
    let replies = s.send(
        b"MAIL FROM:<a@relay.test>\r\nRCPT TO:<jane@example.test>\r\nBDAT 5\r\nfirstRSET\r\n\
          MAIL FROM:<b@relay.test>\r\nRCPT TO:<john@example.test>\r\nBDAT 12 LAST\r\nRSET\r\nQUIT\r\nNOOP\r\n",
    );
    assert_eq!(
        replies,
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 5 octets received\r\n250 2.0.0 Ok\r\n\
         250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued as Q1\r\n250 2.0.0 Ok\r\n"
    );
    assert_eq!(s.stored.len(), 1);
    assert_eq!(s.stored[0].1, b"RSET\r\nQUIT\r\n");
    assert_eq!(s.stored[0].0.recipients[0].address, Address { local: "john".into(), domain: "example.test".into() });
    assert!(!s.server.is_closed(), "the QUIT was message content");
}

#[test]
fn chunk_passing_the_size_limit_gets_552_its_octets_are_read_and_later_chunks_get_503() {
    // max_message_size is 1000.
    let mut s = Session::in_state("rcpt");
    let mut first = b"BDAT 600\r\n".to_vec();
    first.resize(first.len() + 600, b'a');
    assert_eq!(s.send(&first), "250 2.0.0 600 octets received\r\n");
    let mut second = b"BDAT 401\r\nQUIT\r\n".to_vec();
    second.resize(second.len() + 395, b'b');
    assert_eq!(s.send(&second), "552 5.3.4 Message size exceeds fixed limit\r\n");
    assert!(!s.server.is_closed(), "the QUIT inside the refused chunk was thrown away");
    s.send(b"BDAT 6 LAST\r\nQUIT\r\n");
    assert!(!s.server.is_closed());
    assert!(s.stored.is_empty());
    s.cmd("NOOP", "250 2.0.0");
    // The session goes on.
    s.mail_from("a@relay.test", "250");
    s.rcpt_to("jane@example.test", "250");
    s.cmd("BDAT 0 LAST", "250 2.0.0 Ok: queued as Q1");
}

#[test]
fn refused_bdat_octets_are_not_commands_at_any_read_split() {
    let wire = b"EHLO client.test\r\nBDAT 6\r\nQUIT\r\nNOOP\r\n";
    for split in [1, 2, 3, 7, 64] {
        let mut s = Session::new();
        let mut replies = String::new();
        for piece in wire.chunks(split) {
            replies.push_str(&s.send(piece));
        }
        assert!(replies.ends_with("503 5.5.1 Error: need MAIL command\r\n250 2.0.0 Ok\r\n"), "{split}: {replies}");
        assert!(!s.server.is_closed());
    }
}

#[test]
fn bdat_before_rcpt_gets_503_and_its_octets_are_read() {
    let mut s = Session::in_state("mail");
    assert_eq!(s.send(b"BDAT 6 LAST\r\nQUIT\r\n"), "503 5.5.1 Error: need RCPT command\r\n");
    assert!(!s.server.is_closed());
    assert!(s.stored.is_empty());
}

#[test]
fn data_after_binarymime_gets_503() {
    let mut s = Session::in_state("greeted");
    s.cmd("MAIL FROM:<a@relay.test> BODY=BINARYMIME", "250");
    s.rcpt_to("jane@example.test", "250");
    assert_eq!(s.cmd("DATA", "503"), "503 5.5.1 Error: BODY=BINARYMIME requires BDAT\r\n");
    assert_eq!(s.send(b"BDAT 3 LAST\r\nabc"), "250 2.0.0 Ok: queued as Q1\r\n");
}

#[test]
fn data_and_rcpt_after_a_chunk_get_503() {
    let mut s = Session::in_state("rcpt");
    s.send(b"BDAT 1\r\nx");
    assert_eq!(s.cmd("DATA", "503"), "503 5.5.1 Error: BDAT transfer in progress\r\n");
    s.rcpt_to("john@example.test", "503 5.5.1");
    assert_eq!(s.send(b"BDAT 1 LAST\r\ny"), "250 2.0.0 Ok: queued as Q1\r\n");
    assert_eq!(s.stored[0].1, b"xy\r\n");
}

#[test]
fn malformed_bdat_gets_501_and_closes() {
    let mut s = Session::in_state("rcpt");
    assert_eq!(s.send(b"BDAT ten\r\nNOOP\r\n"), "501 5.5.4 Syntax: BDAT count [LAST]\r\n");
    assert!(s.server.is_closed());
}

#[test]
fn non_ascii_recipient_without_smtputf8_gets_553_5_6_7() {
    let mut s = Session::in_state("mail");
    let reply = s.rcpt_to("jäne@relay.test", "553 5.6.7");
    assert!(reply.contains("SMTPUTF8"), "{reply}");
    assert!(s.checked.borrow().is_empty(), "policy not asked");
    s.rcpt_to("jane@rel\u{e4}y.test", "553 5.6.7");
    s.cmd("RSET", "250");
    s.cmd("MAIL FROM:<jäne@relay.test>", "553 5.6.7");
    s.cmd("MAIL FROM:<jane@rel\u{e4}y.test>", "553 5.6.7");
}

#[test]
fn smtputf8_transaction_takes_utf8_addresses_with_a_labels_for_domains() {
    let mut s = Session::in_state("greeted");
    s.cmd("MAIL FROM:<用户@例子.test> SMTPUTF8", "250 2.1.0");
    s.rcpt_to("jäne@Relay.test", "250 2.1.5");
    s.rcpt_to("jane@ex\u{e4}mple.test", "554 5.7.1");
    assert_eq!(s.last_checked(), Some(Address { local: "jane".into(), domain: "xn--exmple-cua.test".into() }));
    s.rcpt_to("ja\u{85}ne@relay.test", "501 5.1.3");
    assert_eq!(s.send(b"BDAT 5 LAST\r\nhello"), "250 2.0.0 Ok: queued as Q1\r\n");
    let envelope = &s.stored[0].0;
    assert!(envelope.smtputf8);
    assert_eq!(envelope.sender.to_string(), "<用户@xn--fsqu00a.test>");
    assert_eq!(envelope.recipients[0].address.local, "jäne");
    // The parameter lasts one transaction.
    s.mail_from("a@relay.test", "250");
    s.rcpt_to("jäne@relay.test", "553 5.6.7");
}
