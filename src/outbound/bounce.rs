//! Bounces, delay and success notices: RFC 3464 DSNs to the original
//! sender, sent through the same spool and queue as any mail (a local
//! sender gets it in the mailbox), with the null sender. Each recipient's
//! `NOTIFY` decides whether it is listed (RFC 3461 §4.1); `RET`, `ENVID`
//! and `ORCPT` shape the notice. A bounce is never bounced: when the
//! failed message itself had the null sender, the DSN is dropped and logged.

use crate::outbound::classify::BounceClass;
use crate::outbound::dsn::{build_dsn, Action, DsnInput, NoticeRecipient, MAX_RETURNED_HEADERS, MAX_RETURNED_MESSAGE};
use crate::queue::{PendingRecipient, QueuedMessage};
use crate::shard::intake::NewMessage;
use crate::shard::{Settled, Shard};
use crate::spool::{DsnRet, Outcome, QueueId, RecipientDsn, RecipientEntry, Route, SpoolRef};
use std::rc::Rc;

/// A failed recipient: who, RFC 3463 status, diagnostic text, and (for a
/// bounce) why it failed for good.
pub type Failure = (PendingRecipient, String, String, Option<BounceClass>);

impl Shard {
    /// Bounce `failed` recipients of `msg`: a DSN to the sender (unless
    /// their `NOTIFY` declines it), then tombstones so the message can
    /// leave the spool. `remote_mta` is the host that refused, when one did.
    pub(crate) fn bounce(
        self: &Rc<Self>,
        msg: QueuedMessage,
        failed: Vec<Failure>,
        remote_mta: Option<String>,
        action: Action,
    ) {
        let me = self.clone();
        let busy = crate::shard::Background::new(self);
        glommio::spawn_local(async move {
            let _busy = busy;
            let settle: Vec<_> = failed.iter().map(|(r, ..)| Settled::new(msg.at, r.index, Outcome::Bounced)).collect();
            me.send_dsn(&About::from(&msg), &failed, remote_mta, action).await;
            if action == Action::Failed {
                me.settle_later(settle);
            }
        })
        .detach();
    }

    /// One delay notice (RFC 3464 Action: delayed); the message stays queued.
    pub(crate) fn delay_notice(self: &Rc<Self>, msg: QueuedMessage, failed: Vec<Failure>) {
        let me = self.clone();
        let busy = crate::shard::Background::new(self);
        glommio::spawn_local(async move {
            let _busy = busy;
            me.send_dsn(&About::from(&msg), &failed, None, Action::Delayed).await
        })
        .detach();
    }

    /// A success notice (`delivered` into a mailbox here, or `relayed` to
    /// a next hop without DSN) for the recipients of `about` that asked
    /// for one with `NOTIFY=SUCCESS`; the others are skipped by `send_dsn`.
    pub(crate) fn success_notice(
        self: &Rc<Self>,
        about: About,
        recipients: Vec<PendingRecipient>,
        remote_mta: Option<String>,
        action: Action,
    ) {
        let me = self.clone();
        let busy = crate::shard::Background::new(self);
        glommio::spawn_local(async move {
            let _busy = busy;
            let done: Vec<Failure> =
                recipients.into_iter().map(|r| (r, "2.0.0".to_string(), String::new(), None)).collect();
            me.send_dsn(&about, &done, remote_mta, action).await
        })
        .detach();
    }

    /// Build and store one notice about `about` for the recipients in
    /// `listed` whose `NOTIFY` asks for `action` (RFC 3461 §4.1: without
    /// `NOTIFY`, failure and delay notices only). `RET`, `ENVID` and each
    /// `ORCPT` come from the message's record in the spool.
    async fn send_dsn(self: &Rc<Self>, about: &About, listed: &[Failure], remote_mta: Option<String>, action: Action) {
        if about.sender.is_empty() {
            if action != Action::Delivered && action != Action::Relayed {
                tracing::warn!(queue_id = %about.queue_id, "bounce of a bounce dropped (null sender)");
            }
            return;
        }
        let Some(original) = self.original_of(about) else {
            tracing::error!(queue_id = %about.queue_id, "no notice: the message is not readable in the spool");
            return;
        };
        let now = crate::clock::now_ms();
        let recipients: Vec<NoticeRecipient> = listed
            .iter()
            .filter_map(|(r, status, diagnostic, class)| {
                let dsn = original.recipients.get(usize::from(r.index)).cloned().unwrap_or_default();
                let wanted = match action {
                    Action::Failed => dsn.notify.wants_failure(),
                    Action::Delayed => dsn.notify.wants_delay(),
                    Action::Delivered | Action::Relayed => dsn.notify.success,
                };
                if !wanted {
                    tracing::info!(queue_id = %about.queue_id, to = %r.address, action = ?action, "no notice: NOTIFY declines it");
                    return None;
                }
                Some(NoticeRecipient {
                    address: r.address.clone(),
                    status: status.clone(),
                    action,
                    remote_mta: remote_mta.clone(),
                    diagnostic: (!diagnostic.is_empty()).then(|| diagnostic.clone()),
                    last_attempt_ms: Some(now),
                    class: *class,
                    original_recipient: dsn.orcpt,
                })
            })
            .collect();
        if recipients.is_empty() {
            return;
        }
        let queue_id = about.queue_id.to_string();
        let dsn = build_dsn(&DsnInput {
            reporting_mta: &self.config().hostname,
            original_queue_id: &queue_id,
            original_sender: &about.sender,
            arrival_ms: about.arrived_ms,
            now_ms: now,
            recipients: &recipients,
            original_message: &original.returned,
            return_full: original.return_full,
            envid: original.envid.as_deref(),
            boundary_seed: about.queue_id.0 ^ now,
        });
        let Some(route) = self.route_for(&about.sender) else {
            tracing::warn!(queue_id = %about.queue_id, to = %about.sender, "notice dropped: sender is an unknown local user");
            return;
        };
        let (dsn_id, received_at) = self.new_queue_id();
        let trace = format!(
            "Received: by {} (ringmail) id {dsn_id}; {}\r\n",
            self.config().hostname,
            crate::outbound::dsn::format_date(received_at.as_millis() as u64)
        );
        let new = NewMessage {
            queue_id: dsn_id,
            received_at,
            client: "127.0.0.1".into(),
            helo: self.config().hostname.clone(),
            sender: String::new(),
            recipients: vec![RecipientEntry::new(about.sender.clone(), route)],
            ext: crate::spool::MessageExt::default(),
            body: &[trace.as_bytes(), &dsn],
            body_tail: Vec::new(),
        };
        match self.store_and_route(new).await {
            Ok(()) => {
                tracing::info!(queue_id = %about.queue_id, dsn = %dsn_id, to = %about.sender, action = ?action, "sender notified")
            }
            Err(e) => tracing::error!(queue_id = %about.queue_id, error = %e, "could not store the DSN"),
        }
    }

    /// Where mail for `address` goes: a local user, or a remote domain.
    /// `None` for an unknown user of a local domain.
    pub(crate) fn route_for(&self, address: &str) -> Option<Route> {
        let (_, domain) = address.rsplit_once('@')?;
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if self.config().is_local_domain(&domain) {
            let user = address.to_ascii_lowercase();
            self.users().contains(&user).then_some(Route::Local { user })
        } else {
            Some(Route::Remote { domain })
        }
    }

    /// What a notice about `about` needs of its message: the part to
    /// return (headers, or all of it for `RET=FULL`), `ENVID` and each
    /// recipient's DSN parameters.
    fn original_of(&self, about: &About) -> Option<Original> {
        let view = self.maps.borrow_mut().record(self.resolve(about.at)).ok()?;
        let r = view.message().ok()?;
        let return_full = r.ext.ret == Some(DsnRet::Full);
        let return_full = return_full && r.body.len() <= MAX_RETURNED_MESSAGE;
        let returned = match return_full {
            true => r.body.to_vec(),
            false => {
                let end = r.body.windows(4).position(|w| w == b"\r\n\r\n").map_or(r.body.len(), |p| p + 4);
                r.body[..end.min(MAX_RETURNED_HEADERS)].to_vec()
            }
        };
        Some(Original {
            returned,
            return_full,
            envid: r.ext.envid,
            recipients: r.recipients.into_iter().map(|e| e.dsn).collect(),
        })
    }
}

/// The message a notice is about.
pub(crate) struct About {
    pub at: SpoolRef,
    pub queue_id: QueueId,
    /// Where the notice goes; `""` (a bounce's own failure) sends none.
    pub sender: String,
    pub arrived_ms: u64,
}

impl From<&QueuedMessage> for About {
    fn from(msg: &QueuedMessage) -> About {
        About { at: msg.at, queue_id: msg.queue_id, sender: msg.sender.clone(), arrived_ms: msg.arrived_ms }
    }
}

/// What [`Shard::original_of`] reads from the spool.
struct Original {
    returned: Vec<u8>,
    return_full: bool,
    envid: Option<String>,
    /// Indexed like the message's recipients.
    recipients: Vec<RecipientDsn>,
}
