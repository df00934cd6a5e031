//! When each message starts: closed loop (as soon as a connection is free)
//! or open loop (a fixed schedule at `--rate`), within the warm-up, the
//! message budget and the duration.
//!
//! Pure: `now` is passed in. In open loop a ticket's `intended` time is on
//! the schedule even if every connection was busy then; latency measured
//! from it includes the wait, so a stalled server cannot hide behind
//! coordinated omission.

use std::time::{Duration, Instant};

/// How message starts are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Next message as soon as a connection is free.
    Closed,
    /// `rate` messages per second on a fixed schedule from the start.
    Open { rate: f64 },
}

/// Permission to send one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// When the message should start; latency is measured from here.
    pub intended: Instant,
    /// After the warm-up: counted in the results.
    pub measured: bool,
}

/// One core's schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pace: Pace,
    start: Instant,
    warmup_end: Instant,
    end: Option<Instant>,
    budget: Option<u64>,
    issued: u64,
    measured_issued: u64,
}

impl Schedule {
    /// A schedule starting at `start`: warm-up first, then `budget`
    /// measured messages and/or `duration` of measured time.
    pub fn new(pace: Pace, start: Instant, warmup: Duration, budget: Option<u64>, duration: Option<Duration>) -> Self {
        let warmup_end = start + warmup;
        Schedule {
            pace,
            start,
            warmup_end,
            end: duration.map(|d| warmup_end + d),
            budget,
            issued: 0,
            measured_issued: 0,
        }
    }

    /// When measuring starts.
    pub fn warmup_end(&self) -> Instant {
        self.warmup_end
    }

    /// The ticket `next` would return, without taking it.
    pub fn peek(&self, now: Instant) -> Option<Ticket> {
        let intended = match self.pace {
            Pace::Closed => now,
            Pace::Open { rate } => self.start + Duration::from_secs_f64(self.issued as f64 / rate),
        };
        if self.end.is_some_and(|end| intended >= end) {
            return None;
        }
        let measured = intended >= self.warmup_end;
        if measured && self.budget.is_some_and(|b| self.measured_issued >= b) {
            return None;
        }
        Some(Ticket { intended, measured })
    }

    /// The next ticket, or `None` when the run is over for this core.
    pub fn next(&mut self, now: Instant) -> Option<Ticket> {
        let t = self.peek(now)?;
        self.issued += 1;
        self.measured_issued += u64::from(t.measured);
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_loop_issues_exactly_the_budget() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Pace::Closed, t0, Duration::ZERO, Some(5), None);
        let n = std::iter::from_fn(|| s.next(t0)).take(100).count();
        assert_eq!(n, 5);
    }

    #[test]
    fn warmup_tickets_are_not_measured_nor_counted_against_budget() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Pace::Closed, t0, Duration::from_secs(1), Some(2), None);
        for _ in 0..10 {
            assert!(!s.next(t0).unwrap().measured);
        }
        let later = t0 + Duration::from_secs(2);
        assert!(s.next(later).unwrap().measured);
        assert!(s.next(later).unwrap().measured);
        assert_eq!(s.next(later), None);
    }

    #[test]
    fn open_loop_places_tickets_on_a_fixed_schedule() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Pace::Open { rate: 100.0 }, t0, Duration::ZERO, None, Some(Duration::from_secs(1)));
        // Even when asked late, intended times stay on the 10 ms grid.
        let late = t0 + Duration::from_secs(5);
        let tickets: Vec<Ticket> = std::iter::from_fn(|| s.next(late)).collect();
        assert_eq!(tickets.len(), 100);
        assert_eq!(tickets[1].intended - tickets[0].intended, Duration::from_millis(10));
        assert_eq!(tickets[99].intended - t0, Duration::from_millis(990));
    }

    #[test]
    fn peek_does_not_take_the_ticket() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Pace::Closed, t0, Duration::ZERO, Some(1), None);
        assert!(s.peek(t0).is_some());
        assert!(s.peek(t0).is_some());
        assert!(s.next(t0).is_some());
        assert_eq!(s.peek(t0), None);
    }

    #[test]
    fn duration_ends_closed_loop() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Pace::Closed, t0, Duration::ZERO, None, Some(Duration::from_secs(1)));
        assert!(s.next(t0).is_some());
        assert_eq!(s.next(t0 + Duration::from_secs(1)), None);
    }
}
