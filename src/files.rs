//! How ringmail creates and rewrites its own files: private modes, and
//! atomic replacement that keeps a file's owner, group and mode.
//!
//! Owns: the modes of what ringmail creates (directories 0700, files 0600:
//! the data dir holds mail and password hashes) and the one way to rewrite
//! a whole file (`replace`). Every file ringmail rewrites — the users file,
//! backup archives, generated TLS keys — goes through `replace`, so that
//! `sudo ringmail user add` cannot hand the users file to root and lock a
//! service running as another user out of it.
//! Must not: know what the files mean; it moves bytes and metadata only.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of every file ringmail creates.
pub const PRIVATE_FILE: u32 = 0o600;
/// Mode of every directory ringmail creates.
pub const PRIVATE_DIR: u32 = 0o700;

/// Create `dir` and its missing parents with mode 0700. Directories that
/// exist already keep their mode (the operator may have chosen it).
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(PRIVATE_DIR).create(dir)
}

/// Open a new file for writing with mode 0600, whatever the umask
/// (truncating one that is there, which keeps its mode).
pub fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create(true).truncate(true).mode(PRIVATE_FILE).open(path)
}

/// Whose a file written by `replace` is.
#[derive(Debug, Clone, Copy)]
pub enum Ownership<'a> {
    /// The existing file's owner, group and mode. A new file gets the owner
    /// and group of `new_like` (a directory, e.g. the data dir; skipped if
    /// it does not exist) and mode 0600.
    Keep { new_like: Option<&'a Path> },
    /// The caller's, mode 0600, whatever was there (a backup archive holds
    /// every password hash and every message).
    Private,
}

/// Owner, group and mode to give the replacement; None: leave as created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Target {
    owner: Option<(u32, u32)>,
    mode: u32,
}

impl Ownership<'_> {
    fn target(self, path: &Path) -> io::Result<Target> {
        let private = Target { owner: None, mode: PRIVATE_FILE };
        let Ownership::Keep { new_like } = self else { return Ok(private) };
        match std::fs::metadata(path) {
            Ok(m) => Ok(Target { owner: Some((m.uid(), m.gid())), mode: m.mode() & 0o7777 }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let like = new_like.and_then(|d| std::fs::metadata(d).ok());
                Ok(Target { owner: like.map(|m| (m.uid(), m.gid())), mode: PRIVATE_FILE })
            }
            Err(e) => Err(e),
        }
    }
}

/// Replace `path` atomically with what `write` puts into a new file: a
/// temporary file beside it (same filesystem) is written, given the owner,
/// group and mode `ownership` asks for, fsynced and renamed over `path`,
/// and the directory is fsynced. A reader (the server's users watcher)
/// sees the old file or the new one, never half of one; on any error the
/// old file is untouched and the temporary one removed. Missing parent
/// directories are created 0700.
pub fn replace(
    path: &Path,
    ownership: Ownership<'_>,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = parent(path);
    create_private_dir_all(dir)?;
    let target = ownership.target(path)?;
    let tmp = temp_path(path);
    let mut file = match OpenOptions::new().write(true).create_new(true).mode(PRIVATE_FILE).open(&tmp) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Left by a run that died (same pid, earlier boot): ours to drop.
            std::fs::remove_file(&tmp)?;
            OpenOptions::new().write(true).create_new(true).mode(PRIVATE_FILE).open(&tmp)?
        }
        other => other?,
    };
    let done = fill(&mut file, target, write).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

fn fill(file: &mut File, target: Target, write: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
    write(file)?;
    if let Some((uid, gid)) = target.owner {
        let m = file.metadata()?;
        if (m.uid(), m.gid()) != (uid, gid) {
            // Before the chmod: chown clears set-id bits.
            std::os::unix::fs::fchown(&*file, Some(uid), Some(gid))?;
        }
    }
    file.set_permissions(std::fs::Permissions::from_mode(target.mode))?;
    file.sync_all()
}

/// fsync a directory, so that entries created, renamed or removed in it
/// survive a power cut.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    // The pid keeps two concurrent `ringmail` commands off each other's file.
    name.push(format!(".ringmail-tmp.{}", std::process::id()));
    path.with_file_name(name)
}

/// Is this mode readable (or listable) by group or others?
pub fn readable_by_others(mode: u32) -> bool {
    mode & 0o044 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn replace_keeps_an_existing_mode_and_makes_new_files_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/users");
        replace(&path, Ownership::Keep { new_like: Some(dir.path()) }, |f| io::Write::write_all(f, b"one\n")).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("sub")), 0o700);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        replace(&path, Ownership::Keep { new_like: None }, |f| io::Write::write_all(f, b"two\n")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(mode(&path), 0o640);
        replace(&path, Ownership::Private, |f| io::Write::write_all(f, b"three\n")).unwrap();
        assert_eq!(mode(&path), 0o600);
        let names: Vec<_> =
            std::fs::read_dir(dir.path().join("sub")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("users")], "no temporary file left");
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, "old\n").unwrap();
        let err = replace(&path, Ownership::Keep { new_like: None }, |f| {
            io::Write::write_all(f, b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn group_or_world_read_is_noticed() {
        assert!(readable_by_others(0o755));
        assert!(readable_by_others(0o740));
        assert!(readable_by_others(0o704));
        assert!(!readable_by_others(0o700));
        assert!(!readable_by_others(0o711));
    }
}
