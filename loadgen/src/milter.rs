//! `milter`: an accept-all milter for benchmarks (bench/compare's
//! `VARIANTS=milter`), so that the MTA under test, not the filter, is what
//! is measured. It asks for every step and answers each one (CONTINUE,
//! ACCEPT at end of message): every milter round trip an MTA makes is
//! paid. One thread per connection, blocking I/O: connections are served
//! concurrently, and a round trip costs two system calls.
//!
//! Its own small codec on purpose (see `proto/`): a bug in ringmail's
//! milter code cannot hide in the tool that measures it.

use crate::cli::MilterArgs;
use anyhow::{bail, Context, Result};
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Longest frame taken (a body chunk is at most 64 KiB, 1 MiB with
/// SMFIP_MDS_1M).
const MAX_FRAME: usize = 2 << 20;

/// The negotiation reply: version 6, no actions, no protocol flags (every
/// step is sent and answered).
const OPTNEG: [u8; 17] = [0, 0, 0, 13, b'O', 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0];
const CONTINUE: [u8; 5] = [0, 0, 0, 1, b'c'];
const ACCEPT: [u8; 5] = [0, 0, 0, 1, b'a'];

pub fn run(a: MilterArgs) -> Result<()> {
    if !crate::target::is_loopback(a.listen.ip()) && !a.allow_remote {
        bail!("--listen {} is not a loopback address (add --allow-remote to mean it)", a.listen);
    }
    let listener = TcpListener::bind(a.listen).with_context(|| format!("binding {}", a.listen))?;
    println!("listening on {}", listener.local_addr()?);
    let messages = Arc::new(AtomicU64::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let messages = messages.clone();
        std::thread::spawn(move || {
            // A peer that breaks the protocol or goes away ends its own
            // connection only.
            let _ = serve(stream, &messages);
        });
    }
    Ok(())
}

/// Answer one MTA connection until QUIT or EOF.
fn serve(stream: TcpStream, messages: &AtomicU64) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
    let mut writer = stream;
    let mut frame = Vec::with_capacity(4096);
    loop {
        let mut len = [0u8; 4];
        if reader.read_exact(&mut len).is_err() {
            return Ok(());
        }
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_FRAME {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        frame.resize(len, 0);
        reader.read_exact(&mut frame)?;
        let reply: &[u8] = match frame[0] {
            b'O' => &OPTNEG,
            // Macros and ABORT have no reply.
            b'D' | b'A' => continue,
            b'Q' => return Ok(()),
            b'E' => {
                messages.fetch_add(1, Ordering::Relaxed);
                &ACCEPT
            }
            _ => &CONTINUE,
        };
        // Replies are only awaited one at a time (each step waits for its
        // answer), so nothing is gained by batching them.
        writer.write_all(reply)?;
    }
}
