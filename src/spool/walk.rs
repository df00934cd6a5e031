//! Read-only walks over a spool, for offline tools (`ringmail trace`,
//! backup verification, export): every good record of every segment, in
//! (dir, segment, offset) order. Nothing is cut, repaired or deleted, so a
//! walk is safe while the server runs: a tail being appended reads as torn
//! and ends that segment's walk; a segment reclaimed meanwhile is skipped.

use super::layout::{parse_dir_name, parse_segment_name, segment_path, SegmentName};
use super::record::{scan_segment, RecordKind};
use super::{SegmentKey, SpoolError, SpoolRef};
use memmap2::Mmap;
use std::path::Path;
use std::sync::Arc;

/// Every segment under `root`, in key order.
pub fn segments(root: &Path) -> Result<Vec<SegmentKey>, SpoolError> {
    let dir_err = |path: &Path| {
        let path = path.to_path_buf();
        move |e| SpoolError::Directory { path, source: Arc::new(e) }
    };
    let mut keys = Vec::new();
    if !root.exists() {
        return Ok(keys);
    }
    for entry in std::fs::read_dir(root).map_err(dir_err(root))? {
        let entry = entry.map_err(dir_err(root))?;
        let Some(dir) = entry.file_name().to_str().and_then(parse_dir_name) else { continue };
        let path = entry.path();
        for seg in std::fs::read_dir(&path).map_err(dir_err(&path))? {
            let seg = seg.map_err(dir_err(&path))?;
            if let Some(SegmentName::Segment(seq)) = seg.file_name().to_str().and_then(parse_segment_name) {
                keys.push(SegmentKey { dir, seq });
            }
        }
    }
    keys.sort();
    Ok(keys)
}

/// Call `f` with every good record under `root`.
pub fn for_each_record(root: &Path, mut f: impl FnMut(SpoolRef, RecordKind, &[u8])) -> Result<(), SpoolError> {
    for key in segments(root)? {
        let Some(map) = map_segment(root, key)? else { continue };
        for rec in scan_segment(&map, key).records {
            f(SpoolRef { dir: key.dir, segment: key.seq, offset: rec.offset }, rec.kind, &map[rec.payload]);
        }
    }
    Ok(())
}

/// Map one segment read-only; None if it is gone or empty.
pub fn map_segment(root: &Path, key: SegmentKey) -> Result<Option<Mmap>, SpoolError> {
    let file = match std::fs::File::open(segment_path(root, key)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SpoolError::OpenSegment { key, source: Arc::new(e) }),
    };
    let len = file.metadata().map_err(|e| SpoolError::OpenSegment { key, source: Arc::new(e) })?.len();
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: nothing truncates spool segments (see reader.rs); appends
    // beyond what we read are not looked at (the scan stops at zeros).
    let map = unsafe { Mmap::map(&file) }.map_err(|e| SpoolError::OpenSegment { key, source: Arc::new(e) })?;
    Ok(Some(map))
}
