//! A simulated driver and a scripted server, so tests read as transcripts:
//!
//! ```text
//! S: 220 mx.test ESMTP        the server sends this line (CRLF added)
//! C: EHLO client.test         the client must have written exactly this
//! C: <BODY>                   the client asked the driver for the body
//! C: <CHUNK>                  ... for the body as a BDAT chunk
//! T: timeout                  the driver's timer fires
//! X: lost                     the connection drops
//! ```
//!
//! Consecutive `S:` lines are one server write, fed to the client in pieces
//! of `chunk` bytes the way a real driver would (keeping what the client
//! did not consume). Like a real driver it performs the TLS handshake on
//! `StartTls`, writes the body on `Transmit::Body`, and on `Ready` sends
//! the next queued message or, when none is left and `quit_when_idle`,
//! quits. With `pipelined()` it also sends the next message on
//! `ReadyBehind`, as the relay's driver does; without, it ignores it.

use std::collections::VecDeque;

use super::super::{
    Client, ClientConfig, ConnectionFailure, Event, OutgoingMessage, RecipientOutcome, TlsPolicy, Transmit,
};

pub fn config() -> ClientConfig {
    ClientConfig { helo_name: "client.test".into(), tls: TlsPolicy::Opportunistic, tls_active_at_start: false }
}

/// A 7-bit message of 100 bytes from a@example.test.
pub fn msg(recipients: &[&str]) -> OutgoingMessage {
    OutgoingMessage {
        sender: "a@example.test".into(),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        size: 100,
        body_8bit: false,
        dsn: Default::default(),
        binarymime: false,
        smtputf8: false,
        requiretls: false,
    }
}

pub struct Harness {
    pub client: Client,
    /// Server bytes the client has not consumed yet.
    unconsumed: Vec<u8>,
    /// Bytes per `handle_input` call.
    chunk: usize,
    /// Client lines written and not yet matched by a `C:` line.
    lines: VecDeque<String>,
    /// Every write the client asked for, in order (`<BODY>` for the body).
    pub writes: Vec<String>,
    /// Every event, in order.
    pub events: Vec<Event>,
    /// Sent one by one on each `Ready`.
    pub outbox: VecDeque<OutgoingMessage>,
    /// `quit()` on `Ready` when the outbox is empty.
    pub quit_when_idle: bool,
    /// Send the next message on `ReadyBehind` too.
    pub pipeline: bool,
    /// TLS handshakes performed.
    pub handshakes: usize,
}

impl Harness {
    pub fn new(config: ClientConfig) -> Harness {
        Harness {
            client: Client::new(config).expect("valid config"),
            unconsumed: Vec::new(),
            chunk: usize::MAX,
            lines: VecDeque::new(),
            writes: Vec::new(),
            events: Vec::new(),
            outbox: VecDeque::new(),
            quit_when_idle: true,
            pipeline: false,
            handshakes: 0,
        }
    }

    /// The same harness around an LMTP client (`Client::lmtp`).
    pub fn lmtp(config: ClientConfig) -> Harness {
        let mut h = Harness::new(config.clone());
        h.client = Client::lmtp(config).expect("valid config");
        h
    }

    pub fn chunk(mut self, chunk: usize) -> Harness {
        self.chunk = chunk;
        self
    }

    pub fn send(mut self, messages: impl IntoIterator<Item = OutgoingMessage>) -> Harness {
        self.outbox.extend(messages);
        self
    }

    pub fn pipelined(mut self) -> Harness {
        self.pipeline = true;
        self
    }

    pub fn stay_idle(mut self) -> Harness {
        self.quit_when_idle = false;
        self
    }

    /// Plays a transcript (see the module doc). Every client line must be
    /// matched, in order, and none may be left over at the end.
    pub fn play(&mut self, transcript: &str) {
        let mut burst = Vec::new();
        for line in transcript.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (who, text) = line.split_at(line.find(':').map_or(0, |i| i + 1));
            let text = text.strip_prefix(' ').unwrap_or(text);
            if who != "S:" {
                self.server_raw(&std::mem::take(&mut burst));
            }
            match who {
                "S:" => {
                    burst.extend_from_slice(text.as_bytes());
                    burst.extend_from_slice(b"\r\n");
                }
                "C:" => {
                    let got = self.lines.pop_front();
                    assert_eq!(got.as_deref(), Some(text), "writes so far: {:?}", self.writes);
                }
                "T:" => self.client.handle_timeout(),
                "X:" => self.client.connection_lost(),
                _ => panic!("bad transcript line {line:?}"),
            }
            self.pump();
        }
        self.server_raw(&burst);
        assert!(self.lines.is_empty(), "unmatched client lines {:?}", self.lines);
    }

    /// The server writes `bytes`, fed in chunks like a real driver does.
    pub fn server_raw(&mut self, bytes: &[u8]) {
        for piece in bytes.chunks(self.chunk.max(1)) {
            self.unconsumed.extend_from_slice(piece);
            let consumed = self.client.handle_input(&self.unconsumed);
            assert!(consumed <= self.unconsumed.len());
            self.unconsumed.drain(..consumed);
            self.pump();
        }
    }

    /// Drains writes and events, acting like a driver.
    pub fn pump(&mut self) {
        loop {
            while let Some(transmit) = self.client.poll_transmit() {
                match transmit {
                    Transmit::Command(bytes) => {
                        let text = String::from_utf8(bytes).expect("commands are ASCII");
                        assert!(text.ends_with("\r\n"), "unterminated write {text:?}");
                        for line in text.split_terminator("\r\n") {
                            assert!(!line.contains(['\r', '\n']), "bare CR/LF in {text:?}");
                            self.lines.push_back(line.to_string());
                        }
                        self.writes.push(text);
                    }
                    Transmit::Body => {
                        self.lines.push_back("<BODY>".into());
                        self.writes.push("<BODY>".into());
                        self.client.body_sent();
                    }
                    Transmit::Chunk => {
                        self.lines.push_back("<CHUNK>".into());
                        self.writes.push("<CHUNK>".into());
                        self.client.body_sent();
                    }
                }
            }
            let Some(event) = self.client.poll_event() else {
                return;
            };
            match &event {
                Event::StartTls => {
                    // The driver discards unread plaintext before TLS.
                    self.unconsumed.clear();
                    self.handshakes += 1;
                    self.client.tls_established();
                }
                Event::Ready => match self.outbox.pop_front() {
                    Some(next) => {
                        let _ = self.client.send_message(next).expect("ready for it");
                    }
                    None if self.quit_when_idle => self.client.quit(),
                    None => {}
                },
                Event::ReadyBehind if self.pipeline => {
                    if let Some(next) = self.outbox.pop_front() {
                        let _ = self.client.send_message(next).expect("ready behind");
                    }
                }
                // Ignored, as a driver that does not pipeline does; its
                // event list reads as it did before pipelining existed.
                Event::ReadyBehind => continue,
                Event::Outcome(_) | Event::Abandoned(_) | Event::Closed | Event::Failed(_) => {}
            }
            self.events.push(event);
        }
    }

    /// Each outcome so far, as (kind, code) per recipient.
    pub fn outcomes(&self) -> Vec<Vec<(&'static str, u16)>> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Outcome(o) | Event::Abandoned(o) => Some(o.per_recipient.iter().map(kind).collect()),
                _ => None,
            })
            .collect()
    }

    /// Every recipient outcome of every message, in full.
    pub fn recipient_outcomes(&self) -> Vec<RecipientOutcome> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Outcome(o) | Event::Abandoned(o) => Some(o.per_recipient.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// The event sequence by name.
    pub fn names(&self) -> Vec<&'static str> {
        self.events
            .iter()
            .map(|e| match e {
                Event::Ready => "Ready",
                Event::ReadyBehind => "ReadyBehind",
                Event::StartTls => "StartTls",
                Event::Outcome(_) => "Outcome",
                Event::Abandoned(_) => "Abandoned",
                Event::Closed => "Closed",
                Event::Failed(_) => "Failed",
            })
            .collect()
    }

    pub fn failure(&self) -> Option<&ConnectionFailure> {
        self.events.iter().find_map(|e| match e {
            Event::Failed(f) => Some(f),
            _ => None,
        })
    }
}

pub fn kind(outcome: &RecipientOutcome) -> (&'static str, u16) {
    match outcome {
        RecipientOutcome::Delivered { reply } => ("delivered", reply.code),
        RecipientOutcome::Deferred { reply } => ("deferred", reply.code),
        RecipientOutcome::Bounced { reply } => ("bounced", reply.code),
    }
}

/// The greeting and a pipelining EHLO, as a transcript prefix.
pub const GREET_PIPELINING: &str = "
    S: 220 mx.test ESMTP
    C: EHLO client.test
    S: 250-mx.test
    S: 250-PIPELINING
    S: 250-8BITMIME
    S: 250 ENHANCEDSTATUSCODES
";

/// The greeting and an EHLO with PIPELINING and CHUNKING (BDAT).
pub const GREET_CHUNKING: &str = "
    S: 220 mx.test ESMTP
    C: EHLO client.test
    S: 250-mx.test
    S: 250-PIPELINING
    S: 250-CHUNKING
    S: 250 ENHANCEDSTATUSCODES
";

/// The greeting and an EHLO without extensions (lock-step).
pub const GREET_PLAIN: &str = "
    S: 220 mx.test ESMTP
    C: EHLO client.test
    S: 250 mx.test
";
