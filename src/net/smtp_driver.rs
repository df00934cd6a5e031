//! Drives one SMTP session: socket bytes in, the sans-I/O
//! [`smtp::Server`](crate::proto::smtp::Server) decides, the shard stores.

use super::conn::Conn;
use super::Protocol;
use crate::address_map::{Resolution, Target};
use crate::config::Config;
use crate::proto::smtp::StoreOutcome;
use crate::proto::smtp::{
    self, Action, Address, RcptDecision, RecipientPolicy, ReversePath, ScreenDecision, ScreenRequest, SenderDecision,
};
use crate::screen::session::Session as Screening;
use crate::shard::checks::Checked;
use crate::shard::filter_live::LiveFilters;
use crate::shard::intake::Arrival;
use crate::shard::limits::RateKey;
use crate::shard::{Login, Shard};
use std::net::IpAddr;
use std::rc::Rc;

/// Longest command line we take (RFC 5321 says 512; extensions add more).
const MAX_COMMAND_LINE: usize = 4096;

/// The session settings for a listener: port 25 never offers AUTH;
/// submission and smtps require it. Passwords only over TLS, or in plain
/// text from loopback when `auth.plaintext_on_loopback` (as Dovecot treats
/// localhost as secured).
fn server_config(config: &Config, proto: Protocol, tls_active: bool, peer: IpAddr) -> smtp::ServerConfig {
    smtp::ServerConfig {
        hostname: config.hostname.clone(),
        max_message_size: config.max_message_size as usize,
        max_recipients: config.limits.max_recipients,
        max_line_len: MAX_COMMAND_LINE,
        max_errors: config.limits.max_errors,
        starttls: !tls_active,
        tls_at_start: tls_active,
        max_commands: config.limits.max_commands,
        max_messages: config.limits.max_messages_per_connection,
        auth: match proto {
            Protocol::Smtp | Protocol::Pop3 | Protocol::Pop3s => smtp::AuthMode::Off,
            Protocol::Submission | Protocol::Smtps => smtp::AuthMode::Required,
        },
        plaintext_auth_ok: tls_active || (is_loopback(peer) && config.auth.plaintext_on_loopback),
    }
}

/// Loopback, also as an IPv4-mapped IPv6 address.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        IpAddr::V4(v4) => v4.is_loopback(),
    }
}

/// Who may receive mail through this session: local users, domains routed
/// to an LMTP store (final destinations, see `config::routes`), and any
/// domain when the client is in `relay.permit_relay_from` or has
/// authenticated.
struct SessionPolicy {
    shard: Rc<Shard>,
    client: IpAddr,
    relay_permitted: bool,
    /// The client screening of this session, when the client is screened.
    screening: Option<Rc<Screening>>,
}

impl RecipientPolicy for SessionPolicy {
    fn check(&self, rcpt: &Address, auth: Option<&str>) -> RcptDecision {
        recipient_decision(&self.shard, self.client, rcpt, self.relay_permitted || auth.is_some())
    }

    /// With `auth.sender_must_match`, an authenticated user sends only as
    /// their own address (no aliases exist yet). The null sender stays
    /// allowed (a user's own mail program may send bounces/receipts).
    fn check_sender(&self, sender: &ReversePath, auth: Option<&str>) -> SenderDecision {
        // `has_spare` is the writer's own word, checked now: the disk may
        // have filled since `spool_watch` last measured it.
        if self.shard.spool_full.get() || !self.shard.spool.has_spare() {
            return SenderDecision::SpoolFull;
        }
        let limits = &self.shard.config().limits;
        let now = crate::clock::now_ms();
        let limiter = &self.shard.limits;
        let ip_ok = limiter.allow_message(&RateKey::Ip(self.client), limits.max_messages_per_minute_per_ip, now);
        let user_ok = auth.is_none_or(|u| {
            limiter.allow_message(&RateKey::User(u.to_ascii_lowercase()), limits.max_messages_per_minute_per_user, now)
        });
        if !ip_ok || !user_ok {
            tracing::warn!(core = self.shard.id, client = %self.client, user = auth.unwrap_or(""), reason = "message rate exceeded", "refused");
            return SenderDecision::RateLimited;
        }
        match (auth, sender) {
            (Some(user), ReversePath::Mailbox(a)) if self.shard.config().auth.sender_must_match => {
                if a.to_string().eq_ignore_ascii_case(user) {
                    SenderDecision::Ok
                } else {
                    SenderDecision::NotOwned
                }
            }
            _ => SenderDecision::Ok,
        }
    }

    fn screen(&self, request: &ScreenRequest<'_>) -> ScreenDecision {
        match &self.screening {
            Some(s) => {
                let config = self.shard.config();
                s.decide(&config, &self.shard.screening, &self.shard.metrics, request, crate::clock::now_ms())
            }
            None => ScreenDecision::Pass,
        }
    }
}

/// Decide one recipient as an SMTP session would: local users, aliases
/// and LMTP domains always; any other domain only when `may_relay` (the
/// client is in `permit_relay_from` or authenticated: the HTTP injection
/// API counts as authenticated). Cheap: no I/O.
pub(crate) fn recipient_decision(shard: &Shard, client: IpAddr, rcpt: &Address, may_relay: bool) -> RcptDecision {
    let config = shard.config();
    let users = shard.users();
    let rcpt_text = rcpt.to_string();
    match config.address_map.resolve(&rcpt_text, &|a| users.contains(a)) {
        Resolution::Targets(targets) => local_decision(shard, &rcpt_text, targets),
        Resolution::Unknown => RcptDecision::UnknownUser,
        Resolution::Failed(e) => {
            tracing::warn!(core = shard.id, client = %client, to = %rcpt_text, error = %e, "recipient refused: alias expansion failed");
            RcptDecision::AliasFailed { reason: e.to_string() }
        }
        Resolution::NotLocal if may_relay || config.is_lmtp_domain(&rcpt.domain) => {
            match shard.suppressed_since(&rcpt_text) {
                Some(ms) => RcptDecision::Suppressed { since: crate::admin::format_time(ms) },
                None => RcptDecision::Remote { domain: rcpt.domain.clone() },
            }
        }
        Resolution::NotLocal => RcptDecision::RelayDenied,
    }
}

/// The decision for a local address that resolved to `targets`: its
/// own mailbox stays a plain `Local` (refused when over quota), and
/// anything else (aliases, catch-all, role addresses) is `Expanded`.
fn local_decision(shard: &Shard, rcpt: &str, mut targets: Vec<Target>) -> RcptDecision {
    match targets.as_slice() {
        [Target::Local { address, user }] if address.eq_ignore_ascii_case(rcpt) => {
            if shard.over_quota.borrow().contains(user) {
                RcptDecision::MailboxFull
            } else {
                RcptDecision::Local { user: user.clone() }
            }
        }
        _ => {
            // A full mailbox among several targets must not hold up
            // the others: it is left out (its owner logs the quota).
            let full = shard.over_quota.borrow();
            targets.retain(|t| !matches!(t, Target::Local { user, .. } if full.contains(user)));
            if targets.is_empty() {
                RcptDecision::MailboxFull
            } else {
                RcptDecision::Expanded { targets }
            }
        }
    }
}

fn relay_permitted(config: &Config, ip: IpAddr) -> bool {
    // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    config.relay.permit_relay_from.iter().any(|net| net.contains(&ip))
}

pub async fn run(shard: Rc<Shard>, mut conn: Conn, proto: Protocol) {
    let client = conn.peer.ip();
    let cfg = Rc::new(server_config(&shard.config(), proto, conn.is_tls(), client));
    let permitted = relay_permitted(&shard.config(), client);
    let submission = matches!(proto, Protocol::Submission | Protocol::Smtps);
    let screening = crate::screen::applies(permitted, submission).then(|| Rc::new(Screening::new(shard.id, client)));
    // The lookups run from now on, while the greeting goes out (postscreen's
    // trick); they are awaited before the first MAIL or RCPT is fed.
    let mut lookups = match (&screening, crate::screen::plan(&shard.config())) {
        (Some(_), Some(plan)) => {
            let (resolver, disabled) = (shard.outbound.resolver.clone(), shard.screening.disabled.clone());
            Some(glommio::spawn_local(crate::screen::lookup::run(resolver, client, plan, disabled)))
        }
        _ => None,
    };
    let policy =
        SessionPolicy { shard: shard.clone(), client, relay_permitted: permitted, screening: screening.clone() };
    let mut server = smtp::Server::new(cfg, Box::new(policy));
    // Milters at stage "connect" hear of the client before the greeting.
    let filtered = !permitted || shard.config().filter.outbound;
    let (mut live, refusal) = LiveFilters::start(&shard, conn.peer, filtered).await;
    match refusal {
        Some(refusal) => server.refuse_connection(refusal),
        None if !live.is_empty() => server.filter_commands(),
        None => {}
    }
    conn.set_pace(super::conn::Pace::smtp(&shard.config().limits));
    'session: loop {
        if let (Some(_), Some(s)) = (&lookups, &screening) {
            if crate::screen::wants_findings(&conn.inbuf) {
                // Bounded by SCREEN_TIMEOUT inside the task.
                if let Some(task) = lookups.take() {
                    s.set_findings(task.await);
                }
            }
        }
        // Feed everything buffered, performing actions as the machine asks.
        loop {
            let n = server.handle_input(&conn.inbuf);
            conn.consume(n);
            match server.poll_action() {
                Some(Action::Store { envelope, body }) => {
                    // Replies still pending (MAIL and RCPT pipelined with
                    // BDAT LAST) wait for the sync and go out with the 250:
                    // one write per message (RFC 2920 §3.1 lets a server
                    // hold replies while it does not wait for input).
                    let outcome = match shard.check_inbound(client, permitted, &envelope, body).await {
                        Checked::Store { body, auth_results, summary } => {
                            let arrival = Arrival { tls: conn.is_tls(), submission };
                            let auth_results = match &screening {
                                Some(s) if envelope.auth_user.is_none() => {
                                    s.headers(&shard.config().hostname, auth_results)
                                }
                                _ => auth_results,
                            };
                            let outcome = shard
                                .filter_and_accept(
                                    conn.peer,
                                    permitted,
                                    arrival,
                                    envelope,
                                    body,
                                    auth_results.as_deref(),
                                    &mut live,
                                )
                                .await;
                            if let (StoreOutcome::Stored { queue_id }, Some(summary)) = (&outcome, summary) {
                                tracing::info!(queue_id = %queue_id, client = %client, auth = %summary, "sender authentication");
                            }
                            outcome
                        }
                        Checked::Refuse { text, summary } => {
                            tracing::info!(core = shard.id, client = %client, from = %envelope.sender, auth = %summary, "message refused by DMARC policy");
                            StoreOutcome::PolicyRejected { text }
                        }
                    };
                    server.store_done(outcome);
                }
                Some(Action::Filter(step)) => {
                    // The replies before it wait with it: one write for a
                    // pipelined envelope.
                    let refusal = live.command(&shard, &step, server.authenticated_user()).await;
                    server.filter_done(refusal);
                }
                Some(Action::StartTls) => {
                    // "220 Ready to start TLS" is in the output; bytes the
                    // client pipelined after STARTTLS were discarded.
                    if send(&shard, &mut conn, &mut server).await.is_err() {
                        break 'session;
                    }
                    let tls = shard.tls_config();
                    let handshake = conn.start_tls(tls, shard.config().limits.tls_handshake_timeout.get()).await;
                    shard.metrics.tls_handshake(handshake.is_ok());
                    if let Err(e) = handshake {
                        tracing::info!(core = shard.id, client = %client, error = %e, "STARTTLS handshake failed");
                        shard.metrics.problem(
                            crate::metrics::recent::ErrorKind::TlsHandshake,
                            &client.to_string(),
                            &e.to_string(),
                        );
                        break 'session;
                    }
                    server.starttls_done();
                }
                Some(Action::Authenticate { user, password, .. }) => {
                    if send(&shard, &mut conn, &mut server).await.is_err() {
                        break 'session;
                    }
                    let outcome = match shard.check_login(client, proto.name(), &user, &password).await {
                        Login::Ok => {
                            tracing::info!(core = shard.id, client = %client, user = %user, proto = proto.name(), "authenticated");
                            smtp::AuthOutcome::Success
                        }
                        Login::Failed => smtp::AuthOutcome::Failure,
                        Login::Locked => smtp::AuthOutcome::Locked,
                    };
                    server.auth_done(outcome);
                }
                None => break,
            }
        }
        if send(&shard, &mut conn, &mut server).await.is_err() || server.is_closed() {
            break;
        }
        if !conn.read_more(&mut server, &shard.stop, shard.id, "smtp").await {
            break;
        }
    }
    live.close().await;
    conn.close().await;
}

/// Write the machine's pending replies, counting them by class.
async fn send(shard: &Shard, conn: &mut Conn, server: &mut smtp::Server) -> std::io::Result<()> {
    shard.metrics.smtp_output(server.output());
    conn.flush(server).await
}
