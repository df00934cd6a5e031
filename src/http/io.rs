//! glommio sockets (futures-io `AsyncRead`/`AsyncWrite`, plain or TLS)
//! as hyper's `rt::Read`/`rt::Write`, and the clock of the request on the
//! wire that [`crate::http::server`] cuts slow clients with.
//!
//! Owns: the byte shuttle and the request phases seen from the socket.
//! Must not: parse HTTP (hyper does), or sleep (the server's watcher does).

use futures_lite::{AsyncRead, AsyncWrite};
use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// Where the request on a connection is, as its bytes show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Between requests (or before the first): nothing of one has come.
    Idle,
    /// A request's first byte came at `since`; it is not whole yet.
    Receiving { since: Instant },
    /// The request is whole (the handler has its body, or it has none);
    /// the answer is being made.
    Handling,
}

/// The request phase of one connection, shared by the socket adapter
/// (bytes in start a request, bytes out end it) and the handler (a whole
/// body ends the receiving).
#[derive(Debug)]
pub struct RequestClock {
    phase: Cell<Phase>,
    /// Bytes read since the last write: a request was begun and not
    /// answered (the server answers 408 when it cuts one).
    unanswered: Cell<usize>,
}

impl Default for RequestClock {
    fn default() -> RequestClock {
        RequestClock { phase: Cell::new(Phase::Idle), unanswered: Cell::new(0) }
    }
}

impl RequestClock {
    pub fn phase(&self) -> Phase {
        self.phase.get()
    }

    /// The request has arrived whole: its time on the wire is over.
    pub fn received(&self) {
        self.phase.set(Phase::Handling);
    }

    /// Were bytes of a request read that no answer followed?
    pub fn unanswered(&self) -> bool {
        self.unanswered.get() > 0
    }

    fn bytes_in(&self, n: usize, now: Instant) {
        if n > 0 {
            self.unanswered.set(self.unanswered.get().saturating_add(n));
            if self.phase.get() == Phase::Idle {
                self.phase.set(Phase::Receiving { since: now });
            }
        }
    }

    fn bytes_out(&self) {
        self.unanswered.set(0);
        self.phase.set(Phase::Idle);
    }
}

/// A socket hyper can drive. The stream is shared so that the server can
/// still write (a 408) after it dropped hyper's connection.
pub struct HyperIo<S> {
    stream: Rc<RefCell<S>>,
    clock: Rc<RequestClock>,
    scratch: Box<[u8]>,
}

impl<S> HyperIo<S> {
    pub fn new(stream: Rc<RefCell<S>>, clock: Rc<RequestClock>) -> HyperIo<S> {
        HyperIo { stream, clock, scratch: vec![0; READ_CHUNK].into_boxed_slice() }
    }
}

impl<S: AsyncRead + Unpin> hyper::rt::Read for HyperIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let want = buf.remaining().min(this.scratch.len());
        // The borrow lasts for this poll only; nothing else polls the
        // stream while hyper's connection is alive.
        let mut stream = this.stream.borrow_mut();
        match Pin::new(&mut *stream).poll_read(cx, &mut this.scratch[..want]) {
            Poll::Ready(Ok(n)) => {
                this.clock.bytes_in(n, Instant::now());
                buf.put_slice(&this.scratch[..n]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> hyper::rt::Write for HyperIo<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let mut stream = this.stream.borrow_mut();
        let written = Pin::new(&mut *stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            if n > 0 {
                this.clock.bytes_out();
            }
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let mut stream = this.stream.borrow_mut();
        Pin::new(&mut *stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let mut stream = this.stream.borrow_mut();
        Pin::new(&mut *stream).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_byte_starts_a_request_and_an_answer_ends_it() {
        let clock = RequestClock::default();
        let t = Instant::now();
        clock.bytes_in(0, t);
        assert_eq!(clock.phase(), Phase::Idle);
        assert!(!clock.unanswered());
        clock.bytes_in(5, t);
        clock.bytes_in(5, t + std::time::Duration::from_secs(1));
        assert_eq!(clock.phase(), Phase::Receiving { since: t }, "later bytes do not restart the clock");
        assert!(clock.unanswered());
        clock.received();
        assert_eq!(clock.phase(), Phase::Handling);
        clock.bytes_out();
        assert_eq!(clock.phase(), Phase::Idle);
        assert!(!clock.unanswered());
    }
}
