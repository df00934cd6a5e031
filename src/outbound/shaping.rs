//! The shaping rules file (`[relay] shaping = "shaping.toml"`, issue 12):
//! per-site limits and the replies that make a site back off, and which
//! rule applies to a destination.
//!
//! Owns the file's format (the `[site."NAME"]` tables, their keys and the
//! `backoff` entries: a contract the tests and operators rely on), its
//! validation (every error names the file and line), and the matching of a
//! recipient domain and its MX hosts to a rule. It is pure: no I/O except
//! [`Shaping::load`] reading the file, no clock, no state that changes. It
//! must not count connections or messages, nor decide when to send: the
//! dispatcher does that with the [`SiteLimits`] it gets here.
//!
//! ## Matching
//! `[site."NAME"]` applies to mail for a recipient domain that is NAME or
//! ends in `.NAME`, or whose primary MX host (the first in preference
//! order) ends in NAME or in one of the rule's `mx_suffix` entries, always
//! at a label boundary (`x.google.com` ends in `google.com`,
//! `notgoogle.com` does not). Rules may overlap: the longest matching NAME
//! or suffix (in bytes) wins, and between equally long matches the rule
//! whose NAME sorts first. Mail going to a `relay.routes` target matches by
//! domain only. `[site.default]` fills in what the matched rule leaves
//! unset (or everything, when no rule matched), and the `[relay]` keys
//! `max_connections_per_domain` and `max_messages_per_connection` fill in
//! what `[site.default]` leaves unset ([`Fallback`]).
//!
//! Lookups cost O(labels of the domain and of the primary MX host): NAMEs
//! and suffixes are indexed in hash maps and the label suffixes are walked,
//! so a file with thousands of rules costs no more per message than one.

mod parse;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// A rate: `count` events per `per` ("500/min", "20/s", "10000/h", also "/m", "/sec", "/hour", "/d"/"/day"). count >= 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

/// The units a rate may be written in, with their length.
const RATE_UNITS: [(&[&str], Duration); 4] = [
    (&["s", "sec", "second"], Duration::from_secs(1)),
    (&["m", "min", "minute"], Duration::from_secs(60)),
    (&["h", "hour"], Duration::from_secs(3600)),
    (&["d", "day"], Duration::from_secs(86400)),
];

impl Rate {
    /// Parse `COUNT/UNIT`; spaces around either part are allowed. The error
    /// says what was expected (the caller adds the key and the value).
    pub fn parse(text: &str) -> Result<Rate, String> {
        const EXPECTED: &str = "expected COUNT/UNIT like \"500/min\" (units: s, min, h, d)";
        let (count, unit) = text.split_once('/').ok_or_else(|| EXPECTED.to_string())?;
        let count: u32 = count.trim().parse().map_err(|_| EXPECTED.to_string())?;
        let unit = unit.trim().to_ascii_lowercase();
        let per = RATE_UNITS
            .iter()
            .find(|(names, _)| names.contains(&unit.as_str()))
            .map(|&(_, per)| per)
            .ok_or_else(|| EXPECTED.to_string())?;
        if count == 0 {
            return Err("the count must be at least 1 (leave the key out for no limit)".to_string());
        }
        Ok(Rate { count, per })
    }

    /// Events per second (`count / per`).
    pub fn per_second(&self) -> f64 {
        f64::from(self.count) / self.per.as_secs_f64()
    }
}

impl fmt::Display for Rate {
    /// The canonical form: `500/min`, `20/s`, `10000/h`, `3/d`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            _ if self.per.subsec_nanos() != 0 => None,
            1 => Some("s"),
            60 => Some("min"),
            3600 => Some("h"),
            86400 => Some("d"),
            _ => None,
        };
        match unit {
            Some(unit) => write!(f, "{}/{unit}", self.count),
            // Only a Rate built in code can have another period.
            None => write!(f, "{}/{}", self.count, humantime::format_duration(self.per)),
        }
    }
}

/// What a matching reply does to the site (for the source IP it came on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackoffAction {
    /// `"suspend"`: no new connections or messages for `duration`.
    Suspend,
    /// `"halve-rate"`: halve the current message rate (AIMD's decrease).
    HalveRate,
    /// `"bounce"`: the recipients are bounced at once, whatever the code.
    Bounce,
    /// `"defer"`: the recipients are deferred, whatever the code.
    Defer,
}

impl BackoffAction {
    /// The action's name in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            BackoffAction::Suspend => "suspend",
            BackoffAction::HalveRate => "halve-rate",
            BackoffAction::Bounce => "bounce",
            BackoffAction::Defer => "defer",
        }
    }

    fn parse(text: &str) -> Result<BackoffAction, String> {
        [BackoffAction::Suspend, BackoffAction::HalveRate, BackoffAction::Bounce, BackoffAction::Defer]
            .into_iter()
            .find(|a| a.as_str() == text)
            .ok_or_else(|| "expected \"suspend\", \"halve-rate\", \"bounce\" or \"defer\"".to_string())
    }
}

/// One `[[site."NAME".backoff]]` entry.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// Built case-insensitive from `match`.
    pub pattern: regex::Regex,
    /// The `match` text as written (for logs).
    pub source: String,
    pub action: BackoffAction,
    /// `duration`: required (and non-zero) for `suspend`; optional for the
    /// others, where it defaults to zero.
    pub duration: Duration,
}

/// One `[site."NAME"]` table (or `[site.default]`); every key optional.
#[derive(Debug, Clone, Default)]
pub struct SiteRule {
    /// Per source IP, >= 1.
    pub max_connections: Option<usize>,
    /// Per source IP.
    pub max_message_rate: Option<Rate>,
    /// >= 1.
    pub max_deliveries_per_connection: Option<usize>,
    /// Per source IP.
    pub connection_rate: Option<Rate>,
    /// Overrides `relay.retry`: non-empty, each longer than zero.
    pub retry: Option<Vec<Duration>>,
    /// `[[site."NAME".backoff]]` entries, in file order.
    pub backoff: Vec<Backoff>,
    /// Lower-cased, no leading or trailing dot.
    pub mx_suffix: Vec<String>,
}

/// What applies to one site, resolved: the matched rule over [site.default] over the [relay] fallbacks.
#[derive(Debug, Clone)]
pub struct SiteLimits {
    /// The site's name (see [`Shaping::resolve`]).
    pub site: String,
    /// The NAME of the `[site."NAME"]` that matched; None if only default.
    pub rule: Option<String>,
    pub max_connections: usize,
    pub max_message_rate: Option<Rate>,
    pub max_deliveries_per_connection: usize,
    pub connection_rate: Option<Rate>,
    pub retry: Option<Vec<Duration>>,
    /// The matched rule's entries first, then default's.
    pub backoff: Vec<Backoff>,
}

impl SiteLimits {
    /// The first backoff entry whose pattern matches `reply_line` ("{code} {enhanced} {text}", multi-line joined by a space).
    pub fn backoff_for(&self, reply_line: &str) -> Option<&Backoff> {
        self.backoff.iter().find(|b| b.pattern.is_match(reply_line))
    }
}

/// The whole rules file. `Default` = no file: everything from the fallbacks.
#[derive(Debug, Clone, Default)]
pub struct Shaping {
    /// The named rules, sorted by NAME (so a lower index sorts first).
    rules: Vec<(String, SiteRule)>,
    /// NAME -> index into `rules`.
    by_name: HashMap<String, usize>,
    /// mx_suffix -> the rules listing it, lowest index (first NAME) first.
    by_mx_suffix: HashMap<String, Vec<usize>>,
    /// `[site.default]`; an empty rule when the file has none.
    default: SiteRule,
    has_default: bool,
}

/// The `[relay]` values that act as [site.default] when neither the default nor a rule says otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Fallback {
    pub max_connections: usize,
    pub max_deliveries_per_connection: usize,
}

/// Where a site's hosts came from.
pub enum Destination<'a> {
    /// MX hosts in preference order (primary first), lower-case, no trailing dot. The implicit MX (no MX records)
    /// passes `&[domain]`.
    Mx(&'a [String]),
    /// A `relay.routes` override; the string is the route target as the grammar writes it
    /// ("host:port", "lmtp:unix:/path"; see `config::routes`).
    Route(&'a str),
}

/// A candidate match: (matched length, rule index). The best is the
/// longest, then the lowest index (the NAME that sorts first).
type Candidate = (usize, usize);

fn better(a: Option<Candidate>, b: Candidate) -> Option<Candidate> {
    match a {
        Some(a) if a.0 > b.0 || (a.0 == b.0 && a.1 <= b.1) => Some(a),
        _ => Some(b),
    }
}

/// `name`, then each suffix of it that starts after a dot.
fn label_suffixes(name: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(name), |s| s.split_once('.').map(|(_, rest)| rest)).filter(|s| !s.is_empty())
}

impl Shaping {
    /// Read and parse `path`. Errors name the file, the line (and column when toml gives it) and the reason, e.g.
    /// "shaping.toml:7: site.\"google.com\".max_message_rate = \"5 per minute\": expected COUNT/UNIT like \"500/min\"".
    pub fn load(path: &Path) -> Result<Shaping, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Shaping::parse(&text, &path.display().to_string())
    }

    /// Parse the text of a rules file; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Shaping, String> {
        let (named, default) = parse::rules(text, origin)?;
        let mut shaping =
            Shaping { has_default: default.is_some(), default: default.unwrap_or_default(), ..Shaping::default() };
        // `named` is a BTreeMap: the indexes follow NAME order.
        for (i, (name, rule)) in named.into_iter().enumerate() {
            for suffix in &rule.mx_suffix {
                shaping.by_mx_suffix.entry(suffix.clone()).or_default().push(i);
            }
            shaping.by_name.insert(name.clone(), i);
            shaping.rules.push((name, rule));
        }
        Ok(shaping)
    }

    /// Resolve the limits for mail to `domain` going to `dest`.
    ///
    /// Matching is described in the module doc (longest NAME or suffix
    /// wins; a tie goes to the NAME that sorts first; routes match by
    /// domain only). The site name is the matched rule's NAME; without a
    /// match, the route target for [`Destination::Route`], else the
    /// sorted, deduplicated MX host set joined by "," (so two domains with
    /// the same MX hosts share a site whatever their preference order).
    /// Unset keys come from `[site.default]`, then from `fallback`;
    /// `backoff` is the rule's entries, then the default's.
    /// Costs O(labels of `domain` and of the primary MX host).
    pub fn resolve(&self, domain: &str, dest: Destination<'_>, fallback: Fallback) -> SiteLimits {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut best: Option<Candidate> = None;
        for suffix in label_suffixes(&domain) {
            if let Some(&i) = self.by_name.get(suffix) {
                best = better(best, (suffix.len(), i));
            }
        }
        if let Destination::Mx(hosts) = dest {
            if let Some(primary) = hosts.first() {
                let primary = primary.trim_end_matches('.').to_ascii_lowercase();
                for suffix in label_suffixes(&primary) {
                    if let Some(&i) = self.by_name.get(suffix) {
                        best = better(best, (suffix.len(), i));
                    }
                    // Sorted by index: the first is the NAME that sorts first.
                    if let Some(&i) = self.by_mx_suffix.get(suffix).and_then(|v| v.first()) {
                        best = better(best, (suffix.len(), i));
                    }
                }
            }
        }
        let matched = best.map(|(_, i)| &self.rules[i]);
        let site = match (matched, &dest) {
            (Some((name, _)), _) => name.clone(),
            (None, Destination::Route(target)) => target.to_string(),
            (None, Destination::Mx(hosts)) => site_of_hosts(hosts, &domain),
        };
        let rule = matched.map(|(_, r)| r);
        let d = &self.default;
        let pick = |f: &dyn Fn(&SiteRule) -> bool| rule.filter(|r| f(r)).or(Some(d).filter(|d| f(d)));
        SiteLimits {
            site,
            rule: matched.map(|(name, _)| name.clone()),
            max_connections: pick(&|r| r.max_connections.is_some())
                .and_then(|r| r.max_connections)
                .unwrap_or(fallback.max_connections),
            max_message_rate: pick(&|r| r.max_message_rate.is_some()).and_then(|r| r.max_message_rate),
            max_deliveries_per_connection: pick(&|r| r.max_deliveries_per_connection.is_some())
                .and_then(|r| r.max_deliveries_per_connection)
                .unwrap_or(fallback.max_deliveries_per_connection),
            connection_rate: pick(&|r| r.connection_rate.is_some()).and_then(|r| r.connection_rate),
            retry: pick(&|r| r.retry.is_some()).and_then(|r| r.retry.clone()),
            backoff: rule.iter().flat_map(|r| r.backoff.iter()).chain(&d.backoff).cloned().collect(),
        }
    }

    /// Number of rules (for the reload log line): the named ones, plus one
    /// for `[site.default]` when the file has it.
    pub fn len(&self) -> usize {
        self.rules.len() + usize::from(self.has_default)
    }

    /// No rules at all (no file, or an empty one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The named rule `name` (lower-case), if the file has it.
    pub fn rule(&self, name: &str) -> Option<&SiteRule> {
        self.by_name.get(name).map(|&i| &self.rules[i].1)
    }

    /// `[site.default]` (an empty rule when the file has none).
    pub fn default_rule(&self) -> &SiteRule {
        &self.default
    }
}

/// The name of an unmatched site: its MX hosts sorted, deduplicated and
/// joined by ","; `domain` when there are none.
fn site_of_hosts(hosts: &[String], domain: &str) -> String {
    let mut set: Vec<String> = hosts.iter().map(|h| h.trim_end_matches('.').to_ascii_lowercase()).collect();
    set.sort_unstable();
    set.dedup();
    if set.is_empty() {
        return domain.to_string();
    }
    set.join(",")
}
