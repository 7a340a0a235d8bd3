//! The risk-adjusted quote and the providers' cost floor, between real processes: one
//! `agora node market` and three `agora node provider`s on loopback, each with a cost
//! model (`--watts`, `--amortization-per-hour`) whose floor sits near their configured
//! prices.
//!
//! - Every provider asks max(its configured price, its floor), and `agora provider status
//!   --data-dir` shows the same floor, the power source and earnings.
//! - `POST /v1/quote` lists the three providers at the prices of their asks, prices the
//!   order at the cheapest, replication at the mean of the cheapest N, and says why no
//!   provider matches a region nobody offers; `agora job quote` prints the same numbers.
//! - Quoting moves nothing: the ledger height, the buyer's balance and the order list are
//!   the same before and after.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::common_net::{AGORA, TestNet, job};
use agora_core::{AccountId, Amount, Fuel, Price};
use agora_devnet::LocalNetConfig;
use agora_market::ResourceClass;
use agora_proto::VerifyPolicy;

/// What the hardware is written off at: about 22.5 M base units per CU on a 2-core host
/// (with the 20 % default margin), between the providers' 20 M and 24 M prices.
const AMORTIZATION: &str = "135";

async fn net() -> TestNet {
    TestNet::start(3, |c: &mut LocalNetConfig| {
        c.provider_args
            .extend(["--watts", "40", "--amortization-per-hour", AMORTIZATION].map(String::from));
    })
    .await
}

/// Each provider's CPU ask price, by account.
async fn ask_prices(t: &TestNet) -> BTreeMap<AccountId, Price> {
    t.client
        .asks()
        .await
        .expect("asks")
        .into_iter()
        .filter_map(|a| Some((a.provider, *a.prices.get(&ResourceClass::cpu())?)))
        .collect()
}

/// Reads a provider's `stats.json` once the agent has written its cost model.
async fn provider_status(t: &TestNet, index: usize) -> serde_json::Value {
    let p = &t.net.providers[index];
    for _ in 0..50 {
        let out = Command::new(AGORA)
            .args(["provider", "status", "--json", "--market", &t.net.http_url])
            .arg("--wallet")
            .arg(&p.wallet)
            .arg("--data-dir")
            .arg(&p.data_dir)
            .output()
            .expect("agora provider status runs");
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).expect("status JSON");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("agora provider status never succeeded\n{}", t.logs());
}

async fn ledger_height(t: &TestNet) -> u64 {
    let health: serde_json::Value = t
        .http
        .get(format!("{}/health", t.net.http_url))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("health JSON");
    health["height"].as_u64().expect("a height")
}

fn price_at(value: &serde_json::Value) -> Price {
    Price(
        value
            .as_u64()
            .unwrap_or_else(|| panic!("not a price: {value}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_agree_with_the_asks_and_move_nothing() {
    let t = net().await;

    // The floor: every ask is max(configured price, floor), and the status says so.
    let mut floors = BTreeMap::new();
    for (i, p) in t.net.providers.iter().enumerate() {
        let status = provider_status(&t, i).await;
        let cost = &status["economics"]["cost"];
        assert_eq!(cost["power_source"], "configured", "{status}");
        assert_eq!(cost["milliwatts"], 40_000, "{status}");
        let break_even = price_at(&cost["break_even"]);
        let floor = price_at(&cost["floor"]);
        assert_eq!(
            floor,
            agora_provider::cost::floor_price(break_even, 2_000),
            "{status}"
        );
        assert!(status["economics"]["earned_at_start"].is_u64(), "{status}");
        floors.insert(p.account, (p.price, floor));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let asks = loop {
        let asks = ask_prices(&t).await;
        let settled = floors
            .iter()
            .all(|(a, (price, floor))| asks.get(a) == Some(&(*price).max(*floor)));
        if settled {
            break asks;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "asks {asks:?} are not max(price, floor) of {floors:?}\n{}",
            t.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Before: the ledger and the buyer's balance.
    let height = ledger_height(&t).await;
    let balance = t
        .client
        .account(&t.buyer.account())
        .await
        .expect("account")
        .balance;

    let mut request = job("hashchain", &["100".into(), "1".into()]);
    request.fuel_budget = Fuel::compute_units(3);
    request.verify = VerifyPolicy::None;
    let spec = t.buyer.upload_job(&request).await.expect("upload");
    let body = request
        .order_request(spec.clone(), agora_client::buyer::now_ms())
        .expect("an order");
    let view = t.client.quote(&body).await.expect("a quote");
    assert_eq!(view.no_match, None, "{view:?}");
    assert_eq!(view.candidates.len(), 3, "{view:?}");
    for c in &view.candidates {
        assert_eq!(Some(&c.price), asks.get(&c.provider), "{view:?}");
    }
    let q = &view.quote;
    let cheapest = view.candidates[0].price;
    assert_eq!(cheapest, *asks.values().min().unwrap());
    assert_eq!(q.compute_units, 3);
    assert_eq!(q.expected_price, Some(cheapest));
    assert_eq!(q.expected_cost, cheapest.max_cost(request.fuel_budget));
    assert_eq!(
        q.worst_case,
        body.max_price.max_cost(request.fuel_budget).unwrap()
    );
    assert_eq!(q.verification_runs_ppm, 1_000_000);
    assert_eq!(
        q.reference_cost,
        view.reference_price.max_cost(request.fuel_budget)
    );
    // New providers score the prior (½) each; three of them with three attempts.
    assert!(
        q.success_ppm > 500_000 && q.success_ppm <= 1_000_000,
        "{q:?}"
    );
    let settled = q.expected_total_if_settled.expect("can settle");
    let priciest = *asks.values().max().unwrap();
    assert!(settled >= q.expected_cost.unwrap(), "{q:?}");
    assert!(
        settled <= priciest.max_cost(request.fuel_budget).unwrap(),
        "{q:?}"
    );

    // Replication: the mean of the cheapest three, three runs billed.
    let mut replicated = request.clone();
    replicated.verify = VerifyPolicy::Replicate { n: 3, quorum: 2 };
    replicated.replicas = 3;
    let body3 = replicated
        .order_request(spec.clone(), agora_client::buyer::now_ms())
        .expect("an order");
    let view3 = t.client.quote(&body3).await.expect("a quote");
    let q3 = &view3.quote;
    let sum: u64 = asks.values().map(|p| p.0).sum();
    assert_eq!(q3.expected_price, Some(Price(sum.div_ceil(3))), "{view3:?}");
    assert_eq!(q3.runs, 3);
    assert_eq!(q3.verification_runs_ppm, 3_000_000);
    assert_eq!(q3.worst_case, Amount(q.worst_case.0 * 3));

    // Why no match: a region nobody offers, through the CLI.
    let out = Command::new(AGORA)
        .args(["job", "quote", "--json", "--market", &t.net.http_url])
        .arg("--wallet")
        .arg(&t.net.buyer_wallets[0])
        .args(["--region", "mars", "--max-cu", "3"])
        .arg(crate::common_net::sample("hashchain"))
        .output()
        .expect("agora job quote runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let none: serde_json::Value = serde_json::from_slice(&out.stdout).expect("quote JSON");
    let why = none["no_match"].as_str().expect("a reason");
    assert!(why.contains("region"), "{why}");
    assert_eq!(none["candidates"].as_array().map(Vec::len), Some(0));

    // The CLI quotes the plain job at the same price.
    let out = Command::new(AGORA)
        .args(["job", "quote", "--json", "--market", &t.net.http_url])
        .arg("--wallet")
        .arg(&t.net.buyer_wallets[0])
        .args(["--max-cu", "3", "--verify", "none"])
        .arg(crate::common_net::sample("hashchain"))
        .output()
        .expect("agora job quote runs");
    assert!(out.status.success(), "{out:?}");
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).expect("quote JSON");
    assert_eq!(price_at(&cli["quote"]["expected_price"]), cheapest, "{cli}");
    assert_eq!(cli["quote"]["compute_units"].as_u64(), Some(3), "{cli}");

    // Nothing moved.
    assert_eq!(ledger_height(&t).await, height);
    let after = t.client.account(&t.buyer.account()).await.expect("account");
    assert_eq!(after.balance, balance);
    assert!(
        t.client
            .orders(&agora_client::OrderFilter::default())
            .await
            .expect("orders")
            .is_empty()
    );
}
