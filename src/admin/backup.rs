//! `ringmail backup DEST` and `ringmail restore SRC`.
//!
//! A backup is one tar archive: `MANIFEST` first, then the users file and
//! the spool segments (each cut to the bytes its records use; restore
//! re-extends it to its size with zeros). The spool is the whole state:
//! mailbox indexes and queues are rebuilt from it at start.
//!
//! Consistency while the server runs: the CLI asks the server over the
//! control socket to pin the spool (`backup begin`). Every core makes what
//! it appended durable, reports where its log ends, and stops deleting
//! dead segments until the CLI hangs up. The archive holds each spool
//! directory up to that point: a prefix of an append-only log, which
//! recovery reads like the spool after a power cut at that instant. Mail
//! accepted later is not in it; nothing in it is half-written.
//!
//! The manifest lists every file with its size and SHA-256 and every
//! message record with its queue id and CRC-32C, and ends with the SHA-256
//! of everything above that line. Restore refuses a data_dir that holds
//! anything but the users file, unpacks into a staging directory inside
//! data_dir, checks each file against the manifest as it is unpacked, then
//! reads the restored spool back and checks every message against the
//! manifest before moving it into place by one rename.
//!
//! Files: the archive is 0600 (it holds every password hash); restored
//! files are 0600 in 0700 directories, owned like data_dir.

use crate::files;
use crate::spool::{layout, record::scan_segment, walk, QueueId, SegmentKey, SpoolError, SpoolRef};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &str = "ringmail-backup 1";
const MANIFEST: &str = "MANIFEST";
const USERS: &str = "users";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("{0}: not a ringmail backup (no MANIFEST at its start)")]
    NotABackup(PathBuf),
    #[error("{path}: manifest line {line}: {reason}")]
    Manifest { path: PathBuf, line: usize, reason: String },
    #[error("{path}: archive truncated: {what}")]
    Truncated { path: PathBuf, what: String },
    #[error("{path}: archive altered or corrupt: {what}")]
    Altered { path: PathBuf, what: String },
    #[error("{0}: restore needs an empty (or missing) data_dir; this one has files")]
    NotEmpty(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.to_path_buf(), source }
}

/// Where the server's log of one spool directory ended when it pinned the
/// spool: (segment, offset). Directories without one (nobody writes them)
/// and an offline backup are taken up to their last good record.
pub type Tails = BTreeMap<u16, (u32, u32)>;

/// One file of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileEntry {
    /// Path inside the archive (and under data_dir).
    name: String,
    /// Bytes stored in the archive.
    len: u64,
    /// Size to re-extend to on restore (segments are fixed-size files).
    file_size: u64,
    sha256: String,
}

/// What a backup or restore covered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub files: usize,
    pub messages: usize,
    pub bytes: u64,
}

#[derive(Debug, Default)]
struct Manifest {
    files: Vec<FileEntry>,
    /// queue id and CRC-32C of each message record's payload, by place.
    messages: BTreeMap<SpoolRef, (QueueId, u32)>,
    created: String,
}

impl Manifest {
    fn render(&self) -> String {
        let mut body = format!("{MAGIC}\ncreated {}\n", self.created);
        for f in &self.files {
            let _ = writeln!(body, "file {} {} {} {}", f.name, f.len, f.file_size, f.sha256);
        }
        for (at, (qid, crc)) in &self.messages {
            let _ = writeln!(body, "message {qid} {at} {crc:08x}");
        }
        let _ = writeln!(body, "end {} {} {}", self.files.len(), self.messages.len(), hex(&Sha256::digest(&body)));
        body
    }

    fn parse(text: &str, archive: &Path) -> Result<Manifest, BackupError> {
        let bad = |line: usize, reason: String| BackupError::Manifest { path: archive.to_path_buf(), line, reason };
        let mut m = Manifest::default();
        let mut lines = text.split_inclusive('\n').enumerate();
        let mut covered = String::new();
        match lines.next() {
            Some((_, l)) if l.trim_end() == MAGIC => covered.push_str(l),
            _ => return Err(BackupError::NotABackup(archive.to_path_buf())),
        }
        for (i, raw) in lines {
            let n = i + 1;
            let words: Vec<&str> = raw.split_whitespace().collect();
            match words.as_slice() {
                ["created", rest @ ..] => m.created = rest.join(" "),
                ["file", name, len, size, sha] => m.files.push(FileEntry {
                    name: safe_name(name).ok_or_else(|| bad(n, format!("unsafe file name {name:?}")))?,
                    len: len.parse().map_err(|_| bad(n, format!("bad length {len:?}")))?,
                    file_size: size.parse().map_err(|_| bad(n, format!("bad size {size:?}")))?,
                    sha256: sha.to_string(),
                }),
                ["message", qid, at, crc] => {
                    let qid: QueueId = qid.parse().map_err(|e| bad(n, format!("bad queue id: {e}")))?;
                    let at: SpoolRef = at.parse().map_err(|e| bad(n, format!("bad place: {e}")))?;
                    let crc = u32::from_str_radix(crc, 16).map_err(|_| bad(n, format!("bad checksum {crc:?}")))?;
                    m.messages.insert(at, (qid, crc));
                }
                ["end", files, messages, sha] => {
                    if *sha != hex(&Sha256::digest(&covered)) {
                        return Err(BackupError::Altered {
                            path: archive.to_path_buf(),
                            what: "the manifest does not match its own checksum".into(),
                        });
                    }
                    if files.parse() != Ok(m.files.len()) || messages.parse() != Ok(m.messages.len()) {
                        return Err(bad(n, "counts do not match the entries above".into()));
                    }
                    return Ok(m);
                }
                _ => return Err(bad(n, format!("unexpected line {:?}", raw.trim_end()))),
            }
            covered.push_str(raw);
        }
        Err(BackupError::Truncated { path: archive.to_path_buf(), what: "the manifest has no end line".into() })
    }
}

/// A relative path of plain components (no `..`, no absolute paths).
fn safe_name(name: &str) -> Option<String> {
    let p = Path::new(name);
    let ok = !name.is_empty() && p.components().all(|c| matches!(c, std::path::Component::Normal(_)));
    ok.then(|| name.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Write a backup of `data_dir` to `dest`, mode 0600 (atomically: a
/// temporary file renamed into place, `files::replace`). `tails` come from the running server's pin; None
/// for an offline backup.
pub fn backup(data_dir: &Path, users: &Path, tails: Option<&Tails>, dest: &Path) -> Result<Summary, BackupError> {
    let root = data_dir.join("spool");
    let mut manifest = Manifest { created: super::format_time(crate::clock::now_ms()), ..Manifest::default() };
    let mut contents: Vec<ArchiveFile> = Vec::new();
    if users.exists() {
        let bytes = std::fs::read(users).map_err(io_err(users))?;
        manifest.files.push(FileEntry {
            name: USERS.into(),
            len: bytes.len() as u64,
            file_size: bytes.len() as u64,
            sha256: hex(&Sha256::digest(&bytes)),
        });
        let len = bytes.len();
        contents.push((USERS.into(), Box::new(bytes), len));
    }
    for key in walk::segments(&root)? {
        let tail = tails.and_then(|t| t.get(&key.dir));
        if tail.is_some_and(|&(seg, _)| key.seq > seg) {
            continue; // begun after the pin
        }
        let Some(map) = walk::map_segment(&root, key)? else { continue };
        let scan = scan_segment(&map, key);
        // Up to the pinned end, or to the last good record; never into a
        // torn tail.
        let len = match tail {
            Some(&(seg, off)) if key.seq == seg => off.min(scan.tail()),
            _ => scan.tail(),
        } as usize;
        for rec in scan.records.iter().filter(|r| r.payload.end <= len) {
            let payload = &map[rec.payload.clone()];
            if let Some(m) = crate::spool::decode_any_message(rec.kind, payload) {
                let at = SpoolRef { dir: key.dir, segment: key.seq, offset: rec.offset };
                manifest.messages.insert(at, (m.queue_id, crc32c::crc32c(payload)));
            }
        }
        let name = segment_name(key);
        manifest.files.push(FileEntry {
            name: name.clone(),
            len: len as u64,
            file_size: map.len() as u64,
            sha256: hex(&Sha256::digest(&map[..len])),
        });
        contents.push((name, Box::new(map), len));
    }
    let text = manifest.render();
    let summary = Summary {
        files: manifest.files.len(),
        messages: manifest.messages.len(),
        bytes: contents.iter().map(|(_, _, len)| *len as u64).sum(),
    };
    // 0600 whatever was there: the archive holds every password hash and
    // every message.
    crate::files::replace(dest, crate::files::Ownership::Private, |file| {
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        append(&mut tar, MANIFEST, text.as_bytes())?;
        for (name, bytes, len) in &contents {
            append(&mut tar, name, &(**bytes).as_ref()[..*len])?;
        }
        tar.into_inner()?.flush()
    })
    .map_err(io_err(dest))?;
    Ok(summary)
}

/// A file going into the archive: its name, its bytes (owned or mapped)
/// and how many of them.
type ArchiveFile = (String, Box<dyn AsRef<[u8]>>, usize);

fn segment_name(key: SegmentKey) -> String {
    format!("spool/core-{}/{}", key.dir, layout::segment_file_name(key.seq))
}

fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o600);
    header.set_mtime(crate::clock::now_ms() / 1000);
    header.set_cksum();
    tar.append_data(&mut header, name, bytes)
}

/// Where restore unpacks, inside data_dir: the same filesystem, so the spool
/// lands by one rename (even when data_dir is a mount point), and a failed
/// restore's leftovers are where the retry looks for them.
const STAGING: &str = ".restoring";

/// Restore `archive` into `data_dir`, which must be missing or empty: it
/// may hold the users file (the default `users_file` is `<data_dir>/users`)
/// and the staging directory of a failed restore, nothing else.
///
/// The users file goes to `users` unless one is there already (then it is
/// left alone and the backup's copy, if different, is written beside it as
/// `users.restored`), owned like `data_dir` (`files::replace`). The spool is
/// unpacked into `<data_dir>/.restoring/`, checked, and moved into place by
/// one rename, after the users file. On any error nothing is left behind:
/// the staging directory is removed, a users file this restore put in place
/// is removed again, and a data_dir it created is removed, so the restore
/// can be retried at once.
pub fn restore(archive: &Path, data_dir: &Path, users: &Path) -> Result<Summary, BackupError> {
    let created = !data_dir.exists();
    if !only_users_file(data_dir, Path::new(""), users.strip_prefix(data_dir).ok())? {
        return Err(BackupError::NotEmpty(data_dir.to_path_buf()));
    }
    files::create_private_dir_all(data_dir).map_err(io_err(data_dir))?;
    let staging = data_dir.join(STAGING);
    let result = remove_tree(&staging)
        .and_then(|()| files::create_private_dir_all(&staging.join("spool")).map_err(io_err(&staging)))
        .and_then(|()| unpack_and_verify(archive, &staging))
        .and_then(|(manifest, summary)| {
            give_to_owner_of(&staging, data_dir)?;
            land(&staging, data_dir, users, &manifest)?;
            Ok(summary)
        });
    let cleaned = remove_tree(&staging);
    if result.is_err() && created {
        let _ = std::fs::remove_dir(data_dir); // only if empty: never anyone else's files
    }
    let _ = files::sync_dir(files::parent(data_dir));
    let summary = result?;
    cleaned?;
    files::sync_dir(data_dir).map_err(io_err(data_dir))?;
    Ok(summary)
}

/// Does `dir` (at `at` below data_dir) hold nothing but the users file
/// (`users`, relative to data_dir, when it lives inside), the directories
/// leading to it and restore's own staging directory? A missing one does.
fn only_users_file(dir: &Path, at: &Path, users: Option<&Path>) -> Result<bool, BackupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let rel = at.join(entry.file_name());
        if rel == Path::new(STAGING) || users == Some(rel.as_path()) {
            continue;
        }
        let on_the_way = users.is_some_and(|u| u.starts_with(&rel)) && entry.file_type().is_ok_and(|t| t.is_dir());
        if !on_the_way || !only_users_file(&entry.path(), &rel, users)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn remove_tree(dir: &Path) -> Result<(), BackupError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(dir)(e)),
        _ => Ok(()),
    }
}

/// `sudo ringmail restore` into a data_dir the service user owns must not
/// leave a spool that user cannot open: the staged tree gets data_dir's
/// owner and group (a no-op unless we are root and they differ).
fn give_to_owner_of(tree: &Path, data_dir: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(data_dir).map_err(io_err(data_dir))?;
    let mine = std::fs::metadata(tree).map_err(io_err(tree))?;
    if (owner.uid(), owner.gid()) == (mine.uid(), mine.gid()) {
        return Ok(());
    }
    let mut todo = vec![tree.to_path_buf()];
    while let Some(path) = todo.pop() {
        std::os::unix::fs::lchown(&path, Some(owner.uid()), Some(owner.gid())).map_err(io_err(&path))?;
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).map_err(io_err(&path))? {
                todo.push(entry.map_err(io_err(&path))?.path());
            }
        }
    }
    Ok(())
}

/// Put the checked restore in place: the users file first, then the spool
/// by one rename (so a data_dir with a spool is always a complete one). If
/// the rename fails, a users file placed here is taken back.
fn land(staging: &Path, data_dir: &Path, users: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let mut placed = None;
    if manifest.files.iter().any(|f| f.name == USERS) {
        let staged = staging.join(USERS);
        let bytes = std::fs::read(&staged).map_err(io_err(&staged))?;
        let dest = match std::fs::read(users) {
            // A retry after a crash between the two steps finds its own copy.
            Ok(there) if there == bytes => None,
            Ok(_) => Some(users.with_file_name("users.restored")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(users.to_path_buf()),
            Err(e) => return Err(io_err(users)(e)),
        };
        if let Some(dest) = dest {
            let ownership = files::Ownership::Keep { new_like: Some(data_dir) };
            files::replace(&dest, ownership, |f| f.write_all(&bytes)).map_err(io_err(&dest))?;
            placed = (dest == users).then_some(dest);
        }
    }
    let spool = data_dir.join("spool");
    if let Err(e) = std::fs::rename(staging.join("spool"), &spool) {
        if let Some(p) = placed {
            let _ = std::fs::remove_file(&p);
        }
        return Err(io_err(&spool)(e));
    }
    Ok(())
}

fn unpack_and_verify(archive: &Path, staging: &Path) -> Result<(Manifest, Summary), BackupError> {
    let truncated = |what: String| BackupError::Truncated { path: archive.to_path_buf(), what };
    let altered = |what: String| BackupError::Altered { path: archive.to_path_buf(), what };
    let file = std::fs::File::open(archive).map_err(io_err(archive))?;
    let mut tar = tar::Archive::new(std::io::BufReader::new(file));
    let mut entries = tar.entries().map_err(io_err(archive))?;
    let manifest = {
        let mut first = match entries.next() {
            Some(Ok(e)) => e,
            Some(Err(e)) => return Err(altered(format!("unreadable first entry: {e}"))),
            None => return Err(BackupError::NotABackup(archive.to_path_buf())),
        };
        if first.path().ok().as_deref() != Some(Path::new(MANIFEST)) {
            return Err(BackupError::NotABackup(archive.to_path_buf()));
        }
        let mut text = String::new();
        first.read_to_string(&mut text).map_err(|e| truncated(format!("MANIFEST: {e}")))?;
        Manifest::parse(&text, archive)?
    };
    let expected: BTreeMap<&str, &FileEntry> = manifest.files.iter().map(|f| (f.name.as_str(), f)).collect();
    let mut seen: BTreeMap<String, ()> = BTreeMap::new();
    let mut summary = Summary { files: 0, messages: 0, bytes: 0 };
    for entry in entries {
        let mut entry = entry.map_err(|e| truncated(format!("after {} file(s): {e}", seen.len())))?;
        let name = entry.path().map_err(|e| altered(format!("bad entry name: {e}")))?.to_string_lossy().into_owned();
        let Some(want) = expected.get(name.as_str()) else {
            return Err(altered(format!("{name} is not in the manifest")));
        };
        if seen.insert(name.clone(), ()).is_some() {
            return Err(altered(format!("{name} appears twice")));
        }
        let dest = staging.join(&want.name);
        if let Some(dir) = dest.parent() {
            files::create_private_dir_all(dir).map_err(io_err(dir))?;
        }
        let mut out = files::create_private(&dest).map_err(io_err(&dest))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut len = 0u64;
        loop {
            let n = entry.read(&mut buf).map_err(|e| truncated(format!("{name}: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io_err(&dest))?;
            len += n as u64;
        }
        if len != want.len {
            return Err(truncated(format!("{name}: {len} of {} bytes", want.len)));
        }
        if hex(&hasher.finalize()) != want.sha256 {
            return Err(altered(format!("{name}: SHA-256 does not match the manifest")));
        }
        out.set_len(want.file_size.max(len)).map_err(io_err(&dest))?;
        out.sync_all().map_err(io_err(&dest))?;
        summary.files += 1;
        summary.bytes += len;
    }
    if let Some(missing) = manifest.files.iter().find(|f| !seen.contains_key(&f.name)) {
        return Err(truncated(format!(
            "{} is missing ({} of {} files present)",
            missing.name,
            seen.len(),
            manifest.files.len()
        )));
    }
    // Read the restored spool back: every message the manifest lists, with
    // its checksum, and no other.
    let mut found: BTreeMap<SpoolRef, (QueueId, u32)> = BTreeMap::new();
    walk::for_each_record(&staging.join("spool"), |at, kind, payload| {
        if let Some(m) = crate::spool::decode_any_message(kind, payload) {
            found.insert(at, (m.queue_id, crc32c::crc32c(payload)));
        }
    })?;
    for (at, want) in &manifest.messages {
        match found.get(at) {
            None => return Err(altered(format!("message {} at {at} is missing after restore", want.0))),
            Some(got) if got != want => {
                return Err(altered(format!("message {} at {at}: checksum does not match the manifest", want.0)))
            }
            Some(_) => {}
        }
    }
    if let Some((at, (qid, _))) = found.iter().find(|(at, _)| !manifest.messages.contains_key(at)) {
        return Err(altered(format!("message {qid} at {at} is not in the manifest")));
    }
    // Every new entry durable before the rename publishes them.
    let spool = staging.join("spool");
    for sub in std::fs::read_dir(&spool).map_err(io_err(&spool))? {
        let sub = sub.map_err(io_err(&spool))?.path();
        files::sync_dir(&sub).map_err(io_err(&sub))?;
    }
    files::sync_dir(&spool).map_err(io_err(&spool))?;
    summary.messages = found.len();
    Ok((manifest, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_and_detects_edits() {
        let mut m = Manifest { created: "now".into(), ..Manifest::default() };
        m.files.push(FileEntry {
            name: "spool/core-0/segment-00000000".into(),
            len: 10,
            file_size: 64,
            sha256: "ab".into(),
        });
        m.messages.insert(SpoolRef { dir: 0, segment: 0, offset: 0 }, (QueueId(7), 0xdead_beef));
        let text = m.render();
        let back = Manifest::parse(&text, Path::new("a.tar")).unwrap();
        assert_eq!(back.files, m.files);
        assert_eq!(back.messages, m.messages);
        let edited = text.replace("deadbeef", "deadbeee");
        let err = Manifest::parse(&edited, Path::new("a.tar")).unwrap_err().to_string();
        assert!(err.contains("a.tar: archive altered") && err.contains("checksum"), "{err}");
        let cut = &text[..text.find("end").unwrap()];
        assert!(Manifest::parse(cut, Path::new("a.tar")).unwrap_err().to_string().contains("truncated"));
        assert!(matches!(Manifest::parse("hello\n", Path::new("a.tar")), Err(BackupError::NotABackup(_))));
    }

    #[test]
    fn unsafe_names_are_refused() {
        assert_eq!(safe_name("spool/core-0/segment-1").as_deref(), Some("spool/core-0/segment-1"));
        for bad in ["../etc/passwd", "/etc/passwd", "spool/../../x", ""] {
            assert_eq!(safe_name(bad), None, "{bad}");
        }
    }
}
