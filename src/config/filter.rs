//! `[filter]`: content filters in front of the spool. Today the milters
//! (`[[filter.milter]]`); the DNSBL, reverse-DNS, HELO and greylisting
//! keys of issue 18 go beside them.

use super::units::Span;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `[filter]`.
#[derive(Debug, Clone, Default, Deserialize)]
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
    /// Each SMTP command as it happens (refused by check-config for now).
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

impl Filter {
    /// Every problem with the entries, naming the key.
    pub(super) fn problems(&self, p: &mut Vec<String>) {
        for (i, m) in self.milter.iter().enumerate() {
            let at = format!("filter.milter[{i}]");
            if let Err(why) = MilterAddr::parse(&m.address) {
                p.push(format!("{at}.address = {:?}: {why}", m.address));
            }
            if m.stage == MilterStage::Connect {
                p.push(format!(
                    "{at}.stage = \"connect\": not supported yet (milters see the whole conversation after DATA); use \"data\""
                ));
            }
            if m.timeout.get().is_zero() {
                p.push(format!("{at}.timeout must be more than 0"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
