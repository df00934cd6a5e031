//! Session tests: every command in every state, sequence and syntax
//! errors, address forms as the policy sees them, recipients and storing.

use super::address::Address;
use super::envelope::RcptDecision;
use super::interface::{ServerConfig, StoreOutcome};
use super::testkit::{config, Session};

fn addr(local: &str, domain: &str) -> Address {
    Address { local: local.into(), domain: domain.into() }
}

#[test]
fn every_command_in_every_state_gets_the_right_code() {
    let states = ["fresh", "greeted", "mail", "rcpt", "tls"];
    let table: &[(&str, [&str; 5])] = &[
        ("EHLO client.test", ["250", "250", "250", "250", "250"]),
        ("HELO client.test", ["250", "250", "250", "250", "250"]),
        ("MAIL FROM:<a@relay.test>", ["503 5.5.1", "250 2.1.0", "503 5.5.1", "503 5.5.1", "503 5.5.1"]),
        ("RCPT TO:<john@example.test>", ["503 5.5.1", "503 5.5.1", "250 2.1.5", "250 2.1.5", "503 5.5.1"]),
        ("DATA", ["503 5.5.1", "503 5.5.1", "503 5.5.1", "354", "503 5.5.1"]),
        ("RSET", ["250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0"]),
        ("NOOP", ["250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0"]),
        ("VRFY jane", ["252 2.0.0", "252 2.0.0", "252 2.0.0", "252 2.0.0", "252 2.0.0"]),
        ("HELP", ["214 2.0.0", "214 2.0.0", "214 2.0.0", "214 2.0.0", "214 2.0.0"]),
        ("STARTTLS", ["220 2.0.0", "220 2.0.0", "503 5.5.1", "503 5.5.1", "554 5.5.1"]),
        ("BOGUS", ["500 5.5.2", "500 5.5.2", "500 5.5.2", "500 5.5.2", "500 5.5.2"]),
        ("QUIT", ["221 2.0.0", "221 2.0.0", "221 2.0.0", "221 2.0.0", "221 2.0.0"]),
    ];
    for (line, codes) in table {
        for (state, code) in states.iter().zip(codes) {
            let mut s = Session::in_state(state);
            let reply = s.send(format!("{line}\r\n").as_bytes());
            assert!(reply.starts_with(code), "{line} in {state}: {reply:?}");
            assert_eq!(s.server.is_closed(), *line == "QUIT", "{line} in {state}");
        }
    }
}

#[test]
fn ehlo_lists_the_extensions_and_helo_gives_a_plain_250() {
    let mut s = Session::new();
    let reply = s.ehlo("client.test", "250 SMTPUTF8");
    assert_eq!(
        reply,
        "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-STARTTLS\r\n\
         250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250-8BITMIME\r\n250-BINARYMIME\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n"
    );
    assert_eq!(s.cmd("HELO client.test", "250"), "250 mx.example.test\r\n");
}

#[test]
fn mail_before_helo_gets_503() {
    let mut s = Session::new();
    assert_eq!(s.mail_from("a@relay.test", "503"), "503 5.5.1 Error: send HELO/EHLO first\r\n");
    // The sequence error wins over a syntax error in the same line.
    s.cmd("MAIL FROM:bogus", "503 5.5.1");
}

#[test]
fn rcpt_before_mail_gets_503() {
    let mut s = Session::in_state("greeted");
    assert_eq!(s.rcpt_to("jane@example.test", "503"), "503 5.5.1 Error: need MAIL command\r\n");
    assert!(s.checked.borrow().is_empty(), "policy not asked");
}

#[test]
fn data_before_rcpt_gets_503() {
    let mut s = Session::in_state("mail");
    assert_eq!(s.cmd("DATA", "503"), "503 5.5.1 Error: need RCPT command\r\n");
}

#[test]
fn data_after_only_rejected_recipients_gets_554() {
    let mut s = Session::in_state("mail");
    s.rcpt_to("nobody@example.test", "550 5.1.1");
    assert_eq!(s.cmd("DATA", "554"), "554 5.5.1 Error: no valid recipients\r\n");
}

#[test]
fn a_full_mailbox_gets_452_and_is_not_a_client_error() {
    let mut s = Session::in_state("mail");
    for _ in 0..30 {
        assert_eq!(
            s.rcpt_to("full@example.test", "452"),
            "452 4.2.2 <full@example.test>: Recipient address rejected: Mailbox full\r\n"
        );
    }
    // Not counted towards max_errors: the session is still open.
    s.rcpt_to("jane@example.test", "250 2.1.5");
}

#[test]
fn nested_mail_gets_503() {
    let mut s = Session::in_state("mail");
    assert_eq!(s.mail_from("b@relay.test", "503"), "503 5.5.1 Error: nested MAIL command\r\n");
}

#[test]
fn rejected_recipients_get_policy_replies_with_the_address() {
    let mut s = Session::in_state("mail");
    assert_eq!(
        s.rcpt_to("nobody@Example.TEST", "550"),
        "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown\r\n"
    );
    assert_eq!(s.rcpt_to("x@elsewhere.test", "554"), "554 5.7.1 <x@elsewhere.test>: Relay access denied\r\n");
    s.rcpt_to("someone@relay.test", "250 2.1.5");
    s.data(b"hi\r\n", "250 2.0.0 Ok: queued as Q1");
    let recipients = &s.stored[0].0.recipients;
    assert_eq!(recipients.len(), 1);
    assert_eq!(recipients[0].decision, RcptDecision::Remote { domain: "relay.test".into() });
}

#[test]
fn a_suppressed_recipient_gets_550_5_1_1_with_the_date_and_is_not_stored() {
    // Not a client error: suppressed recipients never use up max_errors.
    let mut s = Session::with(ServerConfig { max_errors: 1, ..config() });
    s.ehlo("client.test", "250 ");
    s.mail_from("sender@relay.test", "250 2.1.0");
    for _ in 0..3 {
        assert_eq!(
            s.rcpt_to("bounced@relay.test", "550"),
            "550 5.1.1 recipient suppressed (hard bounce on 2026-01-02T03:04:05Z)\r\n"
        );
    }
    s.rcpt_to("someone@relay.test", "250 2.1.5");
    s.data(b"hi\r\n", "250 2.0.0 Ok: queued as Q1");
    let recipients = &s.stored[0].0.recipients;
    assert_eq!(recipients.len(), 1);
    assert_eq!(recipients[0].address.to_string(), "someone@relay.test");
}

#[test]
fn bare_postmaster_is_asked_as_postmaster_at_our_hostname() {
    let mut s = Session::in_state("mail");
    s.cmd("RCPT TO:<Postmaster>", "250 2.1.5");
    assert_eq!(s.last_checked(), Some(addr("postmaster", "mx.example.test")));
}

#[test]
fn broken_alias_gets_451_naming_the_reason_and_is_not_a_client_error() {
    let mut s = Session::with(ServerConfig { max_errors: 1, ..config() });
    s.transaction();
    let r = s.rcpt_to("loop@example.test", "451 4.3.0");
    assert_eq!(
        r,
        "451 4.3.0 <loop@example.test>: alias loop: a -> b -> a; alias expansion failed, try again later\r\n"
    );
    s.rcpt_to("loop@example.test", "451");
    s.rcpt_to("jane@example.test", "250");
}

#[test]
fn an_expanded_alias_is_handed_over_with_its_targets() {
    let mut s = Session::new();
    s.cmd("EHLO client.test", "250");
    s.mail_from("a@relay.test", "250");
    s.rcpt_to("list@example.test", "250 2.1.5");
    s.data(b"Subject: hi\r\n\r\nx\r\n", "250");
    let (envelope, _) = &s.stored[0];
    assert_eq!(envelope.recipients[0].address, addr("list", "example.test"));
    assert!(
        matches!(&envelope.recipients[0].decision, RcptDecision::Expanded { targets } if targets.len() == 2),
        "{:?}",
        envelope.recipients[0].decision
    );
}

#[test]
fn too_many_recipients_get_452_and_do_not_count_as_errors() {
    let mut s = Session::with(ServerConfig { max_errors: 1, ..config() });
    s.transaction();
    s.rcpt_to("john@example.test", "250");
    s.rcpt_to("a@relay.test", "250");
    assert_eq!(s.rcpt_to("b@relay.test", "452"), "452 4.5.3 Error: too many recipients\r\n");
    assert!(!s.server.is_closed());
    s.data(b"x\r\n", "250");
    assert_eq!(s.stored[0].0.recipients.len(), 3);
}

#[test]
fn duplicate_recipient_is_accepted_once() {
    let mut s = Session::in_state("rcpt");
    s.rcpt_to("jane@example.test", "250 2.1.5");
    s.rcpt_to("jane@EXAMPLE.test.", "250 2.1.5");
    s.data(b"x\r\n", "250");
    assert_eq!(s.stored[0].0.recipients.len(), 1);
    assert_eq!(s.checked.borrow().len(), 1);
}

#[test]
fn address_syntax_errors_get_their_own_codes() {
    let mut s = Session::with(ServerConfig { max_errors: 100, ..config() });
    s.ehlo("client.test", "250 ");
    s.cmd("MAIL FROM:<a b@relay.test>", "501 5.1.7");
    s.cmd("MAIL FROM:a@relay.test", "501 5.1.7");
    s.cmd("MAIL FROM:<jäne@relay.test>", "553 5.6.7");
    s.cmd("MAIL", "501 5.5.4");
    s.mail_from("a@relay.test", "250");
    s.cmd("RCPT TO:<>", "501 5.1.3");
    s.cmd("RCPT TO:<jane@exa mple.test>", "501 5.1.3");
    s.cmd("RCPT TO:<jäne@example.test>", "553 5.6.7");
    s.cmd("RCPT jane@example.test", "501 5.5.4");
}

#[test]
fn parameters_are_checked() {
    let mut s = Session::with(ServerConfig { max_errors: 100, ..config() });
    s.ehlo("client.test", "250 ");
    s.cmd("MAIL FROM:<a@relay.test> SIZE=x", "501 5.5.4");
    s.cmd("MAIL FROM:<a@relay.test> BODY=BINARY", "501 5.5.4");
    s.cmd("MAIL FROM:<a@relay.test> MT-PRIORITY=1", "555 5.5.4");
    s.cmd("MAIL FROM:<a@relay.test> SIZE=1001", "552 5.3.4");
    s.cmd("MAIL FROM:<a@relay.test> SIZE=1000 BODY=7BIT", "250 2.1.0");
    s.cmd("RCPT TO:<jane@example.test> CONPERM=x", "555 5.5.4");
    s.cmd("RCPT TO:<jane@example.test> NOTIFY=NEVER,SUCCESS", "501 5.5.4");
    assert!(s.checked.borrow().is_empty());
}

#[test]
fn declared_size_over_the_limit_gets_552_and_the_session_goes_on() {
    let mut s = Session::with(ServerConfig { max_errors: 1, ..config() });
    s.ehlo("client.test", "250 ");
    s.cmd("MAIL FROM:<a@relay.test> SIZE=99999999999999999999999", "552 5.3.4");
    s.mail_from("a@relay.test", "250 2.1.0");
}

#[test]
fn address_forms_reach_the_policy_canonically() {
    let mut s = Session::with(ServerConfig { max_errors: 100, max_recipients: 100, ..config() });
    s.ehlo("client.test", "250 ");
    s.mail_from("sender@relay.test", "250");
    let cases = [
        ("<@relay.test,@other.test:jane@example.test>", "250", addr("jane", "example.test")),
        ("<john%relay.test@example.test>", "550", addr("john%relay.test", "example.test")),
        ("<relay.test!john@example.test>", "550", addr("relay.test!john", "example.test")),
        ("<\"john\"@example.test>", "250", addr("john", "example.test")),
        ("<\"john doe\"@example.test>", "550", addr("\"john doe\"", "example.test")),
        ("<someone@[192.0.2.1]>", "554", addr("someone", "[192.0.2.1]")),
        ("<x@Relay.Test.>", "250", addr("x", "relay.test")),
        ("<Jane@EXAMPLE.test>", "550", addr("Jane", "example.test")),
    ];
    for (path, code, seen) in cases {
        s.cmd(&format!("RCPT TO:{path}"), code);
        assert_eq!(s.last_checked(), Some(seen), "{path}");
        if code != "250" {}
    }
}

#[test]
fn rset_ends_the_transaction() {
    let mut s = Session::in_state("rcpt");
    s.cmd("RSET", "250 2.0.0");
    s.cmd("DATA", "503 5.5.1 Error: need MAIL");
    s.mail_from("a@relay.test", "250");
}

#[test]
fn ehlo_mid_transaction_resets_it() {
    let mut s = Session::in_state("rcpt");
    s.ehlo("again.test", "250 ");
    s.cmd("RCPT TO:<jane@example.test>", "503 5.5.1");
    s.mail_from("a@relay.test", "250");
    s.rcpt_to("john@example.test", "250");
    s.data(b"x\r\n", "250");
    assert_eq!(s.stored[0].0.helo, "again.test");
    assert_eq!(s.stored[0].0.recipients.len(), 1);
}

#[test]
fn quit_says_bye_closes_and_ignores_the_rest() {
    let mut s = Session::in_state("greeted");
    assert_eq!(s.send(b"QUIT\r\nNOOP\r\n"), "221 2.0.0 Bye\r\n");
    assert!(s.server.is_closed());
    assert!(s.buffer.is_empty());
    assert_eq!(s.send(b"NOOP\r\n"), "");
}

#[test]
fn message_is_stored_with_its_envelope_and_acknowledged() {
    let mut s = Session::new();
    s.cmd("HELO client.test", "250");
    s.mail_from("", "250");
    s.rcpt_to("jane@example.test", "250");
    s.rcpt_to("x@relay.test", "250");
    s.data(b"Subject: hi\r\n\r\n.leading dot\r\n", "250 2.0.0 Ok: queued as Q1\r\n");
    let (envelope, body) = &s.stored[0];
    assert_eq!(envelope.helo, "client.test");
    assert!(!envelope.esmtp);
    assert_eq!(envelope.sender, super::address::ReversePath::Null);
    assert_eq!(envelope.recipients[0].decision, RcptDecision::Local { user: "jane".into() });
    assert!(!envelope.body_8bit);
    assert_eq!(body, b"Subject: hi\r\n\r\n.leading dot\r\n");
    // Still greeted, transaction over.
    s.cmd("RCPT TO:<jane@example.test>", "503");
    s.mail_from("a@relay.test", "250");
}

#[test]
fn eight_bit_is_recorded_when_declared_or_seen() {
    let mut s = Session::in_state("greeted");
    s.cmd("MAIL FROM:<a@relay.test> BODY=8BITMIME", "250");
    s.rcpt_to("jane@example.test", "250");
    s.data(b"plain\r\n", "250");
    s.mail_from("a@relay.test", "250");
    s.rcpt_to("jane@example.test", "250");
    s.data("caf\u{e9}\r\n".as_bytes(), "250");
    s.mail_from("a@relay.test", "250");
    s.rcpt_to("jane@example.test", "250");
    s.data(b"plain\r\n", "250");
    let flags: Vec<bool> = s.stored.iter().map(|(e, _)| e.body_8bit).collect();
    assert_eq!(flags, [true, true, false]);
}

#[test]
fn store_failures_are_temporary_and_the_session_goes_on() {
    let mut s = Session::in_state("rcpt");
    s.outcomes.push_back(StoreOutcome::TempFailure);
    s.outcomes.push_back(StoreOutcome::SpoolFull);
    s.data(b"x\r\n", "451 4.3.0 Error: queue file write error");
    s.cmd("RCPT TO:<jane@example.test>", "503"); // transaction over
    s.mail_from("a@relay.test", "250");
    s.rcpt_to("jane@example.test", "250");
    s.data(b"x\r\n", "452 4.3.1 Insufficient system storage");
    s.mail_from("a@relay.test", "250");
    s.rcpt_to("jane@example.test", "250");
    s.data(b"x\r\n", "250 2.0.0 Ok: queued as Q3");
}

#[test]
fn requiretls_is_offered_and_taken_only_over_tls() {
    // Plain text: not advertised, and the parameter is unknown (555).
    let mut s = Session::new();
    let ehlo = s.ehlo("client.test", "250 ");
    assert!(!ehlo.contains("REQUIRETLS"), "{ehlo}");
    s.cmd("MAIL FROM:<a@relay.test> REQUIRETLS", "555 5.5.4");
    // After STARTTLS: advertised, and the envelope carries it.
    s.cmd("STARTTLS", "220");
    s.server.starttls_done();
    let ehlo = s.ehlo("client.test", "250 ");
    assert!(ehlo.contains("250 REQUIRETLS\r\n"), "{ehlo}");
    s.cmd("MAIL FROM:<a@relay.test> REQUIRETLS", "250 2.1.0");
    s.rcpt_to("jane@example.test", "250 2.1.5");
    s.data(b"Subject: x\r\n\r\nhi\r\n", "250 2.0.0");
    assert!(s.stored[0].0.requiretls);
    // Implicit TLS (port 465): from the start.
    let mut s = Session::with(ServerConfig { tls_at_start: true, starttls: false, ..config() });
    let ehlo = s.ehlo("client.test", "250 ");
    assert!(ehlo.contains("REQUIRETLS"), "{ehlo}");
    s.cmd("MAIL FROM:<a@relay.test> REQUIRETLS=yes", "501");
    s.cmd("MAIL FROM:<a@relay.test> REQUIRETLS", "250 2.1.0");
}
