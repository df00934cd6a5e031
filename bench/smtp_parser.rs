//! SMTP parsing speed: the command parser (commands/s) and the DATA scanner
//! (MB/s), on typical and worst-case (dot-heavy, bare-LF) bodies.
//! Run: `cargo bench --bench smtp_parser`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringmail::proto::smtp::{dot_stuff, parse_command, DataScanner};

fn commands(c: &mut Criterion) {
    let lines: &[&[u8]] = &[
        b"EHLO client.example.org",
        b"MAIL FROM:<sender@example.org> SIZE=4096 BODY=8BITMIME",
        b"RCPT TO:<recipient@example.net>",
        b"RCPT TO:<@relay.example:\"quoted local\"@example.net>",
        b"DATA",
        b"RSET",
    ];
    let mut g = c.benchmark_group("smtp_command");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("parse_6_commands", |b| {
        b.iter(|| {
            for l in lines {
                black_box(parse_command(black_box(l)).ok());
            }
        })
    });
    g.finish();
}

/// A body of `size` bytes in the wire form (dot-stuffed, terminated).
fn wire_body(size: usize, line: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(size + line.len());
    while body.len() < size {
        body.extend_from_slice(line);
    }
    let mut wire = Vec::with_capacity(body.len() + 64);
    dot_stuff(&body, &mut wire);
    wire
}

fn data_scanner(c: &mut Criterion) {
    let mut g = c.benchmark_group("smtp_data");
    let cases: [(&str, &[u8]); 3] = [
        ("text_76col", b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod t\r\n"),
        ("dot_lines", b".\r\n..x\r\n"),
        ("bare_lf", b"short line with bare LF\n"),
    ];
    for (name, line) in cases {
        for size in [4 * 1024, 1024 * 1024] {
            let wire = wire_body(size, line);
            g.throughput(Throughput::Bytes(wire.len() as u64));
            g.bench_with_input(BenchmarkId::new(name, size), &wire, |b, wire| {
                let mut body = Vec::with_capacity(wire.len() + wire.len() / 8);
                b.iter(|| {
                    body.clear();
                    let mut s = DataScanner::new(64 << 20);
                    // Feed in 64 KiB reads, as the driver does.
                    for chunk in wire.chunks(64 * 1024) {
                        black_box(s.feed(chunk, &mut body));
                    }
                    assert!(s.is_done());
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, commands, data_scanner);
criterion_main!(benches);
