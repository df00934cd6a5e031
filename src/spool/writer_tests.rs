//! Tests of the write path: group commit, rollover, failures, cancellation,
//! and power loss simulated by `sim::SimDisk`, checked through recovery.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::rc::Rc;

use glommio::{LocalExecutorBuilder, Placement};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::ids::{QueueId, SegmentKey, SpoolRef};
use super::payload::{
    encode_message_envelope, encode_tombstone, MessageRecord, Outcome, RecipientEntry, Route, Tombstone,
};
use super::record::{end_of_nonzero, parse_at, record_len, scan_segment, Parsed, RecordKind, ScanEnd, HEADER_LEN};
use super::recovery::{recover_images, Recovered, SegmentImage};
use super::sim::{CrashMode, Faults, SimDisk, SimStore};
use super::writer::{Spool, SpoolConfig};
use super::SpoolError;

fn run<T>(f: impl Future<Output = T>) -> T {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("glommio executor (needs io_uring and memlock)")
        .run(f)
}

fn config(segment_size: u32) -> SpoolConfig {
    SpoolConfig { segment_size }
}

async fn settle() {
    for _ in 0..20 {
        futures_lite::future::yield_now().await;
    }
}

/// Records as they would be found on disk: (kind, payload) by place.
type Appended = BTreeMap<SpoolRef, (RecordKind, Vec<u8>)>;

fn assert_on_disk(images: &BTreeMap<SegmentKey, Vec<u8>>, at: SpoolRef, kind: RecordKind, payload: &[u8]) {
    let key = at.segment_key();
    let img = images.get(&key).unwrap_or_else(|| panic!("segment {key} of {at} is gone"));
    match parse_at(img, at.offset as usize, key) {
        Parsed::Record { kind: k, payload: p, .. } => {
            assert_eq!(k, kind, "kind at {at}");
            assert!(img[p] == *payload, "payload at {at} differs");
        }
        other => panic!("no good record at {at}: {other:?}"),
    }
}

#[test]
fn concurrent_appenders_share_syncs() {
    run(async {
        let disk = SimDisk::new(1, Faults::default());
        let spool = Spool::new(disk.store(0), 0, config(256 << 10), None).unwrap();
        let acked = Rc::new(RefCell::new(Appended::new()));
        let tasks: Vec<_> = (0..32u8)
            .map(|i| {
                let (spool, acked) = (spool.clone(), acked.clone());
                glommio::spawn_local(async move {
                    for j in 0..20 {
                        let payload = vec![i; 100 + j];
                        let at = spool.append_durable(RecordKind::Checkpoint, &[&payload]).await.unwrap();
                        acked.borrow_mut().insert(at, (RecordKind::Checkpoint, payload));
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        let stats = spool.stats();
        assert_eq!(stats.records, 640);
        assert!(stats.syncs < stats.records / 4, "{stats:?}");
        assert_eq!(disk.syncs(), stats.syncs);
        let images = disk.crash(CrashMode::DropUnsynced);
        for (at, (kind, payload)) in acked.borrow().iter() {
            assert_on_disk(&images, *at, *kind, payload);
        }
    });
}

#[test]
fn records_roll_over_into_following_segments() {
    run(async {
        let disk = SimDisk::new(2, Faults::default());
        let spool = Spool::new(disk.store(3), 3, config(16 << 10), None).unwrap();
        let mut acked = Appended::new();
        for i in 0..20u8 {
            let payload = vec![i; 3000];
            let at = spool.append_durable(RecordKind::Checkpoint, &[&payload]).await.unwrap();
            acked.insert(at, (RecordKind::Checkpoint, payload));
        }
        // 5 records of 3024 bytes fit 16 KiB; the 6th starts segment 1.
        let places: Vec<_> = acked.keys().map(|a| (a.segment, a.offset)).collect();
        assert_eq!(places[4], (0, 4 * 3024));
        assert_eq!(places[5], (1, 0));
        assert_eq!(places[19], (3, 4 * 3024));
        assert!(acked.keys().all(|a| a.dir == 3));
        let images = disk.crash(CrashMode::RandomSectors);
        for (at, (kind, payload)) in &acked {
            assert_on_disk(&images, *at, *kind, payload);
        }
    });
}

#[test]
fn next_segment_is_created_before_rollover_needs_it() {
    run(async {
        let disk = SimDisk::new(3, Faults::default());
        let spool = Spool::new(disk.store(0), 0, config(64 << 10), None).unwrap();
        let mut last = spool.write_position();
        while last.offset < 33 << 10 {
            spool.append_durable(RecordKind::Checkpoint, &[&[7; 1000]]).await.unwrap();
            last = spool.write_position();
        }
        settle().await;
        assert_eq!(last.segment, 0);
        assert_eq!(disk.segments(), [SegmentKey { dir: 0, seq: 0 }, SegmentKey { dir: 0, seq: 1 }]);
    });
}

#[test]
fn record_too_large_for_any_segment_is_refused_and_spool_keeps_working() {
    run(async {
        let disk = SimDisk::new(4, Faults::default());
        let spool = Spool::new(disk.store(0), 0, config(8192), None).unwrap();
        let too_big = vec![0u8; 8192 - HEADER_LEN + 1];
        let err = spool.append(RecordKind::Message, &[&too_big]).unwrap_err();
        assert!(matches!(err, SpoolError::RecordTooLarge { len: 8200, segment_size: 8192 }));
        let exact = vec![1u8; 8192 - HEADER_LEN];
        let at = spool.append_durable(RecordKind::Checkpoint, &[&exact]).await.unwrap();
        assert_eq!((at.segment, at.offset), (0, 0));
        let at = spool.append_durable(RecordKind::Checkpoint, &[b"x"]).await.unwrap();
        assert_eq!((at.segment, at.offset), (1, 0));
    });
}

#[test]
fn failed_sync_fails_its_records_and_moves_appends_to_a_fresh_segment() {
    run(async {
        let disk = SimDisk::new(5, Faults::default());
        let spool = Spool::new(disk.store(0), 0, config(64 << 10), None).unwrap();
        let a = spool.append_durable(RecordKind::Checkpoint, &[b"a"]).await.unwrap();
        disk.fail_next_sync();
        let b = spool.append(RecordKind::Checkpoint, &[b"b"]).unwrap();
        assert_eq!(b.at.segment, 0);
        let err = spool.durable(&b.ticket).await.unwrap_err();
        assert!(matches!(err, SpoolError::SyncFailed { dir: 0, segment: 0, .. }), "{err}");
        let c = spool.append(RecordKind::Checkpoint, &[b"c"]).unwrap();
        assert_eq!((c.at.segment, c.at.offset), (1, 0));
        spool.durable(&c.ticket).await.unwrap();
        assert_eq!(spool.stats().failed_batches, 1);
        let images = disk.crash(CrashMode::DropUnsynced);
        assert_on_disk(&images, a, RecordKind::Checkpoint, b"a");
        assert_on_disk(&images, c.at, RecordKind::Checkpoint, b"c");
        assert!(spool.remove_segment(1).await.is_err(), "write segment");
        spool.remove_segment(0).await.unwrap();
    });
}

#[test]
fn records_placed_after_a_failed_batch_in_its_segment_are_not_written() {
    run(async {
        let disk = SimDisk::new(6, Faults::default());
        let spool = Spool::new(disk.store(0), 0, config(64 << 10), None).unwrap();
        spool.append_durable(RecordKind::Checkpoint, &[b"a"]).await.unwrap();
        disk.fail_next_sync();
        disk.hold_syncs(true);
        let b = spool.append(RecordKind::Checkpoint, &[b"b"]).unwrap();
        let waiter = {
            let spool = spool.clone();
            glommio::spawn_local(async move { spool.durable(&b.ticket).await })
        };
        // Let the round take `b`'s batch, then place `c` behind it.
        while spool.stats().writes < 2 {
            futures_lite::future::yield_now().await;
        }
        let c = spool.append(RecordKind::Checkpoint, &[b"c"]).unwrap();
        assert_eq!(c.at.segment, 0);
        disk.hold_syncs(false);
        assert!(waiter.await.is_err());
        let err = spool.durable(&c.ticket).await.unwrap_err();
        assert!(matches!(err, SpoolError::SegmentAbandoned { dir: 0, segment: 0 }), "{err}");
        let images = disk.crash(CrashMode::TornPrefix);
        let key = SegmentKey { dir: 0, seq: 0 };
        assert!(matches!(parse_at(&images[&key], c.at.offset as usize, key), Parsed::End | Parsed::Bad(_)));
    });
}

#[test]
fn dropping_a_durable_future_does_not_stall_the_spool() {
    run(async {
        let disk = SimDisk::new(7, Faults::default());
        let spool = Spool::new(disk.store(0), 0, config(64 << 10), None).unwrap();
        let a = spool.append(RecordKind::Checkpoint, &[b"a"]).unwrap();
        // Starts a round, then is dropped mid-wait.
        assert!(futures_lite::future::poll_once(spool.durable(&a.ticket)).await.is_none());
        let b = spool.append(RecordKind::Checkpoint, &[b"b"]).unwrap();
        spool.durable(&b.ticket).await.unwrap();
        spool.durable(&a.ticket).await.unwrap();
    });
}

/// What the appenders did, as seen by their callers.
#[derive(Clone, Default)]
struct World {
    /// Every record placed (durable or not).
    appended: Appended,
    /// Records whose `durable` returned Ok.
    acked: Vec<SpoolRef>,
    /// Acked messages and their recipient counts.
    messages: BTreeMap<SpoolRef, u16>,
    /// Recipients for which a tombstone was placed / acked.
    tombs_placed: BTreeMap<SpoolRef, BTreeSet<u16>>,
    tombs_acked: BTreeMap<SpoolRef, BTreeSet<u16>>,
}

async fn appender(spool: Spool<SimStore>, world: Rc<RefCell<World>>, seed: u64, count: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for j in 0..count {
        let rcpts = rng.gen_range(1..=3u16);
        let mut body = vec![0u8; rng.gen_range(0..3000)];
        rng.fill(&mut body[..]);
        let msg = MessageRecord {
            queue_id: QueueId((seed << 16) | j),
            received_at_ms: j,
            client: "192.0.2.1".into(),
            helo: format!("client{seed}"),
            sender: String::new(),
            recipients: (0..rcpts)
                .map(|r| RecipientEntry::new(format!("u{r}@example.test"), Route::Local { user: format!("u{r}") }))
                .collect(),
            ext: Default::default(),
            body: &body,
        };
        let envelope = encode_message_envelope(&msg).unwrap();
        let placed = spool.append(RecordKind::Message, &[&envelope, &body]).unwrap();
        let whole = [envelope.as_slice(), &body].concat();
        world.borrow_mut().appended.insert(placed.at, (RecordKind::Message, whole));
        if spool.durable(&placed.ticket).await.is_err() {
            continue;
        }
        {
            let mut w = world.borrow_mut();
            w.acked.push(placed.at);
            w.messages.insert(placed.at, rcpts);
        }
        for r in 0..rcpts {
            if !rng.gen_bool(0.4) {
                continue;
            }
            let t = encode_tombstone(&Tombstone { target: placed.at, recipient: r, outcome: Outcome::Delivered });
            let tomb = spool.append(RecordKind::Tombstone, &[&t]).unwrap();
            {
                let mut w = world.borrow_mut();
                w.appended.insert(tomb.at, (RecordKind::Tombstone, t.to_vec()));
                w.tombs_placed.entry(placed.at).or_default().insert(r);
            }
            if spool.durable(&tomb.ticket).await.is_ok() {
                let mut w = world.borrow_mut();
                w.acked.push(tomb.at);
                w.tombs_acked.entry(placed.at).or_default().insert(r);
            }
        }
    }
}

/// Recovers `images` (applying the repairs to them) and checks them against
/// what the callers were told.
fn recover_and_check(images: &mut BTreeMap<SegmentKey, Vec<u8>>, world: &World) -> Recovered {
    let rec = recover_images(images.iter().map(|(&key, bytes)| SegmentImage { key, bytes })).unwrap();
    for r in &rec.repairs {
        images.get_mut(&r.key).unwrap()[r.from as usize..r.to as usize].fill(0);
    }
    // Every acknowledged record is there, byte for byte.
    for at in &world.acked {
        let (kind, payload) = &world.appended[at];
        assert_on_disk(images, *at, *kind, payload);
    }
    // Nothing else is there but records placed exactly there, and nothing
    // follows the tail.
    for (&key, img) in images.iter() {
        let scan = scan_segment(img, key);
        assert!(matches!(scan.end, ScanEnd::Clean { .. }), "{key}: {:?}", scan.end);
        assert_eq!(end_of_nonzero(img, scan.tail() as usize), None, "{key}");
        for r in &scan.records {
            let at = SpoolRef { dir: key.dir, segment: key.seq, offset: r.offset };
            let (kind, payload) = world.appended.get(&at).unwrap_or_else(|| panic!("record at {at} was never placed"));
            assert_eq!((r.kind, &img[r.payload.clone()]), (*kind, payload.as_slice()), "at {at}");
        }
    }
    // Live recipients: none acked as final, all never tombstoned.
    let live: BTreeMap<SpoolRef, BTreeSet<u16>> =
        rec.messages.iter().map(|m| (m.at, m.recipients.iter().map(|(i, _)| *i).collect())).collect();
    let none = BTreeSet::new();
    for (at, &count) in &world.messages {
        let got = live.get(at).unwrap_or(&none);
        let finals = world.tombs_acked.get(at).unwrap_or(&none);
        let maybe = world.tombs_placed.get(at).unwrap_or(&none);
        for r in 0..count {
            if finals.contains(&r) {
                assert!(!got.contains(&r), "{at} recipient {r} is final");
            } else if !maybe.contains(&r) {
                assert!(got.contains(&r), "{at} recipient {r} is live");
            }
        }
    }
    rec
}

/// The power-loss property: whatever the crash leaves, recovery returns
/// every acknowledged record intact and nothing corrupt, and appends resume.
#[test]
fn durable_records_survive_power_loss_at_any_moment() {
    const DIRS: u16 = 2;
    run(async {
        for seed in 0..240u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mode = CrashMode::ALL[seed as usize % 3];
            let faults =
                if seed % 4 == 3 { Faults { write: 0.05, sync: 0.05, create: 0.05 } } else { Faults::default() };
            let cfg = config(64 << 10);
            let disk = SimDisk::new(seed, faults);
            let world = Rc::new(RefCell::new(World::default()));
            let spools: Vec<_> = (0..DIRS).map(|d| Spool::new(disk.store(d), d, cfg, None).unwrap()).collect();
            let tasks: Vec<_> = (0..6u64)
                .map(|i| {
                    let spool = spools[(i % u64::from(DIRS)) as usize].clone();
                    glommio::spawn_local(appender(spool, world.clone(), seed * 100 + i, 12))
                })
                .collect();
            for _ in 0..rng.gen_range(0..250) {
                futures_lite::future::yield_now().await;
            }
            // Power loss: what the callers were told so far, and the disk.
            let mut images = disk.crash(mode);
            let before = world.borrow().clone();
            drop(tasks);
            let rec = recover_and_check(&mut images, &before);

            // Restart on the repaired disk and append more.
            let mut after = before.clone();
            after.appended.retain(|at, _| {
                let key = at.segment_key();
                images
                    .get(&key)
                    .is_some_and(|img| matches!(parse_at(img, at.offset as usize, key), Parsed::Record { .. }))
            });
            let disk = SimDisk::from_images(seed + 1_000_000, images, Faults::default());
            let world = Rc::new(RefCell::new(after));
            let tasks: Vec<_> = (0..DIRS)
                .map(|d| {
                    let spool = Spool::new(disk.store(d), d, cfg, rec.tails.get(&d).copied()).unwrap();
                    glommio::spawn_local(appender(spool, world.clone(), seed * 100 + 50 + u64::from(d), 5))
                })
                .collect();
            for t in tasks {
                t.await;
            }
            let mut images = disk.crash(CrashMode::ALL[rng.gen_range(0..3)]);
            recover_and_check(&mut images, &world.borrow());
        }
    });
}

#[test]
fn record_len_matches_what_append_advances() {
    run(async {
        let disk = SimDisk::new(8, Faults::default());
        let spool = Spool::new(disk.store(0), 0, config(64 << 10), None).unwrap();
        for n in [0usize, 1, 7, 8, 9, 100] {
            let before = spool.write_position().offset;
            spool.append(RecordKind::Checkpoint, &[&vec![1; n]]).unwrap();
            assert_eq!((spool.write_position().offset - before) as usize, record_len(n));
        }
    });
}
