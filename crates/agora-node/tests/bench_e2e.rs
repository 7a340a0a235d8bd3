//! The whole loop's latency and throughput, in process, on loopback: one market node,
//! four providers (real agora-net nodes running the real executor), buyers over HTTP
//! following their orders with SSE. Ignored by default; run with
//! `cargo test --release -p agora-node --test bench_e2e -- --ignored --nocapture`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_core::{ChainId, Keypair, Price};
use agora_ledger::DevKeys;
use agora_node::MarketConfig;
use common::*;

const PROVIDERS: usize = 4;
const BUYERS: usize = 32;
const JOBS_PER_BUYER: usize = 25;
const SEQUENTIAL_JOBS: usize = 100;

struct Bench {
    api: Arc<Api>,
    chain: ChainId,
    module: Arc<Vec<u8>>,
}

impl Bench {
    /// Submits one order and follows it over SSE until it is final; returns the
    /// client-side submit → settled time.
    async fn job(&self, buyer: &Keypair, salt: u64, nonce: u64) -> Duration {
        let started = Instant::now();
        let (order, escrow) = order_for(
            buyer,
            &self.chain,
            &self.module,
            salt,
            nonce,
            now_ms() + 120_000,
        );
        let (status, body) = self.api.submit(&order, &escrow).await;
        assert_eq!(status, 201, "{body}");
        let id = agora_proto::signed_order_id(&order);
        let mut events = self
            .api
            .http
            .get(format!("{}/v1/orders/{id}/events", self.api.base))
            .send()
            .await
            .expect("follow");
        let mut seen = String::new();
        while let Some(chunk) = events.chunk().await.expect("stream") {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: settled") {
                return started.elapsed();
            }
            assert!(!seen.contains("event: refunded"), "order refunded: {seen}");
        }
        panic!("stream ended without a final state: {seen}");
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark; run explicitly with --ignored --nocapture"]
async fn bench_e2e() {
    let users = 2 + PROVIDERS + BUYERS;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = MarketConfig::dev(dir.path(), users);
    cfg.heartbeat = Duration::from_millis(500);
    let node = start(cfg).await;
    let keys = DevKeys::new(users);
    let mut providers = Vec::new();
    for i in 0..PROVIDERS {
        let price = Price(1_000_000_000_000 + i as u64 * 1_000_000_000);
        providers.push(
            FakeProvider::start(&node, keys.users[2 + i].clone(), price, Behavior::Honest).await,
        );
    }
    let api = Arc::new(Api::new(&node));
    api.wait_providers(PROVIDERS).await;
    let module = Arc::new(upload_hello(&api).await);
    let bench = Arc::new(Bench {
        api: api.clone(),
        chain: ChainId::new(node.chain_id()),
        module,
    });

    // Warm-up and the lone-buyer latency.
    let buyer = keys.users[0].clone();
    let mut nonce = api.account(&buyer.account()).await.next_nonce;
    for salt in 0..20 {
        bench.job(&buyer, salt, nonce).await;
        nonce += 1;
    }
    let mut lone = Vec::new();
    let lone_started = Instant::now();
    for salt in 100..100 + SEQUENTIAL_JOBS as u64 {
        lone.push(bench.job(&buyer, salt, nonce).await);
        nonce += 1;
    }
    let lone_rate = SEQUENTIAL_JOBS as f64 / lone_started.elapsed().as_secs_f64();
    lone.sort();

    // Many buyers at once.
    let height_before = api.height().await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for b in 0..BUYERS {
        let bench = bench.clone();
        let buyer = keys.users[2 + PROVIDERS + b].clone();
        tasks.push(tokio::spawn(async move {
            let mut nonce = bench.api.account(&buyer.account()).await.next_nonce;
            let mut latencies = Vec::new();
            for j in 0..JOBS_PER_BUYER {
                latencies.push(bench.job(&buyer, 10_000 + j as u64, nonce).await);
                nonce += 1;
            }
            latencies
        }));
    }
    let mut many = Vec::new();
    for task in tasks {
        many.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    many.sort();
    let jobs = BUYERS * JOBS_PER_BUYER;
    let blocks = api.height().await - height_before;
    let (_, check) = api.get("/v1/ledger/verify").await;

    // A 64 MiB blob through the HTTP API: streamed upload (hashed on the way, fsynced)
    // and streamed download.
    let blob: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let hash = agora_core::Hash::of(&blob).to_string();
    let mib = blob.len() as f64 / (1 << 20) as f64;
    let up = Instant::now();
    let (status, _) = api.put_blob(&hash, blob).await;
    assert_eq!(status, 201);
    let upload_mib_s = mib / up.elapsed().as_secs_f64();
    let down = Instant::now();
    let fetched = api
        .http
        .get(format!("{}/v1/blobs/{hash}", api.base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let download_mib_s = mib / down.elapsed().as_secs_f64();
    assert_eq!(fetched.len(), 64 << 20);

    let report = serde_json::json!({
        "blob_64mib": { "upload_mib_s": upload_mib_s, "download_mib_s": download_mib_s },
        "providers": PROVIDERS,
        "lone_buyer": {
            "jobs": SEQUENTIAL_JOBS,
            "latency_p50_ms": percentile(&lone, 0.5),
            "latency_p95_ms": percentile(&lone, 0.95),
            "jobs_per_s": lone_rate,
        },
        "concurrent": {
            "buyers": BUYERS,
            "jobs": jobs,
            "seconds": elapsed.as_secs_f64(),
            "jobs_per_s": jobs as f64 / elapsed.as_secs_f64(),
            "latency_p50_ms": percentile(&many, 0.5),
            "latency_p95_ms": percentile(&many, 0.95),
            "blocks": blocks,
            // Each settled job is three transactions: escrow, release, refund of the rest.
            "txs_per_block": (jobs as f64 * 3.0) / blocks.max(1) as f64,
        },
        "ledger_verified": check["verified"],
    });
    println!("{report}");
    assert_eq!(check["verified"], true);
    for p in providers {
        p.stop().await;
    }
    node.shutdown().await;
}
