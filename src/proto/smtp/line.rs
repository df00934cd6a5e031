//! Command-line framing: finds one line at the front of a buffer, with a
//! length limit so a peer cannot make the driver buffer grow without bound.
//!
//! Terminator: LF, with one CR before it stripped. A bare LF is accepted as a
//! command-line terminator (what Postfix 3.9 does with
//! `smtpd_forbid_bare_newline = normalize`): refusing it breaks old clients
//! and gains nothing, because the smuggling risk is in where DATA ends, and
//! the DATA scanner (`data`) accepts only CRLF "." CRLF there. A CR that is
//! not directly before the LF stays in the line (the command parser rejects
//! it as a control character).
//!
//! This file must not interpret the line; it only frames it.

/// What [`next_line`] found at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineStatus<'a> {
    /// A whole line. `line` excludes the terminator (LF or CRLF);
    /// `consumed` includes it.
    Complete { line: &'a [u8], consumed: usize },
    /// No terminator yet and fewer than `max_len` bytes buffered: keep the
    /// bytes and come back with more. A normal state, not an error.
    Incomplete,
    /// `max_len` bytes are buffered and none of them ends the line: the line
    /// is longer than allowed.
    TooLong,
}

/// Looks for one line at the front of `input`.
///
/// A line may be at most `max_len` bytes long, terminator included (so with
/// `max_len = 512` a 510-byte command plus CRLF fits). The answer depends only
/// on the bytes, never on how they were chunked: once `max_len` bytes without
/// an LF are present the answer is [`LineStatus::TooLong`], whatever follows.
pub fn next_line(input: &[u8], max_len: usize) -> LineStatus<'_> {
    let window = &input[..input.len().min(max_len)];
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) => {
            let line = &input[..lf];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            LineStatus::Complete { line, consumed: lf + 1 }
        }
        None if input.len() >= max_len => LineStatus::TooLong,
        None => LineStatus::Incomplete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_line_is_complete_without_terminator() {
        assert_eq!(next_line(b"NOOP\r\nQUIT\r\n", 100), LineStatus::Complete { line: b"NOOP", consumed: 6 });
    }

    #[test]
    fn bare_lf_terminates_a_command_line() {
        assert_eq!(next_line(b"NOOP\nQUIT", 100), LineStatus::Complete { line: b"NOOP", consumed: 5 });
    }

    #[test]
    fn cr_not_before_lf_stays_in_the_line() {
        assert_eq!(next_line(b"NO\rOP\r\r\n", 100), LineStatus::Complete { line: b"NO\rOP\r", consumed: 8 });
    }

    #[test]
    fn partial_line_is_incomplete() {
        assert_eq!(next_line(b"NOOP\r", 100), LineStatus::Incomplete);
        assert_eq!(next_line(b"", 100), LineStatus::Incomplete);
    }

    #[test]
    fn line_of_exactly_max_len_including_crlf_fits() {
        let mut l = vec![b'x'; 8];
        l.extend_from_slice(b"\r\n");
        assert!(matches!(next_line(&l, 10), LineStatus::Complete { consumed: 10, .. }));
    }

    #[test]
    fn line_one_byte_over_max_len_is_too_long() {
        let mut l = vec![b'x'; 9];
        l.extend_from_slice(b"\r\n");
        assert_eq!(next_line(&l, 10), LineStatus::TooLong);
        // The verdict comes as soon as max_len bytes are there, whatever follows.
        assert_eq!(next_line(&l[..10], 10), LineStatus::TooLong);
        assert_eq!(next_line(&l[..9], 10), LineStatus::Incomplete);
    }
}
