//! The header parsing sender authentication does itself
//! (`ringmail::sender_auth::headers`): header fields, the From domain that
//! picks the DKIM key, and the removal of forged Authentication-Results.
//!
//! Input: a message (any bytes).
//!
//! Properties:
//! - Nothing panics.
//! - Fields are in order, each within the message, contiguous from the
//!   start (`start` of one is the `end` of the previous), names non-empty
//!   printable ASCII, and the value inside the field.
//! - A From domain, when found, is lowercase, has a dot, no trailing dot,
//!   and no byte a domain cannot hold below 0x80 (letters, digits, '-', '.').
//! - Removing forged results keeps every other byte: the output is the
//!   input minus whole fields whose authserv-id is ours, and it has none
//!   left among its own fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::sender_auth::headers::{authserv_id, fields, from_domain, without_forged_results};

const HOST: &str = "mx.test";

fuzz_target!(|msg: &[u8]| {
    let mut at = 0;
    for f in fields(msg) {
        assert_eq!(f.start, at, "fields are contiguous from the start");
        assert!(f.start < f.end && f.end <= msg.len());
        assert!(!f.name.is_empty() && f.name.iter().all(|b| (33..=126).contains(b)));
        let value_at = f.value.as_ptr() as usize - msg.as_ptr() as usize;
        assert!(value_at >= f.start && value_at + f.value.len() <= f.end);
        at = f.end;
        let _ = authserv_id(f.value);
    }
    if let Ok(domain) = from_domain(msg) {
        assert!(domain.contains('.') && !domain.ends_with('.'), "{domain:?}");
        assert!(domain.bytes().all(|b| b >= 0x80
            || b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || b == b'-'
            || b == b'.'));
    }
    match without_forged_results(msg, HOST) {
        None => assert!(!fields(msg).any(|f| is_ours(f.name, f.value))),
        Some(out) => {
            assert!(out.len() < msg.len());
            // The removed bytes are whole fields of ours: rebuilding from
            // the kept fields and the rest gives the output.
            let mut rebuilt = Vec::new();
            let mut end = 0;
            for f in fields(msg) {
                if !is_ours(f.name, f.value) {
                    rebuilt.extend_from_slice(&msg[f.start..f.end]);
                }
                end = f.end;
            }
            rebuilt.extend_from_slice(&msg[end..]);
            assert_eq!(rebuilt, out);
        }
    }
});

fn is_ours(name: &[u8], value: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"authentication-results") && authserv_id(value).eq_ignore_ascii_case(HOST.as_bytes())
}
