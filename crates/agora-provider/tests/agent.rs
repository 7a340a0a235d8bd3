//! The provider agent against a stand-in market on loopback: asks, assignments, runs,
//! heartbeats, deliveries with verifiable receipts, every way an assignment is refused,
//! every way a running job is halted (abort, a heartbeat refusal, shutdown) — and the
//! assignment → delivery latency benchmark (ignored by default).

mod support;

use std::time::{Duration, Instant};

use agora_core::{Amount, Fuel, Hash, Keypair, Price};
use agora_exec::{ExecConfig, Executor, Input, WasmExecutor, WasmModule};
use agora_proto::order::InputRef;
use agora_proto::wire::{ProviderReply, ToMarket, ToProvider};
use agora_provider::{
    CapacityOverrides, JobStats, MarketLink, ProviderAgent, ProviderConfig, RunningProvider,
};
use support::{CAT_INPUT, FakeMarket, FromProvider, ack, cat_module, refuse, spin_module};

const PRICE: Price = Price(500);
/// A spin job that outlasts a few round trips (about 0.5 s here).
const SHORT_SPIN: Fuel = Fuel(300_000_000);
/// A spin job that is still running after an abort and a re-assignment (about 1.5 s here).
const LONG_SPIN: Fuel = Fuel::compute_units(1);
/// A spin job that only a halt ends within a test's lifetime (its wall-clock limit is
/// five minutes, its fuel far more).
const ENDLESS_SPIN: Fuel = Fuel::compute_units(10_000);
/// How soon a halted job's slot must be free again: its sandbox stops within an epoch
/// tick (10 ms); the rest is slack for a loaded machine.
const PROMPT: Duration = Duration::from_secs(1);

async fn start_provider(
    market: &FakeMarket,
    seed: &str,
    slots: u32,
) -> (RunningProvider, tempfile::TempDir) {
    start_provider_with(market, seed, slots, |_| {}).await
}

async fn start_provider_with(
    market: &FakeMarket,
    seed: &str,
    slots: u32,
    configure: impl FnOnce(&mut ProviderConfig),
) -> (RunningProvider, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ProviderConfig::new(
        Keypair::from_seed(seed),
        dir.path(),
        MarketLink::Direct(market.info().await),
        PRICE,
    );
    // What the machine's power costs is not the subject here: no floor under PRICE.
    config.cost.electricity_per_kwh = Amount::ZERO;
    config.region = Some("eu".into());
    config.overrides = CapacityOverrides {
        cpus: Some(2),
        memory_bytes: Some(1 << 30),
        disk_bytes: Some(1 << 30),
        slots: Some(slots),
    };
    config.ask_interval = Duration::from_millis(300);
    configure(&mut config);
    let provider = ProviderAgent::start(config).await.expect("provider starts");
    (provider, dir)
}

/// Acknowledges heartbeats until the job's first one, then gives its sandbox time to be
/// well into the spin (fetching a cached blob takes milliseconds).
async fn wait_until_spinning(market: &mut FakeMarket) {
    let beat = market.next_message().await;
    assert!(
        matches!(beat.message, ToMarket::Heartbeat(_)),
        "{:?}",
        beat.message
    );
    ack(beat.responder);
    let until = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Some(message) = market
        .next_message_within(until.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        assert!(matches!(message.message, ToMarket::Heartbeat(_)));
        ack(message.responder);
    }
}

/// The next delivery or failure, acknowledging heartbeats; `None` if none comes in `wait`.
async fn outcome_within(market: &mut FakeMarket, wait: Duration) -> Option<FromProvider> {
    let until = tokio::time::Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        let message = market.next_message_within(left).await?;
        if matches!(message.message, ToMarket::Heartbeat(_)) {
            ack(message.responder);
            continue;
        }
        return Some(message);
    }
}

/// The counters once no job is running any more (the agent counts a delivery when the
/// market's acknowledgement reaches it, a moment after the market sent it).
async fn settled_stats(provider: &RunningProvider) -> JobStats {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = provider.stats();
        if stats.running == 0 || tokio::time::Instant::now() > deadline {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn declined(reply: ProviderReply) -> String {
    match reply {
        ProviderReply::Declined { reason } => reason,
        ProviderReply::Accepted => panic!("expected a decline"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ask_never_goes_below_break_even_plus_the_margin() {
    let mut market = FakeMarket::start().await;
    // 1 AGR an hour of hardware: 10⁹ / 3600 / cores base units per CU (138 889 on two
    // cores), above PRICE on any machine of fewer than 555 cores.
    let (provider, _dir) = start_provider_with(&market, "provider costly", 2, |config| {
        config.cost.amortization_per_hour = Amount::agr(1);
        config.cost.milliwatts = Some(1);
        config.cost.electricity_per_kwh = Amount::ZERO;
    })
    .await;
    let economics = provider.economics();
    let cost = &economics.cost;
    assert_eq!(cost.power_source, agora_provider::PowerSource::Configured);
    let share = u128::from(cost.cu_share_ppm);
    let expected = (share * 1_000_000_000 * 1_000_000).div_ceil(3_600_000_000_000_000);
    assert_eq!(u128::from(cost.break_even.0), expected, "{cost:?}");
    assert!(cost.floor > PRICE, "{cost:?}");
    let offer = market.wait_for_ask(&provider.account()).await;
    assert_eq!(
        offer.body.ask.prices.values().copied().collect::<Vec<_>>(),
        vec![cost.floor],
        "the ask is lifted to the floor"
    );
    assert_eq!(provider.status().await.price, cost.floor);
    provider.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_and_its_receipt_checks_out() {
    let mut market = FakeMarket::start().await;
    let (provider, dir) = start_provider(&market, "provider one", 2).await;
    let me = provider.account();

    let offer = market.wait_for_ask(&me).await;
    let ask = &offer.body.ask;
    assert_eq!(
        ask.prices.values().copied().collect::<Vec<_>>(),
        vec![PRICE]
    );
    assert_eq!(ask.capacity.cpu_millis, 2000);
    assert!(ask.features.contains("wasm"));
    assert_eq!(ask.attributes.get("region").map(String::as_str), Some("eu"));
    assert!(ask.expires_ms > support::now_ms());
    let discovery = agora_provider::DiscoveryFile::read(dir.path()).expect("provider.json");
    assert_eq!(discovery.account, me);
    assert_eq!(discovery.pid, std::process::id());

    let module = cat_module();
    market.put(&module);
    let input = market.put(CAT_INPUT);
    let buyer = Keypair::from_seed("buyer");
    let inputs = vec![InputRef {
        name: "data.txt".into(),
        hash: input,
        size: CAT_INPUT.len() as u64,
        sealed: false,
    }];
    let order = market.order(&buyer, &module, inputs, Fuel(50_000_000));
    let key = market.key.clone();
    let assign = market.assignment(&key, order, me, PRICE);
    let order_id = assign.body.order_id;
    assert_eq!(
        market.send(&me, ToProvider::Assign(assign)).await,
        ProviderReply::Accepted
    );

    let (outcome, mut heartbeats) = market.next_outcome().await;
    let ToMarket::Deliver(delivery) = outcome.message else {
        panic!("expected a delivery, got {:?}", outcome.message);
    };
    let outputs = market.check_delivery(&delivery, &me, order_id).await;
    ack(outcome.responder);
    assert_eq!(delivery.exit_code, 0);
    assert_eq!(delivery.stdout.data, CAT_INPUT);
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].data, CAT_INPUT);

    // Any honest provider gets the same digest: the job id is the order id.
    let local_module = module.clone();
    let expected = tokio::task::spawn_blocking(move || {
        let executor = WasmExecutor::new(ExecConfig::default()).expect("executor");
        let mut local = executor.job(order_id, WasmModule::new(local_module));
        local.args = vec!["job".into()];
        local
            .inputs
            .push(Input::new("data.txt", CAT_INPUT.to_vec()));
        local.limits.fuel = Fuel(50_000_000);
        local.limits.memory_bytes = 16 << 20;
        executor.run(&local).expect("local run")
    })
    .await
    .expect("local run finished");
    assert_eq!(expected.digest, delivery.receipt.body.result_digest);
    assert_eq!(expected.fuel_used, delivery.receipt.body.fuel_used);

    // The first heartbeat leaves when the job starts; allow it to trail the delivery.
    while heartbeats == 0 {
        let Some(message) = market.next_message_within(Duration::from_secs(2)).await else {
            break;
        };
        if let ToMarket::Heartbeat(beat) = &message.message {
            assert_eq!(beat.body.order_id, order_id);
            assert_eq!(beat.signer, me);
            heartbeats += 1;
        }
        ack(message.responder);
    }
    assert!(heartbeats >= 1, "no heartbeat was sent");

    let stats = settled_stats(&provider).await;
    assert_eq!((stats.accepted, stats.delivered, stats.failed), (1, 1, 0));
    assert_eq!(stats.billed, PRICE.cost(expected.fuel_used).unwrap());
    let status = provider.status().await;
    assert_eq!(status.price, PRICE);
    assert!(status.ledger.is_none() && status.market_error.is_some());

    provider.shutdown().await.expect("clean shutdown");
    assert!(!dir.path().join("provider.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_foreign_assignments_are_declined() {
    let mut market = FakeMarket::start().await;
    let (provider, _dir) = start_provider(&market, "provider two", 1).await;
    let me = provider.account();
    market.wait_for_ask(&me).await;
    let module = cat_module();
    let buyer = Keypair::from_seed("buyer");
    let key = market.key.clone();

    let impostor = Keypair::from_seed("impostor");
    let order = market.order(&buyer, &module, vec![], Fuel(50_000_000));
    let forged = market.assignment(&impostor, order, me, PRICE);
    let reason = declined(market.send(&me, ToProvider::Assign(forged)).await);
    assert!(reason.contains("not from the market"), "{reason}");

    let mut order = market.order(&buyer, &module, vec![], Fuel(50_000_000));
    order.body.label = "changed after signing".into();
    let tampered = market.assignment(&key, order, me, PRICE);
    let reason = declined(market.send(&me, ToProvider::Assign(tampered)).await);
    assert!(reason.contains("buyer's order signature"), "{reason}");

    let order = market.order(&buyer, &module, vec![], Fuel(50_000_000));
    let elsewhere = market.assignment(&key, order, Keypair::from_seed("other").account(), PRICE);
    let reason = declined(market.send(&me, ToProvider::Assign(elsewhere)).await);
    assert!(reason.contains("not this one"), "{reason}");

    let stray_abort = market.abort(&impostor, Hash::of(b"any"));
    assert!(declined(market.send(&me, stray_abort).await).contains("not from the market"));

    // Garbage gets an error answer, not a crash.
    let peer = agora_net::peer_id_of(&me).unwrap();
    assert!(market.net.request(peer, b"garbage".to_vec()).await.is_err());

    let stats = provider.stats();
    assert_eq!((stats.accepted, stats.declined), (0, 3));
    provider.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_enforced_and_job_faults_are_reported_as_deterministic() {
    let mut market = FakeMarket::start().await;
    let (provider, _dir) = start_provider(&market, "provider three", 1).await;
    let me = provider.account();
    market.wait_for_ask(&me).await;
    let buyer = Keypair::from_seed("buyer");
    let key = market.key.clone();
    let spin = spin_module();
    market.put(&spin);
    let cat = cat_module();
    market.put(&cat);

    let spin_order = market.order(&buyer, &spin, vec![], SHORT_SPIN);
    let first = market.assignment(&key, spin_order, me, PRICE);
    let first_id = first.body.order_id;
    assert_eq!(
        market.send(&me, ToProvider::Assign(first)).await,
        ProviderReply::Accepted
    );

    let cat_order = market.order(&buyer, &cat, vec![], Fuel(50_000_000));
    let second = market.assignment(&key, cat_order.clone(), me, PRICE);
    let reason = declined(market.send(&me, ToProvider::Assign(second)).await);
    assert!(reason.contains("at capacity"), "{reason}");

    let (outcome, _) = market.next_outcome().await;
    let ToMarket::Failed(failure) = outcome.message else {
        panic!("expected a failure, got {:?}", outcome.message);
    };
    ack(outcome.responder);
    failure.verify(&market.chain).expect("failure signed");
    assert_eq!(failure.signer, me);
    assert_eq!(failure.body.order_id, first_id);
    assert!(failure.body.deterministic);
    assert!(
        failure.body.reason.contains("out of fuel"),
        "{}",
        failure.body.reason
    );
    assert_eq!(failure.body.fuel_used, SHORT_SPIN);

    // The slot is free again: the same order is now taken. (The cat job without its
    // input exits non-zero; that is still a result, delivered with a receipt.)
    let retry = market.assignment(&key, cat_order, me, PRICE);
    let retry_id = retry.body.order_id;
    assert_eq!(
        market.send(&me, ToProvider::Assign(retry)).await,
        ProviderReply::Accepted
    );
    let (outcome, _) = market.next_outcome().await;
    let ToMarket::Deliver(delivery) = outcome.message else {
        panic!("expected a delivery, got {:?}", outcome.message);
    };
    market.check_delivery(&delivery, &me, retry_id).await;
    assert_ne!(delivery.exit_code, 0);
    ack(outcome.responder);

    let stats = settled_stats(&provider).await;
    assert_eq!(
        (
            stats.accepted,
            stats.declined,
            stats.delivered,
            stats.failed
        ),
        (2, 1, 1, 1)
    );
    provider.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_jobs_stop_reporting() {
    let mut market = FakeMarket::start().await;
    let (provider, _dir) = start_provider(&market, "provider four", 1).await;
    let me = provider.account();
    market.wait_for_ask(&me).await;
    let buyer = Keypair::from_seed("buyer");
    let key = market.key.clone();
    let spin = spin_module();
    market.put(&spin);

    let order = market.order(&buyer, &spin, vec![], LONG_SPIN);
    let assign = market.assignment(&key, order, me, PRICE);
    let order_id = assign.body.order_id;
    assert_eq!(
        market.send(&me, ToProvider::Assign(assign)).await,
        ProviderReply::Accepted
    );
    let abort = market.abort(&key, order_id);
    assert_eq!(market.send(&me, abort).await, ProviderReply::Accepted);

    // Nothing but (at most a stray) heartbeat may follow an abort.
    while let Some(message) = market.next_message_within(Duration::from_secs(2)).await {
        assert!(
            matches!(message.message, ToMarket::Heartbeat(_)),
            "{:?}",
            message.message
        );
        ack(message.responder);
    }
    let stats = settled_stats(&provider).await;
    assert_eq!(
        (stats.aborted, stats.failed, stats.delivered, stats.running),
        (1, 0, 0, 0)
    );
    provider.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_that_does_not_match_its_hash_is_refused() {
    let mut market = FakeMarket::start().await;
    let (provider, _dir) = start_provider(&market, "provider five", 1).await;
    let me = provider.account();
    market.wait_for_ask(&me).await;
    let module = cat_module();
    // The market's store holds other bytes under the module's name.
    let claimed = Hash::of(&module);
    let path = market.net.store().path_of(&claimed);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"not the module").unwrap();

    let buyer = Keypair::from_seed("buyer");
    let key = market.key.clone();
    let order = market.order(&buyer, &module, vec![], Fuel(50_000_000));
    let assign = market.assignment(&key, order, me, PRICE);
    assert_eq!(
        market.send(&me, ToProvider::Assign(assign)).await,
        ProviderReply::Accepted
    );
    let (outcome, _) = market.next_outcome().await;
    let ToMarket::Failed(failure) = outcome.message else {
        panic!("expected a failure, got {:?}", outcome.message);
    };
    ack(outcome.responder);
    assert!(
        !failure.body.deterministic,
        "the market's bad blob is not the job's fault"
    );
    assert!(
        failure.body.reason.contains("hashing to"),
        "{}",
        failure.body.reason
    );
    assert!(!provider.net().store().contains(&claimed));
    provider.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_assignments_never_exceed_the_slots() {
    let mut market = FakeMarket::start().await;
    let (provider, _dir) = start_provider(&market, "provider six", 2).await;
    let me = provider.account();
    market.wait_for_ask(&me).await;
    let buyer = Keypair::from_seed("buyer");
    let key = market.key.clone();
    let spin = spin_module();
    market.put(&spin);
    let peer = agora_net::peer_id_of(&me).unwrap();

    let mut sends = Vec::new();
    for _ in 0..6 {
        let order = market.order(&buyer, &spin, vec![], SHORT_SPIN);
        let request = ToProvider::Assign(market.assignment(&key, order, me, PRICE));
        let net = market.net.clone();
        sends.push(tokio::spawn(async move {
            let reply = net
                .request(peer, agora_core::canonical::encode(&request))
                .await
                .expect("answered");
            agora_core::canonical::decode::<ProviderReply>(&reply).expect("a reply")
        }));
    }
    let mut accepted = 0;
    for send in sends {
        if send.await.expect("send task") == ProviderReply::Accepted {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 2, "two slots, two jobs");
    for _ in 0..accepted {
        let (outcome, _) = market.next_outcome().await;
        assert!(matches!(outcome.message, ToMarket::Failed(_)));
        ack(outcome.responder);
    }
    let stats = settled_stats(&provider).await;
    assert_eq!((stats.accepted, stats.declined, stats.failed), (2, 4, 2));
    provider.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_is_reserved_per_job() {
    let mut market = FakeMarket::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ProviderConfig::new(
        Keypair::from_seed("provider seven"),
        dir.path(),
        MarketLink::Direct(market.info().await),
        PRICE,
    );
    config.cost.electricity_per_kwh = Amount::ZERO;
    // Four slots, but memory for only two of the 16 MiB jobs.
    config.overrides = CapacityOverrides {
        cpus: Some(4),
        memory_bytes: Some(40 << 20),
        disk_bytes: Some(1 << 30),
        slots: Some(4),
    };
    let provider = ProviderAgent::start(config).await.expect("provider starts");
    let me = provider.account();
    market.wait_for_ask(&me).await;
    let buyer = Keypair::from_seed("buyer");
    let key = market.key.clone();
    let spin = spin_module();
    market.put(&spin);
    let mut replies = Vec::new();
    for _ in 0..3 {
        let order = market.order(&buyer, &spin, vec![], SHORT_SPIN);
        let assign = market.assignment(&key, order, me, PRICE);
        replies.push(market.send(&me, ToProvider::Assign(assign)).await);
    }
    assert_eq!(
        replies[..2],
        [ProviderReply::Accepted, ProviderReply::Accepted]
    );
    let reason = declined(replies[2].clone());
    assert!(reason.contains("16 MiB asked, 8 MiB free"), "{reason}");
    for _ in 0..2 {
        let (outcome, _) = market.next_outcome().await;
        ack(outcome.responder);
    }
    provider.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_aborted_then_assigned_here_again_runs_again_and_is_abortable() {
    let mut market = FakeMarket::start().await;
    let (provider, _dir) = start_provider(&market, "provider eight", 3).await;
    let me = provider.account();
    market.wait_for_ask(&me).await;
    let buyer = Keypair::from_seed("buyer");
    let key = market.key.clone();
    let spin = spin_module();
    market.put(&spin);
    let order = market.order(&buyer, &spin, vec![], LONG_SPIN);
    let first = market.assignment(&key, order.clone(), me, PRICE);
    let order_id = first.body.order_id;
    assert_eq!(
        market.send(&me, ToProvider::Assign(first)).await,
        ProviderReply::Accepted
    );
    let abort = market.abort(&key, order_id);
    assert_eq!(market.send(&me, abort).await, ProviderReply::Accepted);
    // The market gives the order back to this provider (a second attempt): it is a new
    // run, not a duplicate of the aborted one.
    let mut again = market.assignment(&key, order, me, PRICE).body;
    again.attempt = 1;
    let again = agora_core::Signed::sign(&key, &market.chain, 99, again);
    assert_eq!(
        market.send(&me, ToProvider::Assign(again)).await,
        ProviderReply::Accepted
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let abort = market.abort(&key, order_id);
    assert_eq!(market.send(&me, abort).await, ProviderReply::Accepted);
    let stats = settled_stats(&provider).await;
    assert_eq!((stats.accepted, stats.aborted, stats.running), (2, 2, 0));
    provider.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_job_stops_and_its_slot_takes_the_next_assignment() {
    let mut market = FakeMarket::start().await;
    let (provider, _dir) = start_provider(&market, "provider nine", 1).await;
    let me = provider.account();
    let offer = market.wait_for_ask(&me).await;
    // One slot on two cores: the ask offers one core, so the market's matching (one
    // core per job) never assigns this agent a job it would have to decline.
    assert_eq!(offer.body.ask.capacity.cpu_millis, 1000);
    let buyer = Keypair::from_seed("buyer");
    let key = market.key.clone();
    let spin = spin_module();
    market.put(&spin);
    let cat = cat_module();
    market.put(&cat);

    let order = market.order(&buyer, &spin, vec![], ENDLESS_SPIN);
    let assign = market.assignment(&key, order, me, PRICE);
    let spin_id = assign.body.order_id;
    assert_eq!(
        market.send(&me, ToProvider::Assign(assign)).await,
        ProviderReply::Accepted
    );
    wait_until_spinning(&mut market).await;

    // The market counts the slot free as soon as it sent the abort, and may assign the
    // next order at once: the agent takes it instead of declining "at capacity".
    let abort = market.abort(&key, spin_id);
    let aborted_at = Instant::now();
    assert_eq!(market.send(&me, abort).await, ProviderReply::Accepted);
    let next = market.assignment(
        &key,
        market.order(&buyer, &cat, vec![], Fuel(50_000_000)),
        me,
        PRICE,
    );
    let next_id = next.body.order_id;
    assert_eq!(
        market.send(&me, ToProvider::Assign(next)).await,
        ProviderReply::Accepted
    );
    let taken_after = aborted_at.elapsed();
    assert!(
        taken_after < PROMPT,
        "the slot came back {taken_after:?} after the abort"
    );

    // Only the new job reports; the aborted one is never delivered nor failed.
    let outcome = outcome_within(&mut market, support::PATIENCE)
        .await
        .expect("the next job reports");
    let ToMarket::Deliver(delivery) = outcome.message else {
        panic!("expected a delivery, got {:?}", outcome.message);
    };
    assert_eq!(delivery.receipt.body.order_id, next_id);
    ack(outcome.responder);
    let stats = settled_stats(&provider).await;
    assert_eq!(
        (
            stats.accepted,
            stats.aborted,
            stats.delivered,
            stats.failed,
            stats.declined
        ),
        (2, 1, 1, 0, 0)
    );
    eprintln!("an aborted job's slot took the next assignment {taken_after:?} after the abort");
    provider.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_the_market_disowns_stops_the_job() {
    let mut market = FakeMarket::start().await;
    let (provider, _dir) = start_provider(&market, "provider ten", 1).await;
    let me = provider.account();
    market.wait_for_ask(&me).await;
    let buyer = Keypair::from_seed("buyer");
    let key = market.key.clone();
    let spin = spin_module();
    market.put(&spin);
    let order = market.order(&buyer, &spin, vec![], ENDLESS_SPIN);
    let assign = market.assignment(&key, order, me, PRICE);
    let order_id = assign.body.order_id;
    assert_eq!(
        market.send(&me, ToProvider::Assign(assign)).await,
        ProviderReply::Accepted
    );

    // Another refusal is not a reason to stop: the heartbeats go on.
    let first = market.next_message().await;
    assert!(matches!(first.message, ToMarket::Heartbeat(_)));
    refuse(
        first.responder,
        "heartbeat rejected: a made-up signature problem",
    );
    let second = market.next_message().await;
    assert!(matches!(second.message, ToMarket::Heartbeat(_)));
    // What agora-node answers once the order went to someone else.
    refuse(
        second.responder,
        &format!("order {order_id} is not assigned to {me}; stop running it"),
    );
    let refused_at = Instant::now();
    while provider.stats().running > 0 {
        assert!(
            refused_at.elapsed() < PROMPT,
            "the disowned job still holds its slot after {PROMPT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let freed_after = refused_at.elapsed();

    // Not delivered, not reported as failed; the slot takes the next job.
    assert!(
        outcome_within(&mut market, Duration::from_millis(500))
            .await
            .is_none(),
        "a disowned job reported"
    );
    let next = market.assignment(
        &key,
        market.order(&buyer, &spin, vec![], SHORT_SPIN),
        me,
        PRICE,
    );
    assert_eq!(
        market.send(&me, ToProvider::Assign(next)).await,
        ProviderReply::Accepted
    );
    let outcome = outcome_within(&mut market, support::PATIENCE)
        .await
        .expect("the next job reports");
    assert!(matches!(outcome.message, ToMarket::Failed(_)));
    ack(outcome.responder);
    let stats = settled_stats(&provider).await;
    assert_eq!(
        (stats.accepted, stats.aborted, stats.failed, stats.delivered),
        (2, 1, 1, 0)
    );
    eprintln!("a disowned job freed its slot {freed_after:?} after the refusal");
    provider.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_a_job_past_the_grace_and_tells_the_market() {
    let mut market = FakeMarket::start().await;
    let grace = Duration::from_millis(300);
    let (provider, dir) = start_provider_with(&market, "provider eleven", 1, |config| {
        config.shutdown_grace = grace;
    })
    .await;
    let me = provider.account();
    market.wait_for_ask(&me).await;
    let buyer = Keypair::from_seed("buyer");
    let key = market.key.clone();
    let spin = spin_module();
    market.put(&spin);
    let order = market.order(&buyer, &spin, vec![], ENDLESS_SPIN);
    let assign = market.assignment(&key, order, me, PRICE);
    let order_id = assign.body.order_id;
    assert_eq!(
        market.send(&me, ToProvider::Assign(assign)).await,
        ProviderReply::Accepted
    );
    wait_until_spinning(&mut market).await;

    let stopping = Instant::now();
    let shutdown = tokio::spawn(provider.shutdown());
    // Past the grace the job is cancelled and given up, so the market can reassign it
    // at once rather than after its heartbeats fall silent.
    let outcome = outcome_within(&mut market, support::PATIENCE)
        .await
        .expect("the cut-off job is reported");
    let ToMarket::Failed(failure) = outcome.message else {
        panic!("expected a failure, got {:?}", outcome.message);
    };
    ack(outcome.responder);
    assert_eq!(failure.body.order_id, order_id);
    assert!(!failure.body.deterministic, "not the job's fault");
    assert!(
        failure.body.reason.contains("shut down"),
        "{}",
        failure.body.reason
    );
    let stats = shutdown
        .await
        .expect("shutdown task")
        .expect("clean shutdown");
    let took = stopping.elapsed();
    assert!(
        took < grace + Duration::from_secs(2),
        "shutdown took {took:?} with a {grace:?} grace"
    );
    assert_eq!((stats.failed, stats.aborted, stats.running), (1, 0, 0));
    assert!(!dir.path().join("provider.json").exists());
    eprintln!("shutdown with a running job took {took:?} (grace {grace:?})");
}

/// Warm runs in the latency benchmark.
const RUNS: usize = 40;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// Benchmark: assignment → delivery latency, cold (fetch + compile) and warm, beside the
/// same job run by the executor alone. Figures in docs/benchmarks-provider.md; run with
/// `cargo test -p agora-provider --test agent latency -- --ignored --nocapture`.
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
    config.cost.electricity_per_kwh = Amount::ZERO;
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
            sealed: false,
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
