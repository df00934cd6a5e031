//! Sender authentication of mail arriving for local mailboxes: the
//! session hands the message here between DATA and the spool.
//!
//! Checked: mail from clients that are neither authenticated nor in
//! `relay.permit_relay_from` (ours are not checked) with at least one local
//! recipient. Such a client can only reach local mailboxes (no open relay),
//! so the verdict is about everyone the message is for.

use super::Shard;
use crate::proto::smtp::{Envelope, RcptDecision, ReversePath};
use crate::sender_auth::{headers, Checks, Job};
use std::net::IpAddr;
use std::sync::Arc;

/// What to do with a message after the checks.
pub enum Checked {
    /// Store `body` with `auth_results` (the Authentication-Results field,
    /// if the message was checked) put on top.
    Store { body: Vec<u8>, auth_results: Option<String>, summary: Option<String> },
    /// Refuse it: 550 5.7.1 with this text; nothing is stored.
    Refuse { text: String, summary: String },
}

impl Shard {
    /// Run the `[verify]` checks on a message if it is one to check;
    /// forged Authentication-Results fields naming our hostname are removed
    /// from every such message (RFC 8601 §5), checks on or off.
    pub async fn check_inbound(&self, client: IpAddr, exempt: bool, envelope: &Envelope, body: Vec<u8>) -> Checked {
        let local = envelope.recipients.iter().any(|r| match &r.decision {
            RcptDecision::Local { .. } => true,
            RcptDecision::Expanded { targets } => {
                targets.iter().any(|t| matches!(t, crate::address_map::Target::Local { .. }))
            }
            _ => false,
        });
        if exempt || envelope.auth_user.is_some() || !local {
            return Checked::Store { body, auth_results: None, summary: None };
        }
        let config = self.config();
        let body = headers::without_forged_results(&body, &config.hostname).unwrap_or(body);
        if !config.verify.any() {
            return Checked::Store { body, auth_results: None, summary: None };
        }
        let message = Arc::new(body);
        let job = Job {
            client: unmapped(client),
            helo: envelope.helo.clone(),
            mail_from: match &envelope.sender {
                ReversePath::Null => String::new(),
                ReversePath::Mailbox(a) => a.to_string(),
            },
            hostname: config.hostname.clone(),
            message: message.clone(),
            checks: Checks::from_config(&config.verify),
        };
        let verdict = self.verifier.check(job).await;
        match verdict.reject {
            Some(text) => Checked::Refuse { text, summary: verdict.summary },
            None => {
                // The thread is done with its copy unless it timed out.
                let body = Arc::try_unwrap(message).unwrap_or_else(|shared| Vec::clone(&shared));
                Checked::Store { body, auth_results: Some(verdict.header), summary: Some(verdict.summary) }
            }
        }
    }
}

/// An IPv4 client on a dual-stack socket as its IPv4 address (SPF matches
/// `ip4:` mechanisms against it).
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
