//! Payload codecs for the record kinds that have one: messages and tombstones.
//!
//! Pure functions. Encoding a message yields its envelope bytes and leaves the
//! body to be passed as a separate part, so the body is copied once, into the
//! write batch. Decoding borrows the body from the (mapped) record bytes.
//! Decoding never panics on arbitrary input.
//!
//! # Message payload (integers little-endian, strings = u16 length + UTF-8)
//!
//! ```text
//! queue_id u64 | received_at_ms u64 | client str | helo str | sender str
//! | recipient count u16 | per recipient: address str, route tag u8 (0 local,
//! 1 remote), user-or-domain str | body: every remaining byte
//! ```
//!
//! # Tombstone payload (13 bytes)
//!
//! ```text
//! target dir u16 | target segment u32 | target offset u32 | recipient u16 | outcome u8
//! ```

use super::ids::{QueueId, SpoolRef};

/// Where a recipient's mail goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// Into the mailbox of a local user.
    Local { user: String },
    /// Relayed to the mail servers of a domain.
    Remote { domain: String },
}

/// One `RCPT TO` of a message and where it is routed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecipientEntry {
    /// The address as given in `RCPT TO`.
    pub address: String,
    /// The routing decision taken when the message was accepted.
    pub route: Route,
}

/// A message as stored: envelope and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRecord<'a> {
    /// The id reported to the client and in logs.
    pub queue_id: QueueId,
    /// When the message was accepted (ms since the Unix epoch).
    pub received_at_ms: u64,
    /// The client's address as text, for `Received:` and logs.
    pub client: String,
    /// What the client said in HELO/EHLO.
    pub helo: String,
    /// `MAIL FROM` address; empty for the null sender (bounces).
    pub sender: String,
    /// The recipients, indexed by position (tombstones name the index).
    pub recipients: Vec<RecipientEntry>,
    /// The message content, borrowed from the record.
    pub body: &'a [u8],
}

/// The final fate of one recipient of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Removed by its user (POP3 DELE) or an administrator.
    Deleted,
    /// Handed to the next hop or the mailbox.
    Delivered,
    /// Failed permanently; a bounce was written.
    Bounced,
    /// Gave up after the queue lifetime.
    Expired,
}

impl Outcome {
    fn to_byte(self) -> u8 {
        match self {
            Outcome::Deleted => 0,
            Outcome::Delivered => 1,
            Outcome::Bounced => 2,
            Outcome::Expired => 3,
        }
    }

    fn from_byte(b: u8) -> Option<Outcome> {
        match b {
            0 => Some(Outcome::Deleted),
            1 => Some(Outcome::Delivered),
            2 => Some(Outcome::Bounced),
            3 => Some(Outcome::Expired),
            _ => None,
        }
    }
}

/// Recipient `recipient` of the message at `target` is final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tombstone {
    /// The message record this is about (possibly in another spool directory).
    pub target: SpoolRef,
    /// Index into the message's recipients.
    pub recipient: u16,
    /// What became of that recipient.
    pub outcome: Outcome,
}

/// Size of an encoded tombstone payload.
pub const TOMBSTONE_LEN: usize = 13;

/// Why a message cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A string field is longer than its u16 length prefix allows.
    #[error("{field} is {len} bytes, at most 65535 can be stored")]
    FieldTooLong { field: &'static str, len: usize },
    /// More recipients than a u16 index can name.
    #[error("{count} recipients, at most 65535 can be stored")]
    TooManyRecipients { count: usize },
}

/// Why a payload does not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload ended inside `field`.
    #[error("payload ends inside {field}")]
    Truncated { field: &'static str },
    /// A string field is not UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 { field: &'static str },
    /// A recipient's route tag is unknown.
    #[error("unknown route tag {tag}")]
    UnknownRoute { tag: u8 },
    /// A tombstone's outcome byte is unknown.
    #[error("unknown outcome {tag}")]
    UnknownOutcome { tag: u8 },
    /// A fixed-size payload has the wrong length.
    #[error("payload is {len} bytes, expected {expected}")]
    WrongLength { len: usize, expected: usize },
}

fn put_str(out: &mut Vec<u8>, field: &'static str, s: &str) -> Result<(), EncodeError> {
    let len = u16::try_from(s.len()).map_err(|_| EncodeError::FieldTooLong {
        field,
        len: s.len(),
    })?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Encodes a message's envelope; the record payload is the envelope followed
/// by `msg.body`, passed as a second part:
/// `spool.append(RecordKind::Message, &[&envelope, msg.body])`.
pub fn encode_message_envelope(msg: &MessageRecord<'_>) -> Result<Vec<u8>, EncodeError> {
    let count =
        u16::try_from(msg.recipients.len()).map_err(|_| EncodeError::TooManyRecipients {
            count: msg.recipients.len(),
        })?;
    let strings: usize = msg.client.len()
        + msg.helo.len()
        + msg.sender.len()
        + msg
            .recipients
            .iter()
            .map(|r| {
                r.address.len()
                    + match &r.route {
                        Route::Local { user } => user.len(),
                        Route::Remote { domain } => domain.len(),
                    }
            })
            .sum::<usize>();
    let mut out = Vec::with_capacity(16 + 8 + 2 + 5 * msg.recipients.len() + strings);
    out.extend_from_slice(&msg.queue_id.0.to_le_bytes());
    out.extend_from_slice(&msg.received_at_ms.to_le_bytes());
    put_str(&mut out, "client", &msg.client)?;
    put_str(&mut out, "helo", &msg.helo)?;
    put_str(&mut out, "sender", &msg.sender)?;
    out.extend_from_slice(&count.to_le_bytes());
    for r in &msg.recipients {
        put_str(&mut out, "recipient address", &r.address)?;
        let (tag, name) = match &r.route {
            Route::Local { user } => (0u8, user),
            Route::Remote { domain } => (1u8, domain),
        };
        out.push(tag);
        put_str(&mut out, "recipient route", name)?;
    }
    Ok(out)
}

/// Encodes a whole message payload into one buffer (tests, tools; the write
/// path uses [`encode_message_envelope`] to avoid copying the body twice).
pub fn encode_message(msg: &MessageRecord<'_>) -> Result<Vec<u8>, EncodeError> {
    let mut out = encode_message_envelope(msg)?;
    out.extend_from_slice(msg.body);
    Ok(out)
}

/// Reads fields off the front of a payload.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated { field });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, field)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, field)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let len = self.u16(field)?;
        let bytes = self.take(usize::from(len), field)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidUtf8 { field })
    }
}

/// Decodes a message payload; the body borrows from `payload`.
pub fn decode_message(payload: &[u8]) -> Result<MessageRecord<'_>, DecodeError> {
    let mut r = Reader { rest: payload };
    let queue_id = QueueId(r.u64("queue id")?);
    let received_at_ms = r.u64("received at")?;
    let client = r.string("client")?;
    let helo = r.string("helo")?;
    let sender = r.string("sender")?;
    let count = r.u16("recipient count")?;
    // Each recipient takes at least 5 bytes: bound the allocation by the input.
    let mut recipients = Vec::with_capacity(usize::from(count).min(r.rest.len() / 5));
    for _ in 0..count {
        let address = r.string("recipient address")?;
        let route = match r.u8("recipient route")? {
            0 => Route::Local {
                user: r.string("recipient route")?,
            },
            1 => Route::Remote {
                domain: r.string("recipient route")?,
            },
            tag => return Err(DecodeError::UnknownRoute { tag }),
        };
        recipients.push(RecipientEntry { address, route });
    }
    Ok(MessageRecord {
        queue_id,
        received_at_ms,
        client,
        helo,
        sender,
        recipients,
        body: r.rest,
    })
}

/// Encodes a tombstone payload.
pub fn encode_tombstone(t: &Tombstone) -> [u8; TOMBSTONE_LEN] {
    let mut out = [0u8; TOMBSTONE_LEN];
    out[0..2].copy_from_slice(&t.target.dir.to_le_bytes());
    out[2..6].copy_from_slice(&t.target.segment.to_le_bytes());
    out[6..10].copy_from_slice(&t.target.offset.to_le_bytes());
    out[10..12].copy_from_slice(&t.recipient.to_le_bytes());
    out[12] = t.outcome.to_byte();
    out
}

/// Decodes a tombstone payload.
pub fn decode_tombstone(payload: &[u8]) -> Result<Tombstone, DecodeError> {
    if payload.len() != TOMBSTONE_LEN {
        return Err(DecodeError::WrongLength {
            len: payload.len(),
            expected: TOMBSTONE_LEN,
        });
    }
    let mut r = Reader { rest: payload };
    let target = SpoolRef {
        dir: r.u16("target dir")?,
        segment: r.u32("target segment")?,
        offset: r.u32("target offset")?,
    };
    let recipient = r.u16("recipient")?;
    let tag = r.u8("outcome")?;
    let outcome = Outcome::from_byte(tag).ok_or(DecodeError::UnknownOutcome { tag })?;
    Ok(Tombstone {
        target,
        recipient,
        outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn sample(body: &[u8]) -> MessageRecord<'_> {
        MessageRecord {
            queue_id: QueueId(0x1234_5678_9abc_de01),
            received_at_ms: 1_700_000_000_123,
            client: "192.0.2.7".into(),
            helo: "mx.example.test".into(),
            sender: String::new(),
            recipients: vec![
                RecipientEntry {
                    address: "jane@example.test".into(),
                    route: Route::Local {
                        user: "jane".into(),
                    },
                },
                RecipientEntry {
                    address: "bob@elsewhere.test".into(),
                    route: Route::Remote {
                        domain: "elsewhere.test".into(),
                    },
                },
            ],
            body,
        }
    }

    #[test]
    fn message_round_trips_with_null_sender() {
        let msg = sample(b"Subject: hi\r\n\r\nbody\r\n");
        let bytes = encode_message(&msg).unwrap();
        assert_eq!(decode_message(&bytes).unwrap(), msg);
    }

    #[test]
    fn envelope_plus_body_parts_equal_whole_encoding() {
        let msg = sample(b"x");
        let mut parts = encode_message_envelope(&msg).unwrap();
        parts.extend_from_slice(msg.body);
        assert_eq!(parts, encode_message(&msg).unwrap());
    }

    #[test]
    fn empty_body_decodes_as_empty_slice() {
        let msg = sample(b"");
        let bytes = encode_message(&msg).unwrap();
        assert_eq!(decode_message(&bytes).unwrap().body, b"");
    }

    #[test]
    fn every_truncation_of_the_envelope_is_a_decode_error() {
        let msg = sample(b"");
        let bytes = encode_message(&msg).unwrap();
        for cut in 0..bytes.len() {
            assert!(
                matches!(
                    decode_message(&bytes[..cut]),
                    Err(DecodeError::Truncated { .. })
                ),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn bad_route_tag_and_bad_utf8_are_named() {
        let msg = sample(b"");
        let mut bytes = encode_message(&msg).unwrap();
        let tag_at = 16 + (2 + 9) + (2 + 15) + 2 + 2 + (2 + 17);
        assert_eq!(bytes[tag_at], 0);
        bytes[tag_at] = 9;
        assert_eq!(
            decode_message(&bytes),
            Err(DecodeError::UnknownRoute { tag: 9 })
        );
        let mut bytes = encode_message(&msg).unwrap();
        bytes[18] = 0xff;
        assert_eq!(
            decode_message(&bytes),
            Err(DecodeError::InvalidUtf8 { field: "client" })
        );
    }

    #[test]
    fn overlong_field_is_refused_at_encode() {
        let mut msg = sample(b"");
        msg.helo = "h".repeat(70_000);
        assert_eq!(
            encode_message_envelope(&msg),
            Err(EncodeError::FieldTooLong {
                field: "helo",
                len: 70_000
            })
        );
    }

    #[test]
    fn tombstone_round_trips_and_checks_length_and_outcome() {
        let t = Tombstone {
            target: SpoolRef {
                dir: 4,
                segment: 9,
                offset: 4096,
            },
            recipient: 3,
            outcome: Outcome::Bounced,
        };
        let bytes = encode_tombstone(&t);
        assert_eq!(decode_tombstone(&bytes), Ok(t));
        assert!(matches!(
            decode_tombstone(&bytes[..12]),
            Err(DecodeError::WrongLength { .. })
        ));
        let mut bad = bytes;
        bad[12] = 7;
        assert_eq!(
            decode_tombstone(&bad),
            Err(DecodeError::UnknownOutcome { tag: 7 })
        );
    }

    #[test]
    fn random_payloads_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let good = encode_message(&sample(b"body")).unwrap();
        for _ in 0..5000 {
            let mut bytes = if rng.gen_bool(0.5) {
                good.clone()
            } else {
                (0..rng.gen_range(0..100)).map(|_| rng.gen()).collect()
            };
            for _ in 0..rng.gen_range(0..4) {
                if !bytes.is_empty() {
                    let i = rng.gen_range(0..bytes.len());
                    bytes[i] = rng.gen();
                }
            }
            let _ = decode_message(&bytes);
            let _ = decode_tombstone(&bytes);
        }
    }
}
