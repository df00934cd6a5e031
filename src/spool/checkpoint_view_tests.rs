//! Tests of reading a checkpoint in place ([`View`]) and of the file a
//! roll writes from it (the roll's results against a full scan are in
//! `checkpoint_tests`).

use std::io::Cursor;

use super::checkpoint::{self, Checkpoint, CheckpointError};
use super::checkpoint_roll::plan;
use super::checkpoint_tests::{sample, with_section};
use super::checkpoint_view::View;
use super::ids::SpoolRef;
use super::record::RecordKind;
use super::recovery::SegmentImage;
use super::recovery_tests::{seg, tombstone, Disk};

#[test]
fn a_view_reads_what_was_written() {
    for ck in [sample(), Checkpoint::empty(SpoolRef { dir: 3, segment: 9, offset: 64 })] {
        let bytes = checkpoint::encode(&ck);
        let view = View::parse(&bytes).unwrap();
        // `decode` builds the whole summary from the view.
        assert_eq!(checkpoint::decode(&bytes), Ok(ck.clone()));
        assert_eq!(
            view.records().map(|r| r.at).collect::<Vec<_>>(),
            ck.records.iter().map(|r| r.at).collect::<Vec<_>>()
        );
        let envelopes: Vec<_> = view.envelopes().map(|(i, e)| (i, e.at, e.body_len, e.bytes.to_vec())).collect();
        let written: Vec<_> = (ck.records.iter().enumerate())
            .filter_map(|(i, r)| Some((i, r.at, r.envelope?.body_len, ck.envelope(r)?.to_vec())))
            .collect();
        assert_eq!(envelopes, written);
        assert_eq!(view.envelope_section_len() > 0, !written.is_empty());
        for r in ck.records.iter() {
            assert_eq!(view.record_index(r.at).map(|i| view.record(i).at), Some(r.at));
        }
        let absent = SpoolRef { dir: ck.cut.dir, segment: 5, offset: 72 };
        assert_eq!(view.record_index(absent), None);
        let other_dir = ck.records.first().map(|r| SpoolRef { dir: r.at.dir + 1, ..r.at });
        assert_eq!(other_dir.and_then(|at| view.record_index(at)), None);
    }
}

#[test]
fn a_view_refuses_what_decode_refuses() {
    let bytes = checkpoint::encode(&sample());
    for len in 0..bytes.len() {
        assert!(View::parse(&bytes[..len]).is_err(), "prefix of {len} bytes accepted");
    }
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x41;
        assert!(View::parse(&bad).is_err(), "byte {i} changed was accepted");
    }
    assert!(View::parse(&with_section(&bytes, 0x7777, b"later data")).is_ok());
    let bad = with_section(&bytes, 2, &[0; 5]);
    assert!(matches!(View::parse(&bad), Err(CheckpointError::Malformed { tag: 2 })));
}

#[test]
fn a_view_refuses_records_or_states_out_of_order() {
    // A roll finds records by binary search, so a file not in the
    // writer's order is neither rolled forward nor used by recovery (it
    // falls back to a full scan).
    let mut ck = sample();
    ck.records.swap(0, 1);
    let bytes = checkpoint::encode(&ck);
    assert!(matches!(View::parse(&bytes), Err(CheckpointError::Malformed { tag: 2 })));
    assert!(matches!(checkpoint::decode(&bytes), Err(CheckpointError::Malformed { tag: 2 })));
    let mut ck = sample();
    ck.states.swap(0, 2);
    assert!(matches!(View::parse(&checkpoint::encode(&ck)), Err(CheckpointError::Malformed { tag: 4 })));
}

#[test]
fn a_roll_keeps_only_the_last_errors_its_states_name() {
    // The only state naming "451 … refused" is one of the three-recipient
    // message at 1:3:0; tombstones of its three recipients after the cut
    // end the message, its states and the use of the text.
    let prev = sample();
    let dead = prev.records[0].at;
    let text = b"451 4.4.1 connection refused";
    let prev_bytes = checkpoint::encode(&prev);
    assert!(prev_bytes.windows(text.len()).any(|w| w == text));
    let mut disk = Disk::default();
    for r in 0..3 {
        disk.put(seg(1, 8), RecordKind::Tombstone, &tombstone(dead, r));
    }
    let cut = disk.put(seg(1, 8), RecordKind::Checkpoint, &[]);
    let images = disk.finish();
    let view = View::parse(&prev_bytes).unwrap();
    let images = images.iter().map(|(&key, bytes)| SegmentImage { key, bytes: &bytes[..cut.offset as usize] });
    let mut out = Cursor::new(Vec::new());
    let written = plan(&view, cut, images, &|_| true).unwrap().write(&view, &mut out).unwrap();
    let bytes = out.into_inner();
    assert_eq!(written.bytes, bytes.len());
    assert!(!bytes.windows(text.len()).any(|w| w == text), "a last error no state names was kept");
    let rolled = checkpoint::decode(&bytes).unwrap();
    assert!(rolled.records.iter().all(|r| r.at != dead));
    assert!(rolled.states.iter().all(|s| s.target != dead));
    // The other states and their contents are kept as they were.
    let kept: Vec<_> = prev.states.iter().filter(|s| s.target != dead).cloned().collect();
    assert_eq!(rolled.states, kept);
    assert_eq!((written.records, written.states), (rolled.records.len(), rolled.states.len()));
}
