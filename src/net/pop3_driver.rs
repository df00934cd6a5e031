//! Drives one POP3 session over the sans-I/O
//! [`pop3::Server`](crate::proto::pop3::Server): checks passwords off the
//! I/O path, locks the mailbox on its owner core, copies bodies from the
//! spool maps, and commits deletions through the owner at QUIT.
//!
//! Writes: everything the commands of one read ask for leaves in one write
//! (status lines, message bodies, listings), so a client reading a RETR
//! finds the whole reply in one read, and a pipelining client gets one
//! write per batch. Only a slow action (a password check, QUIT's commit,
//! STLS) or [`FLUSH_AT`] bytes of pending replies write earlier.

use super::conn::Conn;
use crate::config::{Config, EffectiveRetention};
use crate::mailbox::{LockToken, MailboxEntry, MailboxError};
use crate::proto::pop3::{self, Action, AuthOutcome, CommitOutcome, MessageInfo, Policy, Uid};
use crate::shard::recovery::LOGIN_WAIT;
use crate::shard::{owner, Login, Request, Shard};
use std::rc::Rc;

/// Pending replies past this are written before the next command is
/// answered: pipelined RETRs of large messages must not pile up in memory.
const FLUSH_AT: usize = 256 * 1024;

/// RFC 2449: command lines are at most 255 octets.
const MAX_COMMAND_LINE: usize = 255;

fn server_config(config: &Config, tls_active: bool, peer: std::net::IpAddr) -> pop3::Pop3Config {
    // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
    let loopback = match peer {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
    };
    pop3::Pop3Config {
        hostname: config.hostname.clone(),
        stls: !tls_active,
        max_line_len: MAX_COMMAND_LINE,
        max_auth_failures: config.auth.max_failures_per_connection,
        plaintext_auth_ok: tls_active || (loopback && config.auth.plaintext_on_loopback),
        policy: Policy {
            expire_varies: config.retention.varies(|p| p.max_age.is_some() || p.delete_after_retrieve.is_some()),
            login_delay_varies: config.retention.varies(|p| p.login_delay.is_some()),
            ..policy(&config.retention.site())
        },
    }
}

/// What CAPA announces of a retention policy (RFC 2449 §6.5, §6.7).
fn policy(r: &EffectiveRetention) -> Policy {
    let expire_days = match (r.delete_after_retrieve, r.max_age) {
        (true, _) => Some(0),
        // Whole days, a part day dropped: at least this long.
        (false, Some(age)) => Some(age.as_secs() / 86_400),
        (false, None) => None,
    };
    Policy { expire_days, login_delay_secs: r.login_delay.map(|d| d.as_secs()), ..Policy::default() }
}

/// A mailbox this session holds locked, and the listing it works on.
struct Locked {
    user: String,
    token: LockToken,
    owner: usize,
    entries: Vec<MailboxEntry>,
}

pub async fn run(shard: Rc<Shard>, mut conn: Conn) {
    let cfg = Rc::new(server_config(&shard.config(), conn.is_tls(), conn.peer.ip()));
    let mut server = pop3::Server::new(cfg);
    let mut locked: Option<Locked> = None;
    conn.set_pace(super::conn::Pace::pop3(&shard.config().limits));
    'session: loop {
        loop {
            let n = server.handle_input(&conn.inbuf);
            conn.consume(n);
            let Some(action) = server.poll_action() else { break };
            // A password check, a durable commit or a TLS handshake waits:
            // the client gets the replies before it first.
            let waits = !matches!(action, Action::SendMessage { .. });
            if waits && conn.flush(&mut server).await.is_err() {
                break 'session;
            }
            match action {
                Action::SendMessage { index, .. } => {
                    let Some(entry) = locked.as_ref().and_then(|l| l.entries.get(index)) else {
                        tracing::error!(core = shard.id, index, "pop3 machine asked for a message outside the listing");
                        break 'session;
                    };
                    if let Err(e) = send_body(&shard, entry, &mut server) {
                        // The status line is pending without its body; the
                        // only honest thing left is to drop the connection.
                        tracing::error!(core = shard.id, queue_id = %entry.queue_id, error = %e, "cannot read message from spool");
                        break 'session;
                    }
                    if server.output().len() >= FLUSH_AT && conn.flush(&mut server).await.is_err() {
                        break 'session;
                    }
                }
                Action::Authenticate { user, password } => {
                    let (outcome, lock) = login(&shard, &user, &password, &conn).await;
                    if let Some(l) = &lock {
                        let retention = shard.config().retention.for_user(&l.user);
                        server.delete_retrieved_at_quit(retention.delete_after_retrieve);
                        server.set_user_policy(policy(&retention));
                    }
                    locked = lock;
                    server.auth_done(outcome);
                }
                Action::Commit { deleted } => {
                    let outcome = match locked.take() {
                        Some(l) => commit(&shard, l, &deleted).await,
                        None => CommitOutcome::Failed,
                    };
                    server.commit_done(outcome);
                }
                Action::StartTls => {
                    let tls = shard.tls_config();
                    let handshake = conn.start_tls(tls, shard.config().limits.tls_handshake_timeout.get()).await;
                    shard.metrics.tls_handshake(handshake.is_ok());
                    if let Err(e) = handshake {
                        tracing::info!(core = shard.id, client = %conn.peer.ip(), error = %e, "STLS handshake failed");
                        shard.metrics.problem(
                            crate::metrics::recent::ErrorKind::TlsHandshake,
                            &conn.peer.ip().to_string(),
                            &e.to_string(),
                        );
                        break 'session;
                    }
                    server.stls_done();
                }
            }
        }
        if server.is_closed() {
            // Unlock before the goodbye goes out: a client that logs in
            // again the moment it has it (pollers do) must not find its
            // own mailbox [IN-USE].
            if let Some(l) = locked.take() {
                unlock(&shard, l).await;
            }
            let _ = conn.flush(&mut server).await;
            break;
        }
        if conn.flush(&mut server).await.is_err() {
            break;
        }
        if !conn.read_more(&mut server, &shard.stop, shard.id, "pop3").await {
            break;
        }
    }
    // Gone without QUIT: release the lock, delete nothing (RFC 1939 §6).
    if let Some(l) = locked {
        unlock(&shard, l).await;
    }
    conn.close().await;
}

/// Release the mailbox lock on its owner core.
async fn unlock(shard: &Rc<Shard>, l: Locked) {
    let (user, token) = (l.user, l.token);
    let _ = shard.ask(l.owner, |answer| Request::Unlock { user, token, answer }).await;
}

/// Check the password off the core, then lock the mailbox on its owner.
/// Every failure takes `auth.failure_delay` and says nothing about whether
/// the user exists.
async fn login(shard: &Rc<Shard>, user: &str, password: &str, conn: &Conn) -> (AuthOutcome, Option<Locked>) {
    // The users file's key (A-label domain): a login with a U-label domain
    // after UTF8 (RFC 6856) is the same user as its SMTPUTF8 recipient.
    let user = crate::auth::normalize_address(user).unwrap_or_else(|| user.to_ascii_lowercase());
    match shard.check_login(conn.peer.ip(), "pop3", &user, password).await {
        Login::Ok => {}
        // Locked out or wrong: the same -ERR [AUTH], no hint which.
        Login::Failed | Login::Locked => return (AuthOutcome::BadCredentials, None),
    }
    let token = shard.new_lock_token();
    let owner = owner::user_owner(&user, shard.cores);
    // After a restart the owner may still be adopting its mailboxes: wait
    // for it, up to LOGIN_WAIT.
    let waiting_since = std::time::Instant::now();
    let locked = loop {
        match shard.ask(owner, |answer| Request::Lock { user: user.clone(), token, answer }).await {
            Ok(Err(MailboxError::Recovering(_))) if waiting_since.elapsed() < LOGIN_WAIT => {
                glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
            }
            other => break other,
        }
    };
    match locked {
        Ok(Ok(entries)) => {
            tracing::info!(core = shard.id, client = %conn.peer.ip(), user = %user, messages = entries.len(), "pop3 login");
            let infos = entries
                .iter()
                .map(|e| MessageInfo { uid: Uid::written(|w| e.write_uid(w)), size: e.served_size() })
                .collect();
            (AuthOutcome::LoggedIn(infos), Some(Locked { user, token, owner, entries }))
        }
        Ok(Err(MailboxError::InUse(_))) => (AuthOutcome::InUse, None),
        Ok(Err(MailboxError::Recovering(_))) => {
            tracing::warn!(core = shard.id, user = %user, waited_ms = waiting_since.elapsed().as_millis() as u64, "pop3 login: mailbox still being recovered");
            (AuthOutcome::Recovering, None)
        }
        Ok(Err(e @ MailboxError::NotLocked(_))) => {
            tracing::error!(core = shard.id, user = %user, error = %e, "mailbox lock failed");
            (AuthOutcome::TempFailure, None)
        }
        Err(e) => {
            tracing::error!(core = shard.id, user = %user, error = %e, "mailbox lock failed");
            (AuthOutcome::TempFailure, None)
        }
    }
}

/// Hand `entry`'s stored body, straight from the spool map, to the
/// machine, which puts its wire form, under the trace fields, behind the
/// status line.
fn send_body(shard: &Shard, entry: &MailboxEntry, server: &mut pop3::Server) -> Result<(), ReadError> {
    let view = shard.maps.borrow_mut().record(shard.resolve(entry.at))?;
    let record = view.message()?;
    server.message_body_under(entry.trace_fields(&record).as_bytes(), record.body);
    Ok(())
}

/// Why a listed message could not be read back for RETR/TOP.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    #[error("undecodable message record: {0}")]
    Undecodable(#[from] crate::spool::DecodeError),
}

/// QUIT: the owner tombstones the deleted messages durably, then unlocks.
async fn commit(shard: &Rc<Shard>, l: Locked, deleted: &[usize]) -> CommitOutcome {
    let gone: Vec<_> = deleted.iter().filter_map(|&i| l.entries.get(i)).map(|e| (e.at, e.recipient)).collect();
    let n = gone.len();
    let (user, token) = (l.user.clone(), l.token);
    match shard.ask_result(l.owner, |answer| Request::Commit { user, token, deleted: gone, answer }).await {
        Ok(()) => {
            tracing::info!(core = shard.id, user = %l.user, deleted = n, "pop3 deletions committed");
            CommitOutcome::Done
        }
        Err(e) => {
            tracing::error!(core = shard.id, user = %l.user, error = %e, "pop3 deletions not committed");
            let (user, token) = (l.user, l.token);
            let _ = shard.ask(l.owner, |answer| Request::Unlock { user, token, answer }).await;
            CommitOutcome::Failed
        }
    }
}
