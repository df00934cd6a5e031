//! Wake-ups from other threads racing an executor's parks: glommio's
//! sleep/wake protocol (a flag the sleeper raises, then a barrier, then a
//! last look at its foreign queues; the waker publishes, then reads the
//! flag), which every cross-core request of ringmail relies on. Written for
//! a patched glommio (branch `glommio`, README: "Session 13: glommio's
//! sleep/wake"); kept to catch a lost wake-up in whatever glommio ringmail
//! builds with. Each test makes thousands of round trips in
//! which the woken executor is about to park, parking or parked; a lost
//! wake-up leaves it asleep for good, which the watchdog reports as a
//! failure (no progress at all for `STALL`), never as a slow pass.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};

/// No progress at all for this long means a wake-up was lost (a round trip
/// takes microseconds).
const STALL: Duration = Duration::from_secs(20);

/// Waits until `progress` reaches `total`, failing if it stops moving.
fn watch(progress: &AtomicUsize, total: usize, what: &str) {
    let (mut seen, mut since) = (0, Instant::now());
    loop {
        let now = progress.load(Ordering::SeqCst);
        if now >= total {
            return;
        }
        if now != seen {
            (seen, since) = (now, Instant::now());
        }
        assert!(
            since.elapsed() < STALL,
            "{what}: stuck at {now} of {total} round trips for {STALL:?}: a wake-up was lost"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Two executors bounce a counter over a pair of shared channels: every
/// send wakes the other executor through its sleep notifier.
#[test]
fn shared_channel_round_trips_lose_no_wakeup() {
    const ROUNDS: usize = 20_000;
    let (to_echo, echo_in) = shared_channel::new_bounded::<usize>(1);
    let (echo_out, from_echo) = shared_channel::new_bounded::<usize>(1);
    let progress = Arc::new(AtomicUsize::new(0));
    let counted = progress.clone();
    let ping = LocalExecutorBuilder::new(Placement::Unbound)
        .name("ping")
        .spawn(move || async move {
            let to_echo = to_echo.connect().await;
            let from_echo = from_echo.connect().await;
            for i in 0..ROUNDS {
                to_echo.send(i).await.unwrap();
                assert_eq!(from_echo.recv().await, Some(i));
                counted.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    let echo = LocalExecutorBuilder::new(Placement::Unbound)
        .name("echo")
        .spawn(move || async move {
            let echo_in = echo_in.connect().await;
            let echo_out = echo_out.connect().await;
            let mut echoed = 0;
            while let Some(i) = echo_in.recv().await {
                echo_out.send(i).await.unwrap();
                echoed += 1;
            }
            echoed
        })
        .unwrap();
    watch(&progress, ROUNDS, "shared channel");
    ping.join().unwrap();
    assert_eq!(echo.join().unwrap(), ROUNDS);
}

/// A future completed by a plain thread: `wake` from outside the executor
/// goes through the executor's foreign-waker queue and its notifier.
#[derive(Default)]
struct Signal {
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Signal {
    fn fire(&self) {
        self.fired.store(true, Ordering::SeqCst);
        if let Some(waker) = self.waker.lock().unwrap().take() {
            waker.wake();
        }
    }

    fn wait(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx: &mut Context<'_>| {
            let mut waker = self.waker.lock().unwrap();
            *waker = Some(cx.waker().clone());
            if self.fired.swap(false, Ordering::SeqCst) {
                // Not a waiter any more: the thread waits for the next one.
                *waker = None;
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    fn has_waiter(&self) -> bool {
        self.waker.lock().unwrap().is_some()
    }
}

#[test]
fn foreign_thread_wakes_lose_no_wakeup() {
    const ROUNDS: usize = 20_000;
    let signal = Arc::new(Signal::default());
    let progress = Arc::new(AtomicUsize::new(0));
    let (waiting, counted) = (signal.clone(), progress.clone());
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .name("woken")
        .spawn(move || async move {
            for _ in 0..ROUNDS {
                waiting.wait().await;
                counted.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    let waker_thread = std::thread::spawn({
        let (signal, progress) = (signal.clone(), progress.clone());
        move || {
            for i in 0..ROUNDS {
                while !signal.has_waiter() && progress.load(Ordering::SeqCst) == i {
                    std::hint::spin_loop();
                }
                // A varying delay: the executor is anywhere between its
                // last task and its sleep when the wake comes.
                for _ in 0..(i % 64) * 40 {
                    std::hint::spin_loop();
                }
                signal.fire();
                while progress.load(Ordering::SeqCst) == i {
                    std::thread::yield_now();
                }
            }
        }
    });
    watch(&progress, ROUNDS, "foreign waker");
    executor.join().unwrap();
    waker_thread.join().unwrap();
}

/// Results of the blocking thread pool come back through the notifier too.
#[test]
fn blocking_pool_results_lose_no_wakeup() {
    const ROUNDS: usize = 5_000;
    let progress = Arc::new(AtomicUsize::new(0));
    let counted = progress.clone();
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .name("blocking")
        .spawn(move || async move {
            for i in 0..ROUNDS {
                let back = glommio::executor().spawn_blocking(move || i).await;
                assert_eq!(back, i);
                counted.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    watch(&progress, ROUNDS, "blocking pool");
    executor.join().unwrap();
}
