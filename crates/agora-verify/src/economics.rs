//! Stake economics: how much stake makes cheating a losing bet.
//!
//! A provider that cheats skips the work and saves its cost C. If it is not caught it is paid
//! R as usual; if it is caught (probability p) it is paid nothing and loses its stake S.
//! Honest work earns R − C; cheating earns (1 − p)·R − p·S in expectation. Cheating is
//! irrational when
//!
//! ```text
//! (1 − p)·R − p·S ≤ R − C   ⇔   p·S ≥ C − p·R   ⇔   S ≥ C/p − R
//! ```
//!
//! All of it is computed in integers (p in ppm, amounts in base units, 128-bit
//! intermediates) and rounded so the required stake always satisfies the inequality.
//!
//! What p is, per policy (the assumptions are deliberate and documented in
//! `docs/verification.md`):
//!
//! - `spot:P`: P.
//! - `adaptive`: its floor — the lowest audit probability a trusted provider can reach.
//! - `replicate:N:Q`: 1. We assume a *lone* cheater: the other replicas are honest, so its
//!   wrong result meets an honest group that reaches the quorum (adding providers up to the
//!   cap when needed) and it is always caught. Replication does not defend against a
//!   colluding majority of replicas; stake does not price that in — distinct operators do.
//! - `challenge:W`: [`ASSUMED_CHALLENGE_PPM`], an assumed share of results that some staked
//!   watcher re-runs within the window. Nothing in the protocol guarantees a watcher, so this
//!   is the weakest assumption of the lot and the reason the default policy is not this one.
//! - `none`: 0. Nothing is ever checked, so no stake deters; the required stake is zero and
//!   the buyer relies on reputation alone.

use agora_core::Amount;

use crate::policy::{PPM, VerifyPolicy};

/// The share of challengeable results assumed to be re-run by some watcher: 10 %.
pub const ASSUMED_CHALLENGE_PPM: u32 = 100_000;

/// The probability, in ppm, that one cheat on one job is caught under `policy`, as the stake
/// rule assumes it (see the module docs).
pub fn detection_ppm(policy: &VerifyPolicy) -> u32 {
    match *policy {
        VerifyPolicy::None => 0,
        VerifyPolicy::Replicate { .. } => PPM,
        VerifyPolicy::Spot { p_ppm } => p_ppm.min(PPM),
        VerifyPolicy::Adaptive { floor_ppm, .. } => floor_ppm.min(PPM),
        VerifyPolicy::Challenge { .. } => ASSUMED_CHALLENGE_PPM,
    }
}

/// The smallest stake S with `p·S ≥ C − p·R`, i.e. `S = max(0, ⌈C·10⁶/p⌉ − R)`. A
/// requirement that does not fit in an [`Amount`] saturates at the largest one, which no
/// provider holds: too little detection for the money is refused, never waved through.
/// With `p_ppm = 0` nothing is detected and no stake can help, so the answer is zero (the
/// caller's policy is `none`, which relies on reputation).
pub fn deterrent_stake(reward: Amount, cost: Amount, p_ppm: u32) -> Amount {
    if p_ppm == 0 {
        return Amount::ZERO;
    }
    let p = p_ppm.min(PPM) as u128;
    let scaled_cost = cost.base_units() as u128 * PPM as u128;
    let loss_needed = scaled_cost.div_ceil(p);
    let stake = loss_needed.saturating_sub(reward.base_units() as u128);
    Amount(u64::try_from(stake).unwrap_or(u64::MAX))
}

/// The stake a bid must have for an order worth `order_value` (R) whose compute costs the
/// provider `cost` (C), under `policy`.
pub fn required_stake(order_value: Amount, cost: Amount, policy: &VerifyPolicy) -> Amount {
    deterrent_stake(order_value, cost, detection_ppm(policy))
}

/// Whether stake S makes cheating irrational: `p·S ≥ C − p·R`, exactly, in integers.
pub fn cheating_is_irrational(reward: Amount, cost: Amount, stake: Amount, p_ppm: u32) -> bool {
    let p = p_ppm.min(PPM) as u128;
    let expected_loss = p * (stake.base_units() as u128 + reward.base_units() as u128);
    expected_loss >= cost.base_units() as u128 * PPM as u128
}

/// A bid whose stake is too low for the order's value and policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "stake {has} is below the {required} this order requires (S >= C/p - R for its value and verification policy); bond more stake or bid on smaller orders"
)]
pub struct StakeTooLow {
    /// The stake the order requires.
    pub required: Amount,
    /// The stake the provider has bonded.
    pub has: Amount,
}

/// Refuses a bid whose stake `has` is below [`required_stake`].
pub fn check_bid_stake(
    order_value: Amount,
    cost: Amount,
    policy: &VerifyPolicy,
    has: Amount,
) -> Result<(), StakeTooLow> {
    let required = required_stake(order_value, cost, policy);
    if has < required {
        return Err(StakeTooLow { required, has });
    }
    Ok(())
}

/// The probability that a provider cheating on every one of `k` jobs is caught at least
/// once: `1 − (1 − p)^k`. A float, for reports only; no decision uses it.
pub fn detection_probability(p_ppm: u32, k: u32) -> f64 {
    let p = p_ppm.min(PPM) as f64 / PPM as f64;
    1.0 - (1.0 - p).powf(k as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_example_from_the_docs() {
        // A job pays 2 AGR and costs 1 AGR of compute; spot:0.2 needs 1/0.2 − 2 = 3 AGR.
        let policy = VerifyPolicy::Spot { p_ppm: 200_000 };
        let stake = required_stake(Amount::agr(2), Amount::agr(1), &policy);
        assert_eq!(stake, Amount::agr(3));
        assert!(cheating_is_irrational(
            Amount::agr(2),
            Amount::agr(1),
            stake,
            200_000
        ));
        let short = Amount(stake.base_units() - 1);
        assert!(!cheating_is_irrational(
            Amount::agr(2),
            Amount::agr(1),
            short,
            200_000
        ));
    }

    #[test]
    fn rounds_up_so_the_condition_holds() {
        // C/p = 10·10⁶/300 000 = 33.33…, so S must be 34 − R.
        assert_eq!(deterrent_stake(Amount(4), Amount(10), 300_000), Amount(30));
    }

    #[test]
    fn policies_map_to_their_detection_probability() {
        assert_eq!(detection_ppm(&VerifyPolicy::None), 0);
        assert_eq!(
            detection_ppm(&VerifyPolicy::Replicate { n: 3, quorum: 2 }),
            PPM
        );
        assert_eq!(detection_ppm(&VerifyPolicy::DEFAULT), 50_000);
        let none = required_stake(Amount::agr(1), Amount::agr(1), &VerifyPolicy::None);
        assert_eq!(none, Amount::ZERO);
        let replicate = VerifyPolicy::Replicate { n: 3, quorum: 2 };
        assert_eq!(
            required_stake(Amount::agr(2), Amount::agr(1), &replicate),
            Amount::ZERO
        );
    }

    #[test]
    fn huge_requirements_saturate_instead_of_wrapping() {
        assert_eq!(
            deterrent_stake(Amount::ZERO, Amount(u64::MAX), 1),
            Amount(u64::MAX)
        );
    }

    #[test]
    fn bid_check_names_both_amounts() {
        let policy = VerifyPolicy::Spot { p_ppm: 200_000 };
        let err =
            check_bid_stake(Amount::agr(2), Amount::agr(1), &policy, Amount::agr(1)).unwrap_err();
        assert_eq!(
            err,
            StakeTooLow {
                required: Amount::agr(3),
                has: Amount::agr(1)
            }
        );
        assert!(err.to_string().contains("3 AGR"));
        assert!(check_bid_stake(Amount::agr(2), Amount::agr(1), &policy, Amount::agr(3)).is_ok());
    }

    #[test]
    fn detection_grows_with_jobs() {
        assert_eq!(detection_probability(200_000, 0), 0.0);
        assert!((detection_probability(200_000, 1) - 0.2).abs() < 1e-12);
        assert!((detection_probability(200_000, 10) - (1.0 - 0.8f64.powi(10))).abs() < 1e-12);
    }
}
