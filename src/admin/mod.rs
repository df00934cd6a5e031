//! Offline operator tools that read the data dir directly (the server may
//! be running; they never write the spool): `ringmail trace`, backup and
//! restore, Maildir/mbox export and import helpers.

pub mod backup;
pub mod maildir;
pub mod trace;

/// A time in ms since the Unix epoch as RFC 3339 UTC, seconds precision.
pub fn format_time(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}
