//! The metrics endpoint: a deliberately tiny HTTP/1.x server on
//! `[listen] metrics`. GET /metrics answers the Prometheus text of every
//! core; anything else is 404 (400 for what is not HTTP). One request per
//! connection, a bounded head that must arrive whole within [`TIMEOUT`]
//! (not per read: a byte every few seconds does not keep it open), and the
//! connection counts against `limits.max_connections` and
//! `max_connections_per_ip` like a mail session, so a scraper (or an
//! attacker) cannot hold a core's mail traffic up or its sockets open: each
//! request is its own task, and gathering the other cores' snapshots
//! travels the mesh like any request.

use crate::shard::Shard;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::time::Duration;

/// Largest request head read; a longer one is refused.
const MAX_HEAD: usize = 8 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Metrics,
    /// HEAD /metrics: the headers of GET, no body.
    MetricsHead,
    NotFound,
    BadRequest,
}

/// Decide from the request line alone (headers are ignored).
pub fn route(head: &[u8]) -> Route {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => Route::Metrics,
        ("HEAD", "/metrics") => Route::MetricsHead,
        _ => Route::NotFound,
    }
}

pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    while let Some(accepted) = super::accept_or_stop(&shard, &listener).await {
        match accepted {
            Ok(stream) => {
                let Ok(peer) = stream.peer_addr() else { continue };
                match shard.admit(peer.ip()) {
                    Ok(admission) => {
                        let shard = shard.clone();
                        glommio::spawn_local(async move {
                            serve(shard, stream).await;
                            drop(admission);
                        })
                        .detach();
                    }
                    Err(refusal) => {
                        tracing::warn!(core = shard.id, client = %peer.ip(), proto = "metrics", reason = refusal.reason(), "refused");
                        drop(stream);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(core = shard.id, error = %e, "metrics accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve(shard: Rc<Shard>, mut stream: TcpStream) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if head.len() > MAX_HEAD {
            break false;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break false;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    };
    let asked = route(&head);
    let (status, body) = match (complete, &asked) {
        (false, _) | (_, Route::BadRequest) => ("400 Bad Request", "bad request\n".to_string()),
        (true, Route::NotFound) => ("404 Not Found", "not found; metrics are at GET /metrics\n".to_string()),
        (true, Route::Metrics | Route::MetricsHead) => {
            let mut page = crate::metrics::render(&shard.gather_metrics().await);
            let process = crate::metrics::process::ProcessStats::read();
            crate::metrics::process::render(&mut page, &process, crate::net::tls::loaded_certificate_expiry());
            crate::outbound::sites::render_metrics(&shard.outbound.sites.rows(crate::clock::now_ms()), &mut page);
            ("200 OK", page)
        }
    };
    let content_type = if status.starts_with("200") {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !(complete && asked == Route::MetricsHead) {
        response.push_str(&body);
    }
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_is_served() {
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"HEAD /metrics HTTP/1.1\r\n\r\n"), Route::MetricsHead);
        assert_eq!(route(b"GET /metrics/x HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"EHLO example.com\r\n"), Route::BadRequest);
        assert_eq!(route(b"GET /metrics SMTP/1.0\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"\r\n\r\n"), Route::BadRequest);
    }
}
