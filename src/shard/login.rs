//! Password checks for SMTP AUTH and POP3, shared: the per-IP lockout,
//! Argon2id off the I/O path, the uniform failure delay, and one log line
//! per failure in a form fail2ban can match
//! (`authentication failed ... client=IP`).

use super::Shard;
use crate::auth;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

/// What a login attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    Ok,
    /// Wrong user or password (indistinguishable on purpose).
    Failed,
    /// Too many failures from this address: refused without checking.
    Locked,
}

impl Shard {
    /// Check `user`/`password` for a client at `ip` over `proto`.
    pub async fn check_login(self: &Rc<Self>, ip: IpAddr, proto: &str, user: &str, password: &str) -> Login {
        let now = crate::relay::now_ms();
        let locked = self.limits.borrow().auth_locked(ip, now);
        if let Some(excess) = locked {
            // A growing delay (capped) makes guessing from this address slow.
            let delay = self.config().auth.failure_delay.get() * (excess + 1).min(10);
            glommio::timer::sleep(delay).await;
            self.limits.borrow_mut().auth_failed(ip, crate::relay::now_ms());
            self.metrics.auth(false);
            tracing::warn!(core = self.id, client = %ip, proto, user = %user, reason = "too many authentication failures", "refused");
            return Login::Locked;
        }
        let user = user.to_ascii_lowercase();
        let hash = self.users().hash_of(&user);
        let pw = password.to_string();
        let ok = glommio::executor().spawn_blocking(move || auth::verify(hash.as_deref(), &pw)).await;
        if ok {
            self.limits.borrow_mut().auth_succeeded(ip);
            self.metrics.auth(true);
            return Login::Ok;
        }
        glommio::timer::sleep(self.config().auth.failure_delay.get().max(Duration::ZERO)).await;
        self.limits.borrow_mut().auth_failed(ip, crate::relay::now_ms());
        self.metrics.auth(false);
        tracing::warn!(core = self.id, client = %ip, proto, user = %user, "authentication failed");
        Login::Failed
    }
}
