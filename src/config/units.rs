//! Human-friendly value types used in the config file: durations written
//! with a unit ("500ms", "30s", "5m", "4h", "5d").
//!
//! Sizes are plain integers in bytes (the contract in issue 2), so they need
//! no type of their own.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// A duration parsed from a string with a unit. A bare number is refused so
/// that "30" can never silently mean seconds in one place and ms in another.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl Span {
    pub const fn secs(s: u64) -> Span {
        Span(Duration::from_secs(s))
    }
    pub const fn millis(ms: u64) -> Span {
        Span(Duration::from_millis(ms))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl std::str::FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Span, String> {
        let t = s.trim();
        if t.is_empty() || !t.ends_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(format!(
                "invalid duration {s:?}: give a number with a unit, e.g. \"500ms\", \"30s\", \"5m\", \"4h\", \"5d\""
            ));
        }
        humantime::parse_duration(t).map(Span).map_err(|e| format!("invalid duration {s:?}: {e}"))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units_parse() {
        assert_eq!("500ms".parse::<Span>().unwrap().get(), Duration::from_millis(500));
        assert_eq!("30s".parse::<Span>().unwrap().get(), Duration::from_secs(30));
        assert_eq!("5m".parse::<Span>().unwrap().get(), Duration::from_secs(300));
        assert_eq!("4h".parse::<Span>().unwrap().get(), Duration::from_secs(4 * 3600));
        assert_eq!("5d".parse::<Span>().unwrap().get(), Duration::from_secs(5 * 86400));
    }

    #[test]
    fn bare_numbers_and_junk_are_refused() {
        assert!("30".parse::<Span>().is_err());
        assert!("".parse::<Span>().is_err());
        assert!("5 fortnights".parse::<Span>().is_err());
    }
}
