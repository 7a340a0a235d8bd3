//! Faulty providers (`--faulty`, test networks only) against the stand-in market on
//! loopback: refused on a market that does not allow them; `wrong-output` and
//! `skip-work` deliver well-formed, signed results whose outputs check out against their
//! receipts but whose digests no honest provider (and no other faulty one) produces;
//! `silent` delivers the honest receipt and never serves the outputs; a rate misbehaves
//! on exactly the orders its draw predicts. (`crash` exits the whole process, so it is
//! tested with real processes: agora-cli's `network_faulty`.)

mod support;

use std::time::Duration;

use agora_core::{AccountId, Amount, Fuel, Hash, Keypair, Price};
use agora_exec::{ExecConfig, Executor, Input, Outcome, WasmExecutor, WasmModule};
use agora_proto::order::{InputRef, SignedOrder, signed_order_id};
use agora_proto::wire::{Delivery, ProviderReply, ToMarket, ToProvider};
use agora_provider::{
    CapacityOverrides, FaultMode, FaultPlan, MarketLink, ProviderAgent, ProviderConfig,
    ProviderError, RunningProvider,
};
use support::{CAT_INPUT, FakeMarket, ack, cat_module};

const PRICE: Price = Price(500);
const FUEL: Fuel = Fuel(50_000_000);

fn config(
    market_info: agora_proto::api::MarketInfo,
    seed: &str,
    dir: &std::path::Path,
    fault: Option<FaultPlan>,
) -> ProviderConfig {
    let mut config = ProviderConfig::new(
        Keypair::from_seed(seed),
        dir,
        MarketLink::Direct(market_info),
        PRICE,
    );
    // What the machine's power costs is not the subject here: no floor under PRICE.
    config.cost.electricity_per_kwh = Amount::ZERO;
    config.overrides = CapacityOverrides {
        cpus: Some(2),
        memory_bytes: Some(1 << 30),
        disk_bytes: Some(1 << 30),
        slots: Some(2),
    };
    config.ask_interval = Duration::from_millis(300);
    config.fault = fault;
    config
}

/// A provider on a market whose genesis allows faulty providers.
async fn start_faulty(
    market: &FakeMarket,
    seed: &str,
    fault: Option<FaultPlan>,
) -> (RunningProvider, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut info = market.info().await;
    info.allow_faulty_providers = true;
    let provider = ProviderAgent::start(config(info, seed, dir.path(), fault))
        .await
        .expect("provider starts");
    (provider, dir)
}

/// The cat job's inputs, stored at the market.
fn cat_inputs(market: &FakeMarket) -> (Vec<u8>, Vec<InputRef>) {
    let module = cat_module();
    market.put(&module);
    let input = market.put(CAT_INPUT);
    let inputs = vec![InputRef {
        name: "data.txt".into(),
        hash: input,
        size: CAT_INPUT.len() as u64,
        sealed: false,
    }];
    (module, inputs)
}

/// A fresh cat order (each has its own nonce, so its own id).
fn cat_order(market: &FakeMarket) -> SignedOrder {
    let (module, inputs) = cat_inputs(market);
    market.order(&Keypair::from_seed("buyer"), &module, inputs, FUEL)
}

/// Assigns a fresh cat order to `provider`; returns its id.
async fn assign_cat(market: &mut FakeMarket, provider: &AccountId) -> Hash {
    let order = cat_order(market);
    assign(market, provider, order).await
}

/// Assigns `order` to `provider`; returns its id.
async fn assign(market: &mut FakeMarket, provider: &AccountId, order: SignedOrder) -> Hash {
    let key = market.key.clone();
    let assign = market.assignment(&key, order, *provider, PRICE);
    let order_id = assign.body.order_id;
    assert_eq!(
        market.send(provider, ToProvider::Assign(assign)).await,
        ProviderReply::Accepted
    );
    order_id
}

/// The next delivery, acknowledging heartbeats (and acknowledging the delivery).
async fn next_delivery(market: &mut FakeMarket) -> Box<Delivery> {
    let (outcome, _) = market.next_outcome().await;
    let ToMarket::Deliver(delivery) = outcome.message else {
        panic!("expected a delivery, got {:?}", outcome.message);
    };
    ack(outcome.responder);
    delivery
}

/// Writes a fixed line to `/output/note.txt`: an output no input shares (the cat job's
/// output is its input, which the provider holds anyway and so would serve).
fn note_module() -> Vec<u8> {
    let wat = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 220) "note.txt")
  (data (i32.const 300) "withheld output\n")
  (func (export "_start")
    (local $err i32)
    (local.set $err (call $path_open (i32.const 4) (i32.const 0) (i32.const 220) (i32.const 8)
      (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 44)))
    (if (local.get $err) (then (call $proc_exit (local.get $err))))
    (i32.store (i32.const 0) (i32.const 300))
    (i32.store (i32.const 4) (i32.const 16))
    (drop (call $fd_write (i32.load (i32.const 44)) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;
    wat::parse_str(wat).expect("test WAT is valid")
}

/// What an honest provider computes for the cat order `order_id`.
async fn honest(order_id: Hash) -> Outcome {
    honest_run(order_id, cat_module()).await
}

/// What an honest provider computes for order `order_id` of `module` on the cat input.
async fn honest_run(order_id: Hash, module: Vec<u8>) -> Outcome {
    tokio::task::spawn_blocking(move || {
        let executor = WasmExecutor::new(ExecConfig::default()).expect("executor");
        let mut local = executor.job(order_id, WasmModule::new(module));
        local.args = vec!["job".into()];
        local
            .inputs
            .push(Input::new("data.txt", CAT_INPUT.to_vec()));
        local.limits.fuel = FUEL;
        local.limits.memory_bytes = 16 << 20;
        executor.run(&local).expect("local run")
    })
    .await
    .expect("local run finished")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_mode_is_refused_unless_the_genesis_allows_it() {
    let market = FakeMarket::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let info = market.info().await;
    assert!(!info.allow_faulty_providers);
    for mode in FaultMode::ALL {
        let plan = FaultPlan::always(mode);
        let refused = ProviderAgent::start(config(info.clone(), "cheat", dir.path(), Some(plan)))
            .await
            .err()
            .expect("a faulty provider must not start here");
        let text = refused.to_string();
        assert!(
            matches!(refused, ProviderError::FaultsNotAllowed { .. }),
            "{text}"
        );
        assert!(text.contains(mode.name()), "{text}");
        assert!(text.contains("test networks only"), "{text}");
        assert!(text.contains("allow_faulty_providers"), "{text}");
    }
    assert!(
        !dir.path().join("provider.json").exists(),
        "a refused agent starts nothing"
    );
    // The same market serves an honest provider.
    let honest = ProviderAgent::start(config(info, "honest", dir.path(), None))
        .await
        .expect("an honest provider starts");
    honest.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_output_signs_a_consistent_result_no_one_else_produces() {
    let mut market = FakeMarket::start().await;
    let plan = Some(FaultPlan::always(FaultMode::WrongOutput));
    let (a, _dir_a) = start_faulty(&market, "cheat a", plan).await;
    let (b, _dir_b) = start_faulty(&market, "cheat b", plan).await;
    let mut digests = Vec::new();
    for provider in [&a, &b] {
        let me = provider.account();
        market.wait_for_ask(&me).await;
        let order_id = assign_cat(&mut market, &me).await;
        let delivery = next_delivery(&mut market).await;
        // Outputs fetched from the provider hash to its receipt: the output check passes.
        let outputs = market.check_delivery(&delivery, &me, order_id).await;
        let truth = honest(order_id).await;
        assert_ne!(
            delivery.receipt.body.result_digest, truth.digest,
            "a wrong result"
        );
        assert_eq!(
            delivery.receipt.body.fuel_used, truth.fuel_used,
            "it did run"
        );
        assert_eq!(delivery.stdout.data, CAT_INPUT, "stdout looks honest");
        assert_eq!(outputs.len(), 1);
        assert!(outputs[0].data.starts_with(CAT_INPUT) && outputs[0].data != CAT_INPUT);
        digests.push((order_id, delivery.receipt.body.result_digest));
    }
    // Same job, different orders: compare each with the other's honest digest too.
    assert_ne!(digests[0].1, digests[1].1, "two cheaters never agree");
    for provider in [a, b] {
        let stats = provider.shutdown().await.expect("clean shutdown");
        assert_eq!((stats.delivered, stats.misbehaved), (1, 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_work_delivers_a_made_up_result_without_fetching_anything() {
    let mut market = FakeMarket::start().await;
    let plan = Some(FaultPlan::always(FaultMode::SkipWork));
    let (provider, _dir) = start_faulty(&market, "lazy", plan).await;
    let me = provider.account();
    market.wait_for_ask(&me).await;
    let order_id = assign_cat(&mut market, &me).await;
    let delivery = next_delivery(&mut market).await;
    let outputs = market.check_delivery(&delivery, &me, order_id).await;
    assert!(outputs.is_empty());
    assert_eq!(delivery.exit_code, 0);
    assert!(!delivery.stdout.data.is_empty() && delivery.stdout.data != CAT_INPUT);
    let fuel = delivery.receipt.body.fuel_used;
    assert!(fuel.0 > 0 && fuel <= FUEL, "{fuel:?}");
    assert_eq!(delivery.fuel_used, fuel);
    assert_eq!(
        delivery.receipt.body.module,
        agora_core::Hash::of(&cat_module())
    );
    let truth = honest(order_id).await;
    assert_ne!(delivery.receipt.body.result_digest, truth.digest);
    // It never even fetched the module or the input.
    let store = provider.net().store();
    assert!(!store.contains(&Hash::of(&cat_module())));
    assert!(!store.contains(&Hash::of(CAT_INPUT)));
    provider.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_delivers_the_receipt_then_serves_nothing_and_stops_heartbeating() {
    let mut market = FakeMarket::start().await;
    let plan = Some(FaultPlan::always(FaultMode::Silent));
    let (provider, _dir) = start_faulty(&market, "silent", plan).await;
    let me = provider.account();
    market.wait_for_ask(&me).await;
    let (_, inputs) = cat_inputs(&market);
    let module = note_module();
    market.put(&module);
    let order = market.order(&Keypair::from_seed("buyer"), &module, inputs, FUEL);
    let order_id = assign(&mut market, &me, order).await;
    let delivery = next_delivery(&mut market).await;
    delivery
        .receipt
        .verify(&market.chain)
        .expect("a signed receipt");
    let truth = honest_run(order_id, module).await;
    assert_eq!(truth.outputs.len(), 1, "{truth:?}");
    assert_eq!(
        delivery.receipt.body.result_digest, truth.digest,
        "the receipt is honest"
    );
    assert_eq!(delivery.outputs.len(), 1);
    let peer = agora_net::peer_id_of(&me).expect("peer id");
    let fetched = tokio::time::timeout(
        Duration::from_secs(10),
        market.net.fetch_blob(peer, delivery.outputs[0].hash),
    )
    .await
    .expect("the fetch ends");
    assert!(
        fetched.is_err(),
        "the output must not be served: {fetched:?}"
    );
    // No more heartbeats for it (the assignment asked for one every 100 ms).
    if let Some(message) = market.next_message_within(Duration::from_millis(600)).await {
        match message.message {
            ToMarket::Heartbeat(beat) => {
                assert_ne!(beat.body.order_id, order_id, "heartbeat after delivery")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    provider.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_misbehaves_on_exactly_the_orders_its_draw_picks() {
    let mut market = FakeMarket::start().await;
    let plan = FaultPlan::with_rate(FaultMode::WrongOutput, 0.5).expect("a rate");
    let (provider, _dir) = start_faulty(&market, "sometimes", Some(plan)).await;
    let me = provider.account();
    market.wait_for_ask(&me).await;
    // Three orders the draw picks and three it spares, known before they are assigned.
    let (mut picked, mut spared) = (Vec::new(), Vec::new());
    while picked.len() < 3 || spared.len() < 3 {
        let order = cat_order(&market);
        let side = if plan.strikes(&me, &signed_order_id(&order)) {
            &mut picked
        } else {
            &mut spared
        };
        if side.len() < 3 {
            side.push(order);
        }
    }
    for (order, cheats) in picked
        .into_iter()
        .map(|o| (o, true))
        .chain(spared.into_iter().map(|o| (o, false)))
    {
        let order_id = assign(&mut market, &me, order).await;
        let delivery = next_delivery(&mut market).await;
        market.check_delivery(&delivery, &me, order_id).await;
        let truth = honest(order_id).await;
        let wrong = delivery.receipt.body.result_digest != truth.digest;
        assert_eq!(wrong, cheats, "order {order_id}");
    }
    assert_eq!(provider.stats().misbehaved, 3);
    provider.shutdown().await.expect("clean shutdown");
}
