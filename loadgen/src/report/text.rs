//! The plain-text summary printed at the end of a run.

use super::Summary;
use std::fmt::Write;

/// Renders the summary for a terminal.
pub fn render(s: &Summary) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "ringmail-loadgen {} {}", s.mode, s.target);
    if s.interrupted {
        let _ = writeln!(o, "  (interrupted: partial results)");
    }
    let _ = writeln!(o, "  {}", s.headline);
    if !s.throughput.is_empty() {
        let parts: Vec<String> = s
            .throughput
            .iter()
            .map(|(k, v)| {
                if k.starts_with("bytes") {
                    format!("{k} {:.1} MiB/s", v / (1024.0 * 1024.0))
                } else {
                    format!("{k} {v:.0}")
                }
            })
            .collect();
        let _ = writeln!(o, "  throughput: {}", parts.join(", "));
    }
    for (name, tally) in &s.tallies {
        if tally.is_empty() {
            let _ = writeln!(o, "  {name}: none");
            continue;
        }
        let parts: Vec<String> = tally.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = writeln!(o, "  {name}: {}", parts.join(", "));
    }
    for n in &s.notes {
        let _ = writeln!(o, "  {n}");
    }
    if !s.latency_ms.is_empty() {
        let _ = writeln!(
            o,
            "  {:<13} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        for r in &s.latency_ms {
            let _ = writeln!(
                o,
                "  {:<13} {:>9} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                r.name, r.count, r.p50, r.p90, r.p99, r.p999, r.max
            );
        }
    }
    o
}
