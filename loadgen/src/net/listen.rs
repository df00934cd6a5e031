//! Listening sockets for the sink: one SO_REUSEPORT socket per core, all on
//! the same port, created up front so that `--listen 127.0.0.1:0` gets one
//! port for every core and the caller learns it before any core starts.
//!
//! glommio's own `TcpListener::bind` always sets SO_REUSEPORT, so a stale
//! process on the same port would silently take a share of the connections.
//! We therefore first prove the port is free with a plain bind.

use anyhow::{bail, Context, Result};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};

/// Backlog asked for; the kernel caps it at net.core.somaxconn.
const BACKLOG: i32 = 4096;

/// Binds `n` listening sockets to `addr` (port 0 picks one port for all).
/// Returns the bound address and the raw fds, one per core, to be adopted
/// with `glommio::net::TcpListener::from_raw_fd` inside each executor.
pub fn bind_reuseport(addr: SocketAddr, n: usize) -> Result<(SocketAddr, Vec<RawFd>)> {
    if addr.port() != 0 {
        if let Err(e) = std::net::TcpListener::bind(addr) {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                bail!(
                    "cannot listen on {addr}: the port is already in use \
                     (another process, maybe an earlier sink, holds it)"
                );
            }
            return Err(e).with_context(|| format!("cannot listen on {addr}"));
        }
    }
    let mut bound = addr;
    let mut fds = Vec::with_capacity(n);
    for _ in 0..n {
        let domain = if addr.is_ipv6() { Domain::IPV6 } else { Domain::IPV4 };
        let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_port(true)?;
        s.set_reuse_address(true)?;
        s.bind(&bound.into()).with_context(|| format!("cannot listen on {bound}"))?;
        s.listen(BACKLOG)?;
        if bound.port() == 0 {
            bound = s.local_addr()?.as_socket().context("listener has no socket address")?;
        }
        fds.push(s.into_raw_fd());
    }
    Ok((bound, fds))
}
