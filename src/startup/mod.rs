//! Start-up facts from the operating system, shared by `serve` and
//! `check-config` so that the two can never disagree: the CPUs this process
//! may use, whether a listener address is free (asked without ever
//! connecting to it), the `run_as` user and the privilege drop, the
//! checks on the files and directories the server will open, and the
//! readiness notifications to systemd.
//!
//! Owns no socket or file beyond the moment of a check; must not start
//! executors or touch the spool's contents.

pub mod cpus;
pub mod notify;
pub mod ports;
pub mod preflight;
pub mod quiet_pipe;
pub mod run_as;
