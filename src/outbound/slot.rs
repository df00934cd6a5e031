//! A connection slot to one destination: the count the queue keeps against
//! `relay.max_connections_per_domain`, taken when a connection task is
//! spawned and given back when the task ends, however it ends.
//!
//! Owns the release: the slot is returned by `Drop`, so a connection task
//! that is dropped before it finishes (the executor stopping, a panic
//! unwinding) cannot leave its destination counted as busy. It must not
//! open connections or decide how many there may be; the queue decides
//! (`QueueShard::open_connection`).

use crate::queue::Dest;
use crate::shard::Shard;
use std::rc::Rc;

/// One taken connection slot; returned to the queue when dropped.
pub(super) struct ConnectionSlot {
    shard: Rc<Shard>,
    dest: Dest,
}

impl ConnectionSlot {
    /// Take a slot for `domain` if the queue has ready mail for it and
    /// fewer than `max` connections; `None` otherwise.
    pub(super) fn take(shard: &Rc<Shard>, dest: &Dest, max: usize) -> Option<ConnectionSlot> {
        shard
            .queue
            .borrow_mut()
            .open_connection(dest, max)
            .then(|| ConnectionSlot { shard: shard.clone(), dest: dest.clone() })
    }

    /// The destination this slot counts against.
    pub(super) fn dest(&self) -> &Dest {
        &self.dest
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        // The queue is borrowed here only if a panic unwound out of a borrow
        // in the connection task; a second panic in `drop` would abort, so
        // the slot is reported lost instead.
        match self.shard.queue.try_borrow_mut() {
            Ok(mut queue) => {
                queue.close_connection(&self.dest);
                if !queue.knows(&self.dest) {
                    self.shard.outbound.forget_dest(&self.dest);
                }
            }
            Err(_) => {
                tracing::error!(dest = %self.dest, "connection slot not returned: queue busy while unwinding")
            }
        }
    }
}
