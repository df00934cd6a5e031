//! What the main thread knows about a running test, and how it stops one.
//!
//! Each core writes only its own [`Slot`] (relaxed stores of its own
//! counters: no contention); the main thread reads all slots once per tick
//! to print progress, decide that every connection failed at the start, or
//! notice SIGINT/SIGTERM. Cores poll [`Live::stopping`] between messages.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One core's published counters, on its own cache lines.
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct Slot {
    /// Messages (or sessions) completed, measured phase only.
    pub done: AtomicU64,
    /// Errors and rejections.
    pub errors: AtomicU64,
    /// p99 of the last second, µs.
    pub p99_us: AtomicU64,
    /// Content bytes.
    pub bytes: AtomicU64,
}

/// Shared between the main thread and the cores.
#[derive(Debug)]
pub struct Live {
    pub slots: Vec<Slot>,
    stop: AtomicBool,
    /// Set by SIGINT/SIGTERM (signal-hook).
    signal: Arc<AtomicBool>,
    finished: AtomicUsize,
    /// Some connection completed its set-up (greeting, EHLO, TLS, AUTH).
    setup_ok: AtomicBool,
    /// Workers whose very first set-up attempt failed, or that ended
    /// without having anything to do (fewer messages than connections).
    first_failures: AtomicUsize,
    /// The first such failure, as one line.
    first_error: Mutex<Option<String>>,
}

/// Why the monitor returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Every core finished its work.
    Done,
    /// SIGINT or SIGTERM.
    Signal,
    /// Every connection failed before doing anything: this line says why.
    FailedAtStart(String),
}

impl Live {
    /// State for `cores` cores, with SIGINT/SIGTERM hooked up. A second
    /// SIGINT exits at once with status 130.
    pub fn new(cores: usize) -> Arc<Live> {
        let signal = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Registration fails only for forbidden signals; these are not.
            let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&signal));
            let _ = signal_hook::flag::register(sig, Arc::clone(&signal));
        }
        Arc::new(Live {
            slots: (0..cores).map(|_| Slot::default()).collect(),
            stop: AtomicBool::new(false),
            signal,
            finished: AtomicUsize::new(0),
            setup_ok: AtomicBool::new(false),
            first_failures: AtomicUsize::new(0),
            first_error: Mutex::new(None),
        })
    }

    /// True once the run should wind down (signal, fatal start, target reached).
    pub fn stopping(&self) -> bool {
        self.stop.load(Relaxed)
    }

    /// Asks every core to wind down.
    pub fn request_stop(&self) {
        self.stop.store(true, Relaxed);
    }

    /// A core has returned its results.
    pub fn core_finished(&self) {
        self.finished.fetch_add(1, Relaxed);
    }

    /// A connection is set up and usable.
    pub fn setup_succeeded(&self) {
        if !self.setup_ok.load(Relaxed) {
            self.setup_ok.store(true, Relaxed);
        }
    }

    /// A worker's first set-up attempt failed with `why`.
    pub fn first_attempt_failed(&self, why: String) {
        if let Ok(mut e) = self.first_error.lock() {
            e.get_or_insert(why);
        }
        self.first_failures.fetch_add(1, Relaxed);
    }

    /// A worker ended without ever trying to connect (no work for it).
    pub fn worker_had_no_work(&self) {
        self.first_failures.fetch_add(1, Relaxed);
    }

    /// Sum of one slot field over all cores.
    pub fn sum(&self, f: impl Fn(&Slot) -> &AtomicU64) -> u64 {
        self.slots.iter().map(|s| f(s).load(Relaxed)).sum()
    }

    /// Largest of one slot field over all cores.
    pub fn max(&self, f: impl Fn(&Slot) -> &AtomicU64) -> u64 {
        self.slots.iter().map(|s| f(s).load(Relaxed)).max().unwrap_or(0)
    }
}

/// How the monitor watches a run.
pub struct Watch<'a> {
    /// Number of workers (connections); all failing at start is fatal.
    /// `None` for the sink, which has no workers.
    pub workers: Option<usize>,
    /// Stop once `done` reaches this many (the sink's `--messages`).
    pub stop_at_done: Option<u64>,
    /// Stop after this long (the sink's `--duration`).
    pub stop_after: Option<Duration>,
    /// Formats the live progress line (`elapsed`, `live`).
    pub progress: &'a dyn Fn(Duration, &Live) -> String,
}

/// Blocks until every core has finished; prints a progress line to stderr
/// once a second when it is a terminal.
/// The live progress line of a run: `verb` count so far, the rate over
/// the last interval, errors, and the worst core's last p99.
pub fn progress_line(verb: &'static str) -> impl Fn(std::time::Duration, &Live) -> String {
    let last = std::cell::Cell::new((std::time::Duration::ZERO, 0u64));
    move |elapsed, live| {
        let done = live.sum(|s| &s.done);
        let (t, n) = last.replace((elapsed, done));
        let rate = (done - n) as f64 / (elapsed - t).as_secs_f64().max(1e-3);
        format!(
            "[{:>4}s] {verb} {done}  rate {rate:.0}/s  errors {}  p99 {:.3} ms",
            elapsed.as_secs(),
            live.sum(|s| &s.errors),
            live.max(|s| &s.p99_us) as f64 / 1000.0
        )
    }
}

pub fn monitor(live: &Live, watch: Watch<'_>) -> Ended {
    let start = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut ended = Ended::Done;
    let mut next_print = start + Duration::from_secs(1);
    let cores = live.slots.len();
    while live.finished.load(Relaxed) < cores {
        std::thread::sleep(Duration::from_millis(20));
        let now = Instant::now();
        if !live.stopping() {
            if live.signal.load(Relaxed) {
                ended = Ended::Signal;
                live.request_stop();
            } else if let Some(n) = watch.workers {
                if !live.setup_ok.load(Relaxed) && live.first_failures.load(Relaxed) >= n {
                    ended = Ended::FailedAtStart(first_error(live));
                    live.request_stop();
                }
            }
            if watch.stop_at_done.is_some_and(|m| live.sum(|s| &s.done) >= m)
                || watch.stop_after.is_some_and(|d| now - start >= d)
            {
                live.request_stop();
            }
        }
        if tty && now >= next_print {
            next_print += Duration::from_secs(1);
            let line = (watch.progress)(now - start, live);
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
        }
    }
    if tty {
        let _ = write!(std::io::stderr(), "\r\x1b[2K");
    }
    // A short run can end before every worker has tried (fewer messages
    // than connections): if nothing ever connected, that is still fatal.
    if ended == Ended::Done
        && watch.workers.is_some()
        && !live.setup_ok.load(Relaxed)
        && live.first_failures.load(Relaxed) > 0
    {
        ended = Ended::FailedAtStart(first_error(live));
    }
    ended
}

fn first_error(live: &Live) -> String {
    live.first_error.lock().ok().and_then(|e| e.clone()).unwrap_or_else(|| "every connection failed".to_string())
}
