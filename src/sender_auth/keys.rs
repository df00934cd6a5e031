//! DKIM private keys: loading them from PEM files (PKCS#8 or PKCS#1,
//! RSA or Ed25519, the algorithm taken from the key), and generating new
//! ones with their DNS record (`ringmail dkim keygen`). The cryptography is
//! aws-lc-rs's, through mail-auth's key types.

use base64::Engine;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use std::path::{Path, PathBuf};

/// A signing key as loaded, with what its DNS record must say.
pub enum DkimKey {
    Rsa { key: RsaKey<Sha256>, bits: usize },
    Ed25519(Ed25519Key),
}

impl DkimKey {
    /// `k=` of the key's DNS record.
    pub fn kind(&self) -> &'static str {
        match self {
            DkimKey::Rsa { .. } => "rsa",
            DkimKey::Ed25519(_) => "ed25519",
        }
    }
}

/// Why a key file cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{}: cannot read the DKIM key: {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{}: not a PEM private key (expected PKCS#8 \"BEGIN PRIVATE KEY\" or PKCS#1 \"BEGIN RSA PRIVATE KEY\")", path.display())]
    NotPem { path: PathBuf },
    #[error("{}: not a usable RSA or Ed25519 key: {reason}", path.display())]
    Unusable { path: PathBuf, reason: String },
    #[error("{}: RSA key of {bits} bits; ringmail signs with 2048 to 4096 bits (the crypto library refuses smaller keys, and larger ones do not fit a DNS record)", path.display())]
    RsaSize { path: PathBuf, bits: usize },
    #[error("{}: already exists; not overwritten", path.display())]
    Exists { path: PathBuf },
    #[error("{}: cannot write the key: {error}", path.display())]
    Write { path: PathBuf, error: std::io::Error },
    #[error("key generation failed")]
    Generate,
}

/// Load the private key in `path`.
pub fn load(path: &Path) -> Result<DkimKey, KeyError> {
    let pem = std::fs::read(path).map_err(|error| KeyError::Read { path: path.to_path_buf(), error })?;
    parse(&pem).map_err(|e| match e {
        ParseError::NotPem => KeyError::NotPem { path: path.to_path_buf() },
        ParseError::Unusable(reason) => KeyError::Unusable { path: path.to_path_buf(), reason },
        ParseError::RsaSize(bits) => KeyError::RsaSize { path: path.to_path_buf(), bits },
    })
}

enum ParseError {
    NotPem,
    Unusable(String),
    RsaSize(usize),
}

fn parse(pem: &[u8]) -> Result<DkimKey, ParseError> {
    use aws_lc_rs::rsa::KeyPair;
    use rustls_pemfile::Item;
    let mut reader = pem;
    let item = loop {
        match rustls_pemfile::read_one(&mut reader) {
            Ok(Some(item @ (Item::Pkcs8Key(_) | Item::Pkcs1Key(_)))) => break item,
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return Err(ParseError::NotPem),
        }
    };
    let unusable = |e: &dyn std::fmt::Display| ParseError::Unusable(e.to_string());
    let rsa = |pair: KeyPair, der: rustls_pki_types::PrivateKeyDer<'_>| {
        let bits = pair.public_modulus_len() * 8;
        if !(2048..=4096).contains(&bits) {
            return Err(ParseError::RsaSize(bits));
        }
        let key = RsaKey::<Sha256>::from_key_der(der).map_err(|e| unusable(&e))?;
        Ok(DkimKey::Rsa { key, bits })
    };
    match item {
        Item::Pkcs8Key(der) => {
            let bytes = der.secret_pkcs8_der();
            if let Ok(key) = Ed25519Key::from_pkcs8_maybe_unchecked_der(bytes) {
                return Ok(DkimKey::Ed25519(key));
            }
            let pair = KeyPair::from_pkcs8(bytes).map_err(|e| rsa_rejected(&e, bytes))?;
            rsa(pair, der.clone_key().into())
        }
        Item::Pkcs1Key(der) => {
            let pair =
                KeyPair::from_der(der.secret_pkcs1_der()).map_err(|e| rsa_rejected(&e, der.secret_pkcs1_der()))?;
            rsa(pair, der.clone_key().into())
        }
        _ => Err(ParseError::NotPem),
    }
}

/// aws-lc-rs refuses RSA keys under 2048 bits with a bare "InvalidEncoding"
/// or similar; say the size when the DER shows one.
fn rsa_rejected(e: &aws_lc_rs::error::KeyRejected, der: &[u8]) -> ParseError {
    match rsa_modulus_bits(der) {
        Some(bits) if bits < 2048 => ParseError::RsaSize(bits),
        _ => ParseError::Unusable(e.to_string()),
    }
}

/// The modulus size of a DER RSA private key (PKCS#1, or inside PKCS#8),
/// found as the first long INTEGER: enough to tell a user the key is too
/// small.
fn rsa_modulus_bits(der: &[u8]) -> Option<usize> {
    (0..der.len().saturating_sub(4)).find_map(|i| {
        if der[i] != 0x02 {
            return None;
        }
        let (len, skip) = match der[i + 1] {
            0x81 => (der[i + 2] as usize, 3),
            0x82 => (((der[i + 2] as usize) << 8) | der[i + 3] as usize, 4),
            _ => return None,
        };
        let body = der.get(i + skip..i + skip + len)?;
        let leading = body.iter().take_while(|&&b| b == 0).count();
        (len >= 64).then(|| (len - leading) * 8)
    })
}

/// `dkim keygen --algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Rsa2048,
    Ed25519,
}

impl std::str::FromStr for Algorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Algorithm, String> {
        match s {
            "rsa2048" | "rsa" => Ok(Algorithm::Rsa2048),
            "ed25519" => Ok(Algorithm::Ed25519),
            _ => Err(format!("{s:?}: expected rsa2048 or ed25519")),
        }
    }
}

/// A new key: its PKCS#8 PEM and its DNS record's `k=` and `p=`.
pub struct Generated {
    pub pem: String,
    pub kind: &'static str,
    /// `p=`: base64 of the SubjectPublicKeyInfo (RSA) or of the raw 32-byte
    /// public key (Ed25519, RFC 8463 §4.2).
    pub public: String,
}

/// Make a new key.
pub fn generate(algorithm: Algorithm) -> Result<Generated, KeyError> {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
    use aws_lc_rs::signature::KeyPair as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    match algorithm {
        Algorithm::Rsa2048 => {
            let pair =
                aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
            let der: Pkcs8V1Der = pair.as_der().map_err(|_| KeyError::Generate)?;
            let spki: PublicKeyX509Der = pair.public_key().as_der().map_err(|_| KeyError::Generate)?;
            Ok(Generated { pem: pem("PRIVATE KEY", der.as_ref()), kind: "rsa", public: b64(spki.as_ref()) })
        }
        Algorithm::Ed25519 => {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let doc = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Generate)?;
            let pair =
                aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|_| KeyError::Generate)?;
            Ok(Generated {
                pem: pem("PRIVATE KEY", doc.as_ref()),
                kind: "ed25519",
                public: b64(pair.public_key().as_ref()),
            })
        }
    }
}

/// PEM armour, 64 columns.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The zone-file line publishing a key: `SELECTOR._domainkey.DOMAIN. IN TXT
/// "v=DKIM1; k=…; p=…"`, the value split into quoted strings of at most 255
/// bytes (a TXT record's character-string limit).
pub fn txt_record(domain: &str, selector: &str, kind: &str, public: &str) -> String {
    let value = format!("v=DKIM1; k={kind}; p={public}");
    let strings: Vec<String> =
        value.as_bytes().chunks(255).map(|c| format!("\"{}\"", std::str::from_utf8(c).unwrap_or_default())).collect();
    format!("{selector}._domainkey.{domain}. IN TXT {}", strings.join(" "))
}

/// Write a new key file (mode 0600), never replacing an existing one. The
/// file (and a `dkim/` directory made for it) get the owner and group of
/// `owner_like` when that exists (the data dir: the server reads its keys
/// as the user it runs as).
pub fn write_new(path: &Path, pem: &str, owner_like: Option<&Path>) -> Result<(), KeyError> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |error| KeyError::Write { path, error }
    };
    let owner = owner_like.and_then(|p| std::fs::metadata(p).ok()).map(|m| (m.uid(), m.gid()));
    let dir = crate::files::parent(path);
    if !dir.exists() {
        crate::files::create_private_dir_all(dir).map_err(write_err(dir))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(write_err(dir))?;
        }
    }
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(crate::files::PRIVATE_FILE).open(path).map_err(
            |error| {
                if error.kind() == std::io::ErrorKind::AlreadyExists {
                    KeyError::Exists { path: path.to_path_buf() }
                } else {
                    KeyError::Write { path: path.to_path_buf(), error }
                }
            },
        )?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(write_err(path))?;
    }
    f.write_all(pem.as_bytes()).and_then(|()| f.sync_all()).map_err(write_err(path))?;
    crate::files::sync_dir(dir).map_err(write_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_back_with_their_algorithm() {
        for (alg, kind) in [(Algorithm::Rsa2048, "rsa"), (Algorithm::Ed25519, "ed25519")] {
            let g = generate(alg).unwrap();
            assert_eq!(g.kind, kind);
            let key = parse(g.pem.as_bytes()).ok().expect("loads");
            assert_eq!(key.kind(), kind);
            if let DkimKey::Rsa { bits, .. } = key {
                assert_eq!(bits, 2048);
            }
        }
    }

    #[test]
    fn ed25519_public_key_is_the_raw_32_bytes() {
        let g = generate(Algorithm::Ed25519).unwrap();
        let raw = base64::engine::general_purpose::STANDARD.decode(&g.public).unwrap();
        assert_eq!(raw.len(), 32);
    }

    #[test]
    fn txt_record_splits_long_values_into_255_byte_strings() {
        let long = "A".repeat(400);
        let line = txt_record("example.org", "s1", "rsa", &long);
        assert!(line.starts_with("s1._domainkey.example.org. IN TXT \"v=DKIM1; k=rsa; p="));
        let strings: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        assert_eq!(strings.len(), 2);
        assert_eq!(strings[0].len(), 255);
        assert_eq!(strings.concat(), format!("v=DKIM1; k=rsa; p={long}"));
    }

    #[test]
    fn junk_is_not_a_key() {
        assert!(matches!(parse(b"hello"), Err(ParseError::NotPem)));
        let bad = pem("PRIVATE KEY", b"\x30\x03\x02\x01\x00");
        assert!(matches!(parse(bad.as_bytes()), Err(ParseError::Unusable(_))));
    }
}
