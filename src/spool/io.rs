//! The file seam of the write path: [`SegmentStore`] / [`SegmentFile`], and
//! the real implementation over glommio's `BufferedFile` ([`DirStore`]).
//!
//! The writer only ever uses these few operations, so a test double can keep
//! synced and unsynced bytes apart and simulate power loss. This module owns
//! the creation protocol of a segment (zero-fill a `.tmp` file, fdatasync,
//! rename, fsync the directory) and nothing about records.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use glommio::io::{BufferedFile, OpenOptions};

use super::error::SpoolError;
use super::layout::{dir_path, segment_file_name, TEMP_SUFFIX};

/// One spool directory's segment files, as the writer needs them.
///
/// The futures are `!Send` on purpose (one store per core), hence the allow.
#[allow(async_fn_in_trait)]
pub trait SegmentStore {
    /// An open segment.
    type File: SegmentFile;

    /// Creates segment `seq` of `size` bytes, all zero. When this returns Ok
    /// the zeros are on stable storage and so is the directory entry: writes
    /// into the file never extend or allocate it, and a crash after this
    /// never loses the file. A crash before leaves no segment named `seq`.
    /// Fails if the segment exists.
    async fn create(&self, seq: u32, size: u64) -> io::Result<Self::File>;

    /// Opens existing segment `seq` for appending after recovery.
    async fn open(&self, seq: u32) -> io::Result<Self::File>;

    /// Deletes segment `seq`; when this returns Ok the removal is on stable
    /// storage (a crash cannot bring it back).
    async fn remove(&self, seq: u32) -> io::Result<()>;
}

/// An open segment.
#[allow(async_fn_in_trait)]
pub trait SegmentFile {
    /// Writes all of `buf` at `pos` (through the page cache). A short write
    /// is an error. Writes stay inside the segment's size.
    async fn write_at(&self, buf: Vec<u8>, pos: u64) -> io::Result<()>;

    /// `fdatasync`: every write completed before this started is durable
    /// when it returns Ok.
    async fn sync_data(&self) -> io::Result<()>;
}

/// The real store: `<root>/core-<dir>/` through glommio (io_uring).
#[derive(Debug, Clone)]
pub struct DirStore {
    /// `<root>/core-<dir>`.
    path: PathBuf,
}

/// Size of the zero buffers used to fill a new segment.
const ZERO_CHUNK: usize = 1 << 20;

impl DirStore {
    /// The store for spool directory `dir` under `root`, creating the
    /// directory (and making its entry durable) if needed. Blocking; call at
    /// start-up.
    pub fn open(root: &Path, dir: u16) -> Result<DirStore, SpoolError> {
        let path = dir_path(root, dir);
        let err = |source: io::Error| SpoolError::Directory { path: path.clone(), source: Arc::new(source) };
        if !path.is_dir() {
            let root_existed = root.is_dir();
            crate::files::create_private_dir_all(&path).map_err(err)?;
            // Make the new entries durable: core-<dir> in root, and root in
            // its parent if it was created too.
            let mut parents = vec![root];
            if !root_existed {
                parents.extend(root.parent().filter(|p| !p.as_os_str().is_empty()));
            }
            for dir in parents {
                std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
            }
        }
        Ok(DirStore { path })
    }

    /// `<root>/core-<dir>`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn segment(&self, seq: u32) -> PathBuf {
        self.path.join(segment_file_name(seq))
    }

    /// A full fsync of the directory, on glommio's blocking pool: glommio's
    /// `Directory::sync` issues fdatasync, which does not promise to persist
    /// new or removed entries on every filesystem.
    async fn sync_dir(&self) -> io::Result<()> {
        let path = self.path.clone();
        glommio::executor().spawn_blocking(move || std::fs::File::open(path)?.sync_all()).await
    }
}

/// A segment opened through glommio's buffered (page cache) I/O.
#[derive(Debug)]
pub struct BufferedSegment {
    file: BufferedFile,
}

impl SegmentStore for DirStore {
    type File = BufferedSegment;

    async fn create(&self, seq: u32, size: u64) -> io::Result<BufferedSegment> {
        let path = self.segment(seq);
        if path.exists() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", path.display())));
        }
        let mut temp = path.clone().into_os_string();
        temp.push(TEMP_SUFFIX);
        let made = async {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .mode(crate::files::PRIVATE_FILE)
                .buffered_open(&temp)
                .await?;
            let segment = BufferedSegment { file };
            let mut pos = 0u64;
            while pos < size {
                let len = (size - pos).min(ZERO_CHUNK as u64) as usize;
                segment.write_at(vec![0u8; len], pos).await?;
                pos += len as u64;
            }
            segment.sync_data().await?;
            Ok::<_, io::Error>(segment.file)
        }
        .await;
        let mut file = match made {
            Ok(f) => f,
            Err(e) => {
                // Out of space, typically: give the half-filled file back
                // (recovery would also delete it, but only at next start).
                let _ = glommio::io::remove(&temp).await;
                return Err(e);
            }
        };
        file.rename(&path).await?;
        self.sync_dir().await?;
        Ok(BufferedSegment { file })
    }

    async fn open(&self, seq: u32) -> io::Result<BufferedSegment> {
        let file = OpenOptions::new().read(true).write(true).buffered_open(self.segment(seq)).await?;
        Ok(BufferedSegment { file })
    }

    async fn remove(&self, seq: u32) -> io::Result<()> {
        glommio::io::remove(self.segment(seq)).await?;
        self.sync_dir().await
    }
}

impl SegmentFile for BufferedSegment {
    async fn write_at(&self, buf: Vec<u8>, pos: u64) -> io::Result<()> {
        let len = buf.len();
        let written = self.file.write_at(buf, pos).await?;
        if written != len {
            // The buffer went to the kernel; a retry would need a copy. The
            // file is pre-allocated, so a short write means trouble anyway.
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write: {written} of {len} bytes at {pos}"),
            ));
        }
        Ok(())
    }

    async fn sync_data(&self) -> io::Result<()> {
        Ok(self.file.fdatasync().await?)
    }
}
