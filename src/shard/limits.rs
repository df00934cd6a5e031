//! Abuse limits for the whole server: concurrent connections (in total and
//! per client IP), messages per minute per client IP and per user, and
//! failed logins per client IP and per target user within a window.
//!
//! Every executor holds the same [`Limits`] (an `Arc`), so a limit an
//! operator writes holds for the server, not per core: SO_REUSEPORT spreads
//! one client's connections over the cores, and per-core tables let
//! `max_connections_per_ip = 5` admit 10 on two cores and multiplied the
//! login-failure budget by the core count.
//!
//! Why shared tables and not the mesh: the tables are touched once per
//! connect, disconnect, MAIL (only when a rate limit is set) and login,
//! for well under a microsecond, behind one of [`STRIPES`] mutexes chosen by
//! the key's hash; two cores meet on one stripe only when they handle the
//! same key's stripe at the same instant. A round trip to an owner core
//! costs 50-70 µs when that core is parked and would make every connect
//! wait for another core. The counts are exact, and a login attempt is
//! reserved *before* the password is hashed, which is what makes the
//! failure limit hold against parallel guesses.
//!
//! Everything else about a session stays on its core. Time is passed in.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Lock stripes per table.
pub const STRIPES: usize = 64;

/// Most keys a stripe tracks for rates and failures; past this, expired
/// windows are dropped, then all windows (open connections are always
/// kept), so memory stays bounded under a flood of addresses or names.
const MAX_KEYS_PER_STRIPE: usize = 1024;

const RATE_WINDOW_MS: u64 = 60_000;

/// The limits as configured (`[limits]` and `[auth]`); taken from the
/// current config at each call, so a reload applies at once.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_auth_failures: u32,
    pub max_auth_failures_per_user: u32,
    pub failure_window_ms: u64,
}

impl Settings {
    pub fn of(config: &crate::config::Config) -> Settings {
        Settings {
            max_connections: config.limits.max_connections,
            max_connections_per_ip: config.limits.max_connections_per_ip,
            max_auth_failures: config.auth.max_auth_failures,
            max_auth_failures_per_user: config.auth.max_auth_failures_per_user,
            failure_window_ms: config.auth.failure_window.get().as_millis() as u64,
        }
    }
}

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

/// Whose message rate is counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    Ip(IpAddr),
    User(String),
}

/// A count within a fixed window that starts at its first event.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    count: u32,
    start_ms: u64,
}

impl Window {
    fn live(&self, now_ms: u64, len_ms: u64) -> bool {
        self.count > 0 && now_ms.saturating_sub(self.start_ms) < len_ms
    }

    /// The count now (0 once the window is over).
    fn get(&self, now_ms: u64, len_ms: u64) -> u32 {
        if self.live(now_ms, len_ms) {
            self.count
        } else {
            0
        }
    }

    fn add(&mut self, now_ms: u64, len_ms: u64) {
        if !self.live(now_ms, len_ms) {
            *self = Window { count: 0, start_ms: now_ms };
        }
        self.count = self.count.saturating_add(1);
    }

    fn sub(&mut self) {
        self.count = self.count.saturating_sub(1);
    }
}

#[derive(Debug, Default)]
struct Entry {
    /// Connections open now (IP keys only).
    open: u32,
    failures: Window,
    messages: Window,
}

impl Entry {
    fn idle(&self, now_ms: u64, failure_window_ms: u64) -> bool {
        self.open == 0 && !self.failures.live(now_ms, failure_window_ms) && !self.messages.live(now_ms, RATE_WINDOW_MS)
    }
}

/// One keyed table split over [`STRIPES`] locks.
#[derive(Debug)]
struct Table<K> {
    hasher: RandomState,
    stripes: Box<[Mutex<HashMap<K, Entry>>]>,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new() -> Table<K> {
        Table { hasher: RandomState::new(), stripes: (0..STRIPES).map(|_| Mutex::new(HashMap::new())).collect() }
    }

    fn stripe(&self, key: &K) -> MutexGuard<'_, HashMap<K, Entry>> {
        let i = self.hasher.hash_one(key) as usize % STRIPES;
        // A panic while holding a stripe cannot leave an entry half
        // updated (every update is one assignment), so a poisoned lock is
        // still good.
        self.stripes[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `f` on the key's entry (created if missing). With the time (`now`
    /// and the failure window), a full stripe is pruned first and the entry
    /// is dropped afterwards once nothing in it is live; without it (a
    /// slot or a reservation given back), only an entry with nothing
    /// counted at all is dropped.
    fn with<R>(&self, key: &K, clock: Option<(u64, u64)>, f: impl FnOnce(&mut Entry) -> R) -> R {
        let mut map = self.stripe(key);
        if let Some((now_ms, window_ms)) = clock {
            if map.len() >= MAX_KEYS_PER_STRIPE && !map.contains_key(key) {
                map.retain(|_, e| !e.idle(now_ms, window_ms));
                if map.len() >= MAX_KEYS_PER_STRIPE {
                    map.retain(|_, e| e.open > 0);
                }
            }
        }
        let entry = map.entry(key.clone()).or_default();
        let r = f(entry);
        let gone = match clock {
            Some((now_ms, window_ms)) => entry.idle(now_ms, window_ms),
            None => entry.open == 0 && entry.failures.count == 0 && entry.messages.count == 0,
        };
        if gone {
            map.remove(key);
        }
        r
    }

    fn peek<R>(&self, key: &K, f: impl FnOnce(Option<&Entry>) -> R) -> R {
        f(self.stripe(key).get(key))
    }
}

/// The server's abuse limits; one per server, shared by every core.
#[derive(Debug)]
pub struct Limits {
    open: AtomicUsize,
    /// The failure window last configured, for pruning on calls that are
    /// not about logins.
    failure_window_ms: AtomicU64,
    ips: Table<IpAddr>,
    /// Keyed by a keyed hash of the (lower-cased) user name, not the name:
    /// names come from clients, and an entry must stay small whatever
    /// they send.
    users: Table<u64>,
    user_keys: RandomState,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            open: AtomicUsize::new(0),
            failure_window_ms: AtomicU64::new(u64::MAX),
            ips: Table::new(),
            users: Table::new(),
            user_keys: RandomState::new(),
        }
    }
}

/// An admitted connection; its slot is given back when this is dropped.
#[must_use = "the connection's slot is released when this is dropped"]
#[derive(Debug)]
pub struct Admission {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.limits.open.fetch_sub(1, Ordering::Relaxed);
        self.limits.ips.with(&self.ip, None, |e| e.open = e.open.saturating_sub(1));
    }
}

/// A login attempt counted as a failure in advance (for its client IP and
/// its target user) until it is settled: only [`succeeded`] takes the
/// count back. Dropped unsettled (the session vanished mid-check), it
/// stays counted.
///
/// [`succeeded`]: LoginAttempt::succeeded
#[must_use = "settle the attempt with succeeded() or failed()"]
#[derive(Debug)]
pub struct LoginAttempt {
    limits: Arc<Limits>,
    ip: IpAddr,
    user: u64,
}

impl LoginAttempt {
    /// The password was right: the reserved failure is taken back from
    /// the address (its other failures stay: a good login to one account
    /// must not buy guesses at another), and the user's failures are
    /// cleared.
    pub fn succeeded(self) {
        self.limits.ips.with(&self.ip, None, |e| e.failures.sub());
        self.limits.users.with(&self.user, None, |e| e.failures = Window::default());
    }

    /// The password was wrong: the reservation stands.
    pub fn failed(self) {}
}

/// A login refused without checking the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    /// Failures beyond the limit (for a growing delay).
    pub excess: u32,
}

impl Limits {
    /// Connections open on the whole server.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Admit a new connection from `ip`, or say why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, s: &Settings, now_ms: u64) -> Result<Admission, Refusal> {
        self.failure_window_ms.store(s.failure_window_ms, Ordering::Relaxed);
        let total = self.open.fetch_add(1, Ordering::Relaxed);
        if total >= s.max_connections {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::TooManyConnections);
        }
        let admitted = self.ips.with(&ip, Some((now_ms, s.failure_window_ms)), |e| {
            if e.open as usize >= s.max_connections_per_ip {
                return false;
            }
            e.open += 1;
            true
        });
        if !admitted {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::TooManyFromIp);
        }
        Ok(Admission { limits: self.clone(), ip })
    }

    /// Start a login for `user` (lower-cased by the caller) from `ip`: a
    /// failure is reserved for both, unless either is already at its
    /// limit within the window, in which case the attempt is refused (and
    /// counted against the address, so its delay keeps growing).
    pub fn begin_login(
        self: &Arc<Self>,
        ip: IpAddr,
        user: &str,
        s: &Settings,
        now_ms: u64,
    ) -> Result<LoginAttempt, Locked> {
        let window = s.failure_window_ms;
        self.failure_window_ms.store(window, Ordering::Relaxed);
        let user_key = self.user_keys.hash_one(user);
        let user_failures = self.users.peek(&user_key, |e| e.map_or(0, |e| e.failures.get(now_ms, window)));
        let ip_gate = self.ips.with(&ip, Some((now_ms, window)), |e| {
            let n = e.failures.get(now_ms, window);
            e.failures.add(now_ms, window);
            if n >= s.max_auth_failures {
                Err(Locked { excess: n - s.max_auth_failures })
            } else if user_failures >= s.max_auth_failures_per_user {
                Err(Locked { excess: user_failures - s.max_auth_failures_per_user })
            } else {
                Ok(())
            }
        });
        ip_gate?;
        // Two attempts at one user may both pass the check above at the
        // same instant; the user's limit may then be passed by the number
        // of concurrent attempts, each of which has counted against its
        // address first.
        self.users.with(&user_key, Some((now_ms, window)), |e| e.failures.add(now_ms, window));
        Ok(LoginAttempt { limits: self.clone(), ip, user: user_key })
    }

    /// Count one message for `key` if it is under `per_minute` in the
    /// current minute; false (not counted) when over. 0 = no limit.
    pub fn allow_message(&self, key: &RateKey, per_minute: u32, now_ms: u64) -> bool {
        if per_minute == 0 {
            return true;
        }
        let count = |e: &mut Entry| {
            if e.messages.get(now_ms, RATE_WINDOW_MS) >= per_minute {
                return false;
            }
            e.messages.add(now_ms, RATE_WINDOW_MS);
            true
        };
        let clock = Some((now_ms, self.failure_window_ms.load(Ordering::Relaxed)));
        match key {
            RateKey::Ip(ip) => self.ips.with(ip, clock, count),
            RateKey::User(u) => self.users.with(&self.user_keys.hash_one(u), clock, count),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    fn settings(max_connections: usize, per_ip: usize, failures: u32, per_user: u32) -> Settings {
        Settings {
            max_connections,
            max_connections_per_ip: per_ip,
            max_auth_failures: failures,
            max_auth_failures_per_user: per_user,
            failure_window_ms: 1000,
        }
    }

    #[test]
    fn connections_are_capped_in_total_and_per_ip_and_slots_come_back_on_drop() {
        let l = Arc::new(Limits::default());
        let s = settings(3, 2, 5, 5);
        let a = l.admit(ip(1), &s, 0).unwrap();
        let _b = l.admit(ip(1), &s, 0).unwrap();
        assert_eq!(l.admit(ip(1), &s, 0).unwrap_err(), Refusal::TooManyFromIp);
        let _c = l.admit(ip(2), &s, 0).unwrap();
        assert_eq!(l.admit(ip(3), &s, 0).unwrap_err(), Refusal::TooManyConnections);
        assert_eq!(l.open(), 3, "refusals hold no slot");
        drop(a);
        let _d = l.admit(ip(3), &s, 0).unwrap();
        assert_eq!(l.open(), 3);
    }

    #[test]
    fn the_per_ip_limit_holds_across_threads() {
        // Two "cores" admitting one client's connections at once.
        let l = Arc::new(Limits::default());
        let s = settings(1000, 5, 5, 5);
        let start = Arc::new(std::sync::Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (l, start) = (l.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    (0..7).filter_map(|_| l.admit(ip(1), &s, 0).ok()).collect::<Vec<_>>()
                })
            })
            .collect();
        // Every admission is held until both threads are done: one dropped
        // early would give its slot back to the other thread (which, on a
        // busy machine, may not have started yet).
        let admitted: Vec<Vec<Admission>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(admitted.iter().map(Vec::len).sum::<usize>(), 5);
    }

    #[test]
    fn parallel_guesses_are_reserved_before_checking() {
        let l = Arc::new(Limits::default());
        let s = settings(10, 10, 3, 100);
        // 80 attempts begin before any of them is settled.
        let attempts: Vec<_> = (0..80).map(|_| l.begin_login(ip(1), "alice@x", &s, 0)).collect();
        assert_eq!(attempts.iter().filter(|a| a.is_ok()).count(), 3);
    }

    #[test]
    fn a_success_does_not_reset_the_address_or_other_users() {
        let l = Arc::new(Limits::default());
        let s = settings(10, 10, 10, 100);
        let mut guesses = 0;
        for _ in 0..3 {
            for _ in 0..9 {
                match l.begin_login(ip(1), "alice@x", &s, 0) {
                    Ok(a) => {
                        a.failed();
                        guesses += 1;
                    }
                    Err(_) => break,
                }
            }
            if let Ok(a) = l.begin_login(ip(1), "mallory@x", &s, 0) {
                a.succeeded();
            }
        }
        assert_eq!(guesses, 10, "the attacker's own good logins bought no extra guesses");
        assert!(l.begin_login(ip(1), "mallory@x", &s, 1).is_err(), "the address is locked");
    }

    #[test]
    fn a_user_is_locked_after_failures_from_many_addresses_and_a_success_clears_only_that_user() {
        let l = Arc::new(Limits::default());
        let s = settings(10, 10, 100, 3);
        for n in 0..3 {
            l.begin_login(ip(n), "alice@x", &s, 0).unwrap().failed();
        }
        assert_eq!(l.begin_login(ip(9), "alice@x", &s, 0).unwrap_err(), Locked { excess: 0 });
        l.begin_login(ip(8), "bob@x", &s, 0).unwrap().failed();
        l.begin_login(ip(8), "bob@x", &s, 0).unwrap().succeeded();
        assert!(l.begin_login(ip(7), "alice@x", &s, 0).is_err(), "bob's success did not clear alice");
        assert!(l.begin_login(ip(7), "alice@x", &s, 1000).is_ok(), "the window is over");
    }

    #[test]
    fn failure_windows_expire_and_lock_growing() {
        let l = Arc::new(Limits::default());
        let s = settings(10, 10, 2, 100);
        l.begin_login(ip(1), "a@x", &s, 0).unwrap().failed();
        l.begin_login(ip(1), "a@x", &s, 1).unwrap().failed();
        assert_eq!(l.begin_login(ip(1), "a@x", &s, 2).unwrap_err(), Locked { excess: 0 });
        assert_eq!(l.begin_login(ip(1), "a@x", &s, 3).unwrap_err(), Locked { excess: 1 }, "growing");
        assert!(l.begin_login(ip(2), "b@x", &s, 3).is_ok(), "other addresses are not affected");
        assert!(l.begin_login(ip(1), "a@x", &s, 1000).is_ok(), "window over");
    }

    #[test]
    fn message_rate_is_per_key_and_per_minute() {
        let l = Limits::default();
        let a = RateKey::Ip(ip(1));
        assert!(l.allow_message(&a, 2, 0));
        assert!(l.allow_message(&a, 2, 10));
        assert!(!l.allow_message(&a, 2, 20), "third in the minute refused");
        assert!(l.allow_message(&RateKey::User("u@x".into()), 2, 20), "other keys unaffected");
        assert!(l.allow_message(&a, 2, RATE_WINDOW_MS + 1), "next minute");
        assert!(l.allow_message(&a, 0, 0), "0 = unlimited");
    }

    #[test]
    fn memory_stays_bounded_and_idle_entries_go() {
        let l = Arc::new(Limits::default());
        let s = settings(10, 10, 1, 1);
        for n in 0..(STRIPES * MAX_KEYS_PER_STRIPE + 1000) as u32 {
            let _ = l.begin_login(IpAddr::from(n.to_be_bytes()), "u@x", &s, 0).map(LoginAttempt::failed);
        }
        let tracked: usize = l.ips.stripes.iter().map(|m| m.lock().unwrap().len()).sum();
        assert!(tracked <= STRIPES * MAX_KEYS_PER_STRIPE);
        let c = l.admit(ip(1), &s, 0).unwrap();
        drop(c);
        assert!(l.ips.peek(&ip(1), |e| e.is_none()), "a closed connection leaves nothing behind");
    }
}
