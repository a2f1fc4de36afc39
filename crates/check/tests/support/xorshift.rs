//! xorshift64*: enough randomness for test generation without a dependency, and the same
//! numbers on every run for a seed, so a failure repeats. Shared by this crate's random
//! histories and, through a `#[path]` include, the broker's parser tests (each adds the
//! helpers it wants on top in an `impl Rng` of its own).

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}
