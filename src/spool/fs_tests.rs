//! Tests on real files: glommio `BufferedFile` segments in a temporary
//! directory, recovered with `recover` and read with `SegmentMaps`.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use glommio::{LocalExecutorBuilder, Placement};

use super::ids::{QueueId, SegmentKey, SpoolRef};
use super::io::DirStore;
use super::layout::segment_path;
use super::payload::{decode_message, encode_message_envelope, MessageRecord, RecipientEntry, Route};
use super::reader::SegmentMaps;
use super::record::RecordKind;
use super::recovery::recover;
use super::writer::{Spool, SpoolConfig};
use super::SpoolError;

const CONFIG: SpoolConfig = SpoolConfig { segment_size: 256 << 10 };

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("glommio executor (needs io_uring and memlock)")
        .run(f)
}

fn body(id: u64) -> Vec<u8> {
    format!("Subject: {id}\r\n\r\n")
        .into_bytes()
        .into_iter()
        .chain((0..10_000).map(|i| (i as u64 * id) as u8))
        .collect()
}

async fn store_message(spool: &Spool<DirStore>, id: u64) -> SpoolRef {
    let body = body(id);
    let msg = MessageRecord {
        queue_id: QueueId(id),
        received_at_ms: id,
        client: "198.51.100.4".into(),
        helo: "client.test".into(),
        sender: "s@client.test".into(),
        recipients: vec![RecipientEntry::new("jane@example.test", Route::Local { user: "jane".into() })],
        ext: Default::default(),
        body: &body,
    };
    let envelope = encode_message_envelope(&msg).unwrap();
    spool.append_durable(RecordKind::Message, &[&envelope, &body]).await.unwrap()
}

fn check_bodies(root: &Path, expected: &[(SpoolRef, u64)]) {
    let mut maps = SegmentMaps::new(root);
    for &(at, id) in expected {
        let view = maps.record(at).unwrap();
        assert_eq!(view.kind(), RecordKind::Message);
        let msg = decode_message(view.payload()).unwrap();
        assert_eq!(msg.queue_id, QueueId(id));
        assert!(msg.body == body(id).as_slice(), "body of {at}");
    }
}

#[test]
fn real_segments_survive_restart_and_appends_resume_at_the_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("spool");
    run(async {
        let spool = Spool::new(DirStore::open(&root, 1).unwrap(), 1, CONFIG, None).unwrap();
        let tasks: Vec<_> = (0..8u64)
            .map(|t| {
                let spool = spool.clone();
                glommio::spawn_local(async move {
                    let mut placed = Vec::new();
                    for i in 0..5 {
                        let id = t * 100 + i + 1;
                        placed.push((store_message(&spool, id).await, id));
                    }
                    placed
                })
            })
            .collect();
        let mut placed = Vec::new();
        for t in tasks {
            placed.extend(t.await);
        }
        let stats = spool.stats();
        assert!(stats.syncs < stats.records, "{stats:?}");
        assert!(placed.iter().any(|(at, _)| at.segment > 0), "40 x 10 KiB rolls over 256 KiB");
        spool.flush().await.unwrap();
        drop(spool);

        let rec = recover(&root).unwrap();
        assert!(rec.torn.is_empty() && rec.repairs.is_empty());
        let mut found: Vec<_> = rec.messages.iter().map(|m| (m.at, m.queue_id.0)).collect();
        found.sort();
        placed.sort();
        assert_eq!(found, placed);
        check_bodies(&root, &placed);

        let tail = rec.tails[&1];
        let spool = Spool::new(DirStore::open(&root, 1).unwrap(), 1, CONFIG, Some(tail)).unwrap();
        let at = store_message(&spool, 999).await;
        assert_eq!((at.segment, at.offset), (tail.segment, tail.offset));
        spool.flush().await.unwrap();
        drop(spool);
        let rec = recover(&root).unwrap();
        assert_eq!(rec.messages.len(), placed.len() + 1);
        check_bodies(&root, &[(at, 999)]);
    });
}

#[test]
fn recovery_zeroes_stale_bytes_after_the_tail_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(async {
        let spool = Spool::new(DirStore::open(&root, 0).unwrap(), 0, CONFIG, None).unwrap();
        store_message(&spool, 1).await;
        let tail = spool.write_position();
        spool.flush().await.unwrap();
        drop(spool);
        let path = segment_path(&root, SegmentKey { dir: 0, seq: 0 });
        let file = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        file.write_all_at(b"stale bytes", u64::from(tail.offset) + 4000).unwrap();

        let rec = recover(&root).unwrap();
        assert_eq!(rec.messages.len(), 1);
        assert_eq!(rec.repairs.len(), 1);
        assert_eq!(rec.repairs[0].from, tail.offset);
        let mut buf = [1u8; 11];
        file.read_exact_at(&mut buf, u64::from(tail.offset) + 4000).unwrap();
        assert_eq!(buf, [0; 11]);
        assert!(recover(&root).unwrap().repairs.is_empty());
    });
}

#[test]
fn unfinished_segment_creation_is_removed_by_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    std::fs::create_dir_all(root.join("core-2")).unwrap();
    std::fs::write(root.join("core-2/segment-00000000.tmp"), [7u8; 100]).unwrap();
    let rec = recover(&root).unwrap();
    assert!(rec.tails.is_empty());
    assert!(!root.join("core-2/segment-00000000.tmp").exists());
}

#[test]
fn reads_name_missing_and_misaligned_records() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(async {
        let spool = Spool::new(DirStore::open(&root, 0).unwrap(), 0, CONFIG, None).unwrap();
        let at = store_message(&spool, 5).await;
        let mut maps = SegmentMaps::new(&root);
        let end = spool.write_position();
        assert!(matches!(maps.record(end), Err(SpoolError::NoRecord { .. })));
        let inside = SpoolRef { offset: at.offset + 8, ..at };
        assert!(matches!(maps.record(inside), Err(SpoolError::BadRecord { .. })));
        let elsewhere = SpoolRef { segment: 9, ..at };
        assert!(matches!(maps.record(elsewhere), Err(SpoolError::OpenSegment { .. })));
        assert_eq!(maps.len(), 1);
        maps.forget(0, 0);
        assert!(maps.is_empty());
        spool.flush().await.unwrap();
    });
}

#[test]
fn reclaimed_segment_is_removed_but_mapped_views_stay_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(async {
        let spool =
            Spool::new(DirStore::open(&root, 0).unwrap(), 0, SpoolConfig { segment_size: 16 << 10 }, None).unwrap();
        let first = store_message(&spool, 1).await;
        store_message(&spool, 2).await;
        assert_eq!(spool.write_position().segment, 1);
        let mut maps = SegmentMaps::new(&root);
        let view = maps.record(first).unwrap();
        spool.remove_segment(0).await.unwrap();
        assert!(!segment_path(&root, first.segment_key()).exists());
        assert_eq!(decode_message(view.payload()).unwrap().queue_id, QueueId(1));
        maps.forget(0, 0);
        assert!(matches!(maps.record(first), Err(SpoolError::OpenSegment { .. })));
        spool.flush().await.unwrap();
    });
}

/// Phase 1 finds the tail and the last queue id from the highest segment
/// alone (zeroing stale bytes there); phase 2, run while a writer appends
/// behind the boundary, returns exactly the records before it; a full
/// recovery afterwards finds both.
#[test]
fn phased_recovery_reads_up_to_the_boundary_while_the_writer_appends() {
    use super::phased::{open_tails, recover_behind, Progress};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(async {
        let spool = Spool::new(DirStore::open(&root, 0).unwrap(), 0, CONFIG, None).unwrap();
        let mut before = Vec::new();
        for id in 1..=40u64 {
            before.push((store_message(&spool, id).await, id));
        }
        // Another directory nobody writes (left by a run with more cores).
        let adopted = Spool::new(DirStore::open(&root, 5).unwrap(), 5, CONFIG, None).unwrap();
        let other = store_message(&adopted, 500).await;
        adopted.flush().await.unwrap();
        drop(adopted);
        assert!(spool.write_position().segment > 0, "40 x 10 KiB roll over 256 KiB");
        spool.flush().await.unwrap();
        drop(spool);
        // Where a whole-spool recovery resumes (the prepared spare segment,
        // if the writer made one).
        let tail = recover(&root).unwrap().tails[&0];
        let path = segment_path(&root, SegmentKey { dir: 0, seq: tail.segment });
        let file = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        file.write_all_at(b"stale", u64::from(tail.offset) + 100).unwrap();

        let opened = open_tails(&root, [0u16, 1]).unwrap();
        let t = opened.tails[&0].expect("dir 0 has segments");
        assert_eq!((t.segment, t.offset), (tail.segment, tail.offset));
        assert_eq!(opened.tails[&1], None, "dir 1 has no segment yet");
        assert_eq!(opened.last_queue_ids[&0], QueueId(40));
        let mut buf = [1u8; 5];
        file.read_exact_at(&mut buf, u64::from(tail.offset) + 100).unwrap();
        assert_eq!(buf, [0; 5], "phase 1 zeroed what followed the tail");

        // The writer resumes, and rolls over into new segments.
        let spool = Spool::new(DirStore::open(&root, 0).unwrap(), 0, CONFIG, Some(t)).unwrap();
        let mut after = Vec::new();
        for id in 1001..=1030u64 {
            after.push((store_message(&spool, id).await, id));
        }
        let writer1 = Spool::new(DirStore::open(&root, 1).unwrap(), 1, CONFIG, None).unwrap();
        after.push((store_message(&writer1, 2000).await, 2000));
        assert!(after.iter().any(|(at, _)| at.segment > t.segment));

        let progress = Progress::default();
        let mut behind = recover_behind(&root, &opened.tails, &progress).unwrap();
        behind.decode_held();
        let mut found: Vec<_> = behind.messages.iter().map(|m| (m.at, m.queue_id.0)).collect();
        found.sort();
        let mut want = before.clone();
        want.push((other, 500));
        want.sort();
        assert_eq!(found, want, "exactly the records before the boundary, and the unwritten dir whole");
        let (read, total) = progress.segments();
        assert_eq!(read, total);
        let dir5 = std::fs::read_dir(root.join("core-5")).unwrap().count() as u64;
        assert_eq!(total, u64::from(t.segment) + 1 + dir5, "dir 0 up to the boundary, and dir 5 whole");

        spool.flush().await.unwrap();
        writer1.flush().await.unwrap();
        drop((spool, writer1));
        let all = recover(&root).unwrap();
        assert_eq!(all.messages.len(), want.len() + after.len());
    });
}
