//! The STARTTLS sink (tests/fixtures/tls_sink.py) with a self-signed
//! certificate, for the relay's TLS tests: what it received, and whether
//! over TLS, goes to a file.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A self-signed certificate for `mx.remote.test` in `dir`, made with the
/// openssl command line: (cert, key).
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=mx.remote.test", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

/// The sink on a free loopback port, writing to `dir/received.txt` (a line
/// `TLS <version> <cipher> DATA|BDAT <MAIL line>` or `PLAIN ...`, the
/// message, `--END--`); `extra` EHLO keywords are offered after STARTTLS.
/// Killed when dropped.
pub struct TlsSink {
    child: Child,
    pub port: u16,
    pub out: PathBuf,
}

impl TlsSink {
    pub fn start(dir: &Path, extra: &[&str]) -> TlsSink {
        let (cert, key) = self_signed(dir);
        TlsSink::with_cert(dir, &cert, &key, extra)
    }

    /// [`TlsSink::start`] with the given certificate and key files.
    pub fn with_cert(dir: &Path, cert: &Path, key: &Path, extra: &[&str]) -> TlsSink {
        let port = super::free_port();
        let out = dir.join("received.txt");
        let child = Command::new("python3")
            .arg(format!("{}/tests/fixtures/tls_sink.py", env!("CARGO_MANIFEST_DIR")))
            .arg(port.to_string())
            .arg(cert)
            .arg(key)
            .arg(&out)
            .args(extra.iter().flat_map(|k| ["--ehlo", k]))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut sink = TlsSink { child, port, out };
        super::wait_until_ready(&mut sink.child);
        sink
    }

    /// Everything received so far.
    pub fn received(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// What it received once `n` messages are in.
    pub fn wait_for(&self, n: usize) -> String {
        super::eventually(Duration::from_secs(20), || {
            Some(self.received()).filter(|t| t.matches("--END--").count() >= n)
        })
    }

    /// Messages received so far.
    pub fn count(&self) -> usize {
        self.received().matches("--END--").count()
    }
}

impl Drop for TlsSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
