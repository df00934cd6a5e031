//! Greylisting: the triplet table (pure, time passed in) and its file.
//!
//! A triplet is (client network: the /24 of an IPv4 client, the /64 of an
//! IPv6 one; sender, lowercased, `<>` for the null sender; recipient,
//! lowercased). First sight defers it for `delay`; a retry after that
//! passes and whitelists it; an entry is forgotten `expiry` after it was
//! last used (a pending one, `expiry` after first sight).
//!
//! The file (`data_dir/greylist`) is an append log of tab-separated lines
//! `first_seen_ms passed(0|1) last_used_ms network sender recipient`
//! (tabs cannot occur in an SMTP address), the last line of a triplet
//! winning on replay; it is rewritten atomically (`files::replace`) when it
//! holds more than twice the live entries. Lines are appended and
//! fdatasync'd by a thread of its own so that no core waits for a disk:
//! a decision is made in memory, and its line is durable a few
//! milliseconds later. A crash in that window forgets the triplet, which
//! costs the client one more deferral, never a wrong pass.
//!
//! One table serves every core behind a `Mutex`: clients retry from
//! another connection, so on any core. It is not a hot path: it is asked
//! once per recipient of unauthenticated, unlisted mail, for a hash lookup
//! of microseconds, next to a DNS-bound session.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, PoisonError};

/// Triplets the table holds at most; when full, the least recently used
/// eighth goes.
pub const MAX_ENTRIES: usize = 200_000;
/// A whitelisted triplet's use is written again at most this often
/// (its expiry is counted in weeks; a line per message would be waste).
const REFRESH_MS: u64 = 3_600_000;
/// The file is not compacted below this many lines.
const MIN_COMPACT_LINES: usize = 4096;

/// The greylisting answer for one triplet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greylisting {
    /// Whitelisted (`first`: by this very retry).
    Pass { first: bool },
    /// Defer for `seconds` more (`new`: first sight).
    Defer { seconds: u64, new: bool },
}

/// One triplet's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    first_seen: u64,
    passed: bool,
    last_used: u64,
    /// `last_used` as last written to the file.
    written: u64,
}

/// The triplet key: `network \t sender \t recipient`.
pub fn triplet(client: IpAddr, sender: &str, rcpt: &str) -> String {
    let net = match super::site::unmapped(client) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    };
    let sender = if sender.is_empty() { "<>".to_string() } else { sender.to_lowercase() };
    format!("{net}\t{sender}\t{}", rcpt.to_lowercase())
}

/// The triplets in memory. Pure: `now` (ms) is passed in.
#[derive(Debug)]
pub struct Table {
    entries: HashMap<String, Entry>,
    max: usize,
}

impl Table {
    pub fn new(max: usize) -> Table {
        Table { entries: HashMap::new(), max: max.max(8) }
    }

    /// Decide `key` at `now`; returns the answer and the line to append
    /// to the file, if the state changed enough to be written.
    pub fn decide(&mut self, key: &str, now: u64, delay_ms: u64, expiry_ms: u64) -> (Greylisting, Option<String>) {
        let live = self.entries.get(key).filter(|e| now.saturating_sub(e.last_used) <= expiry_ms).copied();
        let (answer, entry) = match live {
            None => {
                let e = Entry { first_seen: now, passed: false, last_used: now, written: now };
                (Greylisting::Defer { seconds: delay_ms.div_ceil(1000), new: true }, e)
            }
            Some(e) if !e.passed && now.saturating_sub(e.first_seen) < delay_ms => {
                let left = delay_ms - now.saturating_sub(e.first_seen);
                return (Greylisting::Defer { seconds: left.div_ceil(1000).max(1), new: false }, None);
            }
            Some(e) if !e.passed => {
                (Greylisting::Pass { first: true }, Entry { passed: true, last_used: now, written: now, ..e })
            }
            Some(e) if now.saturating_sub(e.written) < REFRESH_MS => {
                self.entries.insert(key.to_string(), Entry { last_used: now, ..e });
                return (Greylisting::Pass { first: false }, None);
            }
            Some(e) => (Greylisting::Pass { first: false }, Entry { last_used: now, written: now, ..e }),
        };
        if live.is_none() {
            self.make_room(now, expiry_ms);
        }
        self.entries.insert(key.to_string(), entry);
        (answer, Some(line(key, &entry)))
    }

    /// Apply one line of the file (replay); a malformed one is skipped.
    fn replay(&mut self, text: &str) -> bool {
        let mut fields = text.splitn(4, '\t');
        let (Some(first), Some(passed), Some(last), Some(key)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        let (Ok(first_seen), Ok(last_used)) = (first.parse::<u64>(), last.parse::<u64>()) else { return false };
        if key.split('\t').count() != 3 || !matches!(passed, "0" | "1") {
            return false;
        }
        let entry = Entry { first_seen, passed: passed == "1", last_used, written: last_used };
        self.entries.insert(key.to_string(), entry);
        true
    }

    /// Before an insert into a full table: drop expired entries, then the
    /// least recently used eighth (so the sort is paid once per max/8).
    fn make_room(&mut self, now: u64, expiry_ms: u64) {
        if self.entries.len() < self.max {
            return;
        }
        self.entries.retain(|_, e| now.saturating_sub(e.last_used) <= expiry_ms);
        let low_water = self.max - self.max / 8;
        if self.entries.len() < low_water {
            return;
        }
        let mut by_age: Vec<(u64, String)> = self.entries.iter().map(|(k, e)| (e.last_used, k.clone())).collect();
        by_age.sort_unstable();
        for (_, key) in by_age.into_iter().take(self.entries.len() - low_water) {
            self.entries.remove(&key);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn lines(&self) -> Vec<String> {
        self.entries.iter().map(|(k, e)| line(k, e)).collect()
    }
}

fn line(key: &str, e: &Entry) -> String {
    format!("{}\t{}\t{}\t{key}\n", e.first_seen, u8::from(e.passed), e.last_used)
}

/// Why the greylist file could not be opened at start.
#[derive(Debug, thiserror::Error)]
#[error("greylist file {path}: {source}")]
pub struct StoreError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// The table shared by every core, and the channel to its writer thread.
#[derive(Debug)]
pub struct Store {
    table: Arc<Mutex<Table>>,
    lines: Mutex<mpsc::Sender<String>>,
}

impl Store {
    /// Replay `path` (a missing file is an empty table) and start the
    /// writer thread. Blocking: call at start-up, not on a core.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let err = |source| StoreError { path: path.to_path_buf(), source };
        let mut table = Table::new(MAX_ENTRIES);
        let mut count = 0;
        match File::open(path) {
            Ok(f) => {
                for text in io::BufReader::new(f).lines() {
                    // A torn last line (crash mid-append) is skipped.
                    count += usize::from(table.replay(&text.map_err(err)?));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        let table = Arc::new(Mutex::new(table));
        let file = append(path).map_err(err)?;
        let (tx, rx) = mpsc::channel();
        let (writer_table, writer_path) = (table.clone(), path.to_path_buf());
        std::thread::Builder::new()
            .name("greylist".into())
            .spawn(move || writer(rx, file, count, &writer_path, &writer_table))
            .map_err(err)?;
        Ok(Store { table, lines: Mutex::new(tx) })
    }

    /// Decide a triplet now; its line goes to the writer thread.
    pub fn decide(&self, key: &str, now_ms: u64, delay_ms: u64, expiry_ms: u64) -> Greylisting {
        let (answer, line) =
            self.table.lock().unwrap_or_else(PoisonError::into_inner).decide(key, now_ms, delay_ms, expiry_ms);
        if let Some(line) = line {
            // The writer only stops with the process.
            let _ = self.lines.lock().unwrap_or_else(PoisonError::into_inner).send(line);
        }
        answer
    }
}

fn append(path: &Path) -> io::Result<File> {
    crate::files::create_private_dir_all(crate::files::parent(path))?;
    std::fs::OpenOptions::new().append(true).create(true).open(path)
}

/// The writer thread: append what comes (in batches), fdatasync, and
/// rewrite the file when it has grown to more than twice the table.
fn writer(rx: mpsc::Receiver<String>, mut file: File, mut lines: usize, path: &Path, table: &Mutex<Table>) {
    while let Ok(first) = rx.recv() {
        let mut batch = first;
        let mut n = 1;
        while let Ok(more) = rx.try_recv() {
            batch.push_str(&more);
            n += 1;
        }
        if let Err(e) = file.write_all(batch.as_bytes()).and_then(|()| file.sync_data()) {
            tracing::warn!(path = %path.display(), error = %e, "greylist file write failed");
        }
        lines += n;
        let live = table.lock().unwrap_or_else(PoisonError::into_inner).lines();
        if lines > MIN_COMPACT_LINES && lines > 2 * live.len() {
            let rewrite = crate::files::replace(path, crate::files::Ownership::Private, |f| {
                f.write_all(live.concat().as_bytes())
            });
            match rewrite.and_then(|()| append(path)) {
                Ok(f) => {
                    file = f;
                    lines = live.len();
                }
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "greylist file rewrite failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: u64 = 300_000;
    const EXPIRY: u64 = 35 * 86_400_000;

    #[test]
    fn triplet_uses_the_network_and_lowercases() {
        assert_eq!(triplet("192.0.2.77".parse().unwrap(), "A@B.example", "X@Y"), "192.0.2.0/24\ta@b.example\tx@y");
        assert_eq!(triplet("::ffff:192.0.2.77".parse().unwrap(), "", "x@y"), "192.0.2.0/24\t<>\tx@y");
        assert_eq!(triplet("2001:db8:1:2:3::9".parse().unwrap(), "a@b", "x@y"), "2001:db8:1:2::/64\ta@b\tx@y");
    }

    #[test]
    fn first_sight_defers_retry_too_soon_defers_after_delay_passes() {
        let mut t = Table::new(100);
        let (a, line) = t.decide("k", 1_000, DELAY, EXPIRY);
        assert_eq!(a, Greylisting::Defer { seconds: 300, new: true });
        assert!(line.is_some());
        let (a, line) = t.decide("k", 61_000, DELAY, EXPIRY);
        assert_eq!(a, Greylisting::Defer { seconds: 240, new: false });
        assert!(line.is_none(), "a retry too soon changes nothing on disk");
        let (a, line) = t.decide("k", 301_000, DELAY, EXPIRY);
        assert_eq!(a, Greylisting::Pass { first: true });
        assert!(line.unwrap().starts_with("1000\t1\t301000\tk"));
        assert_eq!(t.decide("k", 302_000, DELAY, EXPIRY), (Greylisting::Pass { first: false }, None));
    }

    #[test]
    fn entries_expire_after_last_use_and_use_refreshes() {
        let mut t = Table::new(100);
        t.decide("k", 0, DELAY, EXPIRY);
        t.decide("k", DELAY, DELAY, EXPIRY);
        let later = DELAY + EXPIRY - 1;
        assert!(matches!(t.decide("k", later, DELAY, EXPIRY), (Greylisting::Pass { .. }, Some(_))));
        assert!(matches!(t.decide("k", later + EXPIRY, DELAY, EXPIRY).0, Greylisting::Pass { .. }));
        assert!(matches!(t.decide("k", later + 3 * EXPIRY, DELAY, EXPIRY).0, Greylisting::Defer { new: true, .. }));
    }

    #[test]
    fn replay_restores_state_and_skips_torn_lines() {
        let mut t = Table::new(100);
        let (_, l1) = t.decide("n\ts\tr", 0, DELAY, EXPIRY);
        let (_, l2) = t.decide("n\ts\tr", DELAY, DELAY, EXPIRY);
        let mut u = Table::new(100);
        assert!(u.replay(l1.unwrap().trim_end()));
        assert!(u.replay(l2.unwrap().trim_end()));
        assert!(!u.replay("12\t1\t3"), "torn line");
        assert!(!u.replay("x\t1\t3\tn\ts\tr"));
        assert_eq!(u.decide("n\ts\tr", DELAY + 1, DELAY, EXPIRY).0, Greylisting::Pass { first: false });
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_used() {
        let mut t = Table::new(16);
        for i in 0..16u64 {
            t.decide(&format!("k{i}"), i, DELAY, EXPIRY);
        }
        t.decide("new", 100, DELAY, EXPIRY);
        assert!(t.len() <= 16);
        assert!(matches!(t.decide("k0", 101, DELAY, EXPIRY).0, Greylisting::Defer { new: true, .. }), "oldest evicted");
        assert!(matches!(t.decide("k15", 102, DELAY, EXPIRY).0, Greylisting::Defer { new: false, .. }), "newest kept");
    }

    #[test]
    fn store_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("greylist");
        let store = Store::open(&path).unwrap();
        assert!(matches!(store.decide("n\ts\tr", 0, DELAY, EXPIRY), Greylisting::Defer { new: true, .. }));
        // The writer thread appends; wait for the line.
        for _ in 0..200 {
            if std::fs::read_to_string(&path).unwrap_or_default().contains("n\ts\tr") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let again = Store::open(&path).unwrap();
        assert_eq!(again.decide("n\ts\tr", DELAY, DELAY, EXPIRY), Greylisting::Pass { first: true });
    }
}
