//! Parsing one POP3 command line into a [`Command`].
//!
//! Owns: the syntax of RFC 1939 §3 and the commands of RFC 2449 (CAPA),
//! RFC 2595 (STLS) and RFC 5034 (AUTH): a case-insensitive keyword, then arguments separated by
//! spaces. Must not: know which state the session is in, or write replies
//! (a [`ParseError`] is turned into a reply by [`super::reply`]).
//!
//! Leniency, on purpose: runs of spaces between arguments and trailing
//! spaces are tolerated (RFC 1939 asks for single spaces; clients differ).
//! Not tolerated: NUL bytes, CRs inside the line, and bytes that are not
//! UTF-8, since user names and passwords are handed on as `String`s.

use std::fmt;

use crate::proto::smtp::sasl::InitialResponse;

/// A message number as the client wrote it: decimal, 1-based.
///
/// Numbers too large for a `u64` saturate to `u64::MAX`; like `0`, such a
/// number names no message, so the client gets "no such message" rather
/// than a syntax error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageNumber(u64);

impl MessageNumber {
    /// The 0-based index into a maildrop listing; `None` for `0` or a
    /// number that cannot be an index on this platform.
    pub fn index(self) -> Option<usize> {
        self.0.checked_sub(1).and_then(|index| usize::try_from(index).ok())
    }
}

impl fmt::Display for MessageNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One parsed command line. Which commands are allowed depends on the
/// session state; that is the server's business, not the parser's.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    /// `USER name`.
    User(String),
    /// `PASS secret`: everything after `PASS `, spaces included.
    Pass(String),
    /// `QUIT`.
    Quit,
    /// `CAPA` (RFC 2449).
    Capa,
    /// `STLS` (RFC 2595).
    Stls,
    /// `UTF8` (RFC 6856 §2): the client takes UTF-8 messages and may send
    /// UTF-8 user names and passwords.
    Utf8,
    /// `STAT`.
    Stat,
    /// `LIST` or `LIST n`.
    List(Option<MessageNumber>),
    /// `RETR n`.
    Retr(MessageNumber),
    /// `DELE n`.
    Dele(MessageNumber),
    /// `NOOP`.
    Noop,
    /// `RSET`.
    Rset,
    /// `TOP n lines`; a line count past `u32::MAX` saturates (it means
    /// "the whole body" either way).
    Top { message: MessageNumber, lines: u32 },
    /// `UIDL` or `UIDL n`.
    Uidl(Option<MessageNumber>),
    /// `AUTH [mechanism [initial-response]]` (RFC 5034); the mechanism as
    /// written. The initial response's `{:?}` is redacted.
    Auth { mechanism: Option<String>, initial_response: Option<InitialResponse> },
    /// Any other keyword (APOP, an empty line ...), as written. Not an
    /// error: the server answers it like any other command.
    Unknown(String),
}

// Hand-written so that a password never reaches a log through `{:?}`.
impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::User(name) => f.debug_tuple("User").field(name).finish(),
            Command::Pass(_) => f.write_str("Pass(<redacted>)"),
            Command::Quit => f.write_str("Quit"),
            Command::Capa => f.write_str("Capa"),
            Command::Stls => f.write_str("Stls"),
            Command::Utf8 => f.write_str("Utf8"),
            Command::Stat => f.write_str("Stat"),
            Command::List(n) => f.debug_tuple("List").field(n).finish(),
            Command::Retr(n) => f.debug_tuple("Retr").field(n).finish(),
            Command::Dele(n) => f.debug_tuple("Dele").field(n).finish(),
            Command::Noop => f.write_str("Noop"),
            Command::Rset => f.write_str("Rset"),
            Command::Top { message, lines } => {
                f.debug_struct("Top").field("message", message).field("lines", lines).finish()
            }
            Command::Uidl(n) => f.debug_tuple("Uidl").field(n).finish(),
            Command::Auth { mechanism, initial_response } => f
                .debug_struct("Auth")
                .field("mechanism", mechanism)
                .field("initial_response", initial_response)
                .finish(),
            Command::Unknown(verb) => f.debug_tuple("Unknown").field(verb).finish(),
        }
    }
}

/// Why a line is not a well-formed command. Each has its own reply in
/// [`super::reply::for_parse_error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("command line contains a NUL byte")]
    NulByte,
    #[error("command line contains a CR that does not end it")]
    BareCr,
    #[error("command line is not valid UTF-8")]
    NotUtf8,
    #[error("{verb} needs an argument")]
    MissingArgument { verb: &'static str },
    #[error("{verb} was given too many arguments")]
    TooManyArguments { verb: &'static str },
    #[error("message number {text:?} is not a decimal number")]
    InvalidMessageNumber { text: String },
    #[error("line count {text:?} is not a decimal number")]
    InvalidLineCount { text: String },
}

/// Parses one command line, given without its line terminator.
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    if line.contains(&0) {
        return Err(ParseError::NulByte);
    }
    if line.contains(&b'\r') {
        return Err(ParseError::BareCr);
    }
    let line = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    let mut args = rest.split(' ').filter(|arg| !arg.is_empty());

    // Keywords are 3 or 4 characters (RFC 1939 §3); anything longer is
    // unknown, and is not upper-cased for nothing.
    if verb.len() > 4 {
        return Ok(Command::Unknown(verb.to_owned()));
    }
    let command = match verb.to_ascii_uppercase().as_str() {
        "USER" => {
            let [name] = exactly::<1>("USER", &mut args)?;
            Command::User(name.to_owned())
        }
        // The password is the rest of the line, verbatim: it may contain
        // (and begin or end with) spaces.
        "PASS" if rest.is_empty() => {
            return Err(ParseError::MissingArgument { verb: "PASS" });
        }
        "PASS" => Command::Pass(rest.to_owned()),
        "QUIT" => no_args("QUIT", &mut args, Command::Quit)?,
        "CAPA" => no_args("CAPA", &mut args, Command::Capa)?,
        "STLS" => no_args("STLS", &mut args, Command::Stls)?,
        "UTF8" => no_args("UTF8", &mut args, Command::Utf8)?,
        "STAT" => no_args("STAT", &mut args, Command::Stat)?,
        "NOOP" => no_args("NOOP", &mut args, Command::Noop)?,
        "RSET" => no_args("RSET", &mut args, Command::Rset)?,
        "LIST" => Command::List(optional_number("LIST", &mut args)?),
        "AUTH" => {
            let (mechanism, initial) = (args.next(), args.next());
            if args.next().is_some() {
                return Err(ParseError::TooManyArguments { verb: "AUTH" });
            }
            Command::Auth {
                mechanism: mechanism.map(str::to_owned),
                initial_response: initial.map(|r| InitialResponse(r.as_bytes().to_vec())),
            }
        }
        "UIDL" => Command::Uidl(optional_number("UIDL", &mut args)?),
        "RETR" => {
            let [n] = exactly::<1>("RETR", &mut args)?;
            Command::Retr(message_number(n)?)
        }
        "DELE" => {
            let [n] = exactly::<1>("DELE", &mut args)?;
            Command::Dele(message_number(n)?)
        }
        "TOP" => {
            let [n, lines] = exactly::<2>("TOP", &mut args)?;
            let message = message_number(n)?;
            let lines = decimal(lines).ok_or_else(|| ParseError::InvalidLineCount { text: lines.to_owned() })?;
            Command::Top { message, lines: u32::try_from(lines).unwrap_or(u32::MAX) }
        }
        _ => Command::Unknown(verb.to_owned()),
    };
    Ok(command)
}

/// Takes exactly `N` arguments.
fn exactly<'a, const N: usize>(
    verb: &'static str,
    args: &mut impl Iterator<Item = &'a str>,
) -> Result<[&'a str; N], ParseError> {
    let mut taken = [""; N];
    for slot in &mut taken {
        *slot = args.next().ok_or(ParseError::MissingArgument { verb })?;
    }
    match args.next() {
        Some(_) => Err(ParseError::TooManyArguments { verb }),
        None => Ok(taken),
    }
}

fn no_args<'a>(
    verb: &'static str,
    args: &mut impl Iterator<Item = &'a str>,
    command: Command,
) -> Result<Command, ParseError> {
    exactly::<0>(verb, args).map(|[]| command)
}

fn optional_number<'a>(
    verb: &'static str,
    args: &mut impl Iterator<Item = &'a str>,
) -> Result<Option<MessageNumber>, ParseError> {
    let first = args.next();
    if args.next().is_some() {
        return Err(ParseError::TooManyArguments { verb });
    }
    first.map(message_number).transpose()
}

fn message_number(text: &str) -> Result<MessageNumber, ParseError> {
    decimal(text).map(MessageNumber).ok_or_else(|| ParseError::InvalidMessageNumber { text: text.to_owned() })
}

/// Digits only: no sign, no spaces, at least one digit. Saturates instead
/// of overflowing. (`str::parse` would accept a leading `+`.)
fn decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.bytes().fold(0u64, |acc, digit| acc.saturating_mul(10).saturating_add(u64::from(digit - b'0'))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(value: u64) -> MessageNumber {
        MessageNumber(value)
    }

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(parse(b"stat"), Ok(Command::Stat));
        assert_eq!(parse(b"StAt"), Ok(Command::Stat));
        assert_eq!(parse(b"top 1 2"), Ok(Command::Top { message: n(1), lines: 2 }));
        assert_eq!(parse(b"uidl"), Ok(Command::Uidl(None)));
    }

    #[test]
    fn every_command_parses() {
        assert_eq!(parse(b"USER alice"), Ok(Command::User("alice".into())));
        assert_eq!(parse(b"PASS secret"), Ok(Command::Pass("secret".into())));
        assert_eq!(parse(b"QUIT"), Ok(Command::Quit));
        assert_eq!(parse(b"CAPA"), Ok(Command::Capa));
        assert_eq!(parse(b"STLS"), Ok(Command::Stls));
        assert_eq!(parse(b"utf8"), Ok(Command::Utf8));
        assert_eq!(parse(b"STAT"), Ok(Command::Stat));
        assert_eq!(parse(b"LIST"), Ok(Command::List(None)));
        assert_eq!(parse(b"LIST 3"), Ok(Command::List(Some(n(3)))));
        assert_eq!(parse(b"RETR 1"), Ok(Command::Retr(n(1))));
        assert_eq!(parse(b"DELE 2"), Ok(Command::Dele(n(2))));
        assert_eq!(parse(b"NOOP"), Ok(Command::Noop));
        assert_eq!(parse(b"RSET"), Ok(Command::Rset));
        assert_eq!(parse(b"TOP 1 0"), Ok(Command::Top { message: n(1), lines: 0 }));
        assert_eq!(parse(b"UIDL 7"), Ok(Command::Uidl(Some(n(7)))));
    }

    #[test]
    fn auth_takes_an_optional_mechanism_and_initial_response() {
        assert_eq!(parse(b"AUTH"), Ok(Command::Auth { mechanism: None, initial_response: None }));
        assert_eq!(parse(b"auth plain"), Ok(Command::Auth { mechanism: Some("plain".into()), initial_response: None }));
        assert_eq!(
            parse(b"AUTH PLAIN AGFsaWNlAHB3"),
            Ok(Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial_response: Some(InitialResponse(b"AGFsaWNlAHB3".to_vec())),
            })
        );
        assert_eq!(parse(b"AUTH PLAIN a b"), Err(ParseError::TooManyArguments { verb: "AUTH" }));
        let shown = format!("{:?}", parse(b"AUTH PLAIN AGFsaWNlAHB3"));
        assert!(!shown.contains("AGFsaWNlAHB3"), "{shown}");
    }

    #[test]
    fn pass_takes_the_rest_of_the_line_spaces_included() {
        assert_eq!(parse(b"PASS  correct horse battery "), Ok(Command::Pass(" correct horse battery ".into())));
    }

    #[test]
    fn pass_without_password_is_missing_argument() {
        let missing = Err(ParseError::MissingArgument { verb: "PASS" });
        assert_eq!(parse(b"PASS"), missing);
        assert_eq!(parse(b"PASS "), missing);
    }

    #[test]
    fn user_takes_exactly_one_argument() {
        assert_eq!(parse(b"USER"), Err(ParseError::MissingArgument { verb: "USER" }));
        assert_eq!(parse(b"USER alice bob"), Err(ParseError::TooManyArguments { verb: "USER" }));
    }

    #[test]
    fn extra_spaces_between_arguments_are_tolerated() {
        assert_eq!(parse(b"TOP  1   5 "), Ok(Command::Top { message: n(1), lines: 5 }));
        assert_eq!(parse(b"STAT "), Ok(Command::Stat));
    }

    #[test]
    fn argument_counts_are_checked() {
        assert_eq!(parse(b"STAT 1"), Err(ParseError::TooManyArguments { verb: "STAT" }));
        assert_eq!(parse(b"LIST 1 2"), Err(ParseError::TooManyArguments { verb: "LIST" }));
        assert_eq!(parse(b"RETR"), Err(ParseError::MissingArgument { verb: "RETR" }));
        assert_eq!(parse(b"TOP 1"), Err(ParseError::MissingArgument { verb: "TOP" }));
        assert_eq!(parse(b"TOP 1 2 3"), Err(ParseError::TooManyArguments { verb: "TOP" }));
    }

    #[test]
    fn message_numbers_are_unsigned_decimal() {
        for bad in ["-1", "+1", "0x1", "1.0", "one", "1a"] {
            let line = format!("RETR {bad}");
            assert_eq!(parse(line.as_bytes()), Err(ParseError::InvalidMessageNumber { text: bad.into() }), "{line}");
        }
        assert_eq!(parse(b"RETR 007"), Ok(Command::Retr(n(7))));
    }

    #[test]
    fn message_number_zero_parses_but_names_no_index() {
        assert_eq!(parse(b"DELE 0"), Ok(Command::Dele(n(0))));
        assert_eq!(n(0).index(), None);
        assert_eq!(n(1).index(), Some(0));
    }

    #[test]
    fn huge_numbers_saturate_instead_of_failing() {
        assert_eq!(parse(b"RETR 99999999999999999999999999"), Ok(Command::Retr(n(u64::MAX))));
        assert_eq!(parse(b"TOP 1 99999999999"), Ok(Command::Top { message: n(1), lines: u32::MAX }));
    }

    #[test]
    fn top_line_count_must_be_decimal() {
        assert_eq!(parse(b"TOP 1 -1"), Err(ParseError::InvalidLineCount { text: "-1".into() }));
    }

    #[test]
    fn nul_cr_and_invalid_utf8_are_rejected() {
        assert_eq!(parse(b"US\0ER a"), Err(ParseError::NulByte));
        assert_eq!(parse(b"USER a\rb"), Err(ParseError::BareCr));
        assert_eq!(parse(b"PASS \xff\xfe"), Err(ParseError::NotUtf8));
    }

    #[test]
    fn unknown_keywords_and_empty_lines_are_values_not_errors() {
        assert_eq!(parse(b"APOP a b"), Ok(Command::Unknown("APOP".into())));
        assert_eq!(parse(b"AUTHX"), Ok(Command::Unknown("AUTHX".into())));
        assert_eq!(parse(b"XYZZY"), Ok(Command::Unknown("XYZZY".into())));
        assert_eq!(parse(b""), Ok(Command::Unknown(String::new())));
        assert_eq!(parse(b" STAT"), Ok(Command::Unknown(String::new())));
    }

    #[test]
    fn debug_output_redacts_the_password() {
        let shown = format!("{:?}", parse(b"PASS hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
