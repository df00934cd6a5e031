//! Milters at `stage = "connect"` (Postfix's `smtpd_milters`): one
//! connection per milter per SMTP session, opened as the client connects,
//! told connect, HELO, MAIL and each RCPT as they happen; a refusal at a
//! step is the SMTP reply to that command. The message part runs in
//! [`Shard::filter_and_accept`] through [`LiveFilters::message`], in the
//! order of `[[filter.milter]]` with the data-stage ones.
//!
//! Owns: what each live step's answer means for the client, `on_error`
//! for live milters, and the log line and counter of each decision other
//! than "continue". It must not speak the protocol (`proto::milter::live`)
//! or touch sockets (`net::milter`).

use super::Shard;
use crate::config::{MilterAddr, MilterStage, OnError};
use crate::net::milter::{Answer, LiveConn, MilterError};
use crate::proto::milter::{live, Conversation, Live, StepReply, Verdict};
use crate::proto::smtp::{FilterRefusal, FilterStep, ReversePath};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

/// A live milter's connection.
enum Link {
    /// Boxed: the socket and its buffers are large next to the other states.
    Open(Box<LiveConn>),
    /// It accepted the connection: not asked again in this session.
    Accepted,
    /// It failed; its `on_error` decides every later step.
    Failed,
}

/// A live milter's word on the transaction under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Txn {
    Filtering,
    /// It accepted the message at MAIL or RCPT: not asked again.
    Accepted,
    /// It asked for the message to be thrown away (at end of data).
    Discard,
}

struct LiveMilter {
    /// Its place in `[[filter.milter]]`.
    index: usize,
    address: String,
    on_error: OnError,
    link: Link,
    txn: Txn,
}

/// The live milters of one SMTP session (none when the client is not
/// filtered or none is configured).
pub struct LiveFilters {
    core: usize,
    client: IpAddr,
    /// Authenticated senders are filtered only with `filter.outbound`.
    outbound: bool,
    milters: Vec<LiveMilter>,
}

/// One live step, for the log and for [`LiveFilters::ask`].
enum Step<'a> {
    Connect(&'a Conversation),
    Helo(&'a str),
    Mail { sender: &'a str, auth: Option<&'a str> },
    Rcpt(&'a str),
}

impl Step<'_> {
    fn name(&self) -> &'static str {
        match self {
            Step::Connect(_) => "connect",
            Step::Helo(_) => "helo",
            Step::Mail { .. } => "mail",
            Step::Rcpt(_) => "rcpt",
        }
    }

    fn ask(&self, live: &mut Live) -> Option<StepReply> {
        match self {
            Step::Connect(c) => live.connect(c),
            Step::Helo(h) => live.helo(h),
            Step::Mail { sender, auth } => live.mail(sender, *auth),
            Step::Rcpt(r) => live.rcpt(r),
        }
    }
}

impl LiveFilters {
    /// No live milters: for mail that did not come through an SMTP session
    /// (the HTTP injection API), which only `stage = "data"` milters see.
    pub fn none(shard: &Shard, client: IpAddr) -> LiveFilters {
        LiveFilters { core: shard.id, client, outbound: shard.config().filter.outbound, milters: Vec::new() }
    }

    /// Open the live milters for a client at `peer` and tell them it
    /// connected; `filtered` is false for our own clients
    /// (`permit_relay_from`) unless `filter.outbound`. A refusal is the
    /// session's only reply.
    pub async fn start(shard: &Rc<Shard>, peer: SocketAddr, filtered: bool) -> (LiveFilters, Option<FilterRefusal>) {
        let config = shard.config();
        // An IPv4 client on a dual-stack socket is shown as IPv4.
        let ip = match peer.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer.ip(), IpAddr::V4),
            v4 => v4,
        };
        let mut filters =
            LiveFilters { core: shard.id, client: ip, outbound: config.filter.outbound, milters: Vec::new() };
        if !filtered {
            return (filters, None);
        }
        for (index, m) in config.filter.milter.iter().enumerate() {
            if m.stage != MilterStage::Connect {
                continue;
            }
            let link = match MilterAddr::parse(&m.address) {
                Ok(addr) => match LiveConn::open(&addr, m.timeout.get()).await {
                    Ok(conn) => Link::Open(Box::new(conn)),
                    Err(e) => {
                        log_failure(shard, ip, &m.address, m.on_error, "connect", &e);
                        Link::Failed
                    }
                },
                // check-config refuses such an entry.
                Err(why) => {
                    let e = MilterError::Connect(std::io::Error::other(why));
                    log_failure(shard, ip, &m.address, m.on_error, "connect", &e);
                    Link::Failed
                }
            };
            filters.milters.push(LiveMilter {
                index,
                address: m.address.clone(),
                on_error: m.on_error,
                link,
                txn: Txn::Filtering,
            });
        }
        if filters.milters.is_empty() {
            return (filters, None);
        }
        let conv = live::client(&config.hostname, ip, peer.port());
        let refusal = filters.ask(shard, Step::Connect(&conv)).await;
        (filters, refusal)
    }

    /// Whether any milter follows this session live.
    pub fn is_empty(&self) -> bool {
        self.milters.is_empty()
    }

    /// The session accepted the command `step` (see
    /// [`crate::proto::smtp::Action::Filter`]); `Some` refuses it.
    pub async fn command(&mut self, shard: &Rc<Shard>, step: &FilterStep, auth: Option<&str>) -> Option<FilterRefusal> {
        match step {
            FilterStep::Helo(helo) => self.helo(shard, helo).await,
            FilterStep::Mail(sender) => {
                let sender = match sender {
                    ReversePath::Null => String::new(),
                    ReversePath::Mailbox(a) => a.to_string(),
                };
                self.mail(shard, &sender, auth).await
            }
            FilterStep::Rcpt(rcpt) => self.rcpt(shard, &rcpt.to_string()).await,
        }
    }

    /// HELO/EHLO `helo` was accepted by the session; `Some` refuses it.
    pub async fn helo(&mut self, shard: &Rc<Shard>, helo: &str) -> Option<FilterRefusal> {
        self.ask(shard, Step::Helo(helo)).await
    }

    /// MAIL from `sender` (empty for `<>`) was accepted by the session;
    /// `Some` refuses it. A new transaction starts for every milter.
    pub async fn mail(&mut self, shard: &Rc<Shard>, sender: &str, auth: Option<&str>) -> Option<FilterRefusal> {
        for m in &mut self.milters {
            m.txn = Txn::Filtering;
        }
        if auth.is_some() && !self.outbound {
            // Our own user's mail: the milters hear nothing of it (the
            // next MAIL's ABORT tidies up).
            for m in &mut self.milters {
                m.txn = Txn::Accepted;
            }
            return None;
        }
        self.ask(shard, Step::Mail { sender, auth }).await
    }

    /// RCPT `rcpt` was accepted by the session; `Some` refuses it.
    pub async fn rcpt(&mut self, shard: &Rc<Shard>, rcpt: &str) -> Option<FilterRefusal> {
        self.ask(shard, Step::Rcpt(rcpt)).await
    }

    /// The message part for the milter at `index` of `[[filter.milter]]`:
    /// `None` when it is not asked (not live, accepted the connection or
    /// the message, failed under `on_error = "accept"`); a discard decided
    /// at MAIL or RCPT is its verdict now.
    pub async fn message(
        &mut self,
        index: usize,
        conv: &Conversation,
        max_body: usize,
    ) -> Option<Result<Answer, MilterError>> {
        let m = self.milters.iter_mut().find(|m| m.index == index)?;
        match (m.txn, &mut m.link) {
            (Txn::Accepted, _) | (_, Link::Accepted) => None,
            (Txn::Discard, _) => Some(Ok(Answer { verdict: Verdict::Discard, leading_space: false })),
            (Txn::Filtering, Link::Failed) => match m.on_error {
                OnError::Accept => None,
                OnError::Tempfail => Some(Err(MilterError::Timeout("an earlier step"))),
            },
            (Txn::Filtering, Link::Open(conn)) => {
                let result = conn.message(conv, max_body).await;
                if result.is_err() {
                    // The caller logs it under on_error; the connection
                    // is out of step now.
                    if let Link::Open(conn) = std::mem::replace(&mut m.link, Link::Failed) {
                        conn.close().await;
                    }
                }
                Some(result)
            }
        }
    }

    /// The session is over: QUIT to every open milter.
    pub async fn close(self) {
        for m in self.milters {
            if let Link::Open(conn) = m.link {
                conn.close().await;
            }
        }
    }

    /// Ask every live milter in order; the first refusal is the reply.
    async fn ask(&mut self, shard: &Rc<Shard>, step: Step<'_>) -> Option<FilterRefusal> {
        let (core, client) = (self.core, self.client);
        for m in &mut self.milters {
            if m.txn != Txn::Filtering && !matches!(step, Step::Connect(_) | Step::Helo(_)) {
                continue;
            }
            let name = format!("milter:{}", m.address);
            let reply = match &mut m.link {
                Link::Accepted => continue,
                Link::Failed => match m.on_error {
                    OnError::Accept => continue,
                    OnError::Tempfail => return Some(FilterRefusal::Unavailable),
                },
                Link::Open(conn) => conn.step(|live| step.ask(live)).await,
            };
            let reply = match reply {
                Ok(reply) => reply,
                Err(e) => {
                    if let Link::Open(conn) = std::mem::replace(&mut m.link, Link::Failed) {
                        conn.close().await;
                    }
                    log_failure(shard, client, &m.address, m.on_error, step.name(), &e);
                    match m.on_error {
                        OnError::Accept => continue,
                        OnError::Tempfail => return Some(FilterRefusal::Unavailable),
                    }
                }
            };
            let (action, refusal) = match reply {
                StepReply::Continue => continue,
                StepReply::Accept => {
                    match step {
                        Step::Connect(_) | Step::Helo(_) => {
                            if let Link::Open(conn) = std::mem::replace(&mut m.link, Link::Accepted) {
                                conn.close().await;
                            }
                        }
                        _ => m.txn = Txn::Accepted,
                    }
                    ("accept", None)
                }
                StepReply::Discard => {
                    m.txn = Txn::Discard;
                    ("discard", None)
                }
                StepReply::Reject => ("reject", Some(FilterRefusal::Rejected)),
                StepReply::Tempfail => ("tempfail", Some(FilterRefusal::TempFailed)),
                StepReply::ReplyCode { code, text } => {
                    let action = if code >= 500 { "reject" } else { "tempfail" };
                    (action, Some(FilterRefusal::Reply { code, text }))
                }
            };
            shard.metrics.filter_action(&name, action);
            let reply = match &refusal {
                Some(FilterRefusal::Reply { code, text }) => format!("{code} {text}"),
                _ => String::new(),
            };
            let what = match &step {
                Step::Connect(_) => String::new(),
                Step::Helo(h) => h.to_string(),
                Step::Mail { sender, .. } => format!("<{sender}>"),
                Step::Rcpt(r) => format!("<{r}>"),
            };
            tracing::info!(core, client = %client, milter = %m.address, step = %step.name(), arg = %what, action = %action, reply = %reply, "milter decision");
            if refusal.is_some() {
                return refusal;
            }
        }
        None
    }
}

/// The log line and counter of a live milter that failed at `step`.
fn log_failure(shard: &Shard, client: IpAddr, address: &str, on_error: OnError, step: &'static str, e: &MilterError) {
    shard.metrics.filter_action(&format!("milter:{address}"), "error");
    let on_error = match on_error {
        OnError::Tempfail => "tempfail",
        OnError::Accept => "accept",
    };
    tracing::warn!(core = shard.id, client = %client, milter = %address, step = %step, action = %"error", on_error = %on_error, error = %e, "milter failed");
}
