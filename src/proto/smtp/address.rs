//! Mailbox and path parsing (RFC 5321 §4.1.2), strict enough that odd forms
//! cannot slip past the recipient policy.
//!
//! What the parser does with each form, so policy sees one spelling:
//! - The domain is lowercased and one trailing dot is stripped. Labels are
//!   letters, digits, `-` and `_` (Postfix's `valid_hostname` allows `_`),
//!   1 to 63 bytes, not starting or ending with `-`; at most 255 bytes.
//! - Address literals are checked and written canonically: `[1.2.3.4]`,
//!   `[IPv6:2001:db8::1]`. General address literals (`[tag:...]`) are refused.
//! - The local part is case-preserved and otherwise kept as sent when it is
//!   a dot-string, so `user%remote` and `remote!user` stay exactly that and
//!   the policy sees a local user that does not exist. A quoted local part
//!   is unquoted when its content is a valid dot-string (`"jane"` is
//!   `jane`), otherwise kept quoted in canonical form (only `"` and `\`
//!   escaped), so [`Address`]'s `Display` is always a valid RFC 5321 mailbox.
//!   No length limit beyond the line's: SRS and VERP local parts exceed 64.
//! - A source route `<@a,@b:user@dom>` is checked and dropped (RFC 5321 §C).
//! - `<postmaster>` (any case) is a [`ForwardPath::Postmaster`], which RFC
//!   5321 §4.5.1 says every server must accept.
//! - Angle brackets are required; spaces outside a quoted string are
//!   refused. Any byte >= 0x80 is refused by the plain parsers
//!   ([`AddressError::NonAscii`]); the `_utf8` ones (for a MAIL with
//!   SMTPUTF8, RFC 6531 §3.3) accept valid UTF-8 without control or
//!   space characters in local parts, and U-label domains.
//! - Every domain is held as its lowercase A-label ([`ascii_domain`], IDNA
//!   UTS #46): `用户@例子.test` is `用户@xn--fsqu00a.test`. So every domain
//!   comparison (local domains, routes, MX lookups, suppression keys) sees
//!   one spelling, and the U-label/A-label equivalence of RFC 6531 §3.2
//!   holds without any comparer knowing about IDNA. The local part keeps
//!   its UTF-8 as sent; it is never converted (there is no ASCII form).
//!
//! This file must not know about commands or replies.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A mailbox, `local@domain`, in the canonical form described in the
/// module doc. `Display` writes `local@domain` without brackets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    /// As sent (dot-string) or canonically quoted; case preserved.
    pub local: String,
    /// Lowercase, no trailing dot; or a canonical address literal `[...]`.
    pub domain: String,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// The argument of MAIL FROM.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReversePath {
    /// `<>`: bounces and other notifications, never to be bounced.
    Null,
    /// A sender mailbox.
    Mailbox(Address),
}

impl fmt::Display for ReversePath {
    /// Writes the path with its brackets: `<>` or `<local@domain>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => f.write_str("<>"),
            ReversePath::Mailbox(a) => write!(f, "<{a}>"),
        }
    }
}

/// The argument of RCPT TO.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ForwardPath {
    /// `<postmaster>` without a domain: the server's own postmaster.
    Postmaster,
    /// A recipient mailbox.
    Mailbox(Address),
}

/// Why a path did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The path does not start with `<` or has no closing `>`.
    #[error("path must be enclosed in angle brackets")]
    MissingBrackets,
    /// A byte >= 0x80: an internationalised address, which needs SMTPUTF8.
    #[error("non-ASCII character in address")]
    NonAscii,
    /// With SMTPUTF8: invalid UTF-8, or a control or non-ASCII space
    /// character.
    #[error("malformed UTF-8 in address")]
    BadUtf8,
    /// `<>` where a mailbox is required (RCPT TO).
    #[error("the null path <> is not allowed here")]
    NullNotAllowed,
    /// A malformed `@a,@b:` source route.
    #[error("malformed source route")]
    BadRoute,
    /// A local part that is neither a dot-string nor a quoted string.
    #[error("malformed local part")]
    BadLocalPart,
    /// No `@domain` after the local part.
    #[error("missing @domain")]
    MissingDomain,
    /// A malformed domain name.
    #[error("malformed domain")]
    BadDomain,
    /// A malformed or unsupported `[...]` address literal.
    #[error("malformed address literal")]
    BadAddressLiteral,
    /// Something other than a space directly after the closing `>`.
    #[error("unexpected characters after the path")]
    TrailingGarbage,
}

/// Parses the reverse-path at the front of `input` (after `FROM:` and any
/// spaces). Returns the path and the rest of the input (the parameters,
/// starting with a space, or empty).
pub fn parse_reverse_path(input: &[u8]) -> Result<(ReversePath, &[u8]), AddressError> {
    reverse_path(input, false)
}

/// [`parse_reverse_path`] for a MAIL with SMTPUTF8: UTF-8 local parts and
/// U-label domains are accepted.
pub fn parse_reverse_path_utf8(input: &[u8]) -> Result<(ReversePath, &[u8]), AddressError> {
    reverse_path(input, true)
}

fn reverse_path(input: &[u8], utf8: bool) -> Result<(ReversePath, &[u8]), AddressError> {
    let (inner, rest) = split_path(input, utf8)?;
    if inner.is_empty() {
        return Ok((ReversePath::Null, rest));
    }
    Ok((ReversePath::Mailbox(parse_routed_mailbox(inner, utf8)?), rest))
}

/// Parses the forward-path at the front of `input` (after `TO:` and any
/// spaces). Returns the path and the rest of the input, as
/// [`parse_reverse_path`]; `<>` is [`AddressError::NullNotAllowed`].
pub fn parse_forward_path(input: &[u8]) -> Result<(ForwardPath, &[u8]), AddressError> {
    forward_path(input, false)
}

/// [`parse_forward_path`] accepting UTF-8 as [`parse_reverse_path_utf8`].
pub fn parse_forward_path_utf8(input: &[u8]) -> Result<(ForwardPath, &[u8]), AddressError> {
    forward_path(input, true)
}

fn forward_path(input: &[u8], utf8: bool) -> Result<(ForwardPath, &[u8]), AddressError> {
    let (inner, rest) = split_path(input, utf8)?;
    if inner.is_empty() {
        return Err(AddressError::NullNotAllowed);
    }
    if inner.eq_ignore_ascii_case(b"postmaster") {
        return Ok((ForwardPath::Postmaster, rest));
    }
    Ok((ForwardPath::Mailbox(parse_routed_mailbox(inner, utf8)?), rest))
}

/// Parses a bare mailbox `local@domain` (no brackets, no route), as found in
/// configuration or a user's login name.
pub fn parse_mailbox(input: &[u8]) -> Result<Address, AddressError> {
    mailbox(input, false)
}

/// [`parse_mailbox`] accepting UTF-8 local parts and U-label domains (a
/// users file entry, a POP3 login after `UTF8`).
pub fn parse_mailbox_utf8(input: &[u8]) -> Result<Address, AddressError> {
    check_utf8(input)?;
    mailbox(input, true)
}

fn mailbox(input: &[u8], utf8: bool) -> Result<Address, AddressError> {
    if !utf8 && !input.is_ascii() {
        return Err(AddressError::NonAscii);
    }
    let (local, rest) = local_part(input, utf8)?;
    let domain = rest.strip_prefix(b"@").ok_or(AddressError::MissingDomain)?;
    Ok(Address { local, domain: domain_or_literal(domain, utf8)? })
}

/// The one spelling of a domain name every comparison uses: lowercase,
/// no trailing dot, U-labels as A-labels (IDNA UTS #46). Address literals
/// (`[...]`) are canonicalised too. For names from configuration and from
/// anywhere else that did not come through this parser.
pub fn ascii_domain(domain: &str) -> Result<String, AddressError> {
    check_utf8(domain.as_bytes())?;
    domain_or_literal(domain.as_bytes(), true)
}

/// Valid UTF-8 without control characters (C0, DEL, C1) or non-ASCII
/// spaces, which would make an address ambiguous in logs and headers.
fn check_utf8(bytes: &[u8]) -> Result<(), AddressError> {
    let text = std::str::from_utf8(bytes).map_err(|_| AddressError::BadUtf8)?;
    if text.chars().any(|c| c.is_control() || (!c.is_ascii() && c.is_whitespace())) {
        return Err(AddressError::BadUtf8);
    }
    Ok(())
}

/// Splits `<inner>rest`, finding the `>` that is not inside a quoted string.
fn split_path(input: &[u8], utf8: bool) -> Result<(&[u8], &[u8]), AddressError> {
    let body = input.strip_prefix(b"<").ok_or_else(|| non_ascii_or(input, AddressError::MissingBrackets))?;
    let mut quoted = false;
    let mut escaped = false;
    let close = body.iter().position(|&b| {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == b'>' && !quoted {
            return true;
        }
        false
    });
    let close = close.ok_or_else(|| non_ascii_or(body, AddressError::MissingBrackets))?;
    let (inner, rest) = (&body[..close], &body[close + 1..]);
    if !inner.is_ascii() {
        if !utf8 {
            return Err(AddressError::NonAscii);
        }
        check_utf8(inner)?;
    }
    if !rest.is_empty() && rest[0] != b' ' {
        return Err(AddressError::TrailingGarbage);
    }
    Ok((inner, rest))
}

fn non_ascii_or(input: &[u8], otherwise: AddressError) -> AddressError {
    if input.is_ascii() {
        otherwise
    } else {
        AddressError::NonAscii
    }
}

/// `[@a,@b:]local@domain`, with the route checked and dropped.
fn parse_routed_mailbox(inner: &[u8], utf8: bool) -> Result<Address, AddressError> {
    let mailbox = match inner.first() {
        Some(b'@') => {
            let colon = inner.iter().position(|&b| b == b':').ok_or(AddressError::BadRoute)?;
            for hop in inner[..colon].split(|&b| b == b',') {
                let domain = hop.strip_prefix(b"@").ok_or(AddressError::BadRoute)?;
                domain_name(domain, utf8).map_err(|_| AddressError::BadRoute)?;
            }
            &inner[colon + 1..]
        }
        _ => inner,
    };
    self::mailbox(mailbox, utf8)
}

/// RFC 5321 atext: the bytes of a dot-string atom.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// A dot-string; with `utf8`, atoms may hold UTF-8 (RFC 6531 §3.3 `atext
/// =/ UTF8-non-ascii`; the caller checked the bytes are valid UTF-8).
fn is_dot_string(s: &[u8], utf8: bool) -> bool {
    let ok = |b: u8| is_atext(b) || (utf8 && b >= 0x80);
    !s.is_empty() && s.split(|&b| b == b'.').all(|atom| !atom.is_empty() && atom.iter().all(|&b| ok(b)))
}

/// Parses the local part at the front of `input`; returns it canonically
/// and the rest (which should start with `@`).
fn local_part(input: &[u8], utf8: bool) -> Result<(String, &[u8]), AddressError> {
    if input.first() != Some(&b'"') {
        let end = input.iter().position(|&b| b == b'@').unwrap_or(input.len());
        let local = &input[..end];
        if !is_dot_string(local, utf8) {
            return Err(AddressError::BadLocalPart);
        }
        return Ok((text(local)?, &input[end..]));
    }
    // Quoted string: qtextSMTP is %d32-33 / %d35-91 / %d93-126,
    // quoted-pairSMTP is "\" %d32-126.
    let mut content = Vec::new();
    let mut i = 1;
    loop {
        match input.get(i) {
            Some(b'"') => break,
            Some(b'\\') => match input.get(i + 1) {
                Some(&c) if (32..=126).contains(&c) => {
                    content.push(c);
                    i += 2;
                }
                _ => return Err(AddressError::BadLocalPart),
            },
            Some(&c) if (32..=126).contains(&c) || (utf8 && c >= 0x80) => {
                content.push(c);
                i += 1;
            }
            _ => return Err(AddressError::BadLocalPart),
        }
    }
    let rest = &input[i + 1..];
    let content_text = text(&content)?;
    if is_dot_string(&content, utf8) {
        return Ok((content_text, rest));
    }
    let mut quoted = String::with_capacity(content.len() + 2);
    quoted.push('"');
    for c in content_text.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    Ok((quoted, rest))
}

/// A domain name or an address literal, canonical.
fn domain_or_literal(input: &[u8], utf8: bool) -> Result<String, AddressError> {
    match input.strip_prefix(b"[") {
        Some(literal) => address_literal(literal),
        None => domain_name(input, utf8),
    }
}

fn address_literal(input: &[u8]) -> Result<String, AddressError> {
    let inner = input.strip_suffix(b"]").ok_or(AddressError::BadAddressLiteral)?;
    let text = std::str::from_utf8(inner).map_err(|_| AddressError::BadAddressLiteral)?;
    if text.len() > 5 && text[..5].eq_ignore_ascii_case("IPv6:") {
        let ip: Ipv6Addr = text[5..].parse().map_err(|_| AddressError::BadAddressLiteral)?;
        return Ok(format!("[IPv6:{ip}]"));
    }
    let ip: Ipv4Addr = text.parse().map_err(|_| AddressError::BadAddressLiteral)?;
    Ok(format!("[{ip}]"))
}

fn domain_name(input: &[u8], utf8: bool) -> Result<String, AddressError> {
    let name = input.strip_suffix(b".").unwrap_or(input);
    if !name.is_ascii() {
        if !utf8 {
            return Err(AddressError::NonAscii);
        }
        // UTS #46 maps (case, width, NFC) and converts U-labels to
        // A-labels; the result then has to pass the ASCII rules below.
        let ascii = idna::domain_to_ascii_cow(name, idna::AsciiDenyList::URL).map_err(|_| AddressError::BadDomain)?;
        if !ascii.is_ascii() || ascii.ends_with('.') {
            return Err(AddressError::BadDomain);
        }
        return domain_name(ascii.as_bytes(), false);
    }
    let label_ok = |label: &[u8]| {
        (1..=63).contains(&label.len())
            && label.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && label.first() != Some(&b'-')
            && label.last() != Some(&b'-')
    };
    if name.is_empty() || name.len() > 255 || !name.split(|&b| b == b'.').all(label_ok) {
        return Err(AddressError::BadDomain);
    }
    Ok(text(name)?.to_ascii_lowercase())
}

/// Bytes already checked to be ASCII or valid UTF-8, as a String.
fn text(bytes: &[u8]) -> Result<String, AddressError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| AddressError::BadUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(path: &str) -> Result<Address, AddressError> {
        match parse_forward_path(path.as_bytes())? {
            (ForwardPath::Mailbox(a), b"") => Ok(a),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn addr(local: &str, domain: &str) -> Address {
        Address { local: local.into(), domain: domain.into() }
    }

    #[test]
    fn plain_mailbox_parses() {
        assert_eq!(mailbox("<jane@example.test>"), Ok(addr("jane", "example.test")));
    }

    #[test]
    fn domain_is_lowercased_and_local_part_case_kept() {
        assert_eq!(mailbox("<Jane.Doe@Example.TEST>"), Ok(addr("Jane.Doe", "example.test")));
    }

    #[test]
    fn one_trailing_dot_is_stripped_from_the_domain() {
        assert_eq!(mailbox("<jane@example.test.>"), Ok(addr("jane", "example.test")));
        assert_eq!(mailbox("<jane@example.test..>"), Err(AddressError::BadDomain));
    }

    #[test]
    fn source_route_is_dropped() {
        assert_eq!(mailbox("<@relay.test,@other.test:jane@example.test>"), Ok(addr("jane", "example.test")));
        assert_eq!(mailbox("<@relay.test:jane@example.test>"), Ok(addr("jane", "example.test")));
        assert_eq!(mailbox("<@:jane@example.test>"), Err(AddressError::BadRoute));
        assert_eq!(mailbox("<@relay.test,jane@example.test>"), Err(AddressError::BadRoute));
        assert_eq!(mailbox("<@relay.test;x:jane@example.test>"), Err(AddressError::BadRoute));
    }

    #[test]
    fn percent_hack_stays_in_the_local_part() {
        assert_eq!(mailbox("<user%remote.test@example.test>"), Ok(addr("user%remote.test", "example.test")));
    }

    #[test]
    fn bang_path_stays_in_the_local_part() {
        assert_eq!(mailbox("<remote.test!user@example.test>"), Ok(addr("remote.test!user", "example.test")));
    }

    #[test]
    fn quoted_local_part_is_unquoted_when_it_needs_no_quotes() {
        assert_eq!(mailbox("<\"jane\"@example.test>"), Ok(addr("jane", "example.test")));
        assert_eq!(mailbox("<\"ja\\ne\"@example.test>"), Ok(addr("jane", "example.test")));
    }

    #[test]
    fn quoted_local_part_with_specials_stays_quoted_canonically() {
        assert_eq!(mailbox("<\"a b\"@example.test>"), Ok(addr("\"a b\"", "example.test")));
        assert_eq!(mailbox("<\"jane@other.test\"@example.test>"), Ok(addr("\"jane@other.test\"", "example.test")));
        assert_eq!(mailbox("<\"a>b\"@example.test>"), Ok(addr("\"a>b\"", "example.test")));
        assert_eq!(mailbox("<\"a\\\"b\"@example.test>"), Ok(addr("\"a\\\"b\"", "example.test")));
        assert_eq!(mailbox("<\"a\\b\\\\\"@example.test>"), Ok(addr("\"ab\\\\\"", "example.test")));
        let a = mailbox("<\"a b\"@example.test>").unwrap();
        assert_eq!(a.to_string(), "\"a b\"@example.test");
    }

    #[test]
    fn unterminated_quote_is_refused() {
        assert_eq!(mailbox("<\"jane@example.test>"), Err(AddressError::MissingBrackets));
        assert_eq!(parse_mailbox(b"\"jane@example.test"), Err(AddressError::BadLocalPart));
    }

    #[test]
    fn ip_literals_are_checked_and_canonical() {
        assert_eq!(mailbox("<jane@[192.0.2.1]>"), Ok(addr("jane", "[192.0.2.1]")));
        assert_eq!(mailbox("<jane@[ipv6:2001:DB8:0::1]>"), Ok(addr("jane", "[IPv6:2001:db8::1]")));
        assert_eq!(mailbox("<jane@[192.0.2.256]>"), Err(AddressError::BadAddressLiteral));
        assert_eq!(mailbox("<jane@[tag:stuff]>"), Err(AddressError::BadAddressLiteral));
        assert_eq!(mailbox("<jane@[192.0.2.1>"), Err(AddressError::BadAddressLiteral));
    }

    #[test]
    fn spaces_outside_quotes_are_refused() {
        assert_eq!(mailbox("<jane doe@example.test>"), Err(AddressError::BadLocalPart));
        assert_eq!(mailbox("<jane@example .test>"), Err(AddressError::BadDomain));
        assert_eq!(mailbox("< jane@example.test>"), Err(AddressError::BadLocalPart));
    }

    #[test]
    fn missing_brackets_are_refused() {
        assert_eq!(mailbox("jane@example.test"), Err(AddressError::MissingBrackets));
        assert_eq!(mailbox("<jane@example.test"), Err(AddressError::MissingBrackets));
    }

    #[test]
    fn non_ascii_is_refused_as_such() {
        assert_eq!(mailbox("<jäne@example.test>"), Err(AddressError::NonAscii));
        assert_eq!(mailbox("<jane@exämple.test"), Err(AddressError::NonAscii));
        assert_eq!(mailbox("jäne@example.test"), Err(AddressError::NonAscii));
    }

    #[test]
    fn malformed_local_parts_and_domains_are_refused() {
        for (path, err) in [
            ("<@example.test>", AddressError::BadRoute),
            ("<jane@>", AddressError::BadDomain),
            ("<jane>", AddressError::MissingDomain),
            ("<.jane@example.test>", AddressError::BadLocalPart),
            ("<jane.@example.test>", AddressError::BadLocalPart),
            ("<ja..ne@example.test>", AddressError::BadLocalPart),
            ("<jane@-example.test>", AddressError::BadDomain),
            ("<jane@example-.test>", AddressError::BadDomain),
            ("<jane@exa(mple.test>", AddressError::BadDomain),
            ("<jane@example.test@other.test>", AddressError::BadDomain),
            ("<jane@.example.test>", AddressError::BadDomain),
        ] {
            assert_eq!(mailbox(path), Err(err), "{path}");
        }
        let long_label = format!("<jane@{}.test>", "a".repeat(64));
        assert_eq!(mailbox(&long_label), Err(AddressError::BadDomain));
    }

    #[test]
    fn null_path_is_a_reverse_path_only() {
        assert_eq!(parse_reverse_path(b"<>"), Ok((ReversePath::Null, &b""[..])));
        assert_eq!(parse_forward_path(b"<>"), Err(AddressError::NullNotAllowed));
    }

    #[test]
    fn bare_postmaster_is_a_forward_path_in_any_case() {
        assert_eq!(parse_forward_path(b"<PostMaster>"), Ok((ForwardPath::Postmaster, &b""[..])));
        assert_eq!(parse_reverse_path(b"<postmaster>"), Err(AddressError::MissingDomain));
    }

    #[test]
    fn rest_after_the_path_is_returned_for_parameters() {
        let (path, rest) = parse_reverse_path(b"<a@example.test> SIZE=10").unwrap();
        assert_eq!(path.to_string(), "<a@example.test>");
        assert_eq!(rest, b" SIZE=10");
        assert_eq!(parse_reverse_path(b"<a@example.test>SIZE=10"), Err(AddressError::TrailingGarbage));
    }
}
