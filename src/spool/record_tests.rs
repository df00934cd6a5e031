//! Tests of the record format: round trips, scan endings, damage, and a
//! garbage loop that must never panic.

use super::*;
use rand::{Rng, SeedableRng};

const KEY: SegmentKey = SegmentKey { dir: 3, seq: 7 };

fn image(records: &[(RecordKind, Vec<u8>)], size: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    for (kind, payload) in records {
        encode_into(&mut buf, *kind, KEY, &[payload]);
    }
    if size > buf.len() {
        buf.resize(size, 0);
    }
    buf
}

#[test]
fn records_round_trip_with_padding_to_8() {
    let mut buf = Vec::new();
    encode_into(&mut buf, RecordKind::Message, KEY, &[b"hello", b" world"]);
    assert_eq!(buf.len(), record_len(11));
    assert_eq!(buf.len() % 8, 0);
    assert_eq!(parse_at(&buf, 0, KEY), Parsed::Record { kind: RecordKind::Message, payload: 24..35, next: 40 });
    assert_eq!(&buf[24..35], b"hello world");
}

#[test]
fn scan_of_zeros_ends_clean_at_zero() {
    let scan = scan_segment(&[0u8; 4096], KEY);
    assert!(scan.records.is_empty());
    assert_eq!(scan.end, ScanEnd::Clean { offset: 0 });
    assert_eq!(scan_segment(&[], KEY).end, ScanEnd::Clean { offset: 0 });
}

#[test]
fn scan_returns_records_in_order_and_ends_at_zero_header() {
    let img = image(
        &[(RecordKind::Message, vec![1; 100]), (RecordKind::Tombstone, vec![2; 13]), (RecordKind::Checkpoint, vec![])],
        4096,
    );
    let scan = scan_segment(&img, KEY);
    let kinds: Vec<_> = scan.records.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [RecordKind::Message, RecordKind::Tombstone, RecordKind::Checkpoint]);
    assert_eq!(scan.records[1].offset as usize, record_len(100));
    let tail = record_len(100) + record_len(13) + record_len(0);
    assert_eq!(scan.end, ScanEnd::Clean { offset: tail as u32 });
}

#[test]
fn scan_of_exactly_full_segment_ends_clean_at_its_end() {
    let img = image(&[(RecordKind::Message, vec![9; 40])], record_len(40));
    let scan = scan_segment(&img, KEY);
    assert_eq!(scan.records.len(), 1);
    assert_eq!(scan.end, ScanEnd::Clean { offset: img.len() as u32 });
}

#[test]
fn truncated_record_is_torn_at_its_offset() {
    let img = image(&[(RecordKind::Message, vec![1; 10]), (RecordKind::Message, vec![2; 300])], 0);
    let cut = &img[..img.len() - 100];
    let scan = scan_segment(cut, KEY);
    assert_eq!(scan.records.len(), 1);
    assert!(matches!(scan.end, ScanEnd::Bad { offset: 40, reason: BadRecord::LengthPastEnd { len: 300 } }));
    let scan = scan_segment(&img[..50], KEY);
    assert_eq!(scan.end, ScanEnd::Bad { offset: 40, reason: BadRecord::TruncatedHeader });
}

/// Damage done to the record at an offset of an image.
type Damage = fn(&mut [u8], usize);

/// Three messages; the middle one's bytes are damaged by `damage`.
fn damaged_in_the_middle(damage: impl FnOnce(&mut [u8], usize)) -> (SegmentScan, usize, usize) {
    let img0 = image(
        &[
            (RecordKind::Message, vec![1; 100]),
            (RecordKind::Message, vec![2; 200]),
            (RecordKind::Tombstone, vec![3; 13]),
        ],
        8192,
    );
    let (second, third) = (record_len(100), record_len(100) + record_len(200));
    let mut img = img0;
    damage(&mut img, second);
    (scan_segment(&img, KEY), second, third)
}

#[test]
fn damage_in_the_middle_is_passed_over_and_the_records_after_it_kept() {
    // A flipped payload byte (the header's length still says where the
    // next record starts), a wiped header (the magic search finds it), and
    // a header whose length field is garbage.
    let damages: [(&str, Damage); 3] = [
        ("payload byte", |img, at| img[at + 50] ^= 0x01),
        ("whole header", |img, at| img[at..at + HEADER_LEN].fill(0xa5)),
        ("length field", |img, at| img[at + 12..at + 16].copy_from_slice(&7u32.to_le_bytes())),
    ];
    for (what, damage) in damages {
        let (scan, second, third) = damaged_in_the_middle(damage);
        let offsets: Vec<u32> = scan.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [0, third as u32], "{what}");
        assert_eq!(scan.skipped.len(), 1, "{what}");
        assert_eq!((scan.skipped[0].offset, scan.skipped[0].len), (second as u32, (third - second) as u32), "{what}");
        assert!(scan.skipped[0].reason.is_torn(), "{what}");
        let tail = third + record_len(13);
        assert_eq!(
            scan.end,
            ScanEnd::Clean { offset: tail as u32 },
            "{what}: appends resume after the last good record"
        );
    }
}

#[test]
fn damage_with_nothing_good_after_it_is_a_torn_tail() {
    // Garbage after the damaged record, or a good record of another
    // segment (a stale copy), is no reason to go on: the tail is cut there.
    let (scan, second, _) = damaged_in_the_middle(|img, at| {
        img[at + 50] ^= 0x01;
        let rest = at + record_len(200);
        img[rest..rest + 64].fill(0x5a);
    });
    assert_eq!(scan.records.len(), 1);
    assert!(scan.skipped.is_empty());
    assert!(matches!(scan.end, ScanEnd::Bad { offset, reason: BadRecord::BadCrc { .. } } if offset as usize == second));
    let mut img = image(&[(RecordKind::Message, vec![1; 100])], 0);
    let mut other = Vec::new();
    encode_into(&mut other, RecordKind::Message, SegmentKey { dir: 3, seq: 8 }, &[&[4; 40]]);
    img.extend_from_slice(&[0xee; 48]);
    img.extend_from_slice(&other);
    img.resize(4096, 0);
    let scan = scan_segment(&img, KEY);
    assert_eq!((scan.records.len(), scan.skipped.len()), (1, 0));
    assert!(matches!(scan.end, ScanEnd::Bad { offset: 128, .. }), "{:?}", scan.end);
}

#[test]
fn a_zero_header_still_ends_the_scan_cleanly() {
    // A hole of zeros is where the data ends (what lies past it is stale
    // and recovery zeroes it), not damage to pass over.
    let (scan, second, _) = damaged_in_the_middle(|img, at| img[at..at + record_len(200)].fill(0));
    assert_eq!(scan.records.len(), 1);
    assert!(scan.skipped.is_empty());
    assert_eq!(scan.end, ScanEnd::Clean { offset: second as u32 });
}

#[test]
fn flipped_payload_bit_is_bad_crc() {
    let mut img = image(&[(RecordKind::Message, vec![1; 64])], 1024);
    img[30] ^= 0x10;
    let scan = scan_segment(&img, KEY);
    assert!(scan.records.is_empty());
    assert!(matches!(scan.end, ScanEnd::Bad { offset: 0, reason: BadRecord::BadCrc { .. } }));
    assert!(matches!(&scan.end, ScanEnd::Bad { reason, .. } if reason.is_torn()));
}

#[test]
fn garbage_header_is_bad_magic() {
    let mut img = vec![0u8; 256];
    img[3] = 1;
    let scan = scan_segment(&img, KEY);
    assert!(matches!(scan.end, ScanEnd::Bad { offset: 0, reason: BadRecord::BadMagic { .. } }));
}

#[test]
fn record_of_another_segment_is_refused_not_torn() {
    let img = image(&[(RecordKind::Message, vec![5; 8])], 128);
    let other = SegmentKey { dir: 3, seq: 8 };
    let scan = scan_segment(&img, other);
    match scan.end {
        ScanEnd::Bad { offset: 0, reason } => {
            assert_eq!(reason, BadRecord::Misplaced { dir: 3, segment: 7 });
            assert!(!reason.is_torn());
        }
        other => panic!("unexpected end {other:?}"),
    }
}

/// Recomputes the crc of the record at 0 after its header was edited.
fn reseal(img: &mut [u8]) {
    let len = le_u32(&img[12..16]) as usize;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&img[..20]), &img[24..24 + len]);
    img[20..24].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn newer_version_with_good_crc_is_refused_not_torn() {
    let mut img = image(&[(RecordKind::Message, vec![5; 8])], 128);
    img[4] = 2;
    reseal(&mut img);
    let scan = scan_segment(&img, KEY);
    assert!(matches!(scan.end, ScanEnd::Bad { reason: BadRecord::UnsupportedVersion { version: 2 }, .. }));
}

#[test]
fn unknown_kind_with_good_crc_is_refused_not_torn() {
    let mut img = image(&[(RecordKind::Message, vec![5; 8])], 128);
    img[5] = 99;
    reseal(&mut img);
    let end = scan_segment(&img, KEY).end;
    assert!(matches!(end, ScanEnd::Bad { reason: BadRecord::UnknownKind { kind: 99 }, .. }));
}

#[test]
fn header_torn_across_a_sector_with_stale_version_is_torn() {
    // Magic written, the rest of the header in a sector that was lost.
    let mut img = image(&[(RecordKind::Message, vec![5; 8])], 128);
    img[4..24].fill(0);
    let end = scan_segment(&img, KEY).end;
    assert!(matches!(&end, ScanEnd::Bad { reason, .. } if reason.is_torn()), "{end:?}");
}

#[test]
fn end_of_nonzero_finds_last_data_byte() {
    let mut img = vec![0u8; 1000];
    assert_eq!(end_of_nonzero(&img, 0), None);
    img[10] = 1;
    assert_eq!(end_of_nonzero(&img, 0), Some(11));
    assert_eq!(end_of_nonzero(&img, 11), None);
    img[999] = 1;
    assert_eq!(end_of_nonzero(&img, 11), Some(1000));
    img[999] = 0;
    img[640] = 7;
    assert_eq!(end_of_nonzero(&img, 11), Some(641));
    assert_eq!(end_of_nonzero(&img, 2000), None);
}

/// Random bytes, random damage to good images, random offsets: scanning
/// never panics, and every record it returns has a valid checksum.
#[test]
fn garbage_never_panics_and_never_yields_a_bad_record() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for round in 0..3000 {
        let mut img = if round % 3 == 0 {
            (0..rng.gen_range(0..600)).map(|_| rng.gen()).collect::<Vec<u8>>()
        } else {
            let recs: Vec<_> = (0..rng.gen_range(0..8))
                .map(|_| (RecordKind::Message, vec![rng.gen(); rng.gen_range(0..200)]))
                .collect();
            let mut img = image(&recs, rng.gen_range(0..2048));
            // Overwrite random chunks with garbage.
            for _ in 0..rng.gen_range(0..4) {
                if img.is_empty() {
                    break;
                }
                let at = rng.gen_range(0..img.len());
                let len = rng.gen_range(1..64).min(img.len() - at);
                for b in &mut img[at..at + len] {
                    *b = rng.gen();
                }
            }
            img
        };
        if rng.gen_bool(0.2) && !img.is_empty() {
            let cut = rng.gen_range(0..img.len());
            img.truncate(cut);
        }
        let scan = scan_segment(&img, KEY);
        // Records and skipped damage tile the scanned bytes, in order, and
        // each skip is followed by a good record.
        let mut prev_end = 0usize;
        let mut skips = scan.skipped.iter().peekable();
        for r in &scan.records {
            if let Some(skip) = skips.next_if(|s| s.offset as usize == prev_end) {
                assert!(skip.reason.is_torn());
                prev_end += skip.len as usize;
            }
            assert_eq!(r.offset as usize, prev_end);
            assert!(matches!(parse_at(&img, r.offset as usize, KEY), Parsed::Record { .. }));
            prev_end = r.offset as usize + record_len(r.payload.len());
        }
        assert!(skips.next().is_none(), "a skip not followed by a good record");
        assert_eq!(scan.tail() as usize, prev_end);
        for _ in 0..8 {
            let _ = parse_at(&img, rng.gen_range(0..img.len() + 40), KEY);
        }
    }
}
