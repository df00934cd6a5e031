//! AUTH PLAIN (RFC 5034, RFC 4616), and when passwords may be sent at all:
//! every reply of the exchange, failure counting shared with USER/PASS,
//! line bounds, STLS injection and the chunk-size sweep.

use std::rc::Rc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{config, listing, Action, AuthOutcome, Pop3Config, Server, Session, PASSWORD, USER};

const DISALLOWED: &str = "-ERR [AUTH] Plaintext authentication disallowed on non-secure connection\r\n";
const LOGGED_IN: &str = "+OK Logged in.\r\n";
const FAILED: &str = "-ERR [AUTH] Authentication failed.\r\n";

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn plain(user: &str, password: &str) -> String {
    b64(format!("\0{user}\0{password}").as_bytes())
}

fn insecure() -> Session {
    let mut session = Session::with_config(Pop3Config { plaintext_auth_ok: false, ..config() });
    session.received();
    session
}

fn secure() -> Session {
    let mut session = Session::new();
    session.received();
    session
}

// --- When passwords may be sent ---------------------------------------------

#[test]
fn insecure_capa_lists_neither_user_nor_sasl_but_stls() {
    let mut session = insecure();
    session.expect(
        "CAPA",
        "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n\
         PIPELINING\r\nUTF8 USER\r\nIMPLEMENTATION ringmail\r\nEXPIRE NEVER\r\nSTLS\r\n.\r\n",
    );
}

#[test]
fn insecure_user_pass_and_auth_are_disallowed() {
    let mut session = insecure();
    session.expect("USER alice", DISALLOWED);
    session.expect(&format!("PASS {PASSWORD}"), DISALLOWED);
    session.expect("AUTH", DISALLOWED);
    session.expect("AUTH PLAIN", DISALLOWED);
    session.expect(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)), DISALLOWED);
    assert!(session.actions.is_empty());
    assert!(!session.server.is_closed(), "not counted as failures");
}

#[test]
fn stls_allows_passwords() {
    let mut session = insecure();
    session.expect("STLS", "+OK Begin TLS negotiation\r\n");
    session.expect(
        "CAPA",
        "+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN\r\nRESP-CODES\r\n\
         AUTH-RESP-CODE\r\nPIPELINING\r\nUTF8 USER\r\nIMPLEMENTATION ringmail\r\nEXPIRE NEVER\r\n.\r\n",
    );
    session.expect(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)), LOGGED_IN);
}

#[test]
fn stls_allows_user_pass_too() {
    let mut session = insecure();
    session.send("STLS");
    session.login();
}

#[test]
fn auth_pipelined_after_stls_is_discarded() {
    let mut server = Server::new(Rc::new(Pop3Config { plaintext_auth_ok: false, ..config() }));
    server.clear_output();
    let input = format!("STLS\r\nAUTH PLAIN {}\r\nSTAT\r\n", plain(USER, PASSWORD));
    assert_eq!(server.handle_input(input.as_bytes()), input.len());
    assert_eq!(server.output(), b"+OK Begin TLS negotiation\r\n");
    assert_eq!(server.poll_action(), Some(Action::StartTls));
    assert_eq!(server.poll_action(), None, "the injected AUTH asked for nothing");
    server.stls_done();
    assert_eq!(server.logged_in_user(), None);
    server.clear_output();
    server.handle_input(b"STAT\r\n");
    assert_eq!(server.output(), b"-ERR not logged in\r\n");
}

#[test]
fn stls_inside_an_exchange_is_a_response_not_a_command() {
    let mut session = secure();
    session.expect("AUTH PLAIN", "+ \r\n");
    session.expect("STLS", FAILED); // valid base64, not a PLAIN message
    assert!(session.actions.is_empty(), "no StartTls");
}

// --- The exchange ---------------------------------------------------------------

#[test]
fn auth_plain_with_initial_response_logs_in_through_the_pass_action() {
    let mut session = secure();
    session.expect(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)), LOGGED_IN);
    assert_eq!(session.actions, [Action::Authenticate { user: USER.into(), password: PASSWORD.into() }]);
    assert_eq!(session.server.logged_in_user(), Some(USER));
    session.expect("STAT", "+OK 3 104\r\n");
}

#[test]
fn auth_plain_without_initial_response_sends_an_empty_challenge() {
    let mut session = secure();
    session.expect("auth plain", "+ \r\n");
    session.expect(&b64(format!("{USER}\0{USER}\0{PASSWORD}").as_bytes()), LOGGED_IN);
}

#[test]
fn bare_auth_lists_the_mechanisms() {
    let mut session = secure();
    session.expect("AUTH", "+OK\r\nPLAIN\r\n.\r\n");
    session.login();
}

#[test]
fn unsupported_mechanisms_are_err() {
    let mut session = secure();
    session.expect("AUTH LOGIN", "-ERR unsupported authentication mechanism\r\n");
    session.expect("AUTH CRAM-MD5", "-ERR unsupported authentication mechanism\r\n");
    assert!(session.actions.is_empty());
}

#[test]
fn star_cancels_and_is_not_a_failure() {
    let mut session = secure();
    for _ in 0..5 {
        session.expect("AUTH PLAIN", "+ \r\n");
        session.expect("*", "-ERR authentication aborted\r\n");
    }
    assert!(!session.server.is_closed());
    session.login();
}

#[test]
fn bad_base64_is_err_and_not_a_failure() {
    let mut session = secure();
    for _ in 0..3 {
        session.expect("AUTH PLAIN", "+ \r\n");
        session.expect("not base64!", "-ERR [AUTH] bad base64\r\n");
        session.expect("AUTH PLAIN AGFsaW", "-ERR [AUTH] bad base64\r\n");
    }
    assert!(!session.server.is_closed());
    assert!(session.actions.is_empty());
}

#[test]
fn wrong_password_by_auth_is_the_same_failure_as_by_pass() {
    let mut session = secure();
    session.expect(&format!("AUTH PLAIN {}", plain(USER, "wrong")), FAILED);
    assert_eq!(session.actions, [Action::Authenticate { user: USER.into(), password: "wrong".into() }]);
    assert_eq!(session.server.logged_in_user(), None);
}

#[test]
fn auth_and_pass_failures_count_together() {
    let mut session = secure();
    session.expect(&format!("AUTH PLAIN {}", plain(USER, "wrong")), FAILED);
    session.send("USER alice");
    session.expect("PASS wrong", FAILED);
    session.expect("AUTH PLAIN", "+ \r\n");
    session.expect(&plain(USER, "wrong"), "-ERR [AUTH] too many failures\r\n");
    assert!(session.server.is_closed());
}

#[test]
fn unusable_credentials_fail_without_asking_the_driver_and_count() {
    let mut session = Session::with_config(Pop3Config { max_auth_failures: 10, ..config() });
    session.received();
    session.expect("AUTH PLAIN =", FAILED);
    session.expect("AUTH PLAIN", "+ \r\n");
    session.expect("", FAILED);
    session.expect(&format!("AUTH PLAIN {}", plain("", PASSWORD)), FAILED);
    session.expect(&format!("AUTH PLAIN {}", plain(USER, "")), FAILED);
    session.expect(&format!("AUTH PLAIN {}", b64(format!("bob\0{USER}\0{PASSWORD}").as_bytes())), FAILED);
    session.expect(&format!("AUTH PLAIN {}", b64(b"alice password")), FAILED);
    assert!(session.actions.is_empty());
    for _ in 0..3 {
        session.expect("AUTH PLAIN =", FAILED);
    }
    session.expect("AUTH PLAIN =", "-ERR [AUTH] too many failures\r\n");
    assert!(session.server.is_closed(), "the tenth failure closes");
}

#[test]
fn auth_forgets_an_earlier_user() {
    let mut session = secure();
    session.send("USER alice");
    session.expect("AUTH PLAIN", "+ \r\n");
    session.expect("*", "-ERR authentication aborted\r\n");
    session.expect(&format!("PASS {PASSWORD}"), "-ERR USER first\r\n");
}

#[test]
fn in_use_and_temporary_failure_by_auth_get_their_codes() {
    let mut session = secure();
    session.auth = Some(AuthOutcome::InUse);
    let line = format!("AUTH PLAIN {}", plain(USER, PASSWORD));
    session.expect(&line, "-ERR [IN-USE] Mailbox is locked by another session\r\n");
    session.auth = Some(AuthOutcome::TempFailure);
    assert!(session.send(&line).starts_with("-ERR [SYS/TEMP] "));
    session.auth = None;
    session.expect(&line, LOGGED_IN);
}

#[test]
fn input_waits_while_an_auth_check_is_pending() {
    let mut server = Server::new(Rc::new(config()));
    server.clear_output();
    let input = format!("AUTH PLAIN\r\n{}\r\nSTAT\r\n", plain(USER, PASSWORD));
    let consumed = server.handle_input(input.as_bytes());
    assert_eq!(&input.as_bytes()[consumed..], b"STAT\r\n");
    assert!(matches!(server.poll_action(), Some(Action::Authenticate { .. })));
    assert_eq!(server.handle_input(b"STAT\r\n"), 0);
    server.auth_done(AuthOutcome::LoggedIn(listing()));
    assert_eq!(server.handle_input(b"STAT\r\n"), 6);
    assert_eq!(server.output(), b"+ \r\n+OK Logged in.\r\n+OK 3 104\r\n");
}

#[test]
fn eof_during_the_exchange_closes_silently() {
    let mut session = secure();
    session.expect("AUTH PLAIN", "+ \r\n");
    session.server.handle_eof();
    session.flush();
    assert_eq!(session.received(), "");
    assert!(session.server.is_closed());
    assert_eq!(session.server.logged_in_user(), None);
}

// --- Bounds -----------------------------------------------------------------------

#[test]
fn a_12_kib_response_line_is_read() {
    let mut session = secure();
    session.expect("AUTH PLAIN", "+ \r\n");
    // 12284 base64 characters + CRLF: within 12288.
    let password = "p".repeat(12284 / 4 * 3 - "\0alice\0".len());
    let line = plain(USER, &password);
    assert_eq!(line.len(), 12284);
    session.expect(&line, FAILED);
    assert_eq!(session.actions, [Action::Authenticate { user: USER.into(), password }]);
}

#[test]
fn a_response_line_over_12288_is_too_long_and_closes() {
    let mut session = secure();
    session.expect("AUTH PLAIN", "+ \r\n");
    session.expect(&"A".repeat(12287), "-ERR line too long\r\n");
    assert!(session.server.is_closed());
    assert!(session.pending.is_empty());
}

#[test]
fn a_100_kb_response_is_refused_with_bounded_buffering() {
    let mut session = secure();
    session.expect("AUTH PLAIN", "+ \r\n");
    for piece in vec![b'A'; 100_000].chunks(999) {
        session.feed(piece);
        assert!(session.pending.len() < 12288, "never more than one exchange line buffered");
    }
    assert_eq!(session.received(), "-ERR line too long\r\n");
    assert!(session.server.is_closed());
    assert!(session.actions.is_empty());
}

#[test]
fn an_initial_response_is_bound_by_the_command_line_limit() {
    // RFC 5034 §4: a client must not send an initial response that makes
    // the AUTH line longer than 255 octets.
    let mut session = secure();
    session.expect(&format!("AUTH PLAIN {}", "A".repeat(300)), "-ERR line too long\r\n");
    assert!(session.server.is_closed());
}

// --- The chunk-size sweep -----------------------------------------------------------

fn auth_transcript() -> Vec<u8> {
    [
        "AUTH\r\n",
        "AUTH LOGIN\r\n",
        "AUTH PLAIN\r\n",
        "*\r\n",
        "AUTH PLAIN\n",
        "!!!!\r\n",
        &format!("AUTH PLAIN {}\r\n", plain(USER, "wrong")),
        "AUTH PLAIN =\r\n",
        "AUTH PLAIN\r\n",
        &format!("{}\n", plain(USER, PASSWORD)),
        "STAT\r\n",
        "AUTH PLAIN\r\n",
        "QUIT\r\n",
    ]
    .concat()
    .into_bytes()
}

fn run(input: &[u8], size: usize) -> (String, Vec<Action>, bool) {
    let mut session = Session::with_config(Pop3Config { max_auth_failures: 5, ..config() });
    for piece in input.chunks(size) {
        session.feed(piece);
    }
    (String::from_utf8_lossy(&session.transcript).into_owned(), session.actions, session.server.is_closed())
}

#[test]
fn auth_transcript_is_the_same_at_every_chunk_size() {
    let input = auth_transcript();
    let whole = run(&input, input.len());
    for size in [1, 2, 3, 5, 8, 64, 512] {
        assert_eq!(run(&input, size), whole, "chunk size {size}");
    }
    let (transcript, actions, closed) = whole;
    assert_eq!(
        transcript,
        format!(
            "+OK pop.example.test ringmail POP3 ready\r\n+OK\r\nPLAIN\r\n.\r\n\
             -ERR unsupported authentication mechanism\r\n+ \r\n-ERR authentication aborted\r\n\
             + \r\n-ERR [AUTH] bad base64\r\n{FAILED}{FAILED}+ \r\n{LOGGED_IN}+OK 3 104\r\n\
             -ERR already logged in\r\n+OK pop.example.test signing off\r\n"
        )
    );
    assert_eq!(actions.len(), 2);
    assert!(closed);
}
