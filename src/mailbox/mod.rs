//! Per-core mailbox indexes.
//!
//! Owns: for each user hashed to this core, the ordered list of messages
//! delivered to them (where each lives in the spool, its size, arrival time
//! and the length of its trace fields) and the POP3 lock. Only the owning core touches an index;
//! sessions on other cores ask it over the shard mesh. Pure: no I/O, no
//! clock; durability of deletions is the caller's job (the owner appends
//! tombstones and waits for their sync before it calls [`MailboxIndex::remove`]).

use crate::spool::{MessageRecord, QueueId, SpoolRef};
use std::collections::HashMap;

/// One message in one user's mailbox. A message with several local
/// recipients has one entry per recipient, told apart by `recipient`.
///
/// Kept small (40 bytes, no heap) because a server holds one per stored
/// message: the envelope sender and the address the copy was delivered
/// for are in the message record at `at`, which RETR and TOP read anyway,
/// so only the length of the trace fields they make is kept here (for
/// LIST and STAT, which must not read every record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxEntry {
    /// Where the message record is; the body is read from the spool map.
    pub at: SpoolRef,
    /// Index of this user among the message's recipients (the tombstone
    /// names it).
    pub recipient: u16,
    /// Bytes of [`MailboxEntry::trace_fields`]; 0 for a message imported
    /// from another server (`import-maildir`), which keeps the trace fields
    /// it came with and is served as stored.
    trace_len: u16,
    pub queue_id: QueueId,
    pub received_at_ms: u64,
    /// Octets as stored (CRLF line ends); quotas count these. POP3
    /// reports [`MailboxEntry::served_size`].
    pub size: u64,
}

/// What a delivered copy is served with, from its message record: the
/// envelope sender and the recipient address it was delivered for (with
/// its extension, or the alias target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trace<'a> {
    pub sender: &'a str,
    pub delivered_to: &'a str,
}

impl Trace<'_> {
    /// `Return-Path:` (the envelope sender, `<>` for bounces) and
    /// `Delivered-To:`, each ending in CRLF.
    fn fields(&self) -> String {
        trace_fields(self.sender, Some(self.delivered_to))
    }
}

impl MailboxEntry {
    /// The entry for recipient `recipient` of the message at `at`; `trace`
    /// is None for an imported message (see [`MailboxEntry::trace_fields`]).
    pub fn new(
        at: SpoolRef,
        recipient: u16,
        queue_id: QueueId,
        received_at_ms: u64,
        size: u64,
        trace: Option<Trace<'_>>,
    ) -> MailboxEntry {
        // Addresses are bounded by the SMTP line limits, far below 32 KiB.
        let trace_len = trace.map_or(0, |t| u16::try_from(t.fields().len()).unwrap_or(u16::MAX));
        MailboxEntry { at, recipient, trace_len, queue_id, received_at_ms, size }
    }

    /// The POP3 UIDL: stable across restarts because it is derived from the
    /// record's queue id and recipient index, both stored in the spool.
    pub fn uid(&self) -> String {
        let mut uid = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_uid(&mut uid);
        uid
    }

    /// Writes [`uid`](Self::uid) to `out` without allocating.
    pub fn write_uid(&self, out: &mut dyn std::fmt::Write) -> std::fmt::Result {
        write!(out, "{}.{}", self.queue_id, self.recipient)
    }

    /// The trace fields put above the stored message when it is served
    /// (POP3 RETR/TOP), made from its message record (`record`, the record
    /// at `at`): `Return-Path:` and `Delivered-To:` (see [`Trace`]). Added
    /// at serving time because one stored body is shared by every local
    /// recipient. Empty for an imported message.
    pub fn trace_fields(&self, record: &MessageRecord<'_>) -> String {
        if self.trace_len == 0 {
            return String::new();
        }
        let delivered_to = record.recipients.get(usize::from(self.recipient)).map_or("", |r| r.address.as_str());
        let fields = Trace { sender: &record.sender, delivered_to }.fields();
        debug_assert_eq!(fields.len(), usize::from(self.trace_len), "trace fields of {} changed", self.uid());
        fields
    }

    /// Octets of the message as served: the trace fields plus the stored
    /// body, which is what POP3 LIST and STAT must report (RFC 1939).
    pub fn served_size(&self) -> u64 {
        self.size + u64::from(self.trace_len)
    }
}

/// `Return-Path:` and `Delivered-To:` (each ending in CRLF) for a message
/// from `sender` delivered for `delivered_to`; empty when `delivered_to` is
/// None (imported mail keeps its own). What POP3 serves above the stored
/// body, and what `export-maildir` writes above it, so both agree.
pub fn trace_fields(sender: &str, delivered_to: Option<&str>) -> String {
    // Both come from parsed SMTP addresses (no CR/LF) or the spool.
    match delivered_to {
        Some(to) => format!("Return-Path: <{sender}>\r\nDelivered-To: {to}\r\n"),
        None => String::new(),
    }
}

/// Identifies one POP3 session holding a mailbox lock (core and a
/// per-core counter), so a late unlock from an old session cannot release
/// a newer session's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LockToken {
    pub core: u16,
    pub session: u64,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MailboxError {
    #[error("mailbox {0} is locked by another session")]
    InUse(String),
    #[error("mailbox {0} is not locked by this session")]
    NotLocked(String),
    /// The owner core has not rebuilt its mailbox indexes yet (restart).
    #[error("mailbox {0} is still being recovered")]
    Recovering(String),
}

#[derive(Debug, Default)]
struct Mailbox {
    /// Arrival order; POP3 message numbers are positions in a snapshot.
    entries: Vec<MailboxEntry>,
    lock: Option<LockToken>,
    /// Sum of the entries' sizes.
    bytes: u64,
}

/// All mailboxes owned by one core.
#[derive(Debug, Default)]
pub struct MailboxIndex {
    boxes: HashMap<String, Mailbox>,
}

impl MailboxIndex {
    /// Add a delivered message (after its record is durable).
    pub fn deliver(&mut self, user: &str, entry: MailboxEntry) {
        let mb = self.boxes.entry(user.to_ascii_lowercase()).or_default();
        mb.bytes += entry.size;
        mb.entries.push(entry);
    }

    /// Give back the memory of a table of mailboxes mostly gone (less than
    /// a quarter used). Each mailbox's own list shrinks where mail leaves
    /// it ([`remove_and_unlock`](MailboxIndex::remove_and_unlock)), so this
    /// stays O(1) however many mailboxes there are.
    pub fn shrink(&mut self) {
        if self.boxes.capacity() > 4 * self.boxes.len() + 1024 {
            self.boxes.shrink_to_fit();
        }
    }

    /// After recovery the entries arrive in spool order per core; put each
    /// mailbox into arrival order once.
    pub fn sort_by_arrival(&mut self) {
        for mb in self.boxes.values_mut() {
            mb.entries.sort_by_key(|e| (e.received_at_ms, e.queue_id, e.recipient));
        }
    }

    /// Lock `user`'s mailbox for a POP3 session and return its listing.
    pub fn lock(&mut self, user: &str, token: LockToken) -> Result<Vec<MailboxEntry>, MailboxError> {
        let mb = self.boxes.entry(user.to_ascii_lowercase()).or_default();
        match mb.lock {
            Some(held) if held != token => Err(MailboxError::InUse(user.to_string())),
            _ => {
                mb.lock = Some(token);
                Ok(mb.entries.clone())
            }
        }
    }

    /// Release the lock if `token` holds it; otherwise nothing happens.
    pub fn unlock(&mut self, user: &str, token: LockToken) {
        if let Some(mb) = self.boxes.get_mut(&user.to_ascii_lowercase()) {
            if mb.lock == Some(token) {
                mb.lock = None;
            }
        }
    }

    /// Check that `token` still holds the lock (before tombstoning).
    pub fn check_lock(&self, user: &str, token: LockToken) -> Result<(), MailboxError> {
        match self.boxes.get(&user.to_ascii_lowercase()) {
            Some(mb) if mb.lock == Some(token) => Ok(()),
            _ => Err(MailboxError::NotLocked(user.to_string())),
        }
    }

    /// Drop the given messages (their tombstones are durable) and release
    /// the lock.
    pub fn remove_and_unlock(&mut self, user: &str, token: LockToken, gone: &[(SpoolRef, u16)]) {
        if let Some(mb) = self.boxes.get_mut(&user.to_ascii_lowercase()) {
            mb.entries.retain(|e| !gone.contains(&(e.at, e.recipient)));
            if mb.entries.capacity() > 4 * mb.entries.len() + 64 {
                mb.entries.shrink_to_fit();
            }
            mb.bytes = mb.entries.iter().map(|e| e.size).sum();
            if mb.lock == Some(token) {
                mb.lock = None;
            }
        }
    }

    /// The entries of `user`'s mailbox, locked or not (for `mailbox list`).
    pub fn entries(&self, user: &str) -> &[MailboxEntry] {
        self.boxes.get(&user.to_ascii_lowercase()).map_or(&[], |mb| &mb.entries)
    }

    /// Octets in `user`'s mailbox (what the quota compares).
    pub fn size(&self, user: &str) -> u64 {
        self.boxes.get(&user.to_ascii_lowercase()).map_or(0, |mb| mb.bytes)
    }

    /// Every user with a mailbox here and its size.
    pub fn sizes(&self) -> impl Iterator<Item = (&str, u64)> {
        self.boxes.iter().map(|(u, mb)| (u.as_str(), mb.bytes))
    }

    /// Users whose mailbox is not locked and holds a message `older`
    /// says is expired, with those messages (for the retention sweep).
    pub fn expired(&self, mut older: impl FnMut(&str, &MailboxEntry) -> bool) -> Vec<(String, Vec<MailboxEntry>)> {
        let mut out = Vec::new();
        for (user, mb) in &self.boxes {
            if mb.lock.is_some() {
                continue; // a POP3 session is in it; next sweep
            }
            let old: Vec<MailboxEntry> = mb.entries.iter().filter(|e| older(user, e)).cloned().collect();
            if !old.is_empty() {
                out.push((user.clone(), old));
            }
        }
        out
    }

    /// Compaction moved records: point entries at their new places.
    pub fn relocate(&mut self, moves: &HashMap<SpoolRef, SpoolRef>) {
        for mb in self.boxes.values_mut() {
            for e in &mut mb.entries {
                if let Some(new) = moves.get(&e.at) {
                    e.at = *new;
                }
            }
        }
    }

    /// Messages in all mailboxes of this core.
    pub fn total(&self) -> usize {
        self.boxes.values().map(|mb| mb.entries.len()).sum()
    }

    /// Number of messages in `user`'s mailbox.
    pub fn count(&self, user: &str) -> usize {
        self.boxes.get(&user.to_ascii_lowercase()).map_or(0, |mb| mb.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u32, t: u64) -> MailboxEntry {
        let at = SpoolRef { dir: 0, segment: 0, offset: n * 64 };
        MailboxEntry::new(at, 0, QueueId(n as u64), t, 100, Some(Trace { sender: "a@b", delivered_to: "x@y" }))
    }
    const T1: LockToken = LockToken { core: 0, session: 1 };

    /// Issue 13: the index holds one entry per stored message, so each is
    /// kept to a fixed 40 bytes with nothing on the heap.
    #[test]
    fn an_entry_is_40_bytes_and_owns_no_heap() {
        assert!(std::mem::size_of::<MailboxEntry>() <= 40, "{}", std::mem::size_of::<MailboxEntry>());
        // No field can own heap memory: every one is Copy.
        fn copy<T: Copy>(_: T) {}
        let e = entry(1, 1);
        copy((e.at, e.recipient, e.trace_len, e.queue_id, e.received_at_ms, e.size));
    }

    #[test]
    fn trace_fields_come_from_the_record_and_match_the_served_size() {
        use crate::spool::{MessageExt, RecipientEntry, Route};
        let record = MessageRecord {
            queue_id: QueueId(7),
            received_at_ms: 1,
            client: "192.0.2.1".into(),
            helo: "client.test".into(),
            sender: "bob@example.org".into(),
            recipients: vec![
                RecipientEntry::new("carol@example.test", Route::Local { user: "carol@example.test".into() }),
                RecipientEntry::new("alice+news@example.test", Route::Local { user: "alice@example.test".into() }),
            ],
            ext: MessageExt::default(),
            body: b"Subject: x\r\n\r\nhi\r\n",
        };
        let trace = Trace { sender: &record.sender, delivered_to: &record.recipients[1].address };
        let e = MailboxEntry::new(SpoolRef { dir: 0, segment: 1, offset: 8 }, 1, QueueId(7), 1, 17, Some(trace));
        let fields = e.trace_fields(&record);
        assert_eq!(fields, "Return-Path: <bob@example.org>\r\nDelivered-To: alice+news@example.test\r\n");
        assert_eq!(e.served_size(), 17 + fields.len() as u64);
        let imported = MailboxEntry::new(e.at, 1, QueueId(7), 1, 17, None);
        assert_eq!(imported.trace_fields(&record), "");
        assert_eq!(imported.served_size(), 17);
        let bounce = MessageRecord { sender: String::new(), ..record };
        let e = MailboxEntry::new(
            e.at,
            0,
            QueueId(7),
            1,
            17,
            Some(Trace { sender: "", delivered_to: "carol@example.test" }),
        );
        assert!(e.trace_fields(&bounce).starts_with("Return-Path: <>\r\n"));
    }
    const T2: LockToken = LockToken { core: 1, session: 7 };

    #[test]
    fn second_lock_gets_in_use_until_unlocked() {
        let mut ix = MailboxIndex::default();
        ix.deliver("Alice@x", entry(1, 10));
        assert_eq!(ix.lock("alice@x", T1).unwrap().len(), 1);
        assert_eq!(ix.lock("alice@x", T2), Err(MailboxError::InUse("alice@x".into())));
        ix.unlock("alice@x", T2); // not the holder: no effect
        assert!(ix.lock("alice@x", T2).is_err());
        ix.unlock("alice@x", T1);
        assert!(ix.lock("alice@x", T2).is_ok());
    }

    #[test]
    fn deliveries_during_a_session_are_not_in_its_snapshot() {
        let mut ix = MailboxIndex::default();
        ix.deliver("a@x", entry(1, 10));
        let snap = ix.lock("a@x", T1).unwrap();
        ix.deliver("a@x", entry(2, 20));
        assert_eq!(snap.len(), 1);
        assert_eq!(ix.count("a@x"), 2);
    }

    #[test]
    fn remove_drops_exactly_the_named_entries_and_unlocks() {
        let mut ix = MailboxIndex::default();
        for n in 1..=3 {
            ix.deliver("a@x", entry(n, n as u64));
        }
        ix.lock("a@x", T1).unwrap();
        let e2 = entry(2, 2);
        assert!(ix.check_lock("a@x", T1).is_ok());
        assert!(ix.check_lock("a@x", T2).is_err());
        ix.remove_and_unlock("a@x", T1, &[(e2.at, 0)]);
        let left = ix.lock("a@x", T2).unwrap();
        assert_eq!(left.iter().map(|e| e.queue_id.0).collect::<Vec<_>>(), vec![1, 3]);
    }

    #[test]
    fn sizes_and_expiry_skip_locked_mailboxes() {
        let mut ix = MailboxIndex::default();
        ix.deliver("a@x", entry(1, 10));
        ix.deliver("a@x", entry(2, 50));
        ix.deliver("b@x", entry(3, 10));
        assert_eq!(ix.size("A@x"), 200);
        assert_eq!(ix.entries("a@x").len(), 2);
        ix.lock("b@x", T1).unwrap();
        let expired = ix.expired(|_, e| e.received_at_ms < 20);
        assert_eq!(expired.len(), 1, "b@x is locked");
        assert_eq!(expired[0].0, "a@x");
        assert_eq!(expired[0].1.iter().map(|e| e.queue_id.0).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn recovered_entries_sort_into_arrival_order_and_uids_are_stable() {
        let mut ix = MailboxIndex::default();
        ix.deliver("a@x", entry(9, 30));
        ix.deliver("a@x", entry(4, 10));
        ix.sort_by_arrival();
        let l = ix.lock("a@x", T1).unwrap();
        assert_eq!(l[0].queue_id.0, 4);
        assert_eq!(l[0].uid(), entry(4, 10).uid());
    }
}
