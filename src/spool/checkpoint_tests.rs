//! Tests of the checkpoint format, of rolling one forward, and of recovery
//! from checkpoints: whatever happened after the cut (more mail,
//! tombstones, compaction moves, segments reclaimed), recovery from the
//! checkpoint plus the log after it gives what a full scan gives, or
//! refuses the checkpoint.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::checkpoint::{
    self, Checkpoint, CheckpointError, EnvelopeAt, EnvelopeBytes, Held, HeldRecord, HeldState, HeldTombstone,
    StateContent,
};
use super::checkpoint_roll::{self, roll};
use super::envelope_view::RouteView;
use super::ids::{QueueId, SegmentKey, SpoolRef};
use super::payload::{RecipientEntry, RecipientState, Route};
use super::record::RecordKind;
use super::recovery::{recover_held, recover_images, recover_with_checkpoints, LiveMessage, Recovered, SegmentImage};
use super::recovery_tests::{encoded, message, moved, seg, state, suppression, tombstone, Disk};
use super::SpoolError;

fn at(dir: u16, segment: u32, offset: u32) -> SpoolRef {
    SpoolRef { dir, segment, offset }
}

pub(super) fn sample() -> Checkpoint {
    Checkpoint {
        cut: at(1, 7, 4096),
        last_queue_id: Some(QueueId(99)),
        records: vec![
            HeldRecord {
                at: at(1, 3, 0),
                kind: Held::Message,
                recipients: 3,
                envelope: Some(EnvelopeAt { start: 0, len: 5, body_len: 1 << 33 }),
            },
            HeldRecord { at: at(1, 5, 64), kind: Held::Moved, recipients: 1, envelope: None },
            HeldRecord {
                at: at(1, 5, 96),
                kind: Held::Moved,
                recipients: 1,
                envelope: Some(EnvelopeAt { start: 5, len: 2, body_len: 7 }),
            },
            HeldRecord { at: at(1, 6, 8), kind: Held::Suppression, recipients: 1, envelope: None },
        ],
        tombstones: vec![HeldTombstone { at: at(1, 4, 0), target: at(0, 2, 16), recipient: 2 }],
        states: vec![
            HeldState { at: at(1, 6, 800), target: at(1, 3, 0), recipient: 1, seq: 1 << 40, content: None },
            HeldState {
                at: at(1, 6, 900),
                target: at(1, 3, 0),
                recipient: 2,
                seq: 1 << 41,
                content: Some(StateContent {
                    attempts: 3,
                    next_attempt_ms: 1_765_000_000_000,
                    warned: true,
                    held: false,
                    last_error: "451 4.4.1 connection refused".into(),
                }),
            },
            HeldState {
                at: at(1, 6, 990),
                target: at(1, 5, 96),
                recipient: 0,
                seq: 5,
                content: Some(StateContent {
                    attempts: 0,
                    next_attempt_ms: 0,
                    warned: false,
                    held: true,
                    last_error: "".into(),
                }),
            },
        ],
        envelope_bytes: b"hellohi".to_vec().into(),
    }
}

#[test]
fn format_round_trips() {
    let ck = sample();
    assert_eq!(checkpoint::decode(&checkpoint::encode(&ck)), Ok(ck));
    let empty = Checkpoint::empty(at(0, 1, 0));
    assert_eq!(checkpoint::decode(&checkpoint::encode(&empty)), Ok(empty));
}

#[test]
fn format_truncated_at_every_byte_is_refused() {
    let bytes = checkpoint::encode(&sample());
    for len in 0..bytes.len() {
        assert!(checkpoint::decode(&bytes[..len]).is_err(), "prefix of {len} bytes accepted");
    }
}

#[test]
fn format_with_any_byte_changed_is_refused() {
    let bytes = checkpoint::encode(&sample());
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x41;
        assert!(checkpoint::decode(&bad).is_err(), "byte {i} changed was accepted");
    }
    let mut bad = bytes.clone();
    bad[20] ^= 1;
    assert!(matches!(checkpoint::decode(&bad), Err(CheckpointError::BadCrc { .. })));
}

/// `bytes` with a section appended and the length and crc fixed.
pub(super) fn with_section(bytes: &[u8], tag: u16, value: &[u8]) -> Vec<u8> {
    let mut body = bytes[16..].to_vec();
    body.extend_from_slice(&tag.to_le_bytes());
    body.extend_from_slice(&(value.len() as u32).to_le_bytes());
    body.extend_from_slice(value);
    let mut out = bytes[..8].to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out), &body);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

#[test]
fn format_skips_unknown_sections_and_refuses_malformed_known_ones() {
    let bytes = checkpoint::encode(&sample());
    assert_eq!(checkpoint::decode(&with_section(&bytes, 0x7777, b"later data")), Ok(sample()));
    // A records section whose length is not a whole number of entries.
    let bad = with_section(&bytes, 2, &[0; 5]);
    assert_eq!(checkpoint::decode(&bad), Err(CheckpointError::Malformed { tag: 2 }));
    let mut newer = bytes.clone();
    newer[4] = 2;
    let newer = with_section(&newer, 0x7777, b"");
    assert_eq!(checkpoint::decode(&newer), Err(CheckpointError::UnsupportedVersion { version: 2 }));
}

/// A random history over two directories: mail, tombstones (some from the
/// other directory), states, suppression entries, and compaction moves.
/// A checkpoint marker goes into each directory at step `cut_at`.
struct History {
    disk: Disk,
    rng: StdRng,
    live: Vec<(SpoolRef, Vec<u16>)>,
    segment: [u32; 2],
    in_segment: [u32; 2],
    next_id: u64,
    state_seq: u64,
    /// Live messages with states: the recipients that have one.
    stateful: BTreeMap<SpoolRef, Vec<u16>>,
    /// Moved without their states recorded at the new place (a crash in
    /// the middle of a compaction; a restart records them, so such a
    /// message moves no more in this history).
    unrelocated: BTreeSet<SpoolRef>,
    /// Whether a move may leave its states unrelocated.
    crashes: bool,
    cuts: BTreeMap<u16, SpoolRef>,
}

impl History {
    fn new(seed: u64) -> History {
        History {
            disk: Disk::default(),
            rng: StdRng::seed_from_u64(seed),
            live: Vec::new(),
            segment: [1, 1],
            in_segment: [0, 0],
            next_id: 1,
            state_seq: 1,
            stateful: BTreeMap::new(),
            unrelocated: BTreeSet::new(),
            crashes: true,
            cuts: BTreeMap::new(),
        }
    }

    fn put(&mut self, dir: u16, kind: RecordKind, payload: &[u8]) -> SpoolRef {
        let d = usize::from(dir);
        // Small segments (the images are 4 KiB), so that many are sealed.
        if self.in_segment[d] == 8 {
            self.segment[d] += 1;
            self.in_segment[d] = 0;
        }
        self.in_segment[d] += 1;
        self.disk.put(seg(dir, self.segment[d]), kind, payload)
    }

    fn step(&mut self) {
        let dir = self.rng.gen_range(0..2u16);
        match self.rng.gen_range(0..10) {
            0..=3 => {
                let n = self.rng.gen_range(1..4usize);
                let id = self.next_id;
                self.next_id += 1;
                let at = self.put(dir, RecordKind::Message, &message(id, n));
                self.live.push((at, (0..n as u16).collect()));
            }
            4..=5 if !self.live.is_empty() => {
                let i = self.rng.gen_range(0..self.live.len());
                let (target, pending) = &mut self.live[i];
                let target = *target;
                let r = pending.remove(self.rng.gen_range(0..pending.len()));
                if pending.is_empty() {
                    self.live.remove(i);
                }
                // Mostly the owner of the target's directory writes it.
                let by = if self.rng.gen_bool(0.8) { target.dir } else { dir };
                self.put(by, RecordKind::Tombstone, &tombstone(target, r));
            }
            6 if !self.live.is_empty() => {
                let (target, pending) = self.live[self.rng.gen_range(0..self.live.len())].clone();
                self.state_seq += 1;
                let s = state(target, pending[0], self.state_seq, 1, 1_000 + self.state_seq);
                self.put(dir, RecordKind::RecipientState, &encoded(&s));
                let with = self.stateful.entry(target).or_default();
                if !with.contains(&pending[0]) {
                    with.push(pending[0]);
                }
            }
            7 if !self.live.is_empty() => {
                // Compaction: the owner moves a live message forward.
                let i = self.rng.gen_range(0..self.live.len());
                let (old, pending) = self.live[i].clone();
                // Never out of the segment being written (compaction skips
                // it); and a message whose states wait for a restart does
                // not move again before it.
                if old.segment == self.segment[usize::from(old.dir)] || self.unrelocated.contains(&old) {
                    return;
                }
                let n = 3usize;
                let done: Vec<u16> = (0..n as u16).filter(|r| !pending.contains(r)).collect();
                let id = self.next_id;
                self.next_id += 1;
                let new = self.put(old.dir, RecordKind::Moved, &moved(old, &done, id, n));
                self.live[i].0 = new;
                let Some(with) = self.stateful.remove(&old) else { return };
                if self.crashes && self.rng.gen_bool(0.3) {
                    self.unrelocated.insert(new);
                } else {
                    // The relocation: every core records the states again.
                    for &r in with.iter().filter(|r| pending.contains(r)) {
                        self.state_seq += 1;
                        let s = state(new, r, self.state_seq, 1, 1_000 + self.state_seq);
                        self.put(dir, RecordKind::RecipientState, &encoded(&s));
                    }
                }
                self.stateful.insert(new, with);
            }
            8 => {
                let since = self.rng.gen_range(0..1000);
                self.put(dir, RecordKind::Suppression, &suppression("x@example.test", since, None));
            }
            _ => {}
        }
    }

    /// Runs `steps` steps, a checkpoint marker in each directory after `cut_at`.
    fn run(&mut self, steps: usize, cut_at: usize) {
        for i in 0..steps {
            if i == cut_at {
                for dir in 0..2 {
                    let cut = self.put(dir, RecordKind::Checkpoint, &[]);
                    self.cuts.insert(dir, cut);
                }
            }
            self.step();
        }
    }
}

fn images(map: &BTreeMap<SegmentKey, Vec<u8>>) -> impl Iterator<Item = SegmentImage<'_>> + Clone {
    map.iter().map(|(&key, bytes)| SegmentImage { key, bytes })
}

/// The checkpoint of `dir` at `cut` over `map`, taken while `present` held.
fn take(map: &BTreeMap<SegmentKey, Vec<u8>>, cut: SpoolRef, present: &BTreeSet<SegmentKey>) -> Checkpoint {
    let prefix = map.iter().filter(|(k, _)| k.dir == cut.dir && k.seq <= cut.segment).map(|(&key, bytes)| {
        let end = if key.seq == cut.segment { cut.offset as usize } else { bytes.len() };
        SegmentImage { key, bytes: &bytes[..end] }
    });
    let start = Checkpoint::empty(at(cut.dir, 0, 0));
    roll(start, cut, prefix, &|k| present.contains(&k)).unwrap()
}

/// `full` (a full scan) with the ledger told of the checkpoints `cks` (as
/// recovery from them tells it), so that what may be reclaimed follows
/// the same rule (see `Ledger::checkpointed`).
fn as_checkpointed(mut full: Recovered, cks: &BTreeMap<u16, Checkpoint>) -> Recovered {
    for ck in cks.values() {
        full.ledger.checkpointed(ck.cut);
    }
    full.reclaimable = full.ledger.deletable();
    full
}

/// What recovery returns that matters, comparable.
fn summary(r: &Recovered) -> impl PartialEq + std::fmt::Debug {
    let mut reclaimable = r.reclaimable.clone();
    reclaimable.sort();
    (r.messages.clone(), r.suppressions.clone(), reclaimable, r.last_queue_ids.clone(), r.tails.clone())
}

/// A random history of 120 steps with a checkpoint of each directory
/// after step 60: the segment images and the checkpoints.
fn history(seed: u64) -> (BTreeMap<SegmentKey, Vec<u8>>, BTreeMap<u16, Checkpoint>) {
    let mut h = History::new(seed);
    h.run(120, 60);
    let map = h.disk.finish();
    let present: BTreeSet<SegmentKey> = map.keys().copied().collect();
    let cks = h.cuts.iter().map(|(&d, &cut)| (d, take(&map, cut, &present))).collect();
    (map, cks)
}

/// For tests elsewhere (a core's adoption): the recovery of random
/// history `seed` from its checkpoints, the messages they hold left
/// undecoded (`recover_held`).
pub(crate) fn random_recovery(seed: u64) -> Recovered {
    let (map, cks) = history(seed);
    let cks = cks.into_iter().map(|(d, ck)| (d, checkpoint::decode_owned(checkpoint::encode(&ck)).unwrap())).collect();
    recover_held(images(&map), cks, &mut |_| {}).unwrap()
}

#[test]
fn recovery_from_checkpoints_equals_a_full_scan() {
    let (mut held, mut skipped, mut carried) = (0, 0, 0);
    for seed in 0..200 {
        let (map, cks) = history(seed);
        let full = as_checkpointed(recover_images(images(&map)).unwrap(), &cks);
        let from_ck = recover_with_checkpoints(images(&map), &cks, &mut |_| {}).unwrap();
        assert_eq!(summary(&from_ck), summary(&full), "seed {seed}");
        assert_eq!(from_ck.carried.to, full.carried.to, "seed {seed}");
        carried += full.carried.to.len();
        held += cks.values().map(|c| c.records.len() + c.tombstones.len() + c.states.len()).sum::<usize>();
        skipped += cks.values().filter(|c| c.cut.segment > 1).count();
    }
    // The histories exercise what they should: checkpoints hold records,
    // recovery skips whole segments, and states follow moved messages.
    assert!(held > 1000 && skipped > 100 && carried > 10, "held {held}, skipped {skipped}, carried {carried}");
}

/// What a server's restart uses (`recover_held`): each message a
/// checkpoint holds, read in place (envelope, live recipients, states),
/// says what the full scan's decoded message says; the others are decoded
/// as usual; and decoding the held ones gives the full scan's output.
#[test]
fn held_messages_read_in_place_equal_a_full_scan() {
    let (mut held, mut several_shares) = (0, 0);
    for seed in 0..200 {
        let (map, cks) = history(seed);
        let full = as_checkpointed(recover_images(images(&map)).unwrap(), &cks);
        let owned = cks.iter().map(|(&d, ck)| (d, checkpoint::decode_owned(checkpoint::encode(ck)).unwrap())).collect();
        let mut r = recover_held(images(&map), owned, &mut |_| {}).unwrap();
        let want: BTreeMap<SpoolRef, &LiveMessage> = full.messages.iter().map(|m| (m.at, m)).collect();
        for (h, states) in r.held.iter() {
            let w = want.get(&h.at).unwrap_or_else(|| panic!("seed {seed}: {:?} is not live", h.at));
            let e = r.held.envelope(h).unwrap();
            let read = (e.queue_id, e.received_at_ms, e.sender, e.client, e.helo, h.body_len);
            assert_eq!(
                read,
                (w.queue_id, w.received_at_ms, &*w.sender, &*w.client, &*w.helo, w.body_len),
                "seed {seed}"
            );
            let recipients: Vec<(u16, RecipientEntry)> = e
                .recipients()
                .filter(|(i, _, _)| h.live.contains(*i))
                .map(|(i, address, route)| {
                    let route = match route {
                        RouteView::Local { user } => Route::Local { user: user.into() },
                        RouteView::Remote { domain } => Route::Remote { domain: domain.into() },
                    };
                    (i, RecipientEntry::new(address, route))
                })
                .collect();
            assert_eq!(recipients, w.recipients, "seed {seed}");
            let states: Vec<_> = states.iter().map(|s| (s.recipient, s.clone().into_state())).collect();
            assert_eq!(states, w.states, "seed {seed}");
            let domains: BTreeSet<&str> = e
                .recipients()
                .filter_map(|(_, _, r)| match r {
                    RouteView::Remote { domain } => Some(domain),
                    RouteView::Local { .. } => None,
                })
                .collect();
            several_shares += usize::from(domains.len() > 1);
        }
        held += r.held.messages.len();
        assert_eq!(r.live_count(), full.messages.len(), "seed {seed}");
        r.decode_held();
        assert!(r.held.is_empty());
        assert_eq!(summary(&r), summary(&full), "seed {seed}");
    }
    assert!(held > 1000 && several_shares > 100, "held {held}, with several domains {several_shares}");
}

/// A directory's checkpoint file is read in place from a map of it (not
/// copied into memory); a missing file is no checkpoint, a damaged one or
/// one of another directory is not used.
#[test]
fn load_maps_the_file_and_refuses_what_is_not_this_directorys() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let ck = sample();
    let dir = ck.cut.dir;
    assert!(checkpoint_roll::load(root, dir).unwrap().is_none(), "no file: no checkpoint");
    let path = checkpoint_roll::checkpoint_path(root, dir);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let bytes = checkpoint::encode(&ck);
    std::fs::write(&path, &bytes).unwrap();
    let loaded = checkpoint_roll::load(root, dir).unwrap().unwrap();
    assert!(matches!(loaded.envelope_bytes, EnvelopeBytes::Mapped(_)), "{:?}", loaded.envelope_bytes);
    assert_eq!(loaded, ck);
    let other = checkpoint_roll::checkpoint_path(root, dir + 1);
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    std::fs::write(&other, &bytes).unwrap();
    assert!(checkpoint_roll::load(root, dir + 1).unwrap().is_none(), "another directory's file was used");
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    assert!(checkpoint_roll::load(root, dir).is_err(), "a torn file was used");
    std::fs::write(&path, b"").unwrap();
    assert!(checkpoint_roll::load(root, dir).is_err(), "an empty file was used");
}

/// A checkpoint read with [`checkpoint::decode_owned`] (its envelopes left
/// in the file's bytes) equals the one written, and the one `decode` reads.
#[test]
fn format_read_in_place_equals_the_copy() {
    for ck in [sample(), history(3).1.remove(&0).unwrap()] {
        let bytes = checkpoint::encode(&ck);
        let owned = checkpoint::decode_owned(bytes.clone()).unwrap();
        assert_eq!(owned.envelope_bytes.len(), bytes.len(), "the file's bytes, not a copy");
        assert_eq!(owned, ck);
        assert_eq!(checkpoint::decode(&bytes).unwrap(), owned);
        let envelopes = owned.records.iter().zip(&ck.records).map(|(a, b)| (owned.envelope(a), ck.envelope(b)));
        assert!(envelopes.clone().all(|(a, b)| a == b) && envelopes.clone().any(|(a, _)| a.is_some()));
    }
}

/// Taken before segments died (moved, delivered, or holding only states
/// the checkpoint holds) and were deleted: recovery from it gives what a
/// full scan of the spool before the deletions gives, recipient states
/// (schedules) included, though their records are gone.
#[test]
fn a_checkpoint_older_than_reclaims_and_moves_still_recovers_the_same() {
    let mut states_gone = 0;
    for seed in 0..200 {
        let mut h = History::new(seed);
        // Reclaiming the old segment of a move whose states are not
        // relocated yet is what a restart does only once it has recorded
        // them at the new place (see `states_at_a_moved_messages_old_place_
        // follow_it_from_checkpoints`); this history has no such crash.
        h.crashes = false;
        h.run(120, 40);
        let mut map = h.disk.finish();
        let present: BTreeSet<SegmentKey> = map.keys().copied().collect();
        let cks: BTreeMap<u16, Checkpoint> = h.cuts.iter().map(|(&d, &cut)| (d, take(&map, cut, &present))).collect();
        let before = as_checkpointed(recover_images(images(&map)).unwrap(), &cks);
        for key in &before.reclaimable {
            let kept_state =
                cks.values().any(|c| c.states.iter().any(|s| s.at.segment_key() == *key && s.content.is_some()));
            states_gone += usize::from(kept_state);
            map.remove(key);
        }
        // The newest cut's segment is never reclaimed: the checkpoint is used.
        let from_ck = recover_with_checkpoints(images(&map), &cks, &mut |_| {})
            .unwrap_or_else(|e| panic!("seed {seed}: checkpoint refused: {e}"));
        assert_eq!(from_ck.messages, before.messages, "seed {seed}");
        assert_eq!(from_ck.suppressions, before.suppressions, "seed {seed}");
        assert_eq!(from_ck.last_queue_ids, before.last_queue_ids, "seed {seed}");
        assert_eq!(from_ck.tails, before.tails, "seed {seed}");
        // And it agrees with a full scan of what is left, but for the states
        // that were only in the deleted segments.
        let after = recover_images(images(&map)).unwrap();
        let ids = |r: &Recovered| r.messages.iter().map(|m| (m.at, m.recipients.clone())).collect::<Vec<_>>();
        assert_eq!(ids(&from_ck), ids(&after), "seed {seed}");
    }
    assert!(states_gone >= 5, "segments of held states deleted in {states_gone} histories");
}

/// A message the checkpoint holds live is delivered after it; its segment
/// is reclaimed, and then the segment of the tombstone that ended it (its
/// target gone, it pins nothing). Nothing left says the message died: the
/// checkpoint is still used, the message is dead, and a deferral only the
/// checkpoint holds keeps its schedule (a full scan would lose it).
#[test]
fn a_message_held_live_whose_segment_and_tombstone_were_reclaimed_is_dead() {
    let mut d = Disk::default();
    let delivered = d.put(seg(0, 1), RecordKind::Message, &message(1, 1));
    let deferred = d.put(seg(0, 2), RecordKind::Message, &message(2, 1));
    d.put(seg(0, 3), RecordKind::RecipientState, &encoded(&state(deferred, 0, 7, 3, 9_000)));
    let cut = d.put(seg(0, 4), RecordKind::Checkpoint, &[]);
    d.put(seg(0, 5), RecordKind::Tombstone, &tombstone(delivered, 0));
    d.put(seg(0, 6), RecordKind::Message, &message(3, 1));
    let mut map = d.finish();
    let present: BTreeSet<SegmentKey> = map.keys().copied().collect();
    let ck = take(&map, cut, &present);
    let held: Vec<_> = ck.records.iter().map(|r| r.at).collect();
    assert_eq!(held, vec![delivered, deferred]);
    assert_eq!(ck.states.len(), 1, "the checkpoint holds the deferral");
    // Reclaimed after the checkpoint: the delivered message's segment, then
    // its tombstone's, then the state's (the checkpoint holds the state).
    for seq in [1, 5, 3] {
        map.remove(&seg(0, seq));
    }
    let cks = BTreeMap::from([(0, ck)]);
    let r = recover_with_checkpoints(images(&map), &cks, &mut |_| {}).expect("the checkpoint is used");
    assert_eq!(r.gone_with_segments, 1);
    let mut r = r;
    r.decode_held();
    let live: Vec<_> = r.messages.iter().map(|m| m.at).collect();
    assert_eq!(live.len(), 2, "{live:?}");
    assert!(!live.contains(&delivered) && live.contains(&deferred), "{live:?}");
    let schedule = |r: &Recovered| {
        let m = r.messages.iter().find(|m| m.at == deferred).expect("the deferred message");
        m.states.iter().map(|(_, s)| (s.attempts, s.next_attempt_ms)).collect::<Vec<_>>()
    };
    assert_eq!(schedule(&r), vec![(3, 9_000)], "the deferral's schedule");
    // A full scan of what is left agrees on the messages, not on the state.
    let full = recover_images(images(&map)).unwrap();
    let full_live: Vec<_> = full.messages.iter().map(|m| m.at).collect();
    assert_eq!(full_live, live);
    assert_eq!(schedule(&full), vec![], "a full scan has lost it");
}

/// As `states_at_a_moved_messages_old_place_follow_it`, with the `Moved`
/// record and the old place's states held by checkpoints (the crash came
/// after both directories' checkpoints): the checkpoints still say where
/// the message came from. Once the old segment is gone (the compaction
/// finished, its relocation's states durable), nothing is carried.
#[test]
fn states_at_a_moved_messages_old_place_follow_it_from_checkpoints() {
    let mut d = Disk::default();
    let old = d.put(seg(0, 1), RecordKind::Message, &message(7, 2));
    let held = RecipientState { held: true, ..state(old, 0, 5, 2, 9_000) };
    d.put(seg(1, 1), RecordKind::RecipientState, &encoded(&held));
    let new = d.put(seg(0, 2), RecordKind::Moved, &moved(old, &[1], 7, 2));
    let cuts = [d.put(seg(0, 3), RecordKind::Checkpoint, &[]), d.put(seg(1, 2), RecordKind::Checkpoint, &[])];
    let mut map = d.finish();
    let present: BTreeSet<SegmentKey> = map.keys().copied().collect();
    let cks: BTreeMap<u16, Checkpoint> = cuts.iter().map(|&cut| (cut.dir, take(&map, cut, &present))).collect();
    assert_eq!(cks[&1].states.len(), 1, "the old place's state is held");
    let full = recover_images(images(&map)).unwrap();
    let r = recover_with_checkpoints(images(&map), &cks, &mut |_| {}).expect("the checkpoints are used");
    for r in [&full, &r] {
        assert_eq!(r.messages.iter().map(|m| m.at).collect::<Vec<_>>(), [new]);
        assert_eq!(r.messages[0].states, [(0, RecipientState { target: new, ..held.clone() })]);
        assert_eq!(r.carried.to, [new]);
    }
    map.remove(&seg(0, 1));
    let r = recover_with_checkpoints(images(&map), &cks, &mut |_| {}).expect("the checkpoints are used");
    assert_eq!(r.messages.iter().map(|m| m.at).collect::<Vec<_>>(), [new]);
    assert_eq!((r.messages[0].states.len(), r.carried.to.len()), (0, 0));
}

#[test]
fn a_cut_without_its_checkpoint_record_is_not_trusted() {
    let mut d = Disk::default();
    d.put(seg(0, 1), RecordKind::Message, &message(1, 1));
    let cut = d.put(seg(0, 1), RecordKind::Checkpoint, &[]);
    let map = d.finish();
    let present: BTreeSet<SegmentKey> = map.keys().copied().collect();
    let ck = take(&map, cut, &present);
    // The marker torn off (the checkpoint claims a cut the log never reached).
    let mut torn = map.clone();
    let img = torn.get_mut(&seg(0, 1)).unwrap();
    img[cut.offset as usize..].fill(0);
    let r = recover_with_checkpoints(images(&torn), &BTreeMap::from([(0, ck.clone())]), &mut |_| {});
    assert!(matches!(r, Err(SpoolError::CheckpointUnusable { .. })), "{r:?}");
    // A cut in the middle of a record.
    let mut off = ck;
    off.cut.offset += 8;
    let r = recover_with_checkpoints(images(&map), &BTreeMap::from([(0, off)]), &mut |_| {});
    assert!(matches!(r, Err(SpoolError::CheckpointUnusable { .. })), "{r:?}");
}

#[test]
fn rolling_forward_equals_taking_from_scratch() {
    for seed in 0..100 {
        let mut h = History::new(seed);
        h.run(60, 30);
        let first = h.cuts.clone();
        h.run(60, 30);
        let map = h.disk.finish();
        let present: BTreeSet<SegmentKey> = map.keys().copied().collect();
        for dir in 0..2 {
            let older = take(&map, first[&dir], &present);
            let cut = h.cuts[&dir];
            let from = older.cut.segment;
            let prefix = map.iter().filter(|(k, _)| k.dir == dir && (from..=cut.segment).contains(&k.seq));
            let prefix = prefix.map(|(&key, bytes)| {
                let end = if key.seq == cut.segment { cut.offset as usize } else { bytes.len() };
                SegmentImage { key, bytes: &bytes[..end] }
            });
            let rolled = roll(older, cut, prefix, &|k| present.contains(&k)).unwrap();
            let scratch = take(&map, cut, &present);
            assert_eq!(comparable(rolled), comparable(scratch), "seed {seed} dir {dir}");
        }
    }
}

/// `ck` in a canonical order, with each record's envelope bytes in place
/// of where they are.
fn comparable(mut ck: Checkpoint) -> impl PartialEq + std::fmt::Debug {
    let mut records: Vec<_> = ck
        .records
        .iter()
        .map(|r| (r.at, r.kind, r.recipients, ck.envelope(r).map(<[u8]>::to_vec), r.envelope.map(|e| e.body_len)))
        .collect();
    records.sort_by_key(|r| r.0);
    ck.tombstones.sort_by_key(|t| (t.at, t.target, t.recipient));
    (ck.cut, ck.last_queue_id, records, ck.tombstones, ck.states)
}

/// A checkpoint holds the envelope of each message it holds: recovery
/// does not read the message record (here made unreadable) and still
/// returns the message as a full scan of the intact record does.
#[test]
fn a_held_envelope_is_not_read_from_its_record() {
    let mut d = Disk::default();
    let m = d.put(seg(0, 1), RecordKind::Message, &message(1, 2));
    let s = state(m, 1, 3, 2, 9_000);
    d.put(seg(0, 1), RecordKind::RecipientState, &encoded(&s));
    let cut = d.put(seg(0, 2), RecordKind::Checkpoint, &[]);
    let mut map = d.finish();
    let present: BTreeSet<SegmentKey> = map.keys().copied().collect();
    let ck = take(&map, cut, &present);
    assert!(ck.records[0].envelope.is_some() && ck.states[0].content.is_some());
    let ck = checkpoint::decode(&checkpoint::encode(&ck)).unwrap();
    let full = recover_images(images(&map)).unwrap();
    assert_eq!(full.messages[0].states, [(1, s)]);
    // The message's record and the state's record scrambled after their headers.
    map.get_mut(&seg(0, 1)).unwrap()[40..160].fill(0x5a);
    let cks = BTreeMap::from([(0, ck)]);
    let r = recover_with_checkpoints(images(&map), &cks, &mut |_| {}).unwrap();
    assert_eq!(r.messages, full.messages);
    // Without the checkpoint the record is read, and found damaged.
    assert!(recover_images(images(&map)).is_err() || recover_images(images(&map)).unwrap().messages != full.messages);
}

/// Power loss while mail is written and a checkpoint is being taken, on the
/// simulated disk: the checkpoint file may be torn (or not written at all)
/// and the log after the cut torn anywhere; recovery from what is left
/// gives what a full scan gives, every acknowledged message included.
#[test]
fn power_loss_while_checkpointing_loses_nothing() {
    use super::sim::{CrashMode, Faults, SimDisk};
    use super::writer::{Spool, SpoolConfig};
    use std::cell::RefCell;
    use std::rc::Rc;

    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("glommio executor (needs io_uring and memlock)")
        .run(async {
            let mut used = 0;
            for seed in 0..90u64 {
                let mut rng = StdRng::seed_from_u64(seed);
                let disk = SimDisk::new(seed, Faults::default());
                let spool = Spool::new(disk.store(0), 0, SpoolConfig { segment_size: 16 << 10 }, None).unwrap();
                // Acknowledged messages, and those a tombstone was written for.
                let acked = Rc::new(RefCell::new(Vec::<SpoolRef>::new()));
                let touched = Rc::new(RefCell::new(BTreeSet::<SpoolRef>::new()));
                let writer = {
                    let (spool, acked, touched) = (spool.clone(), acked.clone(), touched.clone());
                    glommio::spawn_local(async move {
                        let mut rng = StdRng::seed_from_u64(seed + 7);
                        for id in 0..400u64 {
                            let at = spool.append_durable(RecordKind::Message, &[&message(id + 1, 2)]).await;
                            let Ok(at) = at else { return };
                            acked.borrow_mut().push(at);
                            if rng.gen_bool(0.4) {
                                let target = acked.borrow()[rng.gen_range(0..acked.borrow().len())];
                                touched.borrow_mut().insert(target);
                                let r = rng.gen_range(0..2);
                                let _ = spool.append_durable(RecordKind::Tombstone, &[&tombstone(target, r)]).await;
                            }
                        }
                    })
                };
                for _ in 0..rng.gen_range(10..200) {
                    futures_lite::future::yield_now().await;
                }
                let cut = spool.append_durable(RecordKind::Checkpoint, &[]).await.unwrap();
                let at_cut = disk.crash(CrashMode::DropUnsynced);
                let present: BTreeSet<SegmentKey> = at_cut.keys().copied().collect();
                let mut file = checkpoint::encode(&take(&at_cut, cut, &present));
                // The power fails while (or before) the file is written.
                match rng.gen_range(0..3) {
                    0 => file.truncate(rng.gen_range(0..file.len())),
                    1 => file.clear(),
                    _ => {}
                }
                for _ in 0..rng.gen_range(0..200) {
                    futures_lite::future::yield_now().await;
                }
                let before = acked.borrow().clone();
                let disk_after = disk.crash(CrashMode::ALL[seed as usize % 3]);
                drop(writer);
                // What recovery would have zeroed does not matter here.
                let full = recover_images(images(&disk_after)).unwrap();
                let cks: BTreeMap<u16, Checkpoint> = checkpoint::decode(&file).into_iter().map(|c| (0, c)).collect();
                let (recovered, full) = match recover_with_checkpoints(images(&disk_after), &cks, &mut |_| {}) {
                    Ok(r) => {
                        used += usize::from(!cks.is_empty());
                        (r, as_checkpointed(full, &cks))
                    }
                    Err(SpoolError::CheckpointUnusable { .. }) => (recover_images(images(&disk_after)).unwrap(), full),
                    Err(e) => panic!("seed {seed}: {e}"),
                };
                assert_eq!(summary(&recovered), summary(&full), "seed {seed}");
                let live: BTreeSet<SpoolRef> = recovered.messages.iter().map(|m| m.at).collect();
                for at in before.iter().filter(|at| !touched.borrow().contains(at)) {
                    assert!(live.contains(at), "seed {seed}: acknowledged {at} lost");
                }
            }
            assert!(used > 20, "checkpoints used in {used} of 90 crashes");
        });
}
