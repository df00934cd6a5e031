//! The web status page in a real browser: a server with `[listen] http`
//! takes a short ringmail-loadgen run whose mail it cannot relay (the
//! route's port is closed, so every message is deferred); once the run has
//! stopped and the queue is still, headless Chromium (Debian's `chromium`)
//! loads `/?token=…`, follows the redirect that turns the token into a
//! cookie, runs the page's script, and the numbers the page shows must be
//! those of `ringmail status --json`. The screenshot is left in
//! `target/test-output/web-status.png` for people to look at.

mod common;

use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const READ: &str = "read-token-0123456789abcdef";
const MESSAGES: u64 = 40;

/// Debian's chromium, or a failure that says how to get it (never a skip).
fn chromium() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("chromium not found on PATH: install Debian's package (apt-get install chromium); tests/run.sh does")
    })
}

/// The load generator built beside the server (`cargo test --workspace`
/// builds it; alone: `cargo build -p ringmail-loadgen`).
fn loadgen() -> PathBuf {
    let server = Path::new(env!("CARGO_BIN_EXE_ringmail"));
    let bin = server.with_file_name("ringmail-loadgen");
    assert!(bin.is_file(), "{} missing: build it with `cargo build -p ringmail-loadgen`", bin.display());
    bin
}

/// Runs chromium headless on `url` with `args`, bounded in time; its stdout.
fn chromium_run(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu"])
        .args(["--hide-scrollbars", "--virtual-time-budget=5000", "--window-size=1280,960"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting chromium");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `data-value` of the element with `id` in a dumped DOM.
fn value(dom: &str, id: &str) -> String {
    let at = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no element {id} in the page"));
    let tag = &dom[at..at + dom[at..].find('>').unwrap()];
    let v = tag.split_once("data-value=\"").unwrap_or_else(|| panic!("{id} has no data-value: {tag}")).1;
    v[..v.find('"').unwrap()].to_string()
}

fn number(dom: &str, id: &str) -> u64 {
    let v = value(dom, id);
    v.parse().unwrap_or_else(|_| panic!("{id} shows {v:?}, not a number (did the page load its data?)"))
}

/// An attribute of the element with `id`.
fn attr(dom: &str, id: &str, name: &str) -> String {
    let at = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no element {id} in the page"));
    let tag = &dom[at..at + dom[at..].find('>').unwrap()];
    let v = tag.split_once(&format!("{name}=\"")).unwrap_or_else(|| panic!("{id} has no {name}: {tag}")).1;
    v[..v.find('"').unwrap()].to_string()
}

fn status(server: &Server) -> Value {
    let out = server.cli(&["status", "--json"]);
    assert!(out.status.success(), "status --json: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `status` without the two figures that move by themselves: the oldest
/// message's age (the clock) and the disk's free bytes (other processes).
fn still(mut s: Value) -> Value {
    s["queue"]["oldest_age_s"] = Value::Null;
    s["spool"]["free_bytes"] = Value::Null;
    s
}

#[test]
fn status_page_in_chromium_shows_what_status_json_says() {
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let closed = free_port();
    let mut server = Server::configure(Options {
        listen: format!("http = \"{http}\"\n"),
        extra: "[http]\ntokens_file = \"tokens\"\n".into(),
        relay: format!("routes = {{ \"remote.test\" = \"127.0.0.1:{closed}\" }}\nretry = [\"1h\"]\n"),
        ..Options::default()
    });
    let tokens = server.dir.path().join("tokens");
    std::fs::write(&tokens, format!("read {READ}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
    server.spawn();

    // A short, bounded run; it has stopped when the command returns.
    let json = server.dir.path().join("loadgen.json");
    let out = Command::new(loadgen())
        .args(["smtp", "--target", &server.smtp.to_string(), "--messages", &MESSAGES.to_string()])
        .args(["--connections", "4", "--cores", "1", "--to-domains", "remote.test", "--users-per-domain", "5"])
        .args(["--timeout", "10s", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "loadgen: {}", String::from_utf8_lossy(&out.stderr));
    let run: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(run["counts"]["accepted"], MESSAGES);

    // Every message tried once and deferred for an hour, and the spool's
    // use measured (every 250 ms): nothing moves any more.
    let before = eventually(Duration::from_secs(30), || {
        let s = status(&server);
        let deferred = s["queue"]["deferred"] == MESSAGES && s["since_start"]["deferred"] == MESSAGES;
        std::thread::sleep(Duration::from_millis(600));
        (deferred && still(status(&server)) == still(s.clone())).then_some(s)
    });

    let url = format!("http://{http}/?token={READ}");
    let dom = chromium_run(&url, &["--dump-dom"]);
    let after = status(&server);
    assert_eq!(still(before), still(after.clone()), "the server changed while the page loaded");
    assert!(dom.contains("data-loaded=\"true\""), "the page did not load its data:\n{dom}");
    assert!(!dom.contains(READ), "the token must not end up in the page");

    let s = &after;
    for (id, want) in [
        ("cores", &s["cores"]),
        ("queue-total", &s["queue"]["total"]),
        ("queue-ready", &s["queue"]["ready"]),
        ("queue-deferred", &s["queue"]["deferred"]),
        ("queue-held", &s["queue"]["held"]),
        ("queue-in-flight", &s["queue"]["in_flight"]),
        ("received", &s["since_start"]["received"]),
        ("relayed", &s["since_start"]["relayed"]),
        ("delivered-local", &s["since_start"]["delivered_local"]),
        ("deferred", &s["since_start"]["deferred"]),
        ("bounced", &s["since_start"]["bounced"]),
        ("mailbox-messages", &s["mailbox_messages"]),
        ("sessions-open", &s["sessions"]["total"]),
    ] {
        assert_eq!(number(&dom, id), want.as_u64().unwrap(), "{id} on the page vs status --json");
    }
    assert_eq!(number(&dom, "received"), MESSAGES, "every accepted message counted");
    assert_eq!(value(&dom, "spool-full"), s["spool"]["full"].to_string());
    assert!(number(&dom, "spool-used") > 0);
    // The plots have data; every deferral is a recent error naming its reply.
    assert!(attr(&dom, "plot-throughput", "data-points").parse::<u64>().unwrap() >= 1, "throughput plot empty");
    assert_eq!(attr(&dom, "errors-table", "data-count"), crate_errors_shown(MESSAGES));
    assert!(dom.contains("kind-deferred"), "deferrals listed");
    // One row per core, and the site the mail waits for.
    assert_eq!(dom.matches("data-core=\"").count() as u64, s["cores"].as_u64().unwrap());
    assert!(dom.contains("data-site=\""), "a destination site row");

    let png = test_output_dir().join("web-status.png");
    let _ = std::fs::remove_file(&png);
    chromium_run(&url, &[&format!("--screenshot={}", png.display())]);
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    eprintln!("screenshot: {}", png.display());
}

/// The errors card shows every deferral up to the ring's size (50 per core).
fn crate_errors_shown(deferrals: u64) -> String {
    deferrals.min(50).to_string()
}

#[test]
fn page_and_dashboard_need_a_read_token() {
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut server = Server::configure(Options {
        listen: format!("http = \"{http}\"\n"),
        extra: "[http]\ntokens_file = \"tokens\"\n".into(),
        ..Options::default()
    });
    let tokens = server.dir.path().join("tokens");
    std::fs::write(&tokens, format!("read {READ}\ninject inject-token-0123456789abcdef\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
    server.spawn();
    let get = |path: &str, headers: &[&str]| -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
        write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    // No token: the sign-in page, no data.
    let r = get("/", &[]);
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    assert!(r.contains("id=\"sign-in\"") && !r.contains("queue-total"), "{r}");
    assert!(get("/api/v1/dashboard", &[]).starts_with("HTTP/1.1 401"));
    // A token without read scope is refused, and no cookie is set.
    let r = get("/?token=inject-token-0123456789abcdef", &[]);
    assert!(r.starts_with("HTTP/1.1 403") && !r.to_ascii_lowercase().contains("set-cookie"), "{r}");
    // The read token: a redirect that drops it from the URL and sets the cookie.
    let r = get(&format!("/?token={READ}"), &[]);
    assert!(r.starts_with("HTTP/1.1 303"), "{r}");
    let lower = r.to_ascii_lowercase();
    assert!(lower.contains("\r\nlocation: /\r\n"), "{r}");
    assert!(
        r.contains(&format!("ringmail_token={READ}; Path=/; HttpOnly; SameSite=Strict")),
        "HttpOnly, SameSite=Strict cookie: {r}"
    );
    let cookie = format!("Cookie: ringmail_token={READ}");
    let page = get("/", &[&cookie]);
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("id=\"queue-total\""), "{page}");
    assert!(page.to_ascii_lowercase().contains("content-security-policy: default-src 'self'"), "{page}");
    let doc = get("/api/v1/dashboard", &[&cookie]);
    assert!(doc.starts_with("HTTP/1.1 200"), "{doc}");
    let body: Value = serde_json::from_str(doc.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(still(body["status"].clone()), still(status(&server)), "the dashboard's status is status --json");
    // The bearer header works as for the API; the assets need nothing.
    assert!(get("/api/v1/dashboard", &[&format!("Authorization: Bearer {READ}")]).starts_with("HTTP/1.1 200"));
    let js = get("/web/app.js", &[]);
    assert!(js.starts_with("HTTP/1.1 200") && js.contains("/api/v1/dashboard"), "{js}");
}

/// Where tests leave files for people to look at: `target/test-output/`.
fn test_output_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("test-output");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
