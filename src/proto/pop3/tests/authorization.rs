//! Before login: USER, PASS, QUIT, CAPA, STLS and everything refused there.

use std::rc::Rc;

use super::{config, listing, Action, AuthOutcome, Pop3Config, Server, Session, PASSWORD, USER};

const CAPA_WITH_STLS: &str = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN\r\n\
    RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nUTF8 USER\r\nIMPLEMENTATION ringmail\r\nEXPIRE NEVER\r\nSTLS\r\n.\r\n";
const CAPA_WITHOUT_STLS: &str = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN\r\n\
    RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nUTF8 USER\r\nIMPLEMENTATION ringmail\r\nEXPIRE NEVER\r\n.\r\n";

#[test]
fn greeting_names_the_host() {
    let mut session = Session::new();
    assert_eq!(session.received(), "+OK pop.example.test ringmail POP3 ready\r\n");
    assert!(!session.server.is_closed());
    assert_eq!(session.server.logged_in_user(), None);
}

#[test]
fn user_is_accepted_whatever_the_name() {
    let mut session = Session::new();
    session.received();
    session.expect("USER nobody-at-all", "+OK send PASS\r\n");
    session.expect("user alice", "+OK send PASS\r\n");
}

#[test]
fn pass_without_user_is_err() {
    let mut session = Session::new();
    session.received();
    session.expect("PASS secret", "-ERR USER first\r\n");
    assert!(session.actions.is_empty());
}

#[test]
fn pass_hands_user_and_whole_password_to_the_driver() {
    let mut session = Session::new();
    session.received();
    session.login();
    assert_eq!(session.actions, [Action::Authenticate { user: USER.into(), password: PASSWORD.into() }]);
}

#[test]
fn later_user_replaces_earlier_one() {
    let mut session = Session::new();
    session.received();
    session.send("USER mallory");
    session.send(&format!("USER {USER}"));
    session.expect(&format!("PASS {PASSWORD}"), "+OK Logged in.\r\n");
}

#[test]
fn wrong_password_and_unknown_user_get_the_same_auth_reply() {
    let mut session = Session::new();
    session.received();
    session.send("USER alice");
    session.expect("PASS wrong", "-ERR [AUTH] Authentication failed.\r\n");
    session.send("USER nobody");
    session.expect("PASS wrong", "-ERR [AUTH] Authentication failed.\r\n");
    assert!(!session.server.is_closed());
    assert_eq!(session.server.logged_in_user(), None);
}

#[test]
fn failed_pass_forgets_the_user() {
    let mut session = Session::new();
    session.received();
    session.send("USER alice");
    session.send("PASS wrong");
    session.expect(&format!("PASS {PASSWORD}"), "-ERR USER first\r\n");
}

#[test]
fn reaching_max_auth_failures_closes_the_session() {
    let mut session = Session::new();
    session.received();
    for _ in 0..2 {
        session.send("USER alice");
        session.expect("PASS wrong", "-ERR [AUTH] Authentication failed.\r\n");
    }
    session.send("USER alice");
    session.expect("PASS wrong", "-ERR [AUTH] too many failures\r\n");
    assert!(session.server.is_closed());
    assert_eq!(session.server.logged_in_user(), None);
}

#[test]
fn zero_max_auth_failures_closes_on_the_first_failure() {
    let mut session = Session::with_config(Pop3Config { max_auth_failures: 0, ..config() });
    session.received();
    session.send("USER alice");
    session.expect("PASS wrong", "-ERR [AUTH] too many failures\r\n");
    assert!(session.server.is_closed());
}

#[test]
fn in_use_gets_in_use_code_and_is_not_a_failure() {
    let mut session = Session::new();
    session.received();
    session.auth = Some(AuthOutcome::InUse);
    for _ in 0..5 {
        session.send("USER alice");
        session.expect(&format!("PASS {PASSWORD}"), "-ERR [IN-USE] Mailbox is locked by another session\r\n");
    }
    assert!(!session.server.is_closed());
    session.auth = None;
    session.login();
}

#[test]
fn temporary_failure_gets_sys_temp_and_is_not_a_failure() {
    let mut session = Session::new();
    session.received();
    session.auth = Some(AuthOutcome::TempFailure);
    for _ in 0..5 {
        session.send("USER alice");
        let reply = session.send(&format!("PASS {PASSWORD}"));
        assert!(reply.starts_with("-ERR [SYS/TEMP] "), "{reply}");
    }
    assert!(!session.server.is_closed());
}

#[test]
fn quit_before_login_says_bye_and_closes_without_commit() {
    let mut session = Session::new();
    session.received();
    session.expect("QUIT", "+OK bye\r\n");
    assert!(session.server.is_closed());
    assert!(session.actions.is_empty());
}

#[test]
fn capa_before_login_lists_stls_when_enabled() {
    let mut session = Session::new();
    session.received();
    session.expect("CAPA", CAPA_WITH_STLS);
}

#[test]
fn capa_omits_stls_when_disabled() {
    let mut session = Session::with_config(Pop3Config { stls: false, ..config() });
    session.received();
    session.expect("CAPA", CAPA_WITHOUT_STLS);
}

#[test]
fn stls_when_disabled_is_err() {
    let mut session = Session::with_config(Pop3Config { stls: false, ..config() });
    session.received();
    session.expect("STLS", "-ERR STLS not available\r\n");
    assert!(session.actions.is_empty());
}

#[test]
fn stls_starts_tls_then_is_neither_offered_nor_accepted() {
    let mut session = Session::new();
    session.received();
    session.expect("STLS", "+OK Begin TLS negotiation\r\n");
    assert_eq!(session.actions, [Action::StartTls]);
    session.expect("CAPA", CAPA_WITHOUT_STLS);
    session.expect("STLS", "-ERR TLS already active\r\n");
    session.login();
}

#[test]
fn stls_discards_bytes_pipelined_after_it() {
    let mut server = Server::new(Rc::new(config()));
    server.clear_output();
    let input = b"STLS\r\nUSER alice\r\nPASS injected\r\n";
    assert_eq!(server.handle_input(input), input.len());
    assert_eq!(server.output(), b"+OK Begin TLS negotiation\r\n");
    assert_eq!(server.poll_action(), Some(Action::StartTls));
    // Until the handshake is done, plaintext is discarded too.
    assert_eq!(server.handle_input(b"PASS more\r\n"), 11);
    server.stls_done();
    server.clear_output();
    // The USER pipelined in plaintext was not remembered.
    assert_eq!(server.handle_input(b"PASS x\r\n"), 8);
    assert_eq!(server.output(), b"-ERR USER first\r\n");
    assert_eq!(server.poll_action(), None);
}

#[test]
fn stls_forgets_a_user_given_before_it() {
    let mut session = Session::new();
    session.received();
    session.send("USER alice");
    session.send("STLS");
    session.expect(&format!("PASS {PASSWORD}"), "-ERR USER first\r\n");
}

#[test]
fn transaction_commands_before_login_are_err() {
    let mut session = Session::new();
    session.received();
    for line in ["STAT", "LIST", "LIST 1", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 1", "UIDL", "UIDL 1"] {
        session.expect(line, "-ERR not logged in\r\n");
    }
    assert!(session.actions.is_empty());
}

#[test]
fn unknown_commands_are_err_and_the_session_goes_on() {
    let mut session = Session::new();
    session.received();
    session.expect("APOP alice 0123", "-ERR unknown command\r\n");
    session.expect("AUTHENTICATE", "-ERR unknown command\r\n");
    session.expect("", "-ERR unknown command\r\n");
    session.login();
}

#[test]
fn syntax_errors_name_the_reason() {
    let mut session = Session::new();
    session.received();
    session.expect("USER", "-ERR missing argument\r\n");
    session.expect("USER a b", "-ERR too many arguments\r\n");
    session.expect("PASS", "-ERR missing argument\r\n");
    session.expect("QUIT now", "-ERR too many arguments\r\n");
    session.expect("USER a\0b", "-ERR NUL byte in command\r\n");
    session.expect("USER a\rb", "-ERR bare CR in command\r\n");
    session.feed(b"USER \xff\r\n");
    assert_eq!(session.received(), "-ERR command is not valid UTF-8\r\n");
    assert!(!session.server.is_closed());
}

#[test]
fn commands_are_case_insensitive() {
    let mut session = Session::new();
    session.received();
    session.expect("uSeR alice", "+OK send PASS\r\n");
    session.expect(&format!("pass {PASSWORD}"), "+OK Logged in.\r\n");
    session.expect("stat", "+OK 3 104\r\n");
}

#[test]
fn bare_lf_ends_commands_too() {
    let mut session = Session::new();
    session.received();
    session.feed(format!("USER alice\nPASS {PASSWORD}\nNOOP\n").as_bytes());
    assert_eq!(session.received(), "+OK send PASS\r\n+OK Logged in.\r\n+OK\r\n");
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let mut session = Session::new();
    session.received();
    session.feed(format!("CAPA\r\nUSER alice\r\nPASS {PASSWORD}\r\nSTAT\r\nQUIT\r\n").as_bytes());
    assert_eq!(
        session.received(),
        format!(
            "{CAPA_WITH_STLS}+OK send PASS\r\n+OK Logged in.\r\n+OK 3 104\r\n\
             +OK pop.example.test signing off\r\n"
        )
    );
}

#[test]
fn input_waits_while_authentication_is_pending() {
    let mut server = Server::new(Rc::new(config()));
    server.clear_output();
    let input = format!("USER alice\r\nPASS {PASSWORD}\r\nSTAT\r\n");
    let consumed = server.handle_input(input.as_bytes());
    assert_eq!(&input.as_bytes()[consumed..], b"STAT\r\n");
    assert_eq!(server.output(), b"+OK send PASS\r\n");
    assert!(matches!(server.poll_action(), Some(Action::Authenticate { .. })));
    assert_eq!(server.poll_action(), None, "an action is handed out once");
    assert_eq!(server.handle_input(b"STAT\r\n"), 0);
    server.auth_done(AuthOutcome::LoggedIn(listing()));
    assert_eq!(server.handle_input(b"STAT\r\n"), 6);
    assert_eq!(server.output(), b"+OK send PASS\r\n+OK Logged in.\r\n+OK 3 104\r\n");
}

#[test]
fn overlong_line_is_err_closes_and_consumes_everything() {
    let mut server = Server::new(Rc::new(config()));
    server.clear_output();
    let mut input = vec![b'A'; 300];
    input.extend_from_slice(b"\r\nNOOP\r\n");
    assert_eq!(server.handle_input(&input), input.len());
    assert_eq!(server.output(), b"-ERR line too long\r\n");
    assert!(server.is_closed());
}

#[test]
fn overlong_line_is_caught_before_its_end_arrives() {
    let mut server = Server::new(Rc::new(config()));
    server.clear_output();
    assert_eq!(server.handle_input(&[b'A'; 254]), 0);
    assert_eq!(server.handle_input(&[b'A'; 255]), 255);
    assert_eq!(server.output(), b"-ERR line too long\r\n");
    assert!(server.is_closed());
}

#[test]
fn line_of_exactly_max_len_is_accepted() {
    let mut session = Session::new();
    session.received();
    let name = "a".repeat(255 - "USER \r\n".len());
    session.expect(&format!("USER {name}"), "+OK send PASS\r\n");
    assert!(!session.server.is_closed());
}

#[test]
fn timeout_before_login_autologs_out() {
    let mut session = Session::new();
    session.received();
    session.server.handle_timeout();
    session.flush();
    assert_eq!(session.received(), "-ERR autologout; idle for too long\r\n");
    assert!(session.server.is_closed());
}

#[test]
fn eof_before_login_closes_silently() {
    let mut session = Session::new();
    session.received();
    session.server.handle_eof();
    session.flush();
    assert_eq!(session.received(), "");
    assert!(session.server.is_closed());
}

#[test]
fn utf8_is_accepted_before_login_and_then_utf8_names_reach_the_driver() {
    let mut session = Session::new();
    session.received();
    session.expect("UTF8", "+OK UTF8 enabled\r\n");
    session.expect("USER j\u{e4}ne@b\u{fc}cher.example", "+OK send PASS\r\n");
    session.expect("PASS s\u{e9}cret", "-ERR [AUTH] Authentication failed.\r\n");
    assert_eq!(
        session.actions,
        [Action::Authenticate { user: "j\u{e4}ne@b\u{fc}cher.example".into(), password: "s\u{e9}cret".into() }]
    );
}

#[test]
fn utf8_after_login_is_refused() {
    let mut session = Session::logged_in();
    assert!(session.send("UTF8").starts_with("-ERR"));
}
