//! What CAPA tells a client of the site's mail policy (RFC 2449): EXPIRE
//! (§6.7, how long mail may stay on the server) and LOGIN-DELAY (§6.5, how
//! long to wait between logins).
//!
//! Owns: the values and their CAPA lines. Must not: read the config (the
//! driver turns `[retention]` into a [`Policy`]) or enforce anything.

use std::fmt::Write as _;

/// The policy CAPA announces: the site's before login, the user's after.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Days a message is kept at least: `None` is `EXPIRE NEVER` (kept
    /// until the client deletes it), `Some(0)` means the client must not
    /// leave mail on the server (it goes at QUIT once retrieved).
    pub expire_days: Option<u64>,
    /// Seconds a client should leave between logins; `None`: not announced.
    pub login_delay_secs: Option<u64>,
    /// Before login only: some users' EXPIRE may differ from this one
    /// (the capability then ends in `USER`).
    pub expire_varies: bool,
    /// Before login only: some users' LOGIN-DELAY may differ.
    pub login_delay_varies: bool,
}

impl Policy {
    /// The same values as a logged-in user's: nothing varies any more.
    pub fn for_user(self) -> Policy {
        Policy { expire_varies: false, login_delay_varies: false, ..self }
    }

    /// Appends the EXPIRE line, and LOGIN-DELAY's when there is one.
    pub(super) fn write_capabilities(&self, out: &mut Vec<u8>) {
        let user = |varies: bool| if varies { " USER" } else { "" };
        let mut text = String::new();
        match self.expire_days {
            Some(days) => text.push_str(&format!("EXPIRE {days}")),
            None => text.push_str("EXPIRE NEVER"),
        }
        let _ = write!(text, "{}\r\n", user(self.expire_varies));
        match (self.login_delay_secs, self.login_delay_varies) {
            (Some(secs), varies) => {
                let _ = write!(text, "LOGIN-DELAY {secs}{}\r\n", user(varies));
            }
            // No site-wide delay, but some users have one.
            (None, true) => text.push_str("LOGIN-DELAY 0 USER\r\n"),
            (None, false) => {}
        }
        out.extend_from_slice(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capa(p: Policy) -> String {
        let mut out = Vec::new();
        p.write_capabilities(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn no_policy_is_expire_never_and_no_login_delay() {
        assert_eq!(capa(Policy::default()), "EXPIRE NEVER\r\n");
    }

    #[test]
    fn values_and_user_suffixes() {
        let site = Policy {
            expire_days: Some(30),
            login_delay_secs: Some(900),
            expire_varies: true,
            login_delay_varies: false,
        };
        assert_eq!(capa(site), "EXPIRE 30 USER\r\nLOGIN-DELAY 900\r\n");
        assert_eq!(capa(site.for_user()), "EXPIRE 30\r\nLOGIN-DELAY 900\r\n");
        let some_users = Policy { login_delay_varies: true, expire_varies: true, ..Policy::default() };
        assert_eq!(capa(some_users), "EXPIRE NEVER USER\r\nLOGIN-DELAY 0 USER\r\n");
        assert_eq!(capa(Policy { expire_days: Some(0), ..Policy::default() }), "EXPIRE 0\r\n");
    }
}
