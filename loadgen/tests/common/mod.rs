//! Helpers for black-box tests: run the real binary (sink and generator) on
//! loopback ports, with every wait bounded so a bug fails instead of hanging.

#![allow(dead_code)] // each test file uses a different subset

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ringmail-loadgen");

/// Longest any child may run before the test gives up on it.
const CHILD_LIMIT: Duration = Duration::from_secs(60);

/// A running sink on an ephemeral loopback port.
pub struct Sink {
    child: Child,
    pub addr: String,
    pub json: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sink {
    /// Starts `ringmail-loadgen sink --listen 127.0.0.1:0 ARGS --json FILE`.
    pub fn start(args: &[&str]) -> Sink {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("sink.json");
        let mut child = Command::new(BIN)
            .args(["sink", "--listen", "127.0.0.1:0", "--duration", "50s"])
            .args(args)
            .arg("--json")
            .arg(&json)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_string();
        Sink { child, addr, json, _dir: dir }
    }

    /// Waits for the sink to stop by itself (its --messages) and returns its JSON summary.
    pub fn finish(mut self) -> Value {
        let out = wait_bounded(&mut self.child);
        assert!(out.status.success(), "sink failed: {}", String::from_utf8_lossy(&out.stderr));
        read_json(&self.json)
    }

    /// Sends SIGTERM, waits, returns (stdout, JSON summary).
    pub fn terminate(mut self) -> (String, Value) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let out = wait_bounded(&mut self.child);
        assert!(out.status.success(), "sink failed: {}", String::from_utf8_lossy(&out.stderr));
        (String::from_utf8_lossy(&out.stdout).into_owned(), read_json(&self.json))
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `child` at most [`CHILD_LIMIT`], killing it (and failing) after that.
pub fn wait_bounded(child: &mut Child) -> Output {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            if let Some(mut s) = child.stdout.take() {
                s.read_to_end(&mut stdout).unwrap();
            }
            if let Some(mut s) = child.stderr.take() {
                s.read_to_end(&mut stderr).unwrap();
            }
            return Output { status, stdout, stderr };
        }
        if start.elapsed() > CHILD_LIMIT {
            let _ = child.kill();
            panic!("child did not finish within {CHILD_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the generator with `args` and returns its output.
pub fn loadgen(args: &[&str]) -> Output {
    let mut child = Command::new(BIN).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_bounded(&mut child)
}

/// Runs `smtp` against `target` with a JSON summary; asserts success.
pub fn smtp_ok(target: &str, args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("smtp.json");
    let mut all = vec!["smtp", "--target", target, "--timeout", "10s", "--json"];
    let json_s = json.to_str().unwrap().to_string();
    all.push(&json_s);
    all.extend_from_slice(args);
    let out = loadgen(&all);
    assert!(
        out.status.success(),
        "loadgen failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    read_json(&json)
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// `summary.counts[name]` as u64 (0 if absent).
pub fn count(summary: &Value, name: &str) -> u64 {
    summary["counts"][name].as_u64().unwrap_or(0)
}

/// `summary.tallies[tally][key]` as u64 (0 if absent).
pub fn tally(summary: &Value, tally: &str, key: &str) -> u64 {
    summary["tallies"][tally][key].as_u64().unwrap_or(0)
}

/// Asserts the run failed with exactly one line on stderr containing `needle`.
pub fn assert_one_line_failure(out: &Output, needle: &str) {
    assert!(!out.status.success(), "expected failure");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got {err:?}");
    assert!(lines[0].contains(needle), "{:?} does not contain {needle:?}", lines[0]);
}

/// A loopback port with nothing listening.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Where tests leave files for people to look at (screenshots):
/// `target/test-output/`, created if missing.
pub fn test_output_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("test-output");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Debian's `chromium`, or a failure that says how to install it: the
/// report tests need a real browser and are not skipped without one.
pub fn chromium() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("chromium not found on PATH: install Debian's package (apt-get install chromium); tests/run.sh does")
    })
}

/// Takes a screenshot of `url` with headless Chromium into `png`
/// (`width` × `height` pixels) and checks that a PNG was written.
pub fn screenshot(url: &str, png: &Path, width: u32, height: u32) {
    let profile = tempfile::tempdir().unwrap();
    let _ = std::fs::remove_file(png);
    let mut child = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(&mut child);
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", png.display());
}
