//! A seeded generator for the property tests (xorshift64*): a failure names a seed that
//! replays it. Test-only.

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// A non-empty random subset of `items`.
    pub fn subset<'a, T>(&mut self, items: &'a [T]) -> Vec<&'a T> {
        loop {
            let picked: Vec<&T> = items.iter().filter(|_| self.chance(50)).collect();
            if !picked.is_empty() {
                return picked;
            }
        }
    }
}
