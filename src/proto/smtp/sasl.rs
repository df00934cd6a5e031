//! The SASL mechanisms ringmail offers, PLAIN (RFC 4616) and LOGIN
//! (draft-murchison-sasl-login), as a pure exchange: the server-side steps
//! from the AUTH command to a user name and password, for any protocol.
//!
//! Owns: base64 decoding of client responses, the `*` cancel, the PLAIN
//! message format, the LOGIN two-step, and what counts as a usable
//! credential. Must not: write replies (SMTP says 334/535, POP3 says
//! `+ `/`-ERR`; each maps [`SaslError`] and [`Challenge`] itself) or check
//! a password (that is the driver's, through the protocol's action).
//!
//! Bounds: a response line is at most [`MAX_RESPONSE_LINE`] octets, checked
//! by the caller's line framing; decoding allocates at most 3/4 of that.
//! Credentials never reach `{:?}`: [`Credentials`], [`InitialResponse`] and
//! [`Exchange`] print `<redacted>` instead.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Longest line of an authentication exchange, terminator included
/// (RFC 4954 §4: servers must accept at least 12288 octets). Applies to
/// response lines after a challenge, not to the AUTH command line itself,
/// which stays within the protocol's command-line limit (RFC 4954 §4,
/// RFC 5034 §4: a client must not send an initial response that would
/// exceed it).
pub const MAX_RESPONSE_LINE: usize = 12288;

/// A mechanism this server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// RFC 4616: one message, `authzid NUL authcid NUL password`.
    Plain,
    /// The de-facto LOGIN: user name, then password, each prompted.
    Login,
}

impl Mechanism {
    /// The mechanism named `name` (SASL names are case-insensitive in
    /// practice; clients send both cases), `None` if not implemented.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        if name.eq_ignore_ascii_case("PLAIN") {
            Some(Mechanism::Plain)
        } else if name.eq_ignore_ascii_case("LOGIN") {
            Some(Mechanism::Login)
        } else {
            None
        }
    }

    /// The registered name, upper case.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user name and password a client sent, not yet checked.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Never empty; UTF-8 without NUL.
    pub user: String,
    /// Never empty; UTF-8 without NUL.
    pub password: String,
}

// Hand-written so that a password never reaches a log through `{:?}`.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).field("password", &"<redacted>").finish()
    }
}

/// The initial response given on the AUTH command line, as sent (base64,
/// or `=` for an empty one). It usually holds a password.
#[derive(Clone, PartialEq, Eq)]
pub struct InitialResponse(pub Vec<u8>);

impl fmt::Debug for InitialResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InitialResponse(<redacted>)")
    }
}

/// Why an exchange ended without credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The client answered a challenge with `*` (RFC 4954 §4, RFC 5034 §4).
    #[error("client cancelled the exchange")]
    Aborted,
    /// A response that is not base64.
    #[error("response is not valid base64")]
    BadBase64,
    /// A PLAIN message without exactly two NUL separators.
    #[error("PLAIN message is not authzid NUL authcid NUL password")]
    MalformedPlain,
    /// PLAIN's authorization identity names someone other than the user:
    /// acting as another user is not supported.
    #[error("authorization identity differs from the authentication identity")]
    AuthzidMismatch,
    /// An empty user name or password.
    #[error("empty user name or password")]
    Empty,
    /// A user name or password that is not UTF-8 or holds a NUL.
    #[error("user name or password is not UTF-8 text")]
    NotText,
}

/// What the server is waiting for in an exchange that needs another line.
#[derive(Clone, PartialEq, Eq)]
pub enum Exchange {
    /// PLAIN without an initial response: the empty challenge was sent.
    Plain,
    /// LOGIN: the "Username:" challenge was sent.
    LoginUser,
    /// LOGIN: the "Password:" challenge was sent for `user`.
    LoginPassword { user: String },
}

impl fmt::Debug for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exchange::Plain => f.write_str("Plain"),
            Exchange::LoginUser => f.write_str("LoginUser"),
            Exchange::LoginPassword { user } => f.debug_struct("LoginPassword").field("user", user).finish(),
        }
    }
}

/// The challenge a protocol must send for an [`Exchange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// Empty (PLAIN).
    Empty,
    /// base64 "Username:" (LOGIN).
    Username,
    /// base64 "Password:" (LOGIN).
    Password,
}

/// Where an exchange is after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send [`Exchange::challenge`] and feed the client's next line to
    /// [`Exchange::respond`].
    Continue(Exchange),
    /// Done: check these credentials.
    Done(Credentials),
    /// Over, without credentials.
    Failed(SaslError),
}

impl Exchange {
    /// Starts `mechanism`, with the initial response if the AUTH command
    /// carried one (RFC 4954 §4: `=` is an empty response; `*` is no
    /// cancel there, just bad base64).
    pub fn start(mechanism: Mechanism, initial: Option<&InitialResponse>) -> Step {
        let first = match initial {
            None => {
                return Step::Continue(match mechanism {
                    Mechanism::Plain => Exchange::Plain,
                    Mechanism::Login => Exchange::LoginUser,
                })
            }
            Some(InitialResponse(text)) if text == b"=" => Vec::new(),
            Some(InitialResponse(text)) => match decode(text) {
                Ok(bytes) => bytes,
                Err(error) => return Step::Failed(error),
            },
        };
        match mechanism {
            Mechanism::Plain => Exchange::Plain.advance(first),
            Mechanism::Login => Exchange::LoginUser.advance(first),
        }
    }

    /// The mechanism this exchange belongs to.
    pub fn mechanism(&self) -> Mechanism {
        match self {
            Exchange::Plain => Mechanism::Plain,
            Exchange::LoginUser | Exchange::LoginPassword { .. } => Mechanism::Login,
        }
    }

    /// The challenge to send while waiting in this exchange.
    pub fn challenge(&self) -> Challenge {
        match self {
            Exchange::Plain => Challenge::Empty,
            Exchange::LoginUser => Challenge::Username,
            Exchange::LoginPassword { .. } => Challenge::Password,
        }
    }

    /// Feeds the client's response line (without its line end).
    pub fn respond(self, line: &[u8]) -> Step {
        if line == b"*" {
            return Step::Failed(SaslError::Aborted);
        }
        match decode(line) {
            Ok(bytes) => self.advance(bytes),
            Err(error) => Step::Failed(error),
        }
    }

    fn advance(self, response: Vec<u8>) -> Step {
        let result = match self {
            Exchange::Plain => plain(&response).map(Step::Done),
            Exchange::LoginUser => text(response).map(|user| Step::Continue(Exchange::LoginPassword { user })),
            Exchange::LoginPassword { user } => {
                text(response).map(|password| Step::Done(Credentials { user, password }))
            }
        };
        result.unwrap_or_else(Step::Failed)
    }
}

fn decode(text: &[u8]) -> Result<Vec<u8>, SaslError> {
    STANDARD.decode(text).map_err(|_| SaslError::BadBase64)
}

/// A non-empty UTF-8 string without NUL.
fn text(bytes: Vec<u8>) -> Result<String, SaslError> {
    if bytes.is_empty() {
        return Err(SaslError::Empty);
    }
    if bytes.contains(&0) {
        return Err(SaslError::NotText);
    }
    String::from_utf8(bytes).map_err(|_| SaslError::NotText)
}

/// Parses a PLAIN message (RFC 4616 §2). The authorization identity must
/// be empty or name the user itself (ASCII case ignored, as user names
/// are addresses).
pub fn plain(message: &[u8]) -> Result<Credentials, SaslError> {
    let mut parts = message.split(|&b| b == 0);
    let (Some(authzid), Some(user), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::MalformedPlain);
    };
    let user = text(user.to_vec())?;
    let password = text(password.to_vec())?;
    if !authzid.is_empty() && !authzid.eq_ignore_ascii_case(user.as_bytes()) {
        return Err(SaslError::AuthzidMismatch);
    }
    Ok(Credentials { user, password })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> Vec<u8> {
        STANDARD.encode(bytes).into_bytes()
    }

    fn creds(user: &str, password: &str) -> Credentials {
        Credentials { user: user.into(), password: password.into() }
    }

    #[test]
    fn plain_with_initial_response_is_done_at_once() {
        let initial = InitialResponse(b64(b"\0jane\0secret"));
        assert_eq!(Exchange::start(Mechanism::Plain, Some(&initial)), Step::Done(creds("jane", "secret")));
    }

    #[test]
    fn plain_without_initial_response_asks_with_an_empty_challenge() {
        let Step::Continue(exchange) = Exchange::start(Mechanism::Plain, None) else { panic!("should continue") };
        assert_eq!(exchange.challenge(), Challenge::Empty);
        assert_eq!(exchange.respond(&b64(b"jane\0jane\0pw")), Step::Done(creds("jane", "pw")));
    }

    #[test]
    fn login_asks_user_then_password() {
        let Step::Continue(exchange) = Exchange::start(Mechanism::Login, None) else { panic!("should continue") };
        assert_eq!(exchange.challenge(), Challenge::Username);
        let Step::Continue(exchange) = exchange.respond(&b64(b"jane")) else { panic!("should continue") };
        assert_eq!(exchange.challenge(), Challenge::Password);
        assert_eq!(exchange.respond(&b64(b"pass word")), Step::Done(creds("jane", "pass word")));
    }

    #[test]
    fn login_initial_response_is_the_user_name() {
        let initial = InitialResponse(b64(b"jane"));
        let step = Exchange::start(Mechanism::Login, Some(&initial));
        assert_eq!(step, Step::Continue(Exchange::LoginPassword { user: "jane".into() }));
    }

    #[test]
    fn star_cancels_a_response_but_not_an_initial_response() {
        assert_eq!(Exchange::Plain.respond(b"*"), Step::Failed(SaslError::Aborted));
        assert_eq!(Exchange::LoginUser.respond(b"*"), Step::Failed(SaslError::Aborted));
        let star = InitialResponse(b"*".to_vec());
        assert_eq!(Exchange::start(Mechanism::Plain, Some(&star)), Step::Failed(SaslError::BadBase64));
    }

    #[test]
    fn bad_base64_fails() {
        for bad in [&b"not base64!"[..], b"amFuZQ", b"amFuZQ==\0", b" amFuZQ==", b"===="] {
            assert_eq!(Exchange::Plain.respond(bad), Step::Failed(SaslError::BadBase64), "{bad:?}");
        }
    }

    #[test]
    fn empty_credentials_fail() {
        let equals = InitialResponse(b"=".to_vec());
        assert_eq!(Exchange::start(Mechanism::Plain, Some(&equals)), Step::Failed(SaslError::MalformedPlain));
        assert_eq!(Exchange::Plain.respond(b""), Step::Failed(SaslError::MalformedPlain));
        assert_eq!(plain(b"\0\0pw"), Err(SaslError::Empty));
        assert_eq!(plain(b"\0jane\0"), Err(SaslError::Empty));
        assert_eq!(Exchange::LoginUser.respond(b""), Step::Failed(SaslError::Empty));
        assert_eq!(Exchange::start(Mechanism::Login, Some(&equals)), Step::Failed(SaslError::Empty));
        let password = Exchange::LoginPassword { user: "jane".into() };
        assert_eq!(password.respond(b""), Step::Failed(SaslError::Empty));
    }

    #[test]
    fn plain_needs_exactly_two_separators() {
        assert_eq!(plain(b"jane secret"), Err(SaslError::MalformedPlain));
        assert_eq!(plain(b"jane\0secret"), Err(SaslError::MalformedPlain));
        assert_eq!(plain(b"\0jane\0sec\0ret"), Err(SaslError::MalformedPlain));
    }

    #[test]
    fn plain_authzid_must_be_empty_or_the_user() {
        assert_eq!(plain(b"JANE\0jane\0pw"), Ok(creds("jane", "pw")));
        assert_eq!(plain(b"admin\0jane\0pw"), Err(SaslError::AuthzidMismatch));
    }

    #[test]
    fn credentials_must_be_utf8_text() {
        assert_eq!(plain(b"\0j\xffane\0pw"), Err(SaslError::NotText));
        assert_eq!(Exchange::LoginUser.respond(&b64(b"ja\0ne")), Step::Failed(SaslError::NotText));
    }

    #[test]
    fn mechanism_names_are_case_insensitive() {
        assert_eq!(Mechanism::from_name("plain"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::from_name("LoGiN"), Some(Mechanism::Login));
        assert_eq!(Mechanism::from_name("CRAM-MD5"), None);
    }

    #[test]
    fn debug_output_redacts_passwords() {
        let shown = format!(
            "{:?} {:?} {:?}",
            creds("jane", "hunter2"),
            InitialResponse(b64(b"\0jane\0hunter2")),
            Step::Done(creds("jane", "hunter2"))
        );
        assert!(!shown.contains("hunter2") && !shown.contains("aHVudGVyMg"), "{shown}");
        assert!(shown.contains("jane"));
    }
}
