//! A connection that is plain TCP or TLS (client or server side), and a read
//! buffer that the sans-I/O machines parse from.
//!
//! Every socket gets TCP_NODELAY (a TLS handshake took 44 ms without it) and
//! glommio's per-socket read/write timeouts, so no await here can hang past
//! `--timeout`.

use futures_lite::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Plain or TLS, so drivers need not be generic.
pub enum Stream {
    Plain(TcpStream),
    Client(Box<futures_rustls::client::TlsStream<TcpStream>>),
    Server(Box<futures_rustls::server::TlsStream<TcpStream>>),
}

impl Stream {
    /// The plain socket, for a STARTTLS upgrade. `None` if already TLS.
    pub fn into_plain(self) -> Option<TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Client(_) | Stream::Server(_) => None,
        }
    }

    /// Writes everything and flushes (TLS buffers records until flushed).
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes).await?;
        self.flush().await
    }
}

/// Connects with a connect timeout and sets NODELAY and read/write timeouts.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(addr, timeout).await.map_err(io::Error::from)?;
    prepare(&s, timeout)?;
    Ok(s)
}

/// NODELAY and timeouts on an accepted or connected socket.
pub fn prepare(s: &TcpStream, timeout: Duration) -> io::Result<()> {
    s.set_nodelay(true).map_err(io::Error::from)?;
    s.set_read_timeout(Some(timeout)).map_err(io::Error::from)?;
    s.set_write_timeout(Some(timeout)).map_err(io::Error::from)?;
    Ok(())
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_close(cx),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_close(cx),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

/// A growable read buffer: bytes `[start, end)` are unparsed input.
pub struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// Largest the buffer grows to when one item (a reply, a line) does not fit.
const MAX_BUF: usize = 1 << 20;

impl ReadBuf {
    /// A buffer with `cap` bytes to start with.
    pub fn new(cap: usize) -> Self {
        ReadBuf { buf: vec![0; cap], start: 0, end: 0 }
    }

    /// Unparsed bytes.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` bytes as parsed.
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// True when nothing is buffered (a STARTTLS reply must end the input).
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Reads more bytes. Returns 0 at end of stream. Errors with
    /// `InvalidData` if the buffer is full of one unparsable item.
    pub async fn fill(&mut self, stream: &mut Stream) -> io::Result<usize> {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < MAX_BUF {
                let len = (self.buf.len() * 2).min(MAX_BUF);
                self.buf.resize(len, 0);
            } else {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "input item too large"));
            }
        }
        let n = futures_lite::io::AsyncReadExt::read(stream, &mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }
}
