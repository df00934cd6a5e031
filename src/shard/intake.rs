//! The one way mail enters the spool (Postfix's cleanup rule): build the
//! record, append it to this core's spool, wait for the group commit that
//! covers it, then hand each recipient to its owner. Mail from SMTP
//! sessions and bounces generated here both come through
//! [`Shard::store_and_route`]; only after it returns does the SMTP session
//! answer 250.

use super::Shard;
use crate::address_map::Target;
use crate::mailbox::{MailboxEntry, Trace};
use crate::outbound::bounce::About;
use crate::proto::smtp::{Envelope, RcptDecision, ReversePath, StoreOutcome};
use crate::queue::{PendingRecipient, QueuedMessage};
use crate::spool::{
    encode_message_envelope, BodyKind, MessageExt, MessageRecord, QueueId, RecipientDsn, RecipientEntry, RecordKind,
    Route, SpoolError,
};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a message could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("envelope not encodable: {0}")]
    Envelope(#[from] crate::spool::EncodeError),
}

/// The `client` of messages moved in by `import-maildir`/`import-mbox`:
/// they keep their own trace fields (no Return-Path/Delivered-To added).
pub(crate) const IMPORT_CLIENT: &str = "import";

/// What the driver knows about a session that its envelope does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// The connection was TLS (smtps or after STARTTLS) when DATA ended.
    pub tls: bool,
    /// Came in on a submission listener (587/465): RFC 6409 §8 fixes ups.
    pub submission: bool,
}

/// A message about to be stored: envelope fields and the body in parts
/// (copied once, into the spool's write batch), then `body_tail`, handed to
/// the spool as it is (a large one is written without a copy).
pub struct NewMessage<'a> {
    pub queue_id: QueueId,
    pub received_at: Duration,
    pub client: String,
    pub helo: String,
    /// `""` is the null sender (bounces).
    pub sender: String,
    pub recipients: Vec<RecipientEntry>,
    /// ESMTP parameters that travel with the message.
    pub ext: MessageExt,
    pub body: &'a [&'a [u8]],
    /// The end of the body, after `body`.
    pub body_tail: Vec<u8>,
}

impl Shard {
    /// A fresh queue id and the current time, for a new message.
    pub fn new_queue_id(&self) -> (QueueId, Duration) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        (self.queue_ids.borrow_mut().next(now.as_micros() as u64), now)
    }

    /// Store a message received from `client` and route its recipients,
    /// with `auth_results` (an Authentication-Results field with its CRLF)
    /// on top, above our Received field. On submission, a missing
    /// Message-ID and Date are added below the Received field (RFC 6409
    /// §8), before anything signs the message. Returns what the SMTP
    /// session should answer.
    pub async fn accept_message(
        self: &Rc<Self>,
        client: IpAddr,
        session: Arrival,
        envelope: Envelope,
        body: Vec<u8>,
        auth_results: Option<&str>,
    ) -> StoreOutcome {
        let data_end = std::time::Instant::now();
        let (queue_id, now) = self.new_queue_id();
        let hostname = self.config().hostname.clone();
        let trace = received_header(&hostname, client, &envelope, session.tls, queue_id, now);
        let added =
            if session.submission { missing_submission_fields(&body, &hostname, queue_id, now) } else { String::new() };
        let sender = match &envelope.sender {
            ReversePath::Null => String::new(),
            ReversePath::Mailbox(a) => a.to_string(),
        };
        let recipients = recipient_entries(&envelope);
        let msg = NewMessage {
            queue_id,
            received_at: now,
            client: client.to_string(),
            helo: envelope.helo.clone(),
            sender,
            recipients,
            ext: MessageExt {
                body: if envelope.binarymime {
                    BodyKind::BinaryMime
                } else if envelope.body_8bit {
                    BodyKind::EightBitMime
                } else {
                    BodyKind::SevenBit
                },
                smtputf8: envelope.smtputf8,
                requiretls: envelope.requiretls,
                ret: envelope.ret,
                envid: envelope.envid.clone(),
            },
            body: &[auth_results.unwrap_or_default().as_bytes(), trace.as_bytes(), added.as_bytes()],
            body_tail: body,
        };
        match self.store_and_route(msg).await {
            Ok(()) => {
                self.metrics.message_received(data_end.elapsed().as_micros() as u64);
                StoreOutcome::Stored { queue_id: queue_id.to_string() }
            }
            Err(e) => {
                tracing::error!(core = self.id, queue_id = %queue_id, error = %e, "message not stored");
                match e {
                    StoreError::Spool(SpoolError::RecordTooLarge { .. }) => StoreOutcome::SpoolFull,
                    StoreError::Spool(e) if e.is_out_of_space() => {
                        // Refuse from MAIL on until the watcher sees room.
                        self.spool_full.set(true);
                        StoreOutcome::SpoolFull
                    }
                    StoreError::Spool(SpoolError::SegmentAbandoned { .. }) if self.spool_full.get() => {
                        StoreOutcome::SpoolFull
                    }
                    StoreError::Spool(_) | StoreError::Envelope(_) => StoreOutcome::TempFailure,
                }
            }
        }
    }

    /// Store a message moved in from another server (`import-maildir`,
    /// `import-mbox`) into `user`'s mailbox, keeping its original arrival
    /// time. The sender is its Return-Path, if it has one.
    pub async fn import_message(
        self: &Rc<Self>,
        user: &str,
        body: &[u8],
        received_ms: u64,
    ) -> Result<QueueId, StoreError> {
        let (queue_id, _) = self.new_queue_id();
        let sender = crate::message::header(body, "Return-Path", 320)
            .map(|s| s.trim().trim_start_matches('<').trim_end_matches('>').to_string())
            .unwrap_or_default();
        let msg = NewMessage {
            queue_id,
            received_at: Duration::from_millis(received_ms),
            client: IMPORT_CLIENT.into(),
            helo: String::new(),
            sender,
            recipients: vec![RecipientEntry::new(user, Route::Local { user: user.to_string() })],
            ext: MessageExt::default(),
            body: &[body],
            body_tail: Vec::new(),
        };
        self.store_and_route(msg).await?;
        Ok(queue_id)
    }

    /// Append the message, wait for its sync, then hand each recipient to
    /// its owner: local users to their mailbox, remote domains (one share
    /// per domain, all its recipients in one transaction) to their queue.
    pub async fn store_and_route(self: &Rc<Self>, msg: NewMessage<'_>) -> Result<(), StoreError> {
        let received_at_ms = msg.received_at.as_millis() as u64;
        let record = MessageRecord {
            queue_id: msg.queue_id,
            received_at_ms,
            client: msg.client,
            helo: msg.helo,
            sender: msg.sender,
            recipients: msg.recipients,
            ext: msg.ext,
            body: &[],
        };
        let head = encode_message_envelope(&record)?;
        let size: u64 = msg.body.iter().map(|p| p.len() as u64).sum::<u64>() + msg.body_tail.len() as u64;
        // Scanning the header costs; only when the line will be written.
        // Before the append, which takes the body's tail.
        let message_id = if tracing::enabled!(tracing::Level::INFO) {
            let mut parts = msg.body.iter().copied().chain(std::iter::once(msg.body_tail.as_slice()));
            parts.find_map(crate::message::message_id).unwrap_or_default()
        } else {
            String::new()
        };
        let mut parts: Vec<&[u8]> = Vec::with_capacity(msg.body.len() + 1);
        parts.push(&head);
        parts.extend_from_slice(msg.body);
        let appended = self.append_owned(RecordKind::Message, &parts, msg.body_tail)?;
        self.spool.durable(&appended.ticket).await?;
        let at = appended.at;
        let queue_id = msg.queue_id;
        self.message_written(at, record.recipients.len() as u16);
        let to: Vec<&str> = record.recipients.iter().map(|r| r.address.as_str()).collect();
        tracing::info!(
            queue_id = %queue_id, message_id = %message_id, from = %record.sender, to = %to.join(","), size,
            client = %record.client, "message accepted"
        );
        let imported = record.client == IMPORT_CLIENT;
        let sender = record.sender;
        let mut remote: Vec<QueuedMessage> = Vec::new();
        let mut delivered_notice = Vec::new();
        for (index, r) in record.recipients.into_iter().enumerate() {
            let recipient = index as u16;
            match r.route {
                Route::Local { user } => {
                    let trace = (!imported).then_some(Trace { sender: &sender, delivered_to: &r.address });
                    let entry = MailboxEntry::new(at, recipient, queue_id, received_at_ms, size, trace);
                    tracing::info!(queue_id = %queue_id, to = %r.address, status = "delivered", "stored in mailbox");
                    self.metrics.delivered_local(1);
                    self.deliver(user, entry).await;
                    if r.dsn.notify.success {
                        delivered_notice.push(PendingRecipient { index: recipient, address: r.address });
                    }
                }
                Route::Remote { domain } => {
                    let pending = PendingRecipient { index: recipient, address: r.address };
                    match remote.iter_mut().find(|m| m.domain == domain) {
                        Some(m) => m.recipients.push(pending),
                        None => remote.push(
                            QueuedMessage::new(at, queue_id, domain, sender.clone(), vec![pending], received_at_ms)
                                .in_pool(crate::outbound::source::pool_for(&self.config().relay, &sender)),
                        ),
                    }
                }
            }
        }
        for m in remote {
            self.enqueue(m).await;
        }
        if !delivered_notice.is_empty() {
            let about = About { at, queue_id, sender, arrived_ms: received_at_ms };
            self.success_notice(about, delivered_notice, None, crate::outbound::dsn::Action::Delivered);
        }
        Ok(())
    }
}

/// One spool entry per target of the accepted recipients, each (address,
/// route) once: two RCPTs (or two aliases) that reach the same mailbox or
/// remote address deliver one copy.
fn recipient_entries(envelope: &Envelope) -> Vec<RecipientEntry> {
    let mut out: Vec<RecipientEntry> = Vec::with_capacity(envelope.recipients.len());
    let mut seen: std::collections::HashSet<(String, Route)> = std::collections::HashSet::new();
    // An alias target keeps the DSN parameters of the RCPT it came from.
    let mut add = |address: String, route: Route, dsn: &RecipientDsn| {
        if seen.insert((address.to_ascii_lowercase(), route.clone())) {
            out.push(RecipientEntry { address, route, dsn: dsn.clone() });
        }
    };
    for r in &envelope.recipients {
        let dsn = &r.dsn;
        match &r.decision {
            RcptDecision::Local { user } => add(r.address.to_string(), Route::Local { user: user.clone() }, dsn),
            RcptDecision::Remote { domain } => {
                add(r.address.to_string(), Route::Remote { domain: domain.clone() }, dsn)
            }
            RcptDecision::Expanded { targets } => {
                for t in targets {
                    match t {
                        Target::Local { address, user } => {
                            add(address.clone(), Route::Local { user: user.clone() }, dsn)
                        }
                        Target::Remote { address, domain } => {
                            add(address.clone(), Route::Remote { domain: domain.clone() }, dsn)
                        }
                    }
                }
            }
            // The session only hands over accepted recipients.
            RcptDecision::UnknownUser
            | RcptDecision::RelayDenied
            | RcptDecision::MailboxFull
            | RcptDecision::AliasFailed { .. }
            | RcptDecision::Suppressed { .. } => {}
        }
    }
    out
}

/// Our trace header, one line so that a reader can strip it exactly.
fn received_header(
    hostname: &str,
    client: IpAddr,
    envelope: &Envelope,
    tls: bool,
    queue_id: QueueId,
    now: Duration,
) -> String {
    let proto = with_protocol(envelope.esmtp, tls, envelope.auth_user.is_some(), envelope.smtputf8);
    let helo: String = envelope.helo.chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    format!(
        "Received: from {helo} ([{client}]) by {hostname} (ringmail) with {proto} id {queue_id}; {}\r\n",
        crate::outbound::dsn::format_date(now.as_millis() as u64)
    )
}

/// The `with` keyword of a Received field (RFC 3848, RFC 6531 §3.7.3):
/// SMTP after HELO; ESMTP after EHLO, with S for TLS and A for AUTH;
/// UTF8SMTP… when the transaction used SMTPUTF8 (which needs EHLO).
pub fn with_protocol(esmtp: bool, tls: bool, auth: bool, utf8: bool) -> &'static str {
    match (esmtp, utf8, tls, auth) {
        (false, ..) => "SMTP",
        (true, false, false, false) => "ESMTP",
        (true, false, true, false) => "ESMTPS",
        (true, false, false, true) => "ESMTPA",
        (true, false, true, true) => "ESMTPSA",
        (true, true, false, false) => "UTF8SMTP",
        (true, true, true, false) => "UTF8SMTPS",
        (true, true, false, true) => "UTF8SMTPA",
        (true, true, true, true) => "UTF8SMTPSA",
    }
}

/// The Message-ID and Date fields a submitted message lacks (RFC 6409
/// §8.2, §8.3), each with its CRLF; empty when it has both.
fn missing_submission_fields(body: &[u8], hostname: &str, queue_id: QueueId, now: Duration) -> String {
    let mut out = String::new();
    if crate::message::header(body, "Message-ID", 1).is_none() {
        out.push_str(&format!("Message-ID: <{queue_id}@{hostname}>\r\n"));
    }
    if crate::message::header(body, "Date", 1).is_none() {
        out.push_str(&format!("Date: {}\r\n", crate::outbound::dsn::format_date(now.as_millis() as u64)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_protocol_names_every_combination_as_rfc_3848_and_6531_do() {
        assert_eq!(with_protocol(false, true, true, false), "SMTP");
        assert_eq!(with_protocol(true, false, false, false), "ESMTP");
        assert_eq!(with_protocol(true, true, false, false), "ESMTPS");
        assert_eq!(with_protocol(true, false, true, false), "ESMTPA");
        assert_eq!(with_protocol(true, true, true, false), "ESMTPSA");
        assert_eq!(with_protocol(true, false, false, true), "UTF8SMTP");
        assert_eq!(with_protocol(true, true, false, true), "UTF8SMTPS");
        assert_eq!(with_protocol(true, false, true, true), "UTF8SMTPA");
        assert_eq!(with_protocol(true, true, true, true), "UTF8SMTPSA");
    }

    #[test]
    fn submission_fields_are_added_only_when_missing() {
        let id = QueueId(42);
        let now = Duration::from_secs(1_800_000_000);
        let both = missing_submission_fields(b"Subject: x\r\n\r\nbody\r\n", "mx.test", id, now);
        assert!(both.starts_with("Message-ID: <") && both.contains("@mx.test>\r\nDate: "), "{both}");
        let none = missing_submission_fields(
            b"Date: Mon, 1 Jan 2029 00:00:00 +0000\r\nmessage-id: <a@b>\r\n\r\nx\r\n",
            "mx.test",
            id,
            now,
        );
        assert_eq!(none, "");
        // A Message-ID line in the body is not a header.
        let body_only = missing_submission_fields(b"Date: x\r\n\r\nMessage-ID: <a@b>\r\n", "mx.test", id, now);
        assert!(body_only.starts_with("Message-ID: <"), "{body_only}");
    }
}
