//! The DATA scanner and `dot_stuff`.
//!
//! Input: a control byte (chunking; bits 3-5 pick the size limit), then the
//! bytes a client sends after `354`.
//!
//! Properties, from the contract in `src/proto/smtp/data.rs`:
//! - Chunking does not matter: fed whole or in any chunks, the stored body,
//!   the end point, the size and the flags are the same. The one exception
//!   is the body of an oversized message, which is refused and never used:
//!   it is only some prefix of the real body.
//! - Memory is bounded: the stored body never exceeds the limit; the limit
//!   changes nothing but that (same end, size and flags); the body is
//!   complete exactly when not `is_oversized`, and `size` counts it all.
//! - The end point is right after a CRLF "." CRLF (or a "." CRLF at the
//!   very start), and the stored body then ends in CRLF (or is empty) and
//!   has no bare LF and no bare CR (each is normalised to CRLF).
//! - Round trips: a stored body, dot-stuffed and scanned again, comes back
//!   byte for byte and ends exactly at the end of the stuffed form; and any
//!   input, dot-stuffed and scanned, comes back as the scanner's
//!   normalisation of it (bare LF or CR -> CRLF, a final CRLF added).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::proto::smtp::{dot_stuff, DataProgress, DataScanner};
use ringmail_fuzz::{split_control, ChunkPlan};

const LIMITS: [usize; 8] = [0, 1, 2, 5, 16, 100, 1000, 1 << 20];

/// Everything observable after scanning one chunking.
#[derive(Debug, PartialEq)]
struct Scan {
    body: Vec<u8>,
    /// Bytes of the input that belonged to the message, if it ended.
    end: Option<usize>,
    oversized: bool,
    eight_bit: bool,
    size: usize,
}

fn scan(chunks: &[&[u8]], limit: usize) -> Scan {
    let mut scanner = DataScanner::new(limit);
    let mut body = Vec::new();
    let mut pos = 0;
    let mut end = None;
    for chunk in chunks {
        match scanner.feed(chunk, &mut body) {
            DataProgress::NeedMore => pos += chunk.len(),
            DataProgress::Ended { consumed } => {
                assert!(consumed <= chunk.len());
                end = Some(pos + consumed);
                break;
            }
        }
        assert!(body.len() <= limit, "stored {} bytes over the limit {limit}", body.len());
    }
    assert!(body.len() <= limit);
    assert_eq!(scanner.is_done(), end.is_some());
    if end.is_some() {
        // After the end nothing more is taken or stored.
        let before = body.len();
        assert_eq!(scanner.feed(b".\r\nx", &mut body), DataProgress::Ended { consumed: 0 });
        assert_eq!(body.len(), before);
    }
    Scan { body, end, oversized: scanner.is_oversized(), eight_bit: scanner.saw_8bit(), size: scanner.size() }
}

/// What the scanner stores for a dot-stuffed `body` (see the unit test
/// `dot_stuff_round_trips_through_the_scanner`): each bare LF and each bare
/// CR as CRLF, and a CRLF added to a non-empty body that does not end in one.
fn normalised(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 2);
    for (i, &b) in body.iter().enumerate() {
        if b == b'\n' && (i == 0 || body[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
        if b == b'\r' && body.get(i + 1) != Some(&b'\n') {
            out.push(b'\n');
        }
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Scans the wire form of `body` with room to spare; it must end exactly at
/// the terminator `dot_stuff` added.
fn stuff_and_scan(body: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    dot_stuff(body, &mut wire);
    assert!(wire.ends_with(b".\r\n"));
    let whole = scan(&[&wire], usize::MAX);
    assert_eq!(whole.end, Some(wire.len()), "the stuffed form of {body:?} ends early or never");
    assert!(!whole.oversized);
    whole.body
}

fuzz_target!(|data: &[u8]| {
    let Some((control, input)) = split_control(data) else {
        return;
    };
    let limit = LIMITS[usize::from((control >> 3) & 7)];

    let chunks = ChunkPlan::new(control).chunks(input);
    let unlimited = scan(&[input], usize::MAX);
    assert_eq!(unlimited, scan(&chunks, usize::MAX), "chunking changed the scan");
    assert_eq!(unlimited.body.len(), unlimited.size);

    let whole = scan(&[input], limit);
    let chunked = scan(&chunks, limit);
    for s in [&whole, &chunked] {
        assert_eq!((s.end, s.size, s.eight_bit), (unlimited.end, unlimited.size, unlimited.eight_bit));
        assert_eq!(s.oversized, s.size > limit);
        if s.oversized {
            // Refused (552) and never used: what was kept before the limit
            // was hit is some prefix, which may depend on the chunking (a
            // run of bytes that does not fit is dropped whole).
            assert!(unlimited.body.starts_with(&s.body));
        } else {
            assert_eq!(s.body, unlimited.body);
        }
    }
    if let Some(end) = unlimited.end {
        let message = &input[..end];
        assert!(message == b".\r\n" || message.ends_with(b"\r\n.\r\n"), "ended on {message:?}");
        let body = &unlimited.body;
        assert!(body.is_empty() || body.ends_with(b"\r\n"));
        assert!(body.windows(2).all(|w| w[1] != b'\n' || w[0] == b'\r') && body.first() != Some(&b'\n'));
        assert!(body.windows(2).all(|w| w[0] != b'\r' || w[1] == b'\n') && body.last() != Some(&b'\r'));
        assert_eq!(&stuff_and_scan(body), body, "a stored body did not survive dot_stuff and a rescan");
    }

    // Any bytes as a body: the way out and back in.
    assert_eq!(stuff_and_scan(input), normalised(input));
});
