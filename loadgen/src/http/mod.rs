//! `ringmail-loadgen http`: injects mail through an HTTP injection API
//! (ringmail's `POST /api/v1/inject`) from every core, over kept-alive
//! connections, and reports requests, messages and recipients per second
//! and the request latency (send to whole reply; the server replies after
//! its spool sync, so this is the latency of a durable accept).

mod worker;

use crate::cli::HttpArgs;
use crate::live::{self, Ended, Live, Watch};
use crate::proto::{http, message};
use crate::report::{self, Summary};
use crate::rt;
use crate::stats::{LatencySet, Tally, Timeline};
use crate::target::{self, Target};
use anyhow::{bail, Result};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Latency metrics of the HTTP mode, in report order.
pub const METRICS: &[&str] = &["connect", "request"];
pub const CONNECT: usize = 0;
pub const REQUEST: usize = 1;

/// The read-only plan every core shares.
pub struct Plan {
    pub target: Target,
    pub path: String,
    pub token: String,
    pub connections: usize,
    /// Requests per worker (index = worker), when counted.
    pub quota: Option<Vec<u64>>,
    /// When the measured phase ends, when timed.
    pub deadline: Option<Instant>,
    pub recipients: usize,
    pub personal: bool,
    pub to: Vec<String>,
    pub to_domains: Vec<String>,
    pub users_per_domain: u64,
    pub from: String,
    /// The message body (CRLF lines), JSON-escaped without its quotes.
    pub body_json: String,
    /// Bytes of one message (headers estimate plus body).
    pub message_bytes: u64,
    pub run_id: String,
    pub date: String,
    pub timeout: Duration,
}

impl Plan {
    fn build(args: &HttpArgs) -> Result<Plan> {
        if args.connections == 0 || args.recipients == 0 {
            bail!("--connections and --recipients must be at least 1");
        }
        if args.to.is_empty() && (args.to_domains.is_empty() || args.users_per_domain == 0) {
            bail!("no recipients: give --to or --to-domains with --users-per-domain >= 1");
        }
        let target = target::resolve(&args.target, args.allow_remote)?;
        let quota = match (args.requests, args.duration) {
            (Some(_), Some(_)) => bail!("give --requests or --duration, not both"),
            (None, Some(_)) => None,
            (n, None) => {
                let n = n.unwrap_or(1000);
                let w = args.connections as u64;
                Some((0..w).map(|i| n / w + u64::from(i < n % w)).collect())
            }
        };
        let body = message::plain_body(args.size);
        let escaped = http::json_string(&String::from_utf8_lossy(&body));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Ok(Plan {
            target,
            path: args.path.clone(),
            token: args.token.clone(),
            connections: args.connections,
            quota,
            deadline: args.duration.map(|d| Instant::now() + d),
            recipients: args.recipients,
            personal: args.personal,
            to: args.to.clone(),
            to_domains: args.to_domains.clone(),
            users_per_domain: args.users_per_domain,
            from: args.from.clone(),
            body_json: escaped[1..escaped.len() - 1].to_string(),
            message_bytes: (message::HEADER_ESTIMATE + body.len()) as u64,
            run_id: format!("{:x}", now.as_micros()),
            date: message::rfc5322_date(now.as_secs()),
            timeout: args.core.timeout,
        })
    }

    /// Recipient `n` of the run.
    fn recipient(&self, n: u64) -> String {
        if !self.to.is_empty() {
            return self.to[(n % self.to.len() as u64) as usize].clone();
        }
        let domain = &self.to_domains[(n % self.to_domains.len() as u64) as usize];
        format!("user{}@{domain}", (n / self.to_domains.len() as u64) % self.users_per_domain)
    }

    /// The JSON body of request `seq` of `worker`.
    pub fn request_body(&self, worker: u64, seq: u64) -> Vec<u8> {
        let k = self.recipients as u64;
        let base = worker.wrapping_mul(7919).wrapping_add(seq * k);
        let id = format!("{}.{worker}.{seq}", self.run_id);
        let rcpts: Vec<String> = (0..k)
            .map(|j| {
                let addr = http::json_string(&self.recipient(base + j));
                if self.personal {
                    format!("{{\"email\": {addr}, \"substitutions\": {{\"n\": \"{j}\"}}}}")
                } else {
                    addr
                }
            })
            .collect();
        // A personal copy's Message-ID carries its recipient's number.
        let mid = if self.personal { format!("<{id}.{{{{n}}}}@loadgen>") } else { format!("<{id}@loadgen>") };
        let headers = message::headers(&mid, &self.from, &self.date, &format!("w{worker} #{seq}"));
        let headers = http::json_string(&headers);
        format!(
            "{{\"envelope_sender\": {}, \"recipients\": [{}], \"content\": {{\"raw\": {}{}\"}}}}",
            http::json_string(&self.from),
            rcpts.join(", "),
            &headers[..headers.len() - 1],
            self.body_json
        )
        .into_bytes()
    }
}

/// What a core measured.
#[derive(Debug, Clone)]
pub struct CoreStats {
    pub lat: LatencySet,
    pub requests: u64,
    /// Answered 200.
    pub accepted: u64,
    /// Answered anything else.
    pub rejected: u64,
    /// Lost to a connection failure.
    pub failed: u64,
    /// Recipients the replies listed with a queue id.
    pub recipients: u64,
    /// Messages stored (a personal request stores one per recipient).
    pub messages: u64,
    pub connections: u64,
    pub statuses: Tally,
    pub errors: Tally,
    pub timeline: Timeline,
    pub start: Instant,
    pub last_done: Option<Instant>,
}

/// Runs the HTTP load and prints the summary.
pub fn run(args: HttpArgs) -> Result<()> {
    let cores = args.core.cores.unwrap_or_else(rt::available_cores).max(1).min(args.connections.max(1));
    let plan = Arc::new(Plan::build(&args)?);
    let live = Live::new(cores);
    let started = SystemTime::now();
    let running = {
        let plan = Arc::clone(&plan);
        let live2 = Arc::clone(&live);
        rt::spawn(cores, !args.core.no_pin, &live, move |i| {
            worker::run_core(Arc::clone(&plan), Arc::clone(&live2), i, cores)
        })?
    };
    let progress = live::progress_line("requests");
    let ended = live::monitor(
        &live,
        Watch { workers: Some(args.connections), stop_at_done: None, stop_after: None, progress: &progress },
    );
    let results = running.join()?;
    if let Ended::FailedAtStart(why) = ended {
        bail!("{why} (no connection succeeded)");
    }
    let summary = summarize(&args, &results, started, ended == Ended::Signal);
    report::emit(&summary, &args.core, &args.report)
}

fn summarize(args: &HttpArgs, results: &[CoreStats], started: SystemTime, interrupted: bool) -> Summary {
    let mut t = results[0].clone();
    for r in &results[1..] {
        t.lat.merge(&r.lat);
        t.requests += r.requests;
        t.accepted += r.accepted;
        t.rejected += r.rejected;
        t.failed += r.failed;
        t.recipients += r.recipients;
        t.messages += r.messages;
        t.connections += r.connections;
        t.statuses.merge(&r.statuses);
        t.errors.merge(&r.errors);
        t.timeline.merge(&r.timeline);
    }
    let start = results.iter().map(|r| r.start).min().unwrap_or(t.start);
    let end = results.iter().filter_map(|r| r.last_done).max();
    let elapsed = end.map_or(Duration::ZERO, |e| e.saturating_duration_since(start));
    let mut s = Summary::new("http", &args.target, started, elapsed);
    s.interrupted = interrupted;
    s.settings = serde_json::json!({
        "connections": args.connections,
        "cores": results.len(),
        "requests": args.requests,
        "duration_s": args.duration.map(|d| d.as_secs_f64()),
        "size": args.size,
        "recipients_per_request": args.recipients,
        "personal": args.personal,
        "path": args.path,
    });
    s.count("requests", t.requests);
    s.count("accepted", t.accepted);
    s.count("rejected", t.rejected);
    s.count("failed", t.failed);
    s.count("messages", t.messages);
    s.count("recipients", t.recipients);
    s.count("connections", t.connections);
    s.rate("requests_per_s", t.requests);
    s.rate("messages_per_s", t.messages);
    s.rate("recipients_per_s", t.recipients);
    s.headline = format!(
        "{} requests x {} recipients in {:.2} s = {:.0} msg/s, {:.0} req/s ({} accepted, {} rejected, {} failed)",
        t.requests,
        args.recipients,
        elapsed.as_secs_f64(),
        s.throughput.get("messages_per_s").copied().unwrap_or(0.0),
        s.throughput.get("requests_per_s").copied().unwrap_or(0.0),
        t.accepted,
        t.rejected,
        t.failed
    );
    s.tallies.insert("statuses".into(), t.statuses.map().clone());
    s.tallies.insert("errors".into(), t.errors.map().clone());
    s.set_latencies(&t.lat, REQUEST);
    s.timeline = t.timeline.buckets().to_vec();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(personal: bool) -> Plan {
        Plan {
            target: target::resolve("127.0.0.1:1", false).unwrap(),
            path: "/api/v1/inject".into(),
            token: "t".into(),
            connections: 1,
            quota: None,
            deadline: None,
            recipients: 2,
            personal,
            to: vec![],
            to_domains: vec!["a.test".into()],
            users_per_domain: 10,
            from: "f@x.test".into(),
            body_json: "line\\r\\n".into(),
            message_bytes: 0,
            run_id: "r".into(),
            date: "d".into(),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn request_bodies_are_json_with_one_substitution_per_personal_recipient() {
        let v: serde_json::Value = serde_json::from_slice(&plan(true).request_body(0, 1)).unwrap();
        assert_eq!(v["recipients"][1]["email"], "user3@a.test");
        assert_eq!(v["recipients"][1]["substitutions"]["n"], "1");
        let raw = v["content"]["raw"].as_str().unwrap();
        assert!(raw.starts_with("Message-ID: <r.0.1.{{n}}@loadgen>\r\n"), "{raw}");
        assert!(raw.ends_with("\r\n\r\nline\r\n"), "{raw}");
        let v: serde_json::Value = serde_json::from_slice(&plan(false).request_body(0, 1)).unwrap();
        assert_eq!(v["recipients"][0], "user2@a.test");
    }
}
