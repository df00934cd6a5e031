//! After close nothing is answered, and late driver calls change nothing.

use std::rc::Rc;

use super::{config, listing, Session, PASSWORD, USER};
use super::{AuthOutcome, CommitOutcome, Server};

const EVERY_COMMAND: &[&str] = &[
    "USER alice",
    "PASS x",
    "AUTH",
    "AUTH PLAIN",
    "AUTH PLAIN AGFsaWNlAHg=",
    "QUIT",
    "CAPA",
    "STLS",
    "STAT",
    "LIST",
    "LIST 1",
    "RETR 1",
    "DELE 1",
    "NOOP",
    "RSET",
    "TOP 1 1",
    "UIDL",
    "UIDL 1",
    "XYZZY",
];

fn assert_deaf(session: &mut Session) {
    assert!(session.server.is_closed());
    let actions = session.actions.len();
    for line in EVERY_COMMAND {
        assert_eq!(session.send(line), "", "reply to {line:?} after close");
        assert!(session.pending.is_empty(), "{line:?} was not consumed");
    }
    session.server.handle_timeout();
    session.server.handle_eof();
    session.flush();
    assert_eq!(session.received(), "");
    assert_eq!(session.actions.len(), actions);
}

#[test]
fn every_command_after_quit_before_login_is_ignored() {
    let mut session = Session::new();
    session.send("QUIT");
    assert_deaf(&mut session);
}

#[test]
fn every_command_after_quit_after_login_is_ignored() {
    let mut session = Session::logged_in();
    session.send("DELE 1");
    session.send("QUIT");
    assert_deaf(&mut session);
    assert_eq!(session.server.logged_in_user(), Some(USER));
}

#[test]
fn every_command_after_eof_is_ignored() {
    let mut session = Session::logged_in();
    session.server.handle_eof();
    assert_deaf(&mut session);
}

#[test]
fn every_command_after_too_many_failures_is_ignored() {
    let mut session = Session::new();
    for _ in 0..3 {
        session.send("USER alice");
        session.send("PASS wrong");
    }
    assert_deaf(&mut session);
}

#[test]
fn auth_done_after_eof_is_ignored() {
    let mut server = Server::new(Rc::new(config()));
    server.handle_input(format!("USER {USER}\r\nPASS {PASSWORD}\r\n").as_bytes());
    assert!(server.poll_action().is_some());
    server.handle_eof();
    server.clear_output();
    server.auth_done(AuthOutcome::LoggedIn(listing()));
    assert!(server.is_closed());
    assert_eq!(server.output(), b"");
    assert_eq!(server.logged_in_user(), None);
}

#[test]
fn timeout_withdraws_an_action_not_yet_polled() {
    let mut server = Server::new(Rc::new(config()));
    server.handle_input(format!("USER {USER}\r\nPASS {PASSWORD}\r\n").as_bytes());
    server.handle_timeout();
    assert_eq!(server.poll_action(), None);
}

#[test]
fn message_body_and_commit_done_after_timeout_are_ignored() {
    let mut server = Server::new(Rc::new(config()));
    server.handle_input(format!("USER {USER}\r\nPASS {PASSWORD}\r\n").as_bytes());
    server.poll_action();
    server.auth_done(AuthOutcome::LoggedIn(listing()));
    server.handle_input(b"RETR 1\r\n");
    assert!(server.poll_action().is_some());
    server.handle_timeout();
    server.clear_output();
    server.message_body(b"Subject: late\r\n\r\nbody\r\n");
    server.commit_done(CommitOutcome::Done);
    server.stls_done();
    assert!(server.is_closed());
    assert_eq!(server.output(), b"");
    assert_eq!(server.logged_in_user(), Some(USER));
}

#[test]
fn driver_calls_without_their_action_change_nothing() {
    let mut session = Session::logged_in();
    session.server.auth_done(AuthOutcome::BadCredentials);
    session.server.message_body(b"Subject: stray\r\n\r\nbody\r\n");
    session.server.commit_done(CommitOutcome::Failed);
    session.server.stls_done();
    session.flush();
    assert_eq!(session.received(), "");
    session.expect("STAT", "+OK 3 104\r\n");
    session.expect("STLS", "-ERR already logged in\r\n");
}
