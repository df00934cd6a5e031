//! Abuse limits of one core: concurrent connections (in total and per
//! client IP) and failed logins per client IP within a window. Pure (time
//! passed in), per core and without locks: with N cores the effective
//! limits are up to N times these (SO_REUSEPORT spreads one client's
//! connections over the cores).

use std::collections::HashMap;
use std::net::IpAddr;

/// Most client IPs tracked for login failures; past this the oldest
/// windows are dropped first, so memory stays bounded under a flood of
/// addresses.
const MAX_TRACKED_IPS: usize = 65_536;

#[derive(Debug)]
pub struct Limiter {
    max_connections: usize,
    max_per_ip: usize,
    max_failures: u32,
    window_ms: u64,
    open: usize,
    per_ip: HashMap<IpAddr, usize>,
    /// ip -> (failures in the current window, window start).
    failures: HashMap<IpAddr, (u32, u64)>,
    /// Messages per sender key in the current one-minute window.
    rates: HashMap<RateKey, (u32, u64)>,
}

/// Whose message rate is counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    Ip(IpAddr),
    User(String),
}

const RATE_WINDOW_MS: u64 = 60_000;

/// Why a connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooManyConnections,
    TooManyFromIp,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::TooManyConnections => "too many connections",
            Refusal::TooManyFromIp => "too many connections from this address",
        }
    }
}

impl Limiter {
    pub fn new(max_connections: usize, max_per_ip: usize, max_failures: u32, window_ms: u64) -> Limiter {
        Limiter {
            max_connections,
            max_per_ip,
            max_failures,
            window_ms,
            open: 0,
            per_ip: HashMap::new(),
            failures: HashMap::new(),
            rates: HashMap::new(),
        }
    }

    /// New limits from a reloaded config; counts so far are kept.
    pub fn set_limits(&mut self, max_connections: usize, max_per_ip: usize, max_failures: u32, window_ms: u64) {
        self.max_connections = max_connections;
        self.max_per_ip = max_per_ip;
        self.max_failures = max_failures;
        self.window_ms = window_ms;
    }

    /// Count a new connection from `ip`, or say why not.
    pub fn admit(&mut self, ip: IpAddr) -> Result<(), Refusal> {
        if self.open >= self.max_connections {
            return Err(Refusal::TooManyConnections);
        }
        let n = self.per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(Refusal::TooManyFromIp);
        }
        *n += 1;
        self.open += 1;
        Ok(())
    }

    /// A connection admitted earlier has ended.
    pub fn release(&mut self, ip: IpAddr) {
        self.open = self.open.saturating_sub(1);
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    pub fn open(&self) -> usize {
        self.open
    }

    /// Is `ip` locked out of logging in now? Returns how many failures it
    /// has beyond the limit (for a growing delay), or None.
    pub fn auth_locked(&self, ip: IpAddr, now_ms: u64) -> Option<u32> {
        let &(n, start) = self.failures.get(&ip)?;
        (now_ms.saturating_sub(start) < self.window_ms && n >= self.max_failures).then(|| n - self.max_failures)
    }

    /// Record a failed login from `ip`.
    pub fn auth_failed(&mut self, ip: IpAddr, now_ms: u64) {
        if self.failures.len() >= MAX_TRACKED_IPS {
            let window = self.window_ms;
            self.failures.retain(|_, (_, start)| now_ms.saturating_sub(*start) < window);
            if self.failures.len() >= MAX_TRACKED_IPS {
                self.failures.clear();
            }
        }
        let e = self.failures.entry(ip).or_insert((0, now_ms));
        if now_ms.saturating_sub(e.1) >= self.window_ms {
            *e = (0, now_ms);
        }
        e.0 += 1;
    }

    /// Count one message for `key` if it is under `per_minute` in the
    /// current minute; false (not counted) when over. 0 = no limit.
    pub fn allow_message(&mut self, key: RateKey, per_minute: u32, now_ms: u64) -> bool {
        if per_minute == 0 {
            return true;
        }
        if self.rates.len() >= MAX_TRACKED_IPS && !self.rates.contains_key(&key) {
            self.rates.retain(|_, (_, start)| now_ms.saturating_sub(*start) < RATE_WINDOW_MS);
            if self.rates.len() >= MAX_TRACKED_IPS {
                self.rates.clear();
            }
        }
        let e = self.rates.entry(key).or_insert((0, now_ms));
        if now_ms.saturating_sub(e.1) >= RATE_WINDOW_MS {
            *e = (0, now_ms);
        }
        if e.0 >= per_minute {
            return false;
        }
        e.0 += 1;
        true
    }

    /// A successful login clears the address's record.
    pub fn auth_succeeded(&mut self, ip: IpAddr) {
        self.failures.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn connections_are_capped_in_total_and_per_ip() {
        let mut l = Limiter::new(3, 2, 5, 1000);
        assert!(l.admit(ip(1)).is_ok());
        assert!(l.admit(ip(1)).is_ok());
        assert_eq!(l.admit(ip(1)), Err(Refusal::TooManyFromIp));
        assert!(l.admit(ip(2)).is_ok());
        assert_eq!(l.admit(ip(3)), Err(Refusal::TooManyConnections));
        l.release(ip(1));
        assert!(l.admit(ip(3)).is_ok());
        assert_eq!(l.open(), 3);
    }

    #[test]
    fn login_failures_lock_an_address_for_the_window_only() {
        let mut l = Limiter::new(10, 10, 3, 1000);
        for t in 0..3 {
            assert_eq!(l.auth_locked(ip(1), t), None);
            l.auth_failed(ip(1), t);
        }
        assert_eq!(l.auth_locked(ip(1), 10), Some(0));
        assert_eq!(l.auth_locked(ip(2), 10), None, "other addresses are not affected");
        l.auth_failed(ip(1), 20);
        assert_eq!(l.auth_locked(ip(1), 30), Some(1), "growing");
        assert_eq!(l.auth_locked(ip(1), 1000), None, "window over");
        l.auth_failed(ip(1), 1001);
        assert_eq!(l.auth_locked(ip(1), 1002), None, "a new window starts from zero");
    }

    #[test]
    fn message_rate_is_per_key_and_per_minute() {
        let mut l = Limiter::new(10, 10, 3, 1000);
        let a = RateKey::Ip(ip(1));
        assert!(l.allow_message(a.clone(), 2, 0));
        assert!(l.allow_message(a.clone(), 2, 10));
        assert!(!l.allow_message(a.clone(), 2, 20), "third in the minute refused");
        assert!(l.allow_message(RateKey::User("u@x".into()), 2, 20), "other keys unaffected");
        assert!(l.allow_message(a.clone(), 2, RATE_WINDOW_MS + 1), "next minute");
        assert!(l.allow_message(a, 0, 0), "0 = unlimited");
    }

    #[test]
    fn success_clears_the_record_and_memory_stays_bounded() {
        let mut l = Limiter::new(10, 10, 1, 1000);
        l.auth_failed(ip(1), 0);
        l.auth_succeeded(ip(1));
        assert_eq!(l.auth_locked(ip(1), 1), None);
        for n in 0..(MAX_TRACKED_IPS as u32 + 10) {
            l.auth_failed(IpAddr::from(n.to_be_bytes()), 0);
        }
        assert!(l.failures.len() <= MAX_TRACKED_IPS);
    }
}
