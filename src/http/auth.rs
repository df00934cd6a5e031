//! API tokens: the `[http] tokens_file` (one `SCOPE TOKEN` per line) and
//! the check of a request's `Authorization: Bearer TOKEN`.
//!
//! Owns: the file format, its mode check (refused when group- or
//! world-readable), the scope rules, and comparing tokens in constant time
//! (SHA-256 digests compared with `subtle`, every entry looked at). Must
//! not: log a token, or keep one in memory in the clear (only digests).

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// Shortest token accepted in the file: a guessable token is no token.
pub const MIN_TOKEN_LEN: usize = 16;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Status, queue listing, traces, the status page.
    Read,
    /// Everything `read` may, and queue actions (hold, release, delete,
    /// flush).
    Admin,
    /// `POST /api/v1/inject` only: an application sending mail sees
    /// nothing of the server and changes nothing in the queue.
    Inject,
}

impl Scope {
    pub fn parse(word: &str) -> Option<Scope> {
        match word {
            "read" => Some(Scope::Read),
            "admin" => Some(Scope::Admin),
            "inject" => Some(Scope::Inject),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Admin => "admin",
            Scope::Inject => "inject",
        }
    }

    /// Does a token of this scope allow what needs `needed`? admin ⊇ read;
    /// inject allows inject only, and only inject allows inject.
    pub fn grants(self, needed: Scope) -> bool {
        match (self, needed) {
            (Scope::Admin, Scope::Admin | Scope::Read) | (Scope::Read, Scope::Read) => true,
            (Scope::Inject, Scope::Inject) => true,
            (Scope::Read, Scope::Admin | Scope::Inject) | (Scope::Admin, Scope::Inject) => false,
            (Scope::Inject, Scope::Read | Scope::Admin) => false,
        }
    }
}

/// A tokens-file problem, naming the file (and line) and the reason.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("{path}: cannot read: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{path}: readable by group or others (mode {mode:04o}); it holds API tokens: chmod 600 it")]
    Mode { path: PathBuf, mode: u32 },
    #[error("{path}:{line}: {reason}")]
    Line { path: PathBuf, line: usize, reason: String },
}

/// Why a request's credentials were refused (logged with the client; the
/// token itself never is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer ...` header (401).
    Missing,
    /// A token that is in no line of the file (401).
    Unknown,
    /// A known token whose scope does not allow this (403).
    Scope,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "no bearer token",
            Refusal::Unknown => "unknown token",
            Refusal::Scope => "token lacks the scope",
        }
    }
}

/// The parsed tokens file: digests with their scopes. Immutable once
/// built; a reload builds a new one.
#[derive(Debug, Default)]
pub struct Tokens {
    entries: Vec<(Scope, [u8; 32])>,
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Tokens {
    /// Read `path`. A missing file is an empty set (every API request is
    /// then refused, /metrics still answers); a file group or others may
    /// read, or any bad line, is an error.
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        use std::os::unix::fs::PermissionsExt;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Tokens::default()),
            Err(error) => return Err(TokensError::Read { path: path.to_path_buf(), error }),
        };
        let mode = meta.permissions().mode() & 0o7777;
        if crate::files::readable_by_others(mode) {
            return Err(TokensError::Mode { path: path.to_path_buf(), mode });
        }
        let text =
            std::fs::read_to_string(path).map_err(|error| TokensError::Read { path: path.to_path_buf(), error })?;
        Tokens::parse(&text, path)
    }

    /// Parse tokens-file text; `path` is only used in error messages
    /// (which never quote a token).
    pub fn parse(text: &str, path: &Path) -> Result<Tokens, TokensError> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: String| TokensError::Line { path: path.to_path_buf(), line: i + 1, reason };
            let mut words = line.split_whitespace();
            let (Some(scope), Some(token), None) = (words.next(), words.next(), words.next()) else {
                return Err(bad("expected SCOPE TOKEN (two words)".into()));
            };
            let scope =
                Scope::parse(scope).ok_or_else(|| bad(format!("unknown scope {scope:?} (read, admin or inject)")))?;
            if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad(format!(
                    "the token must be at least {MIN_TOKEN_LEN} visible ASCII characters (e.g. `openssl rand -hex 32`)"
                )));
            }
            entries.push((scope, digest(token.as_bytes())));
        }
        Ok(Tokens { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Check the value of an `Authorization` header (None: absent) against
    /// `needed`. Every entry is compared, in constant time each, so the
    /// time taken does not tell which entry (or how much of one) matched.
    pub fn check(&self, authorization: Option<&[u8]>, needed: Scope) -> Result<Scope, Refusal> {
        let token = authorization.and_then(bearer).ok_or(Refusal::Missing)?;
        let presented = digest(token);
        let mut known = false;
        let mut allowed: Option<Scope> = None;
        for (scope, stored) in &self.entries {
            let same: bool = stored.ct_eq(&presented).into();
            known |= same;
            if same && scope.grants(needed) {
                allowed = Some(*scope);
            }
        }
        match (known, allowed) {
            (_, Some(scope)) => Ok(scope),
            (true, None) => Err(Refusal::Scope),
            (false, None) => Err(Refusal::Unknown),
        }
    }
}

/// The token of `Bearer TOKEN` (the scheme case-insensitive, RFC 7235).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ: &str = "read-token-0123456789";
    const ADMIN: &str = "admin-token-0123456789";
    const INJECT: &str = "inject-token-0123456789";

    fn tokens() -> Tokens {
        let text = format!("# comment\n\nread {READ}\nadmin {ADMIN}\n  inject {INJECT}  \n");
        Tokens::parse(&text, Path::new("t")).unwrap()
    }

    fn auth(token: &str) -> Vec<u8> {
        format!("Bearer {token}").into_bytes()
    }

    #[test]
    fn admin_includes_read_and_inject_is_only_inject() {
        let t = tokens();
        assert_eq!(t.len(), 3);
        assert_eq!(t.check(Some(&auth(READ)), Scope::Read), Ok(Scope::Read));
        assert_eq!(t.check(Some(&auth(READ)), Scope::Admin), Err(Refusal::Scope));
        assert_eq!(t.check(Some(&auth(ADMIN)), Scope::Read), Ok(Scope::Admin));
        assert_eq!(t.check(Some(&auth(ADMIN)), Scope::Admin), Ok(Scope::Admin));
        assert_eq!(t.check(Some(&auth(ADMIN)), Scope::Inject), Err(Refusal::Scope));
        assert_eq!(t.check(Some(&auth(INJECT)), Scope::Inject), Ok(Scope::Inject));
        assert_eq!(t.check(Some(&auth(INJECT)), Scope::Read), Err(Refusal::Scope));
    }

    #[test]
    fn missing_malformed_and_unknown_tokens_are_refused() {
        let t = tokens();
        assert_eq!(t.check(None, Scope::Read), Err(Refusal::Missing));
        assert_eq!(t.check(Some(b"Basic abc"), Scope::Read), Err(Refusal::Missing));
        assert_eq!(t.check(Some(b"Bearer "), Scope::Read), Err(Refusal::Missing));
        assert_eq!(t.check(Some(b"Bear"), Scope::Read), Err(Refusal::Missing));
        assert_eq!(t.check(Some(&auth("read-token-012345678")), Scope::Read), Err(Refusal::Unknown));
        assert_eq!(t.check(Some(format!("bEaReR {READ}").as_bytes()), Scope::Read), Ok(Scope::Read));
    }

    #[test]
    fn bad_lines_name_the_line_and_never_the_token() {
        for (text, why) in [
            ("write abcdefghijklmnopq\n", "unknown scope"),
            ("read short\n", "at least 16"),
            ("read\n", "two words"),
            ("read abcdefghijklmnopq extra\n", "two words"),
        ] {
            let e = Tokens::parse(text, Path::new("/etc/t")).unwrap_err().to_string();
            assert!(e.starts_with("/etc/t:1: "), "{e}");
            assert!(e.contains(why), "{e}");
            assert!(!e.contains("abcdefghijklmnopq") && !e.contains("short"), "{e}");
        }
    }

    #[test]
    fn a_file_others_may_read_is_refused_naming_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, format!("read {READ}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = Tokens::load(&path).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()) && e.contains("0640"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Tokens::load(&path).unwrap().len(), 1);
        assert!(Tokens::load(&dir.path().join("none")).unwrap().is_empty());
    }
}
