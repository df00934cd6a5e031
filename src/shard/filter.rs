//! Content filters between the sender checks and the spool: the
//! `[[filter.milter]]` entries, run in order on a message, each seeing the
//! previous one's changes (issue 18: authentication checks →
//! Authentication-Results → milters → spool).
//!
//! Owns: which messages are filtered, what each verdict means for the
//! client and the message, the log line and counter of every decision.
//! It must not speak the protocol (`proto::milter`) or touch sockets
//! (`net::milter`).

use super::admin::QueueOp;
use super::filter_live::LiveFilters;
use super::intake::Arrival;
use super::Shard;
use crate::address_map::{Resolution, Target};
use crate::config::{Config, MilterAddr, MilterStage, OnError};
use crate::net::milter::{ask, Answer, MilterError};
use crate::proto::milter::{apply, Conversation, Edited, Verdict};
use crate::proto::smtp::{
    parse_mailbox, AcceptedRecipient, Address, Envelope, FilterRefusal, RcptDecision, ReversePath, StoreOutcome,
};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

impl Shard {
    /// Store a message that passed the sender checks, after the milters
    /// when there are any and the client is filtered (neither
    /// authenticated nor `exempt`, i.e. in `permit_relay_from`, unless
    /// `filter.outbound`). `auth_results` goes on top of the message
    /// before the milters see it. The outcome is the client's reply:
    /// stored (also for a discard: 250, nothing stored), or refused.
    /// Milters at `stage = "connect"` are asked through `live`, which
    /// followed the session's envelope.
    // The session's side (peer, exemption, arrival, live milters) and the
    // message's parts (envelope, body, the checks' field): a struct would
    // only rename them for this one caller.
    #[allow(clippy::too_many_arguments)]
    pub async fn filter_and_accept(
        self: &Rc<Self>,
        peer: SocketAddr,
        exempt: bool,
        arrival: Arrival,
        mut envelope: Envelope,
        body: Vec<u8>,
        auth_results: Option<&str>,
        live: &mut LiveFilters,
    ) -> StoreOutcome {
        let config = self.config();
        let client = peer.ip();
        let ours = exempt || envelope.auth_user.is_some();
        if config.filter.milter.is_empty() || (ours && !config.filter.outbound) {
            return self.accept_message(client, arrival, envelope, body, auth_results).await;
        }
        let mut message = match auth_results {
            Some(field) => [field.as_bytes(), &body].concat(),
            None => body,
        };
        let mut quarantine: Option<(String, String)> = None;
        // (milter, action, changes): logged with the queue id once stored.
        let mut passed: Vec<(String, &'static str, usize)> = Vec::new();
        let max_body = config.max_message_size as usize;
        for (index, m) in config.filter.milter.iter().enumerate() {
            let name = format!("milter:{}", m.address);
            let conv = conversation(&config, peer, &envelope, message);
            let result = match (m.stage, MilterAddr::parse(&m.address)) {
                // A live milter saw the envelope as it came; the message
                // follows on its connection (None: it is not asked).
                (MilterStage::Connect, _) => live.message(index, &conv, max_body).await,
                (MilterStage::Data, Ok(addr)) => Some(ask(&addr, m.timeout.get(), &conv, max_body).await),
                // check-config refuses such an entry; say so if one slips by.
                (MilterStage::Data, Err(why)) => Some(Err(MilterError::Connect(std::io::Error::other(why)))),
            };
            message = conv.message;
            let Some(result) = result else { continue };
            let Answer { verdict, leading_space } = match result {
                Ok(answer) => answer,
                Err(e) => {
                    self.metrics.filter_action(&name, "error");
                    match m.on_error {
                        OnError::Tempfail => {
                            tracing::warn!(core = self.id, client = %client, from = %envelope.sender, milter = %m.address, action = %"error", on_error = %"tempfail", error = %e, "milter failed: message refused for now");
                            return StoreOutcome::Filtered(FilterRefusal::Unavailable);
                        }
                        OnError::Accept => {
                            tracing::warn!(core = self.id, client = %client, from = %envelope.sender, milter = %m.address, action = %"error", on_error = %"accept", error = %e, "milter failed: message goes on unfiltered by it");
                            continue;
                        }
                    }
                }
            };
            let action = verdict.action();
            self.metrics.filter_action(&name, action);
            let refusal = match verdict {
                Verdict::Accept(mods) => {
                    let edited = apply(&message, &mods, leading_space);
                    self.edit_envelope(&mut envelope, &edited, &m.address);
                    if let Some(reason) = edited.quarantine {
                        quarantine = Some((m.address.clone(), reason));
                    }
                    message = edited.message;
                    passed.push((m.address.clone(), action, mods.len()));
                    if envelope.recipients.is_empty() {
                        // Every recipient removed: nothing left to deliver.
                        let (queue_id, _) = self.new_queue_id();
                        tracing::info!(queue_id = %queue_id, client = %client, from = %envelope.sender, milter = %m.address, action = %"discard", "milter removed every recipient: message discarded");
                        return StoreOutcome::Stored { queue_id: queue_id.to_string() };
                    }
                    continue;
                }
                Verdict::Discard => {
                    // The client is told it was taken (Postfix does the
                    // same); the id names the discard in the log.
                    let (queue_id, _) = self.new_queue_id();
                    tracing::info!(queue_id = %queue_id, client = %client, from = %envelope.sender, milter = %m.address, action = %action, "message discarded by milter");
                    return StoreOutcome::Stored { queue_id: queue_id.to_string() };
                }
                Verdict::Reject => FilterRefusal::Rejected,
                Verdict::Tempfail => FilterRefusal::TempFailed,
                Verdict::ReplyCode { code, text } => FilterRefusal::Reply { code, text },
            };
            let reply = match &refusal {
                FilterRefusal::Reply { code, text } => format!("{code} {text}"),
                _ => String::new(),
            };
            tracing::info!(core = self.id, client = %client, from = %envelope.sender, milter = %m.address, action = %action, reply = %reply, "message refused by milter");
            return StoreOutcome::Filtered(refusal);
        }
        let outcome = self.accept_message(client, arrival, envelope, message, None).await;
        if let StoreOutcome::Stored { queue_id } = &outcome {
            for (milter, action, changes) in passed {
                tracing::info!(queue_id = %queue_id, client = %client, milter = %milter, action = %action, changes, "milter");
            }
            if let Some((milter, reason)) = quarantine {
                self.quarantine(queue_id, client, &milter, &reason).await;
            }
        }
        outcome
    }

    /// Hold a stored message a milter quarantined. Relayed shares are put
    /// on hold (`ringmail queue hold`; `queue release` lets them go); a
    /// local mailbox has no hold: the copy is stored and the log says
    /// `quarantined`, for the operator to act on. A delivery attempt that
    /// started in the moment between storing and holding is not stopped.
    async fn quarantine(self: &Rc<Self>, queue_id: &str, client: IpAddr, milter: &str, reason: &str) {
        let held = match queue_id.parse() {
            Ok(id) => self.queue_admin(QueueOp::Hold(id), Default::default()).await.is_ok(),
            Err(_) => false,
        };
        tracing::warn!(queue_id = %queue_id, client = %client, milter = %milter, action = %"quarantine", reason = %reason, relayed_held = held, "quarantined");
    }

    /// Apply a milter's envelope changes: sender, then added recipients
    /// (routed like RCPT, relaying allowed: the milter is the operator's),
    /// then removed ones. An address that does not parse or route is
    /// logged and left out.
    fn edit_envelope(&self, envelope: &mut Envelope, edited: &Edited, milter: &str) {
        if let Some(sender) = &edited.sender {
            if sender.is_empty() {
                envelope.sender = ReversePath::Null;
            } else {
                match parse_mailbox(sender.as_bytes()) {
                    Ok(a) => envelope.sender = ReversePath::Mailbox(a),
                    Err(e) => {
                        tracing::warn!(milter = %milter, sender = %sender, error = %e, "milter's new sender ignored")
                    }
                }
            }
        }
        for rcpt in &edited.add_rcpts {
            let address = match parse_mailbox(rcpt.as_bytes()) {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(milter = %milter, to = %rcpt, error = %e, "milter's added recipient ignored");
                    continue;
                }
            };
            let text = address.to_string();
            if envelope.recipients.iter().any(|r| r.address.to_string().eq_ignore_ascii_case(&text)) {
                continue;
            }
            match self.milter_route(&address) {
                Some(decision) => {
                    envelope.recipients.push(AcceptedRecipient { address, decision, dsn: Default::default() })
                }
                None => {
                    tracing::warn!(milter = %milter, to = %text, "milter's added recipient is no local user: ignored")
                }
            }
        }
        for rcpt in &edited.del_rcpts {
            envelope.recipients.retain(|r| !r.address.to_string().eq_ignore_ascii_case(rcpt));
        }
    }

    fn milter_route(&self, address: &Address) -> Option<RcptDecision> {
        let config = self.config();
        let users = self.users();
        let text = address.to_string();
        match config.address_map.resolve(&text, &|a| users.contains(a)) {
            Resolution::Targets(targets) => match targets.as_slice() {
                [Target::Local { address, user }] if address.eq_ignore_ascii_case(&text) => {
                    Some(RcptDecision::Local { user: user.clone() })
                }
                _ => Some(RcptDecision::Expanded { targets }),
            },
            Resolution::NotLocal => Some(RcptDecision::Remote { domain: address.domain.clone() }),
            Resolution::Unknown | Resolution::Failed(_) => None,
        }
    }
}

/// What a milter is told: the session and `message` (moved in; taken
/// back from the conversation afterwards).
fn conversation(config: &Config, peer: SocketAddr, envelope: &Envelope, message: Vec<u8>) -> Conversation {
    // An IPv4 client on a dual-stack socket is shown as IPv4.
    let ip = match peer.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer.ip(), IpAddr::V4),
        v4 => v4,
    };
    Conversation {
        hostname: config.hostname.clone(),
        client_addr: ip,
        client_port: peer.port(),
        // No reverse lookup is made yet: Postfix's spelling for unknown.
        client_name: format!("[{ip}]"),
        helo: envelope.helo.clone(),
        sender: match &envelope.sender {
            ReversePath::Null => String::new(),
            ReversePath::Mailbox(a) => a.to_string(),
        },
        recipients: envelope.recipients.iter().map(|r| r.address.to_string()).collect(),
        auth_user: envelope.auth_user.clone(),
        message,
    }
}
