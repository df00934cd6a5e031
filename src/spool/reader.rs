//! The read path: a per-core cache of read-only shared mappings of segment
//! files, and checked access to one record by its [`SpoolRef`].
//!
//! Readers never write and never truncate. A mapping stays valid after its
//! file is deleted (the inode lives while mapped); segments are never
//! truncated, so a mapped page never disappears under a reader (no SIGBUS).
//! Read only records whose append is durable: an in-flight record's bytes
//! may still be zeros.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use memmap2::Mmap;

use super::error::SpoolError;
use super::ids::{SegmentKey, SpoolRef};
use super::layout::segment_path;
use super::record::{parse_at, Parsed, RecordKind};

/// One checked record, borrowed from a mapping it keeps alive.
#[derive(Clone, Debug)]
pub struct RecordView {
    map: Rc<Mmap>,
    at: SpoolRef,
    kind: RecordKind,
    payload: Range<usize>,
}

impl RecordView {
    /// Where the record is.
    pub fn at(&self) -> SpoolRef {
        self.at
    }

    /// What the record holds.
    pub fn kind(&self) -> RecordKind {
        self.kind
    }

    /// The payload bytes, straight from the mapping (zero copy).
    pub fn payload(&self) -> &[u8] {
        &self.map[self.payload.clone()]
    }

    /// The message a `Message` or `Moved` record holds.
    pub fn message(&self) -> Result<super::MessageRecord<'_>, super::DecodeError> {
        match self.kind {
            RecordKind::Moved => super::decode_moved(self.payload()).map(|m| m.message),
            _ => super::decode_message(self.payload()),
        }
    }

    /// The body of the message a `Message` or `Moved` record holds,
    /// without decoding its envelope (`payload::message_body`).
    pub fn message_body(&self) -> Result<&[u8], super::DecodeError> {
        match self.kind {
            RecordKind::Moved => super::payload::moved_body(self.payload()),
            _ => super::payload::message_body(self.payload()),
        }
    }
}

/// Mappings of segments under one spool root, opened on first use.
#[derive(Debug)]
pub struct SegmentMaps {
    root: PathBuf,
    maps: HashMap<SegmentKey, Rc<Mmap>>,
}

impl SegmentMaps {
    /// An empty cache for the spool under `root`.
    pub fn new(root: impl Into<PathBuf>) -> SegmentMaps {
        SegmentMaps { root: root.into(), maps: HashMap::new() }
    }

    /// The record at `at`, with its header and checksum verified.
    ///
    /// Opening and mapping a segment the first time is a blocking open +
    /// mmap; later reads touch only memory (page faults aside).
    pub fn record(&mut self, at: SpoolRef) -> Result<RecordView, SpoolError> {
        let key = at.segment_key();
        let map = match self.maps.get(&key) {
            Some(map) => map.clone(),
            None => {
                let map = Rc::new(self.map(key)?);
                self.maps.insert(key, map.clone());
                map
            }
        };
        match parse_at(&map, at.offset as usize, key) {
            Parsed::Record { kind, payload, .. } => Ok(RecordView { map, at, kind, payload }),
            Parsed::End => Err(SpoolError::NoRecord { at }),
            Parsed::Bad(reason) => Err(SpoolError::BadRecord { at, reason }),
        }
    }

    /// Drops the cached mapping of a deleted segment. Views still held keep
    /// their mapping alive until dropped.
    pub fn forget(&mut self, dir: u16, seq: u32) {
        self.maps.remove(&SegmentKey { dir, seq });
    }

    /// Number of mapped segments.
    pub fn len(&self) -> usize {
        self.maps.len()
    }

    /// Whether no segment is mapped.
    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }

    fn map(&self, key: SegmentKey) -> Result<Mmap, SpoolError> {
        let err = |e| SpoolError::OpenSegment { key, source: Arc::new(e) };
        let file = File::open(segment_path(&self.root, key)).map_err(err)?;
        // SAFETY: the mapping is read-only, and segment files are never
        // truncated or shrunk by ringmail (see the module docs), so its pages
        // stay backed for its whole life. Concurrent appends only change
        // bytes past the records that readers are given.
        unsafe { Mmap::map(&file) }.map_err(err)
    }
}
