//! Milters (issue 18, item 1) against real peers on loopback: a scripted
//! libmilter filter (python3-milter) for every reply and modification,
//! rspamd's proxy worker in milter mode, and clamav-milter over clamd.
//! Each daemon is started by PID, waited for by its port, and killed by
//! PID when the test ends.

mod common;

use common::{fetch_all, free_port, mailbox_count, Options, Server, PASSWORD};
use ringmail::outbound::testdns::{TestDns, Zone};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A daemon this test started, in a process group of its own (rspamd
/// forks workers); the group (the daemon's PID) is killed on drop.
struct Daemon {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    fn start(name: &'static str, cmd: &mut Command, log: PathBuf) -> Daemon {
        let out = std::fs::File::create(&log).unwrap();
        use std::os::unix::process::CommandExt;
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e} (see tests/run.sh for the packages)"));
        Daemon { name, child: Some(child), log }
    }

    /// Wait until `addr` takes connections (or a Unix socket exists).
    fn wait_ready(&mut self, ready: impl Fn() -> bool, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !ready() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("{} exited ({status}):\n{}", self.name, std::fs::read_to_string(&self.log).unwrap_or_default());
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after {limit:?}:\n{}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the process group our own child leads.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

fn port_open(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A ringmail whose loopback clients are strangers (filtered, checked),
/// with `[filter]` set to `filter` (TOML lines after `[filter]`) and the
/// sender checks asking `dns` (or switched off when None).
fn server(filter: &str, dns: Option<&TestDns>) -> Server {
    let (relay, verify) = match dns {
        Some(d) => (format!("dns_server = \"{}\"", d.addr()), "timeout = \"2s\"".to_string()),
        None => (String::new(), "spf = false\ndkim = false\ndmarc = false\narc = false".to_string()),
    };
    Server::start_with(Options {
        permit_relay_from: r#"["10.255.255.0/24"]"#,
        relay: format!("{relay}\nroutes = {{ \"remote.test\" = \"127.0.0.1:1\" }}\nretry = [\"1h\"]"),
        extra: format!("\n[verify]\n{verify}\n\n[filter]\n{filter}\n"),
        ..Options::default()
    })
}

fn milter_entry(address: &str, extra: &str) -> String {
    let timeout = if extra.contains("timeout") { "" } else { "timeout = \"10s\"\n" };
    format!("[[filter.milter]]\naddress = \"{address}\"\n{timeout}{extra}\n")
}

/// Send `msg` from a@b.test to `to` over port 25; the reply to the data.
fn send(server: &Server, to: &[&str], msg: &[u8]) -> String {
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    c.send_mail("a@b.test", to, msg)
}

fn message(subject: &str, body: &str) -> Vec<u8> {
    format!("From: a@b.test\r\nSubject: {subject}\r\nX-Remove: me\r\n\r\n{body}").into_bytes()
}

/// The raw message as POP3 hands it out (trace fields included).
fn raw_messages(server: &Server, user: &str) -> Vec<Vec<u8>> {
    let mut p = server.pop3();
    assert!(p.login(user, PASSWORD).starts_with("+OK"));
    let (n, _) = p.stat();
    let all = (1..=n).map(|i| p.retr(i)).collect();
    p.cmd("QUIT");
    all
}

fn scripted_milter(dir: &Path) -> (Daemon, String, PathBuf) {
    let port = free_port();
    let seen = dir.join("seen.txt");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scripted_milter.py");
    let mut d = Daemon::start(
        "scripted milter",
        Command::new("/usr/bin/python3").arg(script).arg(format!("inet:{port}@127.0.0.1")).arg(&seen),
        dir.join("milter.log"),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    d.wait_ready(|| port_open(addr), Duration::from_secs(20));
    (d, format!("inet:127.0.0.1:{port}"), seen)
}

#[test]
fn scripted_milter_replies_and_modifications_are_honoured_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (_milter, address, seen) = scripted_milter(dir.path());
    let dns = TestDns::start(Zone::new().txt("b.test", "v=spf1 ip4:127.0.0.1 -all"));
    let server = server(&milter_entry(&address, ""), Some(&dns));
    let filter = format!("milter:{address}");

    // A plain message goes through unchanged.
    let plain = message("hello", "plain body\r\n");
    assert!(send(&server, &["alice@localhost"], &plain).starts_with("250 "));
    let stored = fetch_all(&server, "alice@localhost");
    assert_eq!(stored.len(), 1);
    let (auth_results, rest) = split_first_field(&stored[0]);
    assert!(auth_results.starts_with(b"Authentication-Results: mx.test;"), "{}", lossy(auth_results));
    assert_eq!(rest, plain.as_slice());
    // The milter was shown the session, and the Authentication-Results
    // field on top: the checks run before the milters.
    let shown = std::fs::read_to_string(&seen).unwrap();
    for line in ["connect [127.0.0.1] 127.0.0.1", "helo client.test", "from <a@b.test>", "rcpt <alice@localhost>"] {
        assert!(shown.contains(line), "{line:?} not in:\n{shown}");
    }
    let first_header = shown.lines().find(|l| l.starts_with("header ")).unwrap();
    assert!(first_header.starts_with("header Authentication-Results: mx.test;"), "{shown}");

    // Every change: headers added, inserted, changed and removed, the body
    // replaced, alice swapped for bob, a new envelope sender.
    let r = send(&server, &["alice@localhost"], &message("modify", "original body\r\n"));
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    assert_eq!(mailbox_count(&server, "alice@localhost"), 1, "alice was removed by the milter");
    let bob = raw_messages(&server, "bob@localhost");
    assert_eq!(bob.len(), 1);
    assert!(bob[0].starts_with(b"Return-Path: <new-sender@example.org>\r\n"), "{}", lossy(&bob[0]));
    let bob = common::strip_received(&bob[0]);
    let (top, rest) = split_first_field(&bob);
    assert_eq!(top, b"X-Inserted: top\r\n");
    let (auth_results, rest) = split_first_field(rest);
    assert!(auth_results.starts_with(b"Authentication-Results: "), "{}", lossy(auth_results));
    assert_eq!(lossy(rest), "From: a@b.test\r\nSubject: changed\r\nX-Added: yes\r\n\r\nnew body\r\nline two\r\n");

    // Refusals: nothing stored, the client told.
    let r = send(&server, &["alice@localhost"], &message("reject", "x\r\n"));
    assert_eq!(r, "550 5.7.1 Error: message content rejected");
    let r = send(&server, &["alice@localhost"], &message("tempfail", "x\r\n"));
    assert_eq!(r, "451 4.7.1 Error: message content filter says try again later");
    let r = send(&server, &["alice@localhost"], &message("replycode", "x\r\n"));
    assert_eq!(r, "554 5.7.0 Scripted refusal");
    // Discard: 250, nothing stored, logged.
    let r = send(&server, &["alice@localhost"], &message("discard", "x\r\n"));
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    let discarded = r.rsplit(' ').next().unwrap().to_string();
    assert_eq!(mailbox_count(&server, "alice@localhost"), 1);
    let log = server.log_containing(&["message discarded by milter"]);
    let line = log.lines().find(|l| l.contains("message discarded by milter")).unwrap();
    assert!(line.contains(&discarded) && line.contains("client=127.0.0.1"), "{line}");
    assert!(line.contains(&format!("milter={address}")) && line.contains("action=discard"), "{line}");

    // Quarantine: the local copy is stored and logged, the relayed share
    // the milter added is held.
    let r = send(&server, &["alice@localhost"], &message("quarantine", "x\r\n"));
    assert!(r.starts_with("250 "), "{r}");
    let queue_id = r.rsplit(' ').next().unwrap().to_string();
    assert_eq!(mailbox_count(&server, "alice@localhost"), 2);
    let log = server.log_containing(&["quarantined"]);
    let line = log.lines().find(|l| l.contains("quarantined")).unwrap();
    assert!(line.contains(&queue_id) && line.contains("reason=\"scripted quarantine\""), "{line}");
    assert!(line.contains("relayed_held=true"), "{line}");
    let list = String::from_utf8_lossy(&server.cli(&["queue", "list"]).stdout).into_owned();
    let entry = list.lines().find(|l| l.contains(&queue_id)).unwrap_or_else(|| panic!("{list}"));
    assert!(entry.contains("held"), "{list}");

    // One line per decision, with the queue id once stored; counted.
    let log = server.log();
    assert!(log.lines().any(|l| l.contains("action=reject") && l.contains("client=127.0.0.1")), "{log}");
    for (action, n) in [("accept", 2.0), ("reject", 2.0), ("tempfail", 1.0), ("discard", 1.0), ("quarantine", 1.0)] {
        let got = server.metric("ringmail_filter_actions_total", &[("filter", &filter), ("action", action)]);
        assert_eq!(got, n, "{action}");
    }
}

#[test]
fn milters_run_in_order_each_seeing_the_previous_ones_changes() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    let (_first, first, _) = scripted_milter(one.path());
    let (_second, second, seen) = scripted_milter(two.path());
    let server = server(&format!("{}{}", milter_entry(&first, ""), milter_entry(&second, "")), None);
    let r = send(&server, &["alice@localhost"], &message("modify", "original body\r\n"));
    assert!(r.starts_with("250 "), "{r}");
    // The second milter was shown the first one's envelope and header.
    let shown = std::fs::read_to_string(&seen).unwrap();
    for line in [
        "from <new-sender@example.org>",
        "rcpt <bob@localhost>",
        "header X-Inserted: top",
        "header Subject: changed",
        "header X-Added: yes",
        "eom changed",
    ] {
        assert!(shown.contains(line), "{line:?} not in:\n{shown}");
    }
    assert!(!shown.contains("rcpt <alice@localhost>") && !shown.contains("X-Remove"), "{shown}");
    assert_eq!(mailbox_count(&server, "bob@localhost"), 1);
}

#[test]
fn an_unreachable_milter_tempfails_or_is_passed_per_on_error() {
    let dead = format!("inet:127.0.0.1:{}", free_port());
    let server = server(&milter_entry(&dead, ""), None);
    let r = send(&server, &["alice@localhost"], &message("hello", "x\r\n"));
    assert_eq!(r, "451 4.7.1 Error: content filter unavailable, try again later");
    assert_eq!(mailbox_count(&server, "alice@localhost"), 0);
    let log = server.log_containing(&["milter failed"]);
    assert!(log.contains("action=error on_error=tempfail"), "{log}");

    let server = server_with(&milter_entry(&dead, "on_error = \"accept\""));
    let r = send(&server, &["alice@localhost"], &message("hello", "x\r\n"));
    assert!(r.starts_with("250 "), "{r}");
    assert_eq!(mailbox_count(&server, "alice@localhost"), 1);
    let log = server.log_containing(&["milter failed"]);
    assert!(log.contains("action=error on_error=accept"), "{log}");
    let filter = format!("milter:{dead}");
    assert_eq!(server.metric("ringmail_filter_actions_total", &[("filter", &filter), ("action", "error")]), 1.0);
}

fn server_with(filter: &str) -> Server {
    server(filter, None)
}

#[test]
fn our_own_clients_skip_the_milters_unless_outbound_is_set() {
    let dead = format!("inet:127.0.0.1:{}", free_port());
    for (outbound, want) in [(false, "250 "), (true, "451 4.7.1")] {
        let server = Server::start_with(Options {
            // Loopback is ours here (relay permitted).
            permit_relay_from: r#"["127.0.0.0/8"]"#,
            extra: format!("\n[filter]\noutbound = {outbound}\n{}", milter_entry(&dead, "")),
            ..Options::default()
        });
        let r = send(&server, &["alice@localhost"], &message("hello", "x\r\n"));
        assert!(r.starts_with(want), "outbound = {outbound}: {r}");
    }
}

/// The lines the scripted milter wrote so far.
fn seen_lines(seen: &Path) -> Vec<String> {
    std::fs::read_to_string(seen).unwrap_or_default().lines().map(str::to_string).collect()
}

#[test]
fn a_connect_stage_milter_refuses_at_rcpt_and_sees_each_step_as_it_happens() {
    let dir = tempfile::tempdir().unwrap();
    let (_milter, address, seen) = scripted_milter(dir.path());
    let server = server(&milter_entry(&address, "stage = \"connect\""), None);
    let filter = format!("milter:{address}");

    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    // Each step reached the milter before its SMTP reply came back.
    assert_eq!(seen_lines(&seen), ["connect [127.0.0.1] 127.0.0.1", "helo client.test"]);
    c.expect("MAIL FROM:<refuse-bob@b.test>", "250");
    assert_eq!(seen_lines(&seen).last().map(String::as_str), Some("from <refuse-bob@b.test>"));
    // The milter's refusal of one recipient is that RCPT's reply; the
    // transaction goes on with the others.
    assert_eq!(c.cmd("RCPT TO:<bob@localhost>"), "550 5.7.1 Scripted recipient refusal");
    c.expect("RCPT TO:<alice@localhost>", "250");
    assert_eq!(
        seen_lines(&seen),
        [
            "connect [127.0.0.1] 127.0.0.1",
            "helo client.test",
            "from <refuse-bob@b.test>",
            "rcpt <bob@localhost>",
            "rcpt <alice@localhost>"
        ]
    );
    c.expect("DATA", "354");
    c.send(&common::dot_stuff(&message("hello", "live body\r\n")));
    let r = c.cmd(".");
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    let queue_id = r.trim_start_matches("250 2.0.0 Ok: queued as ").trim().to_string();
    // A second transaction on the same milter connection: refused at the
    // end of data, as at stage "data".
    let r = c.send_mail("a@b.test", &["alice@localhost"], &message("reject", "x\r\n"));
    assert_eq!(r, "550 5.7.1 Error: message content rejected");
    // A transaction given up before DATA is aborted for the milter.
    c.expect("MAIL FROM:<a@b.test>", "250");
    c.expect("RSET", "250");
    c.expect("MAIL FROM:<a@b.test>", "250");
    c.expect("QUIT", "221");
    common::eventually(Duration::from_secs(10), || seen_lines(&seen).contains(&"close".to_string()).then_some(()));

    let lines = seen_lines(&seen);
    let steps: Vec<&str> = lines.iter().map(|l| l.split(' ').next().unwrap_or("")).collect();
    // One connection for the session: one connect, one close; the steps
    // of each transaction in SMTP order.
    assert_eq!(steps.iter().filter(|s| **s == "connect").count(), 1, "{lines:#?}");
    // (A folded header value continues on lines of its own.)
    let order: Vec<&str> = steps.iter().copied().filter(|s| s.chars().all(|c| c.is_ascii_lowercase())).collect();
    let order: Vec<&str> = order.into_iter().filter(|s| *s != "header").collect();
    assert_eq!(
        order[..12],
        ["connect", "helo", "from", "rcpt", "rcpt", "eom", "from", "rcpt", "eom", "from", "abort", "from"],
        "{lines:#?}"
    );
    assert_eq!(order.last(), Some(&"close"), "{lines:#?}");
    assert!(lines.contains(&"eom hello".to_string()), "{lines:#?}");
    // The accepted message is there, bob got nothing.
    assert_eq!(mailbox_count(&server, "alice@localhost"), 1);
    assert_eq!(mailbox_count(&server, "bob@localhost"), 0);
    // Each refusal is one log line naming the step and the client, and
    // counted under its action.
    let needles =
        ["milter decision", "step=rcpt", "client=127.0.0.1", "action=reject", "5.7.1 Scripted recipient refusal"];
    let log = server.log_containing(&needles);
    assert!(log.lines().any(|l| needles.iter().all(|n| l.contains(n))), "{log}");
    assert_eq!(server.metric("ringmail_filter_actions_total", &[("filter", &filter), ("action", "reject")]), 2.0);

    // `ringmail trace` shows what the filters decided about the stored
    // message: the fields they left, and with the log the milter's verdict.
    server.log_containing(&[&format!("queue_id={queue_id}")]);
    let log = server.log_path();
    let out = server.cli(&["trace", &queue_id, "--json", "--log", log.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let filters = json["messages"][0]["filters"].as_array().cloned().unwrap_or_default();
    let has = |source: &str, needle: &str| {
        filters.iter().any(|f| f["source"] == source && f["text"].as_str().is_some_and(|t| t.contains(needle)))
    };
    assert!(has("header", "Authentication-Results: mx.test; iprev=fail"), "{filters:#?}");
    assert!(has("log", &address) && has("log", "action=accept"), "{filters:#?}");
    let out = server.cli(&["trace", &queue_id, "--log", log.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("  filter (header): Authentication-Results: mx.test;"), "{text}");
    assert!(text.contains("  filter (log): "), "{text}");
}

#[test]
fn live_milter_round_trips_of_two_sessions_on_one_core_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let (_milter, address, _seen) = scripted_milter(dir.path());
    let server = Server::start_with(Options {
        cores: 1,
        permit_relay_from: r#"["10.255.255.0/24"]"#,
        extra: format!(
            "\n[verify]\nspf = false\ndkim = false\ndmarc = false\narc = false\n\n[filter]\n{}",
            milter_entry(&address, "stage = \"connect\"")
        ),
        ..Options::default()
    });
    // The milter holds the first HELO until the second arrives: were the
    // core's milter round trips one at a time, the second would never
    // reach it and both would time out (451).
    let mut a = server.smtp();
    let mut b = server.smtp();
    a.send(b"EHLO barrier.test\r\n");
    b.send(b"EHLO barrier.test\r\n");
    let (ra, rb) = (a.reply(), b.reply());
    assert!(ra.starts_with("250"), "{ra}");
    assert!(rb.starts_with("250"), "{rb}");
}

#[test]
fn authenticated_submissions_are_filtered_only_with_outbound() {
    use base64::Engine as _;
    let dead = format!("inet:127.0.0.1:{}", free_port());
    for (outbound, want) in [(false, "250 "), (true, "451 4.7.1")] {
        let server = Server::start_with(Options {
            // Loopback is a stranger here: only AUTH makes the client ours.
            permit_relay_from: r#"["10.255.255.0/24"]"#,
            extra: format!(
                "\n[verify]\nspf = false\ndkim = false\ndmarc = false\narc = false\n\n[filter]\noutbound = {outbound}\n{}",
                milter_entry(&dead, "")
            ),
            ..Options::default()
        });
        let mut c = common::Smtp::connect(server.submission);
        c.expect("EHLO client.test", "250");
        let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0alice@localhost\0{PASSWORD}"));
        c.expect(&format!("AUTH PLAIN {plain}"), "235");
        let r = c.send_mail("alice@localhost", &["bob@localhost"], &message("hello", "x\r\n"));
        assert!(r.starts_with(want), "outbound = {outbound}: {r}");
    }
}

#[test]
fn check_config_names_the_bad_milter_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ringmail.toml");
    std::fs::write(
        &config,
        "data_dir = \"d\"\n[[filter.milter]]\naddress = \"localhost:11332\"\n[[filter.milter]]\naddress = \"unix:/x.sock\"\nstage = \"connect\"\ntimeout = \"0s\"\n",
    )
    .unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_ringmail")).arg("check-config").arg("--config").arg(&config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("filter.milter[0].address = \"localhost:11332\": expected \"inet:ADDRESS:PORT\""), "{err}");
    assert!(!err.contains("filter.milter[1].stage"), "stage = \"connect\" is supported: {err}");
    assert!(err.contains("filter.milter[1].timeout must be more than 0"), "{err}");
}

/// rspamd 3.4 from Debian, its own config over the packaged one: the
/// proxy worker in milter mode scanning by itself on a loopback port, the
/// DNS on a test responder, the modules that need the network off. One
/// instance for every case: it takes a while to start on 2 cores.
#[test]
fn rspamd_refuses_gtube_adds_its_headers_and_its_absence_follows_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let dns = TestDns::start(Zone::new());
    let port = free_port();
    let local = dir.path().join("local");
    for sub in ["local.d", "override.d", "db", "run", "log"] {
        std::fs::create_dir_all(local.join(sub)).unwrap();
    }
    let write = |name: &str, text: String| std::fs::write(local.join(name), text).unwrap();
    write(
        "override.d/worker-proxy.inc",
        format!(
            "bind_socket = \"127.0.0.1:{port}\";\nmilter = yes;\ntimeout = 30s;\ncount = 1;\n\
             upstream \"local\" {{\n  default = yes;\n  self_scan = yes;\n}}\n"
        ),
    );
    // The other workers would bind fixed ports: off.
    for w in ["worker-normal.inc", "worker-controller.inc"] {
        write(&format!("override.d/{w}"), format!("count = -1;\nbind_socket = \"127.0.0.1:{}\";\n", free_port()));
    }
    write(
        "local.d/options.inc",
        format!(
            "dns {{ nameserver = [\"{}\"]; timeout = 1s; retransmits = 1; }}\nfilters = \"chartable,dkim,regexp\";\n",
            dns.addr()
        ),
    );
    for m in [
        "fuzzy_check",
        "rbl",
        "surbl",
        "phishing",
        "asn",
        "rspamd_update",
        "emails",
        "mx_check",
        "mid",
        "greylist",
        "ratelimit",
        "reputation",
        "neural",
        "spamassassin",
        "multimap",
        "url_redirector",
        "dcc",
        "external_services",
        "antivirus",
        "maillist",
    ] {
        write(&format!("local.d/{m}.conf"), "enabled = false;\n".into());
    }
    write(
        "local.d/milter_headers.conf",
        "use = [\"x-spamd-result\", \"x-spam-status\"];\nskip_local = false;\nskip_authenticated = false;\n".into(),
    );
    write("local.d/logging.inc", "type = \"console\";\nlevel = \"info\";\n".into());
    let var = |k: &str, v: &Path| format!("--var={k}={}", v.display());
    let mut rspamd = Daemon::start(
        "rspamd",
        Command::new("rspamd").args(["-f", "-i", "-c", "/etc/rspamd/rspamd.conf"]).args([
            var("LOCAL_CONFDIR", &local),
            var("DBDIR", &local.join("db")),
            var("RUNDIR", &local.join("run")),
            var("LOGDIR", &local.join("log")),
        ]),
        dir.path().join("rspamd.log"),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    rspamd.wait_ready(|| port_open(addr), Duration::from_secs(120));
    let address = format!("inet:127.0.0.1:{port}");
    let server = server(&milter_entry(&address, "timeout = \"60s\""), None);

    let gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
    let r = send(&server, &["alice@localhost"], &message("gtube", &format!("{gtube}\r\n")));
    let rspamd_log = || {
        let log = std::fs::read_to_string(dir.path().join("rspamd.log")).unwrap_or_default();
        log.lines().filter(|l| l.contains("milter") || l.contains("proxy")).collect::<Vec<_>>().join("\n")
    };
    assert_eq!(r, "554 5.7.1 Gtube pattern", "rspamd's own text\n{}", rspamd_log());
    assert_eq!(mailbox_count(&server, "alice@localhost"), 0);

    let clean = b"From: Ann <a@b.test>\r\nTo: Alice <alice@localhost>\r\nDate: Sun, 06 Dec 2026 12:00:00 +0000\r\n\
Message-ID: <lunch.1@b.test>\r\nSubject: lunch\r\n\r\nShall we meet at noon?\r\n";
    let r = send(&server, &["alice@localhost"], clean);
    assert!(r.starts_with("250 "), "{r}");
    let stored = fetch_all(&server, "alice@localhost");
    assert_eq!(stored.len(), 1);
    let text = lossy(&stored[0]);
    let milter_lines = server.log().lines().filter(|l| l.contains("milter")).collect::<Vec<_>>().join("\n");
    assert!(text.contains("X-Spamd-Result: default: False ["), "{text}\n{milter_lines}\n{}", rspamd_log());
    assert!(text.contains("X-Spam-Status: No, score="), "{text}");
    assert!(text.ends_with("\r\n\r\nShall we meet at noon?\r\n"), "{text}");

    // rspamd gone: 451 with on_error = "tempfail" (the default)...
    rspamd.stop();
    let r = send(&server, &["alice@localhost"], &message("lunch", "again\r\n"));
    assert!(r.starts_with("451 4.7.1"), "{r}");
    // ... accepted with on_error = "accept".
    let server = server_with(&milter_entry(&address, "on_error = \"accept\""));
    let r = send(&server, &["alice@localhost"], &message("lunch", "again\r\n"));
    assert!(r.starts_with("250 "), "{r}");
}

/// clamd with one local signature (the EICAR file's MD5, no freshclam),
/// clamav-milter in front of it: an EICAR attachment is refused, a clean
/// message passes.
#[test]
fn clamav_milter_refuses_an_eicar_attachment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("db");
    std::fs::create_dir_all(&db).unwrap();
    let eicar = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    std::fs::write(d.join("eicar.com"), eicar).unwrap();
    let sig = Command::new("sigtool").arg("--md5").arg(d.join("eicar.com")).output().expect("sigtool (clamav)");
    assert!(sig.status.success());
    std::fs::write(db.join("eicar.hdb"), &sig.stdout).unwrap();
    let sock = d.join("clamd.sock");
    std::fs::write(
        d.join("clamd.conf"),
        format!(
            "Foreground yes\nLocalSocket {}\nDatabaseDirectory {}\nLogFile {}\n",
            sock.display(),
            db.display(),
            d.join("clamd.file.log").display()
        ),
    )
    .unwrap();
    let mut clamd = Daemon::start(
        "clamd",
        Command::new("clamd").arg("-F").arg("-c").arg(d.join("clamd.conf")),
        d.join("clamd.log"),
    );
    clamd.wait_ready(|| std::os::unix::net::UnixStream::connect(&sock).is_ok(), Duration::from_secs(60));
    let port = free_port();
    std::fs::write(
        d.join("milter.conf"),
        format!(
            "Foreground yes\nMilterSocket inet:{port}@127.0.0.1\nClamdSocket unix:{}\nOnInfected Reject\nOnClean Accept\nLogFile {}\n",
            sock.display(),
            d.join("milter.file.log").display()
        ),
    )
    .unwrap();
    let mut milter = Daemon::start(
        "clamav-milter",
        Command::new("clamav-milter").arg("-c").arg(d.join("milter.conf")),
        d.join("milter.log"),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    milter.wait_ready(|| port_open(addr), Duration::from_secs(30));
    let server = server(&milter_entry(&format!("inet:127.0.0.1:{port}"), ""), None);

    // The EICAR file, base64 (ClamAV decodes MIME parts before matching).
    let encoded = "WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNULUZJTEUhJEgrSCo=";
    let attachment = format!(
        "From: a@b.test\r\nTo: alice@localhost\r\nSubject: invoice\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n\
         --b1\r\nContent-Type: application/octet-stream; name=\"eicar.com\"\r\n\
         Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"eicar.com\"\r\n\r\n\
         {encoded}\r\n--b1--\r\n"
    );
    let r = send(&server, &["alice@localhost"], attachment.as_bytes());
    assert!(r.starts_with("550 5.7.1"), "refused: {r}");
    assert_eq!(mailbox_count(&server, "alice@localhost"), 0);
    let r = send(&server, &["alice@localhost"], &message("clean", "nothing to see\r\n"));
    assert!(r.starts_with("250 "), "{r}");
    assert_eq!(mailbox_count(&server, "alice@localhost"), 1);
}

/// The first header field of `msg` (with its CRLF) and the rest.
fn split_first_field(msg: &[u8]) -> (&[u8], &[u8]) {
    let mut end = 0;
    loop {
        let eol = msg[end..].windows(2).position(|w| w == b"\r\n").map_or(msg.len(), |p| end + p + 2);
        end = eol;
        if end >= msg.len() || !matches!(msg[end], b' ' | b'\t') {
            return msg.split_at(end);
        }
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
