//! `POST /api/v1/inject`: the request body (modelled on KumoMTA's
//! `/api/inject/v1`), its checks, and the messages it stands for: a raw
//! RFC 5322 message, or a template built into MIME with `mail-builder`,
//! with per-recipient `{{name}}` substitutions.
//!
//! Owns: the JSON shape, every refusal naming the field, substitution and
//! MIME building. Pure: no shard, no socket, no clock (the caller passes
//! the Message-ID's unique part). Must not: store anything (see
//! [`crate::http::submit`]).

use crate::proto::smtp::{parse_mailbox_utf8, Address, ReversePath};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectRequest {
    /// `MAIL FROM`; `""` is the null sender.
    pub envelope_sender: String,
    /// `"addr"` or `{"email": "addr", "substitutions": {...}}`.
    pub recipients: Vec<RecipientSpec>,
    pub content: Content,
}

/// One recipient and the values its copy of a template gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientSpec {
    pub email: String,
    /// `{{name}}` → value; strings, numbers and booleans in the JSON.
    pub substitutions: BTreeMap<String, String>,
}

/// `content`: either `raw`, or the template fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Content {
    /// A whole RFC 5322 message (LF or CRLF line ends).
    pub raw: Option<String>,
    /// `"addr"` or `"Name <addr>"`.
    pub from: Option<String>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// More header fields (`To`, `Cc`, `Reply-To`, `X-...`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Why an inject request is refused (400), naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    #[error("{field}: {reason}")]
    Field { field: String, reason: String },
    #[error("recipients: {count} recipients, at most {max} per request (limits.max_recipients)")]
    TooManyRecipients { count: usize, max: usize },
}

fn field(field: impl Into<String>, reason: impl Into<String>) -> InjectError {
    InjectError::Field { field: field.into(), reason: reason.into() }
}

/// Header fields the template makes itself (or `from`/`subject` set).
const BUILT_FIELDS: &[&str] = &["from", "subject", "mime-version", "content-type", "content-transfer-encoding"];

/// A request whose addresses parsed: what [`build`] and the store need.
#[derive(Debug)]
pub struct Checked {
    pub sender: ReversePath,
    /// In request order.
    pub recipients: Vec<Address>,
}

/// Check the addresses, the recipient count (at most `max_recipients`)
/// and the content's shape.
pub fn check(req: &InjectRequest, max_recipients: usize) -> Result<Checked, InjectError> {
    let sender = match req.envelope_sender.trim() {
        "" => ReversePath::Null,
        s => ReversePath::Mailbox(
            parse_mailbox_utf8(s.as_bytes()).map_err(|e| field("envelope_sender", format!("{s:?}: {e}")))?,
        ),
    };
    if req.recipients.is_empty() {
        return Err(field("recipients", "at least one recipient is needed"));
    }
    if req.recipients.len() > max_recipients {
        return Err(InjectError::TooManyRecipients { count: req.recipients.len(), max: max_recipients });
    }
    let mut recipients = Vec::with_capacity(req.recipients.len());
    for (i, r) in req.recipients.iter().enumerate() {
        let a = parse_mailbox_utf8(r.email.trim().as_bytes())
            .map_err(|e| field(format!("recipients[{i}].email"), format!("{:?}: {e}", r.email)))?;
        recipients.push(a);
    }
    let c = &req.content;
    let template = c.from.is_some() || c.subject.is_some() || c.text.is_some() || c.html.is_some();
    match (&c.raw, template || !c.headers.is_empty()) {
        (Some(_), true) => {
            return Err(field(
                "content",
                "either raw or the template fields (from, subject, text, html, headers), not both",
            ))
        }
        (Some(raw), false) if raw.trim().is_empty() => return Err(field("content.raw", "empty message")),
        (Some(_), false) => {}
        (None, _) => {
            if c.from.as_deref().is_none_or(|f| f.trim().is_empty()) {
                return Err(field("content.from", "missing (a template needs from, subject and text or html)"));
            }
            if c.subject.is_none() {
                return Err(field("content.subject", "missing (a template needs from, subject and text or html)"));
            }
            if c.text.is_none() && c.html.is_none() {
                return Err(field("content", "a template needs text or html (or both)"));
            }
            for name in c.headers.keys() {
                let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
                if !ok {
                    return Err(field(format!("content.headers.{name}"), "not a header field name"));
                }
                if BUILT_FIELDS.contains(&name.to_ascii_lowercase().as_str()) {
                    return Err(field(format!("content.headers.{name}"), "set by the template itself"));
                }
            }
        }
    }
    Ok(Checked { sender, recipients })
}

/// One message to store: its body and which recipients (indexes into the
/// request's list) it goes to.
#[derive(Debug)]
pub struct Prepared {
    pub recipients: Vec<usize>,
    pub body: Vec<u8>,
}

/// The messages a checked request stands for: one per recipient when any
/// recipient has substitutions (each gets its own copy), else one for
/// all. `unique` makes each template's Message-ID
/// (`<unique.N@hostname>`).
pub fn build(req: &InjectRequest, hostname: &str, unique: &str) -> Result<Vec<Prepared>, InjectError> {
    let personal = req.recipients.iter().any(|r| !r.substitutions.is_empty());
    let groups: Vec<Vec<usize>> = if personal {
        (0..req.recipients.len()).map(|i| vec![i]).collect()
    } else {
        vec![(0..req.recipients.len()).collect()]
    };
    let none = BTreeMap::new();
    let mut out = Vec::with_capacity(groups.len());
    for (n, group) in groups.into_iter().enumerate() {
        let (vars, to) = match group.as_slice() {
            [one] if personal => (&req.recipients[*one].substitutions, Some(req.recipients[*one].email.trim())),
            _ => (&none, None),
        };
        let at = |f: &str| match group.as_slice() {
            [one] if personal => format!("recipients[{one}].substitutions (in content.{f})"),
            _ => format!("content.{f}"),
        };
        let body = match &req.content.raw {
            Some(raw) => crlf(&substitute(raw, vars)),
            None => template(&req.content, vars, to, &format!("<{unique}.{n}@{hostname}>"), &at)?,
        };
        out.push(Prepared { recipients: group, body });
    }
    Ok(out)
}

/// The template as MIME: From, To (the recipient's address for a
/// personal copy, `undisclosed-recipients:;` for a shared one, unless
/// `headers` has a To), Subject, the extra headers, and text/plain,
/// text/html or multipart/alternative.
fn template(
    c: &Content,
    vars: &BTreeMap<String, String>,
    to: Option<&str>,
    message_id: &str,
    at: &dyn Fn(&str) -> String,
) -> Result<Vec<u8>, InjectError> {
    use mail_builder::headers::address::Address as MailAddress;
    use mail_builder::headers::raw::Raw;
    use mail_builder::headers::text::Text;
    use mail_builder::MessageBuilder;
    let one_line = |name: &str, value: &str| -> Result<String, InjectError> {
        let v = substitute(value, vars);
        if v.contains(['\r', '\n']) {
            return Err(field(at(name), "a header field value may not hold a line break"));
        }
        Ok(v)
    };
    let from = one_line("from", c.from.as_deref().unwrap_or_default())?;
    let from = match from.rsplit_once('<') {
        Some((name, addr)) => {
            let name = name.trim().trim_matches('"').to_string();
            let addr = addr.trim_end().trim_end_matches('>').trim().to_string();
            MailAddress::new_address((!name.is_empty()).then_some(name), addr)
        }
        None => MailAddress::new_address(None::<String>, from.trim().to_string()),
    };
    let mut m = MessageBuilder::new()
        .from(from)
        .subject(Text::new(one_line("subject", c.subject.as_deref().unwrap_or_default())?))
        .message_id(message_id.trim_start_matches('<').trim_end_matches('>').to_string());
    let has_to = c.headers.keys().any(|k| k.eq_ignore_ascii_case("to"));
    if !has_to {
        m = match to {
            Some(addr) => m.to(MailAddress::new_address(None::<String>, addr.to_string())),
            None => m.header("To", Raw::new("undisclosed-recipients:;")),
        };
    }
    for (name, value) in &c.headers {
        let v = one_line(&format!("headers.{name}"), value)?;
        // ASCII as it is (address lists keep their syntax); anything else
        // RFC 2047-encoded.
        m = if v.is_ascii() { m.header(name.clone(), Raw::new(v)) } else { m.header(name.clone(), Text::new(v)) };
    }
    if let Some(text) = &c.text {
        m = m.text_body(substitute(text, vars));
    }
    if let Some(html) = &c.html {
        m = m.html_body(substitute(html, vars));
    }
    let mut message = m.write_to_vec().map_err(|e| field("content", format!("cannot build the message: {e}")))?;
    // A text or HTML part that does not end in a line break leaves the
    // message without one, and a stored message ends with CRLF (found by
    // the http_inject fuzz target).
    if !message.ends_with(b"\r\n") {
        message.extend_from_slice(b"\r\n");
    }
    Ok(message)
}

/// `text` with every `{{ name }}` whose name `vars` has replaced by its
/// value (spaces inside the braces allowed); other braces stay as they are.
pub fn substitute(text: &str, vars: &BTreeMap<String, String>) -> String {
    if vars.is_empty() || !text.contains("{{") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => match vars.get(after[..end].trim()) {
                Some(value) => {
                    out.push_str(value);
                    rest = &after[end + 2..];
                }
                None => {
                    out.push_str("{{");
                    rest = after;
                }
            },
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Line ends as CRLF (a bare LF or CR becomes CRLF).
pub fn crlf(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32 + 2);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl<'de> Deserialize<'de> for RecipientSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RecipientSpec, D::Error> {
        d.deserialize_any(SpecVisitor)
    }
}

/// The object form, so that serde names its fields in errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FullRecipient {
    email: String,
    #[serde(default)]
    substitutions: BTreeMap<String, serde_json::Value>,
}

struct SpecVisitor;

impl<'de> Visitor<'de> for SpecVisitor {
    type Value = RecipientSpec;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an address string or {\"email\": ..., \"substitutions\": {...}}")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RecipientSpec, E> {
        Ok(RecipientSpec { email: v.to_string(), substitutions: BTreeMap::new() })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RecipientSpec, A::Error> {
        let full = FullRecipient::deserialize(de::value::MapAccessDeserializer::new(map))?;
        let mut substitutions = BTreeMap::new();
        for (k, v) in full.substitutions {
            let text = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(de::Error::custom(format!("substitution {k:?}: expected a string, number or boolean")))
                }
            };
            substitutions.insert(k, text);
        }
        Ok(RecipientSpec { email: full.email, substitutions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<InjectRequest, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn a_template_whose_text_ends_without_a_line_break_still_ends_with_crlf() {
        let req = parse(
            r#"{"envelope_sender": "s@x.test", "recipients": ["a@x.test"],
               "content": {"from": "Shop <s@x.test>", "subject": "Hi", "text": "Dear you,\np>"}}"#,
        )
        .unwrap();
        let built = build(&req, "mx.test", "t").unwrap();
        assert_eq!(built.len(), 1);
        assert!(built[0].body.ends_with(b"\r\n"), "{:?}", String::from_utf8_lossy(&built[0].body));
    }

    #[test]
    fn malformed_json_errors_name_the_field() {
        let e = parse(r#"{"recipients": ["a@b.test"], "content": {"raw": "x"}}"#).unwrap_err();
        assert!(e.contains("missing field `envelope_sender`"), "{e}");
        let e = parse(r#"{"envelope_sender": "", "recipients": [{"mail": "a@b"}], "content": {}}"#).unwrap_err();
        assert!(e.contains("unknown field `mail`"), "{e}");
        let e = parse(
            r#"{"envelope_sender": "", "recipients": [{"email": "a@b", "substitutions": {"x": [1]}}], "content": {}}"#,
        )
        .unwrap_err();
        assert!(e.contains("substitution \"x\""), "{e}");
        let e = parse(r#"{"envelope_sender": "", "recipients": "a@b", "content": {}}"#).unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
    }

    #[test]
    fn recipients_are_strings_or_objects_with_substitutions() {
        let r = parse(
            r#"{"envelope_sender": "s@x.test", "recipients": ["a@x.test", {"email": "b@x.test", "substitutions": {"n": "Bo", "k": 3, "t": true}}],
               "content": {"raw": "Subject: hi\n\nbody\n"}}"#,
        )
        .unwrap();
        assert_eq!(r.recipients[0], RecipientSpec { email: "a@x.test".into(), substitutions: BTreeMap::new() });
        let s = &r.recipients[1].substitutions;
        assert_eq!((s["n"].as_str(), s["k"].as_str(), s["t"].as_str()), ("Bo", "3", "true"));
    }

    #[test]
    fn checks_name_the_field() {
        let req = |sender: &str, rcpts: &[&str], content: Content| InjectRequest {
            envelope_sender: sender.into(),
            recipients: rcpts
                .iter()
                .map(|e| RecipientSpec { email: e.to_string(), substitutions: BTreeMap::new() })
                .collect(),
            content,
        };
        let raw = || Content { raw: Some("Subject: x\n\nhi\n".into()), ..Content::default() };
        assert!(check(&req("", &["a@x.test"], raw()), 5).is_ok());
        let e = check(&req("bad", &["a@x.test"], raw()), 5).unwrap_err().to_string();
        assert!(e.starts_with("envelope_sender: "), "{e}");
        let e = check(&req("", &["a@x.test", "nope"], raw()), 5).unwrap_err().to_string();
        assert!(e.starts_with("recipients[1].email: "), "{e}");
        let e = check(&req("", &[], raw()), 5).unwrap_err().to_string();
        assert!(e.starts_with("recipients: "), "{e}");
        let many = check(&req("", &["a@x.test"; 6], raw()), 5).unwrap_err();
        assert_eq!(many, InjectError::TooManyRecipients { count: 6, max: 5 });
        let both = Content { from: Some("f@x.test".into()), ..raw() };
        assert!(check(&req("", &["a@x.test"], both), 5).unwrap_err().to_string().starts_with("content: "));
        let no_from = Content { subject: Some("s".into()), text: Some("t".into()), ..Content::default() };
        assert!(check(&req("", &["a@x.test"], no_from), 5).unwrap_err().to_string().starts_with("content.from: "));
        let mut headers = BTreeMap::new();
        headers.insert("Content-Type".to_string(), "text/x".to_string());
        let built = Content {
            from: Some("f@x.test".into()),
            subject: Some("s".into()),
            text: Some("t".into()),
            headers,
            ..Content::default()
        };
        let e = check(&req("", &["a@x.test"], built), 5).unwrap_err().to_string();
        assert!(e.starts_with("content.headers.Content-Type: "), "{e}");
    }

    #[test]
    fn substitution_replaces_known_names_only() {
        let mut vars = BTreeMap::new();
        vars.insert("name".to_string(), "Ann".to_string());
        assert_eq!(substitute("Hi {{name}}, {{ name }}! {{other}} {{", &vars), "Hi Ann, Ann! {{other}} {{");
        assert_eq!(substitute("{{name}}{{name}}", &vars), "AnnAnn");
        assert_eq!(substitute("{{na}}me}}", &vars), "{{na}}me}}");
    }

    #[test]
    fn line_ends_become_crlf() {
        assert_eq!(crlf("a\nb\r\nc\rd"), b"a\r\nb\r\nc\r\nd\r\n");
        assert_eq!(crlf("a\r\n"), b"a\r\n");
    }

    #[test]
    fn templates_with_substitutions_make_one_message_per_recipient() {
        let r = parse(
            r#"{"envelope_sender": "s@x.test",
                "recipients": [{"email": "a@x.test", "substitutions": {"name": "Ann"}}, {"email": "b@x.test", "substitutions": {"name": "Bob"}}],
                "content": {"from": "Shop <shop@x.test>", "subject": "Hello {{name}}", "text": "Dear {{name}},\nhi", "html": "<p>{{name}}</p>",
                            "headers": {"X-Campaign": "c{{name}}"}}}"#,
        )
        .unwrap();
        check(&r, 10).unwrap();
        let built = build(&r, "mx.test", "u1").unwrap();
        assert_eq!(built.len(), 2);
        assert_eq!(built[1].recipients, vec![1]);
        let text = String::from_utf8(built[1].body.clone()).unwrap();
        assert!(text.contains("Subject: Hello Bob\r\n"), "{text}");
        assert!(text.contains("To: <b@x.test>\r\n"), "{text}");
        assert!(text.contains("X-Campaign: cBob\r\n"), "{text}");
        assert!(text.contains("Message-ID: <u1.1@mx.test>\r\n"), "{text}");
        assert!(text.contains("multipart/alternative"), "{text}");
        assert!(text.contains("Dear Bob,") && text.contains("<p>Bob</p>"), "{text}");
        assert!(!text.contains("Ann"), "{text}");
    }

    #[test]
    fn without_substitutions_one_message_goes_to_all() {
        let r = parse(
            r#"{"envelope_sender": "", "recipients": ["a@x.test", "b@x.test"], "content": {"raw": "Subject: x\n\nhi {{name}}\n"}}"#,
        )
        .unwrap();
        let built = build(&r, "mx.test", "u").unwrap();
        assert_eq!(built.len(), 1);
        assert_eq!(built[0].recipients, vec![0, 1]);
        assert_eq!(built[0].body, b"Subject: x\r\n\r\nhi {{name}}\r\n");
    }

    #[test]
    fn a_substituted_line_break_cannot_make_a_header() {
        let r = parse(
            r#"{"envelope_sender": "", "recipients": [{"email": "a@x.test", "substitutions": {"n": "x\r\nBcc: evil@x.test"}}],
                "content": {"from": "f@x.test", "subject": "{{n}}", "text": "t"}}"#,
        )
        .unwrap();
        let e = build(&r, "mx.test", "u").unwrap_err().to_string();
        assert!(e.starts_with("recipients[0].substitutions (in content.subject): "), "{e}");
    }
}
