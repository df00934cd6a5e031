//! Tests of the pure recovery core over hand-made segment images.

use std::collections::BTreeMap;

use super::ids::{QueueId, SegmentKey, SpoolRef};
use super::payload::{
    encode_message, encode_recipient_state, encode_tombstone, MessageRecord, Outcome, RecipientEntry, RecipientState,
    Route, Tombstone,
};
use super::record::{encode_into, BadRecord, RecordKind};
use super::recovery::{recover_images, Repair, SegmentImage};
use super::writer::Tail;
use super::SpoolError;

const SIZE: usize = 4096;

pub(super) fn message(id: u64, rcpts: usize) -> Vec<u8> {
    encode_message(&MessageRecord {
        queue_id: QueueId(id),
        received_at_ms: 1,
        client: "127.0.0.1".into(),
        helo: "me".into(),
        sender: "a@example.test".into(),
        // Routes vary with the id: local users, and two relayed domains
        // (so that one message may make several queue shares).
        recipients: (0..rcpts as u64)
            .map(|i| match (id + i) % 5 {
                0 => RecipientEntry::new(format!("u{i}@local.test"), Route::Local { user: format!("u{i}") }),
                1 | 2 => RecipientEntry::new(format!("r{i}@b.test"), Route::Remote { domain: "b.test".into() }),
                _ => RecipientEntry::new(format!("r{i}@example.test"), Route::Remote { domain: "example.test".into() }),
            })
            .collect(),
        ext: Default::default(),
        body: b"hello\r\n",
    })
    .unwrap()
}

pub(super) fn tombstone(target: SpoolRef, recipient: u16) -> Vec<u8> {
    encode_tombstone(&Tombstone { target, recipient, outcome: Outcome::Delivered }).to_vec()
}

pub(super) fn state(target: SpoolRef, recipient: u16, seq: u64, attempts: u32, next_attempt_ms: u64) -> RecipientState {
    RecipientState {
        target,
        recipient,
        seq,
        attempts,
        next_attempt_ms,
        warned: false,
        held: false,
        last_error: format!("451 4.4.1 attempt {attempts}"),
    }
}

pub(super) fn encoded(s: &RecipientState) -> Vec<u8> {
    encode_recipient_state(s).unwrap()
}

/// Builds segment images record by record; returns each record's place.
#[derive(Default)]
pub(super) struct Disk {
    images: BTreeMap<SegmentKey, Vec<u8>>,
}

impl Disk {
    pub(super) fn put(&mut self, key: SegmentKey, kind: RecordKind, payload: &[u8]) -> SpoolRef {
        let img = self.images.entry(key).or_default();
        let offset = img.len() as u32;
        encode_into(img, kind, key, &[payload]);
        SpoolRef { dir: key.dir, segment: key.seq, offset }
    }

    pub(super) fn finish(&mut self) -> BTreeMap<SegmentKey, Vec<u8>> {
        let mut images = std::mem::take(&mut self.images);
        for img in images.values_mut() {
            img.resize(SIZE, 0);
        }
        images
    }
}

fn recover(images: &BTreeMap<SegmentKey, Vec<u8>>) -> Result<super::Recovered, SpoolError> {
    recover_images(images.iter().map(|(&key, bytes)| SegmentImage { key, bytes }))
}

pub(super) fn seg(dir: u16, seq: u32) -> SegmentKey {
    SegmentKey { dir, seq }
}

#[test]
fn empty_spool_recovers_nothing() {
    let r = recover(&BTreeMap::new()).unwrap();
    assert!(r.messages.is_empty() && r.tails.is_empty() && r.torn.is_empty());
}

#[test]
fn messages_recover_with_tail_after_last_record() {
    let mut d = Disk::default();
    let a = d.put(seg(0, 0), RecordKind::Message, &message(5, 1));
    let b = d.put(seg(0, 0), RecordKind::Message, &message(9, 2));
    let images = d.finish();
    let r = recover(&images).unwrap();
    assert_eq!(r.messages.iter().map(|m| m.at).collect::<Vec<_>>(), [a, b]);
    assert_eq!(r.messages[1].recipients.len(), 2);
    assert_eq!(r.messages[0].body_len, 7);
    let end = super::record::record_len(message(9, 2).len()) as u32 + b.offset;
    assert_eq!(r.tails[&0], Tail { segment: 0, offset: end, size: SIZE as u64 });
    assert_eq!(r.last_queue_ids[&0], QueueId(9));
    assert!(r.repairs.is_empty());
}

#[test]
fn torn_tail_is_cut_reported_and_zeroed() {
    let mut d = Disk::default();
    let a = d.put(seg(0, 0), RecordKind::Message, &message(1, 1));
    let b = d.put(seg(0, 0), RecordKind::Message, &message(2, 1));
    let mut images = d.finish();
    let img = images.get_mut(&seg(0, 0)).unwrap();
    img[b.offset as usize + 30] ^= 0xff;
    let r = recover(&images).unwrap();
    assert_eq!(r.messages.iter().map(|m| m.at).collect::<Vec<_>>(), [a]);
    assert_eq!(r.torn.len(), 1);
    assert_eq!((r.torn[0].segment, r.torn[0].offset), (0, b.offset));
    assert!(matches!(r.torn[0].reason, BadRecord::BadCrc { .. }));
    assert_eq!(r.tails[&0].offset, b.offset);
    // Everything from the cut to the last non-zero byte is zeroed.
    let to = super::record::end_of_nonzero(&images[&seg(0, 0)], 0).unwrap() as u32;
    assert!(to > b.offset + 24);
    assert_eq!(r.repairs, [Repair { key: seg(0, 0), from: b.offset, to }]);
}

#[test]
fn stale_bytes_after_a_zero_header_are_zeroed() {
    // A torn batch whose first sector was lost but a later one survived.
    let mut d = Disk::default();
    d.put(seg(0, 0), RecordKind::Message, &message(1, 1));
    let mut images = d.finish();
    images.get_mut(&seg(0, 0)).unwrap()[1000] = 0x42;
    let r = recover(&images).unwrap();
    assert!(r.torn.is_empty());
    assert_eq!(r.repairs.len(), 1);
    assert_eq!(r.repairs[0].from, r.tails[&0].offset);
    assert_eq!(r.repairs[0].to, 1001);
}

#[test]
fn tombstones_remove_recipients_and_dead_messages() {
    let mut d = Disk::default();
    let a = d.put(seg(0, 0), RecordKind::Message, &message(1, 2));
    let b = d.put(seg(0, 0), RecordKind::Message, &message(2, 1));
    d.put(seg(0, 1), RecordKind::Tombstone, &tombstone(a, 0));
    d.put(seg(0, 1), RecordKind::Tombstone, &tombstone(b, 0));
    let r = recover(&d.finish()).unwrap();
    assert_eq!(r.messages.len(), 1);
    assert_eq!(r.messages[0].at, a);
    assert_eq!(r.messages[0].recipients.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1]);
    assert!(r.reclaimable.is_empty());
}

#[test]
fn tombstone_in_another_dir_applies_globally() {
    let mut d = Disk::default();
    d.put(seg(1, 3), RecordKind::Tombstone, &tombstone(SpoolRef { dir: 0, segment: 0, offset: 0 }, 0));
    let a = d.put(seg(0, 0), RecordKind::Message, &message(1, 1));
    assert_eq!(a.offset, 0);
    d.put(seg(0, 1), RecordKind::Message, &message(2, 1));
    let r = recover(&d.finish()).unwrap();
    assert_eq!(r.messages.len(), 1);
    assert_eq!(r.messages[0].queue_id, QueueId(2));
    // Segment 0:0 is dead and not a write segment; 1:3 is its dir's tail.
    assert_eq!(r.reclaimable, [seg(0, 0)]);
}

#[test]
fn fully_dead_segments_are_reclaimable_but_tails_are_not() {
    let mut d = Disk::default();
    let a = d.put(seg(0, 0), RecordKind::Message, &message(1, 1));
    d.put(seg(0, 1), RecordKind::Tombstone, &tombstone(a, 0));
    d.put(seg(0, 2), RecordKind::Checkpoint, &[]);
    let r = recover(&d.finish()).unwrap();
    assert_eq!(r.reclaimable, [seg(0, 0)]);
    assert_eq!(r.tails[&0].segment, 2);
}

#[test]
fn misplaced_segment_file_is_refused_untouched() {
    let mut d = Disk::default();
    d.put(seg(0, 0), RecordKind::Message, &message(1, 1));
    let mut images = d.finish();
    let img = images.remove(&seg(0, 0)).unwrap();
    images.insert(seg(0, 5), img);
    let err = recover(&images).unwrap_err();
    assert!(matches!(
        err,
        SpoolError::UnreadableRecord { segment: 5, reason: BadRecord::Misplaced { segment: 0, .. }, .. }
    ));
}

#[test]
fn undecodable_message_with_good_crc_is_an_error() {
    let mut d = Disk::default();
    let at = d.put(seg(0, 0), RecordKind::Message, b"short");
    let err = recover(&d.finish()).unwrap_err();
    assert!(matches!(err, SpoolError::Undecodable { at: a, .. } if a == at));
}

#[test]
fn recipient_state_comes_back_on_its_live_message() {
    let mut d = Disk::default();
    let a = d.put(seg(0, 0), RecordKind::Message, &message(1, 2));
    let s = RecipientState { warned: true, held: true, ..state(a, 1, 1, 3, 9_000) };
    d.put(seg(0, 0), RecordKind::RecipientState, &encoded(&s));
    let r = recover(&d.finish()).unwrap();
    assert_eq!(r.messages.len(), 1);
    assert_eq!(r.messages[0].states, [(1, s)]);
}

#[test]
fn message_without_states_recovers_with_none() {
    let mut d = Disk::default();
    d.put(seg(0, 0), RecordKind::Message, &message(1, 1));
    let r = recover(&d.finish()).unwrap();
    assert!(r.messages[0].states.is_empty());
}

#[test]
fn highest_seq_wins_across_dirs_whatever_the_record_order() {
    // The recipient's owner moved from core 1 to core 0 (core count changed):
    // its newer states are in dir 0, which sorts before dir 1.
    let mut d = Disk::default();
    let a = d.put(seg(0, 0), RecordKind::Message, &message(1, 2));
    let newest = RecipientState { held: true, ..state(a, 0, 3, 2, 5_000) };
    d.put(seg(0, 1), RecordKind::RecipientState, &encoded(&state(a, 0, 2, 2, 8_000)));
    d.put(seg(0, 1), RecordKind::RecipientState, &encoded(&newest));
    d.put(seg(1, 4), RecordKind::RecipientState, &encoded(&state(a, 0, 1, 1, 2_000)));
    d.put(seg(1, 4), RecordKind::RecipientState, &encoded(&state(a, 1, 7, 4, 1_000)));
    d.put(seg(1, 5), RecordKind::RecipientState, &encoded(&state(a, 1, 8, 4, 900)));
    let r = recover(&d.finish()).unwrap();
    assert_eq!(r.messages.len(), 1);
    // Neither attempts nor next_attempt_ms decide: a hold or a flush moves
    // neither forward.
    assert_eq!(r.messages[0].states, [(0, newest), (1, state(a, 1, 8, 4, 900))]);
}

#[test]
fn equal_seq_is_decided_by_record_order() {
    let mut d = Disk::default();
    let a = d.put(seg(0, 0), RecordKind::Message, &message(1, 1));
    d.put(seg(0, 0), RecordKind::RecipientState, &encoded(&state(a, 0, 4, 1, 1_000)));
    d.put(seg(2, 0), RecordKind::RecipientState, &encoded(&state(a, 0, 4, 2, 2_000)));
    d.put(seg(1, 0), RecordKind::RecipientState, &encoded(&state(a, 0, 4, 3, 3_000)));
    let r = recover(&d.finish()).unwrap();
    assert_eq!(r.messages[0].states, [(0, state(a, 0, 4, 2, 2_000))]);
}

#[test]
fn states_of_tombstoned_recipients_are_dropped() {
    let mut d = Disk::default();
    let a = d.put(seg(0, 0), RecordKind::Message, &message(1, 2));
    d.put(seg(0, 0), RecordKind::RecipientState, &encoded(&state(a, 0, 1, 1, 1_000)));
    d.put(seg(0, 0), RecordKind::RecipientState, &encoded(&state(a, 1, 1, 1, 1_000)));
    d.put(seg(0, 1), RecordKind::Tombstone, &tombstone(a, 0));
    // A state written after the tombstone (a late retry) changes nothing.
    d.put(seg(0, 1), RecordKind::RecipientState, &encoded(&state(a, 0, 2, 2, 2_000)));
    let r = recover(&d.finish()).unwrap();
    assert_eq!(r.messages[0].recipients.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1]);
    assert_eq!(r.messages[0].states, [(1, state(a, 1, 1, 1, 1_000))]);
}

#[test]
fn states_of_dead_missing_or_unknown_targets_are_ignored() {
    let mut d = Disk::default();
    let dead = d.put(seg(0, 0), RecordKind::Message, &message(1, 1));
    let tomb = d.put(seg(0, 1), RecordKind::Tombstone, &tombstone(dead, 0));
    let live = d.put(seg(0, 1), RecordKind::Message, &message(2, 1));
    for s in [
        state(dead, 0, 1, 1, 1_000),
        // Its segment was reclaimed.
        state(SpoolRef { dir: 0, segment: 0x99, offset: 0 }, 0, 1, 1, 1_000),
        // A record that exists but is no message.
        state(tomb, 0, 1, 1, 1_000),
        // A recipient index the message does not have.
        state(live, 1, 1, 1, 1_000),
    ] {
        d.put(seg(0, 2), RecordKind::RecipientState, &encoded(&s));
    }
    let r = recover(&d.finish()).unwrap();
    assert_eq!(r.messages.iter().map(|m| m.at).collect::<Vec<_>>(), [live]);
    assert!(r.messages[0].states.is_empty());
    assert!(r.torn.is_empty());
}

#[test]
fn segment_of_states_and_dead_messages_is_reclaimable() {
    let mut d = Disk::default();
    let live = d.put(seg(0, 0), RecordKind::Message, &message(1, 1));
    let dead = d.put(seg(0, 1), RecordKind::Message, &message(2, 1));
    d.put(seg(0, 1), RecordKind::RecipientState, &encoded(&state(live, 0, 1, 1, 1_000)));
    d.put(seg(0, 1), RecordKind::RecipientState, &encoded(&state(dead, 0, 1, 1, 1_000)));
    // Another dir's segment of nothing but states, pointing into dir 0.
    d.put(seg(1, 0), RecordKind::RecipientState, &encoded(&state(live, 0, 2, 2, 2_000)));
    d.put(seg(1, 1), RecordKind::Checkpoint, &[]);
    d.put(seg(0, 2), RecordKind::Tombstone, &tombstone(dead, 0));
    let r = recover(&d.finish()).unwrap();
    // States pin nothing, but their segments wait for a checkpoint that
    // holds them (none here).
    assert_eq!(r.reclaimable, []);
    assert_eq!(r.messages[0].states, [(0, state(live, 0, 2, 2, 2_000))]);
    let mut ledger = r.ledger;
    assert_eq!(ledger.checkpointed(SpoolRef { dir: 0, segment: 2, offset: 0 }), [seg(0, 1)]);
    assert_eq!(ledger.checkpointed(SpoolRef { dir: 1, segment: 1, offset: 0 }), [seg(1, 0)]);
    assert_eq!(ledger.deletable(), [seg(0, 1), seg(1, 0)]);
}

#[test]
fn undecodable_recipient_state_with_good_crc_is_an_error() {
    let mut d = Disk::default();
    let a = d.put(seg(0, 0), RecordKind::Message, &message(1, 1));
    let good = encoded(&state(a, 0, 1, 1, 1_000));
    let garbage = [0xffu8; 40];
    for payload in [&good[..good.len() - 1], &good[..10], &[][..], &garbage[..]] {
        let mut d2 = Disk { images: d.images.clone() };
        let at = d2.put(seg(0, 0), RecordKind::RecipientState, payload);
        let err = recover(&d2.finish()).unwrap_err();
        assert!(matches!(err, SpoolError::Undecodable { at: e, .. } if e == at), "{err:?}");
    }
    let mut extra = good.clone();
    extra.push(0);
    let at = d.put(seg(0, 0), RecordKind::RecipientState, &extra);
    assert!(matches!(recover(&d.finish()), Err(SpoolError::Undecodable { at: e, .. }) if e == at));
}

pub(super) fn moved(old: SpoolRef, done: &[u16], id: u64, rcpts: usize) -> Vec<u8> {
    let mut p = super::payload::encode_moved_head(old, done);
    p.extend_from_slice(&message(id, rcpts));
    p
}

#[test]
fn a_moved_message_supersedes_its_old_copy_and_keeps_final_recipients_final() {
    let mut d = Disk::default();
    // Recipient 0 of a 3-recipient message was delivered before the move.
    let old = d.put(seg(0, 0), RecordKind::Message, &message(7, 3));
    d.put(seg(0, 1), RecordKind::Tombstone, &tombstone(old, 0));
    let new = d.put(seg(0, 2), RecordKind::Moved, &moved(old, &[0], 7, 3));
    // Recipient 1 delivered after the move (tombstoned at the new place).
    d.put(seg(0, 2), RecordKind::Tombstone, &tombstone(new, 1));
    let images = d.finish();
    let r = recover(&images).unwrap();
    assert_eq!(r.messages.len(), 1, "the old copy is dead: {:?}", r.messages);
    assert_eq!(r.messages[0].at, new);
    assert_eq!(r.messages[0].queue_id, QueueId(7));
    assert_eq!(r.messages[0].recipients.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [2]);
    // The old segment holds nothing live and nothing pins it but the
    // Moved record's segment (which is the write segment): reclaimable.
    assert!(r.reclaimable.contains(&seg(0, 0)), "{:?}", r.reclaimable);

    // With the old segment gone (compacted), the same holds.
    let mut without_old = images.clone();
    without_old.remove(&seg(0, 0));
    let r = recover(&without_old).unwrap();
    assert_eq!(r.messages.iter().map(|m| m.at).collect::<Vec<_>>(), [new]);
    assert_eq!(r.messages[0].recipients.len(), 1);
}

/// A crash after compaction's `Moved` record was durable and before the
/// cores recorded the moved message's states at its new place: the states
/// at the old place (here in another core's directory) go with the
/// message, a hold included, unless the new place has a later one.
#[test]
fn states_at_a_moved_messages_old_place_follow_it() {
    let mut d = Disk::default();
    let old = d.put(seg(0, 0), RecordKind::Message, &message(7, 3));
    let held = RecipientState { held: true, ..state(old, 1, 5, 2, 9_000) };
    d.put(seg(1, 0), RecordKind::RecipientState, &encoded(&held));
    d.put(seg(1, 0), RecordKind::RecipientState, &encoded(&state(old, 2, 3, 1, 4_000)));
    let new = d.put(seg(0, 1), RecordKind::Moved, &moved(old, &[], 7, 3));
    // Recipient 2's relocation record made it to disk; recipient 1's did not.
    d.put(seg(1, 1), RecordKind::RecipientState, &encoded(&state(new, 2, 4, 1, 4_000)));
    let before = d.images.clone();
    let r = recover(&d.finish()).unwrap();
    assert_eq!(r.messages.iter().map(|m| m.at).collect::<Vec<_>>(), [new]);
    let carried = RecipientState { target: new, ..held };
    assert_eq!(r.messages[0].states, [(1, carried), (2, state(new, 2, 4, 1, 4_000))]);
    assert_eq!(r.carried.to, [new]);
    assert_eq!(r.carried.from, [seg(0, 0)]);

    // Moved twice before the crash: the states follow to the last place.
    let mut d2 = Disk { images: before.clone() };
    let newer = d2.put(seg(0, 2), RecordKind::Moved, &moved(new, &[], 7, 3));
    let r = recover(&d2.finish()).unwrap();
    assert_eq!(r.messages.iter().map(|m| m.at).collect::<Vec<_>>(), [newer]);
    let states: Vec<_> = r.messages[0].states.iter().map(|(i, s)| (*i, s.target, s.seq, s.held)).collect();
    assert_eq!(states, [(1, newer, 5, true), (2, newer, 4, false)]);

    // A later state at the new place wins; an older one does not.
    let mut d3 = Disk { images: before.clone() };
    d3.put(seg(1, 1), RecordKind::RecipientState, &encoded(&state(new, 1, 6, 3, 20_000)));
    let r = recover(&d3.finish()).unwrap();
    assert_eq!(r.messages[0].states[0], (1, state(new, 1, 6, 3, 20_000)));
    assert_eq!(r.carried.to, []);
    let mut d4 = Disk { images: before };
    d4.put(seg(1, 1), RecordKind::RecipientState, &encoded(&state(new, 1, 4, 3, 20_000)));
    let r = recover(&d4.finish()).unwrap();
    assert!(r.messages[0].states[0].1.held, "{:?}", r.messages[0].states);
    assert_eq!(r.carried.to, [new]);
}

#[test]
fn a_moved_record_torn_off_leaves_the_old_copy_whole() {
    let mut d = Disk::default();
    let old = d.put(seg(0, 0), RecordKind::Message, &message(3, 2));
    let new = d.put(seg(0, 1), RecordKind::Moved, &moved(old, &[], 3, 2));
    let mut images = d.finish();
    images.get_mut(&seg(0, 1)).unwrap()[new.offset as usize + 40] ^= 0xff;
    let r = recover(&images).unwrap();
    assert_eq!(r.messages.iter().map(|m| m.at).collect::<Vec<_>>(), [old]);
    assert_eq!(r.messages[0].recipients.len(), 2);
}

pub(super) fn suppression(address: &str, since_ms: u64, replaces: Option<SpoolRef>) -> Vec<u8> {
    super::encode_suppression(&super::SuppressionRecord {
        address: address.into(),
        since_ms,
        until_ms: since_ms + 1000,
        class: "invalid-recipient".into(),
        reason: "550 5.1.1 no such user".into(),
        replaces,
    })
    .unwrap()
}

#[test]
fn live_suppressions_are_recovered_and_keep_their_segment() {
    let mut d = Disk::default();
    let kept = d.put(seg(0, 0), RecordKind::Suppression, &suppression("a@x.test", 1, None));
    let ended = d.put(seg(0, 0), RecordKind::Suppression, &suppression("b@x.test", 2, None));
    d.put(seg(0, 1), RecordKind::Tombstone, &tombstone(ended, 0));
    let r = recover(&d.finish()).unwrap();
    let live: Vec<_> = r.suppressions.iter().map(|s| (s.at, s.record.address.as_str())).collect();
    assert_eq!(live, [(kept, "a@x.test")]);
    assert!(r.messages.is_empty(), "a suppression is not a message");
    assert!(r.reclaimable.is_empty(), "segment 0 holds a live entry");
}

#[test]
fn a_compaction_copy_of_a_suppression_supersedes_its_old_place() {
    let mut d = Disk::default();
    let old = d.put(seg(0, 0), RecordKind::Suppression, &suppression("a@x.test", 1, None));
    let new = d.put(seg(0, 1), RecordKind::Suppression, &suppression("a@x.test", 1, Some(old)));
    d.put(seg(0, 2), RecordKind::Checkpoint, &[]);
    let r = recover(&d.finish()).unwrap();
    assert_eq!(r.suppressions.iter().map(|s| s.at).collect::<Vec<_>>(), [new]);
    assert_eq!(r.reclaimable, [seg(0, 0)], "the old copy's segment may go");
}

/// The latest state per recipient wins, wherever it was found: held by
/// one of several checkpoints (a recipient's states may lie in more than
/// one directory) or scanned after a cut; a later held one beats an
/// earlier scanned one and the other way round.
#[test]
fn resolved_states_keep_the_latest_per_recipient() {
    use super::checkpoint::HeldState;
    use super::recovery_checkpoint::States;
    let target = |segment| SpoolRef { dir: 0, segment, offset: 0 };
    let at = |dir, offset| SpoolRef { dir, segment: 9, offset };
    let held = |place: SpoolRef, t: SpoolRef, seq| HeldState { at: place, target: t, recipient: 0, seq, content: None };
    // Target 1: held twice (dirs 0 and 1), the later (seq 5) in dir 0.
    // Target 2: held at seq 3, scanned at seq 4: the scanned one wins.
    // Target 3: held at seq 7, scanned at seq 6 (an earlier one): held wins.
    // Target 4: scanned only, twice: the higher seq wins.
    let mut states = States {
        held: vec![held(at(0, 8), target(1), 5), held(at(0, 16), target(2), 3), held(at(0, 24), target(3), 7)],
        ..States::default()
    };
    states.held.push(held(at(1, 8), target(1), 4));
    states.scanned(at(1, 64), state(target(2), 0, 4, 2, 0));
    states.scanned(at(1, 72), state(target(3), 0, 6, 1, 0));
    states.scanned(at(1, 80), state(target(4), 0, 2, 1, 0));
    states.scanned(at(1, 88), state(target(4), 0, 1, 1, 0));
    states.resolve();
    let held: Vec<_> = states.held.iter().map(|h| (h.target, h.seq, h.at)).collect();
    assert_eq!(held, [(target(1), 5, at(0, 8)), (target(3), 7, at(0, 24))]);
    let mut scanned: Vec<_> = states.scanned.iter().map(|(k, v)| (k.0, v.1, v.0)).collect();
    scanned.sort();
    assert_eq!(scanned, [(target(2), 4, at(1, 64)), (target(4), 2, at(1, 80))]);
}
