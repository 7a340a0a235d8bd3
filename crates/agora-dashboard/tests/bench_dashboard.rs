//! Benchmark (ignored by default): the dashboard's first paint with 10,000 jobs in the
//! history. Fills a local market with 10,000 settled orders from 32 buyers, then opens
//! every page in headless Chromium several times and reports, per page, the median time
//! from navigation start to the page's data being drawn (`main[data-ready]`, stamped with
//! `performance.now()`), and the median latency of the listing API behind the jobs page.
//!
//! ```sh
//! cargo test --release -p agora-dashboard --test bench_dashboard -- --ignored --nocapture
//! ```
//! `AGORA_BENCH_ORDERS` changes the history size. Figures go in docs/benchmarks.md.

mod support;

use std::time::{Duration, Instant};

use agora_core::{Fuel, Keypair};
use support::{Browser, Net, hello_module};

const BUYERS: usize = 32;
const RUNS: usize = 7;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

async fn fill(net: &Net, buyers: &[Keypair], total: usize) -> agora_core::Hash {
    let module = hello_module();
    net.upload(&module).await;
    let per_buyer = total.div_ceil(buyers.len());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (b, key) in buyers.iter().enumerate() {
        let key = key.clone();
        let net_url = net.url.clone();
        let count = per_buyer.min(total.saturating_sub(b * per_buyer));
        let module = module.clone();
        let chain = net.market.chain_id();
        tasks.push(tokio::spawn(async move {
            let client = support::Submitter::new(net_url, chain);
            let mut nonce = client.next_nonce(&key).await;
            let mut last = None;
            for i in 0..count {
                let label = format!("bench {b}-{i}");
                last = Some(
                    client
                        .submit(&key, nonce, &module, &label, Fuel(10_000_000), i as u64)
                        .await,
                );
                nonce += 1;
            }
            last
        }));
    }
    let mut last = None;
    for task in tasks {
        last = task.await.expect("buyer task").or(last);
    }
    eprintln!(
        "submitted {total} orders in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    last.expect("at least one order")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: cargo test --release -p agora-dashboard --test bench_dashboard -- --ignored --nocapture"]
async fn first_paint_with_ten_thousand_jobs() {
    let total: usize = std::env::var("AGORA_BENCH_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let Some(browser) = Browser::start().await else {
        return;
    };
    let mut net = Net::start_with_users(BUYERS + 2).await;
    net.add_provider_as(BUYERS, 0, 8).await;
    net.add_provider_as(BUYERS + 1, 1, 8).await;
    let buyers: Vec<Keypair> = net.keys.users[..BUYERS].to_vec();
    let last = fill(&net, &buyers, total).await;
    // Wait until every order is final.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let stats = net.get("/v1/dashboard/stats").await;
        let open = stats["running"].as_u64().unwrap() + stats["waiting"].as_u64().unwrap();
        if open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{open} orders still open");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = net.get("/v1/dashboard/stats").await;
    assert_eq!(stats["orders_total"].as_u64().unwrap() as usize, total);

    let provider = net.keys.users[BUYERS].account();
    let pages = [
        ("overview", "#/".to_string()),
        ("jobs", "#/jobs".to_string()),
        ("jobs, page 100", "#/jobs?offset=4950".to_string()),
        ("job", format!("#/job/{last}")),
        ("submit", "#/submit".to_string()),
        ("providers", "#/providers".to_string()),
        ("provider", format!("#/provider/{provider}")),
        ("ledger blocks", "#/ledger/blocks".to_string()),
        ("ledger txs", "#/ledger/txs".to_string()),
        ("ledger escrows", "#/ledger/escrows".to_string()),
    ];
    println!("| page | median first paint with data (ms) | min | max |");
    println!("|---|---|---|---|");
    for (name, route) in &pages {
        let mut times = Vec::new();
        for _ in 0..RUNS {
            // A fresh document each time: about:blank first, so the hash route is a load.
            browser.client.goto("about:blank").await.expect("blank");
            browser.open(&format!("{}/{route}", net.url)).await;
            let ms = browser
                .js("return Number(document.documentElement.dataset.readyMs)")
                .await
                .as_f64()
                .expect("readyMs");
            if ms > 1_000.0 {
                let slow = browser
                    .js("const n = performance.getEntriesByType('navigation')[0]; return [n && n.toJSON(), performance.getEntriesByType('resource').map(e => e.name + ' ' + Math.round(e.startTime) + '+' + Math.round(e.duration))]")
                    .await;
                eprintln!("{name}: slow run {ms:.0} ms: {slow}");
            }
            times.push(ms);
        }
        let (lo, hi) = (
            times.iter().copied().fold(f64::MAX, f64::min),
            times.iter().copied().fold(0.0, f64::max),
        );
        println!("| {name} | {:.1} | {lo:.1} | {hi:.1} |", median(times));
        browser
            .screenshot(&format!("bench-{}", name.replace([' ', ','], "-")))
            .await;
    }
    let mut api = Vec::new();
    for _ in 0..31 {
        let t = Instant::now();
        net.get("/v1/dashboard/orders?limit=50&offset=5000").await;
        api.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "GET /v1/dashboard/orders?limit=50&offset=5000 with {total} orders: median {:.2} ms",
        median(api)
    );
    let mut stats_ms = Vec::new();
    for _ in 0..31 {
        let t = Instant::now();
        net.get("/v1/dashboard/stats").await;
        stats_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "GET /v1/dashboard/stats with {total} orders: median {:.2} ms",
        median(stats_ms)
    );
    browser.close().await;
    net.stop().await;
}
