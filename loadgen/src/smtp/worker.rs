//! The glommio driver of one SMTP connection slot: connect, feed replies to
//! the [`SmtpClient`] machine, write what it asks for, time each step, and
//! reconnect after failures. A boring loop on purpose; the protocol lives in
//! `proto::client`.

use super::core::{metric_of, CoreCtx, CONNECT, TLS};
use super::failure::Failure;
use super::schedule::Ticket;
use crate::net::stream::{self, ReadBuf, Stream};
use crate::net::tls;
use crate::proto::client::{Next, Outcome, SmtpClient, Step};
use crate::proto::reply::{parse_reply, Reply};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Read buffer per connection; grows if a reply is larger.
const READ_BUF: usize = 16 * 1024;
/// Content at or below this size is copied into one write with the headers.
const COALESCE: usize = 64 * 1024;
/// Pause after a failed connection attempt, doubling up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// An established, idle SMTP session.
struct Conn {
    stream: Stream,
    rbuf: ReadBuf,
    client: SmtpClient,
    /// Messages sent on this connection.
    sent: u64,
}

/// One worker: keeps one connection busy until the schedule runs out.
pub async fn run(ctx: Rc<CoreCtx>, worker: u64) {
    let per_message = ctx.plan.per_connection == Some(1);
    let mut conn: Option<Conn> = None;
    let mut first_attempt = true;
    let mut backoff = MIN_BACKOFF;
    let mut seq = 0u64;
    let mut out = Vec::with_capacity(READ_BUF);
    loop {
        // Checked before (re)connecting: no point connecting for nothing.
        if ctx.live.stopping() || ctx.schedule.borrow().peek(Instant::now()).is_none() {
            break;
        }
        if conn.is_none() && !per_message {
            match open(&ctx).await {
                Ok(c) => {
                    conn = Some(c);
                    first_attempt = false;
                    backoff = MIN_BACKOFF;
                }
                Err(f) => {
                    setup_failed(&ctx, &f, None, &mut first_attempt);
                    glommio::timer::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
        }
        let Some(ticket) = ctx.schedule.borrow_mut().next(Instant::now()) else {
            break;
        };
        let now = Instant::now();
        if ticket.intended > now {
            glommio::timer::sleep(ticket.intended - now).await;
        }
        let mut c = match conn.take() {
            Some(c) => c,
            None => match open(&ctx).await {
                Ok(c) => {
                    first_attempt = false;
                    backoff = MIN_BACKOFF;
                    c
                }
                Err(f) => {
                    setup_failed(&ctx, &f, Some(&ticket), &mut first_attempt);
                    glommio::timer::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        seq += 1;
        match send_message(&ctx, &mut c, worker, seq, &ticket, &mut out).await {
            Ok(()) => {
                c.sent += 1;
                if ctx.plan.per_connection.is_some_and(|n| c.sent >= n) {
                    quit(c).await;
                } else {
                    conn = Some(c);
                }
            }
            Err(f) => ctx.failed(&f, Some(&ticket)),
        }
    }
    if let Some(c) = conn {
        quit(c).await;
    }
    if first_attempt {
        ctx.live.worker_had_no_work();
    }
}

fn setup_failed(ctx: &CoreCtx, f: &Failure, ticket: Option<&Ticket>, first_attempt: &mut bool) {
    ctx.failed(f, ticket);
    if std::mem::take(first_attempt) {
        ctx.live.first_attempt_failed(f.describe(&ctx.plan.target.addr.to_string(), ctx.plan.timeout));
    }
}

/// Connects and runs the session up to the idle state.
async fn open(ctx: &CoreCtx) -> Result<Conn, Failure> {
    let plan = &ctx.plan;
    let t0 = Instant::now();
    let tcp = stream::connect(plan.target.addr, plan.timeout).await.map_err(Failure::Connect)?;
    let mut now = Instant::now();
    ctx.record(CONNECT, now - t0, now);
    let mut stream = match &plan.tls {
        Some(t) if t.implicit => {
            let s = tls::connect(t.config.clone(), t.name.clone(), tcp).await.map_err(Failure::Tls)?;
            let t1 = Instant::now();
            ctx.record(TLS, t1 - now, t1);
            now = t1;
            Stream::Client(Box::new(s))
        }
        _ => Stream::Plain(tcp),
    };
    let implicit = plan.tls.as_ref().is_some_and(|t| t.implicit);
    let mut client = SmtpClient::new(plan.settings.clone(), implicit);
    let mut rbuf = ReadBuf::new(READ_BUF);
    let mut out = Vec::new();
    let mut sent_at = now;
    loop {
        let reply = read_reply(&mut stream, &mut rbuf, client.awaiting()).await?;
        let p = client.handle_reply(&reply).map_err(Failure::Session)?;
        let now = Instant::now();
        if let Some(m) = metric_of(p.step) {
            ctx.record(m, now - sent_at, now);
        }
        match p.next {
            Next::Wait => {}
            Next::Ready => {
                ctx.connected(plan.settings.pipelining && !client.caps().pipelining);
                return Ok(Conn { stream, rbuf, client, sent: 0 });
            }
            Next::StartTls => {
                if !rbuf.is_empty() {
                    return Err(Failure::Protocol("data after the STARTTLS reply".into()));
                }
                let Some(t) = plan.tls.as_ref() else {
                    return Err(Failure::Protocol("STARTTLS without TLS settings".into()));
                };
                let tcp =
                    stream.into_plain().ok_or_else(|| Failure::Protocol("STARTTLS on a TLS connection".into()))?;
                let s = tls::connect(t.config.clone(), t.name.clone(), tcp).await.map_err(Failure::Tls)?;
                let t1 = Instant::now();
                ctx.record(TLS, t1 - now, t1);
                stream = Stream::Client(Box::new(s));
                client.tls_established();
            }
            Next::SendData | Next::Done(_) | Next::Closed => {
                return Err(Failure::Protocol(format!("unexpected reply during set-up: {reply}")));
            }
        }
        if client.has_output() {
            out.clear();
            client.take_output(&mut out);
            sent_at = Instant::now();
            stream.send(&out).await.map_err(|e| Failure::io(client.awaiting(), e))?;
        }
    }
}

/// Sends one message on an idle connection and records its outcome.
async fn send_message(
    ctx: &CoreCtx,
    c: &mut Conn,
    worker: u64,
    seq: u64,
    ticket: &Ticket,
    out: &mut Vec<u8>,
) -> Result<(), Failure> {
    let msg = ctx.composer.borrow_mut().compose(&ctx.plan, worker, seq);
    c.client.start_message(&msg.envelope).map_err(Failure::Session)?;
    out.clear();
    c.client.take_output(out);
    let mut sent_at = Instant::now();
    c.stream.send(out).await.map_err(|e| Failure::io(Some(Step::Mail), e))?;
    loop {
        let reply = read_reply(&mut c.stream, &mut c.rbuf, c.client.awaiting()).await?;
        let p = c.client.handle_reply(&reply).map_err(Failure::Session)?;
        let now = Instant::now();
        if let Some(m) = metric_of(p.step) {
            ctx.record(m, now - sent_at, now);
        }
        if p.step == Step::Rcpt && !reply.is_positive() {
            ctx.rcpt_refused(reply.code, now);
        }
        match p.next {
            Next::Wait => {
                if c.client.has_output() {
                    out.clear();
                    c.client.take_output(out);
                    sent_at = now;
                    c.stream.send(out).await.map_err(|e| Failure::io(c.client.awaiting(), e))?;
                }
            }
            Next::SendData => {
                sent_at = now;
                let io = |e| Failure::io(Some(Step::EndOfData), e);
                if msg.wire_len() <= COALESCE {
                    out.clear();
                    out.extend_from_slice(msg.headers.as_bytes());
                    out.extend_from_slice(&msg.body);
                    c.stream.send(out).await.map_err(io)?;
                } else {
                    c.stream.send(msg.headers.as_bytes()).await.map_err(io)?;
                    c.stream.send(&msg.body).await.map_err(io)?;
                }
                c.client.data_sent();
            }
            Next::Done(outcome) => {
                let bytes = match outcome {
                    Outcome::Accepted => msg.wire_len(),
                    Outcome::Rejected { .. } => 0,
                };
                ctx.outcome(ticket, outcome, bytes);
                return Ok(());
            }
            Next::Ready | Next::StartTls | Next::Closed => {
                return Err(Failure::Protocol(format!("unexpected reply in transaction: {reply}")));
            }
        }
    }
}

/// Reads until one complete reply is buffered.
async fn read_reply(stream: &mut Stream, rbuf: &mut ReadBuf, step: Option<Step>) -> Result<Reply, Failure> {
    loop {
        match parse_reply(rbuf.data()) {
            Ok(Some((reply, used))) => {
                rbuf.consume(used);
                return Ok(reply);
            }
            Ok(None) => {}
            Err(e) => return Err(Failure::Protocol(e.to_string())),
        }
        match rbuf.fill(stream).await {
            Ok(0) => return Err(Failure::Closed(step)),
            Ok(_) => {}
            Err(e) => return Err(Failure::io(step, e)),
        }
    }
}

/// Polite close: QUIT, wait for 221 (bounded by the socket timeout), drop.
async fn quit(mut c: Conn) {
    c.client.quit();
    let mut out = Vec::new();
    c.client.take_output(&mut out);
    if c.stream.send(&out).await.is_ok() {
        let _ = read_reply(&mut c.stream, &mut c.rbuf, Some(Step::Quit)).await;
    }
    let _ = futures_lite::io::AsyncWriteExt::close(&mut c.stream).await;
}
