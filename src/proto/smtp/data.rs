//! The DATA phase: a resumable scanner that finds the end of a message,
//! undoes dot-stuffing and bounds memory; and [`dot_stuff`], its inverse,
//! for sending a stored body.
//!
//! The rules, chosen against SMTP smuggling (CVE-2023-51766 and kin):
//! - The message ends only on CRLF "." CRLF; the start of DATA counts as
//!   a line start. `LF . LF`, `LF . CRLF`, `CR . CR`, `CR . CRLF` never end it.
//! - A "real" line start is the DATA start or a byte after CRLF. Only there
//!   is a leading dot removed (dot-unstuffing).
//! - A bare LF (not after CR) and a bare CR (not before LF) are each stored
//!   as CRLF (Postfix 3.9 `smtpd_forbid_bare_newline = normalize`, extended
//!   to CR) but do not start a real line. So a stored body has no bare CR:
//!   relaying `\r.\r` unchanged would hand a next hop that ends lines on CR
//!   an end of data (the outbound half of SMTP smuggling). BINARYMIME
//!   bodies, when they come, must bypass this.
//! - The stored body ends with the CRLF before the final dot (an empty
//!   message is an empty body), so every stored line ends in CRLF.
//!
//! Line length inside DATA is not limited (RFC 5321's 1000 octets bind the
//! sender; memory is bounded by `max_size` instead). The scanner never looks
//! at anything but bytes: no headers, no MIME.

/// What [`DataScanner::feed`] did with a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataProgress {
    /// Every byte was consumed and the message has not ended: feed more.
    NeedMore,
    /// The message ended; the first `consumed` bytes (up to and including
    /// the final CRLF "." CRLF) belonged to it, the rest is the next command.
    Ended { consumed: usize },
}

/// Where the scanner is within the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScanState {
    /// At a real line start (DATA start, or after CRLF).
    LineStart,
    /// Inside a line, the previous byte not a CR.
    Text,
    /// Inside a line, the previous byte a CR (its CR already stored; an
    /// LF is added if the next byte is not one).
    Cr,
    /// A real line start then ".": the dot is held back.
    Dot,
    /// A real line start then ".\r": both held back.
    DotCr,
    /// The final CRLF "." CRLF was seen.
    Done,
}

/// Scans one message's DATA bytes, chunk by chunk, into a body buffer.
///
/// Feed it any chunking of the stream; the stored body and the end point
/// are the same (the chunk-size sweep tests and the `smtp_data` fuzz target
/// prove it). Memory is bounded: once the stored body would exceed
/// `max_size` nothing more is stored ([`DataScanner::is_oversized`]), but
/// scanning goes on to the end so the session stays in sync. The body of an
/// oversized message is only some prefix of it, which may depend on the
/// chunking (a run that does not fit is dropped whole); it must not be used.
#[derive(Debug, Clone)]
pub struct DataScanner {
    state: ScanState,
    /// The limit on the stored (unstuffed, normalised) body.
    max_size: usize,
    /// Bytes of body seen so far, counted past the limit too.
    size: usize,
    /// Set once `size` passed `max_size`; from then on nothing is stored.
    oversized: bool,
    /// Any body byte >= 0x80 seen (for the envelope's 8-bit flag).
    eight_bit: bool,
}

impl DataScanner {
    /// A scanner at the start of DATA that stores at most `max_size` bytes.
    pub fn new(max_size: usize) -> DataScanner {
        DataScanner { state: ScanState::LineStart, max_size, size: 0, oversized: false, eight_bit: false }
    }

    /// Scans `input`, appending the unstuffed, normalised body to `body`.
    ///
    /// Returns [`DataProgress::NeedMore`] when all of `input` was message
    /// bytes, or [`DataProgress::Ended`] with how many bytes were. After the
    /// end, further calls store nothing and return `Ended { consumed: 0 }`.
    pub fn feed(&mut self, input: &[u8], body: &mut Vec<u8>) -> DataProgress {
        let mut i = 0;
        while i < input.len() {
            let plain_start = match self.state {
                ScanState::Text => true,
                ScanState::LineStart => !matches!(input[i], b'.' | b'\r' | b'\n'),
                _ => false,
            };
            if plain_start {
                // Fast path: store at once every byte up to the first one
                // the state machine must look at (see `plain_run`).
                let run = plain_run(&input[i..]);
                if run > 0 {
                    self.store(&input[i..i + run], body);
                    self.state = ScanState::Text;
                    i += run;
                    continue;
                }
            }
            let b = input[i];
            i += 1;
            self.state = match (self.state, b) {
                (ScanState::Done, _) => return DataProgress::Ended { consumed: i - 1 },
                (ScanState::LineStart, b'.') => ScanState::Dot,
                (ScanState::DotCr, b'\n') => {
                    self.state = ScanState::Done;
                    return DataProgress::Ended { consumed: i };
                }
                // A dot at a real line start with more on the line: dropped.
                (ScanState::Dot, b'\r') => ScanState::DotCr,
                (ScanState::Dot, _) => self.byte(b, body),
                (ScanState::DotCr, _) => {
                    self.store(b"\r", body);
                    self.after_cr(b, body)
                }
                (ScanState::Cr, _) => self.after_cr(b, body),
                (ScanState::LineStart | ScanState::Text, _) => self.byte(b, body),
            };
        }
        if self.state == ScanState::Done {
            DataProgress::Ended { consumed: 0 }
        } else {
            DataProgress::NeedMore
        }
    }

    /// A byte inside a line (not after CR): store it, LF as CRLF.
    fn byte(&mut self, b: u8, body: &mut Vec<u8>) -> ScanState {
        match b {
            b'\r' => {
                self.store(b"\r", body);
                ScanState::Cr
            }
            // A bare LF: normalised, but not a real line start.
            b'\n' => {
                self.store(b"\r\n", body);
                ScanState::Text
            }
            _ => {
                self.store(&[b], body);
                ScanState::Text
            }
        }
    }

    /// A byte after a stored CR: LF completes a CRLF (a real line start);
    /// anything else makes the CR a bare one, stored as CRLF but not a real
    /// line start.
    fn after_cr(&mut self, b: u8, body: &mut Vec<u8>) -> ScanState {
        self.store(b"\n", body);
        if b == b'\n' {
            ScanState::LineStart
        } else {
            self.byte(b, body)
        }
    }

    fn store(&mut self, bytes: &[u8], body: &mut Vec<u8>) {
        if !self.eight_bit {
            self.eight_bit = !bytes.is_ascii();
        }
        self.size = self.size.saturating_add(bytes.len());
        if self.size > self.max_size {
            self.oversized = true;
        }
        if !self.oversized {
            body.extend_from_slice(bytes);
        }
    }

    /// True once the body passed `max_size`: the body buffer is incomplete
    /// and the message must be refused (552).
    pub fn is_oversized(&self) -> bool {
        self.oversized
    }

    /// True if any body byte >= 0x80 was seen.
    pub fn saw_8bit(&self) -> bool {
        self.eight_bit
    }

    /// Size of the unstuffed, normalised body so far, counted past the limit.
    pub fn size(&self) -> usize {
        self.size
    }

    /// True once the final CRLF "." CRLF was seen.
    pub fn is_done(&self) -> bool {
        self.state == ScanState::Done
    }
}

/// The length of the longest prefix of `input` (which starts inside a line,
/// or at a line start with a byte other than ".", CR or LF) that the scanner
/// stores unchanged and after which it is still inside a line: text, and
/// CRLFs each followed by a byte other than ".", CR or LF. It ends at the
/// first CR or LF that is not such a CRLF, or at a CRLF whose next byte is
/// not in `input` yet; those go through the state machine byte by byte.
/// Found with `memchr2`, so a long message costs a vectorised search per
/// line rather than a state transition per byte.
fn plain_run(input: &[u8]) -> usize {
    let mut pos = 0;
    while let Some(k) = memchr::memchr2(b'\r', b'\n', &input[pos..]) {
        let i = pos + k;
        let plain_crlf = input[i] == b'\r'
            && input.get(i + 1) == Some(&b'\n')
            && input.get(i + 2).is_some_and(|&b| !matches!(b, b'.' | b'\r' | b'\n'));
        if !plain_crlf {
            return i;
        }
        pos = i + 3;
    }
    input.len()
}

/// Appends the wire form of `body` to `out`: a dot added to every line that
/// starts with one, bare LFs and bare CRs sent as CRLF (each a line end), a
/// CRLF added if the body does not end with one, then ".\r\n". So no bare
/// CR leaves ringmail, even from a body stored before intake normalised it.
///
/// For a body the scanner stored, scanning the result gives the body back.
pub fn dot_stuff(body: &[u8], out: &mut Vec<u8>) {
    dot_stuff_lines(body, out);
    out.extend_from_slice(b".\r\n");
}

/// [`dot_stuff`] without the final ".\r\n": for a message sent in parts
/// (fields put in front of a stored body), each part ending with CRLF.
///
/// Runs of whole CRLF lines are copied at once: only a line starting with a
/// dot, a bare CR or a bare LF interrupts a copy.
pub fn dot_stuff_lines(body: &[u8], out: &mut Vec<u8>) {
    out.reserve(body.len() + body.len() / 64 + 5);
    if body.first() == Some(&b'.') {
        out.push(b'.');
    }
    // body[copied..] is not in `out` yet; line ends are searched from `from`.
    let (mut copied, mut from) = (0, 0);
    while let Some(k) = memchr::memchr2(b'\r', b'\n', &body[from..]) {
        let i = from + k;
        let next_line = if body[i] == b'\r' && body.get(i + 1) == Some(&b'\n') {
            i + 2
        } else {
            // A bare CR or LF: sent as CRLF.
            out.extend_from_slice(&body[copied..i]);
            out.extend_from_slice(b"\r\n");
            copied = i + 1;
            i + 1
        };
        if body.get(next_line) == Some(&b'.') {
            out.extend_from_slice(&body[copied..next_line]);
            out.push(b'.');
            copied = next_line;
        }
        from = next_line;
    }
    out.extend_from_slice(&body[copied..]);
    if !matches!(body.last(), None | Some(b'\r' | b'\n')) {
        out.extend_from_slice(b"\r\n");
    }
}

/// [`dot_stuff_lines`] of a prefix of `body`: whole lines, about `max`
/// bytes of them (fewer if a line ends before, more if the first line is
/// longer). Returns how many bytes of `body` it took. Calling it on what is
/// left until nothing is, then adding ".\r\n", gives exactly
/// [`dot_stuff`]'s output, in pieces a bounded buffer can hold.
pub fn dot_stuff_piece(body: &[u8], max: usize, out: &mut Vec<u8>) -> usize {
    let take = if body.len() <= max {
        body.len()
    } else {
        // Cut after an LF, so that the next piece starts at a line start
        // and a CRLF is never split.
        match memchr::memrchr(b'\n', &body[..max]) {
            Some(i) => i + 1,
            None => memchr::memchr(b'\n', &body[max..]).map_or(body.len(), |i| max + i + 1),
        }
    };
    dot_stuff_lines(&body[..take], out);
    take
}

/// How many bytes at the start of `body`, at most `max`, [`dot_stuff_lines`]
/// would send as they are: whole CRLF lines, none starting with a dot (a
/// bare CR or LF, a dot at a line start, or a line crossing `max` ends the
/// run). 0 when the first line is one of those.
pub fn verbatim_lines(body: &[u8], max: usize) -> usize {
    if body.first() == Some(&b'.') {
        return 0;
    }
    let window = &body[..body.len().min(max)];
    let (mut end, mut from) = (0, 0);
    while let Some(k) = memchr::memchr2(b'\r', b'\n', &window[from..]) {
        let i = from + k;
        if body[i] != b'\r' || body.get(i + 1) != Some(&b'\n') || i + 2 > window.len() {
            break;
        }
        end = i + 2;
        if body.get(end) == Some(&b'.') {
            break;
        }
        from = end;
    }
    end
}

/// The next piece of a large body sent with DATA, in [`dot_stuff_piece`]'s
/// bounded pieces.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// The first `n` bytes go on the wire as they are (no copy needed).
    Verbatim(usize),
    /// The first `n` bytes were dot-stuffed onto `out`.
    Stuffed(usize),
}

/// Takes the next piece of about `max` bytes off `body`: as it is when at
/// least a quarter of `max` needs no stuffing, else stuffed onto `out`.
/// The pieces in order, then ".\r\n", are exactly [`dot_stuff`]'s output.
pub fn next_piece(body: &[u8], max: usize, out: &mut Vec<u8>) -> Piece {
    let clean = verbatim_lines(body, max);
    if clean > 0 && clean >= max / 4 {
        Piece::Verbatim(clean)
    } else {
        Piece::Stuffed(dot_stuff_piece(body, max, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK_SIZES: [usize; 9] = [1, 2, 3, 4, 7, 16, 64, 512, usize::MAX];

    /// Scans `input` in chunks of `chunk`; returns (body, consumed or None,
    /// oversized, eight_bit).
    fn scan_chunked(input: &[u8], chunk: usize, max: usize) -> (Vec<u8>, Option<usize>, bool, bool) {
        let mut scanner = DataScanner::new(max);
        let mut body = Vec::new();
        let mut pos = 0;
        let mut end = None;
        while pos < input.len() {
            let piece = &input[pos..input.len().min(pos.saturating_add(chunk))];
            match scanner.feed(piece, &mut body) {
                DataProgress::NeedMore => pos += piece.len(),
                DataProgress::Ended { consumed } => {
                    end = Some(pos + consumed);
                    break;
                }
            }
        }
        (body, end, scanner.is_oversized(), scanner.saw_8bit())
    }

    /// Scans at every chunk size, asserts all agree, returns the result.
    fn scan(input: &[u8]) -> (Vec<u8>, Option<usize>) {
        let whole = scan_chunked(input, usize::MAX, 1 << 20);
        for chunk in CHUNK_SIZES {
            assert_eq!(scan_chunked(input, chunk, 1 << 20), whole, "chunk size {chunk}");
        }
        (whole.0, whole.1)
    }

    #[test]
    fn crlf_dot_crlf_ends_data_and_rest_is_left() {
        let input = b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n";
        let (body, end) = scan(input);
        assert_eq!(body, b"Subject: x\r\n\r\nhello\r\n");
        assert_eq!(end, Some(input.len() - 6));
    }

    #[test]
    fn dot_at_data_start_ends_an_empty_message() {
        assert_eq!(scan(b".\r\nQUIT\r\n"), (Vec::new(), Some(3)));
    }

    #[test]
    fn lf_dot_lf_does_not_end_data() {
        let (body, end) = scan(b"a\n.\nMAIL FROM:<evil@x.test>\r\n");
        assert_eq!(end, None);
        assert_eq!(body, b"a\r\n.\r\nMAIL FROM:<evil@x.test>\r\n");
    }

    #[test]
    fn lf_dot_crlf_does_not_end_data() {
        let (body, end) = scan(b"a\n.\r\nb\r\n");
        assert_eq!(end, None);
        assert_eq!(body, b"a\r\n.\r\nb\r\n");
    }

    #[test]
    fn cr_dot_cr_does_not_end_data() {
        let (body, end) = scan(b"a\r.\rb\r\n");
        assert_eq!(end, None);
        assert_eq!(body, b"a\r\n.\r\nb\r\n");
    }

    #[test]
    fn cr_dot_crlf_does_not_end_data() {
        let (body, end) = scan(b"a\r.\r\nb\r\n");
        assert_eq!(end, None);
        assert_eq!(body, b"a\r\n.\r\nb\r\n");
    }

    #[test]
    fn crlf_dot_lf_does_not_end_data_and_the_dot_is_unstuffed() {
        let (body, end) = scan(b"a\r\n.\nb\r\n");
        assert_eq!(end, None);
        assert_eq!(body, b"a\r\n\r\nb\r\n");
    }

    #[test]
    fn crlf_dot_cr_x_unstuffs_the_dot_and_ends_the_bare_cr() {
        let input = b"a\r\n.\rb\r\n.\r\r\n.\r\n";
        let (body, end) = scan(input);
        assert_eq!(body, b"a\r\n\r\nb\r\n\r\n\r\n");
        assert_eq!(end, Some(input.len()));
    }

    #[test]
    fn smuggled_end_after_bare_lf_then_real_end_works() {
        let input = b"x\n.\r\nRCPT TO:<a@b.test>\r\n.\r\n";
        let (body, end) = scan(input);
        assert_eq!(end, Some(input.len()));
        assert_eq!(body, b"x\r\n.\r\nRCPT TO:<a@b.test>\r\n");
    }

    #[test]
    fn leading_dot_is_removed_only_at_real_line_starts() {
        let (body, _) = scan(b"..one\r\n..two\n..three\r\n.\r\n");
        assert_eq!(body, b".one\r\n.two\r\n..three\r\n");
    }

    #[test]
    fn bare_lf_and_bare_cr_become_crlf() {
        let (body, _) = scan(b"a\nb\rc\r\r\n.\r\n");
        assert_eq!(body, b"a\r\nb\r\nc\r\n\r\n");
    }

    #[test]
    fn cr_dot_cr_is_stored_as_a_dot_line_that_relays_stuffed() {
        // The outbound half of SMTP smuggling: a next hop that ends lines
        // on a bare CR must not see `CR . CR` as the end of data.
        let (body, end) = scan(b"x\r.\rMAIL FROM:<evil@example.org>\r\n.\r\n");
        assert_eq!(end, Some(37));
        assert_eq!(body, b"x\r\n.\r\nMAIL FROM:<evil@example.org>\r\n");
        let mut wire = Vec::new();
        dot_stuff(&body, &mut wire);
        assert_eq!(wire, b"x\r\n..\r\nMAIL FROM:<evil@example.org>\r\n.\r\n");
        assert!(!wire.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n'), "no bare CR on the wire");
    }

    #[test]
    fn dot_stuff_sends_a_bare_cr_of_an_old_stored_body_as_a_line_end() {
        let mut wire = Vec::new();
        dot_stuff(b"a\r.\rb\r\n", &mut wire);
        assert_eq!(wire, b"a\r\n..\r\nb\r\n.\r\n");
    }

    #[test]
    fn message_over_the_limit_is_flagged_and_not_stored_but_scanned_to_the_end() {
        let input = b"0123456789\r\n0123456789\r\n.\r\nNOOP\r\n";
        for chunk in CHUNK_SIZES {
            let (body, end, oversized, _) = scan_chunked(input, chunk, 20);
            assert!(oversized);
            assert!(body.len() <= 20);
            assert_eq!(end, Some(input.len() - 6));
        }
        let (body, _, oversized, _) = scan_chunked(input, usize::MAX, 24);
        assert!(!oversized, "exactly the limit fits");
        assert_eq!(body.len(), 24);
    }

    #[test]
    fn eight_bit_bytes_are_noticed() {
        assert!(!scan_chunked(b"plain\r\n.\r\n", 3, 100).3);
        assert!(scan_chunked(b"caf\xc3\xa9\r\n.\r\n", 3, 100).3);
        assert!(scan_chunked(b".\xff\r\n.\r\n", 1, 100).3);
    }

    #[test]
    fn feeding_after_the_end_consumes_nothing() {
        let mut scanner = DataScanner::new(100);
        let mut body = Vec::new();
        assert_eq!(scanner.feed(b".\r\n", &mut body), DataProgress::Ended { consumed: 3 });
        assert_eq!(scanner.feed(b"x", &mut body), DataProgress::Ended { consumed: 0 });
        assert!(scanner.is_done());
        assert!(body.is_empty());
    }

    #[test]
    fn dot_stuff_stuffs_and_terminates() {
        let mut out = Vec::new();
        dot_stuff(b".a\r\nb\r\n.\r\n", &mut out);
        assert_eq!(out, b"..a\r\nb\r\n..\r\n.\r\n");
        out.clear();
        dot_stuff(b"", &mut out);
        assert_eq!(out, b".\r\n");
        out.clear();
        dot_stuff(b"no newline", &mut out);
        assert_eq!(out, b"no newline\r\n.\r\n");
        out.clear();
        dot_stuff(b"a\n.b", &mut out);
        assert_eq!(out, b"a\r\n..b\r\n.\r\n");
    }

    /// Bodies built from the bytes that matter, by a fixed xorshift.
    fn tricky_bodies() -> Vec<Vec<u8>> {
        let alphabet = [b'.', b'\r', b'\n', b'a', 0x80];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        (0..2000)
            .map(|n| {
                (0..n % 23)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        alphabet[(seed % 5) as usize]
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn dot_stuff_round_trips_through_the_scanner() {
        for body in tricky_bodies() {
            // What the scanner would store: bare LF and bare CR as CRLF,
            // ending in CRLF.
            let mut expected = Vec::new();
            for (i, &b) in body.iter().enumerate() {
                if b == b'\n' && (i == 0 || body[i - 1] != b'\r') {
                    expected.push(b'\r');
                }
                expected.push(b);
                if b == b'\r' && body.get(i + 1) != Some(&b'\n') {
                    expected.push(b'\n');
                }
            }
            if !expected.is_empty() && !expected.ends_with(b"\r\n") {
                expected.extend_from_slice(b"\r\n");
            }
            let mut wire = Vec::new();
            dot_stuff(&body, &mut wire);
            wire.extend_from_slice(b"NOOP\r\n");
            for chunk in [1, 3, usize::MAX] {
                let (stored, end, _, _) = scan_chunked(&wire, chunk, 1 << 20);
                assert_eq!(stored, expected, "body {body:?} chunk {chunk}");
                assert_eq!(end, Some(wire.len() - 6), "body {body:?}");
            }
        }
    }

    #[test]
    fn scanner_results_agree_at_every_chunk_size_on_tricky_input() {
        for body in tricky_bodies() {
            let mut input = body.clone();
            input.extend_from_slice(b"\r\n.\r\n");
            scan(&input);
        }
    }

    /// The byte-at-a-time stuffing this module had before the memchr one:
    /// the reference the fast one must agree with.
    fn reference_stuff_lines(body: &[u8], out: &mut Vec<u8>) {
        let mut rest = body;
        while !rest.is_empty() {
            if rest[0] == b'.' {
                out.push(b'.');
            }
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(end) => {
                    out.extend_from_slice(&rest[..end]);
                    out.extend_from_slice(b"\r\n");
                    let crlf = rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n');
                    rest = &rest[end + if crlf { 2 } else { 1 }..];
                }
                None => {
                    out.extend_from_slice(rest);
                    out.extend_from_slice(b"\r\n");
                    rest = &[];
                }
            }
        }
    }

    /// A body of `len` bytes like the load generator's (76-character lines,
    /// every 16th starting with a dot), with a few tricky bytes from `seed`.
    fn large_body(len: usize, seed: u64, tricky: bool) -> Vec<u8> {
        let mut body = Vec::with_capacity(len);
        let mut line = 0usize;
        let mut x = seed | 1;
        while body.len() < len {
            for i in 0..76 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let b = if i == 0 && line % 16 == 15 {
                    b'.'
                } else if tricky && x.is_multiple_of(211) {
                    [b'.', b'\r', b'\n', 0x80][(x >> 8) as usize % 4]
                } else {
                    b'a' + (x % 26) as u8
                };
                body.push(b);
            }
            body.extend_from_slice(b"\r\n");
            line += 1;
        }
        body.truncate(len);
        body
    }

    #[test]
    fn fast_stuffing_agrees_with_the_byte_at_a_time_one() {
        let mut bodies = tricky_bodies();
        bodies.extend(
            [1000, 4096, 65_536, (1 << 20) + 3]
                .iter()
                .flat_map(|&n| [large_body(n, n as u64, false), large_body(n, n as u64 + 7, true)]),
        );
        for body in &bodies {
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            dot_stuff_lines(body, &mut fast);
            reference_stuff_lines(body, &mut slow);
            assert!(fast == slow, "body of {} bytes", body.len());
        }
    }

    /// Bodies for the piecewise stuffing tests: tricky ones, large ones
    /// with and without dots and bare line ends, one line longer than a
    /// piece, a body that is one line, and many short clean lines.
    fn piece_bodies(step: usize) -> Vec<Vec<u8>> {
        let mut bodies: Vec<Vec<u8>> = tricky_bodies().into_iter().step_by(step).collect();
        bodies.push(large_body((1 << 20) + 5, 3, true));
        bodies.push(large_body((1 << 20) + 3, 8, false));
        bodies.push(large_body(256 << 10, 4, false));
        let mut long = vec![b'x'; 5000];
        long.extend_from_slice(b"\r\n.after\r\nplain\r\n\r\n.\r\nbare\nend\r");
        bodies.push(long);
        bodies.push(vec![b'y'; 3000]);
        bodies.push(b"a\r\n".repeat(3000));
        bodies
    }

    #[test]
    fn stuffing_in_pieces_gives_the_whole_at_every_piece_size() {
        for body in &piece_bodies(7) {
            let mut whole = Vec::new();
            dot_stuff(body, &mut whole);
            for max in [1, 2, 3, 77, 78, 79, 1024, 4096, 256 << 10] {
                let (mut pieces, mut rest, mut n) = (Vec::new(), &body[..], 0);
                while !rest.is_empty() {
                    let took = dot_stuff_piece(rest, max, &mut pieces);
                    assert!(took > 0);
                    rest = &rest[took..];
                    n += 1;
                }
                pieces.extend_from_slice(b".\r\n");
                assert!(pieces == whole, "body of {} bytes, pieces of {max} ({n} pieces)", body.len());
            }
        }
    }

    #[test]
    fn verbatim_and_stuffed_pieces_give_the_whole_at_every_piece_size() {
        let mut verbatim_seen = false;
        for body in &piece_bodies(5) {
            let mut whole = Vec::new();
            dot_stuff(body, &mut whole);
            for max in [1, 2, 3, 4, 8, 77, 78, 79, 1024, 4096, 256 << 10] {
                let (mut wire, mut rest) = (Vec::new(), &body[..]);
                while !rest.is_empty() {
                    let n = match next_piece(rest, max, &mut wire) {
                        Piece::Verbatim(n) => {
                            assert!(n <= max && rest[..n].ends_with(b"\r\n"));
                            verbatim_seen = true;
                            wire.extend_from_slice(&rest[..n]);
                            n
                        }
                        Piece::Stuffed(n) => n,
                    };
                    assert!(n > 0);
                    rest = &rest[n..];
                }
                wire.extend_from_slice(b".\r\n");
                assert!(wire == whole, "body of {} bytes, pieces of {max}", body.len());
            }
        }
        assert!(verbatim_seen);
    }

    #[test]
    fn verbatim_lines_stop_before_what_stuffing_changes() {
        assert_eq!(verbatim_lines(b"ab\r\ncd\r\n", 100), 8);
        assert_eq!(verbatim_lines(b"ab\r\n.cd\r\n", 100), 4);
        assert_eq!(verbatim_lines(b".ab\r\n", 100), 0);
        assert_eq!(verbatim_lines(b"ab\r\ncd\nef\r\n", 100), 4);
        assert_eq!(verbatim_lines(b"ab\r\ncd\ref\r\n", 100), 4);
        assert_eq!(verbatim_lines(b"ab\r\ncd", 100), 4);
        assert_eq!(verbatim_lines(b"ab\r\ncd\r", 100), 4);
        // A line crossing `max` is left out, and a CRLF never split.
        assert_eq!(verbatim_lines(b"ab\r\ncd\r\n", 7), 4);
        assert_eq!(verbatim_lines(b"ab\r\ncd\r\n", 8), 8);
        assert_eq!(verbatim_lines(b"abcdef\r\n", 4), 0);
    }

    #[test]
    fn large_bodies_scan_the_same_at_every_chunk_size_and_round_trip() {
        for (len, tricky) in [(1 << 20, false), ((1 << 20) + 1, true), (3 * 4096, false), (65_536 - 1, true)] {
            let body = large_body(len, len as u64, tricky);
            let mut wire = Vec::new();
            dot_stuff(&body, &mut wire);
            wire.extend_from_slice(b"QUIT\r\n");
            let whole = scan_chunked(&wire, usize::MAX, 2 << 20);
            assert_eq!(whole.1, Some(wire.len() - 6));
            // Chunk sizes around the driver's reads (4 KiB to 64 KiB) and
            // odd ones, so that CRLF and ".": split across every edge.
            for chunk in [1, 2, 3, 5, 4095, 4096, 4097, 65_535, 65_536, 65_537] {
                assert!(scan_chunked(&wire, chunk, 2 << 20) == whole, "{len} bytes, chunk {chunk}");
            }
            // What the scanner stored is what a stuffer sends again.
            let mut again = Vec::new();
            dot_stuff(&whole.0, &mut again);
            let reference = scan_chunked(&again, 7, 2 << 20);
            assert!(reference.0 == whole.0, "{len} bytes: stored, stuffed and scanned again");
            if !tricky {
                // Byte for byte (with the CRLF the stuffer adds to a cut line).
                let mut expected = body.clone();
                if !expected.ends_with(b"\r\n") {
                    expected.extend_from_slice(b"\r\n");
                }
                assert!(whole.0 == expected, "a clean body of {len} bytes is stored as it was");
            }
        }
    }

    #[test]
    fn a_message_of_exactly_n_reads_ends_where_its_dot_is() {
        // 209 lines of 78 bytes and one of 79, then ".\r\n": exactly
        // 4 × 4096 bytes, the final dot at the very end of the last read.
        let mut body = Vec::new();
        for _ in 0..209 {
            body.extend_from_slice(&[b'x'; 76]);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(&[b'y'; 77]);
        body.extend_from_slice(b"\r\n");
        let mut wire = Vec::new();
        dot_stuff(&body, &mut wire);
        assert_eq!(wire.len(), 4 * 4096);
        for chunk in [1, 4096, 8192, 16_384] {
            let (stored, end, _, _) = scan_chunked(&wire, chunk, 1 << 20);
            assert_eq!(end, Some(4 * 4096), "chunk {chunk}");
            assert_eq!(stored, body);
        }
    }
}
