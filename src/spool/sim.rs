//! Test double of [`SegmentStore`] that simulates power loss, in the manner
//! of SQLite's crash-test VFS: per file it keeps the synced image and the
//! writes made since the last sync separately, and [`SimDisk::crash`] decides
//! which unsynced bytes survive. It can also fail writes, syncs and segment
//! creation at random or on demand. Tests only.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::rc::Rc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::ids::SegmentKey;
use super::io::{SegmentFile, SegmentStore};

/// What survives of the unsynced writes at a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CrashMode {
    /// None of them.
    DropUnsynced,
    /// A random prefix of them, in write order (torn mid-record).
    TornPrefix,
    /// Random 512-byte sectors of them.
    RandomSectors,
}

impl CrashMode {
    pub(crate) const ALL: [CrashMode; 3] = [CrashMode::DropUnsynced, CrashMode::TornPrefix, CrashMode::RandomSectors];
}

/// Probabilities of injected failures.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Faults {
    pub(crate) write: f64,
    pub(crate) sync: f64,
    pub(crate) create: f64,
}

#[derive(Debug, Default)]
struct SimFileData {
    /// What a crash keeps for sure.
    durable: Vec<u8>,
    /// Writes since the last sync, in order: (position, bytes).
    unsynced: Vec<(u64, Vec<u8>)>,
}

struct DiskState {
    files: BTreeMap<SegmentKey, SimFileData>,
    rng: StdRng,
    faults: Faults,
    fail_next_sync: bool,
    /// While set, syncs wait (after their writes are counted as covered).
    hold_syncs: bool,
    syncs: u64,
}

/// A simulated disk shared by the stores of several spool directories.
pub(crate) struct SimDisk {
    state: RefCell<DiskState>,
}

impl SimDisk {
    pub(crate) fn new(seed: u64, faults: Faults) -> Rc<SimDisk> {
        SimDisk::from_images(seed, BTreeMap::new(), faults)
    }

    /// A disk holding `images`, all durable (as after a restart).
    pub(crate) fn from_images(seed: u64, images: BTreeMap<SegmentKey, Vec<u8>>, faults: Faults) -> Rc<SimDisk> {
        let files = images.into_iter().map(|(k, durable)| (k, SimFileData { durable, unsynced: Vec::new() })).collect();
        Rc::new(SimDisk {
            state: RefCell::new(DiskState {
                files,
                rng: StdRng::seed_from_u64(seed),
                faults,
                fail_next_sync: false,
                hold_syncs: false,
                syncs: 0,
            }),
        })
    }

    pub(crate) fn store(self: &Rc<Self>, dir: u16) -> SimStore {
        SimStore { disk: self.clone(), dir }
    }

    /// Makes the next `sync_data` fail.
    pub(crate) fn fail_next_sync(&self) {
        self.state.borrow_mut().fail_next_sync = true;
    }

    /// Makes syncs wait until called again with `false`.
    pub(crate) fn hold_syncs(&self, hold: bool) {
        self.state.borrow_mut().hold_syncs = hold;
    }

    /// Successful syncs so far.
    pub(crate) fn syncs(&self) -> u64 {
        self.state.borrow().syncs
    }

    /// Segments that exist now.
    pub(crate) fn segments(&self) -> Vec<SegmentKey> {
        self.state.borrow().files.keys().copied().collect()
    }

    /// The images a power loss right now would leave.
    pub(crate) fn crash(&self, mode: CrashMode) -> BTreeMap<SegmentKey, Vec<u8>> {
        let mut st = self.state.borrow_mut();
        let DiskState { files, rng, .. } = &mut *st;
        files
            .iter()
            .map(|(&key, f)| {
                let mut img = f.durable.clone();
                let mut keep = match mode {
                    CrashMode::TornPrefix => {
                        let total: usize = f.unsynced.iter().map(|(_, b)| b.len()).sum();
                        rng.gen_range(0..=total)
                    }
                    _ => 0,
                };
                for (pos, bytes) in &f.unsynced {
                    let pos = *pos as usize;
                    match mode {
                        CrashMode::DropUnsynced => {}
                        CrashMode::TornPrefix => {
                            let n = keep.min(bytes.len());
                            img[pos..pos + n].copy_from_slice(&bytes[..n]);
                            keep -= n;
                        }
                        CrashMode::RandomSectors => {
                            let end = pos + bytes.len();
                            let mut s = pos / 512 * 512;
                            while s < end {
                                let (a, b) = (s.max(pos), (s + 512).min(end));
                                if rng.gen_bool(0.5) {
                                    img[a..b].copy_from_slice(&bytes[a - pos..b - pos]);
                                }
                                s += 512;
                            }
                        }
                    }
                }
                (key, img)
            })
            .collect()
    }

    /// Lets other tasks run a random number of times, so that appends,
    /// waits and rounds interleave differently per seed.
    async fn delay(&self) {
        let n = self.state.borrow_mut().rng.gen_range(0..3);
        for _ in 0..n {
            futures_lite::future::yield_now().await;
        }
    }

    fn roll(&self, p: f64) -> bool {
        p > 0.0 && self.state.borrow_mut().rng.gen_bool(p)
    }
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} failure"))
}

/// One directory of a [`SimDisk`].
pub(crate) struct SimStore {
    disk: Rc<SimDisk>,
    dir: u16,
}

/// An open file of a [`SimDisk`].
pub(crate) struct SimFile {
    disk: Rc<SimDisk>,
    key: SegmentKey,
}

impl SegmentStore for SimStore {
    type File = SimFile;

    async fn create(&self, seq: u32, size: u64) -> io::Result<SimFile> {
        self.disk.delay().await;
        let key = SegmentKey { dir: self.dir, seq };
        let p = self.disk.state.borrow().faults.create;
        if self.disk.roll(p) {
            return Err(injected("create"));
        }
        let mut st = self.disk.state.borrow_mut();
        if st.files.contains_key(&key) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, key.to_string()));
        }
        st.files.insert(key, SimFileData { durable: vec![0; size as usize], unsynced: Vec::new() });
        Ok(SimFile { disk: self.disk.clone(), key })
    }

    async fn open(&self, seq: u32) -> io::Result<SimFile> {
        self.disk.delay().await;
        let key = SegmentKey { dir: self.dir, seq };
        if !self.disk.state.borrow().files.contains_key(&key) {
            return Err(io::Error::new(io::ErrorKind::NotFound, key.to_string()));
        }
        Ok(SimFile { disk: self.disk.clone(), key })
    }

    async fn remove(&self, seq: u32) -> io::Result<()> {
        self.disk.delay().await;
        let key = SegmentKey { dir: self.dir, seq };
        match self.disk.state.borrow_mut().files.remove(&key) {
            Some(_) => Ok(()),
            None => Err(io::Error::new(io::ErrorKind::NotFound, key.to_string())),
        }
    }
}

impl SegmentFile for SimFile {
    async fn write_at(&self, buf: Vec<u8>, pos: u64) -> io::Result<()> {
        self.disk.delay().await;
        let p = self.disk.state.borrow().faults.write;
        let fail = self.disk.roll(p);
        let mut st = self.disk.state.borrow_mut();
        let DiskState { files, rng, .. } = &mut *st;
        let file = files.get_mut(&self.key).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        if pos as usize + buf.len() > file.durable.len() {
            return Err(io::Error::other("write past the end of a segment"));
        }
        if fail {
            // Part of the write may have reached the page cache.
            let n = rng.gen_range(0..=buf.len());
            file.unsynced.push((pos, buf[..n].to_vec()));
            return Err(injected("write"));
        }
        file.unsynced.push((pos, buf));
        Ok(())
    }

    async fn sync_data(&self) -> io::Result<()> {
        // Only writes completed before the sync started are covered.
        let covered = {
            let st = self.disk.state.borrow();
            st.files.get(&self.key).map_or(0, |f| f.unsynced.len())
        };
        self.disk.delay().await;
        while self.disk.state.borrow().hold_syncs {
            futures_lite::future::yield_now().await;
        }
        let p = self.disk.state.borrow().faults.sync;
        let fail = self.disk.roll(p);
        let mut st = self.disk.state.borrow_mut();
        let fail = fail || std::mem::take(&mut st.fail_next_sync);
        let DiskState { files, rng, .. } = &mut *st;
        let file = files.get_mut(&self.key).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        if fail {
            // Like Linux after a failed fsync: the dirty pages may be gone.
            if rng.gen_bool(0.5) {
                file.unsynced.clear();
            }
            return Err(injected("sync"));
        }
        let covered = covered.min(file.unsynced.len());
        for (pos, bytes) in file.unsynced.drain(..covered) {
            let pos = pos as usize;
            file.durable[pos..pos + bytes.len()].copy_from_slice(&bytes);
        }
        st.syncs += 1;
        Ok(())
    }
}
