//! Who owns what: the stable hashes that map users and destination domains
//! to cores, and spool directories to the core that settles their records.
//!
//! Pure. The hash must stay stable across releases only within one run's
//! life (recovery recomputes every owner from the spool at start), so a
//! change of `cores` simply rehomes mailboxes and queues at the next start.

/// The core that owns `user`'s mailbox (address compared case-insensitively).
pub fn user_owner(user: &str, cores: usize) -> usize {
    key_owner(user, cores)
}

/// The core that owns the relay queue for `domain`.
pub fn domain_owner(domain: &str, cores: usize) -> usize {
    key_owner(domain, cores)
}

/// The core that appends tombstones and reclaims segments for spool
/// directory `dir`. A dir left by a run with more cores is adopted by
/// `dir % cores`.
pub fn dir_owner(dir: u16, cores: usize) -> usize {
    dir as usize % cores.max(1)
}

fn key_owner(key: &str, cores: usize) -> usize {
    if cores <= 1 {
        return 0;
    }
    let crc = key.bytes().fold(0u32, |crc, b| crc32c::crc32c_append(crc, &[b.to_ascii_lowercase()]));
    crc as usize % cores
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_stable_case_insensitive_and_in_range() {
        for cores in 1..8 {
            for u in ["alice@example.org", "bob@x.test", "c@d"] {
                let o = user_owner(u, cores);
                assert!(o < cores);
                assert_eq!(o, user_owner(&u.to_uppercase(), cores));
            }
        }
    }

    #[test]
    fn many_users_spread_over_cores() {
        let mut seen = [0usize; 4];
        for n in 0..1000 {
            seen[user_owner(&format!("user{n}@example.org"), 4)] += 1;
        }
        assert!(seen.iter().all(|&c| c > 150), "{seen:?}");
    }

    #[test]
    fn adopted_dirs_map_onto_existing_cores() {
        assert_eq!(dir_owner(0, 2), 0);
        assert_eq!(dir_owner(3, 2), 1);
        assert_eq!(dir_owner(5, 1), 0);
    }
}
