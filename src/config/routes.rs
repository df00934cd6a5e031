//! `relay.routes` values: where mail for a domain goes instead of its MX
//! hosts. This is the one place the grammar is written down (README's
//! routes section points here).
//!
//! ```text
//! value   = target | "[" target *("," target) "]"   ; a TOML string or array
//! target  = smtp | lmtp
//! smtp    = host ":" port                           ; "smarthost.example:25", "[::1]:2525"
//! lmtp    = "lmtp:unix:" path                       ; "lmtp:unix:/run/dovecot/lmtp"
//!         / "lmtp:" host ":" port                   ; "lmtp:127.0.0.1:24", "lmtp:[::1]:24"
//! host    = name / IPv4 / "[" IPv6 "]"              ; no spaces, no control characters
//! path    = an absolute path to a Unix stream socket
//! ```
//!
//! - A list is tried in order (failover): the next target is used when one
//!   refuses, times out or answers 4xx at the greeting.
//! - The targets of one route all speak SMTP or all speak LMTP (RFC 2033):
//!   a route either relays onwards or hands mail to its final store.
//! - A domain whose route is LMTP is a *final destination*: ringmail
//!   accepts RCPT for it from any client, like a local domain, and the
//!   LMTP server decides at delivery which recipients exist (an unknown one
//!   bounces with the server's reply). So an LMTP route is refused for
//!   `"*"` (that would accept mail for every domain from anyone: an open
//!   relay) and for a domain in `local_domains` (whose mail goes to
//!   ringmail's own mailboxes and would never use the route). SMTP routes
//!   do not change who may relay.
//! - LMTP is spoken without STARTTLS or AUTH (it is for a local store), so
//!   `relay.tls` does not apply to it, and no `relay.pool` source address
//!   is bound for it.
//!
//! Values are parsed once, when the config is loaded; the problems are
//! reported by `Config::problems` with the key, and the outbound stage
//! reads only the typed [`RouteTarget`]s.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use thiserror::Error;

/// Where one route target delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// An SMTP server (a smarthost, or the domain's own server).
    Smtp { host: String, port: u16 },
    /// An LMTP server: the domain's final store (Dovecot, Cyrus).
    Lmtp(LmtpAddr),
}

/// Where an LMTP server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmtpAddr {
    /// A Unix stream socket (`lmtp:unix:/run/dovecot/lmtp`).
    Unix(PathBuf),
    /// A TCP port (`lmtp:127.0.0.1:24`).
    Tcp { host: String, port: u16 },
}

/// Why a route target cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TargetError {
    #[error("expected \"host:port\", \"lmtp:host:port\" or \"lmtp:unix:/path\"")]
    NoPort,
    #[error("bad port {0:?}")]
    BadPort(String),
    #[error("empty host")]
    EmptyHost,
    #[error("host {0:?} has a space, a control character or a stray bracket")]
    BadHost(String),
    #[error("an IPv6 address goes in brackets: \"[::1]:25\"")]
    UnbracketedV6,
    #[error("lmtp:unix: needs an absolute socket path")]
    RelativeSocket,
}

impl RouteTarget {
    /// Reads one target (see the module docs for the grammar).
    pub fn parse(value: &str) -> Result<RouteTarget, TargetError> {
        let value = value.trim();
        match value.strip_prefix("lmtp:") {
            Some(rest) => match rest.strip_prefix("unix:") {
                Some(path) if path.starts_with('/') => Ok(RouteTarget::Lmtp(LmtpAddr::Unix(PathBuf::from(path)))),
                Some(_) => Err(TargetError::RelativeSocket),
                None => host_port(rest).map(|(host, port)| RouteTarget::Lmtp(LmtpAddr::Tcp { host, port })),
            },
            None => host_port(value).map(|(host, port)| RouteTarget::Smtp { host, port }),
        }
    }

    /// The target speaks LMTP.
    pub fn is_lmtp(&self) -> bool {
        match self {
            RouteTarget::Smtp { .. } => false,
            RouteTarget::Lmtp(_) => true,
        }
    }
}

/// The target as the grammar writes it (`host:port`, `[v6]:port`,
/// `lmtp:unix:/path`, `lmtp:host:port`): what logs and shaping rules name.
impl fmt::Display for RouteTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A host named `lmtp` is bracketed too, or `lmtp:25` would read
        // back as an LMTP target.
        let host_port = |f: &mut fmt::Formatter<'_>, host: &str, port: u16| match host.contains(':') || host == "lmtp" {
            true => write!(f, "[{host}]:{port}"),
            false => write!(f, "{host}:{port}"),
        };
        match self {
            RouteTarget::Smtp { host, port } => host_port(f, host, *port),
            RouteTarget::Lmtp(LmtpAddr::Unix(path)) => write!(f, "lmtp:unix:{}", path.display()),
            RouteTarget::Lmtp(LmtpAddr::Tcp { host, port }) => {
                f.write_str("lmtp:")?;
                host_port(f, host, *port)
            }
        }
    }
}

/// `host:port` or `[v6]:port`.
fn host_port(value: &str) -> Result<(String, u16), TargetError> {
    let (host, port) = value.rsplit_once(':').ok_or(TargetError::NoPort)?;
    let port: u16 = port.parse().map_err(|_| TargetError::BadPort(port.to_string()))?;
    let host = match host.strip_prefix('[') {
        Some(rest) => rest.strip_suffix(']').ok_or(TargetError::UnbracketedV6)?,
        None if host.contains(':') => return Err(TargetError::UnbracketedV6),
        None => host,
    };
    if host.is_empty() {
        return Err(TargetError::EmptyHost);
    }
    // A bracket left inside (`[[::1]:25`) would be written back as a
    // different target.
    if host.chars().any(|c| c.is_whitespace() || c.is_control() || c == '[' || c == ']') {
        return Err(TargetError::BadHost(host.to_string()));
    }
    Ok((host.to_string(), port))
}

/// One `relay.routes` value (see the module docs), parsed at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTargets {
    /// The valid targets, in the order they are tried.
    targets: Vec<RouteTarget>,
    /// The values that could not be read, as written, for `problems`.
    invalid: Vec<(String, TargetError)>,
}

impl RouteTargets {
    /// A route to `targets` as written, in order; unreadable ones are kept
    /// aside for [`RouteTargets::problems`] and never tried.
    pub fn new(targets: Vec<String>) -> RouteTargets {
        let mut route = RouteTargets { targets: Vec::new(), invalid: Vec::new() };
        for written in targets {
            match RouteTarget::parse(&written) {
                Ok(t) => route.targets.push(t),
                Err(e) => route.invalid.push((written, e)),
            }
        }
        route
    }

    /// The valid targets, in the order they are tried.
    pub fn targets(&self) -> &[RouteTarget] {
        &self.targets
    }

    /// The first target: the one the route's site is named after.
    pub fn primary(&self) -> Option<&RouteTarget> {
        self.targets.first()
    }

    /// Every target speaks LMTP (and there is one): the domain is a final
    /// destination (see the module docs).
    pub fn is_lmtp(&self) -> bool {
        !self.targets.is_empty() && self.targets.iter().all(RouteTarget::is_lmtp)
    }

    /// What is wrong with this value as the route of `domain` (the
    /// `relay.routes` key; `local` says it is in `local_domains`), one
    /// line per problem naming the key.
    pub fn problems(&self, domain: &str, local: bool) -> Vec<String> {
        let key = format!("relay.routes.{domain:?}");
        let mut p: Vec<String> = self.invalid.iter().map(|(written, e)| format!("{key} = {written:?}: {e}")).collect();
        if self.targets.is_empty() && self.invalid.is_empty() {
            p.push(format!("{key}: an empty list (give at least one \"host:port\")"));
        }
        let lmtp = self.targets.iter().any(RouteTarget::is_lmtp);
        if lmtp && self.targets.iter().any(|t| !t.is_lmtp()) {
            p.push(format!(
                "{key}: mixes LMTP and SMTP targets (a route hands mail to its store or relays it, not both)"
            ));
        }
        if lmtp && domain == "*" {
            p.push(format!(
                "{key}: an LMTP route makes its domain a final destination accepted from anyone; for \"*\" that is an open relay (name the domains)"
            ));
        }
        if lmtp && local {
            p.push(format!("{key}: the domain is in local_domains, so its mail goes to local mailboxes and never to this LMTP route"));
        }
        p
    }
}

impl fmt::Display for RouteTargets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.targets.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

impl From<&str> for RouteTargets {
    fn from(target: &str) -> RouteTargets {
        RouteTargets::new(vec![target.to_string()])
    }
}

impl<'de> Deserialize<'de> for RouteTargets {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Value {
            One(String),
            Many(Vec<String>),
        }
        Ok(match Value::deserialize(d)? {
            Value::One(target) => RouteTargets::new(vec![target]),
            Value::Many(targets) => RouteTargets::new(targets),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smtp(host: &str, port: u16) -> RouteTarget {
        RouteTarget::Smtp { host: host.into(), port }
    }

    #[test]
    fn every_form_of_the_grammar_parses_to_its_target() {
        let cases = [
            ("smart.example:25", smtp("smart.example", 25)),
            ("127.0.0.1:2525", smtp("127.0.0.1", 2525)),
            ("[::1]:26", smtp("::1", 26)),
            (" mx.test:25 ", smtp("mx.test", 25)),
            ("[lmtp]:25", smtp("lmtp", 25)),
            ("lmtp:unix:/run/dovecot/lmtp", RouteTarget::Lmtp(LmtpAddr::Unix("/run/dovecot/lmtp".into()))),
            ("lmtp:127.0.0.1:24", RouteTarget::Lmtp(LmtpAddr::Tcp { host: "127.0.0.1".into(), port: 24 })),
            ("lmtp:[::1]:24", RouteTarget::Lmtp(LmtpAddr::Tcp { host: "::1".into(), port: 24 })),
            (
                "lmtp:store.internal:2424",
                RouteTarget::Lmtp(LmtpAddr::Tcp { host: "store.internal".into(), port: 2424 }),
            ),
        ];
        for (written, want) in cases {
            assert_eq!(RouteTarget::parse(written), Ok(want.clone()), "{written}");
            // Display writes it back in the grammar, and that reads the same.
            assert_eq!(RouteTarget::parse(&want.to_string()), Ok(want), "{written}");
        }
    }

    #[test]
    fn malformed_targets_name_what_is_wrong() {
        let cases = [
            ("nohostport", TargetError::NoPort),
            ("h:x", TargetError::BadPort("x".into())),
            ("h:70000", TargetError::BadPort("70000".into())),
            (":25", TargetError::EmptyHost),
            ("::1:25", TargetError::UnbracketedV6),
            ("[::1:25", TargetError::UnbracketedV6),
            ("a b:25", TargetError::BadHost("a b".into())),
            ("[[::1]:25", TargetError::BadHost("[::1".into())),
            ("a]b:25", TargetError::BadHost("a]b".into())),
            ("lmtp:unix:run/lmtp", TargetError::RelativeSocket),
            ("lmtp:unix:", TargetError::RelativeSocket),
            ("lmtp:24", TargetError::NoPort),
            ("lmtp:", TargetError::NoPort),
            ("lmtp::24", TargetError::EmptyHost),
        ];
        for (written, want) in cases {
            assert_eq!(RouteTarget::parse(written), Err(want), "{written}");
        }
    }

    #[test]
    fn a_list_keeps_its_order_and_sets_bad_entries_aside() {
        let r = RouteTargets::new(vec!["a.test:25".into(), "bad".into(), "[::1]:26".into()]);
        assert_eq!(r.targets(), [smtp("a.test", 25), smtp("::1", 26)]);
        assert_eq!(r.primary(), Some(&smtp("a.test", 25)));
        let p = r.problems("x.test", false);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("relay.routes.\"x.test\" = \"bad\""), "{p:?}");
    }

    #[test]
    fn only_an_all_lmtp_route_makes_a_final_destination() {
        assert!(RouteTargets::from("lmtp:unix:/run/lmtp").is_lmtp());
        assert!(!RouteTargets::from("smart.test:25").is_lmtp());
        assert!(!RouteTargets::new(vec![]).is_lmtp());
        let mixed = RouteTargets::new(vec!["lmtp:127.0.0.1:24".into(), "smart.test:25".into()]);
        assert!(!mixed.is_lmtp());
        assert!(mixed.problems("x.test", false).iter().any(|p| p.contains("mixes LMTP and SMTP")));
    }

    #[test]
    fn lmtp_for_every_domain_or_a_local_domain_is_a_problem() {
        let lmtp = RouteTargets::from("lmtp:unix:/run/lmtp");
        assert!(lmtp.problems("*", false).iter().any(|p| p.contains("open relay")));
        assert!(lmtp.problems("example.net", true).iter().any(|p| p.contains("local_domains")));
        assert_eq!(lmtp.problems("example.org", false), Vec::<String>::new());
        // An SMTP smarthost for everything is fine: it does not widen relaying.
        assert_eq!(RouteTargets::from("smart.test:25").problems("*", false), Vec::<String>::new());
        assert!(RouteTargets::new(vec![]).problems("x.test", false)[0].contains("empty list"));
    }

    #[test]
    fn toml_string_and_array_values_both_deserialize() {
        #[derive(Deserialize)]
        struct T {
            one: RouteTargets,
            many: RouteTargets,
        }
        let t: T = toml::from_str("one = \"lmtp:unix:/x\"\nmany = [\"a:1\", \"b:2\"]\n").expect("valid toml");
        assert!(t.one.is_lmtp());
        assert_eq!(t.many.to_string(), "a:1, b:2");
    }
}
