//! The simulated network: one-way message delays between regions.
//!
//! A delay is the base latency of the region pair plus a jitter drawn from an exponential
//! tail (mean one fifth of the base, capped at five times it), in whole milliseconds. The
//! model has no loss and no bandwidth: messages in the simulation are small (asks, lease
//! claims, receipts), and the executor's run time dominates a job's latency.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// One-way base latency inside a region, ms.
pub const SAME_REGION_MS: u64 = 2;
/// One-way base latency between neighbouring regions, ms; farther pairs add this per hop.
pub const PER_HOP_MS: u64 = 40;

/// A region index.
pub type Region = u32;

/// Latency between regions arranged on a ring (region i neighbours i ± 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// How many regions.
    pub regions: u32,
}

impl Network {
    /// The base one-way latency from `a` to `b`, ms.
    pub fn base_ms(&self, a: Region, b: Region) -> u64 {
        if a == b || self.regions <= 1 {
            return SAME_REGION_MS;
        }
        let d = a.abs_diff(b) % self.regions;
        let hops = d.min(self.regions - d);
        SAME_REGION_MS + PER_HOP_MS * u64::from(hops)
    }

    /// One message's delay from `a` to `b`: base plus a capped exponential jitter.
    pub fn delay_ms(&self, a: Region, b: Region, rng: &mut impl Rng) -> u64 {
        let base = self.base_ms(a, b);
        let mean = (base as f64 / 5.0).max(0.5);
        let u: f64 = rng.random_range(f64::EPSILON..1.0);
        let jitter = (-u.ln() * mean).min(base as f64 * 5.0);
        base + jitter as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn latency_grows_with_distance_and_stays_bounded() {
        let net = Network { regions: 4 };
        assert_eq!(net.base_ms(1, 1), SAME_REGION_MS);
        assert_eq!(net.base_ms(0, 1), SAME_REGION_MS + PER_HOP_MS);
        assert_eq!(net.base_ms(0, 2), SAME_REGION_MS + 2 * PER_HOP_MS);
        assert_eq!(net.base_ms(0, 3), net.base_ms(0, 1), "a ring wraps around");
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..10_000 {
            let d = net.delay_ms(0, 2, &mut rng);
            assert!((net.base_ms(0, 2)..=6 * net.base_ms(0, 2)).contains(&d));
        }
    }
}
