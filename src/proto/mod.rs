//! Sans-I/O protocol state machines: bytes in, replies and actions out.
//! Nothing in here touches a socket, a file or the clock.

pub mod milter;
pub mod pop3;
pub mod smtp;
pub mod smtp_client;
pub mod xtext;
