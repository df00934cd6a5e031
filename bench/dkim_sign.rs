//! DKIM signing cost per message, next to the bare signature primitive.
//!
//! `full_ALG/SIZE` is ringmail's whole signing step as the relay runs it at
//! each delivery attempt (`Signers::sign`: find the From domain, relaxed
//! canonicalization and SHA-256 of body and headers, the signature, the
//! DKIM-Signature field), for RSA-2048 and Ed25519 keys made with
//! `keys::generate` and loaded through a `[dkim]` config like the server's,
//! on messages of about 1 KiB and 100 KiB with the headers a bulk sender
//! sets. `primitive_ALG/32B` is aws-lc-rs's signature of a 32-byte input alone
//! (what is left of DKIM once the hashes are made: RSA PKCS#1 v1.5 with
//! SHA-256, and PureEdDSA over the header hash as RFC 8463 says), so the
//! overhead of canonicalization and hashing shows beside it.
//!
//! Run: `cargo bench --bench dkim_sign`; `bench/dkim-speed` runs it with
//! `openssl speed` in the same run and prints signs/s per core as a table.
//! Criterion's estimates land in `<target>/criterion/dkim_sign/*/*/new/`.

use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, RSA_PKCS1_SHA256};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringmail::config::Dkim;
use ringmail::sender_auth::keys::{self, Algorithm};
use ringmail::sender_auth::Signers;

/// Message sizes measured (whole message, headers included).
const SIZES: [(usize, &str); 2] = [(1 << 10, "1KiB"), (100 << 10, "100KiB")];
const ALGORITHMS: [(Algorithm, &str); 2] = [(Algorithm::Rsa2048, "rsa2048"), (Algorithm::Ed25519, "ed25519")];
/// The From domain of the bench messages, and the key's `d=`.
const DOMAIN: &str = "bench.example";
/// Any fixed arrival time: `t=` does not change the cost.
const ARRIVAL_SECS: u64 = 1_780_000_000;

/// A message of about `size` bytes as the spool stores it (CRLF lines):
/// the headers a bulk sender sets and a plain-text body of 76-column lines.
fn message(size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Example News <news@{DOMAIN}>\r\n\
         To: Jane Doe <jane.doe@recipient.example>\r\n\
         Subject: Your weekly digest: 12 new articles\r\n\
         Date: Sun, 06 Dec 2026 02:40:00 +0000\r\n\
         Message-ID: <20261206024000.4f2a9c@{DOMAIN}>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n"
    )
    .into_bytes();
    let words = b"the quick brown fox jumps over the lazy dog while relays sign mail in bulk ";
    let mut col = 0;
    let mut i = 0;
    while m.len() + 2 < size {
        if col == 76 {
            m.extend_from_slice(b"\r\n");
            col = 0;
            continue;
        }
        m.push(words[i % words.len()]);
        i += 1;
        col += 1;
    }
    m.extend_from_slice(b"\r\n");
    m
}

/// Signers for one new key of `algorithm`, loaded from a PEM file the way
/// the server loads `[[dkim.sign]]` (the file lives in `dir`).
fn signers(algorithm: Algorithm, dir: &std::path::Path, name: &str) -> (Signers, String) {
    let generated = keys::generate(algorithm).expect("key generation");
    let path = dir.join(format!("{DOMAIN}.{name}.pem"));
    std::fs::write(&path, &generated.pem).expect("write key");
    let cfg: Dkim = toml::from_str(&format!(
        "[[sign]]\ndomain = \"{DOMAIN}\"\nselector = \"{name}\"\nkey = {:?}\n",
        path.display().to_string()
    ))
    .expect("dkim config");
    (Signers::load(&cfg).expect("load key"), generated.pem)
}

/// The DER inside a PKCS#8 PEM.
fn pkcs8_der(pem: &str) -> Vec<u8> {
    let mut reader = pem.as_bytes();
    match rustls_pemfile::read_one(&mut reader) {
        Ok(Some(rustls_pemfile::Item::Pkcs8Key(der))) => der.secret_pkcs8_der().to_vec(),
        _ => panic!("generated key is not PKCS#8 PEM"),
    }
}

fn print_machine() {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.to_string()))
        .and_then(|l| l.split_once(':').map(|(_, m)| m.trim().to_string()))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("machine: {cpus} cpus, {model}, kernel {}", kernel.trim());
}

fn bench(c: &mut Criterion) {
    print_machine();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("dkim_sign");
    // RSA-2048 signs in about a millisecond: a few seconds per case are
    // enough for a tight estimate and keep the run short on a shared box.
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4)).sample_size(40);
    let rng = SystemRandom::new();
    let digest = [0x5au8; 32];
    for (algorithm, name) in ALGORITHMS {
        let (signers, pem) = signers(algorithm, dir.path(), name);
        for (size, label) in SIZES {
            let msg = message(size);
            // A bench that signs nothing would be fast for the wrong reason.
            let signed = signers.sign(&msg, ARRIVAL_SECS).expect("the bench message is signed");
            assert!(signed.fields.starts_with(b"DKIM-Signature:"), "not a DKIM-Signature field");
            group.throughput(Throughput::Bytes(msg.len() as u64));
            group.bench_with_input(BenchmarkId::new(format!("full_{name}"), label), &msg, |b, msg| {
                b.iter(|| signers.sign(std::hint::black_box(msg), ARRIVAL_SECS).expect("signed"))
            });
        }
        group.throughput(Throughput::Elements(1));
        let der = pkcs8_der(&pem);
        match algorithm {
            Algorithm::Rsa2048 => {
                let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).expect("rsa key");
                let mut sig = vec![0u8; pair.public_modulus_len()];
                group.bench_function(BenchmarkId::new(format!("primitive_{name}"), "32B"), |b| {
                    b.iter(|| {
                        pair.sign(&RSA_PKCS1_SHA256, &rng, std::hint::black_box(&digest), &mut sig).expect("rsa sign")
                    })
                });
            }
            Algorithm::Ed25519 => {
                let pair = Ed25519KeyPair::from_pkcs8(&der).expect("ed25519 key");
                group.bench_function(BenchmarkId::new(format!("primitive_{name}"), "32B"), |b| {
                    b.iter(|| pair.sign(std::hint::black_box(&digest)))
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
