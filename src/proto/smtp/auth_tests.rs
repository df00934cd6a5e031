//! Session tests for SMTP AUTH (RFC 4954): the advertisement, every reply
//! code of the exchange, the driver's outcomes, AUTH-required listeners,
//! the sender check and relaying for authenticated users, and STARTTLS
//! resetting it all. Line bounds and the chunk-size sweep are in
//! `auth_limits_tests`.

use super::interface::{Action, AuthMode, AuthOutcome, ServerConfig};
use super::sasl::Mechanism;
use super::testkit::{auth_config, b64, config, offered, plain_initial, Session, PASSWORD};

// --- Advertisement and when AUTH is allowed ---------------------------------

#[test]
fn ehlo_advertises_auth_only_when_offered_and_passwords_are_allowed() {
    let with = |auth, plaintext_auth_ok| {
        let mut s = Session::with(ServerConfig { auth, plaintext_auth_ok, ..config() });
        s.ehlo("client.test", "250 ").contains("250-AUTH PLAIN LOGIN\r\n")
    };
    assert!(!with(AuthMode::Off, true));
    assert!(!with(AuthMode::Offered, false));
    assert!(!with(AuthMode::Required, false));
    assert!(with(AuthMode::Offered, true));
    assert!(with(AuthMode::Required, true));
}

#[test]
fn auth_is_advertised_after_starttls_on_an_insecure_channel() {
    let mut s = Session::with(ServerConfig { auth: AuthMode::Offered, plaintext_auth_ok: false, ..config() });
    let before = s.ehlo("client.test", "250 ");
    assert!(before.contains("STARTTLS") && !before.contains("AUTH"), "{before}");
    s.cmd("STARTTLS", "220 2.0.0");
    let after = s.ehlo("client.test", "250 ");
    assert!(!after.contains("STARTTLS") && after.contains("250-AUTH PLAIN LOGIN\r\n"), "{after}");
    s.cmd(&plain_initial("jane", PASSWORD), "235 2.7.0");
}

#[test]
fn auth_before_starttls_on_an_insecure_channel_gets_538() {
    let mut s = Session::with(ServerConfig { auth: AuthMode::Offered, plaintext_auth_ok: false, ..config() });
    s.ehlo("client.test", "250 ");
    let reply = s.cmd(&plain_initial("jane", PASSWORD), "538");
    assert_eq!(reply, "538 5.7.11 Encryption required for requested authentication mechanism\r\n");
    s.cmd("AUTH LOGIN", "538 5.7.11");
    assert!(s.auths.is_empty());
}

#[test]
fn auth_when_not_enabled_gets_503() {
    let mut s = Session::in_state("greeted");
    assert_eq!(s.cmd(&plain_initial("jane", PASSWORD), "503"), "503 5.5.1 Error: authentication not enabled\r\n");
    assert!(s.auths.is_empty());
}

#[test]
fn auth_before_ehlo_gets_503() {
    let mut s = Session::with(auth_config(AuthMode::Offered));
    s.cmd("AUTH PLAIN", "503 5.5.1 Error: send HELO/EHLO first");
}

#[test]
fn auth_during_a_transaction_gets_503() {
    let mut s = offered();
    s.mail_from("a@relay.test", "250");
    s.cmd(&plain_initial("jane", PASSWORD), "503 5.5.1 Error: MAIL transaction in progress");
    assert!(s.auths.is_empty());
}

#[test]
fn auth_when_already_authenticated_gets_503() {
    let mut s = offered();
    s.cmd(&plain_initial("jane", PASSWORD), "235");
    s.cmd(&plain_initial("john", PASSWORD), "503 5.5.1 Error: already authenticated");
    assert_eq!(s.server.authenticated_user(), Some("jane"));
}

#[test]
fn auth_without_a_mechanism_gets_501() {
    let mut s = offered();
    s.cmd("AUTH", "501 5.5.4 Syntax: AUTH mechanism");
    s.cmd("AUTH PLAIN a b", "501 5.5.4");
}

#[test]
fn unknown_mechanism_gets_504() {
    let mut s = offered();
    assert_eq!(s.cmd("AUTH CRAM-MD5", "504"), "504 5.5.4 Unrecognized authentication type\r\n");
    s.cmd("AUTH GSSAPI =", "504 5.5.4");
}

// --- The exchange -------------------------------------------------------------

#[test]
fn plain_with_initial_response_asks_the_driver_and_succeeds() {
    let mut s = offered();
    assert_eq!(s.cmd(&plain_initial("jane", PASSWORD), "235"), "235 2.7.0 Authentication successful\r\n");
    assert_eq!(s.auths, [(Mechanism::Plain, "jane".into(), PASSWORD.into())]);
    assert_eq!(s.server.authenticated_user(), Some("jane"));
}

#[test]
fn plain_without_initial_response_sends_an_empty_challenge() {
    let mut s = offered();
    assert_eq!(s.cmd("AUTH PLAIN", "334"), "334 \r\n");
    s.cmd(&b64(format!("jane\0jane\0{PASSWORD}").as_bytes()), "235 2.7.0");
}

#[test]
fn login_asks_for_user_name_then_password() {
    let mut s = offered();
    assert_eq!(s.cmd("auth login", "334"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(s.cmd(&b64(b"jane"), "334"), "334 UGFzc3dvcmQ6\r\n");
    s.cmd(&b64(PASSWORD.as_bytes()), "235 2.7.0");
    assert_eq!(s.auths, [(Mechanism::Login, "jane".into(), PASSWORD.into())]);
}

#[test]
fn login_initial_response_is_the_user_name() {
    let mut s = offered();
    s.cmd(&format!("AUTH LOGIN {}", b64(b"jane")), "334 UGFzc3dvcmQ6");
    s.cmd(&b64(PASSWORD.as_bytes()), "235");
}

#[test]
fn star_aborts_the_exchange_with_501() {
    let mut s = offered();
    s.cmd("AUTH PLAIN", "334");
    assert_eq!(s.cmd("*", "501"), "501 5.0.0 Authentication aborted\r\n");
    s.cmd("AUTH LOGIN", "334");
    s.cmd(&b64(b"jane"), "334");
    s.cmd("*", "501 5.0.0");
    assert!(s.auths.is_empty());
    s.cmd("NOOP", "250"); // back to commands
}

#[test]
fn bad_base64_gets_501() {
    let mut s = offered();
    s.cmd("AUTH PLAIN", "334");
    assert_eq!(s.cmd("not base64!", "501"), "501 5.5.2 Cannot decode response\r\n");
    s.cmd("AUTH PLAIN amFuZQ", "501 5.5.2");
    s.cmd("AUTH LOGIN", "334");
    s.cmd("%%%%", "501 5.5.2");
    assert!(s.auths.is_empty());
}

#[test]
fn empty_credentials_get_535_without_asking_the_driver() {
    let mut s = Session::with(ServerConfig { max_errors: 100, ..auth_config(AuthMode::Offered) });
    s.ehlo("client.test", "250 ");
    s.cmd("AUTH PLAIN =", "535 5.7.8 Authentication credentials invalid");
    s.cmd("AUTH PLAIN", "334");
    s.cmd("", "535 5.7.8");
    s.cmd(&plain_initial("", PASSWORD), "535 5.7.8");
    s.cmd(&plain_initial("jane", ""), "535 5.7.8");
    s.cmd("AUTH LOGIN", "334");
    s.cmd("", "535 5.7.8");
    s.cmd("AUTH LOGIN", "334");
    s.cmd(&b64(b"jane"), "334");
    s.cmd("=", "501 5.5.2"); // `=` means empty only as an initial response
    assert!(s.auths.is_empty());
}

#[test]
fn plain_with_a_foreign_authorization_identity_gets_535() {
    let mut s = offered();
    s.cmd(&format!("AUTH PLAIN {}", b64(format!("admin\0jane\0{PASSWORD}").as_bytes())), "535 5.7.8");
    s.cmd(&format!("AUTH PLAIN {}", b64(format!("jane\0jane\0{PASSWORD}").as_bytes())), "235");
    assert_eq!(s.auths.len(), 1);
}

#[test]
fn wrong_password_gets_535_and_the_session_goes_on() {
    let mut s = offered();
    s.cmd(&plain_initial("jane", "wrong"), "535 5.7.8 Authentication credentials invalid");
    assert_eq!(s.server.authenticated_user(), None);
    s.cmd(&plain_initial("jane", PASSWORD), "235");
}

#[test]
fn driver_outcomes_get_their_replies() {
    let mut s = offered();
    s.auth_outcomes.extend([AuthOutcome::TempFailure, AuthOutcome::Locked, AuthOutcome::Failure]);
    assert_eq!(s.cmd(&plain_initial("jane", PASSWORD), "454"), "454 4.7.0 Temporary authentication failure\r\n");
    s.cmd(&plain_initial("jane", PASSWORD), "454 4.7.0 Temporary authentication failure: too many failures");
    s.cmd(&plain_initial("jane", PASSWORD), "535 5.7.8");
    assert_eq!(s.server.authenticated_user(), None);
    s.cmd(&plain_initial("jane", PASSWORD), "235 2.7.0");
}

#[test]
fn auth_failures_and_lockouts_count_toward_max_errors_temp_failures_do_not() {
    let mut s = Session::with(ServerConfig { max_errors: 3, ..auth_config(AuthMode::Offered) });
    s.ehlo("client.test", "250 ");
    s.auth_outcomes.extend([AuthOutcome::TempFailure; 5]);
    for _ in 0..5 {
        s.cmd(&plain_initial("jane", PASSWORD), "454");
    }
    s.auth_outcomes.push_back(AuthOutcome::Locked);
    s.cmd(&plain_initial("jane", PASSWORD), "454");
    s.cmd("AUTH PLAIN", "334");
    s.cmd("*", "501");
    let reply = s.send(format!("{}\r\n", plain_initial("jane", "wrong")).as_bytes());
    assert_eq!(
        reply,
        "535 5.7.8 Authentication credentials invalid\r\n421 4.7.0 mx.example.test Error: too many errors\r\n"
    );
    assert!(s.server.is_closed());
}

#[test]
fn commands_after_auth_wait_for_the_check() {
    let mut s = offered();
    let input = format!("{}\r\nMAIL FROM:<jane@example.test>\r\n", plain_initial("jane", PASSWORD));
    let consumed = s.server.handle_input(input.as_bytes());
    let rest = &input.as_bytes()[consumed..];
    assert_eq!(rest, b"MAIL FROM:<jane@example.test>\r\n");
    assert_eq!(s.server.handle_input(rest), 0, "nothing is consumed while the check is pending");
    let Some(Action::Authenticate { mechanism, user, password }) = s.server.poll_action() else {
        panic!("expected an authentication");
    };
    assert_eq!((mechanism, user.as_str(), password.as_str()), (Mechanism::Plain, "jane", PASSWORD));
    assert!(s.server.poll_action().is_none(), "each action is returned once");
    s.server.auth_done(AuthOutcome::Success);
    assert_eq!(s.server.handle_input(rest), rest.len());
    assert_eq!(s.server.output(), b"235 2.7.0 Authentication successful\r\n250 2.1.0 Ok\r\n");
}

#[test]
fn auth_done_without_a_pending_check_is_ignored() {
    let mut s = offered();
    s.server.auth_done(AuthOutcome::Success);
    assert_eq!(s.server.output(), b"");
    assert_eq!(s.server.authenticated_user(), None);
    s.server.handle_input(format!("{}\r\n", plain_initial("jane", PASSWORD)).as_bytes());
    s.server.handle_eof();
    assert!(s.server.poll_action().is_none(), "EOF withdraws the check");
    s.server.auth_done(AuthOutcome::Success);
    assert_eq!(s.server.authenticated_user(), None);
    assert!(s.server.is_closed());
}

#[test]
fn authenticate_debug_output_hides_the_password() {
    let action = Action::Authenticate { mechanism: Mechanism::Login, user: "jane".into(), password: "hunter2".into() };
    let shown = format!("{action:?}");
    assert!(shown.contains("jane") && !shown.contains("hunter2"), "{shown}");
}

// --- What authentication changes --------------------------------------------

#[test]
fn required_auth_refuses_mail_before_auth_with_530() {
    let mut s = Session::with(auth_config(AuthMode::Required));
    s.ehlo("client.test", "250 ");
    assert_eq!(s.mail_from("jane@example.test", "530"), "530 5.7.0 Authentication required\r\n");
    s.cmd(&plain_initial("jane", PASSWORD), "235");
    s.mail_from("jane@example.test", "250 2.1.0");
}

#[test]
fn required_auth_on_an_insecure_channel_refuses_mail_and_auth() {
    let mut s = Session::with(ServerConfig { auth: AuthMode::Required, plaintext_auth_ok: false, ..config() });
    s.mail_from("jane@example.test", "503 5.5.1 Error: send HELO/EHLO first");
    s.ehlo("client.test", "250 ");
    s.mail_from("jane@example.test", "530 5.7.0");
    s.cmd("AUTH PLAIN", "538 5.7.11");
}

#[test]
fn offered_auth_does_not_require_it() {
    let mut s = offered();
    s.mail_from("someone@relay.test", "250");
    s.rcpt_to("jane@example.test", "250");
    s.data(b"x\r\n", "250");
    assert_eq!(s.stored[0].0.auth_user, None);
}

#[test]
fn authenticated_user_may_relay_and_is_recorded_in_the_envelope() {
    let mut s = offered();
    s.mail_from("jane@example.test", "250");
    s.rcpt_to("x@elsewhere.test", "554 5.7.1");
    s.cmd("RSET", "250");
    s.cmd(&plain_initial("jane", PASSWORD), "235");
    s.mail_from("jane@example.test", "250");
    s.rcpt_to("x@elsewhere.test", "250 2.1.5");
    s.data(b"x\r\n", "250");
    assert_eq!(s.stored[0].0.auth_user.as_deref(), Some("jane"));
}

#[test]
fn authenticated_user_may_not_send_as_someone_else() {
    let mut s = offered();
    s.cmd(&plain_initial("jane", PASSWORD), "235");
    assert_eq!(
        s.mail_from("john@example.test", "553"),
        "553 5.7.1 Sender address rejected: not owned by user jane\r\n"
    );
    s.mail_from("", "250 2.1.0");
    s.cmd("RSET", "250");
    s.mail_from("jane@example.test", "250 2.1.0");
}

#[test]
fn mail_auth_parameter_is_accepted_and_ignored() {
    let mut s = offered();
    s.cmd("MAIL FROM:<a@relay.test> AUTH=<>", "250 2.1.0");
    s.cmd("RSET", "250");
    s.cmd("MAIL FROM:<a@relay.test> SIZE=10 AUTH=jane+40example.test", "250 2.1.0");
}

#[test]
fn starttls_forgets_the_authentication() {
    let mut s = offered();
    s.cmd(&plain_initial("jane", PASSWORD), "235");
    s.cmd("STARTTLS", "220 2.0.0");
    assert_eq!(s.server.authenticated_user(), None);
    s.ehlo("client.test", "250 ");
    s.mail_from("jane@example.test", "250");
    s.rcpt_to("x@elsewhere.test", "554 5.7.1");
    s.cmd("RSET", "250");
    s.cmd(&plain_initial("john", PASSWORD), "235");
    assert_eq!(s.server.authenticated_user(), Some("john"));
}

#[test]
fn auth_pipelined_after_starttls_is_discarded() {
    let mut s = Session::with(ServerConfig { auth: AuthMode::Required, plaintext_auth_ok: false, ..config() });
    s.ehlo("client.test", "250 ");
    let injected = format!("STARTTLS\r\n{}\r\nMAIL FROM:<jane@example.test>\r\n", plain_initial("jane", PASSWORD));
    assert_eq!(s.send(injected.as_bytes()), "220 2.0.0 Ready to start TLS\r\n");
    assert!(s.buffer.is_empty());
    assert!(s.auths.is_empty());
    assert_eq!(s.server.authenticated_user(), None);
    s.ehlo("client.test", "250 ");
    s.mail_from("jane@example.test", "530 5.7.0");
}

#[test]
fn lines_inside_an_exchange_are_responses_not_commands() {
    let mut s = offered();
    s.cmd("AUTH PLAIN", "334");
    s.cmd("QUIT", "535 5.7.8"); // valid base64, not a PLAIN message
    assert!(!s.server.is_closed());
    s.cmd("AUTH LOGIN", "334");
    s.cmd("STARTTLS", "535 5.7.8"); // decoded, it is no UTF-8 user name
    assert_eq!(s.handshakes, 0);
    s.cmd(&b64(PASSWORD.as_bytes()), "500 5.5.2"); // a command again, not a response
}
