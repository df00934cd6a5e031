//! A scriptable SMTP server standing in for remote MX hosts in relay
//! tests: accepts, refuses, defers, drops mid-DATA, or stalls, and keeps
//! what it received (exact bytes) and how many connections it had at once.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One message as the sink received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    /// Un-dot-stuffed, CRLF line ends, without the final dot.
    pub data: Vec<u8>,
    /// Came in BDAT chunks, not after DATA.
    pub bdat: bool,
    /// The address the connection came from (the relay's source address).
    pub peer: std::net::IpAddr,
    /// The name the client gave in EHLO/HELO on this connection.
    pub ehlo: String,
    /// When MAIL FROM of this transaction was read.
    pub mail_at: Instant,
    /// The MAIL FROM and accepted RCPT TO command lines, as sent
    /// (parameters included).
    pub mail_line: String,
    pub rcpt_lines: Vec<String>,
}

/// How the sink answers. `n` counts DATA ends seen so far (0-based).
pub struct Script {
    pub rcpt: Box<dyn Fn(&str) -> String + Send + Sync>,
    pub data_end: Box<dyn Fn(usize) -> String + Send + Sync>,
    /// Close the socket after reading part of the body.
    pub drop_in_data: bool,
    /// Wait before answering the end of DATA.
    pub delay: Duration,
    /// Offer CHUNKING and take BDAT (RFC 3030).
    pub chunking: bool,
    /// Further EHLO keywords offered (e.g. `["SMTPUTF8"]`); the sink does
    /// nothing more for them than accept their MAIL parameters.
    pub extensions: &'static [&'static str],
    /// When given, no end of data is answered before the test sets it
    /// (mail queues up behind the first message meanwhile).
    pub hold: Option<Arc<AtomicBool>>,
    /// Before answering an end of data, wait up to 2 s for the client's
    /// next command: a client that pipelines sends it without that answer
    /// (counted in `Sink::pipelined`); one that does not, never does.
    pub await_next: bool,
}

/// A `Script::data_end` that answers `reply` to the DATA end number `at`
/// (0-based) and 250 to every other one.
pub fn once_at(at: usize, reply: &'static str) -> Box<dyn Fn(usize) -> String + Send + Sync> {
    Box::new(move |n| if n == at { reply.to_string() } else { "250 2.0.0 Ok: queued".to_string() })
}

impl Default for Script {
    fn default() -> Script {
        Script {
            rcpt: Box::new(|_| "250 2.1.5 Ok".into()),
            data_end: Box::new(|_| "250 2.0.0 Ok: queued".into()),
            drop_in_data: false,
            delay: Duration::ZERO,
            chunking: false,
            extensions: &[],
            hold: None,
            await_next: false,
        }
    }
}

pub struct Sink {
    pub addr: SocketAddr,
    /// What was accepted (2xx at the end of the data).
    pub messages: Arc<Mutex<Vec<Received>>>,
    /// Every message whose data came in, whatever the answer (a deferred
    /// first attempt included), in order.
    pub attempts: Arc<Mutex<Vec<Received>>>,
    pub connections: Arc<AtomicUsize>,
    pub max_concurrent: Arc<AtomicUsize>,
    /// Connections open now.
    pub active: Arc<AtomicUsize>,
    /// Ends of data (the dot, or a `BDAT LAST` chunk) with the client's
    /// next command already read behind them before they were answered:
    /// the client pipelined the next transaction (RFC 2920 §3.1). See
    /// `Script::await_next`.
    pub pipelined: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Sink {
    /// Listen on `ip:port` (port 0 = any).
    pub fn start(ip: &str, port: u16, script: Script) -> Sink {
        let listener = TcpListener::bind((ip, port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let max_concurrent = Arc::new(AtomicUsize::new(0));
        let active = Arc::new(AtomicUsize::new(0));
        let ends = Arc::new(AtomicUsize::new(0));
        let pipelined = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let script = Arc::new(script);
        let (m, c, mc, st) =
            ((messages.clone(), attempts.clone()), connections.clone(), max_concurrent.clone(), stop.clone());
        let act = active.clone();
        let behind = pipelined.clone();
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        c.fetch_add(1, Ordering::SeqCst);
                        let now = act.fetch_add(1, Ordering::SeqCst) + 1;
                        mc.fetch_max(now, Ordering::SeqCst);
                        let (m, script, active, ends) = (m.clone(), script.clone(), act.clone(), ends.clone());
                        let behind = behind.clone();
                        std::thread::spawn(move || {
                            let mut open = Open { active, counted: true };
                            let _ = serve(s, &script, &m, (&ends, &behind), &mut open);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Sink { addr, messages, attempts, connections, max_concurrent, active, pipelined, stop }
    }

    pub fn received(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.messages.lock().unwrap().len()
    }

    /// Every message whose data came in, whatever the answer.
    pub fn tried(&self) -> Vec<Received> {
        self.attempts.lock().unwrap().clone()
    }

    pub fn attempt_count(&self) -> usize {
        self.attempts.lock().unwrap().len()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

type Kept = (Arc<Mutex<Vec<Received>>>, Arc<Mutex<Vec<Received>>>);

/// A connection counted in `Sink::active` until it ends, or until its
/// QUIT is read: the client may open another one as soon as the 221
/// arrives, and this thread may only get to run again after that.
struct Open {
    active: Arc<AtomicUsize>,
    counted: bool,
}

impl Open {
    fn close(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.close();
    }
}

/// `ends` counts ends of data; `behind` those with the next command
/// already read behind them (see `Sink::pipelined`).
fn serve(
    s: TcpStream,
    script: &Script,
    (out, all): &Kept,
    (ends, behind): (&AtomicUsize, &AtomicUsize),
    open: &mut Open,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let peer = s.peer_addr()?.ip();
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    w.write_all(b"220 sink.test ESMTP test sink\r\n")?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let (mut mail_line, mut rcpt_lines) = (String::new(), Vec::new());
    let (mut ehlo, mut mail_at) = (String::new(), Instant::now());
    let mut chunks = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            ehlo = cmd.get(5..).unwrap_or("").trim().to_string();
        }
        let reply = if upper.starts_with("EHLO") {
            let chunking = if script.chunking { "250-CHUNKING\r\n" } else { "" };
            let extensions: String = script.extensions.iter().map(|e| format!("250-{e}\r\n")).collect();
            format!("250-sink.test\r\n250-PIPELINING\r\n{chunking}{extensions}250-8BITMIME\r\n250 SIZE 100000000")
        } else if upper.starts_with("BDAT ") && script.chunking {
            let mut args = upper[5..].split_whitespace();
            let size: usize = args.next().and_then(|n| n.parse().ok()).expect("BDAT size");
            let last = args.next() == Some("LAST");
            let mut chunk = vec![0; size];
            r.read_exact(&mut chunk)?;
            if last && next_already_sent(&mut r, script.await_next) {
                behind.fetch_add(1, Ordering::SeqCst);
            }
            chunks.extend_from_slice(&chunk);
            if !last {
                "250 2.0.0 chunk received".into()
            } else if to.is_empty() {
                chunks.clear();
                "554 5.5.1 no valid recipients".into()
            } else {
                script.wait();
                let n = ends.fetch_add(1, Ordering::SeqCst);
                let reply = (script.data_end)(n);
                let data = std::mem::take(&mut chunks);
                let got = Received {
                    from: from.clone(),
                    to: to.clone(),
                    data,
                    bdat: true,
                    peer,
                    ehlo: ehlo.clone(),
                    mail_at,
                    mail_line: mail_line.clone(),
                    rcpt_lines: rcpt_lines.clone(),
                };
                all.lock().unwrap().push(got.clone());
                if reply.starts_with('2') {
                    out.lock().unwrap().push(got);
                }
                reply
            }
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            "250 Ok".into()
        } else if upper.starts_with("MAIL FROM:") {
            from = addr_of(&cmd[10..]);
            mail_at = Instant::now();
            mail_line = cmd.clone();
            rcpt_lines.clear();
            to.clear();
            chunks.clear();
            "250 2.1.0 Ok".into()
        } else if upper.starts_with("RCPT TO:") {
            let a = addr_of(&cmd[8..]);
            let reply = (script.rcpt)(&a);
            if reply.starts_with('2') {
                to.push(a);
                rcpt_lines.push(cmd.clone());
            }
            reply
        } else if upper == "DATA" {
            if to.is_empty() {
                "554 5.5.1 no valid recipients".into()
            } else {
                w.write_all(b"354 go ahead\r\n")?;
                let mut data = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if r.read_until(b'\n', &mut l)? == 0 {
                        return Ok(());
                    }
                    if l == b".\r\n" {
                        if next_already_sent(&mut r, script.await_next) {
                            behind.fetch_add(1, Ordering::SeqCst);
                        }
                        break;
                    }
                    if l.starts_with(b"..") {
                        l.remove(0);
                    }
                    data.extend_from_slice(&l);
                    if script.drop_in_data && data.len() > 10 {
                        return Ok(()); // vanish mid-DATA
                    }
                }
                script.wait();
                let n = ends.fetch_add(1, Ordering::SeqCst);
                let reply = (script.data_end)(n);
                let got = Received {
                    from: from.clone(),
                    to: to.clone(),
                    data,
                    bdat: false,
                    peer,
                    ehlo: ehlo.clone(),
                    mail_at,
                    mail_line: mail_line.clone(),
                    rcpt_lines: rcpt_lines.clone(),
                };
                all.lock().unwrap().push(got.clone());
                if reply.starts_with('2') {
                    out.lock().unwrap().push(got);
                }
                reply
            }
        } else if upper == "RSET" {
            from.clear();
            to.clear();
            chunks.clear();
            "250 Ok".into()
        } else if upper == "QUIT" {
            open.close();
            w.write_all(b"221 Bye\r\n")?;
            return Ok(());
        } else {
            "502 5.5.2 unknown".into()
        };
        w.write_all(format!("{reply}\r\n").as_bytes())?;
    }
}

impl Script {
    /// Before answering an end of data: the hold, then the delay.
    fn wait(&self) {
        while self.hold.as_ref().is_some_and(|h| !h.load(Ordering::SeqCst)) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(self.delay);
    }
}

/// Whether the client's next bytes are in (waiting up to 2 s for them
/// when `wait`) before the end of data just read is answered.
fn next_already_sent(r: &mut BufReader<TcpStream>, wait: bool) -> bool {
    if wait && r.buffer().is_empty() {
        let _ = r.get_ref().set_read_timeout(Some(Duration::from_secs(2)));
        let _ = r.fill_buf();
        let _ = r.get_ref().set_read_timeout(Some(Duration::from_secs(30)));
    }
    !r.buffer().is_empty()
}

fn addr_of(s: &str) -> String {
    let s = s.trim();
    let s = s.split_whitespace().next().unwrap_or("");
    s.trim_start_matches('<').trim_end_matches('>').to_string()
}

/// Read everything (helper for tests that stall a peer).
pub fn drain(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
}
