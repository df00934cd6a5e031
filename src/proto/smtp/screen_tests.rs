//! Session tests: the client screening's word at RCPT
//! ([`super::RecipientPolicy::screen`]) and the reply it gets.

use super::testkit::Session;

#[test]
fn screened_out_recipients_get_their_replies_and_are_not_taken() {
    let mut s = Session::in_state("mail");
    assert_eq!(
        s.send(b"RCPT TO:<blocked@example.test>\r\n"),
        "554 5.7.1 Service unavailable; client host [192.0.2.9] blocked using zen.test, bl.test\r\n"
    );
    assert_eq!(
        s.send(b"RCPT TO:<rdnsfail@example.test>\r\n"),
        "550 5.7.25 Client host rejected: cannot find your hostname, [192.0.2.9]\r\n"
    );
    assert_eq!(
        s.send(b"RCPT TO:<nordns@example.test>\r\n"),
        "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.9]; try again later\r\n"
    );
    assert_eq!(s.send(b"RCPT TO:<grey@example.test>\r\n"), "451 4.7.1 Greylisted, try again in 120 seconds\r\n");
    assert_eq!(s.send(b"DATA\r\n"), "554 5.5.1 Error: no valid recipients\r\n");
    s.rcpt_to("jane@example.test", "250");
    s.data(b"Subject: x\r\n\r\nx\r\n", "250");
    let recipients: Vec<String> = s.stored[0].0.recipients.iter().map(|r| r.address.to_string()).collect();
    assert_eq!(recipients, ["jane@example.test"]);
}

#[test]
fn greylisting_is_not_counted_as_a_client_error_but_blocklisting_is() {
    // max_errors is 5 in the test config.
    let mut s = Session::in_state("mail");
    for _ in 0..8 {
        assert!(s.send(b"RCPT TO:<grey@example.test>\r\n").starts_with("451 4.7.1"));
    }
    assert!(!s.server.is_closed());
    for _ in 0..4 {
        assert!(s.send(b"RCPT TO:<blocked@example.test>\r\n").starts_with("554 5.7.1"));
    }
    assert!(s.send(b"RCPT TO:<blocked@example.test>\r\n").contains("421 4.7.0"));
    assert!(s.server.is_closed());
}

#[test]
fn screening_sees_the_helo_name() {
    let mut s = Session::new();
    s.ehlo("192.0.2.1", "250");
    s.mail_from("a@relay.test", "250");
    assert_eq!(s.send(b"RCPT TO:<jane@example.test>\r\n"), "550 5.7.1 Helo command rejected: bare IP address\r\n");
}
