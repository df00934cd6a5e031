//! The glommio driver of one sink connection, and the per-core state it
//! reports into. Feeds bytes to the [`ServerSession`] machine, answers
//! completed messages from the reply mix (after `--delay`), optionally saves
//! them, and writes replies whenever the input is drained (so pipelined
//! commands get batched replies).

use super::dedup::Dedup;
use super::throttle::{Throttle, THROTTLE_REPLY};
use crate::live::Live;
use crate::net::stream::{self, ReadBuf, Stream};
use crate::net::tls;
use crate::proto::server::{Action, Received, ServerConfig, ServerSession};
use crate::spec::Mix;
use crate::stats::{Tally, Timeline};
use glommio::net::TcpStream;
use rand::rngs::SmallRng;
use std::cell::RefCell;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const READ_BUF: usize = 64 * 1024;

/// What one core of the sink counted.
#[derive(Debug, Clone, Default)]
pub struct SinkStats {
    /// Messages whose DATA completed (whatever the reply).
    pub messages: u64,
    /// Of those, answered 2xx.
    pub accepted: u64,
    /// Content bytes of all completed messages.
    pub bytes: u64,
    /// End-of-data replies by code.
    pub replies: Tally,
    pub no_message_id: u64,
    /// Accepted messages carrying a DKIM-Signature field.
    pub dkim_signed: u64,
    pub oversize: u64,
    pub connections: u64,
    pub saved: u64,
    /// MAIL commands refused by `--throttle-after` (each closed its connection).
    pub throttled: u64,
    pub errors: Tally,
    pub timeline: Timeline,
    pub first: Option<(Instant, SystemTime)>,
    pub last: Option<(Instant, SystemTime)>,
    pub dedup: Dedup,
    /// Messages whose replies have been written (what `--messages` counts).
    flushed: u64,
}

impl SinkStats {
    /// Empty counts with a duplicate detector of `dedup_cap` IDs.
    pub fn new(dedup_cap: usize) -> Self {
        SinkStats { dedup: Dedup::new(dedup_cap), ..SinkStats::default() }
    }
}

/// One core's sink state, shared by its connections.
pub struct SinkCtx {
    pub cfg: Rc<ServerConfig>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub implicit_tls: bool,
    pub reply: Mix<u16>,
    pub delay: Duration,
    pub timeout: Duration,
    pub save: Option<PathBuf>,
    /// `--throttle-after`/`--throttle-for`, shared by all cores.
    pub throttle: Option<Arc<Throttle>>,
    pub live: Arc<Live>,
    pub idx: usize,
    pub start: Instant,
    pub rng: RefCell<SmallRng>,
    pub stats: RefCell<SinkStats>,
}

impl SinkCtx {
    /// Picks the reply for a message and counts it.
    fn decide(&self, m: &Received) -> u16 {
        let code = if m.oversize { 552 } else { self.reply.pick(&mut *self.rng.borrow_mut()) };
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut s = self.stats.borrow_mut();
        s.messages += 1;
        s.bytes += m.size;
        s.replies.bump(&code.to_string());
        s.oversize += u64::from(m.oversize);
        if code / 100 == 2 {
            s.accepted += 1;
            match &m.message_id {
                Some(id) => {
                    s.dedup.check(id);
                }
                None => s.no_message_id += 1,
            }
            s.dkim_signed += u64::from(m.dkim_signed);
        }
        s.timeline.add(now - self.start, 1);
        s.first.get_or_insert((now, wall));
        s.last = Some((now, wall));
        code
    }

    fn flushed(&self, n: u64) {
        let mut s = self.stats.borrow_mut();
        s.flushed += n;
        let slot = &self.live.slots[self.idx];
        slot.done.store(s.flushed, Relaxed);
        slot.bytes.store(s.bytes, Relaxed);
        slot.errors.store(s.errors.total(), Relaxed);
    }

    fn error(&self, kind: &str) {
        self.stats.borrow_mut().errors.bump(kind);
    }
}

/// Serves one accepted connection until QUIT, EOF, error or idle timeout.
pub async fn serve(ctx: Rc<SinkCtx>, tcp: TcpStream) {
    ctx.stats.borrow_mut().connections += 1;
    if let Some(t) = &ctx.throttle {
        t.connected(Instant::now());
    }
    if let Err(kind) = session(&ctx, tcp).await {
        ctx.error(kind);
    }
}

async fn session(ctx: &SinkCtx, tcp: TcpStream) -> Result<(), &'static str> {
    stream::prepare(&tcp, ctx.timeout).map_err(|_| "socket setup")?;
    let mut stream = match (&ctx.tls, ctx.implicit_tls) {
        (Some(cfg), true) => {
            Stream::Server(Box::new(tls::accept(cfg.clone(), tcp).await.map_err(|_| "tls handshake")?))
        }
        _ => Stream::Plain(tcp),
    };
    let mut sess = ServerSession::new(Rc::clone(&ctx.cfg), ctx.implicit_tls);
    let mut rbuf = ReadBuf::new(READ_BUF);
    let mut out = Vec::with_capacity(4096);
    let mut unflushed = 0u64;
    loop {
        loop {
            if let Some(t) = &ctx.throttle {
                sess.refuse_mail(t.active(Instant::now()).then_some(THROTTLE_REPLY));
            }
            let (used, action) = sess.handle_input(rbuf.data());
            rbuf.consume(used);
            match action {
                None if used == 0 => break,
                None => {}
                Some(Action::Message(m)) => {
                    let code = ctx.decide(&m);
                    if !ctx.delay.is_zero() {
                        glommio::timer::sleep(ctx.delay).await;
                    }
                    if let Some(dir) = &ctx.save {
                        save(ctx, dir, *m, code).await;
                    }
                    let text = match code / 100 {
                        2 => "Ok: queued by ringmail-loadgen sink",
                        4 => "Try again later (sink reply mix)",
                        _ => "Rejected (sink reply mix)",
                    };
                    sess.reply_to_message(code, text);
                    unflushed += 1;
                }
                Some(Action::StartTls) => {
                    flush(&mut stream, &mut sess, &mut out).await?;
                    if !rbuf.is_empty() {
                        return Err("data after STARTTLS");
                    }
                    let cfg = ctx.tls.clone().ok_or("starttls without certificate")?;
                    let tcp = stream.into_plain().ok_or("starttls twice")?;
                    stream = Stream::Server(Box::new(tls::accept(cfg, tcp).await.map_err(|_| "tls handshake")?));
                    sess.tls_established();
                }
                Some(Action::Close) => {
                    if sess.refused() {
                        ctx.stats.borrow_mut().throttled += 1;
                    }
                    flush(&mut stream, &mut sess, &mut out).await?;
                    ctx.flushed(std::mem::take(&mut unflushed));
                    let _ = futures_lite::io::AsyncWriteExt::close(&mut stream).await;
                    return Ok(());
                }
            }
        }
        flush(&mut stream, &mut sess, &mut out).await?;
        if unflushed > 0 {
            ctx.flushed(std::mem::take(&mut unflushed));
        }
        match rbuf.fill(&mut stream).await {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err("idle timeout"),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Err("reset by client"),
            Err(_) => return Err("read error"),
        }
    }
}

async fn flush(stream: &mut Stream, sess: &mut ServerSession, out: &mut Vec<u8>) -> Result<(), &'static str> {
    if sess.has_output() {
        out.clear();
        sess.take_output(out);
        stream.send(out).await.map_err(|_| "write error")?;
    }
    Ok(())
}

/// Writes `N.eml` (content) and `N.json` (envelope) before the reply goes
/// out, so a client that got the reply can find the files.
async fn save(ctx: &SinkCtx, dir: &std::path::Path, m: Received, code: u16) {
    let n = {
        let mut s = ctx.stats.borrow_mut();
        s.saved += 1;
        s.saved
    };
    let base = dir.join(format!("{}-{n}", ctx.idx));
    let envelope = serde_json::json!({
        "mail_from": m.mail_from,
        "rcpt_to": m.rcpts,
        "message_id": m.message_id,
        "size": m.size,
        "reply": code,
        "received_unix_ms": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
    });
    let content = m.content.unwrap_or_default();
    let result = glommio::executor()
        .spawn_blocking(move || -> io::Result<()> {
            std::fs::write(base.with_extension("eml"), content)?;
            std::fs::write(base.with_extension("json"), envelope.to_string() + "\n")
        })
        .await;
    if result.is_err() {
        ctx.error("save failed");
    }
}
