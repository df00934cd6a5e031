//! Where log lines go: stderr, written in batches from the executors; and
//! how text-format fields are written ([`Logfmt`]: quoted and escaped so that
//! no value from the network can forge a field or a line).
//!
//! Every mail event is a log line (`message accepted`, `delivered`, ...),
//! so at full load a core logs tens of thousands of lines a second. One
//! `write(2)` per line was a sixth of the server's system calls, and the
//! two cores contended for the stderr lock. So an executor thread appends
//! each finished line to a buffer of its own, and [`flusher`] writes the
//! buffer out every [`FLUSH_EVERY`] or as soon as it holds [`FLUSH_AT`]
//! bytes (checked after each whole event, so lines are never split).
//! Other threads (start-up, the blocking pool, the signal thread) write
//! straight through.
//!
//! The price, stated: a `kill -9` loses at most the last [`FLUSH_EVERY`]
//! of an executor's log lines (never mail: the spool is the record, and
//! `ringmail trace` reads it), and lines of different cores interleave in
//! batches, so timestamps across cores are not in file order. The buffer
//! is written when its thread ends, cleanly or by a panic.

mod fields;
mod journald;
mod stamp;
pub use fields::Logfmt;
pub use journald::{under_journald, SyslogPriority};
pub use stamp::Stamp;

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::time::Duration;

/// The longest a buffered line waits.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// A buffer this large is written at the end of the event that filled it.
pub const FLUSH_AT: usize = 64 * 1024;

struct Buffer {
    bytes: RefCell<Vec<u8>>,
    on: Cell<bool>,
}

impl Drop for Buffer {
    fn drop(&mut self) {
        write_out(&mut self.bytes.borrow_mut());
    }
}

thread_local! {
    static BUFFER: Buffer = const { Buffer { bytes: RefCell::new(Vec::new()), on: Cell::new(false) } };
}

fn write_out(bytes: &mut Vec<u8>) {
    if !bytes.is_empty() {
        // A log that cannot be written has nowhere to report that.
        let _ = io::stderr().lock().write_all(bytes);
        bytes.clear();
    }
}

/// From now on this thread's log lines are buffered; something on the
/// thread must run [`flusher`] (or call [`flush`]).
pub fn buffer_this_thread() {
    BUFFER.with(|b| b.on.set(true));
}

/// Write out what this thread has buffered.
pub fn flush() {
    BUFFER.with(|b| write_out(&mut b.bytes.borrow_mut()));
}

/// Runs on an executor until the executor ends: flushes every
/// [`FLUSH_EVERY`]. What is left when the thread ends is written by the
/// buffer's `Drop`.
pub async fn flusher() {
    loop {
        glommio::timer::sleep(FLUSH_EVERY).await;
        flush();
    }
}

/// The `MakeWriter` for tracing-subscriber: one [`Line`] per event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Writer;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Writer {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line { buffered: BUFFER.try_with(|b| b.on.get()).unwrap_or(false) }
    }
}

/// One event being written: into this thread's buffer, or to stderr.
pub struct Line {
    buffered: bool,
}

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.buffered && BUFFER.try_with(|b| b.bytes.borrow_mut().extend_from_slice(buf)).is_ok() {
            return Ok(buf.len());
        }
        io::stderr().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buffered {
            let _ = BUFFER.try_with(|b| {
                let mut bytes = b.bytes.borrow_mut();
                if bytes.len() >= FLUSH_AT {
                    write_out(&mut bytes);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    fn buffered_len() -> usize {
        BUFFER.with(|b| b.bytes.borrow().len())
    }

    #[test]
    fn lines_wait_in_the_buffer_until_flushed_or_full() {
        std::thread::spawn(|| {
            buffer_this_thread();
            let mut line = Writer.make_writer();
            line.write_all(b"one line\n").unwrap();
            drop(line);
            assert_eq!(buffered_len(), 9, "a short line waits for the flusher");
            flush();
            assert_eq!(buffered_len(), 0);
            let mut line = Writer.make_writer();
            line.write_all(&vec![b'x'; FLUSH_AT]).unwrap();
            assert_eq!(buffered_len(), FLUSH_AT, "never written in the middle of an event");
            drop(line);
            assert_eq!(buffered_len(), 0, "a full buffer is written when its event ends");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn only_threads_that_ask_are_buffered() {
        std::thread::spawn(|| {
            assert!(!Writer.make_writer().buffered);
            buffer_this_thread();
            assert!(Writer.make_writer().buffered);
        })
        .join()
        .unwrap();
    }
}
