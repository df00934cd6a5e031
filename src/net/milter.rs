//! Asks one milter about one message: connects (TCP or Unix socket,
//! through io_uring, never blocking the executor), runs the sans-I/O
//! [`Session`](crate::proto::milter::Session) over the socket, and returns
//! its verdict. Every connect, read and write is bounded by the milter's
//! `timeout`; a reply frame is bounded by the codec.

use crate::config::MilterAddr;
use crate::proto::milter::{Conversation, Session, SessionError, Verdict};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpStream, UnixStream};
use std::future::Future;
use std::io;
use std::time::Duration;

/// Why a milter gave no verdict.
#[derive(Debug, thiserror::Error)]
pub enum MilterError {
    #[error("connect: {0}")]
    Connect(io::Error),
    #[error("{0}: {1}")]
    Io(&'static str, io::Error),
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error(transparent)]
    Protocol(#[from] SessionError),
}

/// A milter's verdict and whether it asked for header values with their
/// leading blank (`SMFIP_HDR_LEADSPC`: its changes are written that way).
pub struct Answer {
    pub verdict: Verdict,
    pub leading_space: bool,
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(buf).await,
            Stream::Unix(s) => s.write_all(buf).await,
        }
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf).await,
            Stream::Unix(s) => s.read(buf).await,
        }
    }

    async fn close(&mut self) {
        let _ = match self {
            Stream::Tcp(s) => s.close().await,
            Stream::Unix(s) => s.close().await,
        };
    }
}

/// `fut`, or `Timeout(what)` after `limit`.
async fn bounded<T>(
    limit: Duration,
    what: &'static str,
    fut: impl Future<Output = Result<T, MilterError>>,
) -> Result<T, MilterError> {
    futures_lite::future::or(fut, async {
        glommio::timer::sleep(limit).await;
        Err(MilterError::Timeout(what))
    })
    .await
}

/// Run the whole conversation with the milter at `addr`. `max_body`
/// bounds a replacement body.
pub async fn ask(
    addr: &MilterAddr,
    timeout: Duration,
    conv: &Conversation,
    max_body: usize,
) -> Result<Answer, MilterError> {
    let mut stream = bounded(timeout, "connect", async {
        match addr {
            MilterAddr::Inet(sa) => {
                let s = TcpStream::connect(*sa).await.map_err(|e| MilterError::Connect(e.into()))?;
                // Every step is a small request and reply (see DESIGN.md).
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
            MilterAddr::Unix(path) => {
                Ok(Stream::Unix(UnixStream::connect(path).await.map_err(|e| MilterError::Connect(e.into()))?))
            }
        }
    })
    .await?;
    let result = converse(&mut stream, timeout, conv, max_body).await;
    stream.close().await;
    result
}

async fn converse(
    stream: &mut Stream,
    timeout: Duration,
    conv: &Conversation,
    max_body: usize,
) -> Result<Answer, MilterError> {
    let mut session = Session::new(conv, max_body);
    let mut inbuf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let out = session.take_output();
        if session.verdict().is_some() {
            // The QUIT is a courtesy: the verdict stands if it is lost.
            let _ = bounded(timeout, "write", async {
                stream.write_all(&out).await.map_err(|e| MilterError::Io("write", e))
            })
            .await;
            let leading_space = session.leading_space();
            let verdict = session.into_verdict().ok_or(SessionError::Closed)?;
            return Ok(Answer { verdict, leading_space });
        }
        if !out.is_empty() {
            bounded(timeout, "write", async { stream.write_all(&out).await.map_err(|e| MilterError::Io("write", e)) })
                .await?;
        }
        let n =
            bounded(timeout, "read", async { stream.read(&mut chunk).await.map_err(|e| MilterError::Io("read", e)) })
                .await?;
        if n == 0 {
            return Err(SessionError::Closed.into());
        }
        inbuf.extend_from_slice(&chunk[..n]);
        // The codec refuses an oversized frame from its length field, so
        // `inbuf` holds at most one frame plus one read.
        let used = session.handle_input(&inbuf)?;
        inbuf.drain(..used);
    }
}
