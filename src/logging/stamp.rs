//! The time stamp at the start of each log line, byte for byte what
//! tracing-subscriber's `SystemTime` timer writes (RFC 3339 in UTC with
//! microseconds: `2026-12-07T06:58:10.123456Z`), but with the date and
//! the time of day formatted once per second per thread: at full load a
//! core writes a line per message accepted and per recipient relayed, and
//! formatting seven padded numbers for each was a measurable part of it.

use std::cell::RefCell;
use std::fmt::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// The timer of ringmail's log lines (see the module doc).
#[derive(Debug, Clone, Copy, Default)]
pub struct Stamp;

/// The first second of the year 10000: from there on (and before 1970)
/// the stamp is left to tracing-subscriber's own timer.
const YEAR_10000: u64 = 253_402_300_800;

thread_local! {
    /// The last second stamped on this thread, and its text up to the
    /// seconds (`2026-12-07T06:58:10`).
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

impl FormatTime for Stamp {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) if since.as_secs() < YEAR_10000 => write_stamp(w, since),
            _ => tracing_subscriber::fmt::time::SystemTime.format_time(w),
        }
    }
}

/// The stamp of the moment `since` after the epoch (before the year 10000).
fn write_stamp(w: &mut impl Write, since: Duration) -> fmt::Result {
    let secs = since.as_secs();
    let cached = SECOND.try_with(|s| {
        let mut s = s.borrow_mut();
        if s.0 != secs {
            s.1.clear();
            // Same algorithm as tracing-subscriber's (musl's __secs_to_tm).
            write!(s.1, "{}", humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)))?;
            s.1.pop(); // its "Z": the fraction goes before it
            s.0 = secs;
        }
        w.write_str(&s.1)
    });
    match cached {
        Ok(r) => r?,
        // The thread is ending: no cache.
        Err(_) => {
            let whole = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string();
            w.write_str(&whole[..whole.len() - 1])?;
        }
    }
    let mut fraction = *b".000000Z";
    let mut micros = since.subsec_micros();
    for digit in fraction[1..7].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    // Only ASCII digits and punctuation.
    w.write_str(std::str::from_utf8(&fraction).map_err(|_| fmt::Error)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(since: Duration) -> String {
        let mut out = String::new();
        write_stamp(&mut out, since).unwrap();
        out
    }

    #[test]
    fn stamps_are_rfc3339_with_microseconds() {
        let cases = [
            (0, 0),
            (1, 999_999_999),
            (951_782_400, 1_000),          // 2000-02-29
            (1_796_000_000, 123_456_789),  // 2026
            (4_102_444_799, 500_000),      // 2099-12-31T23:59:59
            (YEAR_10000 - 1, 999_999_000), // 9999-12-31T23:59:59
        ];
        for (secs, nanos) in cases {
            let since = Duration::new(secs, nanos);
            let want = humantime::format_rfc3339_micros(UNIX_EPOCH + since).to_string();
            assert_eq!(stamp(since), want, "{secs}.{nanos:09}");
            // Again, from the second's cache.
            assert_eq!(stamp(since), want);
        }
        assert_eq!(stamp(Duration::new(1_796_000_000, 7_000)), "2026-11-30T00:53:20.000007Z");
    }

    #[test]
    fn the_stamp_is_tracing_subscribers_own() {
        // Theirs reads the clock itself: compare within one second, up to
        // the microseconds.
        for _ in 0..100 {
            let mut theirs = String::new();
            tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut theirs)).unwrap();
            let mut ours = String::new();
            Stamp.format_time(&mut Writer::new(&mut ours)).unwrap();
            assert_eq!(ours.len(), theirs.len(), "{ours} / {theirs}");
            assert_eq!(ours.as_bytes()[19..20], theirs.as_bytes()[19..20], "{ours} / {theirs}");
            assert!(ours.ends_with('Z') && ours.as_bytes()[19] == b'.', "{ours}");
            if ours[..19] == theirs[..19] {
                return;
            }
        }
        panic!("never within the same second");
    }
}
