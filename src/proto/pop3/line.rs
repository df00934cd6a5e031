//! Finding the end of one command line in buffered input.
//!
//! Owns: the "is a whole line buffered?" check and the line-length bound.
//! Must not: interpret the line (that is [`super::command`]).

/// What the front of the buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Line<'a> {
    /// A whole line: `consumed` bytes including its terminator, `content`
    /// without the terminator (CRLF, or a bare LF).
    Complete { consumed: usize, content: &'a [u8] },
    /// No line end yet, and the line can still fit: wait for more bytes.
    Incomplete,
    /// The line is, or is bound to become, longer than the limit.
    TooLong,
}

/// Looks for one line at the start of `buf`, allowing at most `max_len`
/// octets including the terminator.
///
/// Scans at most `max_len` bytes, so a peer sending one endless line costs
/// constant work per call. A line whose LF has not arrived is reported
/// `TooLong` as soon as `max_len` bytes are buffered: with its LF it would
/// be longer still. The answer is the same however the bytes were chunked.
pub(super) fn next_line(buf: &[u8], max_len: usize) -> Line<'_> {
    let window = &buf[..buf.len().min(max_len)];
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) => {
            let content = &buf[..lf];
            let content = content.strip_suffix(b"\r").unwrap_or(content);
            Line::Complete { consumed: lf + 1, content }
        }
        None if buf.len() >= max_len => Line::TooLong,
        None => Line::Incomplete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_ends_a_line_and_is_not_part_of_content() {
        assert_eq!(next_line(b"STAT\r\nNOOP\r\n", 255), Line::Complete { consumed: 6, content: b"STAT" });
    }

    #[test]
    fn bare_lf_ends_a_line() {
        assert_eq!(next_line(b"STAT\nNOOP", 255), Line::Complete { consumed: 5, content: b"STAT" });
    }

    #[test]
    fn only_the_last_cr_is_part_of_the_terminator() {
        assert_eq!(next_line(b"STAT\r\r\n", 255), Line::Complete { consumed: 7, content: b"STAT\r" });
    }

    #[test]
    fn line_without_lf_is_incomplete() {
        assert_eq!(next_line(b"STAT\r", 255), Line::Incomplete);
        assert_eq!(next_line(b"", 255), Line::Incomplete);
    }

    #[test]
    fn line_of_exactly_max_len_including_crlf_is_accepted() {
        let mut line = vec![b'a'; 8];
        line.extend_from_slice(b"\r\n");
        assert_eq!(next_line(&line, 10), Line::Complete { consumed: 10, content: &line[..8] });
    }

    #[test]
    fn line_one_over_max_len_is_too_long() {
        let mut line = vec![b'a'; 9];
        line.extend_from_slice(b"\r\n");
        assert_eq!(next_line(&line, 10), Line::TooLong);
    }

    #[test]
    fn unterminated_line_is_too_long_once_max_len_bytes_are_buffered() {
        assert_eq!(next_line(&[b'a'; 9], 10), Line::Incomplete);
        assert_eq!(next_line(&[b'a'; 10], 10), Line::TooLong);
    }
}
