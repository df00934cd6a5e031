//! `ringmail-loadgen`: the load generator bundled with ringmail.
//!
//! Five modes, each thread-per-core on glommio so that the generator is not
//! the bottleneck: `smtp` (send mail, measure throughput and latency),
//! `pop3` (log in, list, retrieve, delete), `sink` (an SMTP server that
//! stands in for remote MX hosts and counts what arrives), `http` (inject
//! mail through an HTTP API) and `milter` (an accept-all milter for
//! benchmarks of an MTA's filter path).
//!
//! Layout: `proto/` is sans-I/O protocol logic (unit tested, no sockets or
//! clocks); `smtp/`, `pop3/`, `sink/` are the drivers; `net/` the socket and
//! TLS plumbing; `rt` the executors; `live` the cross-thread progress and
//! stop signals; `stats` and `report/` the measurements and their output.
//! Targets must be loopback unless `--allow-remote` is given (`target`).

mod cli;
mod http;
mod live;
mod milter;
mod net;
mod pop3;
mod proto;
mod report;
mod rt;
mod sink;
mod smtp;
mod spec;
mod stats;
mod target;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.cmd {
        cli::Cmd::Smtp(a) => smtp::run(a),
        cli::Cmd::Pop3(a) => pop3::run(a),
        cli::Cmd::Sink(a) => sink::run(a),
        cli::Cmd::Milter(a) => milter::run(a),
        cli::Cmd::Http(a) => http::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, joined.
            eprintln!("ringmail-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}
