//! Lending: a hot destination served by more than one core.
//!
//! A destination's mail is queued on the core that owns its domain
//! (`shard::owner`), and that core's connections carry it. One big
//! destination (a mailbox provider with a third of an ISP's mail) would
//! then be relayed, and signed, by one core however many the server has.
//! So when the destination has more than `relay.lend_after` shares ready
//! on its owner core, and another core's active window (shares ready or in
//! flight, all destinations) is at most half the size of the owner's, the
//! owner lends it a batch (the newest half of the ready list, at most
//! [`MAX_LOAN`]; at most one loan per [`SPACING`]). The borrower queues
//! them like its own mail and relays them over its own connections,
//! signing, pipelining and settling outcomes as for any share; a share
//! deferred there retries there (its state record says when, whichever
//! core writes it), and at the next start every share is back with its
//! domain's owner, since recovery rebuilds the queues from the spool.
//! Loans stop once the windows are within a factor of two: the borrower's
//! window grows by what it was lent.
//!
//! Why the backlog and the windows, not CPU time: a core that cannot keep
//! up may be busy on its executor or on its signing thread (RSA keys), and
//! either way its ready list grows; the window sizes say which core has
//! the less work waiting, without a clock.
//!
//! Why the shares move rather than their outcomes coming back: one queue
//! holds a share at any time, so it is neither sent twice nor lost between
//! cores (a loan the mesh cannot deliver is in the spool and queued again
//! at the next start, as any hand-off), and the borrower's outbound stage
//! needs nothing new.
//!
//! Limits hold: a site's connections, rates and backoff are kept in the
//! server-wide site table ([`super::sites`]), which the borrower's
//! connections ask like the owner's. Since the owner alone may open as
//! many connections as the site allows, it opens at most half of them to a
//! destination it lent within the last [`YIELD`], so that the borrower's
//! connections get the rest as the owner's close (after their deliveries,
//! or idle). A destination held back by its site (suspended or paced) is
//! not lent: the site holds it back for every core. Mail lent is not lent
//! again (only the domain's owner lends).

use crate::clock::now_ms;
use crate::queue::Dest;
use crate::shard::{owner, Shard, ShardMsg};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The most shares one loan moves.
pub const MAX_LOAN: usize = 1024;

/// The least time between two loans of one core.
pub const SPACING: Duration = Duration::from_millis(100);

/// How long after a loan its destination's owner keeps to half of the
/// connections it may open.
pub const YIELD: Duration = Duration::from_secs(1);

/// The size of every core's active window, for the whole server (atomics
/// read without locks: two loans decided at the same moment may both go
/// to the same core, which the next loan's reading corrects).
#[derive(Debug)]
pub struct CoreLoads {
    active: Box<[AtomicUsize]>,
}

impl CoreLoads {
    pub fn new(cores: usize) -> CoreLoads {
        CoreLoads { active: (0..cores.max(1)).map(|_| AtomicUsize::new(0)).collect() }
    }

    fn set(&self, core: usize, active: usize) {
        self.active[core].store(active, Ordering::Relaxed);
    }

    fn get(&self, core: usize) -> usize {
        self.active[core].load(Ordering::Relaxed)
    }

    /// The other core than `me` with the smallest window, and its size.
    fn least_loaded_other(&self, me: usize) -> Option<(usize, usize)> {
        (0..self.active.len()).filter(|&c| c != me).map(|c| (c, self.get(c))).min_by_key(|&(_, n)| n)
    }
}

/// One core's side of lending (never shared between cores).
#[derive(Default)]
pub struct Lender {
    /// When this core last lent (ms since the epoch).
    last_ms: Cell<u64>,
    /// Destinations lent lately, and until when (ms) their connections
    /// here keep to half.
    yielding: RefCell<HashMap<Dest, u64>>,
}

impl Lender {
    /// The connections this core may open to `dest`, of the `max` its
    /// limits allow: half (rounded up) while it yields to a borrower.
    pub fn connections(&self, dest: &Dest, max: usize, now_ms: u64) -> usize {
        let mut yielding = self.yielding.borrow_mut();
        match yielding.get(dest) {
            Some(&until) if until > now_ms => max.div_ceil(2),
            Some(_) => {
                yielding.remove(dest);
                max
            }
            None => max,
        }
    }
}

/// How many of `ready` shares a core whose window holds `mine` lends to
/// one whose window holds `theirs`, with `relay.lend_after` = `after`;
/// None: it keeps them.
pub fn loan_size(ready: usize, after: usize, mine: usize, theirs: usize) -> Option<usize> {
    let hot = after > 0 && ready > after;
    let room = theirs.saturating_mul(2) <= mine;
    (hot && room).then(|| (ready / 2).clamp(1, MAX_LOAN))
}

impl Shard {
    /// Publish this core's window size (the relay timer's tick; every
    /// lending decision does it too).
    pub(super) fn note_window(&self) {
        self.outbound.loads.set(self.id, self.queue.borrow().active());
    }

    /// Lend part of `dest`'s ready mail to the core with the smallest
    /// window when this core owns `dest` and has a backlog for it (the
    /// module doc). Publishes this core's window size first.
    pub(super) fn lend_if_hot(self: &Rc<Self>, dest: &Dest) {
        let loads = &self.outbound.loads;
        let (ready, mine) = {
            let queue = self.queue.borrow();
            (queue.ready_len(dest), queue.active())
        };
        loads.set(self.id, mine);
        let relay = &self.config().relay;
        if self.cores < 2 || relay.lend_after == 0 || ready <= relay.lend_after {
            return;
        }
        let now = now_ms();
        let lender = &self.outbound.lender;
        if now.saturating_sub(lender.last_ms.get()) < SPACING.as_millis() as u64
            || owner::domain_owner(&dest.domain, self.cores) != self.id
            || self.outbound.is_parked(dest, now)
        {
            return;
        }
        let Some((to, theirs)) = loads.least_loaded_other(self.id) else { return };
        let Some(n) = loan_size(ready, relay.lend_after, mine, theirs) else { return };
        let lent = self.queue.borrow_mut().lend(dest, n, &self.envelopes());
        if lent.is_empty() {
            return;
        }
        lender.last_ms.set(now);
        self.metrics.lent(lent.len() as u64);
        lender.yielding.borrow_mut().insert(dest.clone(), now + YIELD.as_millis() as u64);
        // Counted there at once, for the next loan's reading.
        loads.set(to, theirs + lent.len());
        tracing::info!(domain = %dest, messages = lent.len(), to_core = to, window = mine, their_window = theirs, "lent ready mail to a less busy core");
        let me = self.clone();
        glommio::spawn_local(async move {
            if me.mesh.send(to, ShardMsg::Lend(lent)).await.is_err() {
                // Durable: queued again from the spool at the next start.
                tracing::warn!(core = me.id, to, "lending failed: peer gone");
            }
        })
        .detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_destination_with_a_backlog_is_lent_to_a_core_with_half_the_window() {
        // 4,000 ready, lend after 500, windows of 5,000 and 1,000.
        assert_eq!(loan_size(4000, 500, 5000, 1000), Some(MAX_LOAN), "at most MAX_LOAN");
        assert_eq!(loan_size(400, 300, 5000, 1000), Some(200), "the newest half");
        assert_eq!(loan_size(500, 500, 5000, 1000), None, "not more than lend_after ready");
        assert_eq!(loan_size(2000, 500, 5000, 2501), None, "the other window is more than half as big");
        assert_eq!(loan_size(2000, 500, 5000, 2500), Some(1000));
        assert_eq!(loan_size(2000, 0, 5000, 0), None, "lend_after = 0: never");
        assert_eq!(loan_size(3, 1, 3, 0), Some(1));
    }

    #[test]
    fn a_lent_destination_keeps_to_half_its_connections_for_a_while() {
        let lender = Lender::default();
        let dest = Dest { domain: "hot.test".into(), pool: None };
        assert_eq!(lender.connections(&dest, 20, 0), 20);
        lender.yielding.borrow_mut().insert(dest.clone(), 1_000);
        assert_eq!(lender.connections(&dest, 20, 999), 10);
        assert_eq!(lender.connections(&dest, 3, 999), 2);
        assert_eq!(lender.connections(&dest, 1, 999), 1);
        assert_eq!(lender.connections(&dest, 20, 1_000), 20, "over: all of them again");
        assert!(lender.yielding.borrow().is_empty());
    }

    #[test]
    fn the_other_core_with_the_smallest_window_is_chosen() {
        let loads = CoreLoads::new(3);
        loads.set(0, 100);
        loads.set(1, 700);
        loads.set(2, 300);
        assert_eq!(loads.least_loaded_other(0), Some((2, 300)));
        assert_eq!(loads.least_loaded_other(2), Some((0, 100)));
        assert_eq!(CoreLoads::new(1).least_loaded_other(0), None);
    }
}
