//! xtext (RFC 3461 §4): how DSN parameters carry arbitrary ASCII in an
//! ESMTP parameter value. `+` followed by two uppercase hex digits stands
//! for one byte; every other character from `!` to `~` except `+` and `=`
//! stands for itself.
//!
//! And its UTF-8 forms for `ORCPT=utf-8;…` (RFC 6533 §3): `\x{HEX}` stands
//! for one Unicode character, and (utf-8-addr-unitext) non-ASCII
//! characters may stand for themselves.

/// Decodes an xtext value. `None` for a character outside `!`..`~`, a bare
/// `=`, a `+` not followed by two hex digits, or decoded bytes that are not
/// UTF-8 text without control characters (a decoded CR or LF could end a
/// header line). UTF-8 is allowed because Postfix sends an SMTPUTF8
/// recipient as `ORCPT=rfc822;` with its UTF-8 bytes `+XX`-encoded.
pub fn decode(value: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.iter();
    while let Some(&b) = bytes.next() {
        out.push(match b {
            b'+' => {
                let hi = hex(*bytes.next()?)?;
                let lo = hex(*bytes.next()?)?;
                hi << 4 | lo
            }
            b'=' => return None,
            b'!'..=b'~' => b,
            _ => return None,
        });
    }
    String::from_utf8(out).ok().filter(|text| !text.chars().any(char::is_control))
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

/// Decodes a UTF-8 address value: xtext, plus `\x{HEX}` escapes and raw
/// non-ASCII characters (RFC 6533 §3). `None` for invalid UTF-8, a bare
/// `=`, a malformed escape, or a control character anywhere.
pub fn decode_utf8(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?;
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        let c = match c {
            '+' => {
                let hi = hex(u8::try_from(chars.next()?).ok()?)?;
                let lo = hex(u8::try_from(chars.next()?).ok()?)?;
                char::from(hi << 4 | lo)
            }
            '\\' => {
                let rest = chars.as_str();
                let body = rest.strip_prefix("x{")?;
                let end = body.find('}')?;
                let code = u32::from_str_radix(&body[..end], 16).ok().filter(|_| (1..=6).contains(&end))?;
                chars = body[end + 1..].chars();
                char::from_u32(code)?
            }
            '=' => return None,
            c => c,
        };
        if c.is_control() || (c.is_whitespace() && c != ' ') {
            return None;
        }
        out.push(c);
    }
    Some(out)
}

/// Encodes `text` as utf-8-addr-xtext (RFC 6533 §3): printable ASCII as
/// itself except `+`, `=` and `\`; those, spaces, controls and every
/// non-ASCII character as `\x{HEX}`.
pub fn encode_utf8(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '!'..='~' if !matches!(c, '+' | '=' | '\\') => out.push(c),
            _ => out.push_str(&format!("\\x{{{:X}}}", u32::from(c))),
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
        // Postfix's ORCPT for an SMTPUTF8 recipient: UTF-8 bytes as +XX.
        assert_eq!(decode(b"+E7+94+A8+E6+88+B7@example.test").as_deref(), Some("\u{7528}\u{6237}@example.test"));
    }

    #[test]
    fn malformed_xtext_is_refused() {
        for bad in [&b"a+2"[..], b"a+2b", b"a+ZZ", b"a=b", b"a b", b"+0D", b"+7F", b"\xc3\xa9", b"+C3", b"+C2+85"] {
            assert_eq!(decode(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn utf8_forms_decode_escapes_and_raw_characters() {
        assert_eq!(decode_utf8("用户@example.test".as_bytes()).as_deref(), Some("用户@example.test"));
        assert_eq!(decode_utf8(br"\x{7528}\x{6237}@example.test").as_deref(), Some("用户@example.test"));
        assert_eq!(decode_utf8(b"a+2Bb").as_deref(), Some("a+b"));
        for bad in [&br"\x{}"[..], br"\x{110000}", br"\x{7528", br"\y", b"a=b", b"\xff", br"\x{D}"] {
            assert_eq!(decode_utf8(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        let text = "j\u{e4}ne+x=y\\z@b\u{fc}cher.test";
        let encoded = encode_utf8(text);
        assert!(encoded.is_ascii() && !encoded.contains('=') && !encoded.contains('+'), "{encoded}");
        assert_eq!(decode_utf8(encoded.as_bytes()).as_deref(), Some(text));
    }

    #[test]
    fn encode_round_trips_every_printable_character() {
        let all: String = (b' '..=b'~').map(char::from).collect();
        let encoded = encode(&all);
        assert!(encoded.bytes().all(|b| (b'!'..=b'~').contains(&b) && b != b'='));
        assert_eq!(decode(encoded.as_bytes()).as_deref(), Some(all.as_str()));
    }
}
