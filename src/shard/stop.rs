//! Graceful stop of one core: a latch that tasks can check or await.
//!
//! SIGTERM (or SIGINT) reaches a signal thread, which raises a shared
//! flag; each core's watcher task sees it and [`Stop::trigger`]s its latch.
//! Accept loops then end, sessions idle between commands are told 421 /
//! -ERR and closed, sessions inside DATA or a commit finish it, relay
//! connections finish their current message; `core_main` waits for that up
//! to `runtime.drain_timeout`, syncs the spool and returns.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Counts a background task (a settle, a bounce, a request served for a
/// peer) while it lives, so the drain waits for it: its tombstones or its
/// DSN must be durable before the core exits.
pub struct Background {
    shard: std::rc::Rc<super::Shard>,
}

impl Background {
    pub fn new(shard: &std::rc::Rc<super::Shard>) -> Background {
        shard.background.set(shard.background.get() + 1);
        Background { shard: shard.clone() }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let n = &self.shard.background;
        n.set(n.get().saturating_sub(1));
    }
}

/// One core's stop latch. Never reset.
#[derive(Default)]
pub struct Stop {
    set: Cell<bool>,
    waiters: RefCell<Waiters>,
}

/// The wakers of the [`Wait`]s alive now, one slot each, freed when the
/// `Wait` is dropped. Every idle SMTP read races a `Wait` (and so does
/// every relay connection waiting for mail): a plain list of wakers that
/// only `trigger` emptied grew by a waker per session for the server's
/// life, and each poll searched all of it.
#[derive(Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Stop {
    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Raise the latch and wake everything waiting on it.
    pub fn trigger(&self) {
        if !self.set.replace(true) {
            // Taken out first: a woken task may drop its `Wait` at once.
            let woken: Vec<Waker> = self.waiters.borrow_mut().slots.iter_mut().filter_map(Option::take).collect();
            for w in woken {
                w.wake();
            }
        }
    }

    /// Resolves once the latch is raised.
    pub fn wait(&self) -> Wait<'_> {
        Wait { stop: self, slot: None }
    }

    /// How many `Wait`s hold a waker now.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiters.borrow().slots.iter().filter(|w| w.is_some()).count()
    }

    /// Sleeps for `d`, or less if the latch is raised meanwhile. False once
    /// it is raised: the loop of a periodic task ends there.
    pub async fn sleep(&self, d: std::time::Duration) -> bool {
        futures_lite::future::or(glommio::timer::sleep(d), self.wait()).await;
        !self.is_set()
    }
}

pub struct Wait<'a> {
    stop: &'a Stop,
    /// Its slot in the latch's waiters, once polled.
    slot: Option<usize>,
}

impl Future for Wait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.stop.set.get() {
            return Poll::Ready(());
        }
        let mut waiters = this.stop.waiters.borrow_mut();
        // A waker replaced or removed is dropped only after the borrow: the
        // last reference to a task going may drop that task's `Wait`s.
        let _old = match this.slot {
            Some(i) => {
                let slot = &mut waiters.slots[i];
                if slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    None
                } else {
                    slot.replace(cx.waker().clone())
                }
            }
            None => {
                let waker = Some(cx.waker().clone());
                let i = match waiters.free.pop() {
                    Some(i) => {
                        waiters.slots[i] = waker;
                        i
                    }
                    None => {
                        waiters.slots.push(waker);
                        waiters.slots.len() - 1
                    }
                };
                this.slot = Some(i);
                None
            }
        };
        drop(waiters);
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let mut waiters = self.stop.waiters.borrow_mut();
            let _old = waiters.slots[i].take();
            waiters.free.push(i);
            drop(waiters);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_wake_once_triggered() {
        let stop = std::rc::Rc::new(Stop::default());
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).io_memory(1 << 20).make().unwrap();
        ex.run(async {
            let s = stop.clone();
            let waiter = glommio::spawn_local(async move {
                s.wait().await;
                s.is_set()
            });
            glommio::yield_if_needed().await;
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
            assert!(!stop.is_set());
            stop.trigger();
            assert!(waiter.await);
            // Already raised: resolves at once.
            stop.wait().await;
            assert_eq!(stop.waiting(), 0);
        });
    }

    #[test]
    fn a_dropped_wait_leaves_no_waker_behind() {
        let stop = std::rc::Rc::new(Stop::default());
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).io_memory(1 << 20).make().unwrap();
        ex.run(async {
            // As 1,000 sessions' idle reads do: each task races a read (here a
            // short sleep) against the latch, and the read wins.
            for _ in 0..1000 {
                let s = stop.clone();
                glommio::spawn_local(async move {
                    futures_lite::future::or(glommio::timer::sleep(std::time::Duration::from_micros(10)), s.wait())
                        .await;
                })
                .await;
                assert_eq!(stop.waiting(), 0, "the Wait that lost the race is gone, and so is its waker");
            }
            assert!(stop.waiters.borrow().slots.len() <= 1, "slots are reused");
            let s = stop.clone();
            let waiter = glommio::spawn_local(async move { s.wait().await });
            glommio::yield_if_needed().await;
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
            assert_eq!(stop.waiting(), 1);
            stop.trigger();
            waiter.await;
            assert_eq!(stop.waiting(), 0);
        });
    }
}
