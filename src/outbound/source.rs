//! Egress: which source address (and EHLO name) a connection leaves from,
//! and the socket bound to it.
//!
//! `[[relay.pool]]` names sets of source addresses with weights; the
//! envelope sender's domain picks the pool when mail is queued
//! (`Relay::pool_for_sender`, kept in the queue's [`crate::queue::Dest`]).
//! Without pools a connection leaves from the address the kernel picks and
//! says the server's `hostname`, as before.
//!
//! Why the bound connect looks odd: glommio connects only sockets it made
//! itself, with no way to bind them first. A bound socket is connected
//! without blocking here and handed to glommio still connecting; the first
//! read (the server's greeting) then waits for the connection as well: a
//! socket still connecting has nothing to read, and a refused one reports
//! the refusal to that read. The greeting's timeout is stretched by the
//! connect timeout to cover both.

use crate::config::Relay;
use glommio::net::TcpStream;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{FromRawFd, IntoRawFd};

/// One source a connection may leave from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// None: the kernel's choice (no pools).
    pub ip: Option<IpAddr>,
    /// The EHLO name; None: the server's hostname.
    pub ehlo: Option<String>,
    pub weight: u32,
}

/// The sources of egress pool `pool` (`[None]`-like default without one).
pub fn sources(relay: &Relay, pool: Option<u16>) -> Vec<Source> {
    match pool.and_then(|p| relay.pool.get(p as usize)) {
        Some(p) if !p.sources.is_empty() => {
            p.sources.iter().map(|s| Source { ip: Some(s.ip), ehlo: s.ehlo.clone(), weight: s.weight.max(1) }).collect()
        }
        _ => vec![Source { ip: None, ehlo: None, weight: 1 }],
    }
}

/// The pool index for mail from `sender`, as the queue keeps it.
pub fn pool_for(relay: &Relay, sender: &str) -> Option<u16> {
    relay.pool_for_sender(sender).and_then(|i| u16::try_from(i).ok())
}

/// A TCP connection to `addr` from `source`: connected when it returns if
/// `source` is None, still connecting (see the module doc) otherwise.
pub async fn connect(addr: SocketAddr, source: Option<IpAddr>, timeout: std::time::Duration) -> io::Result<TcpStream> {
    let Some(ip) = source else {
        return TcpStream::connect_timeout(addr, timeout).await.map_err(io::Error::from);
    };
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SockAddr::from(SocketAddr::new(ip, 0)))?;
    socket.set_nonblocking(true)?;
    match socket.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    // glommio drives the socket through io_uring, which waits by itself.
    socket.set_nonblocking(false)?;
    // SAFETY: the descriptor is a TCP socket we own, handed over whole.
    Ok(unsafe { TcpStream::from_raw_fd(socket.into_raw_fd()) })
}
