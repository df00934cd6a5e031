//! One command line (terminator already removed by `line`) -> [`Command`].
//!
//! Verbs are case-insensitive. An unknown verb is a value,
//! [`Command::Unknown`], not an error: the session decides what to say.
//! Errors name the verb they belong to ([`CommandError::verb`]) so the
//! session can report a sequence error (503) before a syntax error, as
//! Postfix does.
//!
//! Leniency, on purpose and no further: spaces after the verb and after
//! `FROM:`/`TO:` (`MAIL FROM: <a@b>`), and trailing spaces, are skipped;
//! NOOP and HELP take any argument. Strictness: any control character
//! (NUL, CR, TAB, ...) makes the line [`CommandError::ControlCharacter`];
//! DATA, RSET, QUIT and STARTTLS refuse arguments; parameters follow
//! RFC 5321 `esmtp-param`, and an unsupported one is reported as such
//! (555, RFC 1869 §6).
//!
//! This file must not know session state or reply texts.

use std::fmt;

use super::address::{parse_forward_path_utf8, parse_reverse_path_utf8, AddressError, ForwardPath, ReversePath};
use super::sasl::InitialResponse;
use crate::proto::xtext;
use crate::spool::{DsnRet, Notify, RecipientDsn};

/// The verbs this server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Ehlo,
    Helo,
    Mail,
    Rcpt,
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    StartTls,
    Auth,
    Bdat,
}

impl Verb {
    const ALL: [(Verb, &'static str); 13] = [
        (Verb::Ehlo, "EHLO"),
        (Verb::Helo, "HELO"),
        (Verb::Mail, "MAIL"),
        (Verb::Rcpt, "RCPT"),
        (Verb::Data, "DATA"),
        (Verb::Rset, "RSET"),
        (Verb::Noop, "NOOP"),
        (Verb::Quit, "QUIT"),
        (Verb::Vrfy, "VRFY"),
        (Verb::Help, "HELP"),
        (Verb::StartTls, "STARTTLS"),
        (Verb::Auth, "AUTH"),
        (Verb::Bdat, "BDAT"),
    ];

    fn from_bytes(verb: &[u8]) -> Option<Verb> {
        Verb::ALL.iter().find(|(_, name)| verb.eq_ignore_ascii_case(name.as_bytes())).map(|&(v, _)| v)
    }

    /// The verb as written in RFC 5321 (upper case).
    pub fn as_str(self) -> &'static str {
        Verb::ALL.iter().find(|(v, _)| *v == self).map_or("", |&(_, name)| name)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// MAIL's `BODY=` parameter (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    SevenBit,
    EightBitMime,
    /// RFC 3030 §3: binary content, to be sent with BDAT only.
    BinaryMime,
}

/// MAIL FROM and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailFrom {
    pub sender: ReversePath,
    /// `SIZE=n` (RFC 1870); a value too large for u64 saturates.
    pub size: Option<u64>,
    /// `BODY=7BIT|8BITMIME|BINARYMIME`.
    pub body: Option<BodyType>,
    /// DSN `RET=FULL|HDRS` (RFC 3461 §4.3).
    pub ret: Option<DsnRet>,
    /// DSN `ENVID=` (RFC 3461 §4.4), xtext-decoded.
    pub envid: Option<String>,
    /// `SMTPUTF8` (RFC 6531 §3.4): UTF-8 addresses and headers. Without
    /// it a non-ASCII sender is [`AddressError::NonAscii`]; RCPT paths are
    /// parsed UTF-8-capable and the session refuses a non-ASCII one in a
    /// transaction without it.
    pub smtputf8: bool,
    /// `REQUIRETLS` (RFC 8689): every hop must use verified TLS. The
    /// session accepts it only over TLS (where it is advertised).
    pub requiretls: bool,
    // `AUTH=` (RFC 4954 §5) is accepted and not kept: nobody is trusted to
    // vouch for a submitter, which RFC 4954 §5 allows ("treat all clients
    // as being insufficiently trusted").
}

/// RCPT TO and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptTo {
    pub recipient: ForwardPath,
    /// DSN `NOTIFY=` and `ORCPT=` (RFC 3461 §4.1, §4.2).
    pub dsn: RecipientDsn,
    /// The path was written with non-ASCII bytes (a UTF-8 local part or a
    /// U-label domain, which `recipient` holds as its A-label): allowed
    /// only in a transaction whose MAIL had SMTPUTF8.
    pub utf8: bool,
}

/// Longest `ENVID` (RFC 3461 §4.4: 100 characters).
const MAX_ENVID: usize = 100;
/// Longest `ORCPT` (RFC 3461 §4.2: the parameter is at most 500 characters).
const MAX_ORCPT: usize = 500;

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// EHLO with the client's name: the whole argument, trimmed.
    Ehlo {
        domain: String,
    },
    /// HELO with the client's name: the whole argument, trimmed.
    Helo {
        domain: String,
    },
    Mail(MailFrom),
    Rcpt(RcptTo),
    Data,
    Rset,
    Noop,
    Quit,
    /// VRFY with its (ignored) argument.
    Vrfy,
    Help,
    StartTls,
    /// AUTH (RFC 4954): the mechanism as sent, and the initial response if
    /// one was given (its `{:?}` is redacted).
    Auth {
        mechanism: String,
        initial_response: Option<InitialResponse>,
    },
    /// `BDAT size [LAST]` (RFC 3030 §2): exactly `size` octets of message
    /// follow the line, whatever they contain.
    Bdat {
        size: u64,
        last: bool,
    },
    /// A verb this server does not know, as sent (lossy UTF-8), for logging.
    Unknown(String),
}

impl Command {
    /// The verb, `None` for [`Command::Unknown`].
    pub fn verb(&self) -> Option<Verb> {
        Some(match self {
            Command::Ehlo { .. } => Verb::Ehlo,
            Command::Helo { .. } => Verb::Helo,
            Command::Mail(_) => Verb::Mail,
            Command::Rcpt(_) => Verb::Rcpt,
            Command::Data => Verb::Data,
            Command::Rset => Verb::Rset,
            Command::Noop => Verb::Noop,
            Command::Quit => Verb::Quit,
            Command::Vrfy => Verb::Vrfy,
            Command::Help => Verb::Help,
            Command::StartTls => Verb::StartTls,
            Command::Auth { .. } => Verb::Auth,
            Command::Bdat { .. } => Verb::Bdat,
            Command::Unknown(_) => return None,
        })
    }
}

/// Why a command line did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The line is empty (or only spaces).
    #[error("empty command line")]
    Empty,
    /// A control character (NUL, CR, TAB, DEL, ...) in the line.
    #[error("control character in command line")]
    ControlCharacter,
    /// A missing, extra or malformed argument.
    #[error("{0}: syntax error")]
    Syntax(Verb),
    /// MAIL FROM's path does not parse.
    #[error("MAIL: bad sender address: {0}")]
    BadSender(AddressError),
    /// RCPT TO's path does not parse.
    #[error("RCPT: bad recipient address: {0}")]
    BadRecipient(AddressError),
    /// A malformed parameter, a bad value, or one given twice.
    #[error("{0}: bad parameter")]
    BadParameter(Verb),
    /// A well-formed parameter this server does not support.
    #[error("{verb}: unsupported parameter {keyword}")]
    UnsupportedParameter { verb: Verb, keyword: String },
}

impl CommandError {
    /// The verb the failed line was for, when it got that far.
    pub fn verb(&self) -> Option<Verb> {
        match self {
            CommandError::Empty | CommandError::ControlCharacter => None,
            CommandError::Syntax(v) | CommandError::BadParameter(v) => Some(*v),
            CommandError::UnsupportedParameter { verb, .. } => Some(*verb),
            CommandError::BadSender(_) => Some(Verb::Mail),
            CommandError::BadRecipient(_) => Some(Verb::Rcpt),
        }
    }
}

/// Parses one command line (without its CRLF).
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    if line.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(CommandError::ControlCharacter);
    }
    let line = trim_spaces(line);
    if line.is_empty() {
        return Err(CommandError::Empty);
    }
    let (verb, args) = match line.iter().position(|&b| b == b' ') {
        Some(sp) => (&line[..sp], trim_spaces(&line[sp..])),
        None => (line, &b""[..]),
    };
    let Some(verb) = Verb::from_bytes(verb) else {
        return Ok(Command::Unknown(String::from_utf8_lossy(verb).into_owned()));
    };
    let no_args = |cmd: Command| {
        if args.is_empty() {
            Ok(cmd)
        } else {
            Err(CommandError::Syntax(verb))
        }
    };
    match verb {
        Verb::Ehlo => hello(args, verb).map(|domain| Command::Ehlo { domain }),
        Verb::Helo => hello(args, verb).map(|domain| Command::Helo { domain }),
        Verb::Mail => mail(args).map(Command::Mail),
        Verb::Rcpt => rcpt(args).map(Command::Rcpt),
        Verb::Data => no_args(Command::Data),
        Verb::Rset => no_args(Command::Rset),
        Verb::Quit => no_args(Command::Quit),
        Verb::StartTls => no_args(Command::StartTls),
        Verb::Noop => Ok(Command::Noop),
        Verb::Help => Ok(Command::Help),
        Verb::Vrfy if args.is_empty() => Err(CommandError::Syntax(verb)),
        Verb::Vrfy => Ok(Command::Vrfy),
        Verb::Auth => auth(args),
        Verb::Bdat => bdat(args),
    }
}

fn trim_spaces(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ').unwrap_or(s.len());
    let end = s.iter().rposition(|&b| b != b' ').map_or(start, |i| i + 1);
    &s[start..end]
}

fn hello(args: &[u8], verb: Verb) -> Result<String, CommandError> {
    if args.is_empty() || !args.is_ascii() {
        return Err(CommandError::Syntax(verb));
    }
    Ok(args.iter().map(|&b| b as char).collect())
}

/// Strips `keyword` (e.g. `FROM:`) case-insensitively, then spaces.
fn after_keyword<'a>(args: &'a [u8], keyword: &[u8]) -> Option<&'a [u8]> {
    let head = args.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword).then(|| trim_spaces(&args[keyword.len()..]))
}

fn mail(args: &[u8]) -> Result<MailFrom, CommandError> {
    let path = after_keyword(args, b"FROM:").ok_or(CommandError::Syntax(Verb::Mail))?;
    let (sender, rest) = parse_reverse_path_utf8(path).map_err(CommandError::BadSender)?;
    let mut from =
        MailFrom { sender, size: None, body: None, smtputf8: false, requiretls: false, ret: None, envid: None };
    let mut auth_seen = false;
    for Param { keyword, value } in params(rest, Verb::Mail)? {
        let bad = CommandError::BadParameter(Verb::Mail);
        if keyword.eq_ignore_ascii_case(b"SIZE") {
            let digits = value.filter(|v| v.iter().all(u8::is_ascii_digit));
            let digits = digits.ok_or(bad.clone())?;
            let size = digits.iter().fold(0u64, |n, &d| n.saturating_mul(10).saturating_add(u64::from(d - b'0')));
            if from.size.replace(size).is_some() {
                return Err(bad);
            }
        } else if keyword.eq_ignore_ascii_case(b"BODY") {
            let body = match value {
                Some(v) if v.eq_ignore_ascii_case(b"7BIT") => BodyType::SevenBit,
                Some(v) if v.eq_ignore_ascii_case(b"8BITMIME") => BodyType::EightBitMime,
                Some(v) if v.eq_ignore_ascii_case(b"BINARYMIME") => BodyType::BinaryMime,
                _ => return Err(bad),
            };
            if from.body.replace(body).is_some() {
                return Err(bad);
            }
        } else if keyword.eq_ignore_ascii_case(b"RET") {
            let ret = match value {
                Some(v) if v.eq_ignore_ascii_case(b"FULL") => DsnRet::Full,
                Some(v) if v.eq_ignore_ascii_case(b"HDRS") => DsnRet::Headers,
                _ => return Err(bad),
            };
            if from.ret.replace(ret).is_some() {
                return Err(bad);
            }
        } else if keyword.eq_ignore_ascii_case(b"ENVID") {
            // RFC 3461 §4.4: printable ASCII once decoded.
            let envid =
                value.and_then(xtext::decode).filter(|e| e.len() <= MAX_ENVID && e.is_ascii()).ok_or(bad.clone())?;
            if from.envid.replace(envid).is_some() {
                return Err(bad);
            }
        } else if keyword.eq_ignore_ascii_case(b"AUTH") {
            // `AUTH=<>` or an xtext mailbox; params() checked the bytes.
            if value.is_none() || std::mem::replace(&mut auth_seen, true) {
                return Err(bad);
            }
        } else if keyword.eq_ignore_ascii_case(b"SMTPUTF8") {
            // RFC 6531 §3.4: no value.
            if value.is_some() || std::mem::replace(&mut from.smtputf8, true) {
                return Err(bad);
            }
        } else if keyword.eq_ignore_ascii_case(b"REQUIRETLS") {
            // RFC 8689 §3: no value.
            if value.is_some() || std::mem::replace(&mut from.requiretls, true) {
                return Err(bad);
            }
        } else {
            return Err(unsupported(Verb::Mail, keyword));
        }
    }
    // The path as written: a U-label domain is ASCII once parsed.
    if !from.smtputf8 && !path.is_ascii() {
        return Err(CommandError::BadSender(AddressError::NonAscii));
    }
    Ok(from)
}

/// `BDAT chunk-size [LAST]` (RFC 3030 §2): at most 20 digits (u64), then
/// optionally `LAST`, any case.
fn bdat(args: &[u8]) -> Result<Command, CommandError> {
    let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let (Some(digits), last, None) = (words.next(), words.next(), words.next()) else {
        return Err(CommandError::Syntax(Verb::Bdat));
    };
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(CommandError::Syntax(Verb::Bdat));
    }
    let size = std::str::from_utf8(digits).ok().and_then(|d| d.parse::<u64>().ok());
    let size = size.ok_or(CommandError::Syntax(Verb::Bdat))?;
    match last {
        None => Ok(Command::Bdat { size, last: false }),
        Some(word) if word.eq_ignore_ascii_case(b"LAST") => Ok(Command::Bdat { size, last: true }),
        Some(_) => Err(CommandError::Syntax(Verb::Bdat)),
    }
}

/// `AUTH mechanism [initial-response]`; both are checked later, by the
/// session (504 for a mechanism, 501 for bad base64), as their replies
/// differ from a syntax error's.
fn auth(args: &[u8]) -> Result<Command, CommandError> {
    let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let (Some(mechanism), initial, None) = (words.next(), words.next(), words.next()) else {
        return Err(CommandError::Syntax(Verb::Auth));
    };
    Ok(Command::Auth {
        mechanism: String::from_utf8_lossy(mechanism).into_owned(),
        initial_response: initial.map(|r| InitialResponse(r.to_vec())),
    })
}

fn rcpt(args: &[u8]) -> Result<RcptTo, CommandError> {
    let path = after_keyword(args, b"TO:").ok_or(CommandError::Syntax(Verb::Rcpt))?;
    // UTF-8 is parsed here; whether the transaction allows it is the
    // session's to say (it knows whether MAIL had SMTPUTF8).
    let (recipient, rest) = parse_forward_path_utf8(path).map_err(CommandError::BadRecipient)?;
    let mut dsn = RecipientDsn::default();
    for Param { keyword, value } in params(rest, Verb::Rcpt)? {
        let bad = CommandError::BadParameter(Verb::Rcpt);
        if keyword.eq_ignore_ascii_case(b"NOTIFY") {
            let notify = value.and_then(notify).ok_or(bad.clone())?;
            if dsn.notify.is_given() {
                return Err(bad);
            }
            dsn.notify = notify;
        } else if keyword.eq_ignore_ascii_case(b"ORCPT") {
            let orcpt = value.filter(|v| v.len() <= MAX_ORCPT).and_then(orcpt).ok_or(bad.clone())?;
            if dsn.orcpt.replace(orcpt).is_some() {
                return Err(bad);
            }
        } else {
            return Err(unsupported(Verb::Rcpt, keyword));
        }
    }
    // Parameters are ASCII (params() checks), so this is about the path.
    // Whether the path itself (not an ORCPT) has UTF-8.
    let utf8 = !path[..path.len() - rest.len()].is_ascii();
    Ok(RcptTo { recipient, utf8, dsn })
}

/// `NEVER`, or a comma list of `SUCCESS`, `FAILURE`, `DELAY` (RFC 3461
/// §4.1), any case, each once.
fn notify(value: &[u8]) -> Option<Notify> {
    let mut notify = Notify::default();
    for word in value.split(|&b| b == b',') {
        let flag = match word.to_ascii_uppercase().as_slice() {
            b"NEVER" => &mut notify.never,
            b"SUCCESS" => &mut notify.success,
            b"FAILURE" => &mut notify.failure,
            b"DELAY" => &mut notify.delay,
            _ => return None,
        };
        if std::mem::replace(flag, true) {
            return None;
        }
    }
    let others = notify.success || notify.failure || notify.delay;
    (!(notify.never && others)).then_some(notify)
}

/// `addr-type ";" xtext` (RFC 3461 §4.2), decoded, the type lowercased:
/// `rfc822;bob@example.test`.
fn orcpt(value: &[u8]) -> Option<String> {
    let semi = value.iter().position(|&b| b == b';')?;
    let (kind, address) = (&value[..semi], &value[semi + 1..]);
    let atom = !kind.is_empty() && kind.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-');
    let kind = String::from_utf8_lossy(kind).to_ascii_lowercase();
    // `utf-8` addresses (RFC 6533), and raw UTF-8 whatever the type said.
    let address = match kind == "utf-8" || !address.is_ascii() {
        true => xtext::decode_utf8(address),
        false => xtext::decode(address),
    };
    let address = address.filter(|a| !a.is_empty())?;
    atom.then(|| format!("{kind};{address}"))
}

fn unsupported(verb: Verb, keyword: &[u8]) -> CommandError {
    CommandError::UnsupportedParameter { verb, keyword: String::from_utf8_lossy(keyword).to_ascii_uppercase() }
}

/// One `esmtp-param`: `keyword[=value]`.
struct Param<'a> {
    keyword: &'a [u8],
    value: Option<&'a [u8]>,
}

/// Splits `esmtp-param *(SP esmtp-param)` (RFC 5321 §4.1.2), checking the
/// syntax of each.
fn params(rest: &[u8], verb: Verb) -> Result<Vec<Param<'_>>, CommandError> {
    let mut out = Vec::new();
    for param in rest.split(|&b| b == b' ').filter(|p| !p.is_empty()) {
        let (keyword, value) = match param.iter().position(|&b| b == b'=') {
            Some(eq) => (&param[..eq], Some(&param[eq + 1..])),
            None => (param, None),
        };
        let keyword_ok = keyword.first().is_some_and(u8::is_ascii_alphanumeric)
            && keyword.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-');
        // Values are printable ASCII, or UTF-8 (RFC 6533: `ORCPT=utf-8;…`
        // from an SMTPUTF8 client such as Postfix); each parameter's own
        // parser decides what it takes.
        let value_ok = value.is_none_or(|v| {
            !v.is_empty()
                && std::str::from_utf8(v).is_ok_and(|t| t.chars().all(|c| !c.is_control() && !c.is_whitespace()))
                && v.iter().all(|&b| b >= 0x80 || ((33..=126).contains(&b) && b != b'='))
        });
        if !keyword_ok || !value_ok {
            return Err(CommandError::BadParameter(verb));
        }
        out.push(Param { keyword, value });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::address::Address;
    use super::*;

    fn parse(line: &str) -> Result<Command, CommandError> {
        parse_command(line.as_bytes())
    }

    fn jane() -> Address {
        Address { local: "jane".into(), domain: "example.test".into() }
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(parse("noop"), Ok(Command::Noop));
        assert_eq!(parse("QuIt"), Ok(Command::Quit));
        assert_eq!(parse("StartTLS"), Ok(Command::StartTls));
        assert_eq!(parse("rset  "), Ok(Command::Rset));
    }

    #[test]
    fn unknown_verb_is_a_value() {
        assert_eq!(parse("FOO bar"), Ok(Command::Unknown("FOO".into())));
        assert_eq!(parse("MAILFROM:<a@b>"), Ok(Command::Unknown("MAILFROM:<a@b>".into())));
    }

    #[test]
    fn nul_and_other_control_characters_are_refused() {
        assert_eq!(parse("NOOP\0"), Err(CommandError::ControlCharacter));
        assert_eq!(parse("MAIL FROM:<a\0@b.test>"), Err(CommandError::ControlCharacter));
        assert_eq!(parse("NO\rOP"), Err(CommandError::ControlCharacter));
        assert_eq!(parse("MAIL\tFROM:<a@b.test>"), Err(CommandError::ControlCharacter));
    }

    #[test]
    fn empty_line_is_an_error() {
        assert_eq!(parse(""), Err(CommandError::Empty));
        assert_eq!(parse("   "), Err(CommandError::Empty));
    }

    #[test]
    fn ehlo_and_helo_need_an_ascii_name() {
        assert_eq!(parse("EHLO client.test"), Ok(Command::Ehlo { domain: "client.test".into() }));
        assert_eq!(parse("helo  [192.0.2.1] "), Ok(Command::Helo { domain: "[192.0.2.1]".into() }));
        assert_eq!(parse("EHLO"), Err(CommandError::Syntax(Verb::Ehlo)));
        assert_eq!(parse("HELO clïent"), Err(CommandError::Syntax(Verb::Helo)));
    }

    #[test]
    fn mail_from_parses_path_and_parameters() {
        assert_eq!(
            parse("MAIL FROM:<jane@example.test> size=100 BODY=8bitmime"),
            Ok(Command::Mail(MailFrom {
                sender: ReversePath::Mailbox(jane()),
                size: Some(100),
                body: Some(BodyType::EightBitMime),
                ret: None,
                envid: None,
                smtputf8: false,
                requiretls: false,
            }))
        );
        assert_eq!(
            parse("mail from:<>"),
            Ok(Command::Mail(MailFrom {
                sender: ReversePath::Null,
                size: None,
                body: None,
                smtputf8: false,
                requiretls: false,
                ret: None,
                envid: None
            }))
        );
    }

    #[test]
    fn space_after_from_colon_is_tolerated() {
        assert!(matches!(parse("MAIL FROM: <jane@example.test>"), Ok(Command::Mail(_))));
        assert!(matches!(parse("RCPT TO:  <jane@example.test>"), Ok(Command::Rcpt(_))));
    }

    #[test]
    fn mail_without_from_is_a_syntax_error() {
        assert_eq!(parse("MAIL"), Err(CommandError::Syntax(Verb::Mail)));
        assert_eq!(parse("MAIL TO:<a@b.test>"), Err(CommandError::Syntax(Verb::Mail)));
        assert_eq!(parse("MAIL FROM :<a@b.test>"), Err(CommandError::Syntax(Verb::Mail)));
    }

    #[test]
    fn bad_addresses_are_reported_per_verb() {
        assert_eq!(parse("MAIL FROM:jane@example.test"), Err(CommandError::BadSender(AddressError::MissingBrackets)));
        assert_eq!(parse("RCPT TO:<>"), Err(CommandError::BadRecipient(AddressError::NullNotAllowed)));
        assert_eq!(parse("MAIL FROM:<jäne@example.test>"), Err(CommandError::BadSender(AddressError::NonAscii)));
        assert_eq!(parse("MAIL FROM:<jane@exämple.test>"), Err(CommandError::BadSender(AddressError::NonAscii)));
    }

    #[test]
    fn bad_mail_parameters_are_syntax_errors() {
        for line in [
            "MAIL FROM:<> SIZE=abc",
            "MAIL FROM:<> SIZE",
            "MAIL FROM:<> SIZE=",
            "MAIL FROM:<> SIZE=1 SIZE=2",
            "MAIL FROM:<> BODY=QUANTUM",
            "MAIL FROM:<> SMTPUTF8=yes",
            "MAIL FROM:<> SMTPUTF8 SMTPUTF8",
            "MAIL FROM:<> BODY=7BIT BODY=7BIT",
            "MAIL FROM:<> =x",
            "MAIL FROM:<> SIZE=1=2",
            "MAIL FROM:<> SIZE=1ü",
        ] {
            assert_eq!(parse(line), Err(CommandError::BadParameter(Verb::Mail)), "{line}");
        }
    }

    #[test]
    fn unknown_parameters_are_unsupported() {
        assert_eq!(
            parse("MAIL FROM:<> MT-PRIORITY=3"),
            Err(CommandError::UnsupportedParameter { verb: Verb::Mail, keyword: "MT-PRIORITY".into() })
        );
        assert_eq!(
            parse("RCPT TO:<jane@example.test> conperm=x"),
            Err(CommandError::UnsupportedParameter { verb: Verb::Rcpt, keyword: "CONPERM".into() })
        );
    }

    #[test]
    fn dsn_mail_parameters_are_kept_decoded() {
        let Ok(Command::Mail(from)) = parse("MAIL FROM:<jane@example.test> ret=hdrs ENVID=QQ+2B1+3D2") else {
            panic!("MAIL did not parse")
        };
        assert_eq!((from.ret, from.envid.as_deref()), (Some(DsnRet::Headers), Some("QQ+1=2")));
        let Ok(Command::Mail(from)) = parse("MAIL FROM:<> RET=FULL") else { panic!("MAIL did not parse") };
        assert_eq!(from.ret, Some(DsnRet::Full));
        for line in [
            "MAIL FROM:<> RET=ALL",
            "MAIL FROM:<> RET",
            "MAIL FROM:<> RET=FULL RET=HDRS",
            "MAIL FROM:<> ENVID=a+2",
            "MAIL FROM:<> ENVID=x ENVID=y",
        ] {
            assert_eq!(parse(line), Err(CommandError::BadParameter(Verb::Mail)), "{line}");
        }
        let long = format!("MAIL FROM:<> ENVID={}", "e".repeat(MAX_ENVID + 1));
        assert_eq!(parse(&long), Err(CommandError::BadParameter(Verb::Mail)));
    }

    #[test]
    fn dsn_rcpt_parameters_are_kept_decoded() {
        let Ok(Command::Rcpt(to)) =
            parse("RCPT TO:<jane@example.test> NOTIFY=success,Delay ORCPT=RFC822;jane+2Bx@example.test")
        else {
            panic!("RCPT did not parse")
        };
        assert_eq!(to.dsn.notify, Notify { success: true, delay: true, ..Notify::default() });
        assert_eq!(to.dsn.orcpt.as_deref(), Some("rfc822;jane+x@example.test"));
        // Postfix's ORCPT for an SMTPUTF8 recipient (found relaying through
        // it): the UTF-8 bytes xtext-encoded under rfc822.
        let Ok(Command::Rcpt(to)) = parse("RCPT TO:<用户@example.test> ORCPT=rfc822;+E7+94+A8+E6+88+B7@example.test")
        else {
            panic!("Postfix's ORCPT did not parse")
        };
        assert_eq!(to.dsn.orcpt.as_deref(), Some("rfc822;用户@example.test"));
        assert!(to.utf8);
        // RFC 6533's utf-8 type, raw or escaped; an ASCII path stays ASCII.
        let Ok(Command::Rcpt(to)) = parse("RCPT TO:<a@b.test> ORCPT=utf-8;用户@b.test") else { panic!() };
        assert_eq!((to.dsn.orcpt.as_deref(), to.utf8), (Some("utf-8;用户@b.test"), false));
        let Ok(Command::Rcpt(to)) = parse(r"RCPT TO:<a@b.test> ORCPT=utf-8;\x{7528}@b.test") else { panic!() };
        assert_eq!(to.dsn.orcpt.as_deref(), Some("utf-8;用@b.test"));
        let Ok(Command::Rcpt(to)) = parse("RCPT TO:<jane@example.test> NOTIFY=NEVER") else { panic!() };
        assert!(to.dsn.notify.never && !to.dsn.notify.wants_failure() && !to.dsn.notify.wants_delay());
        let Ok(Command::Rcpt(plain)) = parse("RCPT TO:<jane@example.test>") else { panic!() };
        assert!(plain.dsn.notify.wants_failure() && plain.dsn.notify.wants_delay() && !plain.dsn.notify.success);
        for line in [
            "RCPT TO:<jane@example.test> NOTIFY=NEVER,SUCCESS",
            "RCPT TO:<jane@example.test> NOTIFY=FAILURE,FAILURE",
            "RCPT TO:<jane@example.test> NOTIFY=SOMETIMES",
            "RCPT TO:<jane@example.test> NOTIFY=",
            "RCPT TO:<jane@example.test> NOTIFY=DELAY NOTIFY=FAILURE",
            "RCPT TO:<jane@example.test> ORCPT=jane@example.test",
            "RCPT TO:<jane@example.test> ORCPT=rfc822;",
            "RCPT TO:<jane@example.test> ORCPT=rfc822;a+0Ab",
            "RCPT TO:<jane@example.test> ORCPT=rfc822;a ORCPT=rfc822;b",
        ] {
            assert_eq!(parse(line), Err(CommandError::BadParameter(Verb::Rcpt)), "{line}");
        }
    }

    #[test]
    fn mail_auth_parameter_is_accepted_and_ignored() {
        let plain = parse("MAIL FROM:<jane@example.test>");
        assert_eq!(parse("MAIL FROM:<jane@example.test> AUTH=<>"), plain);
        assert_eq!(parse("MAIL FROM:<jane@example.test> auth=jane+40example.test SIZE=5").map(|_| ()), Ok(()));
        assert_eq!(parse("MAIL FROM:<> AUTH"), Err(CommandError::BadParameter(Verb::Mail)));
        assert_eq!(parse("MAIL FROM:<> AUTH=<> AUTH=<>"), Err(CommandError::BadParameter(Verb::Mail)));
    }

    #[test]
    fn auth_takes_a_mechanism_and_an_optional_initial_response() {
        assert_eq!(parse("auth plain"), Ok(Command::Auth { mechanism: "plain".into(), initial_response: None }));
        assert_eq!(
            parse("AUTH PLAIN AGphbmUAc2VjcmV0"),
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial_response: Some(InitialResponse(b"AGphbmUAc2VjcmV0".to_vec())),
            })
        );
        assert_eq!(parse("AUTH"), Err(CommandError::Syntax(Verb::Auth)));
        assert_eq!(parse("AUTH PLAIN a b"), Err(CommandError::Syntax(Verb::Auth)));
        let shown = format!("{:?}", parse("AUTH PLAIN AGphbmUAc2VjcmV0"));
        assert!(!shown.contains("AGphbmUAc2VjcmV0"), "{shown}");
    }

    #[test]
    fn smtputf8_allows_a_utf8_sender_and_idna_domain() {
        let Ok(Command::Mail(m)) = parse("MAIL FROM:<用户@例子.test> SMTPUTF8 BODY=8BITMIME") else {
            panic!("should parse");
        };
        assert!(m.smtputf8);
        assert_eq!(m.sender.to_string(), "<用户@xn--fsqu00a.test>");
        assert_eq!(
            parse("MAIL FROM:<ja\u{85}ne@example.test> SMTPUTF8").map(|_| ()),
            Err(CommandError::BadSender(AddressError::BadUtf8))
        );
        assert_eq!(
            parse_command(b"MAIL FROM:<ja\xffne@example.test> SMTPUTF8"),
            Err(CommandError::BadSender(AddressError::BadUtf8))
        );
    }

    #[test]
    fn rcpt_parses_utf8_for_the_session_to_judge() {
        let Ok(Command::Rcpt(r)) = parse("RCPT TO:<jäne@Exämple.test>") else {
            panic!("should parse");
        };
        assert_eq!(
            r.recipient,
            ForwardPath::Mailbox(Address { local: "jäne".into(), domain: "xn--exmple-cua.test".into() })
        );
        assert!(r.utf8);
        let Ok(Command::Rcpt(r)) = parse("RCPT TO:<jane@xn--exmple-cua.test>") else {
            panic!("should parse");
        };
        assert!(!r.utf8, "an A-label is ASCII");
    }

    #[test]
    fn bdat_takes_a_size_and_an_optional_last() {
        assert_eq!(parse("BDAT 0 LAST"), Ok(Command::Bdat { size: 0, last: true }));
        assert_eq!(parse("bdat 4096"), Ok(Command::Bdat { size: 4096, last: false }));
        assert_eq!(parse("BDAT 18446744073709551615 last"), Ok(Command::Bdat { size: u64::MAX, last: true }));
        for bad in ["BDAT", "BDAT x", "BDAT -1", "BDAT 1 FIRST", "BDAT 1 LAST x", "BDAT 18446744073709551616"] {
            assert_eq!(parse(bad), Err(CommandError::Syntax(Verb::Bdat)), "{bad}");
        }
    }

    #[test]
    fn huge_size_saturates() {
        let Ok(Command::Mail(m)) = parse("MAIL FROM:<> SIZE=99999999999999999999") else {
            panic!("should parse");
        };
        assert_eq!(m.size, Some(u64::MAX));
    }

    #[test]
    fn commands_without_arguments_refuse_them() {
        for (line, verb) in [
            ("DATA x", Verb::Data),
            ("RSET x", Verb::Rset),
            ("QUIT now", Verb::Quit),
            ("STARTTLS x", Verb::StartTls),
            ("VRFY", Verb::Vrfy),
        ] {
            assert_eq!(parse(line), Err(CommandError::Syntax(verb)), "{line}");
        }
        assert_eq!(parse("NOOP anything"), Ok(Command::Noop));
        assert_eq!(parse("HELP me"), Ok(Command::Help));
        assert_eq!(parse("VRFY jane"), Ok(Command::Vrfy));
    }

    #[test]
    fn error_names_its_verb() {
        assert_eq!(parse("RCPT").unwrap_err().verb(), Some(Verb::Rcpt));
        assert_eq!(parse("MAIL FROM:<").unwrap_err().verb(), Some(Verb::Mail));
        assert_eq!(parse("\0").unwrap_err().verb(), None);
    }
}
