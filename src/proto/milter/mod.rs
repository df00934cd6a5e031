//! The milter protocol (Sendmail libmilter's, version 6, as Postfix
//! speaks it): the MTA side, sans-I/O.
//!
//! Owns: the wire format ([`frame`]), one conversation about one message
//! ([`session`]), a connection that follows an SMTP session live
//! ([`live`]), the header view of a message ([`headers`]) and applying
//! a milter's changes ([`apply`]). It must not open sockets, read the
//! clock or decide policy (what a tempfail means for the client is the
//! caller's business).

pub mod apply;
pub mod frame;
pub mod headers;
pub mod live;
pub mod session;
#[cfg(test)]
mod session_tests;

pub use apply::{apply, Edited};
pub use frame::{FrameError, MAX_FRAME};
pub use live::{Live, StepReply};
pub use session::{Conversation, Modification, Negotiated, Session, SessionError, Verdict};
