//! Relay queue shards: per destination (recipient domain and egress pool),
//! the messages waiting to be relayed, the connections in flight, and the
//! deferred ones ordered by their next attempt.
//!
//! Owns: the in-memory queue for the domains hashed to this core. Pure: no
//! I/O, no clock (`now_ms` is passed in), no randomness of its own (jitter
//! comes from the caller's rng); what it does not keep of a message (its
//! sender and recipient addresses) it asks the caller's [`Envelopes`] for.
//! Entries arrive only after their message record is durable, and the
//! queue is rebuilt from the spool on start, so it never holds the only
//! copy of anything.
//!
//! Shape (Postfix's active queue, KumoMTA's scheduled queue -> ready
//! queue): every share is a 48-byte [`entry::Entry`] in a slab, whatever
//! its state; `deferred` is a min-heap of 12-byte (due, slot) items
//! (O(log n) push/pop); `promote_due` moves what is due to the retried
//! line. The *active window* (ready lists plus shares in flight) holds at
//! most `limit` shares; `refill` fills it from the fresh and retried lines
//! in turn, so a big due backlog cannot starve new mail. Only fresh shares
//! that enter the window at once keep their envelope in memory; the rest
//! have it read back from the spool when they are taken.

mod adopt;
mod entry;
mod intern;
mod manage;
mod schedule;

pub use adopt::{Adopted, AdoptionIds, Share};
pub use manage::Listed;
pub use schedule::{retry_delay, RetryPolicy};

use crate::spool::{QueueId, SpoolRef};
use entry::{Entry, State, ERROR_MAX};
use intern::Interner;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

/// `[relay] active_limit`'s default: shares per core in the active window
/// (Postfix's `qmgr_message_active_limit`).
pub const DEFAULT_ACTIVE_LIMIT: usize = 20_000;

/// Where the queue reads back what it does not keep in memory.
pub trait Envelopes {
    /// The sender of the message at `at` and the addresses of its
    /// recipients `recipients` (indexes, in that order); None when the
    /// record cannot be read.
    fn envelope(&self, at: SpoolRef, recipients: &[u16]) -> Option<(String, Vec<String>)>;
}

/// Reads nothing back: messages come out with an empty sender and empty
/// addresses (for callers that need only indexes and queue state).
pub struct NoEnvelopes;

impl Envelopes for NoEnvelopes {
    fn envelope(&self, _: SpoolRef, _: &[u16]) -> Option<(String, Vec<String>)> {
        None
    }
}

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
    /// Due: in the active window's ready lists or waiting for a turn.
    pub ready: u64,
    pub deferred: u64,
    pub held: u64,
    /// Taken by a connection, attempt not finished.
    pub inflight: u64,
    pub oldest_arrived_ms: Option<u64>,
}

/// Key of a queued message share on this core: its slab slot and the
/// slot's generation (a key of a share gone misses, even once the slot
/// is reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(u64);

impl Key {
    fn new(slot: u32, generation: u32) -> Key {
        Key(u64::from(generation) << 32 | u64::from(slot))
    }

    fn slot(self) -> u32 {
        self.0 as u32
    }

    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

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
    /// Its id in the entries (index into `QueueShard::dest_names`).
    id: u32,
    ready: VecDeque<Key>,
    /// Connections open or being opened to this domain.
    connections: usize,
    /// Messages queued for this domain, in any state.
    queued: usize,
    /// Listed in `QueueShard::woken` already.
    woken: bool,
}

/// The envelope of a fresh share that entered the active window at once:
/// kept so that sending it reads nothing back.
#[derive(Debug)]
struct Loaded {
    sender: String,
    addresses: Vec<String>,
}

/// An item of the due-time heap: due time (high and low half) and slot,
/// 12 bytes. Stale items (share gone, promoted or rescheduled) are those
/// whose slot is not deferred to exactly that time; they are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Due([u32; 3]);

impl Due {
    fn new(due_ms: u64, slot: u32) -> Due {
        Due([(due_ms >> 32) as u32, due_ms as u32, slot])
    }

    fn due_ms(self) -> u64 {
        u64::from(self.0[0]) << 32 | u64::from(self.0[1])
    }

    fn slot(self) -> u32 {
        self.0[2]
    }
}

/// The queue shard of one core.
#[derive(Debug)]
pub struct QueueShard {
    /// Every share, by slot; free slots are in `free`.
    entries: Vec<Entry>,
    /// Free slots, lowest first (so a drained slab empties from its end).
    free: BinaryHeap<Reverse<u32>>,
    live: usize,
    /// The next slot generation (every allocation takes a new one).
    generation: u32,
    /// Pending recipient indexes of shares with other than one.
    multi: HashMap<u32, Box<[u16]>>,
    /// See [`Loaded`]; only shares in the active window.
    loaded: HashMap<u32, Loaded>,
    destinations: HashMap<Dest, Destination>,
    /// Destination id → destination (None: id free).
    dest_names: Vec<Option<Dest>>,
    free_dests: Vec<u32>,
    errors: Interner,
    deferred: BinaryHeap<Reverse<Due>>,
    /// Fresh shares waiting for room in the active window, oldest first.
    fresh: VecDeque<Key>,
    /// Retried shares (due) waiting for room, in the order they fell due.
    retried: VecDeque<Key>,
    /// Whose turn it is when both lines wait.
    fresh_turn: bool,
    /// Shares in the active window (ready or in flight).
    active: usize,
    limit: usize,
    /// Destinations that got ready work since `promote_due` last ran.
    woken: Vec<Dest>,
    /// The highest state record number given out or recovered: the next
    /// one is higher (numbers must grow per message; one counter per
    /// core keeps that without a number per share).
    state_seq: u64,
}

impl Default for QueueShard {
    fn default() -> QueueShard {
        QueueShard::new(DEFAULT_ACTIVE_LIMIT)
    }
}

impl QueueShard {
    /// An empty queue whose active window holds `limit` shares (at least 1).
    pub fn new(limit: usize) -> QueueShard {
        QueueShard {
            entries: Vec::new(),
            free: BinaryHeap::new(),
            live: 0,
            generation: 0,
            multi: HashMap::new(),
            loaded: HashMap::new(),
            destinations: HashMap::new(),
            dest_names: Vec::new(),
            free_dests: Vec::new(),
            errors: Interner::default(),
            deferred: BinaryHeap::new(),
            fresh: VecDeque::new(),
            retried: VecDeque::new(),
            fresh_turn: true,
            active: 0,
            limit: limit.max(1),
            woken: Vec::new(),
            state_seq: 0,
        }
    }

    /// Queue `msg`. With `next_attempt_ms` set (recovered deferred state)
    /// it waits until then; held, until released; otherwise it is due now:
    /// ready if the active window has room and no fresh mail waits before
    /// it, else in line for the window.
    pub fn enqueue(&mut self, msg: QueuedMessage) -> Key {
        let (slot, generation) = self.allocate();
        let dest = self.dest_id(msg.dest());
        let mut e = Entry::new(msg.at, msg.queue_id, dest, msg.arrived_ms, generation);
        e.set_attempts(msg.attempts);
        e.set_warned(msg.warned);
        e.set_held(msg.held);
        if let Some(error) = &msg.last_error {
            e.set_error(self.errors.acquire(error, ERROR_MAX));
        }
        self.state_seq = self.state_seq.max(msg.state_seq);
        let indexes: Vec<u16> = msg.recipients.iter().map(|r| r.index).collect();
        self.set_recipients(slot, &mut e, indexes);
        let addresses = msg.recipients.into_iter().map(|r| r.address).collect();
        self.place(slot, e, msg.next_attempt_ms, Some(Loaded { sender: msg.sender, addresses }))
    }

    /// Put the new share `e` in `slot`: parked if held, deferred until
    /// `next` if set, else ready (keeping its envelope `loaded`, if given)
    /// when the active window has room and no fresh mail waits before it,
    /// else in line for the window.
    fn place(&mut self, slot: u32, mut e: Entry, next: Option<u64>, loaded: Option<Loaded>) -> Key {
        let key = Key::new(slot, e.generation);
        if let Some(due) = next {
            e.schedule(due);
        }
        let held = e.held();
        self.entries[slot as usize] = e;
        self.live += 1;
        match (held, next) {
            (true, _) => self.set_state(slot, State::Parked),
            (false, Some(due)) => {
                self.set_state(slot, State::Deferred);
                self.deferred.push(Reverse(Due::new(due, slot)));
            }
            (false, None) if self.active < self.limit && self.fresh.is_empty() => {
                if let Some(loaded) = loaded {
                    self.loaded.insert(slot, loaded);
                }
                self.make_ready(key, false); // the caller kicks it
            }
            (false, None) => {
                self.set_state(slot, State::Waiting);
                self.fresh.push_back(key);
            }
        }
        key
    }

    /// Messages queued on this core (any state).
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Number the next state record of `key` (strictly increasing).
    pub fn next_state_seq(&mut self, key: Key, now_us: u64) -> Option<u64> {
        self.entry(key)?;
        self.state_seq = (self.state_seq + 1).max(now_us);
        Some(self.state_seq)
    }

    /// When the next thing is to be done: the earliest deferred message is
    /// due, or (with `Some(0)`) the active window has room for mail that
    /// waits for it.
    pub fn poll_timeout(&mut self) -> Option<u64> {
        if self.active < self.limit && !(self.fresh.is_empty() && self.retried.is_empty()) {
            return Some(0);
        }
        while let Some(&Reverse(item)) = self.deferred.peek() {
            if self.is_due_item(item) {
                return Some(item.due_ms());
            }
            self.deferred.pop(); // stale
        }
        None
    }

    /// Move every message due at `now_ms` in line for the active window
    /// and fill the window; report expired ones (removed from the queue)
    /// and those owing a delay notice (their envelopes read from `env`).
    pub fn promote_due(&mut self, now_ms: u64, policy: &RetryPolicy, env: &impl Envelopes) -> Promoted {
        let mut out = Promoted::default();
        while let Some(&Reverse(item)) = self.deferred.peek() {
            if item.due_ms() > now_ms {
                break;
            }
            self.deferred.pop();
            if !self.is_due_item(item) {
                continue; // stale entry, or held meanwhile
            }
            let slot = item.slot();
            let e = &mut self.entries[slot as usize];
            e.unschedule();
            let key = Key::new(slot, e.generation);
            let age = now_ms.saturating_sub(e.arrived_ms());
            if age >= policy.max_lifetime_ms {
                out.expired.extend(self.take(key, env));
                continue;
            }
            if !e.warned() && policy.delay_warning_ms > 0 && age >= policy.delay_warning_ms {
                e.set_warned(true);
                out.warn.extend(self.message(key, env));
            }
            self.set_state(slot, State::Waiting);
            self.retried.push_back(key);
        }
        self.refill();
        // Only those whose work is still there (a connection may have
        // taken it since).
        for dest in std::mem::take(&mut self.woken) {
            if let Some(d) = self.destinations.get_mut(&dest) {
                d.woken = false;
                if !d.ready.is_empty() {
                    out.domains.push(dest);
                }
            }
        }
        out
    }

    /// Fill the active window from the fresh and retried lines, taking
    /// turns while both wait (each line in its own order). Destinations
    /// that got work are listed for the next `promote_due`.
    fn refill(&mut self) {
        while self.active < self.limit {
            let fresh = match (self.fresh.is_empty(), self.retried.is_empty()) {
                (true, true) => break,
                (false, true) => true,
                (true, false) => false,
                (false, false) => self.fresh_turn,
            };
            let line = if fresh { &mut self.fresh } else { &mut self.retried };
            let Some(key) = line.pop_front() else { break };
            self.fresh_turn = !fresh;
            if self.entry(key).is_some_and(|e| e.state() == State::Waiting) {
                self.make_ready(key, true);
            }
        }
        if self.fresh.is_empty() && self.fresh.capacity() > 1024 {
            self.fresh = VecDeque::new();
        }
        if self.retried.is_empty() && self.retried.capacity() > 1024 {
            self.retried = VecDeque::new();
        }
    }

    /// Into the active window: onto its destination's ready list (and,
    /// with `wake`, its destination listed for the next `promote_due`).
    fn make_ready(&mut self, key: Key, wake: bool) {
        let slot = key.slot();
        self.set_state(slot, State::Ready);
        // Fields apart: no copy of the destination per share.
        let id = self.entries[slot as usize].dest;
        let dest = self.dest_names[id as usize].as_ref().expect("a live entry's destination is known");
        if let Some(d) = self.destinations.get_mut(dest) {
            d.ready.push_back(key);
            if wake && !d.woken {
                d.woken = true;
                self.woken.push(dest.clone());
            }
        }
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
        }
        self.forget_if_idle(domain);
    }

    /// How many idle connections to `domain` new mail can keep busy: its
    /// ready list's length (an upper bound: it may hold stale keys), or
    /// every one while shares wait for room in the active window (taking
    /// one tops the window up, so the ready list understates the work).
    pub fn wanted_connections(&self, domain: &Dest) -> usize {
        if !self.fresh.is_empty() || !self.retried.is_empty() {
            return usize::MAX;
        }
        self.destinations.get(domain).map_or(0, |d| d.ready.len())
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
    /// in flight, until `finish` or `defer`), its envelope read from `env`
    /// unless kept. Tops up the active window first.
    pub fn next_ready(&mut self, domain: &Dest, env: &impl Envelopes) -> Option<(Key, QueuedMessage)> {
        self.refill();
        loop {
            let d = self.destinations.get_mut(domain)?;
            let Some(key) = d.ready.pop_front() else {
                // Drained: a backlog's worth of room goes back now.
                if d.ready.capacity() > 1024 {
                    d.ready = VecDeque::new();
                }
                return None;
            };
            if self.entry(key).is_some_and(|e| e.state() == State::Ready) {
                self.set_state(key.slot(), State::InFlight);
                let msg = self.message(key, env)?;
                self.loaded.remove(&key.slot());
                return Some((key, msg));
            }
        }
    }

    /// Shares waiting in `domain`'s ready list (an upper bound: a share
    /// taken out of turn leaves its place there until it comes up).
    pub fn ready_len(&self, domain: &Dest) -> usize {
        self.destinations.get(domain).map_or(0, |d| d.ready.len())
    }

    /// Shares in the active window (ready, or taken by a connection).
    #[cfg(test)]
    pub fn active(&self) -> usize {
        self.active
    }

    /// Shares due now: in the active window, or waiting for room in it.
    pub fn due(&self) -> usize {
        self.active + self.fresh.len() + self.retried.len()
    }

    /// Take up to `n` shares off the back of `domain`'s ready list out of
    /// this queue, with their envelopes, for another core to relay (see
    /// `outbound::lend`): the newest, so the oldest keep their turn here.
    /// A share whose envelope cannot be read back stays (its own attempt
    /// reports that).
    pub fn lend(&mut self, domain: &Dest, n: usize, env: &impl Envelopes) -> Vec<QueuedMessage> {
        let mut lent = Vec::new();
        let mut kept = Vec::new();
        while lent.len() < n {
            let Some(key) = self.destinations.get_mut(domain).and_then(|d| d.ready.pop_back()) else { break };
            if !self.entry(key).is_some_and(|e| e.state() == State::Ready) {
                continue;
            }
            match self.message(key, env) {
                Some(msg) if msg.recipients.iter().all(|r| !r.address.is_empty()) => {
                    self.forget(key);
                    lent.push(msg);
                }
                _ => kept.push(key),
            }
        }
        if let Some(d) = self.destinations.get_mut(domain) {
            d.ready.extend(kept.into_iter().rev());
        }
        lent
    }

    /// The shares of `domain`'s ready list in the order they will be
    /// taken, each with its spool place and arrival: what is bound to go
    /// out next (the ready list is not changed).
    pub fn ready_ahead(&self, domain: &Dest) -> impl Iterator<Item = (Key, SpoolRef, u64)> + '_ {
        let ready = self.destinations.get(domain).map(|d| d.ready.iter());
        ready.into_iter().flatten().filter_map(|&key| {
            let e = self.entry(key).filter(|e| e.state() == State::Ready)?;
            Some((key, e.at, e.arrived_ms()))
        })
    }

    /// Is `key` in the active window (ready, or taken by a connection)?
    pub fn in_window(&self, key: Key) -> bool {
        self.entry(key).is_some_and(|e| matches!(e.state(), State::Ready | State::InFlight))
    }

    /// A message taken by [`QueueShard::next_ready`] and not sent (its site
    /// was suspended while it waited for a rate slot): ready again, first
    /// in line for its destination.
    pub fn put_back(&mut self, key: Key) {
        if !self.entry(key).is_some_and(|e| e.state() == State::InFlight && !e.held()) {
            return;
        }
        self.set_state(key.slot(), State::Ready);
        let dest = self.dest_of(key.slot()).clone();
        if let Some(d) = self.destinations.get_mut(&dest) {
            d.ready.push_front(key);
        }
    }

    /// The attempt ended with every recipient final: forget the message.
    pub fn finish(&mut self, key: Key) -> bool {
        self.forget(key)
    }

    /// The attempt left `remaining` recipients not final: try again at
    /// `due_ms` (if held meanwhile, once released).
    pub fn defer(&mut self, key: Key, remaining: Vec<PendingRecipient>, error: String, due_ms: u64) -> bool {
        let Some(e) = self.entry(key).copied() else { return false };
        let slot = key.slot();
        let mut e2 = e;
        e2.set_attempts(e.attempts() + 1);
        self.errors.release(e.error());
        e2.set_error(self.errors.acquire(&error, ERROR_MAX));
        e2.schedule(due_ms);
        self.set_recipients(slot, &mut e2, remaining.iter().map(|r| r.index).collect());
        self.entries[slot as usize] = e2;
        self.loaded.remove(&slot);
        if e.held() {
            self.set_state(slot, State::Parked);
        } else {
            self.set_state(slot, State::Deferred);
            self.deferred.push(Reverse(Due::new(due_ms, slot)));
        }
        true
    }

    /// `queue delete`: drop it (the caller tombstones its recipients);
    /// returned with its envelope from `env`.
    pub fn remove(&mut self, key: Key, env: &impl Envelopes) -> Option<QueuedMessage> {
        self.take(key, env)
    }

    /// The share of `key` as a whole message, its envelope kept or read
    /// from `env` (empty if `env` cannot read it).
    pub fn message(&self, key: Key, env: &impl Envelopes) -> Option<QueuedMessage> {
        let e = *self.entry(key)?;
        let slot = key.slot();
        let indexes = self.recipients(slot, &e);
        let (sender, addresses) = match self.loaded.get(&slot) {
            Some(l) => (l.sender.clone(), l.addresses.clone()),
            None => env.envelope(e.at, &indexes).unwrap_or_default(),
        };
        let mut addresses = addresses.into_iter();
        let recipients = indexes
            .into_iter()
            .map(|index| PendingRecipient { index, address: addresses.next().unwrap_or_default() })
            .collect();
        let dest = self.dest_of(slot);
        Some(QueuedMessage {
            at: e.at,
            queue_id: e.queue_id,
            domain: dest.domain.clone(),
            pool: dest.pool,
            sender,
            recipients,
            arrived_ms: e.arrived_ms(),
            attempts: e.attempts(),
            last_error: self.errors.get(e.error()).map(str::to_string),
            warned: e.warned(),
            held: e.held(),
            next_attempt_ms: e.scheduled(),
            state_seq: self.state_seq,
        })
    }

    /// The live entry of `key`.
    fn entry(&self, key: Key) -> Option<&Entry> {
        let e = self.entries.get(key.slot() as usize)?;
        (e.generation == key.generation() && e.state() != State::Free).then_some(e)
    }

    /// Whether a heap item is the live schedule of its slot.
    fn is_due_item(&self, item: Due) -> bool {
        self.entries
            .get(item.slot() as usize)
            .is_some_and(|e| e.state() == State::Deferred && e.scheduled() == Some(item.due_ms()))
    }

    fn dest_of(&self, slot: u32) -> &Dest {
        let id = self.entries[slot as usize].dest;
        self.dest_names[id as usize].as_ref().expect("a live entry's destination is known")
    }

    /// Move a live slot to `state`, keeping the window's count.
    fn set_state(&mut self, slot: u32, state: State) {
        let e = &mut self.entries[slot as usize];
        let in_window = |s: State| matches!(s, State::Ready | State::InFlight);
        match (in_window(e.state()), in_window(state)) {
            (true, false) => self.active -= 1,
            (false, true) => self.active += 1,
            _ => {}
        }
        e.set_state(state);
    }

    fn recipients(&self, slot: u32, e: &Entry) -> Vec<u16> {
        if e.multi() {
            self.multi.get(&slot).map_or(Vec::new(), |r| r.to_vec())
        } else {
            vec![e.recipient()]
        }
    }

    fn set_recipients(&mut self, slot: u32, e: &mut Entry, indexes: Vec<u16>) {
        if let [one] = indexes[..] {
            e.set_recipient(one);
            e.set_multi(false);
            // Checked first: with no share of several recipients (the usual
            // case) hashing the slot is wasted, once per adopted entry.
            if !self.multi.is_empty() {
                self.multi.remove(&slot);
            }
        } else {
            e.set_multi(true);
            self.multi.insert(slot, indexes.into_boxed_slice());
        }
    }

    fn allocate(&mut self) -> (u32, u32) {
        let generation = self.generation;
        self.generation = self.generation.wrapping_add(1);
        let slot = match self.free.pop() {
            Some(Reverse(slot)) => slot,
            None => {
                self.entries.push(Entry::free(generation));
                (self.entries.len() - 1) as u32
            }
        };
        (slot, generation)
    }

    /// The id of `dest`, counting one more share queued for it.
    fn dest_id(&mut self, dest: Dest) -> u32 {
        self.dest_id_uses(&dest, 1)
    }

    /// The id of `dest`, counting `n` more shares queued for it (at least
    /// one: a destination is forgotten when its count falls to zero).
    fn dest_id_uses(&mut self, dest: &Dest, n: usize) -> u32 {
        if let Some(d) = self.destinations.get_mut(dest) {
            d.queued += n;
            return d.id;
        }
        let id = match self.free_dests.pop() {
            Some(id) => id,
            None => {
                self.dest_names.push(None);
                (self.dest_names.len() - 1) as u32
            }
        };
        self.dest_names[id as usize] = Some(dest.clone());
        self.destinations.insert(dest.clone(), Destination { id, queued: n, ..Destination::default() });
        id
    }

    /// Forget `dest` once nothing is queued for it and no connection is
    /// open to it (its ready list then holds only stale keys).
    fn forget_if_idle(&mut self, dest: &Dest) {
        let Some(d) = self.destinations.get(dest) else { return };
        if d.connections == 0 && d.queued == 0 {
            let id = d.id;
            self.destinations.remove(dest);
            self.dest_names[id as usize] = None;
            self.free_dests.push(id);
        }
    }

    /// Forget a message, keeping its destination's count; returned with
    /// its envelope from `env`.
    fn take(&mut self, key: Key, env: &impl Envelopes) -> Option<QueuedMessage> {
        let msg = self.message(key, env)?;
        self.forget(key);
        Some(msg)
    }

    /// Forget a live share, keeping its destination's count (without
    /// building it as a message: a delivered share is only dropped).
    fn forget(&mut self, key: Key) -> bool {
        let Some(&e) = self.entry(key) else { return false };
        let slot = key.slot();
        self.errors.release(e.error());
        if e.multi() {
            self.multi.remove(&slot);
        }
        self.loaded.remove(&slot);
        self.set_state(slot, State::Free);
        self.entries[slot as usize] = Entry::free(e.generation);
        self.free.push(Reverse(slot));
        self.live -= 1;
        let dest = self.dest_names[e.dest as usize].as_ref().expect("a live entry's destination is known");
        if let Some(d) = self.destinations.get_mut(dest) {
            d.queued = d.queued.saturating_sub(1);
            if d.connections == 0 && d.queued == 0 {
                let dest = dest.clone();
                self.forget_if_idle(&dest);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests;
