//! Interoperability with Postfix's own test tools: the generator delivers
//! into `smtp-sink`, and the sink accepts what `smtp-source` sends. Skipped
//! (with a printed reason) only when the Postfix binaries are not installed;
//! CI installs Postfix.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tool(name: &str) -> Option<String> {
    ["/usr/sbin", "/usr/bin"].iter().map(|d| format!("{d}/{name}")).find(|p| Path::new(p).exists())
}

fn wait_listening(addr: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "{addr} never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn loadgen_delivers_into_postfix_smtp_sink() {
    let Some(smtp_sink) = tool("smtp-sink") else {
        println!("skipped: smtp-sink not installed (apt-get install postfix)");
        return;
    };
    let addr = format!("127.0.0.1:{}", free_port());
    // As root smtp-sink must drop privileges (-u). It is killed afterwards:
    // with -M it would exit before answering the last message.
    let mut args = vec![addr.as_str(), "256"];
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    if root {
        args.splice(0..0, ["-u", "postfix"]);
    }
    let mut sink = Command::new(&smtp_sink).args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    wait_listening(&addr);
    let gen = smtp_ok(&addr, &["--messages", "300", "--connections", "4", "--pipelining", "--recipients", "2"]);
    assert_eq!(count(&gen, "accepted"), 300);
    assert_eq!(count(&gen, "failed"), 0);
    let _ = sink.kill();
    let _ = sink.wait();
}

#[test]
fn postfix_smtp_source_delivers_into_loadgen_sink() {
    let Some(smtp_source) = tool("smtp-source") else {
        println!("skipped: smtp-source not installed (apt-get install postfix)");
        return;
    };
    let sink = Sink::start(&["--messages", "300"]);
    let out = Command::new(&smtp_source)
        .args([
            "-d",
            "-s",
            "4",
            "-m",
            "300",
            "-l",
            "1024",
            "-r",
            "2",
            "-f",
            "a@src.test",
            "-t",
            "b@dst.test",
            &sink.addr,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "smtp-source: {}", String::from_utf8_lossy(&out.stderr));
    let got = sink.finish();
    assert_eq!(count(&got, "messages"), 300);
    assert_eq!(count(&got, "accepted"), 300);
}
