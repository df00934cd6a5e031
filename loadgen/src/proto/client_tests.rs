//! Transcript tests for the SMTP client state machine: the client's output is
//! compared with what a real client would write, and server replies are fed
//! as text.

use super::*;
use crate::proto::reply::parse_reply;

const EHLO_PIPE: &str = "250-sink.test\r\n250-PIPELINING\r\n250-SIZE 0\r\n250 8BITMIME\r\n";
const EHLO_PLAIN: &str = "250-sink.test\r\n250 8BITMIME\r\n";

fn settings(pipelining: bool) -> Settings {
    Settings { helo_name: "gen.test".into(), pipelining, starttls: false, auth: None }
}

fn env(rcpts: &[&str]) -> Envelope {
    Envelope { from: "a@gen.test".into(), rcpts: rcpts.iter().map(|s| s.to_string()).collect(), size: 100 }
}

/// Feeds one reply text (possibly multi-line) and returns the progress.
fn reply(c: &mut SmtpClient, text: &str) -> Progress {
    let (r, used) = parse_reply(text.as_bytes()).unwrap().unwrap();
    assert_eq!(used, text.len(), "one reply at a time");
    c.handle_reply(&r).unwrap()
}

fn output(c: &mut SmtpClient) -> String {
    let mut buf = Vec::new();
    c.take_output(&mut buf);
    String::from_utf8(buf).unwrap()
}

fn ready(pipelining: bool, ehlo: &str) -> SmtpClient {
    let mut c = SmtpClient::new(settings(pipelining), false);
    assert_eq!(reply(&mut c, "220 hi\r\n").next, Next::Wait);
    assert_eq!(output(&mut c), "EHLO gen.test\r\n");
    assert_eq!(reply(&mut c, ehlo).next, Next::Ready);
    c
}

#[test]
fn pipelined_transaction_sends_one_batch_and_is_accepted() {
    let mut c = ready(true, EHLO_PIPE);
    c.start_message(&env(&["x@a.test", "y@b.test"])).unwrap();
    assert_eq!(
        output(&mut c),
        "MAIL FROM:<a@gen.test> SIZE=100\r\nRCPT TO:<x@a.test>\r\nRCPT TO:<y@b.test>\r\nDATA\r\n"
    );
    assert_eq!(reply(&mut c, "250 ok\r\n").next, Next::Wait);
    assert_eq!(reply(&mut c, "250 ok\r\n").next, Next::Wait);
    assert_eq!(reply(&mut c, "250 ok\r\n").next, Next::Wait);
    let p = reply(&mut c, "354 go\r\n");
    assert_eq!((p.step, p.next), (Step::Data, Next::SendData));
    c.data_sent();
    let p = reply(&mut c, "250 queued\r\n");
    assert_eq!((p.step, p.next), (Step::EndOfData, Next::Done(Outcome::Accepted)));
}

#[test]
fn without_pipelining_commands_go_one_per_reply() {
    let mut c = ready(false, EHLO_PIPE);
    c.start_message(&env(&["x@a.test", "y@b.test"])).unwrap();
    assert_eq!(output(&mut c), "MAIL FROM:<a@gen.test> SIZE=100\r\n");
    reply(&mut c, "250 ok\r\n");
    assert_eq!(output(&mut c), "RCPT TO:<x@a.test>\r\n");
    reply(&mut c, "250 ok\r\n");
    assert_eq!(output(&mut c), "RCPT TO:<y@b.test>\r\n");
    reply(&mut c, "250 ok\r\n");
    assert_eq!(output(&mut c), "DATA\r\n");
    assert_eq!(reply(&mut c, "354 go\r\n").next, Next::SendData);
}

#[test]
fn pipelining_requested_but_not_offered_falls_back_to_lockstep() {
    let mut c = ready(true, EHLO_PLAIN);
    assert!(!c.pipelining());
    c.start_message(&env(&["x@a.test"])).unwrap();
    assert_eq!(output(&mut c), "MAIL FROM:<a@gen.test>\r\n");
}

#[test]
fn end_of_data_rejection_is_an_outcome_not_an_error() {
    let mut c = ready(true, EHLO_PIPE);
    c.start_message(&env(&["x@a.test"])).unwrap();
    reply(&mut c, "250 ok\r\n");
    reply(&mut c, "250 ok\r\n");
    reply(&mut c, "354 go\r\n");
    c.data_sent();
    let p = reply(&mut c, "451 later\r\n");
    assert_eq!(p.next, Next::Done(Outcome::Rejected { step: Step::EndOfData, code: 451 }));
    // No RSET is needed after a complete transaction.
    c.start_message(&env(&["x@a.test"])).unwrap();
    assert!(output(&mut c).starts_with("MAIL FROM"));
}

#[test]
fn pipelined_mail_rejection_waits_for_all_replies_then_rsets() {
    let mut c = ready(true, EHLO_PIPE);
    c.start_message(&env(&["x@a.test"])).unwrap();
    output(&mut c);
    assert_eq!(reply(&mut c, "452 full\r\n").next, Next::Wait);
    assert_eq!(reply(&mut c, "503 no mail\r\n").next, Next::Wait);
    let p = reply(&mut c, "503 no rcpt\r\n");
    assert_eq!(p.next, Next::Done(Outcome::Rejected { step: Step::Mail, code: 452 }));
    c.start_message(&env(&["x@a.test"])).unwrap();
    assert!(output(&mut c).starts_with("RSET\r\nMAIL FROM"));
}

#[test]
fn all_recipients_rejected_and_server_still_says_354_sends_empty_body() {
    let mut c = ready(true, EHLO_PIPE);
    c.start_message(&env(&["x@a.test"])).unwrap();
    output(&mut c);
    reply(&mut c, "250 ok\r\n");
    reply(&mut c, "550 no such user\r\n");
    assert_eq!(reply(&mut c, "354 go anyway\r\n").next, Next::Wait);
    assert_eq!(output(&mut c), ".\r\n");
    let p = reply(&mut c, "554 no valid recipients\r\n");
    assert_eq!(p.next, Next::Done(Outcome::Rejected { step: Step::Rcpt, code: 550 }));
}

#[test]
fn lockstep_all_recipients_rejected_ends_before_data() {
    let mut c = ready(false, EHLO_PLAIN);
    c.start_message(&env(&["x@a.test"])).unwrap();
    output(&mut c);
    reply(&mut c, "250 ok\r\n");
    output(&mut c);
    let p = reply(&mut c, "550 unknown\r\n");
    assert_eq!(p.next, Next::Done(Outcome::Rejected { step: Step::Rcpt, code: 550 }));
    assert!(!c.has_output());
}

#[test]
fn greeting_refusal_is_a_session_error() {
    let mut c = SmtpClient::new(settings(false), false);
    let (r, _) = parse_reply(b"554 go away\r\n").unwrap().unwrap();
    assert_eq!(c.handle_reply(&r), Err(SessionError::Refused { step: Step::Greeting, reply: "554 go away".into() }));
}

#[test]
fn ehlo_not_supported_is_refused() {
    let mut c = SmtpClient::new(settings(false), false);
    reply(&mut c, "220 hi\r\n");
    let (r, _) = parse_reply(b"502 what\r\n").unwrap().unwrap();
    assert!(matches!(c.handle_reply(&r), Err(SessionError::Refused { step: Step::Ehlo, .. })));
}

#[test]
fn starttls_then_auth_then_ready() {
    let mut s = settings(true);
    s.starttls = true;
    s.auth = Some(("u@x.test".into(), "pw".into()));
    let mut c = SmtpClient::new(s, false);
    reply(&mut c, "220 hi\r\n");
    output(&mut c);
    reply(&mut c, "250-x\r\n250-STARTTLS\r\n250 AUTH LOGIN PLAIN\r\n");
    assert_eq!(output(&mut c), "STARTTLS\r\n");
    assert_eq!(reply(&mut c, "220 go ahead\r\n").next, Next::StartTls);
    c.tls_established();
    assert_eq!(output(&mut c), "EHLO gen.test\r\n");
    assert_eq!(reply(&mut c, "250-x\r\n250 AUTH PLAIN\r\n").next, Next::Wait);
    // base64("\0u@x.test\0pw")
    assert_eq!(output(&mut c), "AUTH PLAIN AHVAeC50ZXN0AHB3\r\n");
    assert_eq!(reply(&mut c, "235 ok\r\n").next, Next::Ready);
}

#[test]
fn auth_failure_is_refused_with_the_reply() {
    let mut s = settings(false);
    s.auth = Some(("u".into(), "bad".into()));
    let mut c = SmtpClient::new(s, false);
    reply(&mut c, "220 hi\r\n");
    reply(&mut c, "250-x\r\n250 AUTH PLAIN\r\n");
    let (r, _) = parse_reply(b"535 5.7.8 nope\r\n").unwrap().unwrap();
    assert_eq!(c.handle_reply(&r), Err(SessionError::Refused { step: Step::Auth, reply: "535 5.7.8 nope".into() }));
}

#[test]
fn missing_starttls_and_auth_are_reported() {
    let mut s = settings(false);
    s.starttls = true;
    let mut c = SmtpClient::new(s, false);
    reply(&mut c, "220 hi\r\n");
    let (r, _) = parse_reply(EHLO_PLAIN.as_bytes()).unwrap().unwrap();
    assert_eq!(c.handle_reply(&r), Err(SessionError::StartTlsNotOffered));

    let mut s = settings(false);
    s.auth = Some(("u".into(), "p".into()));
    let mut c = SmtpClient::new(s, false);
    reply(&mut c, "220 hi\r\n");
    assert_eq!(c.handle_reply(&r), Err(SessionError::AuthNotOffered));
}

#[test]
fn unsolicited_reply_is_an_error() {
    let mut c = ready(false, EHLO_PLAIN);
    let (r, _) = parse_reply(b"250 what\r\n").unwrap().unwrap();
    assert!(matches!(c.handle_reply(&r), Err(SessionError::Unexpected { step: None, .. })));
}

#[test]
fn starting_a_message_mid_transaction_is_refused() {
    let mut c = ready(true, EHLO_PIPE);
    c.start_message(&env(&["x@a.test"])).unwrap();
    assert_eq!(c.start_message(&env(&["x@a.test"])), Err(SessionError::NotReady));
}

#[test]
fn quit_is_answered_with_closed() {
    let mut c = ready(true, EHLO_PIPE);
    c.quit();
    assert_eq!(output(&mut c), "QUIT\r\n");
    assert_eq!(reply(&mut c, "221 bye\r\n").next, Next::Closed);
}

#[test]
fn ehlo_caps_are_parsed() {
    let (r, _) = parse_reply(b"250-x\r\n250-pipelining\r\n250-SIZE 10240000\r\n250-AUTH=PLAIN\r\n250 STARTTLS\r\n")
        .unwrap()
        .unwrap();
    let caps = Caps::from_ehlo(&r);
    assert!(caps.pipelining && caps.starttls && caps.auth_plain);
    assert_eq!(caps.size, Some(10_240_000));
    assert!(!caps.eight_bit_mime);
}
