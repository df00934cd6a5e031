//! A client connection: the socket plus the bytes read but not yet
//! consumed by the protocol machine.

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Bytes asked for per read. The protocol machines consume whole lines (or
/// all of DATA), so the buffer stays within a line limit plus one read.
const READ_CHUNK: usize = 64 * 1024;

pub struct Conn {
    stream: TcpStream,
    pub peer: SocketAddr,
    /// Read but not yet consumed.
    pub inbuf: Vec<u8>,
}

/// How a read ended when it brought no data.
pub enum ReadEnd {
    Eof,
    Timeout,
    Error(io::Error),
}

impl Conn {
    pub fn new(stream: TcpStream, peer: SocketAddr) -> Conn {
        Conn { stream, peer, inbuf: Vec::with_capacity(4096) }
    }

    pub fn set_idle_timeout(&self, d: Duration) {
        let _ = self.stream.set_read_timeout(Some(d));
    }

    /// Read more bytes onto `inbuf`.
    pub async fn fill(&mut self) -> Result<usize, ReadEnd> {
        let start = self.inbuf.len();
        self.inbuf.resize(start + READ_CHUNK, 0);
        let r = self.stream.read(&mut self.inbuf[start..]).await;
        match r {
            Ok(0) => {
                self.inbuf.truncate(start);
                Err(ReadEnd::Eof)
            }
            Ok(n) => {
                self.inbuf.truncate(start + n);
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
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.stream.write_all(bytes).await
    }

    pub async fn close(mut self) {
        let _ = self.stream.close().await;
    }
}
