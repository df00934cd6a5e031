//! The login cache in front of Argon2id (Dovecot's `auth_cache`): mail
//! clients poll every few minutes with the same password, and each check
//! would otherwise cost tens of milliseconds of CPU and a large work buffer.
//!
//! Owns: remembering, for a while, the outcome of a password check. An entry
//! is keyed by a keyed hash (HMAC-SHA256 under a random key made when the
//! cache is, never stored on disk) of the user and the password, so the
//! cache never holds a password, and a memory dump does not give a cheap
//! way to test guesses against it either (the key is needed, and it dies
//! with the process). Each entry also records which users-file hash it was
//! checked against (a keyed fingerprint of it): when the user's line changes
//! (new password) or goes away (deleted user) the entry no longer matches
//! and is not used, at once, with no invalidation message needed.
//!
//! Must not: decide anything about lockouts or delays. The caller
//! (`shard::login`) reserves the attempt first and treats a cached refusal
//! exactly like a computed one (it counts, and it waits to the failure
//! deadline); the cache only saves the Argon2id run. Pure: `now` is passed
//! in, no I/O.
//!
//! One cache per core, owned by the shard: no locks, and a hit needs no
//! cross-core message. A user polling from sessions that land on different
//! cores warms each core's cache once.

use aws_lc_rs::hmac;
use std::collections::HashMap;
use std::fmt;

/// Digest length of HMAC-SHA256.
const TAG_LEN: usize = 32;

/// A keyed hash of (user, password): what a cache entry is found by.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoginTag([u8; TAG_LEN]);

/// A keyed fingerprint of the users-file hash an outcome was checked
/// against (or of "no such user").
#[derive(Clone, Copy, PartialEq, Eq)]
struct StoredFingerprint([u8; TAG_LEN]);

// Digests only, but there is no reason to print them.
impl fmt::Debug for LoginTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoginTag(..)")
    }
}

/// How long entries live and how many there may be, from `[auth]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Lifetime of a successful check, ms (`auth.cache_ttl`); 0: not kept.
    pub ttl_ms: u64,
    /// Lifetime of a failed check, ms (`auth.cache_negative_ttl`); 0: not kept.
    pub negative_ttl_ms: u64,
    /// Entries on this core (`auth.cache_size`); 0 turns the cache off.
    pub capacity: usize,
}

impl CacheSettings {
    pub fn of(auth: &crate::config::AuthConfig) -> CacheSettings {
        CacheSettings {
            ttl_ms: auth.cache_ttl.get().as_millis() as u64,
            negative_ttl_ms: auth.cache_negative_ttl.get().as_millis() as u64,
            capacity: auth.cache_size,
        }
    }
}

/// One remembered outcome. Holds digests and a deadline, nothing else.
#[derive(Clone, Copy)]
struct Entry {
    /// Which users-file hash the password was checked against.
    stored: StoredFingerprint,
    /// The password was right.
    ok: bool,
    /// Not used at or after this time (ms since the epoch).
    expires_ms: u64,
}

/// This core's cache of password-check outcomes (see the module doc).
pub struct AuthCache {
    /// Random per cache; never leaves the process.
    key: hmac::Key,
    entries: HashMap<LoginTag, Entry>,
}

impl fmt::Debug for AuthCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthCache").field("entries", &self.entries.len()).finish_non_exhaustive()
    }
}

impl Default for AuthCache {
    fn default() -> AuthCache {
        AuthCache::new()
    }
}

impl AuthCache {
    /// An empty cache with a fresh random key.
    pub fn new() -> AuthCache {
        let mut key = [0u8; TAG_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
        AuthCache { key: hmac::Key::new(hmac::HMAC_SHA256, &key), entries: HashMap::new() }
    }

    /// The tag `user` (lower-cased by the caller) and `password` are
    /// found by. Cheap (one HMAC): fine on the I/O path.
    pub fn tag(&self, user: &str, password: &str) -> LoginTag {
        let mut ctx = hmac::Context::with_key(&self.key);
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        ctx.update(b"login\0");
        ctx.update(&(user.len() as u64).to_be_bytes());
        ctx.update(user.as_bytes());
        ctx.update(password.as_bytes());
        LoginTag(digest(ctx.sign()))
    }

    fn fingerprint(&self, stored: Option<&str>) -> StoredFingerprint {
        let mut ctx = hmac::Context::with_key(&self.key);
        match stored {
            Some(hash) => {
                ctx.update(b"stored\0");
                ctx.update(hash.as_bytes());
            }
            None => ctx.update(b"no such user\0"),
        }
        StoredFingerprint(digest(ctx.sign()))
    }

    /// The remembered outcome for `tag`, if there is one that is still
    /// alive and was checked against `stored` (the user's hash in the
    /// users file now, `None` for an unknown user). `Some(true)`: the
    /// password is right; `Some(false)`: it is wrong; `None`: check it.
    pub fn lookup(&mut self, tag: &LoginTag, stored: Option<&str>, now_ms: u64) -> Option<bool> {
        let entry = *self.entries.get(tag)?;
        if now_ms >= entry.expires_ms || entry.stored != self.fingerprint(stored) {
            // Expired, or the user's line changed since: never again.
            self.entries.remove(tag);
            return None;
        }
        Some(entry.ok)
    }

    /// Remember that the password behind `tag`, checked against `stored`,
    /// was right (`ok`) or wrong, for the TTL `settings` give that kind.
    ///
    /// Bounded by `settings.capacity`: when full, expired entries go
    /// first, then the one closest to expiry. Both take a pass over the
    /// entries, but only on an insert into a full cache, which follows an
    /// Argon2id run thousands of times dearer.
    pub fn remember(&mut self, tag: LoginTag, stored: Option<&str>, ok: bool, now_ms: u64, settings: CacheSettings) {
        let ttl = if ok { settings.ttl_ms } else { settings.negative_ttl_ms };
        if ttl == 0 || settings.capacity == 0 {
            self.entries.remove(&tag);
            return;
        }
        if !self.entries.contains_key(&tag) && self.entries.len() >= settings.capacity {
            self.entries.retain(|_, e| now_ms < e.expires_ms);
            // A capacity lowered by a reload may need more than one to go.
            while self.entries.len() >= settings.capacity {
                let Some(soonest) = self.entries.iter().min_by_key(|(_, e)| e.expires_ms).map(|(t, _)| *t) else {
                    break;
                };
                self.entries.remove(&soonest);
            }
        }
        let entry = Entry { stored: self.fingerprint(stored), ok, expires_ms: now_ms.saturating_add(ttl) };
        self.entries.insert(tag, entry);
    }

    /// Entries held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn digest(tag: hmac::Tag) -> [u8; TAG_LEN] {
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: CacheSettings = CacheSettings { ttl_ms: 3_600_000, negative_ttl_ms: 30_000, capacity: 100 };
    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
    const NEW_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3aGFzaG5ld2hhc2huZXc";

    #[test]
    fn a_remembered_outcome_is_found_by_user_and_password_only() {
        let mut c = AuthCache::new();
        c.remember(c.tag("ann@x", "right"), Some(HASH), true, 0, SETTINGS);
        c.remember(c.tag("ann@x", "wrong"), Some(HASH), false, 0, SETTINGS);
        assert_eq!(c.lookup(&c.tag("ann@x", "right"), Some(HASH), 1), Some(true));
        assert_eq!(c.lookup(&c.tag("ann@x", "wrong"), Some(HASH), 1), Some(false));
        assert_eq!(c.lookup(&c.tag("ann@x", "other"), Some(HASH), 1), None);
        assert_eq!(c.lookup(&c.tag("bob@x", "right"), Some(HASH), 1), None);
        // The length prefix keeps the user/password boundary.
        assert_ne!(c.tag("ab", "c"), c.tag("a", "bc"));
    }

    #[test]
    fn the_stored_type_holds_no_password_and_tags_depend_on_the_key() {
        let password = "s3cret-Passw0rd-that-must-not-be-kept";
        let mut c = AuthCache::new();
        let tag = c.tag("ann@x", password);
        c.remember(tag, Some(HASH), true, 0, SETTINGS);
        for (tag, entry) in &c.entries {
            // Every byte the cache keeps per entry, none of them the password.
            let mut kept = tag.0.to_vec();
            kept.extend_from_slice(&entry.stored.0);
            kept.extend_from_slice(&entry.expires_ms.to_le_bytes());
            assert!(!kept.windows(password.len()).any(|w| w == password.as_bytes()));
            assert!(!kept.windows(6).any(|w| w == b"s3cret"));
        }
        assert!(!format!("{c:?} {tag:?}").contains("s3cret"));
        // Another cache (another process) has another key: a tag taken
        // from one says nothing to anyone without that key.
        assert_ne!(AuthCache::new().tag("ann@x", password), tag);
    }

    #[test]
    fn positive_and_negative_entries_expire_at_their_own_ttl() {
        let mut c = AuthCache::new();
        let (good, bad) = (c.tag("ann@x", "right"), c.tag("ann@x", "wrong"));
        c.remember(good, Some(HASH), true, 1_000, SETTINGS);
        c.remember(bad, Some(HASH), false, 1_000, SETTINGS);
        assert_eq!(c.lookup(&bad, Some(HASH), 1_000 + 29_999), Some(false));
        assert_eq!(c.lookup(&bad, Some(HASH), 1_000 + 30_000), None);
        assert_eq!(c.lookup(&good, Some(HASH), 1_000 + 3_599_999), Some(true));
        assert_eq!(c.lookup(&good, Some(HASH), 1_000 + 3_600_000), None);
        assert!(c.is_empty(), "expired entries found by a lookup are dropped");
    }

    #[test]
    fn a_changed_hash_or_a_deleted_user_invalidates_at_once() {
        let mut c = AuthCache::new();
        let old = c.tag("ann@x", "old");
        c.remember(old, Some(HASH), true, 0, SETTINGS);
        assert_eq!(c.lookup(&old, Some(NEW_HASH), 1), None, "password changed in the users file");
        assert_eq!(c.lookup(&old, Some(HASH), 1), None, "and the entry is gone for good");
        c.remember(old, Some(HASH), true, 0, SETTINGS);
        assert_eq!(c.lookup(&old, None, 1), None, "user deleted");
        // A refusal for an unknown user does not outlive the user's creation.
        let unknown = c.tag("new@x", "pw");
        c.remember(unknown, None, false, 0, SETTINGS);
        assert_eq!(c.lookup(&unknown, None, 1), Some(false));
        assert_eq!(c.lookup(&unknown, Some(HASH), 1), None, "user added since");
    }

    #[test]
    fn the_size_is_bounded_and_the_soonest_to_expire_goes_first() {
        let mut c = AuthCache::new();
        let small = CacheSettings { capacity: 3, ..SETTINGS };
        let tags: Vec<_> = (0..5).map(|i| c.tag(&format!("u{i}@x"), "pw")).collect();
        c.remember(tags[0], Some(HASH), false, 0, small); // expires at 30 s
        c.remember(tags[1], Some(HASH), true, 0, small);
        c.remember(tags[2], Some(HASH), true, 10, small);
        c.remember(tags[3], Some(HASH), true, 20, small);
        assert_eq!(c.len(), 3);
        assert_eq!(c.lookup(&tags[0], Some(HASH), 21), None, "the negative entry expired soonest");
        assert_eq!(c.lookup(&tags[1], Some(HASH), 21), Some(true));
        // Past 30 s nothing is expired; the oldest positive goes.
        c.remember(tags[4], Some(HASH), true, 40_000, small);
        assert_eq!(c.len(), 3);
        assert_eq!(c.lookup(&tags[1], Some(HASH), 40_001), None);
        // A reload that shrinks the cache shrinks it at the next insert.
        c.remember(tags[0], Some(HASH), true, 40_002, CacheSettings { capacity: 1, ..SETTINGS });
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn zero_size_or_ttl_keeps_nothing() {
        let mut c = AuthCache::new();
        let tag = c.tag("ann@x", "pw");
        c.remember(tag, Some(HASH), true, 0, CacheSettings { capacity: 0, ..SETTINGS });
        c.remember(tag, Some(HASH), false, 0, CacheSettings { negative_ttl_ms: 0, ..SETTINGS });
        assert!(c.is_empty());
        // A right password after a cached refusal replaces it.
        c.remember(tag, Some(HASH), false, 0, SETTINGS);
        c.remember(tag, Some(HASH), true, 1, SETTINGS);
        assert_eq!(c.lookup(&tag, Some(HASH), 2), Some(true));
    }
}
