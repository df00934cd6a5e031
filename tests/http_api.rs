//! The HTTP admin and injection API (`[listen] http`), black-box: a real
//! server on loopback, driven with curl (and raw sockets where curl would
//! be too polite: a stalled head, a body announced and never sent). Each
//! answer is checked against what the CLI's `--json` says, and injected
//! mail is read back over POP3.

mod common;
#[path = "common/sink.rs"]
mod sink;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const READ: &str = "read-token-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789abcdef";
const INJECT: &str = "inject-token-0123456789abcdef";

/// A server with the API on its own port, a tokens file with one token of
/// each scope, and a 2 s request deadline.
struct Api {
    server: Server,
    addr: SocketAddr,
}

fn start(opts: Options) -> Api {
    let (server, addr) = configure(opts);
    let mut api = Api { server, addr };
    api.server.spawn();
    api
}

fn configure(opts: Options) -> (Server, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let opts = Options {
        listen: format!("http = \"{addr}\"\n{}", opts.listen),
        extra: format!("[http]\ntokens_file = \"tokens\"\nrequest_timeout = \"2s\"\n{}", opts.extra),
        ..opts
    };
    let server = Server::configure(opts);
    write_tokens(&server, &format!("# scope token\nread {READ}\nadmin {ADMIN}\n\ninject {INJECT}\n"), 0o600);
    (server, addr)
}

fn write_tokens(server: &Server, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let path = server.dir.path().join("tokens");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// curl `path` with `token` (None: no Authorization) and more args:
    /// (status, body).
    fn curl(&self, token: Option<&str>, path: &str, args: &[&str]) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-S", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"]);
        if let Some(t) = token {
            cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        let out = cmd.args(args).arg(self.url(path)).output().expect("running curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let (status, body) = self.curl(Some(token), path, &[]);
        (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}")))
    }

    fn post(&self, token: &str, path: &str, json: &str) -> (u16, Value) {
        let (status, body) = self.curl(
            Some(token),
            path,
            &["-X", "POST", "-H", "Content-Type: application/json", "--data-binary", json],
        );
        (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}")))
    }

    /// The CLI's answer to `args`, parsed.
    fn cli_json(&self, args: &[&str]) -> Value {
        let out = self.server.cli(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Inject and return the queue id of each recipient.
    fn inject(&self, json: &str) -> Vec<String> {
        let (status, reply) = self.post(INJECT, "/api/v1/inject", json);
        assert_eq!(status, 200, "{reply}");
        reply["recipients"].as_array().unwrap().iter().map(|r| r["queue_id"].as_str().unwrap().to_string()).collect()
    }
}

/// One raw request over a socket; what came back before the server closed.
fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn with_routes_to_nowhere() -> Options {
    let closed = free_port(); // nobody listens: every attempt is deferred
    Options {
        relay: format!("routes = {{ \"remote.test\" = \"127.0.0.1:{closed}\" }}\nretry = [\"1h\"]\n"),
        ..Options::default()
    }
}

/// Wait until `id`'s share has been tried once (so it is deferred).
fn tried(api: &Api, id: &str) {
    eventually(Duration::from_secs(15), || {
        let list = api.cli_json(&["queue", "list", "--json"]);
        let entry = list["messages"].as_array().unwrap().iter().find(|m| m["queue_id"] == id)?.clone();
        (entry["attempts"].as_u64() >= Some(1)).then_some(())
    });
}

#[test]
fn status_queue_and_trace_answer_what_the_cli_json_answers() {
    let api = start(with_routes_to_nowhere());
    let id = api.inject(
        r#"{"envelope_sender": "bob@localhost", "recipients": ["far@remote.test"], "content": {"raw": "Subject: queued\n\nbody\n"}}"#,
    )[0]
    .clone();
    tried(&api, &id);

    let (status, doc) = api.get(READ, "/api/v1/status");
    assert_eq!(status, 200, "{doc}");
    let cli = api.cli_json(&["status", "--json"]);
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&doc), keys(&cli), "the same document as `status --json`");
    assert_eq!(doc["cores"], 2);
    assert_eq!(doc["queue"]["deferred"], 1, "{doc}");

    let (status, list) = api.get(READ, "/api/v1/queue?domain=remote.test&state=deferred&limit=5");
    assert_eq!(status, 200, "{list}");
    let cli =
        api.cli_json(&["queue", "list", "--json", "--domain", "remote.test", "--state", "deferred", "--limit", "5"]);
    assert_eq!((list["count"].as_u64(), list["matched"].as_u64()), (Some(1), Some(1)), "{list}");
    let (ours, theirs) = (&list["messages"][0], &cli["messages"][0]);
    assert_eq!(keys(ours), keys(theirs));
    for field in ["queue_id", "sender", "domain", "state", "arrived_ms", "attempts", "next_attempt_ms", "recipients"] {
        assert_eq!(ours[field], theirs[field], "{field}: {list} vs {cli}");
    }
    assert_eq!(ours["queue_id"], id.as_str());
    let (status, none) = api.get(READ, "/api/v1/queue?state=held");
    assert_eq!((status, none["count"].as_u64()), (200, Some(0)), "{none}");
    let (status, bad) = api.get(READ, "/api/v1/queue?state=lost");
    assert_eq!(status, 400, "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("unknown state \"lost\""), "{bad}");

    let (status, trace) = api.get(READ, &format!("/api/v1/trace/{id}"));
    assert_eq!(status, 200, "{trace}");
    assert_eq!(trace, api.cli_json(&["trace", &id, "--json"]), "the same document as `trace --json`");
    let (status, missing) = api.get(READ, "/api/v1/trace/0000000000000001");
    assert_eq!(status, 404, "{missing}");
}

#[test]
fn queue_actions_need_admin_scope_and_act_on_every_core() {
    let api = start(with_routes_to_nowhere());
    let id = api.inject(
        r#"{"envelope_sender": "", "recipients": ["a@remote.test", "b@remote.test"], "content": {"raw": "Subject: q\n\nq\n"}}"#,
    )[0]
    .clone();
    tried(&api, &id);
    let hold = format!("/api/v1/queue/{id}/hold");

    let (status, refused) = api.post(READ, &hold, "");
    assert_eq!(status, 403, "a read token cannot act: {refused}");
    let (status, refused) = api.post(INJECT, &hold, "");
    assert_eq!(status, 403, "an inject token cannot act: {refused}");

    let (status, done) = api.post(ADMIN, &hold, "");
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (done["action"].as_str(), done["queue_id"].as_str(), done["shares"].as_u64()),
        (Some("hold"), Some(id.as_str()), Some(1))
    );
    let (_, held) = api.get(ADMIN, "/api/v1/queue?state=held");
    assert_eq!(held["messages"][0]["queue_id"], id.as_str(), "admin may read too: {held}");

    let (status, done) = api.post(ADMIN, &format!("/api/v1/queue/{id}/release"), "");
    assert_eq!((status, done["shares"].as_u64()), (200, Some(1)), "{done}");
    let (status, done) = api.post(ADMIN, "/api/v1/queue/flush", "");
    assert_eq!(status, 200, "{done}");
    assert!(done["shares"].is_u64(), "{done}");
    let (status, done) = api.post(ADMIN, &format!("/api/v1/queue/{id}/delete"), "");
    assert_eq!((status, done["shares"].as_u64()), (200, Some(1)), "{done}");
    let (status, gone) = api.post(ADMIN, &format!("/api/v1/queue/{id}/delete"), "");
    assert_eq!(status, 404, "{gone}");
    let (status, bad) = api.post(ADMIN, "/api/v1/queue/not-an-id/hold", "");
    assert_eq!(status, 400, "{bad}");
    let (status, _) = api.curl(Some(ADMIN), "/api/v1/queue/flush", &[]);
    assert_eq!(status, 405, "GET on a POST resource");
}

#[test]
fn missing_or_unknown_tokens_get_401_and_only_the_client_and_reason_are_logged() {
    let api = start(Options::default());
    let (status, body) = api.curl(None, "/api/v1/status", &[]);
    assert_eq!(status, 401, "{body}");
    let (status, body) = api.curl(Some("guessed-token-0123456789abcdef"), "/api/v1/status", &[]);
    assert_eq!(status, 401, "{body}");
    let (status, body) = api.curl(None, "/api/v1/status", &["-H", &format!("Authorization: Basic {READ}")]);
    assert_eq!(status, 401, "{body}");
    let (status, body) = api.curl(Some(INJECT), "/api/v1/status", &[]);
    assert_eq!(status, 403, "an inject token reads nothing: {body}");
    let (status, body) = api.post(ADMIN, "/api/v1/inject", "{}");
    assert_eq!(status, 403, "only inject tokens inject: {body}");
    let log = api.server.log_containing(&["reason=\"unknown token\"", "reason=\"token lacks the scope\""]);
    assert!(log.contains("WARN refused core=") && log.contains("client=127.0.0.1"), "{log}");
    assert!(log.contains("reason=\"no bearer token\""), "{log}");
    assert!(
        !log.contains("guessed-token") && !log.contains(READ) && !log.contains(INJECT),
        "a token in the log:\n{log}"
    );
    let (status, _) = api.curl(Some(READ), "/api/v1/nothing", &[]);
    assert_eq!(status, 404);
}

#[test]
fn bad_inject_bodies_are_refused_with_the_reason() {
    let api = start(Options::default());
    // 413 before the body is read: the head alone is answered.
    let head = format!(
        "POST /api/v1/inject HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {INJECT}\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\n\r\n"
    );
    let answer = raw(api.addr, head.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Chunked, no length announced: cut once past the limit.
    let big = format!(
        r#"{{"envelope_sender": "", "recipients": ["alice@localhost"], "content": {{"raw": "{}"}}}}"#,
        "x".repeat(300_000)
    );
    let file = api.server.dir.path().join("big.json");
    std::fs::write(&file, &big).unwrap();
    let data = format!("@{}", file.display());
    let (status, body) =
        api.curl(Some(INJECT), "/api/v1/inject", &["-H", "Transfer-Encoding: chunked", "--data-binary", &data]);
    assert_eq!(status, 413, "{body}");

    let (status, body) =
        api.post(INJECT, "/api/v1/inject", r#"{"envelope_sender": "", "recipients": ["alice@localhost"]}"#);
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("missing field `content`"), "{body}");
    let (status, body) = api.post(
        INJECT,
        "/api/v1/inject",
        r#"{"envelope_sender": "", "recipients": ["alice@localhost"], "content": {"raw": 5}}"#,
    );
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("invalid type: integer `5`"), "{body}");
    let (status, body) = api.post(INJECT, "/api/v1/inject", "{not json");
    assert_eq!(status, 400, "{body}");
    let (status, body) = api.post(
        INJECT,
        "/api/v1/inject",
        r#"{"envelope_sender": "", "recipients": ["alice@localhost", "nobody"], "content": {"raw": "Subject: x\n\nx\n"}}"#,
    );
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().starts_with("recipients[1].email: "), "{body}");

    // The test server allows 50 recipients (limits.max_recipients).
    let many: Vec<String> = (0..51).map(|i| format!("\"u{i}@remote.test\"")).collect();
    let json = format!(
        r#"{{"envelope_sender": "", "recipients": [{}], "content": {{"raw": "Subject: x\n\nx\n"}}}}"#,
        many.join(",")
    );
    let (status, body) = api.post(INJECT, "/api/v1/inject", &json);
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("51 recipients, at most 50"), "{body}");
    assert_eq!(mailbox_count(&api.server, "alice@localhost"), 0, "nothing refused was stored");

    // A refused recipient does not hold up the others.
    let (status, body) = api.post(
        INJECT,
        "/api/v1/inject",
        r#"{"envelope_sender": "", "recipients": ["alice@localhost", "ghost@localhost"], "content": {"raw": "Subject: x\n\nx\n"}}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["success_count"].as_u64(), body["fail_count"].as_u64()), (Some(1), Some(1)), "{body}");
    assert_eq!(body["recipients"][1]["error"], "no such user here", "{body}");
    assert!(body["recipients"][1]["queue_id"].is_null(), "{body}");
}

#[test]
fn a_stalled_request_is_answered_408_and_closed_and_no_panic_on_garbage() {
    let api = start(Options::default());
    let started = std::time::Instant::now();
    let answer = raw(
        api.addr,
        format!("GET /api/v1/status HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {READ}\r\nX-Ha").as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(15), "cut at the 2 s deadline, not by the test's timeout");
    // Half a body: the same.
    let answer = raw(
        api.addr,
        format!("POST /api/v1/inject HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {INJECT}\r\nContent-Length: 100\r\n\r\n{{\"env").as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    for junk in [
        &b"\x00\xff\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /api/v1/status HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
    ] {
        let answer = raw(api.addr, junk);
        let code: u16 = answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        assert!(answer.starts_with("HTTP/1.1 ") && (400..600).contains(&code), "{answer:?}");
    }
    let (status, _) = api.curl(Some(READ), "/api/v1/status", &[]);
    assert_eq!(status, 200, "still serving");
    let log = api.server.log();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn head_metrics_works_on_both_listeners_without_a_token() {
    let api = start(Options::default());
    for addr in [api.addr, api.server.metrics] {
        let answer = raw(addr, b"HEAD /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let (head, body) = answer.split_once("\r\n\r\n").expect("a response");
        assert!(head.starts_with("HTTP/1.1 200"), "{addr}: {head}");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("a Content-Length");
        assert!(length > 1000, "the length of GET's page: {head}");
        assert!(body.is_empty(), "{body:?}");
    }
    let (status, page) = api.curl(None, "/metrics", &[]);
    assert_eq!(status, 200);
    assert!(page.contains("ringmail_spool_free_bytes"), "{page}");
    // The metrics listener serves /metrics only.
    let (status, _) = api.server.http("GET /api/v1/status HTTP/1.1");
    assert!(status.contains("404"), "{status}");
}

#[test]
fn check_config_refuses_a_tokens_file_others_may_read_naming_it() {
    let (server, _) = configure(Options::default());
    write_tokens(&server, &format!("read {READ}\n"), 0o640);
    let out = server.cli(&["check-config"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{err}");
    let path = server.dir.path().join("tokens");
    assert!(err.contains(&format!("{}: readable by group or others (mode 0640)", path.display())), "{err}");
    write_tokens(&server, "read short\n", 0o600);
    let out = server.cli(&["check-config"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && err.contains(&format!("{}:1: the token must be", path.display())), "{err}");
    write_tokens(&server, &format!("read {READ}\n"), 0o600);
    let out = server.cli(&["check-config"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn sighup_reloads_the_tokens_file() {
    let api = start(Options::default());
    let newer = "newer-token-0123456789abcdef";
    assert_eq!(api.curl(Some(newer), "/api/v1/status", &[]).0, 401);
    write_tokens(&api.server, &format!("read {newer}\n"), 0o600);
    api.server.signal(libc::SIGHUP);
    api.server.log_containing(&["SIGHUP: HTTP API tokens reloaded"]);
    assert_eq!(api.curl(Some(newer), "/api/v1/status", &[]).0, 200);
    assert_eq!(api.curl(Some(READ), "/api/v1/status", &[]).0, 401, "the old token is gone");
}

/// `python3 -m email` is not a thing: parse with the standard library and
/// print what the test checks (any defect fails).
fn mime_summary(message: &[u8]) -> String {
    let script = r#"
import email, sys
from email import policy
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.default)
for part in m.walk():
    assert not part.defects, part.defects
print("subject:", m["Subject"])
print("to:", m["To"])
print("from:", m["From"])
print("type:", m.get_content_type())
for part in m.walk():
    if part.get_content_maintype() == "text":
        print(part.get_content_type(), repr(part.get_content()))
"#;
    let out = python_stdin(script, message);
    assert!(
        out.status.success(),
        "not valid MIME: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(message)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn injected_raw_and_template_mail_arrives_with_substitutions_and_valid_mime() {
    let api = start(Options::default());
    let raw_ids = api.inject(
        r#"{"envelope_sender": "shop@example.org", "recipients": ["alice@localhost"],
            "content": {"raw": "From: shop@example.org\nTo: alice@localhost\nSubject: raw one\n\nline one\nline two\n"}}"#,
    );
    assert_eq!(raw_ids.len(), 1);
    let ids = api.inject(
        r#"{"envelope_sender": "shop@example.org",
            "recipients": [{"email": "alice@localhost", "substitutions": {"name": "Alice", "n": 3}},
                           {"email": "bob@localhost", "substitutions": {"name": "Bob", "n": 7}}],
            "content": {"from": "Shop <shop@example.org>", "subject": "Hello {{name}}",
                        "text": "Dear {{name}}, you have {{n}} items.", "html": "<p>Dear <b>{{name}}</b></p>",
                        "headers": {"X-Campaign": "spring-{{n}}"}}}"#,
    );
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1], "one message per recipient when substitutions differ");

    let alice = fetch_all(&api.server, "alice@localhost");
    assert_eq!(alice.len(), 2);
    let raw = alice.iter().find(|m| m.windows(7).any(|w| w == b"raw one")).expect("the raw message");
    let text = String::from_utf8_lossy(raw);
    assert!(
        text.contains("Subject: raw one\r\nMessage-ID: <") || text.contains("Message-ID: <"),
        "submission adds a Message-ID: {text}"
    );
    assert!(text.ends_with("\r\n\r\nline one\r\nline two\r\n"), "stored with CRLF as sent: {text:?}");
    let templated = alice.iter().find(|m| !m.windows(7).any(|w| w == b"raw one")).unwrap();
    let summary = mime_summary(templated);
    assert!(summary.contains("subject: Hello Alice"), "{summary}");
    assert!(summary.contains("to: alice@localhost"), "{summary}");
    assert!(summary.contains("from: Shop <shop@example.org>"), "{summary}");
    assert!(summary.contains("type: multipart/alternative"), "{summary}");
    assert!(summary.contains("text/plain 'Dear Alice, you have 3 items."), "{summary}");
    assert!(summary.contains("text/html '<p>Dear <b>Alice</b></p>"), "{summary}");
    assert!(String::from_utf8_lossy(templated).contains("X-Campaign: spring-3\r\n"));

    let bob = fetch_all(&api.server, "bob@localhost");
    assert_eq!(bob.len(), 1);
    let summary = mime_summary(&bob[0]);
    assert!(summary.contains("subject: Hello Bob") && summary.contains("Dear Bob, you have 7 items."), "{summary}");
    assert!(!summary.contains("Alice"), "{summary}");
    // The log names the queue ids the reply gave.
    api.server.log_containing(&[&format!("queue_id={}", ids[1])]);
}

#[test]
fn injected_mail_relays_like_an_authenticated_submission() {
    let sink = sink::Sink::start("127.0.0.1", 0, sink::Script::default());
    let api = start(Options {
        permit_relay_from: "[]", // the API is authenticated by its token, not the address
        relay: format!("routes = {{ \"remote.test\" = \"{}\" }}\n", sink.addr),
        ..Options::default()
    });
    let ids = api.inject(
        r#"{"envelope_sender": "news@example.org", "recipients": ["far@remote.test"],
            "content": {"from": "news@example.org", "subject": "relayed", "text": "hello over there"}}"#,
    );
    eventually(Duration::from_secs(20), || (sink.count() == 1).then_some(()));
    let got = sink.received();
    let text = String::from_utf8_lossy(&got[0].data);
    assert!(text.contains("Subject: relayed"), "{text}");
    assert!(text.contains(&format!("id {}", ids[0])), "our Received field names the queue id: {text}");
    assert_eq!((got[0].from.as_str(), got[0].to.clone()), ("news@example.org", vec!["far@remote.test".to_string()]));
}

#[test]
fn an_injected_message_survives_kill_9_right_after_the_reply() {
    let mut api = start(Options::default());
    let ids = api.inject(
        r#"{"envelope_sender": "", "recipients": ["carol@example.test"], "content": {"raw": "Subject: durable\n\nkept\n"}}"#,
    );
    // No pause: the reply came after the sync, so the message is on disk.
    api.server.kill9();
    api.server.spawn();
    let msgs = fetch_all(&api.server, "carol@example.test");
    assert_eq!(msgs.len(), 1);
    assert!(String::from_utf8_lossy(&msgs[0]).contains("Subject: durable"), "{:?}", String::from_utf8_lossy(&msgs[0]));
    let trace = api.cli_json(&["trace", &ids[0], "--json"]);
    assert!(trace.to_string().contains(&ids[0]), "{trace}");
}

#[test]
fn https_serves_the_api_with_the_tls_certificate() {
    let pki = common::pki::Pki::new();
    let (cert, key) = pki.issue("mx.test");
    let (server, addr) = configure(Options {
        extra: format!("tls = true\n\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n", cert.display(), key.display()),
        ..Options::default()
    });
    let mut api = Api { server, addr };
    api.server.spawn();
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "20", "--cacert"])
        .arg(pki.ca_file())
        .args([
            "--resolve",
            &format!("mx.test:{}:127.0.0.1", addr.port()),
            "-H",
            &format!("Authorization: Bearer {READ}"),
        ])
        .arg(format!("https://mx.test:{}/api/v1/status", addr.port()))
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}{body}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["cores"], 2);
    // Plain HTTP on the HTTPS port gets no answer.
    let (status, _) = api.curl(Some(READ), "/api/v1/status", &[]);
    assert_eq!(status, 0);
}
