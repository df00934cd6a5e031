//! The HTTP admin and injection API (`[listen] http`) and the metrics
//! endpoint (`[listen] metrics`, and /metrics on the API listener too),
//! served by hyper's HTTP/1 server on the glommio executors.
//!
//! - [`server`]: listeners, connection limits, TLS, deadlines.
//! - [`io`]: glommio sockets as hyper's `rt::Read`/`rt::Write`.
//! - [`routes`]: the one routing table and the handlers.
//! - [`auth`]: the tokens file, scopes, constant-time checks.
//! - [`inject`]: the inject request and its MIME (pure).
//! - [`submit`]: injected messages into the spool (the SMTP intake path).
//! - [`reply`]: answers.
//!
//! Must not: parse HTTP itself (hyper does), or block a core (the trace's
//! spool walk runs on the blocking pool).

pub mod auth;
pub mod inject;
mod io;
mod reply;
pub mod routes;
pub mod server;
pub mod submit;

pub use auth::{Scope, Tokens, TokensError};
pub use server::{accept_loop, HttpState, Listener};
