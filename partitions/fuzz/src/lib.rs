//! What the fuzzers share: a small reproducible random generator.
#![no_std]

/// xorshift64*: small, fast, and reproducible from its seed.
pub struct Random(pub u64);

impl Random {
    /// The next value.
    pub fn word(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value below `bound` (not 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.word() % bound
    }
}
