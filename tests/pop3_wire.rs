//! RETR's reply on the wire (issue 14, item 2): status line, dot-stuffed
//! message and terminator leave in one write, byte for byte what was
//! stored, at sizes around every buffer boundary the path has, one command
//! at a time and pipelined.

mod common;

use common::*;
use std::io::{Read, Write};
use std::time::Duration;

/// Sizes (of the stored message) where a buffer on the way changes: the
/// driver's small read and kept output (4 KiB), a TLS record (16 KiB), the
/// loopback MTU (64 KiB), the driver's early-flush mark (256 KiB).
const BOUNDARIES: &[usize] = &[4096, 16 * 1024, 64 * 1024, 256 * 1024];
const AROUND: &[isize] = &[-3, -1, 0, 1, 2];

/// A body of exactly `size` octets, most of its lines needing a stuffed dot.
fn body_of(size: usize, tag: &str) -> Vec<u8> {
    let mut b = format!("Subject: {tag}\r\n\r\n").into_bytes();
    let lines: [&[u8]; 5] =
        [b".\r\n", b"..two dots\r\n", b".a line starting with a dot\r\n", b"plain text\r\n", b"\r\n"];
    let mut i = 0;
    while b.len() + 40 < size {
        b.extend_from_slice(lines[i % lines.len()]);
        i += 1;
    }
    let rest = size.checked_sub(b.len()).expect("size leaves room for the subject");
    assert!(rest >= 3);
    b.push(b'.');
    b.extend(std::iter::repeat_n(b'x', rest - 3));
    b.extend_from_slice(b"\r\n");
    assert_eq!(b.len(), size);
    b
}

/// Read one multi-line reply, raw, up to and including its terminator.
fn raw_reply(s: &mut std::net::TcpStream, pending: &mut Vec<u8>) -> Vec<u8> {
    loop {
        let status_end = pending.windows(2).position(|w| w == b"\r\n");
        if let Some(end) = status_end {
            if !pending.starts_with(b"+OK") {
                panic!("{:?}", String::from_utf8_lossy(&pending[..end]));
            }
            // The terminator is "." alone on a line after the status line.
            let body = &pending[end..];
            if let Some(at) = body.windows(5).position(|w| w == b"\r\n.\r\n") {
                let total = end + at + 5;
                return pending.drain(..total).collect();
            }
        }
        let mut buf = vec![0u8; 64 * 1024];
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed inside a reply");
        pending.extend_from_slice(&buf[..n]);
    }
}

/// Check one raw RETR reply against the bodies sent; returns which it was.
fn check_reply(raw: &[u8], sent: &[(String, Vec<u8>)]) -> usize {
    let eol = raw.windows(2).position(|w| w == b"\r\n").unwrap();
    let status = String::from_utf8_lossy(&raw[..eol]).into_owned();
    let octets: usize = status.strip_prefix("+OK ").and_then(|r| r.strip_suffix(" octets")).unwrap().parse().unwrap();
    let wire = &raw[eol + 2..raw.len() - 3]; // between the status line and ".\r\n"
    let mut stored = Vec::new();
    for line in wire.split_inclusive(|&b| b == b'\n') {
        stored.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    assert_eq!(stored.len(), octets, "{status}: the octet count is the stored size");
    assert_eq!(dot_stuff(&stored), wire, "{status}: exactly the stored bytes, each dot line stuffed once");
    let message = strip_received(&stored);
    let subject =
        String::from_utf8_lossy(&message[..message.windows(2).position(|w| w == b"\r\n").unwrap()]).into_owned();
    let i = sent.iter().position(|(tag, _)| subject == format!("Subject: {tag}")).expect("a message we sent");
    assert!(message == sent[i].1, "{subject}: the body differs from what was sent");
    i
}

#[test]
fn retr_is_byte_exact_around_buffer_boundaries_one_by_one_and_pipelined() {
    let mut server = Server::configure(Options { cores: 1, segment_size: 8 << 20, ..Options::default() });
    let config = std::fs::read_to_string(&server.config).unwrap();
    std::fs::write(&server.config, config.replace("max_message_size = 65536", "max_message_size = 1048576")).unwrap();
    server.spawn();
    let mut smtp = server.smtp();
    smtp.expect("EHLO client.test", "250");

    // What the trace header adds to each stored message.
    let probe = body_of(100, "probe");
    assert!(smtp.send_mail("bob@localhost", &["alice@localhost"], &probe).starts_with("250"));
    eventually(Duration::from_secs(10), || (mailbox_count(&server, "alice@localhost") == 1).then_some(()));
    let overhead = {
        let mut p = server.pop3();
        assert!(p.login("alice@localhost", PASSWORD).starts_with("+OK"));
        let (_, octets) = p.stat();
        p.cmd("QUIT");
        octets as usize - probe.len()
    };

    let mut sent = vec![("probe".to_string(), probe)];
    for &boundary in BOUNDARIES {
        for &d in AROUND {
            let size = (boundary as isize + d) as usize - overhead;
            let tag = format!("size {size} near {boundary}");
            let body = body_of(size, &tag);
            assert!(smtp.send_mail("bob@localhost", &["alice@localhost"], &body).starts_with("250"));
            sent.push((tag, body));
        }
    }
    let n = sent.len();
    eventually(Duration::from_secs(20), || (mailbox_count(&server, "alice@localhost") == n).then_some(()));

    let mut p = server.pop3();
    assert!(p.login("alice@localhost", PASSWORD).starts_with("+OK"));
    let mut s = p.stream.try_clone().unwrap();
    let mut pending = Vec::new();

    // One at a time.
    let mut seen = vec![false; n];
    for i in 1..=n {
        s.write_all(format!("RETR {i}\r\n").as_bytes()).unwrap();
        seen[check_reply(&raw_reply(&mut s, &mut pending), &sent)] = true;
    }
    assert!(seen.iter().all(|&x| x), "every message came back once");

    // All pipelined in one write, twice over (the batch passes the
    // early-flush mark several times).
    let batch: String = (1..=n).chain(1..=n).map(|i| format!("RETR {i}\r\n")).collect();
    s.write_all(batch.as_bytes()).unwrap();
    let mut seen = vec![0; n];
    for _ in 0..2 * n {
        seen[check_reply(&raw_reply(&mut s, &mut pending), &sent)] += 1;
    }
    assert!(seen.iter().all(|&x| x == 2), "{seen:?}");
    assert!(pending.is_empty(), "nothing after the last reply");
    assert!(p.cmd("QUIT").starts_with("+OK"));
}

#[test]
fn a_small_retr_reply_arrives_whole_in_one_read() {
    // On loopback one write of a few KiB is one segment, so a client's one
    // read gets all of it; a status line written apart from the message
    // is read on its own (what issue 14 measured: 1.14-1.54 reads per
    // message). A pass here needs the single write; it does not time it.
    let server = Server::start_with(Options { cores: 1, ..Options::default() });
    let mut smtp = server.smtp();
    smtp.expect("EHLO client.test", "250");
    for i in 0..10 {
        let body = body_of(1024 + 300 * i, &format!("small {i}"));
        assert!(smtp.send_mail("bob@localhost", &["alice@localhost"], &body).starts_with("250"));
    }
    eventually(Duration::from_secs(10), || (mailbox_count(&server, "alice@localhost") == 10).then_some(()));
    let mut p = server.pop3();
    assert!(p.login("alice@localhost", PASSWORD).starts_with("+OK"));
    let mut s = p.stream.try_clone().unwrap();
    for i in 1..=10 {
        s.write_all(format!("RETR {i}\r\n").as_bytes()).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let n = s.read(&mut buf).unwrap();
        let got = &buf[..n];
        assert!(
            got.starts_with(b"+OK ") && got.ends_with(b"\r\n.\r\n"),
            "RETR {i}: one read got {n} bytes: {:?}",
            String::from_utf8_lossy(&got[..n.min(80)])
        );
    }
    assert!(p.cmd("QUIT").starts_with("+OK"));
}
