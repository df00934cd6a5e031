//! The little header parsing sender authentication needs of its own: the
//! RFC 5322 From domain (which key signs), and the Authentication-Results
//! fields that claim to be ours (removed before we add ours, RFC 8601 §5).
//! Everything else (canonicalization, DKIM-Signature, SPF and DMARC
//! records) is parsed by `mail-auth`. Bytes in, no allocation per field;
//! any input is handled (the `header_fields` fuzz target).

/// One header field: its name and the whole field (name, colon, value and
/// continuation lines, with its final line end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    /// The value: after the colon, up to the field's final line end.
    pub value: &'a [u8],
    /// Where the field starts and ends (past its line end) in the message.
    pub start: usize,
    pub end: usize,
}

/// The header fields of `msg`, in order, up to the empty line that ends
/// the header section (or the end). A line that is not a field and not a
/// continuation (no colon) ends the section too, as mail parsers treat it.
pub fn fields(msg: &[u8]) -> Fields<'_> {
    Fields { msg, at: 0 }
}

pub struct Fields<'a> {
    msg: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        let msg = self.msg;
        let start = self.at;
        let line_end = |from: usize| msg[from..].iter().position(|&b| b == b'\n').map_or(msg.len(), |i| from + i + 1);
        let first = line_end(start);
        let line = &msg[start..first];
        if line.is_empty() || line == b"\r\n" || line == b"\n" || line[0] == b' ' || line[0] == b'\t' {
            return None; // the end of the header section (or a stray continuation)
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let name = trim_end(&line[..colon]);
        if name.is_empty() || name.iter().any(|&b| !(33..=126).contains(&b)) {
            return None;
        }
        let mut end = first;
        while end < msg.len() && (msg[end] == b' ' || msg[end] == b'\t') {
            end = line_end(end);
        }
        self.at = end;
        let mut value_end = end;
        while value_end > start + colon + 1 && matches!(msg[value_end - 1], b'\r' | b'\n') {
            value_end -= 1;
        }
        Some(Field { name, value: &msg[start + colon + 1..value_end], start, end })
    }
}

fn trim_end(b: &[u8]) -> &[u8] {
    let n = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(0, |i| i + 1);
    &b[..n]
}

/// Why a message has no From domain to sign for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FromProblem {
    #[error("no From header")]
    Missing,
    #[error("more than one From header")]
    Several,
    #[error("From has no domain")]
    NoDomain,
}

/// The RFC 5322 From domain: after the last `@` of the From field's
/// address, lowercased, without a trailing dot. Exactly one From field
/// must exist (RFC 5322 §3.6). A From with several mailboxes is signed
/// for the last one's domain only if all share it.
pub fn from_domain(msg: &[u8]) -> Result<String, FromProblem> {
    let mut from = None;
    for f in fields(msg) {
        if f.name.eq_ignore_ascii_case(b"from") {
            if from.is_some() {
                return Err(FromProblem::Several);
            }
            from = Some(f.value);
        }
    }
    let value = from.ok_or(FromProblem::Missing)?;
    let mut domain: Option<String> = None;
    for mailbox in split_mailboxes(value) {
        let d = mailbox_domain(mailbox).ok_or(FromProblem::NoDomain)?;
        match &domain {
            Some(prev) if *prev != d => return Err(FromProblem::NoDomain),
            _ => domain = Some(d),
        }
    }
    domain.ok_or(FromProblem::NoDomain)
}

/// The mailboxes of an address list, split at commas outside quotes,
/// comments and angle brackets.
fn split_mailboxes(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut angle, mut escaped, mut start) = (0u32, false, false, false, 0);
    for (i, &b) in value.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if quoted || depth > 0 => escaped = true,
            b'"' if depth == 0 => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => depth = depth.saturating_sub(1),
            b'<' if !quoted && depth == 0 => angle = true,
            b'>' if !quoted && depth == 0 => angle = false,
            b',' if !quoted && depth == 0 && !angle => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts.into_iter().filter(|p| p.iter().any(|b| !b.is_ascii_whitespace()))
}

/// The domain of one mailbox (`Name <a@b>` or `a@b (comment)`).
fn mailbox_domain(mailbox: &[u8]) -> Option<String> {
    let addr = match (mailbox.iter().rposition(|&b| b == b'<'), mailbox.iter().rposition(|&b| b == b'>')) {
        (Some(open), Some(close)) if open < close => &mailbox[open + 1..close],
        _ => strip_comments(mailbox),
    };
    let at = addr.iter().rposition(|&b| b == b'@')?;
    let domain = addr[at + 1..].trim_ascii();
    let domain = domain.strip_suffix(b".").unwrap_or(domain);
    // UTF-8 (an IDN in U-labels), at least two labels, none empty.
    let domain = std::str::from_utf8(domain).ok()?;
    let ok = domain.contains('.')
        && domain.split('.').all(|label| !label.is_empty())
        && domain.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || !c.is_ascii());
    ok.then(|| domain.to_ascii_lowercase())
}

/// `mailbox` up to its first comment (a bare `a@b (Name)`).
fn strip_comments(mailbox: &[u8]) -> &[u8] {
    let end = mailbox.iter().position(|&b| b == b'(').unwrap_or(mailbox.len());
    &mailbox[..end]
}

/// The authserv-id of an Authentication-Results value (RFC 8601 §2.2: the
/// first token, before an optional version and the first `;`; comments
/// anywhere are skipped), lowercased.
pub fn authserv_id(value: &[u8]) -> Vec<u8> {
    let head = value.split(|&b| b == b';').next().unwrap_or_default();
    let mut plain = Vec::with_capacity(head.len());
    let mut depth = 0u32;
    for &b in head {
        match b {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => plain.push(b),
            _ => {}
        }
    }
    let token = plain.split(|b| b.is_ascii_whitespace()).find(|t| !t.is_empty()).unwrap_or_default();
    token.to_ascii_lowercase()
}

/// `msg` without the Authentication-Results fields whose authserv-id is
/// `hostname` (case-insensitive), so nobody can forge our verdict; `None`
/// when there is none to remove (nothing is copied then).
pub fn without_forged_results(msg: &[u8], hostname: &str) -> Option<Vec<u8>> {
    let forged: Vec<(usize, usize)> = fields(msg)
        .filter(|f| {
            f.name.eq_ignore_ascii_case(b"authentication-results")
                && authserv_id(f.value).eq_ignore_ascii_case(hostname.trim_end_matches('.').as_bytes())
        })
        .map(|f| (f.start, f.end))
        .collect();
    if forged.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(msg.len());
    let mut at = 0;
    for (start, end) in forged {
        out.extend_from_slice(&msg[at..start]);
        at = end;
    }
    out.extend_from_slice(&msg[at..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_unfold_and_stop_at_the_body() {
        let msg = b"From: a@b.example\r\nSubject: one\r\n two\r\n\r\nFrom: body@x.example\r\n";
        let names: Vec<&[u8]> = fields(msg).map(|f| f.name).collect();
        assert_eq!(names, [&b"From"[..], b"Subject"]);
        let subject = fields(msg).nth(1).unwrap();
        assert_eq!(subject.value, b" one\r\n two");
        assert_eq!(&msg[subject.end..subject.end + 2], b"\r\n");
    }

    #[test]
    fn from_domain_cases() {
        let d = |m: &[u8]| from_domain(m);
        assert_eq!(d(b"From: Joe <joe@Example.ORG>\r\n\r\n"), Ok("example.org".into()));
        assert_eq!(d(b"from: joe@sub.example.org (Joe)\r\n\r\nx"), Ok("sub.example.org".into()));
        assert_eq!(d(b"From: \"a@evil.example, x\" <joe@example.org>\r\n\r\n"), Ok("example.org".into()));
        assert_eq!(d(b"From: \"q\\\"@x\" <joe@example.org.>\r\n"), Ok("example.org".into()));
        assert_eq!(d(b"Subject: x\r\n\r\n"), Err(FromProblem::Missing));
        assert_eq!(d(b"From: a@x.example\r\nFrom: b@x.example\r\n\r\n"), Err(FromProblem::Several));
        assert_eq!(d(b"From: undisclosed\r\n\r\n"), Err(FromProblem::NoDomain));
        assert_eq!(d(b"From: <joe@>\r\n\r\n"), Err(FromProblem::NoDomain));
        assert_eq!(d(b"From: a@x.example, b@y.example\r\n\r\n"), Err(FromProblem::NoDomain));
        assert_eq!(d(b"From: a@x.example, b@x.example\r\n\r\n"), Ok("x.example".into()));
        // Empty labels and bytes that are not UTF-8 are no domain (found by
        // the mail_headers fuzz target: "\xfe.." once came out as "\u{fffd}.").
        assert_eq!(d(b"From:\xff@\xfe..\r\n"), Err(FromProblem::NoDomain));
        assert_eq!(d(b"From: a@x..example\r\n"), Err(FromProblem::NoDomain));
        assert_eq!(d(b"From: a@b\xc3\xbccher.example\r\n"), Ok("b\u{fc}cher.example".into()));
        // A From in the body is not a header.
        assert_eq!(d(b"Subject: x\r\n\r\nFrom: a@x.example\r\n"), Err(FromProblem::Missing));
    }

    #[test]
    fn forged_results_with_our_name_are_removed_others_kept() {
        let msg = b"Authentication-Results: MX.example.net; dkim=pass\r\n header.d=x\r\n\
Authentication-Results: other.example; spf=pass\r\n\
Authentication-Results: (c) mx.example.net 1; dmarc=pass\r\n\
Subject: hi\r\n\r\nAuthentication-Results: mx.example.net; body\r\n";
        let out = without_forged_results(msg, "mx.example.net").unwrap();
        assert_eq!(
            out,
            b"Authentication-Results: other.example; spf=pass\r\nSubject: hi\r\n\r\nAuthentication-Results: mx.example.net; body\r\n"
        );
        assert!(without_forged_results(b"Subject: x\r\n\r\n", "mx.example.net").is_none());
    }

    #[test]
    fn junk_never_panics() {
        for msg in [&b""[..], b":", b"\r\n", b" x\r\n", b"a", b"From:", b"From:\xff@\xfe", b"From: <<@>>\r\n \r\n"] {
            let _ = from_domain(msg);
            let _ = without_forged_results(msg, "h");
            let _ = fields(msg).count();
        }
    }
}
