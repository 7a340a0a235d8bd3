//! The market process SIGKILLed while orders are in flight, then restarted on the same
//! data directory and HTTP port, on a real network of processes (three one-slot
//! providers that keep running through the crash).
//!
//! Proves that: orders settled before the crash are still settled, with their results,
//! after it; every order that was running ends settled or refunded within the resume
//! grace plus its run time (none stuck); no order is paid twice (each order's escrow
//! transactions read back from the chain: opened once, released at most once and for
//! exactly the cost the API reports, refunded at most once) and the buyer's balance is
//! its genesis funds less exactly the sum of the costs; and `agora ledger verify` (the
//! real binary, on the stopped market's directory) passes with conservation holding
//! and nothing in escrow.

use std::time::{Duration, Instant};

use crate::common_net::{TestNet, fast_crash_recovery, job, one_job_per_provider};
use agora_client::{JobRequest, OrderFilter};
use agora_core::{Fuel, Hash};
use agora_proto::{OrderState, OrderView};

/// Providers, one slot each: at most this many orders in flight.
const PROVIDERS: usize = 3;
/// After the restart, how long a resumed order waits for its provider to come back.
const RESUME_GRACE_MS: u64 = 3_000;
/// Monte Carlo samples of a job still running when the market dies (about 7 CU).
const LONG_SAMPLES: u32 = 15_000_000;

fn long_job(seed: u32) -> JobRequest {
    let mut request = job("montecarlo", &[LONG_SAMPLES.to_string(), seed.to_string()]);
    request.fuel_budget = Fuel::compute_units(30);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_in_flight_survive_a_market_crash_and_none_is_paid_twice() {
    let started = Instant::now();
    let mut t = TestNet::start(PROVIDERS, |c| {
        one_job_per_provider(c);
        fast_crash_recovery(c, RESUME_GRACE_MS);
    })
    .await;
    let buyer = t.buyer.account();
    let funds = t.account(&buyer).await.balance;
    assert_eq!(
        funds,
        agora_node::config::DEV_USER_FUNDS,
        "a fresh dev buyer"
    );

    // Before the crash: a few short jobs run to the end.
    let out = t.scratch("out");
    let mut done_before: Vec<OrderView> = Vec::new();
    for seed in 1..=PROVIDERS as u32 {
        let request = job("montecarlo", &["50000".into(), seed.to_string()]);
        let summary = t
            .within(
                Duration::from_secs(20),
                "a short job",
                t.buyer.run_job(&request, &out, |_| {}),
            )
            .await
            .unwrap_or_else(|e| panic!("short job: {e}\n{}", t.logs()));
        assert!(summary.succeeded(), "{summary:#?}\n{}", t.logs());
        done_before.push(t.order(&summary.order_id).await);
    }

    // In flight: one long job per provider, all running when the market dies.
    let mut in_flight: Vec<Hash> = Vec::new();
    for seed in 0..PROVIDERS as u32 {
        let submitted = t
            .within(
                Duration::from_secs(10),
                "submitting",
                t.buyer.submit_job(&long_job(seed)),
            )
            .await
            .unwrap_or_else(|e| panic!("submit: {e}\n{}", t.logs()));
        in_flight.push(submitted.order_id);
    }
    for id in &in_flight {
        t.wait_order(id, Duration::from_secs(15), "running", |v| {
            v.state == OrderState::Running
        })
        .await;
    }
    t.net.kill_market();
    let crashed_at = Instant::now();
    t.net
        .restart_market()
        .unwrap_or_else(|e| panic!("the market did not restart: {e}\n{}", t.logs()));

    // Settled orders stayed settled, with their results.
    for before in &done_before {
        let after = t.order(&before.order_id).await;
        assert_eq!(after.state, OrderState::Settled, "{after:#?}");
        assert_eq!(
            after.cost, before.cost,
            "its cost changed across the restart"
        );
        assert_eq!(
            after.result.as_ref().map(|r| r.digest),
            before.result.as_ref().map(|r| r.digest),
            "its result was lost across the restart"
        );
    }
    // Every order that was in flight ends, settled or refunded.
    let limit = Duration::from_millis(RESUME_GRACE_MS) + Duration::from_secs(40);
    let mut ended: Vec<OrderView> = Vec::new();
    for id in &in_flight {
        ended.push(t.wait_final(id, limit).await);
    }
    let recovered_after = crashed_at.elapsed();
    for view in &ended {
        assert!(
            view.events
                .iter()
                .any(|e| e.detail.contains("resumed after a market restart")),
            "order {} was not in flight when the market died: {:#?}",
            view.order_id,
            view.events
        );
        match view.state {
            OrderState::Settled => {
                let result = view.result.as_ref();
                assert!(
                    result.is_some_and(|r| r.exit_code == 0),
                    "settled without a good result: {view:#?}"
                );
            }
            OrderState::Refunded => assert_eq!(view.refunded, view.escrow, "{view:#?}"),
            state => unreachable!("waited for a final state, got {state}"),
        }
        // The restarted market knew which providers were still busy with resumed orders
        // and never assigned them more than they can run.
        assert!(
            !view.events.iter().any(|e| e.detail.contains("at capacity")),
            "a provider busy with a resumed order was assigned another: {:#?}",
            view.events
        );
    }

    // The market's own listing agrees: every order this buyer made is over.
    let listed = t
        .client
        .orders(&OrderFilter {
            buyer: Some(buyer),
            ..OrderFilter::default()
        })
        .await
        .unwrap_or_else(|e| panic!("GET /v1/orders: {e}\n{}", t.logs()));
    assert_eq!(listed.len(), done_before.len() + ended.len(), "{listed:#?}");
    for view in &listed {
        assert!(
            view.state.is_final(),
            "order stuck after the restart: {view:#?}"
        );
    }

    // No order paid twice (its escrow transactions on the chain, the buyer's balance),
    // and the real binary audits the stopped market's ledger.
    let all: Vec<&OrderView> = done_before.iter().chain(&ended).collect();
    t.assert_orders_accounted(&all, &buyer, funds).await;
    let settled = ended
        .iter()
        .filter(|v| v.state == OrderState::Settled)
        .count();
    eprintln!(
        "network_market_crash: {settled}/{} in-flight orders settled, {recovered_after:.1?} after the crash; whole test {:.1?}",
        ended.len(),
        started.elapsed()
    );
    for view in ended.iter().filter(|v| v.state == OrderState::Refunded) {
        eprintln!(
            "  refunded {}: {}",
            view.order_id,
            view.refund_reason.as_deref().unwrap_or("no reason")
        );
    }
    if std::env::var_os("AGORA_TEST_LOGS").is_some() {
        eprintln!("{}", t.logs());
    }
}
