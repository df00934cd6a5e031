//! Every reply the SMTP server can send, each a named constant with its
//! RFC 3463 enhanced status code, in this one place.
//!
//! Texts follow Postfix where Postfix has one, so operators and log parsers
//! meet familiar words. A `{}` in a text is filled by [`Reply::write_with`]
//! (a hostname, an address, a queue id); nothing a peer sent is echoed
//! except addresses that already passed the address parser. The greeting,
//! the EHLO/HELO replies and 354 carry no enhanced code (RFC 2034 §3).
//!
//! This file must not decide *when* a reply is sent; `server` does. It
//! does map a parse or SASL error to its reply (`for_*`), so each reply's
//! cause is written next to it.

use super::address::AddressError;
use super::command::{CommandError, Verb};
use super::sasl::{Challenge, SaslError};

/// One SMTP reply: code, optional enhanced status code, text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit RFC 5321 reply code.
    pub code: u16,
    /// The RFC 3463 enhanced status code, `None` where RFC 2034 has none.
    pub status: Option<&'static str>,
    /// The text; at most one `{}`, filled by [`Reply::write_with`].
    pub text: &'static str,
}

impl Reply {
    const fn new(code: u16, status: &'static str, text: &'static str) -> Reply {
        Reply { code, status: Some(status), text }
    }

    const fn plain(code: u16, text: &'static str) -> Reply {
        Reply { code, status: None, text }
    }

    /// Appends the reply as one CRLF-terminated line. The text is written as
    /// is; use [`Reply::write_with`] for a text with a `{}`.
    pub fn write(&self, out: &mut Vec<u8>) {
        self.write_with(out, "");
    }

    /// Appends the reply with its `{}` replaced by `arg` (a text without
    /// `{}` is written unchanged). `arg` must not contain CR or LF.
    pub fn write_with(&self, out: &mut Vec<u8>, arg: &str) {
        write_code(out, self.code, b' ');
        if let Some(status) = self.status {
            out.extend_from_slice(status.as_bytes());
            out.push(b' ');
        }
        match self.text.split_once("{}") {
            Some((before, after)) => {
                out.extend_from_slice(before.as_bytes());
                out.extend_from_slice(arg.as_bytes());
                out.extend_from_slice(after.as_bytes());
            }
            None => out.extend_from_slice(self.text.as_bytes()),
        }
        out.extend_from_slice(b"\r\n");
    }

    /// True for 4xx and 5xx replies.
    pub fn is_failure(&self) -> bool {
        self.code >= 400
    }
}

fn write_code(out: &mut Vec<u8>, code: u16, separator: u8) {
    // Codes are three digits by construction (the constants below).
    let digit = |n: u16| b'0' + (n % 10) as u8;
    out.extend_from_slice(&[digit(code / 100), digit(code / 10), digit(code), separator]);
}

// --- Connection --------------------------------------------------------------
/// The greeting; `{}` is the hostname.
pub const GREETING: Reply = Reply::plain(220, "{} ESMTP ringmail");
/// QUIT.
pub const BYE: Reply = Reply::new(221, "2.0.0", "Bye");
/// Idle timeout, then close; `{}` is the hostname.
pub const TIMEOUT: Reply = Reply::new(421, "4.4.2", "{} Error: timeout exceeded");
/// The server is stopping (SIGTERM); `{}` is the hostname.
pub const SHUTTING_DOWN: Reply = Reply::new(421, "4.3.2", "{} Service shutting down, try again later");
/// The client reached `max_errors`, then close; `{}` is the hostname.
pub const TOO_MANY_ERRORS: Reply = Reply::new(421, "4.7.0", "{} Error: too many errors");
/// `max_commands` commands in one session: closed (abuse limit).
pub const TOO_MANY_COMMANDS: Reply = Reply::new(421, "4.7.0", "{} Error: too many commands in this session");
/// `max_messages` messages in one session: closed; reconnect to send more.
pub const TOO_MANY_MESSAGES: Reply = Reply::new(421, "4.7.0", "{} Error: too many messages in this session");
/// The client or user sends faster than its message rate allows.
pub const TOO_MUCH_MAIL: Reply = Reply::new(450, "4.7.1", "Error: too much mail, slow down");

// --- HELO / EHLO (EHLO's multi-line reply: see [`write_ehlo`]) ---------------
/// HELO; `{}` is the hostname.
pub const HELO: Reply = Reply::plain(250, "{}");
/// The EHLO keywords after the hostname line, in order, before `SIZE n`.
pub const EHLO_PIPELINING: &str = "PIPELINING";
/// Advertised only while `starttls` is on and TLS is not active yet.
pub const EHLO_STARTTLS: &str = "STARTTLS";
/// Advertised only while AUTH is offered and passwords may be sent on the
/// connection (RFC 4954 §4: not before STARTTLS on an insecure channel).
pub const EHLO_AUTH: &str = "AUTH PLAIN LOGIN";
/// Always advertised.
pub const EHLO_ENHANCEDSTATUSCODES: &str = "ENHANCEDSTATUSCODES";
/// Always advertised.
pub const EHLO_8BITMIME: &str = "8BITMIME";
/// Always advertised: NOTIFY, ORCPT, RET and ENVID (RFC 3461).
pub const EHLO_DSN: &str = "DSN";
/// Always advertised (RFC 3030 §3): `BODY=BINARYMIME`, with BDAT only.
pub const EHLO_BINARYMIME: &str = "BINARYMIME";
/// Always advertised (RFC 3030 §2): BDAT.
pub const EHLO_CHUNKING: &str = "CHUNKING";
/// Always advertised (RFC 6531): the `SMTPUTF8` MAIL parameter.
pub const EHLO_SMTPUTF8: &str = "SMTPUTF8";

/// Advertised only over TLS (RFC 8689 §4.1): the `REQUIRETLS` MAIL
/// parameter.
pub const EHLO_REQUIRETLS: &str = "REQUIRETLS";

/// Which of the optional EHLO keywords to advertise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EhloOffer {
    pub starttls: bool,
    pub auth: bool,
    /// The session is encrypted: REQUIRETLS is offered.
    pub requiretls: bool,
}

/// Appends the multi-line EHLO reply: hostname, PIPELINING, `SIZE n`,
/// STARTTLS and AUTH (as `offer` says), ENHANCEDSTATUSCODES, DSN, 8BITMIME,
/// BINARYMIME, CHUNKING, SMTPUTF8, then REQUIRETLS (as `offer` says).
pub fn write_ehlo(out: &mut Vec<u8>, hostname: &str, max_size: usize, offer: EhloOffer) {
    let size = format!("SIZE {max_size}");
    let mut lines = vec![hostname, EHLO_PIPELINING, size.as_str()];
    if offer.starttls {
        lines.push(EHLO_STARTTLS);
    }
    if offer.auth {
        lines.push(EHLO_AUTH);
    }
    lines.extend([EHLO_ENHANCEDSTATUSCODES, EHLO_DSN, EHLO_8BITMIME, EHLO_BINARYMIME, EHLO_CHUNKING, EHLO_SMTPUTF8]);
    if offer.requiretls {
        lines.push(EHLO_REQUIRETLS);
    }
    let last = lines.len() - 1;
    for (i, line) in lines.iter().enumerate() {
        write_code(out, 250, if i == last { b' ' } else { b'-' });
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

// --- Successes -----------------------------------------------------------------
/// RSET, NOOP.
pub const OK: Reply = Reply::new(250, "2.0.0", "Ok");
/// MAIL accepted.
pub const SENDER_OK: Reply = Reply::new(250, "2.1.0", "Ok");
/// RCPT accepted.
pub const RECIPIENT_OK: Reply = Reply::new(250, "2.1.5", "Ok");
/// A BDAT chunk that is not the last was read (RFC 3030 §2); `{}` is its
/// size.
pub const CHUNK_RECEIVED: Reply = Reply::new(250, "2.0.0", "{} octets received");
/// DATA accepted; send the message.
pub const START_DATA: Reply = Reply::plain(354, "End data with <CR><LF>.<CR><LF>");
/// The message is durable; `{}` is the queue id.
pub const QUEUED: Reply = Reply::new(250, "2.0.0", "Ok: queued as {}");
/// VRFY is answered without looking anything up (no address harvesting).
pub const CANNOT_VRFY: Reply =
    Reply::new(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery");
/// HELP.
pub const HELP: Reply =
    Reply::new(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH");
/// STARTTLS accepted; the TLS handshake follows.
pub const READY_TO_START_TLS: Reply = Reply::new(220, "2.0.0", "Ready to start TLS");

// --- Authentication (RFC 4954) -----------------------------------------------
/// PLAIN without an initial response: the empty challenge ("334 ").
pub const AUTH_PLAIN_CHALLENGE: Reply = Reply::plain(334, "");
/// LOGIN's first challenge, base64 "Username:".
pub const AUTH_LOGIN_USERNAME: Reply = Reply::plain(334, "VXNlcm5hbWU6");
/// LOGIN's second challenge, base64 "Password:".
pub const AUTH_LOGIN_PASSWORD: Reply = Reply::plain(334, "UGFzc3dvcmQ6");
/// The driver confirmed the password.
pub const AUTH_SUCCESSFUL: Reply = Reply::new(235, "2.7.0", "Authentication successful");
/// Wrong or unusable credentials; the client is not told which.
pub const AUTH_FAILED: Reply = Reply::new(535, "5.7.8", "Authentication credentials invalid");
/// The driver could not check the password.
pub const AUTH_TEMP_FAILURE: Reply = Reply::new(454, "4.7.0", "Temporary authentication failure");
/// The driver refused to check: too many recent failures from this client.
pub const AUTH_LOCKED: Reply =
    Reply::new(454, "4.7.0", "Temporary authentication failure: too many failures, try again later");
/// The client answered a challenge with `*`.
pub const AUTH_ABORTED: Reply = Reply::new(501, "5.0.0", "Authentication aborted");
/// A response (or initial response) that is not base64.
pub const AUTH_BAD_BASE64: Reply = Reply::new(501, "5.5.2", "Cannot decode response");
/// A response line over `sasl::MAX_RESPONSE_LINE`, then close.
pub const AUTH_LINE_TOO_LONG: Reply = Reply::new(500, "5.5.6", "Authentication exchange line is too long");
/// A mechanism this server does not implement.
pub const AUTH_UNKNOWN_MECHANISM: Reply = Reply::new(504, "5.5.4", "Unrecognized authentication type");
/// AUTH before passwords may be sent on this connection (before STARTTLS).
pub const AUTH_ENCRYPTION_REQUIRED: Reply =
    Reply::new(538, "5.7.11", "Encryption required for requested authentication mechanism");
/// MAIL before AUTH where the listener requires it.
pub const AUTH_REQUIRED: Reply = Reply::new(530, "5.7.0", "Authentication required");
/// AUTH after a successful AUTH (RFC 4954 §4).
pub const ALREADY_AUTHENTICATED: Reply = Reply::new(503, "5.5.1", "Error: already authenticated");
/// AUTH where the listener does not offer it.
pub const AUTH_NOT_ENABLED: Reply = Reply::new(503, "5.5.1", "Error: authentication not enabled");
/// The policy says the authenticated user does not own the sender
/// address; `{}` is the user.
pub const SENDER_NOT_OWNED: Reply = Reply::new(553, "5.7.1", "Sender address rejected: not owned by user {}");

// --- Storage (after DATA) -----------------------------------------------------
/// The spool write failed; the client retries later.
/// The message was refused after its data (sender authentication policy).
pub const POLICY_REJECTED: Reply = Reply::new(550, "5.7.1", "{}");
/// A content filter (milter) refused the message.
pub const FILTER_REJECTED: Reply = Reply::new(550, "5.7.1", "Error: message content rejected");
/// A content filter (milter) asked the client to try again later.
pub const FILTER_TEMPFAIL: Reply = Reply::new(451, "4.7.1", "Error: message content filter says try again later");
/// A content filter could not be asked (down, timed out, broken reply)
/// and its `on_error` is "tempfail".
pub const FILTER_UNAVAILABLE: Reply = Reply::new(451, "4.7.1", "Error: content filter unavailable, try again later");
/// A live content filter (milter at `stage = "connect"`) refused a
/// HELO, MAIL or RCPT (Postfix's words).
pub const FILTER_COMMAND_REJECTED: Reply = Reply::new(550, "5.7.1", "Command rejected");
/// A live content filter asked the client to try that command later.
pub const FILTER_COMMAND_TEMPFAIL: Reply = Reply::new(451, "4.7.1", "Service unavailable - try again later");
/// A live content filter refused the connection; the session ends.
pub const FILTER_CONNECT_REJECTED: Reply = Reply::new(554, "5.7.1", "{} Connection rejected");
/// A live content filter refused the connection for now, or could not
/// be asked (`on_error = "tempfail"`); the session ends.
pub const FILTER_CONNECT_TEMPFAIL: Reply = Reply::new(421, "4.7.1", "{} Service unavailable - try again later");

/// A content filter's own reply (milter `SMFIR_REPLYCODE`): `code` must be
/// 4xx or 5xx (else 451/550 by its class is not guessable: 451 is used);
/// control characters are dropped from `text`, and `x.7.1` is put in
/// front when it does not start with an enhanced code of the same class.
pub fn write_filter_reply(out: &mut Vec<u8>, code: u16, text: &str) {
    let code = if (400..600).contains(&code) { code } else { 451 };
    let class = if code >= 500 { '5' } else { '4' };
    let text: String = text.chars().filter(|c| !c.is_control()).collect();
    let text = text.trim();
    let first = text.split(' ').next().unwrap_or("");
    let enhanced = first.starts_with(class)
        && first.split('.').count() == 3
        && first.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    write_code(out, code, b' ');
    if !enhanced {
        out.extend_from_slice(format!("{class}.7.1 ").as_bytes());
    }
    out.extend_from_slice(if text.is_empty() { "Error: message content rejected" } else { text }.as_bytes());
    out.extend_from_slice(b"\r\n");
}
pub const QUEUE_WRITE_ERROR: Reply = Reply::new(451, "4.3.0", "Error: queue file write error");
/// The spool is full; the client retries later.
pub const INSUFFICIENT_STORAGE: Reply = Reply::new(452, "4.3.1", "Insufficient system storage");
/// The message (or the SIZE= it declared) is larger than `max_message_size`.
pub const MESSAGE_TOO_BIG: Reply = Reply::new(552, "5.3.4", "Message size exceeds fixed limit");

// --- Recipients ----------------------------------------------------------------
/// More than `max_recipients` in one transaction.
pub const TOO_MANY_RECIPIENTS: Reply = Reply::new(452, "4.5.3", "Error: too many recipients");
/// The policy does not know the local user; `{}` is the address.
pub const UNKNOWN_USER: Reply = Reply::new(550, "5.1.1", "<{}>: Recipient address rejected: User unknown");
/// The policy will not relay to that domain; `{}` is the address.
/// The recipient's mailbox is over its quota; `{}` is the address.
pub const MAILBOX_FULL: Reply = Reply::new(452, "4.2.2", "<{}>: Recipient address rejected: Mailbox full");
/// A local address whose aliases cannot be expanded; `{}` is the address
/// and the reason (loop, depth, limit, missing target).
pub const ALIAS_FAILED: Reply = Reply::new(451, "4.3.0", "{}; alias expansion failed, try again later");
/// The client is on DNS blocklists (Postfix's reject_rbl_client words).
pub const BLOCKLISTED: Reply = Reply::new(554, "5.7.1", "Service unavailable; {}");
/// FCrDNS failed: no PTR, or no PTR name resolves back to the client
/// (RFC 7372 §3.3: 5.7.25 "reverse DNS validation failed").
pub const REVERSE_DNS_FAILED: Reply =
    Reply::new(550, "5.7.25", "Client host rejected: cannot find your hostname, [{}]");
/// The reverse DNS lookups failed for now (SERVFAIL, timeout).
pub const REVERSE_DNS_UNAVAILABLE: Reply =
    Reply::new(450, "4.7.25", "Client host rejected: cannot find your hostname, [{}]; try again later");
/// HELO/EHLO names a bare IP, or us.
pub const HELO_REJECTED: Reply = Reply::new(550, "5.7.1", "Helo command rejected: {}");
/// A triplet seen for the first time (or again too soon): try later.
pub const GREYLISTED: Reply = Reply::new(451, "4.7.1", "Greylisted, try again in {} seconds");
pub const RELAY_DENIED: Reply = Reply::new(554, "5.7.1", "<{}>: Relay access denied");
/// A relayed recipient on the suppression list; `{}` is when it was put
/// there.
pub const RECIPIENT_SUPPRESSED: Reply = Reply::new(550, "5.1.1", "recipient suppressed (hard bounce on {})");

// --- Sequence errors -----------------------------------------------------------
/// MAIL before HELO/EHLO.
pub const NEED_HELO: Reply = Reply::new(503, "5.5.1", "Error: send HELO/EHLO first");
/// MAIL inside a transaction.
pub const NESTED_MAIL: Reply = Reply::new(503, "5.5.1", "Error: nested MAIL command");
/// RCPT or DATA outside a transaction.
pub const NEED_MAIL: Reply = Reply::new(503, "5.5.1", "Error: need MAIL command");
/// DATA without any RCPT.
pub const NEED_RCPT: Reply = Reply::new(503, "5.5.1", "Error: need RCPT command");
/// DATA after RCPTs that were all rejected.
pub const NO_VALID_RECIPIENTS: Reply = Reply::new(554, "5.5.1", "Error: no valid recipients");
/// DATA in a transaction with `BODY=BINARYMIME` (RFC 3030 §3).
pub const BINARYMIME_NEEDS_BDAT: Reply = Reply::new(503, "5.5.1", "Error: BODY=BINARYMIME requires BDAT");
/// DATA or RCPT after a BDAT chunk of the same transaction (RFC 3030 §2
/// forbids mixing); RSET ends the transaction.
pub const BDAT_IN_PROGRESS: Reply = Reply::new(503, "5.5.1", "Error: BDAT transfer in progress");
/// STARTTLS inside a transaction.
pub const TRANSACTION_IN_PROGRESS: Reply = Reply::new(503, "5.5.1", "Error: MAIL transaction in progress");
/// STARTTLS when the listener offers no TLS (RFC 5321: 502, recognised but
/// not implemented).
pub const TLS_NOT_AVAILABLE: Reply = Reply::new(502, "5.5.1", "Error: command not implemented");
/// STARTTLS after the handshake.
pub const TLS_ALREADY_ACTIVE: Reply = Reply::new(554, "5.5.1", "Error: TLS already active");

// --- Syntax errors -------------------------------------------------------------
/// A verb this server does not know.
pub const UNKNOWN_COMMAND: Reply = Reply::new(500, "5.5.2", "Error: command not recognized");
/// An empty line, or a NUL or other control character in a command line.
pub const BAD_SYNTAX: Reply = Reply::new(500, "5.5.2", "Error: bad syntax");
/// A command line longer than `max_line_len`, then close. X.5.6 is
/// registered for over-long AUTH lines (RFC 4954); we use it for any line.
pub const LINE_TOO_LONG: Reply = Reply::new(500, "5.5.6", "Error: line too long");
/// EHLO without a usable hostname.
pub const SYNTAX_EHLO: Reply = Reply::new(501, "5.5.4", "Syntax: EHLO hostname");
/// HELO without a usable hostname.
pub const SYNTAX_HELO: Reply = Reply::new(501, "5.5.4", "Syntax: HELO hostname");
/// MAIL without `FROM:<...>`.
pub const SYNTAX_MAIL: Reply = Reply::new(501, "5.5.4", "Syntax: MAIL FROM:<address>");
/// RCPT without `TO:<...>`.
pub const SYNTAX_RCPT: Reply = Reply::new(501, "5.5.4", "Syntax: RCPT TO:<address>");
/// DATA with an argument.
pub const SYNTAX_DATA: Reply = Reply::new(501, "5.5.4", "Syntax: DATA");
/// RSET with an argument.
pub const SYNTAX_RSET: Reply = Reply::new(501, "5.5.4", "Syntax: RSET");
/// QUIT with an argument.
pub const SYNTAX_QUIT: Reply = Reply::new(501, "5.5.4", "Syntax: QUIT");
/// STARTTLS with an argument.
pub const SYNTAX_STARTTLS: Reply = Reply::new(501, "5.5.4", "Syntax: STARTTLS");
/// AUTH without a mechanism, or with more than an initial response.
pub const SYNTAX_AUTH: Reply = Reply::new(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
/// BDAT without a valid size, or with something other than LAST after
/// it; then close: where its chunk ends cannot be known, so nothing after
/// it can be read as a command.
pub const SYNTAX_BDAT: Reply = Reply::new(501, "5.5.4", "Syntax: BDAT count [LAST]");
/// VRFY without an argument.
pub const SYNTAX_VRFY: Reply = Reply::new(501, "5.5.4", "Syntax: VRFY address");
/// A MAIL parameter with a bad value (`SIZE=x`, `BODY=x`), or given twice.
pub const BAD_PARAMETER: Reply = Reply::new(501, "5.5.4", "Error: bad parameter syntax");
/// A MAIL or RCPT parameter this server does not support (RFC 1869 §6).
pub const UNSUPPORTED_PARAMETER: Reply = Reply::new(555, "5.5.4", "Error: unsupported option");
/// A reverse-path that does not parse.
pub const BAD_SENDER: Reply = Reply::new(501, "5.1.7", "Bad sender address syntax");
/// A forward-path that does not parse (or is `<>`).
pub const BAD_RECIPIENT: Reply = Reply::new(501, "5.1.3", "Bad recipient address syntax");
/// A non-ASCII address in a transaction whose MAIL had no SMTPUTF8
/// (RFC 6531 §3.5).
pub const NON_ASCII_ADDRESS: Reply =
    Reply::new(553, "5.6.7", "Error: non-ASCII address needs the SMTPUTF8 parameter on MAIL");

/// The reply for a command line that did not parse.
pub fn for_command_error(error: &CommandError) -> &'static Reply {
    match error {
        CommandError::Empty | CommandError::ControlCharacter => &BAD_SYNTAX,
        CommandError::Syntax(verb) => match verb {
            Verb::Ehlo => &SYNTAX_EHLO,
            Verb::Helo => &SYNTAX_HELO,
            Verb::Mail => &SYNTAX_MAIL,
            Verb::Rcpt => &SYNTAX_RCPT,
            Verb::Data => &SYNTAX_DATA,
            Verb::Rset => &SYNTAX_RSET,
            Verb::Quit => &SYNTAX_QUIT,
            Verb::StartTls => &SYNTAX_STARTTLS,
            Verb::Vrfy => &SYNTAX_VRFY,
            Verb::Auth => &SYNTAX_AUTH,
            Verb::Bdat => &SYNTAX_BDAT,
            // NOOP and HELP take any argument; never a syntax error.
            Verb::Noop | Verb::Help => &BAD_SYNTAX,
        },
        CommandError::BadSender(AddressError::NonAscii) | CommandError::BadRecipient(AddressError::NonAscii) => {
            &NON_ASCII_ADDRESS
        }
        CommandError::BadSender(_) => &BAD_SENDER,
        CommandError::BadRecipient(_) => &BAD_RECIPIENT,
        CommandError::BadParameter(_) => &BAD_PARAMETER,
        CommandError::UnsupportedParameter { .. } => &UNSUPPORTED_PARAMETER,
    }
}

/// The challenge line for where an AUTH exchange waits.
pub fn for_challenge(challenge: Challenge) -> &'static Reply {
    match challenge {
        Challenge::Empty => &AUTH_PLAIN_CHALLENGE,
        Challenge::Username => &AUTH_LOGIN_USERNAME,
        Challenge::Password => &AUTH_LOGIN_PASSWORD,
    }
}

/// The reply for an AUTH exchange that ended without credentials.
pub fn for_sasl_error(error: SaslError) -> &'static Reply {
    match error {
        SaslError::Aborted => &AUTH_ABORTED,
        SaslError::BadBase64 => &AUTH_BAD_BASE64,
        // Malformed, empty or foreign identities: the same 535 as a wrong
        // password, so nothing is learnt from the difference.
        SaslError::MalformedPlain | SaslError::AuthzidMismatch | SaslError::Empty | SaslError::NotText => &AUTH_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[Reply] = &[
        GREETING,
        BYE,
        TIMEOUT,
        SHUTTING_DOWN,
        TOO_MANY_ERRORS,
        TOO_MANY_COMMANDS,
        TOO_MANY_MESSAGES,
        TOO_MUCH_MAIL,
        HELO,
        OK,
        SENDER_OK,
        RECIPIENT_OK,
        START_DATA,
        QUEUED,
        CANNOT_VRFY,
        HELP,
        READY_TO_START_TLS,
        AUTH_PLAIN_CHALLENGE,
        AUTH_LOGIN_USERNAME,
        AUTH_LOGIN_PASSWORD,
        AUTH_SUCCESSFUL,
        AUTH_FAILED,
        AUTH_TEMP_FAILURE,
        AUTH_LOCKED,
        AUTH_ABORTED,
        AUTH_BAD_BASE64,
        AUTH_LINE_TOO_LONG,
        AUTH_UNKNOWN_MECHANISM,
        AUTH_ENCRYPTION_REQUIRED,
        AUTH_REQUIRED,
        ALREADY_AUTHENTICATED,
        AUTH_NOT_ENABLED,
        SENDER_NOT_OWNED,
        POLICY_REJECTED,
        FILTER_COMMAND_REJECTED,
        FILTER_COMMAND_TEMPFAIL,
        FILTER_CONNECT_REJECTED,
        FILTER_CONNECT_TEMPFAIL,
        QUEUE_WRITE_ERROR,
        INSUFFICIENT_STORAGE,
        MESSAGE_TOO_BIG,
        TOO_MANY_RECIPIENTS,
        UNKNOWN_USER,
        MAILBOX_FULL,
        RELAY_DENIED,
        RECIPIENT_SUPPRESSED,
        NEED_HELO,
        NESTED_MAIL,
        NEED_MAIL,
        NEED_RCPT,
        NO_VALID_RECIPIENTS,
        TRANSACTION_IN_PROGRESS,
        TLS_NOT_AVAILABLE,
        TLS_ALREADY_ACTIVE,
        UNKNOWN_COMMAND,
        BAD_SYNTAX,
        LINE_TOO_LONG,
        SYNTAX_EHLO,
        SYNTAX_HELO,
        SYNTAX_MAIL,
        SYNTAX_RCPT,
        SYNTAX_DATA,
        SYNTAX_RSET,
        SYNTAX_QUIT,
        SYNTAX_STARTTLS,
        SYNTAX_AUTH,
        SYNTAX_VRFY,
        BAD_PARAMETER,
        UNSUPPORTED_PARAMETER,
        BAD_SENDER,
        BAD_RECIPIENT,
        NON_ASCII_ADDRESS,
        CHUNK_RECEIVED,
        BINARYMIME_NEEDS_BDAT,
        BDAT_IN_PROGRESS,
        SYNTAX_BDAT,
    ];

    #[test]
    fn every_enhanced_code_matches_its_reply_class() {
        for reply in ALL {
            assert!((200..600).contains(&reply.code), "{reply:?}");
            if let Some(status) = reply.status {
                let class = (b'0' + (reply.code / 100) as u8) as char;
                assert!(status.starts_with(class), "{reply:?}");
                assert_eq!(status.split('.').count(), 3, "{reply:?}");
            }
            assert!(reply.text.matches("{}").count() <= 1, "{reply:?}");
            assert!(!reply.text.contains(['\r', '\n']), "{reply:?}");
        }
    }

    #[test]
    fn reply_is_written_with_code_status_text_crlf() {
        let mut out = Vec::new();
        UNKNOWN_USER.write_with(&mut out, "jane@example.test");
        OK.write(&mut out);
        GREETING.write_with(&mut out, "mx.example.test");
        assert_eq!(
            out,
            b"550 5.1.1 <jane@example.test>: Recipient address rejected: User unknown\r\n\
              250 2.0.0 Ok\r\n\
              220 mx.example.test ESMTP ringmail\r\n"
        );
    }

    #[test]
    fn ehlo_reply_is_multiline_with_starttls_and_auth_only_when_offered() {
        let mut out = Vec::new();
        write_ehlo(&mut out, "mx.example.test", 1000, EhloOffer { starttls: true, auth: true, requiretls: false });
        assert_eq!(
            out,
            b"250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-STARTTLS\r\n\
              250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250-8BITMIME\r\n250-BINARYMIME\r\n\
              250-CHUNKING\r\n250 SMTPUTF8\r\n"
        );
        out.clear();
        write_ehlo(&mut out, "mx.example.test", 1000, EhloOffer { starttls: false, auth: false, requiretls: false });
        assert!(!out.windows(8).any(|w| w == b"STARTTLS"));
        assert!(!out.windows(4).any(|w| w == b"AUTH"));
        assert!(out.ends_with(b"250 SMTPUTF8\r\n"));
        out.clear();
        write_ehlo(&mut out, "mx.example.test", 1000, EhloOffer { starttls: false, auth: false, requiretls: true });
        assert!(out.ends_with(b"250-SMTPUTF8\r\n250 REQUIRETLS\r\n"));
    }

    #[test]
    fn the_plain_challenge_is_334_and_a_space() {
        let mut out = Vec::new();
        AUTH_PLAIN_CHALLENGE.write(&mut out);
        assert_eq!(out, b"334 \r\n");
    }
}
