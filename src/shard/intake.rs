//! The one way mail enters the spool (Postfix's cleanup rule): build the
//! record, append it to this core's spool, wait for the group commit that
//! covers it, then hand each recipient to its owner. Mail from SMTP
//! sessions and bounces generated here both come through
//! [`Shard::store_and_route`]; only after it returns does the SMTP session
//! answer 250.

use super::Shard;
use crate::mailbox::MailboxEntry;
use crate::outbound::bounce::About;
use crate::proto::smtp::{Envelope, RcptDecision, ReversePath, StoreOutcome};
use crate::queue::{PendingRecipient, QueuedMessage};
use crate::spool::{
    encode_message_envelope, BodyKind, MessageExt, MessageRecord, QueueId, RecipientEntry, RecordKind, Route,
    SpoolError,
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

/// A message about to be stored: envelope fields and the body in parts
/// (copied once, into the spool's write batch).
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
}

impl Shard {
    /// A fresh queue id and the current time, for a new message.
    pub fn new_queue_id(&self) -> (QueueId, Duration) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        (self.queue_ids.borrow_mut().next(now.as_micros() as u64), now)
    }

    /// Store a message received from `client` and route its recipients,
    /// with `auth_results` (an Authentication-Results field with its CRLF)
    /// on top, above our Received field. Returns what the SMTP session
    /// should answer.
    pub async fn accept_message(
        self: &Rc<Self>,
        client: IpAddr,
        envelope: Envelope,
        body: Vec<u8>,
        auth_results: Option<&str>,
    ) -> StoreOutcome {
        let data_end = std::time::Instant::now();
        let (queue_id, now) = self.new_queue_id();
        let trace = received_header(&self.config().hostname, client, &envelope, queue_id, now);
        let sender = match &envelope.sender {
            ReversePath::Null => String::new(),
            ReversePath::Mailbox(a) => a.to_string(),
        };
        let recipients: Vec<RecipientEntry> = envelope
            .recipients
            .iter()
            .filter_map(|r| {
                let route = match &r.decision {
                    RcptDecision::Local { user } => Route::Local { user: user.clone() },
                    RcptDecision::Remote { domain } => Route::Remote { domain: domain.clone() },
                    // The session only hands over accepted recipients.
                    RcptDecision::UnknownUser
                    | RcptDecision::RelayDenied
                    | RcptDecision::MailboxFull
                    | RcptDecision::Suppressed { .. } => return None,
                };
                Some(RecipientEntry { address: r.address.to_string(), route, dsn: r.dsn.clone() })
            })
            .collect();
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
                ret: envelope.ret,
                envid: envelope.envid.clone(),
                ..MessageExt::default()
            },
            body: &[auth_results.unwrap_or_default().as_bytes(), trace.as_bytes(), &body],
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
            client: "import".into(),
            helo: String::new(),
            sender,
            recipients: vec![RecipientEntry::new(user, Route::Local { user: user.to_string() })],
            ext: MessageExt::default(),
            body: &[body],
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
        let size: u64 = msg.body.iter().map(|p| p.len() as u64).sum();
        let mut parts: Vec<&[u8]> = Vec::with_capacity(msg.body.len() + 1);
        parts.push(&head);
        parts.extend_from_slice(msg.body);
        let appended = self.append(RecordKind::Message, &parts)?;
        self.spool.durable(&appended.ticket).await?;
        let at = appended.at;
        let queue_id = msg.queue_id;
        self.message_written(at, record.recipients.len() as u16);
        let to: Vec<&str> = record.recipients.iter().map(|r| r.address.as_str()).collect();
        // Scanning the header costs; only when the line will be written.
        let message_id = if tracing::enabled!(tracing::Level::INFO) {
            msg.body.iter().find_map(|part| crate::message::message_id(part)).unwrap_or_default()
        } else {
            String::new()
        };
        tracing::info!(
            queue_id = %queue_id, message_id = %message_id, from = %record.sender, to = %to.join(","), size,
            client = %record.client, "message accepted"
        );
        let sender = record.sender;
        let mut remote: Vec<QueuedMessage> = Vec::new();
        let mut delivered_notice = Vec::new();
        for (index, r) in record.recipients.into_iter().enumerate() {
            let recipient = index as u16;
            match r.route {
                Route::Local { user } => {
                    let entry = MailboxEntry { at, recipient, queue_id, received_at_ms, size, sender: sender.clone() };
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

/// Our trace header, one line so that a reader can strip it exactly.
fn received_header(hostname: &str, client: IpAddr, envelope: &Envelope, queue_id: QueueId, now: Duration) -> String {
    let proto = if envelope.esmtp { "ESMTP" } else { "SMTP" };
    let helo: String = envelope.helo.chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    format!(
        "Received: from {helo} ([{client}]) by {hostname} (ringmail) with {proto} id {queue_id}; {}\r\n",
        crate::outbound::dsn::format_date(now.as_millis() as u64)
    )
}
