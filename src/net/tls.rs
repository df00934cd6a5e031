//! Server TLS: the certificate chain and key from `[tls]` (or a
//! self-signed pair made on first start when `[tls]` is absent), turned into
//! a rustls server config (TLS 1.2 and 1.3 only). SIGHUP reloads it; a
//! session keeps the config it started with.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// notAfter (Unix seconds) of the leaf certificate most recently loaded by
/// [`TlsFiles::load`]; `i64::MIN` before the first load.
//
// Process-wide on purpose, the one exception to "no statics": there is one
// server certificate per process, loaded at start-up and by SIGHUP on
// threads of their own and handed to the cores as a rustls `ServerConfig`,
// which has no way to give its certificate back. Keeping the expiry here
// lets a scrape report the certificate actually loaded (not whatever the
// file says now) without widening the TLS feed. Off the hot path: written
// per load, read per scrape.
static LOADED_NOT_AFTER: AtomicI64 = AtomicI64::new(i64::MIN);

/// When the certificate this process loaded last expires (notAfter, Unix
/// seconds); None before any load.
pub fn loaded_certificate_expiry() -> Option<i64> {
    let v = LOADED_NOT_AFTER.load(Ordering::Relaxed);
    (v != i64::MIN).then_some(v)
}

/// Why the certificate could not be used; names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{path}: {reason}")]
    Bad { path: PathBuf, reason: String },
    #[error("{path}: cannot write the self-signed certificate: {error}")]
    Write { path: PathBuf, error: std::io::Error },
}

/// Where the certificate and key come from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// The configured pair, or the self-signed pair under `data_dir/tls`,
    /// created on first use (the log says so).
    pub fn resolve(config: &crate::config::Config) -> Result<TlsFiles, TlsError> {
        if let Some(t) = &config.tls {
            return Ok(TlsFiles { cert: t.cert.clone(), key: t.key.clone() });
        }
        let dir = config.data_dir.join("tls");
        let files = TlsFiles { cert: dir.join("self-signed-cert.pem"), key: dir.join("self-signed-key.pem") };
        if !files.cert.exists() || !files.key.exists() {
            make_self_signed(&config.hostname, &files)?;
            tracing::warn!(
                cert = %files.cert.display(),
                "no [tls] configured: created a self-signed certificate for {}; clients will not trust it — configure [tls] cert and key for production",
                config.hostname
            );
        }
        Ok(files)
    }

    /// Load and check the pair: a usable chain, a key that matches it.
    /// On success [`loaded_certificate_expiry`] reports this leaf's notAfter.
    pub fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let (certs, not_after) = read_certs(&self.cert)?;
        let key = read_key(&self.key)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Bad { path: self.cert.clone(), reason: e.to_string() })?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Bad {
                path: self.key.clone(),
                reason: format!("key does not fit the certificate chain in {}: {e}", self.cert.display()),
            })?;
        LOADED_NOT_AFTER.store(not_after, Ordering::Relaxed);
        Ok(Arc::new(config))
    }
}

/// The chain in the file and its leaf's notAfter (Unix seconds).
fn read_certs(path: &Path) -> Result<(Vec<CertificateDer<'static>>, i64), TlsError> {
    let pem = std::fs::read(path).map_err(|error| TlsError::Read { path: path.to_path_buf(), error })?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Bad { path: path.to_path_buf(), reason: format!("bad PEM: {e}") })?;
    if certs.is_empty() {
        return Err(TlsError::Bad { path: path.to_path_buf(), reason: "no CERTIFICATE block found".into() });
    }
    let not_after = check_validity(path, &certs[0])?;
    Ok((certs, not_after))
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = std::fs::read(path).map_err(|error| TlsError::Read { path: path.to_path_buf(), error })?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| TlsError::Bad { path: path.to_path_buf(), reason: format!("bad PEM: {e}") })?
        .ok_or_else(|| TlsError::Bad { path: path.to_path_buf(), reason: "no PRIVATE KEY block found".into() })
}

/// Refuse a leaf certificate that is expired or not yet valid: clients
/// would fail every handshake, so say so at start-up instead. Returns its
/// notAfter.
fn check_validity(path: &Path, leaf: &CertificateDer<'_>) -> Result<i64, TlsError> {
    let (not_before, not_after) = validity(leaf.as_ref()).ok_or_else(|| TlsError::Bad {
        path: path.to_path_buf(),
        reason: "cannot read the certificate's validity".into(),
    })?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    if now > not_after {
        return Err(TlsError::Bad { path: path.to_path_buf(), reason: "the certificate has expired".into() });
    }
    if now < not_before {
        return Err(TlsError::Bad { path: path.to_path_buf(), reason: "the certificate is not valid yet".into() });
    }
    Ok(not_after)
}

/// (notBefore, notAfter) in Unix seconds from a DER certificate: a minimal
/// walk of TBSCertificate (version, serial, signature, issuer, validity).
fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (cert, _) = der_seq(der)?;
    let (tbs, _) = der_seq(cert)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = der_skip(rest)?; // [0] version
    }
    rest = der_skip(rest)?; // serial
    rest = der_skip(rest)?; // signature algorithm
    rest = der_skip(rest)?; // issuer
    let (validity, _) = der_seq(rest)?;
    let (nb, after_nb) = der_time(validity)?;
    let (na, _) = der_time(after_nb)?;
    Some((nb, na))
}

fn der_len(b: &[u8]) -> Option<(usize, usize)> {
    let first = *b.get(1)?;
    if first < 0x80 {
        return Some((first as usize, 2));
    }
    let n = (first & 0x7f) as usize;
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = (len << 8) | *b.get(2 + i)? as usize;
    }
    Some((len, 2 + n))
}

/// Contents of the SEQUENCE at the start of `b`, and what follows it.
fn der_seq(b: &[u8]) -> Option<(&[u8], &[u8])> {
    if b.first()? != &0x30 {
        return None;
    }
    let (len, hdr) = der_len(b)?;
    Some((b.get(hdr..hdr + len)?, b.get(hdr + len..)?))
}

fn der_skip(b: &[u8]) -> Option<&[u8]> {
    let (len, hdr) = der_len(b)?;
    b.get(hdr + len..)
}

/// A UTCTime or GeneralizedTime as Unix seconds, and what follows it.
fn der_time(b: &[u8]) -> Option<(i64, &[u8])> {
    let tag = *b.first()?;
    let (len, hdr) = der_len(b)?;
    let s = std::str::from_utf8(b.get(hdr..hdr + len)?).ok()?;
    let rest = b.get(hdr + len..)?;
    let (year, s) = match tag {
        0x17 => {
            let yy: i64 = s.get(0..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, s.get(2..)?)
        }
        0x18 => (s.get(0..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (mo, d, h, mi, se) = (num(0..2)?, num(2..4)?, num(4..6)?, num(6..8)?, num(8..10)?);
    Some((days_from_civil(year, mo, d) * 86400 + h * 3600 + mi * 60 + se, rest))
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn make_self_signed(hostname: &str, files: &TlsFiles) -> Result<(), TlsError> {
    let bad = |reason: String| TlsError::Bad { path: files.cert.clone(), reason };
    let key = rcgen::KeyPair::generate().map_err(|e| bad(e.to_string()))?;
    let params = rcgen::CertificateParams::new(vec![hostname.to_string()]).map_err(|e| bad(e.to_string()))?;
    let cert = params.self_signed(&key).map_err(|e| bad(e.to_string()))?;
    if let Some(dir) = files.cert.parent() {
        crate::files::create_private_dir_all(dir)
            .map_err(|error| TlsError::Write { path: dir.to_path_buf(), error })?;
    }
    write_private(&files.key, key.serialize_pem().as_bytes())?;
    write_private(&files.cert, cert.pem().as_bytes())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    crate::files::replace(path, crate::files::Ownership::Private, |f| std::io::Write::write_all(f, bytes))
        .map_err(|error| TlsError::Write { path: path.to_path_buf(), error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_pair_loads_and_has_a_current_validity() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles { cert: dir.path().join("c.pem"), key: dir.path().join("k.pem") };
        make_self_signed("mx.test", &files).unwrap();
        assert!(files.load().is_ok());
        let (certs, not_after) = read_certs(&files.cert).unwrap();
        let (nb, na) = validity(certs[0].as_ref()).unwrap();
        assert!(nb < na);
        assert_eq!(not_after, na);
        // Tests in this binary load only self-signed pairs made the same way.
        let loaded = loaded_certificate_expiry().expect("a load records the expiry");
        assert!(loaded > nb, "{loaded} vs {nb}");
    }

    #[test]
    fn mismatched_key_and_missing_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = TlsFiles { cert: dir.path().join("a.pem"), key: dir.path().join("ak.pem") };
        let b = TlsFiles { cert: dir.path().join("b.pem"), key: dir.path().join("bk.pem") };
        make_self_signed("a.test", &a).unwrap();
        make_self_signed("b.test", &b).unwrap();
        let mixed = TlsFiles { cert: a.cert.clone(), key: b.key.clone() };
        let e = mixed.load().unwrap_err().to_string();
        assert!(e.contains("bk.pem") && e.contains("does not fit"), "{e}");
        let missing = TlsFiles { cert: dir.path().join("nope.pem"), key: a.key.clone() };
        assert!(missing.load().unwrap_err().to_string().contains("nope.pem"));
    }

    #[test]
    fn civil_days_match_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 11, 28), 20_785);
    }
}
