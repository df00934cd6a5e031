//! The spool record reader: `scan_segment`, the payload decoders and
//! `recover_images`, which recovery feeds whatever survived a crash.
//!
//! Input: byte 0 picks the mode.
//! - Even: raw. The rest is cut into 1 to 3 segment images as they are;
//!   mostly bad magic and bad crcs, which is what torn writes look like.
//! - Odd: built. The rest drives a small generator that encodes 1 to 3
//!   images of well-formed records (valid crcs) - messages, tombstones
//!   and recipient states pointing at them, undecodable payloads, misplaced
//!   records - then maybe flips one byte and leaves stale bytes after the
//!   end. This reaches the decoders and the ledger, which random bytes with
//!   random crcs never would.
//!
//! Properties:
//! - Nothing panics, whatever the bytes.
//! - `scan_segment`: records in order at multiples of 8, payloads inside
//!   the image, the tail after the last record and inside the image.
//! - A payload that decodes encodes back to the same bytes, and encoded
//!   values decode to themselves; the body read alone (`message_body`,
//!   `moved_body`) is the decoded message's body.
//! - Built images scan back to exactly the records written when nothing was
//!   flipped; `recover_images` then fails only for a misplaced record or an
//!   undecodable payload, and what it returns is consistent: live messages
//!   have live recipients, states belong to them, repairs lie inside their
//!   image, each directory resumes in its highest segment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::spool::record::encode_into;
use ringmail::spool::{
    decode_message, decode_moved, decode_recipient_state, decode_suppression, decode_tombstone, decode_tombstone_via,
    encode_message, encode_moved_head, encode_recipient_state, encode_tombstone, encode_tombstone_via, recover_images,
    scan_segment, BodyKind, DsnRet, MessageRecord, Notify, Outcome, QueueId, RecipientEntry, RecipientState,
    RecordKind, Route, ScanEnd, SegmentImage, SegmentKey, SpoolRef, Tombstone,
};

/// Reads the input front to back; zeros once it runs out.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| acc << 8 | u64::from(self.byte()))
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head.to_vec()
    }

    /// A short string; mostly ASCII, sometimes multi-byte.
    fn string(&mut self) -> String {
        let n = usize::from(self.byte() % 12);
        self.bytes(n).into_iter().map(|b| if b < 0xf0 { char::from(b'a' + b % 26) } else { 'é' }).collect()
    }
}

fn check_scan(bytes: &[u8], key: SegmentKey) -> ringmail::spool::SegmentScan {
    let scan = scan_segment(bytes, key);
    let mut next = 0usize;
    for rec in &scan.records {
        let offset = rec.offset as usize;
        assert!(offset >= next && offset.is_multiple_of(8), "record at {offset} after {next}");
        assert!(rec.payload.start == offset + 24 && rec.payload.end <= bytes.len());
        next = rec.payload.end;
    }
    let tail = scan.tail() as usize;
    assert!(
        tail >= next && tail <= bytes.len() && tail.is_multiple_of(8),
        "tail {tail} after {next} of {}",
        bytes.len()
    );
    scan
}

/// Decodes `payload` every way; what decodes must encode back to it.
fn check_decoders(payload: &[u8]) {
    let body = ringmail::spool::payload::message_body(payload);
    if let Ok(m) = decode_message(payload) {
        assert_eq!(encode_message(&m).expect("decoded fields fit"), payload);
        assert_eq!(body, Ok(m.body), "the body alone is the body decode gives");
    }
    if let Ok((t, via)) = decode_tombstone_via(payload) {
        let again = match via {
            Some(via) => encode_tombstone_via(&t, via),
            None => encode_tombstone(&t).to_vec(),
        };
        assert_eq!(again, payload);
        assert_eq!(decode_tombstone(payload), Ok(t));
    }
    if let Ok(s) = decode_recipient_state(payload) {
        assert_eq!(encode_recipient_state(&s).expect("decoded fields fit"), payload);
    }
    let body = ringmail::spool::payload::moved_body(payload);
    if let Ok(m) = decode_moved(payload) {
        assert_eq!(body, Ok(m.message.body));
        let mut again = encode_moved_head(m.old, &m.done);
        again.extend_from_slice(&encode_message(&m.message).expect("decoded fields fit"));
        assert_eq!(again, payload);
    }
}

fn check_recovery(images: &[(SegmentKey, Vec<u8>)], must_succeed: bool) {
    let result = recover_images(images.iter().map(|(key, bytes)| SegmentImage { key: *key, bytes }));
    let recovered = match result {
        Ok(recovered) => recovered,
        Err(e) => {
            assert!(!must_succeed, "recovery of well-formed images failed: {e}");
            return;
        }
    };
    let last_image = |key: SegmentKey| images.iter().rev().find(|(k, _)| *k == key).map(|(_, b)| b.as_slice());
    for r in &recovered.repairs {
        let len = last_image(r.key).expect("repair of a known image").len();
        assert!(r.from < r.to && r.to as usize <= len, "{r:?} in {len} bytes");
    }
    for (&dir, tail) in &recovered.tails {
        let highest = images.iter().filter(|(k, _)| k.dir == dir).map(|(k, _)| k.seq).max();
        assert_eq!(Some(tail.segment), highest);
        assert!(u64::from(tail.offset) <= tail.size);
        assert!(!recovered.reclaimable.contains(&SegmentKey { dir, seq: tail.segment }));
    }
    for m in &recovered.messages {
        assert!(!m.recipients.is_empty());
        assert!(recovered.ledger.is_live(m.at));
        assert!(!recovered.reclaimable.contains(&m.at.segment_key()));
        for (i, _) in &m.states {
            assert!(m.recipients.iter().any(|(r, _)| r == i), "state for a final recipient {i}");
        }
    }
}

fn raw(c: &mut Cursor<'_>) {
    let count = 1 + c.byte() % 3;
    let mut images = Vec::new();
    for i in 0..count {
        let key = SegmentKey { dir: u16::from(c.byte() % 2), seq: u32::from(c.byte() % 4) };
        let len = if i + 1 == count { usize::MAX } else { usize::from(c.byte()) * 8 };
        images.push((key, c.bytes(len)));
    }
    for (key, bytes) in &images {
        let scan = check_scan(bytes, *key);
        for rec in &scan.records {
            check_decoders(&bytes[rec.payload.clone()]);
        }
        check_decoders(bytes);
    }
    check_recovery(&images, false);
}

fn built(c: &mut Cursor<'_>) {
    let count = 1 + c.byte() % 3;
    let mut images: Vec<(SegmentKey, Vec<u8>)> = Vec::new();
    let mut messages: Vec<SpoolRef> = Vec::new();
    let mut must_succeed = true;
    for _ in 0..count {
        let key = SegmentKey { dir: u16::from(c.byte() % 2), seq: u32::from(c.byte() % 4) };
        let mut bytes = Vec::new();
        let mut written = Vec::new();
        let mut misplaced = false;
        for _ in 0..c.byte() % 8 {
            let op = c.byte();
            let offset = bytes.len() as u32;
            let at = SpoolRef { dir: key.dir, segment: key.seq, offset };
            let target = |c: &mut Cursor<'_>| match messages.len() {
                0 => SpoolRef { dir: 0, segment: 0, offset: 0 },
                n => messages[usize::from(c.byte()) % n],
            };
            let (kind, payload) = match op % 6 {
                0 | 1 => {
                    let recipients = (0..c.byte() % 4)
                        .map(|_| {
                            let address = c.string();
                            let route = if c.byte().is_multiple_of(2) {
                                Route::Local { user: c.string() }
                            } else {
                                Route::Remote { domain: c.string() }
                            };
                            RecipientEntry::new(address, route)
                        })
                        .collect();
                    let (client, helo, sender) = (c.string(), c.string(), c.string());
                    let queue_id = QueueId(u64::from(c.byte()));
                    let body_len = usize::from(c.byte());
                    let body = c.bytes(body_len);
                    let mut m = MessageRecord {
                        queue_id,
                        received_at_ms: 1,
                        client,
                        helo,
                        sender,
                        recipients,
                        ext: Default::default(),
                        body: &body,
                    };
                    // Every third message carries extensions: the block between recipients and body.
                    if c.byte() % 3 == 0 {
                        m.ext.smtputf8 = true;
                        m.ext.body = BodyKind::BinaryMime;
                        m.ext.ret = Some(DsnRet::Headers);
                        m.ext.envid = Some(c.string());
                        if let Some(r) = m.recipients.last_mut() {
                            r.dsn.notify = Notify { success: true, ..Notify::default() };
                            r.dsn.orcpt = Some(c.string());
                        }
                    }
                    let payload = encode_message(&m).expect("small fields");
                    assert_eq!(decode_message(&payload).as_ref(), Ok(&m));
                    messages.push(at);
                    (RecordKind::Message, payload)
                }
                2 => {
                    let outcome = [Outcome::Deleted, Outcome::Delivered, Outcome::Bounced, Outcome::Expired]
                        [usize::from(c.byte() % 4)];
                    let t = Tombstone { target: target(c), recipient: u16::from(c.byte() % 4), outcome };
                    let payload = match c.byte() % 2 {
                        0 => encode_tombstone(&t).to_vec(),
                        _ => {
                            // A delivered recipient's tombstone names the host.
                            let via = c.string();
                            let payload = encode_tombstone_via(&t, &via);
                            assert_eq!(decode_tombstone_via(&payload), Ok((t, Some(via.as_str()))));
                            payload
                        }
                    };
                    assert_eq!(decode_tombstone(&payload), Ok(t));
                    (RecordKind::Tombstone, payload)
                }
                3 => {
                    let flags = c.byte();
                    let s = RecipientState {
                        target: target(c),
                        recipient: u16::from(c.byte() % 4),
                        seq: u64::from(c.byte() % 4),
                        attempts: 1,
                        next_attempt_ms: c.u64(),
                        warned: flags & 1 != 0,
                        held: flags & 2 != 0,
                        last_error: c.string(),
                    };
                    let payload = encode_recipient_state(&s).expect("short last_error");
                    assert_eq!(decode_recipient_state(&payload).as_ref(), Ok(&s));
                    (RecordKind::RecipientState, payload)
                }
                4 if c.byte() % 2 == 0 => {
                    let len = usize::from(c.byte() % 32);
                    (RecordKind::Checkpoint, c.bytes(len))
                }
                4 => {
                    // Compaction's copy of a message: supersedes `old`.
                    let old = target(c);
                    let done: Vec<u16> = (0..c.byte() % 3).map(|_| u16::from(c.byte() % 4)).collect();
                    let recipients = (0..1 + c.byte() % 3)
                        .map(|_| {
                            let address = c.string();
                            RecipientEntry::new(address, Route::Remote { domain: c.string() })
                        })
                        .collect();
                    let body_len = usize::from(c.byte() % 16);
                    let body = c.bytes(body_len);
                    let m = MessageRecord {
                        queue_id: QueueId(u64::from(c.byte())),
                        received_at_ms: 1,
                        client: String::new(),
                        helo: String::new(),
                        sender: String::new(),
                        recipients,
                        ext: Default::default(),
                        body: &body,
                    };
                    let mut payload = encode_moved_head(old, &done);
                    payload.extend_from_slice(&encode_message(&m).expect("small fields"));
                    let back = decode_moved(&payload).expect("what we encoded decodes");
                    assert_eq!((back.old, &back.done, &back.message), (old, &done, &m));
                    messages.push(at);
                    (RecordKind::Moved, payload)
                }
                _ => {
                    // Payload bytes as they come, under any kind.
                    let kind = [
                        RecordKind::Message,
                        RecordKind::Tombstone,
                        RecordKind::RecipientState,
                        RecordKind::Moved,
                        RecordKind::Suppression,
                    ][usize::from(c.byte() % 5)];
                    let len = usize::from(c.byte() % 48);
                    let payload = c.bytes(len);
                    let decodes = match kind {
                        RecordKind::Message => decode_message(&payload).is_ok(),
                        RecordKind::Tombstone => decode_tombstone(&payload).is_ok(),
                        RecordKind::Moved => decode_moved(&payload).is_ok(),
                        RecordKind::Suppression => decode_suppression(&payload).is_ok(),
                        _ => decode_recipient_state(&payload).is_ok(),
                    };
                    must_succeed &= decodes;
                    (kind, payload)
                }
            };
            // Now and then a record that names another segment.
            let place = if op >= 0xf0 {
                must_succeed = false;
                misplaced = true;
                SegmentKey { dir: key.dir, seq: key.seq + 1 }
            } else {
                key
            };
            encode_into(&mut bytes, kind, place, &[&payload]);
            if misplaced {
                break; // the scan stops at the misplaced record
            }
            written.push((offset, kind));
        }
        // Zeroed room after the records, as a fresh segment has.
        let end = bytes.len();
        let room = usize::from(c.byte() % 8) * 8;
        bytes.resize(end + room, 0);

        let flip = c.byte();
        if flip & 1 == 0 {
            // As written: the scan finds exactly the records, then the end
            // (or the misplaced record, which it must refuse, not cut).
            let scan = check_scan(&bytes, key);
            let found: Vec<(u32, RecordKind)> = scan.records.iter().map(|r| (r.offset, r.kind)).collect();
            assert_eq!(found, written, "records lost or made up");
            match &scan.end {
                ScanEnd::Clean { offset } => assert!(!misplaced && *offset as usize == end),
                ScanEnd::Bad { reason, .. } => assert!(misplaced && !reason.is_torn(), "{reason:?}"),
            }
        } else if !bytes.is_empty() {
            // One flipped bit (rot, or a torn sector): the crc catches it in
            // a record, a zero header turns into garbage; either way the scan
            // cuts there, which recovery reports but does not refuse.
            let at = usize::from(c.byte()) * 3 % bytes.len();
            bytes[at] ^= 1 << (flip >> 5);
            check_scan(&bytes, key);
        }
        if c.byte().is_multiple_of(4) {
            // Stale bytes after the end (a torn tail): recovery cuts them.
            let stale = c.bytes(16);
            bytes.extend_from_slice(&stale);
        }
        // A later image with the same key replaces the earlier one, as in
        // `recover_images`; keep only the last so the checks agree.
        images.retain(|(k, _)| *k != key);
        images.push((key, bytes));
    }
    check_recovery(&images, must_succeed);
}

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor(data);
    if c.byte().is_multiple_of(2) {
        raw(&mut c);
    } else {
        built(&mut c);
    }
});
