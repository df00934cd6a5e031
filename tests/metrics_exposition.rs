//! The /metrics page as Prometheus reads it: `promtool check metrics`
//! accepts it, the latency histograms are well formed and count what was
//! sent, and the process, build and certificate series are there.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A certificate valid for `days` days, made by openssl; (cert, key).
fn certificate(dir: &std::path::Path, days: u32) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-subj", "/CN=mx.test", "-days", &days.to_string(), "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl")
        .success();
    assert!(ok, "openssl req");
    (cert, key)
}

/// One sample line: name, labels (in order) and value.
fn parse(line: &str) -> (String, Vec<(String, String)>, f64) {
    let (series, value) = line.rsplit_once(' ').expect(line);
    let value = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
    let Some((name, labels)) = series.split_once('{') else { return (series.to_string(), Vec::new(), value) };
    let labels = labels
        .trim_end_matches('}')
        .split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect(line);
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect();
    (name.to_string(), labels, value)
}

/// For the histogram `name`: per label set (without `le`), its buckets in
/// page order as (le, cumulative count), and its `_count`.
fn histograms(page: &str, name: &str) -> BTreeMap<String, (Vec<(f64, f64)>, f64)> {
    let mut out: BTreeMap<String, (Vec<(f64, f64)>, f64)> = BTreeMap::new();
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let (n, labels, value) = parse(line);
        let key = |labels: &[(String, String)]| {
            labels.iter().filter(|(k, _)| k != "le").map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
        };
        if n == format!("{name}_bucket") {
            let le = &labels.iter().find(|(k, _)| k == "le").expect(line).1;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().expect(line) };
            out.entry(key(&labels)).or_default().0.push((le, value));
        } else if n == format!("{name}_count") {
            out.entry(key(&labels)).or_default().1 = value;
        }
    }
    out
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[test]
fn promtool_accepts_the_page_and_histograms_count_every_message() {
    let certs = tempfile::tempdir_in(test_tmp()).unwrap();
    let (cert, key) = certificate(certs.path(), 10);
    let server = Server::start_with(Options {
        extra: format!("[tls]\ncert = \"{}\"\nkey = \"{}\"\n", cert.display(), key.display()),
        ..Options::default()
    });
    const SENT: usize = 25;
    let mut c = server.smtp();
    c.expect("EHLO metrics.test", "250");
    for i in 0..SENT {
        let r = c.send_mail("bob@localhost", &["alice@localhost"], format!("Subject: {i}\r\n\r\nx\r\n").as_bytes());
        assert!(r.starts_with("250"), "{r}");
    }
    c.expect("QUIT", "221");
    let sent = SENT as f64;
    eventually(Duration::from_secs(10), || {
        (server.metric("ringmail_delivered_local_total", &[]) == sent).then_some(())
    });
    let (status, page) = server.http("GET /metrics HTTP/1.1");
    assert!(status.contains("200 OK"), "{status}");

    // promtool reads the page from stdin; exit 0 means no error and no lint.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; tests/run.sh installs it)");
    promtool.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}\n{}{}\n{page}",
        checked.status,
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    for name in ["ringmail_smtp_data_ack_seconds", "ringmail_relay_delivery_seconds"] {
        let hs = histograms(&page, name);
        assert_eq!(hs.len(), 2, "one series per core for {name}: {hs:?}");
        for (labels, (buckets, count)) in &hs {
            assert_eq!(buckets.first().map(|b| b.0), Some(0.0001), "{name}{{{labels}}} starts at 0.1 ms");
            assert!(buckets.iter().any(|b| b.0 == 60.0), "{name}{{{labels}}} has a 60 s bucket");
            for pair in buckets.windows(2) {
                assert!(pair[0].0 < pair[1].0, "{name}{{{labels}}}: le not increasing: {buckets:?}");
                assert!(pair[0].1 <= pair[1].1, "{name}{{{labels}}}: counts not cumulative: {buckets:?}");
            }
            assert_eq!(buckets.last(), Some(&(f64::INFINITY, *count)), "{name}{{{labels}}}: +Inf = _count");
        }
    }
    let acks: f64 = histograms(&page, "ringmail_smtp_data_ack_seconds").values().map(|h| h.1).sum();
    assert_eq!(acks, sent, "{page}");
    assert_eq!(sum_metric(&page, "ringmail_relay_delivery_seconds_count", &[]), 0.0);

    // The process series, with values that fit a running server.
    assert!(sum_metric(&page, "process_resident_memory_bytes", &[]) > 1e6, "{page}");
    assert!(sum_metric(&page, "process_open_fds", &[]) >= 10.0, "listeners and spool files: {page}");
    assert!(sum_metric(&page, "process_cpu_seconds_total", &[]) > 0.0, "{page}");
    let started = sum_metric(&page, "process_start_time_seconds", &[]);
    assert!(started > now() - 600.0 && started <= now() + 1.0, "started {started}, now {}", now());

    // Build info names this checkout's commit (or "unknown" outside git).
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".to_string(), |o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let info = format!("ringmail_build_info{{version=\"{}\",commit=\"{head}\"}} 1\n", env!("CARGO_PKG_VERSION"));
    assert!(page.contains(&info), "want {info:?} in\n{page}");

    // The expiry is the certificate's notAfter: openssl agrees to the minute.
    let expiry = sum_metric(&page, "ringmail_tls_certificate_expiry_timestamp_seconds", &[]);
    let left = (expiry - now()) as i64;
    assert!((9 * 86_400..=10 * 86_400 + 60).contains(&left), "{left} s left of a 10-day certificate");
    let checkend = |secs: i64| {
        Command::new("openssl")
            .args(["x509", "-noout", "-checkend", &secs.to_string(), "-in"])
            .arg(&cert)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(checkend(left - 60), "openssl: still valid a minute before the reported expiry");
    assert!(!checkend(left + 60), "openssl: expired a minute after the reported expiry");
}

#[test]
fn certificate_expiry_follows_the_certificate_loaded_not_the_file() {
    let dir = tempfile::tempdir_in(test_tmp()).unwrap();
    let short = dir.path().join("short");
    let long = dir.path().join("long");
    std::fs::create_dir_all(&short).unwrap();
    std::fs::create_dir_all(&long).unwrap();
    let (cert, key) = certificate(&short, 10);
    let (new_cert, new_key) = certificate(&long, 40);
    let server = Server::start_with(Options {
        extra: format!("[tls]\ncert = \"{}\"\nkey = \"{}\"\n", cert.display(), key.display()),
        ..Options::default()
    });
    let days_left = || (server.metric("ringmail_tls_certificate_expiry_timestamp_seconds", &[]) - now()) / 86_400.0;
    let before = days_left();
    assert!((9.9..=10.01).contains(&before), "{before} days");

    // Renewed on disk: the server still serves the old one until SIGHUP.
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    let unchanged = days_left();
    assert!((9.9..=10.01).contains(&unchanged), "{unchanged} days before the reload");

    server.signal(libc::SIGHUP);
    let log = server.log_containing(&["SIGHUP: certificate reloaded"]);
    assert!(log.contains("SIGHUP: certificate reloaded"), "{log}");
    let after = days_left();
    assert!((39.9..=40.01).contains(&after), "{after} days after the reload");
}
