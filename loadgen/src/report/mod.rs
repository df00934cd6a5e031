//! The run summary as one model ([`Summary`]) and its renderings: text on
//! stdout, `--json`, `--hgrm` (HdrHistogram percentile text) and `--html`
//! (self-contained page with inline SVG).

mod hgrm;
mod html;
mod plot;
mod svg;
mod text;

pub use hgrm::write_hgrm;

use crate::cli::{CoreArgs, ReportArgs};
use crate::stats::over_time::{OverTime, Point};
use crate::stats::LatencySet;
use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the run happened (for results tables that must name the machine).
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub hostname: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
}

impl Machine {
    /// Reads /proc; fields that cannot be read are left empty.
    pub fn probe() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default().trim().to_string();
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        Machine {
            hostname: read("/proc/sys/kernel/hostname"),
            cpus: crate::rt::available_cores(),
            cpu_model,
            kernel: read("/proc/sys/kernel/osrelease"),
        }
    }
}

/// One latency metric's distribution, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyRow {
    pub name: String,
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    #[serde(rename = "p99.9")]
    pub p999: f64,
    pub max: f64,
}

/// The main metric's latency over time (for the --html plot and --json).
#[derive(Debug, Clone, Serialize)]
pub struct LatencyOverTime {
    /// The latency metric, as named in `latency_ms`.
    pub metric: String,
    /// Width of each point's bucket in seconds (1 unless the run outgrew
    /// the bucket limit).
    pub bucket_s: u64,
    /// Buckets with at least one completion, in time order.
    pub points: Vec<Point>,
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub tool: &'static str,
    pub version: &'static str,
    pub mode: &'static str,
    /// Target (client modes) or listen address (sink).
    pub target: String,
    pub started_unix_ms: u64,
    /// Measured time: from the end of warm-up to the last completion.
    pub elapsed_s: f64,
    /// Stopped by SIGINT/SIGTERM.
    pub interrupted: bool,
    pub machine: Machine,
    pub settings: serde_json::Value,
    /// The one-line result.
    pub headline: String,
    pub counts: BTreeMap<String, u64>,
    /// Per second over `elapsed_s`.
    pub throughput: BTreeMap<String, f64>,
    /// Named tallies: rejections, errors, reply codes...
    pub tallies: BTreeMap<String, BTreeMap<String, u64>>,
    pub latency_ms: Vec<LatencyRow>,
    /// Completions per second of the measured phase.
    pub timeline: Vec<u64>,
    /// p50/p99/max of the main metric per bucket of time; absent for the sink.
    pub latency_over_time: Option<LatencyOverTime>,
    /// Extra lines for the text summary (and JSON).
    pub notes: Vec<String>,
    /// Histograms by metric, for --hgrm and --html (not serialized).
    #[serde(skip)]
    pub hists: Vec<(String, Histogram<u64>)>,
    /// Index in `hists` of the metric written by --hgrm.
    #[serde(skip)]
    pub main_metric: Option<usize>,
}

impl Summary {
    /// An empty summary for `mode` against `target`.
    pub fn new(mode: &'static str, target: &str, started: SystemTime, elapsed: Duration) -> Self {
        Summary {
            tool: "ringmail-loadgen",
            version: env!("CARGO_PKG_VERSION"),
            mode,
            target: target.to_string(),
            started_unix_ms: started.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            elapsed_s: elapsed.as_secs_f64(),
            interrupted: false,
            machine: Machine::probe(),
            settings: serde_json::Value::Null,
            headline: String::new(),
            counts: BTreeMap::new(),
            throughput: BTreeMap::new(),
            tallies: BTreeMap::new(),
            latency_ms: Vec::new(),
            timeline: Vec::new(),
            latency_over_time: None,
            notes: Vec::new(),
            hists: Vec::new(),
            main_metric: None,
        }
    }

    /// Sets a count.
    pub fn count(&mut self, name: &str, n: u64) {
        self.counts.insert(name.to_string(), n);
    }

    /// Sets a throughput figure: `n` per second of measured time.
    pub fn rate(&mut self, name: &str, n: u64) {
        let r = if self.elapsed_s > 0.0 { n as f64 / self.elapsed_s } else { 0.0 };
        self.throughput.insert(name.to_string(), r);
    }

    /// Fills the latency table and histograms; `main` is the --hgrm metric.
    pub fn set_latencies(&mut self, lat: &LatencySet, main: usize) {
        self.main_metric = Some(main);
        for (name, h) in lat.iter() {
            self.hists.push((name.to_string(), h.clone()));
            if h.is_empty() {
                continue;
            }
            let ms = |us: u64| us as f64 / 1000.0;
            self.latency_ms.push(LatencyRow {
                name: name.to_string(),
                count: h.len(),
                mean: h.mean() / 1000.0,
                p50: ms(h.value_at_percentile(50.0)),
                p90: ms(h.value_at_percentile(90.0)),
                p99: ms(h.value_at_percentile(99.0)),
                p999: ms(h.value_at_percentile(99.9)),
                max: ms(h.max()),
            });
        }
    }

    /// Sets the latency-over-time series of `metric`.
    pub fn set_over_time(&mut self, metric: &str, t: &OverTime) {
        self.latency_over_time =
            Some(LatencyOverTime { metric: metric.to_string(), bucket_s: t.width_s(), points: t.points() });
    }

    /// The text summary.
    pub fn to_text(&self) -> String {
        text::render(self)
    }
}

/// Prints the summary and writes the requested files.
pub fn emit(summary: &Summary, core: &CoreArgs, files: &ReportArgs) -> Result<()> {
    print!("{}", summary.to_text());
    write_files(summary, core.json.as_deref(), files.hgrm.as_deref(), files.html.as_deref())
}

/// Writes --json, --hgrm and --html files for those given.
pub fn write_files(s: &Summary, json: Option<&Path>, hgrm: Option<&Path>, html: Option<&Path>) -> Result<()> {
    if let Some(p) = json {
        let text = serde_json::to_string_pretty(s)?;
        std::fs::write(p, text + "\n").with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = hgrm {
        let h = s.main_metric.and_then(|i| s.hists.get(i)).map(|(_, h)| h.clone());
        let h = h.unwrap_or_else(crate::stats::new_histogram);
        std::fs::write(p, write_hgrm(&h)).with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = html {
        std::fs::write(p, html::render(s)).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}
