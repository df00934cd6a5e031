//! Transactions, pipelined and in lock-step: outcomes per recipient,
//! SIZE, BODY=8BITMIME, RSET, and several messages on one connection.

use super::harness::{config, msg, Harness, GREET_PIPELINING, GREET_PLAIN};
use crate::proto::smtp_client::{OutgoingMessage, Phase, RecipientOutcome, Reply};

#[test]
fn pipelining_sends_mail_rcpts_and_data_in_one_write() {
    let mut h = Harness::new(config()).send([msg(&["x@y.test", "z@y.test"])]);
    h.play(&format!(
        "{GREET_PIPELINING}
         C: MAIL FROM:<a@example.test>
         C: RCPT TO:<x@y.test>
         C: RCPT TO:<z@y.test>
         C: DATA
         S: 250 2.1.0 Ok
         S: 250 2.1.5 Ok
         S: 250 2.1.5 Ok
         S: 354 End data with <CR><LF>.<CR><LF>
         C: <BODY>
         S: 250 2.0.0 Ok: queued as ABC
         C: QUIT
         S: 221 2.0.0 Bye"
    ));
    assert_eq!(h.writes[1], "MAIL FROM:<a@example.test>\r\nRCPT TO:<x@y.test>\r\nRCPT TO:<z@y.test>\r\nDATA\r\n");
    assert_eq!(h.outcomes(), [[("delivered", 250), ("delivered", 250)]]);
    let delivered = &h.recipient_outcomes()[0];
    assert_eq!(delivered.reply().to_string(), "250 2.0.0 Ok: queued as ABC");
    assert_eq!(h.names(), ["Ready", "Outcome", "Ready", "Closed"]);
}

#[test]
fn without_pipelining_each_command_waits_for_its_reply() {
    let mut h = Harness::new(config()).send([msg(&["x@y.test", "z@y.test"])]);
    h.play(&format!(
        "{GREET_PLAIN}
         C: MAIL FROM:<a@example.test>
         S: 250 Ok
         C: RCPT TO:<x@y.test>
         S: 250 Ok
         C: RCPT TO:<z@y.test>
         S: 250 Ok
         C: DATA
         S: 354 go
         C: <BODY>
         S: 250 queued
         C: QUIT
         S: 221 Bye"
    ));
    let commands: Vec<&String> = h.writes.iter().filter(|w| *w != "<BODY>").collect();
    assert!(commands.iter().all(|w| w.matches("\r\n").count() == 1), "{commands:?}");
    assert_eq!(h.outcomes(), [[("delivered", 250), ("delivered", 250)]]);
}

#[test]
fn mixed_rcpt_replies_give_delivered_deferred_and_bounced_in_order() {
    for greet in [GREET_PIPELINING, GREET_PLAIN] {
        let mut h = Harness::new(config()).send([msg(&["ok@y.test", "full@y.test", "no@y.test"])]);
        let pipelined = greet == GREET_PIPELINING;
        let script = match pipelined {
            true => {
                "C: MAIL FROM:<a@example.test>
                 C: RCPT TO:<ok@y.test>
                 C: RCPT TO:<full@y.test>
                 C: RCPT TO:<no@y.test>
                 C: DATA
                 S: 250 ok
                 S: 250 ok
                 S: 452 4.2.2 mailbox full
                 S: 550 5.1.1 no such user
                 S: 354 go"
            }
            false => {
                "C: MAIL FROM:<a@example.test>
                 S: 250 ok
                 C: RCPT TO:<ok@y.test>
                 S: 250 ok
                 C: RCPT TO:<full@y.test>
                 S: 452 4.2.2 mailbox full
                 C: RCPT TO:<no@y.test>
                 S: 550 5.1.1 no such user
                 C: DATA
                 S: 354 go"
            }
        };
        h.play(&format!("{greet}\n{script}\nC: <BODY>\nS: 250 queued\nC: QUIT\nS: 221 bye"));
        assert_eq!(h.outcomes(), [[("delivered", 250), ("deferred", 452), ("bounced", 550)]], "pipelined: {pipelined}");
        let bounced = &h.recipient_outcomes()[2];
        assert_eq!(bounced.reply().to_string(), "550 5.1.1 no such user");
    }
}

#[test]
fn all_rcpts_refused_with_pipelining_takes_the_data_refusal_and_resets() {
    let mut h = Harness::new(config()).send([msg(&["a@y.test", "b@y.test"])]);
    h.play(&format!(
        "{GREET_PIPELINING}
         C: MAIL FROM:<a@example.test>
         C: RCPT TO:<a@y.test>
         C: RCPT TO:<b@y.test>
         C: DATA
         S: 250 ok
         S: 550 5.1.1 unknown
         S: 450 4.7.1 greylisted
         S: 554 5.5.1 Error: no valid recipients
         C: RSET
         S: 250 ok
         C: QUIT
         S: 221 bye"
    ));
    assert_eq!(h.outcomes(), [[("bounced", 550), ("deferred", 450)]]);
    assert_eq!(h.names(), ["Ready", "Outcome", "Ready", "Closed"]);
}

#[test]
fn all_rcpts_refused_with_pipelining_and_data_354_sends_a_lone_dot() {
    let mut h = Harness::new(config()).send([msg(&["a@y.test"])]);
    h.play(&format!(
        "{GREET_PIPELINING}
         C: MAIL FROM:<a@example.test>
         C: RCPT TO:<a@y.test>
         C: DATA
         S: 250 ok
         S: 550 5.1.1 unknown
         S: 354 go ahead anyway
         C: .
         S: 554 5.5.1 no valid recipients
         C: RSET
         S: 250 ok
         C: QUIT
         S: 221 bye"
    ));
    assert_eq!(h.outcomes(), [[("bounced", 550)]]);
}

#[test]
fn all_rcpts_refused_without_pipelining_skips_data() {
    let mut h = Harness::new(config()).send([msg(&["a@y.test"])]);
    h.play(&format!(
        "{GREET_PLAIN}
         C: MAIL FROM:<a@example.test>
         S: 250 ok
         C: RCPT TO:<a@y.test>
         S: 451 4.3.0 try later
         C: RSET
         S: 250 ok
         C: QUIT
         S: 221 bye"
    ));
    assert_eq!(h.outcomes(), [[("deferred", 451)]]);
}

#[test]
fn mail_refused_decides_every_recipient_by_its_class() {
    for (code, kind) in [(451, "deferred"), (553, "bounced")] {
        let mut lock_step = Harness::new(config()).send([msg(&["a@y.test", "b@y.test"])]);
        lock_step.play(&format!(
            "{GREET_PLAIN}
             C: MAIL FROM:<a@example.test>
             S: {code} refused
             C: RSET
             S: 250 ok
             C: QUIT
             S: 221 bye"
        ));
        assert_eq!(lock_step.outcomes(), [[(kind, code), (kind, code)]]);

        let mut pipelined = Harness::new(config()).send([msg(&["a@y.test", "b@y.test"])]);
        pipelined.play(&format!(
            "{GREET_PIPELINING}
             C: MAIL FROM:<a@example.test>
             C: RCPT TO:<a@y.test>
             C: RCPT TO:<b@y.test>
             C: DATA
             S: {code} refused
             S: 503 5.5.1 need MAIL
             S: 250 ok but broken
             S: 503 5.5.1 need RCPT
             C: RSET
             S: 250 ok
             C: QUIT
             S: 221 bye"
        ));
        assert_eq!(pipelined.outcomes(), [[(kind, code), (kind, code)]]);
    }
}

#[test]
fn final_reply_after_the_body_decides_the_accepted_recipients() {
    for (code, kind) in [(451, "deferred"), (554, "bounced")] {
        let mut h = Harness::new(config()).send([msg(&["ok@y.test", "no@y.test"])]);
        h.play(&format!(
            "{GREET_PIPELINING}
             C: MAIL FROM:<a@example.test>
             C: RCPT TO:<ok@y.test>
             C: RCPT TO:<no@y.test>
             C: DATA
             S: 250 ok
             S: 250 ok
             S: 550 5.1.1 unknown
             S: 354 go
             C: <BODY>
             S: {code} content refused
             C: RSET
             S: 250 ok
             C: QUIT
             S: 221 bye"
        ));
        assert_eq!(h.outcomes(), [[(kind, code), ("bounced", 550)]]);
    }
}

#[test]
fn data_refused_decides_the_accepted_recipients() {
    let mut h = Harness::new(config()).send([msg(&["ok@y.test"])]);
    h.play(&format!(
        "{GREET_PLAIN}
         C: MAIL FROM:<a@example.test>
         S: 250 ok
         C: RCPT TO:<ok@y.test>
         S: 250 ok
         C: DATA
         S: 452 4.3.1 out of space
         C: RSET
         S: 250 ok
         C: QUIT
         S: 221 bye"
    ));
    assert_eq!(h.outcomes(), [[("deferred", 452)]]);
}

#[test]
fn size_over_the_advertised_limit_bounces_without_sending() {
    let big = OutgoingMessage { size: 5001, ..msg(&["a@y.test", "b@y.test"]) };
    let mut h = Harness::new(config()).send([big]);
    h.play(
        "S: 220 mx
         C: EHLO client.test
         S: 250-mx
         S: 250 SIZE 5000
         C: QUIT
         S: 221 bye",
    );
    assert_eq!(h.outcomes(), [[("bounced", 552), ("bounced", 552)]]);
    let reply = h.recipient_outcomes()[0].reply().clone();
    assert_eq!(reply.enhanced, Some((5, 3, 4)));
    assert_eq!(reply.to_string(), "552 5.3.4 message size 5001 exceeds size limit 5000 of server");
    assert_eq!(h.names(), ["Ready", "Outcome", "Ready", "Closed"]);
}

#[test]
fn mail_from_declares_size_and_8bitmime_when_offered() {
    let eight_bit = OutgoingMessage { size: 5000, body_8bit: true, sender: String::new(), ..msg(&["a@y.test"]) };
    let mut h = Harness::new(config()).send([eight_bit.clone()]);
    h.play(
        "S: 220 mx
         C: EHLO client.test
         S: 250-mx
         S: 250-8BITMIME
         S: 250 SIZE 5000
         C: MAIL FROM:<> SIZE=5000 BODY=8BITMIME
         S: 250 ok
         C: RCPT TO:<a@y.test>
         S: 250 ok
         C: DATA
         S: 354 go
         C: <BODY>
         S: 250 ok
         C: QUIT
         S: 221 bye",
    );
    assert_eq!(h.outcomes(), [[("delivered", 250)]]);

    // Without 8BITMIME offered the body still goes, undeclared.
    let mut h = Harness::new(config()).send([eight_bit]);
    h.play(
        "S: 220 mx
         C: EHLO client.test
         S: 250-mx
         S: 250 SIZE
         C: MAIL FROM:<> SIZE=5000
         S: 250 ok
         C: RCPT TO:<a@y.test>
         S: 250 ok
         C: DATA
         S: 354 go
         C: <BODY>
         S: 250 ok
         C: QUIT
         S: 221 bye",
    );
    assert_eq!(h.outcomes(), [[("delivered", 250)]]);
}

#[test]
fn addresses_that_would_inject_commands_bounce_without_being_sent() {
    let evil = msg(&["x@y.test>\r\nRSET", "ok@y.test"]);
    let mut h = Harness::new(config()).send([evil]);
    h.play(&format!(
        "{GREET_PLAIN}
         C: MAIL FROM:<a@example.test>
         S: 250 ok
         C: RCPT TO:<ok@y.test>
         S: 250 ok
         C: DATA
         S: 354 go
         C: <BODY>
         S: 250 ok
         C: QUIT
         S: 221 bye"
    ));
    assert_eq!(h.outcomes(), [[("bounced", 553), ("delivered", 250)]]);

    let bad_sender = OutgoingMessage { sender: "a@b\r\nDATA".into(), ..msg(&["ok@y.test"]) };
    let mut h = Harness::new(config()).send([bad_sender]);
    h.play(&format!("{GREET_PLAIN}\nC: QUIT\nS: 221 bye"));
    let reply = h.recipient_outcomes()[0].reply().clone();
    assert_eq!((reply.code, reply.enhanced), (553, Some((5, 1, 7))));
}

#[test]
fn two_messages_go_over_one_connection_with_rset_only_after_failure() {
    let first = msg(&["a@y.test"]);
    let second = OutgoingMessage { sender: "b@example.test".into(), ..msg(&["b@y.test"]) };
    let third = msg(&["c@y.test"]);
    let mut h = Harness::new(config()).send([first, second, third]);
    h.play(&format!(
        "{GREET_PIPELINING}
         C: MAIL FROM:<a@example.test>
         C: RCPT TO:<a@y.test>
         C: DATA
         S: 250 ok
         S: 250 ok
         S: 354 go
         C: <BODY>
         S: 250 2.0.0 queued as 1
         C: MAIL FROM:<b@example.test>
         C: RCPT TO:<b@y.test>
         C: DATA
         S: 250 ok
         S: 250 ok
         S: 354 go
         C: <BODY>
         S: 452 4.3.1 full
         C: RSET
         S: 250 ok
         C: MAIL FROM:<a@example.test>
         C: RCPT TO:<c@y.test>
         C: DATA
         S: 250 ok
         S: 250 ok
         S: 354 go
         C: <BODY>
         S: 250 2.0.0 queued as 3
         C: QUIT
         S: 221 bye"
    ));
    assert_eq!(h.outcomes(), [[("delivered", 250)], [("deferred", 452)], [("delivered", 250)]]);
    assert_eq!(h.names(), ["Ready", "Outcome", "Ready", "Outcome", "Ready", "Outcome", "Ready", "Closed"]);
}

#[test]
fn phase_follows_the_oldest_outstanding_reply() {
    let mut h = Harness::new(config()).stay_idle();
    h.play(GREET_PIPELINING);
    assert_eq!(h.client.phase(), Phase::Ready);
    let _ = h.client.send_message(msg(&["a@y.test"])).unwrap();
    assert_eq!(h.client.phase(), Phase::Mail);
    let mut phases = Vec::new();
    for reply in ["250 ok\r\n", "250 ok\r\n", "354 go\r\n"] {
        h.client.handle_input(reply.as_bytes());
        phases.push(h.client.phase());
    }
    assert_eq!(phases, [Phase::Rcpt, Phase::DataInit, Phase::DataBlock]);
    h.client.body_sent();
    assert_eq!(h.client.phase(), Phase::DataTermination);
    h.client.handle_input(b"250 ok\r\n");
    assert_eq!(h.client.phase(), Phase::Ready);
}

#[test]
fn outcome_helpers_map_classes() {
    let reply = |code| Reply { code, enhanced: None, text: String::new() };
    assert!(matches!(RecipientOutcome::from_reply(reply(250)), RecipientOutcome::Delivered { .. }));
    assert!(matches!(RecipientOutcome::from_reply(reply(354)), RecipientOutcome::Deferred { .. }));
    assert!(matches!(RecipientOutcome::from_reply(reply(599)), RecipientOutcome::Bounced { .. }));
}
