//! The wall clock, read in one place.
//!
//! Owns the one function that turns `SystemTime` into the millisecond
//! timestamps the queue, the limits, the spool records and the admin tools
//! share. It must not be called from the sans-I/O code (`proto`, `queue`):
//! those take `now` as an argument so that tests can drive them on a virtual
//! clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, or 0 if the system clock is set
/// before 1970 (never negative, never panics).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
