//! The message loop of one open connection: give it ready mail of its
//! destination while its site's limits allow, and apply each outcome in
//! the order the messages were given.
//!
//! Toward a server offering PIPELINING the next message is given while the
//! one before waits for its end-of-data reply, so its MAIL, RCPT and DATA
//! (or BDAT and its chunk) go out behind that body (RFC 2920 §3.1): one
//! round trip per message instead of two without CHUNKING, and overlapping
//! messages with it. Only one message waits behind another, and only mail
//! that is ready now: a connection with a message in flight never waits
//! for more mail or for a rate slot (it reads the reply instead). Each
//! message given counts as a delivery of the connection and takes its own
//! rate slot and its own in-flight count at the site, so per-site limits
//! hold as before; a backoff rule that suspends the site stops giving
//! (what is in flight still gets its replies).
//!
//! It must not decide what a reply means (the SMTP client does) nor apply
//! an outcome by other means than `apply_outcome`, the one handler per
//! outcome class.

use super::conn::{deferred_all, Body, Progress, RelayConnection};
use super::dispatch::Hop;
use super::shaping::{BackoffAction, SiteLimits};
use super::sites::{Flight, Permit, Refused, Sent};
use crate::clock::now_ms;
use crate::outbound::dsn::Action as DsnAction;
use crate::outbound::mx;
use crate::proto::smtp_client::{needs_smtputf8, DsnParams, MessageOutcome, OutgoingMessage, RecipientOutcome};
use crate::queue::{Dest, Key, QueuedMessage};
use crate::shard::Shard;
use crate::spool::{BodyKind, MessageRecord};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Instant;

/// A message given to the connection, until its outcome is applied.
struct InFlight<'p> {
    key: Key,
    msg: QueuedMessage,
    /// Counts the message in flight at its site until dropped.
    _flight: Flight<'p>,
    /// A recipient asked for NOTIFY=SUCCESS.
    success_wanted: bool,
    /// When it was given, for the `attempt done` line.
    given: Instant,
}

/// What to give next.
enum Next {
    Message(Key, QueuedMessage),
    /// Nothing now; the reply of the message in flight comes first.
    Later,
    /// Nothing more on this connection.
    Stop,
}

/// Whether an outcome carries the site's reply to the message (its
/// backoff rules see it), or the session ended before the message had one
/// (it went behind another: see `Progress::Abandoned`).
#[derive(Debug, Clone, Copy)]
enum Heard {
    Reply,
    Nothing,
}

/// What became of a message handed to [`Shard::give`].
enum Given<'p> {
    Flying(InFlight<'p>),
    /// Settled without the server (unreadable, or REQUIRETLS unmet).
    Settled,
    /// The session would not take it: deferred, and nothing more goes.
    Refused,
}

impl Shard {
    /// Carry `dest`'s ready mail over `c` until there is none (within the
    /// idle wait), the connection's delivery limit is reached, the rules
    /// are reloaded (`generation`), the site is suspended or the session
    /// ends. Messages still in flight when the session ends are deferred.
    pub(super) async fn carry_mail(
        self: &Rc<Self>,
        c: &mut RelayConnection,
        dest: &Dest,
        permit: &Permit,
        limits: &SiteLimits,
        generation: u64,
    ) {
        let mut flying: VecDeque<InFlight<'_>> = VecDeque::new();
        let mut given = 0;
        let mut taking = true;
        loop {
            if taking && c.takes_message() {
                taking = given < limits.max_deliveries_per_connection
                    && self.outbound.sites.generation() == generation // reloaded: reconnect under the new rules
                    && !permit.suspended(now_ms());
            }
            if taking && c.takes_message() {
                match self.next_to_give(dest, permit, limits, !flying.is_empty()).await {
                    Next::Message(key, msg) => {
                        given += 1;
                        match self.give(c, key, msg, permit, limits).await {
                            Given::Flying(f) => flying.push_back(f),
                            Given::Settled => {}
                            Given::Refused => taking = false,
                        }
                        continue;
                    }
                    Next::Later => {}
                    Next::Stop => taking = false,
                }
            }
            if flying.is_empty() && !taking {
                break;
            }
            // While its message waits for the 354, mail that becomes ready
            // is left for this connection to take behind that body, in the
            // same write, rather than woken idle connections' (`kick`).
            let behind = (taking && given < limits.max_deliveries_per_connection && c.takes_behind_soon())
                .then(|| self.outbound.taking_behind(dest));
            let progress = c.progress(&self.outbound.tls).await;
            let counted_behind = behind.is_some();
            drop(behind);
            match progress {
                Progress::Outcome(outcome) => {
                    let Some(f) = flying.pop_front() else { continue };
                    if let Some(BackoffAction::Suspend) = self.settle_given(c, f, outcome, Heard::Reply, permit, limits)
                    {
                        taking = false;
                    }
                }
                Progress::Abandoned(outcome) => {
                    let Some(f) = flying.pop_front() else { continue };
                    self.settle_given(c, f, outcome, Heard::Nothing, permit, limits);
                }
                Progress::CanTake => {}
                Progress::Gone => {
                    if counted_behind {
                        self.kick(dest); // what was left for it goes elsewhere
                    }
                    break;
                }
            }
        }
        // The session ended without their outcomes (it reports every message
        // it was given before it ends; this is the belt to those braces).
        for f in flying {
            let outcome = deferred_all(f.msg.recipients.len(), (4, 4, 2), "connection ended before the reply");
            self.apply_outcome(f.key, f.msg, outcome, None, None, Some(limits));
        }
    }

    /// The next message for `dest`. With one in flight (`busy`) only a
    /// message ready now and a rate slot free now, else `Later`; idle, it
    /// waits for mail up to `relay.connection_idle` (less when others want
    /// the site's connections, see `next_for`) and for the site's rate.
    async fn next_to_give(self: &Rc<Self>, dest: &Dest, permit: &Permit, limits: &SiteLimits, busy: bool) -> Next {
        loop {
            // Stopping: no new message, on an idle connection (`next_for`
            // says so) or behind one in flight (SIGTERM lets the attempts in
            // flight finish, and nothing more starts).
            if self.stop.is_set() {
                return Next::Stop;
            }
            let next = match busy {
                true => self.queue.borrow_mut().next_ready(dest, &self.envelopes()),
                false => self.next_for(dest, self.config().relay.connection_idle.get(), permit.key()).await,
            };
            let Some((key, msg)) = next else {
                return if busy { Next::Later } else { Next::Stop };
            };
            let Some((key, msg)) = self.without_suppressed(key, msg) else { continue };
            // The rate slot is taken with the message in hand, just before
            // it goes: a slot taken before waiting for mail was spent late,
            // after the slots other connections took meanwhile, and the
            // site saw a burst above its rate.
            if !busy {
                if self.pace(permit, limits).await {
                    return Next::Message(key, msg);
                }
                self.queue.borrow_mut().put_back(key);
                return Next::Stop;
            }
            return match permit.take_message(limits, now_ms()) {
                Ok(()) => Next::Message(key, msg),
                Err(Refused::Paced { .. }) => {
                    self.queue.borrow_mut().put_back(key);
                    Next::Later
                }
                Err(Refused::Suspended { .. } | Refused::Busy) => {
                    self.queue.borrow_mut().put_back(key);
                    Next::Stop
                }
            };
        }
    }

    /// Read `msg` from the spool, sign it and give it to `c`.
    async fn give<'p>(
        self: &Rc<Self>,
        c: &mut RelayConnection,
        key: Key,
        msg: QueuedMessage,
        permit: &'p Permit,
        limits: &SiteLimits,
    ) -> Given<'p> {
        let flight = permit.flight();
        let view = match self.maps.borrow_mut().record(self.resolve(msg.at)) {
            Ok(v) => v,
            Err(e) => return self.unreadable(key, msg, limits, &format!("spool read error: {e}")),
        };
        let (out, head) = {
            let record = match view.message() {
                Ok(r) => r,
                Err(e) => return self.unreadable(key, msg, limits, &format!("undecodable spool record: {e}")),
            };
            let head = self.dkim_head(key, &msg, record.body).await;
            (outgoing(&record, &msg, head.len()), head)
        };
        let success_wanted = out.dsn.recipients.iter().any(|d| d.notify.success);
        let tls = c.tls_result();
        if out.requiretls && !tls.is_verified() {
            // RFC 8689 §4.2.1: only over a session whose certificate was
            // verified (DANE or PKIX); the next hop's REQUIRETLS support is
            // the client's to check.
            let reason = format!("REQUIRETLS: the TLS session to the next hop is not verified (tls={tls})");
            let reply = crate::proto::smtp_client::Reply::local(550, (5, 7, 10), &reason);
            let per_recipient = out.recipients.iter().map(|_| RecipientOutcome::Bounced { reply: reply.clone() });
            let outcome = MessageOutcome { per_recipient: per_recipient.collect() };
            let f = InFlight { key, msg, _flight: flight, success_wanted, given: Instant::now() };
            self.settle_given(c, f, outcome, Heard::Reply, permit, limits);
            return Given::Settled;
        }
        let body = match Body::new(head, view) {
            Ok(b) => b,
            Err(e) => return self.unreadable(key, msg, limits, &format!("undecodable spool record: {e}")),
        };
        match c.submit(out, body) {
            Ok(()) => Given::Flying(InFlight { key, msg, _flight: flight, success_wanted, given: Instant::now() }),
            Err(out) => {
                let outcome = deferred_all(out.recipients.len(), (4, 4, 2), "client not ready for a message");
                self.apply_outcome(key, msg, outcome, None, None, Some(limits));
                Given::Refused
            }
        }
    }

    /// `msg` could not be read back from the spool (`why`): it stays
    /// queued, deferred like a temporary failure, so it is retried on its
    /// schedule and bounced at `max_queue_time` like any other deferral,
    /// and the operator sees it in the log and in `queue list` meanwhile.
    /// Dropping it from the ready list without an outcome would leave its
    /// record live in the spool with nothing to retry it until a restart.
    fn unreadable(self: &Rc<Self>, key: Key, msg: QueuedMessage, limits: &SiteLimits, why: &str) -> Given<'static> {
        tracing::error!(queue_id = %msg.queue_id, error = %why, "cannot read queued message from the spool");
        let outcome = deferred_all(msg.recipients.len(), (4, 3, 0), why);
        self.apply_outcome(key, msg, outcome, None, None, Some(limits));
        Given::Settled
    }

    /// Apply the outcome of `f` after the site's backoff rules have seen
    /// it (when it is the site's reply: `heard`); returns the backoff
    /// action taken, if any.
    fn settle_given(
        self: &Rc<Self>,
        c: &RelayConnection,
        f: InFlight<'_>,
        mut outcome: MessageOutcome,
        heard: Heard,
        permit: &Permit,
        limits: &SiteLimits,
    ) -> Option<BackoffAction> {
        let InFlight { key, msg, _flight, success_wanted, given } = f;
        let elapsed_ms = given.elapsed().as_millis() as u64;
        tracing::debug!(queue_id = %msg.queue_id, relay = %c.target.relay_name(), elapsed_ms, ?heard, "attempt done");
        let backoff = match heard {
            Heard::Reply => backoff(&mut outcome, permit, limits),
            Heard::Nothing => {
                if let Some(first) = outcome.per_recipient.first() {
                    permit.abandoned(sent(first), now_ms());
                }
                None
            }
        };
        // NOTIFY=SUCCESS could not be passed on: the notice is ours. An
        // LMTP server is the mailbox itself (RFC 2033 §1), so "delivered".
        let success_notice = (success_wanted && !c.offers_dsn()).then_some(match c.target.addr {
            mx::Endpoint::Smtp(_) => DsnAction::Relayed,
            mx::Endpoint::LmtpTcp(_) | mx::Endpoint::LmtpUnix(_) => DsnAction::Delivered,
        });
        let hop = c.hop.get_or_init(|| Hop::new(c.target.clone(), c.tls_result(), c.tls_basis().to_string()));
        self.apply_outcome(key, msg, outcome, Some(hop), success_notice, Some(limits));
        backoff
    }
}

/// The envelope of `msg` (a queued share of `record`) as the client takes
/// it, with `head` bytes put in front of the stored body.
fn outgoing(record: &MessageRecord<'_>, msg: &QueuedMessage, head: usize) -> OutgoingMessage {
    let body = record.body;
    let recipients: Vec<String> = msg.recipients.iter().map(|r| r.address.clone()).collect();
    OutgoingMessage {
        sender: msg.sender.clone(),
        smtputf8: needs_smtputf8(record.ext.smtputf8, &msg.sender, &recipients, body),
        recipients,
        size: (head + body.len()) as u64,
        body_8bit: !body.is_ascii(),
        dsn: dsn_params(record, msg),
        binarymime: record.ext.body == BodyKind::BinaryMime,
        requiretls: record.ext.requiretls,
    }
}

/// Show the site's backoff rules the replies to one message: the first
/// reply that matches a rule (else the first reply) is recorded for the
/// site and may suspend it or halve its rate; recipients whose reply
/// matched a `bounce` or `defer` rule become bounced or deferred.
fn backoff(outcome: &mut MessageOutcome, permit: &Permit, limits: &SiteLimits) -> Option<BackoffAction> {
    let line = |o: &RecipientOutcome| {
        let text = o.reply().to_string();
        if text.contains('\n') {
            text.replace('\n', " ")
        } else {
            text
        }
    };
    // Each reply is matched once, and only when the site has rules.
    let matched: Vec<bool> = if limits.backoff.is_empty() {
        Vec::new()
    } else {
        outcome.per_recipient.iter().map(|o| limits.backoff_for(&line(o)).is_some()).collect()
    };
    let pick = matched.iter().position(|&m| m).unwrap_or(0);
    let first = outcome.per_recipient.get(pick)?;
    let (action, _) = permit.replied(limits, &line(first), Some(sent(first)), now_ms())?;
    for (o, _) in outcome.per_recipient.iter_mut().zip(&matched).filter(|(_, &m)| m) {
        let flipped = match (action, &*o) {
            (BackoffAction::Bounce, RecipientOutcome::Deferred { reply }) => {
                RecipientOutcome::Bounced { reply: reply.clone() }
            }
            (BackoffAction::Defer, RecipientOutcome::Bounced { reply }) => {
                RecipientOutcome::Deferred { reply: reply.clone() }
            }
            _ => continue,
        };
        *o = flipped;
    }
    Some(action)
}

/// How an attempt ended for the site's counters, by one recipient.
fn sent(outcome: &RecipientOutcome) -> Sent {
    match outcome {
        RecipientOutcome::Delivered { .. } => Sent::Delivered,
        RecipientOutcome::Deferred { .. } => Sent::Deferred,
        RecipientOutcome::Bounced { .. } => Sent::Bounced,
    }
}

/// The DSN parameters of `msg`'s recipients (a queued share of `record`),
/// to pass on to a next hop that offers DSN.
fn dsn_params(record: &MessageRecord<'_>, msg: &QueuedMessage) -> DsnParams {
    let recipients: Vec<_> = msg
        .recipients
        .iter()
        .map(|r| record.recipients.get(usize::from(r.index)).map(|e| e.dsn.clone()).unwrap_or_default())
        .collect();
    let any = recipients.iter().any(|d| d.notify.is_given() || d.orcpt.is_some());
    DsnParams {
        ret: record.ext.ret,
        envid: record.ext.envid.clone(),
        recipients: if any { recipients } else { Vec::new() },
    }
}
