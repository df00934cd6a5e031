//! The users file and password checks.
//!
//! Owns: parsing `address:{SCHEME}hash` lines (Dovecot passwd-file style),
//! Argon2id hashing for `ringmail user add`/`passwd`, the user
//! file edits (add, delete, passwd, list; rewritten through
//! `files::replace`), and verification. Verification is
//! CPU-heavy by design (tens of milliseconds), so callers run it off the I/O
//! path (`glommio::executor().spawn_blocking`); nothing here blocks on I/O.
//! No plain-text password is ever stored or logged: `{PLAIN}` is refused.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const ARGON2ID: &str = "{ARGON2ID}";

/// A users-file problem, naming file, line and reason.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("{path}: cannot read: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{path}:{line}: {reason}")]
    Line { path: PathBuf, line: usize, reason: String },
    #[error("{path}: cannot write: {error}")]
    Write { path: PathBuf, error: std::io::Error },
    #[error("{path}: user {address} already exists")]
    Exists { path: PathBuf, address: String },
    #[error("{path}: no user {address}")]
    NoSuchUser { path: PathBuf, address: String },
    #[error("invalid address {0:?}: expected local@domain")]
    BadAddress(String),
    #[error("password must not be empty")]
    EmptyPassword,
    #[error("hashing failed: {0}")]
    Hash(String),
}

/// The parsed users file: lower-cased address -> PHC hash string.
/// Immutable once built; a reload builds a new one.
#[derive(Debug, Default)]
pub struct UserDb {
    users: HashMap<String, String>,
    /// A hash made, on first need, with the costliest parameters in the
    /// file: unknown users are checked against it, so that they take as
    /// long as the slowest known user (hashes made by other tools, e.g.
    /// `doveadm pw`, may be costlier than ringmail's own).
    dummy: std::sync::OnceLock<String>,
}

impl UserDb {
    /// Read and parse `path`. A missing file is an empty database (a fresh
    /// install has no users yet); any bad line is an error.
    pub fn load(path: &Path) -> Result<UserDb, UsersError> {
        match std::fs::read_to_string(path) {
            Ok(text) => UserDb::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UserDb::default()),
            Err(error) => Err(UsersError::Read { path: path.to_path_buf(), error }),
        }
    }

    /// Parse users-file text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<UserDb, UsersError> {
        let mut users = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: String| UsersError::Line { path: path.to_path_buf(), line: i + 1, reason };
            let (address, rest) = line.split_once(':').ok_or_else(|| bad("expected address:{ARGON2ID}hash".into()))?;
            let address = normalize_address(address).ok_or_else(|| bad(format!("invalid address {address:?}")))?;
            // Dovecot allows further colon-separated fields (uid, gid, ...);
            // we ignore them so a passwd-file can be shared.
            let password = rest.split(':').next().unwrap_or("");
            let hash = password.strip_prefix(ARGON2ID).ok_or_else(|| {
                let scheme = password.split('}').next().unwrap_or("").trim_start_matches('{');
                bad(format!("unsupported password scheme {{{scheme}}}: only {{ARGON2ID}} is accepted"))
            })?;
            PasswordHash::new(hash).map_err(|e| bad(format!("malformed Argon2id hash: {e}")))?;
            if users.insert(address.clone(), hash.to_string()).is_some() {
                return Err(bad(format!("duplicate user {address}")));
            }
        }
        Ok(UserDb { users, dummy: Default::default() })
    }

    /// Is there a user with this (case-insensitive) address?
    pub fn contains(&self, address: &str) -> bool {
        self.users.contains_key(&user_key(address))
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The stored hash of `address`, already lower-case (no copy: for the
    /// login cache, which checks an outcome still matches it).
    pub fn stored_hash(&self, address: &str) -> Option<&str> {
        self.users.get(address).map(String::as_str)
    }

    /// The stored hash for `address`, for `verify` off the I/O path.
    pub fn hash_of(&self, address: &str) -> Option<String> {
        self.users.get(&user_key(address)).cloned()
    }

    /// Check `address`'s password. CPU-heavy (call off the I/O path); an
    /// unknown user costs as much as the costliest known one and never
    /// logs in.
    pub fn check(&self, address: &str, password: &str) -> bool {
        match self.users.get(&user_key(address)) {
            Some(hash) => verify(Some(hash), password),
            None => {
                let dummy = self.dummy.get_or_init(|| self.costliest_dummy());
                // Spend the time; the answer is no whatever it says.
                let _ = verify(Some(dummy), password);
                false
            }
        }
    }

    fn costliest_dummy(&self) -> String {
        let params = self
            .users
            .values()
            .filter_map(|h| PasswordHash::new(h).ok().and_then(|h| argon2::Params::try_from(&h).ok()))
            .max_by_key(|p| (u64::from(p.m_cost()) * u64::from(p.t_cost()), p.p_cost()));
        let argon = match params {
            Some(p) => Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p),
            None => Argon2::default(),
        };
        let salt = SaltString::generate(&mut OsRng);
        match argon.hash_password(b"ringmail-dummy-password", &salt) {
            Ok(h) => h.to_string(),
            Err(_) => dummy_hash().to_string(),
        }
    }
}

/// `local@domain` as users are keyed: ASCII letters lower-cased, the
/// domain as its A-label (so `用户@例子.test` and `用户@xn--fsqu00a.test`,
/// the form an SMTPUTF8 RCPT arrives in, are one user); None if it is not
/// an address. A UTF-8 local part is kept as written.
pub fn normalize_address(address: &str) -> Option<String> {
    let a = address.trim();
    let (local, domain) = a.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() || a.contains(|c: char| c.is_whitespace() || c == ':' || c.is_control()) {
        return None;
    }
    let domain = crate::proto::smtp::ascii_domain(domain).ok()?;
    Some(format!("{}@{domain}", local.to_ascii_lowercase()))
}

/// The key `address` is looked up by: [`normalize_address`], or the
/// address lower-cased when it is not one (it then matches no user).
fn user_key(address: &str) -> String {
    normalize_address(address).unwrap_or_else(|| address.to_ascii_lowercase())
}

/// Hash a password as Argon2id with a fresh random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, UsersError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hash(e.to_string()))
}

/// Check `password` against a PHC hash. CPU-heavy: call off the I/O path.
/// With `hash = None` (unknown user) a dummy hash is checked so that the
/// answer takes as long as for a real user and says nothing of existence.
pub fn verify(hash: Option<&str>, password: &str) -> bool {
    let (phc, real) = match hash {
        Some(h) => (h, true),
        None => (dummy_hash(), false),
    };
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    let ok = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
    ok && real
}

fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("ringmail-dummy-password").expect("hashing a constant"))
}

/// Add a user to the users file, atomically (`files::replace`: a running
/// server's watcher never sees half a line), keeping the file's owner,
/// group and mode; a new file gets the owner and group of `data_dir`.
pub fn add_user(path: &Path, data_dir: &Path, address: &str, password: &str) -> Result<(), UsersError> {
    let address = normalize_address(address).ok_or_else(|| UsersError::BadAddress(address.to_string()))?;
    if password.is_empty() {
        return Err(UsersError::EmptyPassword);
    }
    let existing = read_existing(path)?;
    let db = UserDb::parse(&existing, path)?;
    if db.contains(&address) {
        return Err(UsersError::Exists { path: path.to_path_buf(), address });
    }
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("{address}:{ARGON2ID}{}\n", hash_password(password)?));
    rewrite(path, data_dir, &text)
}

/// Remove a user's line from the users file (comments and other lines
/// stay as they are), atomically and keeping owner, group and mode.
pub fn delete_user(path: &Path, data_dir: &Path, address: &str) -> Result<(), UsersError> {
    edit_line(path, data_dir, address, |_| None)
}

/// Give a user a new password (a fresh Argon2id hash; Dovecot's extra
/// fields after it are kept), atomically and keeping owner, group and mode.
pub fn set_password(path: &Path, data_dir: &Path, address: &str, password: &str) -> Result<(), UsersError> {
    if password.is_empty() {
        return Err(UsersError::EmptyPassword);
    }
    let hash = hash_password(password)?;
    edit_line(path, data_dir, address, |rest| {
        let extra = rest.split_once(':').map(|(_, extra)| format!(":{extra}")).unwrap_or_default();
        Some(format!("{ARGON2ID}{hash}{extra}"))
    })
}

/// Every user's address, in the order of the file.
pub fn list_users(path: &Path) -> Result<Vec<String>, UsersError> {
    let text = read_existing(path)?;
    UserDb::parse(&text, path)?; // the same errors as the server would give
    Ok(text.lines().filter_map(|l| user_line(l).map(|(address, _)| address)).collect())
}

/// The address and what follows its colon, for a line naming a user.
fn user_line(line: &str) -> Option<(String, &str)> {
    let l = line.trim();
    if l.is_empty() || l.starts_with('#') {
        return None;
    }
    let (address, rest) = l.split_once(':')?;
    Some((normalize_address(address)?, rest))
}

/// Rewrite the line of `address`: `change` gets what follows the address's
/// colon and returns its replacement, or None to drop the line.
fn edit_line(
    path: &Path,
    data_dir: &Path,
    address: &str,
    change: impl FnOnce(&str) -> Option<String>,
) -> Result<(), UsersError> {
    let address = normalize_address(address).ok_or_else(|| UsersError::BadAddress(address.to_string()))?;
    let existing = read_existing(path)?;
    UserDb::parse(&existing, path)?; // never rewrite a file the server would refuse
    let mut change = Some(change);
    let mut text = String::with_capacity(existing.len());
    for line in existing.split_inclusive('\n') {
        match user_line(line) {
            Some((a, rest)) if a == address => {
                let Some(change) = change.take() else { continue };
                if let Some(new) = change(rest) {
                    text.push_str(&format!("{address}:{new}\n"));
                }
            }
            _ => text.push_str(line),
        }
    }
    if change.is_some() {
        return Err(UsersError::NoSuchUser { path: path.to_path_buf(), address });
    }
    rewrite(path, data_dir, &text)
}

fn read_existing(path: &Path) -> Result<String, UsersError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(error) => Err(UsersError::Read { path: path.to_path_buf(), error }),
    }
}

fn rewrite(path: &Path, data_dir: &Path, text: &str) -> Result<(), UsersError> {
    let ownership = crate::files::Ownership::Keep { new_like: Some(data_dir) };
    crate::files::replace(path, ownership, |f| std::io::Write::write_all(f, text.as_bytes()))
        .map_err(|error| UsersError::Write { path: path.to_path_buf(), error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_keyed_with_a_label_domains_and_utf8_local_parts_kept() {
        assert_eq!(
            normalize_address("\u{7528}\u{6237}@\u{4f8b}\u{5b50}.TEST").as_deref(),
            Some("\u{7528}\u{6237}@xn--fsqu00a.test")
        );
        assert_eq!(normalize_address("Jane@Example.Test").as_deref(), Some("jane@example.test"));
        assert_eq!(normalize_address("jane@exa mple.test"), None);
    }

    fn hash_with(m: u32, t: u32, password: &str) -> String {
        let params = argon2::Params::new(m, t, 1, None).unwrap();
        let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        argon.hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng)).unwrap().to_string()
    }

    #[test]
    fn unknown_users_are_checked_against_the_costliest_parameters_in_the_file() {
        let cheap = hash_with(8, 1, "a");
        let costly = hash_with(64, 3, "b");
        let text = format!("a@x:{{ARGON2ID}}{cheap}\nb@x:{{ARGON2ID}}{costly}\n");
        let db = UserDb::parse(&text, Path::new("users")).unwrap();
        assert!(db.check("a@x", "a") && db.check("B@X", "b"));
        assert!(!db.check("a@x", "b"));
        assert!(!db.check("nobody@x", "ringmail-dummy-password"), "unknown users never log in");
        let dummy = PasswordHash::new(db.dummy.get().expect("made by the unknown user's check")).unwrap();
        let p = argon2::Params::try_from(&dummy).unwrap();
        assert_eq!((p.m_cost(), p.t_cost()), (64, 3));
    }

    #[test]
    fn parses_lines_comments_and_extra_fields() {
        let h = hash_password("pw").unwrap();
        let text =
            format!("# users\n\nAlice@Example.org:{{ARGON2ID}}{h}\nbob@example.org:{{ARGON2ID}}{h}:1000:1000::\n");
        let db = UserDb::parse(&text, Path::new("users")).unwrap();
        assert_eq!(db.len(), 2);
        assert!(db.contains("alice@example.org"));
        assert!(db.contains("BOB@example.org"));
        assert!(!db.contains("carol@example.org"));
    }

    #[test]
    fn bad_lines_name_file_line_and_reason() {
        let h = hash_password("pw").unwrap();
        let cases = [
            ("nocolon\n", "expected address"),
            ("alice@x:{PLAIN}secret\n", "unsupported password scheme {PLAIN}"),
            ("alice@x:{ARGON2ID}garbage\n", "malformed Argon2id hash"),
            ("noatsign:{ARGON2ID}x\n", "invalid address"),
        ];
        for (text, reason) in cases {
            let text = format!("# first\n{text}");
            let e = UserDb::parse(&text, Path::new("/etc/ringmail/users")).unwrap_err().to_string();
            assert!(e.starts_with("/etc/ringmail/users:2: "), "{e}");
            assert!(e.contains(reason), "{e}");
        }
        let dup = format!("a@x:{{ARGON2ID}}{h}\nA@x:{{ARGON2ID}}{h}\n");
        let e = UserDb::parse(&dup, Path::new("u")).unwrap_err().to_string();
        assert!(e.contains("u:2: duplicate user a@x"), "{e}");
    }

    #[test]
    fn verify_accepts_only_the_right_password() {
        let h = hash_password("correct horse").unwrap();
        assert!(verify(Some(&h), "correct horse"));
        assert!(!verify(Some(&h), "wrong"));
        assert!(!verify(None, "ringmail-dummy-password"), "unknown users never log in");
    }

    #[test]
    fn add_user_appends_a_hash_never_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        add_user(&path, dir.path(), "Alice@Example.org", "s3cret").unwrap();
        add_user(&path, dir.path(), "bob@example.org", "hunter2").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("s3cret") && !text.contains("hunter2"));
        assert!(text.contains("alice@example.org:{ARGON2ID}$argon2id$"));
        let db = UserDb::load(&path).unwrap();
        assert!(verify(db.hash_of("alice@example.org").as_deref(), "s3cret"));
        let e = add_user(&path, dir.path(), "alice@example.org", "x").unwrap_err();
        assert!(matches!(e, UsersError::Exists { .. }));
        assert!(matches!(add_user(&path, dir.path(), "carol", "x"), Err(UsersError::BadAddress(_))));
    }

    #[test]
    fn delete_and_passwd_touch_only_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        let h = hash_password("old").unwrap();
        std::fs::write(
            &path,
            format!("# staff\nalice@x:{{ARGON2ID}}{h}\n\nBob@X:{{ARGON2ID}}{h}:1000:1000::\ncarol@x:{{ARGON2ID}}{h}"),
        )
        .unwrap();
        set_password(&path, dir.path(), "bob@x", "new").unwrap();
        let db = UserDb::load(&path).unwrap();
        assert!(verify(db.hash_of("bob@x").as_deref(), "new"));
        assert!(verify(db.hash_of("alice@x").as_deref(), "old"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with(&format!("# staff\nalice@x:{{ARGON2ID}}{h}\n\nbob@x:{{ARGON2ID}}$argon2id$")),
            "{text}"
        );
        assert!(text.contains(":1000:1000::\n"), "Dovecot's extra fields are kept: {text}");
        delete_user(&path, dir.path(), "ALICE@x").unwrap();
        assert_eq!(list_users(&path).unwrap(), ["bob@x", "carol@x"]);
        assert!(std::fs::read_to_string(&path).unwrap().starts_with("# staff\n\nbob@x:"));
        let e = delete_user(&path, dir.path(), "alice@x").unwrap_err().to_string();
        assert!(e.contains("no user alice@x"), "{e}");
        assert!(matches!(set_password(&path, dir.path(), "dave@x", "p"), Err(UsersError::NoSuchUser { .. })));
        assert!(matches!(set_password(&path, dir.path(), "bob@x", ""), Err(UsersError::EmptyPassword)));
    }
}
