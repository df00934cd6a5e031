//! `ringmail-loadgen sink`: an SMTP server standing in for remote MX hosts.
//! Accepts on every core (SO_REUSEPORT), answers end of DATA from a reply
//! mix, counts messages, bytes and duplicate Message-IDs, and prints a
//! summary when stopped by `--messages`, `--duration`, SIGINT or SIGTERM.

mod conn;
mod dedup;
mod throttle;

use crate::cli::SinkArgs;
use crate::live::{self, Live, Watch};
use crate::net::{listen, tls};
use crate::proto::server::ServerConfig;
use crate::report::{self, Summary};
use crate::rt;
use anyhow::{bail, Result};
use conn::{SinkCtx, SinkStats};
use glommio::net::TcpListener;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::cell::RefCell;
use std::io::Write;
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use throttle::{Throttle, Window};

/// Runs the sink until it is told to stop, then prints the summary.
pub fn run(args: SinkArgs) -> Result<()> {
    let cores = args.core.cores.unwrap_or_else(rt::available_cores).max(1);
    let tls_config = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(tls::server_config(c, k)?),
        _ => None,
    };
    if let Some(dir) = &args.save {
        std::fs::create_dir_all(dir)?;
        if !dir.is_dir() {
            bail!("--save {}: not a directory", dir.display());
        }
    }
    let throttle = match Window::from_options(args.throttle_after, args.throttle_for) {
        Ok(w) => w.map(|w| Arc::new(Throttle::new(w))),
        Err(e) => bail!("{e}"),
    };
    let (addr, fds) = listen::bind_reuseport(args.listen, cores)?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
    }
    let live = Live::new(cores);
    let started = SystemTime::now();
    let fds = Arc::new(fds);
    let running = {
        let args = args.clone();
        let live2 = Arc::clone(&live);
        let throttle = throttle.clone();
        rt::spawn(cores, !args.core.no_pin, &live, move |i| {
            core(args.clone(), tls_config.clone(), throttle.clone(), Arc::clone(&live2), fds[i], i)
        })?
    };
    let last = std::cell::Cell::new((Duration::ZERO, 0u64));
    let progress = |elapsed: Duration, live: &Live| {
        let done = live.sum(|s| &s.done);
        let (t, n) = last.replace((elapsed, done));
        let rate = (done - n) as f64 / (elapsed - t).as_secs_f64().max(1e-3);
        format!("[{:>4}s] received {done}  rate {rate:.0}/s  errors {}", elapsed.as_secs(), live.sum(|s| &s.errors))
    };
    let ended = live::monitor(
        &live,
        Watch { workers: None, stop_at_done: args.messages, stop_after: args.duration, progress: &progress },
    );
    let results = running.join()?;
    let mut summary = summarize(&args, &addr.to_string(), results, started, throttle.as_deref());
    summary.interrupted = ended == live::Ended::Signal;
    print!("{}", summary.to_text());
    report::write_files(&summary, args.core.json.as_deref(), None, None)
}

/// One core: adopt its listener, accept until stopped, return its counts.
async fn core(
    args: SinkArgs,
    tls: Option<Arc<rustls::ServerConfig>>,
    throttle: Option<Arc<Throttle>>,
    live: Arc<Live>,
    fd: RawFd,
    idx: usize,
) -> SinkStats {
    // SAFETY: `fd` is a bound, listening socket created for this core alone
    // by `bind_reuseport`; ownership passes to the listener here.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    let ctx = Rc::new(SinkCtx {
        cfg: Rc::new(ServerConfig {
            hostname: args.hostname.clone(),
            starttls: tls.is_some() && !args.implicit_tls,
            auth: args.auth.clone(),
            max_size: args.max_size as u64,
            keep_content: args.save.is_some(),
            chunking: !args.no_chunking,
        }),
        implicit_tls: args.implicit_tls && tls.is_some(),
        tls,
        reply: args.reply.clone(),
        delay: args.delay,
        timeout: args.core.timeout,
        save: args.save.clone(),
        throttle,
        live: Arc::clone(&live),
        idx,
        start: Instant::now(),
        rng: RefCell::new(SmallRng::seed_from_u64(args.seed.wrapping_add(idx as u64))),
        stats: RefCell::new(SinkStats::new(args.dedup_cap)),
    });
    let accept = async {
        loop {
            match listener.accept().await {
                Ok(s) => {
                    glommio::spawn_local(conn::serve(Rc::clone(&ctx), s)).detach();
                }
                Err(_) => {
                    ctx.stats.borrow_mut().errors.bump("accept failed");
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    };
    let stop = async {
        while !live.stopping() {
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
    };
    futures_lite::future::or(accept, stop).await;
    ctx.stats.take()
}

fn summarize(
    args: &SinkArgs,
    addr: &str,
    results: Vec<SinkStats>,
    started: SystemTime,
    throttle: Option<&Throttle>,
) -> Summary {
    let mut it = results.into_iter();
    let mut t = it.next().unwrap_or_default();
    for r in it {
        t.messages += r.messages;
        t.accepted += r.accepted;
        t.bytes += r.bytes;
        t.replies.merge(&r.replies);
        t.no_message_id += r.no_message_id;
        t.dkim_signed += r.dkim_signed;
        t.oversize += r.oversize;
        t.connections += r.connections;
        t.saved += r.saved;
        t.throttled += r.throttled;
        t.errors.merge(&r.errors);
        t.timeline.merge(&r.timeline);
        t.first = match (t.first, r.first) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        };
        t.last = match (t.last, r.last) {
            (Some(a), Some(b)) => Some(if b.0 > a.0 { b } else { a }),
            (a, b) => a.or(b),
        };
        t.dedup.merge(r.dedup);
    }
    let elapsed = match (t.first, t.last) {
        (Some(f), Some(l)) => l.0 - f.0,
        _ => Duration::ZERO,
    };
    let mut s = Summary::new("sink", addr, started, elapsed);
    s.settings = serde_json::json!({
        "reply": args.reply.entries(),
        "delay_ms": args.delay.as_secs_f64() * 1000.0,
        "messages": args.messages,
        "duration_s": args.duration.map(|d| d.as_secs_f64()),
        "save": args.save,
        "tls": args.tls_cert.is_some(),
        "implicit_tls": args.implicit_tls,
        "auth": args.auth.is_some(),
        "dedup_cap_per_core": args.dedup_cap,
        "throttle_after_s": throttle.map(|t| t.window().after.as_secs_f64()),
        "throttle_for_s": throttle.map(|t| t.window().length.as_secs_f64()),
    });
    let unix_ms = |w: SystemTime| w.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    s.count("messages", t.messages);
    s.count("accepted", t.accepted);
    s.count("bytes", t.bytes);
    s.count("duplicates", t.dedup.duplicates);
    s.count("dedup_unchecked", t.dedup.unchecked);
    s.count("no_message_id", t.no_message_id);
    s.count("dkim_signed", t.dkim_signed);
    s.count("oversize", t.oversize);
    s.count("connections", t.connections);
    s.count("saved", t.saved);
    if let Some(th) = throttle {
        s.count("throttled", t.throttled);
        // Absent when no connection ever came, so the window never began.
        if let Some((start, end)) = th.unix_ms() {
            s.count("throttle_start_unix_ms", start);
            s.count("throttle_end_unix_ms", end);
        }
    }
    if let (Some(f), Some(l)) = (t.first, t.last) {
        s.count("first_message_unix_ms", unix_ms(f.1));
        s.count("last_message_unix_ms", unix_ms(l.1));
    }
    s.rate("messages_per_s", t.messages);
    s.rate("bytes_per_s", t.bytes);
    s.headline = format!(
        "{} messages in {:.2} s = {:.0} msg/s ({} accepted), {} duplicates",
        t.messages,
        elapsed.as_secs_f64(),
        s.throughput["messages_per_s"],
        t.accepted,
        t.dedup.duplicates
    );
    if t.dedup.unchecked > 0 {
        s.notes.push(format!("{} Message-IDs were not checked for duplicates: --dedup-cap reached", t.dedup.unchecked));
    }
    s.tallies.insert("replies".into(), t.replies.map().clone());
    s.tallies.insert("errors".into(), t.errors.map().clone());
    // The sink's clock starts at launch; drop the idle seconds before traffic.
    let b = t.timeline.buckets();
    s.timeline = b[b.iter().position(|n| *n > 0).unwrap_or(b.len())..].to_vec();
    s
}
