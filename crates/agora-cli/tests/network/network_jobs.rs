//! Twenty real jobs through a real network of processes (one `agora node market`, three
//! `agora node provider`s on loopback), submitted concurrently by one buyer over HTTP.
//!
//! Proves that: every order settles; each result the market hands back (digest, fuel,
//! stdout, every output file, downloaded and hash-checked) is exactly what `agora exec`
//! gives for the same module and arguments on this machine, so a job means the same
//! thing on any honest provider; the buyer paid exactly the sum of the orders' costs;
//! each provider received exactly its orders' costs less the market fee and the
//! treasury the fees; the market's earnings counters agree with the ledger; and the
//! ledger, replayed from disk once the market is stopped, verifies with nothing left in
//! escrow and conservation holding.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common_net::{TestNet, exec_locally, fee, job, one_job_per_provider, sample};
use agora_client::{JobRequest, JobSummary};
use agora_core::{AccountId, Amount};
use agora_proto::{OrderState, OrderView};
use tokio::sync::Semaphore;

/// Jobs submitted.
const JOBS: usize = 20;
/// Providers, each with one slot: at most this many orders may be in flight, since an
/// instant order that finds no free capacity is refunded rather than queued.
const PROVIDERS: usize = 3;
/// Width and height of the frame whose tiles are half of the jobs.
const FRAME: (u32, u32) = (48, 40);

/// Half Monte Carlo runs (small sample counts, distinct seeds), half path-traced tiles
/// of one small frame.
fn workload() -> Vec<JobRequest> {
    let tiles = (JOBS / 2) as u32;
    let rows = FRAME.1 / tiles;
    (0..JOBS as u32)
        .map(|i| {
            if i % 2 == 0 {
                let samples = 100_000 + 10_000 * i;
                job("montecarlo", &[samples.to_string(), (i + 1).to_string()])
            } else {
                let tile = i / 2;
                let args = [FRAME.0, FRAME.1, tile * rows, (tile + 1) * rows, 4];
                job(
                    "pathtrace",
                    &args.iter().map(u32::to_string).collect::<Vec<_>>(),
                )
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_jobs_settle_match_local_runs_and_the_money_adds_up() {
    let started = Instant::now();
    let mut t = TestNet::start(PROVIDERS, one_job_per_provider).await;
    let providers = t.provider_accounts();
    let treasury = t.info.treasury;
    let buyer = t.buyer.account();
    let mut before: BTreeMap<AccountId, Amount> = BTreeMap::new();
    for account in providers.iter().chain([&buyer, &treasury]) {
        before.insert(*account, t.account(account).await.balance);
    }

    // Run every job with at most PROVIDERS in flight.
    let requests = workload();
    let slots = Arc::new(Semaphore::new(PROVIDERS));
    let mut running = tokio::task::JoinSet::new();
    for (i, request) in requests.iter().cloned().enumerate() {
        let (buyer, slots) = (t.buyer.clone(), slots.clone());
        let out_dir = t.scratch(&format!("job-{i}"));
        running.spawn(async move {
            let _slot = slots
                .acquire_owned()
                .await
                .expect("the semaphore stays open");
            let summary = buyer.run_job(&request, &out_dir, |_| {}).await;
            (i, summary)
        });
    }
    let mut summaries: Vec<Option<JobSummary>> = vec![None; JOBS];
    t.within(Duration::from_secs(40), "running 20 jobs", async {
        while let Some(joined) = running.join_next().await {
            let (i, summary) = joined.expect("a job task panicked");
            let summary =
                summary.unwrap_or_else(|e| panic!("job {i} ({:?}) failed: {e}", requests[i].args));
            summaries[i] = Some(summary);
        }
    })
    .await;
    let summaries: Vec<JobSummary> = summaries.into_iter().map(Option::unwrap).collect();
    let network_done = started.elapsed();

    // Every order settled, and its result is the local run's, byte for byte.
    let mut views: Vec<OrderView> = Vec::with_capacity(JOBS);
    for (i, (request, summary)) in requests.iter().zip(&summaries).enumerate() {
        let view = t.order(&summary.order_id).await;
        assert_eq!(
            view.state,
            OrderState::Settled,
            "job {i} ({} {:?}) did not settle: {view:#?}\n{}",
            request.label,
            request.args,
            t.logs()
        );
        assert_eq!(
            view.attempts,
            1,
            "job {i} needed a reassignment although every provider was free: {view:#?}\n{}",
            t.logs()
        );
        let result = view.result.as_ref().expect("a settled order has a result");
        let local = exec_locally(
            &sample(&request.label),
            &request.args,
            &t.scratch(&format!("local-{i}")),
        );
        let what = format!("job {i} ({} {:?})", request.label, request.args);
        assert_eq!(result.exit_code, 0, "{what}: {result:#?}");
        assert_eq!(result.exit_code, local.exit_code, "{what}: exit code");
        assert_eq!(result.stdout, local.stdout, "{what}: stdout differs");
        assert_eq!(
            result.digest, local.digest,
            "{what}: the provider's result digest is not the local one"
        );
        assert_eq!(
            result.fuel_used, local.fuel,
            "{what}: fuel billed differs from the local run's"
        );
        assert_eq!(result.provider, view.provider.expect("a provider"));
        let remote: BTreeMap<&str, _> = result
            .outputs
            .iter()
            .map(|o| (o.name.as_str(), o.hash))
            .collect();
        let expected: BTreeMap<&str, _> = local
            .outputs
            .iter()
            .map(|(name, (hash, _))| (name.as_str(), *hash))
            .collect();
        assert_eq!(remote, expected, "{what}: output files differ");
        assert_eq!(summary.outputs.len(), local.outputs.len(), "{what}");
        for path in &summary.outputs {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let downloaded = std::fs::read(path).expect("the downloaded output");
            assert!(
                downloaded == local.outputs[&name].1,
                "{what}: downloaded {name} differs from the local run's"
            );
        }
        if request.label == "pathtrace" {
            assert_eq!(
                local.outputs.keys().collect::<Vec<_>>(),
                ["tile.ppm"],
                "{what}"
            );
        }
        assert_eq!(
            view.cost.0 + view.refunded.0,
            view.escrow.0,
            "{what}: escrow = cost + refund"
        );
        assert!(view.cost.0 > 0, "{what}: a run costs something");
        views.push(view);
    }

    // Money: the buyer paid Σ costs; each provider got its orders' costs less the fee,
    // the treasury the fees; the market's counters agree.
    let total_cost: u64 = views.iter().map(|v| v.cost.0).sum();
    let bps = t.info.fee_bps;
    let spent = before[&buyer].0 - t.account(&buyer).await.balance.0;
    assert_eq!(
        spent, total_cost,
        "the buyer paid exactly the sum of the orders' costs"
    );
    let mut fees = 0u64;
    let mut served = 0u64;
    for account in &providers {
        let mine: Vec<&OrderView> = views
            .iter()
            .filter(|v| v.provider == Some(*account))
            .collect();
        let gross: u64 = mine.iter().map(|v| v.cost.0).sum();
        let net: u64 = mine.iter().map(|v| v.cost.0 - fee(v.cost, bps).0).sum();
        fees += gross - net;
        served += mine.len() as u64;
        let gained = t.account(account).await.balance.0 - before[account].0;
        assert_eq!(
            gained, net,
            "provider {account} received its orders' costs less the fee"
        );
        let view = t.provider_view(account).await;
        assert_eq!(view.earned.0, gross, "provider {account}: earned {view:?}");
        assert_eq!(
            view.completed,
            mine.len() as u64,
            "provider {account}: completed {view:?}"
        );
        assert_eq!(
            view.running, 0,
            "provider {account} still running: {view:?}"
        );
    }
    assert_eq!(
        served, JOBS as u64,
        "every order names one of the providers"
    );
    assert_eq!(
        t.account(&treasury).await.balance.0 - before[&treasury].0,
        fees,
        "the treasury received exactly the fees"
    );

    // The ledger: audited live, then replayed from disk once the market has stopped.
    let live = t.assert_ledger_sound().await;
    let report = t.stop_and_verify();
    assert_eq!(
        report.height, live.height,
        "the chain did not move after the audit"
    );
    assert_eq!(report.state_root, live.state_root.expect("a state root"));
    assert_eq!(report.supply.escrow, Amount::ZERO, "no escrow left open");
    eprintln!(
        "network_jobs: {JOBS} jobs settled in {:.1?} (whole test {:.1?}), {} blocks",
        network_done,
        started.elapsed(),
        report.height
    );
}
