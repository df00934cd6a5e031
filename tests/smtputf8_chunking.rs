//! SMTPUTF8 (RFC 6531), CHUNKING/BINARYMIME (RFC 3030) and POP3 UTF8
//! (RFC 6856) over real sockets: raw BDAT streams, Python's smtplib and
//! poplib as real clients, and relaying to a sink that does or does not
//! offer SMTPUTF8 and BINARYMIME.

mod common;
#[path = "common/sink.rs"]
mod sink;

use common::*;
use sink::{Script, Sink};
use std::process::Command;
use std::time::Duration;

/// A local user with a UTF-8 local part.
const UTF8_USER: &str = "\u{7528}\u{6237}@example.test";

fn server_with_utf8_user() -> Server {
    let mut server = Server::configure(Options::default());
    add_user(&server.config, UTF8_USER, PASSWORD);
    server.spawn();
    server
}

#[test]
fn ehlo_offers_chunking_binarymime_and_smtputf8() {
    let server = Server::start();
    let mut c = server.smtp();
    let r = c.expect("EHLO client.test", "250");
    for ext in ["CHUNKING", "BINARYMIME", "SMTPUTF8", "8BITMIME"] {
        assert!(r.lines().any(|l| &l[4..] == ext), "{ext} missing from {r}");
    }
}

#[test]
fn pipelined_bdat_chunks_are_stored_and_fetched_byte_for_byte() {
    let server = Server::start();
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    // An end-of-data line inside a chunk is content, not the end.
    let body = b"Subject: chunked\r\n\r\nfirst\r\n.\r\nMAIL FROM:<evil@example.org>\r\nlast line\r\n";
    let mut wire = b"MAIL FROM:<bob@localhost>\r\nRCPT TO:<alice@localhost>\r\n".to_vec();
    for part in body.chunks(7) {
        wire.extend_from_slice(format!("BDAT {}\r\n", part.len()).as_bytes());
        wire.extend_from_slice(part);
    }
    wire.extend_from_slice(b"BDAT 0 LAST\r\n");
    c.send(&wire);
    assert!(c.reply().starts_with("250 2.1.0"));
    assert!(c.reply().starts_with("250 2.1.5"));
    for part in body.chunks(7) {
        assert_eq!(c.reply(), format!("250 2.0.0 {} octets received", part.len()));
    }
    let last = c.reply();
    assert!(last.starts_with("250 2.0.0 Ok: queued as"), "{last}");
    c.expect("QUIT", "221");
    assert_eq!(fetch_all(&server, "alice@localhost"), vec![body.to_vec()]);
}

#[test]
fn bdat_before_mail_is_refused_and_its_octets_are_not_commands() {
    let server = Server::start();
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    c.send(b"BDAT 6 LAST\r\nQUIT\r\n");
    assert!(c.reply().starts_with("503 5.5.1"));
    c.expect("NOOP", "250");
}

#[test]
fn utf8_recipient_needs_smtputf8_on_mail() {
    let server = server_with_utf8_user();
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    c.expect("MAIL FROM:<bob@localhost>", "250");
    c.expect(&format!("RCPT TO:<{UTF8_USER}>"), "553 5.6.7");
    c.expect("RSET", "250");
    c.expect("MAIL FROM:<bob@localhost> SMTPUTF8", "250");
    c.expect(&format!("RCPT TO:<{UTF8_USER}>"), "250");
}

/// smtplib sends with SMTPUTF8 to the UTF-8 user, poplib fetches it after
/// `UTF8`, logging in with the UTF-8 name.
const PYTHON_CLIENTS: &str = r#"
import poplib, smtplib, sys
host, smtp_port, pop3_port, user, password = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
msg = ("From: bob@localhost\r\nTo: " + user + "\r\nSubject: caf\u00e9\r\n\r\nhello " + user + "\r\n").encode("utf-8")
with smtplib.SMTP(host, smtp_port) as s:
    s.ehlo("client.test")
    assert s.has_extn("smtputf8"), s.esmtp_features
    refused = s.sendmail("bob@localhost", [user], msg, mail_options=["SMTPUTF8"])
    assert refused == {}, refused
p = poplib.POP3(host, pop3_port)
caps = p.capa()
assert "UTF8" in caps, caps
print("utf8:", p.utf8().decode())
p.user(user)
p.pass_(password)
count, _ = p.stat()
assert count == 1, count
lines = p.retr(1)[1]
text = b"\r\n".join(lines).decode("utf-8")
assert ("hello " + user) in text, text
assert "Subject: caf\u00e9" in text, text
p.quit()
print("ok")
"#;

#[test]
fn python_smtplib_with_smtputf8_delivers_to_a_utf8_user_and_poplib_fetches_after_utf8() {
    let server = server_with_utf8_user();
    let out = Command::new("python3")
        .args(["-c", PYTHON_CLIENTS, "127.0.0.1"])
        .arg(server.smtp.port().to_string())
        .arg(server.pop3.port().to_string())
        .args([UTF8_USER, PASSWORD])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("utf8: +OK"), "{stdout}");
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
}

fn relay_to(sink: &Sink) -> Options {
    Options {
        relay: format!("routes = {{ \"remote.test\" = \"{}\" }}\nretry = [\"1s\"]\n", sink.addr),
        ..Options::default()
    }
}

/// Sends one message with `mail_params` on MAIL, by BDAT in two chunks.
fn submit_bdat(server: &Server, from: &str, to: &str, mail_params: &str, body: &[u8]) {
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    c.expect(&format!("MAIL FROM:<{from}>{mail_params}"), "250");
    c.expect(&format!("RCPT TO:<{to}>"), "250");
    let (a, b) = body.split_at(body.len() / 2);
    c.send(format!("BDAT {}\r\n", a.len()).as_bytes());
    c.send(a);
    assert!(c.reply().starts_with("250 2.0.0"));
    c.send(format!("BDAT {} LAST\r\n", b.len()).as_bytes());
    c.send(b);
    let r = c.reply();
    assert!(r.starts_with("250 2.0.0 Ok: queued"), "{r}");
    c.expect("QUIT", "221");
}

#[test]
fn smtputf8_mail_is_relayed_with_the_parameter_to_a_next_hop_offering_it() {
    let sink = Sink::start("127.0.0.1", 0, Script { chunking: true, extensions: &["SMTPUTF8"], ..Script::default() });
    let server = Server::start_with(relay_to(&sink));
    let to = "j\u{e4}ne@remote.test";
    submit_bdat(&server, "bob@localhost", to, " SMTPUTF8", "Subject: caf\u{e9}\r\n\r\nhi\r\n".as_bytes());
    let got = eventually(Duration::from_secs(10), || sink.received().pop());
    assert_eq!(got.to, [to]);
    assert!(got.mail_line.ends_with(" SMTPUTF8"), "{}", got.mail_line);
}

#[test]
fn smtputf8_mail_to_a_next_hop_without_it_bounces_5_6_7_to_the_sender() {
    let sink = Sink::start("127.0.0.1", 0, Script { chunking: true, ..Script::default() });
    let server = Server::start_with(relay_to(&sink));
    submit_bdat(&server, "bob@localhost", "j\u{e4}ne@remote.test", " SMTPUTF8", b"Subject: x\r\n\r\nhi\r\n");
    eventually(Duration::from_secs(10), || (mailbox_count(&server, "bob@localhost") == 1).then_some(()));
    let dsn = String::from_utf8_lossy(&fetch_all(&server, "bob@localhost").remove(0)).into_owned();
    assert!(dsn.contains("5.6.7"), "{dsn}");
    assert_eq!(sink.received().len(), 0, "nothing was sent");
}

#[test]
fn binarymime_mail_is_relayed_as_sent_to_a_next_hop_offering_it_and_bounced_5_6_3_otherwise() {
    let body = b"Subject: bin\r\n\r\nbare\rcr and bare\nlf\r\n.\r\n\0\xff".to_vec();
    let sink = Sink::start("127.0.0.1", 0, Script { chunking: true, extensions: &["BINARYMIME"], ..Script::default() });
    let server = Server::start_with(relay_to(&sink));
    submit_bdat(&server, "bob@localhost", "x@remote.test", " BODY=BINARYMIME", &body);
    let got = eventually(Duration::from_secs(10), || sink.received().pop());
    assert!(got.bdat);
    assert!(got.mail_line.contains(" BODY=BINARYMIME"), "{}", got.mail_line);
    assert!(got.data.ends_with(&body), "the body arrives byte for byte after our trace header");

    let plain = Sink::start("127.0.0.1", 0, Script { chunking: true, ..Script::default() });
    let server = Server::start_with(relay_to(&plain));
    submit_bdat(&server, "bob@localhost", "x@remote.test", " BODY=BINARYMIME", &body);
    eventually(Duration::from_secs(10), || (mailbox_count(&server, "bob@localhost") == 1).then_some(()));
    let dsn = String::from_utf8_lossy(&fetch_all(&server, "bob@localhost").remove(0)).into_owned();
    assert!(dsn.contains("5.6.3"), "{dsn}");
    assert_eq!(plain.received().len(), 0);
}
