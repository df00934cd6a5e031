//! The client does not care how the server's bytes are split: the same
//! transcript fed in pieces of every size gives the same writes and events.

use super::harness::{config, msg, Harness};
use crate::proto::smtp_client::Event;

/// Multi-line replies everywhere, STARTTLS, pipelining, two messages.
const TRANSCRIPT: &str = "
    S: 220-mx.test ESMTP ready
    S: 220-second line of the banner
    S: 220 third
    C: EHLO client.test
    S: 250-mx.test greets client.test
    S: 250-STARTTLS
    S: 250 SIZE 100000
    C: STARTTLS
    S: 220 2.0.0 Ready to start TLS
    C: EHLO client.test
    S: 250-mx.test greets client.test
    S: 250-PIPELINING
    S: 250-SIZE 100000
    S: 250-8BITMIME
    S: 250 ENHANCEDSTATUSCODES
    C: MAIL FROM:<a@example.test> SIZE=100
    C: RCPT TO:<x@y.test>
    C: RCPT TO:<z@y.test>
    C: DATA
    S: 250 2.1.0 Ok
    S: 250 2.1.5 Ok
    S: 550-5.1.1 The email account that you tried to reach does not exist.
    S: 550-5.1.1 Please try double-checking the recipient's email
    S: 550 5.1.1 address for typos.
    S: 354 End data with <CR><LF>.<CR><LF>
    C: <BODY>
    S: 250 2.0.0 Ok: queued as 1
    C: MAIL FROM:<a@example.test> SIZE=100
    C: RCPT TO:<w@y.test>
    C: DATA
    S: 250 2.1.0 Ok
    S: 451-4.7.1 Greylisted, see
    S: 451 4.7.1 http://example.test/greylisting
    S: 554 5.5.1 Error: no valid recipients
    C: RSET
    S: 250 2.0.0 Ok
    C: QUIT
    S: 221 2.0.0 Bye
";

fn run(chunk: usize) -> (Vec<String>, Vec<Event>) {
    let mut h = Harness::new(config()).chunk(chunk).send([msg(&["x@y.test", "z@y.test"]), msg(&["w@y.test"])]);
    h.play(TRANSCRIPT);
    (h.writes, h.events)
}

#[test]
fn transcript_gives_the_same_result_at_every_chunk_size() {
    let (writes, events) = run(usize::MAX);
    assert_eq!(events.len(), 7, "{events:?}");
    let longest = TRANSCRIPT.lines().map(str::len).max().unwrap_or(1) + 2;
    for chunk in 1..=longest * 3 {
        assert_eq!(run(chunk), (writes.clone(), events.clone()), "chunk {chunk}");
    }
}

#[test]
fn multi_line_reply_text_survives_byte_by_byte_feeding() {
    let (_, events) = run(1);
    let Some(Event::Outcome(first)) = events.iter().find(|e| matches!(e, Event::Outcome(_))) else {
        panic!("no outcome in {events:?}");
    };
    assert_eq!(
        first.per_recipient[1].reply().to_string(),
        "550 5.1.1 The email account that you tried to reach does not exist. \
         Please try double-checking the recipient's email address for typos."
    );
}

#[test]
fn bare_lf_replies_split_anywhere_are_read_like_crlf() {
    let raw = b"220 mx\n250-mx\n250 PIPELINING\n";
    for chunk in 1..=raw.len() {
        let mut h = Harness::new(config()).chunk(chunk);
        h.server_raw(raw);
        h.server_raw(b"221 bye\n");
        assert_eq!(h.writes, ["EHLO client.test\r\n", "QUIT\r\n"], "chunk {chunk}");
        assert!(matches!(h.events.last(), Some(Event::Closed)));
    }
}
