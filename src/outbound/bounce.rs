//! Bounces and delay notices: RFC 3464 DSNs to the original sender, sent
//! through the same spool and queue as any mail (a local sender gets it in
//! the mailbox), with the null sender. A bounce is never bounced: when the
//! failed message itself had the null sender, the DSN is dropped and logged.

use crate::outbound::classify::BounceClass;
use crate::outbound::dsn::{build_dsn, Action, DsnInput, FailedRecipient};
use crate::queue::{PendingRecipient, QueuedMessage};
use crate::shard::intake::NewMessage;
use crate::shard::Shard;
use crate::spool::{Outcome, RecipientEntry, Route};
use std::rc::Rc;

/// A failed recipient: who, RFC 3463 status, diagnostic text, and (for a
/// bounce) why it failed for good.
pub type Failure = (PendingRecipient, String, String, Option<BounceClass>);

impl Shard {
    /// Bounce `failed` recipients of `msg`: a DSN to the sender, then
    /// tombstones so the message can leave the spool. `ctx` carries the
    /// remote host and the original header section when the caller has
    /// them; otherwise the headers are read from the spool.
    pub(crate) fn bounce(
        self: &Rc<Self>,
        msg: QueuedMessage,
        failed: Vec<Failure>,
        ctx: Option<(Option<String>, Vec<u8>)>,
        action: Action,
    ) {
        let me = self.clone();
        let busy = crate::shard::Background::new(self);
        glommio::spawn_local(async move {
            let _busy = busy;
            let settle: Vec<_> = failed.iter().map(|(r, ..)| (msg.at, r.index, Outcome::Bounced)).collect();
            me.send_dsn(&msg, &failed, ctx, action).await;
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
            me.send_dsn(&msg, &failed, None, Action::Delayed).await
        })
        .detach();
    }

    async fn send_dsn(
        self: &Rc<Self>,
        msg: &QueuedMessage,
        failed: &[Failure],
        ctx: Option<(Option<String>, Vec<u8>)>,
        action: Action,
    ) {
        if msg.sender.is_empty() {
            tracing::warn!(queue_id = %msg.queue_id, "bounce of a bounce dropped (null sender)");
            return;
        }
        let (remote_mta, headers) = match ctx {
            Some((relay, headers)) => (relay, headers),
            None => (None, self.header_section_of(msg)),
        };
        let now = crate::clock::now_ms();
        let recipients: Vec<FailedRecipient> = failed
            .iter()
            .map(|(r, status, diagnostic, class)| FailedRecipient {
                address: r.address.clone(),
                status: status.clone(),
                action,
                remote_mta: remote_mta.clone(),
                diagnostic: Some(diagnostic.clone()),
                last_attempt_ms: Some(now),
                class: *class,
            })
            .collect();
        let queue_id = msg.queue_id.to_string();
        let dsn = build_dsn(&DsnInput {
            reporting_mta: &self.config().hostname,
            original_queue_id: &queue_id,
            original_sender: &msg.sender,
            arrival_ms: msg.arrived_ms,
            now_ms: now,
            recipients: &recipients,
            original_message: &headers,
            boundary_seed: msg.queue_id.0 ^ now,
        });
        let Some(route) = self.route_for(&msg.sender) else {
            tracing::warn!(queue_id = %msg.queue_id, to = %msg.sender, "bounce dropped: sender is an unknown local user");
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
            recipients: vec![RecipientEntry::new(msg.sender.clone(), route)],
            ext: crate::spool::MessageExt::default(),
            body: &[trace.as_bytes(), &dsn],
        };
        match self.store_and_route(new).await {
            Ok(()) => {
                tracing::info!(queue_id = %msg.queue_id, dsn = %dsn_id, to = %msg.sender, action = ?action, "sender notified")
            }
            Err(e) => tracing::error!(queue_id = %msg.queue_id, error = %e, "could not store the DSN"),
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

    fn header_section_of(&self, msg: &QueuedMessage) -> Vec<u8> {
        let Ok(view) = self.maps.borrow_mut().record(self.resolve(msg.at)) else { return Vec::new() };
        match view.message() {
            Ok(r) => {
                let body = r.body;
                let end = body.windows(4).position(|w| w == b"\r\n\r\n").map_or(body.len(), |p| p + 4);
                body[..end.min(64 * 1024)].to_vec()
            }
            Err(_) => Vec::new(),
        }
    }
}
