//! Sender authentication: DKIM signing of the mail ringmail relays, and
//! SPF, DKIM, DMARC and ARC checks of the mail it receives for local
//! mailboxes, summed up in an `Authentication-Results` field (RFC 8601).
//!
//! - [`sign`]: `[[dkim.sign]]` keys, loaded once; a message is signed on the
//!   core that relays it, at each attempt, deterministically (`t=` is its
//!   arrival time), so a 250 never waits for a signature and a retry sends
//!   the same bytes.
//! - [`verify`]: the checks, on a thread of their own (see there why).
//! - [`keys`]: PEM keys in, `ringmail dkim keygen` out.
//! - [`headers`]: the From domain and forged Authentication-Results fields,
//!   the only header parsing done here rather than by mail-auth.
//!
//! The cryptography and canonicalization are mail-auth's (vendored with
//! one patch, see `vendor/mail-auth/PATCHES.md`) on aws-lc-rs.

pub mod headers;
pub mod keys;
pub mod sign;
pub mod verify;

pub use sign::{NotSigned, Signed, Signers};
pub use verify::{Checks, Job, Verdict, Verifier};
