//! The config file and users file parsers.
//!
//! Input: any bytes, read as UTF-8 (invalid sequences replaced, as a text
//! editor would show them).
//!
//! Properties: `Config::parse` (from a file and as the embedded source),
//! `UserDb::parse`, `parse_host_port`, `RouteTarget::parse` and the
//! duration parser never panic; a route target reads back the same from
//! what it displays (logs and shaping rules name it so);
//! an accepted config answers its accessors (`users_path` is always set,
//! local domains are lower case without a trailing dot); an accepted users
//! file finds each of its users again.
#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use ringmail::auth::UserDb;
use ringmail::config::{parse_host_port, Config, RouteTarget, Source, Span};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    for source in [Source::File(PathBuf::from("/etc/ringmail/ringmail.toml")), Source::Embedded] {
        if let Ok(config) = Config::parse(&text, source) {
            assert!(config.users_path().is_absolute());
            assert!(config.spool_root().starts_with(&config.data_dir));
            for domain in &config.local_domains {
                assert!(!domain.ends_with('.') && *domain == domain.to_ascii_lowercase(), "{domain:?}");
                assert!(config.is_local_domain(domain));
                assert!(!config.is_lmtp_domain(domain), "a local domain is never an LMTP destination");
            }
            assert!(config.max_message_size >= 1024);
            assert!(config.spool.segment_size >= config.max_message_size + 64 * 1024);
        }
    }

    if let Ok(users) = UserDb::parse(&text, Path::new("/var/lib/ringmail/users")) {
        let mut found = 0;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let address = line.split_once(':').map_or("", |(a, _)| a.trim());
            assert!(users.contains(address), "{address:?} from {line:?} is not found");
            assert!(users.hash_of(address).is_some());
            found += 1;
        }
        assert_eq!(users.len(), found);
    }

    let _ = parse_host_port(&text);
    if let Ok(target) = RouteTarget::parse(&text) {
        assert_eq!(RouteTarget::parse(&target.to_string()), Ok(target.clone()), "{text:?} shown as {target}");
    }
    let _ = text.parse::<Span>();
});
