//! A client connection: the socket plus the bytes read but not yet
//! consumed by the protocol machine, and the clock of how fast the client
//! must be ([`Pace`]: the slow-loris defence).

use crate::shard::Stop;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::server::TlsStream;
use glommio::net::TcpStream;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a client may take, fixed for a session. An idle timer alone
/// restarts on every byte, so one byte every few seconds kept a session
/// for ever; these bound whole units instead.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Longest wait for any byte.
    pub idle: Duration,
    /// A whole command line must arrive within this of its first byte.
    pub command: Duration,
    /// Bytes per second averaged over a message's DATA after [`DATA_GRACE`]
    /// (0: no minimum).
    pub min_data_rate: u64,
    /// The session ends this long after it began.
    pub session: Duration,
}

/// DATA may start slowly (a client assembling the message); the rate is
/// enforced from this long after the 354 on.
pub const DATA_GRACE: Duration = Duration::from_secs(10);

/// Which limit of [`Pace`] ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Idle,
    Command,
    DataRate,
    Session,
}

impl Expiry {
    /// For the log line.
    pub fn reason(self) -> &'static str {
        match self {
            Expiry::Idle => "idle timeout",
            Expiry::Command => "command deadline passed",
            Expiry::DataRate => "data rate below limits.min_data_rate",
            Expiry::Session => "session time limit",
        }
    }
}

/// Where the client is in its input, for [`Pace::deadline`].
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// The session began.
    pub started: Instant,
    /// The first byte of a command line not yet complete arrived.
    pub line_started: Option<Instant>,
    /// Inside DATA: when it began and the bytes received since.
    pub data: Option<(Instant, u64)>,
}

impl Pace {
    /// How fast an SMTP client must be.
    pub fn smtp(limits: &crate::config::Limits) -> Pace {
        Pace::with_idle(limits, limits.smtp_idle_timeout.get())
    }

    /// How fast a POP3 client must be.
    pub fn pop3(limits: &crate::config::Limits) -> Pace {
        Pace::with_idle(limits, limits.pop3_idle_timeout.get())
    }

    fn with_idle(limits: &crate::config::Limits, idle: Duration) -> Pace {
        Pace {
            idle,
            command: limits.command_deadline.get(),
            min_data_rate: limits.min_data_rate,
            session: limits.max_session_time.get(),
        }
    }

    /// The earliest moment the client is too slow if nothing more
    /// arrives, and which limit that is. Pure: `now` is passed in.
    pub fn deadline(&self, p: &Progress, now: Instant) -> (Instant, Expiry) {
        let mut next = (now + self.idle, Expiry::Idle);
        let mut consider = |at: Instant, why: Expiry| {
            if at < next.0 {
                next = (at, why);
            }
        };
        consider(p.started + self.session, Expiry::Session);
        match p.data {
            Some((since, bytes)) if self.min_data_rate > 0 => {
                // Behind once bytes < rate × (t − since − grace).
                let earned = Duration::from_secs_f64(bytes as f64 / self.min_data_rate as f64);
                consider(since + DATA_GRACE + earned, Expiry::DataRate);
            }
            Some(_) => {}
            None => {
                if let Some(line) = p.line_started {
                    consider(line + self.command, Expiry::Command);
                }
            }
        }
        next
    }
}

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
    /// `inbuf`'s allocation (its address) and how far into it bytes were
    /// ever written: a read reuses what an earlier one zeroed instead of
    /// zeroing up to 64 KiB again each time (see `grow_inbuf`).
    written: (usize, usize),
    /// The limits on the client's speed, and how far it has come.
    pace: Option<Pace>,
    progress: Progress,
    /// The first read is still to come and must not be a PROXY header
    /// (the peer is not a listed proxy).
    refuse_proxy_header: bool,
}

/// How a read ended when it brought no data.
pub enum ReadEnd {
    Eof,
    /// The client's first bytes were a PROXY protocol header, but it is
    /// not a proxy in `listen.proxy_from`.
    UnlistedProxy,
    Timeout,
    Error(io::Error),
}

impl Conn {
    pub fn new(stream: TcpStream, peer: SocketAddr) -> Conn {
        Conn {
            stream: Stream::Plain(stream),
            peer,
            inbuf: Vec::new(),
            chunk: SMALL_READ,
            written: (0, 0),
            pace: None,
            progress: Progress { started: Instant::now(), line_started: None, data: None },
            refuse_proxy_header: false,
        }
    }

    /// Cut the connection if its first bytes are a PROXY header (for a
    /// peer that is not a listed proxy).
    pub fn refuse_proxy_header(&mut self) {
        self.refuse_proxy_header = true;
    }

    /// The real client, as a listed proxy's header named it.
    pub fn set_peer(&mut self, peer: SocketAddr) {
        self.peer = peer;
    }

    fn tcp(&self) -> Option<&TcpStream> {
        match &self.stream {
            Stream::Plain(s) => Some(s),
            Stream::Tls(t) => Some(t.get_ref().0),
            Stream::Gone => None,
        }
    }

    /// The client's speed limits from now on (see [`Pace`]); the session
    /// time counts from the connection's start.
    pub fn set_pace(&mut self, pace: Pace) {
        self.pace = Some(pace);
    }

    fn set_read_timeout(&self, d: Duration) {
        if let Some(t) = self.tcp() {
            // A zero timeout is refused by the socket layer; 1 ms is "now".
            let _ = t.set_read_timeout(Some(d.max(Duration::from_millis(1))));
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

    /// Look at (without consuming) the bytes waiting on a plain connection,
    /// waiting up to `timeout` for the first: how many were copied to `buf`
    /// (0: closed).
    pub async fn peek_plain(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        let Stream::Plain(tcp) = &self.stream else {
            return Err(io::Error::other("not a plain connection"));
        };
        futures_lite::future::or(async { tcp.peek(buf).await.map_err(io::Error::from) }, async {
            glommio::timer::sleep(timeout).await;
            Err(io::ErrorKind::TimedOut.into())
        })
        .await
    }

    /// Consume exactly `n` bytes of a plain connection (ones
    /// [`peek_plain`](Conn::peek_plain) saw), bypassing `inbuf`.
    pub async fn discard_plain(&mut self, n: usize) -> io::Result<()> {
        let Stream::Plain(tcp) = &mut self.stream else {
            return Err(io::Error::other("not a plain connection"));
        };
        let mut scratch = vec![0u8; n];
        tcp.read_exact(&mut scratch).await
    }

    /// Read more bytes onto `inbuf`.
    pub async fn fill(&mut self) -> Result<usize, ReadEnd> {
        let start = self.inbuf.len();
        grow_for_read(&mut self.inbuf, &mut self.written, start + self.chunk);
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
                if std::mem::take(&mut self.refuse_proxy_header) && super::proxy::looks_like_header(&self.inbuf) {
                    return Err(ReadEnd::UnlistedProxy);
                }
                if start == 0 {
                    self.progress.line_started = Some(Instant::now());
                }
                if let Some((_, bytes)) = &mut self.progress.data {
                    *bytes += n as u64;
                }
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
            // What is left began arriving with the last read.
            self.progress.line_started = (!self.inbuf.is_empty()).then(Instant::now);
        }
        // After a burst (DATA), give the big buffer back: idle sessions
        // should cost a few KiB, not the largest read they ever did.
        if self.inbuf.is_empty() && self.inbuf.capacity() > 2 * self.chunk {
            self.inbuf = Vec::new();
            self.written = (0, 0);
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
    /// Receiving a message body (the data rate applies, not the command
    /// deadline).
    fn in_data(&self) -> bool;
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
            fn in_data(&self) -> bool {
                <$t>::in_data(self)
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
        let now = Instant::now();
        match (m.in_data(), self.progress.data) {
            (true, None) => self.progress.data = Some((now, 0)),
            (false, Some(_)) => self.progress.data = None,
            _ => {}
        }
        let expiry = self.pace.map(|pace| {
            let (at, why) = pace.deadline(&self.progress, now);
            self.set_read_timeout(at.saturating_duration_since(now));
            why
        });
        let expiry = expiry.unwrap_or(Expiry::Idle);
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
                Some(r) => self.after_fill(r, m, core, proto, expiry).await,
                None => {
                    self.inbuf.truncate(start);
                    m.shutdown();
                    let _ = self.flush(m).await;
                    false
                }
            };
        }
        let r = self.fill().await;
        self.after_fill(r, m, core, proto, expiry).await
    }

    async fn after_fill(
        &mut self,
        r: Result<usize, ReadEnd>,
        m: &mut impl Machine,
        core: usize,
        proto: &str,
        expiry: Expiry,
    ) -> bool {
        match r {
            Ok(_) => true,
            Err(ReadEnd::Timeout) => {
                m.handle_timeout();
                let _ = self.flush(m).await;
                // fail2ban may match these too (README, Security).
                tracing::info!(core, client = %self.peer, proto, reason = expiry.reason(), "timeout");
                false
            }
            Err(ReadEnd::Eof) => {
                m.handle_eof();
                false
            }
            Err(ReadEnd::UnlistedProxy) => {
                tracing::warn!(core, client = %self.peer, proto, reason = "PROXY header from a peer not in listen.proxy_from", "refused");
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

/// Makes `buf` `end` bytes long for a read into its end, zeroing only the
/// bytes of its allocation that no earlier call wrote. `written` is the
/// allocation's address and how far into it bytes were written; reset it to
/// `(0, 0)` whenever `buf` is replaced by another Vec.
fn grow_for_read(buf: &mut Vec<u8>, written: &mut (usize, usize), end: usize) {
    let len = buf.len();
    buf.reserve(end.saturating_sub(len));
    let addr = buf.as_ptr() as usize;
    let before = if written.0 == addr { written.1 } else { 0 };
    if before > len {
        // SAFETY: the capacity is at least `end` (reserved above), and bytes
        // `len..before` of this very allocation were initialised by an
        // earlier call (same address; the caller resets `written` when it
        // replaces the Vec, so it cannot describe a new allocation at an old
        // address, and a reallocation moves or keeps the whole old block);
        // truncating or draining a Vec<u8> leaves the bytes past its length
        // as they were.
        unsafe { buf.set_len(before.min(end)) };
    }
    buf.resize(end, 0);
    *written = (addr, before.max(end));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_buffer_is_zeroed_once_and_reused_as_it_was() {
        let mut buf = Vec::new();
        let mut written = (0, 0);
        grow_for_read(&mut buf, &mut written, 4096);
        assert!(buf.len() == 4096 && buf.iter().all(|&b| b == 0));
        buf[..10].copy_from_slice(b"0123456789");
        buf.truncate(10);
        // The next read's area is what the last read left there (the read
        // overwrites it), not zeroed again; the bytes kept are untouched.
        grow_for_read(&mut buf, &mut written, 10 + 4096);
        assert_eq!(buf.len(), 4106);
        assert_eq!(&buf[..10], b"0123456789");
        assert!(buf[4096..].iter().all(|&b| b == 0), "past the old mark: zeroed");
        buf[4000..4106].fill(7);
        buf.drain(..5);
        buf.truncate(3);
        grow_for_read(&mut buf, &mut written, 3 + 64 * 1024);
        assert_eq!(buf.len(), 3 + 64 * 1024);
        assert_eq!(&buf[..3], b"567");
        assert!(buf[4106..].iter().all(|&b| b == 0));
        // A replaced Vec starts over.
        buf = Vec::new();
        written = (0, 0);
        grow_for_read(&mut buf, &mut written, 100);
        assert!(buf.len() == 100 && buf.iter().all(|&b| b == 0));
    }

    const PACE: Pace = Pace {
        idle: Duration::from_secs(30),
        command: Duration::from_secs(300),
        min_data_rate: 1000,
        session: Duration::from_secs(3600),
    };

    #[test]
    fn an_idle_client_meets_the_idle_timeout() {
        let t0 = Instant::now();
        let p = Progress { started: t0, line_started: None, data: None };
        assert_eq!(PACE.deadline(&p, t0), (t0 + PACE.idle, Expiry::Idle));
    }

    #[test]
    fn a_trickled_line_meets_the_command_deadline_however_recent_its_last_byte() {
        let t0 = Instant::now();
        let p = Progress { started: t0, line_started: Some(t0), data: None };
        // A byte arrived just now, 299 s into the line: 1 s is left, not 30.
        let now = t0 + Duration::from_secs(299);
        assert_eq!(PACE.deadline(&p, now), (t0 + PACE.command, Expiry::Command));
    }

    #[test]
    fn data_must_keep_up_the_rate_after_the_grace() {
        let t0 = Instant::now();
        let slow = Progress { started: t0, line_started: None, data: Some((t0, 5_000)) };
        // 5,000 bytes at 1,000/s buy 5 s beyond the grace.
        let now = t0 + Duration::from_secs(12);
        assert_eq!(PACE.deadline(&slow, now), (t0 + DATA_GRACE + Duration::from_secs(5), Expiry::DataRate));
        let no_minimum = Pace { min_data_rate: 0, ..PACE };
        assert_eq!(no_minimum.deadline(&slow, now).1, Expiry::Idle);
        // Inside DATA a partial line is not a command.
        let data_line = Progress { line_started: Some(t0), ..slow };
        assert_eq!(no_minimum.deadline(&data_line, now).1, Expiry::Idle);
    }

    #[test]
    fn the_session_ends_at_its_time_limit() {
        let t0 = Instant::now();
        let p = Progress { started: t0, line_started: None, data: None };
        let now = t0 + Duration::from_secs(3590);
        assert_eq!(PACE.deadline(&p, now), (t0 + PACE.session, Expiry::Session));
    }
}
