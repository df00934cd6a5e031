//! Mail already queued to a recipient that was suppressed since (it
//! hard-bounced, or the operator added it) is not sent: at dispatch each
//! such recipient bounces at once, with the class of its suppression.

use super::classify::BounceClass;
use crate::metrics::RelayResult;
use crate::outbound::dsn::Action as DsnAction;
use crate::queue::{Key, QueuedMessage};
use crate::shard::Shard;
use std::rc::Rc;

impl Shard {
    /// `msg` without its suppressed recipients, which are bounced; `None`
    /// (and the message finished in the queue) when none is left to send.
    pub(super) fn without_suppressed(
        self: &Rc<Self>,
        key: Key,
        mut msg: QueuedMessage,
    ) -> Option<(Key, QueuedMessage)> {
        let now = crate::clock::now_ms();
        let (failed, keep): (Vec<_>, Vec<_>) = {
            let list = self.suppressions.borrow();
            if list.is_empty() {
                return Some((key, msg));
            }
            msg.recipients.drain(..).partition(|r| list.active(&r.address, now).is_some())
        };
        msg.recipients = keep;
        if failed.is_empty() {
            return Some((key, msg));
        }
        let mut bounced = Vec::with_capacity(failed.len());
        for r in failed {
            let (since, class) = {
                let list = self.suppressions.borrow();
                let entry = list.get(&r.address);
                let since = entry.map_or(now, |e| e.since_ms);
                let class = entry.and_then(|e| BounceClass::parse(&e.class)).unwrap_or(BounceClass::InvalidRecipient);
                (since, class)
            };
            let text = format!("recipient suppressed (hard bounce on {})", crate::admin::format_time(since));
            tracing::info!(queue_id = %msg.queue_id, to = %r.address, relay = "none", status = "bounced", dsn = "5.1.1", class = %class, reason = %text, "suppressed");
            self.metrics.relay(RelayResult::Bounced, None, 0);
            self.metrics.bounce(class);
            bounced.push((r, "5.1.1".to_string(), format!("X-Ringmail; {text}"), Some(class)));
        }
        let mut notice = msg.clone();
        notice.last_error = None;
        self.bounce(notice, bounced, None, DsnAction::Failed);
        if msg.recipients.is_empty() {
            self.queue.borrow_mut().finish(key);
            return None;
        }
        Some((key, msg))
    }
}
