//! A message envelope read in place: the fields a restart needs to route a
//! recovered message (queue id, times, sender, client, recipients and their
//! routes) borrowed from the envelope bytes a checkpoint holds, with no
//! string allocated per message (issue 13: a backlog's restart builds each
//! core's compact queue straight from the checkpoint).
//!
//! Same layout as `payload`'s message payload (see its module docs). An
//! envelope with an extension block is not read here ([`EnvelopeView::parse`]
//! returns None): the caller decodes it whole with `decode_message`, so
//! what this accepts is exactly what that accepts.

use super::ids::QueueId;
use super::payload::EXT_FLAG;

/// Where a recipient goes, borrowed (see `payload::Route`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteView<'a> {
    Local { user: &'a str },
    Remote { domain: &'a str },
}

/// A message envelope without an extension block, checked whole by
/// [`EnvelopeView::parse`].
#[derive(Clone, Copy, Debug)]
pub struct EnvelopeView<'a> {
    pub queue_id: QueueId,
    pub received_at_ms: u64,
    pub client: &'a str,
    pub helo: &'a str,
    pub sender: &'a str,
    count: u16,
    /// The recipients' bytes (and whatever follows them).
    recipients: &'a [u8],
}

impl<'a> EnvelopeView<'a> {
    /// The envelope at the start of `bytes` (what follows it is the body,
    /// as for `decode_message`). None if it does not decode or has an
    /// extension block.
    pub fn parse(bytes: &'a [u8]) -> Option<EnvelopeView<'a>> {
        let mut r = Bytes(bytes);
        let queue_id = QueueId(r.u64()?);
        let received_at_ms = r.u64()?;
        let client = r.str()?;
        let helo = r.str()?;
        let sender = r.str()?;
        let count = r.u16()?;
        if count & EXT_FLAG != 0 {
            return None;
        }
        let view = EnvelopeView { queue_id, received_at_ms, client, helo, sender, count, recipients: r.0 };
        // Checked once here, so that `recipients` yields every one.
        let mut rest = Bytes(r.0);
        for _ in 0..count {
            rest.recipient()?;
        }
        Some(view)
    }

    /// Number of recipients.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// The recipients in index order: (index, address, route).
    pub fn recipients(&self) -> impl Iterator<Item = (u16, &'a str, RouteView<'a>)> {
        let mut r = Bytes(self.recipients);
        (0..self.count).map_while(move |i| r.recipient().map(|(address, route)| (i, address, route)))
    }
}

/// Little-endian reads off the front of a slice.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let head = self.0.get(..n)?;
        self.0 = &self.0[n..];
        Some(head)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = self.u16()?;
        std::str::from_utf8(self.take(usize::from(len))?).ok()
    }

    fn recipient(&mut self) -> Option<(&'a str, RouteView<'a>)> {
        let address = self.str()?;
        let tag = *self.take(1)?.first()?;
        let name = self.str()?;
        let route = match tag {
            0 => RouteView::Local { user: name },
            1 => RouteView::Remote { domain: name },
            _ => return None,
        };
        Some((address, route))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::payload::{decode_message, encode_message_envelope, MessageExt, MessageRecord};
    use crate::spool::{RecipientEntry, Route};

    fn record(smtputf8: bool) -> MessageRecord<'static> {
        MessageRecord {
            queue_id: QueueId(77),
            received_at_ms: 1_765_000_000_000,
            client: "192.0.2.1".into(),
            helo: "client.example".into(),
            sender: "a@example.org".into(),
            recipients: vec![
                RecipientEntry::new("b@example.net", Route::Remote { domain: "example.net".into() }),
                RecipientEntry::new("alice@local.test", Route::Local { user: "alice".into() }),
            ],
            ext: MessageExt { smtputf8, ..MessageExt::default() },
            body: b"",
        }
    }

    #[test]
    fn reads_what_decode_message_reads() {
        let bytes = encode_message_envelope(&record(false)).unwrap();
        let view = EnvelopeView::parse(&bytes).unwrap();
        let full = decode_message(&bytes).unwrap();
        assert_eq!((view.queue_id, view.received_at_ms), (full.queue_id, full.received_at_ms));
        assert_eq!((view.client, view.helo, view.sender), (&*full.client, &*full.helo, &*full.sender));
        let back: Vec<RecipientEntry> = view
            .recipients()
            .map(|(_, address, route)| {
                let route = match route {
                    RouteView::Local { user } => Route::Local { user: user.into() },
                    RouteView::Remote { domain } => Route::Remote { domain: domain.into() },
                };
                RecipientEntry::new(address, route)
            })
            .collect();
        assert_eq!(back, full.recipients);
        assert_eq!(view.recipients().map(|(i, _, _)| i).collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn leaves_extensions_and_damage_to_the_full_decoder() {
        let ext = encode_message_envelope(&record(true)).unwrap();
        assert!(decode_message(&ext).is_ok());
        assert!(EnvelopeView::parse(&ext).is_none(), "an extension block: decoded whole");
        let bytes = encode_message_envelope(&record(false)).unwrap();
        for cut in 0..bytes.len() {
            let (view, full) = (EnvelopeView::parse(&bytes[..cut]), decode_message(&bytes[..cut]));
            assert_eq!(view.is_some(), full.is_ok(), "cut at {cut}");
        }
        let mut bad = bytes.clone();
        let address = bytes.windows(13).position(|w| w == b"b@example.net").unwrap();
        bad[address + 13] = 9; // the first recipient's route tag
        assert!(decode_message(&bytes).is_ok());
        assert!(EnvelopeView::parse(&bad).is_none() && decode_message(&bad).is_err());
    }
}
