//! Connections that can take mail: a connection task with nothing to
//! send parks here per destination, and is woken when mail for that
//! destination becomes ready (instead of opening a new connection); a
//! connection whose message waits for the server's go-ahead to send its
//! body (DATA's 354) with PIPELINING is counted here while it waits, as
//! it will take the next ready message behind that body, in the same
//! write, without being woken.
//!
//! Owns only the wakers and those counts; it must not decide whether a
//! connection may be opened or kept (the queue's per-destination count
//! does that).

use super::Outbound;
use crate::queue::Dest;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// By destination: the wakers of idle connections, and how many
/// connections take a message behind theirs soon.
#[derive(Default)]
pub(super) struct IdleConnections {
    wakers: RefCell<HashMap<Dest, Vec<Waker>>>,
    behind: RefCell<HashMap<Dest, usize>>,
}

impl Outbound {
    /// Wake up to `n` connections idle on `domain`, the most recently
    /// idle first (they take the ready mail before any new connection is
    /// opened). Not all of them: every one woken runs, looks at the queue
    /// and parks again if another took the mail, so waking all for one
    /// message costs a task run per idle connection; and the longest idle
    /// are left to reach `relay.connection_idle` and close.
    pub(crate) fn wake_idle(&self, domain: &Dest, n: usize) {
        self.idle.wake(domain, n)
    }

    /// Resolves when [`Outbound::wake_idle`] wakes it (or on any later
    /// poll: the caller re-checks the queue, so an early wake-up costs one
    /// look). Deregisters itself when dropped, so a connection that gave
    /// up leaves nothing behind.
    pub(crate) fn idle_wait<'a>(&'a self, domain: &'a Dest) -> IdleWait<'a> {
        IdleWait { idle: &self.idle, domain, waker: None }
    }

    /// Count a connection to `domain` that takes the next ready message
    /// behind its own once it is allowed to send that one's body, for as
    /// long as the guard lives: mail that such connections will take does
    /// not wake idle ones (see [`Outbound::behind_soon`]).
    pub(crate) fn taking_behind<'a>(&'a self, domain: &'a Dest) -> TakingBehind<'a> {
        self.idle.taking_behind(domain)
    }

    /// How many connections to `domain` take a message behind theirs soon.
    pub(crate) fn behind_soon(&self, domain: &Dest) -> usize {
        self.idle.behind.borrow().get(domain).copied().unwrap_or(0)
    }
}

impl IdleConnections {
    fn wake(&self, domain: &Dest, n: usize) {
        if n == 0 {
            return;
        }
        let woken: Vec<Waker> = {
            let mut idle = self.wakers.borrow_mut();
            let Some(waiting) = idle.get_mut(domain) else { return };
            let woken = waiting.split_off(waiting.len().saturating_sub(n));
            if waiting.is_empty() {
                idle.remove(domain);
            }
            woken
        };
        woken.into_iter().for_each(Waker::wake);
    }

    fn taking_behind<'a>(&'a self, domain: &'a Dest) -> TakingBehind<'a> {
        *self.behind.borrow_mut().entry(domain.clone()).or_default() += 1;
        TakingBehind { idle: self, domain }
    }
}

/// See [`Outbound::taking_behind`].
pub(crate) struct TakingBehind<'a> {
    idle: &'a IdleConnections,
    domain: &'a Dest,
}

impl Drop for TakingBehind<'_> {
    fn drop(&mut self) {
        let mut behind = self.idle.behind.borrow_mut();
        if let Some(n) = behind.get_mut(self.domain) {
            *n -= 1;
            if *n == 0 {
                behind.remove(self.domain);
            }
        }
    }
}

/// See [`Outbound::idle_wait`].
pub(crate) struct IdleWait<'a> {
    idle: &'a IdleConnections,
    domain: &'a Dest,
    waker: Option<Waker>,
}

impl Future for IdleWait<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.waker.is_some() {
            return Poll::Ready(());
        }
        self.idle.wakers.borrow_mut().entry(self.domain.clone()).or_default().push(cx.waker().clone());
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for IdleWait<'_> {
    fn drop(&mut self) {
        let Some(mine) = &self.waker else { return };
        let mut idle = self.idle.wakers.borrow_mut();
        if let Some(waiters) = idle.get_mut(self.domain) {
            waiters.retain(|w| !w.will_wake(mine));
            if waiters.is_empty() {
                idle.remove(self.domain);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn dest(domain: &str) -> Dest {
        Dest { domain: domain.into(), pool: None }
    }

    /// Parks `n` waits on `d`, each with its own counting waker.
    fn park<'a>(idle: &'a IdleConnections, d: &'a Dest, n: usize) -> Vec<(Arc<Count>, Pin<Box<IdleWait<'a>>>)> {
        (0..n)
            .map(|_| {
                let count = Arc::new(Count(AtomicUsize::new(0)));
                let waker = Waker::from(count.clone());
                let mut wait = Box::pin(IdleWait { idle, domain: d, waker: None });
                assert!(wait.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
                (count, wait)
            })
            .collect()
    }

    fn woken(parked: &[(Arc<Count>, Pin<Box<IdleWait<'_>>>)]) -> Vec<usize> {
        parked.iter().map(|(c, _)| c.0.load(Ordering::SeqCst)).collect()
    }

    #[test]
    fn one_message_wakes_one_idle_connection_the_most_recent() {
        let idle = IdleConnections::default();
        let d = dest("a.test");
        let parked = park(&idle, &d, 3);
        idle.wake(&d, 1);
        assert_eq!(woken(&parked), [0, 0, 1]);
        idle.wake(&d, 5);
        assert_eq!(woken(&parked), [1, 1, 1]);
        assert!(idle.wakers.borrow().is_empty(), "everyone woken: nothing left registered");
        idle.wake(&d, 1); // nobody idle: nothing to do
    }

    #[test]
    fn zero_wakes_none_and_a_dropped_wait_leaves_nothing_behind() {
        let idle = IdleConnections::default();
        let (a, b) = (dest("a.test"), dest("b.test"));
        let mut parked = park(&idle, &a, 2);
        let other = park(&idle, &b, 1);
        idle.wake(&a, 0);
        assert_eq!(woken(&parked), [0, 0]);
        parked.pop();
        idle.wake(&a, 1);
        assert_eq!(woken(&parked), [1]);
        assert_eq!(woken(&other), [0], "another destination's connections stay parked");
        drop(other);
        assert!(idle.wakers.borrow().is_empty());
    }

    #[test]
    fn connections_taking_behind_are_counted_while_their_guards_live() {
        let idle = IdleConnections::default();
        let d = dest("a.test");
        let count = || idle.behind.borrow().get(&d).copied().unwrap_or(0);
        let first = idle.taking_behind(&d);
        let second = idle.taking_behind(&d);
        assert_eq!(count(), 2);
        drop(first);
        assert_eq!(count(), 1);
        drop(second);
        assert!(idle.behind.borrow().is_empty(), "no entry left for a destination nobody waits on");
    }
}
