//! SMTP over a real socket: ordering, pipelining, limits and bad input.

mod common;

use common::*;
use std::io::Write;
use std::time::Duration;

#[test]
fn ehlo_advertises_the_extensions() {
    let server = Server::start();
    let mut c = server.smtp();
    let r = c.expect("EHLO client.test", "250");
    for ext in ["PIPELINING", "SIZE 65536", "8BITMIME", "ENHANCEDSTATUSCODES"] {
        assert!(r.lines().any(|l| l[4..].starts_with(ext)), "{ext} missing from {r}");
    }
    assert!(r.contains("STARTTLS"), "TLS is always available (self-signed without [tls]): {r}");
    c.expect("VRFY alice", "252");
    c.expect("HELP", "214");
    c.expect("NOOP", "250");
    c.expect("QUIT", "221");
}

#[test]
fn commands_out_of_sequence_unknown_and_malformed_get_their_codes() {
    let server = Server::start();
    let mut c = server.smtp();
    c.expect("MAIL FROM:<a@b.test>", "503 5.5.1");
    c.expect("EHLO client.test", "250");
    c.expect("RCPT TO:<alice@localhost>", "503 5.5.1");
    c.expect("DATA", "503 5.5.1");
    c.expect("FROB", "500 5.5.2");
    c.expect("MAIL FROM:bad address", "501");
    c.expect("MAIL FROM:<a@b.test>", "250");
    c.expect("MAIL FROM:<a@b.test>", "503 5.5.1");
    c.expect("RCPT TO:<nobody@localhost>", "550 5.1.1");
    // Every recipient refused: Postfix's answer to DATA.
    c.expect("DATA", "554 5.5.1");
    c.expect("RSET", "250");
    c.expect("RCPT TO:<alice@localhost>", "503 5.5.1");
    c.send(b"NOOP\0\r\n");
    assert!(c.reply().starts_with("500"), "NUL in a command");
}

#[test]
fn pipelined_transactions_are_answered_in_order() {
    let server = Server::start();
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    let mut batch = Vec::new();
    for i in 0..3 {
        batch.extend_from_slice(
            b"MAIL FROM:<bob@localhost>\r\nRCPT TO:<alice@localhost>\r\nRCPT TO:<nobody@localhost>\r\nDATA\r\n",
        );
        batch.extend_from_slice(format!("Subject: pipelined {i}\r\n\r\nbody {i}\r\n.\r\n").as_bytes());
    }
    batch.extend_from_slice(b"QUIT\r\n");
    c.send(&batch);
    for _ in 0..3 {
        assert!(c.reply().starts_with("250"), "MAIL");
        assert!(c.reply().starts_with("250"), "RCPT");
        assert!(c.reply().starts_with("550 5.1.1"), "unknown RCPT");
        assert!(c.reply().starts_with("354"), "DATA");
        let q = c.reply();
        assert!(q.starts_with("250 2.0.0") && q.contains("queued as"), "{q}");
    }
    assert!(c.reply().starts_with("221"));
    eventually(Duration::from_secs(5), || (mailbox_count(&server, "alice@localhost") == 3).then_some(()));
    let got = fetch_all(&server, "alice@localhost");
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m, format!("Subject: pipelined {i}\r\n\r\nbody {i}\r\n").as_bytes());
    }
}

#[test]
fn relay_is_refused_outside_permit_relay_from() {
    let server = Server::start_with(Options { permit_relay_from: "[]", ..Options::default() });
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    c.expect("MAIL FROM:<bob@localhost>", "250");
    for rcpt in ["x@remote.test", "x%remote.test@localhost", "@localhost:x@remote.test", "x@[192.0.2.1]"] {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert!(r.starts_with("554 5.7.1") || r.starts_with("550 5.1.1"), "{rcpt}: {r}");
    }
    c.expect("RCPT TO:<Alice@LOCALHOST.>", "250");
}

#[test]
fn relay_is_queued_for_permitted_clients() {
    let server = Server::start();
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    let r = c.send_mail("bob@localhost", &["someone@remote.test", "alice@localhost"], b"Subject: r\r\n\r\nx\r\n");
    assert!(r.starts_with("250 2.0.0"), "{r}");
}

#[test]
fn oversized_message_gets_552_and_the_session_goes_on() {
    let server = Server::start();
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    c.expect("MAIL FROM:<bob@localhost> SIZE=100000", "552 5.3.4");
    let big = vec![b'x'; 998].into_iter().chain(*b"\r\n").cycle().take(100 * 1000).collect::<Vec<u8>>();
    let r = c.send_mail("bob@localhost", &["alice@localhost"], &big);
    assert!(r.starts_with("552 5.3.4"), "{r}");
    let r = c.send_mail("bob@localhost", &["alice@localhost"], b"Subject: small\r\n\r\nok\r\n");
    assert!(r.starts_with("250"), "{r}");
    eventually(Duration::from_secs(5), || (mailbox_count(&server, "alice@localhost") == 1).then_some(()));
}

#[test]
fn megabyte_line_without_crlf_is_answered_500_and_closed() {
    let server = Server::start();
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    let junk = vec![b'A'; 1 << 20];
    // The server may close before we finish writing; that is the point.
    let _ = c.stream.write_all(&junk);
    let r = c.reply();
    assert!(r.starts_with("500"), "{r}");
    assert!(c.is_closed());
    // And it still serves others.
    server.smtp().expect("EHLO other.test", "250");
}

#[test]
fn client_vanishing_mid_data_stores_nothing() {
    let server = Server::start();
    {
        let mut c = server.smtp();
        c.expect("EHLO client.test", "250");
        c.expect("MAIL FROM:<bob@localhost>", "250");
        c.expect("RCPT TO:<alice@localhost>", "250");
        c.expect("DATA", "354");
        c.send(b"Subject: half\r\n\r\nthis never ends");
    } // dropped: connection closed mid-DATA
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    c.send_mail("bob@localhost", &["bob@localhost"], b"Subject: marker\r\n\r\nx\r\n");
    eventually(Duration::from_secs(5), || (mailbox_count(&server, "bob@localhost") == 1).then_some(()));
    assert_eq!(mailbox_count(&server, "alice@localhost"), 0);
}

#[test]
fn bare_lf_dot_sequences_never_end_data() {
    let server = Server::start();
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    c.expect("MAIL FROM:<bob@localhost>", "250");
    c.expect("RCPT TO:<alice@localhost>", "250");
    c.expect("DATA", "354");
    // Each of these would end the message in a lax parser and smuggle the
    // following MAIL FROM as a second message (CVE-2023-51766 class).
    c.send(b"Subject: smuggle\r\n\r\na\n.\nMAIL FROM:<evil@x>\r\nb\n.\r\nc\r.\rd\r\n.\r\n");
    let r = c.reply();
    assert!(r.starts_with("250"), "{r}");
    c.expect("QUIT", "221");
    eventually(Duration::from_secs(5), || (mailbox_count(&server, "alice@localhost") == 1).then_some(()));
    let got = fetch_all(&server, "alice@localhost");
    assert_eq!(got.len(), 1, "one message, nothing smuggled");
    let text = String::from_utf8_lossy(&got[0]);
    assert!(text.contains("MAIL FROM:<evil@x>"), "the smuggled command stays body text: {text:?}");
}
