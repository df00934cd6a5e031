//! The maildrop a logged-in session works on: the listing the driver
//! snapshotted at login, plus the deletion marks set by DELE.
//!
//! Owns: message numbering and deletion marks. Must not: delete anything
//! for real. Marks are only a wish list until QUIT hands them to the driver
//! (RFC 1939 §6: nothing is removed unless the session reaches UPDATE).

use super::command::MessageNumber;

/// One message of the snapshot the driver hands over at login. 32 bytes
/// and nothing on the heap for ringmail's own ids: a logged-in session
/// holds one per message for as long as it stays (issue 14's memory per
/// idle session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// The unique id UIDL reports: stable across sessions, 1 to 70
    /// characters in 0x21..=0x7E (RFC 1939 §7). The driver guarantees this.
    pub uid: Uid,
    /// Octets as stored (CRLF line ends, before dot-stuffing): what STAT,
    /// LIST and the RETR status line report.
    pub size: u64,
}

/// A UIDL id: up to [`Uid::INLINE`] bytes kept inline (ringmail's ids,
/// `QUEUEID.N`, are at most 22), longer ones boxed.
#[derive(Clone, PartialEq, Eq)]
pub enum Uid {
    Inline { len: u8, bytes: [u8; Uid::INLINE] },
    Boxed(Box<str>),
}

impl Uid {
    /// The longest id kept without an allocation.
    pub const INLINE: usize = 22;

    pub fn as_str(&self) -> &str {
        match self {
            // Built from a &str, whole: still valid UTF-8.
            Uid::Inline { len, bytes } => std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default(),
            Uid::Boxed(s) => s,
        }
    }
}

impl Uid {
    /// The id `write` writes (e.g. `|w| entry.write_uid(w)`), straight into
    /// the inline buffer when it fits: no allocation per listed message.
    pub fn written(write: impl FnOnce(&mut dyn std::fmt::Write) -> std::fmt::Result) -> Uid {
        let mut w = UidWriter { len: 0, bytes: [0; Uid::INLINE], spill: None };
        // Writing to memory fails only if `write` reports an error itself;
        // what was written so far is the id then.
        let _ = write(&mut w);
        match w.spill {
            Some(s) => Uid::Boxed(s.into()),
            // len <= INLINE (22) fits a u8.
            None => Uid::Inline { len: w.len as u8, bytes: w.bytes },
        }
    }
}

/// Fills an inline id, spilling into a `String` once it is too long.
struct UidWriter {
    len: usize,
    bytes: [u8; Uid::INLINE],
    spill: Option<String>,
}

impl std::fmt::Write for UidWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if let Some(spill) = &mut self.spill {
            spill.push_str(s);
        } else if self.len + s.len() <= Uid::INLINE {
            self.bytes[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
            self.len += s.len();
        } else {
            // Whole &strs were copied, so the prefix is valid UTF-8.
            let mut spill = String::from_utf8_lossy(&self.bytes[..self.len]).into_owned();
            spill.push_str(s);
            self.spill = Some(spill);
        }
        Ok(())
    }
}

impl From<&str> for Uid {
    fn from(s: &str) -> Uid {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= Uid::INLINE => {
                let mut bytes = [0u8; Uid::INLINE];
                bytes[..s.len()].copy_from_slice(s.as_bytes());
                Uid::Inline { len, bytes }
            }
            _ => Uid::Boxed(s.into()),
        }
    }
}

impl From<String> for Uid {
    fn from(s: String) -> Uid {
        Uid::from(s.as_str())
    }
}

impl std::fmt::Display for Uid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Uid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// What a DELE did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Deletion {
    Marked,
    AlreadyMarked,
    NoSuchMessage,
}

/// The snapshot plus deletion marks. Message `n` is `messages[n - 1]`, and
/// numbers never shift during a session, even after DELE.
#[derive(Debug)]
pub(super) struct Maildrop {
    /// The listing taken at login; never changes afterwards.
    messages: Vec<MessageInfo>,
    /// `deleted[i]` is set by DELE of message `i + 1` and cleared by RSET.
    deleted: Vec<bool>,
    /// Messages not marked, kept up to date so STAT on a large maildrop
    /// does not walk the whole listing.
    live_count: usize,
    /// Octets of the messages not marked (see `live_count`).
    live_octets: u64,
}

impl Maildrop {
    pub(super) fn new(messages: Vec<MessageInfo>) -> Maildrop {
        let live_octets = messages.iter().map(|m| m.size).sum();
        Maildrop { deleted: vec![false; messages.len()], live_count: messages.len(), live_octets, messages }
    }

    /// Number and total size of the messages not marked deleted (STAT).
    pub(super) fn stat(&self) -> (usize, u64) {
        (self.live_count, self.live_octets)
    }

    /// The 0-based index and listing entry of message `n`, or `None` when
    /// there is no such message or it is marked deleted (RFC 1939 treats
    /// both alike for LIST, UIDL, RETR and TOP).
    pub(super) fn get(&self, n: MessageNumber) -> Option<(usize, &MessageInfo)> {
        let index = n.index()?;
        match self.deleted.get(index) {
            Some(false) => self.messages.get(index).map(|m| (index, m)),
            _ => None,
        }
    }

    /// The messages not marked deleted, with their 1-based numbers, in order.
    pub(super) fn live(&self) -> impl Iterator<Item = (usize, &MessageInfo)> {
        self.messages
            .iter()
            .zip(&self.deleted)
            .enumerate()
            .filter(|(_, (_, deleted))| !**deleted)
            .map(|(index, (message, _))| (index + 1, message))
    }

    /// Marks message `n` deleted.
    pub(super) fn delete(&mut self, n: MessageNumber) -> Deletion {
        let Some(index) = n.index().filter(|&i| i < self.messages.len()) else {
            return Deletion::NoSuchMessage;
        };
        if self.deleted[index] {
            return Deletion::AlreadyMarked;
        }
        self.deleted[index] = true;
        self.live_count -= 1;
        self.live_octets -= self.messages[index].size;
        Deletion::Marked
    }

    /// Clears every deletion mark (RSET).
    pub(super) fn reset(&mut self) {
        self.deleted.fill(false);
        self.live_count = self.messages.len();
        self.live_octets = self.messages.iter().map(|m| m.size).sum();
    }

    /// Is the message at 0-based `index` marked deleted?
    pub(super) fn is_deleted(&self, index: usize) -> bool {
        self.deleted.get(index).copied().unwrap_or(false)
    }

    /// 0-based indices of the marked messages: ascending and distinct.
    pub(super) fn deleted_indices(&self) -> Vec<usize> {
        self.deleted.iter().enumerate().filter_map(|(index, &deleted)| deleted.then_some(index)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::command::{parse, Command};
    use super::*;

    fn number(text: &str) -> MessageNumber {
        match parse(format!("RETR {text}").as_bytes()) {
            Ok(Command::Retr(n)) => n,
            other => panic!("not a message number: {other:?}"),
        }
    }

    fn maildrop() -> Maildrop {
        Maildrop::new(vec![
            MessageInfo { uid: "a".into(), size: 10 },
            MessageInfo { uid: "b".into(), size: 20 },
            MessageInfo { uid: "c".into(), size: 30 },
        ])
    }

    #[test]
    fn a_listing_entry_is_32_bytes_and_ringmail_ids_stay_inline() {
        assert_eq!(std::mem::size_of::<MessageInfo>(), 32);
        let id = "0123456789ABCDEF.65535"; // the longest QUEUEID.N
        assert!(matches!(Uid::from(id), Uid::Inline { .. }));
        assert_eq!(Uid::from(id).to_string(), id);
        let long = "x".repeat(70);
        assert!(matches!(Uid::from(long.as_str()), Uid::Boxed(_)));
        assert_eq!(Uid::from(long.as_str()).as_str(), long);
        assert_eq!(Uid::from(""), Uid::from(String::new()));
        // Written in pieces: inline while it fits, boxed past it, the same
        // id either way.
        for n in [1, 21, 22, 23, 40] {
            let text = "x".repeat(n);
            let written = Uid::written(|w| {
                w.write_str(&text[..n / 2])?;
                w.write_str(&text[n / 2..])
            });
            assert_eq!(written, Uid::from(text.as_str()), "{n} bytes");
        }
    }

    #[test]
    fn stat_excludes_deleted_messages() {
        let mut drop = maildrop();
        assert_eq!(drop.stat(), (3, 60));
        assert_eq!(drop.delete(number("2")), Deletion::Marked);
        assert_eq!(drop.stat(), (2, 40));
    }

    #[test]
    fn deleting_twice_reports_already_marked_and_counts_once() {
        let mut drop = maildrop();
        drop.delete(number("1"));
        assert_eq!(drop.delete(number("1")), Deletion::AlreadyMarked);
        assert_eq!(drop.stat(), (2, 50));
    }

    #[test]
    fn out_of_range_numbers_name_no_message() {
        let mut drop = maildrop();
        for text in ["0", "4", "18446744073709551615", "99999999999999999999999"] {
            assert_eq!(drop.get(number(text)), None, "{text}");
            assert_eq!(drop.delete(number(text)), Deletion::NoSuchMessage, "{text}");
        }
    }

    #[test]
    fn deleted_messages_are_not_found_and_not_listed_but_keep_numbers() {
        let mut drop = maildrop();
        drop.delete(number("2"));
        assert_eq!(drop.get(number("2")), None);
        assert_eq!(drop.get(number("3")).map(|(i, m)| (i, m.size)), Some((2, 30)));
        let live: Vec<usize> = drop.live().map(|(n, _)| n).collect();
        assert_eq!(live, [1, 3]);
    }

    #[test]
    fn reset_unmarks_everything() {
        let mut drop = maildrop();
        drop.delete(number("1"));
        drop.delete(number("3"));
        drop.reset();
        assert_eq!(drop.stat(), (3, 60));
        assert!(drop.deleted_indices().is_empty());
    }

    #[test]
    fn deleted_indices_are_zero_based_and_ascending() {
        let mut drop = maildrop();
        drop.delete(number("3"));
        drop.delete(number("1"));
        assert_eq!(drop.deleted_indices(), [0, 2]);
    }
}
