//! glommio drivers: accept connections and run the sans-I/O protocol state
//! machines over them. Drivers are boring loops — read, feed, perform the
//! actions the machine asks for, write — and hold no protocol logic.

mod conn;
pub mod control;
pub mod milter;
mod pop3_driver;
pub mod proxy;
pub(crate) mod smtp_driver;
pub mod tls;

use crate::config::Config;
use crate::shard::Shard;
use glommio::net::TcpListener;
use std::net::SocketAddr;
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

/// Accept connections until the core stops, one task per session.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, proto: Protocol) {
    while let Some(accepted) = accept_or_stop(&shard, &listener).await {
        match accepted {
            Ok(stream) => {
                let peer = match stream.peer_addr() {
                    Ok(p) => p,
                    Err(_) => continue, // already gone
                };
                let _ = stream.set_nodelay(true);
                let conn = conn::Conn::new(stream, peer);
                glommio::spawn_local(session(shard.clone(), conn, proto)).detach();
            }
            Err(e) => {
                // EMFILE/ENFILE and friends: back off instead of spinning.
                tracing::warn!(core = shard.id, proto = proto.name(), error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
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
async fn session(shard: Rc<Shard>, mut conn: conn::Conn, proto: Protocol) {
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
    match proto {
        Protocol::Smtp | Protocol::Submission | Protocol::Smtps => smtp_driver::run(shard.clone(), conn, proto).await,
        Protocol::Pop3 | Protocol::Pop3s => pop3_driver::run(shard.clone(), conn).await,
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
