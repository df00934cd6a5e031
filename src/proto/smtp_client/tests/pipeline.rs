//! Pipelining across transactions (RFC 2920 §3.1): the next message's
//! MAIL, RCPT and DATA (or BDAT and its chunk) go behind the previous
//! message's body, and each reply still settles its own message and
//! recipient, through failures of either message, a 421 and a timeout.

use super::harness::{config, msg, Harness, GREET_CHUNKING, GREET_PIPELINING, GREET_PLAIN};
use crate::proto::smtp_client::{OutgoingMessage, Phase, RecipientOutcome};

/// Message `n`'s MAIL, RCPT and DATA (to `r{n}@y.test`), as the client writes them.
fn commands(n: usize) -> String {
    format!(
        "C: MAIL FROM:<a@example.test>
         C: RCPT TO:<r{n}@y.test>
         C: DATA"
    )
}

fn msgs(n: usize) -> Vec<OutgoingMessage> {
    (1..=n).map(|i| msg(&[&format!("r{i}@y.test")])).collect()
}

/// Greeted; message 1 accepted up to its body, and message 2's commands
/// written behind that body.
fn first_body_then_second() -> String {
    format!(
        "{GREET_PIPELINING}
         {c1}
         S: 250 ok
         S: 250 ok
         S: 354 go
         C: <BODY>
         {c2}",
        c1 = commands(1),
        c2 = commands(2),
    )
}

/// Greeted by a server with CHUNKING; two messages' MAIL, RCPT and
/// `BDAT 100 LAST` with its chunk written one behind the other, before any
/// reply.
fn two_bdat_messages() -> String {
    let bdat = |n: usize| {
        format!(
            "C: MAIL FROM:<a@example.test>
             C: RCPT TO:<r{n}@y.test>
             C: BDAT 100 LAST
             C: <CHUNK>"
        )
    };
    format!("{GREET_CHUNKING}\n{}\n{}", bdat(1), bdat(2))
}

/// Three messages, each one's commands behind the previous body: one round
/// trip per message after the first.
fn three_in_a_row() -> String {
    format!(
        "{GREET_PIPELINING}
         {c1}
         S: 250 2.1.0 ok
         S: 250 2.1.5 ok
         S: 354 go
         C: <BODY>
         {c2}
         S: 250 2.0.0 queued as A1
         S: 250 2.1.0 ok
         S: 250 2.1.5 ok
         S: 354 go
         C: <BODY>
         {c3}
         S: 250 2.0.0 queued as A2
         S: 250 2.1.0 ok
         S: 250 2.1.5 ok
         S: 354 go
         C: <BODY>
         S: 250 2.0.0 queued as A3
         C: QUIT
         S: 221 2.0.0 Bye",
        c1 = commands(1),
        c2 = commands(2),
        c3 = commands(3),
    )
}

#[test]
fn next_message_goes_behind_the_previous_body_and_replies_settle_in_order() {
    let mut h = Harness::new(config()).send(msgs(3)).pipelined();
    h.play(&three_in_a_row());
    assert_eq!(h.outcomes(), [[("delivered", 250)], [("delivered", 250)], [("delivered", 250)]]);
    let replies: Vec<String> = h.recipient_outcomes().iter().map(|o| o.reply().to_string()).collect();
    assert_eq!(replies, ["250 2.0.0 queued as A1", "250 2.0.0 queued as A2", "250 2.0.0 queued as A3"]);
    // The body, then at once the next commands: the driver writes both together.
    assert_eq!(h.writes[2..4], ["<BODY>", "MAIL FROM:<a@example.test>\r\nRCPT TO:<r2@y.test>\r\nDATA\r\n"]);
    assert_eq!(
        h.names(),
        ["Ready", "ReadyBehind", "Outcome", "ReadyBehind", "Outcome", "ReadyBehind", "Outcome", "Ready", "Closed"]
    );
}

#[test]
fn pipelined_replies_are_read_the_same_at_every_chunk_size() {
    for chunk in [1, 2, 3, 4, 7, 16, 64, 512] {
        let mut h = Harness::new(config()).send(msgs(3)).pipelined().chunk(chunk);
        h.play(&three_in_a_row());
        assert_eq!(h.outcomes().len(), 3, "chunk {chunk}");
        assert!(h.outcomes().iter().all(|o| o == &[("delivered", 250)]), "chunk {chunk}");
    }
}

#[test]
fn a_driver_that_ignores_ready_behind_keeps_one_message_at_a_time() {
    let mut h = Harness::new(config()).send(msgs(2));
    h.play(&format!(
        "{GREET_PIPELINING}
         {c1}
         S: 250 ok
         S: 250 ok
         S: 354 go
         C: <BODY>
         S: 250 queued
         {c2}
         S: 250 ok
         S: 250 ok
         S: 354 go
         C: <BODY>
         S: 250 queued
         C: QUIT
         S: 221 Bye",
        c1 = commands(1),
        c2 = commands(2)
    ));
    assert_eq!(h.outcomes(), [[("delivered", 250)], [("delivered", 250)]]);
}

#[test]
fn a_peer_without_pipelining_gets_no_pipelining() {
    let mut h = Harness::new(config()).send(msgs(2)).pipelined();
    h.play(&format!(
        "{GREET_PLAIN}
         C: MAIL FROM:<a@example.test>
         S: 250 ok
         C: RCPT TO:<r1@y.test>
         S: 250 ok
         C: DATA
         S: 354 go
         C: <BODY>
         S: 250 queued
         C: MAIL FROM:<a@example.test>
         S: 250 ok
         C: RCPT TO:<r2@y.test>
         S: 250 ok
         C: DATA
         S: 354 go
         C: <BODY>
         S: 250 queued
         C: QUIT
         S: 221 Bye"
    ));
    assert_eq!(h.outcomes(), [[("delivered", 250)], [("delivered", 250)]]);
    assert!(!h.names().contains(&"ReadyBehind"), "{:?}", h.names());
}

#[test]
fn a_refused_mail_or_rcpt_of_the_next_message_settles_only_that_message() {
    for (mail, rcpt, data, want) in [
        ("553 5.1.8 sender refused", "503 5.5.1 need MAIL", "503 5.5.1 need RCPT", ("bounced", 553)),
        ("250 ok", "550 5.1.1 no such user", "554 5.5.1 no valid recipients", ("bounced", 550)),
        ("250 ok", "451 4.3.0 try later", "554 5.5.1 no valid recipients", ("deferred", 451)),
    ] {
        let mut h = Harness::new(config()).send(msgs(3)).pipelined();
        h.play(&format!(
            "{first}
             S: 250 2.0.0 queued as A1
             S: {mail}
             S: {rcpt}
             S: {data}
             C: RSET
             S: 250 ok
             {c3}
             S: 250 ok
             S: 250 ok
             S: 354 go
             C: <BODY>
             S: 250 2.0.0 queued as A3
             C: QUIT
             S: 221 Bye",
            first = first_body_then_second(),
            c3 = commands(3),
        ));
        assert_eq!(h.outcomes(), [[("delivered", 250)], [want], [("delivered", 250)]], "{mail} / {rcpt}");
    }
}

#[test]
fn a_failed_end_of_data_settles_its_own_message_and_the_next_is_delivered_then_reset() {
    for (end, kind) in [("451 4.3.0 try again later", ("deferred", 451)), ("554 5.7.1 spam", ("bounced", 554))] {
        let mut h = Harness::new(config()).send(msgs(2)).pipelined();
        h.play(&format!(
            "{first}
             S: {end}
             S: 250 ok
             S: 250 ok
             S: 354 go
             C: <BODY>
             S: 250 2.0.0 queued as A2
             C: RSET
             S: 250 ok
             C: QUIT
             S: 221 Bye",
            first = first_body_then_second(),
        ));
        assert_eq!(h.outcomes(), [[kind], [("delivered", 250)]], "{end}");
        // No RSET between the two: it would have reset the second one.
        let rsets = h.writes.iter().filter(|w| w.contains("RSET")).count();
        assert_eq!(rsets, 1, "{:?}", h.writes);
    }
}

#[test]
fn after_a_failed_end_of_data_the_next_messages_refusals_defer_instead_of_bouncing() {
    let mut h = Harness::new(config()).send(msgs(3)).pipelined();
    h.play(&format!(
        "{first}
         S: 554 5.6.0 message refused
         S: 503 5.5.1 nested MAIL command
         S: 503 5.5.1 need MAIL
         S: 503 5.5.1 need RCPT
         C: RSET
         S: 250 ok
         {c3}
         S: 250 ok
         S: 550 5.1.1 no such user
         S: 554 5.5.1 no valid recipients
         C: RSET
         S: 250 ok
         C: QUIT
         S: 221 Bye",
        first = first_body_then_second(),
        c3 = commands(3),
    ));
    // The first is refused for good; the second's refusals may come from
    // what the server kept of the first, so it waits for another attempt;
    // the third went on its own after RSET, and its refusal is final.
    assert_eq!(h.outcomes(), [[("bounced", 554)], [("deferred", 451)], [("bounced", 550)]]);
    let second = h.recipient_outcomes()[1].reply().to_string();
    assert!(second.contains("503 5.5.1 nested MAIL command") && second.contains("will retry"), "{second}");
}

#[test]
fn service_closing_mid_pipeline_defers_what_is_unsettled() {
    // The 421 answers the first end of data: both wait, and the second,
    // which had no reply of its own, is abandoned (the 421 counts once for
    // the site); or it comes after the first was delivered: only the
    // second waits, and the 421 was its reply.
    for (before, want, last) in [
        ("", vec![vec![("deferred", 421)], vec![("deferred", 421)]], ["Outcome", "Abandoned", "Failed"]),
        (
            "S: 250 2.0.0 queued as A1",
            vec![vec![("delivered", 250)], vec![("deferred", 421)]],
            ["Outcome", "Outcome", "Failed"],
        ),
    ] {
        let mut h = Harness::new(config()).send(msgs(2)).pipelined();
        h.play(&format!(
            "{first}
             {before}
             S: 421 4.3.2 shutting down",
            first = first_body_then_second(),
        ));
        assert_eq!(h.outcomes(), want, "{before:?}");
        let names = h.names();
        assert_eq!(names[names.len() - 3..], last, "{before:?}: {names:?}");
        assert_eq!(h.client.phase(), Phase::Closed);
    }
}

#[test]
fn a_timeout_mid_pipeline_defers_both_messages_in_order() {
    let mut h = Harness::new(config()).send(msgs(2)).pipelined();
    h.play(&first_body_then_second());
    assert_eq!(h.client.phase(), Phase::DataTermination);
    h.play("T: timeout");
    assert_eq!(h.outcomes(), [[("deferred", 451)], [("deferred", 451)]]);
    let names = h.names();
    assert_eq!(names[names.len() - 3..], ["Outcome", "Abandoned", "Failed"], "{names:?}");
    assert!(
        matches!(&h.recipient_outcomes()[0], RecipientOutcome::Deferred { reply } if reply.text.contains("timed out"))
    );
}

#[test]
fn a_message_decided_without_the_server_behind_another_keeps_its_turn() {
    let big = OutgoingMessage { size: 5000, ..msg(&["r2@y.test"]) };
    let mut h = Harness::new(config()).send([msg(&["r1@y.test"]), big]).pipelined();
    h.play(
        "S: 220 mx.test ESMTP
         C: EHLO client.test
         S: 250-mx.test
         S: 250-PIPELINING
         S: 250 SIZE 1000
         C: MAIL FROM:<a@example.test> SIZE=100
         C: RCPT TO:<r1@y.test>
         C: DATA
         S: 250 ok
         S: 250 ok
         S: 354 go
         C: <BODY>
         S: 250 queued
         C: QUIT
         S: 221 Bye",
    );
    assert_eq!(h.outcomes(), [[("delivered", 250)], [("bounced", 552)]]);
    assert_eq!(h.names(), ["Ready", "ReadyBehind", "Outcome", "Outcome", "Ready", "Closed"]);
}

#[test]
fn bdat_messages_overlap_and_each_reply_settles_its_own() {
    let mut h = Harness::new(config()).send(msgs(2)).pipelined();
    h.play(&format!(
        "{first}
         S: 250 2.1.0 ok
         S: 250 2.1.5 ok
         S: 250 2.0.0 queued as A1
         S: 250 2.1.0 ok
         S: 250 2.1.5 ok
         S: 250 2.0.0 queued as A2
         C: QUIT
         S: 221 Bye",
        first = two_bdat_messages(),
    ));
    let replies: Vec<String> = h.recipient_outcomes().iter().map(|o| o.reply().to_string()).collect();
    assert_eq!(replies, ["250 2.0.0 queued as A1", "250 2.0.0 queued as A2"]);
}

#[test]
fn a_refused_bdat_message_does_not_bounce_the_one_behind_it() {
    for (second, want) in [
        (["250 2.1.0 ok", "250 2.1.5 ok", "250 2.0.0 queued as A2"], ("delivered", 250)),
        (["503 5.5.1 bad sequence", "503 5.5.1 need MAIL", "503 5.5.1 need RCPT"], ("deferred", 451)),
    ] {
        let mut h = Harness::new(config()).send(msgs(2)).pipelined();
        h.play(&format!(
            "{first}
             S: 250 2.1.0 ok
             S: 550 5.1.1 no such user
             S: 554 5.5.1 no valid recipients
             S: {}
             S: {}
             S: {}
             C: RSET
             S: 250 ok
             C: QUIT
             S: 221 Bye",
            second[0],
            second[1],
            second[2],
            first = two_bdat_messages(),
        ));
        assert_eq!(h.outcomes(), [[("bounced", 550)], [want]], "{second:?}");
    }
}

#[test]
fn quit_while_pipelined_waits_for_both_outcomes() {
    let mut h = Harness::new(config()).send(msgs(2)).pipelined();
    h.play(&first_body_then_second());
    h.client.quit();
    h.play(
        "S: 250 queued as A1
         S: 250 ok
         S: 250 ok
         S: 354 go
         C: <BODY>
         S: 250 queued as A2
         C: QUIT
         S: 221 Bye",
    );
    assert_eq!(h.outcomes(), [[("delivered", 250)], [("delivered", 250)]]);
    assert_eq!(h.names().last(), Some(&"Closed"));
}

/// What the driver looks at to write a body and the next message's
/// commands together: `takes_behind_soon` while the 354 is awaited, and
/// `offers_behind` when the outcome of the message before comes first (its
/// end-of-data reply arrived with this message's 354).
#[test]
fn the_driver_learns_a_message_may_go_behind_before_taking_the_outcome_ahead_of_it() {
    use crate::proto::smtp_client::{Client, Event, Sent};
    fn feed(c: &mut Client, s: &str) {
        assert_eq!(c.handle_input(s.as_bytes()), s.len());
        while c.poll_transmit().is_some() {}
    }
    let mut c = Client::new(config()).expect("valid config");
    feed(&mut c, "220 mx.test ESMTP\r\n");
    feed(&mut c, "250-mx.test\r\n250 PIPELINING\r\n");
    assert_eq!(c.poll_event(), Some(Event::Ready));
    assert!(!c.takes_behind_soon(), "idle: nothing in flight");
    assert_eq!(c.send_message(msg(&["r1@y.test"])).expect("taken"), Sent::OnTheWire);
    feed(&mut c, "");
    assert!(c.takes_behind_soon(), "awaiting the 354: a message given now goes behind the body");
    feed(&mut c, "250 ok\r\n250 ok\r\n354 go\r\n");
    c.body_sent();
    assert!(!c.takes_behind_soon(), "the body is written: it takes one now, not soon");
    assert!(c.offers_behind());
    assert_eq!(c.poll_event(), Some(Event::ReadyBehind));
    assert_eq!(c.send_message(msg(&["r2@y.test"])).expect("taken behind"), Sent::OnTheWire);
    feed(&mut c, "");
    assert!(!c.takes_behind_soon(), "one waits behind already");
    feed(&mut c, "250 2.0.0 queued\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    c.body_sent();
    assert!(c.offers_behind(), "queued behind message 1's outcome");
    assert!(matches!(c.poll_event(), Some(Event::Outcome(_))));
    assert_eq!(c.poll_event(), Some(Event::ReadyBehind));
    assert!(!c.offers_behind());
}
