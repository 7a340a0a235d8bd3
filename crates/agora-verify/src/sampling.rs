//! Who gets checked, and how often: the replicas an order needs up front, the spot-check
//! draw, and the expected verification overhead.
//!
//! The audit draw is `blake3(seed, order id)` mapped onto parts per million. The seed must
//! be a value nobody knows until after the provider's receipt is recorded — the hash of the
//! next block, or the reveal of a market commit-reveal — so a provider cannot tell, when it
//! decides whether to cheat, which of its results will be re-run. Given the seed, every node
//! computes the same draw.
//!
//! Adaptive replication trusts a provider by its run of consecutive verified results: below
//! `full_until` every job runs twice; from then on a job is audited with probability
//! `max(1/count, floor)`, so the check thins out as trust grows but never stops.

use agora_core::Hash;
use serde::{Deserialize, Serialize};

use crate::policy::{PPM, VerifyPolicy};

const AUDIT_DRAW_TAG: &str = "agora/audit-draw/v1";

/// What the market knows about a provider that bears on how hard to check it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderHistory {
    /// Results in a row accepted without a fault since the provider's last disagreement,
    /// timeout or slash (each resets it to 0). A result that was not drawn for audit counts
    /// too: it was exposed to the draw, and counting only audited ones would keep the audit
    /// rate of a long-honest provider near 1/full_until for ever.
    pub consecutive_verified: u32,
}

/// How an order is checked for one provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationPlan {
    /// Distinct providers to run the job on up front.
    pub replicas: u32,
    /// Probability, in ppm, that a single result is re-run afterwards by an independent
    /// provider; decided by [`should_audit`] once the seed is revealed.
    pub audit_ppm: u32,
}

/// The plan for `policy` and a provider with `history`.
pub fn plan(policy: &VerifyPolicy, history: &ProviderHistory) -> VerificationPlan {
    let single = |audit_ppm: u32| VerificationPlan {
        replicas: 1,
        audit_ppm: audit_ppm.min(PPM),
    };
    match *policy {
        VerifyPolicy::None | VerifyPolicy::Challenge { .. } => single(0),
        VerifyPolicy::Replicate { n, .. } => VerificationPlan {
            replicas: n.max(1),
            audit_ppm: 0,
        },
        VerifyPolicy::Spot { p_ppm } => single(p_ppm),
        VerifyPolicy::Adaptive {
            floor_ppm,
            full_until,
        } => {
            let count = history.consecutive_verified;
            if count < full_until {
                VerificationPlan {
                    replicas: 2,
                    audit_ppm: 0,
                }
            } else {
                single(adaptive_audit_ppm(floor_ppm, count))
            }
        }
    }
}

/// Adaptive's audit probability for a trusted provider: `max(1/count, floor)` in ppm.
pub fn adaptive_audit_ppm(floor_ppm: u32, consecutive_verified: u32) -> u32 {
    let inverse = PPM.checked_div(consecutive_verified).unwrap_or(PPM);
    inverse.max(floor_ppm).min(PPM)
}

/// The audit draw for an order: uniform in `0..10⁶`, a pure function of the seed and the
/// order id.
pub fn audit_draw_ppm(seed: Hash, order_id: Hash) -> u32 {
    let digest = Hash::tagged(AUDIT_DRAW_TAG, &[seed.as_bytes(), order_id.as_bytes()]);
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest.as_bytes()[..8]);
    // Multiply-shift maps 64 uniform bits onto 0..10⁶ with a bias below 10⁻¹³, without the
    // modulo's skew toward small values.
    ((u64::from_le_bytes(head) as u128 * PPM as u128) >> 64) as u32
}

/// Whether this single-provider result must be re-run by an independent provider. `seed` is
/// the value revealed only after the receipt was recorded. Policies that replicate up front
/// (`replicate`, and `adaptive` for an untrusted provider) answer `false`: their check has
/// already run.
pub fn should_audit(
    policy: &VerifyPolicy,
    seed: Hash,
    order_id: Hash,
    history: &ProviderHistory,
) -> bool {
    let audit_ppm = plan(policy, history).audit_ppm;
    audit_draw_ppm(seed, order_id) < audit_ppm
}

/// Expected runs executed per run billed, in ppm (10⁶ = no overhead, 3·10⁶ for
/// `replicate:3:2`), for an honest provider with `history`. Tie-breaking runs after a
/// disagreement are not counted: they only happen when somebody cheated.
pub fn expected_overhead_ppm(policy: &VerifyPolicy, history: &ProviderHistory) -> u64 {
    let plan = plan(policy, history);
    plan.replicas as u64 * PPM as u64 + plan.audit_ppm as u64
}

/// The mean of [`expected_overhead_ppm`] over an honest provider's first `jobs` jobs,
/// starting from no history, in ppm. This is what adaptive costs a market of new providers.
pub fn expected_overhead_over_jobs_ppm(policy: &VerifyPolicy, jobs: u32) -> u64 {
    if jobs == 0 {
        return PPM as u64;
    }
    let total: u64 = (0..jobs)
        .map(|count| {
            let history = ProviderHistory {
                consecutive_verified: count,
            };
            expected_overhead_ppm(policy, &history)
        })
        .sum();
    total / jobs as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(count: u32) -> ProviderHistory {
        ProviderHistory {
            consecutive_verified: count,
        }
    }

    #[test]
    fn adaptive_replicates_newcomers_then_samples() {
        let policy = VerifyPolicy::Adaptive {
            floor_ppm: 50_000,
            full_until: 10,
        };
        assert_eq!(plan(&policy, &history(0)).replicas, 2);
        assert_eq!(plan(&policy, &history(9)).replicas, 2);
        let trusted = plan(&policy, &history(10));
        assert_eq!((trusted.replicas, trusted.audit_ppm), (1, 100_000));
        assert_eq!(plan(&policy, &history(1_000)).audit_ppm, 50_000);
    }

    #[test]
    fn adaptive_with_no_full_phase_audits_a_newcomer_always() {
        assert_eq!(adaptive_audit_ppm(10_000, 0), PPM);
        assert_eq!(adaptive_audit_ppm(10_000, 4), 250_000);
    }

    #[test]
    fn the_draw_depends_on_seed_and_order() {
        let (a, b) = (Hash::of(b"a"), Hash::of(b"b"));
        assert_eq!(audit_draw_ppm(a, b), audit_draw_ppm(a, b));
        assert_ne!(audit_draw_ppm(a, b), audit_draw_ppm(b, a));
        assert!(audit_draw_ppm(a, b) < PPM);
    }

    #[test]
    fn replicate_and_none_never_audit() {
        let seed = Hash::of(b"seed");
        let order = Hash::of(b"order");
        let h = history(0);
        assert!(!should_audit(&VerifyPolicy::None, seed, order, &h));
        let replicate = VerifyPolicy::Replicate { n: 3, quorum: 2 };
        assert!(!should_audit(&replicate, seed, order, &h));
        assert!(should_audit(
            &VerifyPolicy::Spot { p_ppm: PPM },
            seed,
            order,
            &h
        ));
    }

    #[test]
    fn overhead_matches_the_design_table() {
        let h = history(0);
        assert_eq!(expected_overhead_ppm(&VerifyPolicy::None, &h), 1_000_000);
        let replicate = VerifyPolicy::Replicate { n: 3, quorum: 2 };
        assert_eq!(expected_overhead_ppm(&replicate, &h), 3_000_000);
        let spot = VerifyPolicy::Spot { p_ppm: 200_000 };
        assert_eq!(expected_overhead_ppm(&spot, &h), 1_200_000);
        let adaptive = VerifyPolicy::DEFAULT;
        let long_run = expected_overhead_over_jobs_ppm(&adaptive, 10_000);
        assert!((1_050_000..1_070_000).contains(&long_run), "{long_run}");
    }
}
