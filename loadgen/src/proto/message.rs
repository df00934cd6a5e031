//! Generated message content: headers with a unique Message-ID, a filler
//! body of a chosen size, dot-stuffed for the wire.
//!
//! The body of each size class is built once per core and shared; only the
//! header block (which carries the Message-ID) is formatted per message.

/// Dot-stuffs `content` (RFC 5321 §4.5.2): a line starting with `.` gets
/// another `.` in front. `content` is assumed to start at a line start.
pub fn dot_stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + content.len() / 64 + 8);
    let mut line_start = true;
    for &b in content {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    out
}

/// The Message-ID for message `seq` of worker `worker` in run `run_id`:
/// `<run-id.worker.seq@loadgen>`, unique across the run.
pub fn message_id(run_id: &str, worker: u64, seq: u64) -> String {
    format!("<{run_id}.{worker}.{seq}@loadgen>")
}

/// Formats the header block (ends with the empty line).
pub fn headers(message_id: &str, from: &str, date: &str, subject_tag: &str) -> String {
    format!(
        "Message-ID: {message_id}\r\nDate: {date}\r\nFrom: <{from}>\r\nTo: undisclosed-recipients:;\r\n\
         Subject: ringmail-loadgen {subject_tag}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\nX-Loadgen: 1\r\n\r\n"
    )
}

/// A typical header block length, used to size bodies so that a "1k"
/// message is about 1024 bytes in total.
pub const HEADER_ESTIMATE: usize = 260;

/// A wire-ready body of about `total_size - HEADER_ESTIMATE` bytes (before
/// stuffing) followed by the terminating `.\r\n`.
///
/// Lines are 76 characters; every 16th starts with a dot so that
/// dot-stuffing is exercised on every message (a sink that forgets to
/// unstuff shows a different size or content).
pub fn wire_body(total_size: usize) -> Vec<u8> {
    let mut wire = dot_stuff(&plain_body(total_size));
    wire.extend_from_slice(b".\r\n");
    wire
}

/// The body [`wire_body`] sends, before dot-stuffing and without the
/// terminator (what the `http` mode puts in its JSON).
pub fn plain_body(total_size: usize) -> Vec<u8> {
    let target = total_size.saturating_sub(HEADER_ESTIMATE).max(2);
    let mut body = Vec::with_capacity(target + 80);
    let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut line_no = 0usize;
    while body.len() < target {
        let room = target - body.len();
        let len = room.saturating_sub(2).min(76);
        for i in 0..len {
            let c = if i == 0 && line_no % 16 == 15 { b'.' } else { alphabet[(line_no * 7 + i) % alphabet.len()] };
            body.push(c);
        }
        body.extend_from_slice(b"\r\n");
        line_no += 1;
    }
    body
}

/// `Thu, 01 Jan 2026 00:00:00 +0000` for a Unix time.
pub fn rfc5322_date(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::dotdata::DotReader;

    #[test]
    fn dot_stuffing_doubles_leading_dots_only() {
        assert_eq!(dot_stuff(b".a\r\nb.c\r\n..\r\n"), b"..a\r\nb.c\r\n...\r\n");
    }

    #[test]
    fn message_ids_differ_by_worker_and_seq() {
        assert_ne!(message_id("r", 1, 2), message_id("r", 2, 1));
        assert_eq!(message_id("r", 1, 2), "<r.1.2@loadgen>");
    }

    #[test]
    fn wire_body_round_trips_through_the_reader() {
        for size in [1usize, 300, 1024, 16 * 1024, 100_000] {
            let wire = wire_body(size);
            let mut r = DotReader::new();
            let mut content = Vec::new();
            let fed = r.feed(&wire, |b| content.extend_from_slice(b));
            assert!(fed.done, "size {size}");
            assert_eq!(fed.consumed, wire.len());
            assert!(content.ends_with(b"\r\n"));
            let h = headers("<x@y>", "a@b", "Thu, 1 Jan 2026 00:00:00 +0000", "t");
            if size >= 1024 {
                let total = h.len() + content.len();
                assert!(total.abs_diff(size) < 200, "size {size} gave {total}");
            }
        }
    }

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(1_767_225_600), "Thu, 01 Jan 2026 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn large_bodies_contain_stuffed_lines() {
        let wire = wire_body(4096);
        assert!(wire.windows(3).any(|w| w == b"\n.."));
    }
}
