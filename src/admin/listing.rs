//! `ringmail mailbox list` and `ringmail suppression list` as data (text
//! and `--json` from the same struct; see [`super::report`]).

use super::format_time;
use super::report::{sender_text, Report};
use serde::Serialize;
use std::fmt::Write;

/// One user's mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailboxListing {
    pub user: String,
    pub count: usize,
    /// Sum of the sizes.
    pub bytes: u64,
    /// In the order asked for (`--sort`).
    pub messages: Vec<MailboxMessage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailboxMessage {
    /// The POP3 UIDL, and what `mailbox delete` takes.
    pub uid: String,
    pub queue_id: String,
    pub received_ms: u64,
    /// The envelope sender; "" for the null sender.
    pub sender: String,
    /// Octets as stored (CRLF line ends), as POP3 LIST reports.
    pub size: u64,
    /// The Subject field ("" when none).
    pub subject: String,
}

impl Report for MailboxListing {
    /// One line per message: uid, date, sender, size, subject.
    fn text(&self) -> String {
        let mut out = String::new();
        for m in &self.messages {
            let _ = writeln!(
                out,
                "{}  {}  {}  {}  {}",
                m.uid,
                format_time(m.received_ms),
                sender_text(&m.sender),
                m.size,
                m.subject
            );
        }
        let _ = writeln!(out, "-- {}: {} message(s), {} bytes", self.user, self.count, self.bytes);
        out
    }
}

/// The suppression entries in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SuppressionListing {
    pub count: usize,
    /// By address.
    pub entries: Vec<SuppressionEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SuppressionEntry {
    pub address: String,
    pub since_ms: u64,
    pub until_ms: u64,
    /// The bounce class that caused it, or "manual".
    pub class: String,
    /// The remote reply, or the operator's reason.
    pub reason: String,
}

impl Report for SuppressionListing {
    /// One line per entry: address, since, until, class, reason.
    fn text(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            let _ = writeln!(
                out,
                "{}  since={}  until={}  class={}  reason={}",
                e.address,
                format_time(e.since_ms),
                format_time(e.until_ms),
                e.class,
                e.reason
            );
        }
        let _ = writeln!(out, "-- {} suppressed", self.count);
        out
    }
}
