//! After login: every TRANSACTION command, deletion marks, RSET and QUIT.

use std::rc::Rc;

use super::{config, listing, Session, PASSWORD, USER};
use super::{Action, AuthOutcome, CommitOutcome, Server};

// Sizes of the three test messages: 28, 45 and 31 octets.

#[test]
fn stat_counts_all_messages_and_octets() {
    let mut session = Session::logged_in();
    session.expect("STAT", "+OK 3 104\r\n");
}

#[test]
fn stat_excludes_deleted_messages() {
    let mut session = Session::logged_in();
    session.expect("DELE 2", "+OK message 2 deleted\r\n");
    session.expect("STAT", "+OK 2 59\r\n");
}

#[test]
fn list_without_argument_lists_every_message() {
    let mut session = Session::logged_in();
    session.expect("LIST", "+OK 3 messages (104 octets)\r\n1 28\r\n2 45\r\n3 31\r\n.\r\n");
}

#[test]
fn list_omits_deleted_messages_and_keeps_numbers() {
    let mut session = Session::logged_in();
    session.send("DELE 1");
    session.expect("LIST", "+OK 2 messages (76 octets)\r\n2 45\r\n3 31\r\n.\r\n");
}

#[test]
fn list_of_one_message_is_a_single_line() {
    let mut session = Session::logged_in();
    session.expect("LIST 2", "+OK 2 45\r\n");
}

#[test]
fn list_of_deleted_or_missing_message_is_err() {
    let mut session = Session::logged_in();
    session.send("DELE 2");
    for line in ["LIST 2", "LIST 0", "LIST 4", "LIST 99999999999999999999"] {
        session.expect(line, "-ERR no such message\r\n");
    }
}

#[test]
fn list_of_empty_maildrop_is_an_empty_listing() {
    let mut session = Session::new();
    session.received();
    session.auth = Some(AuthOutcome::LoggedIn(Vec::new()));
    session.send("USER alice");
    session.send("PASS x");
    session.expect("LIST", "+OK 0 messages (0 octets)\r\n.\r\n");
    session.expect("UIDL", "+OK unique-id listing follows\r\n.\r\n");
    session.expect("STAT", "+OK 0 0\r\n");
    session.expect("RETR 1", "-ERR no such message\r\n");
}

#[test]
fn uidl_lists_unique_ids_without_deleted_messages() {
    let mut session = Session::logged_in();
    session.expect("UIDL", "+OK unique-id listing follows\r\n1 uid-1\r\n2 uid-2\r\n3 uid-3\r\n.\r\n");
    session.send("DELE 2");
    session.expect("UIDL", "+OK unique-id listing follows\r\n1 uid-1\r\n3 uid-3\r\n.\r\n");
    session.expect("UIDL 3", "+OK 3 uid-3\r\n");
    session.expect("UIDL 2", "-ERR no such message\r\n");
    session.expect("UIDL 4", "-ERR no such message\r\n");
}

#[test]
fn retr_sends_stored_size_then_stuffed_body() {
    let mut session = Session::logged_in();
    session.expect("RETR 2", "+OK 45 octets\r\nSubject: two\r\n\r\n..dotted\r\nline two\r\n..\r\nafter\r\n.\r\n");
    assert_eq!(session.actions.last(), Some(&Action::SendMessage { index: 1, top_lines: None }));
}

#[test]
fn retr_of_body_without_final_crlf_adds_one() {
    let mut session = Session::logged_in();
    session.expect("RETR 3", "+OK 31 octets\r\nSubject: three\r\n\r\nno final crlf\r\n.\r\n");
}

#[test]
fn retr_of_deleted_message_is_err() {
    let mut session = Session::logged_in();
    session.send("DELE 1");
    session.expect("RETR 1", "-ERR no such message\r\n");
}

#[test]
fn retr_out_of_range_or_malformed_is_err() {
    let mut session = Session::logged_in();
    session.expect("RETR 0", "-ERR no such message\r\n");
    session.expect("RETR 4", "-ERR no such message\r\n");
    session.expect("RETR", "-ERR missing argument\r\n");
    session.expect("RETR 1 2", "-ERR too many arguments\r\n");
    session.expect("RETR -1", "-ERR invalid message number\r\n");
    session.expect("RETR +1", "-ERR invalid message number\r\n");
    assert_eq!(session.actions.len(), 1, "only the Authenticate");
}

#[test]
fn top_sends_headers_blank_line_and_n_body_lines() {
    let mut session = Session::logged_in();
    session.expect("TOP 2 1", "+OK top of message follows\r\nSubject: two\r\n\r\n..dotted\r\n.\r\n");
    session.expect("TOP 2 0", "+OK top of message follows\r\nSubject: two\r\n\r\n.\r\n");
    assert_eq!(session.actions.last(), Some(&Action::SendMessage { index: 1, top_lines: Some(0) }));
}

#[test]
fn top_past_the_end_sends_the_whole_message() {
    let mut session = Session::logged_in();
    session.expect("TOP 3 10", "+OK top of message follows\r\nSubject: three\r\n\r\nno final crlf\r\n.\r\n");
}

#[test]
fn top_of_deleted_or_missing_message_is_err() {
    let mut session = Session::logged_in();
    session.send("DELE 1");
    session.expect("TOP 1 0", "-ERR no such message\r\n");
    session.expect("TOP 9 0", "-ERR no such message\r\n");
    session.expect("TOP 1", "-ERR missing argument\r\n");
    session.expect("TOP 2 x", "-ERR invalid line count\r\n");
}

#[test]
fn dele_marks_and_second_dele_is_err() {
    let mut session = Session::logged_in();
    session.expect("DELE 3", "+OK message 3 deleted\r\n");
    session.expect("DELE 3", "-ERR message 3 already deleted\r\n");
    session.expect("DELE 4", "-ERR no such message\r\n");
    session.expect("DELE x", "-ERR invalid message number\r\n");
}

#[test]
fn rset_unmarks_every_deleted_message() {
    let mut session = Session::logged_in();
    session.send("DELE 1");
    session.send("DELE 3");
    session.expect("RSET", "+OK\r\n");
    session.expect("STAT", "+OK 3 104\r\n");
    session.expect("RETR 1", "+OK 28 octets\r\nSubject: one\r\n\r\nfirst body\r\n.\r\n");
    session.expect("QUIT", "+OK pop.example.test signing off\r\n");
    assert!(!session.actions.iter().any(|a| matches!(a, Action::Commit { .. })));
}

#[test]
fn noop_is_ok() {
    let mut session = Session::logged_in();
    session.expect("NOOP", "+OK\r\n");
    session.expect("NOOP x", "-ERR too many arguments\r\n");
}

#[test]
fn capa_after_login_omits_stls() {
    let mut session = Session::logged_in();
    session.expect(
        "CAPA",
        "+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN\r\nRESP-CODES\r\n\
         AUTH-RESP-CODE\r\nPIPELINING\r\nUTF8 USER\r\nIMPLEMENTATION ringmail\r\nEXPIRE NEVER\r\n.\r\n",
    );
}

#[test]
fn user_pass_auth_and_stls_after_login_are_err() {
    let mut session = Session::logged_in();
    session.expect("USER bob", "-ERR already logged in\r\n");
    session.expect("PASS x", "-ERR already logged in\r\n");
    session.expect("AUTH PLAIN", "-ERR already logged in\r\n");
    session.expect("STLS", "-ERR already logged in\r\n");
    assert_eq!(session.server.logged_in_user(), Some(USER));
}

#[test]
fn unknown_command_after_login_is_err() {
    let mut session = Session::logged_in();
    session.expect("XTND XMIT", "-ERR unknown command\r\n");
    session.expect("RETRIEVE 1", "-ERR unknown command\r\n");
    session.expect("STAT", "+OK 3 104\r\n");
}

#[test]
fn quit_without_deletions_closes_without_commit() {
    let mut session = Session::logged_in();
    session.expect("QUIT", "+OK pop.example.test signing off\r\n");
    assert!(session.server.is_closed());
    assert_eq!(session.actions.len(), 1, "only the Authenticate");
}

#[test]
fn delete_retrieved_at_quit_adds_retrieved_messages_but_not_top() {
    let mut session = Session::logged_in();
    session.server.delete_retrieved_at_quit(true);
    session.send("RETR 3");
    session.send("TOP 2 0");
    session.send("DELE 1");
    session.send("RETR 3");
    session.expect("QUIT", "+OK pop.example.test signing off\r\n");
    assert_eq!(session.actions.last(), Some(&Action::Commit { deleted: vec![0, 2] }));
}

#[test]
fn retrieved_messages_stay_without_the_policy() {
    let mut session = Session::logged_in();
    session.send("RETR 1");
    session.expect("QUIT", "+OK pop.example.test signing off\r\n");
    assert!(!session.actions.iter().any(|a| matches!(a, Action::Commit { .. })));
}

#[test]
fn quit_with_deletions_commits_ascending_indices() {
    let mut session = Session::logged_in();
    session.send("DELE 3");
    session.send("DELE 1");
    session.expect("QUIT", "+OK pop.example.test signing off\r\n");
    assert_eq!(session.actions.last(), Some(&Action::Commit { deleted: vec![0, 2] }));
    assert!(session.server.is_closed());
    assert_eq!(session.server.logged_in_user(), Some(USER));
}

#[test]
fn failed_commit_reports_sys_temp_and_closes() {
    let mut session = Session::logged_in();
    session.commit = CommitOutcome::Failed;
    session.send("DELE 2");
    session.expect("QUIT", "-ERR [SYS/TEMP] some deleted messages not removed\r\n");
    assert!(session.server.is_closed());
}

#[test]
fn input_waits_while_a_message_is_sent() {
    let mut server = Server::new(Rc::new(config()));
    server.handle_input(format!("USER {USER}\r\nPASS {PASSWORD}\r\n").as_bytes());
    assert!(server.poll_action().is_some());
    server.auth_done(AuthOutcome::LoggedIn(listing()));
    server.clear_output();
    let input = b"RETR 1\r\nNOOP\r\n";
    assert_eq!(server.handle_input(input), 8);
    assert_eq!(server.output(), b"+OK 28 octets\r\n");
    assert_eq!(server.poll_action(), Some(Action::SendMessage { index: 0, top_lines: None }));
    assert_eq!(server.handle_input(b"NOOP\r\n"), 0);
    server.message_body(b"a\r\n");
    assert_eq!(server.handle_input(b"NOOP\r\n"), 6);
    assert_eq!(server.output(), b"+OK 28 octets\r\na\r\n.\r\n+OK\r\n", "one buffer, in order");
}

#[test]
fn input_waits_while_commit_is_pending() {
    let mut server = Server::new(Rc::new(config()));
    server.handle_input(format!("USER {USER}\r\nPASS {PASSWORD}\r\n").as_bytes());
    server.poll_action();
    server.auth_done(AuthOutcome::LoggedIn(listing()));
    server.clear_output();
    assert_eq!(server.handle_input(b"DELE 1\r\nQUIT\r\nNOOP\r\n"), 14);
    assert_eq!(server.poll_action(), Some(Action::Commit { deleted: vec![0] }));
    assert!(!server.is_closed());
    assert_eq!(server.handle_input(b"NOOP\r\n"), 0);
    server.commit_done(CommitOutcome::Done);
    assert!(server.is_closed());
    assert_eq!(server.output(), b"+OK message 1 deleted\r\n+OK pop.example.test signing off\r\n");
}

#[test]
fn eof_after_login_does_not_commit_but_remembers_the_user() {
    let mut session = Session::logged_in();
    session.send("DELE 1");
    session.server.handle_eof();
    assert!(session.server.is_closed());
    assert_eq!(session.server.poll_action(), None);
    assert_eq!(session.server.logged_in_user(), Some(USER));
    assert!(!session.actions.iter().any(|a| matches!(a, Action::Commit { .. })));
}

#[test]
fn timeout_after_login_autologs_out_without_commit() {
    let mut session = Session::logged_in();
    session.send("DELE 1");
    session.server.handle_timeout();
    session.flush();
    assert_eq!(session.received(), "-ERR autologout; idle for too long\r\n");
    assert!(session.server.is_closed());
    assert_eq!(session.server.poll_action(), None);
    assert_eq!(session.server.logged_in_user(), Some(USER));
}

#[test]
fn overlong_line_after_login_closes_and_keeps_the_user() {
    let mut session = Session::logged_in();
    session.feed(&[b'x'; 1000]);
    assert_eq!(session.received(), "-ERR line too long\r\n");
    assert!(session.server.is_closed());
    assert_eq!(session.server.logged_in_user(), Some(USER));
}

#[test]
fn pipelined_retr_top_list_and_uidl_are_answered_in_one_buffer() {
    use super::super::write_message;
    use super::MESSAGES;
    let mut server = Server::new(Rc::new(config()));
    server.handle_input(format!("USER {USER}\r\nPASS {PASSWORD}\r\n").as_bytes());
    assert!(server.poll_action().is_some());
    server.auth_done(AuthOutcome::LoggedIn(listing()));
    server.clear_output();
    // A driver's loop over one read: feed, hand over bodies, feed the rest;
    // nothing is written until the batch is answered.
    let input = b"RETR 1\r\nTOP 2 0\r\nLIST\r\nUIDL 3\r\nRETR 3\r\n";
    let mut consumed = 0;
    loop {
        consumed += server.handle_input(&input[consumed..]);
        match server.poll_action() {
            Some(Action::SendMessage { index, .. }) => server.message_body(MESSAGES[index].1),
            Some(other) => panic!("{other:?}"),
            None => break,
        }
    }
    assert_eq!(consumed, input.len());
    let mut expected = b"+OK 28 octets\r\n".to_vec();
    write_message(MESSAGES[0].1, None, &mut expected);
    expected.extend_from_slice(b"+OK top of message follows\r\n");
    write_message(MESSAGES[1].1, Some(0), &mut expected);
    expected.extend_from_slice(b"+OK 3 messages (104 octets)\r\n1 28\r\n2 45\r\n3 31\r\n.\r\n");
    expected.extend_from_slice(format!("+OK 3 {}\r\n", MESSAGES[2].0).as_bytes());
    expected.extend_from_slice(b"+OK 31 octets\r\n");
    write_message(MESSAGES[2].1, None, &mut expected);
    assert_eq!(String::from_utf8_lossy(server.output()), String::from_utf8_lossy(&expected));
}
