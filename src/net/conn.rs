//! A client connection: the socket plus the bytes read but not yet
//! consumed by the protocol machine.

use crate::shard::Stop;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::server::TlsStream;
use glommio::net::TcpStream;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Bytes asked for per read: small while the client trickles commands (an
/// idle session then holds only this much), growing while reads come back
/// full (DATA), up to the large size. The protocol machines consume whole
/// lines (or all of DATA), so the buffer stays within a line limit plus
/// one read.
const SMALL_READ: usize = 4 * 1024;
const LARGE_READ: usize = 64 * 1024;

/// The socket, plain or after a TLS handshake (STARTTLS/STLS or implicit).
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only during a handshake, or after one failed.
    Gone,
}

pub struct Conn {
    stream: Stream,
    pub peer: SocketAddr,
    /// Read but not yet consumed.
    pub inbuf: Vec<u8>,
    /// Size of the next read (between SMALL_READ and LARGE_READ).
    chunk: usize,
}

/// How a read ended when it brought no data.
pub enum ReadEnd {
    Eof,
    Timeout,
    Error(io::Error),
}

impl Conn {
    pub fn new(stream: TcpStream, peer: SocketAddr) -> Conn {
        Conn { stream: Stream::Plain(stream), peer, inbuf: Vec::new(), chunk: SMALL_READ }
    }

    fn tcp(&self) -> Option<&TcpStream> {
        match &self.stream {
            Stream::Plain(s) => Some(s),
            Stream::Tls(t) => Some(t.get_ref().0),
            Stream::Gone => None,
        }
    }

    pub fn set_idle_timeout(&self, d: Duration) {
        if let Some(t) = self.tcp() {
            let _ = t.set_read_timeout(Some(d));
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// TLS handshake as the server, bounded by `timeout` (a client that
    /// never finishes it, or sends garbage, is dropped). Anything the
    /// client sent before the handshake is discarded (CVE-2011-0411).
    pub async fn start_tls(&mut self, config: Arc<rustls::ServerConfig>, timeout: Duration) -> io::Result<()> {
        self.inbuf.clear();
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(io::Error::other("TLS is already active"));
        };
        let _ = tcp.set_read_timeout(Some(timeout));
        let _ = tcp.set_write_timeout(Some(timeout));
        let tls = futures_rustls::TlsAcceptor::from(config).accept(tcp).await?;
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// Read more bytes onto `inbuf`.
    pub async fn fill(&mut self) -> Result<usize, ReadEnd> {
        let start = self.inbuf.len();
        self.inbuf.resize(start + self.chunk, 0);
        let r = match &mut self.stream {
            Stream::Plain(s) => s.read(&mut self.inbuf[start..]).await,
            Stream::Tls(t) => t.read(&mut self.inbuf[start..]).await,
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        };
        match r {
            Ok(0) => {
                self.inbuf.truncate(start);
                Err(ReadEnd::Eof)
            }
            Ok(n) => {
                self.inbuf.truncate(start + n);
                self.chunk = if n == self.chunk { (n * 2).min(LARGE_READ) } else { SMALL_READ.max(self.chunk / 2) };
                Ok(n)
            }
            Err(e) => {
                self.inbuf.truncate(start);
                if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) {
                    Err(ReadEnd::Timeout)
                } else {
                    Err(ReadEnd::Error(e))
                }
            }
        }
    }

    /// Drop the first `n` bytes of `inbuf` (the machine consumed them).
    pub fn consume(&mut self, n: usize) {
        if n > 0 {
            self.inbuf.drain(..n);
        }
        // After a burst (DATA), give the big buffer back: idle sessions
        // should cost a few KiB, not the largest read they ever did.
        if self.inbuf.is_empty() && self.inbuf.capacity() > 2 * self.chunk {
            self.inbuf = Vec::new();
        }
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        match &mut self.stream {
            Stream::Plain(s) => s.write_all(bytes).await,
            Stream::Tls(t) => {
                t.write_all(bytes).await?;
                t.flush().await
            }
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    pub async fn close(mut self) {
        let _ = match &mut self.stream {
            Stream::Plain(s) => s.close().await,
            Stream::Tls(t) => t.close().await,
            Stream::Gone => Ok(()),
        };
    }
}

/// What the drivers need of a protocol machine to write its replies and
/// end a session; both [`smtp::Server`] and [`pop3::Server`] have it.
///
/// [`smtp::Server`]: crate::proto::smtp::Server
/// [`pop3::Server`]: crate::proto::pop3::Server
pub trait Machine {
    fn output(&self) -> &[u8];
    fn clear_output(&mut self);
    fn handle_timeout(&mut self);
    fn handle_eof(&mut self);
    fn is_idle(&self) -> bool;
    fn shutdown(&mut self) -> bool;
}

macro_rules! impl_machine {
    ($t:ty) => {
        impl Machine for $t {
            fn output(&self) -> &[u8] {
                <$t>::output(self)
            }
            fn clear_output(&mut self) {
                <$t>::clear_output(self)
            }
            fn handle_timeout(&mut self) {
                <$t>::handle_timeout(self)
            }
            fn handle_eof(&mut self) {
                <$t>::handle_eof(self)
            }
            fn is_idle(&self) -> bool {
                <$t>::is_idle(self)
            }
            fn shutdown(&mut self) -> bool {
                <$t>::shutdown(self)
            }
        }
    };
}
impl_machine!(crate::proto::smtp::Server);
impl_machine!(crate::proto::pop3::Server);

impl Conn {
    /// Write whatever replies the machine has pending.
    pub async fn flush(&mut self, m: &mut impl Machine) -> io::Result<()> {
        if m.output().is_empty() {
            return Ok(());
        }
        let r = self.write_all(m.output()).await;
        m.clear_output();
        r
    }

    /// Read more input for `m`. On idle timeout the machine says goodbye
    /// (flushed here); on EOF or a read error it is told the peer is gone.
    /// When `stop` is raised while the machine is idle it says goodbye too
    /// (421 / -ERR); a machine inside DATA keeps reading until it is idle.
    /// Returns false when the session is over.
    pub async fn read_more(&mut self, m: &mut impl Machine, stop: &Stop, core: usize, proto: &str) -> bool {
        if m.is_idle() {
            if stop.is_set() && m.shutdown() {
                let _ = self.flush(m).await;
                return false;
            }
            // Only an idle machine races the read against the stop: the
            // cancelled read may lose bytes, which matters only to a
            // session that then goes on.
            let start = self.inbuf.len();
            let read = futures_lite::future::or(async { Some(self.fill().await) }, async {
                stop.wait().await;
                None
            })
            .await;
            return match read {
                Some(r) => self.after_fill(r, m, core, proto).await,
                None => {
                    self.inbuf.truncate(start);
                    m.shutdown();
                    let _ = self.flush(m).await;
                    false
                }
            };
        }
        let r = self.fill().await;
        self.after_fill(r, m, core, proto).await
    }

    async fn after_fill(&mut self, r: Result<usize, ReadEnd>, m: &mut impl Machine, core: usize, proto: &str) -> bool {
        match r {
            Ok(_) => true,
            Err(ReadEnd::Timeout) => {
                m.handle_timeout();
                let _ = self.flush(m).await;
                tracing::info!(core, client = %self.peer, proto, "idle timeout");
                false
            }
            Err(ReadEnd::Eof) => {
                m.handle_eof();
                false
            }
            Err(ReadEnd::Error(e)) => {
                tracing::debug!(core, client = %self.peer, proto, error = %e, "read failed");
                m.handle_eof();
                false
            }
        }
    }
}
