//! Delivery status notifications (RFC 3464): the bounce and the delay
//! warning a sender gets, built as one complete RFC 5322 message.
//!
//! This file owns the bytes of a DSN: headers, the human-readable part (in
//! Postfix's words, so operators and users meet familiar text), the
//! `message/delivery-status` report and the returned headers as
//! `text/rfc822-headers`, or the whole message as `message/rfc822` when the
//! sender asked with `RET=FULL` (RFC 6522: multipart/report; RFC 3461).
//! Success notices (`delivered`, `relayed`) are built here too, for
//! recipients that asked with `NOTIFY=SUCCESS`. It is pure: time,
//! names and the boundary seed come in, bytes go out. It must not decide
//! *whether* to send one (the queue does, using [`is_bounce`] for the
//! never-bounce-a-bounce rule) nor send it (it goes through the spool
//! writer like all mail, with the null sender `MAIL FROM:<>`).
//!
//! Everything written is 7-bit ASCII with CRLF line ends and lines of at
//! most 998 bytes, except the returned headers, which are copied as they
//! came (line ends made CRLF, overlong lines folded) and make the message
//! 8bit when they hold 8-bit bytes. Text that came from peers (addresses,
//! reply texts) has control characters replaced by spaces and non-ASCII by
//! `?`, so it can neither end a header early nor break the 7-bit parts.

use std::time::{Duration, UNIX_EPOCH};

/// At most this much of the original header section is returned.
pub const MAX_RETURNED_HEADERS: usize = 64 * 1024;

/// `RET=FULL` returns a message up to this size whole; a larger one gets
/// its headers only (as Postfix's `bounce_size_limit` does), so a bounce
/// never carries a second copy of a huge message back.
pub const MAX_RETURNED_MESSAGE: usize = 1024 * 1024;

/// RFC 5322 §2.1.1: no line longer than this, CRLF excluded.
const MAX_LINE: usize = 998;

/// Header lines are folded to this length where they have spaces.
const FOLD_AT: usize = 78;

/// What kind of notice a recipient gets (RFC 3464 §2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Given up: this is a bounce.
    Failed,
    /// Still being retried: this is a delay warning.
    Delayed,
    /// Put into a mailbox here (NOTIFY=SUCCESS).
    Delivered,
    /// Handed to a next hop that does not offer DSN, so no further
    /// notice will come (NOTIFY=SUCCESS, RFC 3461 §6.2.3.3).
    Relayed,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
        }
    }
}

/// Which notice a set of recipients makes: a bounce when any failed, else
/// a delay warning when any is delayed, else a success report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bounce,
    Delay,
    Success,
}

impl Kind {
    fn of(recipients: &[NoticeRecipient]) -> Kind {
        if recipients.iter().any(|r| r.action == Action::Failed) {
            Kind::Bounce
        } else if recipients.iter().any(|r| r.action == Action::Delayed) {
            Kind::Delay
        } else {
            Kind::Success
        }
    }
}

/// One recipient the notice is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeRecipient {
    /// The recipient address, without brackets.
    pub address: String,
    /// RFC 3463 status, `"5.1.1"`; its class should match `action`
    /// (5 for Failed, 4 for Delayed). Anything that is not `d.d{1,3}.d{1,3}`
    /// is replaced by `5.0.0` or `4.0.0`.
    pub status: String,
    pub action: Action,
    /// The remote host that answered, when there was one.
    pub remote_mta: Option<String>,
    /// `type; text`, e.g. `"smtp; 550 5.1.1 user unknown"`; a text without
    /// a type gets `X-Ringmail; `.
    pub diagnostic: Option<String>,
    /// When delivery was last tried, in ms since the Unix epoch.
    pub last_attempt_ms: Option<u64>,
    /// Why it failed for good (a bounce): written after the
    /// Diagnostic-Code as the extension field `X-Ringmail-Bounce-Class`
    /// (RFC 3464 §2.4 allows `X-` fields in a per-recipient block).
    pub class: Option<crate::outbound::classify::BounceClass>,
    /// The sender's `ORCPT` (`type;address`), echoed as
    /// `Original-Recipient` (RFC 3464 §2.3.1).
    pub original_recipient: Option<String>,
}

/// Everything a notice is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnInput<'a> {
    /// Our hostname: Reporting-MTA, From, Message-ID.
    pub reporting_mta: &'a str,
    /// The queue id of the message the notice is about.
    pub original_queue_id: &'a str,
    /// Its envelope sender: the notice goes to this address. Must not be
    /// the null sender (see [`is_bounce`]); if it is anyway, `To` is an
    /// empty group and nothing else changes.
    pub original_sender: &'a str,
    /// When the message arrived, ms since the epoch.
    pub arrival_ms: u64,
    /// Now, ms since the epoch: Date, and the delay in a warning.
    pub now_ms: u64,
    /// At least one; the order is kept.
    pub recipients: &'a [NoticeRecipient],
    /// The original message; its header section is returned, or all of
    /// it when `return_full`.
    pub original_message: &'a [u8],
    /// `RET=FULL`: return the whole message (`message/rfc822`).
    pub return_full: bool,
    /// The sender's `ENVID`, echoed as `Original-Envelope-Id`.
    pub envid: Option<&'a str>,
    /// Varies the MIME boundary and Message-ID (the caller's randomness).
    pub boundary_seed: u64,
}

/// Whether a message with this envelope sender is itself a notification
/// (the null reverse-path, RFC 5321 §4.5.5). Its failures must never be
/// bounced: they are dropped and logged, or notices could loop forever.
pub fn is_bounce(sender: &str) -> bool {
    sender.is_empty()
}

/// An RFC 5322 date-time in UTC: `Thu, 01 Jan 1970 00:00:00 +0000`.
/// Times past the year 9999 are written as its last second.
/// The last second formatted is kept per thread: every message accepted
/// gets a Received field dated now.
pub fn format_date(ms: u64) -> String {
    const LAST_SECOND_OF_9999: u64 = 253_402_300_799;
    thread_local! {
        static LAST: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let secs = (ms / 1000).min(LAST_SECOND_OF_9999);
    let format = || {
        let http = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
        match http.strip_suffix("GMT") {
            Some(stem) => format!("{stem}+0000"),
            None => http,
        }
    };
    LAST.try_with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs {
            *last = (secs, format());
        }
        last.1.clone()
    })
    .unwrap_or_else(|_| format())
}

/// Builds the notice: a complete message with CRLF line ends, to be sent
/// from the null sender to `original_sender`. A bounce when any recipient
/// is [`Action::Failed`], else a delay warning when any is
/// [`Action::Delayed`], else a success report.
pub fn build_dsn(input: &DsnInput) -> Vec<u8> {
    let host = hostname(input.reporting_mta);
    let kind = Kind::of(input.recipients);
    let notice = notice_text(input, &host, kind);
    let report = delivery_status(input, &host);
    let headers = match input.return_full {
        true => crlf_message(input.original_message),
        false => returned_headers(input.original_message),
    };
    let boundary = pick_boundary(input, &host, &[&notice, &report, &headers]);
    let encoding = match headers.iter().any(|&b| b >= 0x80) {
        true => "8bit",
        false => "7bit",
    };
    let subject = match kind {
        Kind::Bounce => "Undelivered Mail Returned to Sender",
        Kind::Delay => "Delayed Mail (still being retried)",
        Kind::Success => "Successful Mail Delivery Report",
    };
    let to = match is_bounce(input.original_sender) {
        true => "undisclosed-recipients:;".to_owned(),
        false => format!("<{}>", address(input.original_sender)),
    };
    let message_id =
        format!("<{}.{}.{:016x}@{host}>", input.now_ms, alphanumeric(input.original_queue_id), input.boundary_seed);

    let mut out = Vec::with_capacity(notice.len() + report.len() + headers.len() + 1024);
    field(&mut out, "Date", &format_date(input.now_ms));
    field(&mut out, "From", &format!("Mail Delivery System <MAILER-DAEMON@{host}>"));
    field(&mut out, "Subject", subject);
    field(&mut out, "To", &to);
    field(&mut out, "Auto-Submitted", "auto-replied");
    field(&mut out, "Message-ID", &message_id);
    field(&mut out, "MIME-Version", "1.0");
    out.extend_from_slice(b"Content-Type: multipart/report; report-type=delivery-status;\r\n");
    out.extend_from_slice(format!("\tboundary=\"{boundary}\"\r\n").as_bytes());
    field(&mut out, "Content-Transfer-Encoding", encoding);
    out.extend_from_slice(b"\r\nThis is a MIME-encapsulated message.\r\n");

    let description = match (kind, input.return_full) {
        (Kind::Bounce, false) => "Undelivered Message Headers",
        (Kind::Delay, false) => "Delayed Message Headers",
        (Kind::Success, false) => "Message Headers",
        (Kind::Bounce, true) => "Undelivered Message",
        (Kind::Delay, true) => "Delayed Message",
        (Kind::Success, true) => "Message",
    };
    let returned_type = match input.return_full {
        true => "message/rfc822",
        false => "text/rfc822-headers",
    };
    let parts = [
        ("Notification", "text/plain; charset=us-ascii", "7bit", &notice),
        ("Delivery report", "message/delivery-status", "7bit", &report),
        (description, returned_type, encoding, &headers),
    ];
    for (description, content_type, encoding, body) in parts {
        out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        field(&mut out, "Content-Description", description);
        field(&mut out, "Content-Type", content_type);
        field(&mut out, "Content-Transfer-Encoding", encoding);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// The human-readable part, Postfix's wording, ending in CRLF.
fn notice_text(input: &DsnInput, host: &str, kind: Kind) -> Vec<u8> {
    let bounce = kind == Kind::Bounce;
    let mut text = format!("This is the mail system at host {host}.\n\n");
    match kind {
        Kind::Success => text.push_str(
            "Your message was successfully delivered to the destination(s)\n\
             listed below. If the message was delivered to mailbox you will\n\
             receive no further notifications. Otherwise you may still receive\n\
             notifications of mail delivery errors from other systems.\n\n",
        ),
        Kind::Bounce => text.push_str(
            "I'm sorry to have to inform you that your message could not\n\
             be delivered to one or more recipients. Its headers are attached below.\n\n\
             For further assistance, please send mail to postmaster.\n\n\
             If you do so, please include this problem report.\n\n",
        ),
        Kind::Delay => {
            text.push_str(
                "####################################################################\n\
                 # THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n\
                 ####################################################################\n\n",
            );
            let waited = input.now_ms.saturating_sub(input.arrival_ms);
            text.push_str(&format!(
                "Your message could not be delivered for {}.\n\
                 It will be retried; you will be told if it cannot be delivered.\n\n",
                duration(waited)
            ));
        }
    }
    text.push_str("                   The mail system\n");
    for r in input.recipients {
        let detail = diagnostic_text(r.diagnostic.as_deref());
        let mut line = format!("<{}>: ", address(&r.address));
        match (r.remote_mta.as_deref(), detail) {
            (Some(mta), Some(detail)) => line.push_str(&format!("host {} said: {detail}", hostname(mta))),
            (None, Some(detail)) => line.push_str(&detail),
            (Some(_) | None, None) => line.push_str(&format!("delivery {} (status {})", r.action.as_str(), status(r))),
        }
        if bounce && r.action == Action::Delayed {
            line.push_str(" (still being retried)");
        }
        text.push('\n');
        wrap(&mut text, &line);
    }
    crlf(text.as_bytes())
}

/// The `message/delivery-status` body: per-message fields, then one block
/// per recipient, blocks separated by empty lines (RFC 3464 §2.1).
fn delivery_status(input: &DsnInput, host: &str) -> Vec<u8> {
    let mut out = Vec::new();
    field(&mut out, "Reporting-MTA", &format!("dns; {host}"));
    if let Some(envid) = input.envid {
        field(&mut out, "Original-Envelope-Id", &printable(envid, 100));
    }
    field(&mut out, "X-Ringmail-Queue-ID", &printable(input.original_queue_id, 64));
    field(&mut out, "X-Ringmail-Sender", &format!("rfc822; {}", address(input.original_sender)));
    field(&mut out, "Arrival-Date", &format_date(input.arrival_ms));
    for r in input.recipients {
        out.extend_from_slice(b"\r\n");
        if let Some((kind, original)) = r.original_recipient.as_deref().and_then(|o| o.split_once(';')) {
            field(&mut out, "Original-Recipient", &format!("{}; {}", alphanumeric(kind), address(original)));
        }
        field(&mut out, "Final-Recipient", &format!("rfc822; {}", address(&r.address)));
        field(&mut out, "Action", r.action.as_str());
        field(&mut out, "Status", &status(r));
        if let Some(mta) = &r.remote_mta {
            field(&mut out, "Remote-MTA", &format!("dns; {}", hostname(mta)));
        }
        if let Some(diagnostic) = &r.diagnostic {
            field(&mut out, "Diagnostic-Code", &typed_diagnostic(diagnostic));
        }
        if let Some(class) = r.class {
            field(&mut out, "X-Ringmail-Bounce-Class", class.as_str());
        }
        if let Some(ms) = r.last_attempt_ms {
            field(&mut out, "Last-Attempt-Date", &format_date(ms));
        }
    }
    out
}

/// The original header section: up to the first empty line, at most
/// [`MAX_RETURNED_HEADERS`] bytes (cut at a line end), CRLF line ends,
/// lines over 998 bytes folded.
fn returned_headers(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut taken = 0;
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        taken += line.len() + 2;
        if line.is_empty() || taken > MAX_RETURNED_HEADERS {
            break;
        }
        let line: Vec<u8> = line.iter().map(|&b| if b == b'\r' { b' ' } else { b }).collect();
        let mut pieces = line.chunks(MAX_LINE - 1).peekable();
        while let Some(piece) = pieces.next() {
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
            if pieces.peek().is_some() {
                out.push(b' ');
            }
        }
    }
    out
}

/// The whole message for `message/rfc822`: CRLF line ends, lines over
/// 998 bytes folded at a space-less cut (as [`returned_headers`] does).
fn crlf_message(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64);
    let body = message.strip_suffix(b"\n").unwrap_or(message);
    for line in body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            out.extend_from_slice(b"\r\n");
        }
        for piece in line.chunks(MAX_LINE) {
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// A boundary (at most 70 characters, RFC 2046 §5.1.1) found in none of
/// the parts; the seed is stepped until one is free.
fn pick_boundary(input: &DsnInput, host: &str, parts: &[&[u8]]) -> String {
    let mut seed = input.boundary_seed;
    loop {
        let mut boundary = format!("{seed:016x}.{}/{host}", input.now_ms);
        boundary.truncate(70);
        let delimiter = format!("--{boundary}");
        let clash = parts.iter().any(|part| part.windows(delimiter.len()).any(|w| w == delimiter.as_bytes()));
        if !clash {
            return boundary;
        }
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    }
}

/// Appends `Name: value` folded at spaces to [`FOLD_AT`] where possible;
/// a word too long for one line is cut (the cut reads as a space).
fn field(out: &mut Vec<u8>, name: &str, value: &str) {
    let mut line_len = name.len() + 1;
    out.extend_from_slice(name.as_bytes());
    out.push(b':');
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        for piece in word.as_bytes().chunks(MAX_LINE - 2) {
            if line_len + 1 + piece.len() > FOLD_AT && line_len > name.len() + 1 {
                out.extend_from_slice(b"\r\n");
                line_len = 0;
            }
            out.push(b' ');
            out.extend_from_slice(piece);
            line_len += 1 + piece.len();
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `line` to `text` wrapped at 76 columns, continuations indented
/// by four spaces (Postfix's layout), each line ending in `\n`.
fn wrap(text: &mut String, line: &str) {
    let mut col = 0;
    for word in line.split(' ').filter(|w| !w.is_empty()) {
        for piece in word.as_bytes().chunks(MAX_LINE - 8) {
            let piece = String::from_utf8_lossy(piece);
            if col > 0 && col + 1 + piece.len() > 76 {
                text.push_str("\n    ");
                col = 4;
            } else if col > 0 {
                text.push(' ');
                col += 1;
            }
            text.push_str(&piece);
            col += piece.len();
        }
    }
    text.push('\n');
}

/// `\n` line ends to CRLF.
fn crlf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 32);
    for &b in text {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// The recipient's status when well-formed, else the action's default.
fn status(r: &NoticeRecipient) -> String {
    let parts: Vec<&str> = r.status.split('.').collect();
    let digits = |s: &str, max: usize| !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit());
    match parts.as_slice() {
        [class, subject, detail] if digits(class, 1) && digits(subject, 3) && digits(detail, 3) => r.status.clone(),
        _ => match r.action {
            Action::Failed => "5.0.0".to_owned(),
            Action::Delayed => "4.0.0".to_owned(),
            Action::Delivered | Action::Relayed => "2.0.0".to_owned(),
        },
    }
}

/// `type; text` with a type, which RFC 3464 §2.3.6 requires.
fn typed_diagnostic(diagnostic: &str) -> String {
    let clean = printable(diagnostic, 4096);
    match clean.split_once(';') {
        Some((kind, _)) if is_atom(kind.trim()) => clean,
        Some(_) | None => format!("X-Ringmail; {clean}"),
    }
}

/// The text of a diagnostic without its type, for the human part.
fn diagnostic_text(diagnostic: Option<&str>) -> Option<String> {
    let typed = typed_diagnostic(diagnostic?);
    let text = typed.split_once(';').map_or(typed.as_str(), |(_, t)| t).trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn is_atom(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Peer text made safe for a header: controls to spaces, non-ASCII to
/// `?`, spaces collapsed, at most `max` characters.
fn printable(s: &str, max: usize) -> String {
    let mapped = s.chars().take(max).map(|c| match c {
        c if c.is_ascii_control() => ' ',
        c if c.is_ascii() => c,
        _ => '?',
    });
    let mapped: String = mapped.collect();
    mapped.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An address for a header: printable, no spaces or brackets, bounded.
fn address(s: &str) -> String {
    printable(s, 512).replace([' ', '<', '>'], "")
}

/// A hostname: letters, digits, dots, hyphens (and the brackets and
/// colons of an address literal); `localhost` when nothing is left.
fn hostname(s: &str) -> String {
    let name: String =
        s.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':')).take(253).collect();
    match name.is_empty() {
        true => "localhost".to_owned(),
        false => name,
    }
}

fn alphanumeric(s: &str) -> String {
    s.chars().filter(char::is_ascii_alphanumeric).take(64).collect()
}

/// Postfix-style: "42 seconds", "15 minutes", "4.0 hours", "2.5 days".
fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..=119 => format!("{secs} seconds"),
        120..=7199 => format!("{} minutes", secs / 60),
        7200..=172_799 => format!("{:.1} hours", secs as f64 / 3600.0),
        172_800..=u64::MAX => format!("{:.1} days", secs as f64 / 86400.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &[u8] = b"Received: from client.test\r\n\tby mx.test\r\n\
        From: Jane <jane@example.test>\r\nSubject: hello\r\n\r\nsecret body\r\n";

    fn bounced(address: &str) -> NoticeRecipient {
        NoticeRecipient {
            address: address.into(),
            status: "5.1.1".into(),
            action: Action::Failed,
            remote_mta: Some("mx.remote.test".into()),
            diagnostic: Some("smtp; 550 5.1.1 <x@remote.test>: user unknown".into()),
            last_attempt_ms: Some(1_700_000_060_000),
            class: Some(crate::outbound::classify::BounceClass::InvalidRecipient),
            original_recipient: None,
        }
    }

    fn build(recipients: &[NoticeRecipient], original: &[u8]) -> String {
        build_with(recipients, original, false, None)
    }

    fn build_with(recipients: &[NoticeRecipient], original: &[u8], full: bool, envid: Option<&str>) -> String {
        let input = DsnInput {
            reporting_mta: "relay.example.test",
            original_queue_id: "Q123",
            original_sender: "jane@example.test",
            arrival_ms: 1_700_000_000_000,
            now_ms: 1_700_000_120_000,
            recipients,
            original_message: original,
            return_full: full,
            envid,
            boundary_seed: 0xfeed,
        };
        String::from_utf8(build_dsn(&input)).expect("ASCII for ASCII input")
    }

    fn boundary(dsn: &str) -> &str {
        let start = dsn.find("boundary=\"").expect("boundary") + 10;
        &dsn[start..start + dsn[start..].find('"').expect("closing quote")]
    }

    fn header_lines(dsn: &str) -> Vec<&str> {
        dsn.split("\r\n").take_while(|l| !l.is_empty()).collect()
    }

    fn assert_wire_clean(dsn: &[u8]) {
        for (i, &b) in dsn.iter().enumerate() {
            assert!(b != b'\n' || (i > 0 && dsn[i - 1] == b'\r'), "bare LF at {i}");
            assert!(b != b'\r' || dsn.get(i + 1) == Some(&b'\n'), "bare CR at {i}");
        }
        for line in dsn.split(|&b| b == b'\n') {
            assert!(line.len() <= MAX_LINE + 1, "line of {} bytes", line.len());
        }
        assert!(dsn.ends_with(b"\r\n"));
    }

    #[test]
    fn ret_full_returns_the_whole_message_and_envid_and_orcpt_are_echoed() {
        let mut r = bounced("x@remote.test");
        r.original_recipient = Some("rfc822;X@Remote.test".into());
        let dsn = build_with(&[r], ORIGINAL, true, Some("QQ314159"));
        let sections: Vec<&str> = dsn.split(&format!("--{}", boundary(&dsn))).collect();
        assert!(sections[2].contains("Original-Envelope-Id: QQ314159\r\n"), "{}", sections[2]);
        assert!(sections[2].contains("Original-Recipient: rfc822; X@Remote.test\r\nFinal-Recipient:"));
        assert!(sections[3].contains("Content-Type: message/rfc822\r\n"));
        assert!(sections[3].contains("\r\n\r\nsecret body\r\n"), "the body is returned: {}", sections[3]);
        let headers_only = build(&[bounced("x@remote.test")], ORIGINAL);
        assert!(!headers_only.contains("secret body") && !headers_only.contains("Original-Envelope-Id"));
    }

    #[test]
    fn success_notice_says_delivered_or_relayed_with_status_2() {
        let mut delivered = bounced("x@example.test");
        delivered.action = Action::Delivered;
        delivered.status = "2.0.0".into();
        (delivered.remote_mta, delivered.diagnostic, delivered.class) = (None, None, None);
        let mut relayed = bounced("y@remote.test");
        relayed.action = Action::Relayed;
        relayed.status = "garbage".into();
        relayed.class = None;
        let dsn = build(&[delivered, relayed], ORIGINAL);
        assert!(header_lines(&dsn).contains(&"Subject: Successful Mail Delivery Report"));
        assert!(dsn.contains("Action: delivered\r\nStatus: 2.0.0\r\n"));
        assert!(dsn.contains("Action: relayed\r\nStatus: 2.0.0\r\n"), "a bad status falls back to 2.0.0");
        assert!(dsn.contains("successfully delivered"));
    }

    #[test]
    fn bounce_is_multipart_report_with_three_parts_in_order() {
        let dsn = build(&[bounced("x@remote.test")], ORIGINAL);
        let b = boundary(&dsn);
        let sections: Vec<&str> = dsn.split(&format!("\r\n--{b}")).collect();
        assert_eq!(sections.len(), 5, "{dsn}");
        assert!(sections[1].contains("Content-Type: text/plain; charset=us-ascii\r\n"));
        assert!(sections[2].contains("Content-Type: message/delivery-status\r\n"));
        assert!(sections[3].contains("Content-Type: text/rfc822-headers\r\n"));
        assert_eq!(sections[4], "--\r\n");
        assert_wire_clean(dsn.as_bytes());
    }

    #[test]
    fn bounce_headers_come_from_mailer_daemon_to_the_sender() {
        let dsn = build(&[bounced("x@remote.test")], ORIGINAL);
        let headers = header_lines(&dsn);
        for expected in [
            "Date: Tue, 14 Nov 2023 22:15:20 +0000",
            "From: Mail Delivery System <MAILER-DAEMON@relay.example.test>",
            "Subject: Undelivered Mail Returned to Sender",
            "To: <jane@example.test>",
            "Auto-Submitted: auto-replied",
            "MIME-Version: 1.0",
            "Content-Type: multipart/report; report-type=delivery-status;",
            "Content-Transfer-Encoding: 7bit",
        ] {
            assert!(headers.contains(&expected), "{expected:?} not in {headers:?}");
        }
        let id = headers.iter().find(|h| h.starts_with("Message-ID: <")).unwrap();
        assert!(id.ends_with("@relay.example.test>"), "{id}");
    }

    #[test]
    fn delivery_status_has_message_fields_then_one_block_per_recipient() {
        let mut second = bounced("y@remote.test");
        second.remote_mta = None;
        second.diagnostic = None;
        second.last_attempt_ms = None;
        second.class = None;
        let dsn = build(&[bounced("x@remote.test"), second], ORIGINAL);
        let report = dsn.split("message/delivery-status\r\n").nth(1).unwrap();
        let report = &report[..report.find("\r\n--").unwrap()];
        let blocks: Vec<&str> = report.split("\r\n\r\n").collect();
        assert_eq!(blocks.len(), 4, "{report:?}");
        assert_eq!(
            blocks[1],
            "Reporting-MTA: dns; relay.example.test\r\n\
             X-Ringmail-Queue-ID: Q123\r\n\
             X-Ringmail-Sender: rfc822; jane@example.test\r\n\
             Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000"
        );
        assert_eq!(
            blocks[2],
            "Final-Recipient: rfc822; x@remote.test\r\n\
             Action: failed\r\n\
             Status: 5.1.1\r\n\
             Remote-MTA: dns; mx.remote.test\r\n\
             Diagnostic-Code: smtp; 550 5.1.1 <x@remote.test>: user unknown\r\n\
             X-Ringmail-Bounce-Class: invalid-recipient\r\n\
             Last-Attempt-Date: Tue, 14 Nov 2023 22:14:20 +0000"
        );
        assert_eq!(blocks[3], "Final-Recipient: rfc822; y@remote.test\r\nAction: failed\r\nStatus: 5.1.1\r\n");
    }

    #[test]
    fn human_part_names_each_recipient_and_the_remote_reply() {
        let dsn = build(&[bounced("x@remote.test")], ORIGINAL);
        assert!(dsn.contains("This is the mail system at host relay.example.test."));
        assert!(
            dsn.contains("<x@remote.test>: host mx.remote.test said: 550 5.1.1 <x@remote.test>: user\r\n    unknown")
        );
    }

    #[test]
    fn only_the_header_section_of_the_original_is_returned() {
        let dsn = build(&[bounced("x@remote.test")], ORIGINAL);
        assert!(dsn.contains("Received: from client.test\r\n\tby mx.test\r\nFrom: Jane"));
        assert!(dsn.contains("Subject: hello\r\n"));
        assert!(!dsn.contains("secret body"));
    }

    #[test]
    fn returned_headers_get_crlf_and_are_capped_at_a_line_end() {
        assert_eq!(returned_headers(b"A: 1\nB: 2\n\nbody"), b"A: 1\r\nB: 2\r\n");
        assert_eq!(returned_headers(b"\r\nno headers"), b"");
        let many = "X-Filler: 0123456789012345678901234567890123456789\n".repeat(3000);
        let kept = returned_headers(many.as_bytes());
        assert!(kept.len() <= MAX_RETURNED_HEADERS && kept.len() > MAX_RETURNED_HEADERS - 100);
        assert!(kept.ends_with(b"0123456789\r\n"));
        let long = format!("X-Long: {}\n\n", "y".repeat(3000));
        let folded = returned_headers(long.as_bytes());
        assert!(folded.split(|&b| b == b'\n').all(|l| l.len() <= MAX_LINE + 1));
        assert!(folded.windows(3).any(|w| w == b"\r\n "), "folded as continuation");
    }

    #[test]
    fn eight_bit_original_headers_make_the_message_8bit() {
        let dsn = build_dsn(&DsnInput {
            reporting_mta: "relay.test",
            original_queue_id: "Q",
            original_sender: "a@b.test",
            arrival_ms: 0,
            now_ms: 0,
            recipients: &[bounced("x@y.test")],
            original_message: "Subject: caf\u{e9}\r\n\r\n".as_bytes(),
            return_full: false,
            envid: None,
            boundary_seed: 1,
        });
        let text = String::from_utf8_lossy(&dsn);
        assert_eq!(text.matches("Content-Transfer-Encoding: 8bit").count(), 2);
        assert_wire_clean(&dsn);
    }

    #[test]
    fn boundary_never_occurs_inside_a_part() {
        let plain = build(&[bounced("x@remote.test")], ORIGINAL);
        let taken = boundary(&plain).to_owned();
        let hostile = format!("X-Evil: 1\r\n--{taken}\r\n\r\n");
        let dsn = build(&[bounced("x@remote.test")], hostile.as_bytes());
        let b = boundary(&dsn);
        assert_ne!(b, taken);
        assert_eq!(dsn.matches(&format!("--{b}")).count(), 4);
    }

    #[test]
    fn crlf_in_peer_text_cannot_add_header_lines() {
        let mut evil = bounced("x@remote.test\r\nBcc: victim@test");
        evil.diagnostic = Some("smtp; 550 no\r\nX-Injected: yes".into());
        evil.remote_mta = Some("mx\r\nX-Injected: yes".into());
        let dsn = build(&[evil], ORIGINAL);
        assert!(!dsn.contains("\r\nBcc:") && !dsn.contains("\r\nX-Injected"), "{dsn}");
        assert_wire_clean(dsn.as_bytes());
    }

    #[test]
    fn long_diagnostic_is_folded_under_998_bytes() {
        let mut long = bounced("x@remote.test");
        let word = "z".repeat(1500);
        long.diagnostic = Some(format!("smtp; 550 {} {word}", "many words ".repeat(200)));
        let dsn = build(&[long], ORIGINAL);
        assert_wire_clean(dsn.as_bytes());
        assert!(dsn.contains("Diagnostic-Code: smtp; 550 many words"));
    }

    #[test]
    fn bad_status_and_untyped_diagnostic_are_repaired() {
        let mut odd = bounced("x@remote.test");
        odd.status = "5.1".into();
        odd.diagnostic = Some("connection refused".into());
        let dsn = build(&[odd], ORIGINAL);
        assert!(dsn.contains("Status: 5.0.0\r\n"));
        assert!(dsn.contains("Diagnostic-Code: X-Ringmail; connection refused\r\n"));
    }

    #[test]
    fn delay_warning_when_every_recipient_is_delayed() {
        let mut delayed = bounced("x@remote.test");
        delayed.action = Action::Delayed;
        delayed.status = "4.4.1".into();
        let dsn = build(&[delayed], ORIGINAL);
        assert!(dsn.contains("Subject: Delayed Mail (still being retried)\r\n"));
        assert!(dsn.contains("Action: delayed\r\nStatus: 4.4.1\r\n"));
        assert!(dsn.contains("could not be delivered for 2 minutes."));
        assert!(dsn.contains("THIS IS A WARNING ONLY"));
    }

    #[test]
    fn null_sender_is_a_bounce() {
        assert!(is_bounce(""));
        assert!(!is_bounce("jane@example.test"));
    }

    #[test]
    fn dates_are_rfc5322_utc_and_never_panic() {
        assert_eq!(format_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(format_date(1_700_000_000_999), "Tue, 14 Nov 2023 22:13:20 +0000");
        assert_eq!(format_date(u64::MAX), "Fri, 31 Dec 9999 23:59:59 +0000");
        // From the cache, and past it.
        assert_eq!(format_date(1_700_000_000_001), "Tue, 14 Nov 2023 22:13:20 +0000");
        assert_eq!(format_date(1_700_000_000_001), "Tue, 14 Nov 2023 22:13:20 +0000");
        assert_eq!(format_date(1_700_000_001_000), "Tue, 14 Nov 2023 22:13:21 +0000");
        assert_eq!(format_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
    }

    #[test]
    fn durations_read_like_postfix() {
        assert_eq!(duration(42_000), "42 seconds");
        assert_eq!(duration(15 * 60_000), "15 minutes");
        assert_eq!(duration(4 * 3_600_000), "4.0 hours");
        assert_eq!(duration(60 * 3_600_000), "2.5 days");
    }

    /// Python's email package (policy=default) must read the bounce as a
    /// delivery report naming the recipient and its status.
    #[test]
    fn python_email_package_parses_the_bounce() {
        let root = std::path::Path::new(file!()).ancestors().nth(3).unwrap_or(std::path::Path::new(""));
        let script = root.join("tests/fixtures/dsn_check.py");
        let mut second = bounced("y@remote.test");
        second.status = "5.2.2".into();
        let dsn = build(&[bounced("x@remote.test"), second], ORIGINAL);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bounce.eml");
        std::fs::write(&path, dsn).expect("write DSN");
        let output = std::process::Command::new("python3")
            .arg(&script)
            .arg(&path)
            .args(["y@remote.test", "5.2.2"])
            .output()
            .expect("python3 runs");
        assert!(
            output.status.success(),
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
