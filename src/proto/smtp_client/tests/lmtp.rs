//! LMTP (RFC 2033): LHLO, no HELO fallback, no STARTTLS, DATA not BDAT,
//! and one reply per accepted recipient after the body (§4.2), each
//! deciding its own recipient.

use super::harness::{config, msg, Harness};
use crate::proto::smtp_client::{Phase, TlsPolicy};

/// The greeting and LHLO as Dovecot's lmtp answers them (it offers
/// STARTTLS and CHUNKING too; neither is used over LMTP).
const GREET_DOVECOT: &str = "
    S: 220 store.test Dovecot ready.
    C: LHLO client.test
    S: 250-store.test
    S: 250-8BITMIME
    S: 250-CHUNKING
    S: 250-ENHANCEDSTATUSCODES
    S: 250-PIPELINING
    S: 250-STARTTLS
    S: 250 SMTPUTF8
";

/// Four recipients: accepted and delivered, refused at RCPT, accepted
/// then deferred after the body, accepted then refused after the body.
const MIXED: &str = "
    C: MAIL FROM:<a@example.test>
    C: RCPT TO:<ok@store.test>
    C: RCPT TO:<nobody@store.test>
    C: RCPT TO:<full@store.test>
    C: RCPT TO:<gone@store.test>
    C: DATA
    S: 250 2.1.0 OK
    S: 250 2.1.5 OK
    S: 550 5.1.1 <nobody@store.test> User doesn't exist
    S: 250 2.1.5 OK
    S: 250 2.1.5 OK
    S: 354 OK
    C: <BODY>
    S: 250 2.0.0 <ok@store.test> Saved
    S: 452 4.2.2 <full@store.test> Quota exceeded
    S: 552 5.2.2 <gone@store.test> Mailbox is over quota for good
    C: RSET
    S: 250 2.0.0 OK
    C: QUIT
    S: 221 2.0.0 Bye
";

fn mixed_message() -> crate::proto::smtp_client::OutgoingMessage {
    msg(&["ok@store.test", "nobody@store.test", "full@store.test", "gone@store.test"])
}

#[test]
fn each_accepted_recipient_gets_its_own_reply_after_the_body() {
    let mut h = Harness::lmtp(config()).send([mixed_message()]);
    h.play(&format!("{GREET_DOVECOT}{MIXED}"));
    assert_eq!(h.outcomes(), [[("delivered", 250), ("bounced", 550), ("deferred", 452), ("bounced", 552)]]);
    let texts: Vec<String> = h.recipient_outcomes().iter().map(|o| o.reply().to_string()).collect();
    assert_eq!(texts[0], "250 2.0.0 <ok@store.test> Saved");
    assert_eq!(texts[2], "452 4.2.2 <full@store.test> Quota exceeded");
    assert_eq!(h.handshakes, 0, "no STARTTLS over LMTP");
    assert!(h.writes.iter().all(|w| !w.contains("BDAT")), "{:?}", h.writes);
    assert_eq!(h.names(), ["Ready", "Outcome", "Ready", "Closed"]);
}

#[test]
fn per_recipient_replies_do_not_care_how_they_are_chunked() {
    for chunk in [1, 2, 3, 4, 8, 16, 32, 64, 128, 256, 512] {
        let mut h = Harness::lmtp(config()).chunk(chunk).send([mixed_message()]);
        h.play(&format!("{GREET_DOVECOT}{MIXED}"));
        let want = [[("delivered", 250), ("bounced", 550), ("deferred", 452), ("bounced", 552)]];
        assert_eq!(h.outcomes(), want, "chunk {chunk}");
    }
}

#[test]
fn a_tls_policy_does_not_make_lmtp_send_starttls() {
    let required = crate::proto::smtp_client::ClientConfig { tls: TlsPolicy::Required, ..config() };
    let mut h = Harness::lmtp(required).send([msg(&["ok@store.test"])]);
    h.play(&format!(
        "{GREET_DOVECOT}
         C: MAIL FROM:<a@example.test>
         C: RCPT TO:<ok@store.test>
         C: DATA
         S: 250 2.1.0 OK
         S: 250 2.1.5 OK
         S: 354 OK
         C: <BODY>
         S: 250 2.0.0 <ok@store.test> Saved
         C: QUIT
         S: 221 2.0.0 Bye"
    ));
    assert_eq!(h.outcomes(), [[("delivered", 250)]]);
}

#[test]
fn all_delivered_needs_no_rset_and_the_connection_takes_the_next_message() {
    let mut h = Harness::lmtp(config()).send([msg(&["a@store.test", "b@store.test"]), msg(&["c@store.test"])]);
    h.play(&format!(
        "{GREET_DOVECOT}
         C: MAIL FROM:<a@example.test>
         C: RCPT TO:<a@store.test>
         C: RCPT TO:<b@store.test>
         C: DATA
         S: 250 2.1.0 OK
         S: 250 2.1.5 OK
         S: 250 2.1.5 OK
         S: 354 OK
         C: <BODY>
         S: 250 2.0.0 <a@store.test> Saved
         S: 250 2.0.0 <b@store.test> Saved
         C: MAIL FROM:<a@example.test>
         C: RCPT TO:<c@store.test>
         C: DATA
         S: 250 2.1.0 OK
         S: 250 2.1.5 OK
         S: 354 OK
         C: <BODY>
         S: 250 2.0.0 <c@store.test> Saved
         C: QUIT
         S: 221 2.0.0 Bye"
    ));
    assert_eq!(h.outcomes(), [vec![("delivered", 250), ("delivered", 250)], vec![("delivered", 250)]]);
}

#[test]
fn lock_step_lmtp_waits_for_each_reply_and_still_reads_one_per_recipient() {
    let mut h = Harness::lmtp(config()).send([msg(&["a@store.test", "b@store.test"])]);
    h.play(
        "S: 220 store.test LMTP
         C: LHLO client.test
         S: 250 store.test
         C: MAIL FROM:<a@example.test>
         S: 250 OK
         C: RCPT TO:<a@store.test>
         S: 250 OK
         C: RCPT TO:<b@store.test>
         S: 250 OK
         C: DATA
         S: 354 go
         C: <BODY>
         S: 550 5.1.1 <a@store.test> gone meanwhile
         S: 250 2.0.0 <b@store.test> Saved
         C: RSET
         S: 250 OK
         C: QUIT
         S: 221 Bye",
    );
    assert_eq!(h.outcomes(), [[("bounced", 550), ("delivered", 250)]]);
}

#[test]
fn a_connection_lost_between_per_recipient_replies_defers_only_the_unanswered() {
    let mut h = Harness::lmtp(config()).send([msg(&["a@store.test", "b@store.test", "c@store.test"])]);
    h.play(&format!(
        "{GREET_DOVECOT}
         C: MAIL FROM:<a@example.test>
         C: RCPT TO:<a@store.test>
         C: RCPT TO:<b@store.test>
         C: RCPT TO:<c@store.test>
         C: DATA
         S: 250 2.1.0 OK
         S: 250 2.1.5 OK
         S: 250 2.1.5 OK
         S: 250 2.1.5 OK
         S: 354 OK
         C: <BODY>
         S: 250 2.0.0 <a@store.test> Saved
         S: 550 5.2.0 <b@store.test> broken mailbox
         X: lost"
    ));
    assert_eq!(h.outcomes(), [[("delivered", 250), ("bounced", 550), ("deferred", 451)]]);
    assert!(h.failure().is_some_and(|f| f.temporary));
}

#[test]
fn the_phase_after_the_body_is_data_termination_until_the_last_reply() {
    let mut h = Harness::lmtp(config()).stay_idle().send([msg(&["a@store.test", "b@store.test"])]);
    h.play(&format!(
        "{GREET_DOVECOT}
         C: MAIL FROM:<a@example.test>
         C: RCPT TO:<a@store.test>
         C: RCPT TO:<b@store.test>
         C: DATA
         S: 250 2.1.0 OK
         S: 250 2.1.5 OK
         S: 250 2.1.5 OK
         S: 354 OK
         C: <BODY>
         S: 250 2.0.0 <a@store.test> Saved"
    ));
    assert_eq!(h.client.phase(), Phase::DataTermination);
    assert!(h.outcomes().is_empty(), "no outcome before every recipient is answered");
    h.play("S: 250 2.0.0 <b@store.test> Saved");
    assert_eq!(h.client.phase(), Phase::Ready);
    assert_eq!(h.outcomes(), [[("delivered", 250), ("delivered", 250)]]);
}

#[test]
fn lhlo_refused_is_a_permanent_failure_without_a_helo_fallback() {
    let mut h = Harness::lmtp(config()).send([msg(&["a@store.test"])]);
    h.play(
        "S: 220 store.test LMTP
         C: LHLO client.test
         S: 500 5.5.1 Unknown command
         C: QUIT",
    );
    let failure = h.failure().expect("failed");
    assert!(!failure.temporary, "{failure}");
    assert!(h.writes.iter().all(|w| !w.starts_with("HELO")), "{:?}", h.writes);
}

#[test]
fn data_accepted_with_nobody_accepted_is_a_protocol_violation_over_lmtp() {
    let mut h = Harness::lmtp(config()).send([msg(&["a@store.test", "b@store.test"])]);
    h.play(&format!(
        "{GREET_DOVECOT}
         C: MAIL FROM:<a@example.test>
         C: RCPT TO:<a@store.test>
         C: RCPT TO:<b@store.test>
         C: DATA
         S: 250 2.1.0 OK
         S: 550 5.1.1 no
         S: 450 4.2.1 later
         S: 354 OK"
    ));
    // Each recipient keeps its own RCPT verdict; nothing else is sent.
    assert_eq!(h.outcomes(), [[("bounced", 550), ("deferred", 450)]]);
    assert!(h.failure().is_some());
    assert!(h.writes.iter().all(|w| w != ".\r\n" && w != "<BODY>"), "{:?}", h.writes);
}
