//! The body of a message sent in BDAT chunks (RFC 3030): chunks appended
//! as they arrive, bounded by the message size limit.
//!
//! Chunks are raw: no dot-stuffing, no end marker; a chunk ends after the
//! octet count its BDAT announced, whatever the octets are (so CRLF "."
//! CRLF inside a chunk is message content, and smuggling by end-of-data
//! tricks has nothing to work on).
//!
//! Line ends: a `BODY=BINARYMIME` body is stored exactly as sent (RFC 3030
//! §3: binary content has no lines). A 7BIT or 8BITMIME body sent with
//! BDAT must still be lines ending in CRLF (RFC 3030 §2: BDAT changes the
//! transfer, not the content rules), so it gets the same treatment as a
//! DATA body: a bare CR and a bare LF are each stored as CRLF. Every
//! stored non-binary body then has the invariant the relay side relies on
//! (no bare CR reaches a next hop that ends lines on CR), whichever of
//! DATA or BDAT brought it. A CR at the end of one chunk and an LF at the
//! start of the next are one CRLF.
//!
//! This file must not know about commands or replies.

/// One message's body being assembled from BDAT chunks.
#[derive(Debug, Clone)]
pub struct ChunkBody {
    body: Vec<u8>,
    /// `BODY=BINARYMIME`: stored as sent.
    binary: bool,
    /// The limit on the stored body (`max_message_size`).
    max_size: usize,
    /// Octets announced by the BDATs so far (raw, before normalising).
    announced: u64,
    /// Octets of body counted so far (after normalising), past the limit too.
    size: usize,
    /// The body passed `max_size`; nothing more is stored.
    oversized: bool,
    /// A byte >= 0x80 was seen.
    eight_bit: bool,
    /// Non-binary: the last byte stored was a CR whose LF is not known yet.
    pending_cr: bool,
}

/// The length of the longest prefix of `bytes` whose CRs and LFs are all
/// CRLF pairs (stored unchanged); it stops at a bare CR or LF, or at a CR
/// that ends `bytes` (its LF may start the next chunk).
fn crlf_run(bytes: &[u8]) -> usize {
    let mut pos = 0;
    while let Some(k) = memchr::memchr2(b'\r', b'\n', &bytes[pos..]) {
        let i = pos + k;
        if bytes[i] != b'\r' || bytes.get(i + 1) != Some(&b'\n') {
            return i;
        }
        pos = i + 2;
    }
    bytes.len()
}

impl ChunkBody {
    /// An empty body that will hold at most `max_size` bytes.
    pub fn new(max_size: usize, binary: bool) -> ChunkBody {
        ChunkBody {
            body: Vec::new(),
            binary,
            max_size,
            announced: 0,
            size: 0,
            oversized: false,
            eight_bit: false,
            pending_cr: false,
        }
    }

    /// A BDAT announces `octets` more: returns false, and takes nothing,
    /// if the raw total would pass the limit (then the message is refused
    /// with 552 before a byte of the chunk is stored). Otherwise reserves
    /// room for them: the buffer grows once per chunk, never quadratically.
    pub fn announce(&mut self, octets: u64) -> bool {
        let max = u64::try_from(self.max_size).unwrap_or(u64::MAX);
        let total = self.announced.saturating_add(octets);
        if total > max {
            self.oversized = true;
            return false;
        }
        self.announced = total;
        // `octets` <= max_size here, so it fits a usize.
        self.body.reserve(usize::try_from(octets).unwrap_or(0));
        true
    }

    /// Appends chunk bytes (normalised unless binary).
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.binary {
            return self.store(bytes);
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.pending_cr {
                self.pending_cr = false;
                self.store(b"\n");
                if rest[0] == b'\n' {
                    rest = &rest[1..];
                    continue;
                }
            }
            let run = crlf_run(rest);
            self.store(&rest[..run]);
            rest = &rest[run..];
            match rest.first() {
                Some(b'\r') => {
                    self.store(b"\r");
                    self.pending_cr = true;
                    rest = &rest[1..];
                }
                Some(b'\n') => {
                    self.store(b"\r\n");
                    rest = &rest[1..];
                }
                _ => {}
            }
        }
    }

    fn store(&mut self, bytes: &[u8]) {
        if !self.eight_bit {
            self.eight_bit = !bytes.is_ascii();
        }
        self.size = self.size.saturating_add(bytes.len());
        if self.size > self.max_size {
            self.oversized = true;
        }
        if !self.oversized {
            self.body.extend_from_slice(bytes);
        }
    }

    /// True once the body passed the limit (by announcement or after
    /// normalising): the message must be refused with 552.
    pub fn is_oversized(&self) -> bool {
        self.oversized
    }

    /// True if any byte >= 0x80 was seen.
    pub fn saw_8bit(&self) -> bool {
        self.eight_bit
    }

    /// The LAST chunk was read: the complete body, or `None` if it is over
    /// the limit. A non-binary body ends with CRLF like a DATA body (a final
    /// lone CR gets its LF, a last line without a line end gets CRLF),
    /// which may take it past the limit.
    pub fn finish(mut self) -> Option<Vec<u8>> {
        if self.pending_cr {
            self.pending_cr = false;
            self.store(b"\n");
        }
        if !self.binary && !self.body.is_empty() && !self.body.ends_with(b"\r\n") {
            self.store(b"\r\n");
        }
        (!self.oversized).then_some(self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `piece` bytes and finishes.
    fn assemble(input: &[u8], piece: usize, binary: bool, max: usize) -> Option<Vec<u8>> {
        let mut body = ChunkBody::new(max, binary);
        if !body.announce(input.len() as u64) {
            return None;
        }
        for part in input.chunks(piece.max(1)) {
            body.feed(part);
        }
        body.finish()
    }

    #[test]
    fn binary_bodies_are_stored_as_sent_at_any_split() {
        let input = b"a\rb\nc\r\n.\r\n\0\xff\r";
        for piece in [1, 2, 3, 7, 64] {
            assert_eq!(assemble(input, piece, true, 100).as_deref(), Some(&input[..]), "piece {piece}");
        }
    }

    #[test]
    fn text_bodies_get_bare_cr_and_lf_as_crlf_at_any_split() {
        let input = b"a\rb\nc\r\nd\r";
        for piece in [1, 2, 3, 7, 64] {
            assert_eq!(assemble(input, piece, false, 100).as_deref(), Some(&b"a\r\nb\r\nc\r\nd\r\n"[..]), "{piece}");
        }
        assert_eq!(assemble(b"no line end", 3, false, 100).as_deref(), Some(&b"no line end\r\n"[..]));
        assert_eq!(assemble(b"", 3, false, 100).as_deref(), Some(&b""[..]));
    }

    #[test]
    fn announcing_past_the_limit_is_refused_and_stores_nothing() {
        let mut body = ChunkBody::new(10, false);
        assert!(body.announce(6));
        body.feed(b"012345");
        assert!(!body.announce(5));
        assert!(body.is_oversized());
        assert_eq!(body.finish(), None);
        assert!(!ChunkBody::new(10, true).announce(u64::MAX));
    }

    #[test]
    fn normalising_past_the_limit_is_oversized() {
        assert_eq!(assemble(b"\n\n\n\n\n\n", 1, false, 10), None);
        assert_eq!(assemble(b"\n\n\n\n\n", 1, false, 10).map(|b| b.len()), Some(10));
    }
}
