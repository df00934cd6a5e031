//! The one way mail enters the spool (Postfix's cleanup rule): build the
//! record, append it to this core's spool, wait for the group commit that
//! covers it, then hand each recipient to its owner. Only after that does
//! the SMTP session answer 250.

use super::Shard;
use crate::mailbox::MailboxEntry;
use crate::proto::smtp::{Envelope, RcptDecision, ReversePath, StoreOutcome};
use crate::queue::{PendingRecipient, QueuedMessage};
use crate::spool::{encode_message_envelope, MessageRecord, QueueId, RecipientEntry, RecordKind, Route, SpoolError};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

impl Shard {
    /// Store a message received from `client` and route its recipients.
    /// Returns what the SMTP session should answer.
    pub async fn accept_message(self: &Rc<Self>, client: IpAddr, envelope: Envelope, body: Vec<u8>) -> StoreOutcome {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let queue_id = self.queue_ids.borrow_mut().next(now.as_micros() as u64);
        let trace = received_header(&self.config.hostname, client, &envelope, queue_id, now);
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
                    RcptDecision::UnknownUser | RcptDecision::RelayDenied => return None,
                };
                Some(RecipientEntry { address: r.address.to_string(), route })
            })
            .collect();
        let record = MessageRecord {
            queue_id,
            received_at_ms: now.as_millis() as u64,
            client: client.to_string(),
            helo: envelope.helo.clone(),
            sender: sender.clone(),
            recipients,
            body: &[],
        };
        let size = (trace.len() + body.len()) as u64;
        let head = match encode_message_envelope(&record) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(core = self.id, queue_id = %queue_id, error = %e, "message envelope not encodable");
                return StoreOutcome::TempFailure;
            }
        };
        // The record's body is the trace header followed by the message.
        let appended = match self.append(RecordKind::Message, &[&head, trace.as_bytes(), &body]) {
            Ok(a) => a,
            Err(e) => return store_failure(self.id, queue_id, e),
        };
        if let Err(e) = self.spool.durable(&appended.ticket).await {
            return store_failure(self.id, queue_id, e);
        }
        let at = appended.at;
        self.message_written(at, record.recipients.len() as u16);
        tracing::info!(
            queue_id = %queue_id, from = %sender, nrcpt = record.recipients.len(), size, client = %client,
            "message accepted"
        );
        let mut remote: Vec<QueuedMessage> = Vec::new();
        for (index, r) in record.recipients.into_iter().enumerate() {
            let recipient = index as u16;
            match r.route {
                Route::Local { user } => {
                    let entry = MailboxEntry {
                        at,
                        recipient,
                        queue_id,
                        received_at_ms: record.received_at_ms,
                        size,
                        sender: sender.clone(),
                    };
                    self.deliver(user, entry).await;
                }
                Route::Remote { domain } => {
                    let pending = PendingRecipient { index: recipient, address: r.address };
                    match remote.iter_mut().find(|m| m.domain == domain) {
                        Some(m) => m.recipients.push(pending),
                        None => remote.push(QueuedMessage::new(at, queue_id, domain, sender.clone(), vec![pending], record.received_at_ms)),
                    }
                }
            }
        }
        // One transaction per destination domain carries all its recipients.
        for msg in remote {
            self.enqueue(msg).await;
        }
        StoreOutcome::Stored { queue_id: queue_id.to_string() }
    }
}

fn store_failure(core: usize, queue_id: QueueId, e: SpoolError) -> StoreOutcome {
    tracing::error!(core, queue_id = %queue_id, error = %e, "message not stored");
    match e {
        SpoolError::RecordTooLarge { .. } => StoreOutcome::SpoolFull,
        _ => StoreOutcome::TempFailure,
    }
}

/// Our trace header, one line so that a reader can strip it exactly.
fn received_header(
    hostname: &str,
    client: IpAddr,
    envelope: &Envelope,
    queue_id: QueueId,
    now: std::time::Duration,
) -> String {
    let proto = if envelope.esmtp { "ESMTP" } else { "SMTP" };
    let helo: String = envelope.helo.chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    format!(
        "Received: from {helo} ([{client}]) by {hostname} (ringmail) with {proto} id {queue_id}; {}\r\n",
        rfc5322_date(now)
    )
}

/// RFC 5322 date in UTC, e.g. "Sat, 28 Nov 2026 05:40:48 +0000".
fn rfc5322_date(since_epoch: std::time::Duration) -> String {
    let http = httpdate::fmt_http_date(UNIX_EPOCH + since_epoch);
    match http.strip_suffix(" GMT") {
        Some(s) => format!("{s} +0000"),
        None => http,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_is_rfc5322_with_numeric_zone() {
        let d = rfc5322_date(std::time::Duration::from_secs(1_795_844_448));
        assert!(d.ends_with(" +0000"), "{d}");
        assert_eq!(d.len(), "Sat, 28 Nov 2026 05:40:48 +0000".len(), "{d}");
    }
}
