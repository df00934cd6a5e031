//! Applying a milter's modifications to a message: header fields added,
//! changed, inserted or removed, the body replaced. Envelope changes
//! (recipients, sender) and quarantine are collected for the caller, who
//! knows how to route an address. Pure: bytes in, bytes out.

use super::headers;
use super::session::Modification;

/// A message after one milter's modifications.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Edited {
    /// The new message (header section, empty line, body), CRLF lines.
    pub message: Vec<u8>,
    /// The new envelope sender (angle brackets removed), if changed.
    pub sender: Option<String>,
    /// Recipients to add, then to remove (angle brackets removed), in the
    /// milter's order.
    pub add_rcpts: Vec<String>,
    pub del_rcpts: Vec<String>,
    /// Hold the message, for this reason (the last one given).
    pub quarantine: Option<String>,
}

/// Apply `mods` to `message`. With `leading_space` (the milter negotiated
/// `SMFIP_HDR_LEADSPC`) a value is written right after the colon, else
/// after ": ". Field values are made safe: their line breaks become CRLF
/// followed by a blank (a continuation), and empty lines are dropped, so
/// that a value can neither end the header section nor start a field.
pub fn apply(message: &[u8], mods: &[Modification], leading_space: bool) -> Edited {
    let (fields, body_start) = headers::split(message);
    let mut fields: Vec<(String, Vec<u8>)> =
        fields.iter().map(|f| (String::from_utf8_lossy(f.name).into_owned(), f.raw.to_vec())).collect();
    let mut body: Option<Vec<u8>> = None;
    let mut edited = Edited::default();
    let changed = mods.iter().any(|m| {
        matches!(
            m,
            Modification::AddHeader { .. }
                | Modification::InsHeader { .. }
                | Modification::ChgHeader { .. }
                | Modification::ReplBody(_)
        )
    });
    let field = |name: &str, value: &str| -> (String, Vec<u8>) {
        let mut raw = Vec::with_capacity(name.len() + value.len() + 4);
        raw.extend_from_slice(name.as_bytes());
        raw.push(b':');
        if !leading_space {
            raw.push(b' ');
        }
        for (i, line) in value.split('\n').map(|l| l.trim_end_matches('\r')).enumerate() {
            if i > 0 {
                if line.trim().is_empty() {
                    continue;
                }
                raw.extend_from_slice(b"\r\n");
                if !line.starts_with([' ', '\t']) {
                    raw.push(b' ');
                }
            }
            raw.extend_from_slice(line.as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        (name.to_string(), raw)
    };
    for m in mods {
        match m {
            Modification::AddHeader { name, value } => fields.push(field(name, value)),
            Modification::InsHeader { index, name, value } => {
                let at = (*index as usize).min(fields.len());
                fields.insert(at, field(name, value));
            }
            Modification::ChgHeader { index, name, value } => {
                // 1-based among the fields of that name (0 taken as 1,
                // as Sendmail does); past the last one: added.
                let nth = (*index).max(1) as usize;
                let found = fields.iter().enumerate().filter(|(_, (n, _))| n.eq_ignore_ascii_case(name)).nth(nth - 1);
                match (found.map(|(i, _)| i), value.is_empty()) {
                    (Some(i), true) => {
                        fields.remove(i);
                    }
                    // The field keeps its own spelling of the name.
                    (Some(i), false) => fields[i] = field(&fields[i].0.clone(), value),
                    (None, true) => {}
                    (None, false) => fields.push(field(name, value)),
                }
            }
            Modification::ReplBody(chunk) => body.get_or_insert_with(Vec::new).extend_from_slice(chunk),
            Modification::AddRcpt(a) => edited.add_rcpts.push(unbracket(a)),
            Modification::DelRcpt(a) => edited.del_rcpts.push(unbracket(a)),
            Modification::ChgFrom(a) => edited.sender = Some(unbracket(a)),
            Modification::Quarantine(r) => edited.quarantine = Some(r.clone()),
        }
    }
    if !changed {
        edited.message = message.to_vec();
        return edited;
    }
    let old_body = &message[body_start..];
    let mut out = Vec::with_capacity(message.len() + 256);
    for (_, raw) in &fields {
        out.extend_from_slice(raw);
    }
    // The empty line always separates the (changed) header section from
    // the body, as the milter was shown them.
    out.extend_from_slice(b"\r\n");
    match body {
        Some(new) => out.extend_from_slice(&crlf(&new)),
        None => out.extend_from_slice(old_body),
    }
    edited.message = out;
    edited
}

/// `<a@b>` or `a@b` as `a@b`.
fn unbracket(a: &str) -> String {
    let a = a.trim();
    a.strip_prefix('<').and_then(|a| a.strip_suffix('>')).unwrap_or(a).to_string()
}

/// Bare LF line ends as CRLF (what libmilter filters often send).
fn crlf(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 32);
    for (i, &b) in body.iter().enumerate() {
        if b == b'\n' && (i == 0 || body[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Modification::*;

    const MSG: &[u8] = b"Received: x\r\nSubject: one\r\nX-A: 1\r\nX-A: 2\r\n\r\nbody\r\n";

    fn s(x: &str) -> String {
        x.to_string()
    }

    #[test]
    fn header_changes_land_where_libmilter_says() {
        let mods = [
            AddHeader { name: s("X-Spam"), value: s("yes") },
            InsHeader { index: 0, name: s("X-First"), value: s("top") },
            ChgHeader { index: 2, name: s("x-a"), value: s("two") },
            ChgHeader { index: 1, name: s("Subject"), value: s("") },
            ChgHeader { index: 5, name: s("X-New"), value: s("added") },
        ];
        let e = apply(MSG, &mods, false);
        assert_eq!(
            e.message,
            b"X-First: top\r\nReceived: x\r\nX-A: 1\r\nX-A: two\r\nX-Spam: yes\r\nX-New: added\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn a_value_cannot_smuggle_a_field_or_end_the_headers() {
        let e = apply(MSG, &[AddHeader { name: s("X-S"), value: s("a\n\nEvil: 1\r\n\tb") }], false);
        assert_eq!(
            e.message,
            b"Received: x\r\nSubject: one\r\nX-A: 1\r\nX-A: 2\r\nX-S: a\r\n Evil: 1\r\n\tb\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn body_replaced_and_envelope_changes_collected() {
        let mods = [
            ReplBody(b"new\nbody".to_vec()),
            ReplBody(b"\r\nend\r\n".to_vec()),
            AddRcpt(s("<c@d>")),
            DelRcpt(s("a@b")),
            ChgFrom(s("<x@y>")),
            Quarantine(s("held")),
        ];
        let e = apply(MSG, &mods, true);
        assert_eq!(e.message, b"Received: x\r\nSubject: one\r\nX-A: 1\r\nX-A: 2\r\n\r\nnew\r\nbody\r\nend\r\n");
        assert_eq!(e.add_rcpts, ["c@d"]);
        assert_eq!(e.del_rcpts, ["a@b"]);
        assert_eq!(e.sender.as_deref(), Some("x@y"));
        assert_eq!(e.quarantine.as_deref(), Some("held"));
    }

    #[test]
    fn no_modifications_keep_the_message_as_it_was() {
        for m in [MSG, b"Subject: x\r\n", b"Subject: x\r\n\r\n", b"\r\nonly body\r\n"] {
            assert_eq!(apply(m, &[], false).message, m, "{}", String::from_utf8_lossy(m));
        }
    }
}
