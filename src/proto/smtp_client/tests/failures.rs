//! What ends a connection: 421, timeouts, lost connections, replies that
//! cannot be read or make no sense, a refused RSET.

use super::harness::{config, msg, Harness, GREET_PIPELINING, GREET_PLAIN};
use crate::proto::smtp_client::{FailureCause, Phase, RecipientOutcome, ReplyError, MAX_LINE_LEN};

/// Greeted, pipelining, one message to three recipients, up to the replies.
fn in_flight() -> Harness {
    let mut h = Harness::new(config()).send([msg(&["ok@y.test", "no@y.test", "c@y.test"])]);
    h.play(&format!(
        "{GREET_PIPELINING}
         C: MAIL FROM:<a@example.test>
         C: RCPT TO:<ok@y.test>
         C: RCPT TO:<no@y.test>
         C: RCPT TO:<c@y.test>
         C: DATA"
    ));
    h
}

#[test]
fn service_closing_mid_transaction_defers_the_undecided_and_keeps_bounces() {
    let mut h = in_flight();
    h.play(
        "S: 250 ok
         S: 250 ok
         S: 550 5.1.1 unknown
         S: 421 4.3.2 shutting down",
    );
    assert_eq!(h.outcomes(), [[("deferred", 421), ("bounced", 550), ("deferred", 421)]]);
    let failure = h.failure().unwrap();
    assert!(failure.temporary);
    assert!(matches!(&failure.cause, FailureCause::ServiceClosing(r) if r.code == 421));
    assert_eq!(h.names(), ["Ready", "Outcome", "Failed"]);
    assert_eq!(h.client.phase(), Phase::Closed);
}

#[test]
fn service_closing_after_the_body_defers_every_accepted_recipient() {
    let mut h = in_flight();
    h.play(
        "S: 250 ok
         S: 250 ok
         S: 250 ok
         S: 452 4.2.2 full
         S: 354 go
         C: <BODY>
         S: 421 4.4.2 timeout",
    );
    assert_eq!(h.outcomes(), [[("deferred", 421), ("deferred", 421), ("deferred", 452)]]);
}

#[test]
fn service_closing_when_idle_fails_without_an_outcome() {
    let mut h = Harness::new(config()).stay_idle();
    h.play(&format!("{GREET_PLAIN}\nS: 421 4.4.2 idle too long"));
    assert_eq!(h.names(), ["Ready", "Failed"]);
}

#[test]
fn timeout_defers_the_message_in_flight_and_names_the_phase() {
    let mut h = in_flight();
    h.play(
        "S: 250 ok
         S: 250 ok
         S: 250 ok
         S: 550 5.1.1 unknown
         S: 354 go
         C: <BODY>
         T: timeout",
    );
    assert_eq!(h.outcomes(), [[("deferred", 451), ("deferred", 451), ("bounced", 550)]]);
    let failure = h.failure().unwrap();
    assert!(failure.temporary);
    assert_eq!(failure.cause, FailureCause::Timeout { phase: Phase::DataTermination });
    let reply = h.recipient_outcomes()[0].reply().clone();
    assert_eq!(
        reply.to_string(),
        "451 4.4.2 conversation timed out while sending end of data -- \
         message may be sent more than once"
    );
}

#[test]
fn timeout_before_the_greeting_fails_temporarily() {
    let mut h = Harness::new(config());
    h.play("T: timeout");
    assert_eq!(h.failure().unwrap().cause, FailureCause::Timeout { phase: Phase::Greeting });
    assert!(h.writes.is_empty());
}

#[test]
fn timeout_after_quit_is_a_clean_close() {
    let mut h = Harness::new(config());
    h.play(&format!("{GREET_PLAIN}\nC: QUIT\nT: timeout"));
    assert_eq!(h.names(), ["Ready", "Closed"]);
}

#[test]
fn connection_lost_mid_transaction_defers_and_fails() {
    let mut h = in_flight();
    h.play("S: 250 ok\nX: lost");
    assert_eq!(h.outcomes(), [[("deferred", 451), ("deferred", 451), ("deferred", 451)]]);
    assert_eq!(h.failure().unwrap().cause, FailureCause::ConnectionLost { phase: Phase::Rcpt });
}

#[test]
fn connection_lost_when_idle_is_a_clean_close() {
    let mut h = Harness::new(config()).stay_idle();
    h.play(&format!("{GREET_PLAIN}\nX: lost"));
    assert_eq!(h.names(), ["Ready", "Closed"]);
}

#[test]
fn garbage_reply_fails_temporarily_and_defers() {
    let mut h = in_flight();
    h.play("S: 250 ok\nS: hello there");
    assert_eq!(h.outcomes()[0][0].0, "deferred");
    let failure = h.failure().unwrap();
    assert!(failure.temporary);
    assert!(matches!(
        &failure.cause,
        FailureCause::BadReply { phase: Phase::Rcpt, error: ReplyError::Malformed { .. } }
    ));
}

#[test]
fn overlong_reply_line_fails_and_everything_is_consumed() {
    let mut h = Harness::new(config());
    let long = format!("220 {}", "x".repeat(MAX_LINE_LEN));
    let consumed = h.client.handle_input(long.as_bytes());
    assert_eq!(consumed, long.len());
    h.pump();
    assert!(matches!(h.failure().unwrap().cause, FailureCause::BadReply { error: ReplyError::LineTooLong { .. }, .. }));
    // Dead: more input is swallowed, nothing is written.
    assert_eq!(h.client.handle_input(b"220 mx\r\n"), 8);
    h.pump();
    assert!(h.writes.is_empty());
}

#[test]
fn unsolicited_reply_when_idle_is_a_failure() {
    let mut h = Harness::new(config()).stay_idle();
    h.play(&format!("{GREET_PLAIN}\nS: 250 surprise"));
    assert!(matches!(h.failure().unwrap().cause, FailureCause::UnexpectedReply { phase: Phase::Ready, .. }));
}

#[test]
fn positive_reply_to_data_is_a_protocol_error_not_a_delivery() {
    let mut h = in_flight();
    h.play(
        "S: 250 ok
         S: 250 ok
         S: 250 ok
         S: 250 ok
         S: 250 ok instead of 354",
    );
    assert_eq!(h.outcomes(), [[("deferred", 451), ("deferred", 451), ("deferred", 451)]]);
    let RecipientOutcome::Deferred { reply } = &h.recipient_outcomes()[0] else {
        panic!("not deferred");
    };
    assert_eq!(reply.enhanced, Some((4, 5, 0)));
}

#[test]
fn refused_rset_ends_the_connection_with_quit() {
    let mut h = Harness::new(config()).send([msg(&["a@y.test"])]);
    h.play(&format!(
        "{GREET_PLAIN}
         C: MAIL FROM:<a@example.test>
         S: 451 later
         C: RSET
         S: 500 what
         C: QUIT"
    ));
    assert_eq!(h.names(), ["Ready", "Outcome", "Failed"]);
    assert!(matches!(h.failure().unwrap().cause, FailureCause::ResetRefused(_)));
}

#[test]
fn quit_during_a_transaction_waits_for_its_outcome() {
    let mut h = in_flight();
    h.client.quit();
    h.play(
        "S: 250 ok
         S: 250 ok
         S: 250 ok
         S: 250 ok
         S: 354 go
         C: <BODY>
         S: 250 queued
         C: QUIT
         S: 221 bye",
    );
    assert_eq!(h.names(), ["Ready", "Outcome", "Closed"]);
    assert!(h.client.send_message(msg(&["late@y.test"])).is_err());
}
