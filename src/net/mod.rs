//! glommio drivers: accept connections and run the sans-I/O protocol state
//! machines over them. Drivers are boring loops — read, feed, perform the
//! actions the machine asks for, write — and hold no protocol logic.

pub mod balance;
mod conn;
pub mod control;
pub mod milter;
mod pop3_driver;
pub mod proxy;
pub(crate) mod smtp_driver;
pub mod tls;

use crate::config::Config;
use crate::shard::{Shard, ShardMsg};
use glommio::net::TcpListener;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Port 25: mail from other servers; STARTTLS offered.
    Smtp,
    /// Port 587: users' mail programs; STARTTLS, AUTH required (RFC 6409).
    Submission,
    /// Port 465: submission over implicit TLS (RFC 8314).
    Smtps,
    /// Port 110: STLS offered.
    Pop3,
    /// Port 995: POP3 over implicit TLS.
    Pop3s,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp",
            Protocol::Submission => "submission",
            Protocol::Smtps => "smtps",
            Protocol::Pop3 => "pop3",
            Protocol::Pop3s => "pop3s",
        }
    }

    /// Position in [`crate::metrics::PROTOCOLS`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// TLS from the first byte (RFC 8314)?
    pub fn implicit_tls(self) -> bool {
        matches!(self, Protocol::Smtps | Protocol::Pop3s)
    }

    fn is_smtp(self) -> bool {
        matches!(self, Protocol::Smtp | Protocol::Submission | Protocol::Smtps)
    }
}

/// The listeners configured in `[listen]`.
pub fn listeners(config: &Config) -> Vec<(Protocol, SocketAddr)> {
    let l = &config.listen;
    [
        (Protocol::Smtp, l.smtp),
        (Protocol::Submission, l.submission),
        (Protocol::Smtps, l.smtps),
        (Protocol::Pop3, l.pop3),
        (Protocol::Pop3s, l.pop3s),
    ]
    .into_iter()
    .filter_map(|(p, a)| a.map(|a| (p, a)))
    .collect()
}

/// Accept connections until the core stops, one task per session: here, or
/// on a core with fewer sessions of the kind (see [`balance`]).
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, proto: Protocol) {
    while let Some(accepted) = accept_or_stop(&shard, &listener).await {
        match accepted {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let seat = shard.balancer.place(shard.id, proto.index(), shard.config().listen.balance);
                if seat.core() == shard.id {
                    start(&shard, stream, proto, seat);
                } else {
                    hand_over(&shard, stream, proto, seat);
                }
            }
            Err(e) => {
                // EMFILE/ENFILE and friends: back off instead of spinning.
                tracing::warn!(core = shard.id, proto = proto.name(), error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Run the session of `stream` on this core.
fn start(shard: &Rc<Shard>, stream: glommio::net::TcpStream, proto: Protocol, seat: balance::Seat) {
    let Ok(peer) = stream.peer_addr() else {
        return; // already gone
    };
    let conn = conn::Conn::new(stream, peer);
    glommio::spawn_local(session(shard.clone(), conn, proto, seat)).detach();
}

/// A connection accepted on one core and handed to another before a byte
/// was read from it: the socket (a duplicate of the accepting core's
/// descriptor, which that core closed), what it speaks, and its seat on the
/// new core. Dropped unstarted (the core stopping), it closes the socket.
pub struct Handoff {
    socket: OwnedFd,
    proto: Protocol,
    seat: balance::Seat,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff").field("socket", &self.socket).field("proto", &self.proto).finish()
    }
}

/// Send `stream` to the core its seat is on. The mesh send waits while that
/// core's channel is full, so it runs in a task of its own, not in the
/// accept loop.
fn hand_over(shard: &Rc<Shard>, stream: glommio::net::TcpStream, proto: Protocol, seat: balance::Seat) {
    // The socket outlives this core's stream: glommio's stream closes (never
    // shuts down) its descriptor when dropped, and the duplicate keeps the
    // connection open.
    // SAFETY: the descriptor is open for as long as `stream` lives.
    let socket = match unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }.try_clone_to_owned() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(core = shard.id, proto = proto.name(), error = %e, "handing a connection over failed; served here");
            let seat = shard.balancer.place(shard.id, proto.index(), false);
            return start(shard, stream, proto, seat);
        }
    };
    drop(stream);
    let to = seat.core();
    shard.metrics.handed_over(proto.index());
    let shard = shard.clone();
    glommio::spawn_local(async move {
        // On failure the handoff is dropped and the client sees a close:
        // only when `to` is shutting down.
        if shard.mesh.send(to, ShardMsg::Adopt(Handoff { socket, proto, seat })).await.is_err() {
            tracing::debug!(core = shard.id, to, "connection not handed over: core stopping");
        }
    })
    .detach();
}

/// Start a session handed over by another core (see [`Handoff`]).
pub fn adopt(shard: &Rc<Shard>, handoff: Handoff) {
    if shard.stop.is_set() {
        return; // stopping: the socket closes
    }
    let Handoff { socket, proto, seat } = handoff;
    // SAFETY: `socket` is an open TCP socket we own; the stream takes it over.
    let stream = unsafe { glommio::net::TcpStream::from_raw_fd(socket.into_raw_fd()) };
    start(shard, stream, proto, seat);
}

/// The next connection, or None once the core is stopping (the listener
/// is then dropped, so this core takes no more connections).
pub(crate) async fn accept_or_stop(
    shard: &Shard,
    listener: &TcpListener,
) -> Option<glommio::Result<glommio::net::TcpStream, ()>> {
    futures_lite::future::or(async { Some(listener.accept().await) }, async {
        shard.stop.wait().await;
        None
    })
    .await
}

/// One client connection from accept to close: connection limits, the
/// implicit TLS handshake, then the protocol's driver.
async fn session(shard: Rc<Shard>, mut conn: conn::Conn, proto: Protocol, seat: balance::Seat) {
    // Counted on this core until the session ends (see [`balance`]).
    let _seat = seat;
    let config = shard.config();
    if config.listen.proxy_from.iter().any(|net| net.contains(&conn.peer.ip())) {
        let proxy = conn.peer;
        match proxy::read_header(&mut conn, config.limits.tls_handshake_timeout.get()).await {
            Ok(Some(client)) => conn.set_peer(client),
            Ok(None) => {} // a health check, or no address: the proxy's own stands
            Err(e) => {
                tracing::warn!(core = shard.id, client = %proxy.ip(), proto = proto.name(), reason = %e, "PROXY header refused");
                conn.close().await;
                return;
            }
        }
        tracing::debug!(core = shard.id, proxy = %proxy, client = %conn.peer, "PROXY header");
    } else {
        conn.refuse_proxy_header();
    }
    let ip = conn.peer.ip();
    // Held until the session ends: its drop gives the slot back.
    let _admission = match shard.admit(ip) {
        Ok(a) => a,
        Err(refusal) => return refuse(&shard, conn, proto, refusal).await,
    };
    if proto.implicit_tls() {
        let handshake = conn.start_tls(shard.tls_config(), config.limits.tls_handshake_timeout.get()).await;
        shard.metrics.tls_handshake(handshake.is_ok());
        if let Err(e) = handshake {
            tracing::info!(core = shard.id, client = %ip, proto = proto.name(), error = %e, "TLS handshake failed");
            shard.metrics.problem(crate::metrics::recent::ErrorKind::TlsHandshake, &ip.to_string(), &e.to_string());
            conn.close().await;
            return;
        }
    }
    drop(config);
    let _open = shard.metrics.session(proto.index());
    let peer = conn.peer;
    tracing::info!(core = shard.id, client = %peer, proto = proto.name(), "connect");
    // Each driver's future boxed, at its own size: inline, every session
    // would be as large as the largest (SMTP's is ~21 KiB in a release
    // build, POP3's ~2.5 KiB), and an idle POP3 session would hold that.
    match proto {
        Protocol::Smtp | Protocol::Submission | Protocol::Smtps => {
            Box::pin(smtp_driver::run(shard.clone(), conn, proto)).await
        }
        Protocol::Pop3 | Protocol::Pop3s => Box::pin(pop3_driver::run(shard.clone(), conn)).await,
    }
    tracing::info!(core = shard.id, client = %peer, proto = proto.name(), "disconnect");
}

/// Turn a connection away: one line saying why (none on implicit TLS, where
/// no handshake has happened), and one log line for fail2ban.
async fn refuse(shard: &Shard, mut conn: conn::Conn, proto: Protocol, refusal: crate::shard::limits::Refusal) {
    // fail2ban: `WARN refused core=N client=IP ...` (README, Security)
    tracing::warn!(core = shard.id, client = %conn.peer.ip(), proto = proto.name(), reason = refusal.reason(), "refused");
    if !proto.implicit_tls() {
        let line = if proto.is_smtp() {
            format!("421 4.7.0 {} Error: {}\r\n", shard.config().hostname, refusal.reason())
        } else {
            format!("-ERR [SYS/TEMP] {}\r\n", refusal.reason())
        };
        let _ = conn.write_all(line.as_bytes()).await;
    }
    conn.close().await;
}
