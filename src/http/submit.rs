//! Injected messages into the spool: the same way in as an authenticated
//! SMTP submission. Recipients are decided as for an authenticated client
//! (`smtp_driver::recipient_decision`: any domain may be relayed to),
//! milters run as they do for authenticated mail, and each message goes
//! through [`Shard::filter_and_accept`] (spool append, group-commit sync,
//! then routing). [`inject`] returns only after every message's sync:
//! the same durability as a 250 after DATA.

use super::inject::{self, InjectError, InjectRequest};
use crate::net::smtp_driver::recipient_decision;
use crate::proto::smtp::{AcceptedRecipient, Envelope, RcptDecision, ReversePath, StoreOutcome};
use crate::shard::intake::Arrival;
use crate::shard::Shard;
use serde::Serialize;
use std::net::SocketAddr;
use std::rc::Rc;

/// The `auth_user` injected mail carries (the Received field says ESMTPA;
/// the log's `message accepted` line has the client address).
pub const AUTH_USER: &str = "http-api";

/// What the reply lists: each recipient, in request order, with its
/// queue id or why it was refused.
#[derive(Debug, Serialize)]
pub struct InjectReply {
    pub success_count: usize,
    pub fail_count: usize,
    pub recipients: Vec<RecipientResult>,
}

#[derive(Debug, Serialize)]
pub struct RecipientResult {
    pub email: String,
    /// The queue id of the stored message (null when refused).
    pub queue_id: Option<String>,
    /// Why it was refused (null when stored).
    pub error: Option<String>,
    /// A refusal that may pass later (spool full, a milter's tempfail).
    pub temporary: bool,
}

/// Why the whole request was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Invalid(#[from] InjectError),
    #[error("the spool is full; try again later")]
    SpoolFull,
}

/// Store the messages of `req` from `client`; the reply once every stored
/// message is durable.
pub async fn inject(
    shard: &Rc<Shard>,
    client: SocketAddr,
    tls: bool,
    req: InjectRequest,
) -> Result<InjectReply, SubmitError> {
    let config = shard.config();
    let checked = inject::check(&req, config.limits.max_recipients)?;
    if shard.spool_full.get() || !shard.spool.has_spare() {
        return Err(SubmitError::SpoolFull);
    }
    let unique = format!("{:x}.{:x}", crate::clock::now_ms(), rand::random::<u64>());
    let messages = inject::build(&req, &config.hostname, &unique)?;
    let max = usize::try_from(config.max_message_size).unwrap_or(usize::MAX);
    if let Some(big) = messages.iter().find(|m| m.body.len() > max) {
        let reason = format!("a message of {} bytes is larger than max_message_size ({max})", big.body.len());
        return Err(InjectError::Field { field: "content".into(), reason }.into());
    }
    let mut results: Vec<RecipientResult> = req
        .recipients
        .iter()
        .map(|r| RecipientResult { email: r.email.trim().to_string(), queue_id: None, error: None, temporary: false })
        .collect();
    let decisions: Vec<RcptDecision> =
        checked.recipients.iter().map(|a| recipient_decision(shard, client.ip(), a, true)).collect();
    let utf8_sender = matches!(&checked.sender, ReversePath::Mailbox(a) if !a.local.is_ascii());
    let mut stores = Vec::new();
    for m in messages {
        let mut accepted = Vec::new();
        for &i in &m.recipients {
            match refusal(&decisions[i]) {
                Some((why, temporary)) => {
                    results[i].error = Some(why);
                    results[i].temporary = temporary;
                }
                None => accepted.push(AcceptedRecipient {
                    address: checked.recipients[i].clone(),
                    decision: decisions[i].clone(),
                    dsn: Default::default(),
                }),
            }
        }
        if accepted.is_empty() {
            continue;
        }
        let envelope = Envelope {
            helo: AUTH_USER.into(),
            esmtp: true,
            sender: checked.sender.clone(),
            smtputf8: utf8_sender || accepted.iter().any(|r| !r.address.local.is_ascii()),
            recipients: accepted,
            body_8bit: !m.body.is_ascii(),
            binarymime: false,
            requiretls: false,
            auth_user: Some(AUTH_USER.into()),
            ret: None,
            envid: None,
        };
        let shard = shard.clone();
        let arrival = Arrival { tls, submission: true };
        // Each message waits for its own sync; spawned together, one group
        // commit covers them all.
        let task = glommio::spawn_local(async move {
            let mut live = crate::shard::filter_live::LiveFilters::none(&shard, client.ip());
            shard.filter_and_accept(client, false, arrival, envelope, m.body, None, &mut live).await
        });
        stores.push((m.recipients, task));
    }
    for (indexes, task) in stores {
        let outcome = task.await;
        for i in indexes {
            if results[i].error.is_some() {
                continue; // refused at its decision
            }
            match &outcome {
                StoreOutcome::Stored { queue_id } => results[i].queue_id = Some(queue_id.clone()),
                other => {
                    let (why, temporary) = store_refusal(other);
                    results[i].error = Some(why);
                    results[i].temporary = temporary;
                }
            }
        }
    }
    let success_count = results.iter().filter(|r| r.queue_id.is_some()).count();
    Ok(InjectReply { success_count, fail_count: results.len() - success_count, recipients: results })
}

/// Why a recipient decision refuses (with whether it may pass later);
/// None for an accepted one.
fn refusal(d: &RcptDecision) -> Option<(String, bool)> {
    match d {
        RcptDecision::Local { .. } | RcptDecision::Remote { .. } | RcptDecision::Expanded { .. } => None,
        RcptDecision::AliasFailed { reason } => Some((format!("alias expansion failed: {reason}"), true)),
        RcptDecision::UnknownUser => Some(("no such user here".into(), false)),
        RcptDecision::RelayDenied => Some(("relay access denied".into(), false)),
        RcptDecision::MailboxFull => Some(("mailbox full".into(), true)),
        RcptDecision::Suppressed { since } => Some((format!("suppressed since {since} (it hard-bounced)"), false)),
    }
}

/// Why a message was not stored (with whether it may pass later).
fn store_refusal(outcome: &StoreOutcome) -> (String, bool) {
    use crate::proto::smtp::FilterRefusal;
    match outcome {
        StoreOutcome::Stored { .. } => (String::new(), false),
        StoreOutcome::TempFailure => ("the message could not be stored; try again later".into(), true),
        StoreOutcome::SpoolFull => ("the spool is full; try again later".into(), true),
        StoreOutcome::PolicyRejected { text } => (text.clone(), false),
        StoreOutcome::Filtered(FilterRefusal::Rejected) => ("rejected by a content filter".into(), false),
        StoreOutcome::Filtered(FilterRefusal::TempFailed | FilterRefusal::Unavailable) => {
            ("a content filter refused it for now; try again later".into(), true)
        }
        StoreOutcome::Filtered(FilterRefusal::Reply { code, text }) => (format!("{code} {text}"), *code < 500),
    }
}
