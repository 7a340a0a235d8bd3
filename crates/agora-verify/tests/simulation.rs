//! A seeded, pure simulation of the Byzantine scenario: 10 providers, 3 of which
//! return a wrong result on every job, 200 jobs.
//!
//! - Under `replicate:3:2` with random distinct providers (and extra providers on a split, up
//!   to the cap): no wrong result is ever accepted, every faulty provider that disagreed
//!   with an accepted quorum is slashed, no honest provider ever is.
//! - Under `spot:0.2` and `adaptive`: the same, and the detection rate is printed next to
//!   the analytic 1 − (1 − p)^k.
//!
//! Faulty providers do not collude: each returns its own wrong digest (a corrupted or
//! skipped run does not produce another cheater's bytes). A colluding majority of the
//! replicas of one order is what replication cannot see; see docs/verification.md.

use std::collections::BTreeSet;

use agora_core::{AccountId, Fuel, Hash};
use agora_verify::economics::detection_probability;
use agora_verify::policy::DEFAULT_ADAPTIVE_FULL_UNTIL;
use agora_verify::*;

const PROVIDERS: usize = 10;
const FAULTY: usize = 3;
const JOBS: u64 = 200;

/// splitmix64: a tiny seeded generator, so the simulation needs no randomness crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `k` distinct providers not in `exclude`.
    fn pick(&mut self, k: usize, exclude: &BTreeSet<usize>) -> Vec<usize> {
        let mut pool: Vec<usize> = (0..PROVIDERS).filter(|p| !exclude.contains(p)).collect();
        let mut chosen = Vec::new();
        while chosen.len() < k && !pool.is_empty() {
            chosen.push(pool.swap_remove(self.below(pool.len())));
        }
        chosen
    }
}

fn account(p: usize) -> AccountId {
    AccountId::from_bytes([p as u8 + 1; 32])
}

fn index_of(account: AccountId) -> usize {
    account.0[0] as usize - 1
}

fn is_faulty(p: usize) -> bool {
    p < FAULTY
}

fn order_id(job: u64) -> Hash {
    Hash::tagged("sim/order", &[&job.to_le_bytes()])
}

fn truth(job: u64) -> RunResult {
    RunResult {
        digest: Hash::tagged("sim/result", &[&job.to_le_bytes()]),
        fuel: Fuel::compute_units(1 + job % 5),
    }
}

/// What provider `p` reports for `job`: the truth, or its own wrong digest.
fn run(p: usize, job: u64) -> ReplicaReceipt {
    let result = if is_faulty(p) {
        RunResult {
            digest: Hash::tagged(
                "sim/wrong",
                &[&(p as u64).to_le_bytes(), &job.to_le_bytes()],
            ),
            fuel: truth(job).fuel,
        }
    } else {
        truth(job)
    };
    ReplicaReceipt {
        provider: account(p),
        result,
    }
}

#[derive(Default, Debug)]
struct Tally {
    accepted: u64,
    wrong_accepted: u64,
    refunded: u64,
    honest_slashed: u64,
    frauds_detected: u64,
    cheats: u64,
    runs: u64,
    billed_runs: u64,
    slashed: BTreeSet<usize>,
    faulty_disagreed: BTreeSet<usize>,
}

/// Runs `first` providers, then adds providers as [`decide`] asks until it accepts or
/// refunds. Returns the providers slashed on this job.
fn replicate_job(
    rng: &mut Rng,
    rule: &QuorumRule,
    first: Vec<usize>,
    job: u64,
    tally: &mut Tally,
) -> Vec<usize> {
    let mut tried: BTreeSet<usize> = first.iter().copied().collect();
    let mut receipts: Vec<ReplicaReceipt> = first.iter().map(|&p| run(p, job)).collect();
    let slashed = loop {
        let decision = decide(rule, &receipts, tried.len() as u32).unwrap();
        match decision {
            QuorumDecision::Accepted(accepted) => {
                tally.accepted += 1;
                tally.billed_runs += 1;
                tally.wrong_accepted += (accepted.result != truth(job)) as u64;
                let faulty = receipts
                    .iter()
                    .map(|r| index_of(r.provider))
                    .filter(|p| is_faulty(*p));
                tally.faulty_disagreed.extend(faulty);
                let slashed: Vec<usize> = accepted.to_slash().map(index_of).collect();
                for &p in &slashed {
                    tally.slashed.insert(p);
                    tally.frauds_detected += 1;
                    tally.honest_slashed += (!is_faulty(p)) as u64;
                }
                break slashed;
            }
            QuorumDecision::NoQuorum(NoQuorum {
                next: NextStep::AddProviders(k),
                ..
            }) => {
                let more = rng.pick(k as usize, &tried);
                if more.is_empty() {
                    tally.refunded += 1;
                    break Vec::new();
                }
                for p in more {
                    tried.insert(p);
                    receipts.push(run(p, job));
                }
            }
            QuorumDecision::NoQuorum(_) => {
                tally.refunded += 1;
                break Vec::new();
            }
        }
    };
    tally.runs += receipts.len() as u64;
    slashed
}

#[test]
fn replicate_3_2_with_3_of_10_faulty_accepts_no_wrong_result() {
    let policy: VerifyPolicy = "replicate:3:2".parse().unwrap();
    let VerifyPolicy::Replicate { n, quorum } = policy else {
        unreachable!()
    };
    let rule = QuorumRule::replicate(n, quorum);
    let mut rng = Rng(0xA602A);
    let mut tally = Tally::default();
    for job in 0..JOBS {
        let first = rng.pick(n as usize, &BTreeSet::new());
        replicate_job(&mut rng, &rule, first, job, &mut tally);
    }
    println!(
        "replicate:3:2 — accepted {} / refunded {} of {JOBS}; wrong accepted {}; frauds detected {}; honest slashed {}; overhead {:.2}",
        tally.accepted,
        tally.refunded,
        tally.wrong_accepted,
        tally.frauds_detected,
        tally.honest_slashed,
        tally.runs as f64 / tally.billed_runs as f64,
    );
    assert_eq!(tally.wrong_accepted, 0);
    assert_eq!(tally.honest_slashed, 0);
    assert!(tally.accepted >= JOBS * 9 / 10, "{tally:?}");
    // Every faulty provider that took part in an accepted job disagreed and was slashed.
    assert_eq!(tally.slashed, tally.faulty_disagreed);
    assert_eq!(tally.accepted + tally.refunded, JOBS);
}

/// What happened to one single-provider job.
#[derive(Clone, Copy, Default)]
struct JobOutcome {
    /// An independent provider re-ran it: for a (non-colluding) cheater that is a detected
    /// disagreement.
    audited: bool,
    /// The job's provider was slashed on it (a quorum formed against it).
    slashed: bool,
}

/// One job under a single-provider policy: the provider runs it; when the plan replicates
/// up front or the audit draw (from a seed revealed after the receipt) says so, an
/// independent provider re-runs it and a split brings in tie-breakers.
fn spot_job(
    rng: &mut Rng,
    policy: &VerifyPolicy,
    provider: usize,
    history: &ProviderHistory,
    job: u64,
    tally: &mut Tally,
) -> JobOutcome {
    let seed = Hash::tagged("sim/next-block", &[&rng.next().to_le_bytes()]);
    let verification = plan(policy, history);
    let audited = verification.replicas > 1 || should_audit(policy, seed, order_id(job), history);
    tally.cheats += is_faulty(provider) as u64;
    if !audited {
        tally.accepted += 1;
        tally.billed_runs += 1;
        tally.runs += 1;
        tally.wrong_accepted += is_faulty(provider) as u64;
        return JobOutcome::default();
    }
    let mut first = vec![provider];
    first.extend(rng.pick(1, &BTreeSet::from([provider])));
    let slashed = replicate_job(rng, &QuorumRule::audit(), first, job, tally).contains(&provider);
    JobOutcome {
        audited: true,
        slashed,
    }
}

#[test]
fn spot_0_2_detection_matches_the_analytic_rate() {
    let policy: VerifyPolicy = "spot:0.2".parse().unwrap();
    let p_ppm = 200_000;
    let mut rng = Rng(0x5B07);
    let mut tally = Tally::default();
    let (mut detected, mut slashed) = (0u64, 0u64);
    let mut cheats_by = [0u32; FAULTY];
    let mut first_detected_at: [Option<u32>; FAULTY] = [None; FAULTY];
    for job in 0..JOBS {
        let provider = rng.below(PROVIDERS);
        let outcome = spot_job(
            &mut rng,
            &policy,
            provider,
            &ProviderHistory::default(),
            job,
            &mut tally,
        );
        if is_faulty(provider) {
            cheats_by[provider] += 1;
            detected += outcome.audited as u64;
            slashed += outcome.slashed as u64;
            if outcome.audited {
                first_detected_at[provider].get_or_insert(cheats_by[provider]);
            }
        }
    }
    let rate = detected as f64 / tally.cheats as f64;
    println!(
        "spot:0.2 — {} cheating jobs, {detected} detected ({slashed} of them slashed; an audit that finds no quorum is refunded): per-job detection {rate:.3} vs p = 0.200; unaudited cheats accepted {}; honest slashed {}; overhead {:.2}",
        tally.cheats,
        tally.wrong_accepted,
        tally.honest_slashed,
        tally.runs as f64 / tally.billed_runs as f64,
    );
    for (p, k) in cheats_by.iter().enumerate() {
        println!(
            "  faulty provider {p}: cheated {k} times, first detected at cheat {:?}; analytic P(detected within {k}) = {:.4}",
            first_detected_at[p],
            detection_probability(p_ppm, *k),
        );
    }
    assert_eq!(tally.honest_slashed, 0);
    assert!((rate - 0.2).abs() < 0.1, "per-job detection {rate}");

    // Many seeded runs of one cheater: the share detected within its first k cheats against
    // 1 − (1 − p)^k. Slashing needs a quorum as well, so it can trail detection a little.
    let trials = 4_000;
    for k in [1u32, 3, 5, 10, 20] {
        let (mut detected_within_k, mut slashed_within_k) = (0u32, 0u32);
        for trial in 0..trials {
            let mut rng = Rng(0xC0FFEE ^ ((trial as u64) << 8) ^ k as u64);
            let mut scratch = Tally::default();
            let outcomes: Vec<JobOutcome> = (0..k as u64)
                .map(|job| {
                    spot_job(
                        &mut rng,
                        &policy,
                        0,
                        &ProviderHistory::default(),
                        job,
                        &mut scratch,
                    )
                })
                .collect();
            detected_within_k += outcomes.iter().any(|o| o.audited) as u32;
            slashed_within_k += outcomes.iter().any(|o| o.slashed) as u32;
        }
        let measured = detected_within_k as f64 / trials as f64;
        let slashed = slashed_within_k as f64 / trials as f64;
        let analytic = detection_probability(p_ppm, k);
        println!(
            "  spot:0.2, k = {k:2}: detected within k cheats {measured:.3} (slashed {slashed:.3}) vs analytic 1-(1-p)^k = {analytic:.3}"
        );
        assert!(
            (measured - analytic).abs() < 0.04,
            "k={k}: {measured} vs {analytic}"
        );
        assert!(slashed <= measured);
    }
}

#[test]
fn adaptive_catches_every_always_cheater_and_costs_little_for_honest_ones() {
    let policy = VerifyPolicy::DEFAULT;
    let mut rng = Rng(0xADA9);
    let mut tally = Tally::default();
    let mut history = [ProviderHistory::default(); PROVIDERS];
    let mut wrong_after_warmup = 0u64;
    for job in 0..JOBS {
        let provider = rng.below(PROVIDERS);
        let wrong_before = tally.wrong_accepted;
        let accepted_before = tally.accepted;
        let caught = spot_job(
            &mut rng,
            &policy,
            provider,
            &history[provider],
            job,
            &mut tally,
        )
        .slashed;
        let trusted = history[provider].consecutive_verified >= DEFAULT_ADAPTIVE_FULL_UNTIL;
        if trusted && tally.wrong_accepted > wrong_before {
            wrong_after_warmup += 1;
        }
        // Trust grows with every accepted result that was not proven wrong (audited or
        // exposed to the draw) and resets on a fault or an order that found no quorum.
        let accepted = tally.accepted > accepted_before;
        history[provider].consecutive_verified = if accepted && !caught {
            history[provider].consecutive_verified + 1
        } else {
            0
        };
    }
    println!(
        "adaptive — cheating jobs {}, wrong accepted {}, frauds detected {}, honest slashed {}, overhead {:.2} over {JOBS} jobs (long-run honest overhead {:.3})",
        tally.cheats,
        tally.wrong_accepted,
        tally.frauds_detected,
        tally.honest_slashed,
        tally.runs as f64 / tally.billed_runs as f64,
        sampling::expected_overhead_over_jobs_ppm(&policy, 10_000) as f64 / PPM as f64,
    );
    // An always-cheater never builds trust, so every one of its jobs is replicated.
    assert_eq!(wrong_after_warmup, 0);
    assert_eq!(tally.wrong_accepted, 0);
    assert_eq!(tally.honest_slashed, 0);
    assert!(tally.frauds_detected >= tally.cheats.saturating_sub(tally.refunded));
}
