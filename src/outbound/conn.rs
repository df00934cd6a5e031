//! One outbound SMTP or LMTP connection: the glommio/rustls driver around
//! the sans-I/O [`Client`]. Boring on purpose: write what the client says,
//! read replies under the RFC 5321 §4.5.3.2 timeout of the current phase,
//! do the STARTTLS handshake when asked. An LMTP target is reached over
//! TCP or a Unix stream socket ([`Endpoint`]), from no particular source
//! address, and never with TLS.
//!
//! Messages are given with [`RelayConnection::submit`] and reported by
//! [`RelayConnection::progress`], one outcome per message in the order
//! given. With a server offering PIPELINING, the next message may be given
//! while the one before awaits its end-of-data reply ([`Progress::CanTake`]
//! comes after its body is written), so its commands go out behind that
//! body (RFC 2920 §3.1).

use super::tls::RelayTls;
use super::tls_policy::{TargetTls, TlsResult};
use crate::outbound::mx::{Endpoint, Target};
use crate::proto::smtp::{dot_stuff, dot_stuff_lines, next_piece, Piece};
use crate::proto::smtp_client::{
    Client, ClientConfig, ConnectionFailure, Event, MessageOutcome, OutgoingMessage, Phase, Sent, Transmit,
};
use crate::spool::{DecodeError, RecordView};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::client::TlsStream;
use futures_rustls::TlsConnector;
use glommio::net::{TcpStream, UnixStream};
use rustls::pki_types::ServerName;
use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::time::Duration;

/// RFC 5321 §4.5.3.2 client timeouts (`[relay.timeouts]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// The 220 greeting.
    pub greeting: Duration,
    /// EHLO, MAIL, RCPT, RSET, QUIT, STARTTLS replies.
    pub command: Duration,
    /// The 354 to DATA.
    pub data_init: Duration,
    /// Each write of the body.
    pub data_block: Duration,
    /// The reply after the final dot.
    pub data_done: Duration,
}

impl Timeouts {
    fn for_phase(&self, phase: Phase) -> Duration {
        match phase {
            Phase::Greeting => self.greeting,
            Phase::DataInit => self.data_init,
            Phase::DataBlock => self.data_block,
            Phase::DataTermination => self.data_done,
            Phase::Ehlo
            | Phase::Helo
            | Phase::StartTls
            | Phase::TlsHandshake
            | Phase::Ready
            | Phase::Mail
            | Phase::Rcpt
            | Phase::Rset
            | Phase::Quit
            | Phase::Closed => self.command,
        }
    }
}

/// The write buffer a connection keeps between messages, at most.
const OUTBUF_KEEP: usize = 1 << 20;

/// A message body larger than this is written in pieces of about this size
/// (DATA) or straight from the spool map (BDAT) rather than copied whole
/// into the write buffer.
const BODY_PIECE: usize = 256 << 10;

/// Why a connection could not be used; `temporary` says whether another
/// host or a later attempt may work.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{host}[{addr}]: {reason}")]
pub struct ConnectError {
    pub host: String,
    pub addr: Endpoint,
    pub reason: String,
    pub temporary: bool,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// LMTP over a Unix socket: no socket timeouts there, so reads and
    /// writes are bounded by a timer instead (a timeout fails the session,
    /// so what a cancelled read might lose no longer matters).
    Unix(UnixStream),
    /// Between taking the plain stream and getting the TLS one back.
    Gone,
}

impl Stream {
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(t) => Some(t.get_ref().0),
            Stream::Unix(_) | Stream::Gone => None,
        }
    }

    /// Reads; `wait` bounds a Unix socket's read (TCP has its own timeout).
    async fn read(&mut self, buf: &mut [u8], wait: Duration) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(t) => t.read(buf).await,
            Stream::Unix(u) => bounded(wait, u.read(buf)).await,
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Writes all; `wait` bounds a Unix socket's write.
    async fn write_all(&mut self, buf: &[u8], wait: Duration) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(buf).await,
            Stream::Tls(t) => {
                t.write_all(buf).await?;
                t.flush().await
            }
            Stream::Unix(u) => bounded(wait, u.write_all(buf)).await,
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

/// `io` within `wait`, else a `TimedOut` error.
async fn bounded<T>(wait: Duration, io: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    match glommio::timer::timeout(wait, async { io.await.map_err(glommio::GlommioError::from) }).await {
        Ok(v) => Ok(v),
        Err(glommio::GlommioError::TimedOut(_)) => Err(io::ErrorKind::TimedOut.into()),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// What goes on the wire for one message: fields put in front (DKIM
/// signatures; empty or CRLF-terminated), then the stored (unstuffed) body,
/// read straight from the spool map when the client asks for it.
pub struct Body {
    head: Vec<u8>,
    record: RecordView,
    /// Where the body is in the record's payload.
    body: Range<usize>,
}

impl Body {
    /// `head` in front of the body of the message `record` holds.
    pub fn new(head: Vec<u8>, record: RecordView) -> Result<Body, DecodeError> {
        let payload = record.payload().as_ptr_range();
        let stored = record.message()?.body.as_ptr_range();
        // The decoded body borrows the payload; an empty one may point anywhere.
        let body = match payload.start <= stored.start && stored.end <= payload.end {
            true => (stored.start as usize - payload.start as usize)..(stored.end as usize - payload.start as usize),
            false => 0..0,
        };
        Ok(Body { head, record, body })
    }

    /// The stored body (without `head`).
    pub fn stored(&self) -> &[u8] {
        &self.record.payload()[self.body.clone()]
    }
}

/// A message given to the connection and not reported yet.
struct Given {
    body: Body,
    /// The client will ask for its body (it was not decided locally).
    on_the_wire: bool,
    /// Its body was written.
    written: bool,
}

/// What [`RelayConnection::progress`] reports.
pub enum Progress {
    /// The oldest message given and not reported yet is finished.
    Outcome(MessageOutcome),
    /// The oldest message given and not reported yet went behind another
    /// and the session ended before its first reply: deferred, and not a
    /// reply from the site (see `Event::Abandoned`).
    Abandoned(MessageOutcome),
    /// The session takes a message now ([`RelayConnection::takes_message`]):
    /// it is idle, or the one in flight is waiting for its end-of-data reply
    /// and the server offers PIPELINING.
    CanTake,
    /// The session is over. Every message given was reported before (a
    /// failure defers what it left undecided, in order).
    Gone,
}

/// A session with one remote host, reusable for many messages.
pub struct RelayConnection {
    stream: Stream,
    client: Client,
    /// Messages given and not reported yet, oldest first.
    given: VecDeque<Given>,
    inbuf: Vec<u8>,
    /// What goes out next, reused from write to write.
    outbuf: Vec<u8>,
    timeouts: Timeouts,
    /// What TLS this session must have, and why.
    policy: TargetTls,
    /// Why the TLS handshake failed, if it did (the session is lost then;
    /// this is what the failure says instead of "connection lost").
    tls_error: Option<String>,
    pub target: Target,
    /// Who answered and the session's TLS, as every outcome of this
    /// session reports them (made at the first outcome, once the session
    /// and its TLS are settled).
    pub(super) hop: std::cell::OnceCell<super::dispatch::Hop>,
}

impl RelayConnection {
    /// Connect, read the greeting, EHLO, STARTTLS as `policy` says, until
    /// the session is ready for a message. For an LMTP target: LHLO, and
    /// `source` and `policy` are not used.
    pub async fn open(
        target: &Target,
        source: Option<std::net::IpAddr>,
        helo_name: &str,
        policy: TargetTls,
        tls: &RelayTls,
        timeouts: Timeouts,
    ) -> Result<RelayConnection, ConnectError> {
        let fail = |reason: String, temporary: bool| ConnectError {
            host: target.host.clone(),
            addr: target.addr.clone(),
            reason,
            temporary,
        };
        let config =
            ClientConfig { helo_name: helo_name.to_string(), tls: policy.starttls, tls_active_at_start: false };
        let client = match target.addr {
            Endpoint::Smtp(_) => Client::new(config),
            Endpoint::LmtpTcp(_) | Endpoint::LmtpUnix(_) => Client::lmtp(config),
        };
        let client = client.map_err(|e| fail(format!("bad client config: {e}"), false))?;
        let connected = |e: io::Error| fail(format!("connect failed: {e}"), true);
        let (stream, source) = match &target.addr {
            Endpoint::Smtp(addr) => {
                (super::source::connect(*addr, source, timeouts.connect).await.map(Stream::Plain), source)
            }
            // An egress pool's address is for the Internet's view of us,
            // not for a store on our own network.
            Endpoint::LmtpTcp(addr) => {
                (super::source::connect(*addr, None, timeouts.connect).await.map(Stream::Plain), None)
            }
            Endpoint::LmtpUnix(path) => (
                bounded(timeouts.connect, async { UnixStream::connect(path).await.map_err(io::Error::from) })
                    .await
                    .map(Stream::Unix),
                None,
            ),
        };
        let stream = stream.map_err(connected)?;
        if let Some(tcp) = stream.tcp() {
            let _ = tcp.set_nodelay(true);
        }
        // A bound socket is still connecting: the greeting waits for both.
        let first = match source {
            Some(_) => Timeouts { greeting: timeouts.greeting + timeouts.connect, ..timeouts },
            None => timeouts,
        };
        let mut conn = RelayConnection {
            stream,
            client,
            given: VecDeque::new(),
            inbuf: Vec::with_capacity(4096),
            outbuf: Vec::new(),
            timeouts: first,
            policy,
            tls_error: None,
            target: target.clone(),
            hop: std::cell::OnceCell::new(),
        };
        match conn.drive(tls).await {
            Event::Ready => {
                conn.timeouts = timeouts;
                Ok(conn)
            }
            Event::Failed(_) | Event::Closed if conn.tls_error.is_some() => {
                Err(fail(format!("TLS handshake failed: {}", conn.tls_error.unwrap_or_default()), true))
            }
            Event::Failed(f) => Err(fail(f.to_string(), f.temporary)),
            Event::Closed => Err(fail("closed before ready".into(), true)),
            Event::Outcome(_) | Event::Abandoned(_) | Event::StartTls | Event::ReadyBehind => {
                Err(fail("unexpected event before ready".into(), true))
            }
        }
    }

    /// Whether [`RelayConnection::submit`] would take a message now.
    pub fn takes_message(&self) -> bool {
        self.client.takes_message()
    }

    /// Whether the session will take a message behind the one in flight
    /// once that one's body is written (see `Client::takes_behind_soon`).
    pub fn takes_behind_soon(&self) -> bool {
        self.client.takes_behind_soon()
    }

    /// Give a message (its `size` must be what `body` puts on the wire
    /// before dot-stuffing: head and stored body); its outcome comes
    /// from [`RelayConnection::progress`] after those given before it. A
    /// message the session cannot take now is handed back.
    pub fn submit(&mut self, msg: OutgoingMessage, body: Body) -> Result<(), OutgoingMessage> {
        match self.client.send_message(msg) {
            Ok(sent) => {
                self.given.push_back(Given { body, on_the_wire: sent == Sent::OnTheWire, written: false });
                Ok(())
            }
            Err(e) => Err(e.into_message()),
        }
    }

    /// Run the session until something happens that the caller acts on.
    pub async fn progress(&mut self, tls: &RelayTls) -> Progress {
        match self.drive(tls).await {
            Event::Outcome(o) => {
                self.given.pop_front();
                Progress::Outcome(o)
            }
            Event::Abandoned(o) => {
                self.given.pop_front();
                Progress::Abandoned(o)
            }
            Event::Ready | Event::ReadyBehind => Progress::CanTake,
            // `drive` runs the handshake itself and never returns this.
            Event::StartTls | Event::Failed(_) | Event::Closed => Progress::Gone,
        }
    }

    /// What this session's TLS is (`tls=` in the logs).
    pub fn tls_result(&self) -> TlsResult {
        self.policy.result(matches!(self.stream, Stream::Tls(_)))
    }

    /// Why the session's TLS requirement is what it is (`tls_basis=`).
    pub fn tls_basis(&self) -> &super::tls_policy::Basis {
        &self.policy.basis
    }

    /// Whether the server offered REQUIRETLS (RFC 8689) in its last EHLO.
    pub fn offers_requiretls(&self) -> bool {
        self.client.capabilities().requiretls
    }

    /// Whether the server offered DSN (RFC 3461) in its last EHLO reply.
    pub fn offers_dsn(&self) -> bool {
        self.client.capabilities().dsn
    }

    /// QUIT politely and close once the server answered it (or the
    /// session failed), bounded by the command timeout. Events still
    /// queued (the `Ready` behind the last outcome) are passed over: a
    /// connection closed right after writing QUIT is still open for the
    /// server until it reads it, and the site's connection slot, released
    /// after this, would let another connection open meanwhile, one more
    /// than the site's limit as the server counts.
    pub async fn quit(mut self, tls: &RelayTls) {
        self.client.quit();
        let _ = glommio::timer::timeout(self.timeouts.command, async {
            while !matches!(self.drive(tls).await, Event::Closed | Event::Failed(_)) {}
            Ok(())
        })
        .await;
    }

    /// Run the client until it reports an event (except `StartTls`, which
    /// is done here). Writes, STARTTLS and reads happen here; a body is
    /// written when the client asks for it, from the oldest message given
    /// whose body is still owed.
    async fn drive(&mut self, tls: &RelayTls) -> Event {
        loop {
            // Everything the client has to say goes out in one write:
            // with BDAT that is MAIL, the RCPTs, BDAT and the body.
            let mut wire = std::mem::take(&mut self.outbuf);
            let mut bodies_written = 0;
            let mut body_missing = false;
            let mut r = Ok(());
            while let Some(t) = self.client.poll_transmit() {
                let stuffed = match t {
                    Transmit::Command(bytes) => {
                        wire.extend_from_slice(&bytes);
                        continue;
                    }
                    Transmit::Body => true,
                    Transmit::Chunk => false,
                };
                let Some(given) = self.given.iter_mut().find(|g| g.on_the_wire && !g.written) else {
                    body_missing = true; // cannot happen: the client asks once per message on the wire
                    break;
                };
                given.written = true;
                bodies_written += 1;
                if r.is_ok() {
                    let (head, body) = (&given.body.head, given.body.stored());
                    r = put_body(&mut self.stream, self.timeouts.data_block, &mut wire, head, body, stuffed).await;
                }
            }
            if body_missing {
                tracing::error!(host = %self.target.host, "the client asked for a body no message owes");
                wire.clear();
                self.client.connection_lost();
            }
            // Told before the write, so that when the client takes the next
            // message behind these bodies (PIPELINING) they are held back
            // and its commands join them in one write, made by the next
            // `drive` (the caller drives again after giving it, or not).
            for _ in 0..bodies_written {
                self.client.body_sent();
            }
            // Looked at before the first event is taken: toward a DATA-only
            // server the 354 for these bodies comes with the end-of-data
            // reply to the message before, whose outcome comes first.
            let behind = r.is_ok() && bodies_written > 0 && self.client.offers_behind();
            let event = match self.client.poll_event() {
                Some(ev @ (Event::ReadyBehind | Event::Outcome(_))) if behind => {
                    self.outbuf = wire;
                    return ev;
                }
                event => event,
            };
            if r.is_err() || !wire.is_empty() {
                if r.is_err() || self.write(&wire).await.is_err() {
                    self.client.connection_lost();
                }
                wire.clear();
                if wire.capacity() > OUTBUF_KEEP {
                    wire = Vec::new(); // a big message does not pin its size
                }
            }
            self.outbuf = wire;
            if let Some(ev) = event.or_else(|| self.client.poll_event()) {
                match ev {
                    Event::StartTls => {
                        self.inbuf.clear();
                        match self.start_tls(tls).await {
                            Ok(()) => self.client.tls_established(),
                            Err(e) => {
                                tracing::debug!(host = %self.target.host, error = %e, "TLS handshake failed");
                                self.tls_error = Some(e.to_string());
                                self.client.connection_lost();
                            }
                        }
                        continue;
                    }
                    Event::Failed(ConnectionFailure { .. }) => {
                        // Write what is left (at most a QUIT), then give up.
                        while let Some(Transmit::Command(bytes)) = self.client.poll_transmit() {
                            let _ = self.write(&bytes).await;
                        }
                        return ev;
                    }
                    other => return other,
                }
            }
            // A finished session (failed or closed, its events taken) has
            // nothing more to say. Reading on would spin: glommio completes
            // a read of a socket the peer closed at once, without yielding,
            // so the loop would hold the executor and no timeout around it
            // could fire. A `421` that closes the connection (what big
            // providers do when they rate-limit) leaves the session here
            // when `quit` drives it once more.
            if self.client.phase() == Phase::Closed {
                return Event::Closed;
            }
            let wait = self.timeouts.for_phase(self.client.phase());
            if let Some(tcp) = self.stream.tcp() {
                let _ = tcp.set_read_timeout(Some(wait));
            }
            let start = self.inbuf.len();
            self.inbuf.resize(start + 8192, 0);
            let r = self.stream.read(&mut self.inbuf[start..], wait).await;
            match r {
                Ok(0) => {
                    self.inbuf.truncate(start);
                    self.client.connection_lost();
                }
                Ok(n) => {
                    self.inbuf.truncate(start + n);
                    let used = self.client.handle_input(&self.inbuf);
                    self.inbuf.drain(..used);
                }
                Err(e) => {
                    self.inbuf.truncate(start);
                    if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) {
                        self.client.handle_timeout();
                    } else {
                        self.client.connection_lost();
                    }
                }
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        write_on(&mut self.stream, self.timeouts.data_block, bytes).await
    }

    async fn start_tls(&mut self, tls: &RelayTls) -> io::Result<()> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(io::Error::other("STARTTLS on a stream that is not plain"));
        };
        let config = self.policy.client_config(tls);
        let name = match self.target.host.parse::<std::net::IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => {
                ServerName::try_from(self.target.host.clone()).or_else(|_| match self.target.addr.socket_addr() {
                    Some(addr) => Ok(ServerName::IpAddress(addr.ip().into())),
                    None => Err(io::Error::other("STARTTLS over a Unix socket")),
                })?
            }
        };
        let _ = tcp.set_read_timeout(Some(self.timeouts.command));
        let stream = TlsConnector::from(config).connect(name, tcp).await?;
        self.stream = Stream::Tls(Box::new(stream));
        Ok(())
    }
}

/// Every one of `n` recipients deferred with a made-up 451 (`enhanced`
/// says which kind of trouble) naming `reason`.
pub fn deferred_all(n: usize, enhanced: (u8, u16, u16), reason: &str) -> MessageOutcome {
    use crate::proto::smtp_client::{RecipientOutcome, Reply};
    let reply = Reply { code: 451, enhanced: Some(enhanced), text: reason.to_string() };
    MessageOutcome { per_recipient: (0..n).map(|_| RecipientOutcome::Deferred { reply: reply.clone() }).collect() }
}

/// Puts the message (`head` then `body`) after the commands in `wire`:
/// dot-stuffed with the final ".\r\n" (DATA) or raw (BDAT). A small
/// message stays in `wire`, written with the commands around it in one
/// write. A large one is written now, `wire` first: a BDAT body straight
/// from the spool map (no copy), a DATA body in pieces of about
/// [`BODY_PIECE`]: runs of lines that need no stuffing straight from the
/// map too, the others stuffed through `wire`, so the buffer a connection
/// keeps stays small and warm; the final dot stays in `wire`.
async fn put_body(
    stream: &mut Stream,
    timeout: Duration,
    wire: &mut Vec<u8>,
    head: &[u8],
    body: &[u8],
    stuffed: bool,
) -> io::Result<()> {
    let large = head.len() + body.len() > BODY_PIECE;
    match (stuffed, large) {
        (true, false) => {
            dot_stuff_lines(head, wire);
            dot_stuff(body, wire);
        }
        (false, false) => {
            wire.extend_from_slice(head);
            wire.extend_from_slice(body);
        }
        (false, true) => {
            wire.extend_from_slice(head);
            write_on(stream, timeout, wire).await?;
            wire.clear();
            write_on(stream, timeout, body).await?;
        }
        (true, true) => {
            dot_stuff_lines(head, wire);
            let mut rest = body;
            while !rest.is_empty() {
                let took = match next_piece(rest, BODY_PIECE, wire) {
                    Piece::Verbatim(n) => {
                        if !wire.is_empty() {
                            write_on(stream, timeout, wire).await?;
                            wire.clear();
                        }
                        write_on(stream, timeout, &rest[..n]).await?;
                        n
                    }
                    Piece::Stuffed(n) => {
                        write_on(stream, timeout, wire).await?;
                        wire.clear();
                        n
                    }
                };
                rest = &rest[took..];
            }
            wire.extend_from_slice(b".\r\n");
        }
    }
    Ok(())
}

/// Write all of `bytes`, each write bounded by `timeout`.
async fn write_on(stream: &mut Stream, timeout: Duration, bytes: &[u8]) -> io::Result<()> {
    if let Some(tcp) = stream.tcp() {
        let _ = tcp.set_write_timeout(Some(timeout));
    }
    stream.write_all(bytes, timeout).await
}
