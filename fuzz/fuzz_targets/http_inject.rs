//! The HTTP API's hand-written parsing around serde: the inject request
//! (its recipient visitor, the checks, `{{name}}` substitution, line-end
//! normalisation and the MIME built from a template) and the tokens file.
//!
//! Input: any bytes, as the JSON body of `POST /api/v1/inject` and as a
//! tokens file (UTF-8, invalid sequences replaced).
//!
//! Properties: nothing panics; a request that passes the checks builds
//! (or is refused with an error naming a field), every built message ends
//! with CRLF and has no bare LF, and each recipient is in exactly one
//! message; a tokens file that parses refuses a missing token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::http::inject::{build, check, InjectRequest};
use ringmail::http::{Scope, Tokens};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<InjectRequest>(data) {
        if check(&req, 50).is_ok() {
            match build(&req, "mx.test", "fuzz") {
                Ok(messages) => {
                    let mut seen = vec![0u32; req.recipients.len()];
                    for m in &messages {
                        assert!(m.body.ends_with(b"\r\n"));
                        let bare_lf =
                            m.body.iter().enumerate().any(|(i, &b)| b == b'\n' && (i == 0 || m.body[i - 1] != b'\r'));
                        assert!(!bare_lf || req.content.raw.is_none(), "raw content keeps no bare LF");
                        for &i in &m.recipients {
                            seen[i] += 1;
                        }
                    }
                    assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
                }
                Err(e) => assert!(e.to_string().contains(": "), "{e}"),
            }
        }
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(tokens) = Tokens::parse(&text, std::path::Path::new("/etc/ringmail/tokens")) {
        assert!(tokens.check(None, Scope::Read).is_err());
        assert!(tokens.check(Some(b"Bearer "), Scope::Read).is_err());
    }
});
