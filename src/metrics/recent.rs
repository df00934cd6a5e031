//! The last [`KEEP`] problems one core saw, for the web status page's
//! "recent errors" card: relay deferrals and bounces with the reply that
//! decided them, and failed inbound TLS handshakes with the error. These
//! are the events an operator looks at first when mail is stuck; each is
//! also a log line (the log keeps everything, this ring only the newest).
//!
//! Bounded: the oldest event is dropped when the ring is full, and each
//! text is cut to [`MAX_TEXT`] bytes (a remote reply can be long).

use serde::Serialize;
use std::collections::VecDeque;

/// Events kept per core.
pub const KEEP: usize = 50;
/// Longest subject or detail kept, in bytes.
pub const MAX_TEXT: usize = 300;

/// What kind of problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A recipient's relay attempt was deferred (4xx, no connection, …).
    Deferred,
    /// A recipient failed for good (5xx, no route, expired, suppressed).
    Bounced,
    /// An inbound TLS handshake (STARTTLS, STLS or implicit) failed.
    TlsHandshake,
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorEvent {
    /// Unix ms.
    pub at_ms: u64,
    pub core: usize,
    pub kind: ErrorKind,
    /// The recipient (relay events) or the client address (TLS).
    pub subject: String,
    /// The reply that decided it, or the handshake error.
    pub detail: String,
}

/// The ring, oldest first.
#[derive(Debug, Default)]
pub struct Recent {
    events: VecDeque<ErrorEvent>,
}

impl Recent {
    /// Adds an event, dropping the oldest beyond [`KEEP`]; long texts are cut.
    pub fn push(&mut self, mut e: ErrorEvent) {
        cut(&mut e.subject);
        cut(&mut e.detail);
        if self.events.len() == KEEP {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// The events, oldest first.
    pub fn events(&self) -> Vec<ErrorEvent> {
        self.events.iter().cloned().collect()
    }
}

/// Cuts `s` to at most [`MAX_TEXT`] bytes on a character boundary.
fn cut(s: &mut String) {
    if s.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u64, detail: &str) -> ErrorEvent {
        ErrorEvent {
            at_ms: i,
            core: 0,
            kind: ErrorKind::Deferred,
            subject: format!("u{i}@example.test"),
            detail: detail.to_string(),
        }
    }

    #[test]
    fn ring_keeps_the_newest_events() {
        let mut r = Recent::default();
        for i in 0..120 {
            r.push(event(i, "451 4.3.0 later"));
        }
        let e = r.events();
        assert_eq!(e.len(), KEEP);
        assert_eq!(e[0].at_ms, 120 - KEEP as u64);
        assert_eq!(e[KEEP - 1].at_ms, 119);
    }

    #[test]
    fn long_replies_are_cut_on_a_character_boundary() {
        let mut r = Recent::default();
        r.push(event(1, &"é".repeat(400)));
        let d = &r.events()[0].detail;
        assert!(d.len() <= MAX_TEXT + '…'.len_utf8());
        assert!(d.ends_with('…'));
    }
}
