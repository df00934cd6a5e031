//! The shaping rules file (`ringmail::outbound::shaping`): TOML an operator
//! writes by hand and SIGHUP re-reads on a running server.
//!
//! Input: the file's text (any bytes; non-UTF-8 is skipped as the loader
//! refuses it before parsing).
//!
//! Properties:
//! - Nothing panics.
//! - A refusal is one line that names the file (`shaping.toml:...`).
//! - Accepted rules resolve any destination to usable limits: at least one
//!   connection and one delivery per connection, rates positive and finite,
//!   a non-empty site name, and backoff matching that never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::outbound::shaping::{Destination, Fallback, Shaping};

const FALLBACK: Fallback = Fallback { max_connections: 20, max_deliveries_per_connection: 100 };

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Shaping::parse(text, "shaping.toml") {
        Err(e) => {
            assert!(e.starts_with("shaping.toml:"), "{e}");
            assert!(!e.contains('\n'), "one line: {e:?}");
        }
        Ok(rules) => {
            let mx = ["mx1.google.com".to_string(), "alt.mx.example.net".to_string()];
            for (domain, dest) in [
                ("gmail.com", Destination::Mx(&mx)),
                ("a.b.example.org", Destination::Mx(&mx[1..])),
                ("x.test", Destination::Route("127.0.0.1:2525")),
                ("", Destination::Mx(&[])),
            ] {
                let l = rules.resolve(domain, dest, FALLBACK);
                assert!(l.max_connections >= 1 && l.max_deliveries_per_connection >= 1);
                for r in [l.max_message_rate, l.connection_rate].into_iter().flatten() {
                    assert!(r.per_second().is_finite() && r.per_second() > 0.0, "{r}");
                }
                let _ = l.backoff_for("421 4.7.0 rate limited, try again later");
            }
        }
    }
});
