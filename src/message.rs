//! Reading a stored message's header section (RFC 5322): a field's value,
//! unfolded. Enough for logs (Message-ID), `mailbox list` (Subject, Date)
//! and `trace`; no MIME decoding.

/// The header section: everything up to the first empty line.
pub fn header_section(body: &[u8]) -> &[u8] {
    let mut start = 0;
    while start < body.len() {
        let end = body[start..].iter().position(|&b| b == b'\n').map_or(body.len(), |i| start + i + 1);
        let line = &body[start..end];
        if line == b"\r\n" || line == b"\n" {
            return &body[..start];
        }
        start = end;
    }
    body
}

/// The first field named `name` (case-insensitive), unfolded and trimmed,
/// as lossy UTF-8; at most `max` characters.
pub fn header(body: &[u8], name: &str, max: usize) -> Option<String> {
    let mut lines = HeaderLines { rest: body }.peekable();
    while let Some(line) = lines.next() {
        let Some(colon) = memchr::memchr(b':', line) else { continue };
        if !line[..colon].eq_ignore_ascii_case(name.as_bytes()) {
            continue;
        }
        let mut value = String::from_utf8_lossy(&line[colon + 1..]).trim().to_string();
        while let Some(next) = lines.peek() {
            if !next.first().is_some_and(|&b| b == b' ' || b == b'\t') {
                break;
            }
            value.push(' ');
            value.push_str(String::from_utf8_lossy(next).trim());
            lines.next();
        }
        // Usually nothing to drop or cut: the value as it is.
        if value.len() <= max && !value.chars().any(char::is_control) {
            return Some(value);
        }
        return Some(value.chars().filter(|c| !c.is_control()).take(max).collect());
    }
    None
}

/// The lines of a header section (split at LF, without it), ending at the
/// first empty line (`CRLF` or `LF` alone), which is not among them.
struct HeaderLines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for HeaderLines<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let (line, rest) = match memchr::memchr(b'\n', self.rest) {
            Some(lf) => (&self.rest[..lf], &self.rest[lf + 1..]),
            None => (self.rest, &[][..]),
        };
        if line.is_empty() || line == b"\r" {
            self.rest = &[];
            return None;
        }
        self.rest = rest;
        Some(line)
    }
}

/// The Message-ID field without its angle brackets.
pub fn message_id(body: &[u8]) -> Option<String> {
    let v = header(body, "Message-ID", 998)?;
    let v = v.trim().trim_start_matches('<').trim_end_matches('>').to_string();
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"Received: from x\r\n by y\r\nSubject: hello\r\n\tworld\r\nmessage-id: <abc@example.test>\r\n\r\nSubject: not a header\r\n";

    #[test]
    fn fields_are_found_unfolded_and_only_in_the_header() {
        assert_eq!(header(MSG, "subject", 100).as_deref(), Some("hello world"));
        assert_eq!(message_id(MSG).as_deref(), Some("abc@example.test"));
        assert_eq!(header(MSG, "From", 100), None);
        assert_eq!(header(MSG, "subject", 3).as_deref(), Some("hel"));
        assert!(header_section(MSG).ends_with(b"<abc@example.test>\r\n"));
    }

    #[test]
    fn edge_cases_of_the_header_section() {
        let h = |body: &[u8], name: &str, max: usize| header(body, name, max);
        assert_eq!(h(b"", "Subject", 9), None);
        assert_eq!(h(b"\r\n\r\nSubject: after the end\r\n", "Subject", 99), None);
        assert_eq!(h(b"Subject: no end", "Subject", 99).as_deref(), Some("no end"));
        assert_eq!(h(b"Subject:\r\n", "Subject", 99).as_deref(), Some(""));
        let folded: &[u8] = b"subject:  a\x07b \r\n\tc\r\n d\r\nX: y\r\n\r\n";
        assert_eq!(h(folded, "Subject", 99).as_deref(), Some("ab c d"), "unfolded, control characters dropped");
        assert_eq!(h(folded, "Subject", 5).as_deref(), Some("ab c "));
        assert_eq!(h(folded, "X", 99).as_deref(), Some("y"));
        let latin1: &[u8] = b"Subject: caf\xe9 \xc3\xa9t\xc3\xa9\n\nbody";
        assert_eq!(h(latin1, "Subject", 99).as_deref(), Some("caf\u{fffd} \u{e9}t\u{e9}"));
        let long: &[u8] = b"X-Long: 0123456789\r\n  abcdefghij\r\n";
        assert_eq!(h(long, "X-Long", 12).as_deref(), Some("0123456789 a"));
        assert_eq!(h(long, "X-Long", 0).as_deref(), Some(""));
        // A lone CR at the very end is not a line of its own.
        assert_eq!(h(b"Received: from x\r\n\r", "Received", 99).as_deref(), Some("from x"));
    }

    #[test]
    fn a_message_without_a_body_separator_is_all_header() {
        assert_eq!(header(b"Subject: x", "Subject", 10).as_deref(), Some("x"));
        assert_eq!(message_id(b"Message-ID: <>\r\n\r\n"), None);
    }
}
