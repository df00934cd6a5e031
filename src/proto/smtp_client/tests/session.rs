//! Greeting, EHLO/HELO, STARTTLS under each policy, QUIT.

use super::harness::{config, msg, Harness, GREET_PLAIN};
use crate::proto::smtp_client::{
    Capabilities, Client, ClientConfig, ConfigError, Event, FailureCause, Phase, SendError, TlsPolicy,
};

fn with_tls(tls: TlsPolicy) -> ClientConfig {
    ClientConfig { tls, ..config() }
}

#[test]
fn client_waits_for_the_greeting_before_ehlo() {
    let mut h = Harness::new(config());
    h.pump();
    assert!(h.writes.is_empty());
    assert_eq!(h.client.phase(), Phase::Greeting);
    h.server_raw(b"220 mx.test ESMTP\r\n");
    assert_eq!(h.writes, ["EHLO client.test\r\n"]);
    assert_eq!(h.client.phase(), Phase::Ehlo);
}

#[test]
fn multi_line_ehlo_reply_sets_capabilities_then_ready_then_quit() {
    let mut h = Harness::new(config());
    h.play(
        "S: 220-mx.test ESMTP
         S: 220 second greeting line
         C: EHLO client.test
         S: 250-mx.test Hello
         S: 250-PIPELINING
         S: 250-SIZE 5000
         S: 250-8BITMIME
         S: 250 ENHANCEDSTATUSCODES
         C: QUIT
         S: 221 2.0.0 Bye",
    );
    assert_eq!(h.names(), ["Ready", "Closed"]);
    assert_eq!(
        *h.client.capabilities(),
        Capabilities {
            esmtp: true,
            pipelining: true,
            size: Some(5000),
            chunking: false,
            eight_bit_mime: true,
            dsn: false,
            binarymime: false,
            smtputf8: false,
            starttls: false,
            requiretls: false,
            enhanced_status_codes: true,
        }
    );
    assert_eq!(h.client.phase(), Phase::Closed);
}

#[test]
fn permanent_greeting_fails_permanently_and_says_quit() {
    let mut h = Harness::new(config());
    h.play("S: 554 5.7.1 go away\nC: QUIT");
    let failure = h.failure().unwrap();
    assert!(!failure.temporary);
    assert!(matches!(&failure.cause, FailureCause::GreetingRefused(r) if r.code == 554));
    assert_eq!(failure.to_string(), "greeting refused: 554 5.7.1 go away");
}

#[test]
fn transient_greeting_fails_temporarily() {
    let mut h = Harness::new(config());
    h.play("S: 450 busy\nC: QUIT");
    assert!(h.failure().unwrap().temporary);
}

#[test]
fn ehlo_refused_falls_back_to_helo_without_extensions() {
    let mut h = Harness::new(config()).send([msg(&["x@y.test"])]);
    h.play(
        "S: 220 old.test SMTP
         C: EHLO client.test
         S: 502 5.5.2 what?
         C: HELO client.test
         S: 250 old.test
         C: MAIL FROM:<a@example.test>
         S: 250 ok
         C: RCPT TO:<x@y.test>
         S: 250 ok
         C: DATA
         S: 354 go
         C: <BODY>
         S: 250 queued
         C: QUIT
         S: 221 bye",
    );
    assert!(!h.client.capabilities().esmtp);
    assert_eq!(h.outcomes(), [[("delivered", 250)]]);
    assert_eq!(h.names(), ["Ready", "Outcome", "Ready", "Closed"]);
}

#[test]
fn helo_refused_too_is_a_permanent_failure() {
    let mut h = Harness::new(config());
    h.play(
        "S: 220 old.test
         C: EHLO client.test
         S: 500 no
         C: HELO client.test
         S: 550 not you
         C: QUIT",
    );
    let failure = h.failure().unwrap();
    assert!(!failure.temporary);
    assert!(matches!(&failure.cause, FailureCause::HelloRefused(r) if r.code == 550));
}

#[test]
fn transient_ehlo_reply_is_a_temporary_failure_not_a_helo() {
    let mut h = Harness::new(config());
    h.play("S: 220 mx\nC: EHLO client.test\nS: 451 later\nC: QUIT");
    assert!(h.failure().unwrap().temporary);
}

const GREET_STARTTLS: &str = "
    S: 220 mx.test ESMTP
    C: EHLO client.test
    S: 250-mx.test
    S: 250-SIZE 1000
    S: 250 STARTTLS
    C: STARTTLS
    S: 220 2.0.0 Ready to start TLS
    C: EHLO client.test
    S: 250-mx.test
    S: 250 PIPELINING
    C: QUIT
    S: 221 bye
";

#[test]
fn starttls_offered_is_used_under_every_policy_and_ehlo_repeated() {
    for tls in [TlsPolicy::Opportunistic, TlsPolicy::Required, TlsPolicy::Verify] {
        let mut h = Harness::new(with_tls(tls));
        h.play(GREET_STARTTLS);
        assert_eq!(h.names(), ["StartTls", "Ready", "Closed"], "{tls:?}");
        assert_eq!(h.handshakes, 1);
        assert!(h.client.tls_active());
        // Capabilities come from the EHLO after TLS only.
        let caps = h.client.capabilities();
        assert!(caps.pipelining && !caps.starttls && caps.size.is_none());
    }
}

#[test]
fn starttls_offered_is_not_used_when_disabled() {
    let mut h = Harness::new(with_tls(TlsPolicy::Disabled));
    h.play(
        "S: 220 mx.test ESMTP
         C: EHLO client.test
         S: 250-mx.test
         S: 250 STARTTLS
         C: QUIT
         S: 221 bye",
    );
    assert_eq!(h.names(), ["Ready", "Closed"]);
    assert_eq!(h.handshakes, 0);
    assert!(!h.client.tls_active());
}

#[test]
fn phase_is_tls_handshake_until_tls_established() {
    let mut client = Client::new(config()).unwrap();
    client.handle_input(b"220 mx\r\n");
    client.handle_input(b"250-mx\r\n250 STARTTLS\r\n");
    client.handle_input(b"220 go ahead\r\n");
    assert_eq!(client.phase(), Phase::TlsHandshake);
    // A second call or a stray call elsewhere changes nothing.
    client.tls_established();
    assert_eq!(client.phase(), Phase::Ehlo);
    client.tls_established();
    assert_eq!(client.phase(), Phase::Ehlo);
}

#[test]
fn starttls_not_offered_is_plain_text_when_opportunistic() {
    let mut h = Harness::new(config());
    h.play(&format!("{GREET_PLAIN}\nC: QUIT\nS: 221 bye"));
    assert_eq!(h.names(), ["Ready", "Closed"]);
    assert!(!h.client.tls_active());
}

#[test]
fn starttls_not_offered_fails_temporarily_when_required() {
    for tls in [TlsPolicy::Required, TlsPolicy::Verify] {
        let mut h = Harness::new(with_tls(tls));
        h.play(&format!("{GREET_PLAIN}\nC: QUIT"));
        let failure = h.failure().unwrap();
        assert!(failure.temporary);
        assert_eq!(failure.cause, FailureCause::TlsNotOffered);
        assert_eq!(failure.to_string(), "TLS required but not offered");
    }
}

#[test]
fn starttls_refused_continues_in_plain_text_when_opportunistic() {
    let mut h = Harness::new(config());
    h.play(
        "S: 220 mx
         C: EHLO client.test
         S: 250-mx
         S: 250 STARTTLS
         C: STARTTLS
         S: 454 4.7.0 TLS not available
         C: QUIT
         S: 221 bye",
    );
    assert_eq!(h.names(), ["Ready", "Closed"]);
    assert_eq!(h.handshakes, 0);
}

#[test]
fn starttls_refused_fails_when_required() {
    let mut h = Harness::new(with_tls(TlsPolicy::Required));
    h.play(
        "S: 220 mx
         C: EHLO client.test
         S: 250-mx
         S: 250 STARTTLS
         C: STARTTLS
         S: 554 5.7.0 no
         C: QUIT",
    );
    let failure = h.failure().unwrap();
    assert!(failure.temporary);
    assert!(matches!(&failure.cause, FailureCause::TlsRefused(r) if r.code == 554));
}

#[test]
fn implicit_tls_never_sends_starttls_and_meets_required() {
    let config = ClientConfig { tls_active_at_start: true, ..with_tls(TlsPolicy::Verify) };
    let mut h = Harness::new(config);
    h.play(
        "S: 220 mx
         C: EHLO client.test
         S: 250-mx
         S: 250 STARTTLS
         C: QUIT
         S: 221 bye",
    );
    assert_eq!(h.names(), ["Ready", "Closed"]);
}

#[test]
fn plaintext_after_starttls_reply_is_refused() {
    let mut client = Client::new(config()).unwrap();
    client.handle_input(b"220 mx\r\n250-mx\r\n250 STARTTLS\r\n");
    let input = b"220 go ahead\r\n250-mx\r\n250 PIPELINING\r\n";
    assert_eq!(client.handle_input(input), input.len());
    let events: Vec<Event> = std::iter::from_fn(|| client.poll_event()).collect();
    assert_eq!(events[0], Event::StartTls);
    assert!(matches!(
        &events[1],
        Event::Failed(f) if f.cause == FailureCause::PlaintextAfterStartTls
    ));
    assert_eq!(client.phase(), Phase::Closed);
}

#[test]
fn quit_during_setup_is_sent_instead_of_ready() {
    let mut h = Harness::new(config());
    h.client.quit();
    h.play(&format!("{GREET_PLAIN}\nC: QUIT\nS: 221 bye"));
    assert_eq!(h.names(), ["Closed"]);
}

#[test]
fn send_message_before_ready_hands_the_message_back() {
    let mut client = Client::new(config()).unwrap();
    let err = client.send_message(msg(&["x@y.test"])).unwrap_err();
    assert!(matches!(err, SendError::NotReady { phase: Phase::Greeting, .. }));
    assert_eq!(err.into_message(), msg(&["x@y.test"]));
}

#[test]
fn message_without_recipients_is_handed_back() {
    let mut h = Harness::new(config()).stay_idle();
    h.play(GREET_PLAIN);
    let err = h.client.send_message(msg(&[])).unwrap_err();
    assert!(matches!(err, SendError::NoRecipients { .. }));
    assert_eq!(h.client.phase(), Phase::Ready);
}

#[test]
fn bad_helo_name_is_a_config_error() {
    let config = ClientConfig { helo_name: "me\r\nRSET".into(), ..config() };
    assert!(matches!(Client::new(config), Err(ConfigError::BadHeloName { .. })));
}
