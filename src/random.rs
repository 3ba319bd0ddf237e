//! Jitter and worker identities. Seeded from the OS (WASI `random_get` inside Envoy) through
//! std's `RandomState`, so no extra crate is needed for a few random numbers a second.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn from_entropy() -> Rng {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(0x9e37_79b9_7f4a_7c15);
        Rng {
            state: hasher.finish() | 1,
        }
    }

    /// xorshift64*: plenty for jitter and for telling workers apart.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Never zero: zero means "nobody" in the lease.
    pub fn next_nonzero(&mut self) -> u64 {
        loop {
            let value = self.next_u64();
            if value != 0 {
                return value;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_stay_in_range_and_vary() {
        let mut rng = Rng::from_entropy();
        let values: Vec<f64> = (0..1000).map(|_| rng.next_unit()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!((0.4..0.6).contains(&mean), "mean {mean}");
        assert_ne!(Rng::from_entropy().next_nonzero(), Rng::from_entropy().next_nonzero());
    }
}
