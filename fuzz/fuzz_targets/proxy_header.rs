//! The PROXY protocol header (`ringmail::net::proxy`): the first bytes a
//! listed load balancer sends, v1 text or v2 binary with TLVs.
//!
//! Input: any bytes, as they might arrive.
//!
//! Properties:
//! - Nothing panics, whatever the input.
//! - A header's length is within the input and the bound, and cutting the
//!   input anywhere before its end makes it incomplete or invalid, never a
//!   different header: a header is only accepted whole.
//! - Bytes after a whole header do not change it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::net::proxy::{parse, Parsed, MAX_HEADER};

fuzz_target!(|data: &[u8]| {
    let parsed = parse(data);
    if let Parsed::Header { len, client } = parsed {
        assert!(len > 0 && len <= data.len() && len <= MAX_HEADER, "{len}");
        assert_eq!(parse(&data[..len]), Parsed::Header { len, client });
        for cut in [len - 1, len / 2] {
            assert!(!matches!(parse(&data[..cut]), Parsed::Header { .. }), "accepted a cut header at {cut} of {len}");
        }
        let mut more = data[..len].to_vec();
        more.extend_from_slice(b"EHLO after.example\r\n");
        assert_eq!(parse(&more), Parsed::Header { len, client });
    }
});
