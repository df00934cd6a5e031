//! The messages in flight on one session, oldest first: one, or with
//! PIPELINING (RFC 2920 §3.1) a second whose MAIL, RCPT and DATA (or BDAT
//! and its chunk) went out behind the first one's body, before the first
//! one's end of data was answered. That saves a round trip per message
//! toward a server without CHUNKING (the 354 of the next message comes back
//! with the previous one's end-of-data reply), and lets BDAT messages
//! overlap.
//!
//! Replies come back in the order the commands went, so the oldest
//! transaction takes every reply until it is done, then the next one. When
//! the oldest ends in a way that would have called for an RSET, the one
//! behind it is already under way: no RSET goes between them (it would
//! reset the newer transaction), and the newer one is distrusted instead
//! (see `transaction`): its refusals defer, never bounce, and RSET follows
//! it. At most one message waits behind another, and none behind a
//! distrusted one.
//!
//! This file keeps that order; it does not decide what a reply means
//! (`transaction`) nor what the session does next (`client`).

use std::collections::VecDeque;

use super::message::MessageOutcome;
use super::transaction::Transaction;

/// One message in flight.
#[derive(Debug)]
pub enum Entry {
    /// Talking to the server (boxed: most of the entry's size).
    Live(Box<Transaction>),
    /// Decided without the server (over SIZE, no valid address, ...) while
    /// the one before it was in flight: its outcome waits for its turn, so
    /// that outcomes come in the order the messages were given.
    Decided(MessageOutcome),
}

/// The messages in flight, oldest first; the oldest is always `Live`.
#[derive(Debug)]
pub struct Flight {
    entries: VecDeque<Entry>,
    /// `Event::ReadyBehind` was given for the oldest one already.
    pub offered: bool,
}

impl Flight {
    /// A flight of one live transaction.
    pub fn new(txn: Box<Transaction>) -> Flight {
        Flight { entries: VecDeque::from([Entry::Live(txn)]), offered: false }
    }

    /// The oldest transaction: the one the next reply is for.
    pub fn front(&self) -> Option<&Transaction> {
        match self.entries.front() {
            Some(Entry::Live(txn)) => Some(txn.as_ref()),
            Some(Entry::Decided(_)) | None => None,
        }
    }

    /// See [`Flight::front`].
    pub fn front_mut(&mut self) -> Option<&mut Transaction> {
        match self.entries.front_mut() {
            Some(Entry::Live(txn)) => Some(txn.as_mut()),
            Some(Entry::Decided(_)) | None => None,
        }
    }

    /// Whether another message may go behind the oldest now: it is the only
    /// one, its body is written, and it is not distrusted. (Whether the
    /// server offers PIPELINING is the session's to check.)
    pub fn takes_one_behind(&self) -> bool {
        self.entries.len() == 1 && self.front().is_some_and(|t| t.body_written() && !t.distrusted())
    }

    /// Whether a message given now would go behind the oldest once its
    /// body is written: it is the only one and its body is still to come
    /// (DATA waiting for its 354). Toward a server without PIPELINING the
    /// session says no (`Client::takes_behind_soon`).
    pub fn takes_one_behind_soon(&self) -> bool {
        self.entries.len() == 1 && self.front().is_some_and(|t| !t.body_written() && !t.distrusted())
    }

    /// Adds a message behind the oldest (after [`Flight::takes_one_behind`]).
    pub fn push(&mut self, entry: Entry) {
        self.entries.push_back(entry);
    }

    /// The driver wrote a body: it was the first transaction's that asked
    /// for one (bodies are asked for and written in order).
    pub fn body_sent(&mut self) {
        let asked = self.entries.iter_mut().find_map(|e| match e {
            Entry::Live(txn) if txn.awaits_body() => Some(txn),
            Entry::Live(_) | Entry::Decided(_) => None,
        });
        if let Some(txn) = asked {
            txn.body_sent();
        }
    }

    /// Takes the oldest transaction, which is done, and the outcomes decided
    /// without the server that waited behind it; `reset` says the server
    /// may still hold its state. Returns them in order, and whether an RSET
    /// is owed now (nothing live is left to distrust instead).
    pub fn finish_front(&mut self, reset: bool) -> (Option<Box<Transaction>>, Vec<MessageOutcome>, bool) {
        let done = match self.entries.pop_front() {
            Some(Entry::Live(txn)) => Some(txn),
            Some(Entry::Decided(_)) | None => None,
        };
        let reset = reset || done.as_ref().is_some_and(|t| t.distrusted());
        self.offered = false;
        let mut decided = Vec::new();
        loop {
            match self.entries.front_mut() {
                Some(Entry::Decided(_)) => {
                    if let Some(Entry::Decided(outcome)) = self.entries.pop_front() {
                        decided.push(outcome);
                    }
                }
                Some(Entry::Live(next)) => {
                    if reset {
                        next.distrust();
                    }
                    return (done, decided, false);
                }
                None => return (done, decided, reset),
            }
        }
    }

    /// Whether nothing is in flight any more.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every message still in flight, oldest first (the session ended).
    pub fn into_entries(self) -> VecDeque<Entry> {
        self.entries
    }
}
