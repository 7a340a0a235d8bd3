//! Property tests for the verification invariants: the quorum never accepts too few votes and
//! never slashes an agreeing provider, an honest majority always wins, bisection pins the
//! first differing step in ⌈log₂ n⌉ rounds and a forged answer always loses, the audit draw
//! is deterministic and hits its rate, every settlement conserves value, and policies
//! survive a print-and-parse round trip; weighted by value at risk, adaptive sampling never
//! lets cheating pay and falls to its floor for honest providers, and a suspended provider
//! is never trusted.

use agora_core::{AccountId, Amount, Fuel, Hash};
use agora_verify::checkpoint::{StepTree, verify_inclusion};
use agora_verify::economics::{cheating_is_irrational, deterrent_stake};
use agora_verify::policy::{MAX_CHALLENGE_WINDOW_MS, MAX_REPLICAS};
use agora_verify::sampling::audit_draw_ppm;
use agora_verify::*;
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

fn provider(i: usize) -> AccountId {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
    AccountId::from_bytes(bytes)
}

fn result(digest: u8, fuel: u8) -> RunResult {
    RunResult {
        digest: Hash::of(&[digest]),
        fuel: Fuel(fuel as u64),
    }
}

fn receipts_of(results: &[RunResult]) -> Vec<ReplicaReceipt> {
    results
        .iter()
        .enumerate()
        .map(|(i, r)| ReplicaReceipt {
            provider: provider(i),
            result: *r,
        })
        .collect()
}

fn votes(receipts: &[ReplicaReceipt], result: RunResult) -> usize {
    receipts.iter().filter(|r| r.result == result).count()
}

/// A few digests and fuel counts so that agreement and near-agreement (same digest, other
/// fuel) are both common.
fn any_result() -> impl Strategy<Value = RunResult> {
    (0u8..4, 0u8..2).prop_map(|(d, f)| result(d, f))
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn the_quorum_never_accepts_fewer_than_q_votes_or_slashes_an_agreeing_provider(
        results in prop::collection::vec(any_result(), 0..12),
        quorum in 1u32..8,
        extra_cap in 0u32..6,
        extra_tried in 0u32..3,
    ) {
        let receipts = receipts_of(&results);
        let rule = QuorumRule { quorum, cap: quorum + extra_cap };
        let tried = receipts.len() as u32 + extra_tried;
        let decision = decide(&rule, &receipts, tried).unwrap();
        match decision {
            QuorumDecision::Accepted(accepted) => {
                let winner = votes(&receipts, accepted.result);
                prop_assert!(winner >= quorum as usize);
                prop_assert_eq!(accepted.agreeing.len(), winner);
                for other in &results {
                    if *other != accepted.result {
                        prop_assert!(votes(&receipts, *other) < winner);
                    }
                }
                for d in &accepted.disagreeing {
                    prop_assert_ne!(d.claimed, accepted.result);
                    prop_assert!(!accepted.agreeing.contains(&d.provider));
                }
                prop_assert_eq!(accepted.agreeing.len() + accepted.disagreeing.len(), receipts.len());
            }
            QuorumDecision::NoQuorum(no) => {
                prop_assert!(no.votes_short >= 1);
                if let NextStep::AddProviders(k) = no.next {
                    prop_assert!(tried + k <= rule.cap);
                }
            }
        }
    }

    #[test]
    fn an_honest_majority_reaching_q_is_always_accepted_and_never_slashed(
        honest in 1usize..10,
        liars in prop::collection::vec(any_result(), 0..9),
        quorum_pick in any::<u32>(),
        shuffle in any::<u64>(),
    ) {
        prop_assume!(honest > liars.len());
        let truth = RunResult { digest: Hash::of(b"truth"), fuel: Fuel(7) };
        let quorum = 1 + quorum_pick % honest as u32;
        let mut results: Vec<RunResult> = vec![truth; honest];
        results.extend(liars.iter().copied());
        // Interleave deterministically so honest receipts are not always first.
        let len = results.len();
        results.rotate_left((shuffle % len as u64) as usize);
        let receipts = receipts_of(&results);
        let rule = QuorumRule::replicate(len as u32, quorum);
        let decision = decide(&rule, &receipts, len as u32).unwrap();
        let QuorumDecision::Accepted(accepted) = decision else {
            return Err(TestCaseError::fail(format!("no quorum: {decision:?}")));
        };
        prop_assert_eq!(accepted.result, truth);
        prop_assert_eq!(accepted.billed_fuel(), Fuel(7));
        let slashed: Vec<AccountId> = accepted.to_slash().collect();
        for receipt in &receipts {
            let is_slashed = slashed.contains(&receipt.provider);
            prop_assert_eq!(is_slashed, receipt.result != truth);
        }
    }
}

/// One party's trace and tree.
struct Trace {
    hashes: Vec<Hash>,
    tree: StepTree,
}

impl Trace {
    fn new(hashes: Vec<Hash>) -> Trace {
        let tree = StepTree::new(&hashes);
        Trace { hashes, tree }
    }

    fn commitment(&self) -> Commitment {
        Commitment {
            root: self.tree.root(),
            steps: self.tree.len(),
        }
    }

    fn answer(&self, step: u64) -> Answer {
        let index = step.saturating_sub(1);
        Answer {
            state: self
                .hashes
                .get(index as usize)
                .copied()
                .unwrap_or(Hash::ZERO),
            proof: self.tree.prove(index).unwrap_or_default(),
        }
    }
}

fn honest_trace(n: usize, salt: u64) -> Vec<Hash> {
    (0..n as u64)
        .map(|i| Hash::tagged("test/honest", &[&salt.to_le_bytes(), &i.to_le_bytes()]))
        .collect()
}

/// The honest trace up to step `from − 1`, then `tail` steps of wrong states.
fn cheating_trace(honest: &[Hash], from: usize, tail: usize, salt: u64) -> Vec<Hash> {
    let mut trace = honest[..from - 1].to_vec();
    trace.extend(
        (0..tail as u64)
            .map(|i| Hash::tagged("test/cheat", &[&salt.to_le_bytes(), &i.to_le_bytes()])),
    );
    trace
}

const INITIAL: Hash = Hash([42; 32]);

fn open(claimant: &Trace, challenger: &Trace) -> Bisection {
    let end = claimant
        .commitment()
        .steps
        .min(challenger.commitment().steps);
    Bisection::open(
        Opening {
            initial_state: INITIAL,
            claimant: claimant.commitment(),
            challenger: challenger.commitment(),
            claimant_end: claimant.answer(end),
            challenger_end: challenger.answer(end),
        },
        0,
        1_000,
    )
    .unwrap()
}

/// Both parties answer truthfully from their traces until the referee is needed, which
/// re-runs with the honest trace.
fn play_to_verdict(
    dispute: &mut Bisection,
    claimant: &Trace,
    challenger: &Trace,
    honest: &[Hash],
) -> (Verdict, Option<RefereeTask>) {
    let mut now = 0;
    loop {
        match dispute.progress() {
            Progress::Waiting {
                step,
                claimant_owes,
                challenger_owes,
                ..
            } => {
                now += 10;
                if claimant_owes {
                    dispute
                        .answer(Party::Claimant, claimant.answer(step), now)
                        .unwrap();
                }
                if challenger_owes {
                    dispute
                        .answer(Party::Challenger, challenger.answer(step), now)
                        .unwrap();
                }
            }
            Progress::NeedsReferee(task) => {
                let truth = honest.get(task.step as usize - 1).copied();
                return (dispute.referee(truth).unwrap(), Some(task));
            }
            Progress::Decided(verdict) => return (verdict, None),
        }
    }
}

fn cheater_lost_alone(verdict: &Verdict, cheater: Party) -> bool {
    let honest = match cheater {
        Party::Claimant => Party::Challenger,
        Party::Challenger => Party::Claimant,
    };
    verdict.lost(cheater) && !verdict.lost(honest)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn bisection_finds_the_first_differing_step_in_log2_rounds(
        n in 1usize..5_000,
        divergence_pick in any::<u64>(),
        cheater_is_claimant in any::<bool>(),
        salt in any::<u64>(),
    ) {
        let honest = honest_trace(n, salt);
        let divergence = 1 + (divergence_pick % n as u64) as usize;
        let wrong = cheating_trace(&honest, divergence, n - divergence + 1, salt);
        let (honest_side, cheater_side) = (Trace::new(honest.clone()), Trace::new(wrong));
        let (claimant, challenger, cheater) = if cheater_is_claimant {
            (&cheater_side, &honest_side, Party::Claimant)
        } else {
            (&honest_side, &cheater_side, Party::Challenger)
        };
        let mut dispute = open(claimant, challenger);
        let (verdict, task) = play_to_verdict(&mut dispute, claimant, challenger, &honest);
        let task = task.ok_or_else(|| TestCaseError::fail("decided without the referee"))?;
        prop_assert_eq!(task.step, divergence as u64);
        let agreed = if divergence == 1 { INITIAL } else { honest[divergence - 2] };
        prop_assert_eq!(task.from_state, agreed);
        prop_assert!(verdict.rounds <= max_rounds(n as u64), "{} rounds for {} steps", verdict.rounds, n);
        prop_assert!(cheater_lost_alone(&verdict, cheater));
    }

    #[test]
    fn a_trace_of_another_length_loses_to_the_honest_one(
        n in 1usize..3_000,
        divergence_pick in any::<u64>(),
        tail in 0usize..4_000,
        cheater_is_claimant in any::<bool>(),
        salt in any::<u64>(),
    ) {
        let honest = honest_trace(n, salt);
        let divergence = 1 + (divergence_pick % n as u64) as usize;
        let wrong = cheating_trace(&honest, divergence, tail, salt);
        let (honest_side, cheater_side) = (Trace::new(honest.clone()), Trace::new(wrong.clone()));
        let (claimant, challenger, cheater) = if cheater_is_claimant {
            (&cheater_side, &honest_side, Party::Claimant)
        } else {
            (&honest_side, &cheater_side, Party::Challenger)
        };
        let opening = Opening {
            initial_state: INITIAL,
            claimant: claimant.commitment(),
            challenger: challenger.commitment(),
            claimant_end: claimant.answer(n.min(wrong.len()) as u64),
            challenger_end: challenger.answer(n.min(wrong.len()) as u64),
        };
        let Ok(mut dispute) = Bisection::open(opening, 0, 1_000) else {
            // Only a cheat identical to the honest trace is no dispute.
            prop_assert_eq!(&wrong, &honest);
            return Ok(());
        };
        let (verdict, _) = play_to_verdict(&mut dispute, claimant, challenger, &honest);
        prop_assert!(cheater_lost_alone(&verdict, cheater), "{verdict:?}");
        prop_assert!(verdict.rounds <= max_rounds(n.max(wrong.len()) as u64).max(1));
    }

    #[test]
    fn an_answer_not_in_the_committed_tree_always_loses(
        n in 2usize..2_000,
        divergence_pick in any::<u64>(),
        forge_round in 0u32..12,
        forger_is_claimant in any::<bool>(),
        salt in any::<u64>(),
    ) {
        let honest = honest_trace(n, salt);
        let divergence = 1 + (divergence_pick % n as u64) as usize;
        let wrong = cheating_trace(&honest, divergence, n - divergence + 1, salt);
        let (claimant, challenger) = (Trace::new(wrong), Trace::new(honest));
        let forger = if forger_is_claimant { Party::Claimant } else { Party::Challenger };
        let mut dispute = open(&claimant, &challenger);
        let mut round = 0;
        while let Progress::Waiting { step, .. } = dispute.progress() {
            let (mine, theirs) = match forger {
                Party::Claimant => (&claimant, &challenger),
                Party::Challenger => (&challenger, &claimant),
            };
            let other = match forger {
                Party::Claimant => Party::Challenger,
                Party::Challenger => Party::Claimant,
            };
            dispute.answer(other, theirs.answer(step), 1).unwrap();
            let mut answer = mine.answer(step);
            if round == forge_round {
                // A state the forger never committed, with its real proof for the step.
                answer.state = Hash::tagged("test/forged", &[&salt.to_le_bytes()]);
                let progress = dispute.answer(forger, answer, 1).unwrap();
                let Progress::Decided(verdict) = progress else {
                    return Err(TestCaseError::fail("a forged answer was accepted"));
                };
                prop_assert!(cheater_lost_alone(&verdict, forger));
                prop_assert_eq!(
                    verdict.claimant_lost.or(verdict.challenger_lost),
                    Some(LossReason::BadProof { step })
                );
                return Ok(());
            }
            dispute.answer(forger, answer, 1).unwrap();
            round += 1;
        }
        // The dispute ran out of rounds before the forging round: nothing to check.
    }

    #[test]
    fn every_leaf_proves_and_no_other_state_does(
        n in 1usize..600,
        index_pick in any::<u64>(),
        salt in any::<u64>(),
    ) {
        let hashes = honest_trace(n, salt);
        let tree = StepTree::new(&hashes);
        let index = index_pick % n as u64;
        let proof = tree.prove(index).unwrap();
        prop_assert!(verify_inclusion(tree.root(), n as u64, index, hashes[index as usize], &proof));
        prop_assert!(!verify_inclusion(tree.root(), n as u64, index, Hash::of(b"other"), &proof));
        if n > 1 {
            let neighbour = (index + 1) % n as u64;
            prop_assert!(!verify_inclusion(tree.root(), n as u64, neighbour, hashes[index as usize], &proof));
        }
    }
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn the_audit_draw_is_deterministic_and_hits_its_rate(
        p_ppm in 1u32..=PPM,
        order_salt in any::<u64>(),
    ) {
        const SEEDS: u64 = 20_000;
        let policy = VerifyPolicy::Spot { p_ppm };
        let history = ProviderHistory::default();
        let order = Hash::of(&order_salt.to_le_bytes());
        let mut audited = 0u64;
        for i in 0..SEEDS {
            let seed = Hash::of(&i.to_le_bytes());
            let first = should_audit(&policy, seed, order, &history);
            prop_assert_eq!(first, should_audit(&policy, seed, order, &history));
            prop_assert_eq!(first, audit_draw_ppm(seed, order) < p_ppm);
            audited += first as u64;
        }
        let p = p_ppm as f64 / PPM as f64;
        let rate = audited as f64 / SEEDS as f64;
        // Five standard deviations, plus a floor for p near 0 or 1.
        let tolerance = 5.0 * (p * (1.0 - p) / SEEDS as f64).sqrt() + 1e-4;
        prop_assert!((rate - p).abs() <= tolerance, "rate {rate} vs p {p}");
    }
}

fn any_account() -> impl Strategy<Value = AccountId> {
    (0usize..4).prop_map(provider)
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn every_settlement_conserves_value(
        bond in 0u64..u64::MAX / 4,
        at_stake in 0u64..u64::MAX / 4,
        min_bond in 0u64..1_000,
        bond_bps in 0u16..=10_000,
        slash_bps in 0u16..=10_000,
        provider_id in any_account(),
        challenger_id in any_account(),
        provider_digest in 0u8..3,
        challenger_digest in 0u8..3,
        referee_digest in 0u8..3,
    ) {
        let policy = VerifyPolicy::Challenge { window_ms: 60_000 };
        let claim = ResultClaim {
            order_id: Hash::of(b"order"),
            provider: provider_id,
            receipt: Hash::of(b"receipt"),
            result: result(provider_digest, 1),
            recorded_ms: 100,
            at_stake: Amount(at_stake),
        };
        let challenge = Challenge {
            challenger: challenger_id,
            result: result(challenger_digest, 1),
            bond: Amount(bond),
            filed_ms: 200,
        };
        let rules = ChallengeRules {
            min_bond: Amount(min_bond),
            bond_to_provider_bps: bond_bps,
            slash_to_challenger_bps: slash_bps,
        };
        let Ok(resolution) = resolve_challenge(&policy, &claim, &challenge, result(referee_digest, 1), &rules) else {
            return Ok(());
        };
        let settlement = &resolution.settlement;
        prop_assert!(settlement.conserves());
        let flow = settlement.flow().unwrap();
        let slashed = resolution.ruling != Ruling::ProviderRight;
        let expected_in = bond + if slashed { at_stake } else { 0 };
        prop_assert_eq!(flow.inputs, Amount(expected_in));
        prop_assert_eq!(flow.outputs.checked_add(flow.burnt).unwrap(), flow.inputs);
        // The provider is slashed exactly when it was wrong, with the evidence's hash.
        for instruction in &settlement.instructions {
            if let Instruction::Slash { provider, evidence, .. } = instruction {
                prop_assert!(slashed);
                prop_assert_eq!(*provider, claim.provider);
                prop_assert_eq!(Some(*evidence), resolution.evidence.as_ref().map(Evidence::hash));
            }
        }
        prop_assert_eq!(resolution.evidence.is_some(), slashed);
    }

    #[test]
    fn the_required_stake_is_the_least_that_deters(
        reward in 0u64..u64::MAX / 2,
        cost in 0u64..u64::MAX / 2,
        p_ppm in 1u32..=PPM,
    ) {
        let (reward, cost) = (Amount(reward), Amount(cost));
        let stake = deterrent_stake(reward, cost, p_ppm);
        if stake != Amount(u64::MAX) {
            prop_assert!(cheating_is_irrational(reward, cost, stake, p_ppm));
        }
        if stake > Amount::ZERO && stake != Amount(u64::MAX) {
            let less = Amount(stake.base_units() - 1);
            prop_assert!(!cheating_is_irrational(reward, cost, less, p_ppm));
        }
        let policy = VerifyPolicy::Spot { p_ppm };
        prop_assert_eq!(check_bid_stake(reward, cost, &policy, stake), Ok(()));
    }
}

fn any_policy() -> impl Strategy<Value = VerifyPolicy> {
    prop_oneof![
        Just(VerifyPolicy::None),
        (1u32..=MAX_REPLICAS)
            .prop_flat_map(|n| (Just(n), (n / 2 + 1)..=n))
            .prop_map(|(n, quorum)| VerifyPolicy::Replicate { n, quorum }),
        (1u32..=PPM).prop_map(|p_ppm| VerifyPolicy::Spot { p_ppm }),
        (1u32..=PPM, any::<u32>()).prop_map(|(floor_ppm, full_until)| VerifyPolicy::Adaptive {
            floor_ppm,
            full_until
        }),
        (1u64..=MAX_CHALLENGE_WINDOW_MS)
            .prop_map(|window_ms| VerifyPolicy::Challenge { window_ms }),
    ]
}

proptest! {
    #![proptest_config(config(1_024))]

    #[test]
    fn policies_round_trip_through_their_text_and_json(policy in any_policy()) {
        let text = policy.to_string();
        prop_assert_eq!(text.parse::<VerifyPolicy>(), Ok(policy));
        let json = serde_json::to_string(&policy).unwrap();
        prop_assert_eq!(serde_json::from_str::<VerifyPolicy>(&json).unwrap(), policy);
        prop_assert_eq!(policy.validate(), Ok(()));
    }

    #[test]
    fn parsing_any_text_never_panics_and_reprints_canonically(text in "[a-z0-9:.%-]{0,24}") {
        if let Ok(policy) = text.parse::<VerifyPolicy>() {
            let canonical = policy.to_string();
            prop_assert_eq!(canonical.parse::<VerifyPolicy>(), Ok(policy));
        }
    }
}

fn any_adaptive() -> impl Strategy<Value = VerifyPolicy> {
    (1u32..=PPM, 0u32..=1_000).prop_map(|(floor_ppm, full_until)| VerifyPolicy::Adaptive {
        floor_ppm,
        full_until,
    })
}

fn history(consecutive_verified: u32) -> ProviderHistory {
    ProviderHistory {
        consecutive_verified,
    }
}

proptest! {
    #![proptest_config(config(1_024))]

    /// Weighted by value at risk, adaptive never audits a trusted provider so little that
    /// cheating on the job pays: for any job value R, cost C ≤ R, stake S (whether or not
    /// it meets the order's minimum) and trust count, p·(S + R) ≥ C.
    #[test]
    fn a_cheaters_expected_profit_is_never_positive_at_the_audit_rate(
        policy in any_adaptive(),
        reward in 0u64..=u64::MAX / 4,
        cost_share in 0u64..=1_000,
        stake in 0u64..=u64::MAX / 4,
        count in any::<u32>(),
    ) {
        let cost = Amount((reward as u128 * cost_share as u128 / 1_000) as u64);
        let exposure = Exposure { reward: Amount(reward), cost, stake: Amount(stake) };
        let plan = plan_at_risk(&policy, &history(count), &exposure);
        let p = if plan.replicas > 1 { PPM } else { plan.audit_ppm };
        prop_assert!(
            cheating_is_irrational(Amount(reward), cost, Amount(stake), p),
            "p {p} for R {reward} C {} S {stake}", cost.0
        );
    }

    /// An honest provider's audit rate falls as its record grows, and settles on the floor
    /// the job's value at risk allows: never below it, and reached once 1/count is under it.
    #[test]
    fn an_honest_providers_audit_rate_falls_to_the_floor(
        policy in any_adaptive(),
        reward in 1u64..=1_000_000_000,
        stake in 0u64..=1_000_000_000_000_000,
        count in 0u32..=2_000_000,
    ) {
        let VerifyPolicy::Adaptive { floor_ppm, full_until } = policy else { unreachable!() };
        let exposure = Exposure { reward: Amount(reward), cost: Amount(reward), stake: Amount(stake) };
        let floor = floor_ppm.min(MIN_AUDIT_PPM).max(exposure.deterrent_ppm());
        let now = plan_at_risk(&policy, &history(count), &exposure);
        let later = plan_at_risk(&policy, &history(count.saturating_add(1)), &exposure);
        let cost = |p: VerificationPlan| p.replicas as u64 * PPM as u64 + p.audit_ppm as u64;
        prop_assert!(cost(later) <= cost(now));
        if count >= full_until {
            prop_assert_eq!(now.replicas, 1);
            prop_assert!(now.audit_ppm >= floor);
            let settled = full_until.max(PPM / floor.max(1) + 1);
            prop_assert_eq!(plan_at_risk(&policy, &history(settled), &exposure).audit_ppm, floor);
        }
    }

    /// A provider with a proven fault is not trusted until its suspension is over, however
    /// long its record was: every job it runs meanwhile is replicated under adaptive.
    #[test]
    fn a_provider_with_a_proven_fault_is_never_trusted_within_its_suspension(
        base_ms in 1u64..=86_400_000,
        faults in 1u32..=40,
        fault_at in 0u64..=u64::MAX / 2,
        into in 0u64..=1_000_000_000_000,
        count in any::<u32>(),
        full_until in 1u32..=1_000,
    ) {
        let rule = SuspensionRule { base_ms, max_ms: SuspensionRule::DEFAULT.max_ms };
        let record = FaultRecord { proven_faults: faults, last_fault_ms: fault_at };
        let length = rule.length_ms(faults);
        prop_assert!(length >= base_ms.min(rule.max_ms));
        let now = fault_at + into;
        let policy = VerifyPolicy::Adaptive { floor_ppm: 10_000, full_until };
        let trusted = rule.trusted_history(history(count), &record, now);
        let well_staked = Exposure { reward: Amount(1), cost: Amount(1), stake: Amount(u64::MAX / 2) };
        if into < length {
            prop_assert!(rule.is_suspended(&record, now));
            prop_assert_eq!(plan_at_risk(&policy, &trusted, &well_staked).replicas, 2);
        } else {
            prop_assert!(!rule.is_suspended(&record, now));
            prop_assert_eq!(trusted, history(count));
        }
    }

    /// Each further fault suspends at least as long as the one before.
    #[test]
    fn suspension_never_shortens_with_more_faults(base_ms in 0u64..=u64::MAX, faults in 0u32..u32::MAX) {
        let rule = SuspensionRule { base_ms, max_ms: SuspensionRule::DEFAULT.max_ms };
        prop_assert!(rule.length_ms(faults + 1) >= rule.length_ms(faults));
    }
}
