//! The generator against its own sink on loopback: counts match exactly, no
//! duplicates, the reply mix is honoured, open loop obeys its schedule, and
//! report files are well-formed. Speed is never asserted.

mod common;

use common::*;

#[test]
fn closed_loop_pipelined_counts_match_exactly_with_no_duplicates() {
    let sink = Sink::start(&["--messages", "600"]);
    let gen = smtp_ok(&sink.addr, &["--messages", "600", "--connections", "6", "--pipelining", "--recipients", "2"]);
    let got = sink.finish();
    assert_eq!(count(&gen, "attempted"), 600);
    assert_eq!(count(&gen, "accepted"), 600);
    assert_eq!(count(&gen, "failed"), 0);
    assert_eq!(count(&got, "messages"), 600);
    assert_eq!(count(&got, "accepted"), 600);
    assert_eq!(count(&got, "duplicates"), 0);
    assert_eq!(count(&got, "no_message_id"), 0);
    assert_eq!(count(&gen, "connections"), 6);
}

#[test]
fn new_connection_per_message_opens_one_connection_per_message() {
    let sink = Sink::start(&["--messages", "120"]);
    let gen = smtp_ok(&sink.addr, &["--messages", "120", "--connections", "4", "--new-connection-per-message"]);
    let got = sink.finish();
    assert_eq!(count(&gen, "accepted"), 120);
    assert_eq!(count(&gen, "connections"), 120);
    assert_eq!(count(&got, "connections"), 120);
    assert_eq!(count(&got, "duplicates"), 0);
}

#[test]
fn reply_mix_is_honoured_and_outcomes_add_up() {
    let sink = Sink::start(&["--messages", "2000", "--reply", "250:80,451:15,550:5", "--seed", "7"]);
    let gen = smtp_ok(&sink.addr, &["--messages", "2000", "--connections", "8", "--pipelining"]);
    let got = sink.finish();
    let (accepted, rejected) = (count(&gen, "accepted"), count(&gen, "rejected"));
    assert_eq!(accepted + rejected, 2000, "accepted + rejected = sent");
    assert_eq!(count(&gen, "failed"), 0);
    assert_eq!(accepted, tally(&got, "replies", "250"));
    assert_eq!(tally(&gen, "rejections", "end_of_data 451"), tally(&got, "replies", "451"));
    assert_eq!(tally(&gen, "rejections", "end_of_data 550"), tally(&got, "replies", "550"));
    let share = accepted as f64 / 2000.0;
    assert!((share - 0.80).abs() < 0.05, "250 share {share}");
    let share_451 = tally(&got, "replies", "451") as f64 / 2000.0;
    assert!((share_451 - 0.15).abs() < 0.04, "451 share {share_451}");
    assert_eq!(count(&got, "duplicates"), 0);
}

#[test]
fn lockstep_without_pipelining_delivers_everything() {
    let sink = Sink::start(&["--messages", "200"]);
    let gen = smtp_ok(&sink.addr, &["--messages", "200", "--connections", "3", "--recipients", "3"]);
    assert_eq!(count(&gen, "accepted"), 200);
    assert_eq!(count(&sink.finish(), "messages"), 200);
}

#[test]
fn open_loop_issues_the_scheduled_number_of_messages() {
    // 200 msg/s for 1 s: the schedule has exactly 200 start times, however
    // fast or slow the machine is (latency, not count, absorbs slowness).
    let sink = Sink::start(&["--messages", "200"]);
    let gen = smtp_ok(&sink.addr, &["--rate", "200", "--duration", "1s", "--connections", "4", "--cores", "2"]);
    let got = sink.finish();
    assert_eq!(count(&gen, "attempted"), 200);
    assert_eq!(count(&gen, "accepted"), 200);
    assert_eq!(count(&got, "messages"), 200);
}

#[test]
fn open_loop_with_message_count_sends_that_count() {
    let sink = Sink::start(&["--messages", "150"]);
    let gen = smtp_ok(&sink.addr, &["--rate", "500", "--messages", "150", "--connections", "2"]);
    assert_eq!(count(&gen, "accepted"), 150);
    assert_eq!(count(&sink.finish(), "messages"), 150);
}

#[test]
fn size_mix_sends_messages_of_each_size() {
    let sink = Sink::start(&["--messages", "40"]);
    let gen = smtp_ok(&sink.addr, &["--messages", "40", "--size", "1k:1,200k:1", "--seed", "3"]);
    let got = sink.finish();
    assert_eq!(count(&gen, "accepted"), 40);
    let bytes = count(&got, "bytes");
    assert!(bytes > 40 * 1000 && bytes < 40 * 210 * 1024, "bytes {bytes}");
    assert!(bytes > 5 * 200 * 1024, "some large messages: {bytes}");
}

#[test]
fn bad_size_mix_is_a_usage_error() {
    let out = loadgen(&["smtp", "--target", "127.0.0.1:25", "--size", "1k:70,lots:30"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad size"));
}

#[test]
fn report_files_are_written_and_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let (hgrm, html) = (dir.path().join("m.hgrm"), dir.path().join("r.html"));
    let sink = Sink::start(&["--messages", "300"]);
    let gen =
        smtp_ok(&sink.addr, &["--messages", "300", "--hgrm", hgrm.to_str().unwrap(), "--html", html.to_str().unwrap()]);
    sink.finish();
    assert_eq!(gen["mode"], "smtp");
    assert!(gen["machine"]["cpus"].as_u64().unwrap() >= 1);
    let names: Vec<&str> = gen["latency_ms"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    for want in ["connect", "greeting", "ehlo", "mail", "rcpt", "data", "end_of_data", "message"] {
        assert!(names.contains(&want), "latency for {want} in {names:?}");
    }
    let message = gen["latency_ms"].as_array().unwrap().iter().find(|r| r["name"] == "message").unwrap();
    assert_eq!(message["count"], 300);
    for p in ["p50", "p90", "p99", "p99.9", "max"] {
        assert!(message[p].as_f64().unwrap() > 0.0, "{p}");
    }
    assert_eq!(gen["timeline"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum::<u64>(), 300);

    let h = std::fs::read_to_string(&hgrm).unwrap();
    assert!(h.lines().next().unwrap().contains("Percentile"));
    assert!(h.contains("Total count    =          300]"), "{h}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
    assert_eq!(page.matches("<svg").count(), 2);
    assert!(!page.contains("<script"));
}

#[test]
fn warmup_messages_are_not_counted() {
    let sink = Sink::start(&[]);
    let gen = smtp_ok(&sink.addr, &["--warmup", "300ms", "--messages", "100", "--connections", "2"]);
    let (_, got) = sink.terminate();
    assert_eq!(count(&gen, "attempted"), 100);
    assert!(count(&got, "messages") >= 100);
}

#[test]
fn sink_saves_exact_unstuffed_content_and_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&["--messages", "3", "--save", dir.path().to_str().unwrap(), "--cores", "1"]);
    smtp_ok(&sink.addr, &["--messages", "3", "--connections", "1", "--size", "4k", "--to", "a@local.test"]);
    let got = sink.finish();
    assert_eq!(count(&got, "saved"), 3);
    let mut emls: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    emls.sort();
    assert_eq!(emls.len(), 3);
    let content = std::fs::read(&emls[0]).unwrap();
    assert!(content.starts_with(b"Message-ID: <"));
    assert!(content.ends_with(b"\r\n"));
    // Generated bodies have lines starting with a dot; on the wire they were
    // stuffed, on disk they must be single again.
    assert!(content.windows(2).any(|w| w == b"\n."));
    assert!(!content.windows(3).any(|w| w == b"\n.."));
    let env = read_json(&emls[0].with_extension("json"));
    assert_eq!(env["rcpt_to"][0], "a@local.test");
    assert_eq!(env["size"].as_u64().unwrap(), content.len() as u64);
}

#[test]
fn sink_counts_a_repeated_message_id_as_duplicate() {
    use std::io::{BufRead, BufReader, Write};
    let sink = Sink::start(&["--messages", "2"]);
    let mut s = std::net::TcpStream::connect(&sink.addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    let mut expect = |r: &mut BufReader<std::net::TcpStream>, code: &str| loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with(code), "wanted {code}, got {line:?}");
        if line.as_bytes().get(3) == Some(&b' ') {
            break;
        }
    };
    expect(&mut r, "220");
    s.write_all(b"EHLO t\r\n").unwrap();
    expect(&mut r, "250");
    for _ in 0..2 {
        s.write_all(b"MAIL FROM:<a@t>\r\nRCPT TO:<b@t>\r\nDATA\r\n").unwrap();
        expect(&mut r, "250");
        expect(&mut r, "250");
        expect(&mut r, "354");
        s.write_all(b"Message-ID: <same@t>\r\n\r\nhi\r\n.\r\n").unwrap();
        expect(&mut r, "250");
    }
    s.write_all(b"QUIT\r\n").unwrap();
    let got = sink.finish();
    assert_eq!(count(&got, "messages"), 2);
    assert_eq!(count(&got, "duplicates"), 1);
}

#[test]
fn sink_prints_summary_on_sigterm() {
    let sink = Sink::start(&[]);
    smtp_ok(&sink.addr, &["--messages", "10", "--connections", "1"]);
    let (stdout, got) = sink.terminate();
    assert!(stdout.contains("10 messages"), "{stdout}");
    assert_eq!(count(&got, "messages"), 10);
}

#[test]
fn throttled_sink_answers_mail_with_421_and_closes() {
    use std::io::{BufRead, BufReader, Read, Write};
    let sink = Sink::start(&["--throttle-after", "0s", "--throttle-for", "60s"]);
    let tcp = std::net::TcpStream::connect(&sink.addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut w = tcp.try_clone().unwrap();
    let mut r = BufReader::new(tcp);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("220 "), "{line}");
    w.write_all(b"EHLO gen.test\r\nMAIL FROM:<a@gen.test>\r\nRCPT TO:<b@x.test>\r\n").unwrap();
    let mut rest = String::new();
    // The sink closes after the 421, so this read ends.
    r.read_to_string(&mut rest).unwrap();
    assert!(rest.ends_with("250 ENHANCEDSTATUSCODES\r\n421 4.7.0 rate limited, try again later\r\n"), "{rest}");
    let (_, got) = sink.terminate();
    assert_eq!(count(&got, "throttled"), 1);
    assert_eq!(count(&got, "messages"), 0);
    assert_eq!(count(&got, "throttle_end_unix_ms") - count(&got, "throttle_start_unix_ms"), 60_000);
}
