//! The policy cache: what RFC 8461 §5.1 says to do with a cached policy
//! given what DNS says now ([`plan`], pure), and the cache's files, one
//! per domain in `data_dir/mta-sts/` ([`load_dir`], [`store`]).
//!
//! The files are the truth across restarts; each core keeps an in-memory
//! view of them (`MtaSts`). A domain's file is only written by the core
//! that owns the domain (domains are hashed to cores, see
//! [`crate::shard::owner`]), from that core's fetch threads, so two
//! writers never race on one file; each write replaces the file
//! atomically ([`crate::files::replace`]).
//!
//! File format (JSON, one object): `domain`, `id` (the TXT id the policy
//! was fetched under), `fetched_at` (Unix seconds) and `policy` (the body
//! as served, read again with the same parser when loaded).

use super::policy::{parse_policy, Mode, Policy, PolicyError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A domain's policy as fetched: what `decide` applies and what the file
/// keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsPolicy {
    /// The `id` of the `_mta-sts` TXT record when it was fetched.
    pub id: String,
    /// When it was fetched (Unix seconds).
    pub fetched_at: u64,
    pub policy: Policy,
    /// The body as served (kept so the file can be read back with the
    /// parser that read it first).
    pub body: String,
}

impl StsPolicy {
    /// Whether it may still be used at `now` (Unix seconds): fetched less
    /// than `max_age` ago.
    pub fn is_fresh(&self, now: u64) -> bool {
        now < self.fetched_at.saturating_add(self.policy.max_age)
    }

    /// Whether it asks anything of senders (mode `none` does not).
    pub fn is_active(&self) -> bool {
        self.policy.mode != Mode::None
    }
}

/// What the `_mta-sts` TXT lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Txt {
    /// Exactly one valid `v=STSv1` record, with this id.
    Id(String),
    /// No valid record (none, several, or a bad one).
    NoRecord,
    /// The lookup failed (timeout, SERVFAIL): DNS said nothing.
    Unknown,
}

/// What to do for a domain now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Apply this (cached, unexpired) policy.
    Use(StsPolicy),
    /// Fetch the policy published under this id; if that fails, use
    /// [`after_failed_fetch`].
    Fetch { id: String },
    /// The domain has no policy to apply.
    NoPolicy,
}

/// RFC 8461 §5.1 for one domain at `now`: an unexpired cached policy whose
/// id is the TXT record's is used as is, and so is one when DNS shows no
/// record or fails (a cached policy outlives its record until it
/// expires); a new id, or no unexpired policy, means a fetch — unless a
/// fetch failed a short while ago (`fetch_failed_recently`), in which case
/// whatever is cached and unexpired is used without asking the web server
/// again at every connection.
pub fn plan(txt: &Txt, cached: Option<&StsPolicy>, now: u64, fetch_failed_recently: bool) -> Step {
    let fresh = cached.filter(|c| c.is_fresh(now));
    match txt {
        Txt::Id(id) => match fresh {
            Some(c) if c.id == *id => Step::Use(c.clone()),
            _ if fetch_failed_recently => after_failed_fetch(cached, now),
            _ => Step::Fetch { id: id.clone() },
        },
        Txt::NoRecord | Txt::Unknown => after_failed_fetch(cached, now),
    }
}

/// When no new policy could be had: the cached one while it is unexpired
/// (RFC 8461 §5.1), else none.
pub fn after_failed_fetch(cached: Option<&StsPolicy>, now: u64) -> Step {
    match cached.filter(|c| c.is_fresh(now)) {
        Some(c) => Step::Use(c.clone()),
        None => Step::NoPolicy,
    }
}

/// Why a cache file was not loaded or written.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a policy cache file: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{path}: cached policy no longer reads: {source}")]
    Policy { path: PathBuf, source: PolicyError },
    #[error("{domain:?} cannot be a file name; its policy is kept in memory only")]
    Name { domain: String },
}

#[derive(Serialize, Deserialize)]
struct File {
    domain: String,
    id: String,
    fetched_at: u64,
    policy: String,
}

/// The file name of `domain`'s policy: the domain itself (lower case,
/// letters, digits, `-`, `_` and inner dots only), so a name from the
/// queue can never reach outside the cache directory.
pub fn file_name(domain: &str) -> Option<&str> {
    let ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|l| {
            !l.is_empty() && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        });
    ok.then_some(domain)
}

/// Write `domain`'s policy into `dir` (created 0700 when missing),
/// replacing the file atomically and durably. Blocking: call it off the
/// executor.
pub fn store(dir: &Path, domain: &str, p: &StsPolicy) -> Result<(), CacheError> {
    let name = file_name(domain).ok_or_else(|| CacheError::Name { domain: domain.to_string() })?;
    let path = dir.join(name);
    let file = File { domain: domain.to_string(), id: p.id.clone(), fetched_at: p.fetched_at, policy: p.body.clone() };
    let bytes =
        serde_json::to_vec(&file).map_err(|e| CacheError::Format { path: path.clone(), reason: e.to_string() })?;
    crate::files::replace(&path, crate::files::Ownership::Private, |f| f.write_all(&bytes))
        .map_err(|source| CacheError::Io { path, source })
}

/// Every policy in `dir`, by domain, and the files that could not be read
/// (a missing directory is an empty cache). Blocking: for start-up.
pub fn load_dir(dir: &Path) -> (HashMap<String, StsPolicy>, Vec<CacheError>) {
    let mut found = HashMap::new();
    let mut problems = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (found, problems),
        Err(source) => return (found, vec![CacheError::Io { path: dir.to_path_buf(), source }]),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        // Temporary files of an interrupted `replace` start with a dot.
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        match load_file(&path) {
            Ok((domain, p)) => {
                found.insert(domain, p);
            }
            Err(e) => problems.push(e),
        }
    }
    (found, problems)
}

fn load_file(path: &Path) -> Result<(String, StsPolicy), CacheError> {
    let bytes = std::fs::read(path).map_err(|source| CacheError::Io { path: path.to_path_buf(), source })?;
    let file: File = serde_json::from_slice(&bytes)
        .map_err(|e| CacheError::Format { path: path.to_path_buf(), reason: e.to_string() })?;
    if path.file_name().and_then(|n| n.to_str()) != file_name(&file.domain) {
        let reason = format!("it holds the policy of {:?}", file.domain);
        return Err(CacheError::Format { path: path.to_path_buf(), reason });
    }
    let policy = parse_policy(file.policy.as_bytes())
        .map_err(|source| CacheError::Policy { path: path.to_path_buf(), source })?;
    Ok((file.domain, StsPolicy { id: file.id, fetched_at: file.fetched_at, policy, body: file.policy }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(id: &str, fetched_at: u64, max_age: u64) -> StsPolicy {
        let body = format!("version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: {max_age}\n");
        StsPolicy { id: id.into(), fetched_at, policy: parse_policy(body.as_bytes()).unwrap(), body }
    }

    #[test]
    fn a_fresh_policy_with_the_same_id_is_used_without_a_fetch() {
        let c = cached("a", 1000, 100);
        assert_eq!(plan(&Txt::Id("a".into()), Some(&c), 1099, false), Step::Use(c.clone()));
    }

    #[test]
    fn a_new_id_an_expired_policy_or_none_cached_means_a_fetch() {
        let c = cached("a", 1000, 100);
        let fetch = Step::Fetch { id: "b".into() };
        assert_eq!(plan(&Txt::Id("b".into()), Some(&c), 1001, false), fetch);
        assert_eq!(plan(&Txt::Id("b".into()), None, 1001, false), fetch);
        let same = Step::Fetch { id: "a".into() };
        assert_eq!(plan(&Txt::Id("a".into()), Some(&c), 1100, false), same, "expired at fetched_at + max_age");
    }

    #[test]
    fn without_a_record_the_cached_policy_applies_until_it_expires() {
        let c = cached("a", 1000, 100);
        for txt in [Txt::NoRecord, Txt::Unknown] {
            assert_eq!(plan(&txt, Some(&c), 1050, false), Step::Use(c.clone()));
            assert_eq!(plan(&txt, Some(&c), 1100, false), Step::NoPolicy);
            assert_eq!(plan(&txt, None, 1050, false), Step::NoPolicy);
        }
    }

    #[test]
    fn a_failed_fetch_keeps_the_cached_policy_and_is_not_retried_at_once() {
        let c = cached("a", 1000, 100);
        assert_eq!(after_failed_fetch(Some(&c), 1050), Step::Use(c.clone()));
        assert_eq!(after_failed_fetch(Some(&c), 1100), Step::NoPolicy);
        assert_eq!(after_failed_fetch(None, 1050), Step::NoPolicy);
        assert_eq!(plan(&Txt::Id("b".into()), Some(&c), 1050, true), Step::Use(c.clone()));
        assert_eq!(plan(&Txt::Id("b".into()), None, 1050, true), Step::NoPolicy);
    }

    #[test]
    fn file_names_are_plain_domains_only() {
        assert_eq!(file_name("example.com"), Some("example.com"));
        assert_eq!(file_name("xn--fsqu00a.test"), Some("xn--fsqu00a.test"));
        for bad in ["", ".", "..", "../etc", "a/b", "a..b", ".hidden", "Upper.test", "a.b."] {
            assert_eq!(file_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn stored_policies_load_back_and_bad_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let sts = dir.path().join("mta-sts");
        let c = cached("id1", 1234, 86400);
        store(&sts, "example.test", &c).unwrap();
        std::fs::write(sts.join("junk.test"), b"{not json").unwrap();
        std::fs::write(
            sts.join("other.test"),
            serde_json::to_vec(&serde_json::json!({
                "domain": "example.test", "id": "x", "fetched_at": 1, "policy": c.body
            }))
            .unwrap(),
        )
        .unwrap();
        let (found, problems) = load_dir(&sts);
        assert_eq!(found.len(), 1);
        assert_eq!(found.get("example.test"), Some(&c));
        assert_eq!(problems.len(), 2, "{problems:?}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(sts.join("example.test")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (none, problems) = load_dir(&dir.path().join("missing"));
        assert!(none.is_empty() && problems.is_empty());
        assert!(matches!(store(&sts, "../x", &c), Err(CacheError::Name { .. })));
    }
}
