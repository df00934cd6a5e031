//! SMTP reply parsing (RFC 5321 §4.2): `250-first`, `250-more`, `250 last`.
//!
//! Pure: takes bytes, returns a [`Reply`] and how many bytes it used, or
//! `Ok(None)` when the reply is not yet complete (a normal state, not an
//! error). It never reads a socket.

use std::fmt;

/// The longest reply line we accept (RFC 5321 allows 512; servers exceed it).
pub const MAX_LINE: usize = 4096;
/// The most lines in one multi-line reply.
pub const MAX_LINES: usize = 256;

/// One complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code, identical on every line.
    pub code: u16,
    /// The text after `DDD-`/`DDD ` on each line, without CRLF.
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx.
    pub fn is_positive(&self) -> bool {
        self.code / 100 == 2
    }

    /// The first line, as `DDD text`, for error messages.
    pub fn first_line(&self) -> String {
        match self.lines.first() {
            Some(t) if !t.is_empty() => format!("{} {}", self.code, t),
            _ => self.code.to_string(),
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.first_line())
    }
}

/// A reply that cannot be a valid SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// A line did not start with three digits followed by ` `, `-` or the end.
    Malformed(String),
    /// The lines of a multi-line reply carried different codes.
    MixedCodes { first: u16, later: u16 },
    /// A line longer than [`MAX_LINE`] or more than [`MAX_LINES`] lines.
    TooLong,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Malformed(l) => write!(f, "malformed reply line {l:?}"),
            ReplyError::MixedCodes { first, later } => {
                write!(f, "multi-line reply mixes codes {first} and {later}")
            }
            ReplyError::TooLong => f.write_str("reply too long"),
        }
    }
}

/// Parses one reply from the start of `buf`.
///
/// Returns the reply and the number of bytes it occupied, `Ok(None)` if more
/// bytes are needed, or an error if the bytes cannot be a reply. Bare LF line
/// endings are tolerated.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut code = None;
    let mut lines = Vec::new();
    loop {
        let rest = &buf[pos..];
        let Some(nl) = memchr::memchr(b'\n', rest) else {
            if rest.len() > MAX_LINE {
                return Err(ReplyError::TooLong);
            }
            return Ok(None);
        };
        if nl > MAX_LINE {
            return Err(ReplyError::TooLong);
        }
        let mut line = &rest[..nl];
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        pos += nl + 1;
        let (this_code, last, text) = split_line(line)?;
        match code {
            None => code = Some(this_code),
            Some(c) if c != this_code => return Err(ReplyError::MixedCodes { first: c, later: this_code }),
            Some(_) => {}
        }
        lines.push(text);
        if last {
            let code = code.unwrap_or(this_code);
            return Ok(Some((Reply { code, lines }, pos)));
        }
        if lines.len() >= MAX_LINES {
            return Err(ReplyError::TooLong);
        }
    }
}

/// `DDD text` -> (code, is_last, text).
fn split_line(line: &[u8]) -> Result<(u16, bool, String), ReplyError> {
    let malformed = || ReplyError::Malformed(String::from_utf8_lossy(line).into_owned());
    if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
        return Err(malformed());
    }
    let code = (line[0] - b'0') as u16 * 100 + (line[1] - b'0') as u16 * 10 + (line[2] - b'0') as u16;
    if !(200..600).contains(&code) && code / 100 != 1 {
        return Err(malformed());
    }
    let (last, text) = match line.get(3) {
        None => (true, &line[3..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(malformed()),
    };
    Ok((code, last, String::from_utf8_lossy(text).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EHLO: &[u8] = b"250-sink.test hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n";

    #[test]
    fn single_line_reply_parses() {
        let (r, used) = parse_reply(b"220 hi there\r\n").unwrap().unwrap();
        assert_eq!(r.code, 220);
        assert_eq!(r.lines, vec!["hi there"]);
        assert_eq!(used, 14);
    }

    #[test]
    fn multi_line_reply_collects_every_line() {
        let (r, used) = parse_reply(EHLO).unwrap().unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines, vec!["sink.test hello", "PIPELINING", "SIZE 1000", "8BITMIME"]);
        assert_eq!(used, EHLO.len());
    }

    #[test]
    fn reply_split_at_any_byte_is_incomplete_until_the_end() {
        for cut in 0..EHLO.len() {
            assert_eq!(parse_reply(&EHLO[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn pipelined_replies_parse_one_at_a_time() {
        let buf = b"250 ok\r\n250 ok rcpt\r\n354 go\r\n";
        let (a, n1) = parse_reply(buf).unwrap().unwrap();
        let (b, n2) = parse_reply(&buf[n1..]).unwrap().unwrap();
        let (c, _) = parse_reply(&buf[n1 + n2..]).unwrap().unwrap();
        assert_eq!((a.code, b.code, c.code), (250, 250, 354));
    }

    #[test]
    fn code_only_line_is_a_complete_reply() {
        let (r, _) = parse_reply(b"250\r\n").unwrap().unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.first_line(), "250");
    }

    #[test]
    fn bare_lf_is_tolerated() {
        let (r, _) = parse_reply(b"221 bye\n").unwrap().unwrap();
        assert_eq!(r.code, 221);
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(parse_reply(b"hello\r\n"), Err(ReplyError::Malformed(_))));
        assert!(matches!(parse_reply(b"250x\r\n"), Err(ReplyError::Malformed(_))));
        assert!(matches!(parse_reply(b"999 no\r\n"), Err(ReplyError::Malformed(_))));
    }

    #[test]
    fn mixed_codes_are_rejected() {
        assert_eq!(parse_reply(b"250-a\r\n251 b\r\n"), Err(ReplyError::MixedCodes { first: 250, later: 251 }));
    }

    #[test]
    fn overlong_line_is_rejected() {
        let long = vec![b'2'; MAX_LINE + 10];
        assert_eq!(parse_reply(&long), Err(ReplyError::TooLong));
    }
}
