//! A provider process SIGKILLed in the middle of a job, on a real network of processes
//! (one market, three one-slot providers, short heartbeats).
//!
//! Proves that: the order the dead provider was running is reassigned to another
//! provider and settles there (attempt 2, a different provider, the same result digest
//! as an identical job that ran undisturbed); the dead provider is not paid for it, on
//! the ledger or in the market's counters; the job that was running elsewhere settles
//! untouched; and nothing is left in escrow, with the ledger verifying live and again
//! from disk after the market stops.

use std::time::{Duration, Instant};

use crate::common_net::{TestNet, assert_paid_once, escrow_txs, job, one_job_per_provider};
use agora_client::JobRequest;
use agora_core::Fuel;
use agora_proto::OrderState;

/// Monte Carlo samples of each job: about 9.5 CU, a few seconds here, so the job is
/// still running when its provider is killed.
const SAMPLES: u32 = 20_000_000;
/// Heartbeat interval asked of providers (silence limit: three of them).
const HEARTBEAT_MS: &str = "200";

fn long_job() -> JobRequest {
    let mut request = job("montecarlo", &[SAMPLES.to_string(), "7".into()]);
    request.fuel_budget = Fuel::compute_units(30);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_providers_job_is_reassigned_settled_elsewhere_and_not_paid_to_it() {
    let started = Instant::now();
    let mut t = TestNet::start(3, |c| {
        one_job_per_provider(c);
        c.market_args = vec!["--heartbeat-ms".into(), HEARTBEAT_MS.into()];
    })
    .await;
    let providers = t.provider_accounts();
    let mut before = Vec::new();
    for account in &providers {
        before.push(t.account(account).await);
    }
    let buyer_before = t.account(&t.buyer.account()).await;

    // Two identical jobs: the two cheapest providers take one each, the third is idle.
    let request = long_job();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let submitted = t
            .within(
                Duration::from_secs(10),
                "submitting",
                t.buyer.submit_job(&request),
            )
            .await
            .unwrap_or_else(|e| panic!("submit: {e}\n{}", t.logs()));
        ids.push(submitted.order_id);
    }
    let mut running = Vec::new();
    for id in &ids {
        let view = t
            .wait_order(id, Duration::from_secs(15), "running", |v| {
                v.state == OrderState::Running
            })
            .await;
        running.push(view);
    }
    let victim_account = running[0].provider.expect("a running order has a provider");
    let survivor_account = running[1].provider.expect("a provider");
    assert_ne!(victim_account, survivor_account, "one slot each");
    let victim = t.provider_index(&victim_account);
    t.net.kill_provider(victim).expect("the provider exists");
    let killed_at = Instant::now();

    // The killed provider's order goes to the idle one and settles there.
    let moved = t.wait_final(&ids[0], Duration::from_secs(45)).await;
    let reassigned_after = killed_at.elapsed();
    assert_eq!(
        moved.state,
        OrderState::Settled,
        "the orphaned order was not settled elsewhere: {moved:#?}\n{}",
        t.logs()
    );
    assert!(
        moved.attempts >= 2,
        "the order was not reassigned: {moved:#?}"
    );
    let new_provider = moved.provider.expect("a settled order has a provider");
    assert_ne!(
        new_provider, victim_account,
        "paid to the dead provider: {moved:#?}"
    );
    let result = moved.result.as_ref().expect("a result");
    assert_eq!(result.provider, new_provider, "the receipt's signer ran it");
    let failed_attempt = moved
        .events
        .iter()
        .find(|e| e.state == OrderState::Escrowed && e.detail.contains(&victim_account.to_string()))
        .unwrap_or_else(|| {
            panic!(
                "no event says the dead provider's attempt failed: {:#?}",
                moved.events
            )
        });
    let other = t.wait_final(&ids[1], Duration::from_secs(45)).await;
    assert_eq!(other.state, OrderState::Settled, "{other:#?}\n{}", t.logs());
    assert_eq!(other.provider, Some(survivor_account), "{other:#?}");
    assert_eq!(
        other.attempts, 1,
        "the undisturbed job was not moved: {other:#?}"
    );
    let other_result = other.result.as_ref().expect("a result");
    assert_eq!(
        result.digest, other_result.digest,
        "the same job gave different digests on two providers"
    );
    assert_eq!(
        result.fuel_used, other_result.fuel_used,
        "and the same fuel"
    );

    // Money: the dead provider got nothing; the buyer paid exactly the two costs.
    let victim_after = t.account(&victim_account).await;
    assert_eq!(
        victim_after.balance, before[victim].balance,
        "the killed provider's balance moved"
    );
    assert_eq!(
        victim_after.stake, before[victim].stake,
        "its stake did not move either"
    );
    let victim_view = t.provider_view(&victim_account).await;
    assert_eq!(victim_view.earned.0, 0, "{victim_view:?}");
    assert_eq!(victim_view.completed, 0, "{victim_view:?}");
    assert!(
        victim_view.failed >= 1,
        "its failed attempt is counted: {victim_view:?}"
    );
    let buyer_after = t.account(&t.buyer.account()).await;
    assert_eq!(
        buyer_before.balance.0 - buyer_after.balance.0,
        moved.cost.0 + other.cost.0,
        "the buyer paid exactly the two orders' costs"
    );
    let blocks = t.blocks().await;
    let txs = escrow_txs(&blocks);
    let logs = t.logs();
    for view in [&moved, &other] {
        assert_paid_once(view, txs.get(&view.order_id), &logs);
    }
    let paid_to_victim = txs
        .values()
        .flat_map(|t| t.releases.iter().flatten())
        .filter(|(payee, _)| *payee == victim_account)
        .count();
    assert_eq!(
        paid_to_victim, 0,
        "a release on the chain pays the dead provider"
    );

    t.assert_ledger_sound().await;
    let report = t.stop_and_verify();
    assert_eq!(report.supply.escrow.0, 0, "nothing left in escrow");
    eprintln!(
        "network_provider_crash: reassigned and settled {reassigned_after:.1?} after the kill ({}); whole test {:.1?}",
        failed_attempt.detail,
        started.elapsed()
    );
}
