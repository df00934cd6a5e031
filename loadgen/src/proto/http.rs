//! The little HTTP/1.1 the `http` mode speaks: a request with a
//! Content-Length body, and responses with a Content-Length body (what
//! ringmail's API sends). Sans-I/O: [`parse_response`] says whether a
//! whole response is buffered, like the SMTP reply parser.
//!
//! Kept here, not borrowed from an HTTP library the server also uses, so
//! that a bug shared by client and server cannot hide in the measurement.

/// A parsed response head plus its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// The server said `Connection: close` (or it is HTTP/1.0).
    pub close: bool,
}

/// Why the bytes are not a response this client can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    StatusLine(String),
    /// A response without Content-Length (chunked or until close).
    NoLength,
    BadLength(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::StatusLine(l) => write!(f, "bad HTTP status line {l:?}"),
            HttpError::NoLength => f.write_str("HTTP response without Content-Length"),
            HttpError::BadLength(v) => write!(f, "bad Content-Length {v:?}"),
        }
    }
}

/// Largest response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;

/// A POST of `body` (JSON) to `path` with a bearer token.
pub fn post_json(path: &str, host: &str, token: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A whole response at the start of `buf` and the bytes it took, or None
/// when more are needed.
pub fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, HttpError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(HttpError::StatusLine("response head too long".into()));
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.split(' ');
    let (Some(version), Some(code)) = (words.next(), words.next()) else {
        return Err(HttpError::StatusLine(status_line.to_string()));
    };
    let status: u16 = match (version.starts_with("HTTP/1."), code.parse()) {
        (true, Ok(c)) => c,
        _ => return Err(HttpError::StatusLine(status_line.to_string())),
    };
    let mut length = None;
    let mut close = version == "HTTP/1.0";
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| HttpError::BadLength(value.to_string()))?);
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let length = length.ok_or(HttpError::NoLength)?;
    let total = end + 4 + length;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((Response { status, body: buf[end + 4..total].to_vec(), close }, total)))
}

/// `"success_count": N` in a JSON reply (0 when absent).
pub fn success_count(body: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(body);
    text.find("\"success_count\"")
        .and_then(|i| {
            let rest = text[i + 15..].trim_start().strip_prefix(':')?.trim_start();
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or(0)
}

/// `text` as a JSON string literal.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8 + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 22\r\n\r\n{\"success_count\": 10}\nHTTP/1.1 4";

    #[test]
    fn a_response_is_whole_only_with_its_body_however_it_is_chunked() {
        for chunk in [1, 2, 3, 7, 64, RESPONSE.len()] {
            let mut buf = Vec::new();
            let mut got = None;
            for piece in RESPONSE.chunks(chunk) {
                buf.extend_from_slice(piece);
                if let Some(r) = parse_response(&buf).unwrap() {
                    got = Some(r);
                    break;
                }
            }
            let (r, used) = got.expect("whole");
            assert_eq!((r.status, r.close, used), (200, false, RESPONSE.len() - 10), "chunk {chunk}");
            assert_eq!(success_count(&r.body), 10);
        }
    }

    #[test]
    fn connection_close_and_bad_heads_are_seen() {
        let (r, _) = parse_response(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((r.status, r.close), (408, true));
        assert_eq!(parse_response(b"SMTP 220\r\n\r\n"), Err(HttpError::StatusLine("SMTP 220".into())));
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n\r\n"), Err(HttpError::NoLength));
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\r\n\u{1}é"), "\"a\\\"b\\\\c\\r\\n\\u0001é\"");
        assert_eq!(success_count(b"{\"x\": 1}"), 0);
    }
}
