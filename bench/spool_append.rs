//! Spool append throughput on real files: records/s and MB/s for 1 KiB and
//! 16 KiB records at 1, 8 and 64 records per sync (that many concurrent
//! appenders sharing group commits; 1 is the one-at-a-time baseline).
//!
//! Files go to a temporary directory under the cargo target directory (not
//! /tmp, which may be tmpfs). Each measurement starts a fresh spool with its
//! first segment already created; the zero-filling of later segments runs in
//! the background during the measurement, as it does in production.
//!
//! Run: `cargo bench --bench spool_append`. A summary table with the
//! baseline and the candidates from this same run is printed at the end.
//!
//! `SPOOL_APPEND_SIZES` and `SPOOL_APPEND_PER_SYNC` (comma-separated; sizes
//! in bytes with an optional `k` or `m` suffix) replace the defaults, e.g.
//! the mean record of a message mix at the concurrency a bench/compare run
//! has: `SPOOL_APPEND_SIZES=56k SPOOL_APPEND_PER_SYNC=1,16,32`. Records per
//! sync of 1 are the baseline the speed-up column divides by.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use ringmail::spool::{DirStore, RecordKind, Spool, SpoolConfig};

const SIZES: [usize; 2] = [1 << 10, 16 << 10];
const PER_SYNC: [u64; 3] = [1, 8, 64];

/// `name`'s comma-separated values parsed by `parse`, or `default`.
fn knob<T: Copy>(name: &str, default: &[T], parse: impl Fn(&str) -> Option<T>) -> Vec<T> {
    match std::env::var(name) {
        Ok(v) => v.split(',').map(|x| parse(x.trim()).unwrap_or_else(|| panic!("{name}: cannot read {x:?}"))).collect(),
        Err(_) => default.to_vec(),
    }
}

/// `1024`, `56k` or `1m` in bytes.
fn parse_size(s: &str) -> Option<usize> {
    let lower = s.to_ascii_lowercase();
    let (num, unit) = match lower.strip_suffix('k') {
        Some(n) => (n, 1 << 10),
        None => match lower.strip_suffix('m') {
            Some(n) => (n, 1 << 20),
            None => (lower.as_str(), 1),
        },
    };
    num.parse::<usize>().ok().filter(|&n| n > 0).map(|n| n * unit)
}

/// Totals over every measurement of one (record size, records per sync).
#[derive(Default, Clone, Copy)]
struct Totals {
    records: u64,
    bytes: u64,
    syncs: u64,
    elapsed: Duration,
}

type Summary = Rc<RefCell<BTreeMap<(usize, u64), Totals>>>;

/// The target directory this bench binary was built into
/// (`<target>/<profile>/deps/spool_append-…`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("bench executable path");
    exe.ancestors().nth(3).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("target"))
}

fn print_machine(dir: &Path) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("machine: {cpus} cpus, kernel {}, spool files in {}", kernel.trim(), dir.display());
}

/// Appends `iters` records of `size` bytes from `appenders` concurrent
/// tasks, each waiting for durability before its next append. Returns the
/// time from the first append to the last acknowledgement.
async fn measure(root: PathBuf, size: usize, appenders: u64, iters: u64, summary: Summary) -> Duration {
    let config = SpoolConfig::default();
    let store = DirStore::open(&root, 0).expect("spool directory");
    let spool = Spool::new(store, 0, config, None).expect("spool");
    // Opaque payloads as checkpoint records: the spool does not look inside,
    // so the cost measured is the write path's alone.
    let payload = Rc::new(vec![0xa5u8; size]);
    // Segment 0 is created (zero-filled) outside the measurement.
    spool.append_durable(RecordKind::Checkpoint, &[&payload]).await.expect("warm-up append");
    let before = spool.stats();
    let start = Instant::now();
    let tasks: Vec<_> = (0..appenders)
        .map(|i| {
            let (spool, payload) = (spool.clone(), payload.clone());
            let n = iters / appenders + u64::from(i < iters % appenders);
            glommio::spawn_local(async move {
                for _ in 0..n {
                    spool.append_durable(RecordKind::Checkpoint, &[&payload]).await.expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await;
    }
    let elapsed = start.elapsed();
    let after = spool.stats();
    spool.flush().await.expect("flush");
    drop(spool);
    std::fs::remove_dir_all(&root).expect("remove bench spool");
    let mut summary = summary.borrow_mut();
    let t = summary.entry((size, appenders)).or_default();
    t.records += after.records - before.records;
    t.bytes += (after.records - before.records) * size as u64;
    t.syncs += after.syncs - before.syncs;
    t.elapsed += elapsed;
    elapsed
}

fn print_summary(summary: &Summary, sizes: &[usize], per_sync: &[u64]) {
    println!("\nsize    per-sync  records/s   MB/s    records/sync  speed-up vs 1");
    for &size in sizes {
        let base = summary.borrow().get(&(size, 1)).copied();
        for &k in per_sync {
            let Some(t) = summary.borrow().get(&(size, k)).copied() else {
                continue;
            };
            let secs = t.elapsed.as_secs_f64().max(1e-9);
            let rate = t.records as f64 / secs;
            let speedup = base.map_or(f64::NAN, |b| rate / (b.records as f64 / b.elapsed.as_secs_f64().max(1e-9)));
            println!(
                "{:>3} KiB {:>8}  {:>9.0}  {:>7.1}  {:>12.1}  {:>6.1}x",
                size >> 10,
                k,
                rate,
                t.bytes as f64 / secs / 1e6,
                t.records as f64 / t.syncs.max(1) as f64,
                speedup
            );
        }
    }
}

fn spool_append(c: &mut Criterion) {
    let base = tempfile::Builder::new()
        .prefix("spool-bench-")
        .tempdir_in(target_dir())
        .expect("bench directory under the target dir");
    print_machine(base.path());
    let executor: LocalExecutor = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("glommio executor (needs io_uring and memlock)");
    let summary = Summary::default();
    let sizes = knob("SPOOL_APPEND_SIZES", &SIZES, parse_size);
    let per_sync = knob("SPOOL_APPEND_PER_SYNC", &PER_SYNC, |s| s.parse().ok().filter(|&n| n > 0));
    let mut run = 0u64;
    for &size in &sizes {
        let mut group = c.benchmark_group(format!("spool_append/{}KiB", size >> 10));
        group
            .throughput(Throughput::Elements(1))
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        for &k in &per_sync {
            group.bench_with_input(BenchmarkId::new("records_per_sync", k), &k, |b, &k| {
                b.iter_custom(|iters| {
                    run += 1;
                    let root = base.path().join(format!("run-{run}"));
                    executor.run(measure(root, size, k, iters, summary.clone()))
                });
            });
        }
        group.finish();
    }
    print_summary(&summary, &sizes, &per_sync);
}

criterion_group!(benches, spool_append);
criterion_main!(benches);
