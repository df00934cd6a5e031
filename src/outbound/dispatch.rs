//! Dispatch: the timer that promotes due mail, connection tasks per
//! domain, and outcome handling.

use super::classify::{classify, BounceClass};
use super::conn::{deferred_all, After, RelayConnection, Timeouts};
use super::slot::ConnectionSlot;
use crate::clock::now_ms;
use crate::metrics::RelayResult;
use crate::outbound::dsn::Action as DsnAction;
use crate::outbound::mx;
use crate::proto::smtp_client::{MessageOutcome, OutgoingMessage, RecipientOutcome, TlsPolicy};
use crate::queue::{retry_delay, Key, QueuedMessage, RetryPolicy};
use crate::shard::{owner, Request, Shard};
use crate::spool::{encode_recipient_state, Outcome, RecipientState, RecordKind};
use rand::Rng;
use std::rc::Rc;
use std::time::Duration;

impl Shard {
    /// Runs until the core stops: promote due mail, bounce expired mail,
    /// send delay notices, open connections.
    pub async fn relay_timer(self: Rc<Self>) {
        let policy = retry_policy(&self.config().relay);
        let recovered = self.queue.borrow().domains_wanting_connections(usize::MAX);
        for domain in recovered {
            self.kick(&domain);
        }
        while !self.stop.is_set() {
            let now = now_ms();
            let promoted = self.queue.borrow_mut().promote_due(now, &policy);
            for msg in promoted.expired {
                let reason = format!(
                    "message expired after {} in the queue",
                    humantime::format_duration(self.config().relay.max_queue_lifetime.get())
                );
                let last = msg.last_error.clone().unwrap_or_default();
                let class = BounceClass::TransientExpired;
                let failed: Vec<super::bounce::Failure> = msg
                    .recipients
                    .iter()
                    .map(|r| (r.clone(), "4.4.7".to_string(), format!("{reason}; last error: {last}"), Some(class)))
                    .collect();
                tracing::info!(queue_id = %msg.queue_id, domain = %msg.domain, status = "expired", class = %class, "{reason}");
                for _ in &msg.recipients {
                    self.metrics.relay(RelayResult::Bounced, None, 0);
                    self.metrics.bounce(class);
                }
                self.bounce(msg, failed, None, DsnAction::Failed);
            }
            for msg in promoted.warn {
                let failed = msg
                    .recipients
                    .iter()
                    .map(|r| (r.clone(), "4.4.7".to_string(), msg.last_error.clone().unwrap_or_default(), None))
                    .collect();
                self.delay_notice(msg, failed);
            }
            for domain in promoted.domains {
                self.kick(&domain);
            }
            let next = self.queue.borrow_mut().poll_timeout();
            let wait = next.map_or(1000, |due| due.saturating_sub(now_ms())).clamp(5, 1000);
            glommio::timer::sleep(Duration::from_millis(wait)).await;
        }
    }

    /// Open connections to `domain` while it has ready mail and room.
    pub fn kick(self: &Rc<Self>, domain: &str) {
        if self.stop.is_set() {
            return; // stopping: the queue is rebuilt from the spool at start
        }
        // Idle connections to it take the mail first.
        self.outbound.wake_idle(domain);
        let max = self.config().relay.max_connections_per_domain;
        while let Some(slot) = ConnectionSlot::take(self, domain, max) {
            glommio::spawn_local(self.clone().connection_task(slot)).detach();
        }
    }

    /// One connection to `slot`'s destination, carrying its ready mail;
    /// the slot goes back to the queue when this ends or is dropped.
    async fn connection_task(self: Rc<Self>, slot: ConnectionSlot) {
        let domain = slot.domain().to_string();
        let relay = &self.config().relay;
        let targets = {
            let mut rng = rand::thread_rng();
            mx::plan_with_port(&self.outbound.resolver, &relay.routes, &domain, relay.mx_port, &mut rng).await
        };
        match targets {
            Err(e) if e.is_permanent() => {
                let status = e.status().to_string();
                // No such domain, null MX, no address: the domain is bad.
                // Classified, but not suppressed: the verdict is our own
                // resolver's, and a broken `relay.dns_server` must not
                // suppress every address it failed to find. Only what a
                // receiving server says about an address suppresses it.
                let class = BounceClass::BadDomain;
                loop {
                    let Some((key, msg)) = self.queue.borrow_mut().next_ready(&domain) else { break };
                    let failed = msg
                        .recipients
                        .iter()
                        .map(|r| (r.clone(), status.clone(), e.to_string(), Some(class)))
                        .collect();
                    tracing::info!(queue_id = %msg.queue_id, domain = %domain, status = "bounced", class = %class, reason = %e, "no route");
                    for _ in &msg.recipients {
                        self.metrics.relay(RelayResult::Bounced, None, 0);
                        self.metrics.bounce(class);
                    }
                    self.queue.borrow_mut().finish(key);
                    self.bounce(msg, failed, None, DsnAction::Failed);
                }
            }
            Err(e) => self.defer_all_ready(&domain, &e.to_string()),
            Ok(targets) => {
                let mut conn = None;
                let mut last_error = String::from("no MX host could be reached");
                for t in &targets {
                    match RelayConnection::open(
                        t,
                        &self.config().hostname,
                        tls_policy(&self.config().relay),
                        &self.outbound.tls,
                        client_timeouts(&self.config().relay),
                    )
                    .await
                    {
                        Ok(c) => {
                            conn = Some(c);
                            break;
                        }
                        Err(e) => {
                            tracing::info!(domain = %domain, relay = %e.host, addr = %e.addr, error = %e.reason, "connection failed, trying next host");
                            last_error = e.to_string();
                        }
                    }
                }
                match conn {
                    None => self.defer_all_ready(&domain, &last_error),
                    Some(mut c) => {
                        let max = relay.max_messages_per_connection;
                        for _ in 0..max {
                            let Some((key, msg)) = self.next_for(&domain, relay.connection_idle.get()).await else {
                                break;
                            };
                            let Some((key, msg)) = self.without_suppressed(key, msg) else { continue };
                            if let After::Gone = self.deliver_one(&mut c, key, msg).await {
                                break;
                            }
                        }
                        c.quit(&self.outbound.tls).await;
                    }
                }
            }
        }
        // The slot goes back before the kick, so the kick may reuse it.
        drop(slot);
        self.kick(&domain);
    }

    /// The next ready message for `domain`, waiting up to `idle` for one
    /// (the connection stays open meanwhile, so a steady stream of mail is
    /// not one connection per message). None when stopping or idle too long.
    async fn next_for(self: &Rc<Self>, domain: &str, idle: Duration) -> Option<(Key, QueuedMessage)> {
        let deadline = std::time::Instant::now() + idle;
        loop {
            if self.stop.is_set() {
                return None;
            }
            if let Some(next) = self.queue.borrow_mut().next_ready(domain) {
                return Some(next);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            let woken = self.outbound.idle_wait(domain);
            futures_lite::future::or(futures_lite::future::or(woken, glommio::timer::sleep(left)), self.stop.wait())
                .await;
        }
    }

    fn defer_all_ready(self: &Rc<Self>, domain: &str, error: &str) {
        loop {
            let Some((key, msg)) = self.queue.borrow_mut().next_ready(domain) else { break };
            let outcome = deferred_all(msg.recipients.len(), (4, 4, 1), error);
            self.apply_outcome(key, msg, outcome, None, &[]);
        }
    }

    /// Send one queued message over `conn` and apply what happened.
    async fn deliver_one(self: &Rc<Self>, conn: &mut RelayConnection, key: Key, msg: QueuedMessage) -> After {
        let view = match self.maps.borrow_mut().record(self.resolve(msg.at)) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(queue_id = %msg.queue_id, error = %e, "cannot read queued message from the spool");
                let outcome = deferred_all(msg.recipients.len(), (4, 3, 0), &format!("spool read error: {e}"));
                self.apply_outcome(key, msg, outcome, None, &[]);
                return After::Ready;
            }
        };
        let body = match view.message() {
            Ok(r) => r.body,
            Err(e) => {
                tracing::error!(queue_id = %msg.queue_id, error = %e, "queued message record is undecodable");
                return After::Ready;
            }
        };
        let head = self.outbound.dkim_fields(&msg, body).await;
        let out = OutgoingMessage {
            sender: msg.sender.clone(),
            recipients: msg.recipients.iter().map(|r| r.address.clone()).collect(),
            size: (head.len() + body.len()) as u64,
            body_8bit: body.iter().any(|&b| b >= 0x80),
        };
        let started = std::time::Instant::now();
        let (outcome, after) = conn.send(out, &head, body, &self.outbound.tls).await;
        let relay = format!("{}[{}]", conn.target.host, conn.target.addr);
        tracing::debug!(queue_id = %msg.queue_id, relay = %relay, elapsed_ms = started.elapsed().as_millis() as u64, "attempt done");
        self.apply_outcome(key, msg, outcome, Some(&relay), body);
        after
    }

    /// One handler per class: delivered -> tombstone; bounced -> DSN then
    /// tombstone; deferred -> back on the schedule.
    fn apply_outcome(
        self: &Rc<Self>,
        key: Key,
        msg: QueuedMessage,
        outcome: MessageOutcome,
        relay: Option<&str>,
        body: &[u8],
    ) {
        let now = now_ms();
        let delay_s = now.saturating_sub(msg.arrived_ms) as f64 / 1000.0;
        let mut settled = Vec::new();
        let mut bounced = Vec::new();
        let mut deferred = Vec::new();
        let mut last_deferral = String::new();
        let delay_us = now.saturating_sub(msg.arrived_ms) * 1000;
        for (r, o) in msg.recipients.iter().zip(outcome.per_recipient) {
            let (result, reply) = match &o {
                RecipientOutcome::Delivered { reply } => (RelayResult::Delivered, reply),
                RecipientOutcome::Bounced { reply } => (RelayResult::Bounced, reply),
                RecipientOutcome::Deferred { reply } => (RelayResult::Deferred, reply),
            };
            // Without a connection the reply is our own (4.4.1 and such).
            let class = relay.map(|_| b'0' + (reply.code / 100) as u8);
            self.metrics.relay(result, class, delay_us);
            let relay = relay.unwrap_or("none");
            match o {
                RecipientOutcome::Delivered { reply } => {
                    tracing::info!(queue_id = %msg.queue_id, to = %r.address, relay, delay = delay_s, status = "sent", dsn = %reply.dsn(), reply = %reply, "delivered");
                    settled.push((msg.at, r.index, Outcome::Delivered));
                }
                RecipientOutcome::Bounced { reply } => {
                    let text = reply.to_string();
                    let class = classify(&text);
                    tracing::info!(queue_id = %msg.queue_id, to = %r.address, relay, delay = delay_s, status = "bounced", dsn = %reply.dsn(), class = %class, reply = %reply, "refused");
                    self.metrics.bounce(class);
                    if class.is_hard() {
                        self.suppress_later(&r.address, class, &text);
                    }
                    bounced.push((r.clone(), reply.dsn().to_string(), format!("smtp; {reply}"), Some(class)));
                }
                RecipientOutcome::Deferred { reply } => {
                    tracing::info!(queue_id = %msg.queue_id, to = %r.address, relay, delay = delay_s, status = "deferred", dsn = %reply.dsn(), reply = %reply, "will retry");
                    last_deferral = reply.to_string();
                    deferred.push(r.clone());
                }
            }
        }
        if !settled.is_empty() {
            self.settle_later(settled);
        }
        if deferred.is_empty() {
            self.queue.borrow_mut().finish(key);
        } else {
            let policy = retry_policy(&self.config().relay);
            let jitter: f64 = rand::thread_rng().gen();
            let due = now + retry_delay(&policy, msg.attempts + 1, jitter);
            self.queue.borrow_mut().defer(key, deferred, last_deferral, due);
            self.record_deferral(key);
        }
        if !bounced.is_empty() {
            let mut m = msg;
            m.last_error = None;
            self.bounce(m, bounced, Some((relay.map(str::to_string), header_section(body))), DsnAction::Failed);
        }
    }

    /// Append tombstones on the core that owns each message's spool dir,
    /// in the background (a crash before their sync re-sends at most these
    /// deliveries). Outcomes settled in the same turn of this executor go
    /// to each owner as one `Settle`: one cross-core request (and one
    /// wake-up of the owner) per batch instead of per message.
    pub(crate) fn settle_later(self: &Rc<Self>, items: Vec<(crate::spool::SpoolRef, u16, Outcome)>) {
        for item in items {
            let to = owner::dir_owner(item.0.dir, self.cores);
            let first = {
                let mut settling = self.settling.borrow_mut();
                settling[to].push(item);
                settling[to].len() == 1
            };
            if first {
                self.settle_batch(to);
            }
        }
    }

    /// Settle what has gathered for core `to` once this turn is over.
    fn settle_batch(self: &Rc<Self>, to: usize) {
        let me = self.clone();
        let busy = crate::shard::Background::new(self);
        glommio::spawn_local(async move {
            let _busy = busy;
            // The tasks woken with this one (other deliveries finishing)
            // run first and add to the batch.
            futures_lite::future::yield_now().await;
            let items = std::mem::take(&mut me.settling.borrow_mut()[to]);
            if let Err(e) = me.ask_result(to, |answer| Request::Settle { items, answer }).await {
                tracing::error!(error = %e, "settling delivery outcomes failed");
            }
        })
        .detach();
    }
}

impl Shard {
    /// Write the queue state of `key` (deferred until, attempts, last
    /// error, hold) to the spool so a restart keeps it. Not waited for: a
    /// lost state only makes the next attempt come sooner.
    pub(crate) fn record_deferral(self: &Rc<Self>, key: Key) {
        let now_us = now_ms() * 1000;
        let Some(seq) = self.queue.borrow_mut().next_state_seq(key, now_us) else { return };
        let Some(msg) = self.queue.borrow().get(key).cloned() else { return };
        let mut last = None;
        for r in &msg.recipients {
            let state = RecipientState {
                target: msg.at,
                recipient: r.index,
                seq,
                attempts: msg.attempts,
                next_attempt_ms: msg.next_attempt_ms.unwrap_or(0),
                warned: msg.warned,
                held: msg.held,
                last_error: msg.last_error.clone().unwrap_or_default().chars().take(4096).collect(),
            };
            let appended = encode_recipient_state(&state)
                .map_err(|e| e.to_string())
                .and_then(|bytes| self.append(RecordKind::RecipientState, &[&bytes]).map_err(|e| e.to_string()));
            match appended {
                Ok(a) => last = Some(a.ticket),
                Err(e) => tracing::warn!(queue_id = %msg.queue_id, error = %e, "queue state not recorded"),
            }
        }
        if let Some(ticket) = last {
            let me = self.clone();
            glommio::spawn_local(async move {
                let _ = me.spool.durable(&ticket).await;
            })
            .detach();
        }
    }
}

/// The header section of a message (up to and including the blank line),
/// at most 64 KiB: what a DSN returns.
fn header_section(body: &[u8]) -> Vec<u8> {
    let end = body.windows(4).position(|w| w == b"\r\n\r\n").map_or(body.len(), |p| p + 4);
    body[..end.min(64 * 1024)].to_vec()
}

/// The retry schedule from `[relay]`.
fn retry_policy(r: &crate::config::Relay) -> RetryPolicy {
    RetryPolicy {
        waits_ms: r.retry.iter().map(|s| s.get().as_millis() as u64).collect(),
        max_lifetime_ms: r.max_queue_lifetime.get().as_millis() as u64,
        delay_warning_ms: r.delay_warning.get().as_millis() as u64,
    }
}

/// The client timeouts from `[relay.timeouts]`.
fn client_timeouts(r: &crate::config::Relay) -> Timeouts {
    let t = &r.timeouts;
    Timeouts {
        connect: t.connect.get(),
        greeting: t.greeting.get(),
        command: t.command.get(),
        data_init: t.data_init.get(),
        data_block: t.data_block.get(),
        data_done: t.data_done.get(),
    }
}

/// The client TLS policy from `relay.tls`.
fn tls_policy(r: &crate::config::Relay) -> TlsPolicy {
    match r.tls {
        crate::config::RelayTlsPolicy::Opportunistic => TlsPolicy::Opportunistic,
        crate::config::RelayTlsPolicy::Required => TlsPolicy::Required,
        crate::config::RelayTlsPolicy::Verify => TlsPolicy::Verify,
    }
}
