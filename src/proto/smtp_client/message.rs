//! A message as the client takes it (envelope and size; the body stays in
//! the spool) and what became of each of its recipients.

use super::reply::{Class, Reply};
use crate::proto::xtext;
use crate::spool::{DsnRet, RecipientDsn};

/// One message for one destination, handed to `Client::send_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The reverse-path without brackets; `""` is the null sender (bounces).
    pub sender: String,
    /// Forward-paths without brackets, in the order outcomes are reported.
    pub recipients: Vec<String>,
    /// Body size in bytes, for `SIZE=` and the advertised-limit check;
    /// exact (the length of the body the driver writes), since a `BDAT`
    /// chunk announces it.
    pub size: u64,
    /// The body has 8-bit bytes: declared as `BODY=8BITMIME` when the
    /// server offers 8BITMIME. When it does not, the body is sent anyway
    /// (Postfix's default): converting to 7 bit would need a MIME rewriter,
    /// and refusing would bounce mail almost every server accepts.
    pub body_8bit: bool,
    /// Came with `BODY=BINARYMIME` (RFC 3030): goes only to a server
    /// offering BINARYMIME, CHUNKING and PIPELINING (this client's BDAT
    /// path), declared as such; otherwise it is bounced with 5.6.3 (there
    /// is no conversion: the body may have bare CR and LF, NULs, long lines).
    pub binarymime: bool,
    /// Needs SMTPUTF8 ([`needs_smtputf8`]): goes only to a server offering
    /// it, with `SMTPUTF8` on MAIL; otherwise bounced with 5.6.7 (no
    /// downgrade, RFC 6531 §3.2).
    pub smtputf8: bool,
    /// DSN parameters to pass on when the server offers DSN (RFC 3461).
    pub dsn: DsnParams,
    /// Came with `REQUIRETLS` (RFC 8689): goes only to a server offering
    /// it, declared on MAIL; otherwise bounced with 5.7.10. (That the
    /// session's certificate was verified is the driver's to check: the
    /// client does not see certificates.)
    pub requiretls: bool,
}

/// The DSN parameters of a message, as its sender gave them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DsnParams {
    /// `RET=`.
    pub ret: Option<DsnRet>,
    /// `ENVID=`, decoded (xtext-encoded again on the wire).
    pub envid: Option<String>,
    /// `NOTIFY=` and `ORCPT=` per recipient, same order as
    /// `OutgoingMessage::recipients`; empty when none has any.
    pub recipients: Vec<RecipientDsn>,
}

impl DsnParams {
    /// ` RET=… ENVID=…` for MAIL FROM, empty when neither was given.
    pub fn mail_params(&self) -> String {
        let mut out = String::new();
        match self.ret {
            Some(DsnRet::Full) => out.push_str(" RET=FULL"),
            Some(DsnRet::Headers) => out.push_str(" RET=HDRS"),
            None => {}
        }
        if let Some(envid) = &self.envid {
            out.push_str(" ENVID=");
            out.push_str(&xtext::encode(envid));
        }
        out
    }

    /// ` NOTIFY=… ORCPT=…` for the RCPT of recipient `i`.
    pub fn rcpt_params(&self, i: usize) -> String {
        let Some(dsn) = self.recipients.get(i) else { return String::new() };
        let mut out = String::new();
        let n = dsn.notify;
        if n.is_given() {
            let words: Vec<&str> =
                [(n.never, "NEVER"), (n.success, "SUCCESS"), (n.failure, "FAILURE"), (n.delay, "DELAY")]
                    .into_iter()
                    .filter_map(|(on, word)| on.then_some(word))
                    .collect();
            out.push_str(" NOTIFY=");
            out.push_str(&words.join(","));
        }
        match dsn.orcpt.as_deref().and_then(|o| o.split_once(';')) {
            Some((kind, address)) if kind == "utf-8" || !address.is_ascii() => {
                out.push_str(&format!(" ORCPT=utf-8;{}", xtext::encode_utf8(address)));
            }
            Some((kind, address)) => out.push_str(&format!(" ORCPT={kind};{}", xtext::encode(address))),
            None => {}
        }
        out
    }
}

/// Whether a message that came in with `SMTPUTF8` needs it on the way out:
/// the sender or a recipient of this delivery is not ASCII (domains are
/// held as A-labels, so only UTF-8 local parts count), or the header
/// section (up to the first empty line) has a byte >= 0x80 (RFC 6532 UTF-8
/// headers). Otherwise the message is plain RFC 5322 and may go to any
/// server, without the parameter (as Postfix's `smtputf8_autodetect_classes`
/// does for mail whose envelope and headers turn out to be ASCII).
pub fn needs_smtputf8(declared: bool, sender: &str, recipients: &[String], body: &[u8]) -> bool {
    if !declared {
        return false;
    }
    let head_end = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(body.len());
    !sender.is_ascii() || recipients.iter().any(|r| !r.is_ascii()) || !body[..head_end].is_ascii()
}

/// What became of one message, recipient by recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageOutcome {
    /// One entry per `OutgoingMessage::recipients`, same order.
    pub per_recipient: Vec<RecipientOutcome>,
}

/// The fate of one recipient, with the reply that decided it. Replies the
/// client made up itself (SIZE exceeded, a malformed address, a timeout,
/// a lost connection) look like server replies; their texts say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientOutcome {
    /// The server took responsibility (the 2xx after the end of data).
    Delivered { reply: Reply },
    /// Try again later (4xx, or the connection failed first).
    Deferred { reply: Reply },
    /// Refused for good (5xx): bounce.
    Bounced { reply: Reply },
}

impl RecipientOutcome {
    /// The outcome a reply stands for: the one place where a reply class
    /// becomes delivered, deferred or bounced.
    pub fn from_reply(reply: Reply) -> RecipientOutcome {
        match reply.class() {
            Class::Positive => RecipientOutcome::Delivered { reply },
            Class::Transient => RecipientOutcome::Deferred { reply },
            Class::Permanent => RecipientOutcome::Bounced { reply },
        }
    }

    /// The reply that decided this outcome.
    pub fn reply(&self) -> &Reply {
        match self {
            RecipientOutcome::Delivered { reply }
            | RecipientOutcome::Deferred { reply }
            | RecipientOutcome::Bounced { reply } => reply,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::needs_smtputf8;

    #[test]
    fn smtputf8_is_needed_only_when_declared_and_something_is_not_ascii() {
        let ascii = ["b@y.test".to_string()];
        let body = "Subject: caf\u{e9}\r\n\r\nbody".as_bytes();
        assert!(!needs_smtputf8(false, "j\u{e4}@x.test", &ascii, body));
        assert!(!needs_smtputf8(true, "a@x.test", &ascii, b"Subject: hi\r\n\r\ncaf\xc3\xa9"));
        assert!(needs_smtputf8(true, "j\u{e4}@x.test", &ascii, b""));
        assert!(needs_smtputf8(true, "", &["\u{7528}@y.test".to_string()], b""));
        assert!(needs_smtputf8(true, "a@x.test", &ascii, body));
    }
}
