//! One core's part of an SMTP run: its workers (one per connection), its
//! schedule and message factory, and its statistics, which it returns when
//! its workers are done. Nothing here is shared with other cores except the
//! read-only plan and this core's own [`Slot`](crate::live::Slot).

use super::compose::Composer;
use super::failure::Failure;
use super::plan::Plan;
use super::schedule::{Schedule, Ticket};
use super::worker;
use crate::live::Live;
use crate::proto::client::{Outcome, Step};
use crate::stats::over_time::OverTime;
use crate::stats::{self, LatencySet, Tally, Timeline};
use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Latency metrics of the SMTP mode, in report order.
pub const METRICS: &[&str] =
    &["connect", "tls", "greeting", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "end_of_data", "message"];
pub const CONNECT: usize = 0;
pub const TLS: usize = 1;
pub const MESSAGE: usize = 10;

/// The metric index for a reply to `step`, if it is reported.
pub fn metric_of(step: Step) -> Option<usize> {
    match step {
        Step::Greeting => Some(2),
        Step::Ehlo => Some(3),
        Step::StartTls => Some(4),
        Step::Auth => Some(5),
        Step::Mail => Some(6),
        Step::Rcpt => Some(7),
        Step::Data => Some(8),
        Step::EndOfData => Some(9),
        Step::Rset | Step::Quit => None,
    }
}

/// What a core measured.
#[derive(Debug, Clone)]
pub struct CoreStats {
    pub lat: LatencySet,
    /// Messages started in the measured phase.
    pub attempted: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Measured messages lost to a connection failure.
    pub failed: u64,
    /// Content bytes of accepted messages.
    pub bytes: u64,
    /// Connections set up successfully.
    pub connections: u64,
    /// Of those, connections where --pipelining was asked for but not offered.
    pub no_pipelining: u64,
    /// Rejected messages by deciding step and code ("end_of_data 451").
    pub rejections: Tally,
    /// Individual recipients refused ("550"), also in accepted messages.
    pub rcpt_refusals: Tally,
    /// Failures by kind, including connection set-up failures.
    pub errors: Tally,
    pub timeline: Timeline,
    /// Whole-message latency by the second it completed in.
    pub over_time: OverTime,
    pub measure_start: Instant,
    pub last_done: Option<Instant>,
}

/// A core's shared state; workers hold an `Rc` to it. RefCell borrows are
/// never held across an `.await`.
pub struct CoreCtx {
    pub plan: Arc<Plan>,
    pub live: Arc<Live>,
    pub idx: usize,
    pub schedule: RefCell<Schedule>,
    pub composer: RefCell<Composer>,
    pub stats: RefCell<CoreStats>,
    /// Latencies of the current second, for the live p99.
    interval: RefCell<Histogram<u64>>,
}

impl CoreCtx {
    /// True after the warm-up.
    pub fn measuring(&self, now: Instant) -> bool {
        now >= self.stats.borrow().measure_start
    }

    /// Records a step latency (only after the warm-up).
    pub fn record(&self, metric: usize, took: Duration, now: Instant) {
        if self.measuring(now) {
            self.stats.borrow_mut().lat.record(metric, took);
        }
    }

    /// A connection finished its set-up; `pipelining_missing` if the
    /// server did not offer PIPELINING although it was asked for.
    pub fn connected(&self, pipelining_missing: bool) {
        let mut s = self.stats.borrow_mut();
        s.connections += 1;
        s.no_pipelining += u64::from(pipelining_missing);
        drop(s);
        self.live.setup_succeeded();
    }

    /// A failure; `ticket` is the message it cost, if any.
    pub fn failed(&self, f: &Failure, ticket: Option<&Ticket>) {
        let now = Instant::now();
        let mut s = self.stats.borrow_mut();
        if now >= s.measure_start || ticket.is_some_and(|t| t.measured) {
            s.errors.bump(&f.kind());
        }
        if ticket.is_some_and(|t| t.measured) {
            s.attempted += 1;
            s.failed += 1;
            self.finish(&mut s, now);
        }
        self.publish(&s);
    }

    /// A recipient was refused with `code`.
    pub fn rcpt_refused(&self, code: u16, now: Instant) {
        if self.measuring(now) {
            self.stats.borrow_mut().rcpt_refusals.bump(&code.to_string());
        }
    }

    /// A message ended with `outcome`.
    pub fn outcome(&self, ticket: &Ticket, outcome: Outcome, bytes: usize) {
        if !ticket.measured {
            return;
        }
        let now = Instant::now();
        let mut s = self.stats.borrow_mut();
        s.attempted += 1;
        match outcome {
            Outcome::Accepted => {
                s.accepted += 1;
                s.bytes += bytes as u64;
            }
            Outcome::Rejected { step, code } => {
                s.rejected += 1;
                s.rejections.bump(&format!("{} {code}", step.name()));
            }
        }
        let took = now.saturating_duration_since(ticket.intended);
        s.lat.record(MESSAGE, took);
        let since = now.saturating_duration_since(s.measure_start);
        s.over_time.record(since, took);
        stats::record(&mut self.interval.borrow_mut(), took);
        self.finish(&mut s, now);
        self.publish(&s);
    }

    fn finish(&self, s: &mut CoreStats, now: Instant) {
        let since = now.saturating_duration_since(s.measure_start);
        s.timeline.add(since, 1);
        s.last_done = Some(now);
    }

    fn publish(&self, s: &CoreStats) {
        let slot = &self.live.slots[self.idx];
        slot.done.store(s.attempted, Relaxed);
        slot.errors.store(s.rejected + s.errors.total(), Relaxed);
        slot.bytes.store(s.bytes, Relaxed);
    }
}

/// Runs core `idx`'s share of the plan and returns what it measured.
pub async fn run(plan: Arc<Plan>, live: Arc<Live>, idx: usize) -> CoreStats {
    let share = plan.shares[idx].clone();
    let start = Instant::now();
    let schedule = Schedule::new(share.pace, start, plan.warmup, share.messages, plan.duration);
    let ctx = Rc::new(CoreCtx {
        composer: RefCell::new(Composer::new(&plan, idx)),
        stats: RefCell::new(CoreStats {
            lat: LatencySet::new(METRICS),
            attempted: 0,
            accepted: 0,
            rejected: 0,
            failed: 0,
            bytes: 0,
            connections: 0,
            no_pipelining: 0,
            rejections: Tally::default(),
            rcpt_refusals: Tally::default(),
            errors: Tally::default(),
            timeline: Timeline::default(),
            over_time: OverTime::default(),
            measure_start: schedule.warmup_end(),
            last_done: None,
        }),
        schedule: RefCell::new(schedule),
        interval: RefCell::new(stats::new_histogram()),
        plan,
        live,
        idx,
    });
    let ticker = glommio::spawn_local(publish_p99(Rc::clone(&ctx)));
    let workers: Vec<_> = (0..share.connections as u64)
        .map(|w| glommio::spawn_local(worker::run(Rc::clone(&ctx), share.first_worker + w)))
        .collect();
    for w in workers {
        w.await;
    }
    drop(ticker);
    let stats = ctx.stats.borrow().clone();
    stats
}

/// Once a second, publishes the p99 of the last second for the progress line.
async fn publish_p99(ctx: Rc<CoreCtx>) {
    loop {
        glommio::timer::sleep(Duration::from_secs(1)).await;
        let mut h = ctx.interval.borrow_mut();
        let p99 = if h.is_empty() { 0 } else { h.value_at_quantile(0.99) };
        ctx.live.slots[ctx.idx].p99_us.store(p99, Relaxed);
        h.reset();
    }
}
