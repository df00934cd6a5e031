//! The address model: which local domains we serve, aliases (to local
//! and/or remote targets), per-domain catch-alls, sub-addressing
//! (`recipient_delimiter`) and the `postmaster@`/`abuse@` role addresses.
//!
//! Owns: turning one RCPT address into the mailboxes and remote addresses
//! it stands for. Built once per config load and shared (`Arc`) by every
//! core, so a RCPT check is a few `HashMap` gets and no lock. Pure: no I/O,
//! no clock, no logging; whether a user exists is asked of the caller
//! (the users file is reloaded on its own schedule).
//!
//! Lookup order for `local+ext@domain` in a local domain (Postfix's):
//! alias `local+ext@domain`, user `local+ext@domain`, then (with a
//! delimiter) alias and user `local@domain`, then the role addresses
//! `postmaster@`/`abuse@` (to the configured postmaster), then the catch-all
//! `@domain`. Alias targets are expanded the same way, recursively, up to
//! [`MAX_DEPTH`] levels and [`MAX_TARGETS`] targets; a target that leads
//! back to an address already being expanded is a loop, unless it is a
//! user's own mailbox (`bob@ = [bob@, copy@]` keeps a copy, as in Postfix).

use std::collections::{HashMap, HashSet};

/// Deepest chain of aliases followed (`a` → `b` → … ).
pub const MAX_DEPTH: usize = 10;

/// Most targets one address may expand to.
pub const MAX_TARGETS: usize = 1000;

/// Where one expanded recipient goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A mailbox here. `address` is the address it was sent to (with its
    /// extension, for Delivered-To); `user` the mailbox owner.
    Local { address: String, user: String },
    /// Relayed to `address` at `domain` (forwarding; the envelope sender is
    /// kept: no SRS).
    Remote { address: String, domain: String },
}

/// Why an address could not be expanded. Each names the address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpansionError {
    #[error("alias loop: {}", chain.join(" -> "))]
    Loop { chain: Vec<String> },
    #[error("aliases nested deeper than {MAX_DEPTH} levels at {address}")]
    TooDeep { address: String },
    #[error("{address} expands to more than {MAX_TARGETS} targets")]
    TooMany { address: String },
    #[error("alias target {address} is neither a user, an alias nor covered by a catch-all")]
    UnknownTarget { address: String },
    #[error("no postmaster configured for {address} (set `postmaster`)")]
    NoPostmaster { address: String },
}

/// The answer for one RCPT address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Not a domain we serve: the caller's relay rules decide.
    NotLocal,
    /// A local domain with no user, alias or catch-all for this address.
    Unknown,
    /// Deliver to these (at least one, each once, in expansion order).
    Targets(Vec<Target>),
    /// A local address whose aliases are broken; refuse it.
    Failed(ExpansionError),
}

/// Everything [`AddressMap::new`] is built from (config keys of the same
/// names, already lowercased and validated).
#[derive(Debug, Clone, Default)]
pub struct AddressSettings {
    /// Our own name: the bare `<postmaster>` arrives as `postmaster@hostname`.
    pub hostname: String,
    pub local_domains: Vec<String>,
    /// `recipient_delimiter`; empty = no sub-addressing.
    pub delimiter: String,
    /// Where `postmaster@` and `abuse@` go; None = `postmaster@<first local
    /// domain>`.
    pub postmaster: Option<String>,
    /// Key (`user@domain` or `@domain`) to its targets, in file order.
    pub aliases: Vec<(String, Vec<String>)>,
}

/// The address model for one config load.
#[derive(Debug, Clone, Default)]
pub struct AddressMap {
    hostname: String,
    domains: HashSet<String>,
    delimiter: String,
    postmaster: Option<String>,
    /// Lowercased key to its targets (as written: a remote local part keeps
    /// its case).
    aliases: HashMap<String, Vec<String>>,
}

impl AddressMap {
    pub fn new(s: AddressSettings) -> AddressMap {
        let postmaster = s
            .postmaster
            .map(|p| p.to_ascii_lowercase())
            .or_else(|| s.local_domains.first().map(|d| format!("postmaster@{d}")));
        let mut aliases: HashMap<String, Vec<String>> = HashMap::new();
        for (key, targets) in s.aliases {
            aliases.entry(key.to_ascii_lowercase()).or_default().extend(targets);
        }
        AddressMap {
            hostname: s.hostname.to_ascii_lowercase(),
            domains: s.local_domains.into_iter().collect(),
            delimiter: s.delimiter,
            postmaster,
            aliases,
        }
    }

    /// Is `domain` (lowercase, no trailing dot) one we deliver locally?
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.domains.contains(domain)
    }

    pub fn domain_count(&self) -> usize {
        self.domains.len()
    }

    pub fn alias_count(&self) -> usize {
        self.aliases.len()
    }

    /// The address `postmaster@`/`abuse@` mail goes to, if any.
    pub fn postmaster(&self) -> Option<&str> {
        self.postmaster.as_deref()
    }

    /// Why mail to `postmaster@` would be refused with these users, if it
    /// would (RFC 5321 §4.5.1 requires taking it): for start-up and
    /// `check-config` to warn about.
    pub fn postmaster_problem(&self, is_user: &dyn Fn(&str) -> bool) -> Option<String> {
        // The default postmaster's domain, else any of ours: all role
        // addresses go to the same place.
        let default_domain = self.postmaster.as_deref().and_then(|p| p.rsplit_once('@')).map(|(_, d)| d);
        let domain = match default_domain {
            Some(d) if self.is_local_domain(d) => d,
            _ => self.domains.iter().min().map_or(self.hostname.as_str(), String::as_str),
        };
        match self.resolve(&format!("postmaster@{domain}"), is_user) {
            Resolution::Targets(_) | Resolution::NotLocal => None,
            Resolution::Unknown => Some(format!("postmaster@{domain} has no mailbox")),
            Resolution::Failed(e) => Some(format!("postmaster@{domain} is refused: {e}")),
        }
    }

    /// Resolve one RCPT address. `is_user` says whether a (lowercase)
    /// address is a mailbox in the users file. Must stay cheap: no I/O.
    pub fn resolve(&self, address: &str, is_user: &dyn Fn(&str) -> bool) -> Resolution {
        let address = address.to_ascii_lowercase();
        let Some((local, domain)) = address.rsplit_once('@') else {
            return Resolution::NotLocal;
        };
        // The bare `<postmaster>` names this host, which need not be a
        // local domain; RFC 5321 §4.5.1 still requires taking it.
        let role_here = domain == self.hostname && is_role(local);
        if !self.is_local_domain(domain) && !role_here {
            return Resolution::NotLocal;
        }
        let mut walk = Walk { map: self, is_user, out: Vec::new(), seen: HashSet::new(), chain: Vec::new() };
        match walk.expand(&address, 0) {
            Ok(true) => Resolution::Targets(walk.out),
            Ok(false) => Resolution::Unknown,
            Err(e) => Resolution::Failed(e),
        }
    }

    /// `local` without its extension, when the delimiter is set and found.
    fn strip_extension<'a>(&self, local: &'a str) -> Option<&'a str> {
        if self.delimiter.is_empty() {
            return None;
        }
        match local.find(self.delimiter.as_str()) {
            Some(i) if i > 0 => Some(&local[..i]),
            _ => None,
        }
    }
}

fn is_role(local: &str) -> bool {
    local == "postmaster" || local == "abuse"
}

/// One expansion in progress.
struct Walk<'a> {
    map: &'a AddressMap,
    is_user: &'a dyn Fn(&str) -> bool,
    out: Vec<Target>,
    /// Targets already in `out`, so each is delivered once.
    seen: HashSet<Target>,
    /// The aliases being expanded, outermost first (for loop detection).
    chain: Vec<String>,
}

impl Walk<'_> {
    /// Expand `address` (lowercase) into `out`. Ok(false): a local address
    /// with nothing behind it.
    fn expand(&mut self, address: &str, depth: usize) -> Result<bool, ExpansionError> {
        let Some((local, domain)) = address.rsplit_once('@') else {
            return Ok(false);
        };
        let role_here = domain == self.map.hostname && is_role(local);
        if !self.map.is_local_domain(domain) && !role_here {
            self.push(Target::Remote { address: address.to_string(), domain: domain.to_string() })?;
            return Ok(true);
        }
        // A copy of the reference, so lookups do not borrow `self`.
        let map = self.map;
        if let Some(targets) = map.aliases.get(address) {
            return self.follow(address, targets, depth);
        }
        if (self.is_user)(address) {
            self.push(Target::Local { address: address.to_string(), user: address.to_string() })?;
            return Ok(true);
        }
        let base = self.map.strip_extension(local);
        if let Some(base) = base {
            let plain = format!("{base}@{domain}");
            if let Some(targets) = map.aliases.get(&plain) {
                return self.follow(address, targets, depth);
            }
            if (self.is_user)(&plain) {
                self.push(Target::Local { address: address.to_string(), user: plain })?;
                return Ok(true);
            }
        }
        if is_role(base.unwrap_or(local)) {
            // The postmaster address itself reaching here has no mailbox.
            match &map.postmaster {
                Some(postmaster) if postmaster != address => {
                    return self.follow(address, std::slice::from_ref(postmaster), depth)
                }
                _ => return Err(ExpansionError::NoPostmaster { address: address.to_string() }),
            }
        }
        if let Some(targets) = map.aliases.get(&format!("@{domain}")) {
            return self.follow(address, targets, depth);
        }
        Ok(false)
    }

    /// Expand each of `targets`, which `address` stands for.
    fn follow(&mut self, address: &str, targets: &[String], depth: usize) -> Result<bool, ExpansionError> {
        if depth >= MAX_DEPTH {
            return Err(ExpansionError::TooDeep { address: address.to_string() });
        }
        self.chain.push(address.to_string());
        for target in targets {
            let lower = target.to_ascii_lowercase();
            if self.chain.contains(&lower) {
                // A user's alias may keep a copy in the user's own mailbox.
                if (self.is_user)(&lower) {
                    self.push(Target::Local { address: lower.clone(), user: lower })?;
                    continue;
                }
                let mut chain = self.chain.clone();
                chain.push(lower);
                return Err(ExpansionError::Loop { chain });
            }
            let found = match lower.rsplit_once('@') {
                // A remote target keeps its local part as written.
                Some((_, domain)) if !self.map.is_local_domain(domain) && !self.is_role_here(&lower) => {
                    self.push(Target::Remote { address: target.clone(), domain: domain.to_string() })?;
                    true
                }
                _ => self.expand(&lower, depth + 1)?,
            };
            if !found {
                return Err(ExpansionError::UnknownTarget { address: lower });
            }
        }
        self.chain.pop();
        Ok(true)
    }

    fn is_role_here(&self, address: &str) -> bool {
        address.rsplit_once('@').is_some_and(|(l, d)| d == self.map.hostname && is_role(l))
    }

    fn push(&mut self, target: Target) -> Result<(), ExpansionError> {
        if self.seen.contains(&target) {
            return Ok(());
        }
        if self.out.len() >= MAX_TARGETS {
            let address = self.chain.first().cloned().unwrap_or_default();
            return Err(ExpansionError::TooMany { address });
        }
        self.seen.insert(target.clone());
        self.out.push(target);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USERS: &[&str] = &["alice@example.net", "bob@example.net", "carol@other.test"];

    fn is_user(a: &str) -> bool {
        USERS.contains(&a)
    }

    fn map(aliases: &[(&str, &[&str])], delimiter: &str, postmaster: Option<&str>) -> AddressMap {
        AddressMap::new(AddressSettings {
            hostname: "mx.example.net".into(),
            local_domains: vec!["example.net".into(), "other.test".into()],
            delimiter: delimiter.into(),
            postmaster: postmaster.map(str::to_string),
            aliases: aliases.iter().map(|(k, v)| (k.to_string(), v.iter().map(|t| t.to_string()).collect())).collect(),
        })
    }

    fn local(address: &str, user: &str) -> Target {
        Target::Local { address: address.into(), user: user.into() }
    }

    fn remote(address: &str, domain: &str) -> Target {
        Target::Remote { address: address.into(), domain: domain.into() }
    }

    #[test]
    fn a_user_resolves_to_its_own_mailbox() {
        let m = map(&[], "", None);
        assert_eq!(
            m.resolve("Bob@Example.NET", &is_user),
            Resolution::Targets(vec![local("bob@example.net", "bob@example.net")])
        );
    }

    #[test]
    fn other_domains_are_not_local() {
        assert_eq!(map(&[], "", None).resolve("x@partner.org", &is_user), Resolution::NotLocal);
    }

    #[test]
    fn unknown_local_address_without_catch_all_is_unknown() {
        assert_eq!(map(&[], "+", None).resolve("nobody@example.net", &is_user), Resolution::Unknown);
    }

    #[test]
    fn alias_expands_to_local_and_remote_targets() {
        let m = map(&[("sales@example.net", &["alice@example.net", "Bob@Partner.org", "carol@other.test"])], "", None);
        assert_eq!(
            m.resolve("sales@example.net", &is_user),
            Resolution::Targets(vec![
                local("alice@example.net", "alice@example.net"),
                remote("Bob@Partner.org", "partner.org"),
                local("carol@other.test", "carol@other.test"),
            ])
        );
    }

    #[test]
    fn nested_aliases_expand_and_duplicates_are_kept_once() {
        let m = map(
            &[
                ("team@example.net", &["sales@example.net", "alice@example.net"]),
                ("sales@example.net", &["alice@example.net", "bob@example.net"]),
            ],
            "",
            None,
        );
        assert_eq!(
            m.resolve("team@example.net", &is_user),
            Resolution::Targets(vec![
                local("alice@example.net", "alice@example.net"),
                local("bob@example.net", "bob@example.net")
            ])
        );
    }

    #[test]
    fn alias_loop_is_refused_with_its_chain() {
        let m = map(&[("a@example.net", &["b@example.net"]), ("b@example.net", &["a@example.net"])], "", None);
        match m.resolve("a@example.net", &is_user) {
            Resolution::Failed(ExpansionError::Loop { chain }) => {
                assert_eq!(chain, ["a@example.net", "b@example.net", "a@example.net"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn alias_to_its_own_user_keeps_a_copy_instead_of_looping() {
        let m = map(&[("bob@example.net", &["bob@example.net", "bob@partner.org"])], "", None);
        assert_eq!(
            m.resolve("bob@example.net", &is_user),
            Resolution::Targets(vec![
                local("bob@example.net", "bob@example.net"),
                remote("bob@partner.org", "partner.org")
            ])
        );
    }

    #[test]
    fn chains_deeper_than_the_limit_are_refused() {
        let names: Vec<String> = (0..=MAX_DEPTH + 1).map(|i| format!("l{i}@example.net")).collect();
        let pairs: Vec<(String, Vec<String>)> = names.windows(2).map(|w| (w[0].clone(), vec![w[1].clone()])).collect();
        let m = AddressMap::new(AddressSettings {
            hostname: "mx.example.net".into(),
            local_domains: vec!["example.net".into()],
            aliases: pairs,
            ..AddressSettings::default()
        });
        assert!(matches!(
            m.resolve("l0@example.net", &|a| a == names.last().unwrap()),
            Resolution::Failed(ExpansionError::TooDeep { .. })
        ));
    }

    #[test]
    fn expansion_beyond_the_cap_is_refused() {
        let targets: Vec<String> = (0..=MAX_TARGETS).map(|i| format!("r{i}@partner.org")).collect();
        let m = AddressMap::new(AddressSettings {
            local_domains: vec!["example.net".into()],
            aliases: vec![("big@example.net".into(), targets)],
            ..AddressSettings::default()
        });
        assert!(matches!(m.resolve("big@example.net", &is_user), Resolution::Failed(ExpansionError::TooMany { .. })));
    }

    #[test]
    fn alias_to_a_missing_local_address_is_refused_not_dropped() {
        let m = map(&[("sales@example.net", &["ghost@example.net"])], "", None);
        assert!(matches!(
            m.resolve("sales@example.net", &is_user),
            Resolution::Failed(ExpansionError::UnknownTarget { address }) if address == "ghost@example.net"
        ));
    }

    #[test]
    fn extension_is_stripped_for_the_user_but_kept_as_the_address() {
        let m = map(&[], "+", None);
        assert_eq!(
            m.resolve("bob+news@example.net", &is_user),
            Resolution::Targets(vec![local("bob+news@example.net", "bob@example.net")])
        );
        // Without a delimiter, bob+news is just an unknown address.
        assert_eq!(map(&[], "", None).resolve("bob+news@example.net", &is_user), Resolution::Unknown);
    }

    #[test]
    fn exact_match_comes_before_the_stripped_one() {
        let m = map(&[("bob+list@example.net", &["alice@example.net"])], "+", None);
        assert_eq!(
            m.resolve("bob+list@example.net", &is_user),
            Resolution::Targets(vec![local("alice@example.net", "alice@example.net")])
        );
        assert_eq!(
            m.resolve("bob+other@example.net", &is_user),
            Resolution::Targets(vec![local("bob+other@example.net", "bob@example.net")])
        );
    }

    #[test]
    fn aliases_are_looked_up_without_the_extension_too() {
        let m = map(&[("sales@example.net", &["alice@example.net"])], "+", None);
        assert_eq!(
            m.resolve("sales+q3@example.net", &is_user),
            Resolution::Targets(vec![local("alice@example.net", "alice@example.net")])
        );
    }

    #[test]
    fn catch_all_takes_what_nothing_else_matches_in_its_domain() {
        let m = map(&[("@example.net", &["alice@example.net"])], "", None);
        assert_eq!(
            m.resolve("whoever@example.net", &is_user),
            Resolution::Targets(vec![local("alice@example.net", "alice@example.net")])
        );
        assert_eq!(
            m.resolve("bob@example.net", &is_user),
            Resolution::Targets(vec![local("bob@example.net", "bob@example.net")])
        );
        assert_eq!(m.resolve("whoever@other.test", &is_user), Resolution::Unknown);
    }

    #[test]
    fn catch_all_to_a_missing_address_of_its_own_domain_is_a_loop() {
        let m = map(&[("@example.net", &["nobody@example.net"])], "", None);
        assert!(matches!(m.resolve("x@example.net", &is_user), Resolution::Failed(ExpansionError::Loop { .. })));
    }

    #[test]
    fn role_addresses_of_every_local_domain_and_the_hostname_go_to_the_postmaster() {
        let m = map(&[], "", Some("alice@example.net"));
        for a in ["postmaster@example.net", "abuse@other.test", "PostMaster@mx.example.net"] {
            assert_eq!(
                m.resolve(a, &is_user),
                Resolution::Targets(vec![local("alice@example.net", "alice@example.net")]),
                "{a}"
            );
        }
    }

    #[test]
    fn role_address_comes_before_the_catch_all_but_after_an_explicit_alias() {
        let m = map(
            &[("@example.net", &["bob@example.net"]), ("abuse@other.test", &["carol@other.test"])],
            "",
            Some("alice@example.net"),
        );
        assert_eq!(
            m.resolve("postmaster@example.net", &is_user),
            Resolution::Targets(vec![local("alice@example.net", "alice@example.net")])
        );
        assert_eq!(
            m.resolve("abuse@other.test", &is_user),
            Resolution::Targets(vec![local("carol@other.test", "carol@other.test")])
        );
    }

    #[test]
    fn unset_postmaster_defaults_to_postmaster_of_the_first_domain() {
        let m = map(&[], "", None);
        assert_eq!(m.postmaster(), Some("postmaster@example.net"));
        let is_pm = |a: &str| a == "postmaster@example.net";
        assert_eq!(
            m.resolve("abuse@other.test", &is_pm),
            Resolution::Targets(vec![local("postmaster@example.net", "postmaster@example.net")])
        );
        // And when that user does not exist, the RCPT is refused, not looped.
        assert!(matches!(
            m.resolve("abuse@other.test", &is_user),
            Resolution::Failed(ExpansionError::NoPostmaster { .. })
        ));
    }

    #[test]
    fn remote_postmaster_is_forwarded() {
        let m = map(&[], "", Some("hostmaster@partner.org"));
        assert_eq!(
            m.resolve("postmaster@example.net", &is_user),
            Resolution::Targets(vec![remote("hostmaster@partner.org", "partner.org")])
        );
    }
}
