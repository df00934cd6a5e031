//! Request/reply and one-way sends over glommio's channel mesh.
//!
//! Owns: this core's senders to every other core and the table of requests
//! waiting for a reply. Must not await a send from the receive loop (two
//! cores blocked on each other's full channels would deadlock); replies are
//! sent from spawned tasks.

use super::msg::{Reply, Request, ShardMsg};
use futures_channel::oneshot;
use glommio::channels::channel_mesh::Senders;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// Why a cross-core call failed. Only happens at shutdown, when a peer's
/// channel is closed.
#[derive(Debug, thiserror::Error)]
#[error("core {to} is not reachable (shutting down?)")]
pub struct PeerGone {
    pub to: usize,
}

pub struct Mesh {
    me: usize,
    senders: Senders<ShardMsg>,
    waiting: RefCell<HashMap<u64, oneshot::Sender<Reply>>>,
    next_id: Cell<u64>,
}

impl Mesh {
    pub fn new(me: usize, senders: Senders<ShardMsg>) -> Mesh {
        Mesh { me, senders, waiting: RefCell::new(HashMap::new()), next_id: Cell::new(0) }
    }

    /// Send a one-way message to core `to` (never this core: callers take
    /// the local fast path themselves). Waits only while the channel is full.
    pub async fn send(&self, to: usize, msg: ShardMsg) -> Result<(), PeerGone> {
        debug_assert_ne!(to, self.me, "local work must not go through the mesh");
        self.senders.send_to(to, msg).await.map_err(|_| PeerGone { to })
    }

    /// Ask core `to` to do `req` and wait for its reply.
    pub async fn call(&self, to: usize, req: Request) -> Result<Reply, PeerGone> {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (tx, rx) = oneshot::channel();
        self.waiting.borrow_mut().insert(id, tx);
        if self.send(to, ShardMsg::Request { from: self.me, id, req }).await.is_err() {
            self.waiting.borrow_mut().remove(&id);
            return Err(PeerGone { to });
        }
        rx.await.map_err(|_| PeerGone { to })
    }

    /// A reply arrived: hand it to the waiting caller (if it still waits).
    pub fn complete(&self, id: u64, reply: Reply) {
        if let Some(tx) = self.waiting.borrow_mut().remove(&id) {
            let _ = tx.send(reply);
        }
    }
}
