//! One-way sends over glommio's channel mesh.
//!
//! Owns: this core's senders to every other core. A request travels as
//! one of these sends and carries its own answer channel
//! ([`Answer`](super::msg::Answer)), so there is no table of waiting
//! callers. Must not await a send from the receive loop (two cores blocked
//! on each other's full channels would deadlock); requests are served in
//! spawned tasks.

use super::msg::ShardMsg;
use glommio::channels::channel_mesh::Senders;

/// Why a cross-core call failed. Only happens at shutdown, when a peer's
/// channel is closed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("core {to} is not reachable (shutting down?)")]
pub struct PeerGone {
    pub to: usize,
}

pub struct Mesh {
    me: usize,
    senders: Senders<ShardMsg>,
}

impl Mesh {
    pub fn new(me: usize, senders: Senders<ShardMsg>) -> Mesh {
        Mesh { me, senders }
    }

    /// Send a one-way message to core `to` (never this core: callers take
    /// the local fast path themselves). Waits only while the channel is full.
    pub async fn send(&self, to: usize, msg: ShardMsg) -> Result<(), PeerGone> {
        debug_assert_ne!(to, self.me, "local work must not go through the mesh");
        self.senders.send_to(to, msg).await.map_err(|_| PeerGone { to })
    }
}
