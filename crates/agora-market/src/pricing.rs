//! The effective price: what a bid is ranked by.
//!
//! ```text
//! discount_bps = max_reputation_discount_bps × score_ppm / 10⁶          (rounded down)
//!              + max_stake_discount_bps × min(stake, full_stake) / full_stake (rounded down)
//! effective    = ⌈price × (10 000 − discount_bps) / 10 000⌉
//! ```
//!
//! - *Monotone*: a better score or a larger stake never raises the effective price (each
//!   term is non-decreasing in its input, and the price is non-increasing in the discount).
//! - *Bounded*: the discount is at most `max_reputation_discount_bps + max_stake_discount_bps`
//!   (20 % + 5 % by default), so a provider can never win at more than `1 / (1 − 25 %)` of a
//!   rival's price on reputation and stake alone.
//! - *Integer*: all in u128 with fixed rounding, so every node ranks providers bit-identically.
//!
//! The effective price only ranks; winners are paid their own price (or the auction's
//! clearing price), never the effective one.

use agora_core::{Amount, Price};
use serde::{Deserialize, Serialize};

use crate::error::MarketError;
use crate::reputation::PPM;

const BPS: u128 = 10_000;

/// The effective-price formula's parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricingPolicy {
    /// Discount at a perfect reputation score, in basis points.
    pub max_reputation_discount_bps: u16,
    /// Discount at `full_stake` or more, in basis points.
    pub max_stake_discount_bps: u16,
    /// The stake that earns the full stake discount.
    pub full_stake: Amount,
}

impl Default for PricingPolicy {
    fn default() -> Self {
        PricingPolicy {
            max_reputation_discount_bps: 2_000,
            max_stake_discount_bps: 500,
            full_stake: Amount::agr(1_000),
        }
    }
}

impl PricingPolicy {
    /// Rejects a policy whose discount could reach 90 % or whose stake scale is zero.
    pub fn validate(&self) -> Result<(), MarketError> {
        if self.max_discount_bps() > 9_000 {
            return Err(MarketError::InvalidConfig(format!(
                "total discount {} bps exceeds 9000 bps (90 %)",
                self.max_discount_bps()
            )));
        }
        if self.full_stake.is_zero() {
            return Err(MarketError::InvalidConfig(
                "full_stake must be positive".into(),
            ));
        }
        Ok(())
    }

    /// The largest discount any provider can get.
    pub fn max_discount_bps(&self) -> u32 {
        u32::from(self.max_reputation_discount_bps) + u32::from(self.max_stake_discount_bps)
    }

    /// The discount for a provider with `score_ppm` and `stake`.
    pub fn discount_bps(&self, score_ppm: u32, stake: Amount) -> u32 {
        let score = u128::from(score_ppm.min(PPM));
        let rep = u128::from(self.max_reputation_discount_bps) * score / u128::from(PPM);
        let full = u128::from(self.full_stake.0.max(1));
        let staked = u128::from(stake.0).min(full);
        let stake = u128::from(self.max_stake_discount_bps) * staked / full;
        // Both terms are below 2^16, so the sum fits in u32.
        (rep + stake) as u32
    }

    /// The effective price of `price` for a provider with `score_ppm` and `stake`.
    pub fn effective(&self, price: Price, score_ppm: u32, stake: Amount) -> Price {
        apply_discount(price, self.discount_bps(score_ppm, stake))
    }

    /// The lowest effective price any provider could have at `price`.
    pub fn floor(&self, price: Price) -> Price {
        apply_discount(price, self.max_discount_bps())
    }

    /// An upper bound on a provider's discount from now until its stake or reputation
    /// record next changes: the discount at its score bound (see
    /// [`ReputationRecord::score_bound_ppm`](crate::reputation::ReputationRecord::score_bound_ppm)),
    /// plus 1 bps to absorb integer rounding in decayed tallies, at most the maximum.
    pub fn discount_bound_bps(&self, score_bound_ppm: u32, stake: Amount) -> u32 {
        (self.discount_bps(score_bound_ppm, stake) + 1).min(self.max_discount_bps())
    }

    /// `price` at a discount of `bps`: with a discount bound, a lower bound on the
    /// effective price, which is what the matcher's index is sorted by.
    pub fn discounted(&self, price: Price, bps: u32) -> Price {
        apply_discount(price, bps)
    }
}

fn apply_discount(price: Price, discount_bps: u32) -> Price {
    let keep = BPS - u128::from(discount_bps).min(BPS);
    let scaled = (u128::from(price.0) * keep).div_ceil(BPS);
    // keep ≤ BPS, so the result never exceeds the price and fits in u64.
    Price(scaled as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        let p = PricingPolicy::default();
        assert_eq!(p.effective(Price(10_000), 0, Amount::ZERO), Price(10_000));
        assert_eq!(
            p.effective(Price(10_000), PPM, Amount::agr(5_000)),
            Price(7_500)
        );
        assert_eq!(
            p.effective(Price(10_000), PPM / 2, Amount::ZERO),
            Price(9_000)
        );
        assert_eq!(p.floor(Price(10_000)), Price(7_500));
        assert!(
            PricingPolicy {
                max_reputation_discount_bps: 9_500,
                ..p.clone()
            }
            .validate()
            .is_err()
        );
    }

    proptest! {
        #[test]
        fn monotone_and_bounded(
            price in 1u64..u64::MAX,
            s1 in 0u32..=PPM, s2 in 0u32..=PPM,
            k1 in any::<u64>(), k2 in any::<u64>(),
        ) {
            let p = PricingPolicy::default();
            let (lo_s, hi_s) = (s1.min(s2), s1.max(s2));
            let (lo_k, hi_k) = (Amount(k1.min(k2)), Amount(k1.max(k2)));
            let worse = p.effective(Price(price), lo_s, lo_k);
            let better = p.effective(Price(price), hi_s, hi_k);
            prop_assert!(better <= worse);
            prop_assert!(worse <= Price(price));
            prop_assert!(better >= p.floor(Price(price)));
        }
    }
}
