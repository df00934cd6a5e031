//! Payload codecs for the record kinds that have one: messages, tombstones
//! and recipient states.
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
//! 1 remote), user-or-domain str | [extensions] | body: every remaining byte
//! ```
//!
//! Bit 15 of the recipient count ([`EXT_FLAG`]) says an extension block
//! follows the recipients (so at most 32767 recipients, and every message
//! written before extensions existed still decodes as it was):
//!
//! ```text
//! block length u32 | entries: tag u8 | length u16 | value
//! ```
//!
//! | tag | value | meaning |
//! |-----|-------|---------|
//! | 1 | empty | `SMTPUTF8` was given (RFC 6531) |
//! | 2 | empty | `REQUIRETLS` was given (RFC 8689) |
//! | 3 | u8: 1 8BITMIME, 2 BINARYMIME | `BODY=` (absent: 7BIT) |
//! | 4 | u8: 1 FULL, 2 HDRS | DSN `RET=` (RFC 3461) |
//! | 5 | UTF-8 | DSN `ENVID=`, xtext-decoded |
//! | 16 | recipient u16, notify u8 | DSN `NOTIFY=` (bits: 1 never, 2 success, 4 failure, 8 delay) |
//! | 17 | recipient u16, UTF-8 | DSN `ORCPT=` as `addr-type;address`, xtext-decoded |
//!
//! An unknown tag is refused, as an unknown record kind is: a spool written
//! by a newer version is not half-read by an older one. The encoder writes
//! the message tags in tag order, then each recipient's (by index, then
//! tag), and omits defaults, so a message without extensions has no block;
//! the decoder takes only that form (each entry once, in that order, a
//! non-empty block), so what decodes encodes back to the same bytes.
//!
//! # Tombstone payload (13 bytes, or more with `via`)
//!
//! ```text
//! target dir u16 | target segment u32 | target offset u32 | recipient u16 | outcome u8
//! | [via str]
//! ```
//!
//! `via` (optional, only on `Delivered`): the host that took the recipient,
//! as the logs name it (`mx.example.net[192.0.2.1:25]`,
//! `lmtp:unix:/run/dovecot/lmtp`), for `ringmail trace`.
//!
//! # Recipient state payload (35 bytes + last error)
//!
//! ```text
//! target dir u16 | target segment u32 | target offset u32 | recipient u16
//! | seq u64 | attempts u32 | next_attempt_ms u64 | flags u8 (bit 0 warned,
//! bit 1 held, others 0) | last_error str
//! ```
//!
//! Every byte is accounted for: a payload that is shorter or longer than its
//! fields say does not decode.

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
    /// The DSN parameters of its `RCPT TO` (RFC 3461); default when none.
    pub dsn: RecipientDsn,
}

impl RecipientEntry {
    /// A recipient without DSN parameters.
    pub fn new(address: impl Into<String>, route: Route) -> RecipientEntry {
        RecipientEntry { address: address.into(), route, dsn: RecipientDsn::default() }
    }
}

/// DSN `NOTIFY=` of one recipient (RFC 3461 §4.1). All false: not given,
/// which means failure and delay notices, as if `NOTIFY=FAILURE,DELAY`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Notify {
    /// `NEVER`: no notice at all (excludes the others).
    pub never: bool,
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

impl Notify {
    const NEVER: u8 = 1;
    const SUCCESS: u8 = 2;
    const FAILURE: u8 = 4;
    const DELAY: u8 = 8;

    /// True when `NOTIFY=` was given.
    pub fn is_given(self) -> bool {
        self != Notify::default()
    }

    /// Whether a failure notice is wanted (also when `NOTIFY` was not given).
    pub fn wants_failure(self) -> bool {
        !self.is_given() || self.failure
    }

    /// Whether a delay notice is wanted (also when `NOTIFY` was not given).
    pub fn wants_delay(self) -> bool {
        !self.is_given() || self.delay
    }

    fn to_byte(self) -> u8 {
        (u8::from(self.never) * Self::NEVER)
            | (u8::from(self.success) * Self::SUCCESS)
            | (u8::from(self.failure) * Self::FAILURE)
            | (u8::from(self.delay) * Self::DELAY)
    }

    fn from_byte(b: u8) -> Option<Notify> {
        if b == 0 || b & !0x0f != 0 {
            return None;
        }
        Some(Notify {
            never: b & Self::NEVER != 0,
            success: b & Self::SUCCESS != 0,
            failure: b & Self::FAILURE != 0,
            delay: b & Self::DELAY != 0,
        })
    }
}

/// The DSN parameters of one recipient (RFC 3461 §4).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RecipientDsn {
    pub notify: Notify,
    /// `ORCPT=` as `addr-type;address`, xtext-decoded.
    pub orcpt: Option<String>,
}

/// `BODY=` of a message (RFC 6152, RFC 3030).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BodyKind {
    #[default]
    SevenBit,
    EightBitMime,
    BinaryMime,
}

/// DSN `RET=` (RFC 3461 §4.3): what a failure notice returns of the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DsnRet {
    Full,
    Headers,
}

/// Message-wide ESMTP parameters that travel with a message in the spool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MessageExt {
    /// `SMTPUTF8` was given: addresses or headers may be UTF-8.
    pub smtputf8: bool,
    /// `REQUIRETLS` was given: deliver only over verified TLS.
    pub requiretls: bool,
    pub body: BodyKind,
    pub ret: Option<DsnRet>,
    /// `ENVID=`, xtext-decoded.
    pub envid: Option<String>,
}

/// Bit 15 of the stored recipient count: an extension block follows.
pub const EXT_FLAG: u16 = 0x8000;
/// Most recipients a message can store (the count's low 15 bits).
pub const MAX_RECIPIENTS: usize = 0x7fff;

const TAG_SMTPUTF8: u8 = 1;
const TAG_REQUIRETLS: u8 = 2;
const TAG_BODY: u8 = 3;
const TAG_RET: u8 = 4;
const TAG_ENVID: u8 = 5;
const TAG_NOTIFY: u8 = 16;
const TAG_ORCPT: u8 = 17;

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
    /// ESMTP parameters of the transaction (SMTPUTF8, BODY, DSN …).
    pub ext: MessageExt,
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

/// The delivery state of one recipient that is not final yet: deferred
/// after a temporary failure, or held by the operator.
///
/// Written by the relay engine without waiting for durability, and never
/// keeping a segment alive (see `ledger`): recovery may therefore return an
/// older state than the last one written, or none. Callers must be content
/// with that: a retry comes sooner, and a `warned` or `held` flag set in a
/// lost state is not set after the restart.
///
/// Of several states for one recipient, recovery keeps the one with the
/// highest [`seq`](Self::seq); on equal `seq`, the one written last in
/// (dir, segment, offset) order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecipientState {
    /// The message record this is about (possibly in another spool directory).
    pub target: SpoolRef,
    /// Index into the message's recipients.
    pub recipient: u16,
    /// Orders the states of one recipient: each new state must have a `seq`
    /// greater than every earlier state of that recipient (the previous
    /// one, in memory or recovered, plus one). Stored, because the states
    /// of one recipient may lie in several spool directories (its owner core
    /// changes when the core count does), and because no other field is
    /// monotonic: a hold, a release or a flush changes neither `attempts`
    /// nor moves `next_attempt_ms` forward.
    pub seq: u64,
    /// Delivery attempts so far (drives the retry schedule).
    pub attempts: u32,
    /// When to try again (ms since the Unix epoch).
    pub next_attempt_ms: u64,
    /// A delay notice was sent already.
    pub warned: bool,
    /// Held by the operator: not tried until released.
    pub held: bool,
    /// The remote reply or local reason of the last temporary failure, at
    /// most [`LAST_ERROR_MAX_LEN`] bytes.
    pub last_error: String,
}

/// Longest [`RecipientState::last_error`] that can be stored, in bytes.
pub const LAST_ERROR_MAX_LEN: usize = u16::MAX as usize;

/// Size of a recipient state payload without its `last_error` bytes (the
/// length prefix included).
const RECIPIENT_STATE_FIXED_LEN: usize = 35;
const WARNED: u8 = 1;
const HELD: u8 = 2;

/// Why a message cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A string field is longer than its u16 length prefix allows.
    #[error("{field} is {len} bytes, at most 65535 can be stored")]
    FieldTooLong { field: &'static str, len: usize },
    /// More recipients than the stored count can name.
    #[error("{count} recipients, at most 32767 can be stored")]
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
    /// A recipient state's flags byte has bits this version does not know.
    #[error("unknown recipient state flags {flags:#04x}")]
    UnknownStateFlags { flags: u8 },
    /// A suppression record's flags byte has bits this version does not know.
    #[error("unknown suppression flags {flags:#04x}")]
    UnknownSuppressionFlags { flags: u8 },
    /// An extension tag this version does not know.
    #[error("unknown extension tag {tag}")]
    UnknownExtension { tag: u8 },
    /// An extension's value does not fit its tag.
    #[error("extension {tag} has a bad value")]
    BadExtension { tag: u8 },
    /// An extension entry repeated or out of the encoder's order.
    #[error("extension {tag} repeated or out of order")]
    ExtensionOrder { tag: u8 },
    /// The extension flag is set but the block is empty.
    #[error("empty extension block")]
    EmptyExtensionBlock,
    /// A payload is longer (or, for a fixed size, shorter) than its fields.
    #[error("payload is {len} bytes, expected {expected}")]
    WrongLength { len: usize, expected: usize },
}

fn put_str(out: &mut Vec<u8>, field: &'static str, s: &str) -> Result<(), EncodeError> {
    let len = u16::try_from(s.len()).map_err(|_| EncodeError::FieldTooLong { field, len: s.len() })?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Encodes a message's envelope; the record payload is the envelope followed
/// by `msg.body`, passed as a second part:
/// `spool.append(RecordKind::Message, &[&envelope, msg.body])`.
pub fn encode_message_envelope(msg: &MessageRecord<'_>) -> Result<Vec<u8>, EncodeError> {
    if msg.recipients.len() > MAX_RECIPIENTS {
        return Err(EncodeError::TooManyRecipients { count: msg.recipients.len() });
    }
    let ext = encode_ext(msg)?;
    let count = msg.recipients.len() as u16 | if ext.is_empty() { 0 } else { EXT_FLAG };
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
    if !ext.is_empty() {
        out.extend_from_slice(&(ext.len() as u32).to_le_bytes());
        out.extend_from_slice(&ext);
    }
    Ok(out)
}

/// The extension entries of `msg`, in tag order; empty when every field
/// has its default.
fn encode_ext(msg: &MessageRecord<'_>) -> Result<Vec<u8>, EncodeError> {
    fn entry(out: &mut Vec<u8>, tag: u8, value: &[&[u8]]) -> Result<(), EncodeError> {
        let len: usize = value.iter().map(|v| v.len()).sum();
        let len16 = u16::try_from(len).map_err(|_| EncodeError::FieldTooLong { field: "extension", len })?;
        out.push(tag);
        out.extend_from_slice(&len16.to_le_bytes());
        for v in value {
            out.extend_from_slice(v);
        }
        Ok(())
    }
    let e = &msg.ext;
    let mut out = Vec::new();
    if e.smtputf8 {
        entry(&mut out, TAG_SMTPUTF8, &[])?;
    }
    if e.requiretls {
        entry(&mut out, TAG_REQUIRETLS, &[])?;
    }
    match e.body {
        BodyKind::SevenBit => {}
        BodyKind::EightBitMime => entry(&mut out, TAG_BODY, &[&[1]])?,
        BodyKind::BinaryMime => entry(&mut out, TAG_BODY, &[&[2]])?,
    }
    match e.ret {
        None => {}
        Some(DsnRet::Full) => entry(&mut out, TAG_RET, &[&[1]])?,
        Some(DsnRet::Headers) => entry(&mut out, TAG_RET, &[&[2]])?,
    }
    if let Some(envid) = &e.envid {
        entry(&mut out, TAG_ENVID, &[envid.as_bytes()])?;
    }
    for (i, r) in msg.recipients.iter().enumerate() {
        let index = (i as u16).to_le_bytes();
        if r.dsn.notify.is_given() {
            entry(&mut out, TAG_NOTIFY, &[&index, &[r.dsn.notify.to_byte()]])?;
        }
        if let Some(orcpt) = &r.dsn.orcpt {
            entry(&mut out, TAG_ORCPT, &[&index, orcpt.as_bytes()])?;
        }
    }
    Ok(out)
}

/// Applies the extension block `block` to `ext` and `recipients`.
fn decode_ext(block: &[u8], ext: &mut MessageExt, recipients: &mut [RecipientEntry]) -> Result<(), DecodeError> {
    if block.is_empty() {
        // The encoder sets the flag only with something to say.
        return Err(DecodeError::EmptyExtensionBlock);
    }
    let mut r = Reader { rest: block };
    // Entries come in the encoder's order: message tags, then per
    // recipient (by index) its tags, each key once; anything else would
    // not encode back to the same bytes.
    let mut last: Option<(u32, u8)> = None;
    while !r.rest.is_empty() {
        let tag = r.u8("extension tag")?;
        let len = r.u16("extension length")?;
        let value = r.take(usize::from(len), "extension value")?;
        let bad = DecodeError::BadExtension { tag };
        let slot = match tag {
            TAG_SMTPUTF8 | TAG_REQUIRETLS | TAG_BODY | TAG_RET | TAG_ENVID => 0,
            TAG_NOTIFY | TAG_ORCPT => match value {
                [lo, hi, ..] => 1 + u32::from(u16::from_le_bytes([*lo, *hi])),
                _ => return Err(bad),
            },
            _ => return Err(DecodeError::UnknownExtension { tag }),
        };
        if last.is_some_and(|l| l >= (slot, tag)) {
            return Err(DecodeError::ExtensionOrder { tag });
        }
        last = Some((slot, tag));
        match (tag, value) {
            (TAG_SMTPUTF8, []) => ext.smtputf8 = true,
            (TAG_REQUIRETLS, []) => ext.requiretls = true,
            (TAG_BODY, [1]) => ext.body = BodyKind::EightBitMime,
            (TAG_BODY, [2]) => ext.body = BodyKind::BinaryMime,
            (TAG_RET, [1]) => ext.ret = Some(DsnRet::Full),
            (TAG_RET, [2]) => ext.ret = Some(DsnRet::Headers),
            (TAG_ENVID, v) => ext.envid = Some(std::str::from_utf8(v).map_err(|_| bad)?.to_owned()),
            (TAG_NOTIFY | TAG_ORCPT, [_, _, rest @ ..]) => {
                let recipient = recipients.get_mut((slot - 1) as usize).ok_or(bad.clone())?;
                match (tag, rest) {
                    (TAG_NOTIFY, [b]) => recipient.dsn.notify = Notify::from_byte(*b).ok_or(bad)?,
                    (TAG_ORCPT, text) => {
                        recipient.dsn.orcpt = Some(std::str::from_utf8(text).map_err(|_| bad)?.to_owned())
                    }
                    _ => return Err(bad),
                }
            }
            _ => return Err(bad),
        }
    }
    Ok(())
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
        self.str(field).map(str::to_owned)
    }

    fn str(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let len = self.u16(field)?;
        let bytes = self.take(usize::from(len), field)?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 { field })
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
    let stored_count = r.u16("recipient count")?;
    let count = stored_count & !EXT_FLAG;
    // Each recipient takes at least 5 bytes: bound the allocation by the input.
    let mut recipients = Vec::with_capacity(usize::from(count).min(r.rest.len() / 5));
    for _ in 0..count {
        let address = r.string("recipient address")?;
        let route = match r.u8("recipient route")? {
            0 => Route::Local { user: r.string("recipient route")? },
            1 => Route::Remote { domain: r.string("recipient route")? },
            tag => return Err(DecodeError::UnknownRoute { tag }),
        };
        recipients.push(RecipientEntry::new(address, route));
    }
    let mut ext = MessageExt::default();
    if stored_count & EXT_FLAG != 0 {
        let len = r.u32("extension block length")?;
        let block = r.take(len as usize, "extension block")?;
        decode_ext(block, &mut ext, &mut recipients)?;
    }
    Ok(MessageRecord { queue_id, received_at_ms, client, helo, sender, recipients, ext, body: r.rest })
}

/// The body of a message payload, without decoding its envelope: no
/// string or recipient list is allocated (what a signature asked ahead
/// needs, `outbound::sign_ahead`). The envelope's strings and routes are
/// checked as [`decode_message`] checks them; an extension block is
/// skipped by its length, not read (the attempt decodes the record whole
/// and reports a bad one).
pub fn message_body(payload: &[u8]) -> Result<&[u8], DecodeError> {
    let mut r = Reader { rest: payload };
    r.take(16, "queue id and received at")?;
    for field in ["client", "helo", "sender"] {
        r.str(field)?;
    }
    let stored_count = r.u16("recipient count")?;
    for _ in 0..stored_count & !EXT_FLAG {
        r.str("recipient address")?;
        match r.u8("recipient route")? {
            0 | 1 => r.str("recipient route")?,
            tag => return Err(DecodeError::UnknownRoute { tag }),
        };
    }
    if stored_count & EXT_FLAG != 0 {
        let len = r.u32("extension block length")?;
        r.take(len as usize, "extension block")?;
    }
    Ok(r.rest)
}

/// The body of a `Moved` payload's message (see [`message_body`]).
pub fn moved_body(payload: &[u8]) -> Result<&[u8], DecodeError> {
    let mut r = Reader { rest: payload };
    r.take(10, "old record")?;
    let n = r.u16("done count")?;
    r.take(2 * usize::from(n), "done recipient")?;
    message_body(r.rest)
}

/// A message copied forward by compaction (`RecordKind::Moved`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Moved<'a> {
    /// The copy this one replaces: every recipient of it is final now.
    pub old: SpoolRef,
    /// Recipients that were final already when it moved (final here too).
    pub done: Vec<u16>,
    /// The message, as its old record held it (same queue id, recipients,
    /// body).
    pub message: MessageRecord<'a>,
}

/// The head of a `Moved` payload; the old record's message payload
/// follows it verbatim.
pub fn encode_moved_head(old: SpoolRef, done: &[u16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + 2 * done.len());
    out.extend_from_slice(&old.dir.to_le_bytes());
    out.extend_from_slice(&old.segment.to_le_bytes());
    out.extend_from_slice(&old.offset.to_le_bytes());
    out.extend_from_slice(&(done.len() as u16).to_le_bytes());
    for d in done {
        out.extend_from_slice(&d.to_le_bytes());
    }
    out
}

/// Decodes a `Moved` payload; the message borrows from `payload`.
pub fn decode_moved(payload: &[u8]) -> Result<Moved<'_>, DecodeError> {
    let mut r = Reader { rest: payload };
    let old = SpoolRef { dir: r.u16("old dir")?, segment: r.u32("old segment")?, offset: r.u32("old offset")? };
    let n = r.u16("done count")?;
    let mut done = Vec::with_capacity(usize::from(n).min(r.rest.len() / 2));
    for _ in 0..n {
        done.push(r.u16("done recipient")?);
    }
    let message = decode_message(r.rest)?;
    Ok(Moved { old, done, message })
}

/// The message in a `Message` or `Moved` record's payload.
pub fn decode_any_message(kind: super::RecordKind, payload: &[u8]) -> Option<MessageRecord<'_>> {
    match kind {
        super::RecordKind::Message => decode_message(payload).ok(),
        super::RecordKind::Moved => decode_moved(payload).ok().map(|m| m.message),
        _ => None,
    }
}

/// Encodes a tombstone payload that names the host a delivered recipient
/// went to (see the module docs); `via` is cut to [`MAX_VIA_LEN`] bytes at
/// a character boundary.
pub fn encode_tombstone_via(t: &Tombstone, via: &str) -> Vec<u8> {
    let mut end = via.len().min(MAX_VIA_LEN);
    while !via.is_char_boundary(end) {
        end -= 1;
    }
    let via = &via[..end];
    let mut out = Vec::with_capacity(TOMBSTONE_LEN + 2 + via.len());
    out.extend_from_slice(&encode_tombstone(t));
    out.extend_from_slice(&(via.len() as u16).to_le_bytes());
    out.extend_from_slice(via.as_bytes());
    out
}

/// Longest `via` a tombstone keeps.
pub const MAX_VIA_LEN: usize = 512;

/// Decodes a tombstone payload and its `via`, if it has one.
pub fn decode_tombstone_via(payload: &[u8]) -> Result<(Tombstone, Option<&str>), DecodeError> {
    if payload.len() <= TOMBSTONE_LEN {
        return decode_tombstone(payload).map(|t| (t, None));
    }
    let t = decode_tombstone(&payload[..TOMBSTONE_LEN])?;
    let mut r = Reader { rest: &payload[TOMBSTONE_LEN..] };
    let len = r.u16("via")?;
    let via = r.take(usize::from(len), "via")?;
    if !r.rest.is_empty() {
        return Err(DecodeError::WrongLength { len: payload.len(), expected: TOMBSTONE_LEN + 2 + usize::from(len) });
    }
    if via.len() > MAX_VIA_LEN {
        return Err(DecodeError::WrongLength { len: payload.len(), expected: TOMBSTONE_LEN + 2 + MAX_VIA_LEN });
    }
    let via = std::str::from_utf8(via).map_err(|_| DecodeError::InvalidUtf8 { field: "via" })?;
    Ok((t, Some(via)))
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

/// Decodes a tombstone payload (its `via`, if any, is checked and left
/// out: see [`decode_tombstone_via`]).
pub fn decode_tombstone(payload: &[u8]) -> Result<Tombstone, DecodeError> {
    if payload.len() > TOMBSTONE_LEN {
        return decode_tombstone_via(payload).map(|(t, _)| t);
    }
    if payload.len() != TOMBSTONE_LEN {
        return Err(DecodeError::WrongLength { len: payload.len(), expected: TOMBSTONE_LEN });
    }
    let mut r = Reader { rest: payload };
    let target =
        SpoolRef { dir: r.u16("target dir")?, segment: r.u32("target segment")?, offset: r.u32("target offset")? };
    let recipient = r.u16("recipient")?;
    let tag = r.u8("outcome")?;
    let outcome = Outcome::from_byte(tag).ok_or(DecodeError::UnknownOutcome { tag })?;
    Ok(Tombstone { target, recipient, outcome })
}

/// Encodes a recipient state payload. Fails only when `last_error` is longer
/// than [`LAST_ERROR_MAX_LEN`].
pub fn encode_recipient_state(s: &RecipientState) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(RECIPIENT_STATE_FIXED_LEN + s.last_error.len());
    out.extend_from_slice(&s.target.dir.to_le_bytes());
    out.extend_from_slice(&s.target.segment.to_le_bytes());
    out.extend_from_slice(&s.target.offset.to_le_bytes());
    out.extend_from_slice(&s.recipient.to_le_bytes());
    out.extend_from_slice(&s.seq.to_le_bytes());
    out.extend_from_slice(&s.attempts.to_le_bytes());
    out.extend_from_slice(&s.next_attempt_ms.to_le_bytes());
    out.push(if s.warned { WARNED } else { 0 } | if s.held { HELD } else { 0 });
    put_str(&mut out, "last error", &s.last_error)?;
    Ok(out)
}

/// Decodes a recipient state payload. Trailing bytes are an error.
pub fn decode_recipient_state(payload: &[u8]) -> Result<RecipientState, DecodeError> {
    let mut r = Reader { rest: payload };
    let target =
        SpoolRef { dir: r.u16("target dir")?, segment: r.u32("target segment")?, offset: r.u32("target offset")? };
    let recipient = r.u16("recipient")?;
    let seq = r.u64("seq")?;
    let attempts = r.u32("attempts")?;
    let next_attempt_ms = r.u64("next attempt")?;
    let flags = r.u8("flags")?;
    if flags & !(WARNED | HELD) != 0 {
        return Err(DecodeError::UnknownStateFlags { flags });
    }
    let last_error = r.string("last error")?;
    if !r.rest.is_empty() {
        let expected = RECIPIENT_STATE_FIXED_LEN + last_error.len();
        return Err(DecodeError::WrongLength { len: payload.len(), expected });
    }
    Ok(RecipientState {
        target,
        recipient,
        seq,
        attempts,
        next_attempt_ms,
        warned: flags & WARNED != 0,
        held: flags & HELD != 0,
        last_error,
    })
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
