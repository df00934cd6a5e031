//! The suppression list as each core holds it: addresses not to send to,
//! with when and why they were suppressed and until when.
//!
//! Pure (time is passed in). Every core keeps a full copy, so the check at
//! RCPT and at dispatch is one hash lookup on the core already doing the
//! work, with no cross-core hop on the hot path. Changes are made only by
//! the core owning the address's domain (`shard::owner::domain_owner`,
//! the core that also owns its queue and sees its bounces): it writes the
//! spool record, then tells every other core (`ShardMsg::Suppression`), so
//! one address has one writer and its updates arrive in order. The shard
//! side (durability, messages, the CLI) is `shard::suppress`.

use crate::spool::{LiveSuppression, SpoolRef};
use std::collections::{BTreeSet, HashMap};

/// One suppressed address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The address, lowercased (the key).
    pub address: String,
    /// When it was suppressed (ms since the epoch).
    pub since_ms: u64,
    /// When it stops being suppressed (ms since the epoch).
    pub until_ms: u64,
    /// The bounce class that caused it, or `manual`.
    pub class: String,
    /// The remote reply (or the operator's reason).
    pub reason: String,
    /// The live spool records holding this entry (one, except after a
    /// crash between writing a newer entry and ending the older one):
    /// all are ended when the entry is deleted, replaced or expires.
    pub records: Vec<SpoolRef>,
}

/// A change sent from an address's owner to the other cores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// Add or replace the entry (an older `since_ms` than the one held is
    /// ignored).
    Set(Entry),
    /// Drop the entry if it is not newer than `since_ms`.
    Remove { address: String, since_ms: u64 },
}

/// The suppression list of one core. Lookups are O(1); finding what
/// expired costs O(log n) plus what it returns.
#[derive(Debug, Default)]
pub struct Suppressions {
    map: HashMap<String, Entry>,
    /// (until_ms, address) of every entry in `map`: the sweep reads the
    /// ended ones from the front instead of scanning the list.
    by_until: BTreeSet<(u64, String)>,
}

/// The list key of an address: lowercased, without angle brackets.
/// (Local parts are case-sensitive in theory; no provider treats them so,
/// and a bounce's case need not match the next message's.)
pub fn key(address: &str) -> String {
    address.trim().trim_start_matches('<').trim_end_matches('>').to_ascii_lowercase()
}

/// The domain of an address key (empty if it has no `@`).
pub fn domain_of(key: &str) -> &str {
    key.rsplit_once('@').map_or("", |(_, d)| d)
}

impl Suppressions {
    /// The list recovered from the spool: per address the entry with the
    /// latest `since_ms`; every live record of the address is kept in it.
    pub fn from_recovered(live: Vec<LiveSuppression>) -> Suppressions {
        let mut map: HashMap<String, Entry> = HashMap::new();
        let mut by_until = BTreeSet::new();
        for s in live {
            let r = s.record;
            let address = key(&r.address);
            let entry = Entry {
                address: address.clone(),
                since_ms: r.since_ms,
                until_ms: r.until_ms,
                class: r.class,
                reason: r.reason,
                records: vec![s.at],
            };
            match map.get_mut(&address) {
                Some(held) => {
                    let mut records = std::mem::take(&mut held.records);
                    records.push(s.at);
                    if entry.since_ms >= held.since_ms {
                        *held = entry;
                    }
                    held.records = records;
                }
                None => {
                    map.insert(address, entry);
                }
            }
        }
        for e in map.values() {
            by_until.insert((e.until_ms, e.address.clone()));
        }
        Suppressions { map, by_until }
    }

    fn insert(&mut self, entry: Entry) {
        self.take(&entry.address);
        self.by_until.insert((entry.until_ms, entry.address.clone()));
        self.map.insert(entry.address.clone(), entry);
    }

    fn take(&mut self, key: &str) -> Option<Entry> {
        let old = self.map.remove(key)?;
        self.by_until.remove(&(old.until_ms, old.address.clone()));
        Some(old)
    }

    /// The entry suppressing `address` at `now_ms`, if any (an entry past
    /// its `until_ms` suppresses nothing, even before it is swept).
    pub fn active(&self, address: &str, now_ms: u64) -> Option<&Entry> {
        self.map.get(&key(address)).filter(|e| e.until_ms > now_ms)
    }

    /// The entry held for `address`, expired or not.
    pub fn get(&self, address: &str) -> Option<&Entry> {
        self.map.get(&key(address))
    }

    /// Apply a change (see [`Update`]).
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Set(entry) => {
                if self.map.get(&entry.address).is_none_or(|held| held.since_ms <= entry.since_ms) {
                    self.insert(entry);
                }
            }
            Update::Remove { address, since_ms } => {
                if self.map.get(&address).is_some_and(|held| held.since_ms <= since_ms) {
                    self.take(&address);
                }
            }
        }
    }

    /// Remove and return the entry for `address`.
    pub fn remove(&mut self, address: &str) -> Option<Entry> {
        self.take(&key(address))
    }

    /// Compaction moved records (old place -> new place).
    pub fn relocate(&mut self, moves: &HashMap<SpoolRef, SpoolRef>) {
        if moves.is_empty() {
            return;
        }
        for e in self.map.values_mut() {
            for at in &mut e.records {
                if let Some(new) = moves.get(at) {
                    *at = *new;
                }
            }
        }
    }

    /// Addresses whose entry ended by `now_ms` and for which `owned` is
    /// true (the caller's own addresses), at most `max`.
    pub fn expired(&self, now_ms: u64, max: usize, owned: impl Fn(&str) -> bool) -> Vec<String> {
        self.by_until
            .iter()
            .take_while(|(until, _)| *until <= now_ms)
            .filter(|(_, a)| owned(a))
            .take(max)
            .map(|(_, a)| a.clone())
            .collect()
    }

    /// Entries in force at `now_ms`, by address.
    pub fn list(&self, now_ms: u64) -> Vec<&Entry> {
        let mut v: Vec<&Entry> = self.map.values().filter(|e| e.until_ms > now_ms).collect();
        v.sort_by(|a, b| a.address.cmp(&b.address));
        v
    }

    /// Entries held (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No entries held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::SuppressionRecord;

    fn at(offset: u32) -> SpoolRef {
        SpoolRef { dir: 0, segment: 1, offset }
    }

    fn entry(address: &str, since_ms: u64, until_ms: u64) -> Entry {
        Entry {
            address: address.into(),
            since_ms,
            until_ms,
            class: "invalid-recipient".into(),
            reason: "550 5.1.1".into(),
            records: vec![at(since_ms as u32)],
        }
    }

    #[test]
    fn lookup_ignores_case_brackets_and_expired_entries() {
        let mut s = Suppressions::default();
        s.apply(Update::Set(entry("x@remote.test", 10, 100)));
        assert!(s.active("<X@Remote.Test>", 50).is_some());
        assert!(s.active("x@remote.test", 100).is_none(), "ends at until_ms");
        assert!(s.get("x@remote.test").is_some(), "held until swept");
        assert_eq!(s.expired(100, 10, |_| true), ["x@remote.test"]);
        assert!(s.expired(100, 10, |_| false).is_empty());
        assert!(s.expired(99, 10, |_| true).is_empty(), "not ended yet");
        s.remove("x@remote.test");
        assert!(s.expired(100, 10, |_| true).is_empty(), "the expiry index follows removals");
    }

    #[test]
    fn older_updates_do_not_undo_newer_ones() {
        let mut s = Suppressions::default();
        s.apply(Update::Set(entry("x@r.test", 20, 100)));
        s.apply(Update::Set(entry("x@r.test", 10, 200)));
        assert_eq!(s.get("x@r.test").map(|e| e.since_ms), Some(20));
        s.apply(Update::Remove { address: "x@r.test".into(), since_ms: 15 });
        assert!(s.get("x@r.test").is_some());
        s.apply(Update::Remove { address: "x@r.test".into(), since_ms: 20 });
        assert!(s.is_empty());
    }

    #[test]
    fn recovery_keeps_the_latest_entry_and_every_record() {
        let rec = |since_ms, class: &str| SuppressionRecord {
            address: "X@r.test".into(),
            since_ms,
            until_ms: since_ms + 100,
            class: class.into(),
            reason: String::new(),
            replaces: None,
        };
        let s = Suppressions::from_recovered(vec![
            LiveSuppression { at: at(8), record: rec(50, "bad-domain") },
            LiveSuppression { at: at(64), record: rec(40, "invalid-recipient") },
        ]);
        let e = s.get("x@r.test").unwrap();
        assert_eq!((e.since_ms, e.class.as_str()), (50, "bad-domain"));
        assert_eq!(e.records, [at(8), at(64)]);
    }

    #[test]
    fn relocation_follows_compaction() {
        let mut s = Suppressions::default();
        s.apply(Update::Set(entry("x@r.test", 8, 100)));
        s.relocate(&HashMap::from([(at(8), SpoolRef { dir: 0, segment: 2, offset: 0 })]));
        assert_eq!(s.get("x@r.test").unwrap().records, [SpoolRef { dir: 0, segment: 2, offset: 0 }]);
    }
}
