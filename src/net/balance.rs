//! Spreading client sessions evenly over the cores.
//!
//! Every core accepts on its own `SO_REUSEPORT` socket, and the kernel
//! picks the socket by a hash of the connection's addresses and ports. With
//! many sessions that evens out; with few it often does not (four POP3
//! sessions land 3 + 1 or 4 + 0 on two cores more often than 2 + 2), and a
//! session stays on the core that accepted it, so one core works while the
//! other idles. So the accepting core looks at how many sessions of the same
//! protocol each core has open and, when it has more than the least loaded
//! core by more than a small slack, hands the new connection over the mesh
//! before reading a byte from it (see `ShardMsg::Adopt`).
//!
//! Why this and not `SO_ATTACH_REUSEPORT_CBPF` steering: a classic BPF
//! program can steer by the CPU that took the packet or by a hash, neither
//! of which knows how many sessions each core holds; an accept-time
//! decision on the real counts does, and costs one `dup` and one mesh
//! message per handed-over connection (none while the cores are even).
//!
//! The counts are shared atomics, read without locks: two cores deciding at
//! the same moment may both see the same least loaded core, which costs at
//! most a session of imbalance until the next accept.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Session kinds counted apart (one per listener protocol,
/// `net::Protocol::index`).
pub const KINDS: usize = crate::metrics::PROTOCOLS.len();

/// Open sessions per core and kind, for the whole server.
#[derive(Debug)]
pub struct Balancer {
    cores: usize,
    /// `open[core * KINDS + kind]`.
    open: Box<[AtomicU32]>,
}

impl Balancer {
    /// A table for `cores` cores, all empty.
    pub fn new(cores: usize) -> Balancer {
        Balancer { cores, open: (0..cores.max(1) * KINDS).map(|_| AtomicU32::new(0)).collect() }
    }

    /// Where a session of `kind` accepted on core `me` should run, with a
    /// seat counted there at once (so that the next decision, on any core,
    /// sees it). With `balance` off it stays on `me`.
    pub fn place(self: &Arc<Self>, me: usize, kind: usize, balance: bool) -> Seat {
        let core = if balance { self.target(me, kind) } else { me };
        self.cell(core, kind).fetch_add(1, Ordering::Relaxed);
        Seat { balancer: self.clone(), core, kind }
    }

    /// Sessions of `kind` open (or on their way) on `core`.
    pub fn open(&self, core: usize, kind: usize) -> u32 {
        self.cell(core, kind).load(Ordering::Relaxed)
    }

    /// `me`, unless another core has fewer sessions of `kind` by more than
    /// the slack: an eighth of `me`'s (none below eight, so that a handful
    /// of sessions spreads exactly; some above, so that a busy server does
    /// not hand over every other connection for a difference of one).
    fn target(&self, me: usize, kind: usize) -> usize {
        let mine = self.open(me, kind);
        let least = (0..self.cores).filter(|&c| c != me).map(|c| (self.open(c, kind), c)).min();
        match least {
            Some((theirs, core)) if mine > theirs + mine / 8 => core,
            _ => me,
        }
    }

    fn cell(&self, core: usize, kind: usize) -> &AtomicU32 {
        &self.open[core * KINDS + kind]
    }
}

/// One session counted on a core; dropping it (the session ended, or was
/// never started) takes it off the count.
#[derive(Debug)]
pub struct Seat {
    balancer: Arc<Balancer>,
    core: usize,
    kind: usize,
}

impl Seat {
    /// The core the session is to run on.
    pub fn core(&self) -> usize {
        self.core
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.balancer.cell(self.core, self.kind).fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place_n(b: &Arc<Balancer>, me: usize, n: usize) -> Vec<Seat> {
        (0..n).map(|_| b.place(me, 3, true)).collect()
    }

    #[test]
    fn few_sessions_accepted_on_one_core_spread_exactly() {
        let b = Arc::new(Balancer::new(2));
        let seats = place_n(&b, 0, 4);
        assert_eq!((b.open(0, 3), b.open(1, 3)), (2, 2));
        assert_eq!(seats.iter().filter(|s| s.core() == 1).count(), 2);
    }

    #[test]
    fn many_sessions_tolerate_an_eighth_of_imbalance() {
        let b = Arc::new(Balancer::new(2));
        let _seats = place_n(&b, 0, 64);
        let (a, c) = (b.open(0, 3), b.open(1, 3));
        assert_eq!(a + c, 64);
        assert!(a >= c && a - c <= a / 8 + 1, "{a} vs {c}");
        assert!(c >= 28, "most of the imbalance moved: {a} vs {c}");
    }

    #[test]
    fn kinds_are_balanced_apart_and_seats_give_back() {
        let b = Arc::new(Balancer::new(3));
        let smtp = b.place(2, 0, true);
        assert_eq!(smtp.core(), 2, "an empty server keeps the session where it was accepted");
        let pop = b.place(2, 3, true);
        assert_eq!(pop.core(), 2, "another kind's sessions do not count");
        let next = b.place(2, 3, true);
        assert_ne!(next.core(), 2);
        drop((smtp, pop, next));
        assert!((0..3).all(|c| (0..KINDS).all(|k| b.open(c, k) == 0)));
    }

    #[test]
    fn off_keeps_every_session_where_it_was_accepted() {
        let b = Arc::new(Balancer::new(2));
        let seats: Vec<_> = (0..4).map(|_| b.place(1, 3, false)).collect();
        assert!(seats.iter().all(|s| s.core() == 1));
        assert_eq!(b.open(0, 3), 0);
    }
}
