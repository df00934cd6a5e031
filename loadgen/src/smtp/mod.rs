//! `ringmail-loadgen smtp`: sends mail to an SMTP server from every core and
//! reports throughput, outcomes and latency.
//!
//! `plan` turns the command line into a shared read-only plan; `core` runs
//! one core's connections (`worker`) on its schedule (`schedule`) with its
//! own statistics; this file starts the cores, watches them, merges and
//! reports.

mod compose;
mod core;
mod failure;
mod plan;
mod schedule;
mod worker;

pub use failure::humanize;

use crate::cli::SmtpArgs;
use crate::live::{self, Ended, Live, Watch};
use crate::report::{self, Summary};
use crate::rt;
use anyhow::{bail, Result};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Runs the SMTP load and prints the summary. Errors (including "every
/// connection failed at the start") are returned as one line.
pub fn run(args: SmtpArgs) -> Result<()> {
    let cores = args.core.cores.unwrap_or_else(rt::available_cores).max(1);
    let plan = Arc::new(plan::Plan::build(&args, cores)?);
    let live = Live::new(cores);
    let started = SystemTime::now();
    let running = {
        let plan = Arc::clone(&plan);
        let live2 = Arc::clone(&live);
        rt::spawn(cores, !args.core.no_pin, &live, move |i| core::run(Arc::clone(&plan), Arc::clone(&live2), i))?
    };
    let progress = live::progress_line("sent");
    let ended = live::monitor(
        &live,
        Watch { workers: Some(args.connections), stop_at_done: None, stop_after: None, progress: &progress },
    );
    let results = running.join()?;
    if let Ended::FailedAtStart(why) = ended {
        bail!("{why} (no connection succeeded)");
    }
    let summary = summarize(&args, &plan, &results, started, ended == Ended::Signal);
    report::emit(&summary, &args.core, &args.report)
}

/// Merges the cores' statistics into the report model.
fn summarize(
    args: &SmtpArgs,
    plan: &plan::Plan,
    results: &[core::CoreStats],
    started: SystemTime,
    interrupted: bool,
) -> Summary {
    let mut total = results[0].clone();
    for r in &results[1..] {
        total.lat.merge(&r.lat);
        total.attempted += r.attempted;
        total.accepted += r.accepted;
        total.rejected += r.rejected;
        total.failed += r.failed;
        total.bytes += r.bytes;
        total.connections += r.connections;
        total.no_pipelining += r.no_pipelining;
        total.rejections.merge(&r.rejections);
        total.rcpt_refusals.merge(&r.rcpt_refusals);
        total.errors.merge(&r.errors);
        total.timeline.merge(&r.timeline);
        total.over_time.merge(&r.over_time);
    }
    let start = results.iter().map(|r| r.measure_start).min().unwrap_or(total.measure_start);
    let end = results.iter().filter_map(|r| r.last_done).max();
    let elapsed = end.map_or(Duration::ZERO, |e| e.saturating_duration_since(start));
    let mut s = Summary::new("smtp", &args.target, started, elapsed);
    s.interrupted = interrupted;
    s.settings = serde_json::json!({
        "connections": args.connections,
        "cores": results.len(),
        "messages": args.messages,
        "duration_s": args.duration.map(|d| d.as_secs_f64()),
        "rate": args.rate,
        "warmup_s": plan.warmup.as_secs_f64(),
        "size": format_mix(plan.sizes.entries()),
        "recipients": args.recipients,
        "pipelining": args.pipelining,
        "tls": format!("{:?}", args.tls.tls).to_lowercase(),
        "auth": args.auth.is_some(),
        "connection_reuse": match plan.per_connection { Some(1) => "new connection per message".to_string(),
            Some(n) => format!("{n} messages per connection"), None => "reuse".to_string() },
        "run_id": plan.run_id,
    });
    s.count("attempted", total.attempted);
    s.count("accepted", total.accepted);
    s.count("rejected", total.rejected);
    s.count("failed", total.failed);
    s.count("connections", total.connections);
    s.count("bytes", total.bytes);
    s.rate("messages_per_s", total.attempted);
    s.rate("accepted_per_s", total.accepted);
    s.rate("bytes_per_s", total.bytes);
    s.headline = format!(
        "{} messages in {:.2} s = {:.0} msg/s ({} accepted, {} rejected, {} failed)",
        total.attempted,
        elapsed.as_secs_f64(),
        s.throughput.get("messages_per_s").copied().unwrap_or(0.0),
        total.accepted,
        total.rejected,
        total.failed
    );
    if total.no_pipelining > 0 {
        s.notes.push(format!(
            "--pipelining: the server did not offer PIPELINING on {} of {} connections (sent in lock-step)",
            total.no_pipelining, total.connections
        ));
    }
    s.tallies.insert("rejections".into(), total.rejections.map().clone());
    s.tallies.insert("recipient refusals".into(), total.rcpt_refusals.map().clone());
    s.tallies.insert("errors".into(), total.errors.map().clone());
    s.set_latencies(&total.lat, core::MESSAGE);
    s.timeline = total.timeline.buckets().to_vec();
    s.set_over_time("message", &total.over_time);
    s
}

fn format_mix(entries: &[(usize, u32)]) -> String {
    entries.iter().map(|(size, w)| format!("{size}:{w}")).collect::<Vec<_>>().join(",")
}
