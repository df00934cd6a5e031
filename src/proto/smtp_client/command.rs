//! Every command line this client sends, each ending in CRLF.
//!
//! Addresses go inside `<...>` exactly as given, so they are checked first
//! ([`valid_address`]): a CR, LF, `<` or `>` in an address would end the
//! command early or smuggle a second one.

/// Appends `EHLO name` (the name was checked by `ClientConfig::validate`).
pub fn ehlo(out: &mut Vec<u8>, name: &str) {
    line(out, &["EHLO ", name]);
}

/// Appends `LHLO name` (LMTP, RFC 2033 §4.1).
pub fn lhlo(out: &mut Vec<u8>, name: &str) {
    line(out, &["LHLO ", name]);
}

/// Appends `HELO name`.
pub fn helo(out: &mut Vec<u8>, name: &str) {
    line(out, &["HELO ", name]);
}

/// Appends `MAIL FROM:<sender>` with ` SIZE=n` when `size` is given,
/// ` BODY=8BITMIME` when `eight_bit`, ` BODY=BINARYMIME` instead when
/// `binary`, ` SMTPUTF8` when `smtputf8`, then `extra` (further
/// parameters, each with its leading space, already encoded).
pub fn mail_from(
    out: &mut Vec<u8>,
    sender: &str,
    size: Option<u64>,
    eight_bit: bool,
    binary: bool,
    smtputf8: bool,
    extra: &str,
) {
    let size = size.map(|n| format!(" SIZE={n}")).unwrap_or_default();
    let body = match (binary, eight_bit) {
        (true, _) => " BODY=BINARYMIME",
        (false, true) => " BODY=8BITMIME",
        (false, false) => "",
    };
    let utf8 = if smtputf8 { " SMTPUTF8" } else { "" };
    line(out, &["MAIL FROM:<", sender, ">", &size, body, utf8, extra]);
}

/// Appends `RCPT TO:<recipient>` and `extra` (parameters, as for MAIL).
pub fn rcpt_to(out: &mut Vec<u8>, recipient: &str, extra: &str) {
    line(out, &["RCPT TO:<", recipient, ">", extra]);
}

/// Appends `BDAT size LAST`: the whole body follows as one chunk of
/// exactly `size` bytes (RFC 3030 §2).
pub fn bdat_last(out: &mut Vec<u8>, size: u64) {
    line(out, &["BDAT ", &size.to_string(), " LAST"]);
}

pub const STARTTLS: &[u8] = b"STARTTLS\r\n";
pub const DATA: &[u8] = b"DATA\r\n";
pub const RSET: &[u8] = b"RSET\r\n";
pub const QUIT: &[u8] = b"QUIT\r\n";
/// An empty message: what RFC 2920 §3.1 says to send when DATA got 354
/// although no recipient was accepted.
pub const LONE_DOT: &[u8] = b".\r\n";

fn line(out: &mut Vec<u8>, parts: &[&str]) {
    for part in parts {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether `address` can go between `<` and `>` as it is: printable ASCII
/// without spaces or angle brackets, at most 512 bytes; with `utf8` (the
/// message goes with SMTPUTF8) also non-ASCII characters other than
/// controls (C1 included) and spaces: still nothing that could end the
/// line or the path. An empty address is valid only as a sender (the null
/// reverse-path). Quoted local parts with spaces are refused rather than
/// sent: none can reach ringmail's own queue through its SMTP server.
pub fn valid_address(address: &str, is_sender: bool, utf8: bool) -> bool {
    if address.is_empty() {
        return is_sender;
    }
    let ok = |c: char| match c.is_ascii() {
        true => c.is_ascii_graphic() && c != '<' && c != '>',
        false => utf8 && !c.is_control() && !c.is_whitespace(),
    };
    address.len() <= 512 && address.chars().all(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn mail_from_carries_size_and_body_only_when_asked() {
        assert_eq!(text(|o| mail_from(o, "a@b", None, false, false, false, "")), "MAIL FROM:<a@b>\r\n");
        assert_eq!(
            text(|o| mail_from(o, "", Some(12), true, false, false, "")),
            "MAIL FROM:<> SIZE=12 BODY=8BITMIME\r\n"
        );
        assert_eq!(
            text(|o| mail_from(o, "j\u{e4}@b", Some(3), true, true, true, " RET=HDRS")),
            "MAIL FROM:<j\u{e4}@b> SIZE=3 BODY=BINARYMIME SMTPUTF8 RET=HDRS\r\n"
        );
    }

    #[test]
    fn every_command_ends_in_crlf() {
        let all = [
            text(|o| ehlo(o, "me")),
            text(|o| lhlo(o, "me")),
            text(|o| helo(o, "me")),
            text(|o| rcpt_to(o, "x@y", "")),
        ];
        for cmd in all.iter().map(|s| s.as_bytes()).chain([STARTTLS, DATA, RSET, QUIT, LONE_DOT]) {
            assert!(cmd.ends_with(b"\r\n"), "{cmd:?}");
            assert_eq!(cmd.iter().filter(|&&b| b == b'\n').count(), 1);
        }
    }

    #[test]
    fn addresses_that_could_inject_commands_are_invalid() {
        for bad in ["a@b>\r\nRSET", "a@b\n", "<a@b>", "a b@c", "j\u{f6}@b", ""] {
            assert!(!valid_address(bad, false, false), "{bad:?}");
        }
        assert!(valid_address("", true, false));
        assert!(valid_address("j\u{f6}@b", false, true));
        for bad in ["a@b>\r\nRSET", "a\u{85}@b", "a\u{a0}b@c", "a\u{2028}@b", "a b@c", "<a@b>"] {
            assert!(!valid_address(bad, false, true), "{bad:?}");
        }
        assert!(valid_address("first.last+tag@sub.example.test", false, false));
    }
}
