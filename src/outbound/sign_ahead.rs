//! RSA signatures asked ahead: when a connection takes a message, the
//! messages next in its destination's ready list (bound to go out next)
//! are queued for signing too, so that the signing thread always has a
//! batch to sign and a connection taking one of them finds its signature
//! made, or under way, instead of asking and waiting for a batch of its
//! own.
//!
//! Signing only when a connection asked left both threads waiting on each
//! other in a drain (README, DKIM section): the signing thread idled while
//! the deliveries of a finished batch were sent, the executor slept while
//! a batch was signed, and batches came in two sizes with the connections
//! moving in two groups.
//!
//! What it keeps: the same bytes (the job is `Signers::sign` of the same
//! stored message and arrival time, with the keys in force when it is
//! taken: a signature made with keys replaced since is dropped and made
//! again); at most one signature per share in the window, used by the
//! share's next attempt (taken out of the map when the attempt starts).
//! What it costs: at most [`MAX_AHEAD`] shares per core ahead, whose
//! stored messages' copies total at most [`MAX_AHEAD_BYTES`] while they
//! wait to be signed. A share that leaves the window without an attempt
//! (its destination's mail deferred after every target failed, a
//! shutdown, `queue delete`) is dropped from the map the next time the map
//! is full, which withdraws its job if it has not gone to the signing
//! thread by then; otherwise it was signed for nothing: at most
//! [`MAX_AHEAD`] signatures per core for each such event.
//!
//! It must not be shared between cores, and it never holds a borrow
//! across an `.await`.

use super::signing::{Answer, Job, MAX_BATCH};
use crate::queue::{Dest, Key, QueuedMessage};
use crate::sender_auth::Signers;
use crate::shard::Shard;
use rustc_hash::FxHashMap;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

/// Shares per core whose signatures are asked ahead: two full batches
/// (one being signed, the next one waiting).
pub const MAX_AHEAD: usize = 2 * MAX_BATCH;

/// The most bytes of stored messages copied for signatures asked ahead
/// (a big message is then signed when its connection asks, as before).
pub const MAX_AHEAD_BYTES: usize = 4 << 20;

/// One share's signatures asked ahead.
struct Ahead {
    /// The keys it is signed with.
    signers: Arc<Signers>,
    answer: Answer,
    /// Its stored message's length (counted against `MAX_AHEAD_BYTES`).
    bytes: usize,
}

/// One core's signatures asked ahead, by share (looked up for each of the
/// next ready shares at every message taken: a cheap hash).
#[derive(Default)]
pub struct SignAhead {
    ahead: RefCell<FxHashMap<Key, Ahead>>,
    bytes: Cell<usize>,
}

impl SignAhead {
    /// The signatures asked ahead for `key`, made with `signers` (taken
    /// out: one attempt uses them); None when none were asked, or made
    /// with other keys (dropped: withdrawn if not signed yet).
    fn take(&self, key: Key, signers: &Arc<Signers>) -> Option<Answer> {
        let a = self.ahead.borrow_mut().remove(&key)?;
        self.bytes.set(self.bytes.get() - a.bytes);
        Arc::ptr_eq(&a.signers, signers).then_some(a.answer)
    }

    /// Forget the shares for which `keep` says no.
    fn retain(&self, mut keep: impl FnMut(Key) -> bool) {
        let mut freed = 0;
        self.ahead.borrow_mut().retain(|&key, a| {
            let kept = keep(key);
            if !kept {
                freed += a.bytes;
            }
            kept
        });
        self.bytes.set(self.bytes.get() - freed);
    }

    fn len(&self) -> usize {
        self.ahead.borrow().len()
    }

    fn contains(&self, key: Key) -> bool {
        self.ahead.borrow().contains_key(&key)
    }

    /// Room for a stored message of `bytes` more?
    fn fits(&self, bytes: usize) -> bool {
        self.len() < MAX_AHEAD && self.bytes.get() + bytes <= MAX_AHEAD_BYTES
    }

    fn insert(&self, key: Key, signers: Arc<Signers>, answer: Answer, bytes: usize) {
        self.bytes.set(self.bytes.get() + bytes);
        if let Some(old) = self.ahead.borrow_mut().insert(key, Ahead { signers, answer, bytes }) {
            self.bytes.set(self.bytes.get() - old.bytes);
        }
    }
}

impl Shard {
    /// The DKIM-Signature fields to send in front of `body` (the stored
    /// message of the share `key`, `msg`), signed as of its arrival; empty
    /// when it is not signed. Made at each attempt: the same bytes every
    /// time.
    ///
    /// With RSA keys the signature (0.25–1.2 ms of CPU for 2048 bits,
    /// depending on the CPU) is made on the executor's blocking thread,
    /// which glommio pins to this executor's CPU, in batches
    /// ([`super::signing`]), and asked ahead for the messages next in
    /// line for `msg`'s destination (the module doc). Ed25519 (about 20
    /// µs) is cheaper than the hand-off and stays inline.
    pub(super) async fn dkim_head(self: &Rc<Self>, key: Key, msg: &QueuedMessage, body: &[u8]) -> Vec<u8> {
        let out = &self.outbound;
        let signers = out.signers();
        if signers.is_empty() {
            return Vec::new();
        }
        let arrival_secs = msg.arrived_ms / 1000;
        if !signers.has_rsa() {
            return out.dkim_fields(msg, signers.sign(body, arrival_secs));
        }
        let answer = match out.sign_ahead.take(key, &signers) {
            Some(answer) => answer,
            None => out.batch_signer.submit(Job { signers: signers.clone(), message: body.to_vec(), arrival_secs }),
        };
        self.sign_ahead(&msg.dest(), &signers);
        out.dkim_fields(msg, answer.await)
    }

    /// Ask the signatures of `dest`'s next ready shares ahead, within
    /// [`MAX_AHEAD`] and [`MAX_AHEAD_BYTES`].
    fn sign_ahead(self: &Rc<Self>, dest: &Dest, signers: &Arc<Signers>) {
        let ahead = &self.outbound.sign_ahead;
        if ahead.len() >= MAX_AHEAD {
            // Shares that left the window without an attempt.
            let queue = self.queue.borrow();
            ahead.retain(|key| queue.in_window(key));
        }
        let room = MAX_AHEAD.saturating_sub(ahead.len());
        if room == 0 {
            return;
        }
        let next: Vec<_> = {
            let queue = self.queue.borrow();
            queue.ready_ahead(dest).filter(|&(key, _, _)| !ahead.contains(key)).take(room).collect()
        };
        for (key, at, arrived_ms) in next {
            let Ok(view) = self.maps.borrow_mut().record(self.resolve(at)) else { continue };
            // Unreadable: its attempt says so when it comes.
            let Ok(body) = view.message_body() else { continue };
            if !ahead.fits(body.len()) {
                return;
            }
            let job = Job { signers: signers.clone(), message: body.to_vec(), arrival_secs: arrived_ms / 1000 };
            let answer = self.outbound.batch_signer.submit(job);
            ahead.insert(key, signers.clone(), answer, body.len());
        }
    }
}
