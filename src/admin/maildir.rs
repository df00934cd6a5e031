//! Moving mailboxes to and from other servers: `ringmail export-maildir`,
//! `import-maildir` and `import-mbox`.
//!
//! Export reads the spool directly (read-only; the server may run): the
//! user's live messages are the message records routed to their mailbox
//! that no tombstone has removed. Each becomes one file in `DIR/new/` with
//! LF line ends, as Dovecot and other Maildir readers expect, its mtime
//! the arrival time, and on top the Return-Path and Delivered-To that POP3
//! serves with it (so Dovecot serves the same bytes).
//!
//! Import goes through the running server (the control socket's `import`
//! command) so that the mailbox index, quota and spool stay the owner
//! core's: each message is stored durably, CRLF line ends, with its
//! original date, before the next is sent.

use super::format_time;
use crate::spool::{decode_any_message, decode_moved, decode_tombstone, walk, RecordKind, Route, SpoolError, SpoolRef};
use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("{0}: not a Maildir (no cur/ or new/ directory)")]
    NotMaildir(PathBuf),
    #[error("{path}: line {line}: {reason}")]
    Mbox { path: PathBuf, line: usize, reason: String },
    #[error("server: {0}")]
    Server(String),
    #[error("{origin}: message of {size} bytes is larger than max_message_size ({max}); nothing imported")]
    TooLarge { origin: String, size: usize, max: u64 },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> MoveError + '_ {
    move |source| MoveError::Io { path: path.to_path_buf(), source }
}

/// One message to import: its bytes (any line ends) and arrival time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub bytes: Vec<u8>,
    pub received_ms: u64,
    /// Where it came from, for messages.
    pub origin: String,
}

/// CRLF line ends (the spool's and the wire's form), from LF or CRLF.
pub fn to_crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 40);
    let mut prev = 0u8;
    for &b in bytes {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// LF line ends (Maildir's usual form).
pub fn to_lf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Every message of a Maildir (`new/` and `cur/`, not `tmp/`), oldest
/// first by file mtime.
pub fn read_maildir(dir: &Path) -> Result<Vec<Incoming>, MoveError> {
    if !dir.join("cur").is_dir() && !dir.join("new").is_dir() {
        return Err(MoveError::NotMaildir(dir.to_path_buf()));
    }
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let d = dir.join(sub);
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for entry in rd {
            let entry = entry.map_err(io_err(&d))?;
            let path = entry.path();
            if !path.is_file() || entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(io_err(&path))?;
            let received_ms = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or_else(crate::clock::now_ms, |d| d.as_millis() as u64);
            out.push(Incoming { bytes, received_ms, origin: path.display().to_string() });
        }
    }
    out.sort_by(|a, b| (a.received_ms, &a.origin).cmp(&(b.received_ms, &b.origin)));
    Ok(out)
}

/// Split an mbox file (mboxo or mboxrd: `>From ` quoting is undone one
/// level) into messages; the `From ` line's date is the arrival time.
pub fn read_mbox(path: &Path) -> Result<Vec<Incoming>, MoveError> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut out: Vec<Incoming> = Vec::new();
    let mut current: Option<Incoming> = None;
    let mut prev_blank = true;
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    let mut n = 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(io_err(path))? == 0 {
            break;
        }
        n += 1;
        if line.starts_with(b"From ") && prev_blank {
            if let Some(mut m) = current.take() {
                // The blank line before "From " separates; it is not content.
                if m.bytes.ends_with(b"\r\n\r\n") || m.bytes.ends_with(b"\n\n") {
                    let cut = if m.bytes.ends_with(b"\r\n") { 2 } else { 1 };
                    m.bytes.truncate(m.bytes.len() - cut);
                }
                out.push(m);
            }
            let received_ms = parse_from_line_date(&line).unwrap_or_else(crate::clock::now_ms);
            current = Some(Incoming { bytes: Vec::new(), received_ms, origin: format!("{}:{n}", path.display()) });
            prev_blank = false;
            continue;
        }
        let Some(m) = current.as_mut() else {
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            return Err(MoveError::Mbox {
                path: path.to_path_buf(),
                line: n,
                reason: "an mbox starts with a \"From \" line".into(),
            });
        };
        // mboxrd: ">From ", ">>From " ... lose one '>'.
        let quoted = line.iter().take_while(|&&b| b == b'>').count();
        if quoted > 0 && line[quoted..].starts_with(b"From ") {
            m.bytes.extend_from_slice(&line[1..]);
        } else {
            m.bytes.extend_from_slice(&line);
        }
        prev_blank = line == b"\n" || line == b"\r\n";
    }
    if let Some(mut m) = current.take() {
        if m.bytes.ends_with(b"\n\n") {
            m.bytes.pop();
        }
        out.push(m);
    }
    Ok(out)
}

/// The asctime date of an mbox `From sender Thu Nov 28 09:00:00 2026` line.
fn parse_from_line_date(line: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(line);
    let words: Vec<&str> = text.split_whitespace().collect();
    // "From", sender, weekday, month, day, time, year (a zone may follow).
    let [_, _, _, month, day, time, year, ..] = words.as_slice() else { return None };
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| m.eq_ignore_ascii_case(month))?
        + 1;
    let stamp = format!("{year}-{month:02}-{:02}T{time}Z", day.parse::<u32>().ok()?);
    let t = humantime::parse_rfc3339(&stamp).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64)
}

/// Write every live message of `user` into the Maildir `dir` (created if
/// missing). Returns how many.
pub fn export_maildir(spool_root: &Path, user: &str, dir: &Path, hostname: &str) -> Result<usize, MoveError> {
    let user = user.to_ascii_lowercase();
    // Pass 1: which (record, recipient) are the user's, and which are gone.
    let mut mine: Vec<(SpoolRef, u16)> = Vec::new();
    let mut gone: HashSet<(SpoolRef, u16)> = HashSet::new();
    walk::for_each_record(spool_root, |at, kind, payload| match kind {
        RecordKind::Message | RecordKind::Moved => {
            if let Some(moved) = (kind == RecordKind::Moved).then(|| decode_moved(payload).ok()).flatten() {
                // The old copy is superseded; recipients final before the move stay final.
                for r in 0..moved.message.recipients.len() as u16 {
                    gone.insert((moved.old, r));
                }
                for d in moved.done {
                    gone.insert((at, d));
                }
            }
            if let Some(m) = decode_any_message(kind, payload) {
                for (i, r) in m.recipients.iter().enumerate() {
                    if matches!(&r.route, Route::Local { user: u } if u.eq_ignore_ascii_case(&user)) {
                        mine.push((at, i as u16));
                    }
                }
            }
        }
        RecordKind::Tombstone => {
            if let Ok(t) = decode_tombstone(payload) {
                gone.insert((t.target, t.recipient));
            }
        }
        _ => {}
    })?;
    mine.retain(|k| !gone.contains(k));
    for sub in ["tmp", "new", "cur"] {
        let d = dir.join(sub);
        crate::files::create_private_dir_all(&d).map_err(io_err(&d))?;
    }
    // Pass 2: the bodies.
    let wanted: HashSet<SpoolRef> = mine.iter().map(|(at, _)| *at).collect();
    let mut written = 0;
    let mut failure = None;
    walk::for_each_record(spool_root, |at, kind, payload| {
        if !wanted.contains(&at) || failure.is_some() {
            return;
        }
        let Some(m) = decode_any_message(kind, payload) else { return };
        for &(_, recipient) in mine.iter().filter(|(a, _)| *a == at) {
            // The trace fields POP3 serves above the stored body (mail that
            // was itself imported has none added), so the Maildir holds
            // what the user's client saw.
            let delivered_to = (m.client != crate::shard::intake::IMPORT_CLIENT)
                .then(|| m.recipients.get(usize::from(recipient)).map(|r| r.address.as_str()))
                .flatten();
            let trace = crate::mailbox::trace_fields(&m.sender, delivered_to);
            let lf = to_lf(&[trace.as_bytes(), m.body].concat());
            let name = format!(
                "{}.R{}_{recipient}.{},S={}",
                m.received_at_ms / 1000,
                m.queue_id,
                hostname.replace(['/', ':'], "_"),
                lf.len()
            );
            if let Err(e) = write_maildir_file(dir, &name, &lf, m.received_at_ms) {
                failure = Some(e);
                return;
            }
            written += 1;
        }
    })?;
    match failure {
        Some(e) => Err(e),
        None => Ok(written),
    }
}

/// Maildir delivery: write in tmp/, sync, rename into new/.
fn write_maildir_file(dir: &Path, name: &str, bytes: &[u8], received_ms: u64) -> Result<(), MoveError> {
    let tmp = dir.join("tmp").join(name);
    let dest = dir.join("new").join(name);
    let mut f = crate::files::create_private(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(received_ms);
    f.set_modified(t).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
    Ok(())
}

/// Send messages to the running server's control socket for `user`; each
/// is stored durably before the next goes. Returns the queue ids. A
/// message over `max_size` (max_message_size, counted with CRLF line ends
/// as SMTP counts it) refuses the whole import before anything is sent;
/// the server checks again.
pub fn import(socket: &Path, user: &str, messages: &[Incoming], max_size: u64) -> Result<Vec<String>, MoveError> {
    if let Some((m, size)) =
        messages.iter().map(|m| (m, to_crlf(&m.bytes).len())).find(|&(_, size)| size as u64 > max_size)
    {
        return Err(MoveError::TooLarge { origin: m.origin.clone(), size, max: max_size });
    }
    let mut stream = std::os::unix::net::UnixStream::connect(socket).map_err(|e| {
        MoveError::Server(format!(
            "cannot reach the running server at {} ({e}); import needs it running",
            socket.display()
        ))
    })?;
    let mut reader = std::io::BufReader::new(stream.try_clone().map_err(io_err(socket))?);
    writeln!(stream, "import {user}").map_err(io_err(socket))?;
    let mut greeting = String::new();
    reader.read_line(&mut greeting).map_err(io_err(socket))?;
    if greeting.trim() != "ready" {
        let why = if greeting.is_empty() { "connection closed" } else { greeting.trim() };
        return Err(MoveError::Server(why.trim_start_matches("error: ").to_string()));
    }
    let mut ids = Vec::new();
    for m in messages {
        let body = to_crlf(&m.bytes);
        writeln!(stream, "message {} {}", body.len(), m.received_ms).map_err(io_err(socket))?;
        stream.write_all(&body).map_err(io_err(socket))?;
        let mut answer = String::new();
        reader.read_line(&mut answer).map_err(io_err(socket))?;
        match answer.trim().split_once(' ') {
            Some(("stored", id)) => ids.push(id.to_string()),
            _ => {
                let why = if answer.is_empty() { "connection closed".to_string() } else { answer.trim().to_string() };
                return Err(MoveError::Server(format!("{} ({}): {why}", m.origin, format_time(m.received_ms))));
            }
        }
    }
    writeln!(stream, "end").map_err(io_err(socket))?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ends_convert_both_ways() {
        assert_eq!(to_crlf(b"a\nb\r\nc"), b"a\r\nb\r\nc\r\n");
        assert_eq!(to_lf(b"a\r\nb\r\n"), b"a\nb\n");
        assert_eq!(to_crlf(&to_lf(b"x\r\ny\r\n")), b"x\r\ny\r\n");
    }

    #[test]
    fn mbox_splits_unquotes_and_dates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("box");
        std::fs::write(
            &p,
            "From a@x Thu Nov 26 10:00:00 2026\nSubject: one\n\nhello\n>From the start\n\n\
             From b@y Fri Nov 27 11:30:00 2026\nSubject: two\n\nbye\n",
        )
        .unwrap();
        let msgs = read_mbox(&p).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].bytes, b"Subject: one\n\nhello\nFrom the start\n");
        assert_eq!(msgs[1].bytes, b"Subject: two\n\nbye\n");
        assert_eq!(format_time(msgs[1].received_ms), "2026-11-27T11:30:00Z");
        std::fs::write(&p, "Subject: no From line\n").unwrap();
        let err = read_mbox(&p).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("From"), "{err}");
    }

    #[test]
    fn maildir_needs_cur_or_new() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(read_maildir(dir.path()), Err(MoveError::NotMaildir(_))));
        std::fs::create_dir(dir.path().join("new")).unwrap();
        std::fs::write(dir.path().join("new").join("1.a.host"), "Subject: x\n\nbody\n").unwrap();
        let msgs = read_maildir(dir.path()).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].bytes, b"Subject: x\n\nbody\n");
    }
}
