//! Egress pools (`[[relay.pool]]`, `relay.default_pool`,
//! `relay.pool_by_sender_domain`): which source addresses outbound mail
//! leaves from, chosen by the envelope sender's domain.
//!
//! Only the shape and the choice of pool live here; the checks are in
//! `checks` with the other relay checks, whether each address belongs to
//! this machine is a start-up check (`startup::preflight`), and binding
//! sockets is the outbound stage's. [`Source`] is not re-exported from
//! `config`: that name there is the config file's origin.

use super::Relay;
use serde::Deserialize;
use std::net::IpAddr;

/// One `[[relay.pool]]`: a named set of source addresses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// What `default_pool` and `pool_by_sender_domain` call it; unique.
    pub name: String,
    /// At least one; no address twice.
    pub sources: Vec<Source>,
}

/// One source address of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Outbound sockets bind to it: must be an address of this machine
    /// (checked at start).
    pub ip: IpAddr,
    /// The EHLO name on connections from `ip`; None: `hostname`.
    #[serde(default)]
    pub ehlo: Option<String>,
    /// Its share of the pool's connections relative to the other sources
    /// (>= 1; default 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

impl Relay {
    /// The pool (an index into [`Relay::pool`]) for mail from `sender`:
    /// its domain (after the last '@', compared lower-case) looked up in
    /// `pool_by_sender_domain`, else `default_pool`; the null sender ("")
    /// and a sender without a domain get `default_pool`. None: send from
    /// the system's default source address.
    pub fn pool_for_sender(&self, sender: &str) -> Option<usize> {
        let domain = sender.rsplit_once('@').map_or("", |(_, d)| d).trim_end_matches('.');
        let name = match domain.is_empty() {
            true => None,
            // Keys are lower-cased at load; avoid the allocation when the
            // sender already is.
            false if domain.bytes().any(|b| b.is_ascii_uppercase()) => {
                self.pool_by_sender_domain.get(&domain.to_ascii_lowercase())
            }
            false => self.pool_by_sender_domain.get(domain),
        };
        let name = name.or(self.default_pool.as_ref())?;
        self.pool.iter().position(|p| &p.name == name)
    }

    /// Keys are domains: compare them as parsed addresses hold them,
    /// lower-case A-labels without a trailing dot (`例子.test` matches
    /// `xn--fsqu00a.test`). `relay.routes` and `relay.tls_policy` keys too, so an RCPT's domain
    /// finds its route with one lookup; of two keys that are the same
    /// domain spelled differently, one is kept. `"*"` stays as it is.
    pub(super) fn normalize(&mut self) {
        self.pool_by_sender_domain =
            std::mem::take(&mut self.pool_by_sender_domain).into_iter().map(|(k, v)| (domain_key(&k), v)).collect();
        self.routes = std::mem::take(&mut self.routes).into_iter().map(|(k, v)| (domain_key(&k), v)).collect();
        self.tls_policy = std::mem::take(&mut self.tls_policy).into_iter().map(|(k, v)| (domain_key(&k), v)).collect();
    }
}

/// A domain as a lookup key: its A-label, lower case, no trailing dot; a
/// key that is not a domain (`"*"`) only lower-cased.
fn domain_key(key: &str) -> String {
    let key = key.trim_end_matches('.');
    crate::proto::smtp::ascii_domain(key).unwrap_or_else(|_| key.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError, Source as Origin};
    use std::path::PathBuf;

    const LISTEN: &str = "[listen]\nsmtp = \"127.0.0.1:25\"\n";

    fn parse(relay: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{LISTEN}[relay]\n{relay}"), Origin::File(PathBuf::from("/etc/ringmail/ringmail.toml")))
    }

    fn problems(relay: &str) -> String {
        match parse(relay) {
            Err(ConfigError::Invalid { problems, .. }) => problems.join("\n"),
            other => panic!("{relay}: {other:?}"),
        }
    }

    const POOLS: &str = "default_pool = \"bulk\"\n\
        pool_by_sender_domain = { \"News.Example.ORG.\" = \"transactional\" }\n\
        [[relay.pool]]\nname = \"bulk\"\n\
        sources = [{ ip = \"127.0.0.2\", ehlo = \"out1.example.net\", weight = 2 }, { ip = \"127.0.0.3\" }]\n\
        [[relay.pool]]\nname = \"transactional\"\nsources = [{ ip = \"::1\" }]\n";

    #[test]
    fn pools_parse_with_their_defaults() {
        let cfg = parse(POOLS).unwrap();
        let bulk = &cfg.relay.pool[0];
        assert_eq!(bulk.name, "bulk");
        assert_eq!(bulk.sources[0].ip, "127.0.0.2".parse::<std::net::IpAddr>().unwrap());
        assert_eq!((bulk.sources[0].ehlo.as_deref(), bulk.sources[0].weight), (Some("out1.example.net"), 2));
        assert_eq!((bulk.sources[1].ehlo.as_deref(), bulk.sources[1].weight), (None, 1), "ehlo and weight default");
        assert_eq!(cfg.relay.pool_by_sender_domain.keys().collect::<Vec<_>>(), ["news.example.org"]);
    }

    #[test]
    fn route_keys_are_a_labels_so_a_u_label_route_matches_either_spelling() {
        let cfg =
            parse("routes = { \"B\u{fc}cher.Example.\" = \"127.0.0.1:2525\", \"*\" = \"127.0.0.1:25\" }").unwrap();
        let keys: Vec<&String> = cfg.relay.routes.keys().collect();
        assert_eq!(keys, ["*", "xn--bcher-kva.example"]);
    }

    #[test]
    fn the_sender_domain_picks_the_pool_else_the_default_pool_else_none() {
        let cfg = parse(POOLS).unwrap();
        let r = &cfg.relay;
        assert_eq!(r.pool_for_sender("list@news.example.org"), Some(1));
        assert_eq!(r.pool_for_sender("List@NEWS.Example.org"), Some(1), "the domain compared lower-case");
        assert_eq!(r.pool_for_sender("a@sub.news.example.org"), Some(0), "exact domain only: the default pool");
        assert_eq!(r.pool_for_sender("a@other.test"), Some(0));
        assert_eq!(r.pool_for_sender(""), Some(0), "bounces (the null sender) use the default pool");
        assert_eq!(r.pool_for_sender("postmaster"), Some(0));
        assert_eq!(r.pool_for_sender("weird@local@news.example.org"), Some(1), "after the last @");
        let no_default = parse(&POOLS.replace("default_pool = \"bulk\"\n", "")).unwrap();
        assert_eq!(no_default.relay.pool_for_sender("a@other.test"), None, "the system's source address");
        assert_eq!(no_default.relay.pool_for_sender("a@news.example.org"), Some(1));
        assert_eq!(parse("").unwrap().relay.pool_for_sender("a@b.test"), None, "no pools at all");
    }

    #[test]
    fn every_pool_mistake_is_reported_naming_the_key() {
        let all = problems(
            "default_pool = \"nope\"\npool_by_sender_domain = { \"a.test\" = \"missing\" }\n\
             [[relay.pool]]\nname = \"p\"\nsources = [{ ip = \"127.0.0.2\", weight = 0 }, { ip = \"127.0.0.2\", ehlo = \"bad name\" }]\n\
             [[relay.pool]]\nname = \"p\"\nsources = []\n",
        );
        for wanted in [
            "relay.default_pool = \"nope\": no [[relay.pool]] has that name",
            "relay.pool_by_sender_domain.\"a.test\" = \"missing\": no [[relay.pool]] has that name",
            "relay.pool \"p\": source 127.0.0.2 has weight = 0: must be at least 1",
            "relay.pool \"p\": source 127.0.0.2 is listed twice",
            "relay.pool \"p\": source 127.0.0.2 has ehlo = \"bad name\": not a host name",
            "relay.pool \"p\": two pools have this name",
            "relay.pool \"p\": sources is empty",
        ] {
            assert!(all.contains(wanted), "{wanted:?} missing from:\n{all}");
        }
        let e = parse("[[relay.pool]]\nname = \"p\"\nsources = [{ ip = \"127.0.0.2\", port = 25 }]\n").unwrap_err();
        assert!(e.to_string().contains("port"), "unknown keys are refused: {e}");
        let e = parse("[[relay.pool]]\nname = \"p\"\nsources = [{ ip = \"not-an-ip\" }]\n").unwrap_err();
        assert!(e.to_string().contains("line 6"), "{e}");
    }

    #[test]
    fn shaping_is_relative_to_the_config_file_and_pools_need_a_restart() {
        let cfg = parse("shaping = \"shaping.toml\"\n").unwrap();
        assert_eq!(cfg.relay.shaping, Some(PathBuf::from("/etc/ringmail/shaping.toml")));
        let abs = parse("shaping = \"/srv/rules.toml\"\n").unwrap();
        assert_eq!(abs.relay.shaping, Some(PathBuf::from("/srv/rules.toml")));
        let pooled = parse(POOLS).unwrap();
        let changed = cfg.needs_restart(&abs);
        assert!(changed.iter().any(|c| c.starts_with("relay.shaping")), "{changed:?}");
        let changed = cfg.needs_restart(&pooled);
        assert!(changed.iter().any(|c| c.starts_with("relay.pool")), "{changed:?}");
        let kept = cfg.with_reloadable(pooled);
        assert!(kept.relay.pool.is_empty() && kept.relay.default_pool.is_none());
        assert_eq!(kept.relay.shaping, cfg.relay.shaping);
        assert!(cfg.needs_restart(&kept).is_empty());
    }
}
