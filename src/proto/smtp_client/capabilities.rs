//! What the server said it can do: the EHLO keywords this client uses.
//!
//! Parsed from the lines of a 2xx EHLO reply (RFC 5321 §4.1.1.1: the first
//! line is the server's name, each further line one keyword with optional
//! parameters). Keywords are case-insensitive; the ones this client has no
//! use for (AUTH, ...) are ignored. After STARTTLS everything
//! is forgotten and read again (RFC 3207 §4.2).

/// The extensions the server advertised, as far as this client uses them.
/// After HELO (no EHLO) all are off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The server answered EHLO (not only HELO).
    pub esmtp: bool,
    /// RFC 2920: MAIL, RCPT and DATA may go in one write.
    pub pipelining: bool,
    /// RFC 1870 `SIZE n`: `None` when not advertised; `Some(0)` when
    /// advertised without a fixed limit (§4); else the limit in bytes.
    pub size: Option<u64>,
    /// RFC 3030: the body may go as a `BDAT` chunk of known length
    /// instead of DATA (no 354 round trip, no dot-stuffing).
    pub chunking: bool,
    /// RFC 6152: `BODY=8BITMIME` may be declared.
    pub eight_bit_mime: bool,
    /// RFC 3461: NOTIFY, ORCPT, RET and ENVID may be passed on.
    pub dsn: bool,
    /// RFC 3030 §3: `BODY=BINARYMIME` may be declared (with BDAT).
    pub binarymime: bool,
    /// RFC 6531: `SMTPUTF8` may be declared; UTF-8 addresses may be sent.
    pub smtputf8: bool,
    /// RFC 3207: the server offers STARTTLS.
    pub starttls: bool,
    /// RFC 8689: `REQUIRETLS` may be declared on MAIL.
    pub requiretls: bool,
    /// RFC 2034: replies carry RFC 3463 codes. (The reply reader takes
    /// them when present either way; this is for the driver's logs.)
    pub enhanced_status_codes: bool,
}

impl Capabilities {
    /// Reads the lines of a 2xx EHLO reply (see [`Capabilities`]).
    pub fn from_ehlo(lines: &[String]) -> Capabilities {
        let mut caps = Capabilities { esmtp: true, ..Capabilities::default() };
        for line in lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                // A limit we cannot read is treated as "no fixed limit":
                // the server still checks, and says 552 if it must.
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "CHUNKING" => caps.chunking = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "DSN" => caps.dsn = true,
                "BINARYMIME" => caps.binarymime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "STARTTLS" => caps.starttls = true,
                "REQUIRETLS" => caps.requiretls = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                _ => {}
            }
        }
        caps
    }

    /// The fixed message size limit, when the server advertised one.
    pub fn size_limit(&self) -> Option<u64> {
        self.size.filter(|&n| n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&str]) -> Capabilities {
        let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        Capabilities::from_ehlo(&lines)
    }

    #[test]
    fn keywords_are_read_case_insensitively() {
        let caps = parse(&[
            "mx.test greets you",
            "pipelining",
            "Size 10240000",
            "8BITMIME",
            "STARTTLS",
            "ENHANCEDSTATUSCODES",
            "chunking",
            "dsn",
            "AUTH PLAIN LOGIN",
            "BinaryMIME",
            "smtputf8",
            "requiretls",
        ]);
        assert_eq!(
            caps,
            Capabilities {
                esmtp: true,
                pipelining: true,
                size: Some(10_240_000),
                chunking: true,
                eight_bit_mime: true,
                dsn: true,
                binarymime: true,
                smtputf8: true,
                starttls: true,
                requiretls: true,
                enhanced_status_codes: true,
            }
        );
        assert_eq!(caps.size_limit(), Some(10_240_000));
    }

    #[test]
    fn the_greeting_line_is_not_a_keyword() {
        assert!(!parse(&["PIPELINING"]).pipelining);
    }

    #[test]
    fn size_without_a_number_means_no_fixed_limit() {
        for lines in [&["mx", "SIZE"][..], &["mx", "SIZE 0"], &["mx", "SIZE lots"]] {
            let caps = parse(lines);
            assert_eq!(caps.size, Some(0), "{lines:?}");
            assert_eq!(caps.size_limit(), None);
        }
        assert_eq!(parse(&["mx"]).size, None);
    }
}
