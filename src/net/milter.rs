//! Asks one milter about one message: connects (TCP or Unix socket,
//! through io_uring, never blocking the executor), runs the sans-I/O
//! [`Session`](crate::proto::milter::Session) over the socket, and returns
//! its verdict; or keeps a connection for an SMTP session's live steps
//! ([`LiveConn`], `stage = "connect"`). Every connect, read and write is bounded by the milter's
//! `timeout`; a reply frame is bounded by the codec.

use crate::config::MilterAddr;
use crate::proto::milter::{Conversation, Live, Session, SessionError, StepReply, Verdict};
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

/// Connect to the milter at `addr`, bounded by `timeout`.
async fn open(addr: &MilterAddr, timeout: Duration) -> Result<Stream, MilterError> {
    bounded(timeout, "connect", async {
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
    let mut stream = open(addr, timeout).await?;
    let mut inbuf = Vec::with_capacity(4096);
    let result = converse(&mut stream, &mut inbuf, timeout, Session::new(conv, max_body)).await;
    stream.close().await;
    result
}

async fn write(stream: &mut Stream, timeout: Duration, out: &[u8]) -> Result<(), MilterError> {
    if out.is_empty() {
        return Ok(());
    }
    bounded(timeout, "write", async { stream.write_all(out).await.map_err(|e| MilterError::Io("write", e)) }).await
}

/// Read once onto `inbuf`; a closed connection is an error.
async fn read(stream: &mut Stream, timeout: Duration, inbuf: &mut Vec<u8>) -> Result<(), MilterError> {
    let mut chunk = [0u8; 16 * 1024];
    let n = bounded(timeout, "read", async { stream.read(&mut chunk).await.map_err(|e| MilterError::Io("read", e)) })
        .await?;
    if n == 0 {
        return Err(SessionError::Closed.into());
    }
    // The codec refuses an oversized frame from its length field, so
    // `inbuf` holds at most one frame plus one read.
    inbuf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// Drive `session` to its verdict over `stream`.
async fn converse(
    stream: &mut Stream,
    inbuf: &mut Vec<u8>,
    timeout: Duration,
    mut session: Session<'_>,
) -> Result<Answer, MilterError> {
    loop {
        let out = session.take_output();
        if session.verdict().is_some() {
            // A QUIT (the replay's) is a courtesy: the verdict stands if
            // it is lost.
            let _ = write(stream, timeout, &out).await;
            let leading_space = session.leading_space();
            let verdict = session.into_verdict().ok_or(SessionError::Closed)?;
            return Ok(Answer { verdict, leading_space });
        }
        write(stream, timeout, &out).await?;
        // Replies already buffered come first (none are expected, but a
        // milter may send ahead).
        let used = session.handle_input(inbuf)?;
        inbuf.drain(..used);
        if session.verdict().is_some() || used > 0 {
            continue;
        }
        read(stream, timeout, inbuf).await?;
        let used = session.handle_input(inbuf)?;
        inbuf.drain(..used);
    }
}

/// A milter connection kept for one SMTP session (`stage = "connect"`):
/// the sans-I/O [`Live`] over a socket. Every step is bounded by
/// `timeout`; after an error the connection is no longer usable.
pub struct LiveConn {
    stream: Stream,
    live: Live,
    inbuf: Vec<u8>,
    timeout: Duration,
}

impl LiveConn {
    /// Connect and negotiate.
    pub async fn open(addr: &MilterAddr, timeout: Duration) -> Result<LiveConn, MilterError> {
        let stream = open(addr, timeout).await?;
        let mut conn = LiveConn { stream, live: Live::new(), inbuf: Vec::with_capacity(1024), timeout };
        match conn.answer().await {
            Ok(_) => Ok(conn),
            Err(e) => {
                conn.stream.close().await;
                Err(e)
            }
        }
    }

    /// Ask one step (`f` queues it on the [`Live`]) and wait for its reply.
    pub async fn step(&mut self, f: impl FnOnce(&mut Live) -> Option<StepReply>) -> Result<StepReply, MilterError> {
        match f(&mut self.live) {
            Some(reply) => {
                // Not waited for: the step (if sent) goes out now anyway.
                let out = self.live.take_output();
                write(&mut self.stream, self.timeout, &out).await?;
                Ok(reply)
            }
            None => self.answer().await,
        }
    }

    /// Write what is queued and read until the outstanding reply is there.
    async fn answer(&mut self) -> Result<StepReply, MilterError> {
        let out = self.live.take_output();
        write(&mut self.stream, self.timeout, &out).await?;
        loop {
            let (used, reply) = self.live.handle_input(&self.inbuf)?;
            self.inbuf.drain(..used);
            if let Some(reply) = reply {
                return Ok(reply);
            }
            read(&mut self.stream, self.timeout, &mut self.inbuf).await?;
        }
    }

    /// The message part of the transaction (DATA to end of message).
    pub async fn message(&mut self, conv: &Conversation, max_body: usize) -> Result<Answer, MilterError> {
        let session = self.live.message(conv, max_body);
        converse(&mut self.stream, &mut self.inbuf, self.timeout, session).await
    }

    /// Forget an unfinished message (ABORT has no reply).
    pub async fn abort(&mut self) -> Result<(), MilterError> {
        self.live.abort();
        let out = self.live.take_output();
        write(&mut self.stream, self.timeout, &out).await
    }

    /// Say QUIT (best effort) and close.
    pub async fn close(mut self) {
        self.live.quit();
        let out = self.live.take_output();
        let _ = write(&mut self.stream, self.timeout, &out).await;
        self.stream.close().await;
    }
}
