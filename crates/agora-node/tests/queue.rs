//! Orders that find every capable provider busy wait in the market's queue instead of
//! being refunded: they are placed oldest first as capacity frees, refunded with the
//! why-no-match explanation if their deadline passes first, and can be cancelled while
//! they wait. Orders no provider could ever take are still refunded at once.
//!
//! The test provider's ask has 4 GiB of memory; these orders demand 3 GiB, so it has
//! room for one at a time: a one-slot market.

mod common;

use std::time::Duration;

use agora_core::{ChainId, Hash, Keypair, Price, Signed};
use agora_ledger::Tx;
use agora_node::MarketConfig;
use agora_proto::api::{CancelRequest, OrderView};
use agora_proto::{CancelOrder, OrderState, SignedOrder, hexed};
use common::*;

/// What providers ask per CU; orders cap at twice this (see `order_for`).
const PRICE: Price = Price(1_000_000_000_000);
/// Memory each order here reserves: more than half the provider's 4 GiB.
const ONE_SLOT: u64 = 3 << 30;
/// How waiting orders' events begin.
const WAITING: &str = "waiting for capacity";

/// A one-slot order for `module`, as `order_for` makes it but demanding [`ONE_SLOT`]
/// memory and with `tweak` applied.
fn slot_order(
    buyer: &Keypair,
    chain: &ChainId,
    module: &[u8],
    (salt, nonce): (u64, u64),
    deadline_ms: u64,
    tweak: impl FnOnce(&mut agora_proto::OrderRequest),
) -> (SignedOrder, Tx) {
    let (order, _) = order_for(buyer, chain, module, salt, nonce, deadline_ms);
    let mut body = order.body;
    body.demand.memory_bytes = ONE_SLOT;
    tweak(&mut body);
    let order = Signed::sign(buyer, chain, salt, body);
    let escrow = escrow_for(buyer, &order, nonce);
    (order, escrow)
}

/// Submits and returns the order's id.
async fn submit(api: &Api, (order, escrow): &(SignedOrder, Tx)) -> Hash {
    let (status, body) = api.submit(order, escrow).await;
    assert_eq!(status, 201, "{body}");
    agora_proto::signed_order_id(order)
}

/// Events of `view` whose detail starts with `prefix`.
fn events_starting(view: &OrderView, prefix: &str) -> usize {
    view.events
        .iter()
        .filter(|e| e.detail.starts_with(prefix))
        .count()
}

/// When `view` first entered `state`.
fn entered(view: &OrderView, state: OrderState) -> u64 {
    view.events
        .iter()
        .find(|e| e.state == state)
        .map(|e| e.at_ms)
        .unwrap_or_else(|| panic!("never {state}: {view:?}"))
}

/// The value of an unlabelled gauge in a Prometheus text exposition.
fn gauge(metrics: &str, name: &str) -> Option<i64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn metrics(api: &Api) -> String {
    let resp = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .expect("GET /metrics");
    resp.text().await.expect("metrics text")
}

async fn cancel(api: &Api, buyer: &Keypair, chain: &ChainId, id: Hash) -> OrderView {
    let cancel = Signed::sign(buyer, chain, 0, CancelOrder { order_id: id });
    let (status, body) = api
        .post(
            &format!("/v1/orders/{id}/cancel"),
            &CancelRequest {
                cancel: hexed::encode(&cancel),
            },
        )
        .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).expect("an OrderView")
}

/// Waits until the order is in `state`.
async fn wait_state(api: &Api, id: &Hash, state: OrderState) {
    for _ in 0..200 {
        if api.order(id).await.state == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("order never {state}: {:?}", api.order(id).await);
}

/// A node whose attempts survive long silences, so a `Silent` provider holds its slot
/// for the whole test.
fn patient(dir: &std::path::Path) -> MarketConfig {
    let mut cfg = config(dir);
    cfg.heartbeat = Duration::from_secs(20);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_orders_on_one_slot_all_settle_one_after_another() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // The provider holds each job for a while after one heartbeat: keep that within the
    // silence limit.
    cfg.heartbeat = Duration::from_secs(2);
    let node = start(cfg).await;
    let api = Api::new(&node);
    let keys = keys();
    let chain = ChainId::new(node.chain_id());
    let provider = FakeProvider::start(
        &node,
        keys.users[2].clone(),
        PRICE,
        Behavior::HonestAfter(400),
    )
    .await;
    api.wait_providers(1).await;
    let module = upload_hello(&api).await;
    let buyer = &keys.users[0];
    let nonce = api.account(&buyer.account()).await.next_nonce;
    let deadline = now_ms() + 60_000;
    let mut ids = Vec::new();
    for i in 0..5u64 {
        let order = slot_order(buyer, &chain, &module, (i, nonce + i), deadline, |_| {});
        ids.push(submit(&api, &order).await);
        // Distinct submission times, so oldest-first is observable.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let text = metrics(&api).await;
    let waiting = gauge(&text, "agora_orders_waiting").expect("the waiting gauge");
    assert!((1..=4).contains(&waiting), "{waiting} waiting\n{text}");

    let mut views = Vec::new();
    for id in &ids {
        let view = api.wait_final(id, Duration::from_secs(30)).await;
        assert_eq!(view.state, OrderState::Settled, "{view:?}");
        views.push(view);
    }
    // One at a time, in submission order: each is taken only after the previous settled.
    for pair in views.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        assert!(
            entered(after, OrderState::Matched) >= entered(before, OrderState::Settled),
            "overlapping or out of order:\n{before:?}\n{after:?}"
        );
    }
    assert_eq!(events_starting(&views[0], WAITING), 0, "{:?}", views[0]);
    for view in &views[1..] {
        // Waiting is recorded once, however often the queue was retried.
        assert_eq!(events_starting(view, WAITING), 1, "{view:?}");
    }
    let spent: u64 = views.iter().map(|v| v.cost.0).sum();
    assert_eq!(
        api.account(&buyer.account()).await.balance.0,
        agora_node::config::DEV_USER_FUNDS.0 - spent,
        "each paid for its own run, the rest came back"
    );
    let text = metrics(&api).await;
    assert_eq!(gauge(&text, "agora_orders_waiting"), Some(0), "{text}");
    provider.stop().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_still_waiting_at_its_deadline_is_refunded_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(patient(dir.path())).await;
    let api = Api::new(&node);
    let keys = keys();
    let chain = ChainId::new(node.chain_id());
    let silent = FakeProvider::start(&node, keys.users[2].clone(), PRICE, Behavior::Silent).await;
    api.wait_providers(1).await;
    let module = upload_hello(&api).await;
    let buyer = &keys.users[0];
    let nonce = api.account(&buyer.account()).await.next_nonce;
    let holder = slot_order(
        buyer,
        &chain,
        &module,
        (1, nonce),
        now_ms() + 60_000,
        |_| {},
    );
    let holder_id = submit(&api, &holder).await;
    wait_state(&api, &holder_id, OrderState::Matched).await;

    let deadline = now_ms() + 1_500;
    let late = slot_order(buyer, &chain, &module, (2, nonce + 1), deadline, |_| {});
    let late_id = submit(&api, &late).await;
    let waiting = api.order(&late_id).await;
    assert_eq!(waiting.state, OrderState::Escrowed, "{waiting:?}");
    assert_eq!(events_starting(&waiting, WAITING), 1, "{waiting:?}");
    let view = api.wait_final(&late_id, Duration::from_secs(10)).await;
    assert_eq!(view.state, OrderState::Refunded, "{view:?}");
    let reason = view.refund_reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("the deadline passed while waiting for capacity")
            && reason.contains("free memory ≥ 3 GiB"),
        "{reason}"
    );
    let finished = view.created_ms + view.latency_ms.expect("finished");
    assert!(
        (deadline..deadline + 3_000).contains(&finished),
        "refunded at {finished}, deadline {deadline}"
    );
    assert_eq!(
        view.refunded, late.0.body.escrow,
        "all of its escrow came back"
    );
    assert_eq!(events_starting(&view, WAITING), 1, "{view:?}");
    let balance = api.account(&buyer.account()).await.balance.0;
    assert_eq!(
        balance,
        agora_node::config::DEV_USER_FUNDS.0 - holder.0.body.escrow.0,
        "only the running order's escrow is still locked"
    );
    assert_eq!(
        cancel(&api, buyer, &chain, holder_id).await.state,
        OrderState::Refunded
    );
    assert_eq!(
        api.account(&buyer.account()).await.balance,
        agora_node::config::DEV_USER_FUNDS
    );
    let (_, check) = api.get("/v1/ledger/verify").await;
    assert_eq!(check["supply"]["escrow"], 0, "{check}");
    silent.stop().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_no_provider_could_serve_is_refunded_at_once_even_when_all_are_busy() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(patient(dir.path())).await;
    let api = Api::new(&node);
    let keys = keys();
    let chain = ChainId::new(node.chain_id());
    let silent = FakeProvider::start(&node, keys.users[2].clone(), PRICE, Behavior::Silent).await;
    api.wait_providers(1).await;
    let module = upload_hello(&api).await;
    let buyer = &keys.users[0];
    let nonce = api.account(&buyer.account()).await.next_nonce;
    let holder = slot_order(
        buyer,
        &chain,
        &module,
        (1, nonce),
        now_ms() + 60_000,
        |_| {},
    );
    let holder_id = submit(&api, &holder).await;
    wait_state(&api, &holder_id, OrderState::Matched).await;

    let deadline = now_ms() + 60_000;
    // Capped below the only price; and bigger than the only machine.
    let cheap = slot_order(buyer, &chain, &module, (2, nonce + 1), deadline, |b| {
        b.max_price = Price(PRICE.0 / 2);
        b.escrow = b.max_price.max_cost(b.fuel_budget).expect("fits");
    });
    let huge = slot_order(buyer, &chain, &module, (3, nonce + 2), deadline, |b| {
        b.demand.memory_bytes = 8 << 30;
    });
    for (order, excluded_by) in [(cheap, "price ≤"), (huge, "free memory ≥ 8 GiB")] {
        let started = tokio::time::Instant::now();
        let id = submit(&api, &order).await;
        let view = api.wait_final(&id, Duration::from_secs(5)).await;
        assert!(started.elapsed() < Duration::from_secs(3), "not at once");
        assert_eq!(view.state, OrderState::Refunded, "{view:?}");
        let reason = view.refund_reason.clone().unwrap_or_default();
        assert!(
            reason.starts_with("no provider can run this order") && reason.contains(excluded_by),
            "{reason}"
        );
        assert_eq!(events_starting(&view, WAITING), 0, "{view:?}");
        assert_eq!(view.refunded, order.0.body.escrow);
    }
    cancel(&api, buyer, &chain, holder_id).await;
    assert_eq!(
        api.account(&buyer.account()).await.balance,
        agora_node::config::DEV_USER_FUNDS
    );
    silent.stop().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiting_order_can_be_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(patient(dir.path())).await;
    let api = Api::new(&node);
    let keys = keys();
    let chain = ChainId::new(node.chain_id());
    let silent = FakeProvider::start(&node, keys.users[2].clone(), PRICE, Behavior::Silent).await;
    api.wait_providers(1).await;
    let module = upload_hello(&api).await;
    let buyer = &keys.users[0];
    let nonce = api.account(&buyer.account()).await.next_nonce;
    let deadline = now_ms() + 60_000;
    let holder = slot_order(buyer, &chain, &module, (1, nonce), deadline, |_| {});
    let holder_id = submit(&api, &holder).await;
    wait_state(&api, &holder_id, OrderState::Matched).await;
    let waiter = slot_order(buyer, &chain, &module, (2, nonce + 1), deadline, |_| {});
    let waiter_id = submit(&api, &waiter).await;
    assert_eq!(events_starting(&api.order(&waiter_id).await, WAITING), 1);

    let view = cancel(&api, buyer, &chain, waiter_id).await;
    assert_eq!(view.state, OrderState::Refunded, "{view:?}");
    assert_eq!(
        view.refund_reason.as_deref(),
        Some("cancelled by the buyer")
    );
    assert_eq!(
        api.account(&buyer.account()).await.balance.0,
        agora_node::config::DEV_USER_FUNDS.0 - holder.0.body.escrow.0
    );
    // Freeing the slot now finds nobody waiting: the cancelled order stays refunded.
    cancel(&api, buyer, &chain, holder_id).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let view = api.order(&waiter_id).await;
    assert_eq!(view.state, OrderState::Refunded, "{view:?}");
    assert_eq!(view.attempts, 0, "never assigned");
    assert_eq!(
        api.account(&buyer.account()).await.balance,
        agora_node::config::DEV_USER_FUNDS
    );
    silent.stop().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiting_order_survives_a_restart_and_runs_when_a_provider_has_room() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let buyer = &keys.users[0];
    let mut cfg = patient(dir.path());
    // Room for the provider to come back before resumed orders give up.
    cfg.resume_grace = Duration::from_secs(20);
    let (holder_id, waiter_id) = {
        let node = start(cfg.clone()).await;
        let api = Api::new(&node);
        let chain = ChainId::new(node.chain_id());
        let silent =
            FakeProvider::start(&node, keys.users[2].clone(), PRICE, Behavior::Silent).await;
        api.wait_providers(1).await;
        let module = upload_hello(&api).await;
        let nonce = api.account(&buyer.account()).await.next_nonce;
        let deadline = now_ms() + 60_000;
        let holder = slot_order(buyer, &chain, &module, (1, nonce), deadline, |_| {});
        let holder_id = submit(&api, &holder).await;
        wait_state(&api, &holder_id, OrderState::Matched).await;
        let waiter = slot_order(buyer, &chain, &module, (2, nonce + 1), deadline, |_| {});
        let waiter_id = submit(&api, &waiter).await;
        assert_eq!(events_starting(&api.order(&waiter_id).await, WAITING), 1);
        node.shutdown().await;
        silent.stop().await;
        (holder_id, waiter_id)
    };
    let node = start(cfg).await;
    let api = Api::new(&node);
    let chain = ChainId::new(node.chain_id());
    let view = api.order(&waiter_id).await;
    assert_eq!(view.state, OrderState::Escrowed, "{view:?}");
    let honest = FakeProvider::start(&node, keys.users[3].clone(), PRICE, Behavior::Honest).await;
    let view = api.wait_final(&waiter_id, Duration::from_secs(15)).await;
    assert_eq!(view.state, OrderState::Settled, "{view:?}");
    assert_eq!(view.provider, Some(honest.account()));
    // The order the silent provider held before the restart is still its to deliver;
    // the buyer gives up on it.
    cancel(&api, buyer, &chain, holder_id).await;
    assert_eq!(
        api.account(&buyer.account()).await.balance.0,
        agora_node::config::DEV_USER_FUNDS.0 - view.cost.0
    );
    honest.stop().await;
    node.shutdown().await;
}
