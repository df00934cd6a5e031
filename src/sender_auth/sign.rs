//! DKIM signing of relayed mail (RFC 6376, RFC 8463 for Ed25519).
//!
//! Every `[[dkim.sign]]` entry becomes one ready signer at load. A message
//! is signed by every entry of the most specific domain matching its From
//! domain (an exact entry beats a parent with `subdomains = true`); two
//! entries for one domain give two signatures (RSA and Ed25519 side by
//! side). `t=` is the message's arrival time in the spool and the
//! algorithms are deterministic, so the signature is recomputed at each
//! attempt and a retry, even after a restart, sends the same bytes.

use super::headers::{from_domain, FromProblem};
use super::keys::{self, DkimKey, KeyError};
use crate::config::{self, DkimSign};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};

/// One ready signer.
struct Entry {
    domain: String,
    subdomains: bool,
    selector: String,
    signer: DkimSigner<mail_auth::common::crypto::DkimKey, Done>,
}

/// The signing keys of `[dkim]`, loaded.
#[derive(Default)]
pub struct Signers {
    entries: Vec<Entry>,
    /// Some key is RSA: a signature costs about a millisecond of CPU.
    has_rsa: bool,
}

/// A message's signatures: the DKIM-Signature fields to put in front of
/// it, and who signed, for the log.
#[derive(Debug)]
pub struct Signed {
    pub fields: Vec<u8>,
    /// `d=` and `s=` of each signature.
    pub by: Vec<(String, String)>,
}

/// Why a message goes out unsigned.
#[derive(Debug, thiserror::Error)]
pub enum NotSigned {
    /// No From, two From, or a From without a domain.
    #[error("{0}")]
    From(#[from] FromProblem),
    /// No entry for its From domain (the normal case for other senders).
    #[error("no key for {0}")]
    NoKey(String),
    #[error("signing failed: {0}")]
    Failed(String),
}

impl Signers {
    /// Load every entry's key; the first that cannot be used is the error
    /// (naming its file).
    pub fn load(cfg: &config::Dkim) -> Result<Signers, KeyError> {
        let mut entries = Vec::with_capacity(cfg.sign.len());
        let mut has_rsa = false;
        for s in &cfg.sign {
            let key = match keys::load(&s.key)? {
                DkimKey::Rsa { key, .. } => {
                    has_rsa = true;
                    mail_auth::common::crypto::DkimKey::Rsa(key)
                }
                DkimKey::Ed25519(key) => mail_auth::common::crypto::DkimKey::Ed25519(key),
            };
            entries.push(Entry {
                domain: s.domain.clone(),
                subdomains: s.subdomains,
                selector: s.selector.clone(),
                signer: signer(s, key),
            });
        }
        Ok(Signers { entries, has_rsa })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Some key is RSA (a signature then costs about a millisecond, not
    /// tens of microseconds: worth taking off the executor's thread).
    pub fn has_rsa(&self) -> bool {
        self.has_rsa
    }

    /// Sign `msg` (the stored form: CRLF lines) for its From domain, at
    /// `arrival_secs` (seconds since the epoch, `t=`).
    pub fn sign(&self, msg: &[u8], arrival_secs: u64) -> Result<Signed, NotSigned> {
        let from = from_domain(msg)?;
        let best = self.matching(&from).map(|e| e.domain.len()).max().ok_or_else(|| NotSigned::NoKey(from.clone()))?;
        let mut signed = Signed { fields: Vec::new(), by: Vec::new() };
        for e in self.matching(&from).filter(|e| e.domain.len() == best) {
            let signature =
                e.signer.sign_chained_at([msg], arrival_secs).map_err(|err| NotSigned::Failed(err.to_string()))?;
            signature.write_header(&mut signed.fields);
            signed.by.push((e.domain.clone(), e.selector.clone()));
        }
        Ok(signed)
    }

    fn matching<'a>(&'a self, from: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |e| {
            from == e.domain
                || (e.subdomains && from.len() > e.domain.len() && from.ends_with(&e.domain) && {
                    from.as_bytes()[from.len() - e.domain.len() - 1] == b'.'
                })
        })
    }
}

/// The ready signer of one entry: `h=` is the header list with each
/// over-signed name once more (mail-auth lists a name it cannot find as an
/// empty, "null" header, which is how over-signing is expressed).
fn signer(
    s: &DkimSign,
    key: mail_auth::common::crypto::DkimKey,
) -> DkimSigner<mail_auth::common::crypto::DkimKey, Done> {
    let mut headers: Vec<String> = match &s.headers {
        Some(h) => h.clone(),
        None => config::DEFAULT_HEADERS.iter().map(|h| h.to_string()).collect(),
    };
    let over: Vec<String> = s.over_sign.clone().unwrap_or_else(|| vec!["from".to_string()]);
    for o in over {
        let name = headers.iter().find(|h| h.eq_ignore_ascii_case(&o)).cloned().unwrap_or(o);
        headers.push(name);
    }
    let (header_relaxed, body_relaxed) =
        s.canonicalization.as_deref().and_then(config::parse_canonicalization).unwrap_or((true, true));
    let c = |relaxed: bool| if relaxed { Canonicalization::Relaxed } else { Canonicalization::Simple };
    let mut signer = DkimSigner::from_key(key)
        .domain(s.domain.clone())
        .selector(s.selector.clone())
        .headers(headers)
        .header_canonicalization(c(header_relaxed))
        .body_canonicalization(c(body_relaxed));
    if let Some(expire) = s.expire {
        signer = signer.expiration(expire.get().as_secs());
    }
    signer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sender_auth::keys::{generate, Algorithm};

    /// Signers for `domain` from fresh keys written into `dir`.
    fn signers(dir: &std::path::Path, entries: &[(&str, &str, bool, Algorithm)]) -> Signers {
        let mut cfg = config::Dkim::default();
        for (domain, selector, subdomains, alg) in entries {
            let key = dir.join(format!("{domain}.{selector}.pem"));
            std::fs::write(&key, generate(*alg).unwrap().pem).unwrap();
            cfg.sign.push(DkimSign {
                domain: domain.to_string(),
                subdomains: *subdomains,
                selector: selector.to_string(),
                key,
                headers: None,
                over_sign: None,
                expire: None,
                canonicalization: None,
            });
        }
        Signers::load(&cfg).unwrap()
    }

    #[test]
    fn the_most_specific_domain_signs_and_every_key_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = signers(
            dir.path(),
            &[
                ("example.org", "a", true, Algorithm::Ed25519),
                ("news.example.org", "b", false, Algorithm::Ed25519),
                ("news.example.org", "c", false, Algorithm::Ed25519),
            ],
        );
        let by = |msg: &[u8]| s.sign(msg, 1_800_000_000).map(|x| x.by);
        let names = |v: Vec<(String, String)>| v.into_iter().map(|(d, s)| format!("{d}/{s}")).collect::<Vec<_>>();
        assert_eq!(
            names(by(b"From: a@news.example.org\r\n\r\nx\r\n").unwrap()),
            ["news.example.org/b", "news.example.org/c"]
        );
        assert_eq!(names(by(b"From: a@deep.sub.example.org\r\n\r\nx\r\n").unwrap()), ["example.org/a"]);
        assert_eq!(names(by(b"From: a@EXAMPLE.org\r\n\r\nx\r\n").unwrap()), ["example.org/a"]);
        assert!(matches!(by(b"From: a@badexample.org\r\n\r\nx\r\n"), Err(NotSigned::NoKey(_))));
        assert!(matches!(by(b"Subject: x\r\n\r\nx\r\n"), Err(NotSigned::From(FromProblem::Missing))));
    }

    #[test]
    fn the_same_message_and_time_give_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let s = signers(dir.path(), &[("example.org", "r", false, Algorithm::Rsa2048)]);
        let msg = b"From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n";
        let one = s.sign(msg, 1_800_000_000).unwrap().fields;
        let two = s.sign(msg, 1_800_000_000).unwrap().fields;
        assert_eq!(one, two);
        assert!(String::from_utf8_lossy(&one).contains("t=1800000000"));
        assert_ne!(one, s.sign(msg, 1_800_000_001).unwrap().fields);
    }

    /// The body (already in relaxed canonical form) of about `size` bytes:
    /// lines of words, and lines longer than the hash's 64-byte block.
    fn canonical_body(size: usize) -> Vec<u8> {
        let mut body = Vec::new();
        let mut i = 0;
        while body.len() < size {
            if i % 50 == 7 {
                body.extend(std::iter::repeat_n(b'x', 5000));
            } else {
                body.extend_from_slice(format!("line {i} of a body with a few words").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            i += 1;
        }
        body
    }

    #[test]
    fn body_hash_is_plain_sha256_at_every_size() {
        // bh= must be the SHA-256 of the canonical body, however
        // canonicalization splits it into pieces for the hasher: a body
        // that is its own relaxed canonical form is hashed here directly.
        use base64::Engine;
        let dir = tempfile::tempdir().unwrap();
        let s = signers(dir.path(), &[("example.org", "e", false, Algorithm::Ed25519)]);
        for size in [1, 100, 2000, 2047, 2048, 2049, 4100, 9000, 70_000] {
            let body = canonical_body(size);
            let mut msg = b"From: a@example.org\r\nSubject: x\r\n\r\n".to_vec();
            msg.extend_from_slice(&body);
            let fields = String::from_utf8(s.sign(&msg, 1_800_000_000).unwrap().fields).unwrap();
            let unfolded: String = fields.split(['\r', '\n', '\t', ' ']).collect();
            let bh = unfolded.split(';').find_map(|t| t.strip_prefix("bh=")).unwrap();
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
            assert_eq!(bh, base64::engine::general_purpose::STANDARD.encode(digest.as_ref()), "size {size}");
        }
    }

    #[test]
    fn b_never_ends_with_a_fold() {
        // Whether b= ends on a column boundary depends on what precedes it;
        // varying the selector length walks it across every column.
        let dir = tempfile::tempdir().unwrap();
        for n in 1..=40 {
            let selector = "s".repeat(n);
            let s = signers(dir.path(), &[("example.org", &selector, false, Algorithm::Rsa2048)]);
            let fields = s.sign(b"From: a@example.org\r\n\r\nx\r\n", 1_800_000_000).unwrap().fields;
            let text = String::from_utf8(fields).unwrap();
            assert!(text.ends_with(";\r\n"), "{text}");
            assert!(!text.contains("\r\n\t;"), "a fold right before the final ';': {text}");
        }
    }
}
