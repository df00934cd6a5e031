//! DANE for SMTP (RFC 7672, RFC 7671): which TLSA records are usable, how
//! a certificate chain is matched against them, and the rustls verifier
//! that does it during the handshake.
//!
//! Usable records (RFC 7672 §3.1): usage DANE-EE (3) or DANE-TA (2),
//! selector Cert (0) or SPKI (1), matching type Full (0), SHA2-256 (1) or
//! SHA2-512 (2) with the right length. PKIX-TA (0) and PKIX-EE (1) are
//! unusable for SMTP (§3.1.3), as is anything unknown.
//!
//! - DANE-EE: the server's own certificate (or its key) matches; no name,
//!   chain or expiry check (§3.1.1).
//! - DANE-TA: a certificate the server sent after its own matches the
//!   record and the chain verifies up to it (webpki, with that certificate
//!   as the only trust anchor), naming the MX host (§3.2.2; the MX host is
//!   also the TLSA base domain here, see `dane_mode`). A `2 0 0` record
//!   holds the whole anchor certificate, so it need not be in the chain.
//!   A `2 1 x` anchor must be in the chain (RFC 7671 §5.2.2 asks servers to
//!   send it); the server's own certificate is never taken as its anchor.
//!
//! The handshake's signatures are still checked (like `tls::AcceptAny`),
//! so the session keys belong to the certificate that matched.
//!
//! It does no DNS (the records come from `dns::Resolver::tlsa`) and decides
//! no policy (that is `tls_policy`).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256, Sha512};
use std::fmt;
use std::sync::{Arc, OnceLock};

/// Certificate usage DANE-TA: a trust anchor of the server's chain.
pub const DANE_TA: u8 = 2;
/// Certificate usage DANE-EE: the server's own certificate.
pub const DANE_EE: u8 = 3;

/// One TLSA record (RFC 6698 §2.1), as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsaRecord {
    /// Certificate usage (0–3).
    pub usage: u8,
    /// 0: the whole certificate; 1: its SubjectPublicKeyInfo.
    pub selector: u8,
    /// 0: the selected bytes themselves; 1: SHA-256; 2: SHA-512.
    pub mtype: u8,
    /// The association data.
    pub data: Vec<u8>,
}

/// A record's three parameters, as logs show them: `3 1 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsaParams {
    pub usage: u8,
    pub selector: u8,
    pub mtype: u8,
}

impl fmt::Display for TlsaParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.usage, self.selector, self.mtype)
    }
}

impl TlsaRecord {
    /// The record's parameters.
    pub fn params(&self) -> TlsaParams {
        TlsaParams { usage: self.usage, selector: self.selector, mtype: self.mtype }
    }

    /// Whether an SMTP client may use it (the module doc's rules); a
    /// digest of the wrong length is unusable (RFC 7671 §5.1 would have
    /// it never match; dropping it says so earlier).
    pub fn is_usable(&self) -> bool {
        let length_ok = match self.mtype {
            0 => !self.data.is_empty(),
            1 => self.data.len() == 32,
            2 => self.data.len() == 64,
            _ => false,
        };
        matches!(self.usage, DANE_TA | DANE_EE) && matches!(self.selector, 0 | 1) && length_ok
    }

    /// Whether `cert` (DER) matches this record's selector, matching type
    /// and data. A certificate whose SPKI cannot be found matches no
    /// selector-1 record.
    pub fn matches(&self, cert: &[u8]) -> bool {
        let selected = match self.selector {
            0 => cert,
            1 => match spki(cert) {
                Some(spki) => spki,
                None => return false,
            },
            _ => return false,
        };
        match self.mtype {
            0 => selected == self.data.as_slice(),
            1 => Sha256::digest(selected).as_slice() == self.data.as_slice(),
            2 => Sha512::digest(selected).as_slice() == self.data.as_slice(),
            _ => false,
        }
    }
}

/// One DER element (tag, length, contents) at the start of some input.
struct Tlv<'a> {
    tag: u8,
    /// The whole element, tag and length included.
    whole: &'a [u8],
    /// What follows it.
    rest: &'a [u8],
    contents: &'a [u8],
}

/// The DER element at the start of `input`. Definite lengths of up to 4
/// bytes only, which is all a certificate uses.
fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    Some(Tlv { tag, whole: &input[..header + len], contents: &rest[..len], rest: &rest[len..] })
}

/// The DER SubjectPublicKeyInfo (tag and length included, as selector 1
/// hashes it) of an X.509 certificate, or `None` if `cert` is not one.
pub fn spki(cert: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const VERSION: u8 = 0xa0; // [0] EXPLICIT
    let sequence = |input| tlv(input).filter(|t| t.tag == SEQUENCE);
    let certificate = sequence(cert)?;
    let tbs = sequence(certificate.contents)?;
    let mut rest = tbs.contents;
    let first = tlv(rest)?;
    if first.tag == VERSION {
        rest = first.rest;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        rest = tlv(rest)?.rest;
    }
    sequence(rest).map(|spki| spki.whole)
}

/// A certificate check against a host's usable TLSA records, for one
/// connection: the rustls config to hand the handshake, and what it found.
#[derive(Clone)]
pub struct DaneCheck {
    /// Checks the server's chain with [`DaneVerifier`].
    pub config: Arc<ClientConfig>,
    /// Remembers which record matched, or why none did.
    pub verifier: Arc<DaneVerifier>,
}

impl DaneCheck {
    /// A check against `records` (only the usable ones are kept; the
    /// caller has made sure there is one).
    pub fn new(records: &[TlsaRecord]) -> DaneCheck {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(DaneVerifier {
            records: records.iter().filter(|r| r.is_usable()).cloned().collect(),
            provider: provider.clone(),
            matched: Arc::new(OnceLock::new()),
            mismatch: OnceLock::new(),
        });
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("ring supports TLS 1.2 and 1.3")
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        DaneCheck { config: Arc::new(config), verifier }
    }
}

/// A rustls [`ServerCertVerifier`] that accepts a chain matching one of its
/// TLSA records (see the module doc). Made per connection: it records the
/// record that matched (for `tls_basis=`) and, on failure, why.
#[derive(Debug)]
pub struct DaneVerifier {
    records: Vec<TlsaRecord>,
    provider: Arc<CryptoProvider>,
    matched: Arc<OnceLock<TlsaParams>>,
    mismatch: OnceLock<String>,
}

impl DaneVerifier {
    /// The parameters of the usable records, in published order.
    pub fn params(&self) -> Vec<TlsaParams> {
        self.records.iter().map(TlsaRecord::params).collect()
    }

    /// Filled in with the matching record's parameters once a chain matched.
    pub fn matched(&self) -> Arc<OnceLock<TlsaParams>> {
        self.matched.clone()
    }

    /// Why the server's chain matched no record, after a handshake that
    /// failed for that reason.
    pub fn mismatch(&self) -> Option<&str> {
        self.mismatch.get().map(String::as_str)
    }

    /// Whether the chain verifies to `anchor` (a DER certificate) as the
    /// only trust anchor, naming `server_name`.
    fn chain_verifies(
        &self,
        anchor: &[u8],
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), String> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(anchor.to_vec())).map_err(|e| format!("trust anchor: {e}"))?;
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| e.to_string())?;
        webpki
            .verify_server_cert(end_entity, intermediates, server_name, &[], now)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(r) = self.records.iter().find(|r| r.usage == DANE_EE && r.matches(end_entity)) {
            let _ = self.matched.set(r.params());
            return Ok(ServerCertVerified::assertion());
        }
        let mut ta_error = None;
        for r in self.records.iter().filter(|r| r.usage == DANE_TA) {
            let in_chain = intermediates.iter().filter(|c| r.matches(c)).map(|c| c.as_ref());
            // A 2 0 0 record is the anchor certificate itself.
            let published = (r.selector == 0 && r.mtype == 0).then_some(r.data.as_slice());
            for anchor in in_chain.chain(published) {
                match self.chain_verifies(anchor, end_entity, intermediates, server_name, now) {
                    Ok(()) => {
                        let _ = self.matched.set(r.params());
                        return Ok(ServerCertVerified::assertion());
                    }
                    Err(e) => ta_error = Some(e),
                }
            }
        }
        let why = match ta_error {
            Some(e) => format!("TLSA mismatch: the chain matched a DANE-TA record but did not verify to it: {e}"),
            None => "TLSA mismatch: no usable TLSA record matches the server's certificate chain".to_string(),
        };
        let _ = self.mismatch.set(why.clone());
        Err(rustls::Error::General(why))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    fn leaf(name: &str) -> (Vec<u8>, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()]).unwrap().self_signed(&key).unwrap();
        (cert.der().to_vec(), key)
    }

    fn record(usage: u8, selector: u8, mtype: u8, data: Vec<u8>) -> TlsaRecord {
        TlsaRecord { usage, selector, mtype, data }
    }

    /// The record `usage selector mtype` for `cert`, as a zone would publish it.
    fn record_for(usage: u8, selector: u8, mtype: u8, cert: &[u8]) -> TlsaRecord {
        let selected = if selector == 1 { spki(cert).unwrap().to_vec() } else { cert.to_vec() };
        let data = match mtype {
            0 => selected,
            1 => Sha256::digest(&selected).to_vec(),
            _ => Sha512::digest(&selected).to_vec(),
        };
        record(usage, selector, mtype, data)
    }

    #[test]
    fn spki_is_the_public_key_the_certificate_was_made_for() {
        let (cert, key) = leaf("mx.example.test");
        assert_eq!(spki(&cert).unwrap(), key.public_key_der().as_slice());
        assert_eq!(spki(b"not a certificate"), None);
        assert_eq!(spki(&cert[..cert.len() / 2]), None, "a truncated certificate has no SPKI");
    }

    #[test]
    fn dane_ee_records_match_the_certificate_by_each_selector_and_matching_type() {
        let (cert, _) = leaf("mx.example.test");
        let (other, _) = leaf("mx.example.test");
        for (selector, mtype) in [(1, 1), (0, 1), (1, 2), (0, 2), (1, 0), (0, 0)] {
            let r = record_for(DANE_EE, selector, mtype, &cert);
            assert!(r.is_usable(), "3 {selector} {mtype}");
            assert!(r.matches(&cert), "3 {selector} {mtype}");
            assert!(!r.matches(&other), "3 {selector} {mtype} must not match another key");
        }
    }

    #[test]
    fn pkix_usages_unknown_parameters_and_bad_lengths_are_unusable() {
        let (cert, _) = leaf("mx.example.test");
        let good = record_for(DANE_EE, 1, 1, &cert);
        assert!(record_for(DANE_TA, 1, 1, &cert).is_usable());
        assert!(!TlsaRecord { usage: 0, ..good.clone() }.is_usable(), "PKIX-TA");
        assert!(!TlsaRecord { usage: 1, ..good.clone() }.is_usable(), "PKIX-EE");
        assert!(!TlsaRecord { usage: 4, ..good.clone() }.is_usable());
        assert!(!TlsaRecord { selector: 2, ..good.clone() }.is_usable());
        assert!(!TlsaRecord { mtype: 3, ..good.clone() }.is_usable());
        assert!(!TlsaRecord { data: good.data[..31].to_vec(), ..good.clone() }.is_usable(), "short SHA-256");
        assert!(!record(DANE_EE, 1, 2, vec![0; 32]).is_usable(), "SHA-512 needs 64 bytes");
        assert!(!record(DANE_EE, 0, 0, Vec::new()).is_usable());
    }

    fn verify(records: &[TlsaRecord], chain: &[Vec<u8>], name: &str) -> (Result<(), String>, Arc<DaneVerifier>) {
        let check = DaneCheck::new(records);
        let ee = CertificateDer::from(chain[0].clone());
        let rest: Vec<CertificateDer<'static>> = chain[1..].iter().map(|c| CertificateDer::from(c.clone())).collect();
        let name = ServerName::try_from(name.to_string()).unwrap();
        let got = check.verifier.verify_server_cert(&ee, &rest, &name, &[], UnixTime::now());
        (got.map(|_| ()).map_err(|e| e.to_string()), check.verifier)
    }

    #[test]
    fn dane_ee_ignores_the_name_and_says_which_record_matched() {
        let (cert, _) = leaf("some.other.name");
        let (unrelated, _) = leaf("x");
        let records = [record_for(DANE_EE, 1, 1, &unrelated), record_for(DANE_EE, 0, 1, &cert)];
        let (got, verifier) = verify(&records, &[cert], "mx.example.test");
        assert_eq!(got, Ok(()));
        assert_eq!(verifier.matched().get().map(ToString::to_string).as_deref(), Some("3 0 1"));
    }

    #[test]
    fn a_chain_matching_no_record_fails_as_a_tlsa_mismatch() {
        let (cert, _) = leaf("mx.example.test");
        let (other, _) = leaf("mx.example.test");
        let (got, verifier) = verify(&[record_for(DANE_EE, 1, 1, &other)], &[cert], "mx.example.test");
        assert!(got.unwrap_err().contains("TLSA mismatch"));
        assert!(verifier.mismatch().is_some_and(|m| m.contains("TLSA mismatch")));
        assert!(verifier.matched().get().is_none());
    }

    /// A CA and a leaf it issued for `name`: (leaf DER, CA DER).
    fn chain(name: &str) -> (Vec<u8>, Vec<u8>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Test TA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec![name.to_string()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
        (leaf.der().to_vec(), ca.der().to_vec())
    }

    #[test]
    fn dane_ta_verifies_the_chain_to_the_anchor_and_checks_the_name() {
        let (leaf, ca) = chain("mx.example.test");
        for selector in [0, 1] {
            let ta = [record_for(DANE_TA, selector, 1, &ca)];
            let (got, verifier) = verify(&ta, &[leaf.clone(), ca.clone()], "mx.example.test");
            assert_eq!(got, Ok(()), "2 {selector} 1");
            assert_eq!(verifier.matched().get().map(ToString::to_string), Some(format!("2 {selector} 1")));
            let (wrong_name, _) = verify(&ta, &[leaf.clone(), ca.clone()], "mx.elsewhere.test");
            assert!(wrong_name.unwrap_err().contains("TLSA mismatch"), "2 {selector} 1 with another name");
        }
        // Not sent by the server: only a full-certificate record can stand in.
        let (missing, _) = verify(&[record_for(DANE_TA, 1, 1, &ca)], std::slice::from_ref(&leaf), "mx.example.test");
        assert!(missing.is_err());
        let (full, _) = verify(&[record_for(DANE_TA, 0, 0, &ca)], std::slice::from_ref(&leaf), "mx.example.test");
        assert_eq!(full, Ok(()));
        // The leaf's own key as a "trust anchor" is not one.
        let (leaf_as_ta, _) = verify(&[record_for(DANE_TA, 1, 1, &leaf)], &[leaf.clone(), ca], "mx.example.test");
        assert!(leaf_as_ta.is_err());
    }

    #[test]
    fn unusable_records_never_take_part_in_matching() {
        let (cert, _) = leaf("mx.example.test");
        let pkix_ee = TlsaRecord { usage: 1, ..record_for(DANE_EE, 1, 1, &cert) };
        let (got, _) = verify(&[pkix_ee], &[cert], "mx.example.test");
        assert!(got.is_err());
    }
}
