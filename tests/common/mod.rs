//! Shared helpers for the integration tests: start the real `ringmail`
//! binary on ephemeral loopback ports with a throwaway data dir, and talk
//! to it over raw sockets.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod pki;
pub mod tls_sink;

pub const PASSWORD: &str = "correct horse battery";

/// Users every test server has.
pub const USERS: &[&str] = &["alice@localhost", "bob@localhost", "carol@example.test"];

/// A running ringmail with its own data dir. Killed (by its PID) on drop.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub smtp: SocketAddr,
    pub pop3: SocketAddr,
    /// Submission (587-style: STARTTLS + AUTH required).
    pub submission: SocketAddr,
    /// Implicit TLS listeners (465- and 995-style).
    pub smtps: SocketAddr,
    pub pop3s: SocketAddr,
    /// GET /metrics.
    pub metrics: SocketAddr,
    child: Option<Child>,
    env: Vec<(String, String)>,
}

/// Knobs a test may turn; `extra` is appended to the config verbatim.
pub struct Options {
    pub cores: usize,
    pub permit_relay_from: &'static str,
    pub extra: String,
    /// Lines inside `[relay]` (routes, retry, ...).
    pub relay: String,
    /// Lines inside `[limits]`.
    pub limits: String,
    /// Lines inside `[auth]`.
    pub auth: String,
    pub segment_size: u64,
    /// Lines inside `[spool]`.
    pub spool: String,
    /// Extra environment for the server process.
    pub env: Vec<(String, String)>,
    /// Lines inside `[listen]` (e.g. `http = "127.0.0.1:PORT"`).
    pub listen: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            cores: 2,
            permit_relay_from: r#"["127.0.0.0/8"]"#,
            extra: String::new(),
            relay: String::new(),
            limits: String::new(),
            auth: String::new(),
            segment_size: 1 << 20,
            spool: String::new(),
            env: Vec::new(),
            listen: String::new(),
        }
    }
}

/// Wait (up to 10 s) until `child`, one of our fixture servers started
/// with its stdout piped, prints the line `ready` (it does once it
/// listens); its later output is read and dropped. Not a connect probe:
/// a connect to an unused ephemeral port can connect to itself (TCP
/// simultaneous open), and a test then talked to a sink not yet listening.
pub fn wait_until_ready(child: &mut Child) {
    let stdout = child.stdout.take().expect("a fixture server's stdout is piped");
    let (ready, said) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) if l.trim() == "ready" => {
                    let _ = ready.send(());
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    said.recv_timeout(Duration::from_secs(10)).expect("fixture server not ready within 10 s");
}

/// A loopback port nobody listens on, never the same one twice in this
/// test process: the kernel may hand a just-closed port out again, which
/// once gave a server's metrics listener the port of its own SMTP one.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Server {
        let mut s = Server::configure(opts);
        s.spawn();
        s
    }

    /// Config, users file and data dir path, but not started yet (for
    /// tests that prepare the data dir first; then `spawn`).
    pub fn configure(opts: Options) -> Server {
        let dir = tempfile::Builder::new().prefix("ringmail-test").tempdir_in(test_tmp()).unwrap();
        let smtp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let pop3: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let submission: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let smtps: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let pop3s: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = dir.path().join("ringmail.toml");
        let text = format!(
            r#"hostname = "mx.test"
data_dir = "data"
cores = {cores}
local_domains = ["localhost", "example.test"]
users_file = "users"
max_message_size = 65536

[listen]
smtp = "{smtp}"
pop3 = "{pop3}"
submission = "{submission}"
smtps = "{smtps}"
pop3s = "{pop3s}"
metrics = "{metrics}"
{listen}

[relay]
permit_relay_from = {relay}
{relay_extra}

[spool]
segment_size = {seg}
{spool}

[limits]
max_recipients = 50
{limits}

[auth]
failure_delay = "100ms"
{auth}

[runtime]
io_memory = 1048576
{extra}
"#,
            cores = opts.cores,
            relay = opts.permit_relay_from,
            seg = opts.segment_size,
            spool = opts.spool,
            extra = opts.extra,
            relay_extra = opts.relay,
            auth = opts.auth,
            listen = opts.listen,
            limits = if opts.limits.contains("smtp_idle_timeout") {
                opts.limits.clone()
            } else {
                format!("smtp_idle_timeout = \"30s\"\n{}", opts.limits)
            },
        );
        std::fs::write(&config, text).unwrap();
        for u in USERS {
            add_user(&config, u, PASSWORD);
        }
        Server { dir, config, smtp, pop3, submission, smtps, pop3s, metrics, child: None, env: opts.env }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The log once it has every one of `needles` (waiting up to 10 s):
    /// each core writes its lines in batches (`ringmail::logging`), so a
    /// line can trail the event it reports by a few milliseconds.
    pub fn log_containing(&self, needles: &[&str]) -> String {
        let wait = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if needles.iter().all(|n| log.contains(n)) || std::time::Instant::now() > wait {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start the binary and wait until it serves and every core has
    /// adopted the spool recovered behind it (so queues and mailboxes are
    /// whole).
    pub fn spawn(&mut self) {
        let recovered_before = self.log().matches(RECOVERY_COMPLETE).count();
        self.spawn_serving();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.log().matches(RECOVERY_COMPLETE).count() == recovered_before {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("ringmail exited during recovery ({status}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "recovery not complete after 60s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start the binary and wait only until it serves ("ringmail ready"):
    /// the spool may still be being recovered behind it.
    pub fn spawn_serving(&mut self) {
        assert!(self.child.is_none(), "already running");
        let starts_before = self.log().matches("ringmail ready").count();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ringmail"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RINGMAIL_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting ringmail");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log().matches("ringmail ready").count() == starts_before {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("ringmail exited during start-up ({status}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "ringmail not ready after 30s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The running server's PID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL the server (our own child, by PID) and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Send a signal to the running server (our own child, by PID).
    pub fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().expect("running").id() as i32;
        // SAFETY: kill(2) on our own child's PID.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// Wait (bounded) for the server to exit by itself; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().expect("running").try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "ringmail still running after {timeout:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Run `ringmail ARGS... --config <this server's config>`.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_ringmail"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("running the ringmail CLI")
    }

    /// One HTTP request to the metrics listener: (status line, body).
    pub fn http(&self, request_line: &str) -> (String, String) {
        let mut s = TcpStream::connect(self.metrics).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        write!(s, "{request_line}\r\nHost: test\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
        (head.lines().next().unwrap_or_default().to_string(), body.to_string())
    }

    /// The sum over cores (and any other labels matching `labels`) of a
    /// metric in a GET /metrics scrape.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let (status, body) = self.http("GET /metrics HTTP/1.1");
        assert!(status.contains("200"), "{status}");
        sum_metric(&body, name, labels)
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn smtp(&self) -> Smtp {
        Smtp::connect(self.smtp)
    }

    pub fn pop3(&self) -> Pop3 {
        Pop3::connect(self.pop3)
    }
}

/// The line logged once every core has adopted its recovered spool.
pub const RECOVERY_COMPLETE: &str = "recovery complete: every core serves its whole spool";

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("---- server log ----\n{}", self.log());
        }
    }
}

/// A TCP connection to `to` from the loopback address `from`.
pub fn socket_from(from: &str, to: std::net::SocketAddr) -> std::net::TcpStream {
    try_socket_from(from, to).unwrap_or_else(|e| panic!("connect {from} -> {to}: {e}"))
}

/// [`socket_from`], or why the connection failed (e.g. nothing listens).
pub fn try_socket_from(from: &str, to: std::net::SocketAddr) -> std::io::Result<std::net::TcpStream> {
    // std has no bind-before-connect; python would do, but libc is simpler.
    use std::os::fd::FromRawFd;
    let local: std::net::SocketAddrV4 = format!("{from}:0").parse().unwrap();
    let std::net::SocketAddr::V4(remote) = to else { panic!("ipv4 only") };
    // SAFETY: plain socket syscalls on a fresh fd we own (closed on error).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let sa = |a: std::net::SocketAddrV4| libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
            sin_zero: [0; 8],
        };
        let l = sa(local);
        let r = sa(remote);
        let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
        assert_eq!(libc::bind(fd, &l as *const _ as *const libc::sockaddr, len), 0);
        if libc::connect(fd, &r as *const _ as *const libc::sockaddr, len) != 0 {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        Ok(std::net::TcpStream::from_raw_fd(fd))
    }
}

/// Run `ringmail user ARGS --config CONFIG` with `stdin` on its standard
/// input (passwords are read from there).
pub fn user_cli(config: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringmail"))
        .arg("user")
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Sum the samples of `name` whose labels include all of `labels`.
pub fn sum_metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
                .then(|| value.parse::<f64>().unwrap())
        })
        .sum()
}

/// Where test data dirs go: under target/ (a real disk, not tmpfs), so
/// fdatasync and mmap behave as in production.
/// Runs Debian's python3 on `script` with `input` on its stdin; the caller
/// judges the exit status (tests/run.sh installs the modules the scripts
/// import).
pub fn python_stdin(script: &str, input: &[u8]) -> std::process::Output {
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

pub fn test_tmp() -> PathBuf {
    let p = Path::new(env!("CARGO_TARGET_TMPDIR")).to_path_buf();
    std::fs::create_dir_all(&p).unwrap();
    p
}

pub fn add_user(config: &Path, address: &str, password: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringmail"))
        .args(["user", "add", address, "--config"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "user add failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A raw SMTP client speaking bytes, for tests that need exact control.
pub struct Smtp {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Smtp {
    pub fn connect(addr: SocketAddr) -> Smtp {
        Smtp::from_stream(TcpStream::connect(addr).unwrap())
    }

    /// Over a connected stream (e.g. one from [`socket_from`]); reads the
    /// greeting.
    pub fn from_stream(stream: TcpStream) -> Smtp {
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut s = Smtp { stream, reader };
        let greeting = s.reply();
        assert!(greeting.starts_with("220 "), "{greeting}");
        s
    }

    /// Read one (possibly multi-line) reply, lines joined with '\n'.
    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).unwrap();
            assert!(n > 0, "connection closed while waiting for a reply (so far: {all:?})");
            all.push_str(line.trim_end_matches(['\r', '\n']));
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
            all.push('\n');
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Send a command line and return the reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Send `line`, assert the reply starts with `code`, return it.
    pub fn expect(&mut self, line: &str, code: &str) -> String {
        let r = self.cmd(line);
        assert!(r.starts_with(code), "{line:?} -> {r:?}, wanted {code}");
        r
    }

    /// A whole transaction; returns the reply to the end of DATA.
    pub fn send_mail(&mut self, from: &str, to: &[&str], body: &[u8]) -> String {
        self.expect(&format!("MAIL FROM:<{from}>"), "250");
        for t in to {
            self.expect(&format!("RCPT TO:<{t}>"), "250");
        }
        self.expect("DATA", "354");
        self.send(&dot_stuff(body));
        self.send(b".\r\n");
        self.reply()
    }

    /// True once the server has closed the connection.
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0) | Err(_))
    }
}

/// The wire form of a body: a line starting with "." gets another.
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 16);
    let mut line_start = true;
    for &b in body {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    out
}

/// A raw POP3 client.
pub struct Pop3 {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Pop3 {
    pub fn connect(addr: SocketAddr) -> Pop3 {
        Pop3::from_stream(TcpStream::connect(addr).unwrap())
    }

    /// Wrap a connected socket and read the greeting.
    pub fn from_stream(stream: TcpStream) -> Pop3 {
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut p = Pop3 { stream, reader };
        let g = p.line();
        assert!(g.starts_with("+OK"), "{g}");
        p
    }

    pub fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap();
        assert!(n > 0, "pop3 connection closed");
        line.trim_end_matches(['\r', '\n']).to_string()
    }

    pub fn cmd(&mut self, line: &str) -> String {
        self.stream.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.line()
    }

    /// Read a multi-line body up to ".", un-dot-stuffed, CRLF kept.
    pub fn multiline(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = self.reader.read_until(b'\n', &mut line).unwrap();
            assert!(n > 0, "closed inside a multi-line reply");
            if line == b".\r\n" {
                return out;
            }
            if line.starts_with(b"..") {
                line.remove(0);
            }
            out.extend_from_slice(&line);
        }
    }

    pub fn login(&mut self, user: &str, pass: &str) -> String {
        let r = self.cmd(&format!("USER {user}"));
        assert!(r.starts_with("+OK"), "{r}");
        self.cmd(&format!("PASS {pass}"))
    }

    /// (count, octets) from STAT.
    pub fn stat(&mut self) -> (usize, u64) {
        let r = self.cmd("STAT");
        let mut it = r.split_whitespace();
        assert_eq!(it.next(), Some("+OK"), "{r}");
        (it.next().unwrap().parse().unwrap(), it.next().unwrap().parse().unwrap())
    }

    pub fn retr(&mut self, n: usize) -> Vec<u8> {
        let r = self.cmd(&format!("RETR {n}"));
        assert!(r.starts_with("+OK"), "{r}");
        self.multiline()
    }

    /// UIDL listing as (number, uid).
    pub fn uidl(&mut self) -> Vec<(usize, String)> {
        let r = self.cmd("UIDL");
        assert!(r.starts_with("+OK"), "{r}");
        String::from_utf8(self.multiline())
            .unwrap()
            .lines()
            .map(|l| {
                let (n, u) = l.split_once(' ').unwrap();
                (n.parse().unwrap(), u.to_string())
            })
            .collect()
    }
}

/// Every message in `user`'s mailbox, with our one-line Received: header
/// removed (so it can be compared with what was sent).
pub fn fetch_all(server: &Server, user: &str) -> Vec<Vec<u8>> {
    let mut p = server.pop3();
    let r = p.login(user, PASSWORD);
    assert!(r.starts_with("+OK"), "{r}");
    let (n, _) = p.stat();
    let msgs = (1..=n).map(|i| strip_received(&p.retr(i))).collect();
    p.cmd("QUIT");
    msgs
}

/// `msg` without the trace fields a local delivery puts on top (POP3's
/// Return-Path and Delivered-To, then our one-line Received).
pub fn strip_received(msg: &[u8]) -> Vec<u8> {
    let mut msg = msg;
    for field in [&b"Return-Path: "[..], b"Delivered-To: "] {
        if msg.starts_with(field) {
            let eol = msg.windows(2).position(|w| w == b"\r\n").unwrap();
            msg = &msg[eol + 2..];
        }
    }
    assert!(msg.starts_with(b"Received: "), "no trace header: {:?}", String::from_utf8_lossy(msg));
    let eol = msg.windows(2).position(|w| w == b"\r\n").unwrap();
    msg[eol + 2..].to_vec()
}

/// Poll `f` until it returns Some or `timeout` passes.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "condition not met within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Message count in `user`'s mailbox. A login that meets the mailbox
/// locked (`[IN-USE]`: the retention sweep or another session holds it for
/// a moment) is tried again, for up to 5 s.
pub fn mailbox_count(server: &Server, user: &str) -> usize {
    let mut p = eventually(Duration::from_secs(5), || {
        let mut p = server.pop3();
        let r = p.login(user, PASSWORD);
        if r.starts_with("-ERR [IN-USE]") {
            return None;
        }
        assert!(r.starts_with("+OK"), "{r}");
        Some(p)
    });
    let (n, _) = p.stat();
    p.cmd("QUIT");
    n
}

/// The header section of alice's newest message as stored (below the
/// Return-Path and Delivered-To that POP3 puts on top), unfolded; waits
/// until her mailbox holds `count` messages.
pub fn newest_header(server: &Server, count: usize) -> String {
    eventually(Duration::from_secs(10), || (mailbox_count(server, "alice@localhost") >= count).then_some(()));
    let mut p = server.pop3();
    assert!(p.login("alice@localhost", PASSWORD).starts_with("+OK"));
    let (n, _) = p.stat();
    let msg = String::from_utf8_lossy(&p.retr(n)).into_owned();
    p.cmd("QUIT");
    let stored = msg
        .split_once("\r\nDelivered-To: ")
        .and_then(|(_, rest)| rest.split_once("\r\n"))
        .map_or(msg.as_str(), |(_, m)| m);
    let head = stored.split("\r\n\r\n").next().unwrap_or_default().to_string();
    head.replace("\r\n\t", " ").replace("\r\n ", " ")
}

/// Spool segment files, as `core-N/segment-M`, sorted.
pub fn segment_files(server: &Server) -> Vec<String> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(server.data_dir().join("spool")).unwrap().flatten() {
        for seg in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let name = seg.file_name().to_string_lossy().into_owned();
            if name.starts_with("segment-") && !name.ends_with(".tmp") {
                out.push(format!("{}/{name}", dir.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}

/// 30 messages of 20 KB to bob over `c`, then bob deletes them all: the
/// segments they filled die, and one holding older live records is left
/// mostly dead (compaction's prey).
pub fn bury_under_deleted_mail(server: &Server, c: &mut Smtp) {
    let filler = format!("Subject: filler\r\n\r\n{}\r\n", "f".repeat(20_000));
    for _ in 0..30 {
        assert!(c.send_mail("x@localhost", &["bob@localhost"], filler.as_bytes()).starts_with("250"));
    }
    let mut bob = server.pop3();
    assert!(bob.login("bob@localhost", PASSWORD).starts_with("+OK"));
    for i in 1..=bob.stat().0 {
        assert!(bob.cmd(&format!("DELE {i}")).starts_with("+OK"));
    }
    assert!(bob.cmd("QUIT").starts_with("+OK"));
}

/// Send `n` messages tagged `tag-i` (subject and `X-Seq` header) to `to`
/// in one session; the queue id of each 250.
pub fn send_tagged(server: &Server, tag: &str, to: &str, n: usize) -> Vec<String> {
    let mut c = server.smtp();
    c.expect("EHLO tagged.test", "250");
    (0..n)
        .map(|i| {
            let body = format!("Subject: {tag}-{i}\r\nX-Seq: {tag}-{i}\r\n\r\nbody of {tag}-{i}\r\n");
            let r = c.send_mail("sender@example.test", &[to], body.as_bytes());
            assert!(r.starts_with("250"), "{tag}-{i}: {r}");
            r.rsplit(' ').next().unwrap().to_string()
        })
        .collect()
}
