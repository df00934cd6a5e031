//! TLS reporting (RFC 8460) on a core: counting each relay session under
//! its TLS policy, writing the counts to the data dir, and the operator's
//! `tls-report show|send` (served by core 0 over the control socket).
//! The counts and the report format are [`crate::outbound::tls_rpt`]'s.

use super::admin::AdminError;
use super::{Request, Shard};
use crate::clock::now_ms;
use crate::outbound::mx::Target;
use crate::outbound::tls_policy::{Basis, TlsResult};
use crate::outbound::tls_rpt::{self, DayCounts, Failure, PolicyId, Session};
use crate::spool::{MessageExt, RecipientEntry};
use std::rc::Rc;

/// How often a core writes its counts, in ms (a crash loses at most
/// this much).
pub const FLUSH_EVERY_MS: u64 = 60_000;

/// The RFC 8460 policy a session was under.
pub fn policy_of(basis: &Basis) -> PolicyId {
    match basis {
        Basis::Entry(_) | Basis::Default(_) | Basis::Configured(_) => PolicyId::no_policy(),
        // The policy's mode and id (the MX patterns are in the cache
        // file, `data_dir/mta-sts/DOMAIN`, not in the session's basis).
        // The usable TLSA records' parameters (`dane:3 1 1`), or the one
        // that matched.
        Basis::Dane(_) => PolicyId {
            policy_type: "tlsa".into(),
            policy_string: basis.to_string().trim_start_matches("dane:").split(',').map(str::to_string).collect(),
        },
        Basis::Sts { id, mode } => PolicyId {
            policy_type: "sts".into(),
            policy_string: vec!["version: STSv1".into(), format!("mode: {mode}"), format!("id: {id}")],
        },
    }
}

impl Shard {
    /// Count one session to `target` for `domain` (a connection that got
    /// ready: `Ok(result)`; or one that failed: `Err(reason)`, counted
    /// only when the reason is a TLS one). Plain-text sessions under a
    /// policy that did not ask for TLS are neither success nor failure.
    pub(crate) fn tls_record(
        self: &Rc<Self>,
        domain: &str,
        basis: &Basis,
        target: &Target,
        source: Option<std::net::IpAddr>,
        outcome: Result<TlsResult, &str>,
    ) {
        let session = match outcome {
            Ok(TlsResult::None) => return,
            Ok(_) => Session::Success,
            Err(reason) => match tls_rpt::result_type_of(reason) {
                Some(kind) => Session::Failure(failure(kind, target, source)),
                None => return,
            },
        };
        self.tls_count(domain, basis, target, session);
    }

    /// Count a session to `target` that was never tried because its policy
    /// ruled the host out (an MX host an MTA-STS policy does not list,
    /// `dane-only` without usable TLSA records), as `result_type`.
    pub(crate) fn tls_record_refused(
        self: &Rc<Self>,
        domain: &str,
        basis: &Basis,
        target: &Target,
        source: Option<std::net::IpAddr>,
        result_type: &str,
    ) {
        self.tls_count(domain, basis, target, Session::Failure(failure(result_type, target, source)));
    }

    fn tls_count(self: &Rc<Self>, domain: &str, basis: &Basis, target: &Target, session: Session) {
        let finished =
            self.outbound.tls_report.borrow_mut().record(now_ms(), domain, &policy_of(basis), &target.host, &session);
        if let Some((day, counts)) = finished {
            self.tls_write(day, counts);
        }
    }

    /// Carry on from this core's file of today: read at boot, before
    /// any delivery counts, through the blocking pool (a file read must
    /// not stall the executor).
    pub(super) async fn tls_load(&self) {
        let day = tls_rpt::day_of(now_ms());
        let path = tls_rpt::file_of(&self.config().data_dir, day, self.id);
        let read = path.clone();
        let bytes = glommio::executor().spawn_blocking(move || std::fs::read(read).ok()).await;
        let mut r = self.outbound.tls_report.borrow_mut();
        if r.day != 0 {
            return; // something was counted already: keep it
        }
        r.day = day;
        if let Some(bytes) = bytes {
            match serde_json::from_slice::<DayCounts>(&bytes) {
                Ok(c) => r.counts = c,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "TLS report counts unreadable; starting afresh")
                }
            }
        }
    }

    /// Write `counts` of `day` in the background (off the executor thread).
    fn tls_write(self: &Rc<Self>, day: u32, counts: DayCounts) {
        let dir = self.config().data_dir.clone();
        let core = self.id;
        let busy = super::Background::new(self);
        glommio::spawn_local(async move {
            let _busy = busy;
            let written = glommio::executor()
                .spawn_blocking(move || tls_rpt::write_file(&dir, day, core, &counts).map_err(|e| e.to_string()))
                .await;
            if let Err(e) = written {
                tracing::warn!(core, error = %e, "TLS report counts not written");
            }
        })
        .detach();
    }

    /// Write today's counts now if they changed; waits for the write.
    pub(crate) async fn tls_flush(&self) {
        let (day, counts) = {
            let mut r = self.outbound.tls_report.borrow_mut();
            if !r.dirty {
                return;
            }
            r.dirty = false;
            (r.day, r.counts.clone())
        };
        let dir = self.config().data_dir.clone();
        let core = self.id;
        let written = glommio::executor()
            .spawn_blocking(move || tls_rpt::write_file(&dir, day, core, &counts).map_err(|e| e.to_string()))
            .await;
        if let Err(e) = written {
            tracing::warn!(core, error = %e, "TLS report counts not written");
        }
    }

    /// `tls-report show DOMAIN [--date D]` and `tls-report send [--date D]`
    /// (default: today for show, yesterday for send).
    pub(crate) async fn tls_report_admin(self: &Rc<Self>, args: &str) -> Result<String, AdminError> {
        let words: Vec<&str> = args.split_whitespace().collect();
        let (verb, rest) = words.split_first().ok_or_else(usage)?;
        let mut date = None;
        let mut domain = None;
        let mut i = 0;
        while i < rest.len() {
            match rest[i] {
                "--date" => {
                    let d = rest.get(i + 1).ok_or_else(usage)?;
                    date = Some(tls_rpt::parse_date(d).ok_or(AdminError::Usage("--date YYYY-MM-DD"))?);
                    i += 2;
                }
                d if domain.is_none() && !d.starts_with('-') => {
                    domain = Some(d.trim_end_matches('.').to_ascii_lowercase());
                    i += 1;
                }
                _ => return Err(usage()),
            }
        }
        let today = tls_rpt::day_of(now_ms());
        // Every core's counts on disk first.
        for core in 0..self.cores {
            let _ = self.ask(core, |answer| Request::TlsFlush { answer }).await;
        }
        let data_dir = self.config().data_dir.clone();
        match *verb {
            "show" => {
                let domain = domain.ok_or_else(usage)?;
                let day = date.unwrap_or(today);
                let counts = read_day(data_dir, day).await;
                Ok(counts.show(&domain, &tls_rpt::date_string(day)))
            }
            "send" if domain.is_none() => {
                let day = date.unwrap_or(today.saturating_sub(1));
                let counts = read_day(data_dir, day).await;
                Ok(self.send_reports(&counts, day).await)
            }
            _ => Err(usage()),
        }
    }

    /// Send the day's report of every counted domain that asks for one
    /// (`_smtp._tls` TXT with a `mailto:` rua), through the relay queue.
    async fn send_reports(self: &Rc<Self>, counts: &DayCounts, day: u32) -> String {
        let hostname = self.config().hostname.clone();
        let mut out = String::new();
        for domain in counts.domains.keys() {
            let records = match self.outbound.resolver.txt(&format!("_smtp._tls.{domain}")).await {
                Ok(crate::outbound::dns::Lookup::Found(r)) => r,
                Ok(_) => Vec::new(),
                Err(e) => {
                    out.push_str(&format!("{domain}: no report: TXT lookup failed: {e}\n"));
                    continue;
                }
            };
            let rua: Vec<String> = records.iter().filter_map(|t| tls_rpt::rua_mailto(t)).flatten().collect();
            if rua.is_empty() {
                out.push_str(&format!("{domain}: no report: no TLSRPTv1 mailto: rua\n"));
                continue;
            }
            let Some(json) = tls_rpt::report_json(counts, domain, day, &hostname) else { continue };
            for to in rua {
                match self.store_report(&json, domain, day, &to).await {
                    Ok(id) => {
                        tracing::info!(queue_id = %id, domain = %domain, to = %to, "TLS report queued");
                        out.push_str(&format!("{domain}: report queued as {id} to <{to}>\n"));
                    }
                    Err(e) => out.push_str(&format!("{domain}: report to <{to}> not stored: {e}\n")),
                }
            }
        }
        if out.is_empty() {
            out.push_str(&format!("no sessions recorded on {}\n", tls_rpt::date_string(day)));
        }
        out
    }

    /// Store one report message for `to`, from the null sender (a report
    /// that bounces must not bounce back).
    async fn store_report(
        self: &Rc<Self>,
        json: &serde_json::Value,
        domain: &str,
        day: u32,
        to: &str,
    ) -> Result<String, String> {
        let route = self.route_for(to).ok_or_else(|| format!("{to} is an unknown local user"))?;
        let hostname = self.config().hostname.clone();
        let (id, received_at) = self.new_queue_id();
        let message = tls_rpt::report_message(json, domain, day, &hostname, to, received_at.as_millis() as u64);
        let trace = format!(
            "Received: by {hostname} (ringmail) id {id}; {}\r\n",
            crate::outbound::dsn::format_date(received_at.as_millis() as u64)
        );
        let new = super::intake::NewMessage {
            queue_id: id,
            received_at,
            client: "127.0.0.1".into(),
            helo: hostname,
            sender: String::new(),
            recipients: vec![RecipientEntry::new(to.to_string(), route)],
            ext: MessageExt::default(),
            body: &[trace.as_bytes(), &message],
            body_tail: Vec::new(),
        };
        self.store_and_route(new).await.map_err(|e| e.to_string())?;
        Ok(id.to_string())
    }
}

/// RFC 8460 failure details of a session to `target` from `source`.
fn failure(result_type: &str, target: &Target, source: Option<std::net::IpAddr>) -> Failure {
    Failure {
        result_type: result_type.to_string(),
        sending_mta_ip: source.map(|ip| ip.to_string()).unwrap_or_default(),
        receiving_mx_hostname: target.host.clone(),
        receiving_ip: target.addr.socket_addr().map(|a| a.ip().to_string()).unwrap_or_default(),
    }
}

async fn read_day(data_dir: std::path::PathBuf, day: u32) -> DayCounts {
    glommio::executor().spawn_blocking(move || tls_rpt::read_day(&data_dir, day)).await
}

fn usage() -> AdminError {
    AdminError::Usage("tls-report show DOMAIN [--date YYYY-MM-DD] | tls-report send [--date YYYY-MM-DD]")
}
