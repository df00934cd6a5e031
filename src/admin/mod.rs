//! Operator tools: offline ones that read the data dir directly (the
//! server may be running; they never write the spool): `ringmail trace`,
//! backup and restore, Maildir/mbox export and import helpers; and the
//! answers of the admin commands as data ([`report`]: text and `--json`
//! from one struct), which the running server builds.

pub mod backup;
pub mod listing;
pub mod maildir;
pub mod queue_list;
pub mod report;
pub mod trace;
mod trace_filters;

/// A time in ms since the Unix epoch as RFC 3339 UTC, seconds precision.
pub fn format_time(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}
