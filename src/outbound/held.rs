//! Destinations held back by their site, on one core: waiting for a busy
//! site (every source at `max_connections`), or parked until a suspension
//! or the site's pace allows the next connection; and the site limits last
//! resolved for each destination.
//!
//! Holding a destination here instead of in a connection task is what
//! keeps the dispatcher fair (issue 12 item 7): a held destination has no
//! task and no connection slot, so nothing waits on it; mail for every
//! other site keeps flowing. A waiting destination is woken one at a time
//! as connections to its site close ([`Outbound::site_freed`]), and the
//! relay timer retries one per site each tick for connections that closed
//! on another core. Every operation is O(1) per destination.
//!
//! It must not decide whether a connection may open (that is
//! [`super::sites::Sites`]) or touch the queue.

use super::shaping::SiteLimits;
use super::Outbound;
use crate::queue::Dest;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

/// The source addresses a waiting destination may connect from.
pub(crate) type Sources = Box<[Option<IpAddr>]>;

/// See the module doc.
#[derive(Default)]
pub(super) struct Held {
    /// By site: destinations waiting for a connection to it to close, and
    /// the sources each waits for (as counted in the site table).
    waiting: HashMap<Arc<str>, VecDeque<(Dest, Sources)>>,
    /// The destinations in `waiting` (one entry each).
    waiting_set: HashSet<Dest>,
    /// Destinations parked until a time (ms since the epoch).
    parked: HashMap<Dest, u64>,
    /// The limits last resolved for each destination with mail queued.
    limits: HashMap<Dest, Arc<SiteLimits>>,
}

impl Outbound {
    /// Is `dest` held (waiting for its site, or parked past `now_ms`)?
    pub(crate) fn is_held(&self, dest: &Dest, now_ms: u64) -> bool {
        let held = self.held.borrow();
        held.waiting_set.contains(dest) || held.parked.get(dest).is_some_and(|&until| until > now_ms)
    }

    /// Is `dest` parked until its site's suspension or pace allows it
    /// (not merely waiting for one of its connections)?
    pub(crate) fn is_parked(&self, dest: &Dest, now_ms: u64) -> bool {
        self.held.borrow().parked.get(dest).is_some_and(|&until| until > now_ms)
    }

    /// Hold `dest` until a connection to `site` from one of `sources`
    /// closes (counted in the server-wide site table while it waits).
    pub(crate) fn wait_for_site(&self, site: &Arc<str>, dest: Dest, sources: Sources) {
        let mut held = self.held.borrow_mut();
        if held.waiting_set.insert(dest.clone()) {
            self.sites.wait(site, &sources);
            held.waiting.entry(site.clone()).or_default().push_back((dest, sources));
        }
    }

    /// A connection to `site` closed: the destination that has waited
    /// longest for it, if any (no longer waiting).
    pub(crate) fn site_freed(&self, site: &Arc<str>) -> Option<Dest> {
        let mut held = self.held.borrow_mut();
        let queue = held.waiting.get_mut(site)?;
        let dest = queue.pop_front();
        if queue.is_empty() {
            held.waiting.remove(site);
        }
        let (dest, sources) = dest?;
        held.waiting_set.remove(&dest);
        self.sites.stop_waiting(site, &sources);
        Some(dest)
    }

    /// One waiting destination per site (the relay timer retries them, for
    /// connections that closed on another core).
    pub(crate) fn one_waiting_per_site(&self) -> Vec<Dest> {
        let sites: Vec<Arc<str>> = self.held.borrow().waiting.keys().cloned().collect();
        sites.iter().filter_map(|s| self.site_freed(s)).collect()
    }

    /// Any destination waiting for a busy site?
    pub(crate) fn any_waiting(&self) -> bool {
        !self.held.borrow().waiting.is_empty()
    }

    /// Park `dest` until `until_ms`. True when it was not parked that long
    /// already (the caller then arranges the wake-up).
    pub(crate) fn park(&self, dest: &Dest, until_ms: u64) -> bool {
        let mut held = self.held.borrow_mut();
        match held.parked.get(dest) {
            Some(&until) if until >= until_ms => false,
            _ => {
                held.parked.insert(dest.clone(), until_ms);
                true
            }
        }
    }

    /// The park of `dest` ended (if it ends at `until_ms`: a later park
    /// has its own wake-up).
    pub(crate) fn unpark(&self, dest: &Dest, until_ms: u64) {
        let mut held = self.held.borrow_mut();
        if held.parked.get(dest) == Some(&until_ms) {
            held.parked.remove(dest);
        }
    }

    /// Remember the limits resolved for `dest`.
    pub(crate) fn remember_limits(&self, dest: &Dest, limits: Arc<SiteLimits>) {
        self.held.borrow_mut().limits.insert(dest.clone(), limits);
    }

    /// The limits last resolved for `dest`, if it was tried since start.
    pub(crate) fn limits_of(&self, dest: &Dest) -> Option<Arc<SiteLimits>> {
        self.held.borrow().limits.get(dest).cloned()
    }

    /// The queue forgot `dest` (nothing queued): forget its limits too,
    /// so the map holds only destinations with mail.
    pub(crate) fn forget_dest(&self, dest: &Dest) {
        self.held.borrow_mut().limits.remove(dest);
    }
}
