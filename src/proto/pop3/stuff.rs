//! The wire form of a stored message for RETR and TOP: byte-stuffing
//! (RFC 1939 §3) and the TOP cut (RFC 1939 §7).
//!
//! Owns: turning stored bytes into a multi-line response body ending in
//! `.\r\n`. Must not: read the spool or decide whether the message may be
//! sent; the caller has the bytes and the server has said `+OK`.

/// Writes the wire form of a stored message into `out`.
///
/// `top_lines: None` (RETR) sends the whole message; `Some(n)` (TOP) sends
/// the header section, the blank line that ends it, then the first `n`
/// lines of the body (all of them if there are fewer). A message with no
/// blank line is all header and is sent whole either way; no blank line is
/// made up for it.
///
/// Every line that starts with `.` gets one more `.`. A line is anything
/// ending in LF, so a stray bare LF in a stored body cannot smuggle an early
/// end of response past a lenient client. The output always ends in
/// `\r\n.\r\n` (or is just `.\r\n` for an empty message): when the last
/// line sent lacks a CRLF, one is added before the dot.
pub fn write_message(body: &[u8], top_lines: Option<u32>, out: &mut Vec<u8>) {
    // Room for the body, a few stuffed dots and the terminator, so the
    // common case does one allocation.
    out.reserve(body.len() + body.len() / 64 + 5);

    let mut in_header = true;
    let mut body_lines_left = top_lines;
    let mut last: &[u8] = b"";
    for line in body.split_inclusive(|&b| b == b'\n') {
        if in_header {
            in_header = !matches!(line, b"\r\n" | b"\n");
        } else if let Some(left) = body_lines_left.as_mut() {
            if *left == 0 {
                break;
            }
            *left -= 1;
        }
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        last = line;
    }
    if !last.is_empty() && !last.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(body: &[u8], top_lines: Option<u32>) -> String {
        let mut out = Vec::new();
        write_message(body, top_lines, &mut out);
        String::from_utf8(out).expect("test bodies are ASCII")
    }

    const MESSAGE: &[u8] = b"Subject: hi\r\nFrom: a@example.test\r\n\r\none\r\ntwo\r\nthree\r\n";

    #[test]
    fn retr_sends_whole_message_then_terminator() {
        assert_eq!(wire(MESSAGE, None), "Subject: hi\r\nFrom: a@example.test\r\n\r\none\r\ntwo\r\nthree\r\n.\r\n");
    }

    #[test]
    fn line_of_just_a_dot_is_stuffed() {
        assert_eq!(wire(b"a\r\n.\r\nb\r\n", None), "a\r\n..\r\nb\r\n.\r\n");
    }

    #[test]
    fn lines_starting_with_dots_get_one_more_dot() {
        assert_eq!(wire(b"..\r\n.x\r\n...y\r\nx.\r\n", None), "...\r\n..x\r\n....y\r\nx.\r\n.\r\n");
    }

    #[test]
    fn dot_on_the_first_line_is_stuffed() {
        assert_eq!(wire(b".\r\n", None), "..\r\n.\r\n");
    }

    #[test]
    fn dot_after_a_bare_lf_is_stuffed() {
        assert_eq!(wire(b"a\n.\r\n", None), "a\n..\r\n.\r\n");
    }

    #[test]
    fn body_without_final_crlf_gets_crlf_before_the_dot() {
        assert_eq!(wire(b"a\r\nlast", None), "a\r\nlast\r\n.\r\n");
        assert_eq!(wire(b"a\r\n.", None), "a\r\n..\r\n.\r\n");
        assert_eq!(wire(b"a\r\nlast\r", None), "a\r\nlast\r\r\n.\r\n");
    }

    #[test]
    fn body_ending_in_bare_lf_still_gets_crlf_before_the_dot() {
        assert_eq!(wire(b"a\n", None), "a\n\r\n.\r\n");
    }

    #[test]
    fn empty_message_is_just_the_terminator() {
        assert_eq!(wire(b"", None), ".\r\n");
        assert_eq!(wire(b"", Some(3)), ".\r\n");
    }

    #[test]
    fn top_zero_sends_headers_and_the_blank_line() {
        assert_eq!(wire(MESSAGE, Some(0)), "Subject: hi\r\nFrom: a@example.test\r\n\r\n.\r\n");
    }

    #[test]
    fn top_sends_that_many_body_lines() {
        assert_eq!(wire(MESSAGE, Some(2)), "Subject: hi\r\nFrom: a@example.test\r\n\r\none\r\ntwo\r\n.\r\n");
    }

    #[test]
    fn top_past_the_end_sends_the_whole_message() {
        assert_eq!(wire(MESSAGE, Some(3)), wire(MESSAGE, None));
        assert_eq!(wire(MESSAGE, Some(u32::MAX)), wire(MESSAGE, None));
    }

    #[test]
    fn top_counts_a_last_line_without_crlf() {
        let body = b"H: v\r\n\r\none\r\ntwo";
        assert_eq!(wire(body, Some(2)), "H: v\r\n\r\none\r\ntwo\r\n.\r\n");
        assert_eq!(wire(body, Some(1)), "H: v\r\n\r\none\r\n.\r\n");
    }

    #[test]
    fn top_of_header_only_message_sends_the_headers() {
        assert_eq!(wire(b"H: v\r\nI: w\r\n", Some(0)), "H: v\r\nI: w\r\n.\r\n");
        assert_eq!(wire(b"H: v", Some(5)), "H: v\r\n.\r\n");
    }

    #[test]
    fn top_of_message_with_empty_body_sends_headers_and_blank_line() {
        assert_eq!(wire(b"H: v\r\n\r\n", Some(4)), "H: v\r\n\r\n.\r\n");
    }

    #[test]
    fn top_only_the_first_blank_line_ends_the_header() {
        let body = b"H: v\r\n\r\n\r\nbody\r\n";
        assert_eq!(wire(body, Some(0)), "H: v\r\n\r\n.\r\n");
        assert_eq!(wire(body, Some(1)), "H: v\r\n\r\n\r\n.\r\n");
    }

    #[test]
    fn top_stuffs_dots_in_header_and_body() {
        assert_eq!(wire(b".H: v\r\n\r\n.\r\nrest\r\n", Some(1)), "..H: v\r\n\r\n..\r\n.\r\n");
    }

    #[test]
    fn no_output_ends_early_for_a_strict_or_lenient_reader() {
        let bodies: &[&[u8]] = &[b"\r\n.\r\n", b".\r\n.\r\n", b"a\n.\n", b"\r\n.\n", b"x\r\n.", b"..\r\n\r\n.\r\n"];
        for body in bodies {
            for top in [None, Some(0), Some(1), Some(9)] {
                let mut out = Vec::new();
                write_message(body, top, &mut out);
                let text = String::from_utf8_lossy(&out);
                // Only the terminator may be a lone dot on a line.
                let lone_dots = text.split_inclusive('\n').filter(|line| matches!(*line, ".\r\n" | ".\n")).count();
                assert_eq!(lone_dots, 1, "{body:?} {top:?}: {text:?}");
                assert!(text.ends_with("\r\n.\r\n") || text == ".\r\n", "{text:?}");
            }
        }
    }
}
