//! Client TLS for relaying (`relay.tls`): opportunistic and required
//! encryption accept any certificate (as every MTA does for opportunistic
//! STARTTLS: an attacker who can strip STARTTLS gains nothing from a bad
//! certificate being refused); `verify` (and MTA-STS `enforce`) checks the
//! chain and the MX host name against the trusted roots: the webpki roots,
//! or, when `relay.ca_file` is set, only the certificates of that PEM file
//! (which then also check MTA-STS policy fetches).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why `relay.ca_file` could not give trusted roots.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    #[error("relay.ca_file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("relay.ca_file {path}: not a PEM certificate bundle: {source}")]
    Pem { path: PathBuf, source: std::io::Error },
    #[error("relay.ca_file {path}: no certificate in the file")]
    Empty { path: PathBuf },
    #[error("relay.ca_file {path}: certificate {index} is not usable as a root: {reason}")]
    Unusable { path: PathBuf, index: usize, reason: String },
}

/// The roots PKIX checks trust: every certificate of `ca_file` (a PEM
/// bundle) when it is given, else the webpki roots. Reads the file: call
/// it at start-up.
pub fn load_roots(ca_file: Option<&Path>) -> Result<RootCertStore, CaFileError> {
    let mut roots = RootCertStore::empty();
    let Some(path) = ca_file else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    };
    let bytes = std::fs::read(path).map_err(|source| CaFileError::Read { path: path.to_path_buf(), source })?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &bytes[..])
        .collect::<Result<_, _>>()
        .map_err(|source| CaFileError::Pem { path: path.to_path_buf(), source })?;
    if certs.is_empty() {
        return Err(CaFileError::Empty { path: path.to_path_buf() });
    }
    for (index, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|e| CaFileError::Unusable {
            path: path.to_path_buf(),
            index: index + 1,
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// The two client configs a core needs, built once.
pub struct RelayTls {
    /// Any certificate (opportunistic / required).
    pub any: Arc<ClientConfig>,
    /// Chain and name checked (verify, MTA-STS enforce, and the HTTPS
    /// fetch of MTA-STS policies).
    pub verified: Arc<ClientConfig>,
}

impl RelayTls {
    /// Checking against the webpki roots.
    pub fn new() -> RelayTls {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        RelayTls::with_roots(Arc::new(roots))
    }

    /// Checking against `roots` (see [`load_roots`]).
    pub fn with_roots(roots: Arc<RootCertStore>) -> RelayTls {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions = &[&rustls::version::TLS13, &rustls::version::TLS12];
        let verified = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .expect("ring supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let any = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .expect("ring supports TLS 1.2 and 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth();
        RelayTls { any: Arc::new(any), verified: Arc::new(verified) }
    }
}

impl Default for RelayTls {
    fn default() -> Self {
        RelayTls::new()
    }
}

/// Accepts any certificate but still checks the handshake signatures (so
/// the session keys are the peer's).
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_replaces_the_webpki_roots_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, ca.pem()).unwrap();
        assert_eq!(load_roots(Some(&good)).unwrap().len(), 1);
        assert!(load_roots(None).unwrap().len() > 100, "the webpki roots");

        let missing = dir.path().join("missing.pem");
        let e = load_roots(Some(&missing)).unwrap_err();
        assert!(matches!(e, CaFileError::Read { .. }) && e.to_string().contains("missing.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = load_roots(Some(&empty)).unwrap_err();
        assert!(matches!(e, CaFileError::Empty { .. }) && e.to_string().contains("empty.pem"), "{e}");
    }
}
