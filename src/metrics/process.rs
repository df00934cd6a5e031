//! The process as Prometheus' client libraries describe one (the standard
//! `process_*` names, so existing dashboards and alerts find them), and
//! what this binary is (`ringmail_build_info`).
//!
//! Read from `/proc/self` at each scrape: a few small procfs reads, no disk.
//! A value that cannot be read is left out rather than reported as 0.

use std::fmt::Write;

/// The process's resource use at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// When the process started, Unix seconds.
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Read this process's numbers from `/proc`.
    pub fn read() -> ProcessStats {
        // SAFETY: sysconf only reads a configuration value.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let statm = std::fs::read_to_string("/proc/self/statm").ok();
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let boot = std::fs::read_to_string("/proc/stat").ok();
        let mut stats = ProcessStats {
            open_fds: std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64),
            max_fds: max_fds(),
            ..ProcessStats::default()
        };
        if let (Some(statm), true) = (statm, page > 0) {
            let mut fields = statm.split_whitespace().map(|f| f.parse::<u64>().ok());
            stats.virtual_bytes = fields.next().flatten().map(|p| p * page as u64);
            stats.resident_bytes = fields.next().flatten().map(|p| p * page as u64);
        }
        if let (Some(stat), true) = (stat, tick > 0) {
            let tick = tick as f64;
            if let Some(t) = parse_stat(&stat) {
                stats.cpu_seconds = Some((t.utime + t.stime) as f64 / tick);
                stats.start_time_seconds =
                    boot.as_deref().and_then(boot_time).map(|btime| btime as f64 + t.starttime as f64 / tick);
            }
        }
        stats
    }
}

/// The clock-tick fields of `/proc/self/stat` this page uses.
#[derive(Debug, PartialEq, Eq)]
struct StatTicks {
    utime: u64,
    stime: u64,
    /// After boot.
    starttime: u64,
}

/// Fields 14, 15 and 22 of proc(5)'s `stat`. The command name (field 2)
/// is in parentheses and may itself hold spaces and `)`, so count from the
/// last `)`.
fn parse_stat(stat: &str) -> Option<StatTicks> {
    let (_, rest) = stat.rsplit_once(')')?;
    // rest starts at field 3 (state).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(StatTicks { utime: field(14)?, stime: field(15)?, starttime: field(22)? })
}

/// `btime` of `/proc/stat`: boot time, Unix seconds.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()
}

fn max_fds() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(lim.rlim_cur)
}

/// What this binary is: the crate version and the git commit it was built
/// from ("unknown" outside a git checkout, e.g. from a source tarball).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("RINGMAIL_COMMIT");

/// Append the `process_*` families, `ringmail_build_info` and, when a
/// certificate is loaded, its expiry.
pub fn render(out: &mut String, p: &ProcessStats, certificate_not_after: Option<i64>) {
    let mut gauge = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(v) = value {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
    };
    gauge(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        p.resident_bytes.map(|v| v as f64),
    );
    gauge("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", p.virtual_bytes.map(|v| v as f64));
    gauge("process_open_fds", "gauge", "Number of open file descriptors.", p.open_fds.map(|v| v as f64));
    gauge("process_max_fds", "gauge", "Maximum number of open file descriptors.", p.max_fds.map(|v| v as f64));
    gauge("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", p.cpu_seconds);
    gauge(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        p.start_time_seconds,
    );
    gauge(
        "ringmail_tls_certificate_expiry_timestamp_seconds",
        "gauge",
        "notAfter of the server certificate in use (loaded at start or by the last SIGHUP), Unix seconds.",
        certificate_not_after.map(|v| v as f64),
    );
    let _ = writeln!(
        out,
        "# HELP ringmail_build_info The version and git commit of the running binary.\n# TYPE ringmail_build_info gauge\nringmail_build_info{{version=\"{VERSION}\",commit=\"{COMMIT}\"}} 1"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let stat = "4242 (a) b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 98765 1000 200 \
                    18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_stat(stat), Some(StatTicks { utime: 250, stime: 75, starttime: 98765 }));
        assert_eq!(parse_stat("4242 (no end"), None);
    }

    #[test]
    fn boot_time_is_the_btime_line() {
        assert_eq!(boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n"), Some(1_700_000_000));
        assert_eq!(boot_time("cpu  1 2 3\n"), None);
    }

    #[test]
    fn this_process_reads_as_running_and_holding_files() {
        let p = ProcessStats::read();
        assert!(p.resident_bytes.is_some_and(|b| b > 0), "{p:?}");
        assert!(p.open_fds.is_some_and(|n| n >= 3), "{p:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let start = p.start_time_seconds.expect("a start time");
        assert!(start > 1_500_000_000.0 && start <= now + 1.0, "{start} vs {now}");
    }

    #[test]
    fn unknown_values_are_left_out_and_build_info_is_always_there() {
        let mut out = String::new();
        render(&mut out, &ProcessStats { open_fds: Some(7), ..ProcessStats::default() }, Some(1_800_000_000));
        assert!(out.contains("process_open_fds 7\n"), "{out}");
        assert!(!out.contains("process_resident_memory_bytes"), "{out}");
        assert!(out.contains("ringmail_tls_certificate_expiry_timestamp_seconds 1800000000\n"), "{out}");
        assert!(
            out.contains(&format!("ringmail_build_info{{version=\"{VERSION}\",commit=\"{COMMIT}\"}} 1\n")),
            "{out}"
        );
    }
}
