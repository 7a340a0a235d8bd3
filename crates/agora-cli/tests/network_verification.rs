//! Verification against Byzantine providers on a real network of processes: one
//! `agora node market` and ten `agora node provider`s on loopback, three of them started
//! with `--faulty wrong-output` (each returns its own consistent wrong result, signed).
//! The truth for every job is a local `agora exec` of it.
//!
//! - `replicate:3:2`, 200 jobs: no wrong result is accepted; every provider whose receipt
//!   disagreed with an accepted quorum is slashed with evidence; no honest provider is
//!   slashed or loses stake.
//! - `spot:0.2` and `adaptive`: every detected cheat is slashed and the buyer gets the
//!   correct result for one run's price at the matched price; honest providers are never
//!   slashed; the detection rate is printed next to the analytic 1 − (1 − p)^k, and under
//!   `adaptive` (faulty providers never earn trust) nothing wrong is accepted. Both run on
//!   one network, so the cheaters the spot batch caught are still suspended when the
//!   adaptive batch runs; the next test gives adaptive a fresh network of cheaters.
//! - `adaptive` with the three cheapest providers faulty (the hard case of the overhead
//!   target): a proven fault suspends its provider from matching, so cheaters stop winning
//!   first runs; nothing wrong is accepted, and after warm-up (jobs whose first run went to
//!   a provider that had already run 10 jobs of the workload) the overhead — CU executed ÷
//!   CU billed — stays under a loose 1.25 here; the exact figure is the benchmark's
//!   (`agora bench verify --faulty-cheapest`, docs/benchmarks.md).
//!
//! Each test stops by itself within a few minutes at most (usually well under one).

#[path = "network/common_net/mod.rs"]
mod common_net;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_client::{JobRequest, JobSummary};
use agora_core::{AccountId, Amount, Fuel, Hash};
use agora_devnet::{FaultMode, FaultPlan, LocalNetConfig};
use agora_proto::{OrderState, VerifyPolicy};
use common_net::{TestNet, exec_locally, job};
use tokio::sync::Semaphore;

const PROVIDERS: usize = 10;
const FAULTY: usize = 3;
/// Stake each provider bonds: enough to be slashed on every job of a 200-job run.
const STAKE: Amount = Amount::agr(1_000);
/// Orders in flight at once.
const IN_FLIGHT: usize = 8;
/// A provider's first jobs of the workload, its warm-up (as `agora bench verify` counts).
const WARMUP: u32 = 10;

/// A hash-chain job unique to `i` (its seed), a few million fuel.
fn hash_job(i: usize, policy: VerifyPolicy) -> JobRequest {
    let mut request = job("hashchain", &["20000".to_string(), i.to_string()]);
    request.fuel_budget = Fuel::compute_units(1);
    request.verify = policy;
    request.label = format!("hashchain seed {i}");
    request
}

async fn byzantine_net() -> TestNet {
    TestNet::start(PROVIDERS, |c: &mut LocalNetConfig| {
        c.provider_stake = STAKE;
        c.provider_slots = Some(2);
        // The default heartbeat (1 s; three missed fail an attempt): no provider here
        // stops on purpose, and under a 300 ms heartbeat a loaded 2-core machine running
        // 20 provider processes once stalled one for 0.99 s three times, refunding an
        // order that had nothing wrong with it.
        // The three cheapest are faulty: a cheater undercuts to win the first run.
        c.faulty = (0..FAULTY)
            .map(|i| (i, FaultPlan::always(FaultMode::WrongOutput)))
            .collect();
    })
    .await
}

/// Runs `jobs` under `policy`, at most [`IN_FLIGHT`] at once; returns each job's summary
/// and its local truth, in job order.
async fn run_all(t: &TestNet, jobs: usize, policy: VerifyPolicy) -> Vec<(JobSummary, Hash)> {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut running = tokio::task::JoinSet::new();
    for i in 0..jobs {
        let (buyer, slots) = (t.buyer.clone(), slots.clone());
        let out = t.scratch(&format!("{policy}-{i}"));
        running.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("open");
            let request = hash_job(i, policy);
            let summary = buyer.run_job(&request, &out, |_| {}).await;
            (i, summary)
        });
    }
    let mut summaries = BTreeMap::new();
    while let Some(joined) = running.join_next().await {
        let (i, summary) = joined.expect("no panic");
        let summary = summary.unwrap_or_else(|e| panic!("job {i}: {e:#}\n{}", t.logs()));
        summaries.insert(i, summary);
    }
    let scratch = t.scratch("local");
    summaries
        .into_iter()
        .map(|(i, summary)| {
            let request = hash_job(i, policy);
            let truth = exec_locally(&request.module, &request.args, &scratch).digest;
            (summary, truth)
        })
        .collect()
}

/// Stakes of every provider now.
async fn stakes(t: &TestNet) -> BTreeMap<AccountId, Amount> {
    let mut out = BTreeMap::new();
    for account in t.provider_accounts() {
        out.insert(account, t.account(&account).await.stake);
    }
    out
}

/// What every run of a batch shows.
#[derive(Default, Debug)]
struct Tally {
    jobs: usize,
    wrong_accepted: usize,
    /// Jobs whose first run was a faulty provider's.
    cheats: usize,
    /// Cheats an audit or a replica caught.
    cheats_caught: usize,
    frauds_detected: usize,
    fuel_executed: u64,
    fuel_billed: u64,
}

/// Checks what must hold for every job, whatever the policy: it settled; a result that
/// was checked is the truth; every run that disagreed with the accepted result was by a
/// faulty provider and is slashed; the buyer paid one run (or the agreeing replicas).
fn check_jobs(results: &[(JobSummary, Hash)], faulty: &BTreeSet<AccountId>) -> Tally {
    let mut tally = Tally::default();
    for (summary, truth) in results {
        let v = &summary.verification;
        assert_eq!(summary.state, OrderState::Settled, "{summary:#?}");
        tally.jobs += 1;
        let accepted = summary.digest.expect("a settled order has a digest");
        tally.wrong_accepted += usize::from(accepted != *truth);
        if v.status == "verified" {
            assert_eq!(accepted, *truth, "a quorum accepted a wrong result: {v:#?}");
        }
        let disagreeing: BTreeSet<AccountId> = v
            .runs
            .iter()
            .filter(|r| r.agreed == Some(false))
            .map(|r| r.provider)
            .collect();
        let slashed: BTreeSet<AccountId> = v.slashes.iter().map(|s| s.provider).collect();
        assert!(
            disagreeing.is_subset(faulty),
            "an honest run disagreed: {v:#?}"
        );
        assert_eq!(
            slashed, disagreeing,
            "every disagreeing provider, and only it, is slashed"
        );
        assert!(v.slashes.iter().all(|s| !s.amount.is_zero()), "{v:#?}");
        tally.frauds_detected += disagreeing.len();
        let first_cheated = v.runs.first().is_some_and(|r| faulty.contains(&r.provider));
        if first_cheated {
            tally.cheats += 1;
            tally.cheats_caught += usize::from(v.runs.len() > 1);
        }
        tally.fuel_executed += v.fuel_executed.0;
        tally.fuel_billed += summary
            .compute_units
            .map_or(0, |cu| (cu * 1e9).round() as u64);
    }
    tally
}

fn honest_keep_their_stake(
    before: &BTreeMap<AccountId, Amount>,
    after: &BTreeMap<AccountId, Amount>,
    faulty: &BTreeSet<AccountId>,
) {
    for (account, stake) in before {
        if !faulty.contains(account) {
            assert_eq!(
                after[account], *stake,
                "honest provider {account} lost stake"
            );
        }
    }
}

fn overhead(tally: &Tally) -> f64 {
    tally.fuel_executed as f64 / tally.fuel_billed.max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicate_3_2_accepts_no_wrong_result_and_slashes_every_liar() {
    let started = Instant::now();
    let t = byzantine_net().await;
    let faulty: BTreeSet<AccountId> = t.net.faulty_providers().iter().map(|f| f.1).collect();
    assert_eq!(faulty.len(), FAULTY);
    let before = stakes(&t).await;
    let policy: VerifyPolicy = "replicate:3:2".parse().unwrap();
    let results = t
        .within(
            Duration::from_secs(240),
            "200 replicated jobs",
            run_all(&t, 200, policy),
        )
        .await;
    let tally = check_jobs(&results, &faulty);
    assert_eq!(tally.wrong_accepted, 0, "{tally:?}");
    assert!(
        tally.frauds_detected > 0,
        "the faulty providers ran jobs: {tally:?}"
    );
    // The buyer pays exactly the agreeing replicas of each job.
    for (summary, _) in &results {
        let paid: u64 = summary.verification.runs.iter().map(|r| r.paid.0).sum();
        assert_eq!(summary.cost.0, paid, "{summary:#?}");
    }
    let after = stakes(&t).await;
    honest_keep_their_stake(&before, &after, &faulty);
    for liar in &faulty {
        let caught = results
            .iter()
            .flat_map(|(s, _)| &s.verification.slashes)
            .filter(|s| s.provider == *liar)
            .fold(0, |sum, s| sum + s.amount.0);
        assert_eq!(
            before[liar].0 - after[liar].0,
            caught,
            "slashes add up for {liar}"
        );
        let view = t.provider_view(liar).await;
        assert_eq!(view.consecutive_verified, 0, "a liar never earns trust");
    }
    let check = t.ledger_check().await;
    assert!(check.verified && check.conservation, "{check:?}");
    eprintln!(
        "replicate:3:2, {} jobs, {FAULTY}/{PROVIDERS} faulty: wrong accepted {}, frauds detected {} (all slashed), honest slashed 0, overhead {:.2}, {:.1} s",
        tally.jobs,
        tally.wrong_accepted,
        tally.frauds_detected,
        overhead(&tally),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_checks_and_adaptive_catch_cheats_at_no_extra_charge() {
    let t = byzantine_net().await;
    let faulty: BTreeSet<AccountId> = t.net.faulty_providers().iter().map(|f| f.1).collect();
    let before = stakes(&t).await;
    for (policy, jobs) in [("spot:0.2", 120), ("adaptive", 120)] {
        let policy: VerifyPolicy = policy.parse().unwrap();
        let results = t
            .within(
                Duration::from_secs(240),
                "sampled jobs",
                run_all(&t, jobs, policy),
            )
            .await;
        let tally = check_jobs(&results, &faulty);
        for (summary, truth) in &results {
            let v = &summary.verification;
            let first = &v.runs[0];
            let fuel = summary
                .compute_units
                .map(|cu| Fuel((cu * 1e9).round() as u64));
            if v.runs.len() > 1 {
                // Checked: the correct result, at one run of the matched price.
                assert_eq!(summary.digest, Some(*truth), "{v:#?}");
                let one_run = first.price.cost(fuel.unwrap()).unwrap();
                assert!(summary.cost <= one_run, "{summary:#?}");
            }
        }
        let detection = tally.cheats_caught as f64 / tally.cheats.max(1) as f64;
        eprintln!(
            "{policy}, {} jobs, {FAULTY}/{PROVIDERS} faulty: cheating first runs {}, caught {} (rate {detection:.3}; analytic per cheat p = {}), wrong accepted {}, frauds detected {} (all slashed), honest slashed 0, overhead {:.2}",
            tally.jobs,
            tally.cheats,
            tally.cheats_caught,
            match policy {
                VerifyPolicy::Spot { p_ppm } => format!("{:.3}", p_ppm as f64 / 1e6),
                _ => "1 until trusted".into(),
            },
            tally.wrong_accepted,
            tally.frauds_detected,
            overhead(&tally)
        );
        if matches!(policy, VerifyPolicy::Adaptive { .. }) {
            assert_eq!(
                tally.wrong_accepted, 0,
                "faulty providers never earn trust: {tally:?}"
            );
            assert_eq!(tally.cheats_caught, tally.cheats, "{tally:?}");
        } else {
            // Unaudited cheats are spot's trade; every audited one was caught above.
            assert_eq!(
                tally.wrong_accepted,
                tally.cheats - tally.cheats_caught,
                "{tally:?}"
            );
        }
    }
    honest_keep_their_stake(&before, &stakes(&t).await, &faulty);
    let check = t.ledger_check().await;
    assert!(check.verified && check.conservation, "{check:?}");
}

/// Overhead over the jobs after warm-up: those whose first run went to a provider that had
/// already run [`WARMUP`] jobs of the workload (any run: first, replica or audit), counted
/// in submission order as `agora bench verify` does. Returns (jobs, overhead).
fn overhead_after_warmup(results: &[(JobSummary, Hash)]) -> (usize, f64) {
    let mut ran: BTreeMap<AccountId, u32> = BTreeMap::new();
    let (mut jobs, mut executed, mut billed) = (0usize, 0u64, 0u64);
    for (summary, _) in results {
        let runs = &summary.verification.runs;
        let first = runs.first().map(|r| r.provider);
        if first.is_some_and(|p| ran.get(&p).copied().unwrap_or(0) >= WARMUP) {
            jobs += 1;
            executed += summary.verification.fuel_executed.0;
            billed += summary
                .compute_units
                .map_or(0, |cu| (cu * 1e9).round() as u64);
        }
        for run in runs {
            *ran.entry(run.provider).or_default() += 1;
        }
    }
    (jobs, executed as f64 / billed.max(1) as f64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_stops_picking_proven_cheaters_and_keeps_overhead_low_after_warm_up() {
    const JOBS: usize = 200;
    let started = Instant::now();
    let t = byzantine_net().await;
    let faulty: BTreeSet<AccountId> = t.net.faulty_providers().iter().map(|f| f.1).collect();
    let before = stakes(&t).await;
    let policy = VerifyPolicy::DEFAULT;
    let results = t
        .within(
            Duration::from_secs(300),
            "adaptive jobs with the cheapest providers faulty",
            run_all(&t, JOBS, policy),
        )
        .await;
    let tally = check_jobs(&results, &faulty);
    assert_eq!(tally.wrong_accepted, 0, "{tally:?}");
    assert_eq!(tally.cheats_caught, tally.cheats, "{tally:?}");
    // Before suspension the cheapest cheaters won ~95 % of first runs (286 of 300 in the
    // benchmark). Suspended after its first proven fault (15 minutes, longer than this
    // test), a faulty provider wins only the first runs it took before that fault was
    // proven: a handful each, with two slots and eight orders in flight.
    assert!(
        tally.cheats > 0,
        "the cheapest providers win first: {tally:?}"
    );
    assert!(
        tally.cheats <= 10 * FAULTY,
        "proven cheaters keep winning first runs: {tally:?}"
    );
    for liar in &faulty {
        let view = t.provider_view(liar).await;
        assert_eq!(view.consecutive_verified, 0, "a liar never earns trust");
        assert!(view.slashed > 0, "every cheater is caught: {view:?}");
    }
    let (steady_jobs, steady) = overhead_after_warmup(&results);
    assert!(
        steady_jobs >= JOBS / 4,
        "most jobs run after warm-up: {steady_jobs}"
    );
    assert!(
        steady <= 1.25,
        "overhead after warm-up {steady:.3} over {steady_jobs} jobs: {tally:?}"
    );
    honest_keep_their_stake(&before, &stakes(&t).await, &faulty);
    let check = t.ledger_check().await;
    assert!(check.verified && check.conservation, "{check:?}");
    eprintln!(
        "adaptive, {} jobs, {FAULTY}/{PROVIDERS} faulty and cheapest: cheating first runs {} (all caught), wrong accepted {}, frauds slashed {}, overhead {:.3} overall, {steady:.3} over the {steady_jobs} jobs after warm-up, {:.1} s",
        tally.jobs,
        tally.cheats,
        tally.wrong_accepted,
        tally.frauds_detected,
        overhead(&tally),
        started.elapsed().as_secs_f64()
    );
}
