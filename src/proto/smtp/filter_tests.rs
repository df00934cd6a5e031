//! Session tests: live content filters (milters at `stage = "connect"`)
//! asked about HELO, MAIL and RCPT before their replies
//! ([`super::Action::Filter`]), and the replies their refusals give.

use super::testkit::Session;
use super::{FilterRefusal, FilterStep};

fn filtered() -> Session {
    let mut s = Session::new();
    s.server.filter_commands();
    s
}

#[test]
fn each_accepted_command_is_asked_about_before_its_reply() {
    let mut s = filtered();
    s.ehlo("client.test", "250");
    s.mail_from("a@relay.test", "250");
    s.rcpt_to("jane@example.test", "250");
    s.data(b"Subject: x\r\n\r\nx\r\n", "250");
    let steps: Vec<String> = s
        .filtered
        .iter()
        .map(|f| match f {
            FilterStep::Helo(h) => format!("helo {h}"),
            FilterStep::Mail(m) => format!("mail {m}"),
            FilterStep::Rcpt(r) => format!("rcpt {r}"),
        })
        .collect();
    assert_eq!(steps, ["helo client.test", "mail <a@relay.test>", "rcpt jane@example.test"]);
    assert_eq!(s.stored.len(), 1);
}

#[test]
fn refused_commands_get_the_filters_reply_and_change_nothing() {
    let mut s = filtered();
    s.filter_answers.push_back(Some(FilterRefusal::TempFailed));
    assert_eq!(s.send(b"EHLO client.test\r\n"), "451 4.7.1 Service unavailable - try again later\r\n");
    // Not greeted: MAIL needs a HELO first.
    assert!(s.send(b"MAIL FROM:<a@relay.test>\r\n").starts_with("503"));
    s.ehlo("client.test", "250");
    s.filter_answers.push_back(Some(FilterRefusal::Rejected));
    assert_eq!(s.send(b"MAIL FROM:<a@relay.test>\r\n"), "550 5.7.1 Command rejected\r\n");
    s.mail_from("a@relay.test", "250");
    // The milter's own words (control characters dropped) as the reply.
    s.filter_answers.push_back(Some(FilterRefusal::Reply { code: 550, text: "5.7.1 Not\r\nhere".into() }));
    assert_eq!(s.send(b"RCPT TO:<jane@example.test>\r\n"), "550 5.7.1 Nothere\r\n");
    assert_eq!(s.send(b"DATA\r\n"), "554 5.5.1 Error: no valid recipients\r\n");
    s.rcpt_to("john@example.test", "250");
    s.data(b"Subject: x\r\n\r\nx\r\n", "250");
    let recipients: Vec<String> = s.stored[0].0.recipients.iter().map(|r| r.address.to_string()).collect();
    assert_eq!(recipients, ["john@example.test"]);
}

#[test]
fn pipelined_commands_wait_for_the_filters_and_keep_their_order() {
    let mut s = filtered();
    s.ehlo("client.test", "250");
    s.filter_answers.extend([None, Some(FilterRefusal::Unavailable), None]);
    let replies = s.send(b"MAIL FROM:<a@relay.test>\r\nRCPT TO:<jane@example.test>\r\nRCPT TO:<john@example.test>\r\n");
    assert_eq!(
        replies,
        "250 2.1.0 Ok\r\n451 4.7.1 Error: content filter unavailable, try again later\r\n250 2.1.5 Ok\r\n"
    );
}

#[test]
fn a_refused_connection_gets_only_the_refusal_and_is_closed() {
    let mut s = filtered();
    s.server.refuse_connection(FilterRefusal::Rejected);
    assert_eq!(s.server.output(), b"554 5.7.1 mx.example.test Connection rejected\r\n");
    assert!(s.server.is_closed());
    let mut s = filtered();
    s.server.refuse_connection(FilterRefusal::Reply { code: 421, text: "4.7.0 go away".into() });
    assert_eq!(s.server.output(), b"421 4.7.0 go away\r\n");
}
