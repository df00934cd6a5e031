//! A checkpoint file read in place: its sections checked once, then walked
//! entry by entry, without building the whole summary in memory.
//!
//! Rolling a checkpoint forward needs this at a large backlog. A checkpoint
//! holds every live message's place and envelope (about 100 bytes each):
//! with 10 M queued, some 800 MB per directory. Decoding the previous one
//! into a [`Checkpoint`](super::checkpoint::Checkpoint), rolling it and
//! encoding the next took about 2.4 GB of memory per core, every
//! `spool.checkpoint_interval` (`bench/backlog`: 484 B of RssAnon per queued
//! message at 10 M against the 128 of issue 13). Read in place from a map
//! of the file, the previous checkpoint costs the roll a flag per entry.
//!
//! It is the one reader of the format: [`decode`](super::checkpoint::decode)
//! builds the whole summary from a view. [`View::parse`] checks the head,
//! crc, version and every section's shape, and also that the records and
//! states are in the order the writer puts them (by place), which lets a
//! record be found by binary search.

use super::checkpoint::{
    checked_body, split_section, CheckpointError, Held, HeldState, HeldTombstone, Reader, CONTENT_LEN,
    ENVELOPE_HEAD_LEN, HAS_CONTENT, HELD, RECORD_LEN, STATE_LEN, TAG_CUT, TAG_ENVELOPES, TAG_RECORDS, TAG_STATES,
    TAG_STATE_CONTENTS, TAG_TOMBSTONES, TOMBSTONE_LEN, WARNED,
};
use super::ids::{QueueId, SpoolRef};

/// A checked checkpoint file, its entries read from the file's bytes.
pub struct View<'a> {
    /// Place of the `Checkpoint` record it stops before (its `dir` is the
    /// directory's).
    pub cut: SpoolRef,
    /// Highest queue id before the cut.
    pub last_queue_id: Option<QueueId>,
    /// Section 2, `RECORD_LEN` bytes a record, by place.
    records: &'a [u8],
    /// Section 3, `TOMBSTONE_LEN` bytes each.
    tombstones: &'a [u8],
    /// Section 4, `STATE_LEN` bytes each, by (place, target, recipient).
    states: &'a [u8],
    /// Section 5, in the records' order.
    envelopes: &'a [u8],
    /// Section 6's string table (last errors).
    table: Vec<&'a str>,
    /// Section 6's entries, `CONTENT_LEN` bytes per state (None: the file
    /// has no section 6, its states have no contents).
    contents: Option<&'a [u8]>,
}

/// A record of section 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewRecord {
    pub at: SpoolRef,
    pub kind: Held,
    pub recipients: u16,
}

/// An envelope of section 5: its record's place, the body length and the
/// envelope's bytes.
pub struct ViewEnvelope<'a> {
    pub at: SpoolRef,
    pub body_len: u64,
    pub bytes: &'a [u8],
}

/// A state's content as section 6 holds it: the last error is an index
/// into the string table plus one (0: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawContent {
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub warned: bool,
    pub held: bool,
    pub error: u32,
}

impl<'a> View<'a> {
    /// Nothing held: directory `dir` from its start.
    pub fn empty(dir: u16) -> View<'static> {
        View {
            cut: SpoolRef { dir, segment: 0, offset: 0 },
            last_queue_id: None,
            records: &[],
            tombstones: &[],
            states: &[],
            envelopes: &[],
            table: Vec::new(),
            contents: None,
        }
    }

    /// Checks checkpoint file `bytes` and reads it in place. Never panics,
    /// whatever the bytes.
    pub fn parse(bytes: &'a [u8]) -> Result<View<'a>, CheckpointError> {
        let mut rest = checked_body(bytes)?;
        let mut view: Option<View<'a>> = None;
        let mut sections: [&'a [u8]; 5] = [&[]; 5];
        let mut contents: Option<&'a [u8]> = None;
        while !rest.is_empty() {
            let (tag, value, next) = split_section(rest)?;
            rest = next;
            match tag {
                TAG_CUT => view = Some(read_cut(value)?),
                TAG_RECORDS | TAG_TOMBSTONES | TAG_STATES | TAG_ENVELOPES => {
                    sections[usize::from(tag - TAG_RECORDS)] = value
                }
                TAG_STATE_CONTENTS => contents = Some(value),
                // A section of a later version: not ours to read.
                _ => {}
            }
        }
        let mut view = view.ok_or(CheckpointError::NoCut)?;
        let [records, tombstones, states, envelopes, _] = sections;
        view.records = fixed(records, RECORD_LEN, TAG_RECORDS)?;
        view.tombstones = fixed(tombstones, TOMBSTONE_LEN, TAG_TOMBSTONES)?;
        view.states = fixed(states, STATE_LEN, TAG_STATES)?;
        view.envelopes = envelopes;
        if let Some(value) = contents {
            view.read_table(value)?;
        }
        view.check()?;
        Ok(view)
    }

    /// How many records it holds.
    pub fn record_count(&self) -> usize {
        self.records.len() / RECORD_LEN
    }

    /// Record `i` (< [`record_count`](Self::record_count)).
    pub fn record(&self, i: usize) -> ViewRecord {
        let mut r = Reader(&self.records[i * RECORD_LEN..(i + 1) * RECORD_LEN]);
        let at = self.place(&mut r);
        let kind = r.u8().and_then(Held::from_byte).expect("checked by parse");
        ViewRecord { at, kind, recipients: r.u16().expect("checked by parse") }
    }

    /// The records, by place.
    pub fn records(&self) -> impl Iterator<Item = ViewRecord> + '_ {
        (0..self.record_count()).map(|i| self.record(i))
    }

    /// Index of the record at `at`, if it holds one.
    pub fn record_index(&self, at: SpoolRef) -> Option<usize> {
        if at.dir != self.cut.dir {
            return None;
        }
        let (mut lo, mut hi) = (0, self.record_count());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.record(mid).at.cmp(&at) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// The tombstones, in the file's order.
    pub fn tombstones(&self) -> impl Iterator<Item = HeldTombstone> + '_ {
        self.tombstones.chunks_exact(TOMBSTONE_LEN).map(|c| {
            let mut r = Reader(c);
            let at = self.place(&mut r);
            let target = r.spool_ref().expect("checked by parse");
            HeldTombstone { at, target, recipient: r.u16().expect("checked by parse") }
        })
    }

    /// How many states it holds.
    pub fn state_count(&self) -> usize {
        self.states.len() / STATE_LEN
    }

    /// The states, by (place, target, recipient), without their contents
    /// (see [`content`](Self::content)).
    pub fn states(&self) -> impl Iterator<Item = HeldState> + '_ {
        self.states.chunks_exact(STATE_LEN).map(|c| {
            let mut r = Reader(c);
            let at = self.place(&mut r);
            let target = r.spool_ref().expect("checked by parse");
            let recipient = r.u16().expect("checked by parse");
            HeldState { at, target, recipient, seq: r.u64().expect("checked by parse"), content: None }
        })
    }

    /// What state `i` says, if the checkpoint holds it.
    pub fn content(&self, i: usize) -> Option<RawContent> {
        let mut r = Reader(self.contents?.get(i * CONTENT_LEN..(i + 1) * CONTENT_LEN)?);
        let flags = r.u8()?;
        (flags & HAS_CONTENT != 0).then(|| RawContent {
            warned: flags & WARNED != 0,
            held: flags & HELD != 0,
            attempts: r.u32().expect("checked by parse"),
            next_attempt_ms: r.u64().expect("checked by parse"),
            error: r.u32().expect("checked by parse"),
        })
    }

    /// The string table's entry that `error` names (0: none).
    pub fn error_text(&self, error: u32) -> &'a str {
        error.checked_sub(1).and_then(|i| self.table.get(i as usize)).copied().unwrap_or("")
    }

    /// How many strings the table holds.
    pub fn table_len(&self) -> usize {
        self.table.len()
    }

    /// The envelopes, in their records' order, each with the index of its
    /// record.
    pub fn envelopes(&self) -> impl Iterator<Item = (usize, ViewEnvelope<'a>)> + '_ {
        self.walk_envelopes().map_while(Result::ok)
    }

    /// How many bytes section 5 (the envelopes, with their heads) takes.
    pub fn envelope_section_len(&self) -> usize {
        self.envelopes.len()
    }

    /// Section 5 entry by entry, each matched to its record, the records
    /// taken in order; an entry that does not read or names no later
    /// record gives an error and ends the walk.
    fn walk_envelopes(&self) -> impl Iterator<Item = Result<(usize, ViewEnvelope<'a>), CheckpointError>> + '_ {
        let mut r = Reader(self.envelopes);
        let mut next_record = 0;
        std::iter::from_fn(move || {
            if r.0.is_empty() || next_record > self.record_count() {
                return None;
            }
            let found = read_envelope(&mut r, self.cut.dir).and_then(|envelope| {
                let i = (next_record..self.record_count()).find(|&i| self.record(i).at == envelope.at)?;
                Some((i, envelope))
            });
            next_record = found.as_ref().map_or(usize::MAX, |(i, _)| i + 1);
            Some(found.ok_or(CheckpointError::Malformed { tag: TAG_ENVELOPES }))
        })
    }

    fn place(&self, r: &mut Reader<'_>) -> SpoolRef {
        r.place(self.cut.dir).expect("checked by parse")
    }

    fn read_table(&mut self, value: &'a [u8]) -> Result<(), CheckpointError> {
        let bad = || CheckpointError::Malformed { tag: TAG_STATE_CONTENTS };
        let mut r = Reader(value);
        let count = r.u32().ok_or_else(bad)? as usize;
        let mut table = Vec::with_capacity(count.min(value.len() / 2));
        for _ in 0..count {
            let len = usize::from(r.u16().ok_or_else(bad)?);
            let bytes = r.0.get(..len).ok_or_else(bad)?;
            r.0 = &r.0[len..];
            table.push(std::str::from_utf8(bytes).map_err(|_| bad())?);
        }
        self.table = table;
        self.contents = Some(r.0);
        Ok(())
    }

    /// Every entry readable, records and states in the writer's order, each
    /// envelope naming a record in order, each content's error in the table.
    fn check(&self) -> Result<(), CheckpointError> {
        let malformed = |tag| CheckpointError::Malformed { tag };
        let mut last = None;
        for c in self.records.chunks_exact(RECORD_LEN) {
            let mut r = Reader(c);
            let at = r.place(self.cut.dir).ok_or(malformed(TAG_RECORDS))?;
            r.u8().and_then(Held::from_byte).ok_or(malformed(TAG_RECORDS))?;
            if last.is_some_and(|l| l >= at) {
                return Err(malformed(TAG_RECORDS));
            }
            last = Some(at);
        }
        let mut last = None;
        for s in self.states() {
            let key = (s.at, s.target, s.recipient);
            if last.is_some_and(|l| l >= key) {
                return Err(malformed(TAG_STATES));
            }
            last = Some(key);
        }
        for envelope in self.walk_envelopes() {
            envelope?;
        }
        if let Some(contents) = self.contents {
            if contents.len() != self.state_count() * CONTENT_LEN {
                return Err(malformed(TAG_STATE_CONTENTS));
            }
            let table = self.table.len();
            let bad_error = (0..self.state_count()).any(|i| self.content(i).is_some_and(|c| c.error as usize > table));
            if bad_error {
                return Err(malformed(TAG_STATE_CONTENTS));
            }
        }
        Ok(())
    }
}

fn read_cut(value: &[u8]) -> Result<View<'_>, CheckpointError> {
    let bad = || CheckpointError::Malformed { tag: TAG_CUT };
    let mut r = Reader(value);
    let dir = r.u16().ok_or_else(bad)?;
    let cut = r.place(dir).ok_or_else(bad)?;
    let has_id = r.u8().ok_or_else(bad)?;
    let id = r.u64().ok_or_else(bad)?;
    Ok(View { cut, last_queue_id: (has_id != 0).then_some(QueueId(id)), ..View::empty(dir) })
}

/// `value` if it is a whole number of `size`-byte entries.
fn fixed(value: &[u8], size: usize, tag: u16) -> Result<&[u8], CheckpointError> {
    if value.len().is_multiple_of(size) {
        Ok(value)
    } else {
        Err(CheckpointError::Malformed { tag })
    }
}

fn read_envelope<'a>(r: &mut Reader<'a>, dir: u16) -> Option<ViewEnvelope<'a>> {
    if r.0.len() < ENVELOPE_HEAD_LEN {
        return None;
    }
    let at = r.place(dir)?;
    let body_len = r.u64()?;
    let len = r.u32()? as usize;
    let bytes = r.0.get(..len)?;
    r.0 = &r.0[len..];
    Some(ViewEnvelope { at, body_len, bytes })
}
