//! Dispatch: the timer that promotes due mail, connection tasks per
//! domain, and outcome handling.

use super::classify::{classify, BounceClass};
use super::conn::{deferred_all, RelayConnection, Timeouts};
use super::shaping::{self, BackoffAction, SiteLimits};
use super::sites::{Permit, Refused, SiteKey};
use super::slot::ConnectionSlot;
use super::source;
use crate::clock::now_ms;
use crate::metrics::recent::ErrorKind;
use crate::metrics::RelayResult;
use crate::outbound::bounce::About;
use crate::outbound::dsn::Action as DsnAction;
use crate::outbound::mx;
use crate::outbound::tls_policy::{self, TlsResult};
use crate::proto::smtp_client::{MessageOutcome, RecipientOutcome};
use crate::queue::{retry_delay, Dest, Key, NoEnvelopes, QueuedMessage, RetryPolicy};
use crate::shard::{owner, Request, Settled, Shard, ShardError};
use crate::spool::{encode_recipient_state, CommitTicket, Outcome, RecipientState, RecordKind};
use rand::Rng;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// A core whose queue held at least this many messages gives its memory
/// back to the system once the queue is empty (see `relay_timer`).
const GIVE_BACK_AFTER: usize = 10_000;

/// How often a connection idle on a site looks whether a destination on
/// any core waits for one of the site's connections (it then closes, and
/// the waiting one connects in its place).
const YIELD_CHECK: Duration = Duration::from_millis(100);

impl Shard {
    /// Runs until the core stops: promote due mail, bounce expired mail,
    /// send delay notices, open connections.
    pub async fn relay_timer(self: Rc<Self>) {
        let policy = retry_policy(&self.config().relay);
        let recovered = self.queue.borrow().domains_wanting_connections(usize::MAX);
        for dest in recovered {
            self.kick(&dest);
        }
        let mut shrunk_ms = now_ms();
        let mut reported_ms = now_ms();
        // The most messages queued on this core since memory was last
        // given back to the system.
        let mut peak = 0;
        while !self.stop.is_set() {
            let now = now_ms();
            if now.saturating_sub(shrunk_ms) >= 5_000 {
                shrunk_ms = now;
                self.give_back_memory();
                // A drained backlog gives its memory back to the system
                // now, not after the allocator's purge delay (memory.rs);
                // a queue that merely empties between ticks under steady
                // load has little to give and is left to the allocator.
                let queued = self.queue.borrow().len();
                peak = peak.max(queued);
                if queued == 0 && peak >= GIVE_BACK_AFTER {
                    peak = 0;
                    crate::memory::give_back();
                }
            }
            if now.saturating_sub(reported_ms) >= crate::shard::TLS_REPORT_FLUSH_MS {
                reported_ms = now;
                let me = self.clone();
                glommio::spawn_local(async move { me.tls_flush().await }).detach();
            }
            self.note_load();
            self.promote_due(now, &policy);
            // Connections to a busy site may have closed on another core.
            for dest in self.outbound.one_waiting_per_site() {
                self.kick(&dest);
            }
            let next = self.queue.borrow_mut().poll_timeout();
            let most = if self.outbound.any_waiting() { 100 } else { 1000 };
            let wait = next.map_or(most, |due| due.saturating_sub(now_ms())).clamp(5, most);
            glommio::timer::sleep(Duration::from_millis(wait)).await;
        }
    }

    /// Move the mail due at `now` in line for its connections: bounce
    /// what expired, send the delay notices owed, and kick the
    /// destinations that got ready mail. The timer does it at each tick;
    /// `queue flush` and `queue release` at once (`promote_due_now`).
    fn promote_due(self: &Rc<Self>, now: u64, policy: &RetryPolicy) {
        let promoted = self.queue.borrow_mut().promote_due(now, policy, &self.envelopes());
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
            for r in &msg.recipients {
                self.metrics.relay(RelayResult::Bounced, None, 0);
                self.metrics.bounce(class);
                self.metrics.problem(ErrorKind::Bounced, &r.address, &format!("{reason}; last error: {last}"));
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
        for dest in promoted.domains {
            self.kick(&dest);
        }
    }

    /// [`Self::promote_due`] now, with the current config's retry policy:
    /// mail an operator made due goes without waiting for the timer's
    /// next tick (up to a second when no connection waits).
    pub(crate) fn promote_due_now(self: &Rc<Self>) {
        self.promote_due(now_ms(), &retry_policy(&self.config().relay));
    }

    /// Open connections to `dest` while it has ready mail and room, unless
    /// its site holds it back (see `held`).
    pub fn kick(self: &Rc<Self>, dest: &Dest) {
        if self.stop.is_set() {
            return; // stopping: the queue is rebuilt from the spool at start
        }
        if !self.recovery.queue_ready() {
            return; // the relay timer kicks every destination on adoption
        }
        // Idle connections to it take the mail first, as many as it needs
        // beyond what busy ones will take behind their message.
        let wanted = self.queue.borrow().wanted_connections(dest);
        self.outbound.wake_idle(dest, wanted.saturating_sub(self.outbound.behind_soon(dest)));
        // What this core's connections will not get to soon (also while
        // they hold all of its site's connections).
        self.lend_if_hot(dest);
        if self.outbound.is_held(dest, now_ms()) {
            return; // woken when its site has room again
        }
        // Before its site is known, [relay]'s default; after, the site's
        // limit times its sources (the site table has the final word).
        let relay = &self.config().relay;
        let max = match self.outbound.limits_of(dest) {
            Some(l) => l.max_connections.saturating_mul(source::sources(relay, dest.pool).len()),
            None => relay.max_connections_per_domain,
        };
        let max = self.outbound.lender.connections(dest, max, now_ms());
        while let Some(slot) = ConnectionSlot::take(self, dest, max) {
            glommio::spawn_local(self.clone().connection_task(slot)).detach();
            // glommio may run the task at once, and with its MX plan in
            // the cache it can end before its first real wait: its site
            // held the destination back and its slot is free again. Taking
            // that slot again would spin this core for as long as the site
            // holds the destination (forever while the site is busy).
            if self.outbound.is_held(dest, now_ms()) {
                break;
            }
        }
    }

    /// One connection to `slot`'s destination, carrying its ready mail;
    /// the slot goes back to the queue when this ends or is dropped.
    async fn connection_task(self: Rc<Self>, slot: ConnectionSlot) {
        let dest = slot.dest().clone();
        let domain = dest.domain.clone();
        let relay = &self.config().relay;
        let targets = {
            let mut rng = rand::thread_rng();
            mx::plan_with_port(
                &self.outbound.resolver,
                &relay.routes,
                &relay.fallback_relay,
                &domain,
                relay.mx_port,
                &mut rng,
            )
            .await
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
                    let Some((key, msg)) = self.queue.borrow_mut().next_ready(&dest, &self.envelopes()) else { break };
                    let failed = msg
                        .recipients
                        .iter()
                        .map(|r| (r.clone(), status.clone(), e.to_string(), Some(class)))
                        .collect();
                    tracing::info!(queue_id = %msg.queue_id, domain = %domain, status = "bounced", class = %class, reason = %e, "no route");
                    for r in &msg.recipients {
                        self.metrics.relay(RelayResult::Bounced, None, 0);
                        self.metrics.bounce(class);
                        self.metrics.problem(ErrorKind::Bounced, &r.address, &format!("no route: {e}"));
                    }
                    self.queue.borrow_mut().finish(key);
                    self.bounce(msg, failed, None, DsnAction::Failed);
                }
            }
            Err(e) => self.defer_all_ready(&dest, &e.to_string(), None),
            Ok(plan) => {
                let generation = self.outbound.sites.generation();
                let rules = self.outbound.sites.rules();
                let limits = Arc::new(self.site_limits(&rules, &domain, &plan.hosts));
                self.outbound.remember_limits(&dest, limits.clone());
                self.carry(&dest, &plan.targets, &limits, generation).await;
            }
        }
        // The slot goes back before the kick, so the kick may reuse it.
        drop(slot);
        self.kick(&dest);
    }

    /// The site of mail to `domain` going to the MX `hosts` (in the order
    /// tried), and its limits.
    fn site_limits(&self, rules: &shaping::Shaping, domain: &str, hosts: &[String]) -> SiteLimits {
        let relay = &self.config().relay;
        let fallback = shaping::Fallback {
            max_connections: relay.max_connections_per_domain,
            max_deliveries_per_connection: relay.max_messages_per_connection,
        };
        // A route's site is its first target (the smarthost a failover
        // list prefers, or the LMTP store), named as the grammar writes it.
        match mx::route_override(&relay.routes, domain) {
            Some([first, ..]) => rules.resolve(domain, shaping::Destination::Route(&first.to_string()), fallback),
            Some([]) | None => rules.resolve(domain, shaping::Destination::Mx(hosts), fallback),
        }
    }

    /// Within `limits`, connect to the first of `targets` that answers and
    /// carry `dest`'s ready mail over it; or hold `dest` back if its site
    /// has no room now.
    /// `limits` were resolved under the rules of `generation`: when SIGHUP
    /// replaces them, the connection ends before its next message, so that
    /// the next one opens under the new rules (an idle connection that
    /// keeps being reused would otherwise keep the old ones for good).
    async fn carry(self: &Rc<Self>, dest: &Dest, targets: &[mx::Target], limits: &SiteLimits, generation: u64) {
        let relay = &self.config().relay;
        // Before the site's permit: a policy fetch can take seconds.
        let sts = self.outbound.sts_policy(relay, &dest.domain, targets).await;
        let site: Arc<str> = Arc::from(limits.site.as_str());
        let sources = source::sources(relay, dest.pool);
        let weights: Vec<_> = sources.iter().map(|s| (s.ip, s.weight)).collect();
        let pick: f64 = rand::thread_rng().gen();
        let permit = match self.outbound.sites.connect(limits, &site, &weights, pick, now_ms()) {
            Ok(p) => p,
            Err(Refused::Busy) => {
                let sources = weights.iter().map(|&(ip, _)| ip).collect();
                self.outbound.wait_for_site(&site, dest.clone(), sources);
                return;
            }
            Err(Refused::Suspended { until_ms } | Refused::Paced { until_ms }) => {
                self.park(dest, until_ms);
                return;
            }
        };
        let from = &sources[permit.source_index];
        let config = self.config();
        let helo = from.ehlo.as_deref().unwrap_or(&config.hostname);
        let mut conn = None;
        let mut last_error = String::from("no MX host could be reached");
        let mut suspended = None;
        // Hosts not used under their TLS policy, or whose certificate
        // matched none of their TLSA records: if that is every host, the
        // mail waits with 4.7.5 (RFC 7672 §2.2; never plain text instead).
        let mut skipped = 0;
        for t in targets {
            let dane = self.outbound.dane_status(relay, &dest.domain, t).await;
            let policy = match tls_policy::decide(relay, &dest.domain, t, &dane, sts.as_ref()) {
                Ok(p) => {
                    if let Some(note) = tls_policy::sts_testing_refusal(sts.as_ref(), t, &p.basis) {
                        tracing::info!(domain = %dest.domain, relay = %t.relay_name(), "{note}");
                    }
                    p
                }
                Err(skip) => {
                    tracing::info!(domain = %dest.domain, relay = %t.relay_name(), reason = %skip, "host not used: TLS policy");
                    // RFC 8460 result types of a host ruled out before
                    // connecting.
                    if let Some(basis) = tls_policy::sts_enforcing(sts.as_ref()) {
                        self.tls_record_refused(&dest.domain, &basis, t, from.ip, "validation-failure");
                    } else if let tls_policy::DaneStatus::Failed(_) = dane {
                        let basis = tls_policy::Basis::Entry(crate::config::TlsLevel::DaneOnly);
                        self.tls_record_refused(&dest.domain, &basis, t, from.ip, "tlsa-invalid");
                    } else if wants_dane_only(relay, &dest.domain) {
                        let basis = tls_policy::Basis::Entry(crate::config::TlsLevel::DaneOnly);
                        self.tls_record_refused(&dest.domain, &basis, t, from.ip, "dane-required");
                    }
                    last_error = format!("{}: {skip}", t.relay_name());
                    skipped += 1;
                    continue;
                }
            };
            let basis = policy.basis.clone();
            let opened =
                RelayConnection::open(t, from.ip, helo, policy.clone(), &self.outbound.tls, client_timeouts(relay))
                    .await;
            match opened {
                Ok(c) => {
                    self.tls_record(&dest.domain, &basis, t, from.ip, Ok(c.tls_result()));
                    conn = Some(c);
                    break;
                }
                Err(e) if policy.dane_mismatch().is_some() => {
                    let why = policy.dane_mismatch().unwrap_or_default();
                    self.tls_record_refused(&dest.domain, &basis, t, from.ip, "validation-failure");
                    tracing::info!(domain = %dest.domain, site = %site, source = ?from.ip, relay = %e.host, addr = %e.addr, error = %why, "certificate does not match TLSA, trying next host");
                    last_error = format!("{}[{}]: 4.7.5 {why}", e.host, e.addr);
                    skipped += 1;
                }
                Err(e) => {
                    self.tls_record(&dest.domain, &basis, t, from.ip, Err(&e.reason));
                    tracing::info!(domain = %dest.domain, site = %site, source = ?from.ip, relay = %e.host, addr = %e.addr, error = %e.reason, "connection failed, trying next host");
                    last_error = e.to_string();
                    // A greeting such as "421 4.7.0 rate limited" is the site
                    // talking: it may suspend the site or halve its rate.
                    if let Some((BackoffAction::Suspend, duration)) = permit.replied(limits, &e.reason, None, now_ms())
                    {
                        suspended = Some(now_ms() + duration.as_millis() as u64);
                        break;
                    }
                }
            }
        }
        let Some(mut c) = conn else {
            match suspended {
                // The mail did nothing wrong: it waits, ready, for the
                // suspension to end instead of going on the retry schedule.
                Some(until_ms) => self.park(dest, until_ms),
                // No host may be used under its TLS policy, or none had a
                // certificate its TLSA records match: 4.7.5 (RFC 7672
                // §2.2; never plain text instead).
                None if skipped == targets.len() => {
                    self.defer_all_ready_with(dest, (4, 7, 5), &last_error, Some(limits))
                }
                None => self.defer_all_ready(dest, &last_error, Some(limits)),
            }
            self.release(permit);
            return;
        };
        self.carry_mail(&mut c, dest, &permit, limits, generation).await;
        c.quit(&self.outbound.tls).await;
        self.release(permit);
    }

    /// Wait for a slot of the site's message rate. False when the site
    /// was suspended meanwhile or the core is stopping.
    pub(super) async fn pace(&self, permit: &Permit, limits: &SiteLimits) -> bool {
        loop {
            match permit.take_message(limits, now_ms()) {
                Ok(()) => return true,
                Err(Refused::Paced { until_ms }) => {
                    let wait = Duration::from_millis(until_ms.saturating_sub(now_ms()).max(1));
                    futures_lite::future::or(glommio::timer::sleep(wait), self.stop.wait()).await;
                    if self.stop.is_set() {
                        return false;
                    }
                }
                Err(Refused::Suspended { .. } | Refused::Busy) => return false,
            }
        }
    }

    /// Give a site permit back and let the destination that waited longest
    /// for the site on this core try.
    fn release(self: &Rc<Self>, permit: Permit) {
        let site = permit.key().site.clone();
        drop(permit);
        if let Some(next) = self.outbound.site_freed(&site) {
            self.kick(&next);
        }
    }

    /// Hold `dest` back until `until_ms` (its site suspended or paced),
    /// then try it again.
    fn park(self: &Rc<Self>, dest: &Dest, until_ms: u64) {
        if !self.outbound.park(dest, until_ms) {
            return;
        }
        let me = self.clone();
        let dest = dest.clone();
        glommio::spawn_local(async move {
            let wait = Duration::from_millis(until_ms.saturating_sub(now_ms()));
            futures_lite::future::or(glommio::timer::sleep(wait), me.stop.wait()).await;
            me.outbound.unpark(&dest, until_ms);
            me.kick(&dest);
        })
        .detach();
    }

    /// The next ready message for `domain`, waiting up to `idle` for one
    /// (the connection stays open meanwhile, so a steady stream of mail is
    /// not one connection per message). None when stopping, idle too long,
    /// or when a destination on any core waits for a connection at `site`
    /// (site and source; looked at every [`YIELD_CHECK`] while idle: the
    /// wait is on another core's queue, which cannot wake this task).
    pub(super) async fn next_for(
        self: &Rc<Self>,
        domain: &Dest,
        idle: Duration,
        site: &SiteKey,
    ) -> Option<(Key, QueuedMessage)> {
        let deadline = std::time::Instant::now() + idle;
        loop {
            if self.stop.is_set() {
                return None;
            }
            if let Some(next) = self.queue.borrow_mut().next_ready(domain, &self.envelopes()) {
                return Some(next);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || self.outbound.sites.yield_to_waiting(site) {
                return None;
            }
            let woken = self.outbound.idle_wait(domain);
            let nap = glommio::timer::sleep(left.min(YIELD_CHECK));
            futures_lite::future::or(futures_lite::future::or(woken, nap), self.stop.wait()).await;
        }
    }

    fn defer_all_ready(self: &Rc<Self>, domain: &Dest, error: &str, site: Option<&SiteLimits>) {
        self.defer_all_ready_with(domain, (4, 4, 1), error, site)
    }

    /// Defer every ready message of `domain` with the status `enhanced`.
    fn defer_all_ready_with(
        self: &Rc<Self>,
        domain: &Dest,
        enhanced: (u8, u16, u16),
        error: &str,
        site: Option<&SiteLimits>,
    ) {
        loop {
            let Some((key, msg)) = self.queue.borrow_mut().next_ready(domain, &self.envelopes()) else { break };
            let outcome = deferred_all(msg.recipients.len(), enhanced, error);
            self.apply_outcome(key, msg, outcome, None, None, site);
        }
    }

    /// One handler per class: delivered -> tombstone (and a success notice
    /// of kind `success_notice`, when given: the next hop could not take
    /// NOTIFY=SUCCESS); bounced -> DSN then tombstone; deferred -> back on
    /// the schedule.
    pub(super) fn apply_outcome(
        self: &Rc<Self>,
        key: Key,
        msg: QueuedMessage,
        outcome: MessageOutcome,
        hop: Option<&Hop>,
        success_notice: Option<DsnAction>,
        site: Option<&SiteLimits>,
    ) {
        let target = hop.map(|h| &h.target);
        let mut notify_success = Vec::new();
        let now = now_ms();
        let delay_s = now.saturating_sub(msg.arrived_ms) as f64 / 1000.0;
        let mut settled = Vec::new();
        let mut bounced = Vec::new();
        let mut deferred = Vec::new();
        let mut last_deferral = String::new();
        let delay_us = now.saturating_sub(msg.arrived_ms) * 1000;
        let relay = hop.map(|h| h.relay.as_str());
        let tls = hop.map_or(TlsResult::None, |h| h.tls);
        let tls_basis = hop.map_or("", |h| h.tls_basis.as_str());
        let via = hop.map(|h| h.via.clone());
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
                    tracing::info!(queue_id = %msg.queue_id, to = %r.address, relay, delay = delay_s, status = "sent", tls = %tls, tls_basis, dsn = %reply.dsn(), reply = %reply, "delivered");
                    self.metrics.relay_tls(tls);
                    settled.push(Settled {
                        at: msg.at,
                        recipient: r.index,
                        outcome: Outcome::Delivered,
                        via: via.clone(),
                    });
                    if success_notice.is_some() {
                        notify_success.push(r.clone());
                    }
                }
                RecipientOutcome::Bounced { reply } => {
                    let text = reply.to_string();
                    let class = classify(&text);
                    tracing::info!(queue_id = %msg.queue_id, to = %r.address, relay, delay = delay_s, status = "bounced", tls = %tls, dsn = %reply.dsn(), class = %class, reply = %reply, "refused");
                    self.metrics.bounce(class);
                    self.metrics.problem(ErrorKind::Bounced, &r.address, &text);
                    if class.is_hard() {
                        self.suppress_later(&r.address, class, &text);
                    }
                    bounced.push((r.clone(), reply.dsn().to_string(), format!("smtp; {reply}"), Some(class)));
                }
                RecipientOutcome::Deferred { reply } => {
                    tracing::info!(queue_id = %msg.queue_id, to = %r.address, relay, delay = delay_s, status = "deferred", tls = %tls, dsn = %reply.dsn(), reply = %reply, "will retry");
                    last_deferral = reply.to_string();
                    self.metrics.problem(ErrorKind::Deferred, &r.address, &last_deferral);
                    deferred.push(r.clone());
                }
            }
        }
        if !settled.is_empty() {
            self.settle_later(settled);
        }
        if let (Some(action), false) = (success_notice, notify_success.is_empty()) {
            self.success_notice(About::from(&msg), notify_success, target.and_then(mx::Target::remote_mta), action);
        }
        if deferred.is_empty() {
            self.queue.borrow_mut().finish(key);
        } else {
            let mut policy = retry_policy(&self.config().relay);
            if let Some(retry) = site.and_then(|s| s.retry.as_ref()) {
                policy.waits_ms = retry.iter().map(|d| d.as_millis() as u64).collect();
            }
            let jitter: f64 = rand::thread_rng().gen();
            let due = now + retry_delay(&policy, msg.attempts + 1, jitter);
            self.queue.borrow_mut().defer(key, deferred, last_deferral, due);
            self.record_deferral(key);
        }
        if !bounced.is_empty() {
            let mut m = msg;
            m.last_error = None;
            let remote_mta = target.and_then(mx::Target::remote_mta);
            self.bounce(m, bounced, remote_mta, DsnAction::Failed);
        }
    }

    /// Append tombstones on the core that owns each message's spool dir,
    /// in the background (a crash before their sync re-sends at most these
    /// deliveries). Outcomes settled in the same turn of this executor go
    /// to each owner as one `Settle`: one cross-core request (and one
    /// wake-up of the owner) per batch instead of per message.
    pub(crate) fn settle_later(self: &Rc<Self>, items: Vec<Settled>) {
        for item in items {
            let to = owner::dir_owner(item.at.dir, self.cores);
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
        match self.append_deferral(key) {
            Ok(Some(ticket)) => {
                let me = self.clone();
                glommio::spawn_local(async move {
                    let _ = me.spool.durable(&ticket).await;
                })
                .detach();
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(core = self.id, error = %e, "queue state not recorded"),
        }
    }

    /// Append the queue state of `key` ([`record_deferral`]), one record
    /// per recipient; the ticket of the last, for a caller that must wait
    /// for it (None: no such share).
    ///
    /// [`record_deferral`]: Shard::record_deferral
    pub(crate) fn append_deferral(self: &Rc<Self>, key: Key) -> Result<Option<CommitTicket>, ShardError> {
        let now_us = now_ms() * 1000;
        let Some(seq) = self.queue.borrow_mut().next_state_seq(key, now_us) else { return Ok(None) };
        let Some(msg) = self.queue.borrow().message(key, &NoEnvelopes) else { return Ok(None) };
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
            let bytes = encode_recipient_state(&state).map_err(|_| ShardError::TooLong { what: "queue state" })?;
            last = Some(self.append(RecordKind::RecipientState, &[&bytes])?.ticket);
        }
        Ok(last)
    }
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

/// Whether `domain` has a `dane-only` entry in `[relay.tls_policy]`.
fn wants_dane_only(relay: &crate::config::Relay, domain: &str) -> bool {
    relay.tls_policy.get(&mx::normalize(domain)) == Some(&crate::config::TlsLevel::DaneOnly)
}

/// The server that answered for a message, and what its session's TLS was.
/// Made once per connection: every message it carries reports the same.
pub(super) struct Hop {
    pub target: mx::Target,
    pub tls: TlsResult,
    /// Why the TLS requirement was what it was (`tls_basis=`).
    pub tls_basis: String,
    /// `host[address]` for the log.
    relay: String,
    /// Kept in the tombstone of each delivered recipient, for `trace`:
    /// the host, then what its session's TLS was and why.
    via: std::sync::Arc<str>,
}

impl Hop {
    pub fn new(target: mx::Target, tls: TlsResult, tls_basis: String) -> Hop {
        let relay = target.relay_name();
        let via = std::sync::Arc::from(format!("{relay} tls={tls} tls_basis={tls_basis}"));
        Hop { target, tls, tls_basis, relay, via }
    }
}
