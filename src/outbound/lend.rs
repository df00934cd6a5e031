//! Lending: a hot destination served by more than one core.
//!
//! A destination's mail is queued on the core that owns its domain
//! (`shard::owner`), and that core's connections carry it. One big
//! destination (a mailbox provider with a third of an ISP's mail) would
//! then be relayed, and signed, by one core however many the server has.
//! So the owner lends a batch of the destination's ready mail (the newest
//! half of its ready list, at most [`MAX_LOAN`]; at most one loan per
//! [`SAMPLE`]) to the least busy other core when all of these hold:
//! - the destination has more than `relay.lend_after` shares ready here
//!   (this core is behind on it);
//! - its site took a message within the last [`YIELD`] (mail flows: a
//!   destination that only defers would only be deferred on two cores);
//! - this core is saturated: its executor, or its signing thread (RSA
//!   keys), was busy for at least `relay.lend_busy` of the last sample;
//! - its site takes more than one connection at once (max_connections
//!   times the sources): with one, the borrower's mail could only wait for
//!   the owner's connection;
//! - the other core is busy at least [`MARGIN`] less, and is not behind
//!   itself (at most `relay.lend_after` shares due there: lent mail that
//!   waits on the borrower, for CPU or for its site, stops further loans).
//!
//! With `relay.lend_busy = 0` how busy the cores are does not matter: a
//! destination is lent whenever its owner is behind on it and it takes
//! mail. A core lends and borrows only once it serves its whole spool and
//! has measured a sample (until then it counts as [`UNMEASURED`]).
//!
//! The borrower queues the lent shares like its own mail and relays them
//! over its own connections, signing, pipelining and settling outcomes as
//! for any share; a share deferred there retries there (its state record
//! says when, whichever core writes it), and at the next start every share
//! is back with its domain's owner, since recovery rebuilds the queues from
//! the spool.
//!
//! Why CPU time and not only the backlog: a backlog also builds when the
//! core is not the bottleneck (a queue flush, a slow site), and lending it
//! then only adds work; a first version that lent on the backlog alone
//! drained a 1 M backlog 12 % slower (`bench/backlog`).
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
//!
//! How busy each core is comes from glommio's own accounting (the time its
//! executor ran tasks and polled I/O, not the time it slept) and from the
//! time its signing batches took, published per core in [`CoreLoads`] by
//! the relay timer.

use crate::clock::now_ms;
use crate::queue::Dest;
use crate::shard::{owner, Shard, ShardMsg};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The most shares one loan moves.
pub const MAX_LOAN: usize = 4096;

/// How long a core's busy share is measured over before it is published;
/// also the least time between two loans of one core.
pub const SAMPLE: Duration = Duration::from_millis(100);

/// How much less busy (thousandths) the borrower must be.
pub const MARGIN: u32 = 200;

/// How long after a loan its destination's owner keeps to half of the
/// connections it may open; and how recent a delivery to the site must be
/// for its destination to be lent.
pub const YIELD: Duration = Duration::from_secs(1);

/// A core's busy share before its first sample: it neither lends nor
/// borrows (a core still adopting its recovered spool has no relay timer
/// yet, and its first reading would count the whole adoption).
pub const UNMEASURED: u32 = u32::MAX;

/// How busy each core was over its last sample, in thousandths, and how
/// many shares were due there, for the whole server (atomics read without
/// locks: two loans decided at the same moment may both go to the same
/// core, which the next sample corrects); and the loans on their way.
#[derive(Debug)]
pub struct CoreLoads {
    busy: Box<[AtomicU32]>,
    due: Box<[AtomicUsize]>,
    /// Loans made since start.
    loans: AtomicU64,
    /// Shares lent and not yet queued by their borrower.
    in_transit: AtomicUsize,
}

impl CoreLoads {
    pub fn new(cores: usize) -> CoreLoads {
        let cores = cores.max(1);
        CoreLoads {
            busy: (0..cores).map(|_| AtomicU32::new(UNMEASURED)).collect(),
            due: (0..cores).map(|_| AtomicUsize::new(0)).collect(),
            loans: AtomicU64::new(0),
            in_transit: AtomicUsize::new(0),
        }
    }

    fn set(&self, core: usize, permille: u32, due: usize) {
        self.busy[core].store(permille, Ordering::Relaxed);
        self.due[core].store(due, Ordering::Relaxed);
    }

    fn get(&self, core: usize) -> u32 {
        self.busy[core].load(Ordering::Relaxed)
    }

    /// The least busy measured core other than `me`: which, how busy, and
    /// how many shares are due there.
    fn least_busy_other(&self, me: usize) -> Option<(usize, u32, usize)> {
        (0..self.busy.len())
            .filter(|&c| c != me)
            .map(|c| (c, self.get(c), self.due[c].load(Ordering::Relaxed)))
            .filter(|&(_, busy, _)| busy != UNMEASURED)
            .min_by_key(|&(_, busy, _)| busy)
    }

    /// Taken before a walk over every core's queue, to compare after it
    /// ([`CoreLoads::settled_since`]): the loans made so far, or None if a
    /// loan is on its way (it may arrive at a core the walk has passed).
    pub fn walk_start(&self) -> Option<u64> {
        let loans = self.loans.load(Ordering::Acquire);
        (self.in_transit.load(Ordering::Acquire) == 0).then_some(loans)
    }

    /// No share was on its way between cores when the walk started
    /// (`start`), none moved since, and none is moving now: the walk saw
    /// each share once (`queue delete` relies on it).
    pub fn settled_since(&self, start: Option<u64>) -> bool {
        start.is_some_and(|loans| {
            self.in_transit.load(Ordering::Acquire) == 0 && self.loans.load(Ordering::Acquire) == loans
        })
    }

    fn sent(&self, shares: usize) {
        self.in_transit.fetch_add(shares, Ordering::AcqRel);
        self.loans.fetch_add(1, Ordering::AcqRel);
    }

    /// `shares` lent were queued by their borrower (or will be at the next
    /// start, the loan having failed).
    pub fn arrived(&self, shares: usize) {
        self.in_transit.fetch_sub(shares, Ordering::AcqRel);
    }
}

/// One core's side of lending (never shared between cores).
#[derive(Default)]
pub struct Lender {
    /// Start of the current sample, and the busy time of the executor and
    /// of the signing thread in it.
    sample: Cell<Option<(Instant, Duration, Duration)>>,
    /// A loan was made in the current sample (or is on its way).
    lent: Cell<bool>,
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

/// How many of `ready` shares a core busy `mine` thousandths of its time
/// lends to one busy `theirs`, with `relay.lend_after` = `after` and
/// `relay.lend_busy` = `busy` thousandths; None: it keeps them.
pub fn loan_size(ready: usize, after: usize, mine: u32, theirs: u32, busy: u32) -> Option<usize> {
    let hot = after > 0 && ready > after;
    let saturated = mine >= busy;
    // lend_busy = 0: how busy the cores are does not matter.
    let room = busy == 0 || theirs.saturating_add(MARGIN) <= mine;
    (hot && saturated && room).then(|| (ready / 2).clamp(1, MAX_LOAN))
}

impl Shard {
    /// Account the executor's and the signing thread's busy time since the
    /// last call, and publish this core's busy share (the busier of the
    /// two) once a [`SAMPLE`] is over. Called by the relay timer.
    pub(super) fn note_load(&self) {
        // Both taken: counted afresh from here.
        let ran = glommio::executor().executor_stats().total_runtime();
        let signed = self.outbound.batch_signer.take_busy();
        let lender = &self.outbound.lender;
        let now = Instant::now();
        let Some((since, ran_before, signed_before)) = lender.sample.get() else {
            // The first call: what was taken counts since the executor
            // started (recovery included), not a sample.
            lender.sample.set(Some((now, Duration::ZERO, Duration::ZERO)));
            return;
        };
        let (ran, signed) = (ran_before + ran, signed_before + signed);
        let wall = now.duration_since(since);
        if wall < SAMPLE {
            lender.sample.set(Some((since, ran, signed)));
            return;
        }
        let busy = ran.max(signed);
        let permille = (busy.as_micros() * 1000 / wall.as_micros().max(1)).min(1000) as u32;
        self.outbound.loads.set(self.id, permille, self.queue.borrow().due());
        lender.sample.set(Some((now, Duration::ZERO, Duration::ZERO)));
        lender.lent.set(false);
    }

    /// Lend part of `dest`'s ready mail to the least busy other core when
    /// this core owns `dest`, is saturated and behind on it, and its site
    /// takes mail (the module doc).
    pub(super) fn lend_if_hot(self: &Rc<Self>, dest: &Dest) {
        // Called at every kick: the cheap local checks first.
        let lender = &self.outbound.lender;
        if self.cores < 2 || lender.lent.get() {
            return;
        }
        let ready = self.queue.borrow().ready_len(dest);
        if ready == 0 {
            return;
        }
        let config = self.config();
        let relay = &config.relay;
        if ready <= relay.lend_after || owner::domain_owner(&dest.domain, self.cores) != self.id {
            return;
        }
        let loads = &self.outbound.loads;
        let mine = loads.get(self.id);
        let Some((to, theirs, their_due)) = loads.least_busy_other(self.id) else { return };
        if mine == UNMEASURED || their_due > relay.lend_after {
            return;
        }
        let busy = (relay.lend_busy * 1000.0).round() as u32;
        let Some(n) = loan_size(ready, relay.lend_after, mine, theirs, busy) else { return };
        let now = now_ms();
        if self.outbound.is_parked(dest, now) || !self.site_can_share(relay, dest, now) {
            return;
        }
        let lent = self.queue.borrow_mut().lend(dest, n, &self.envelopes());
        if lent.is_empty() {
            return;
        }
        lender.lent.set(true);
        lender.yielding.borrow_mut().insert(dest.clone(), now + YIELD.as_millis() as u64);
        self.metrics.lent(lent.len() as u64);
        tracing::info!(domain = %dest, messages = lent.len(), to_core = to, busy = mine, their_busy = theirs, "lent ready mail to a less busy core");
        let shares = lent.len();
        loads.sent(shares);
        let me = self.clone();
        glommio::spawn_local(async move {
            if me.mesh.send(to, ShardMsg::Lend(lent)).await.is_err() {
                // Durable: queued again from the spool at the next start.
                me.outbound.loads.arrived(shares);
                tracing::warn!(core = me.id, to, "lending failed: peer gone");
            }
        })
        .detach();
    }

    /// Queue the shares another core lent this one (all of one
    /// destination) and start on them.
    pub(crate) fn take_loan(self: &Rc<Self>, msgs: Vec<crate::queue::QueuedMessage>) {
        let shares = msgs.len();
        let dest = msgs.first().map(crate::queue::QueuedMessage::dest);
        let mut queue = self.queue.borrow_mut();
        let mut moved = Vec::new();
        for mut msg in msgs {
            // Compaction may have moved the record while the loan was on
            // its way (this core's relocation missed the share then): it
            // goes by the new place, and its state is written for that
            // place, as relocation does for the shares it finds.
            let at = self.resolve(msg.at);
            let relocated = at != msg.at && (msg.attempts > 0 || msg.warned);
            msg.at = at;
            let key = queue.enqueue(msg);
            if relocated {
                moved.push(key);
            }
        }
        drop(queue);
        for key in moved {
            self.record_deferral(key);
        }
        self.outbound.loads.arrived(shares);
        if let Some(dest) = dest {
            self.kick(&dest);
        }
    }

    /// Can another core's connections share `dest`'s site: does it take
    /// more than one connection at once, and did it take a message within
    /// the last [`YIELD`]?
    fn site_can_share(&self, relay: &crate::config::Relay, dest: &Dest, now_ms: u64) -> bool {
        let Some(limits) = self.outbound.limits_of(dest) else { return false };
        let sources: Vec<_> = super::source::sources(relay, dest.pool).iter().map(|s| s.ip).collect();
        if limits.max_connections.saturating_mul(sources.len()) < 2 {
            return false;
        }
        let site: std::sync::Arc<str> = std::sync::Arc::from(limits.site.as_str());
        let since = now_ms.saturating_sub(YIELD.as_millis() as u64);
        self.outbound.sites.delivered_since(&site, &sources, since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_saturated_core_behind_on_a_destination_lends_to_a_less_busy_one() {
        // Lend after 500 ready, when busy 900 thousandths.
        assert_eq!(loan_size(10_000, 500, 950, 300, 900), Some(MAX_LOAN), "at most MAX_LOAN");
        assert_eq!(loan_size(400, 300, 950, 300, 900), Some(200), "the newest half");
        assert_eq!(loan_size(500, 500, 950, 300, 900), None, "not more than lend_after ready");
        assert_eq!(loan_size(4000, 500, 899, 300, 900), None, "not saturated");
        assert_eq!(loan_size(4000, 500, 950, 751, 900), None, "the other core is less than MARGIN less busy");
        assert_eq!(loan_size(4000, 500, 950, 750, 900), Some(2000));
        assert_eq!(loan_size(4000, 0, 1000, 0, 900), None, "lend_after = 0: never");
        assert_eq!(loan_size(3, 1, 0, 1000, 0), Some(1), "lend_busy = 0: whenever one is behind");
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
    fn the_least_busy_measured_other_core_is_chosen() {
        let loads = CoreLoads::new(3);
        assert_eq!(loads.least_busy_other(0), None, "none measured yet");
        loads.set(1, 700, 5);
        assert_eq!(loads.least_busy_other(0), Some((1, 700, 5)), "the only measured one");
        loads.set(0, 100, 0);
        loads.set(2, 300, 7);
        assert_eq!(loads.least_busy_other(0), Some((2, 300, 7)));
        assert_eq!(loads.least_busy_other(2), Some((0, 100, 0)));
        assert_eq!(CoreLoads::new(1).least_busy_other(0), None);
    }

    #[test]
    fn a_walk_over_the_queues_is_settled_only_if_no_loan_moved_during_it() {
        let loads = CoreLoads::new(2);
        let before = loads.walk_start();
        assert!(loads.settled_since(before));
        loads.sent(3);
        assert!(!loads.settled_since(before), "a loan was made during the walk");
        let during = loads.walk_start();
        assert_eq!(during, None, "a loan is on its way when the walk starts");
        loads.arrived(3);
        assert!(!loads.settled_since(during), "it may have arrived behind the walk");
        assert!(!loads.settled_since(before));
        let after = loads.walk_start();
        assert!(loads.settled_since(after));
    }
}
