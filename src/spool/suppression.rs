//! The payload codec of `RecordKind::Suppression`: an address that hard
//! bounced (or that the operator added) and must not be sent to until a
//! time. Pure; decoding never panics.
//!
//! # Payload (integers little-endian, strings = u16 length + UTF-8)
//!
//! ```text
//! flags u8 (bit 0: replaces is set) | replaces dir u16 | replaces segment u32
//! | replaces offset u32 | since_ms u64 | until_ms u64 | address str
//! | class str | reason str
//! ```
//!
//! # Liveness
//! A suppression record counts for the ledger like a message with one
//! recipient: live until a tombstone (recipient 0) makes it final, which
//! the owner writes when the entry is deleted, replaced or expires.
//! `replaces` is set only by compaction, which copies a live entry forward:
//! like a `Moved` record, the one record (one checksum) makes the copy live
//! and the old place final at once.

use super::ids::SpoolRef;
use super::payload::{DecodeError, EncodeError};

/// One suppression entry as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuppressionRecord {
    /// The suppressed address, lowercased.
    pub address: String,
    /// When it was suppressed (ms since the epoch); orders the records of
    /// one address (the latest wins).
    pub since_ms: u64,
    /// When the suppression ends (ms since the epoch).
    pub until_ms: u64,
    /// The bounce class that caused it (`invalid-recipient` ...), or
    /// `manual` for an operator's `suppression add`.
    pub class: String,
    /// The reply or reason, for `suppression list` (at most 1 KiB kept).
    pub reason: String,
    /// The record this one is a compaction copy of (final from now on).
    pub replaces: Option<SpoolRef>,
}

const HAS_REPLACES: u8 = 1;

fn put_str(out: &mut Vec<u8>, field: &'static str, s: &str) -> Result<(), EncodeError> {
    let len = u16::try_from(s.len()).map_err(|_| EncodeError::FieldTooLong { field, len: s.len() })?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Encodes a suppression payload; fails only on a string over 64 KiB.
pub fn encode_suppression(s: &SuppressionRecord) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(35 + s.address.len() + s.class.len() + s.reason.len());
    let r = s.replaces.unwrap_or(SpoolRef { dir: 0, segment: 0, offset: 0 });
    out.push(if s.replaces.is_some() { HAS_REPLACES } else { 0 });
    out.extend_from_slice(&r.dir.to_le_bytes());
    out.extend_from_slice(&r.segment.to_le_bytes());
    out.extend_from_slice(&r.offset.to_le_bytes());
    out.extend_from_slice(&s.since_ms.to_le_bytes());
    out.extend_from_slice(&s.until_ms.to_le_bytes());
    put_str(&mut out, "address", &s.address)?;
    put_str(&mut out, "class", &s.class)?;
    put_str(&mut out, "reason", &s.reason)?;
    Ok(out)
}

fn take<'a>(rest: &mut &'a [u8], n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
    if rest.len() < n {
        return Err(DecodeError::Truncated { field });
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn string(rest: &mut &[u8], field: &'static str) -> Result<String, DecodeError> {
    let len = take(rest, 2, field)?;
    let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
    let bytes = take(rest, len, field)?;
    std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| DecodeError::InvalidUtf8 { field })
}

/// Decodes a suppression payload. Unknown flag bits and trailing bytes
/// are errors.
pub fn decode_suppression(payload: &[u8]) -> Result<SuppressionRecord, DecodeError> {
    let mut rest = payload;
    let flags = take(&mut rest, 1, "flags")?[0];
    if flags & !HAS_REPLACES != 0 {
        return Err(DecodeError::UnknownSuppressionFlags { flags });
    }
    let r = take(&mut rest, 10, "replaces")?;
    let replaces = SpoolRef {
        dir: u16::from_le_bytes([r[0], r[1]]),
        segment: u32::from_le_bytes([r[2], r[3], r[4], r[5]]),
        offset: u32::from_le_bytes([r[6], r[7], r[8], r[9]]),
    };
    let mut u64_field = |field| -> Result<u64, DecodeError> {
        let b = take(&mut rest, 8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    };
    let since_ms = u64_field("since")?;
    let until_ms = u64_field("until")?;
    let address = string(&mut rest, "address")?;
    let class = string(&mut rest, "class")?;
    let reason = string(&mut rest, "reason")?;
    if !rest.is_empty() {
        let expected = payload.len() - rest.len();
        return Err(DecodeError::WrongLength { len: payload.len(), expected });
    }
    Ok(SuppressionRecord {
        address,
        since_ms,
        until_ms,
        class,
        reason,
        replaces: (flags & HAS_REPLACES != 0).then_some(replaces),
    })
}

/// The payload of a compaction copy of the record `payload` found at
/// `old`: the same entry, naming `old` as the record it replaces.
pub fn copy_replacing(payload: &[u8], old: SpoolRef) -> Result<Vec<u8>, DecodeError> {
    decode_suppression(payload)?;
    let mut out = payload.to_vec();
    out[0] |= HAS_REPLACES;
    out[1..3].copy_from_slice(&old.dir.to_le_bytes());
    out[3..7].copy_from_slice(&old.segment.to_le_bytes());
    out[7..11].copy_from_slice(&old.offset.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(replaces: Option<SpoolRef>) -> SuppressionRecord {
        SuppressionRecord {
            address: "nobody@remote.test".into(),
            since_ms: 1_700_000_000_000,
            until_ms: 1_702_592_000_000,
            class: "invalid-recipient".into(),
            reason: "550 5.1.1 no such user".into(),
            replaces,
        }
    }

    #[test]
    fn round_trips_with_and_without_replaces() {
        for r in [None, Some(SpoolRef { dir: 3, segment: 7, offset: 4096 })] {
            let s = sample(r);
            assert_eq!(decode_suppression(&encode_suppression(&s).unwrap()).unwrap(), s);
        }
    }

    #[test]
    fn a_compaction_copy_names_the_old_place() {
        let old = SpoolRef { dir: 1, segment: 9, offset: 64 };
        let bytes = encode_suppression(&sample(None)).unwrap();
        let copy = decode_suppression(&copy_replacing(&bytes, old).unwrap()).unwrap();
        assert_eq!(copy, sample(Some(old)));
        assert!(copy_replacing(&bytes[..5], old).is_err());
    }

    #[test]
    fn every_truncation_and_trailing_byte_is_refused() {
        let bytes = encode_suppression(&sample(None)).unwrap();
        for n in 0..bytes.len() {
            assert!(decode_suppression(&bytes[..n]).is_err(), "{n} bytes decoded");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode_suppression(&long).is_err());
        let mut flags = bytes;
        flags[0] = 0x80;
        assert!(decode_suppression(&flags).is_err());
    }
}
