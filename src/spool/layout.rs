//! Names on disk: `<root>/core-<dir>/segment-<seq as 8 hex digits>`, and the
//! `.tmp` name a segment has while it is being zero-filled.
//!
//! Pure path arithmetic; no I/O.

use std::path::{Path, PathBuf};

use super::ids::SegmentKey;

/// Suffix of a segment still being created; such files are never read and
/// are deleted by recovery.
pub const TEMP_SUFFIX: &str = ".tmp";

/// `<root>/core-<dir>`.
pub fn dir_path(root: &Path, dir: u16) -> PathBuf {
    root.join(format!("core-{dir}"))
}

/// `segment-<seq as 8 lower-case hex digits>`.
pub fn segment_file_name(seq: u32) -> String {
    format!("segment-{seq:08x}")
}

/// `<root>/core-<dir>/segment-<seq>`.
pub fn segment_path(root: &Path, key: SegmentKey) -> PathBuf {
    dir_path(root, key.dir).join(segment_file_name(key.seq))
}

/// The directory id in a `core-<dir>` name.
pub fn parse_dir_name(name: &str) -> Option<u16> {
    let digits = name.strip_prefix("core-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What a file name in a spool directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentName {
    /// A complete segment.
    Segment(u32),
    /// A segment whose creation did not finish.
    Temp(u32),
}

/// Classifies a file name; `None` for names the spool does not own.
pub fn parse_segment_name(name: &str) -> Option<SegmentName> {
    let rest = name.strip_prefix("segment-")?;
    let (hex, temp) = match rest.strip_suffix(TEMP_SUFFIX) {
        Some(hex) => (hex, true),
        None => (rest, false),
    };
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let seq = u32::from_str_radix(hex, 16).ok()?;
    Some(if temp { SegmentName::Temp(seq) } else { SegmentName::Segment(seq) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let key = SegmentKey { dir: 12, seq: 0xab };
        let p = segment_path(Path::new("/s"), key);
        assert_eq!(p, Path::new("/s/core-12/segment-000000ab"));
        assert_eq!(parse_dir_name("core-12"), Some(12));
        assert_eq!(parse_segment_name("segment-000000ab"), Some(SegmentName::Segment(0xab)));
        assert_eq!(parse_segment_name("segment-000000ab.tmp"), Some(SegmentName::Temp(0xab)));
    }

    #[test]
    fn foreign_names_are_not_ours() {
        for name in ["core-", "core-x", "core-+1", "core-70000", "cores-1"] {
            assert_eq!(parse_dir_name(name), None, "{name}");
        }
        for name in ["segment-ab", "segment-000000ag", "segment-000000ab.bak", "x"] {
            assert_eq!(parse_segment_name(name), None, "{name}");
        }
    }
}
