//! The inbound checks — SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489)
//! and ARC (RFC 8617) — run by mail-auth on one thread of their own.
//!
//! Why a thread: mail-auth's DNS is hickory's resolver on tokio, with no
//! resolver trait to plug ringmail's own in, and SPF's recursive lookups
//! cannot be pre-filled into its caches. So the checks run where tokio
//! belongs: a dedicated thread with a current-thread runtime, its resolver
//! pointed at `relay.dns_server` (never the system resolver behind our
//! back). Cores hand it jobs over a bounded channel and await the verdict
//! on a oneshot, so a check never blocks an executor and no second runtime
//! runs on an executor thread. The thread is nearly idle: the checks wait
//! on DNS, and the signature checks are microseconds of aws-lc-rs.
//!
//! Every check is bounded by `verify.timeout`: what is not answered by then
//! is `temperror` (RFC 8601), never a stall of the SMTP session. A full
//! queue (a flood faster than DNS answers) gives temperror at once too.

use mail_auth::dmarc::Policy;
use mail_auth::AuthenticationResults;
use mail_auth::{
    AuthenticatedMessage, DkimOutput, DkimResult, DmarcOutput, DmarcResult, MessageAuthenticator, SpfOutput, SpfResult,
};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Jobs waiting for the thread; beyond this a message gets temperror at
/// once rather than a queue that grows without bound.
const QUEUE: usize = 4096;

/// Which checks to run, and for how long at most.
#[derive(Debug, Clone, Copy)]
pub struct Checks {
    pub spf: bool,
    pub dkim: bool,
    pub dmarc: bool,
    pub arc: bool,
    /// Answer `reject` for a DMARC fail under `p=reject`.
    pub enforce: bool,
    pub timeout: Duration,
}

impl Checks {
    pub fn from_config(v: &crate::config::Verify) -> Checks {
        Checks {
            spf: v.spf,
            dkim: v.dkim,
            dmarc: v.dmarc,
            arc: v.arc,
            enforce: v.dmarc_policy == crate::config::DmarcPolicy::Enforce,
            timeout: v.timeout.get(),
        }
    }
}

/// One message to check.
pub struct Job {
    pub client: IpAddr,
    pub helo: String,
    /// The MAIL FROM address; empty for the null sender.
    pub mail_from: String,
    /// Our hostname: the authserv-id, and SPF's `%{r}`.
    pub hostname: String,
    /// The message as received (shared, so a timed-out job cannot take
    /// the session's copy with it).
    pub message: Arc<Vec<u8>>,
    pub checks: Checks,
}

/// What the checks found.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The `Authentication-Results:` field, with its CRLF.
    pub header: String,
    /// `Some(text)` when the message must be refused (550 5.7.1).
    pub reject: Option<String>,
    /// One word per check for the log: `spf=pass dkim=fail dmarc=fail`.
    pub summary: String,
}

/// The handle cores use; cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    jobs: tokio::sync::mpsc::Sender<(Job, futures_channel::oneshot::Sender<Verdict>)>,
}

impl Verifier {
    /// Start the thread, resolving through `dns` only.
    pub fn start(dns: SocketAddr) -> std::io::Result<Verifier> {
        let (jobs, mut rx) = tokio::sync::mpsc::channel::<(Job, futures_channel::oneshot::Sender<Verdict>)>(QUEUE);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::Builder::new().name("ringmail-verify".into()).spawn(move || {
            runtime.block_on(async move {
                let auth = authenticator(dns);
                while let Some((job, reply)) = rx.recv().await {
                    let auth = auth.clone();
                    tokio::spawn(async move {
                        let verdict = evaluate(auth.as_ref(), &job).await;
                        let _ = reply.send(verdict);
                    });
                }
            })
        })?;
        Ok(Verifier { jobs })
    }

    /// Check a message; never waits past its timeout (plus a second of
    /// grace for the thread to answer).
    pub async fn check(&self, job: Job) -> Verdict {
        let fallback = temperror_verdict(&job);
        let wait = job.checks.timeout + Duration::from_secs(1);
        let (tx, rx) = futures_channel::oneshot::channel();
        if self.jobs.try_send((job, tx)).is_err() {
            return fallback;
        }
        let answer = futures_lite::future::or(async { rx.await.ok() }, async {
            glommio::timer::sleep(wait).await;
            None
        })
        .await;
        answer.unwrap_or(fallback)
    }
}

/// The resolver: `dns` over UDP (TCP on truncation), no hosts file; a
/// lookup that the server does not answer is retried once. `None` when
/// hickory cannot be set up (every check is then temperror).
fn authenticator(dns: SocketAddr) -> Option<MessageAuthenticator> {
    use mail_auth::hickory_resolver::config::{
        ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
    };
    let mut udp = ConnectionConfig::udp();
    udp.port = dns.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = dns.port();
    let server = NameServerConfig::new(dns.ip(), true, vec![udp, tcp]);
    let config = ResolverConfig::from_parts(None, vec![], vec![server]);
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.cache_size = 4096;
    match MessageAuthenticator::new(config, opts) {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::error!(error = %e, "sender authentication: cannot set up the resolver; every check will be temperror");
            None
        }
    }
}

fn temperror() -> mail_auth::Error {
    mail_auth::Error::Dns(mail_auth::DnsError::Resolver("timed out".into()))
}

/// Every enabled check as temperror: the answer when the thread cannot.
fn temperror_verdict(job: &Job) -> Verdict {
    let c = job.checks;
    let mut parts = Vec::new();
    for (on, name) in [(c.spf, "spf"), (c.dkim, "dkim"), (c.dmarc, "dmarc"), (c.arc, "arc")] {
        if on {
            parts.push(format!("{name}=temperror"));
        }
    }
    let header = if parts.is_empty() {
        format!("Authentication-Results: {}; none\r\n", job.hostname)
    } else {
        format!("Authentication-Results: {};\r\n\t{}\r\n", job.hostname, parts.join(";\r\n\t"))
    };
    Verdict { header, reject: None, summary: parts.join(" ") }
}

/// Run the enabled checks of `job` within its timeout.
async fn evaluate(auth: Option<&MessageAuthenticator>, job: &Job) -> Verdict {
    let Some(auth) = auth else { return temperror_verdict(job) };
    let c = job.checks;
    let deadline = tokio::time::Instant::now() + c.timeout;
    let helo = job.helo.trim();
    let mail_from_domain = job.mail_from.rsplit_once('@').map_or(helo, |(_, d)| d);
    let message = AuthenticatedMessage::parse(&job.message);

    // SPF of MAIL FROM, or of the HELO name for the null sender (RFC 7208 §2.4).
    let spf = async {
        if !c.spf {
            return None;
        }
        let params = if job.mail_from.is_empty() {
            mail_auth::spf::verify::SpfParameters::verify_ehlo(job.client, helo, &job.hostname)
        } else {
            mail_auth::spf::verify::SpfParameters::verify_mail_from(job.client, helo, &job.hostname, &job.mail_from)
        };
        let out = tokio::time::timeout_at(deadline, auth.verify_spf(mail_auth::Parameters::new(params))).await;
        Some(out.unwrap_or_else(|_| SpfOutput::new(mail_from_domain.to_string()).with_result(SpfResult::TempError)))
    };
    let dkim = async {
        let m = message.as_ref()?;
        if !(c.dkim || c.dmarc) {
            return None;
        }
        let out = tokio::time::timeout_at(deadline, auth.verify_dkim(mail_auth::Parameters::new(m))).await;
        Some(out.unwrap_or_else(|_| vec![DkimOutput::temp_err(temperror())]))
    };
    let arc = async {
        let m = message.as_ref()?;
        if !c.arc {
            return None;
        }
        let out = tokio::time::timeout_at(deadline, auth.verify_arc(mail_auth::Parameters::new(m))).await;
        Some(out.unwrap_or_else(|_| mail_auth::ArcOutput::default().with_result(DkimResult::TempError(temperror()))))
    };
    let (spf, dkim, arc) = tokio::join!(spf, dkim, arc);

    let dmarc = match (&message, c.dmarc) {
        (Some(m), true) => {
            let none_spf;
            let spf_for_dmarc = match &spf {
                Some(s) => s,
                None => {
                    none_spf = SpfOutput::new(mail_from_domain.to_string()).with_result(SpfResult::None);
                    &none_spf
                }
            };
            let dkim_for_dmarc = dkim.as_deref().unwrap_or(&[]);
            let params =
                mail_auth::dmarc::verify::DmarcParameters::new(m, dkim_for_dmarc, mail_from_domain, spf_for_dmarc);
            let out = tokio::time::timeout_at(deadline, auth.verify_dmarc(mail_auth::Parameters::new(params))).await;
            Some(out.unwrap_or_else(|_| {
                DmarcOutput::new(String::new())
                    .with_spf_result(DmarcResult::TempError(temperror()))
                    .with_dkim_result(DmarcResult::TempError(temperror()))
            }))
        }
        (None, true) => {
            Some(DmarcOutput::new(String::new()).with_spf_result(DmarcResult::PermError(mail_auth::Error::ParseError)))
        }
        _ => None,
    };

    let mut header = format!("Authentication-Results: {}", job.hostname);
    let mut summary = Vec::new();
    // mail-auth writes the SPF part (with its explanation comment); the rest
    // is ours, to say the results the way RFC 8601 and our contract do.
    let host = job.hostname.as_str();
    let part = |f: &dyn Fn(AuthenticationResults<'_>) -> AuthenticationResults<'_>| {
        let text = f(AuthenticationResults::new(host)).to_string();
        text.get(host.len()..).unwrap_or_default().to_string()
    };
    if let Some(spf) = &spf {
        header.push_str(&part(&|a| a.with_spf_mailfrom_result(spf, job.client, &job.mail_from, helo)));
        summary.push(format!("spf={}", spf_word(spf.result())));
    }
    if c.dkim {
        // The log keeps the last signature's word, as the header lists them.
        let last = match dkim.as_deref() {
            Some(results) if !results.is_empty() => results.iter().map(|r| dkim_part(&mut header, r)).last(),
            Some(_) => {
                header.push_str(";\r\n\tdkim=none");
                None
            }
            None => {
                header.push_str(";\r\n\tdkim=permerror (message not parsable)");
                Some("permerror")
            }
        };
        summary.push(format!("dkim={}", last.unwrap_or("none")));
    }
    let mut reject = None;
    if let Some(dmarc) = &dmarc {
        let result = dmarc_result(dmarc);
        header.push_str(&format!(";\r\n\tdmarc={result}"));
        if !dmarc.domain().is_empty() {
            header.push_str(&format!(" header.from={}", pvalue(dmarc.domain())));
        }
        if dmarc.dmarc_record().is_some() {
            header.push_str(match dmarc.policy() {
                Policy::Reject => " policy.dmarc=reject",
                Policy::Quarantine => " policy.dmarc=quarantine",
                Policy::None | Policy::Unspecified => " policy.dmarc=none",
            });
        }
        summary.push(format!("dmarc={result}"));
        if c.enforce && result == "fail" && dmarc.policy() == Policy::Reject {
            reject =
                Some(format!("message refused: it fails the DMARC policy of {} (p=reject)", pvalue(dmarc.domain())));
        }
    }
    if let Some(arc) = &arc {
        header.push_str(";\r\n\tarc=");
        let result = result_and_reason(&mut header, arc.result());
        header.push_str(&format!(" smtp.remote-ip={}", job.client));
        summary.push(format!("arc={result}"));
    }
    if summary.is_empty() {
        header.push_str("; none");
    }
    header.push_str("\r\n");
    Verdict { header, reject, summary: summary.join(" ") }
}

/// One signature's result: `dkim=RESULT header.d=D header.s=S header.b=B`
/// (RFC 8601 §2.7.1; `header.b` is the first 8 characters of `b=`, to tell
/// two signatures of one domain apart).
fn dkim_part(header: &mut String, r: &DkimOutput) -> &'static str {
    header.push_str(";\r\n\tdkim=");
    let result = result_and_reason(header, r.result());
    if let Some(sig) = r.signature() {
        header.push_str(&format!(" header.d={} header.s={}", pvalue(&sig.d), pvalue(&sig.s)));
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD.encode(sig.b.get(..6).unwrap_or(&sig.b));
        header.push_str(&format!(" header.b={}", pvalue(&b)));
    }
    result
}

/// A DKIM or ARC result word and its reason as a comment (the word is
/// returned, for the log). A body hash that
/// does not match is `fail` (RFC 6376 §6.1.3: PERMFAIL, "body hash did not
/// verify"; RFC 8617 §5.2), where mail-auth says neutral.
fn result_and_reason(header: &mut String, result: &DkimResult) -> &'static str {
    let body_hash = |e: &mail_auth::Error| {
        matches!(
            e,
            mail_auth::Error::Dkim(mail_auth::dkim::DkimError::FailedBodyHashMatch)
                | mail_auth::Error::Arc(mail_auth::arc::ArcError::FailedBodyHashMatch)
        )
    };
    let (word, reason) = match result {
        DkimResult::Pass => ("pass", None),
        DkimResult::Neutral(e) if body_hash(e) => ("fail", Some(e)),
        DkimResult::Neutral(e) => ("neutral", Some(e)),
        DkimResult::Fail(e) => ("fail", Some(e)),
        DkimResult::PermError(e) => ("permerror", Some(e)),
        DkimResult::TempError(e) => ("temperror", Some(e)),
        DkimResult::None => ("none", None),
    };
    header.push_str(word);
    if let Some(e) = reason {
        header.push_str(&format!(" ({})", comment(&e.to_string())));
    }
    word
}

/// The DMARC result (RFC 7489 §11.2): with a policy record, pass when SPF
/// or DKIM passed aligned and fail otherwise; without one, none (or the
/// error that kept the record from being found).
fn dmarc_result(d: &DmarcOutput) -> &'static str {
    let (spf, dkim) = (d.spf_result(), d.dkim_result());
    let any = |f: fn(&DmarcResult) -> bool| f(spf) || f(dkim);
    if any(|r| matches!(r, DmarcResult::Pass)) {
        "pass"
    } else if any(|r| matches!(r, DmarcResult::TempError(_))) {
        "temperror"
    } else if any(|r| matches!(r, DmarcResult::PermError(_))) {
        "permerror"
    } else if d.dmarc_record().is_some() {
        "fail"
    } else {
        "none"
    }
}

/// A value as an RFC 8601 pvalue: a token stays as is, anything else is
/// quoted (and what cannot be in a quoted-string is dropped).
fn pvalue(v: &str) -> String {
    let token = !v.is_empty()
        && v.bytes().all(|b| b.is_ascii_graphic() && !b"()<>,;:\\\"/[]?=".contains(&b) || b == b'@' || b == b'.');
    if token {
        v.to_string()
    } else {
        let inner: String = v.chars().filter(|c| !c.is_control() && *c != '"' && *c != '\\').collect();
        format!("\"{inner}\"")
    }
}

/// Text for a `( … )` comment: no parentheses, backslashes or controls.
fn comment(text: &str) -> String {
    text.chars().filter(|c| !c.is_control() && !matches!(c, '(' | ')' | '\\')).take(120).collect()
}

/// SPF's result word (RFC 8601 §2.7.2), as mail-auth writes it in the
/// header.
fn spf_word(result: SpfResult) -> &'static str {
    match result {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}
