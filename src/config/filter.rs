//! `[filter]`: content filters in front of the spool: the milters
//! (`[[filter.milter]]`), and the client screening of issue 18 (DNSBL and
//! DNSWL, reverse DNS, HELO checks, greylisting; see [`crate::screen`]).

use super::units::Span;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `[filter]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Also filter mail from authenticated users and `permit_relay_from`
    /// clients (outbound spam and viruses); by default only the others'.
    #[serde(default)]
    pub outbound: bool,
    /// `[[filter.milter]]`: run in this order, each seeing the previous
    /// one's changes.
    #[serde(default)]
    pub milter: Vec<Milter>,
    /// DNS blocklists, postscreen's `domain[=filter][*weight]` each
    /// ([`crate::screen::site`]); a client whose weights add up to
    /// `dnsbl_threshold` or more is refused (or tagged).
    #[serde(default)]
    pub dnsbl: Vec<String>,
    /// The score that counts as listed (default 1).
    #[serde(default = "default_threshold")]
    pub dnsbl_threshold: i32,
    #[serde(default)]
    pub dnsbl_action: ListAction,
    /// DNS allowlists, same syntax: a client whose matching entries' weights
    /// add up to 1 or more (any one listing, with the default weight) skips
    /// the DNSBL, reverse-DNS, HELO and greylisting checks.
    #[serde(default)]
    pub dnswl: Vec<String>,
    /// Forward-confirmed reverse DNS of the client (FCrDNS).
    #[serde(default)]
    pub reverse_dns: CheckAction,
    /// HELO a bare IP address, or our own name or address.
    #[serde(default)]
    pub helo_checks: CheckAction,
    /// Greylist (client network, sender, recipient) triplets.
    #[serde(default)]
    pub greylist: bool,
    /// How long a new triplet is deferred.
    #[serde(default = "default_greylist_delay")]
    pub greylist_delay: Span,
    /// How long a triplet is remembered after it was last seen.
    #[serde(default = "default_greylist_expiry")]
    pub greylist_expiry: Span,
}

// By hand: a missing `[filter]` must get the same defaults as an empty one.
impl Default for Filter {
    fn default() -> Filter {
        Filter {
            outbound: false,
            milter: Vec::new(),
            dnsbl: Vec::new(),
            dnsbl_threshold: default_threshold(),
            dnsbl_action: ListAction::default(),
            dnswl: Vec::new(),
            reverse_dns: CheckAction::default(),
            helo_checks: CheckAction::default(),
            greylist: false,
            greylist_delay: default_greylist_delay(),
            greylist_expiry: default_greylist_expiry(),
        }
    }
}

/// `filter.dnsbl_action`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListAction {
    /// 554 5.7.1 at RCPT, naming the lists.
    #[default]
    Reject,
    /// Accept; say so in the `X-Ringmail-Filter:` header.
    Tag,
}

/// `filter.reverse_dns`, `filter.helo_checks`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckAction {
    /// Refuse at RCPT.
    Reject,
    /// Accept; say so in the message's headers.
    #[default]
    Tag,
    /// Do not check.
    Ignore,
}

/// One `[[filter.milter]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Milter {
    /// `"inet:HOST:PORT"` (an IP address, `[v6]` allowed) or
    /// `"unix:/path.sock"`, as Postfix writes them.
    pub address: String,
    #[serde(default)]
    pub stage: MilterStage,
    #[serde(default)]
    pub on_error: OnError,
    /// Bound on connecting and on each read and write.
    #[serde(default = "default_timeout")]
    pub timeout: Span,
}

/// `filter.milter.stage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MilterStage {
    /// Connect, HELO, MAIL and each RCPT as they happen, each able to
    /// refuse that command; the message after DATA on the same connection
    /// (one per SMTP session, as Postfix's `smtpd_milters`).
    Connect,
    /// The whole conversation replayed after DATA.
    #[default]
    Data,
}

/// `filter.milter.on_error`: what a milter that cannot be reached, times
/// out or breaks the protocol means for the message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// 451 4.7.1: the client tries again later.
    #[default]
    Tempfail,
    /// Go on as if the milter had accepted (a warning is logged).
    Accept,
}

/// Where a milter listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MilterAddr {
    Inet(SocketAddr),
    Unix(PathBuf),
}

impl MilterAddr {
    /// Parse `inet:HOST:PORT` / `unix:PATH` (Postfix's spelling; host
    /// names are not resolved: give an address).
    pub fn parse(s: &str) -> Result<MilterAddr, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err("a unix: socket path must be absolute".into());
            }
            return Ok(MilterAddr::Unix(PathBuf::from(path)));
        }
        let Some(rest) = s.strip_prefix("inet:") else {
            return Err("expected \"inet:ADDRESS:PORT\" or \"unix:/path\"".into());
        };
        let (host, port) = rest.rsplit_once(':').ok_or("no :PORT")?;
        let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip: std::net::IpAddr = host.parse().map_err(|_| format!("{host:?} is not an IP address"))?;
        Ok(MilterAddr::Inet(SocketAddr::new(ip, port)))
    }
}

fn default_timeout() -> Span {
    Span::secs(30)
}

fn default_threshold() -> i32 {
    1
}

fn default_greylist_delay() -> Span {
    Span::secs(300)
}

fn default_greylist_expiry() -> Span {
    Span::secs(35 * 86_400)
}

impl Filter {
    /// Every problem with the entries, naming the key.
    pub(super) fn problems(&self, p: &mut Vec<String>) {
        for (i, m) in self.milter.iter().enumerate() {
            let at = format!("filter.milter[{i}]");
            if let Err(why) = MilterAddr::parse(&m.address) {
                p.push(format!("{at}.address = {:?}: {why}", m.address));
            }
            if m.timeout.get().is_zero() {
                p.push(format!("{at}.timeout must be more than 0"));
            }
        }
        for (key, entries) in [("dnsbl", &self.dnsbl), ("dnswl", &self.dnswl)] {
            for (i, entry) in entries.iter().enumerate() {
                if let Err(why) = crate::screen::site::Site::parse(entry) {
                    p.push(format!("filter.{key}[{i}] = {entry:?}: {why}"));
                }
            }
        }
        if self.dnsbl_threshold < 1 {
            p.push(format!("filter.dnsbl_threshold = {} must be at least 1", self.dnsbl_threshold));
        }
        if self.greylist_expiry.get() <= self.greylist_delay.get() {
            p.push("filter.greylist_expiry must be longer than filter.greylist_delay".to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_list_entries_are_problems_naming_the_key() {
        let f: Filter = toml::from_str(
            r#"dnsbl = ["zen.spamhaus.org=127.0.0.[2..11]*3", "bl.example=127.0.0.[9..2]"]
dnswl = ["wl.example*x"]
dnsbl_threshold = 0"#,
        )
        .unwrap();
        let mut p = Vec::new();
        f.problems(&mut p);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("filter.dnsbl[1] = \"bl.example=127.0.0.[9..2]\": octet"), "{p:?}");
        assert!(p[1].starts_with("filter.dnswl[0] = \"wl.example*x\": weight"), "{p:?}");
        assert!(p[2].contains("filter.dnsbl_threshold"), "{p:?}");
    }

    #[test]
    fn an_empty_filter_section_has_the_documented_defaults() {
        let f: Filter = toml::from_str("").unwrap();
        let d = Filter::default();
        assert_eq!((f.dnsbl_threshold, d.dnsbl_threshold), (1, 1));
        assert_eq!((f.reverse_dns, d.reverse_dns), (CheckAction::Tag, CheckAction::Tag));
        assert_eq!((f.helo_checks, f.dnsbl_action), (CheckAction::Tag, ListAction::Reject));
        assert_eq!(f.greylist_delay.get(), std::time::Duration::from_secs(300));
        assert_eq!(d.greylist_expiry.get(), std::time::Duration::from_secs(35 * 86_400));
        assert!(!f.greylist && !d.greylist);
    }

    #[test]
    fn addresses_parse_like_postfix_writes_them() {
        assert_eq!(MilterAddr::parse("inet:127.0.0.1:11332"), Ok(MilterAddr::Inet("127.0.0.1:11332".parse().unwrap())));
        assert_eq!(MilterAddr::parse("inet:[::1]:8891"), Ok(MilterAddr::Inet("[::1]:8891".parse().unwrap())));
        assert_eq!(
            MilterAddr::parse("unix:/run/rspamd/milter.sock"),
            Ok(MilterAddr::Unix("/run/rspamd/milter.sock".into()))
        );
        assert!(MilterAddr::parse("inet:localhost:11332").is_err());
        assert!(MilterAddr::parse("unix:relative.sock").is_err());
        assert!(MilterAddr::parse("127.0.0.1:11332").is_err());
        assert!(MilterAddr::parse("inet:127.0.0.1").is_err());
    }
}
