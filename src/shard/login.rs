//! Password checks for SMTP AUTH and POP3, shared: the server-wide lockout
//! per client IP and per user (see [`limits`](super::limits)), this core's
//! login cache ([`crate::auth_cache`]), Argon2id off the I/O path, the fixed
//! answer time for failures, and one log line per failure in a form
//! fail2ban can match (README, Security).

use super::limits::{Admission, Locked, Refusal, Settings};
use super::Shard;
use crate::auth_cache::CacheSettings;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;

/// What a login attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    Ok,
    /// Wrong user or password (indistinguishable on purpose).
    Failed,
    /// Too many failures from this address or for this user: refused
    /// without checking.
    Locked,
}

impl Shard {
    /// Admit a new connection (mail or metrics) from `ip` under the
    /// server-wide limits; the slot is held until the [`Admission`] drops.
    pub fn admit(&self, ip: IpAddr) -> Result<Admission, Refusal> {
        self.limits.admit(ip, &Settings::of(&self.config()), crate::clock::now_ms())
    }

    /// Check `user`/`password` for a client at `ip` over `proto`.
    ///
    /// The attempt is counted as a failure before the password is hashed
    /// (so parallel guesses cannot pass the limit), and every failure is
    /// answered at one deadline, `auth.failure_delay` after the attempt
    /// began, whether the user exists or not: together with unknown users
    /// being hashed at the file's costliest parameters, the answer time
    /// says nothing about which users exist.
    ///
    /// The login cache is asked only once the attempt is reserved: a
    /// remembered wrong password is a failure like any other (counted,
    /// answered at the deadline); it only saves the Argon2id run.
    pub async fn check_login(self: &Rc<Self>, ip: IpAddr, proto: &str, user: &str, password: &str) -> Login {
        let started = Instant::now();
        let config = self.config();
        let user = user.to_ascii_lowercase();
        let attempt = match self.limits.begin_login(ip, &user, &Settings::of(&config), crate::clock::now_ms()) {
            Ok(attempt) => attempt,
            Err(Locked { excess }) => {
                // A growing delay (capped) makes guessing from this address slow.
                glommio::timer::sleep(config.auth.failure_delay.get() * (excess + 1).min(10)).await;
                self.metrics.auth(false);
                tracing::warn!(core = self.id, client = %ip, proto, user = %user, reason = "too many authentication failures", "refused");
                return Login::Locked;
            }
        };
        let users = self.users();
        let cache = CacheSettings::of(&config.auth);
        let tag = self.auth_cache.borrow().tag(&user, password);
        let remembered = self.auth_cache.borrow_mut().lookup(&tag, users.stored_hash(&user), crate::clock::now_ms());
        self.metrics.auth_cache(remembered.is_some());
        let ok = match remembered {
            Some(ok) => ok,
            None => {
                let (db, checked, pw) = (users.clone(), user.clone(), password.to_string());
                let ok = glommio::executor().spawn_blocking(move || db.check(&checked, &pw)).await;
                // Remembered against the users file it was checked with: if
                // a reload came meanwhile, the next lookup sees the change.
                let stored = users.stored_hash(&user);
                self.auth_cache.borrow_mut().remember(tag, stored, ok, crate::clock::now_ms(), cache);
                ok
            }
        };
        if ok {
            attempt.succeeded();
            self.metrics.auth(true);
            return Login::Ok;
        }
        let deadline = started + config.auth.failure_delay.get();
        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
        attempt.failed();
        self.metrics.auth(false);
        tracing::warn!(core = self.id, client = %ip, proto, user = %user, "authentication failed");
        Login::Failed
    }
}
