//! The provider agent against the real market node (`agora-node`), both in this process
//! but talking only over loopback HTTP and libp2p: the agent bonds its stake through
//! `/v1/txs`, its ask reaches the book, a buyer's order is assigned to it, run, verified
//! and paid on the ledger.

mod support;

use std::time::{Duration, Instant};

use agora_core::{Amount, Fuel, Hash, Price, Signed};
use agora_ledger::{DevKeys, TxBody};
use agora_market::ResourceClass;
use agora_market::{Demand, Requirements};
use agora_node::{MarketConfig, MarketNode};
use agora_proto::api::{OrderState, OrderView, SubmitOrder, Submitted};
use agora_proto::order::{InputRef, JobSpec, OrderRequest, signed_order_id};
use agora_provider::{
    CapacityOverrides, IndexSignal, MarketApi, MarketLink, PricingStrategy, ProviderAgent,
    ProviderConfig, ProviderError,
};
use support::{CAT_INPUT, PATIENCE, cat_module, now_ms, spin_module};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_run_verified_and_paid_through_the_market_node() {
    let market_dir = tempfile::tempdir().expect("temp dir");
    let market = MarketNode::start(MarketConfig::dev(market_dir.path(), 3))
        .await
        .expect("market node starts");
    let url = market.http_url();
    let keys = DevKeys::new(3);
    let (buyer, provider_key) = (&keys.users[0], &keys.users[1]);
    let api = MarketApi::new(&url).expect("client");

    // Stake beyond the balance is refused before anything is signed.
    let broke_dir = tempfile::tempdir().expect("temp dir");
    let mut broke = ProviderConfig::new(
        keys.users[2].clone(),
        broke_dir.path(),
        MarketLink::Http(url.clone()),
        Price(1),
    );
    broke.stake = Amount::agr(1_000_000);
    let refused = ProviderAgent::start(broke).await.err().expect("refused");
    assert!(
        matches!(refused, ProviderError::InsufficientFunds { .. }),
        "{refused}"
    );

    let provider_dir = tempfile::tempdir().expect("temp dir");
    let price = Price(20_000_000);
    let mut config = ProviderConfig::new(
        provider_key.clone(),
        provider_dir.path(),
        MarketLink::Http(url.clone()),
        price,
    );
    config.stake = Amount::agr(100);
    config.overrides = CapacityOverrides {
        cpus: Some(1),
        memory_bytes: Some(1 << 30),
        disk_bytes: Some(1 << 30),
        slots: Some(1),
    };
    config.ask_interval = Duration::from_millis(200);
    let provider = ProviderAgent::start(config).await.expect("provider starts");
    let me = provider.account();
    let bonded = api.account(&me).await.expect("account");
    assert_eq!(bonded.stake, Amount::agr(100), "stake bonded at start");

    wait_until_listed(&api, &me).await;

    let buyer = Buyer {
        http: reqwest::Client::new(),
        url: url.clone(),
        chain: agora_core::ChainId::new(market.chain_id()),
        key: buyer.clone(),
    };
    let module = cat_module();
    let inputs = vec![InputRef {
        name: "data.txt".into(),
        hash: buyer.upload(CAT_INPUT).await,
        size: CAT_INPUT.len() as u64,
        sealed: false,
    }];
    let order_id = buyer.submit(&module, inputs, Fuel(50_000_000)).await;
    let view = buyer.wait_final(order_id).await;
    assert_eq!(
        view.state,
        OrderState::Settled,
        "refund reason: {:?}",
        view.refund_reason
    );
    assert_eq!(view.provider, Some(me));
    let result = view.result.expect("a settled order has a result");
    assert_eq!(result.stdout.as_bytes(), CAT_INPUT);
    assert_eq!(result.outputs.len(), 1);

    // The market acknowledged the delivery before settling; the agent counts it on that
    // acknowledgement, which may trail the settlement by a moment.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while provider.stats().delivered == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = provider.stats();
    assert_eq!((stats.accepted, stats.delivered, stats.failed), (1, 1, 0));
    let status = provider.status().await;
    let ledger = status.ledger.expect("ledger figures over HTTP");
    assert!(
        ledger.balance > bonded.balance,
        "paid: {} then {}",
        bonded.balance,
        ledger.balance
    );
    let market_view = status.market_view.expect("the market knows the provider");
    assert_eq!(market_view.account, me);

    // A second agent that follows the index prices at the trade that just cleared.
    let follower_dir = tempfile::tempdir().expect("temp dir");
    let strategy = PricingStrategy::FollowIndex {
        floor: Price(1_000_000),
        ceiling: Price(30_000_000),
    };
    let mut config = ProviderConfig::new(
        keys.users[2].clone(),
        follower_dir.path(),
        MarketLink::Http(url.clone()),
        price,
    );
    config.pricing = strategy;
    config.ask_interval = Duration::from_millis(100);
    let follower = ProviderAgent::start(config).await.expect("follower starts");
    let index = api.index().await.expect("index");
    let expected = strategy.price(IndexSignal::from_index_json(&index, &ResourceClass::cpu()));
    assert_eq!(expected, price, "the 1-minute VWAP is the cleared price");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while follower.status().await.price != expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the follower never repriced"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    follower.shutdown().await.expect("follower stops");
    provider.shutdown().await.expect("provider stops");
    market.shutdown().await;
}

/// Waits until the market lists an ask from `provider`.
async fn wait_until_listed(api: &MarketApi, provider: &agora_core::AccountId) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Ok(Some(view)) = api.provider(provider).await
            && !view.asks.is_empty()
            && view.peer.is_some()
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the provider's ask never reached the market"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_finds_a_restarted_market_on_its_new_p2p_port() {
    let market_dir = tempfile::tempdir().expect("temp dir");
    let market = MarketNode::start(MarketConfig::dev(market_dir.path(), 2))
        .await
        .expect("market node starts");
    let http_addr = market.http_addr();
    let url = market.http_url();
    let old_p2p = market.p2p_addrs();
    let api = MarketApi::new(&url).expect("client");
    let provider_dir = tempfile::tempdir().expect("temp dir");
    let mut config = ProviderConfig::new(
        DevKeys::new(2).users[1].clone(),
        provider_dir.path(),
        MarketLink::Http(url.clone()),
        Price(20_000_000),
    );
    // Asks far apart: only the redial on disconnect (not the next ask) can bring the
    // agent back quickly.
    config.ask_interval = Duration::from_secs(5);
    let provider = ProviderAgent::start(config).await.expect("provider starts");
    let me = provider.account();
    wait_until_listed(&api, &me).await;

    market.shutdown().await;
    // Down long enough for the redial backoff to reach its cap.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    // Same data and HTTP address, but the p2p port is picked afresh.
    let mut config = MarketConfig::dev(market_dir.path(), 2);
    config.http_listen = http_addr;
    let market = MarketNode::start(config).await.expect("market restarts");
    let listening = Instant::now();
    assert_ne!(market.p2p_addrs(), old_p2p);
    wait_until_listed(&api, &me).await;
    // At most one capped backoff (1 s) after the market listens, plus a dial and a
    // gossip round; generous for a loaded machine.
    let back_after = listening.elapsed();
    assert!(
        back_after < Duration::from_millis(1_500),
        "the agent was listed again {back_after:?} after the market restarted"
    );
    eprintln!("reconnected and listed {back_after:?} after the market restarted");

    provider.shutdown().await.expect("provider stops");
    market.shutdown().await;
}

/// A buyer speaking the market's HTTP API.
struct Buyer {
    http: reqwest::Client,
    url: String,
    chain: agora_core::ChainId,
    key: agora_core::Keypair,
}

impl Buyer {
    async fn upload(&self, blob: &[u8]) -> Hash {
        let hash = Hash::of(blob);
        let response = self
            .http
            .put(format!("{}/v1/blobs/{hash}", self.url))
            .body(blob.to_vec())
            .send()
            .await
            .expect("upload");
        assert!(
            response.status().is_success(),
            "upload: {}",
            response.status()
        );
        hash
    }

    /// Uploads `module`, signs the order and its escrow, submits; returns the order id.
    async fn submit(&self, module: &[u8], inputs: Vec<InputRef>, fuel: Fuel) -> Hash {
        self.upload(module).await;
        let max_price = Price(40_000_000);
        let deadline_ms = now_ms() + 120_000;
        let body = OrderRequest {
            job: JobSpec {
                module: Hash::of(module),
                module_size: module.len() as u64,
                inputs,
                args: vec![],
                env: vec![],
                memory_bytes: 16 << 20,
                workload: agora_proto::Workload::Wasm,
            },
            demand: Demand {
                cpu_millis: 1000,
                memory_bytes: 16 << 20,
                disk_bytes: 0,
                gpu: None,
            },
            requirements: Requirements::default(),
            max_price,
            fuel_budget: fuel,
            deadline_ms,
            escrow: max_price.max_cost(fuel).expect("fits"),
            replicas: 1,
            verify: agora_proto::VerifyPolicy::None,
            label: "provider e2e".into(),
            task: None,
            auction: Default::default(),
        };
        let escrow = body.escrow;
        let order = Signed::sign(&self.key, &self.chain, now_ms(), body);
        let order_id = signed_order_id(&order);
        let api = MarketApi::new(&self.url).expect("client");
        let nonce = api
            .account(&self.key.account())
            .await
            .expect("buyer")
            .next_nonce;
        let escrow_tx = Signed::sign(
            &self.key,
            &self.chain,
            nonce,
            TxBody::OpenEscrow {
                order_id,
                amount: escrow,
                deadline_ms,
            },
        );
        let submit = SubmitOrder {
            order: agora_proto::hexed::encode(&order),
            escrow_tx: agora_proto::hexed::encode(&escrow_tx),
        };
        let response = self
            .http
            .post(format!("{}/v1/orders", self.url))
            .json(&submit)
            .send()
            .await
            .expect("submit");
        assert!(
            response.status().is_success(),
            "submit: {}",
            response.text().await.unwrap_or_default()
        );
        let submitted: Submitted = response.json().await.expect("Submitted");
        assert_eq!(submitted.order_id, order_id);
        order_id
    }

    /// Polls the order until it is settled or refunded.
    async fn wait_final(&self, order_id: Hash) -> OrderView {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let view: OrderView = self
                .http
                .get(format!("{}/v1/orders/{order_id}", self.url))
                .send()
                .await
                .expect("order view")
                .json()
                .await
                .expect("OrderView");
            if view.state.is_final() {
                return view;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "order stuck in {}",
                view.state
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_runs_out_of_fuel_is_refunded_not_reassigned() {
    let market_dir = tempfile::tempdir().expect("temp dir");
    let market = MarketNode::start(MarketConfig::dev(market_dir.path(), 2))
        .await
        .expect("market node starts");
    let url = market.http_url();
    let keys = DevKeys::new(2);
    let api = MarketApi::new(&url).expect("client");
    let provider_dir = tempfile::tempdir().expect("temp dir");
    let config = ProviderConfig::new(
        keys.users[1].clone(),
        provider_dir.path(),
        MarketLink::Http(url.clone()),
        Price(20_000_000),
    );
    let provider = ProviderAgent::start(config).await.expect("provider starts");
    wait_until_listed(&api, &provider.account()).await;
    let buyer = Buyer {
        http: reqwest::Client::new(),
        url: url.clone(),
        chain: agora_core::ChainId::new(market.chain_id()),
        key: keys.users[0].clone(),
    };
    let order_id = buyer.submit(&spin_module(), vec![], Fuel(20_000_000)).await;
    let view = buyer.wait_final(order_id).await;
    assert_eq!(view.state, OrderState::Refunded);
    assert_eq!(
        view.attempts, 1,
        "a deterministic failure is not retried elsewhere"
    );
    let reason = view.refund_reason.unwrap_or_default();
    assert!(reason.contains("out of fuel"), "{reason}");
    assert_eq!(provider.stats().failed, 1);
    provider.shutdown().await.expect("provider stops");
    market.shutdown().await;
}
