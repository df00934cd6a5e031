//! kill -9 at a random moment under load: every message that got a 250 is
//! in its mailbox after restart, byte for byte, exactly once.
//!
//! (A process kill cannot show a missing fdatasync — the page cache
//! survives it; the simulated power-loss tests in `spool` cover that.)

mod common;

use common::*;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Send messages until the connection dies or `stop`; return the bodies
/// that were answered 250.
fn sender(addr: SocketAddr, client: usize, rcpt: &str, stop: Arc<AtomicBool>) -> Vec<Vec<u8>> {
    let mut acked = Vec::new();
    let Ok(mut s) = TcpStream::connect(addr) else { return acked };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut reply = || -> Option<String> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).ok()? == 0 {
                return None;
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return Some(all);
            }
        }
    };
    if !reply().is_some_and(|g| g.starts_with("220")) {
        return acked;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(client as u64);
    let mut n = 0;
    let go = |s: &mut TcpStream, line: &[u8], want: &str, reply: &mut dyn FnMut() -> Option<String>| -> bool {
        s.write_all(line).is_ok() && reply().is_some_and(|r| r.starts_with(want))
    };
    if !go(&mut s, b"EHLO crash.test\r\n", "250", &mut reply) {
        return acked;
    }
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let filler: String = (0..rng.gen_range(0..3000)).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        let body =
            format!("Subject: crash {client}-{n}\r\nX-Seq: {client}-{n}\r\n\r\n{filler}\r\nend {client}-{n}\r\n")
                .into_bytes();
        if !go(
            &mut s,
            format!("MAIL FROM:<bob@localhost>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").as_bytes(),
            "250",
            &mut reply,
        ) || !reply().is_some_and(|r| r.starts_with("250"))
            || !reply().is_some_and(|r| r.starts_with("354"))
        {
            break;
        }
        let mut wire = body.clone();
        wire.extend_from_slice(b".\r\n");
        if !go(&mut s, &wire, "250", &mut reply) {
            break; // killed before the 250: this one is not owed
        }
        acked.push(body);
    }
    acked
}

#[test]
fn kill_9_loses_no_acknowledged_message() {
    let mut server = Server::start();
    let mut rng = rand::thread_rng();
    let users = ["alice@localhost", "bob@localhost", "carol@example.test"];
    let mut owed: HashMap<&str, Vec<Vec<u8>>> = HashMap::new();
    for round in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..6)
            .map(|c| {
                let (addr, stop, rcpt) = (server.smtp, stop.clone(), users[c % users.len()]);
                std::thread::spawn(move || (rcpt, sender(addr, round * 100 + c, rcpt, stop)))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..1500)));
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            let (rcpt, acked) = h.join().unwrap();
            owed.entry(rcpt).or_default().extend(acked);
        }
        server.spawn();
    }
    let total: usize = owed.values().map(Vec::len).sum();
    assert!(total > 50, "the load was too small to mean anything ({total} acked)");
    for (user, sent) in &owed {
        let got = fetch_all(&server, user);
        let mut counts: HashMap<&[u8], usize> = HashMap::new();
        for m in &got {
            *counts.entry(m.as_slice()).or_default() += 1;
        }
        for body in sent {
            let seq = String::from_utf8_lossy(&body[..40.min(body.len())]).into_owned();
            assert_eq!(
                counts.get(body.as_slice()).copied(),
                Some(1),
                "{user}: acknowledged message {seq:?} missing or duplicated"
            );
        }
        // Anything else present must be a whole message the client sent but
        // whose 250 it never saw — never a fragment.
        for m in &got {
            assert!(
                m.windows(4).any(|w| w == b"end "),
                "{user}: a fragment was recovered: {:?}",
                String::from_utf8_lossy(m)
            );
        }
    }
    eprintln!("kill -9 test: {total} acknowledged messages over 3 kills, all recovered exactly once");
}

/// POP3: delete everything in `user`'s mailbox, over and over, until
/// `stop` or the server dies (any error ends a pass quietly). Returns the
/// UIDs whose deletion the server confirmed (+OK to QUIT).
fn deleter(addr: SocketAddr, user: &str, stop: Arc<AtomicBool>) -> Vec<String> {
    let once = || -> Option<Vec<String>> {
        let mut s = TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut r = BufReader::new(s.try_clone().ok()?);
        let line = |r: &mut BufReader<TcpStream>| -> Option<String> {
            let mut l = String::new();
            (r.read_line(&mut l).ok()? > 0).then_some(l)
        };
        let cmd = |s: &mut TcpStream, r: &mut BufReader<TcpStream>, c: &str| -> Option<String> {
            if !c.is_empty() {
                s.write_all(format!("{c}\r\n").as_bytes()).ok()?;
            }
            line(r).filter(|l| l.starts_with("+OK"))
        };
        cmd(&mut s, &mut r, "")?;
        cmd(&mut s, &mut r, &format!("USER {user}"))?;
        cmd(&mut s, &mut r, &format!("PASS {PASSWORD}"))?;
        cmd(&mut s, &mut r, "UIDL")?;
        let mut uids = Vec::new();
        loop {
            let l = line(&mut r)?;
            if l.trim_end() == "." {
                break;
            }
            let mut w = l.split_whitespace();
            uids.push((w.next()?.to_string(), w.next()?.to_string()));
        }
        // A few at a time, so that a session ends (and its deletions are
        // confirmed) within a round however fast bob's mail comes in.
        uids.truncate(100);
        for (n, _) in &uids {
            cmd(&mut s, &mut r, &format!("DELE {n}"))?;
        }
        cmd(&mut s, &mut r, "QUIT")?;
        Some(uids.into_iter().map(|(_, u)| u).collect())
    };
    let mut deleted = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match once() {
            Some(uids) => deleted.extend(uids),
            None => std::thread::sleep(Duration::from_millis(50)),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    deleted
}

#[test]
fn kill_9_during_compaction_loses_and_resurrects_nothing() {
    // Small segments, compaction as eager as it gets: bob's mail is deleted
    // as it arrives, so segments fill with dead records and the live ones
    // (alice's, carol's) are moved again and again while the kills come.
    let mut server = Server::start_with(Options {
        segment_size: 192 * 1024,
        spool: "compact_below = 90\ncompact_interval = \"50ms\"\n".into(),
        ..Options::default()
    });
    let mut rng = rand::thread_rng();
    let senders = ["alice@localhost", "bob@localhost", "bob@localhost", "carol@example.test"];
    let mut owed: HashMap<&str, Vec<Vec<u8>>> = HashMap::new();
    let mut deleted: Vec<String> = Vec::new();
    // At least 3 kills, and more (up to 8) until compaction has run.
    for round in 0..8 {
        if round >= 3 && server.log().contains("spool segment compacted") {
            break;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles: Vec<_> = (0..senders.len())
            .map(|c| {
                let (addr, stop, rcpt) = (server.smtp, stop.clone(), senders[c]);
                std::thread::spawn(move || (rcpt, sender(addr, round * 100 + c, rcpt, stop)))
            })
            .collect();
        let (pop, stop2) = (server.pop3, stop.clone());
        let del = std::thread::spawn(move || deleter(pop, "bob@localhost", stop2));
        std::thread::sleep(Duration::from_millis(rng.gen_range(1000..2000)));
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for h in handles.drain(..) {
            let (rcpt, acked) = h.join().unwrap();
            owed.entry(rcpt).or_default().extend(acked);
        }
        deleted.extend(del.join().unwrap());
        server.spawn();
    }
    assert!(server.log().contains("spool segment compacted"), "compaction never ran:\n{}", server.log());
    for user in ["alice@localhost", "carol@example.test"] {
        let sent = &owed[user];
        assert!(sent.len() > 20, "{user}: too few acknowledged ({})", sent.len());
        let got = fetch_all(&server, user);
        let mut counts: HashMap<&[u8], usize> = HashMap::new();
        for m in &got {
            *counts.entry(m.as_slice()).or_default() += 1;
        }
        for body in sent {
            let seq = String::from_utf8_lossy(&body[..40.min(body.len())]).into_owned();
            assert_eq!(counts.get(body.as_slice()).copied(), Some(1), "{user}: {seq:?} missing or duplicated");
        }
        assert!(got.len() <= sent.len() + 4 * 2, "{user}: more messages than were sent");
    }
    // bob's confirmed deletions stay deleted.
    assert!(deleted.len() > 20, "the deleter did too little to mean anything ({})", deleted.len());
    let mut p = server.pop3();
    assert!(p.login("bob@localhost", PASSWORD).starts_with("+OK"));
    let back: Vec<String> = p.uidl().into_iter().map(|(_, u)| u).filter(|u| deleted.contains(u)).collect();
    assert!(back.is_empty(), "{} deleted messages came back: {:?}", back.len(), &back[..back.len().min(5)]);
}
