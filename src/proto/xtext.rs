//! xtext (RFC 3461 §4): how DSN parameters carry arbitrary ASCII in an
//! ESMTP parameter value. `+` followed by two uppercase hex digits stands
//! for one byte; every other character from `!` to `~` except `+` and `=`
//! stands for itself.

/// Decodes an xtext value. `None` for a character outside `!`..`~`, a bare
/// `=`, a `+` not followed by two hex digits, or an encoded byte outside
/// printable ASCII or space (the parameters carried this way are ASCII
/// text; a decoded control character could end a header line).
pub fn decode(value: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut bytes = value.iter();
    while let Some(&b) = bytes.next() {
        let c = match b {
            b'+' => {
                let hi = hex(*bytes.next()?)?;
                let lo = hex(*bytes.next()?)?;
                hi << 4 | lo
            }
            b'=' => return None,
            b'!'..=b'~' => b,
            _ => return None,
        };
        if !(b' '..=b'~').contains(&c) {
            return None;
        }
        out.push(char::from(c));
    }
    Some(out)
}

/// Encodes `text` as xtext: `+`, `=`, space, controls and every non-ASCII
/// byte as `+XX`.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        match b {
            b'!'..=b'~' if b != b'+' && b != b'=' => out.push(char::from(b)),
            _ => out.push_str(&format!("+{b:02X}")),
        }
    }
    out
}

/// An uppercase hex digit's value (RFC 3461 §4: "upper case hexadecimal").
fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_hex_stands_for_one_byte() {
        assert_eq!(decode(b"rfc822;bob+2Btag@example.test").as_deref(), Some("rfc822;bob+tag@example.test"));
        assert_eq!(decode(b"a+20b+3Dc").as_deref(), Some("a b=c"));
        assert_eq!(decode(b"").as_deref(), Some(""));
    }

    #[test]
    fn malformed_xtext_is_refused() {
        for bad in [&b"a+2"[..], b"a+2b", b"a+ZZ", b"a=b", b"a b", b"+0D", b"+7F", b"\xc3\xa9"] {
            assert_eq!(decode(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn encode_round_trips_every_printable_character() {
        let all: String = (b' '..=b'~').map(char::from).collect();
        let encoded = encode(&all);
        assert!(encoded.bytes().all(|b| (b'!'..=b'~').contains(&b) && b != b'='));
        assert_eq!(decode(encoded.as_bytes()).as_deref(), Some(all.as_str()));
    }
}
