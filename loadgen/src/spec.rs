//! Parsing of the small value languages on the command line: byte sizes
//! (`4k`, `1m`), durations (`30s`, `10ms`), weighted mixes (`1k:70,16k:25,1m:5`,
//! `250:90,451:9,550:1`) and `USER:PASS` pairs.
//!
//! Pure functions only: no I/O, no clock. Every parser returns a message that
//! names the offending text, because these errors end up on a terminal.

use rand::Rng;
use std::time::Duration;

/// Parses a byte size: a number with an optional `k`, `m` or `g` suffix
/// (binary multiples: `1k` = 1024 bytes), or a `b` suffix for plain bytes.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix("ib").map(|s| s.to_string()).unwrap_or(t);
    let (digits, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1usize << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('b') => (&t[..t.len() - 1], 1),
        _ => (&t[..], 1),
    };
    let n: usize = digits.parse().map_err(|_| format!("bad size {text:?}: expected e.g. 512, 4k, 1m"))?;
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("bad size {text:?}: must be between 1 byte and a few GiB"))
}

/// Parses a duration: a number followed by `ms`, `s`, `m` or `h`
/// (a bare number means seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let err = || format!("bad duration {text:?}: expected e.g. 500ms, 30s, 2m");
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: f64 = num.parse().map_err(|_| err())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(err()),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `USER:PASS` (the password may itself contain `:`).
pub fn parse_credentials(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((u, p)) if !u.is_empty() => Ok((u.to_string(), p.to_string())),
        _ => Err("expected USER:PASS".to_string()),
    }
}

/// A weighted choice among values, e.g. message sizes or reply codes.
///
/// Weights are relative (they need not add up to 100). `pick` costs one
/// random number and a scan of the (short) list.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix<T> {
    entries: Vec<(T, u32)>,
    total: u32,
}

impl<T: Clone> Mix<T> {
    /// Parses `v1:w1,v2:w2,...`; an entry without `:w` gets weight 1, so a
    /// single value (`4k`) is a mix of one.
    pub fn parse(text: &str, value: impl Fn(&str) -> Result<T, String>) -> Result<Self, String> {
        let mut entries = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (v, w) = match part.rsplit_once(':') {
                Some((v, w)) => {
                    let w: u32 =
                        w.trim().parse().map_err(|_| format!("bad weight in {part:?}: expected a whole number"))?;
                    (v, w)
                }
                None => (part, 1),
            };
            if w > 0 {
                entries.push((value(v.trim())?, w));
            }
        }
        let total: u32 = entries.iter().map(|(_, w)| *w).sum();
        if entries.is_empty() || total == 0 {
            return Err(format!("{text:?}: need at least one entry with a positive weight"));
        }
        Ok(Mix { entries, total })
    }

    /// Picks a value with probability weight / total.
    pub fn pick(&self, rng: &mut impl Rng) -> T {
        if self.entries.len() == 1 {
            return self.entries[0].0.clone();
        }
        let mut x = rng.gen_range(0..self.total);
        for (v, w) in &self.entries {
            if x < *w {
                return v.clone();
            }
            x -= w;
        }
        self.entries[self.entries.len() - 1].0.clone()
    }

    /// The values with their weights, in the order given.
    pub fn entries(&self) -> &[(T, u32)] {
        &self.entries
    }
}

/// Parses an SMTP reply code for a mix: three digits, 2xx/4xx/5xx.
pub fn parse_reply_code(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(c) if (200..600).contains(&c) && c / 100 != 3 => Ok(c),
        _ => Err(format!("bad reply code {text:?}: expected 2xx, 4xx or 5xx")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, SeedableRng};

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("4k").unwrap(), 4096);
        assert_eq!(parse_size("4K").unwrap(), 4096);
        assert_eq!(parse_size("1m").unwrap(), 1 << 20);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert!(parse_size("0").is_err());
        assert!(parse_size("k").is_err());
        assert!(parse_size("4x").is_err());
    }

    #[test]
    fn durations_take_units_and_bare_seconds() {
        assert_eq!(parse_duration("10ms").unwrap(), Duration::from_millis(10));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn size_mix_parses_weights_in_order() {
        let mix = Mix::parse("1k:70,16k:25,1m:5", parse_size).unwrap();
        assert_eq!(mix.entries(), &[(1024, 70), (16384, 25), (1 << 20, 5)]);
    }

    #[test]
    fn single_size_is_a_mix_of_one() {
        let mix = Mix::parse("4k", parse_size).unwrap();
        assert_eq!(mix.entries(), &[(4096, 1)]);
    }

    #[test]
    fn mix_rejects_zero_total_and_bad_weights() {
        assert!(Mix::parse("1k:0", parse_size).is_err());
        assert!(Mix::parse("1k:x", parse_size).is_err());
        assert!(Mix::parse("", parse_size).is_err());
        assert!(Mix::parse("1q:5", parse_size).is_err());
    }

    #[test]
    fn mix_pick_follows_weights() {
        let mix = Mix::parse("250:90,451:9,550:1", parse_reply_code).unwrap();
        let mut rng = SmallRng::seed_from_u64(7);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..100_000 {
            *counts.entry(mix.pick(&mut rng)).or_insert(0u32) += 1;
        }
        let c250 = counts[&250] as f64 / 100_000.0;
        let c451 = counts[&451] as f64 / 100_000.0;
        assert!((c250 - 0.90).abs() < 0.01, "{c250}");
        assert!((c451 - 0.09).abs() < 0.01, "{c451}");
        assert!(counts[&550] > 0);
    }

    #[test]
    fn reply_codes_must_be_final_replies() {
        assert!(parse_reply_code("354").is_err());
        assert!(parse_reply_code("99").is_err());
        assert_eq!(parse_reply_code("421").unwrap(), 421);
    }

    #[test]
    fn credentials_split_at_first_colon() {
        assert_eq!(parse_credentials("a@b.test:p:w").unwrap(), ("a@b.test".to_string(), "p:w".to_string()));
        assert!(parse_credentials("nopass").is_err());
        assert!(parse_credentials(":x").is_err());
    }
}
