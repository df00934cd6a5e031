//! The glommio driver of one POP3 session slot: for each of its users,
//! connect, run the [`Pop3Client`] machine to the end, time each step.

use super::{Pop3Core, CONNECT, DELE, GREETING, LIST, LOGIN, QUIT, STAT, TLS};
use crate::net::stream::{self, ReadBuf, Stream};
use crate::net::tls;
use crate::proto::pop3::{Pop3Client, Pop3Error, Pop3Next, Pop3Settings, Pop3Step};
use crate::smtp::humanize;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Why a POP3 session failed.
#[derive(Debug)]
pub enum Pop3Failure {
    Connect(io::Error),
    Tls(io::Error),
    Timeout(Option<Pop3Step>),
    Closed(Option<Pop3Step>),
    Io(Option<Pop3Step>, io::Error),
    Protocol(Pop3Error),
}

fn name(s: Option<Pop3Step>) -> &'static str {
    s.map_or("response", Pop3Step::name)
}

impl Pop3Failure {
    fn io(step: Option<Pop3Step>, e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::TimedOut => Pop3Failure::Timeout(step),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                Pop3Failure::Closed(step)
            }
            _ => Pop3Failure::Io(step, e),
        }
    }

    /// Tally key.
    pub fn kind(&self) -> String {
        match self {
            Pop3Failure::Connect(e) if e.kind() == io::ErrorKind::ConnectionRefused => "connect refused".into(),
            Pop3Failure::Connect(e) if e.kind() == io::ErrorKind::TimedOut => "connect timeout".into(),
            Pop3Failure::Connect(e) => format!("connect error: {e}"),
            Pop3Failure::Tls(_) => "tls handshake failed".into(),
            Pop3Failure::Timeout(s) => format!("timeout waiting for {}", name(*s)),
            Pop3Failure::Closed(s) => format!("closed by server during {}", name(*s)),
            Pop3Failure::Io(s, e) => format!("io error ({}) during {}", e.kind(), name(*s)),
            Pop3Failure::Protocol(Pop3Error::Refused { step, .. }) => {
                format!("{} refused", step.name())
            }
            Pop3Failure::Protocol(Pop3Error::Malformed(_)) => "protocol error".into(),
        }
    }

    /// One line for a human.
    pub fn describe(&self, target: &str, timeout: Duration) -> String {
        let t = humanize(timeout);
        match self {
            Pop3Failure::Connect(e) => format!("cannot connect to {target}: {e}"),
            Pop3Failure::Tls(e) => format!("TLS handshake with {target} failed: {e}"),
            Pop3Failure::Timeout(Some(Pop3Step::Greeting)) => {
                format!("{target} accepted the connection but sent no greeting within {t}")
            }
            Pop3Failure::Timeout(s) => format!("{target} did not answer {} within {t}", name(*s)),
            Pop3Failure::Closed(s) => format!("{target} closed the connection during {}", name(*s)),
            Pop3Failure::Io(s, e) => {
                format!("connection to {target} failed during {}: {e}", name(*s))
            }
            Pop3Failure::Protocol(Pop3Error::Refused { step: Pop3Step::Pass, line }) => {
                format!("{target} rejected our credentials: {line}")
            }
            Pop3Failure::Protocol(e) => format!("{target}: {e}"),
        }
    }
}

/// Runs sessions for users `worker`, `worker + stride`, ... until the pass
/// (or the duration) is over.
pub async fn run(core: Rc<Pop3Core>, worker: usize) {
    let plan = Rc::clone(&core.plan);
    let stride = plan.workers;
    let mut first = true;
    loop {
        let mut i = worker;
        while i < plan.users.len() {
            if core.live.stopping() || plan.deadline.is_some_and(|d| Instant::now() >= d) {
                return;
            }
            let (user, pass) = &plan.users[i];
            let t0 = Instant::now();
            match session(&core, user, pass).await {
                Ok(()) => {
                    core.live.setup_succeeded();
                    core.session_done(t0.elapsed());
                }
                Err(f) => {
                    core.failed(&f);
                    if std::mem::take(&mut first) {
                        core.live.first_attempt_failed(f.describe(&plan.target, plan.timeout));
                    }
                }
            }
            first = false;
            i += stride;
        }
        if plan.deadline.is_none() {
            return;
        }
    }
}

async fn session(core: &Pop3Core, user: &str, pass: &str) -> Result<(), Pop3Failure> {
    let plan = &core.plan;
    let t0 = Instant::now();
    let tcp = stream::connect(plan.addr, plan.timeout).await.map_err(Pop3Failure::Connect)?;
    let mut now = Instant::now();
    core.record(CONNECT, now - t0);
    let mut stream = match &plan.tls {
        Some(t) if t.implicit => {
            let s = tls::connect(t.config.clone(), t.name.clone(), tcp).await.map_err(Pop3Failure::Tls)?;
            let t1 = Instant::now();
            core.record(TLS, t1 - now);
            now = t1;
            Stream::Client(Box::new(s))
        }
        _ => Stream::Plain(tcp),
    };
    let implicit = plan.tls.as_ref().is_some_and(|t| t.implicit);
    let settings = Pop3Settings {
        user: user.to_string(),
        pass: pass.to_string(),
        starttls: plan.tls.as_ref().is_some_and(|t| !t.implicit),
        delete: plan.delete,
        pipeline: plan.pipeline,
        logins_only: plan.logins_only,
    };
    let mut client = Pop3Client::new(settings, implicit);
    let mut rbuf = ReadBuf::new(64 * 1024);
    let mut out = Vec::new();
    let mut sent_at = now;
    let mut login_at = now;
    loop {
        let (used, progress) = client.handle_input(rbuf.data()).map_err(Pop3Failure::Protocol)?;
        rbuf.consume(used);
        if let Some(p) = progress {
            let now = Instant::now();
            match p.step {
                Pop3Step::Greeting => core.record(GREETING, now - sent_at),
                Pop3Step::User => {}
                Pop3Step::Pass => {
                    core.record(LOGIN, now - login_at);
                }
                Pop3Step::List => core.record(LIST, now - sent_at),
                Pop3Step::Stat => core.record(STAT, now - sent_at),
                Pop3Step::Retr if p.ok => core.retrieved(now - sent_at, p.bytes),
                Pop3Step::Retr => core.error("retr refused"),
                Pop3Step::Dele if p.ok => {
                    core.record(DELE, now - sent_at);
                    core.deleted();
                }
                Pop3Step::Dele => core.error("dele refused"),
                Pop3Step::Quit => core.record(QUIT, now - sent_at),
                Pop3Step::Stls => {}
            }
            match p.next {
                Pop3Next::Wait => {}
                Pop3Next::Closed => return Ok(()),
                Pop3Next::StartTls => {
                    if !rbuf.is_empty() {
                        return Err(Pop3Failure::Protocol(Pop3Error::Malformed("data after STLS reply".into())));
                    }
                    let t = plan.tls.as_ref().ok_or(Pop3Failure::Protocol(Pop3Error::Malformed("STLS".into())))?;
                    let tcp =
                        stream.into_plain().ok_or(Pop3Failure::Protocol(Pop3Error::Malformed("STLS on TLS".into())))?;
                    let s = tls::connect(t.config.clone(), t.name.clone(), tcp).await.map_err(Pop3Failure::Tls)?;
                    core.record(TLS, now.elapsed());
                    stream = Stream::Client(Box::new(s));
                    client.tls_established();
                }
            }
        }
        out.clear();
        client.take_output(&mut out);
        if !out.is_empty() {
            sent_at = Instant::now();
            if client.awaiting() == Some(Pop3Step::User) {
                login_at = sent_at;
            }
            stream.send(&out).await.map_err(|e| Pop3Failure::io(client.awaiting(), e))?;
            continue;
        }
        if used > 0 || progress.is_some() {
            continue;
        }
        match rbuf.fill(&mut stream).await {
            Ok(0) => return Err(Pop3Failure::Closed(client.awaiting())),
            Ok(_) => {
                if matches!(client.awaiting(), Some(Pop3Step::Retr | Pop3Step::Dele)) {
                    core.retrieval_read();
                }
            }
            Err(e) => return Err(Pop3Failure::io(client.awaiting(), e)),
        }
    }
}
