//! glommio plumbing shared by the drivers: plain/TLS streams with timeouts,
//! TLS configuration, and SO_REUSEPORT listeners for the sink.

pub mod listen;
pub mod stream;
pub mod tls;
