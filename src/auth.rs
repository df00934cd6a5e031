//! The users file and password checks.
//!
//! Owns: parsing `address:{SCHEME}hash` lines (Dovecot passwd-file style),
//! Argon2id hashing for `ringmail user add`, and verification. Verification is
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
        Ok(UserDb { users })
    }

    /// Is there a user with this (case-insensitive) address?
    pub fn contains(&self, address: &str) -> bool {
        self.users.contains_key(&address.to_ascii_lowercase())
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The stored hash for `address`, for `verify` off the I/O path.
    pub fn hash_of(&self, address: &str) -> Option<String> {
        self.users.get(&address.to_ascii_lowercase()).cloned()
    }
}

/// Lower-case `local@domain`, or None if it is not one.
pub fn normalize_address(address: &str) -> Option<String> {
    let a = address.trim();
    let (local, domain) = a.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() || a.contains(|c: char| c.is_whitespace() || c == ':' || c.is_control()) {
        return None;
    }
    Some(a.to_ascii_lowercase())
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

/// Add a user to the users file, atomically (write a temp file, fsync,
/// rename), so a running server's watcher never sees half a line.
pub fn add_user(path: &Path, address: &str, password: &str) -> Result<(), UsersError> {
    let address = normalize_address(address).ok_or_else(|| UsersError::BadAddress(address.to_string()))?;
    if password.is_empty() {
        return Err(UsersError::EmptyPassword);
    }
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(UsersError::Read { path: path.to_path_buf(), error }),
    };
    let db = UserDb::parse(&existing, path)?;
    if db.contains(&address) {
        return Err(UsersError::Exists { path: path.to_path_buf(), address });
    }
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("{address}:{ARGON2ID}{}\n", hash_password(password)?));
    write_atomically(path, text.as_bytes()).map_err(|error| UsersError::Write { path: path.to_path_buf(), error })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp-ringmail");
    {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        add_user(&path, "Alice@Example.org", "s3cret").unwrap();
        add_user(&path, "bob@example.org", "hunter2").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("s3cret") && !text.contains("hunter2"));
        assert!(text.contains("alice@example.org:{ARGON2ID}$argon2id$"));
        let db = UserDb::load(&path).unwrap();
        assert!(verify(db.hash_of("alice@example.org").as_deref(), "s3cret"));
        let e = add_user(&path, "alice@example.org", "x").unwrap_err();
        assert!(matches!(e, UsersError::Exists { .. }));
        assert!(matches!(add_user(&path, "carol", "x"), Err(UsersError::BadAddress(_))));
    }
}
