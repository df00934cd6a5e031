//! The HTTP listeners: `[listen] metrics` (GET/HEAD /metrics, one request
//! per connection, as before) and `[listen] http` (the API, keep-alive,
//! HTTPS with `[http] tls`). hyper's HTTP/1 server runs on the core that
//! accepted the connection, over [`HyperIo`]; no executor or timer of
//! hyper's is used.
//!
//! Guarantees kept from the hand-written metrics server this replaced:
//! every connection counts against `limits.max_connections` and
//! `max_connections_per_ip` like a mail session (a refused one is closed at
//! once and logged for fail2ban); a request must arrive whole (head and
//! body) within a deadline from its first byte however slowly its bytes
//! trickle (10 s on the metrics listener, `[http] request_timeout` on the
//! API), and one that does not is answered 408 and closed; a silent
//! connection is closed a second after that time; each connection is its
//! own task.

use super::auth::Tokens;
use super::io::{HyperIo, Phase, RequestClock};
use super::routes::{route, Ctx};
use crate::shard::Shard;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The metrics listener's request deadline (and idle time).
pub const METRICS_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line and header fields); more is 431.
const MAX_HEAD: usize = 16 * 1024;
/// How often an idle connection's watcher looks whether a request began
/// (the deadline itself is kept exactly: it counts from the first byte).
const WATCH_TICK: Duration = Duration::from_secs(1);

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `[listen] metrics`: /metrics only.
    Metrics,
    /// `[listen] http`: the API (and /metrics).
    Api,
}

impl Listener {
    fn name(self) -> &'static str {
        match self {
            Listener::Metrics => "metrics",
            Listener::Api => "http",
        }
    }
}

/// Per core: the API tokens as last loaded (SIGHUP sends new ones).
pub struct HttpState {
    tokens: RefCell<Arc<Tokens>>,
    updates: crossbeam_channel::Receiver<Arc<Tokens>>,
}

impl HttpState {
    pub fn new(tokens: Arc<Tokens>, updates: crossbeam_channel::Receiver<Arc<Tokens>>) -> HttpState {
        HttpState { tokens: RefCell::new(tokens), updates }
    }

    /// The current tokens (picks up a reload if one arrived).
    pub fn tokens(&self) -> Arc<Tokens> {
        if let Some(newest) = self.updates.try_iter().last() {
            *self.tokens.borrow_mut() = newest;
        }
        self.tokens.borrow().clone()
    }
}

/// Accept connections on `listener` until the core stops, one task each.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, kind: Listener, state: Rc<HttpState>) {
    while let Some(accepted) = crate::net::accept_or_stop(&shard, &listener).await {
        match accepted {
            Ok(stream) => {
                let Ok(peer) = stream.peer_addr() else { continue };
                match shard.admit(peer.ip()) {
                    Ok(admission) => {
                        let ctx = Rc::new(Ctx {
                            shard: shard.clone(),
                            listener: kind,
                            peer,
                            tls: false,
                            state: state.clone(),
                        });
                        glommio::spawn_local(async move {
                            serve(ctx, stream).await;
                            drop(admission);
                        })
                        .detach();
                    }
                    Err(refusal) => {
                        // fail2ban: `WARN refused core=N client=IP ...` (README, Security)
                        tracing::warn!(core = shard.id, client = %peer.ip(), proto = kind.name(), reason = refusal.reason(), "refused");
                        drop(stream);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(core = shard.id, proto = kind.name(), error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One connection: the TLS handshake when the API is HTTPS, then hyper.
async fn serve(ctx: Rc<Ctx>, stream: TcpStream) {
    let config = ctx.shard.config();
    let (limit, tls) = match ctx.listener {
        Listener::Metrics => (METRICS_TIMEOUT, false),
        Listener::Api => (config.http.request_timeout.get(), config.http.tls),
    };
    let _ = stream.set_nodelay(true);
    // A silent connection (idle keep-alive, or one that never sends) is
    // closed a second after the deadline (later than it, so that a request
    // begun and stalled is answered 408 by the watcher, not cut by a read
    // timing out); so is one that stops reading.
    let _ = stream.set_read_timeout(Some(limit + Duration::from_secs(1)));
    let _ = stream.set_write_timeout(Some(limit));
    if !tls {
        return run(ctx, stream, limit).await;
    }
    let acceptor = futures_rustls::TlsAcceptor::from(ctx.shard.tls_config());
    let handshake_timeout = config.limits.tls_handshake_timeout.get();
    drop(config);
    let handshake = futures_lite::future::or(async { Some(acceptor.accept(stream).await) }, async {
        glommio::timer::sleep(handshake_timeout).await;
        None
    })
    .await;
    ctx.shard.metrics.tls_handshake(matches!(handshake, Some(Ok(_))));
    match handshake {
        Some(Ok(tls_stream)) => {
            let ctx = Rc::new(Ctx {
                shard: ctx.shard.clone(),
                listener: ctx.listener,
                peer: ctx.peer,
                tls: true,
                state: ctx.state.clone(),
            });
            run(ctx, tls_stream, limit).await
        }
        Some(Err(e)) => {
            tracing::info!(core = ctx.shard.id, client = %ctx.peer.ip(), proto = "http", error = %e, "TLS handshake failed")
        }
        None => tracing::info!(core = ctx.shard.id, client = %ctx.peer.ip(), proto = "http", "TLS handshake timed out"),
    }
}

/// How a connection ended.
enum Ending {
    /// hyper finished it (the client closed, or an answer with
    /// `Connection: close`, or an error hyper answered or could not).
    Done(Result<(), hyper::Error>),
    /// A request did not arrive whole in time.
    TooSlow,
}

/// Serve HTTP/1 over `stream` until the connection ends or a request is
/// too slow to arrive.
async fn run<S>(ctx: Rc<Ctx>, stream: S, limit: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let stream = Rc::new(RefCell::new(stream));
    let clock = Rc::new(RequestClock::default());
    let io = HyperIo::new(stream.clone(), clock.clone());
    let service = {
        let (ctx, clock) = (ctx.clone(), clock.clone());
        hyper::service::service_fn(move |req| {
            let (ctx, clock) = (ctx.clone(), clock.clone());
            async move { Ok::<_, std::convert::Infallible>(route(&ctx, &clock, req).await) }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        // The metrics listener answers one request and closes, as scrapers
        // and the old server expect; the API keeps connections for reuse.
        .keep_alive(ctx.listener == Listener::Api)
        // Our own deadline (below) covers head and body; hyper's needs a
        // timer of its own.
        .header_read_timeout(None)
        .max_header_size(MAX_HEAD)
        // `Content-Length`, not `content-length`: scripts that grep a
        // response (and the old server's clients) see what they always saw.
        .title_case_headers(true);
    let connection = builder.serve_connection(io, service);
    let ending = futures_lite::future::or(async { Ending::Done(connection.await) }, async {
        overdue(&clock, limit).await;
        Ending::TooSlow
    })
    .await;
    // hyper's connection (and with it its handle on the stream) is gone.
    let Ok(stream) = Rc::try_unwrap(stream) else { return };
    let mut stream = stream.into_inner();
    match ending {
        Ending::Done(Ok(())) => {}
        Ending::Done(Err(e)) => {
            tracing::debug!(core = ctx.shard.id, client = %ctx.peer.ip(), proto = ctx.listener.name(), error = %e, "http connection ended")
        }
        Ending::TooSlow => {
            tracing::info!(core = ctx.shard.id, client = %ctx.peer.ip(), proto = ctx.listener.name(), "http request timed out");
            if clock.unanswered() {
                let _ = stream.write_all(&super::reply::request_timeout_bytes(limit)).await;
            }
        }
    }
    let _ = stream.close().await;
}

/// Resolves once a request has taken longer than `limit` from its first
/// byte to arriving whole.
async fn overdue(clock: &RequestClock, limit: Duration) {
    loop {
        let wait = match clock.phase() {
            Phase::Receiving { since } => match (since + limit).checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left,
                _ => return,
            },
            Phase::Idle | Phase::Handling => WATCH_TICK,
        };
        glommio::timer::sleep(wait).await;
    }
}
