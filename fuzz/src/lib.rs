//! Helpers shared by the fuzz targets: turning the front of a fuzz input
//! into a chunking of the rest, and a tiny deterministic generator.
//!
//! Input convention for the stream targets (`smtp_command`, `smtp_data`,
//! `pop3_command`): byte 0 is a control byte, the rest is what the client
//! sends. Seeds start with a printable control byte ('0'..'7' pick chunk
//! sizes of at most 1, 2, 3, 7, 16, 64, 512 and "all at once") so the
//! corpus files stay readable transcripts.

/// A deterministic xorshift64 generator: the same input always replays the
/// same chunking, so a crash reproduces from its artifact alone.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // xorshift must not start at 0.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `1..=max` (`max` >= 1).
    pub fn between_1_and(&mut self, max: usize) -> usize {
        1 + (self.next_u64() % max as u64) as usize
    }
}

/// Largest chunk for each value of the control byte's low 3 bits.
const MAX_CHUNK: [usize; 8] = [1, 2, 3, 7, 16, 64, 512, usize::MAX];

/// How to cut a stream into chunks, chosen by a control byte: bits 0-2 pick
/// the largest chunk, the whole byte seeds the sizes (each in 1..=max).
#[derive(Debug, Clone)]
pub struct ChunkPlan {
    max: usize,
    rng: Rng,
}

impl ChunkPlan {
    pub fn new(control: u8) -> ChunkPlan {
        ChunkPlan { max: MAX_CHUNK[usize::from(control & 7)], rng: Rng::new(u64::from(control)) }
    }

    /// Splits `data` into the chunks of this plan, in order; together they
    /// are exactly `data`.
    pub fn chunks<'a>(&mut self, data: &'a [u8]) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let n = if self.max == usize::MAX { rest.len() } else { self.rng.between_1_and(self.max).min(rest.len()) };
            let (head, tail) = rest.split_at(n);
            out.push(head);
            rest = tail;
        }
        out
    }
}

/// Splits a stream-target input into its control byte and the stream.
pub fn split_control(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(&c, rest)| (c, rest))
}
