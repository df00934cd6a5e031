//! The chunk-size sweep: the same input, cut into pieces of every size,
//! gives the same transcript and the same actions.

use super::{Action, Session, PASSWORD};

const SIZES: &[usize] = &[1, 2, 3, 5, 8, 64, 512];

/// Feeds `input` in pieces of `size` bytes.
fn run(input: &[u8], size: usize) -> (String, Vec<Action>, bool) {
    let mut session = Session::new();
    for piece in input.chunks(size) {
        session.feed(piece);
    }
    let transcript = String::from_utf8_lossy(&session.transcript).into_owned();
    (transcript, session.actions, session.server.is_closed())
}

fn assert_chunking_invariant(input: &[u8]) -> String {
    let whole = run(input, input.len().max(1));
    for &size in SIZES {
        assert_eq!(run(input, size), whole, "chunk size {size}");
    }
    whole.0
}

fn full_session() -> String {
    [
        "CAPA\r\n",
        "NOOP\r\n",
        "PASS early\r\n",
        "USER alice\r\n",
        "PASS wrong\r\n",
        "user alice\n",
        &format!("PASS {PASSWORD}\r\n"),
        "STAT\r\n",
        "LIST\r\n",
        "UIDL\r\n",
        "RETR 2\r\n",
        "TOP 2 0\r\n",
        "TOP 1 1\n",
        "DELE 1\r\n",
        "DELE 1\r\n",
        "LIST 1\r\n",
        "RETR 1\r\n",
        "RSET\r\n",
        "DELE 3\r\n",
        "STAT\r\n",
        "XYZZY\r\n",
        "RETR -1\r\n",
        "LIST 9\r\n",
        "UIDL 2\r\n",
        "retr 3\n",
        "QUIT\r\n",
        "NOOP\r\n",
    ]
    .concat()
}

#[test]
fn whole_session_is_the_same_at_every_chunk_size() {
    let transcript = assert_chunking_invariant(full_session().as_bytes());
    assert!(transcript.starts_with("+OK pop.example.test ringmail POP3 ready\r\n"));
    assert!(transcript.contains("-ERR [AUTH] Authentication failed.\r\n"));
    assert!(transcript.contains("\r\n..dotted\r\n"));
    assert!(transcript.contains("-ERR message 1 already deleted\r\n"));
    assert!(transcript.ends_with("+OK pop.example.test signing off\r\n"));
}

#[test]
fn whole_session_commits_the_same_deletions_at_every_chunk_size() {
    let (_, actions, closed) = run(full_session().as_bytes(), 3);
    assert!(closed);
    assert_eq!(actions.last(), Some(&Action::Commit { deleted: vec![2] }));
}

#[test]
fn overlong_line_is_caught_the_same_at_every_chunk_size() {
    let mut input = b"USER alice\r\n".to_vec();
    input.extend_from_slice(&[b'A'; 300]);
    input.extend_from_slice(b"\r\nNOOP\r\n");
    let transcript = assert_chunking_invariant(&input);
    assert!(transcript.ends_with("+OK send PASS\r\n-ERR line too long\r\n"));
}

#[test]
fn crlf_split_between_chunks_is_one_line_end() {
    let transcript = assert_chunking_invariant(b"NOOP\r\nCAPA\r\nQUIT\r\n");
    assert!(transcript.ends_with("+OK bye\r\n"));
    assert_eq!(transcript.matches("-ERR").count(), 1, "{transcript}");
}

/// A small deterministic generator (xorshift64), so the test needs no
/// dependency and every run sees the same inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Stands in for a fuzz target until the crate has one: pieces of commands,
/// line ends and hostile bytes in random order and random chunks. The
/// session must not panic, and must never leave a line's worth of input
/// unconsumed (that is the driver's buffer bound).
#[test]
fn random_input_never_panics_and_keeps_the_buffer_bounded() {
    const PIECES: &[&[u8]] = &[
        b"USER alice",
        b"PASS correct horse battery",
        b"PASS x",
        b"STAT",
        b"LIST",
        b"UIDL ",
        b"RETR ",
        b"TOP ",
        b"DELE ",
        b"RSET",
        b"NOOP",
        b"CAPA",
        b"STLS",
        b"QUIT",
        b"1",
        b"2",
        b"3",
        b"0",
        b"99999999999999999999999",
        b" ",
        b"\r\n",
        b"\n",
        b"\r",
        b"\0",
        b".",
        b"\xff",
        b"-",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..500 {
        let mut input = Vec::new();
        for _ in 0..rng.below(80) {
            input.extend_from_slice(PIECES[rng.below(PIECES.len())]);
        }
        if rng.below(10) == 0 {
            input.extend(std::iter::repeat_n(b'A', rng.below(600)));
        }
        let mut session = Session::new();
        let mut rest = &input[..];
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at((1 + rng.below(40)).min(rest.len()));
            session.feed(piece);
            assert!(session.pending.len() < 255, "{input:?}");
            rest = tail;
        }
    }
}
