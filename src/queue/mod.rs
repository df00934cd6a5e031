//! Relay queue shards: per destination (recipient domain and egress pool),
//! the messages waiting to be relayed, the connections in flight, and the
//! deferred ones ordered by their next attempt.
//!
//! Owns: the in-memory queue for the domains hashed to this core. Pure: no
//! I/O, no clock (`now_ms` is passed in), no randomness of its own (jitter
//! comes from the caller's rng). Entries arrive only after their message
//! record is durable, and the queue is rebuilt from the spool on start, so
//! it never holds the only copy of anything.
//!
//! Shape (KumoMTA's scheduled queue -> ready queue): `deferred` is a
//! min-heap on due time (O(log n) push/pop, so a million queued messages
//! cost nothing per operation); `promote_due` moves what is due onto its
//! domain's ready queue; dispatchers take from ready queues. Fresh and
//! retried mail share the ready queue in arrival-at-ready order.

mod schedule;

pub use schedule::{retry_delay, RetryPolicy};

use crate::spool::{QueueId, SpoolRef};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

/// A recipient of a queued message that is not final yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRecipient {
    /// Index among the message's recipients (names it in spool records).
    pub index: u16,
    pub address: String,
}

/// Where queued mail goes: the recipient domain, and the egress pool
/// (index into `relay.pool`) its envelope sender selects. Mail for one
/// domain from senders in different pools leaves from different source
/// addresses, so it waits in separate ready lists and travels over
/// separate connections.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dest {
    pub domain: String,
    /// None: no pools configured, the system's default source address.
    pub pool: Option<u16>,
}

impl std::fmt::Display for Dest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pool {
            None => f.write_str(&self.domain),
            Some(p) => write!(f, "{} (pool {p})", self.domain),
        }
    }
}

/// One message's share for one destination domain: all its recipients
/// there travel in one SMTP transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    pub at: SpoolRef,
    pub queue_id: QueueId,
    pub domain: String,
    /// The egress pool its sender selects (see [`Dest`]); chosen when it
    /// is queued, from the config in force (pools change only at restart).
    pub pool: Option<u16>,
    pub sender: String,
    pub recipients: Vec<PendingRecipient>,
    /// When the message was received (drives lifetime and delay warning).
    pub arrived_ms: u64,
    /// Delivery attempts so far (drives the retry schedule).
    pub attempts: u32,
    /// The last temporary failure, for `queue list` and bounces.
    pub last_error: Option<String>,
    /// A delay notice was sent already.
    pub warned: bool,
    /// Held by the operator: never dispatched until released.
    pub held: bool,
    /// Next attempt, when deferred.
    pub next_attempt_ms: Option<u64>,
    /// `seq` of the last recipient-state record written for it (states
    /// must be numbered upwards; see `spool::RecipientState`).
    pub state_seq: u64,
}

impl QueuedMessage {
    /// A message share that has not been tried yet.
    pub fn new(
        at: SpoolRef,
        queue_id: QueueId,
        domain: String,
        sender: String,
        recipients: Vec<PendingRecipient>,
        arrived_ms: u64,
    ) -> QueuedMessage {
        QueuedMessage {
            at,
            queue_id,
            domain,
            pool: None,
            sender,
            recipients,
            arrived_ms,
            attempts: 0,
            last_error: None,
            warned: false,
            held: false,
            next_attempt_ms: None,
            state_seq: 0,
        }
    }

    /// The same share, leaving from egress pool `pool`.
    pub fn in_pool(mut self, pool: Option<u16>) -> QueuedMessage {
        self.pool = pool;
        self
    }

    /// Its destination: the key of its ready list.
    pub fn dest(&self) -> Dest {
        Dest { domain: self.domain.clone(), pool: self.pool }
    }
}

/// Queue depth by state (see [`QueueShard::depth`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueDepth {
    pub ready: u64,
    pub deferred: u64,
    pub held: u64,
    /// Taken by a connection, attempt not finished.
    pub inflight: u64,
    pub oldest_arrived_ms: Option<u64>,
}

/// Slab key of a queued message on this core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(u64);

/// What `promote_due` found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Promoted {
    /// Destinations that got work.
    pub domains: Vec<Dest>,
    /// Messages past `max_queue_lifetime`: the caller bounces them.
    pub expired: Vec<QueuedMessage>,
    /// Messages that crossed `delay_warning` (now marked warned).
    pub warn: Vec<QueuedMessage>,
}

#[derive(Debug, Default)]
struct Destination {
    ready: VecDeque<Key>,
    /// Connections open or being opened to this domain.
    connections: usize,
    /// Messages queued for this domain, in any state.
    queued: usize,
}

/// The queue shard of one core.
#[derive(Debug, Default)]
pub struct QueueShard {
    messages: HashMap<Key, QueuedMessage>,
    destinations: HashMap<Dest, Destination>,
    /// (due, key); stale entries (message gone or rescheduled) are skipped.
    deferred: BinaryHeap<Reverse<(u64, Key)>>,
    next_key: u64,
}

impl QueueShard {
    /// Queue `msg`. With `next_attempt_ms` set (recovered deferred state)
    /// it waits until then; otherwise it is ready now.
    pub fn enqueue(&mut self, msg: QueuedMessage) -> Key {
        let key = Key(self.next_key);
        self.next_key += 1;
        let dest = self.destinations.entry(msg.dest()).or_default();
        dest.queued += 1;
        match msg.next_attempt_ms {
            Some(due) => self.deferred.push(Reverse((due, key))),
            None if !msg.held => dest.ready.push_back(key),
            None => {}
        }
        self.messages.insert(key, msg);
        key
    }

    /// Messages queued on this core (any state).
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn get(&self, key: Key) -> Option<&QueuedMessage> {
        self.messages.get(&key)
    }

    /// Number the next state record of `key` (strictly increasing).
    pub fn next_state_seq(&mut self, key: Key, now_us: u64) -> Option<u64> {
        let m = self.messages.get_mut(&key)?;
        m.state_seq = (m.state_seq + 1).max(now_us);
        Some(m.state_seq)
    }

    /// Every queued message (for `queue list`), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Key, &QueuedMessage)> {
        self.messages.iter().map(|(k, m)| (*k, m))
    }

    /// When the earliest deferred message is due, if any.
    pub fn poll_timeout(&mut self) -> Option<u64> {
        while let Some(&Reverse((due, key))) = self.deferred.peek() {
            if self.messages.get(&key).is_some_and(|m| m.next_attempt_ms == Some(due)) {
                return Some(due);
            }
            self.deferred.pop(); // stale
        }
        None
    }

    /// Move every message due at `now_ms` to its ready queue; report
    /// expired ones (removed from the queue) and those owing a delay notice.
    pub fn promote_due(&mut self, now_ms: u64, policy: &RetryPolicy) -> Promoted {
        let mut out = Promoted::default();
        while let Some(&Reverse((due, key))) = self.deferred.peek() {
            if due > now_ms {
                break;
            }
            self.deferred.pop();
            let Some(msg) = self.messages.get_mut(&key) else { continue };
            if msg.next_attempt_ms != Some(due) || msg.held {
                continue; // stale entry, or held meanwhile
            }
            msg.next_attempt_ms = None;
            if now_ms.saturating_sub(msg.arrived_ms) >= policy.max_lifetime_ms {
                if let Some(m) = self.take(key) {
                    out.expired.push(m);
                }
                continue;
            }
            if !msg.warned
                && policy.delay_warning_ms > 0
                && now_ms.saturating_sub(msg.arrived_ms) >= policy.delay_warning_ms
            {
                msg.warned = true;
                out.warn.push(msg.clone());
            }
            let to = msg.dest();
            let dest = self.destinations.entry(to.clone()).or_default();
            dest.ready.push_back(key);
            if !out.domains.contains(&to) {
                out.domains.push(to);
            }
        }
        out
    }

    /// Destinations with ready work and room for another connection.
    pub fn domains_wanting_connections(&self, max_connections: usize) -> Vec<Dest> {
        self.destinations
            .iter()
            .filter(|(_, d)| !d.ready.is_empty() && d.connections < max_connections)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Reserve a connection slot for `domain` if under `max` and there is
    /// more ready mail than connections to carry it.
    pub fn open_connection(&mut self, domain: &Dest, max: usize) -> bool {
        // `get_mut`, not `entry`: a destination the queue does not know has
        // no ready mail, and an entry made here for it would never be
        // removed (only `close_connection` removes one), so every domain
        // ever kicked after its last message would stay for good.
        let Some(d) = self.destinations.get_mut(domain) else { return false };
        if d.connections < max && d.ready.len() > d.connections {
            d.connections += 1;
            true
        } else {
            false
        }
    }

    /// Return a connection slot.
    pub fn close_connection(&mut self, domain: &Dest) {
        if let Some(d) = self.destinations.get_mut(domain) {
            d.connections = d.connections.saturating_sub(1);
            // O(1): a scan of every queued message here made each closing
            // connection cost O(queue) with a large backlog.
            if d.connections == 0 && d.ready.is_empty() && d.queued == 0 {
                self.destinations.remove(domain);
            }
        }
    }

    /// Compaction moved records: point queued messages at their new places.
    ///
    /// Returns the moved messages that carry queue state (attempts, a
    /// scheduled retry, a hold, a delay notice sent): their state records
    /// name the old place, so the caller records them again at the new one.
    pub fn relocate(&mut self, moves: &HashMap<SpoolRef, SpoolRef>) -> Vec<Key> {
        let mut stateful = Vec::new();
        for (&key, m) in self.messages.iter_mut() {
            if let Some(new) = moves.get(&m.at) {
                m.at = *new;
                if m.attempts > 0 || m.next_attempt_ms.is_some() || m.held || m.warned {
                    stateful.push(key);
                }
            }
        }
        stateful
    }

    /// Relay connections open (or being opened) to any domain.
    pub fn open_connections(&self) -> usize {
        self.destinations.values().map(|d| d.connections).sum()
    }

    /// Does the queue keep anything for `dest` (mail or a connection)?
    pub fn knows(&self, dest: &Dest) -> bool {
        self.destinations.contains_key(dest)
    }

    /// Per destination: message shares queued (any state). One pass over
    /// the destinations, for `queue sites`.
    pub fn queued_by_dest(&self) -> impl Iterator<Item = (&Dest, usize)> {
        self.destinations.iter().map(|(d, v)| (d, v.queued))
    }

    /// Connections open to `domain` now.
    pub fn connections(&self, domain: &Dest) -> usize {
        self.destinations.get(domain).map_or(0, |d| d.connections)
    }

    /// Take the next ready message for `domain` (it stays in the queue,
    /// in flight, until `finish` or `defer`).
    pub fn next_ready(&mut self, domain: &Dest) -> Option<(Key, QueuedMessage)> {
        let d = self.destinations.get_mut(domain)?;
        while let Some(key) = d.ready.pop_front() {
            if let Some(m) = self.messages.get(&key) {
                if !m.held {
                    return Some((key, m.clone()));
                }
            }
        }
        // Drained: a backlog's worth of room goes back now.
        if d.ready.capacity() > 1024 {
            d.ready = VecDeque::new();
        }
        None
    }

    /// A message taken by [`QueueShard::next_ready`] and not sent (its site
    /// was suspended while it waited for a rate slot): ready again, first
    /// in line for its destination.
    pub fn put_back(&mut self, key: Key) {
        if let Some(dest) = self.messages.get(&key).map(QueuedMessage::dest) {
            self.destinations.entry(dest).or_default().ready.push_front(key);
        }
    }

    /// The attempt ended with every recipient final: forget the message.
    pub fn finish(&mut self, key: Key) -> Option<QueuedMessage> {
        self.take(key)
    }

    /// The attempt left `remaining` recipients not final: try again at
    /// `due_ms`. Returns the message as now queued.
    pub fn defer(
        &mut self,
        key: Key,
        remaining: Vec<PendingRecipient>,
        error: String,
        due_ms: u64,
    ) -> Option<&QueuedMessage> {
        let msg = self.messages.get_mut(&key)?;
        msg.recipients = remaining;
        msg.attempts += 1;
        msg.last_error = Some(error);
        msg.next_attempt_ms = Some(due_ms);
        self.deferred.push(Reverse((due_ms, key)));
        Some(msg)
    }

    /// `queue flush`: everything deferred becomes due at `now_ms`.
    pub fn flush(&mut self, now_ms: u64) -> usize {
        let mut n = 0;
        for (key, m) in self.messages.iter_mut() {
            if m.next_attempt_ms.is_some() && !m.held {
                m.next_attempt_ms = Some(now_ms);
                self.deferred.push(Reverse((now_ms, *key)));
                n += 1;
            }
        }
        n
    }

    /// Keys of the messages with this queue id (one per domain share).
    pub fn find(&self, queue_id: QueueId) -> Vec<Key> {
        self.messages.iter().filter(|(_, m)| m.queue_id == queue_id).map(|(k, _)| *k).collect()
    }

    /// `queue hold`: never dispatched until released. In-flight attempts
    /// finish.
    pub fn hold(&mut self, key: Key) -> bool {
        self.messages.get_mut(&key).map(|m| m.held = true).is_some()
    }

    /// `queue release`: due now.
    pub fn release(&mut self, key: Key, now_ms: u64) -> bool {
        let Some(m) = self.messages.get_mut(&key) else { return false };
        if !m.held {
            return false;
        }
        m.held = false;
        m.next_attempt_ms = Some(now_ms);
        self.deferred.push(Reverse((now_ms, key)));
        true
    }

    /// How many message shares are in each state, and when the oldest
    /// arrived. One pass over the queue (a metrics scrape or `status`).
    pub fn depth(&self) -> QueueDepth {
        let mut d = QueueDepth::default();
        let mut waiting = 0u64;
        for m in self.messages.values() {
            if m.held {
                d.held += 1;
            } else if m.next_attempt_ms.is_some() {
                d.deferred += 1;
            } else {
                waiting += 1;
            }
            d.oldest_arrived_ms = Some(d.oldest_arrived_ms.map_or(m.arrived_ms, |o: u64| o.min(m.arrived_ms)));
        }
        // Ready lists drop keys of removed or held messages lazily (and a
        // released message can be listed twice), so count live entries and
        // cap by what is really waiting.
        let listed = self
            .destinations
            .values()
            .flat_map(|d| d.ready.iter())
            .filter(|k| self.messages.get(k).is_some_and(|m| !m.held && m.next_attempt_ms.is_none()))
            .count() as u64;
        d.ready = listed.min(waiting);
        d.inflight = waiting - d.ready;
        d
    }

    /// `queue delete`: drop it (the caller tombstones its recipients).
    pub fn remove(&mut self, key: Key) -> Option<QueuedMessage> {
        self.take(key)
    }

    /// Give back the memory of a drained backlog: each table shrinks when
    /// less than a quarter of it is used (maps never shrink by themselves,
    /// so a million messages relayed would otherwise keep their room).
    /// O(1) when nothing is to be done; the caller runs it now and then.
    /// (A destination's ready list gives its room back where it empties,
    /// in `next_ready`.)
    pub fn shrink(&mut self) {
        fn sparse(capacity: usize, len: usize) -> bool {
            capacity > 4 * len + 1024
        }
        if sparse(self.messages.capacity(), self.messages.len()) {
            self.messages.shrink_to_fit();
        }
        if sparse(self.deferred.capacity(), self.deferred.len()) {
            self.deferred.shrink_to_fit();
        }
        if sparse(self.destinations.capacity(), self.destinations.len()) {
            self.destinations.shrink_to_fit();
        }
    }

    /// Forget a message, keeping its destination's count.
    fn take(&mut self, key: Key) -> Option<QueuedMessage> {
        let m = self.messages.remove(&key)?;
        if let Some(d) = self.destinations.get_mut(&m.dest()) {
            d.queued = d.queued.saturating_sub(1);
        }
        Some(m)
    }
}

#[cfg(test)]
mod tests;
