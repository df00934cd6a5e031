//! Identifiers of things in the spool: [`QueueId`] (a message's name in logs
//! and replies), [`SpoolRef`] (where a record lives) and [`SegmentKey`] (which
//! file), plus the per-directory [`QueueIdGen`].
//!
//! Pure values only: no clock reads (time is passed in), no I/O.

use std::fmt;
use std::str::FromStr;

/// A message's queue id, shown to clients in `250 OK queued as …` and in logs.
///
/// Displayed and parsed as exactly 16 hexadecimal digits (upper case when
/// displayed). Ids from one [`QueueIdGen`] are strictly increasing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId(pub u64);

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", self.0)
    }
}

/// Why a string is not a [`QueueId`] or a [`SpoolRef`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    /// A queue id is exactly 16 hex digits.
    #[error("a queue id is 16 hex digits, got {len} characters")]
    QueueIdLength { len: usize },
    /// A spool reference is `dir:segment:offset`.
    #[error("a spool reference looks like `2:0000000a:1f40`")]
    SpoolRefShape,
    /// A part held something other than the expected digits.
    #[error("`{part}` is not a valid number here")]
    BadNumber { part: String },
}

impl FromStr for QueueId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 {
            return Err(ParseIdError::QueueIdLength { len: s.len() });
        }
        if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseIdError::BadNumber { part: s.to_owned() });
        }
        u64::from_str_radix(s, 16).map(QueueId).map_err(|_| ParseIdError::BadNumber { part: s.to_owned() })
    }
}

/// Hands out strictly increasing, unique [`QueueId`]s for one spool directory.
///
/// An id is `(unix_micros << 8) | (dir & 0xff)`; when the clock did not
/// advance (or went back) the previous id is bumped by 256, so the low byte
/// keeps naming the directory and ids never repeat within a directory.
#[derive(Debug, Clone)]
pub struct QueueIdGen {
    /// Low byte of every id from this generator.
    dir_byte: u64,
    /// The last id handed out (or recovered from disk); the next one is larger.
    last: Option<u64>,
}

impl QueueIdGen {
    /// A generator for `dir` that never returns an id `<= last` (pass the
    /// highest id recovered for this directory).
    pub fn new(dir: u16, last: Option<QueueId>) -> Self {
        QueueIdGen { dir_byte: u64::from(dir & 0xff), last: last.map(|q| q.0) }
    }

    /// The next id, given the current wall clock in microseconds since the
    /// Unix epoch.
    pub fn next(&mut self, now_micros: u64) -> QueueId {
        let from_clock = now_micros.saturating_mul(256) | self.dir_byte;
        let id = match self.last {
            // Keep the directory byte even if `last` came from elsewhere.
            Some(last) => from_clock.max(((last >> 8).saturating_add(1) << 8) | self.dir_byte),
            None => from_clock,
        };
        self.last = Some(id);
        QueueId(id)
    }
}

/// Names one segment file: spool directory `dir`, sequence number `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentKey {
    /// The spool directory (normally the index of the executor writing it).
    pub dir: u16,
    /// Sequence number within the directory; never reused.
    pub seq: u32,
}

impl fmt::Display for SegmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "core-{}/segment-{:08x}", self.dir, self.seq)
    }
}

/// Where a record starts: spool directory, segment and byte offset.
///
/// This is what crosses cores instead of message bytes. Displayed like
/// `2:0000000a:1f40` (dir in decimal, segment as 8 hex digits, offset in hex).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpoolRef {
    /// The spool directory.
    pub dir: u16,
    /// The segment's sequence number within `dir`.
    pub segment: u32,
    /// Byte offset of the record header within the segment (a multiple of 8).
    pub offset: u32,
}

impl SpoolRef {
    /// The segment file holding this record.
    pub fn segment_key(&self) -> SegmentKey {
        SegmentKey { dir: self.dir, seq: self.segment }
    }
}

impl fmt::Display for SpoolRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{:08x}:{:x}", self.dir, self.segment, self.offset)
    }
}

impl FromStr for SpoolRef {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(':');
        let (Some(dir), Some(segment), Some(offset), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ParseIdError::SpoolRefShape);
        };
        let bad = |part: &str| ParseIdError::BadNumber { part: part.to_owned() };
        let digits = |part: &str, hex: bool| {
            !part.is_empty() && part.bytes().all(|b| if hex { b.is_ascii_hexdigit() } else { b.is_ascii_digit() })
        };
        if !digits(dir, false) || segment.len() != 8 || !digits(segment, true) || !digits(offset, true) {
            return Err(ParseIdError::SpoolRefShape);
        }
        Ok(SpoolRef {
            dir: dir.parse().map_err(|_| bad(dir))?,
            segment: u32::from_str_radix(segment, 16).map_err(|_| bad(segment))?,
            offset: u32::from_str_radix(offset, 16).map_err(|_| bad(offset))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_id_displays_as_16_upper_hex_digits_and_parses_back() {
        let id = QueueId(0x00ab_cdef_0123_4502);
        assert_eq!(id.to_string(), "00ABCDEF01234502");
        assert_eq!("00ABCDEF01234502".parse::<QueueId>(), Ok(id));
        assert_eq!("00abcdef01234502".parse::<QueueId>(), Ok(id));
    }

    #[test]
    fn queue_id_rejects_wrong_length_and_non_hex() {
        assert!("ABC".parse::<QueueId>().is_err());
        assert!("+0ABCDEF01234502".parse::<QueueId>().is_err());
        assert!("00ABCDEF0123450G".parse::<QueueId>().is_err());
    }

    #[test]
    fn generator_puts_dir_in_low_byte_and_clock_above_it() {
        let mut g = QueueIdGen::new(0x0102, None);
        assert_eq!(g.next(1000), QueueId((1000 << 8) | 0x02));
    }

    #[test]
    fn generator_bumps_by_256_when_clock_stalls_or_goes_back() {
        let mut g = QueueIdGen::new(3, None);
        let a = g.next(500);
        let b = g.next(500);
        let c = g.next(10);
        assert_eq!(b.0, a.0 + 256);
        assert_eq!(c.0, b.0 + 256);
        assert_eq!(g.next(10_000), QueueId((10_000 << 8) | 3));
    }

    #[test]
    fn generator_never_reuses_a_recovered_id() {
        let last = QueueId((9_000 << 8) | 7);
        let mut g = QueueIdGen::new(7, Some(last));
        let next = g.next(100);
        assert!(next > last);
        assert_eq!(next.0 & 0xff, 7);
    }

    #[test]
    fn spool_ref_displays_and_parses() {
        let r = SpoolRef { dir: 2, segment: 10, offset: 0x1f40 };
        assert_eq!(r.to_string(), "2:0000000a:1f40");
        assert_eq!("2:0000000a:1f40".parse::<SpoolRef>(), Ok(r));
        assert!("2:a:1f40".parse::<SpoolRef>().is_err());
        assert!("2:0000000a:1f40:1".parse::<SpoolRef>().is_err());
        assert!("x:0000000a:1f40".parse::<SpoolRef>().is_err());
        assert!("99999:0000000a:0".parse::<SpoolRef>().is_err());
    }

    #[test]
    fn segment_key_displays_as_relative_path() {
        let k = SegmentKey { dir: 3, seq: 255 };
        assert_eq!(k.to_string(), "core-3/segment-000000ff");
    }
}
