//! One session's screening: the DNS findings once they are in, the
//! decision for each recipient, the log lines and counters of those
//! decisions, and the header lines for the message.
//!
//! Synchronous: the findings are handed in by the driver, which awaits
//! the lookups before it feeds the first MAIL or RCPT.

use super::greylist::{triplet, Greylisting};
use super::lookup::{Findings, Iprev, ListOutcome, ListResult};
use super::{helo, Shared};
use crate::config::{CheckAction, Config, ListAction};
use crate::metrics::CoreMetrics;
use crate::proto::smtp::{ReversePath, ScreenDecision, ScreenRequest};
use std::cell::{Cell, RefCell};
use std::net::IpAddr;

/// The screening state of one session (only for clients that are
/// screened: unauthenticated, outside `permit_relay_from`, on port 25).
#[derive(Debug)]
pub struct Session {
    core: usize,
    client: IpAddr,
    /// The lookups' results, once the driver has them.
    findings: RefCell<Option<Findings>>,
    /// The per-session decisions (lists, rDNS, HELO) were logged.
    logged: Cell<bool>,
    /// A HELO problem let through under `helo_checks = "tag"`.
    helo_tag: Cell<Option<&'static str>>,
}

/// The entries of `results` whose lists have the client, as
/// "list=answer" texts, and their total weight.
fn listed(results: &[ListResult]) -> (Vec<String>, i32) {
    let hits: Vec<&ListResult> = results.iter().filter(|r| matches!(r.outcome, ListOutcome::Listed(_))).collect();
    let text = hits
        .iter()
        .map(|r| match r.outcome {
            ListOutcome::Listed(a) => format!("{}={a}", r.site.domain),
            _ => r.site.domain.clone(),
        })
        .collect();
    (text, hits.iter().map(|r| r.site.weight).sum())
}

impl Session {
    pub fn new(core: usize, client: IpAddr) -> Session {
        Session { core, client, findings: RefCell::new(None), logged: Cell::new(false), helo_tag: Cell::new(None) }
    }

    /// The lookups are done.
    pub fn set_findings(&self, findings: Findings) {
        *self.findings.borrow_mut() = Some(findings);
    }

    /// The decision for one accepted recipient (see
    /// [`crate::proto::smtp::RecipientPolicy::screen`]). Logs and counts
    /// the session's decisions the first time, greylisting every time.
    pub fn decide(
        &self,
        config: &Config,
        shared: &Shared,
        metrics: &CoreMetrics,
        req: &ScreenRequest<'_>,
        now_ms: u64,
    ) -> ScreenDecision {
        if req.auth.is_some() {
            return ScreenDecision::Pass;
        }
        let f = &config.filter;
        let first = !self.logged.replace(true);
        let (core, client) = (self.core, self.client);
        let log = |filter: &'static str, action: &'static str, detail: &str| {
            if first {
                metrics.filter_action(filter, action);
                tracing::info!(core, client = %client, filter = %filter, action = %action, detail = %detail, "client screening");
            }
        };
        let findings = self.findings.borrow();
        if let Some(found) = findings.as_ref() {
            let (wl, wl_score) = listed(&found.dnswl);
            if !found.dnswl.is_empty() && wl_score >= 1 {
                log("dnswl", "pass", &wl.join(" "));
                return ScreenDecision::Pass;
            }
            let (bl, score) = listed(&found.dnsbl);
            if !found.dnsbl.is_empty() {
                let over = score >= f.dnsbl_threshold;
                let action = match (over, f.dnsbl_action) {
                    (false, _) => "pass",
                    (true, ListAction::Reject) => "reject",
                    (true, ListAction::Tag) => "tag",
                };
                log("dnsbl", action, &format!("score={score}/{} {}", f.dnsbl_threshold, bl.join(" ")));
                if over && f.dnsbl_action == ListAction::Reject {
                    let lists: Vec<&str> = found
                        .dnsbl
                        .iter()
                        .filter(|r| matches!(r.outcome, ListOutcome::Listed(_)))
                        .map(|r| r.site.domain.as_str())
                        .collect();
                    return ScreenDecision::Blocklisted { client: client.to_string(), lists: lists.join(", ") };
                }
            }
            let reject = f.reverse_dns == CheckAction::Reject;
            match &found.iprev {
                Iprev::NotChecked => {}
                Iprev::Pass { name } => log("rdns", "pass", name),
                Iprev::Fail { reason } if reject => {
                    log("rdns", "reject", reason);
                    return ScreenDecision::ReverseDnsFailed { client: client.to_string() };
                }
                Iprev::TempError if reject => {
                    log("rdns", "defer", "temporary DNS failure");
                    return ScreenDecision::ReverseDnsUnavailable { client: client.to_string() };
                }
                Iprev::Fail { reason } => log("rdns", "tag", reason),
                Iprev::TempError => log("rdns", "tag", "temporary DNS failure"),
            }
        }
        drop(findings);
        if f.helo_checks != CheckAction::Ignore {
            let addrs: Vec<IpAddr> =
                config.listen.smtp.iter().map(|a| a.ip()).filter(|ip| !ip.is_unspecified()).collect();
            let ours = helo::Ours {
                hostname: &config.hostname,
                addrs: &addrs,
                is_local_domain: &|d| config.is_local_domain(d),
            };
            match helo::problem(req.helo, &ours) {
                None => log("helo", "pass", ""),
                Some(why) if f.helo_checks == CheckAction::Reject => {
                    log("helo", "reject", why);
                    return ScreenDecision::HeloRejected { why };
                }
                Some(why) => {
                    log("helo", "tag", why);
                    self.helo_tag.set(Some(why));
                }
            }
        }
        if f.greylist {
            return self.greylist(config, shared, metrics, req, now_ms);
        }
        ScreenDecision::Pass
    }

    fn greylist(
        &self,
        config: &Config,
        shared: &Shared,
        metrics: &CoreMetrics,
        req: &ScreenRequest<'_>,
        now_ms: u64,
    ) -> ScreenDecision {
        let Some(store) = shared.greylist.as_ref() else {
            // Turned on by a reload: the file is opened at start only.
            if !shared.greylist_warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!("filter.greylist was turned on by a reload: greylisting starts after a restart");
            }
            return ScreenDecision::Pass;
        };
        let sender = match req.sender {
            ReversePath::Null => String::new(),
            ReversePath::Mailbox(a) => a.to_string(),
        };
        let key = triplet(self.client, &sender, &req.rcpt.to_string());
        let delay = duration_ms(config.filter.greylist_delay.get());
        let expiry = duration_ms(config.filter.greylist_expiry.get());
        let (core, client, to) = (self.core, self.client, req.rcpt.to_string());
        let from = if sender.is_empty() { "<>" } else { sender.as_str() };
        match store.decide(&key, now_ms, delay, expiry) {
            Greylisting::Pass { first } => {
                metrics.filter_action("greylist", "pass");
                tracing::info!(core, client = %client, filter = %"greylist", action = %"pass", from = %from, to = %to, detail = %if first { "retried after the delay: whitelisted" } else { "whitelisted" }, "client screening");
                ScreenDecision::Pass
            }
            Greylisting::Defer { seconds, new } => {
                metrics.filter_action("greylist", "defer");
                tracing::info!(core, client = %client, filter = %"greylist", action = %"defer", from = %from, to = %to, detail = %if new { "new triplet" } else { "retried too soon" }, seconds, "client screening");
                ScreenDecision::Greylisted { seconds }
            }
        }
    }

    /// The header lines for a message of this session, on top of the
    /// sender checks' `auth_results` (if any). Everything joins that one
    /// Authentication-Results field (or starts one): `iprev` (RFC 8601
    /// §2.7.3) and `dnswl` (RFC 8904) as results; the DNS blocklist and
    /// HELO findings, which no registered method covers, as a comment at
    /// its end (RFC 8601 §2.2 allows comments anywhere, and a reader that
    /// meets an unregistered method should ignore the whole field, so they
    /// are not written as results). Those two findings also go into one
    /// `X-Ringmail-Filter:` line, a stable token for users' filter rules.
    pub fn headers(&self, hostname: &str, auth_results: Option<String>) -> Option<String> {
        let findings = self.findings.borrow();
        let mut results: Vec<String> = Vec::new();
        // Findings with no registered method: a comment in the field.
        let mut comments: Vec<String> = Vec::new();
        let mut allowlisted = None;
        if let Some(found) = findings.as_ref() {
            let ip = self.client;
            results.extend(match &found.iprev {
                Iprev::NotChecked => None,
                Iprev::Pass { name } => Some(format!("iprev=pass policy.iprev={ip} ({name})")),
                Iprev::Fail { reason } => Some(format!("iprev=fail policy.iprev={ip} ({reason})")),
                Iprev::TempError => Some(format!("iprev=temperror policy.iprev={ip}")),
            });
            results.extend(found.dnswl.iter().filter_map(dnswl_result));
            let (wl, wl_score) = listed(&found.dnswl);
            if wl_score >= 1 {
                allowlisted = Some(format!("dnswl=pass ({})", wl.join(", ")));
            }
            let (bl, score) = listed(&found.dnsbl);
            if !bl.is_empty() {
                comments.push(format!("dnsbl=listed score={score} ({})", bl.join(", ")));
            }
        }
        if let Some(why) = self.helo_tag.get() {
            comments.push(format!("helo=fail ({why})"));
        }
        let mut ar = auth_results;
        for part in &results {
            ar = Some(join_results(ar.as_deref(), hostname, part));
        }
        if !comments.is_empty() {
            ar = Some(with_comment(ar.as_deref(), hostname, &comments.join("; ")));
        }
        let notes: Vec<String> = allowlisted.into_iter().chain(comments).collect();
        let extra = if notes.is_empty() {
            String::new()
        } else {
            format!("X-Ringmail-Filter: {hostname}; {}\r\n", notes.join("; "))
        };
        match (ar, extra.is_empty()) {
            (None, true) => None,
            (ar, _) => Some(format!("{}{extra}", ar.unwrap_or_default())),
        }
    }
}

/// The RFC 8904 result for one DNS allowlist's answer: `pass` with the
/// list's zone and the address it answered, `temperror` when it did not
/// answer; nothing for "not listed" (or a list refused or disabled).
fn dnswl_result(r: &ListResult) -> Option<String> {
    let zone = &r.site.domain;
    match r.outcome {
        ListOutcome::Listed(a) => Some(format!("dnswl=pass dns.zone={zone} policy.ip={a}")),
        ListOutcome::Failed => Some(format!("dnswl=temperror dns.zone={zone}")),
        ListOutcome::NotListed | ListOutcome::Refused(_) | ListOutcome::Disabled => None,
    }
}

/// End an Authentication-Results field (or a new `none` one) with the
/// comment `text` (RFC 8601: CFWS before the CRLF); parentheses and
/// backslashes in it are quoted.
fn with_comment(existing: Option<&str>, hostname: &str, text: &str) -> String {
    let mut quoted = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '(' | ')' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    let field = existing.map_or_else(
        || format!("Authentication-Results: {hostname}; none"),
        |f| f.strip_suffix("\r\n").unwrap_or(f).to_string(),
    );
    format!("{field}\r\n\t({quoted})\r\n")
}

/// Add `part` to an Authentication-Results field (with its CRLF), or make
/// one; "none" gives way to the result.
pub fn join_results(existing: Option<&str>, hostname: &str, part: &str) -> String {
    match existing {
        None => format!("Authentication-Results: {hostname};\r\n\t{part}\r\n"),
        Some(field) => {
            let body = field.strip_suffix("\r\n").unwrap_or(field);
            let body = body.strip_suffix("; none").unwrap_or(body);
            format!("{body};\r\n\t{part}\r\n")
        }
    }
}

fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iprev_joins_the_one_authentication_results_field() {
        assert_eq!(
            join_results(None, "mx.test", "iprev=pass policy.iprev=192.0.2.1"),
            "Authentication-Results: mx.test;\r\n\tiprev=pass policy.iprev=192.0.2.1\r\n"
        );
        assert_eq!(
            join_results(
                Some("Authentication-Results: mx.test; none\r\n"),
                "mx.test",
                "iprev=fail policy.iprev=192.0.2.1"
            ),
            "Authentication-Results: mx.test;\r\n\tiprev=fail policy.iprev=192.0.2.1\r\n"
        );
        assert_eq!(
            join_results(Some("Authentication-Results: mx.test;\r\n\tspf=pass\r\n"), "mx.test", "iprev=temperror"),
            "Authentication-Results: mx.test;\r\n\tspf=pass;\r\n\tiprev=temperror\r\n"
        );
    }

    #[test]
    fn unregistered_findings_end_the_field_as_a_quoted_comment() {
        assert_eq!(
            with_comment(None, "mx.test", "helo=fail (bare IP)"),
            "Authentication-Results: mx.test; none\r\n\t(helo=fail \\(bare IP\\))\r\n"
        );
        assert_eq!(
            with_comment(Some("Authentication-Results: mx.test;\r\n\tspf=pass\r\n"), "mx.test", "dnsbl=listed"),
            "Authentication-Results: mx.test;\r\n\tspf=pass\r\n\t(dnsbl=listed)\r\n"
        );
    }
}
