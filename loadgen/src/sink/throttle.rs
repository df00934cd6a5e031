//! `--throttle-after D --throttle-for D`: a window during which the sink
//! behaves like a big mailbox provider that rate-limits a sender: every
//! MAIL FROM gets [`THROTTLE_REPLY`] and the connection is closed.
//!
//! The window is timed from the sink's first accepted connection (on any
//! core), not from its launch, so that a benchmark can start the sink well
//! before the server under test sends anything and still know that the
//! throttle begins `after` into the traffic. It owns no sockets and reads
//! no clock itself: callers pass `now`.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The reply to MAIL FROM inside the window (the connection closes after it).
pub const THROTTLE_REPLY: &str = "421 4.7.0 rate limited, try again later";

/// When the throttle is on, relative to the first accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// From the first connection to the start of the window.
    pub after: Duration,
    /// Length of the window; never zero.
    pub length: Duration,
}

impl Window {
    /// The window from the two options, or `None` when neither is given.
    /// Both or neither must be given, and the length must not be zero.
    pub fn from_options(after: Option<Duration>, length: Option<Duration>) -> Result<Option<Window>, String> {
        match (after, length) {
            (None, None) => Ok(None),
            (Some(_), Some(length)) if length.is_zero() => Err("--throttle-for must be longer than 0s".into()),
            (Some(after), Some(length)) => Ok(Some(Window { after, length })),
            (Some(_), None) => Err("--throttle-after needs --throttle-for".into()),
            (None, Some(_)) => Err("--throttle-for needs --throttle-after".into()),
        }
    }

    /// True when `since` (time since the first connection) is inside the
    /// window: `after <= since < after + length`.
    pub fn contains(&self, since: Duration) -> bool {
        since >= self.after && since < self.after.saturating_add(self.length)
    }
}

/// A window shared by all cores of a sink, anchored at the first accepted
/// connection. Cheap to ask: an atomic load and a comparison.
#[derive(Debug)]
pub struct Throttle {
    window: Window,
    /// Monotonic and wall-clock time of the first accepted connection.
    origin: OnceLock<(Instant, SystemTime)>,
}

impl Throttle {
    pub fn new(window: Window) -> Throttle {
        Throttle { window, origin: OnceLock::new() }
    }

    /// A connection was accepted at `now`; the first one anchors the window.
    pub fn connected(&self, now: Instant) {
        self.origin.get_or_init(|| (now, SystemTime::now() - now.elapsed()));
    }

    /// Should a MAIL FROM at `now` be refused? False before any connection.
    pub fn active(&self, now: Instant) -> bool {
        self.origin.get().is_some_and(|(o, _)| self.window.contains(now.saturating_duration_since(*o)))
    }

    /// The window's start and end as Unix milliseconds, once anchored.
    pub fn unix_ms(&self) -> Option<(u64, u64)> {
        let (_, wall) = self.origin.get()?;
        let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let start = *wall + self.window.after;
        Some((ms(start), ms(start + self.window.length)))
    }

    pub fn window(&self) -> Window {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Cmd};
    use clap::Parser;

    fn sink(args: &[&str]) -> Result<Option<Window>, String> {
        let argv = ["ringmail-loadgen", "sink"].iter().chain(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let Cmd::Sink(a) = cli.cmd else { panic!("not the sink") };
        Window::from_options(a.throttle_after, a.throttle_for)
    }

    #[test]
    fn both_options_give_a_window() {
        let w = sink(&["--throttle-after", "5s", "--throttle-for", "30s"]).unwrap();
        assert_eq!(w, Some(Window { after: Duration::from_secs(5), length: Duration::from_secs(30) }));
    }

    #[test]
    fn no_options_no_window() {
        assert_eq!(sink(&[]).unwrap(), None);
    }

    #[test]
    fn units_are_the_usual_durations() {
        let w = sink(&["--throttle-after", "0s", "--throttle-for", "1500ms"]).unwrap().unwrap();
        assert_eq!(w.after, Duration::ZERO);
        assert_eq!(w.length, Duration::from_millis(1500));
    }

    #[test]
    fn one_option_without_the_other_is_refused() {
        let e = sink(&["--throttle-after", "5s"]).unwrap_err();
        assert!(e.contains("--throttle-for"), "{e}");
        let e = sink(&["--throttle-for", "5s"]).unwrap_err();
        assert!(e.contains("--throttle-after"), "{e}");
    }

    #[test]
    fn bad_duration_is_refused_naming_it() {
        let e = sink(&["--throttle-after", "soon", "--throttle-for", "30s"]).unwrap_err();
        assert!(e.contains("soon"), "{e}");
    }

    #[test]
    fn empty_window_is_refused() {
        let e = sink(&["--throttle-after", "5s", "--throttle-for", "0s"]).unwrap_err();
        assert!(e.contains("longer than 0s"), "{e}");
    }

    #[test]
    fn window_is_half_open() {
        let w = Window { after: Duration::from_secs(5), length: Duration::from_secs(30) };
        assert!(!w.contains(Duration::from_millis(4999)));
        assert!(w.contains(Duration::from_secs(5)));
        assert!(w.contains(Duration::from_millis(34_999)));
        assert!(!w.contains(Duration::from_secs(35)));
    }

    #[test]
    fn throttle_counts_from_the_first_connection_only() {
        let t = Throttle::new(Window { after: Duration::from_secs(5), length: Duration::from_secs(30) });
        let t0 = Instant::now();
        assert!(!t.active(t0 + Duration::from_secs(10)), "not anchored yet");
        t.connected(t0);
        t.connected(t0 + Duration::from_secs(8));
        assert!(!t.active(t0 + Duration::from_secs(4)));
        assert!(t.active(t0 + Duration::from_secs(6)));
        assert!(t.active(t0 + Duration::from_secs(34)));
        assert!(!t.active(t0 + Duration::from_secs(36)));
        let (start, end) = t.unix_ms().unwrap();
        assert_eq!(end - start, 30_000);
    }
}
