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
//!
//! When the market knows what a job puts at stake ([`Exposure`]: the job's reward R, the
//! provider's cost C and its slashable stake S), the floor is the job's own deterrence
//! rate instead of the policy's worst case: cheating on the job is a losing bet once
//! p ≥ C/(S + R) (the stake rule S ≥ C/p − R solved for p), so a provider whose stake
//! covers the job many times over is audited at that rate, never below
//! [`MIN_AUDIT_PPM`] (or the policy's floor, if lower), and a job worth more than the
//! stake backs is audited more. See [`plan_at_risk`].

use agora_core::{Amount, Hash};
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

/// The least audit probability adaptive sampling uses for a trusted provider whose stake
/// more than covers the job: 1 %. Deterrence alone would allow less for a large stake,
/// but faults that are not a calculated bet (broken hardware, a bad build) are only found
/// by re-running, and 1 in 100 bounds how long such a fault goes unseen at the cost of
/// 1 % more compute.
pub const MIN_AUDIT_PPM: u32 = 10_000;

/// What one job puts at stake for the provider that runs it: the value-at-risk input of
/// [`plan_at_risk`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exposure {
    /// R: the most the job pays the provider (its price × the fuel budget).
    pub reward: Amount,
    /// C: what the provider saves by not doing the work (at most R in a market where
    /// honest work pays).
    pub cost: Amount,
    /// S: the provider's stake that a proven fault can take.
    pub stake: Amount,
}

impl Exposure {
    /// The least audit probability, in ppm, at which cheating on this job loses money in
    /// expectation: `⌈C·10⁶ / (S + R)⌉`, at most 10⁶. With this p,
    /// [`crate::economics::cheating_is_irrational`] holds for (R, C, S).
    pub fn deterrent_ppm(&self) -> u32 {
        let at_risk = self.stake.base_units() as u128 + self.reward.base_units() as u128;
        if at_risk == 0 {
            return if self.cost.is_zero() { 0 } else { PPM };
        }
        let needed = (self.cost.base_units() as u128 * PPM as u128).div_ceil(at_risk);
        u32::try_from(needed.min(PPM as u128)).unwrap_or(PPM)
    }
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

/// The plan for `policy`, a provider with `history` and a job that puts `exposure` at
/// stake. Only `adaptive` reads the exposure; newcomers are replicated as in [`plan`] and
/// `spot:P` keeps the P the buyer asked for. For a trusted provider with `count` results in
/// a row, with `d = C/(S + R)` the least rate at which cheating on this job loses money
/// ([`Exposure::deterrent_ppm`]):
///
/// ```text
/// audit = max( min(d, floor)/floor · 1/count ,  max(min(floor, 1 %), d) )
///              └ history, weighed by how thin   └ the least rate: deterrence, and never
///                the stake is for this job        below 1 % (or the floor, if lower)
/// ```
///
/// A provider holding exactly the stake the order requires (S = C/floor − R, so d = floor)
/// is audited as by [`plan`], `max(1/count, floor)`. The more its stake covers the job, the
/// less its history has to prove — a proven wrong result costs it more than the job could
/// gain it — and the rate falls toward 1 %. A job worth more than the stake backs (d >
/// floor) is audited at d or more. Every rate is ≥ d, so cheating never pays at it.
pub fn plan_at_risk(
    policy: &VerifyPolicy,
    history: &ProviderHistory,
    exposure: &Exposure,
) -> VerificationPlan {
    match *policy {
        VerifyPolicy::Adaptive {
            floor_ppm,
            full_until,
        } if history.consecutive_verified >= full_until => VerificationPlan {
            replicas: 1,
            audit_ppm: adaptive_audit_at_risk_ppm(
                floor_ppm,
                history.consecutive_verified,
                exposure,
            ),
        },
        _ => plan(policy, history),
    }
}

/// Adaptive's audit probability at risk (see [`plan_at_risk`]), in ppm.
pub fn adaptive_audit_at_risk_ppm(
    floor_ppm: u32,
    consecutive_verified: u32,
    exposure: &Exposure,
) -> u32 {
    let floor = floor_ppm.max(1);
    let deterrent = exposure.deterrent_ppm();
    let least = floor.min(MIN_AUDIT_PPM).max(deterrent);
    let inverse = PPM.checked_div(consecutive_verified).unwrap_or(PPM) as u64;
    let history = inverse * deterrent.min(floor) as u64 / floor as u64;
    u32::try_from(history).unwrap_or(PPM).max(least).min(PPM)
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

/// [`should_audit`] with the job's [`Exposure`], as [`plan_at_risk`] weighs it.
pub fn should_audit_at_risk(
    policy: &VerifyPolicy,
    seed: Hash,
    order_id: Hash,
    history: &ProviderHistory,
    exposure: &Exposure,
) -> bool {
    let audit_ppm = plan_at_risk(policy, history, exposure).audit_ppm;
    audit_draw_ppm(seed, order_id) < audit_ppm
}

/// Expected runs executed per run billed, in ppm (10⁶ = no overhead, 3·10⁶ for
/// `replicate:3:2`), for an honest provider with `history`. Tie-breaking runs after a
/// disagreement are not counted: they only happen when somebody cheated.
pub fn expected_overhead_ppm(policy: &VerifyPolicy, history: &ProviderHistory) -> u64 {
    runs_ppm(&plan(policy, history))
}

/// [`expected_overhead_ppm`] for a job that puts `exposure` at stake, audited as
/// [`plan_at_risk`] says: the overhead the market node will actually incur on it.
pub fn expected_overhead_at_risk_ppm(
    policy: &VerifyPolicy,
    history: &ProviderHistory,
    exposure: &Exposure,
) -> u64 {
    runs_ppm(&plan_at_risk(policy, history, exposure))
}

/// Runs executed per run billed under `plan`, in ppm.
fn runs_ppm(plan: &VerificationPlan) -> u64 {
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

/// [`expected_overhead_over_jobs_ppm`] for jobs that each put `exposure` at stake, audited
/// as [`plan_at_risk`] says.
pub fn expected_overhead_at_risk_over_jobs_ppm(
    policy: &VerifyPolicy,
    exposure: &Exposure,
    jobs: u32,
) -> u64 {
    if jobs == 0 {
        return PPM as u64;
    }
    let total: u64 = (0..jobs)
        .map(|count| {
            let history = ProviderHistory {
                consecutive_verified: count,
            };
            expected_overhead_at_risk_ppm(policy, &history, exposure)
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

    fn exposure(reward: u64, stake: u64) -> Exposure {
        Exposure {
            reward: Amount(reward),
            cost: Amount(reward),
            stake: Amount(stake),
        }
    }

    #[test]
    fn the_deterrent_rate_is_cost_over_what_a_fault_loses() {
        // C = R = 1, S = 99: p = 1/100.
        assert_eq!(exposure(1, 99).deterrent_ppm(), 10_000);
        // Rounded up, so the rate always deters.
        assert_eq!(exposure(1, 2).deterrent_ppm(), 333_334);
        // No stake and C = R: only always auditing deters.
        assert_eq!(exposure(5, 0).deterrent_ppm(), PPM);
        assert_eq!(exposure(0, 0).deterrent_ppm(), 0);
    }

    #[test]
    fn the_overhead_at_risk_is_the_plan_at_risk() {
        let policy = VerifyPolicy::DEFAULT;
        let well_staked = exposure(1_000, 1_000_000_000);
        let thin = exposure(1_000_000, 1);
        for count in [0, 3, 10, 100, 10_000] {
            let h = history(count);
            let plan = plan_at_risk(&policy, &h, &well_staked);
            assert_eq!(
                expected_overhead_at_risk_ppm(&policy, &h, &well_staked),
                plan.replicas as u64 * PPM as u64 + plan.audit_ppm as u64
            );
        }
        // A trusted provider whose stake covers the job is audited less than the policy's
        // worst case; one whose stake barely backs it, more.
        let trusted = history(10_000);
        let worst_case = expected_overhead_ppm(&policy, &trusted);
        assert!(expected_overhead_at_risk_ppm(&policy, &trusted, &well_staked) < worst_case);
        assert!(expected_overhead_at_risk_ppm(&policy, &trusted, &thin) > worst_case);
        // Replication does not depend on the stake.
        let replicate = VerifyPolicy::Replicate { n: 3, quorum: 2 };
        assert_eq!(
            expected_overhead_at_risk_ppm(&replicate, &trusted, &thin),
            expected_overhead_ppm(&replicate, &trusted)
        );
    }

    #[test]
    fn stake_that_covers_the_job_lowers_adaptive_sampling_to_one_percent() {
        let policy = VerifyPolicy::DEFAULT;
        let well_staked = exposure(1_000, 1_000_000_000);
        // Newcomers are still replicated, whatever their stake.
        assert_eq!(plan_at_risk(&policy, &history(3), &well_staked).replicas, 2);
        // A stake that covers the job a million times over leaves history little to prove.
        for count in [10, 20, 10_000] {
            assert_eq!(
                plan_at_risk(&policy, &history(count), &well_staked).audit_ppm,
                MIN_AUDIT_PPM
            );
        }
        // Twice the stake the floor needs: half the history term, down to the floor's half.
        let required = crate::economics::required_stake(Amount(1_000), Amount(1_000), &policy);
        let doubled = exposure(1_000, 2 * required.0 + 1_000);
        assert_eq!(
            plan_at_risk(&policy, &history(10), &doubled).audit_ppm,
            50_000
        );
        assert_eq!(
            plan_at_risk(&policy, &history(1_000), &doubled).audit_ppm,
            25_000
        );
        // Exactly the stake the order requires at the floor: as without exposure.
        let at_minimum = exposure(1_000, required.0);
        for count in [10, 15, 20, 100, 10_000] {
            assert_eq!(
                plan_at_risk(&policy, &history(count), &at_minimum),
                plan(&policy, &history(count))
            );
        }
        // A job worth more than the stake backs is audited more than the floor.
        let thin = exposure(1_000, 1_000);
        assert_eq!(
            plan_at_risk(&policy, &history(10_000), &thin).audit_ppm,
            500_000
        );
    }

    #[test]
    fn overhead_at_risk_matches_the_documented_table() {
        // A provider whose stake covers the job 10⁶ times over (docs/verification.md).
        let policy = VerifyPolicy::DEFAULT;
        let covered = exposure(1_000, 1_000_000_000);
        let at = |jobs| expected_overhead_at_risk_over_jobs_ppm(&policy, &covered, jobs);
        assert_eq!(at(10), 2_000_000);
        assert_eq!(at(200), 1_059_500);
        assert_eq!(at(1_000), 1_019_900);
        assert_eq!(at(10_000), 1_010_990);
    }

    #[test]
    fn a_floor_below_one_percent_is_kept() {
        let policy = VerifyPolicy::Adaptive {
            floor_ppm: 2_000,
            full_until: 10,
        };
        let plan = plan_at_risk(&policy, &history(u32::MAX), &exposure(1, u64::MAX / 2));
        assert_eq!(plan.audit_ppm, 2_000);
    }

    #[test]
    fn spot_ignores_the_exposure() {
        let spot = VerifyPolicy::Spot { p_ppm: 200_000 };
        let plan = plan_at_risk(&spot, &history(1_000), &exposure(1, 1_000_000));
        assert_eq!(plan.audit_ppm, 200_000);
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

    proptest::proptest! {
        /// What a quote reports as the verification overhead: more replicas never cost
        /// less, a spot-check adds exactly its probability, and adaptive never charges
        /// more than full replication nor less than one run.
        #[test]
        fn overhead_grows_with_replicas_and_audit_rate(
            n in 1u32..16,
            p in 1u32..=PPM,
            count in 0u32..1_000,
        ) {
            let h = history(count);
            let replicate = |n| VerifyPolicy::Replicate { n, quorum: n / 2 + 1 };
            proptest::prop_assert!(
                expected_overhead_ppm(&replicate(n + 1), &h) > expected_overhead_ppm(&replicate(n), &h)
            );
            proptest::prop_assert_eq!(
                expected_overhead_ppm(&VerifyPolicy::Spot { p_ppm: p }, &h),
                u64::from(PPM) + u64::from(p)
            );
            let adaptive = expected_overhead_ppm(&VerifyPolicy::DEFAULT, &h);
            proptest::prop_assert!((u64::from(PPM)..=2 * u64::from(PPM)).contains(&adaptive));
        }
    }
}
