//! A bounded chaos suite on a real network of processes: while a buyer keeps uploading
//! and submitting jobs, provider agents and the market node are SIGKILLed at random
//! points (chosen by a seeded generator, so a failing seed can be replayed with
//! `AGORA_CHAOS_SEED`) and restarted on the same data directories.
//!
//! When the dust settles: every order the market accepted is settled or refunded, none
//! later than its deadline allows; each was escrowed once, paid at most once and exactly
//! its reported cost, or refunded; the buyer's balance is its funds less the sum of the
//! costs; nothing is left in escrow; the running market's audit and `agora ledger verify`
//! on the stopped market's directory pass, with conservation holding (no coin created or
//! lost). The counts are printed as one `chaos:` JSON line.
//!
//! `cargo test -p agora-cli --test chaos` runs the bounded variant (CI); the long one is
//! `cargo test --release -p agora-cli --test chaos -- --ignored --nocapture`.

#[path = "network/common_net/mod.rs"]
mod common_net;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agora_client::{Buyer, JobRequest, OrderFilter};
use agora_core::Fuel;
use agora_proto::{OrderState, OrderView};
use common_net::{TestNet, fast_crash_recovery, job, one_job_per_provider};
use rand::rngs::StdRng;
use rand::{Rng as _, RngCore, SeedableRng};
use serde_json::json;

/// Provider agents, one slot each.
const PROVIDERS: usize = 4;
/// Each order's deadline: an order that cannot finish through the chaos is refunded by then.
const DEADLINE_MS: u64 = 40_000;
/// After a market restart, how long a resumed order waits for its provider.
const RESUME_GRACE_MS: u64 = 2_000;
/// Beyond an order's deadline, the time its refund may take to be committed.
const REFUND_SLACK: Duration = Duration::from_secs(15);
/// The seed when `AGORA_CHAOS_SEED` does not name one.
const DEFAULT_SEED: u64 = 0x000A_602A;

/// One chaos run's shape.
struct Plan {
    /// Orders the buyer submits.
    orders: usize,
    /// Time between two submissions, drawn uniformly from this range (ms).
    submit_gap_ms: (u64, u64),
    /// Kills, one after another; the run goes on until they are done and every order
    /// was submitted.
    kills: usize,
    /// Time between two kills, drawn uniformly from this range (ms).
    kill_gap_ms: (u64, u64),
    /// Share of kills that hit the market node (the rest hit a provider), in percent.
    market_percent: u64,
    /// Kills of the market at least, whatever the draw (the last kills make up for it).
    min_market_kills: usize,
}

/// The test's randomness, from a seed.
struct Dice(StdRng);

impl Dice {
    fn from_seed(seed: u64) -> Dice {
        Dice(StdRng::seed_from_u64(seed))
    }

    /// Uniform in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        self.0.random_range(low..=high)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        self.0.fill_bytes(&mut bytes);
        bytes
    }
}

fn seed() -> u64 {
    std::env::var("AGORA_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

/// What the chaos did and what became of the orders.
#[derive(Debug, Default)]
struct Tally {
    provider_kills: usize,
    market_kills: usize,
    submit_retries: usize,
    orders: usize,
    settled: usize,
    refunded: usize,
}

/// Order `i`: a Monte Carlo run of 0.1–1.5 s with an input blob of 64 KiB–1 MiB, so that
/// kills land while blobs upload, jobs run and results settle.
fn chaos_job(i: usize, rng: &mut Dice, inputs: &std::path::Path) -> JobRequest {
    let samples = rng.between(300_000, 4_000_000);
    let mut request = job("montecarlo", &[samples.to_string(), i.to_string()]);
    request.fuel_budget = Fuel::compute_units(20);
    request.deadline_in_ms = DEADLINE_MS;
    let input: PathBuf = inputs.join(format!("input-{i}.bin"));
    let len = rng.between(64 << 10, 1 << 20) as usize;
    std::fs::write(&input, rng.bytes(len)).expect("an input file");
    request.inputs = vec![("data.bin".into(), input)];
    request
}

/// Submits `requests` one after another, retrying each through market restarts; returns
/// when all were accepted. A retried submission may leave an earlier attempt accepted
/// (the market committed it, then died before answering); the final audit counts every
/// order the market lists, not only these ids.
async fn submit_all(
    buyer: Arc<Buyer>,
    requests: Vec<(JobRequest, Duration)>,
    retries: Arc<AtomicUsize>,
) {
    for (request, gap) in requests {
        let started = Instant::now();
        loop {
            match buyer.submit_job(&request).await {
                Ok(_) => break,
                Err(e) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(60),
                        "one submission kept failing for a minute: {e}"
                    );
                    retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        tokio::time::sleep(gap).await;
    }
}

async fn run(plan: Plan) -> Tally {
    let seed = seed();
    eprintln!("chaos seed {seed} (AGORA_CHAOS_SEED replays it)");
    let mut rng = Dice::from_seed(seed);
    let mut t = TestNet::start(PROVIDERS, |c| {
        one_job_per_provider(c);
        fast_crash_recovery(c, RESUME_GRACE_MS);
    })
    .await;
    let buyer = t.buyer.account();
    let funds = t.account(&buyer).await.balance;
    let inputs = t.scratch("inputs");
    let requests: Vec<(JobRequest, Duration)> = (0..plan.orders)
        .map(|i| {
            let gap = rng.between(plan.submit_gap_ms.0, plan.submit_gap_ms.1);
            (chaos_job(i, &mut rng, &inputs), Duration::from_millis(gap))
        })
        .collect();

    let retries = Arc::new(AtomicUsize::new(0));
    let submitter = tokio::spawn(submit_all(t.buyer.clone(), requests, retries.clone()));
    let mut tally = Tally::default();
    let chaos_started = Instant::now();
    while tally.market_kills + tally.provider_kills < plan.kills || !submitter.is_finished() {
        let gap = rng.between(plan.kill_gap_ms.0, plan.kill_gap_ms.1);
        tokio::time::sleep(Duration::from_millis(gap)).await;
        let kills_left = plan
            .kills
            .saturating_sub(tally.market_kills + tally.provider_kills);
        let market_owed = plan.min_market_kills.saturating_sub(tally.market_kills);
        if (kills_left > 0 && kills_left <= market_owed)
            || rng.between(1, 100) <= plan.market_percent
        {
            t.net.kill_market();
            tally.market_kills += 1;
            tokio::time::sleep(Duration::from_millis(rng.between(0, 500))).await;
            t.net
                .restart_market()
                .unwrap_or_else(|e| panic!("the market did not restart: {e}\n{}", t.logs()));
        } else {
            let index = rng.between(0, PROVIDERS as u64 - 1) as usize;
            t.net.kill_provider(index).expect("a provider index");
            tally.provider_kills += 1;
            tokio::time::sleep(Duration::from_millis(rng.between(0, 1_500))).await;
            t.net
                .restart_provider(index)
                .unwrap_or_else(|e| panic!("provider {index} did not restart: {e}\n{}", t.logs()));
        }
        if let Some(dead) = t.net.dead_child() {
            panic!("a process died on its own: {dead}\n{}", t.logs());
        }
    }
    submitter
        .await
        .unwrap_or_else(|e| panic!("the submitter failed: {e}\n{}", t.logs()));
    tally.submit_retries = retries.load(Ordering::Relaxed);
    let submitted_by = Instant::now();
    eprintln!(
        "chaos: {} kills in {:?}, every order submitted",
        tally.market_kills + tally.provider_kills,
        chaos_started.elapsed()
    );

    // Every order the market accepted ends, by its deadline plus the refund's slack.
    let listed = t
        .within(
            Duration::from_secs(10),
            "listing the orders",
            t.client.orders(&OrderFilter {
                buyer: Some(buyer),
                limit: Some(1_000),
                ..OrderFilter::default()
            }),
        )
        .await
        .unwrap_or_else(|e| panic!("GET /v1/orders: {e}\n{}", t.logs()));
    assert!(
        listed.len() >= plan.orders,
        "{} orders listed",
        listed.len()
    );
    let limit = Duration::from_millis(DEADLINE_MS) + REFUND_SLACK;
    let mut ended: Vec<OrderView> = Vec::new();
    for view in &listed {
        let left = limit.saturating_sub(submitted_by.elapsed());
        ended.push(
            t.wait_final(&view.order_id, left.max(Duration::from_secs(1)))
                .await,
        );
    }
    if let Some(dead) = t.net.dead_child() {
        panic!("a process died on its own: {dead}\n{}", t.logs());
    }
    tally.orders = ended.len();
    tally.settled = count(&ended, OrderState::Settled);
    tally.refunded = count(&ended, OrderState::Refunded);
    assert_eq!(tally.settled + tally.refunded, tally.orders, "{ended:#?}");

    let all: Vec<&OrderView> = ended.iter().collect();
    t.assert_orders_accounted(&all, &buyer, funds).await;
    let line = json!({
        "seed": seed,
        "providers": PROVIDERS,
        "provider_kills": tally.provider_kills,
        "market_kills": tally.market_kills,
        "submit_retries": tally.submit_retries,
        "orders": tally.orders,
        "settled": tally.settled,
        "refunded": tally.refunded,
        "seconds": chaos_started.elapsed().as_secs_f64(),
    });
    println!("chaos: {line}");
    tally
}

fn count(views: &[OrderView], state: OrderState) -> usize {
    views.iter().filter(|v| v.state == state).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_during_uploads_runs_and_settlement_lose_no_order_and_no_coin() {
    run(Plan {
        orders: 16,
        submit_gap_ms: (300, 1_200),
        kills: 10,
        kill_gap_ms: (500, 1_500),
        market_percent: 30,
        min_market_kills: 2,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long chaos run for docs/benchmarks.md"]
async fn long_chaos_run() {
    run(Plan {
        orders: 200,
        submit_gap_ms: (100, 900),
        kills: 80,
        kill_gap_ms: (300, 1_500),
        market_percent: 20,
        min_market_kills: 10,
    })
    .await;
}
