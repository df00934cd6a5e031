//! Duplicate detection by Message-ID with bounded memory.
//!
//! Each core remembers a 64-bit hash of every accepted Message-ID, up to
//! `cap` per core (about 16 bytes each with table overhead, so the default
//! 4,000,000 is ~64 MiB per core); past the cap new IDs are counted as
//! unchecked rather than growing without bound. Cores' sets are merged once
//! at the end, which also finds duplicates that arrived on different cores.
//! With 64-bit hashes the chance of a false duplicate among 10 million IDs is
//! about 3 in a million.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

/// One core's (or the merged) set of seen IDs.
#[derive(Debug, Clone, Default)]
pub struct Dedup {
    seen: HashSet<u64>,
    cap: usize,
    /// IDs seen before.
    pub duplicates: u64,
    /// IDs not remembered because the cap was reached.
    pub unchecked: u64,
}

fn hash(id: &str) -> u64 {
    // SipHash with fixed keys: the same ID hashes the same on every core.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

impl Dedup {
    /// An empty set remembering at most `cap` IDs.
    pub fn new(cap: usize) -> Self {
        Dedup { seen: HashSet::new(), cap, duplicates: 0, unchecked: 0 }
    }

    /// Records `id`; true if it was seen before.
    pub fn check(&mut self, id: &str) -> bool {
        let h = hash(id);
        if self.seen.contains(&h) {
            self.duplicates += 1;
            true
        } else if self.seen.len() < self.cap {
            self.seen.insert(h);
            false
        } else {
            self.unchecked += 1;
            false
        }
    }

    /// Folds another core's set in, counting IDs both have seen. The merged
    /// set is not capped (it exists only for the final count).
    pub fn merge(&mut self, other: Dedup) {
        self.duplicates += other.duplicates;
        self.unchecked += other.unchecked;
        for h in other.seen {
            if !self.seen.insert(h) {
                self.duplicates += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_sighting_is_a_duplicate() {
        let mut d = Dedup::new(10);
        assert!(!d.check("<a@x>"));
        assert!(d.check("<a@x>"));
        assert!(!d.check("<b@x>"));
        assert_eq!(d.duplicates, 1);
    }

    #[test]
    fn duplicates_across_cores_are_found_at_merge() {
        let mut a = Dedup::new(10);
        let mut b = Dedup::new(10);
        a.check("<1@x>");
        b.check("<1@x>");
        b.check("<2@x>");
        a.merge(b);
        assert_eq!(a.duplicates, 1);
    }

    #[test]
    fn past_the_cap_ids_are_unchecked_not_stored() {
        let mut d = Dedup::new(1);
        d.check("<1@x>");
        assert!(!d.check("<2@x>"));
        assert!(!d.check("<2@x>"));
        assert_eq!((d.duplicates, d.unchecked), (0, 2));
    }
}
