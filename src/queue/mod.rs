//! Relay queue shards: per destination domain, the recipients waiting to be
//! relayed.
//!
//! Owns: the in-memory queue for the domains hashed to this core. Pure: no
//! I/O, no clock. Recipients arrive here only after their message record is
//! durable, and the queue is rebuilt from the spool on start, so it never
//! holds the only copy of anything. Delivery (MX lookup, the SMTP client,
//! retries and bounces) is the relay issue; until then recipients wait here.

use crate::spool::{QueueId, SpoolRef};
use std::collections::{HashMap, VecDeque};

/// One recipient of one message, waiting for relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRecipient {
    pub at: SpoolRef,
    pub queue_id: QueueId,
    /// Index among the message's recipients (names it in state records).
    pub recipient: u16,
    pub address: String,
}

/// The queue shard of one core.
#[derive(Debug, Default)]
pub struct QueueShard {
    ready: HashMap<String, VecDeque<QueuedRecipient>>,
    len: usize,
}

impl QueueShard {
    /// Queue `item` for `domain` (lower-case).
    pub fn enqueue(&mut self, domain: &str, item: QueuedRecipient) {
        self.ready.entry(domain.to_string()).or_default().push_back(item);
        self.len += 1;
    }

    /// Recipients queued on this core.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Recipients queued for `domain`, oldest first.
    pub fn for_domain(&self, domain: &str) -> impl Iterator<Item = &QueuedRecipient> {
        self.ready.get(domain).into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enqueue_keeps_per_domain_order_and_count() {
        let mut q = QueueShard::default();
        for n in 0..3u32 {
            q.enqueue(
                "remote.test",
                QueuedRecipient {
                    at: SpoolRef { dir: 0, segment: 0, offset: n * 8 },
                    queue_id: QueueId(n as u64),
                    recipient: 0,
                    address: format!("u{n}@remote.test"),
                },
            );
        }
        assert_eq!(q.len(), 3);
        let order: Vec<_> = q.for_domain("remote.test").map(|r| r.queue_id.0).collect();
        assert_eq!(order, vec![0, 1, 2]);
        assert_eq!(q.for_domain("other.test").count(), 0);
    }
}
