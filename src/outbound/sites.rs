//! Sites: the server-wide traffic state of each (site, source address).
//!
//! A *site* is where a set of domains' mail physically goes (the MX host
//! set, or the `[site."NAME"]` rule that claims it, or a route target; see
//! [`super::shaping`]). Receivers limit and block per sending IP, so every
//! limit here is kept per `(site, source address)`: open connections, the
//! connection rate, the message rate, a suspension, and the rate the AIMD
//! backoff currently allows. One [`Sites`] serves the whole server, so a
//! limit holds across cores, not per core.
//!
//! Why a striped table and not the site's owner core: a site spans domains
//! owned by every core, and asking an owner core over the mesh would put a
//! cross-core round trip in front of every message (the rate is per
//! message). The table is touched once per connection and once per message
//! under one stripe's mutex (no allocation after a site's first use), like
//! the inbound limits in [`crate::shard::limits`]; with a handful of cores
//! contention is negligible. The issue's wording ("kept by the site's owner
//! core") is met in effect: one authority per site, server-wide.
//!
//! It must not decide where mail goes or touch the queue: the dispatcher
//! asks it for a [`Permit`] before connecting, for a message token before
//! each message, and tells it each reply ([`Permit::replied`]), which is
//! where response-driven backoff happens.
//!
//! ## AIMD
//! A reply matching a `halve-rate` rule halves the rate allowed now (from
//! the configured `max_message_rate`, or without one from the rate
//! measured over the last minute); each clean minute after that (no
//! backoff match) adds a tenth of the rate to climb back to, until the
//! configured rate (or no limit) is back. A `suspend` match stops new
//! connections and new messages to the site from that source until it
//! ends; connections already open finish the message in hand and close.

use super::shaping::{BackoffAction, Rate, Shaping, SiteLimits};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Stripes of the table: enough that two cores rarely meet on one.
const STRIPES: usize = 16;

/// The lowest rate halving goes down to: one message a minute.
const MIN_RATE: f64 = 1.0 / 60.0;

/// How long a rate must stay clean before it is raised by one step.
const CLEAN_STEP_MS: u64 = 60_000;

/// The slowest the rate climbs back: a tenth of its target per clean step.
const STEPS_TO_RECOVER: f64 = 10.0;

/// One site as seen from one source address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SiteKey {
    pub site: Arc<str>,
    /// None: the system's default source address (no pools configured).
    pub source: Option<IpAddr>,
}

/// Why no connection (or no message) may go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Suspended by a backoff rule until this time (ms since the epoch).
    Suspended { until_ms: u64 },
    /// The connection or message rate allows the next one at this time.
    Paced { until_ms: u64 },
    /// Every source is at `max_connections`: wait for one to close.
    Busy,
}

/// A token bucket holding at most one token: events are spaced evenly at
/// the rate, never bursting above it in any window.
#[derive(Debug, Default)]
struct Pace {
    /// When the next event may happen (ms since the epoch).
    next_ms: f64,
}

impl Pace {
    /// Take the slot at `now_ms` for a rate of `per_second`, or say when
    /// the next one is.
    fn take(&mut self, per_second: f64, now_ms: u64) -> Result<(), u64> {
        let now = now_ms as f64;
        if self.next_ms > now {
            return Err(self.next_ms.ceil() as u64);
        }
        self.next_ms = now.max(self.next_ms) + 1000.0 / per_second;
        Ok(())
    }
}

/// The state of one (site, source).
#[derive(Debug, Default)]
struct SiteState {
    connections: usize,
    /// Destinations (on any core) waiting for a connection here, and how
    /// many idle connections closed for them not yet taken up.
    waiting: usize,
    yielded: usize,
    in_flight: usize,
    connects: Pace,
    messages: Pace,
    suspended_until_ms: u64,
    /// The rate allowed now after a halving (msg/s); None: the configured.
    rate: Option<f64>,
    /// The rate a halved rate climbs back to.
    ceiling: f64,
    /// The last halving or raise.
    rate_changed_ms: u64,
    /// Messages sent in the current and previous minute (measured rate).
    window_start_ms: u64,
    window: u64,
    previous_window: u64,
    last_reply: String,
    delivered: u64,
    deferred: u64,
    bounced: u64,
    /// When it last took a message (ms since the epoch).
    last_delivered_ms: u64,
    /// The limits last applied, for `queue sites`.
    max_connections: usize,
    max_rate: Option<Rate>,
}

impl SiteState {
    /// The message rate allowed now (msg/s), None for no limit; raises a
    /// halved rate by the clean minutes since its last change.
    fn allowed_rate(&mut self, limits: &SiteLimits, now_ms: u64) -> Option<f64> {
        let configured = limits.max_message_rate.map(|r| r.per_second());
        if let Some(mut rate) = self.rate {
            let steps = now_ms.saturating_sub(self.rate_changed_ms) / CLEAN_STEP_MS;
            if steps > 0 {
                rate += self.ceiling / STEPS_TO_RECOVER * steps as f64;
                self.rate_changed_ms += steps * CLEAN_STEP_MS;
                self.rate = (rate < self.ceiling).then_some(rate);
            }
        }
        match (self.rate, configured) {
            (Some(now), Some(max)) => Some(now.min(max)),
            (now, max) => now.or(max),
        }
    }

    /// Messages per second over the last minute or so.
    fn measured_rate(&self, now_ms: u64) -> f64 {
        let span = now_ms.saturating_sub(self.window_start_ms) + CLEAN_STEP_MS;
        (self.window + self.previous_window) as f64 * 1000.0 / span.max(1) as f64
    }

    fn count_sent(&mut self, sent: Sent, now_ms: u64) {
        match sent {
            Sent::Delivered => {
                self.delivered += 1;
                self.last_delivered_ms = now_ms;
            }
            Sent::Deferred => self.deferred += 1,
            Sent::Bounced => self.bounced += 1,
        }
        self.count_message(now_ms);
    }

    fn count_message(&mut self, now_ms: u64) {
        if now_ms.saturating_sub(self.window_start_ms) >= CLEAN_STEP_MS {
            let gap = now_ms.saturating_sub(self.window_start_ms) / CLEAN_STEP_MS;
            self.previous_window = if gap == 1 { self.window } else { 0 };
            self.window = 0;
            self.window_start_ms = now_ms;
        }
        self.window += 1;
    }

    fn halve(&mut self, limits: &SiteLimits, now_ms: u64) {
        let now = self.allowed_rate(limits, now_ms).unwrap_or_else(|| self.measured_rate(now_ms));
        if self.rate.is_none() {
            self.ceiling = limits.max_message_rate.map_or(now, |r| r.per_second()).max(MIN_RATE);
        }
        self.rate = Some((now / 2.0).max(MIN_RATE));
        self.rate_changed_ms = now_ms;
    }
}

/// How one message attempt ended, for the site's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Delivered,
    Deferred,
    Bounced,
}

/// One row of `ringmail queue sites` (per site and source) and of the
/// `ringmail_site_*` metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteRow {
    pub site: String,
    pub source: Option<IpAddr>,
    pub connections: usize,
    pub in_flight: usize,
    /// The message rate allowed now (msg/s); None: unlimited.
    pub rate: Option<f64>,
    /// The configured maximum.
    pub max_rate: Option<Rate>,
    pub max_connections: usize,
    /// 0 when not suspended.
    pub suspended_until_ms: u64,
    pub last_reply: String,
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
}

/// The server-wide site table (see the module doc).
pub struct Sites {
    stripes: Vec<Mutex<HashMap<SiteKey, SiteState>>>,
    /// The shaping rules in force; SIGHUP replaces them whole. Read once
    /// per connection.
    rules: Mutex<Arc<Shaping>>,
    /// Bumped after each [`Sites::set_rules`]: an open connection compares
    /// it before each message (an atomic load, not the mutex).
    generation: AtomicU64,
}

impl Default for Sites {
    fn default() -> Sites {
        Sites::new(Shaping::default())
    }
}

/// A connection to a site from one source, counted against its
/// `max_connections` until dropped.
pub struct Permit {
    sites: Arc<Sites>,
    key: SiteKey,
    /// `key`'s stripe in `sites`.
    stripe: usize,
    /// Index of the chosen source in the slice given to [`Sites::connect`].
    pub source_index: usize,
}

/// A message in flight to a site, counted until dropped.
pub struct Flight<'a>(&'a Permit);

impl Sites {
    /// A table with no site seen yet, under `rules`.
    pub fn new(rules: Shaping) -> Sites {
        Sites {
            stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
            rules: Mutex::new(Arc::new(rules)),
            generation: AtomicU64::new(0),
        }
    }

    /// A destination (on any core) waits for a connection to `site` from
    /// any of `sources` (every one was at `max_connections`).
    pub fn wait(&self, site: &Arc<str>, sources: &[Option<IpAddr>]) {
        for &source in sources {
            self.with(&SiteKey { site: site.clone(), source }, |s| s.waiting += 1);
        }
    }

    /// One that [`Sites::wait`]ed (with the same `sources`) no longer does.
    pub fn stop_waiting(&self, site: &Arc<str>, sources: &[Option<IpAddr>]) {
        for &source in sources {
            self.with(&SiteKey { site: site.clone(), source }, |s| {
                s.waiting = s.waiting.saturating_sub(1);
                s.yielded = s.yielded.min(s.waiting);
            });
        }
    }

    /// Should a connection idle at `key` close for a destination waiting
    /// there (on any core; two domains with one MX host set are one site,
    /// and may be owned by different cores)? True at most once per waiting
    /// destination until it is served: the connection that gets true
    /// closes, and the waiting destination connects in its place (its core
    /// looks again within 100 ms) without every other idle connection
    /// closing meanwhile.
    pub fn yield_to_waiting(&self, key: &SiteKey) -> bool {
        self.with(key, |s| {
            let wanted = s.waiting > s.yielded;
            s.yielded += usize::from(wanted);
            wanted
        })
    }

    /// The rules in force.
    pub fn rules(&self) -> Arc<Shaping> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Put `rules` in force for connections opened from now on; those
    /// open keep the limits they started with, and the dispatcher closes
    /// them before their next message (see [`Sites::generation`]).
    pub fn set_rules(&self, rules: Shaping) {
        *self.rules.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(rules);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Changes after every [`Sites::set_rules`]. Read it before
    /// [`Sites::rules`]: a reload in between then shows as a change (one
    /// needless reconnect) rather than going unseen.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Which stripe holds `key`.
    fn stripe_of(key: &SiteKey) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        h.finish() as usize % STRIPES
    }

    fn with<T>(&self, key: &SiteKey, f: impl FnOnce(&mut SiteState) -> T) -> T {
        self.with_in(Sites::stripe_of(key), key, f)
    }

    /// [`Sites::with`] for a key whose stripe is known (a permit keeps
    /// its own: several calls per message hash it once).
    fn with_in<T>(&self, stripe: usize, key: &SiteKey, f: impl FnOnce(&mut SiteState) -> T) -> T {
        // A panic while holding a stripe leaves plain counters behind: keep going.
        let mut stripe = self.stripes[stripe].lock().unwrap_or_else(|p| p.into_inner());
        let state = match stripe.get_mut(key) {
            Some(s) => s,
            None => stripe.entry(key.clone()).or_default(),
        };
        f(state)
    }

    /// Did `site` take a message from any of `sources` since `since_ms`?
    pub fn delivered_since(&self, site: &Arc<str>, sources: &[Option<IpAddr>], since_ms: u64) -> bool {
        sources.iter().any(|&source| {
            let key = SiteKey { site: site.clone(), source };
            let stripe = self.stripes[Sites::stripe_of(&key)].lock().unwrap_or_else(|p| p.into_inner());
            stripe.get(&key).is_some_and(|s| s.last_delivered_ms >= since_ms)
        })
    }

    /// Take a connection permit to `limits.site` from one of `sources`
    /// (address and weight; `[None]` without pools), chosen by weight
    /// among those with room. `pick` is a number in [0, 1) for the
    /// weighted choice.
    pub fn connect(
        self: &Arc<Self>,
        limits: &SiteLimits,
        site: &Arc<str>,
        sources: &[(Option<IpAddr>, u32)],
        pick: f64,
        now_ms: u64,
    ) -> Result<Permit, Refused> {
        let mut order: Vec<usize> = (0..sources.len()).collect();
        // Weighted first choice, then the rest in order: a full or
        // suspended source hands its share to the next one.
        let total: u64 = sources.iter().map(|s| s.1.max(1) as u64).sum();
        let mut point = (pick * total as f64) as u64;
        let first = sources
            .iter()
            .position(|s| {
                let w = s.1.max(1) as u64;
                if point < w {
                    true
                } else {
                    point -= w;
                    false
                }
            })
            .unwrap_or(0);
        order.rotate_left(first);
        let mut refusal = None;
        for i in order {
            let key = SiteKey { site: site.clone(), source: sources[i].0 };
            let verdict = self.with(&key, |s| {
                s.max_connections = limits.max_connections;
                s.max_rate = limits.max_message_rate;
                if s.suspended_until_ms > now_ms {
                    return Err(Refused::Suspended { until_ms: s.suspended_until_ms });
                }
                if s.connections >= limits.max_connections {
                    return Err(Refused::Busy);
                }
                if let Some(rate) = limits.connection_rate {
                    s.connects.take(rate.per_second(), now_ms).map_err(|until_ms| Refused::Paced { until_ms })?;
                }
                s.connections += 1;
                Ok(())
            });
            match verdict {
                Ok(()) => {
                    let stripe = Sites::stripe_of(&key);
                    return Ok(Permit { sites: self.clone(), key, stripe, source_index: i });
                }
                Err(r) => refusal = Some(merge(refusal, r)),
            }
        }
        Err(refusal.unwrap_or(Refused::Busy))
    }

    /// Every (site, source) seen so far, for `queue sites` and metrics.
    pub fn rows(&self, now_ms: u64) -> Vec<SiteRow> {
        let mut rows = Vec::new();
        for stripe in &self.stripes {
            let stripe = stripe.lock().unwrap_or_else(|p| p.into_inner());
            for (key, s) in stripe.iter() {
                let configured = s.max_rate.map(|r| r.per_second());
                let rate = match (s.rate, configured) {
                    (Some(now), Some(max)) => Some(now.min(max)),
                    (now, max) => now.or(max),
                };
                rows.push(SiteRow {
                    site: key.site.to_string(),
                    source: key.source,
                    connections: s.connections,
                    in_flight: s.in_flight,
                    rate,
                    max_rate: s.max_rate,
                    max_connections: s.max_connections,
                    suspended_until_ms: if s.suspended_until_ms > now_ms { s.suspended_until_ms } else { 0 },
                    last_reply: s.last_reply.clone(),
                    delivered: s.delivered,
                    deferred: s.deferred,
                    bounced: s.bounced,
                });
            }
        }
        rows.sort_by(|a, b| a.site.cmp(&b.site).then(a.source.cmp(&b.source)));
        rows
    }
}

/// Of two refusals, the one to report: "busy" wins (a closing connection
/// wakes whoever waits for the site, sooner than a suspension ends);
/// otherwise the sooner time.
fn merge(a: Option<Refused>, b: Refused) -> Refused {
    let until = |r: Refused| match r {
        Refused::Suspended { until_ms } | Refused::Paced { until_ms } => until_ms,
        Refused::Busy => 0,
    };
    match a {
        None => b,
        Some(Refused::Busy) => Refused::Busy,
        Some(_) if b == Refused::Busy => Refused::Busy,
        Some(a) => {
            if until(b) < until(a) {
                b
            } else {
                a
            }
        }
    }
}

impl Permit {
    /// The (site, source) this permit counts against.
    pub fn key(&self) -> &SiteKey {
        &self.key
    }

    /// May one more message go now? Takes a slot of the message rate.
    pub fn take_message(&self, limits: &SiteLimits, now_ms: u64) -> Result<(), Refused> {
        self.sites.with_in(self.stripe, &self.key, |s| {
            if s.suspended_until_ms > now_ms {
                return Err(Refused::Suspended { until_ms: s.suspended_until_ms });
            }
            match s.allowed_rate(limits, now_ms) {
                Some(rate) => s.messages.take(rate, now_ms).map_err(|until_ms| Refused::Paced { until_ms }),
                None => Ok(()),
            }
        })
    }

    /// Is the site suspended for this source at `now_ms`? Takes nothing:
    /// asked before waiting for the next message, whose rate slot is
    /// taken only once it is in hand.
    pub fn suspended(&self, now_ms: u64) -> bool {
        self.sites.with_in(self.stripe, &self.key, |s| s.suspended_until_ms > now_ms)
    }

    /// Count a message in flight until the guard drops.
    pub fn flight(&self) -> Flight<'_> {
        self.sites.with_in(self.stripe, &self.key, |s| s.in_flight += 1);
        Flight(self)
    }

    /// Count a message that went behind another (PIPELINING) and was
    /// deferred because the session ended before it had a reply: it counts
    /// as sent, but it is no reply from the site, so no backoff rule sees
    /// it (the one reply that ended the session was shown to them).
    pub fn abandoned(&self, sent: Sent, now_ms: u64) {
        self.sites.with_in(self.stripe, &self.key, |s| s.count_sent(sent, now_ms));
    }

    /// Record a reply from the site (`line`: "{code} {enhanced} {text}")
    /// and how the attempt ended; apply the first backoff rule it matches
    /// and return it, so the caller can act on the message (bounce, defer)
    /// and the connection (close on suspend).
    pub fn replied(
        &self,
        limits: &SiteLimits,
        line: &str,
        sent: Option<Sent>,
        now_ms: u64,
    ) -> Option<(BackoffAction, Duration)> {
        let rule = limits.backoff_for(line).map(|b| (b.action, b.duration, b.source.clone()));
        self.sites.with_in(self.stripe, &self.key, |s| {
            // Its buffer is reused: a reply per message comes here.
            s.last_reply.clear();
            s.last_reply.extend(line.chars().take(200));
            if let Some(sent) = sent {
                s.count_sent(sent, now_ms);
            }
            match rule {
                Some((BackoffAction::Suspend, duration, _)) => {
                    let until = now_ms + duration.as_millis() as u64;
                    s.suspended_until_ms = s.suspended_until_ms.max(until);
                    s.rate_changed_ms = now_ms;
                }
                Some((BackoffAction::HalveRate, ..)) => s.halve(limits, now_ms),
                Some(_) => {}
                None => {}
            }
        });
        if let Some((action, duration, source)) = &rule {
            tracing::info!(site = %self.key.site, source = ?self.key.source, action = ?action, rule = %source, reply = %line, "backoff");
            return Some((*action, *duration));
        }
        None
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.sites.with_in(self.stripe, &self.key, |s| s.connections = s.connections.saturating_sub(1));
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.0.sites.with_in(self.0.stripe, &self.0.key, |s| s.in_flight = s.in_flight.saturating_sub(1));
    }
}

mod report;
pub use report::{render_metrics, report, SiteSummary, SitesReport};

#[cfg(test)]
mod tests;
