//! Server replies as the client reads them: framing reply lines, assembling
//! multi-line replies (RFC 5321 §4.2.1), splitting off the RFC 3463 enhanced
//! status code (RFC 2034), and the one classification of a reply code.
//!
//! This file owns the bytes-to-[`Reply`] step and nothing else: it does not
//! know which command a reply answers; `client` and `transaction` do.
//!
//! The reader is lenient where being strict would only lose mail (a bare LF
//! ends a line, the enhanced code is taken even when ENHANCEDSTATUSCODES was
//! not advertised) and strict where the peer could hurt us (every line and
//! every reply is bounded; a line that is not `ddd`, `ddd text` or
//! `ddd-text` is an error, because after it we no longer know which reply
//! answers which command).

use std::borrow::Cow;
use std::fmt;

use thiserror::Error;

/// Longest reply line accepted, CRLF included. RFC 5321 §4.5.3.1.5 says
/// 512; real servers overshoot, so we allow four times that.
pub const MAX_LINE_LEN: usize = 2048;

/// Most lines in one multi-line reply (a large EHLO has ~20).
pub const MAX_LINES: usize = 128;

/// One complete server reply.
///
/// `Display` renders it the way logs and DSNs quote it:
/// `550 5.1.1 user unknown`, or `250 ok` without an enhanced code. The text
/// of a multi-line reply is its lines joined by single spaces; it never
/// contains control characters (they are replaced by spaces on the way in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code, 200..=599.
    pub code: u16,
    /// The RFC 3463 code from the first line (`5.1.1` is `(5, 1, 1)`); its
    /// class always equals the first digit of `code`.
    pub enhanced: Option<(u8, u16, u16)>,
    /// The text after code and enhanced code; may be empty.
    pub text: String,
}

impl Reply {
    /// A reply this client makes up for a decision it takes itself (a
    /// message over the SIZE limit, a timeout); never sent on the wire.
    pub(crate) fn local(code: u16, enhanced: (u8, u16, u16), text: impl Into<String>) -> Reply {
        Reply { code, enhanced: Some(enhanced), text: text.into() }
    }

    /// The RFC 3463 status this reply stands for: its own enhanced code,
    /// or `X.0.0` from the reply code's class when it gave none (as
    /// Postfix's `dsn=` does).
    pub fn dsn(&self) -> Dsn {
        let (c, s, d) = self.enhanced.unwrap_or(((self.code / 100) as u8, 0, 0));
        Dsn(c, s, d)
    }

    /// [`classify`] of this reply's code.
    pub fn class(&self) -> Class {
        classify(self.code)
    }

    /// A 2xx reply.
    pub fn is_positive(&self) -> bool {
        self.class() == Class::Positive
    }
}

/// An RFC 3463 status code, `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dsn(pub u8, pub u16, pub u16);

impl fmt::Display for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some((class, subject, detail)) = self.enhanced {
            write!(f, " {class}.{subject}.{detail}")?;
        }
        if !self.text.is_empty() {
            write!(f, " {}", self.text)?;
        }
        Ok(())
    }
}

/// What a reply code means for the mail it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 2xx: done.
    Positive,
    /// 4xx, and anything that is not a final answer: try again later.
    Transient,
    /// 5xx: do not try again.
    Permanent,
}

/// Classifies a reply code. 1xx and 3xx are not final answers and codes
/// outside 100..=599 are not SMTP; both are `Transient`, because mail must
/// never bounce on a reply we do not understand. (The 354 to DATA is
/// recognised by the transaction before it ever gets here.)
pub fn classify(code: u16) -> Class {
    match code {
        200..=299 => Class::Positive,
        400..=499 => Class::Transient,
        500..=599 => Class::Permanent,
        0..=199 | 300..=399 | 600..=u16::MAX => Class::Transient,
    }
}

/// Why the reply stream cannot be read any further. Each one ends the
/// connection: replies can no longer be matched to commands.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplyError {
    /// A line (CRLF included) longer than [`MAX_LINE_LEN`].
    #[error("reply line longer than {max} bytes")]
    LineTooLong { max: usize },
    /// A multi-line reply with more than [`MAX_LINES`] lines.
    #[error("reply with more than {max} lines")]
    TooManyLines { max: usize },
    /// A line that is not `ddd`, `ddd text` or `ddd-text` with a code in
    /// 200..=599; `line` is its start, control characters replaced.
    #[error("malformed reply line {line:?}")]
    Malformed { line: String },
    /// A continuation line whose code differs from the first line's.
    #[error("reply line with code {found} inside a {expected} reply")]
    CodeMismatch { expected: u16, found: u16 },
}

/// A complete reply plus the text of each of its lines (EHLO needs them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    pub reply: Reply,
    /// Each line's text, enhanced code removed, in order, when the reply
    /// has more than one line; empty for a one-line reply (most replies:
    /// its text is `reply.text`). See [`Assembled::lines`].
    pub more_lines: Vec<String>,
}

impl Assembled {
    /// Each line's text, enhanced code removed, in order.
    pub fn lines(&self) -> &[String] {
        match self.more_lines.is_empty() {
            true => std::slice::from_ref(&self.reply.text),
            false => &self.more_lines,
        }
    }
}

/// The lines of a multi-line reply read so far.
#[derive(Debug)]
struct Partial {
    code: u16,
    enhanced: Option<(u8, u16, u16)>,
    lines: Vec<String>,
}

/// Resumable reader of replies. It consumes whole lines only: the caller
/// keeps the unconsumed tail (a partial line) and offers it again with more
/// bytes. Lines of an unfinished multi-line reply are held here.
#[derive(Debug, Default)]
pub struct ReplyReader {
    partial: Option<Partial>,
}

impl ReplyReader {
    /// Reads from the start of `input` until one reply is complete or only
    /// a partial line is left. Returns the bytes consumed and the reply, if
    /// one was completed. Bytes after a completed reply are not touched.
    pub fn read(&mut self, input: &[u8]) -> Result<(usize, Option<Assembled>), ReplyError> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            let Some(lf) = memchr::memchr(b'\n', rest) else {
                // A partial line of MAX_LINE_LEN bytes can only grow past it.
                return match rest.len() >= MAX_LINE_LEN {
                    true => Err(ReplyError::LineTooLong { max: MAX_LINE_LEN }),
                    false => Ok((pos, None)),
                };
            };
            if lf + 1 > MAX_LINE_LEN {
                return Err(ReplyError::LineTooLong { max: MAX_LINE_LEN });
            }
            let raw = &rest[..lf];
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            pos += lf + 1;
            let line = parse_line(raw)?;
            if let Some(assembled) = self.push(line)? {
                return Ok((pos, Some(assembled)));
            }
        }
    }

    /// Adds one parsed line; returns the reply when it was the last line.
    fn push(&mut self, line: Line<'_>) -> Result<Option<Assembled>, ReplyError> {
        let (enhanced, text) = split_enhanced(line.code, &line.text);
        if line.last && self.partial.is_none() {
            // One line, the reply itself.
            let reply = Reply { code: line.code, enhanced, text: text.to_owned() };
            return Ok(Some(Assembled { reply, more_lines: Vec::new() }));
        }
        let partial = self.partial.get_or_insert_with(|| Partial { code: line.code, enhanced, lines: Vec::new() });
        if partial.code != line.code {
            return Err(ReplyError::CodeMismatch { expected: partial.code, found: line.code });
        }
        if partial.lines.len() == MAX_LINES {
            return Err(ReplyError::TooManyLines { max: MAX_LINES });
        }
        partial.lines.push(text.to_owned());
        if !line.last {
            return Ok(None);
        }
        let Some(done) = self.partial.take() else {
            return Ok(None);
        };
        let joined: Vec<&str> = done.lines.iter().map(|l| l.as_str()).filter(|l| !l.is_empty()).collect();
        Ok(Some(Assembled {
            reply: Reply { code: done.code, enhanced: done.enhanced, text: joined.join(" ") },
            more_lines: done.lines,
        }))
    }
}

/// One reply line, parsed.
#[derive(Debug)]
struct Line<'a> {
    code: u16,
    /// `ddd text` or bare `ddd` (the end), not `ddd-text`.
    last: bool,
    /// Borrowed from the input when it is printable ASCII (the usual case).
    text: Cow<'a, str>,
}

fn parse_line(raw: &[u8]) -> Result<Line<'_>, ReplyError> {
    let malformed = || ReplyError::Malformed { line: printable(&raw[..raw.len().min(64)]) };
    let code = match raw {
        [a @ b'2'..=b'5', b @ b'0'..=b'9', c @ b'0'..=b'9', ..] => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return Err(malformed()),
    };
    let last = match raw.get(3) {
        None | Some(b' ') => true,
        Some(b'-') => false,
        Some(_) => return Err(malformed()),
    };
    let rest = raw.get(4..).unwrap_or(&[]);
    // Printable ASCII is its own `printable`: no copy.
    let text = match rest.iter().all(|&b| (b' '..=b'~').contains(&b)) {
        true => Cow::Borrowed(std::str::from_utf8(rest).map_err(|_| malformed())?.trim()),
        false => Cow::Owned(printable(rest).trim().to_owned()),
    };
    Ok(Line { code, last, text })
}

/// Lossy UTF-8 with every control character turned into a space, so a
/// reply text can go into a log line or a DSN header as it is.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Splits `5.1.1 rest` into the code and `rest` when the text starts with
/// an RFC 3463 code whose class matches the reply code's first digit.
fn split_enhanced(code: u16, text: &str) -> (Option<(u8, u16, u16)>, &str) {
    let (token, rest) = text.split_once(' ').unwrap_or((text, ""));
    let mut parts = token.split('.');
    let parsed = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(class), Some(subject), Some(detail), None) => {
            number(class, 1).zip(number(subject, 3)).zip(number(detail, 3))
        }
        _ => None,
    };
    match parsed {
        Some(((class, subject), detail)) if class == code / 100 && matches!(class, 2 | 4 | 5) => {
            let class = u8::try_from(class).unwrap_or(0);
            (Some((class, subject, detail)), rest.trim_start())
        }
        _ => (None, text),
    }
}

/// A decimal of 1..=`max_digits` ASCII digits.
fn number(s: &str, max_digits: usize) -> Option<u16> {
    let ok = !s.is_empty() && s.len() <= max_digits && s.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| s.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8]) -> Result<Vec<Assembled>, ReplyError> {
        let mut reader = ReplyReader::default();
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let (n, reply) = reader.read(&input[pos..])?;
            pos += n;
            match reply {
                Some(r) => out.push(r),
                None => return Ok(out),
            }
        }
    }

    fn one(input: &str) -> Reply {
        one_bytes(input.as_bytes())
    }

    fn one_bytes(input: &[u8]) -> Reply {
        let mut all = read_all(input).expect("valid reply");
        assert_eq!(all.len(), 1, "{input:?}");
        all.remove(0).reply
    }

    #[test]
    fn single_line_with_enhanced_code_displays_like_the_wire() {
        let r = one("550 5.1.1 <x@y>: user unknown\r\n");
        assert_eq!(r.code, 550);
        assert_eq!(r.enhanced, Some((5, 1, 1)));
        assert_eq!(r.text, "<x@y>: user unknown");
        assert_eq!(r.to_string(), "550 5.1.1 <x@y>: user unknown");
    }

    #[test]
    fn multi_line_reply_joins_texts_and_keeps_lines() {
        let all = read_all(b"250-mx.test hi\r\n250-PIPELINING\r\n250 SIZE 100\r\n").unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].reply.text, "mx.test hi PIPELINING SIZE 100");
        assert_eq!(all[0].lines(), ["mx.test hi", "PIPELINING", "SIZE 100"]);
    }

    #[test]
    fn a_one_line_reply_is_its_own_line() {
        for (input, text) in [("250 2.0.0 Ok: queued\r\n", "Ok: queued"), ("354\r\n", ""), ("220 mx hi \r\n", "mx hi")]
        {
            let all = read_all(input.as_bytes()).unwrap();
            assert_eq!(all[0].reply.text, text);
            assert_eq!(all[0].lines(), [text]);
        }
    }

    #[test]
    fn borrowed_and_copied_texts_read_alike() {
        // Printable ASCII is taken as it is; anything else goes through
        // `printable`: both trimmed the same way.
        for (input, text) in [
            ("250   spaced out   \r\n", "spaced out"),
            ("250 \ttabbed\t\r\n", "tabbed"),
            ("250 caf\u{e9} ok\r\n", "caf\u{e9} ok"),
            ("250 a\x7fb\r\n", "a b"),
            ("550 5.1.1 \u{2003}wide\u{2003}\r\n", "wide"),
        ] {
            assert_eq!(one(input).text, text, "{input:?}");
        }
        let latin1 = one_bytes(b"250 caf\xe9\r\n");
        assert_eq!(latin1.text, "caf\u{fffd}");
    }

    #[test]
    fn enhanced_code_is_stripped_from_every_line() {
        let r = one("452-4.2.2 mailbox full\r\n452 4.2.2 try later\r\n");
        assert_eq!(r.enhanced, Some((4, 2, 2)));
        assert_eq!(r.text, "mailbox full try later");
    }

    #[test]
    fn enhanced_code_of_another_class_is_text() {
        let r = one("250 5.1.1 odd\r\n");
        assert_eq!(r.enhanced, None);
        assert_eq!(r.text, "5.1.1 odd");
        assert_eq!(one("250 2.1234.0 x\r\n").enhanced, None);
        assert_eq!(one("250 2.0.0\r\n").enhanced, Some((2, 0, 0)));
    }

    #[test]
    fn bare_code_and_bare_lf_are_accepted() {
        let r = one("354\n");
        assert_eq!((r.code, r.text.as_str()), (354, ""));
        assert_eq!(r.to_string(), "354");
    }

    #[test]
    fn control_characters_in_text_become_spaces() {
        let r = one("550 bad\x07\x1b[0mthing\r\n");
        assert!(!r.text.chars().any(char::is_control), "{:?}", r.text);
    }

    #[test]
    fn partial_line_is_left_unconsumed() {
        let mut reader = ReplyReader::default();
        assert_eq!(reader.read(b"250-a\r\n250 b").unwrap(), (7, None));
        let (n, r) = reader.read(b"250 b\r\n").unwrap();
        assert_eq!(n, 7);
        assert_eq!(r.unwrap().reply.text, "a b");
    }

    #[test]
    fn garbage_is_malformed() {
        for bad in ["hello\r\n", "25\r\n", "2500 x\r\n", "650 x\r\n", "150 x\r\n", "250x\r\n"] {
            assert!(matches!(read_all(bad.as_bytes()), Err(ReplyError::Malformed { .. })), "{bad:?}");
        }
    }

    #[test]
    fn continuation_with_other_code_is_an_error() {
        assert_eq!(
            read_all(b"250-a\r\n550 b\r\n").unwrap_err(),
            ReplyError::CodeMismatch { expected: 250, found: 550 }
        );
    }

    #[test]
    fn line_of_max_len_is_accepted_and_one_more_is_not() {
        let ok = format!("250 {}\r\n", "x".repeat(MAX_LINE_LEN - 6));
        assert_eq!(ok.len(), MAX_LINE_LEN);
        assert!(read_all(ok.as_bytes()).is_ok());
        let long = format!("250 {}\r\n", "x".repeat(MAX_LINE_LEN - 5));
        assert!(matches!(read_all(long.as_bytes()), Err(ReplyError::LineTooLong { .. })));
    }

    #[test]
    fn overlong_partial_line_fails_before_its_end_arrives() {
        let mut reader = ReplyReader::default();
        let junk = vec![b'2'; MAX_LINE_LEN];
        assert!(matches!(reader.read(&junk), Err(ReplyError::LineTooLong { .. })));
    }

    #[test]
    fn endless_multi_line_reply_is_cut_off() {
        let input = "250-x\r\n".repeat(MAX_LINES + 1);
        assert_eq!(read_all(input.as_bytes()).unwrap_err(), ReplyError::TooManyLines { max: MAX_LINES });
    }

    #[test]
    fn classify_covers_every_code() {
        for code in 0..=u16::MAX {
            let expected = match code / 100 {
                2 => Class::Positive,
                5 => Class::Permanent,
                _ => Class::Transient,
            };
            assert_eq!(classify(code), expected, "{code}");
        }
    }
}
