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
    waiters: RefCell<Vec<Waker>>,
}

impl Stop {
    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Raise the latch and wake everything waiting on it.
    pub fn trigger(&self) {
        if !self.set.replace(true) {
            for w in self.waiters.take() {
                w.wake();
            }
        }
    }

    /// Resolves once the latch is raised.
    pub fn wait(&self) -> Wait<'_> {
        Wait { stop: self }
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
}

impl Future for Wait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.stop.set.get() {
            return Poll::Ready(());
        }
        let mut waiters = self.stop.waiters.borrow_mut();
        // A task polled again re-registers; keep one waker per task.
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
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
        });
    }
}
