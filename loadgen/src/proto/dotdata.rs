//! Reading dot-terminated content (SMTP DATA, POP3 multi-line replies):
//! finds the `CRLF . CRLF` terminator and removes dot-stuffing, streaming,
//! whatever the chunking.
//!
//! Pure and resumable: [`DotReader::feed`] takes any slice and hands
//! unstuffed content to a callback. The terminator is recognised only as
//! `.\r\n` on a line that follows a CRLF: `\n.\r\n`, `\r.\r\n` and `\n.\n`
//! are content (the SMTP smuggling cases), with the leading dot removed as
//! any stuffed dot is.

/// Where we are within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// At the start of a line; `crlf` says whether the previous line ended in CRLF.
    LineStart { crlf: bool },
    /// Saw a `.` at line start.
    Dot { crlf: bool },
    /// Saw `.` `\r` at line start.
    DotCr { crlf: bool },
    /// Inside a line.
    Mid,
}

/// Result of one [`DotReader::feed`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Bytes of the input used (all of it unless `done`).
    pub consumed: usize,
    /// The terminator was found; bytes after `consumed` belong to what follows.
    pub done: bool,
}

/// A streaming dot-terminated content reader.
#[derive(Debug, Clone)]
pub struct DotReader {
    at: At,
    /// The last content byte emitted was `\r` (a CRLF may span two chunks).
    prev_cr: bool,
    /// Unstuffed content bytes emitted so far.
    content_len: u64,
}

impl Default for DotReader {
    fn default() -> Self {
        Self::new()
    }
}

impl DotReader {
    /// A reader positioned right after the line that introduced the content
    /// (`DATA\r\n` answered by 354, or `+OK` of RETR), so an immediate
    /// `.\r\n` is an empty body.
    pub fn new() -> Self {
        DotReader { at: At::LineStart { crlf: true }, prev_cr: false, content_len: 0 }
    }

    /// Unstuffed content bytes seen so far.
    pub fn content_len(&self) -> u64 {
        self.content_len
    }

    /// Feeds input; `emit` receives unstuffed content in order.
    pub fn feed(&mut self, input: &[u8], mut emit: impl FnMut(&[u8])) -> Fed {
        let mut i = 0;
        while i < input.len() {
            match self.at {
                At::Mid => {
                    let rest = &input[i..];
                    match memchr::memchr(b'\n', rest) {
                        Some(nl) => {
                            let crlf = if nl > 0 { rest[nl - 1] == b'\r' } else { self.prev_cr };
                            self.out(&rest[..=nl], &mut emit);
                            i += nl + 1;
                            self.at = At::LineStart { crlf };
                        }
                        None => {
                            self.out(rest, &mut emit);
                            i = input.len();
                        }
                    }
                }
                At::LineStart { crlf } => {
                    if input[i] == b'.' {
                        self.at = At::Dot { crlf };
                        i += 1;
                    } else {
                        self.at = At::Mid;
                    }
                }
                At::Dot { crlf } => {
                    if input[i] == b'\r' {
                        self.at = At::DotCr { crlf };
                        i += 1;
                    } else {
                        // A stuffed dot: drop it, the rest of the line is content.
                        self.at = At::Mid;
                    }
                }
                At::DotCr { crlf } => {
                    if input[i] == b'\n' && crlf {
                        return Fed { consumed: i + 1, done: true };
                    }
                    // `.\r` not ending the content: the `\r` is content.
                    self.out(b"\r", &mut emit);
                    self.at = At::Mid;
                }
            }
        }
        Fed { consumed: input.len(), done: false }
    }

    fn out(&mut self, bytes: &[u8], emit: &mut impl FnMut(&[u8])) {
        if let Some(&last) = bytes.last() {
            self.prev_cr = last == b'\r';
            self.content_len += bytes.len() as u64;
            emit(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in chunks of `size`, returning the content and the
    /// bytes left after the terminator (None if it was never found).
    fn read_chunked(input: &[u8], size: usize) -> (Vec<u8>, Option<Vec<u8>>) {
        let mut r = DotReader::new();
        let mut content = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            let end = (pos + size).min(input.len());
            let fed = r.feed(&input[pos..end], |b| content.extend_from_slice(b));
            if fed.done {
                assert_eq!(r.content_len(), content.len() as u64);
                return (content, Some(input[pos + fed.consumed..].to_vec()));
            }
            pos = end;
        }
        (content, None)
    }

    fn sweep(input: &[u8], want: &[u8], rest: Option<&[u8]>) {
        for size in [1, 2, 3, 4, 7, 8, 16, 64, 512, 100_000] {
            let (content, left) = read_chunked(input, size);
            assert_eq!(content, want, "chunk size {size}");
            assert_eq!(left.as_deref(), rest, "chunk size {size}");
        }
    }

    #[test]
    fn plain_body_ends_at_crlf_dot_crlf() {
        sweep(b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n", b"Subject: x\r\n\r\nhello\r\n", Some(b"QUIT\r\n"));
    }

    #[test]
    fn empty_body_is_just_the_dot() {
        sweep(b".\r\n", b"", Some(b""));
    }

    #[test]
    fn stuffed_dots_are_removed() {
        sweep(b"..leading\r\n...\r\n.x\r\n.\r\n", b".leading\r\n..\r\nx\r\n", Some(b""));
    }

    #[test]
    fn lf_dot_crlf_does_not_end_data() {
        sweep(b"a\n.\r\nb\r\n.\r\n", b"a\n\r\nb\r\n", Some(b""));
    }

    #[test]
    fn cr_dot_crlf_does_not_end_data() {
        sweep(b"a\r.\r\nb\r\n.\r\n", b"a\r.\r\nb\r\n", Some(b""));
    }

    #[test]
    fn lf_dot_lf_does_not_end_data() {
        sweep(b"a\n.\nb\r\n.\r\n", b"a\n\nb\r\n", Some(b""));
    }

    #[test]
    fn dot_cr_without_lf_keeps_the_cr() {
        sweep(b".\rx\r\n.\r\n", b"\rx\r\n", Some(b""));
    }

    #[test]
    fn unterminated_content_is_incomplete() {
        let (content, rest) = read_chunked(b"abc\r\n.", 2);
        assert_eq!(content, b"abc\r\n");
        assert_eq!(rest, None);
    }
}
