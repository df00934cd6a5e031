//! Client tests: transcripts against a scripted server (see `harness`).

mod bdat;
mod chunking;
mod failures;
mod harness;
mod lmtp;
mod pipeline;
mod session;
mod transaction;
