//! The retry schedule: how long a deferred message waits before its next
//! attempt. Pure; the caller supplies the random jitter.

/// Retry and expiry settings, in milliseconds, from `[relay]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Waits after attempt 1, 2, ...; the last one repeats.
    pub waits_ms: Vec<u64>,
    /// Bounce when still queued this long after arrival.
    pub max_lifetime_ms: u64,
    /// Send one delay notice after this long (0 = never).
    pub delay_warning_ms: u64,
}

/// The wait after `attempts` failed attempts (1-based), with up to 10 %
/// extra jitter: `jitter` is a number in [0, 1) from the caller's rng, so
/// a backlog after an outage does not retry in one burst.
pub fn retry_delay(policy: &RetryPolicy, attempts: u32, jitter: f64) -> u64 {
    let i = (attempts.max(1) as usize - 1).min(policy.waits_ms.len().saturating_sub(1));
    let base = policy.waits_ms.get(i).copied().unwrap_or(60_000);
    base + (base as f64 * 0.1 * jitter.clamp(0.0, 1.0)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            waits_ms: vec![60_000, 300_000, 900_000],
            max_lifetime_ms: 5 * 86_400_000,
            delay_warning_ms: 4 * 3_600_000,
        }
    }

    #[test]
    fn waits_follow_the_list_and_the_last_repeats() {
        let p = policy();
        assert_eq!(retry_delay(&p, 1, 0.0), 60_000);
        assert_eq!(retry_delay(&p, 2, 0.0), 300_000);
        assert_eq!(retry_delay(&p, 3, 0.0), 900_000);
        assert_eq!(retry_delay(&p, 17, 0.0), 900_000);
    }

    #[test]
    fn jitter_adds_at_most_ten_percent() {
        let p = policy();
        assert_eq!(retry_delay(&p, 1, 0.999_999), 65_999);
        assert!(retry_delay(&p, 1, 0.5) == 63_000);
    }
}
