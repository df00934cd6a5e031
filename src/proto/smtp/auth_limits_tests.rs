//! Session tests for SMTP AUTH under stress: credential lines at and over
//! the 12288-octet limit, 100 kB credentials (bounded buffering), and the
//! chunk-size sweep over AUTH transcripts.

use super::interface::{AuthMode, AuthOutcome, ServerConfig};
use super::sasl::Mechanism;
use super::testkit::{auth_config, b64, offered, plain_initial, Session, PASSWORD};

/// A PLAIN response for jane whose line, CRLF included, is `line_len` long
/// (`line_len - 2` must be a multiple of 4).
fn long_plain_response(line_len: usize) -> Vec<u8> {
    let encoded_len = line_len - 2;
    assert_eq!(encoded_len % 4, 0);
    let password = "p".repeat(encoded_len / 4 * 3 - "\0jane\0".len());
    let mut line = b64(format!("\0jane\0{password}").as_bytes()).into_bytes();
    assert_eq!(line.len(), encoded_len);
    line.extend_from_slice(b"\r\n");
    line
}

#[test]
fn a_12_kib_credential_line_is_accepted() {
    let mut s = offered();
    s.cmd("AUTH PLAIN", "334");
    s.auth_outcomes.push_back(AuthOutcome::Success);
    let line = long_plain_response(12286);
    assert_eq!(s.send(&line), "235 2.7.0 Authentication successful\r\n");
    assert_eq!(s.auths[0].2.len(), 12284 / 4 * 3 - 6);
    // Up to the limit itself (12288 with CRLF), a line is read, not refused.
    s.cmd("RSET", "250");
    let mut s = offered();
    s.cmd("AUTH PLAIN", "334");
    let mut line = vec![b'A'; 12286];
    line.extend_from_slice(b"\r\n");
    assert_eq!(s.send(&line), "501 5.5.2 Cannot decode response\r\n");
}

#[test]
fn a_credential_line_over_12288_gets_500_and_closes() {
    let mut s = offered();
    s.cmd("AUTH PLAIN", "334");
    let mut line = vec![b'A'; 12287];
    line.extend_from_slice(b"\r\n");
    assert_eq!(s.send(&line), "500 5.5.6 Authentication exchange line is too long\r\n");
    assert!(s.server.is_closed());
    assert!(s.buffer.is_empty());
    assert!(s.auths.is_empty());
}

#[test]
fn a_100_kb_credential_is_refused_with_bounded_buffering() {
    let huge = vec![b'A'; 100_000];
    let mut s = offered();
    s.cmd("AUTH LOGIN", "334");
    let mut replies = String::new();
    for piece in huge.chunks(1000) {
        replies.push_str(&s.send(piece));
        assert!(s.buffer.len() < 12288, "the driver never buffers more than one exchange line");
    }
    assert_eq!(replies, "500 5.5.6 Authentication exchange line is too long\r\n");
    assert!(s.server.is_closed());
    assert!(s.auths.is_empty());
}

#[test]
fn a_100_kb_initial_response_is_an_overlong_command_line() {
    let mut s = offered();
    let mut line = b"AUTH PLAIN ".to_vec();
    line.extend(std::iter::repeat_n(b'A', 100_000));
    line.extend_from_slice(b"\r\n");
    assert_eq!(s.send(&line), "500 5.5.6 Error: line too long\r\n");
    assert!(s.server.is_closed());
    assert!(s.buffer.is_empty());
}

// --- The chunk-size sweep ---------------------------------------------------------

fn auth_transcript() -> Vec<u8> {
    [
        "EHLO client.test\r\n",
        "AUTH CRAM-MD5\r\n",
        "AUTH PLAIN\r\n",
        "*\r\n",
        "AUTH LOGIN\r\n",
        &format!("{}\r\n", b64(b"jane")),
        "!!!!\r\n",
        &format!("{}\r\n", plain_initial("jane", "wrong")),
        "AUTH PLAIN =\r\n",
        "AUTH PLAIN\n",
        &format!("{}\n", b64(b"admin\0jane\0x")),
        &format!("AUTH LOGIN {}\r\n", b64(b"jane")),
        &format!("{}\r\n", b64(PASSWORD.as_bytes())),
        "MAIL FROM:<jane@example.test> AUTH=<>\r\n",
        "RCPT TO:<x@elsewhere.test>\r\n",
        "DATA\r\n",
        "hi\r\n.\r\n",
        "AUTH PLAIN\r\n",
        "MAIL FROM:<john@example.test>\r\n",
        "QUIT\r\n",
    ]
    .concat()
    .into_bytes()
}

type Run = (String, Vec<(Mechanism, String, String)>, Vec<Option<String>>, bool);

fn run_chunked(input: &[u8], chunk: usize) -> Run {
    let mut s = Session::with(ServerConfig { max_errors: 100, ..auth_config(AuthMode::Offered) });
    let mut replies = String::new();
    for piece in input.chunks(chunk) {
        replies.push_str(&s.send(piece));
    }
    let auth_users = s.stored.iter().map(|(envelope, _)| envelope.auth_user.clone()).collect();
    (replies, s.auths, auth_users, s.server.is_closed())
}

#[test]
fn auth_transcript_does_not_depend_on_chunk_sizes() {
    let transcript = auth_transcript();
    let whole = run_chunked(&transcript, transcript.len());
    for chunk in [1, 2, 3, 4, 7, 16, 64, 512] {
        assert_eq!(run_chunked(&transcript, chunk), whole, "chunk size {chunk}");
    }
    let (replies, auths, auth_users, closed) = whole;
    let codes: Vec<&str> = replies.lines().map(|l| l.get(..3).unwrap_or(l)).collect();
    assert_eq!(
        codes,
        [
            "250", "250", "250", "250", "250", "250", "250", "250", "250", "250", "250", // EHLO (11 lines)
            "504", "334", "501", "334", "334", "501", // CRAM-MD5, PLAIN *, LOGIN bad base64
            "535", "535", "334", "535", // wrong password, empty, foreign authzid
            "334", "235", // LOGIN with initial response
            "250", "250", "354", "250", // relayed message
            "503", "553", "221", // AUTH again, foreign sender, QUIT
        ]
    );
    assert_eq!(auths.len(), 2, "only well-formed credentials reach the driver");
    assert_eq!(auth_users, [Some("jane".to_string())]);
    assert!(closed);
}

#[test]
fn long_credential_lines_do_not_depend_on_chunk_sizes() {
    let mut transcript = b"EHLO client.test\r\nAUTH PLAIN\r\n".to_vec();
    transcript.extend_from_slice(&long_plain_response(12286));
    transcript.extend_from_slice(b"AUTH LOGIN\r\n");
    transcript.extend(std::iter::repeat_n(b'A', 13_000));
    transcript.extend_from_slice(b"\r\nNOOP\r\n");
    let whole = run_chunked(&transcript, transcript.len());
    assert!(whole.0.ends_with(
        "535 5.7.8 Authentication credentials invalid\r\n334 VXNlcm5hbWU6\r\n\
                               500 5.5.6 Authentication exchange line is too long\r\n"
    ));
    assert!(whole.3);
    // Not 1: rescanning a 12 KiB line per byte makes that case slow, and
    // auth_transcript_does_not_depend_on_chunk_sizes covers it.
    for chunk in [2, 3, 64, 4096] {
        assert_eq!(run_chunked(&transcript, chunk), whole, "chunk size {chunk}");
    }
}
