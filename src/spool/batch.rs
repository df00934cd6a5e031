//! The synchronous half of the write path: where the next record goes
//! (reservation, rollover, abandoning a failed segment), the write batches
//! waiting for the committer, and the [`Commit`] each batch's waiters share.
//!
//! No I/O and no awaits here: `Spool::append` runs this to completion, and
//! the committer takes sealed batches out of it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};

use super::error::SpoolError;
use super::ids::{SegmentKey, SpoolRef};
use super::record::{encode_head, encode_into, record_len, RecordKind, HEADER_LEN};

/// The outcome every record of one batch shares, and who waits for it.
#[derive(Debug, Default)]
pub(crate) struct Commit {
    /// `None` until the batch's sync (or failure) is known.
    outcome: RefCell<Option<Result<(), SpoolError>>>,
    /// Tasks in `Spool::durable` waiting for this batch.
    wakers: RefCell<Vec<Waker>>,
}

impl Commit {
    pub(crate) fn outcome(&self) -> Option<Result<(), SpoolError>> {
        self.outcome.borrow().clone()
    }

    /// Records the outcome and wakes every waiter.
    pub(crate) fn settle(&self, outcome: Result<(), SpoolError>) {
        *self.outcome.borrow_mut() = Some(outcome);
        self.wake_all();
    }

    /// Wakes every waiter without settling (so one of them can start the
    /// next commit round).
    pub(crate) fn wake_all(&self) {
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for w in wakers {
            w.wake();
        }
    }

    /// Resolves once the commit is settled or no round is in flight.
    pub(crate) fn wait<'a>(&'a self, in_flight: &'a Cell<bool>) -> impl Future<Output = ()> + 'a {
        std::future::poll_fn(move |cx| {
            if self.outcome.borrow().is_some() || !in_flight.get() {
                return Poll::Ready(());
            }
            let mut wakers = self.wakers.borrow_mut();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

/// Records bound for one contiguous range of one segment, written by one
/// `write_at` per extent and covered by one `sync_data`.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Segment sequence number.
    pub(crate) seq: u32,
    /// The encoded records, back to back, padding included, in extents that
    /// follow each other in the file.
    pub(crate) extents: Vec<Extent>,
    /// Number of records in the extents.
    pub(crate) records: u32,
    /// Shared with every ticket handed out for these records.
    pub(crate) commit: Rc<Commit>,
}

/// Bytes of a batch for one `write_at`. An extent never grows past its
/// first capacity: a record that does not fit starts a new one, so no record
/// is copied twice (a growing buffer of 1 MiB records cost more than the
/// copy into it). A large owned tail (see [`WriteState::reserve_owned`]) is
/// an extent of its own, not copied at all: its record's header and first
/// parts end the extent before it, and its padding starts the next one.
#[derive(Debug)]
pub(crate) struct Extent {
    /// File offset of `buf[0]`.
    pub(crate) start: u32,
    pub(crate) buf: Vec<u8>,
}

/// The capacity of a new extent, unless its first record needs more: small
/// records share extents of this size.
const EXTENT_MIN: usize = 256 << 10;

/// An owned tail at least this long becomes an extent of its own instead of
/// being copied: below it, the copy costs less than another `write_at`.
pub(crate) const OWN_EXTENT_MIN: usize = 64 << 10;

impl Batch {
    /// The extent `len` more bytes starting at file offset `at` go into.
    fn extent_for(&mut self, at: u32, len: usize) -> &mut Vec<u8> {
        let fits = self.extents.last().is_some_and(|e| e.buf.capacity() - e.buf.len() >= len);
        if !fits {
            self.extents.push(Extent { start: at, buf: Vec::with_capacity(len.max(EXTENT_MIN)) });
        }
        let last = self.extents.len() - 1;
        &mut self.extents[last].buf
    }

    /// Takes `tail` as the extent starting at file offset `at`, followed by
    /// `pad` zero bytes (in its spare capacity, or starting the next extent).
    fn own_extent(&mut self, at: u32, mut tail: Vec<u8>, pad: usize) {
        let end = at as usize + tail.len();
        if tail.capacity() - tail.len() >= pad {
            tail.resize(tail.len() + pad, 0);
            self.extents.push(Extent { start: at, buf: tail });
        } else {
            self.extents.push(Extent { start: at, buf: tail });
            // `end` is within the segment, so within u32.
            let buf = self.extent_for(end as u32, pad);
            buf.resize(buf.len() + pad, 0);
        }
    }
}

/// Where appends go and what waits to be written.
#[derive(Debug)]
pub(crate) struct WriteState {
    /// Spool directory id (goes into every record header).
    dir: u16,
    /// Size of segments created from now on.
    segment_size: u32,
    /// Segment receiving appends.
    seq: u32,
    /// Where the next record starts in `seq`.
    offset: u32,
    /// Size of segment `seq` (a recovered tail may differ from `segment_size`).
    capacity: u32,
    /// The batch being filled, always for segment `seq`.
    open: Option<Batch>,
    /// Batches sealed by rollover, oldest first, waiting for the committer.
    sealed: VecDeque<Batch>,
    /// Segments up to this one were given up after a failure.
    abandoned_through: Option<u32>,
    /// Commit of the most recently started batch: settled last (rounds
    /// settle batches in order), so waiting for it waits for everything.
    newest: Option<Rc<Commit>>,
}

impl WriteState {
    /// Appends resume at `offset` of segment `seq`, which is `capacity` bytes.
    pub(crate) fn new(dir: u16, segment_size: u32, seq: u32, offset: u32, capacity: u32) -> Self {
        WriteState {
            dir,
            segment_size,
            seq,
            offset,
            capacity,
            open: None,
            sealed: VecDeque::new(),
            abandoned_through: None,
            newest: None,
        }
    }

    /// Where the next record would start if it fits the current segment.
    pub(crate) fn position(&self) -> SpoolRef {
        SpoolRef { dir: self.dir, segment: self.seq, offset: self.offset }
    }

    /// Places one record and copies it into the open batch. Returns where it
    /// starts and the commit its durability depends on.
    #[cfg(test)]
    pub(crate) fn reserve(
        &mut self,
        kind: RecordKind,
        parts: &[&[u8]],
    ) -> Result<(SpoolRef, Rc<Commit>, usize), SpoolError> {
        self.reserve_owned(kind, parts, Vec::new())
    }

    /// [`reserve`](Self::reserve) for a record whose payload is `parts`
    /// then `tail`. A tail of [`OWN_EXTENT_MIN`] bytes or more is not
    /// copied: it becomes an extent of the batch as it is (its spare
    /// capacity may take the padding and later records). The bytes written
    /// are the same either way.
    pub(crate) fn reserve_owned(
        &mut self,
        kind: RecordKind,
        parts: &[&[u8]],
        tail: Vec<u8>,
    ) -> Result<(SpoolRef, Rc<Commit>, usize), SpoolError> {
        let head_len = parts.iter().fold(0usize, |n, p| n.saturating_add(p.len()));
        let payload_len = head_len.saturating_add(tail.len());
        let len = record_len(payload_len.min(usize::MAX - 64));
        if len > self.segment_size as usize {
            return Err(SpoolError::RecordTooLarge { len: len as u64, segment_size: self.segment_size });
        }
        if self.offset as usize + len > self.capacity as usize {
            self.roll_over();
        }
        let at = self.position();
        let newest = &mut self.newest;
        let batch = self.open.get_or_insert_with(|| {
            let commit: Rc<Commit> = Rc::default();
            *newest = Some(commit.clone());
            Batch { seq: at.segment, extents: Vec::new(), records: 0, commit }
        });
        let key = SegmentKey { dir: self.dir, seq: self.seq };
        if tail.len() < OWN_EXTENT_MIN {
            let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
            all.extend_from_slice(parts);
            all.push(&tail);
            encode_into(batch.extent_for(at.offset, len), kind, key, &all);
        } else {
            let head = HEADER_LEN + head_len;
            encode_head(batch.extent_for(at.offset, head), kind, key, parts, &tail);
            // Both within the record, so within u32.
            let pad = len - head - tail.len();
            batch.own_extent(at.offset + head as u32, tail, pad);
        }
        batch.records += 1;
        // len <= capacity - offset, so this stays within u32.
        self.offset += len as u32;
        Ok((at, batch.commit.clone(), len))
    }

    /// Seals the open batch and moves appends to the start of the next segment.
    fn roll_over(&mut self) {
        if let Some(batch) = self.open.take() {
            self.sealed.push_back(batch);
        }
        // 2^32 segments of at least 4 KiB is 16 TiB per directory written.
        self.seq += 1;
        self.offset = 0;
        self.capacity = self.segment_size;
    }

    /// Everything waiting to be written, oldest first; appends from now on go
    /// to a new batch.
    pub(crate) fn take_pending(&mut self) -> Vec<Batch> {
        let mut out: Vec<Batch> = self.sealed.drain(..).collect();
        out.extend(self.open.take());
        out
    }

    /// Commits of batches not yet taken by the committer.
    pub(crate) fn pending_commits(&self) -> Vec<Rc<Commit>> {
        self.sealed.iter().chain(self.open.iter()).map(|b| b.commit.clone()).collect()
    }

    /// The commit settled after every other one handed out so far.
    pub(crate) fn newest_commit(&self) -> Option<Rc<Commit>> {
        self.newest.clone()
    }

    pub(crate) fn is_abandoned(&self, seq: u32) -> bool {
        self.abandoned_through.is_some_and(|a| seq <= a)
    }

    /// Gives up segment `seq` (and any before it) after a failure: no byte is
    /// written there again, because a record after torn bytes would be cut
    /// off by recovery. Returns the waiting batches placed there, to be
    /// failed; appends move on to the next segment.
    pub(crate) fn abandon(&mut self, seq: u32) -> Vec<Batch> {
        self.abandoned_through = Some(self.abandoned_through.map_or(seq, |a| a.max(seq)));
        let mut failed = Vec::new();
        while self.sealed.front().is_some_and(|b| b.seq <= seq) {
            failed.extend(self.sealed.pop_front());
        }
        if self.open.as_ref().is_some_and(|b| b.seq <= seq) {
            failed.extend(self.open.take());
        }
        if self.seq <= seq {
            self.seq = seq + 1;
            self.offset = 0;
            self.capacity = self.segment_size;
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> WriteState {
        WriteState::new(1, 4096, 0, 0, 4096)
    }

    #[test]
    fn records_in_one_batch_share_a_commit_and_are_contiguous() {
        let mut s = state();
        let (a, ca, la) = s.reserve(RecordKind::Message, &[&[1; 10]]).unwrap();
        let (b, cb, _) = s.reserve(RecordKind::Tombstone, &[&[2; 13]]).unwrap();
        assert_eq!(a.offset, 0);
        assert_eq!(b.offset as usize, la);
        assert!(Rc::ptr_eq(&ca, &cb));
        let batches = s.take_pending();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].records, 2);
        assert_eq!(batches[0].extents[0].buf.len(), record_len(10) + record_len(13));
        assert_eq!(batches[0].extents.len(), 1, "small records share an extent");
    }

    #[test]
    fn taking_pending_starts_a_new_batch_with_a_new_commit() {
        let mut s = state();
        let (_, c1, _) = s.reserve(RecordKind::Message, &[b"a"]).unwrap();
        let first = s.take_pending();
        let (at, c2, _) = s.reserve(RecordKind::Message, &[b"b"]).unwrap();
        assert!(!Rc::ptr_eq(&c1, &c2));
        assert_eq!(at.offset as usize, record_len(1));
        assert_eq!(s.take_pending()[0].extents[0].start, at.offset);
        assert_eq!(first[0].extents[0].start, 0);
    }

    #[test]
    fn record_that_does_not_fit_the_rest_starts_the_next_segment() {
        let mut s = state();
        s.reserve(RecordKind::Message, &[&[0; 3000]]).unwrap();
        let (at, _, _) = s.reserve(RecordKind::Message, &[&[0; 2000]]).unwrap();
        assert_eq!((at.segment, at.offset), (1, 0));
        let batches = s.take_pending();
        assert_eq!(batches.iter().map(|b| b.seq).collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn record_filling_a_segment_exactly_fits() {
        let mut s = state();
        let (at, _, len) = s.reserve(RecordKind::Message, &[&[0; 4096 - HEADER_LEN]]).unwrap();
        assert_eq!((at.segment, len), (0, 4096));
        assert_eq!(s.position().offset, 4096);
    }

    #[test]
    fn record_larger_than_a_segment_is_too_large() {
        let mut s = state();
        let err = s.reserve(RecordKind::Message, &[&[0; 4096 - HEADER_LEN + 1]]);
        assert!(matches!(err, Err(SpoolError::RecordTooLarge { len: 4104, segment_size: 4096 })));
        assert_eq!(s.position().offset, 0);
    }

    #[test]
    fn abandoning_fails_waiting_batches_of_that_segment_and_moves_on() {
        let mut s = state();
        s.reserve(RecordKind::Message, &[&[0; 3000]]).unwrap();
        let taken = s.take_pending();
        s.reserve(RecordKind::Message, &[&[0; 100]]).unwrap();
        let failed = s.abandon(taken[0].seq);
        assert_eq!(failed.len(), 1);
        assert!(s.is_abandoned(0));
        let (at, _, _) = s.reserve(RecordKind::Message, &[&[0; 10]]).unwrap();
        assert_eq!((at.segment, at.offset), (1, 0));
    }

    #[test]
    fn a_record_that_does_not_fit_the_extent_starts_one_of_its_own_right_after() {
        let mut s = WriteState::new(1, 8 << 20, 0, 0, 8 << 20);
        let (a, _, la) = s.reserve(RecordKind::Message, &[&[1; 100]]).unwrap();
        let (b, _, lb) = s.reserve(RecordKind::Message, &[&[2; EXTENT_MIN]]).unwrap();
        let (c, _, lc) = s.reserve(RecordKind::Message, &[&[3; 100]]).unwrap();
        let batch = s.take_pending().pop().unwrap();
        assert_eq!(batch.records, 3);
        let extents: Vec<(u32, usize)> = batch.extents.iter().map(|e| (e.start, e.buf.len())).collect();
        assert_eq!(extents, [(a.offset, la), (b.offset, lb), (c.offset, lc)]);
        assert_eq!(b.offset as usize, la);
        assert_eq!(c.offset as usize, la + lb);
        // Back to back, the extents are the records as one buffer would be.
        let mut joined = Vec::new();
        batch.extents.iter().for_each(|e| joined.extend_from_slice(&e.buf));
        let mut one = Vec::new();
        let key = SegmentKey { dir: 1, seq: 0 };
        encode_into(&mut one, RecordKind::Message, key, &[&[1; 100]]);
        encode_into(&mut one, RecordKind::Message, key, &[&[2; EXTENT_MIN]]);
        encode_into(&mut one, RecordKind::Message, key, &[&[3; 100]]);
        assert!(joined == one);
    }

    /// The batch's extents back to back, checked to follow each other.
    fn joined(batch: &Batch) -> Vec<u8> {
        let mut out = Vec::new();
        let first = batch.extents[0].start as usize;
        for e in &batch.extents {
            assert_eq!(e.start as usize, first + out.len(), "extents follow each other");
            out.extend_from_slice(&e.buf);
        }
        out
    }

    /// Records as `(parts, tail)` appended with `reserve_owned` give the
    /// same bytes as `encode_into` of `parts` and the tail together.
    fn owned_matches_copied(records: Vec<(&[&[u8]], Vec<u8>)>) -> Batch {
        let mut s = WriteState::new(1, 8 << 20, 0, 0, 8 << 20);
        let mut want = Vec::new();
        let key = SegmentKey { dir: 1, seq: 0 };
        let count = records.len();
        for (parts, tail) in records {
            let mut all = parts.to_vec();
            let copy = tail.clone();
            all.push(&copy);
            let (at, _, len) = s.reserve_owned(RecordKind::Message, parts, tail).unwrap();
            assert_eq!(at.offset as usize, want.len());
            encode_into(&mut want, RecordKind::Message, key, &all);
            assert_eq!(want.len(), at.offset as usize + len);
        }
        let batch = s.take_pending().pop().unwrap();
        assert_eq!(batch.records as usize, count);
        assert!(joined(&batch) == want, "same bytes as one copied buffer");
        batch
    }

    fn body(len: usize, spare: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + spare);
        v.extend((0..len).map(|i| (i % 251) as u8));
        v
    }

    #[test]
    fn a_large_owned_tail_is_an_extent_of_its_own_with_the_same_bytes() {
        let head: &[&[u8]] = &[b"envelope", b"Received: x\r\n"];
        // Payload lengths that leave 0..7 bytes of padding, the tail with
        // and without room for it.
        for extra in 0..8 {
            for spare in [0, 3, 8, 4096] {
                let big = body(OWN_EXTENT_MIN + extra, spare);
                let ptr = big.as_ptr();
                let batch = owned_matches_copied(vec![(head, body(100, 0)), (head, big), (head, body(10, 0))]);
                assert!(batch.extents.iter().any(|e| e.buf.as_ptr() == ptr), "the tail was not copied");
            }
        }
    }

    #[test]
    fn owned_tails_of_every_size_around_the_threshold_give_the_same_bytes() {
        let head: &[&[u8]] = &[b"h"];
        let sizes = [0, 1, 7, 8, OWN_EXTENT_MIN - 1, OWN_EXTENT_MIN, OWN_EXTENT_MIN + 1, EXTENT_MIN, 1 << 20, 3];
        let records: Vec<(&[&[u8]], Vec<u8>)> = sizes.iter().map(|&n| (head, body(n, n % 5))).collect();
        owned_matches_copied(records);
        // Big tails back to back, and a segment rollover between them.
        let mut s = WriteState::new(1, 4 << 20, 0, 0, 4 << 20);
        let mut seqs = Vec::new();
        for _ in 0..5 {
            let (at, _, _) = s.reserve_owned(RecordKind::Message, &[b"x"], body(1 << 20, 0)).unwrap();
            seqs.push(at.segment);
        }
        assert_eq!(seqs, [0, 0, 0, 1, 1]);
        let batches = s.take_pending();
        assert_eq!(batches.iter().map(|b| b.records).collect::<Vec<_>>(), [3, 2]);
        for b in &batches {
            let bytes = joined(b);
            let key = SegmentKey { dir: 1, seq: b.seq };
            let mut at = 0;
            while at < bytes.len() {
                match crate::spool::record::parse_at(&bytes, at, key) {
                    crate::spool::record::Parsed::Record { next, payload, .. } => {
                        assert_eq!(payload.len(), 1 + (1 << 20));
                        at = next;
                    }
                    other => panic!("at {at}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn a_small_owned_tail_is_copied_into_the_shared_extent() {
        let head: &[&[u8]] = &[b"h"];
        let batch = owned_matches_copied(vec![(head, body(10, 0)), (head, body(OWN_EXTENT_MIN - 1, 0))]);
        assert_eq!(batch.extents.len(), 1);
    }
}
