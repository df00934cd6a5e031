//! BDAT (RFC 3030 CHUNKING): with PIPELINING too, MAIL, the RCPTs, `BDAT n
//! LAST` and the body go in one round trip, and the BDAT reply decides
//! like the reply after DATA's dot.

use super::harness::{config, msg, Harness, GREET_CHUNKING};
use crate::proto::smtp_client::Phase;

#[test]
fn mail_rcpts_bdat_and_the_chunk_go_together_for_each_message() {
    let mut h = Harness::new(config()).send([msg(&["x@y.test", "z@y.test"]), msg(&["w@y.test"])]);
    h.play(&format!(
        "{GREET_CHUNKING}
         C: MAIL FROM:<a@example.test>
         C: RCPT TO:<x@y.test>
         C: RCPT TO:<z@y.test>
         C: BDAT 100 LAST
         C: <CHUNK>
         S: 250 2.1.0 Ok
         S: 250 2.1.5 Ok
         S: 250 2.1.5 Ok
         S: 250 2.0.0 100 octets received, queued as A1
         C: MAIL FROM:<a@example.test>
         C: RCPT TO:<w@y.test>
         C: BDAT 100 LAST
         C: <CHUNK>
         S: 250 2.1.0 Ok
         S: 250 2.1.5 Ok
         S: 250 2.0.0 queued as A2
         C: QUIT
         S: 221 2.0.0 Bye"
    ));
    assert_eq!(
        h.writes[1],
        "MAIL FROM:<a@example.test>\r\nRCPT TO:<x@y.test>\r\nRCPT TO:<z@y.test>\r\nBDAT 100 LAST\r\n"
    );
    assert_eq!(h.writes[2], "<CHUNK>");
    assert!(!h.writes.iter().any(|w| w.contains("DATA")), "{:?}", h.writes);
    assert_eq!(h.outcomes(), [vec![("delivered", 250), ("delivered", 250)], vec![("delivered", 250)]]);
    assert_eq!(h.recipient_outcomes()[0].reply().to_string(), "250 2.0.0 100 octets received, queued as A1");
    assert_eq!(h.names(), ["Ready", "Outcome", "Ready", "Outcome", "Ready", "Closed"]);
}

#[test]
fn rcpt_replies_decide_their_recipients_and_the_bdat_reply_the_rest() {
    let mut h = Harness::new(config()).send([msg(&["ok@y.test", "full@y.test", "no@y.test"])]);
    h.play(&format!(
        "{GREET_CHUNKING}
         C: MAIL FROM:<a@example.test>
         C: RCPT TO:<ok@y.test>
         C: RCPT TO:<full@y.test>
         C: RCPT TO:<no@y.test>
         C: BDAT 100 LAST
         C: <CHUNK>
         S: 250 ok
         S: 250 ok
         S: 452 4.2.2 mailbox full
         S: 550 5.1.1 no such user
         S: 250 2.0.0 queued
         C: QUIT
         S: 221 Bye"
    ));
    assert_eq!(h.outcomes(), [[("delivered", 250), ("deferred", 452), ("bounced", 550)]]);
}

#[test]
fn a_refused_bdat_defers_or_bounces_the_accepted_and_resets() {
    for (code, kind) in [("451 4.3.0 try later", ("deferred", 451)), ("554 5.6.0 content refused", ("bounced", 554))] {
        let mut h = Harness::new(config()).send([msg(&["x@y.test", "no@y.test"]), msg(&["w@y.test"])]);
        h.play(&format!(
            "{GREET_CHUNKING}
             C: MAIL FROM:<a@example.test>
             C: RCPT TO:<x@y.test>
             C: RCPT TO:<no@y.test>
             C: BDAT 100 LAST
             C: <CHUNK>
             S: 250 ok
             S: 250 ok
             S: 550 5.1.1 no such user
             S: {code}
             C: RSET
             S: 250 ok
             C: MAIL FROM:<a@example.test>
             C: RCPT TO:<w@y.test>
             C: BDAT 100 LAST
             C: <CHUNK>
             S: 250 ok
             S: 250 ok
             S: 250 queued
             C: QUIT
             S: 221 Bye"
        ));
        assert_eq!(h.outcomes(), [vec![kind, ("bounced", 550)], vec![("delivered", 250)]], "{code}");
    }
}

#[test]
fn when_every_rcpt_is_refused_the_chunk_still_goes_and_nobody_is_delivered() {
    let mut h = Harness::new(config()).send([msg(&["no@y.test"])]);
    h.play(&format!(
        "{GREET_CHUNKING}
         C: MAIL FROM:<a@example.test>
         C: RCPT TO:<no@y.test>
         C: BDAT 100 LAST
         C: <CHUNK>
         S: 250 ok
         S: 550 5.1.1 no such user
         S: 554 5.5.1 no valid recipients
         C: RSET
         S: 250 ok
         C: QUIT
         S: 221 Bye"
    ));
    assert_eq!(h.outcomes(), [[("bounced", 550)]]);
}

#[test]
fn waiting_for_the_bdat_reply_is_the_data_termination_phase_and_a_timeout_defers() {
    let mut h = Harness::new(config()).send([msg(&["x@y.test"])]).stay_idle();
    h.play(&format!(
        "{GREET_CHUNKING}
         C: MAIL FROM:<a@example.test>
         C: RCPT TO:<x@y.test>
         C: BDAT 100 LAST
         C: <CHUNK>
         S: 250 ok
         S: 250 ok"
    ));
    assert_eq!(h.client.phase(), Phase::DataTermination);
    h.play("T: timeout");
    assert_eq!(h.outcomes(), [[("deferred", 451)]]);
}

#[test]
fn chunking_without_pipelining_keeps_to_data_in_lock_step() {
    let mut h = Harness::new(config()).send([msg(&["x@y.test"])]);
    h.play(
        "S: 220 mx.test ESMTP
         C: EHLO client.test
         S: 250-mx.test
         S: 250 CHUNKING
         C: MAIL FROM:<a@example.test>
         S: 250 ok
         C: RCPT TO:<x@y.test>
         S: 250 ok
         C: DATA
         S: 354 go
         C: <BODY>
         S: 250 queued
         C: QUIT
         S: 221 Bye",
    );
    assert_eq!(h.outcomes(), [[("delivered", 250)]]);
}

#[test]
fn binarymime_message_goes_declared_to_a_next_hop_offering_it() {
    let binary = crate::proto::smtp_client::OutgoingMessage { binarymime: true, ..msg(&["x@y.test"]) };
    let mut h = Harness::new(config()).send([binary]);
    h.play(
        "S: 220 mx.test ESMTP
         C: EHLO client.test
         S: 250-mx.test
         S: 250-PIPELINING
         S: 250-CHUNKING
         S: 250 BINARYMIME
         C: MAIL FROM:<a@example.test> BODY=BINARYMIME
         C: RCPT TO:<x@y.test>
         C: BDAT 100 LAST
         C: <CHUNK>
         S: 250 2.1.0 Ok
         S: 250 2.1.5 Ok
         S: 250 2.0.0 queued
         C: QUIT
         S: 221 2.0.0 Bye",
    );
    assert_eq!(h.outcomes(), [[("delivered", 250)]]);
}

#[test]
fn binarymime_message_to_a_next_hop_without_binarymime_bounces_with_5_6_3_unsent() {
    let binary = crate::proto::smtp_client::OutgoingMessage { binarymime: true, ..msg(&["x@y.test", "z@y.test"]) };
    let mut h = Harness::new(config()).send([binary]);
    h.play(&format!(
        "{GREET_CHUNKING}
         C: QUIT
         S: 221 2.0.0 Bye"
    ));
    assert_eq!(h.outcomes(), [[("bounced", 554), ("bounced", 554)]]);
    assert_eq!(h.recipient_outcomes()[0].reply().enhanced, Some((5, 6, 3)));
}

#[test]
fn smtputf8_message_goes_with_the_parameter_when_offered_and_bounces_5_6_7_when_not() {
    use crate::proto::smtp_client::OutgoingMessage;
    let utf8 = OutgoingMessage { smtputf8: true, sender: "j\u{e4}ne@example.test".into(), ..msg(&["\u{7528}@y.test"]) };
    let mut h = Harness::new(config()).send([utf8.clone()]);
    h.play(
        "S: 220 mx.test ESMTP
         C: EHLO client.test
         S: 250-mx.test
         S: 250-PIPELINING
         S: 250-CHUNKING
         S: 250 SMTPUTF8
         C: MAIL FROM:<j\u{e4}ne@example.test> SMTPUTF8
         C: RCPT TO:<\u{7528}@y.test>
         C: BDAT 100 LAST
         C: <CHUNK>
         S: 250 2.1.0 Ok
         S: 250 2.1.5 Ok
         S: 250 2.0.0 queued
         C: QUIT
         S: 221 2.0.0 Bye",
    );
    assert_eq!(h.outcomes(), [[("delivered", 250)]]);

    let mut h = Harness::new(config()).send([utf8]);
    h.play(&format!(
        "{GREET_CHUNKING}
         C: QUIT
         S: 221 2.0.0 Bye"
    ));
    assert_eq!(h.outcomes(), [[("bounced", 553)]]);
    assert_eq!(h.recipient_outcomes()[0].reply().enhanced, Some((5, 6, 7)));
}

#[test]
fn requiretls_message_goes_declared_when_offered_and_bounces_5_7_10_when_not() {
    use crate::proto::smtp_client::OutgoingMessage;
    let strict = OutgoingMessage { requiretls: true, ..msg(&["x@y.test"]) };
    let mut h = Harness::new(config()).send([strict.clone()]);
    h.play(
        "S: 220 mx.test ESMTP
         C: EHLO client.test
         S: 250-mx.test
         S: 250-PIPELINING
         S: 250-CHUNKING
         S: 250 REQUIRETLS
         C: MAIL FROM:<a@example.test> REQUIRETLS
         C: RCPT TO:<x@y.test>
         C: BDAT 100 LAST
         C: <CHUNK>
         S: 250 2.1.0 Ok
         S: 250 2.1.5 Ok
         S: 250 2.0.0 queued
         C: QUIT
         S: 221 2.0.0 Bye",
    );
    assert_eq!(h.outcomes(), [[("delivered", 250)]]);

    let mut h = Harness::new(config()).send([strict]);
    h.play(&format!(
        "{GREET_CHUNKING}
         C: QUIT
         S: 221 2.0.0 Bye"
    ));
    assert_eq!(h.outcomes(), [[("bounced", 550)]]);
    assert_eq!(h.recipient_outcomes()[0].reply().enhanced, Some((5, 7, 10)));
}
