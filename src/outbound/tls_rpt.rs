//! SMTP TLS reporting (RFC 8460): per recipient domain and UTC day, how
//! many sessions met their TLS policy and how many failed (by RFC 8460
//! result type), and the daily aggregate report built from that.
//!
//! Each core counts its own sessions ([`Recorder`]) and writes its counts
//! to `data_dir/tls-rpt/YYYY-MM-DD/core-N.json` (atomically, every minute
//! and at a clean stop); a restart carries on from that file, so a crash
//! loses at most a minute of counts. `ringmail tls-report show` and `send`
//! flush every core, then read and add up the day's files ([`read_day`]).
//! Sending (a report per domain that publishes `_smtp._tls` with a
//! `mailto:` rua) goes through the relay queue like any message; see
//! `shard::tls_report`.
//!
//! Pure apart from [`read_day`] and [`write_file`]: the caller passes the day.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Domains one core counts per day; sessions to further domains that day
/// are not counted (and logged once), so memory stays bounded.
pub const MAX_DOMAINS_PER_DAY: usize = 50_000;

/// Failure rows (and MX hosts) kept per policy; sessions beyond them are
/// still counted in the summary.
pub const MAX_FAILURE_ROWS: usize = 64;

/// Days since the Unix epoch (UTC) of a time in milliseconds.
pub fn day_of(ms: u64) -> u32 {
    (ms / 86_400_000) as u32
}

/// `YYYY-MM-DD` of a day number.
pub fn date_string(day: u32) -> String {
    let secs = u64::from(day) * 86_400;
    let text = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
    text.to_string()[..10].to_string()
}

/// The day number of `YYYY-MM-DD`, if it is one.
pub fn parse_date(text: &str) -> Option<u32> {
    if text.len() != 10 {
        return None;
    }
    let t = humantime::parse_rfc3339(&format!("{text}T00:00:00Z")).ok()?;
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    Some((secs / 86_400) as u32)
}

/// Which policy a session was under, as RFC 8460 §4.4 names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyId {
    /// `tlsa`, `sts` or `no-policy-found`.
    pub policy_type: String,
    /// The policy as published (TLSA records, STS policy lines); empty
    /// for `no-policy-found`.
    pub policy_string: Vec<String>,
}

impl PolicyId {
    pub fn no_policy() -> PolicyId {
        PolicyId { policy_type: "no-policy-found".into(), policy_string: Vec::new() }
    }
}

/// What one session (one connection attempt under a policy) came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Session {
    /// TLS was negotiated as the policy asks.
    Success,
    /// It failed for a TLS reason.
    Failure(Failure),
}

/// One failed session's RFC 8460 §4.4 failure details.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Failure {
    /// `starttls-not-supported`, `certificate-host-mismatch`,
    /// `certificate-expired`, `certificate-not-trusted`,
    /// `validation-failure`, `tlsa-invalid`, `dnssec-invalid`,
    /// `dane-required`, `sts-policy-fetch-error`, `sts-policy-invalid`,
    /// `sts-webpki-invalid`.
    pub result_type: String,
    pub sending_mta_ip: String,
    pub receiving_mx_hostname: String,
    pub receiving_ip: String,
}

/// The result type of a connection failure's reason, when it is a TLS
/// failure (a refused connection or a 421 greeting is not).
pub fn result_type_of(reason: &str) -> Option<&'static str> {
    let r = reason.to_ascii_lowercase();
    if r.contains("tls required but not offered") || r.contains("starttls refused") {
        Some("starttls-not-supported")
    } else if r.contains("tlsa") {
        Some("validation-failure")
    } else if r.contains("notvalidforname") || r.contains("not valid for name") {
        Some("certificate-host-mismatch")
    } else if r.contains("expired") {
        Some("certificate-expired")
    } else if r.contains("unknownissuer") || r.contains("unknown issuer") || r.contains("invalid peer certificate") {
        Some("certificate-not-trusted")
    } else if r.contains("handshake") || r.contains("certificate") || r.contains("tls") {
        Some("validation-failure")
    } else {
        None
    }
}

/// Counts for one policy of one domain on one day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyCounts {
    pub successes: u64,
    pub failures: u64,
    /// MX hosts sessions went to.
    pub mx_hosts: Vec<String>,
    /// Failed sessions by details, at most [`MAX_FAILURE_ROWS`] rows.
    pub details: Vec<(Failure, u64)>,
}

/// One day's counts: domain -> policy -> counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCounts {
    pub domains: BTreeMap<String, Vec<(PolicyId, PolicyCounts)>>,
}

impl DayCounts {
    /// Count one session to `mx_host` for `domain` under `policy`. False
    /// when the domain is new and the day already has
    /// [`MAX_DOMAINS_PER_DAY`] domains (not counted).
    pub fn record(&mut self, domain: &str, policy: &PolicyId, mx_host: &str, session: &Session) -> bool {
        if !self.domains.contains_key(domain) && self.domains.len() >= MAX_DOMAINS_PER_DAY {
            return false;
        }
        let counts = self.policy_mut(domain, policy);
        if !counts.mx_hosts.iter().any(|h| h == mx_host) && counts.mx_hosts.len() < MAX_FAILURE_ROWS {
            counts.mx_hosts.push(mx_host.to_string());
        }
        match session {
            Session::Success => counts.successes += 1,
            Session::Failure(f) => {
                counts.failures += 1;
                match counts.details.iter().position(|(d, _)| d == f) {
                    Some(i) => counts.details[i].1 += 1,
                    None if counts.details.len() < MAX_FAILURE_ROWS => counts.details.push((f.clone(), 1)),
                    None => {}
                }
            }
        }
        true
    }

    /// The counts of `policy` for `domain`, made empty when new.
    fn policy_mut(&mut self, domain: &str, policy: &PolicyId) -> &mut PolicyCounts {
        let policies = self.domains.entry(domain.to_string()).or_default();
        let i = match policies.iter().position(|(p, _)| p == policy) {
            Some(i) => i,
            None => {
                policies.push((policy.clone(), PolicyCounts::default()));
                policies.len() - 1
            }
        };
        &mut policies[i].1
    }

    /// Add `other`'s counts (another core's) to these.
    pub fn merge(&mut self, other: &DayCounts) {
        for (domain, policies) in &other.domains {
            for (policy, counts) in policies {
                let m = self.policy_mut(domain, policy);
                m.successes += counts.successes;
                m.failures += counts.failures;
                for h in &counts.mx_hosts {
                    if !m.mx_hosts.contains(h) {
                        m.mx_hosts.push(h.clone());
                    }
                }
                for (f, n) in &counts.details {
                    match m.details.iter_mut().find(|(d, _)| d == f) {
                        Some((_, k)) => *k += n,
                        None => m.details.push((f.clone(), *n)),
                    }
                }
            }
        }
    }

    /// `tls-report show DOMAIN`: one line per policy, one per failure row.
    pub fn show(&self, domain: &str, date: &str) -> String {
        let mut out = format!("tls-report {domain} {date}\n");
        let Some(policies) = self.domains.get(domain) else {
            out.push_str("no sessions recorded\n");
            return out;
        };
        for (policy, c) in policies {
            out.push_str(&format!(
                "policy {}: successful={} failed={} mx={}\n",
                policy.policy_type,
                c.successes,
                c.failures,
                c.mx_hosts.join(",")
            ));
            for (f, n) in &c.details {
                out.push_str(&format!(
                    "  failure {} count={n} mx={} receiving_ip={} sending_ip={}\n",
                    f.result_type, f.receiving_mx_hostname, f.receiving_ip, f.sending_mta_ip
                ));
            }
        }
        out
    }
}

/// The RFC 8460 §4.4 JSON report of `domain` for `day`.
pub fn report_json(counts: &DayCounts, domain: &str, day: u32, submitter: &str) -> Option<serde_json::Value> {
    let policies = counts.domains.get(domain)?;
    let date = date_string(day);
    let start = format!("{date}T00:00:00Z");
    let policies: Vec<serde_json::Value> = policies
        .iter()
        .map(|(p, c)| {
            let details: Vec<serde_json::Value> = c
                .details
                .iter()
                .map(|(f, n)| {
                    serde_json::json!({
                        "result-type": f.result_type,
                        "sending-mta-ip": f.sending_mta_ip,
                        "receiving-mx-hostname": f.receiving_mx_hostname,
                        "receiving-ip": f.receiving_ip,
                        "failed-session-count": n,
                    })
                })
                .collect();
            serde_json::json!({
                "policy": {
                    "policy-type": p.policy_type,
                    "policy-string": p.policy_string,
                    "policy-domain": domain,
                    "mx-host": c.mx_hosts,
                },
                "summary": {
                    "total-successful-session-count": c.successes,
                    "total-failure-session-count": c.failures,
                },
                "failure-details": details,
            })
        })
        .collect();
    Some(serde_json::json!({
        "organization-name": submitter,
        "date-range": { "start-datetime": start, "end-datetime": format!("{date}T23:59:59Z") },
        "contact-info": format!("postmaster@{submitter}"),
        "report-id": report_id(domain, day, submitter),
        "policies": policies,
    }))
}

fn report_id(domain: &str, day: u32, submitter: &str) -> String {
    format!("{}_{domain}@{submitter}", date_string(day))
}

/// The `mailto:` addresses of a `_smtp._tls` TXT record
/// (`v=TLSRPTv1; rua=mailto:a@b.example,https://...`), if it is one.
pub fn rua_mailto(txt: &str) -> Option<Vec<String>> {
    let mut fields = txt.split(';').map(str::trim);
    if !fields.next()?.eq_ignore_ascii_case("v=TLSRPTv1") {
        return None;
    }
    let rua = fields.find_map(|f| f.strip_prefix("rua=").or_else(|| f.strip_prefix("RUA=")))?;
    let mailto: Vec<String> = rua
        .split(',')
        .filter_map(|u| u.trim().strip_prefix("mailto:"))
        .map(|a| a.split('?').next().unwrap_or(a).to_string())
        .filter(|a| a.contains('@') && a.is_ascii() && !a.contains(['<', '>', '\r', '\n', ' ']))
        .collect();
    Some(mailto)
}

/// The report as an RFC 8460 §5.3 message to `to`: `multipart/report;
/// report-type="tlsrpt"` with the gzipped JSON as
/// `application/tlsrpt+gzip`. CRLF line ends.
pub fn report_message(
    json: &serde_json::Value,
    domain: &str,
    day: u32,
    submitter: &str,
    to: &str,
    now_ms: u64,
) -> Vec<u8> {
    use base64::Engine;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = gz.write_all(json.to_string().as_bytes());
    let gz = gz.finish().unwrap_or_default();
    let b64 = base64::engine::general_purpose::STANDARD.encode(gz);
    let id = report_id(domain, day, submitter);
    let begin = u64::from(day) * 86_400;
    let file = format!("{submitter}!{domain}!{begin}!{}.json.gz", begin + 86_399);
    let boundary = format!("tlsrpt-{day}-{now_ms}");
    let mut m = String::new();
    m.push_str(&format!("From: TLS reports <postmaster@{submitter}>\r\n"));
    m.push_str(&format!("To: <{to}>\r\n"));
    m.push_str(&format!("Subject: Report Domain: {domain} Submitter: {submitter} Report-ID: <{id}>\r\n"));
    m.push_str(&format!("Date: {}\r\n", super::dsn::format_date(now_ms)));
    m.push_str(&format!("Message-ID: <tlsrpt.{day}.{now_ms}.{domain}@{submitter}>\r\n"));
    m.push_str(&format!("TLS-Report-Domain: {domain}\r\nTLS-Report-Submitter: {submitter}\r\n"));
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str(&format!("Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n boundary=\"{boundary}\"\r\n\r\n"));
    m.push_str(&format!("--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"));
    m.push_str(&format!(
        "This is an aggregate TLS report from {submitter} for {domain}, {}.\r\n\r\n",
        date_string(day)
    ));
    m.push_str(&format!(
        "--{boundary}\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"{file}\"\r\n\r\n"
    ));
    for line in b64.as_bytes().chunks(76) {
        m.push_str(std::str::from_utf8(line).unwrap_or_default());
        m.push_str("\r\n");
    }
    m.push_str(&format!("--{boundary}--\r\n"));
    m.into_bytes()
}

/// Where core `core`'s counts of `day` live.
pub fn file_of(data_dir: &Path, day: u32, core: usize) -> PathBuf {
    data_dir.join("tls-rpt").join(date_string(day)).join(format!("core-{core}.json"))
}

/// Write `counts` as core `core`'s file of `day`, atomically.
pub fn write_file(data_dir: &Path, day: u32, core: usize, counts: &DayCounts) -> std::io::Result<()> {
    let path = file_of(data_dir, day, core);
    let bytes = serde_json::to_vec(counts).map_err(std::io::Error::other)?;
    crate::files::replace(&path, crate::files::Ownership::Keep { new_like: Some(data_dir) }, |f| f.write_all(&bytes))
}

/// Every core's counts of `day`, added up. A file that cannot be read or
/// parsed is skipped with a warning (it is a report, not mail).
pub fn read_day(data_dir: &Path, day: u32) -> DayCounts {
    let mut all = DayCounts::default();
    let dir = data_dir.join("tls-rpt").join(date_string(day));
    let Ok(entries) = std::fs::read_dir(&dir) else { return all };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<DayCounts>(&b).map_err(|e| e.to_string()))
        {
            Ok(c) => all.merge(&c),
            Err(e) => tracing::warn!(file = %path.display(), error = %e, "TLS report counts unreadable; skipped"),
        }
    }
    all
}

/// One core's counts of the current day, and when they were last written.
#[derive(Debug, Default)]
pub struct Recorder {
    pub day: u32,
    pub counts: DayCounts,
    /// Changed since the last write.
    pub dirty: bool,
    /// A session went uncounted today ([`MAX_DOMAINS_PER_DAY`]); logged once.
    pub full_logged: bool,
}

impl Recorder {
    /// Count a session at `now_ms`. When the day changed, the old day's
    /// counts come back to be written (final) and counting starts afresh.
    pub fn record(
        &mut self,
        now_ms: u64,
        domain: &str,
        policy: &PolicyId,
        mx_host: &str,
        session: &Session,
    ) -> Option<(u32, DayCounts)> {
        let today = day_of(now_ms);
        let finished = (today != self.day && !self.counts.domains.is_empty())
            .then(|| (self.day, std::mem::take(&mut self.counts)));
        if today != self.day {
            self.day = today;
            self.full_logged = false;
        }
        if self.counts.record(domain, policy, mx_host, session) {
            self.dirty = true;
        } else if !self.full_logged {
            self.full_logged = true;
            tracing::warn!(limit = MAX_DOMAINS_PER_DAY, "TLS report: too many domains today; further ones not counted");
        }
        finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(kind: &str) -> Session {
        Session::Failure(Failure {
            result_type: kind.into(),
            sending_mta_ip: "192.0.2.1".into(),
            receiving_mx_hostname: "mx.example.com".into(),
            receiving_ip: "198.51.100.7".into(),
        })
    }

    #[test]
    fn dates_round_trip_and_days_count_from_the_epoch() {
        assert_eq!(date_string(0), "1970-01-01");
        assert_eq!(parse_date("2026-12-06").map(date_string).as_deref(), Some("2026-12-06"));
        assert_eq!(day_of(86_400_000 * 3 + 5), 3);
        assert_eq!(parse_date("2026-13-06"), None);
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn sessions_are_counted_per_domain_and_policy_and_merge_across_cores() {
        let mut a = DayCounts::default();
        let none = PolicyId::no_policy();
        a.record("example.com", &none, "mx.example.com", &Session::Success);
        a.record("example.com", &none, "mx.example.com", &failure("certificate-not-trusted"));
        a.record("example.com", &none, "mx.example.com", &failure("certificate-not-trusted"));
        let mut b = DayCounts::default();
        b.record("example.com", &none, "mx2.example.com", &Session::Success);
        b.record("other.test", &none, "mx.other.test", &failure("starttls-not-supported"));
        a.merge(&b);
        let c = &a.domains["example.com"][0].1;
        assert_eq!((c.successes, c.failures), (2, 2));
        assert_eq!(c.details.len(), 1);
        assert_eq!(c.details[0].1, 2);
        assert_eq!(c.mx_hosts, ["mx.example.com", "mx2.example.com"]);
        assert_eq!(a.domains["other.test"][0].1.failures, 1);
        let shown = a.show("example.com", "2026-12-06");
        assert!(shown.contains("policy no-policy-found: successful=2 failed=2"), "{shown}");
        assert!(shown.contains("failure certificate-not-trusted count=2"), "{shown}");
    }

    #[test]
    fn the_report_has_rfc_8460s_required_fields() {
        let mut c = DayCounts::default();
        c.record("example.com", &PolicyId::no_policy(), "mx.example.com", &failure("starttls-not-supported"));
        let day = parse_date("2026-12-06").unwrap();
        let r = report_json(&c, "example.com", day, "mx.test").unwrap();
        assert_eq!(r["organization-name"], "mx.test");
        assert_eq!(r["date-range"]["start-datetime"], "2026-12-06T00:00:00Z");
        assert_eq!(r["date-range"]["end-datetime"], "2026-12-06T23:59:59Z");
        assert!(r["report-id"].as_str().is_some_and(|s| !s.is_empty()));
        let p = &r["policies"][0];
        assert_eq!(p["policy"]["policy-type"], "no-policy-found");
        assert_eq!(p["policy"]["policy-domain"], "example.com");
        assert_eq!(p["summary"]["total-failure-session-count"], 1);
        assert_eq!(p["failure-details"][0]["result-type"], "starttls-not-supported");
        assert!(report_json(&c, "absent.test", day, "mx.test").is_none());
    }

    #[test]
    fn rua_takes_mailto_addresses_of_a_tlsrpt_record_only() {
        assert_eq!(
            rua_mailto("v=TLSRPTv1; rua=mailto:tls@example.com,https://r.example/x").unwrap(),
            ["tls@example.com"]
        );
        assert_eq!(rua_mailto("v=TLSRPTv1;rua=mailto:a@b.test?subject=x").unwrap(), ["a@b.test"]);
        assert!(rua_mailto("v=spf1 -all").is_none());
        assert!(rua_mailto("v=TLSRPTv1; rua=mailto:<evil>@x\r\n").unwrap().is_empty());
    }

    #[test]
    fn the_recorder_hands_back_a_finished_day() {
        let mut r = Recorder::default();
        let none = PolicyId::no_policy();
        assert!(r.record(86_400_000 * 10, "a.test", &none, "mx", &Session::Success).is_none());
        let (day, old) = r.record(86_400_000 * 11 + 1, "b.test", &none, "mx", &Session::Success).unwrap();
        assert_eq!(day, 10);
        assert!(old.domains.contains_key("a.test"));
        assert!(r.counts.domains.contains_key("b.test") && !r.counts.domains.contains_key("a.test"));
    }

    #[test]
    fn tls_failures_are_told_from_other_connection_failures() {
        assert_eq!(result_type_of("TLS required but not offered"), Some("starttls-not-supported"));
        assert_eq!(
            result_type_of("STARTTLS failed: invalid peer certificate: UnknownIssuer"),
            Some("certificate-not-trusted")
        );
        assert_eq!(result_type_of("connect failed: Connection refused (os error 111)"), None);
        assert_eq!(result_type_of("greeting refused: 421 4.7.0 busy"), None);
    }
}
