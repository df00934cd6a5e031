//! `ringmail-loadgen pop3`: logs in as many users from every core, lists
//! and retrieves every message (optionally deleting them), and reports
//! messages/s, bytes/s and login/retrieve latency.

mod worker;

use crate::cli::{Pop3Args, TlsMode};
use crate::live::{self, Ended, Live, Watch};
use crate::net::tls;
use crate::report::{self, Summary};
use crate::rt;
use crate::smtp::humanize;
use crate::stats::over_time::OverTime;
use crate::stats::{self, LatencySet, Tally, Timeline};
use crate::target;
use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use rustls::pki_types::ServerName;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Latency metrics of the POP3 mode, in report order.
pub const METRICS: &[&str] =
    &["connect", "tls", "greeting", "login", "list", "retr", "dele", "quit", "session", "stat"];
const CONNECT: usize = 0;
const TLS: usize = 1;
const GREETING: usize = 2;
const LOGIN: usize = 3;
const LIST: usize = 4;
const RETR: usize = 5;
const DELE: usize = 6;
const QUIT: usize = 7;
const SESSION: usize = 8;
const STAT: usize = 9;

/// TLS for POP3 sessions.
#[derive(Debug, Clone)]
pub struct Pop3Tls {
    pub implicit: bool,
    pub config: Arc<rustls::ClientConfig>,
    pub name: ServerName<'static>,
}

/// What every core needs (read-only).
#[derive(Debug, Clone)]
pub struct Pop3Plan {
    pub addr: SocketAddr,
    pub target: String,
    pub users: Arc<Vec<(String, String)>>,
    /// Total session slots (≤ users).
    pub workers: usize,
    pub tls: Option<Pop3Tls>,
    pub delete: bool,
    /// RETR/DELE commands in flight per session (1: lock-step).
    pub pipeline: usize,
    /// Sessions only log in, STAT and QUIT.
    pub logins_only: bool,
    pub timeout: Duration,
    pub deadline: Option<Instant>,
}

/// One core's counts.
#[derive(Debug, Clone)]
pub struct Pop3Stats {
    pub lat: LatencySet,
    pub sessions: u64,
    pub failed_sessions: u64,
    pub messages: u64,
    pub bytes: u64,
    pub deleted: u64,
    /// Socket reads that brought RETR/DELE replies (after LIST, before
    /// QUIT): per message, how the server's writes arrive (1.0 is one
    /// read per message; below 1 when pipelined replies share reads).
    pub retrieval_reads: u64,
    pub errors: Tally,
    pub timeline: Timeline,
    /// RETR latency by the second it completed in.
    pub over_time: OverTime,
    pub start: Instant,
    pub last: Option<Instant>,
}

/// A core's state, shared by its workers.
pub struct Pop3Core {
    pub plan: Rc<Pop3Plan>,
    pub live: Arc<Live>,
    idx: usize,
    stats: RefCell<Pop3Stats>,
    interval: RefCell<Histogram<u64>>,
}

impl Pop3Core {
    fn record(&self, metric: usize, d: Duration) {
        self.stats.borrow_mut().lat.record(metric, d);
    }

    fn retrieved(&self, d: Duration, bytes: u64) {
        let now = Instant::now();
        let mut s = self.stats.borrow_mut();
        s.lat.record(RETR, d);
        stats::record(&mut self.interval.borrow_mut(), d);
        s.messages += 1;
        s.bytes += bytes;
        let since = now - s.start;
        s.timeline.add(since, 1);
        s.over_time.record(since, d);
        s.last = Some(now);
        let slot = &self.live.slots[self.idx];
        slot.done.store(s.messages, Relaxed);
        slot.bytes.store(s.bytes, Relaxed);
    }

    fn deleted(&self) {
        self.stats.borrow_mut().deleted += 1;
    }

    fn retrieval_read(&self) {
        self.stats.borrow_mut().retrieval_reads += 1;
    }

    fn session_done(&self, d: Duration) {
        let mut s = self.stats.borrow_mut();
        s.lat.record(SESSION, d);
        s.sessions += 1;
        s.last = Some(Instant::now());
    }

    fn failed(&self, f: &worker::Pop3Failure) {
        let mut s = self.stats.borrow_mut();
        s.failed_sessions += 1;
        s.errors.bump(&f.kind());
        self.live.slots[self.idx].errors.store(s.errors.total(), Relaxed);
    }

    fn error(&self, kind: &str) {
        self.stats.borrow_mut().errors.bump(kind);
    }
}

/// Reads `address:password` lines.
fn read_users(path: &std::path::Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read users file {}", path.display()))?;
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((u, p)) if !u.is_empty() => users.push((u.to_string(), p.to_string())),
            _ => bail!("{}:{}: expected address:password", path.display(), n + 1),
        }
    }
    if users.is_empty() {
        bail!("no users in {}", path.display());
    }
    Ok(users)
}

/// Runs the POP3 load and prints the summary.
pub fn run(args: Pop3Args) -> Result<()> {
    let cores = args.core.cores.unwrap_or_else(rt::available_cores).max(1);
    let target = target::resolve(&args.target, args.allow_remote)?;
    let users = Arc::new(read_users(&args.users)?);
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if args.pipeline == 0 {
        bail!("--pipeline must be at least 1");
    }
    if args.logins && args.delete {
        bail!("--logins retrieves nothing, so it cannot --delete");
    }
    let tls = match args.tls.tls {
        TlsMode::None => None,
        mode => Some(Pop3Tls {
            implicit: mode == TlsMode::Implicit,
            config: tls::client_config(args.tls.insecure, args.tls.ca.as_deref())?,
            name: tls::server_name(args.tls.tls_name.as_deref().unwrap_or(&target.host))?,
        }),
    };
    let workers = args.connections.min(users.len());
    let plan = Pop3Plan {
        addr: target.addr,
        target: target.addr.to_string(),
        users,
        workers,
        tls,
        delete: args.delete,
        pipeline: args.pipeline,
        logins_only: args.logins,
        timeout: args.core.timeout,
        deadline: args.duration.map(|d| Instant::now() + d),
    };
    let live = Live::new(cores);
    let started = SystemTime::now();
    let running = {
        let live2 = Arc::clone(&live);
        let plan = plan.clone();
        rt::spawn(cores, !args.core.no_pin, &live, move |i| run_core(plan.clone(), Arc::clone(&live2), i, cores))?
    };
    let progress = live::progress_line(if args.logins { "logins" } else { "retrieved" });
    let ended = live::monitor(
        &live,
        Watch { workers: Some(workers), stop_at_done: None, stop_after: None, progress: &progress },
    );
    let results = running.join()?;
    if let Ended::FailedAtStart(why) = ended {
        bail!("{why} (no session succeeded)");
    }
    let mut s = summarize(&args, &plan, results, started);
    s.interrupted = ended == Ended::Signal;
    report::emit(&s, &args.core, &args.report)
}

async fn run_core(plan: Pop3Plan, live: Arc<Live>, idx: usize, cores: usize) -> Pop3Stats {
    let core = Rc::new(Pop3Core {
        plan: Rc::new(plan),
        live,
        idx,
        stats: RefCell::new(Pop3Stats {
            lat: LatencySet::new(METRICS),
            sessions: 0,
            failed_sessions: 0,
            messages: 0,
            bytes: 0,
            deleted: 0,
            retrieval_reads: 0,
            errors: Tally::default(),
            timeline: Timeline::default(),
            over_time: OverTime::default(),
            start: Instant::now(),
            last: None,
        }),
        interval: RefCell::new(stats::new_histogram()),
    });
    let ticker = glommio::spawn_local({
        let core = Rc::clone(&core);
        async move {
            loop {
                glommio::timer::sleep(Duration::from_secs(1)).await;
                let mut h = core.interval.borrow_mut();
                let p99 = if h.is_empty() { 0 } else { h.value_at_quantile(0.99) };
                core.live.slots[core.idx].p99_us.store(p99, Relaxed);
                h.reset();
            }
        }
    });
    // Worker w runs on core w % cores.
    let tasks: Vec<_> = (idx..core.plan.workers)
        .step_by(cores)
        .map(|w| glommio::spawn_local(worker::run(Rc::clone(&core), w)))
        .collect();
    for t in tasks {
        t.await;
    }
    drop(ticker);
    let s = core.stats.borrow().clone();
    s
}

fn summarize(args: &Pop3Args, plan: &Pop3Plan, results: Vec<Pop3Stats>, started: SystemTime) -> Summary {
    let mut it = results.into_iter();
    let mut t = it.next().expect("at least one core");
    let mut start = t.start;
    for r in it {
        t.lat.merge(&r.lat);
        t.sessions += r.sessions;
        t.failed_sessions += r.failed_sessions;
        t.messages += r.messages;
        t.bytes += r.bytes;
        t.deleted += r.deleted;
        t.retrieval_reads += r.retrieval_reads;
        t.errors.merge(&r.errors);
        t.timeline.merge(&r.timeline);
        t.over_time.merge(&r.over_time);
        start = start.min(r.start);
        t.last = t.last.max(r.last);
    }
    let elapsed = t.last.map_or(Duration::ZERO, |l| l.saturating_duration_since(start));
    let mut s = Summary::new("pop3", &plan.target, started, elapsed);
    s.settings = serde_json::json!({
        "connections": plan.workers,
        "users": plan.users.len(),
        "delete": plan.delete,
        "pipeline": plan.pipeline,
        "logins_only": plan.logins_only,
        "tls": format!("{:?}", args.tls.tls).to_lowercase(),
        "duration_s": args.duration.map(|d| d.as_secs_f64()),
        "timeout": humanize(plan.timeout),
    });
    s.count("sessions", t.sessions);
    s.count("failed_sessions", t.failed_sessions);
    s.count("messages", t.messages);
    s.count("bytes", t.bytes);
    s.count("deleted", t.deleted);
    s.rate("messages_per_s", t.messages);
    s.rate("bytes_per_s", t.bytes);
    s.rate("sessions_per_s", t.sessions);
    s.count("retrieval_reads", t.retrieval_reads);
    let reads_per_message = if t.messages == 0 { 0.0 } else { t.retrieval_reads as f64 / t.messages as f64 };
    if !plan.logins_only {
        s.notes.push(format!(
            "reads per message: {reads_per_message:.2} ({} socket reads brought RETR/DELE replies for {} messages)",
            t.retrieval_reads, t.messages
        ));
    }
    s.headline = if plan.logins_only {
        format!(
            "{} logins ({} failed) in {:.2} s = {:.0} logins/s",
            t.sessions,
            t.failed_sessions,
            elapsed.as_secs_f64(),
            s.throughput["sessions_per_s"]
        )
    } else {
        format!(
            "{} sessions ({} failed), {} messages, {} bytes in {:.2} s = {:.0} msg/s, {:.2} reads/msg",
            t.sessions,
            t.failed_sessions,
            t.messages,
            t.bytes,
            elapsed.as_secs_f64(),
            s.throughput["messages_per_s"],
            reads_per_message
        )
    };
    s.tallies.insert("errors".into(), t.errors.map().clone());
    s.set_latencies(&t.lat, if plan.logins_only { LOGIN } else { RETR });
    s.timeline = t.timeline.buckets().to_vec();
    s.set_over_time("retr", &t.over_time);
    s
}
