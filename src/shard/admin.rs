//! Queue administration (`ringmail queue ...`): operations every core
//! runs on its own queue shard, merged by the core serving the control
//! socket.

use super::{Reply, Request, Shard};
use crate::queue::Key;
use crate::spool::{Outcome, QueueId};
use std::fmt::Write;
use std::rc::Rc;

/// A queue operation, run on every core.
#[derive(Debug, Clone)]
pub enum QueueOp {
    /// One block per queued message share.
    List,
    /// Everything deferred is due now.
    Flush,
    /// Drop the message (its queued recipients are tombstoned, no bounce).
    Delete(QueueId),
    /// Never dispatch until released.
    Hold(QueueId),
    /// Due now.
    Release(QueueId),
}

impl QueueOp {
    /// Parse a control-socket command line.
    pub fn parse(line: &str) -> Result<QueueOp, String> {
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or("").to_ascii_lowercase();
        let id = |w: Option<&str>| -> Result<QueueId, String> {
            let w = w.ok_or_else(|| format!("{verb} needs a queue id"))?;
            w.parse().map_err(|e| format!("bad queue id {w:?}: {e}"))
        };
        match verb.as_str() {
            "list" => Ok(QueueOp::List),
            "flush" => Ok(QueueOp::Flush),
            "delete" => Ok(QueueOp::Delete(id(words.next())?)),
            "hold" => Ok(QueueOp::Hold(id(words.next())?)),
            "release" => Ok(QueueOp::Release(id(words.next())?)),
            other => Err(format!("unknown queue command {other:?}")),
        }
    }
}

impl Shard {
    /// Run `op` on every core and merge the answers into text for the
    /// operator.
    pub async fn queue_admin(self: &Rc<Self>, op: QueueOp) -> String {
        let mut out = String::new();
        let mut count = 0usize;
        for core in 0..self.cores {
            match self.call(core, Request::Queue(op.clone())).await {
                Ok(Reply::Queue { text, count: n }) => {
                    out.push_str(&text);
                    count += n;
                }
                Ok(other) => out.push_str(&format!("core {core}: unexpected reply {other:?}\n")),
                Err(e) => out.push_str(&format!("core {core}: {e}\n")),
            }
        }
        match op {
            QueueOp::List => out.push_str(&format!("-- {count} queued message share(s)\n")),
            QueueOp::Flush => out.push_str(&format!("flushed {count} deferred message share(s)\n")),
            QueueOp::Delete(id) | QueueOp::Hold(id) | QueueOp::Release(id) if count == 0 => {
                out.push_str(&format!("error: no queued message {id}\n"));
            }
            QueueOp::Delete(id) => out.push_str(&format!("deleted {id} ({count} share(s))\n")),
            QueueOp::Hold(id) => out.push_str(&format!("held {id} ({count} share(s))\n")),
            QueueOp::Release(id) => out.push_str(&format!("released {id} ({count} share(s))\n")),
        }
        out
    }

    /// This core's part of `op`: (text, how many shares it touched).
    pub(super) fn queue_op_local(self: &Rc<Self>, op: QueueOp) -> (String, usize) {
        let now = crate::relay::now_ms();
        match op {
            QueueOp::List => {
                let q = self.queue.borrow();
                let mut text = String::new();
                let mut items: Vec<_> = q.iter().collect();
                items.sort_by_key(|(_, m)| (m.arrived_ms, m.queue_id));
                for (_, m) in &items {
                    let state = if m.held {
                        "held".to_string()
                    } else {
                        match m.next_attempt_ms {
                            Some(t) => format!("deferred, next attempt in {}s", t.saturating_sub(now) / 1000),
                            None => "ready".to_string(),
                        }
                    };
                    let sender = if m.sender.is_empty() { "<>" } else { &m.sender };
                    let _ = writeln!(
                        text,
                        "{}  from={}  domain={}  age={}s  attempts={}  {}",
                        m.queue_id,
                        sender,
                        m.domain,
                        now.saturating_sub(m.arrived_ms) / 1000,
                        m.attempts,
                        state
                    );
                    for r in &m.recipients {
                        let _ = writeln!(text, "    to={}", r.address);
                    }
                    if let Some(e) = &m.last_error {
                        let _ = writeln!(text, "    last error: {e}");
                    }
                }
                (text, items.len())
            }
            QueueOp::Flush => (String::new(), self.queue.borrow_mut().flush(now)),
            QueueOp::Delete(id) => {
                let keys = self.queue.borrow().find(id);
                for key in &keys {
                    if let Some(m) = self.queue.borrow_mut().remove(*key) {
                        tracing::info!(queue_id = %m.queue_id, domain = %m.domain, "deleted by the operator");
                        self.settle_later(m.recipients.iter().map(|r| (m.at, r.index, Outcome::Deleted)).collect());
                    }
                }
                (String::new(), keys.len())
            }
            QueueOp::Hold(id) => self.update_each(id, |q, k| q.hold(k)),
            QueueOp::Release(id) => self.update_each(id, |q, k| q.release(k, now)),
        }
    }

    fn update_each(
        self: &Rc<Self>,
        id: QueueId,
        f: impl Fn(&mut crate::queue::QueueShard, Key) -> bool,
    ) -> (String, usize) {
        let keys = self.queue.borrow().find(id);
        let mut n = 0;
        for key in keys {
            if f(&mut self.queue.borrow_mut(), key) {
                self.record_deferral(key);
                n += 1;
            }
        }
        (String::new(), n)
    }
}
