//! Session tests: line framing, the error limit, timeout, EOF and STARTTLS.

use super::interface::{ServerConfig, StoreOutcome};
use super::testkit::{config, Session};

#[test]
fn nul_byte_in_a_command_gets_500_syntax() {
    let mut s = Session::in_state("greeted");
    assert_eq!(s.send(b"NOOP\0\r\n"), "500 5.5.2 Error: bad syntax\r\n");
    assert_eq!(s.send(b"MAIL FROM:<a\0@relay.test>\r\n"), "500 5.5.2 Error: bad syntax\r\n");
    assert_eq!(s.send(b"\r\n"), "500 5.5.2 Error: bad syntax\r\n");
}

#[test]
fn overlong_line_gets_500_and_closes_consuming_everything() {
    let mut s = Session::new();
    let mut line = vec![b'A'; 511];
    line.extend_from_slice(b"\r\n");
    assert_eq!(s.send(&line[..512]), "500 5.5.6 Error: line too long\r\n");
    assert!(s.server.is_closed());
    assert!(s.buffer.is_empty());
    // Exactly max_line_len including CRLF fits.
    let mut s = Session::new();
    let mut line = b"NOOP ".to_vec();
    line.resize(510, b'x');
    line.extend_from_slice(b"\r\n");
    assert_eq!(s.send(&line), "250 2.0.0 Ok\r\n");
}

#[test]
fn incomplete_line_is_left_for_the_next_read() {
    let mut s = Session::new();
    assert_eq!(s.send(b"NO"), "");
    assert_eq!(s.buffer, b"NO");
    assert_eq!(s.send(b"OP\r\n"), "250 2.0.0 Ok\r\n");
}

#[test]
fn bare_lf_ends_a_command_line() {
    let mut s = Session::new();
    assert_eq!(s.send(b"NOOP\nNOOP\r\n"), "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n");
}

#[test]
fn too_many_errors_get_421_and_close() {
    let mut s = Session::new();
    for _ in 0..4 {
        s.cmd("BOGUS", "500 5.5.2");
    }
    let reply = s.send(b"BOGUS\r\nNOOP\r\n");
    assert_eq!(
        reply,
        "500 5.5.2 Error: command not recognized\r\n421 4.7.0 mx.example.test Error: too many errors\r\n"
    );
    assert!(s.server.is_closed());
}

#[test]
fn a_stored_message_resets_the_error_count() {
    let mut s = Session::in_state("rcpt");
    for _ in 0..4 {
        s.cmd("BOGUS", "500");
    }
    s.data(b"x\r\n", "250");
    for _ in 0..4 {
        s.cmd("BOGUS", "500");
    }
    assert!(!s.server.is_closed());
}

#[test]
fn timeout_gets_421_and_closes() {
    let mut s = Session::in_state("rcpt");
    s.server.handle_timeout();
    assert_eq!(s.server.output(), b"421 4.4.2 mx.example.test Error: timeout exceeded\r\n");
    assert!(s.server.is_closed());
    s.server.clear_output();
    s.server.handle_timeout();
    assert!(s.server.output().is_empty(), "no second 421");
}

#[test]
fn eof_mid_data_discards_the_message() {
    let mut s = Session::in_state("rcpt");
    s.cmd("DATA", "354");
    s.send(b"partial body\r\n");
    s.server.handle_eof();
    assert!(s.server.is_closed());
    assert!(s.server.poll_action().is_none());
    assert!(s.stored.is_empty());
}

#[test]
fn eof_before_the_store_is_polled_drops_it() {
    let mut s = Session::in_state("rcpt");
    s.cmd("DATA", "354");
    assert_eq!(s.server.handle_input(b"x\r\n.\r\n"), 6);
    s.server.handle_eof();
    assert!(s.server.poll_action().is_none());
    s.server.store_done(StoreOutcome::Stored { queue_id: "late".into() });
    assert!(s.server.output().is_empty(), "store_done ignored when nothing is outstanding");
}

#[test]
fn starttls_when_not_offered_gets_502() {
    let mut s = Session::with(ServerConfig { starttls: false, ..config() });
    let ehlo = s.ehlo("client.test", "250 ");
    assert!(!ehlo.contains("STARTTLS"));
    assert_eq!(s.cmd("STARTTLS", "502"), "502 5.5.1 Error: command not implemented\r\n");
}

#[test]
fn starttls_with_an_argument_gets_501() {
    let mut s = Session::in_state("greeted");
    s.cmd("STARTTLS now", "501 5.5.4");
    assert_eq!(s.handshakes, 0);
}

#[test]
fn after_starttls_the_client_must_ehlo_again_and_tls_is_not_offered() {
    let mut s = Session::in_state("greeted");
    s.cmd("STARTTLS", "220 2.0.0 Ready to start TLS");
    assert_eq!(s.handshakes, 1);
    s.mail_from("a@relay.test", "503 5.5.1 Error: send HELO/EHLO first");
    let ehlo = s.ehlo("client.test", "250 ");
    assert!(!ehlo.contains("STARTTLS"));
    s.cmd("STARTTLS", "554 5.5.1 Error: TLS already active");
}

#[test]
fn commands_pipelined_after_starttls_are_discarded() {
    let mut s = Session::in_state("greeted");
    let reply = s.send(b"STARTTLS\r\nMAIL FROM:<evil@relay.test>\r\nRCPT TO:<jane@example.test>\r\n");
    assert_eq!(reply, "220 2.0.0 Ready to start TLS\r\n");
    assert!(s.buffer.is_empty());
    assert!(s.checked.borrow().is_empty());
    // The injected MAIL did not survive the handshake.
    s.ehlo("client.test", "250 ");
    s.rcpt_to("jane@example.test", "503 5.5.1");
}

#[test]
fn plaintext_bytes_before_the_handshake_are_discarded() {
    let mut s = Session::in_state("greeted");
    s.server.handle_input(b"STARTTLS\r\n");
    assert_eq!(s.server.handle_input(b"MAIL FROM:<evil@relay.test>\r\n"), 29);
    s.server.starttls_done();
    s.server.clear_output();
    assert_eq!(s.send(b"MAIL FROM:<a@relay.test>\r\n"), "503 5.5.1 Error: send HELO/EHLO first\r\n");
}

#[test]
fn too_many_commands_in_a_session_get_421_and_close() {
    let mut s = Session::with(ServerConfig { max_commands: 3, ..config() });
    s.cmd("EHLO client.test", "250");
    s.cmd("NOOP", "250");
    s.cmd("NOOP", "250");
    s.cmd("NOOP", "421 4.7.0");
    assert!(s.server.is_closed());
}

#[test]
fn too_many_messages_in_a_session_get_421_at_the_next_mail() {
    let mut s = Session::with(ServerConfig { max_messages: 1, ..config() });
    s.transaction();
    s.data(b"one\r\n", "250");
    s.cmd("MAIL FROM:<a@b.test>", "421 4.7.0");
    assert!(s.server.is_closed());
}

#[test]
fn a_rate_limited_sender_gets_450_and_the_session_goes_on() {
    let mut s = Session::with(config());
    s.cmd("EHLO client.test", "250");
    s.cmd("MAIL FROM:<flooder@example.test>", "450 4.7.1");
    s.cmd("MAIL FROM:<calm@example.test>", "250");
}
