//! Measures the agent's assignment → delivery latency against the stand-in market, cold
//! (fetch + compile) and warm (blobs stored, module cached), beside a baseline of the
//! same job run in-process by the executor alone. Ignored by default (it is a benchmark):
//!
//! `cargo test -p agora-provider --test latency -- --ignored --nocapture`

mod support;

use std::time::{Duration, Instant};

use agora_core::{Fuel, Keypair, Price};
use agora_exec::{ExecConfig, Executor, Input, WasmExecutor, WasmModule};
use agora_proto::order::InputRef;
use agora_proto::wire::{ProviderReply, ToMarket, ToProvider};
use agora_provider::{CapacityOverrides, MarketLink, ProviderAgent, ProviderConfig};
use support::{CAT_INPUT, FakeMarket, ack, cat_module};

const RUNS: usize = 40;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run with --ignored --nocapture"]
async fn assignment_to_delivery_latency() {
    let mut market = FakeMarket::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ProviderConfig::new(
        Keypair::from_seed("bench provider"),
        dir.path(),
        MarketLink::Direct(market.info().await),
        Price(1),
    );
    config.overrides = CapacityOverrides {
        cpus: Some(1),
        memory_bytes: Some(1 << 30),
        disk_bytes: Some(1 << 30),
        slots: Some(1),
    };
    let provider = ProviderAgent::start(config).await.expect("provider starts");
    let me = provider.account();
    market.wait_for_ask(&me).await;
    let module = cat_module();
    market.put(&module);
    let input = market.put(CAT_INPUT);
    let buyer = Keypair::from_seed("buyer");
    let key = market.key.clone();

    let mut samples = Vec::with_capacity(RUNS + 1);
    for _ in 0..=RUNS {
        let inputs = vec![InputRef {
            name: "data.txt".into(),
            hash: input,
            size: CAT_INPUT.len() as u64,
        }];
        let order = market.order(&buyer, &module, inputs, Fuel(50_000_000));
        let assign = market.assignment(&key, order, me, Price(1));
        let started = Instant::now();
        assert_eq!(
            market.send(&me, ToProvider::Assign(assign)).await,
            ProviderReply::Accepted
        );
        let (outcome, _) = market.next_outcome().await;
        let elapsed = started.elapsed();
        assert!(matches!(outcome.message, ToMarket::Deliver(_)));
        ack(outcome.responder);
        samples.push(elapsed.as_secs_f64() * 1e3);
        // Let the agent see the acknowledgement and free its slot.
        while provider.stats().running > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let cold = samples.remove(0);
    samples.sort_by(f64::total_cmp);

    let baseline = tokio::task::spawn_blocking(move || {
        let executor = WasmExecutor::new(ExecConfig::default()).expect("executor");
        let module = WasmModule::new(module);
        let mut times = Vec::with_capacity(RUNS);
        for i in 0..=RUNS {
            let mut job = executor.job(agora_core::Hash::of(&i.to_le_bytes()), module.clone());
            job.inputs.push(Input::new("data.txt", CAT_INPUT.to_vec()));
            job.limits.fuel = Fuel(50_000_000);
            let started = Instant::now();
            executor.run(&job).expect("baseline run");
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        times.remove(0);
        times.sort_by(f64::total_cmp);
        times
    })
    .await
    .expect("baseline");

    let (p50, p95) = (percentile(&samples, 0.5), percentile(&samples, 0.95));
    let base = percentile(&baseline, 0.5);
    println!(
        "{}",
        serde_json::json!({
            "runs": RUNS,
            "cold_assign_to_deliver_ms": cold,
            "warm_assign_to_deliver_p50_ms": p50,
            "warm_assign_to_deliver_p95_ms": p95,
            "baseline_exec_only_p50_ms": base,
            "agent_overhead_p50_ms": p50 - base,
            "ratio_p50_vs_exec_only": p50 / base,
        })
    );
    provider.shutdown().await.expect("clean shutdown");
}
