//! The market node end to end on loopback: real HTTP, real agora-net providers, real
//! executor runs and signed receipts, a real ledger.

mod common;

use std::time::Duration;

use agora_core::{ChainId, Hash, Price, Signed};
use agora_proto::api::{CancelRequest, SubmitTx};
use agora_proto::{CancelOrder, OrderState, hexed};
use common::*;

/// What providers ask per CU; orders cap at twice this.
const PRICE: Price = Price(1_000_000_000_000);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_settles_and_the_money_adds_up() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(config(dir.path())).await;
    let api = Api::new(&node);
    let keys = keys();
    let chain = ChainId::new(node.chain_id());
    let provider = FakeProvider::start(&node, keys.users[2].clone(), PRICE, Behavior::Honest).await;
    api.wait_providers(1).await;
    let module = upload(&api, output_module()).await;
    let buyer = &keys.users[0];
    let treasury = keys.treasury.account();
    let before = (
        api.account(&buyer.account()).await,
        api.account(&provider.account()).await,
        api.account(&treasury).await,
    );

    let (order, escrow) = order_for(
        buyer,
        &chain,
        &module,
        1,
        before.0.next_nonce,
        now_ms() + 60_000,
    );
    let (status, body) = api.submit(&order, &escrow).await;
    assert_eq!(status, 201, "{body}");
    let id: Hash = body["order_id"].as_str().unwrap().parse().unwrap();
    let view = api.wait_final(&id, Duration::from_secs(10)).await;
    assert_eq!(view.state, OrderState::Settled, "{view:?}");
    assert_eq!(view.provider, Some(provider.account()));
    assert!(view.cost.0 > 0, "a run costs something at this price");
    assert_eq!(
        view.cost.0 + view.refunded.0,
        order.body.escrow.0,
        "escrow = cost + refund"
    );
    let states: Vec<OrderState> = view.events.iter().map(|e| e.state).collect();
    assert_eq!(states.first(), Some(&OrderState::Escrowed));
    assert!(states.contains(&OrderState::Matched) && states.contains(&OrderState::Verifying));

    let (status, result) = api.get(&format!("/v1/orders/{id}/result")).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["stdout"], "hello agora\n");
    let stdout_hash = result["stdout_hash"].as_str().unwrap();
    let bytes = api
        .http
        .get(format!("{}/v1/blobs/{stdout_hash}", api.base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"hello agora\n");
    // The output file was fetched from the provider, hash-checked, and is served here.
    assert_eq!(result["outputs"][0]["name"], "result.txt", "{result}");
    let output_hash = result["outputs"][0]["hash"].as_str().unwrap();
    let bytes = api
        .http
        .get(format!("{}/v1/blobs/{output_hash}", api.base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"42\n");

    let after = (
        api.account(&buyer.account()).await,
        api.account(&provider.account()).await,
        api.account(&treasury).await,
    );
    assert_eq!(
        after.0.balance.0,
        before.0.balance.0 - view.cost.0,
        "the buyer pays exactly the cost"
    );
    let gained =
        (after.1.balance.0 - before.1.balance.0) + (after.2.balance.0 - before.2.balance.0);
    assert_eq!(
        gained, view.cost.0,
        "provider + treasury receive exactly the cost"
    );
    assert!(
        after.2.balance.0 > before.2.balance.0,
        "the treasury took its fee"
    );

    // The follow stream replays the history and ends with the final state.
    let sse = api
        .http
        .get(format!("{}/v1/orders/{id}/events", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        sse.contains("event: escrowed") && sse.trim_end().contains("event: settled"),
        "{sse}"
    );

    let (_, check) = api.get("/v1/ledger/verify").await;
    assert_eq!(check["verified"], true, "{check}");
    assert_eq!(check["supply"]["escrow"], 0, "no escrow left open: {check}");

    let (_, listed) = api
        .get(&format!(
            "/v1/orders?buyer={}&state=settled",
            buyer.account()
        ))
        .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let (_, providers) = api
        .get(&format!("/v1/providers/{}", provider.account()))
        .await;
    assert_eq!(providers["completed"], 1, "{providers}");
    let metrics = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("agora_orders{state=\"settled\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("agora_submit_to_settled_seconds"));
    let (_, openapi) = api.get("/openapi.json").await;
    // The served document is the one docs/http-api.md is rendered from.
    assert_eq!(
        openapi,
        serde_json::to_value(agora_node::http::openapi()).unwrap()
    );
    assert!(
        openapi["paths"]["/v1/orders/{id}/events"].is_object(),
        "{openapi}"
    );
    for schema in [
        "OrderView",
        "JobResult",
        "ApiError",
        "MarketInfo",
        "BlockView",
        "OrderState",
    ] {
        assert!(
            openapi["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
    provider.stop().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_blob_bytes = 4 * 1024;
    let node = start(cfg).await;
    let api = Api::new(&node);
    let keys = keys();
    let chain = ChainId::new(node.chain_id());
    let buyer = &keys.users[0];
    let module = upload_hello(&api).await;
    let nonce = api.account(&buyer.account()).await.next_nonce;
    let height = api.height().await;
    let deadline = now_ms() + 60_000;

    let expect = |status: u16, body: &serde_json::Value, want: u16, code: &str| {
        assert_eq!(status, want, "{body}");
        assert_eq!(body["error"], code, "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    };

    // Not hex / not an order.
    let (status, body) = api
        .post(
            "/v1/orders",
            &serde_json::json!({"order": "zz", "escrow_tx": "00"}),
        )
        .await;
    expect(status, &body, 400, "bad_request");
    // Not JSON at all.
    let resp = api
        .http
        .post(format!("{}/v1/orders", api.base))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // Wrongly signed: the body changed after signing.
    let (mut order, escrow) = order_for(buyer, &chain, &module, 1, nonce, deadline);
    order.body.label = "tampered".into();
    let (status, body) = api.submit(&order, &escrow).await;
    expect(status, &body, 400, "bad_signature");
    // Signed by someone else than the escrow's signer.
    let (order, _) = order_for(buyer, &chain, &module, 2, nonce, deadline);
    let stranger_escrow = escrow_for(&keys.users[1], &order, 0);
    let (status, body) = api.submit(&order, &stranger_escrow).await;
    expect(status, &body, 400, "escrow_mismatch");
    // An escrow for a different amount.
    let (order, _) = order_for(buyer, &chain, &module, 3, nonce, deadline);
    let mut short = order.clone();
    short.body.escrow = agora_core::Amount(order.body.escrow.0 * 2);
    let wrong_amount = escrow_for(buyer, &short, nonce);
    let (status, body) = api.submit(&order, &wrong_amount).await;
    expect(status, &body, 400, "escrow_mismatch");
    // A module the market does not have.
    let (order, escrow) = order_for(buyer, &chain, b"not uploaded", 4, nonce, deadline);
    let (status, body) = api.submit(&order, &escrow).await;
    expect(status, &body, 400, "missing_blob");
    // An escrow the ledger refuses (wrong nonce): 400 and no record left behind.
    let (order, escrow) = order_for(buyer, &chain, &module, 5, nonce + 7, deadline);
    let (status, body) = api.submit(&order, &escrow).await;
    expect(status, &body, 400, "escrow_refused");
    let (status, _) = api
        .get(&format!(
            "/v1/orders/{}",
            agora_proto::signed_order_id(&order)
        ))
        .await;
    assert_eq!(status, 404);
    // A wrongly signed transaction.
    let mut tx = escrow_for(buyer, &order, nonce);
    tx.nonce += 1;
    let (status, body) = api
        .post(
            "/v1/txs",
            &SubmitTx {
                tx: hexed::encode(&tx),
            },
        )
        .await;
    expect(status, &body, 400, "bad_signature");
    assert_eq!(api.height().await, height, "nothing reached the ledger");

    // Blobs: content under the wrong name, and over the limit.
    let (status, body) = api
        .put_blob(&Hash::of(b"other").to_string(), b"content".to_vec())
        .await;
    expect(status, &body, 400, "hash_mismatch");
    let big = vec![7u8; 8 * 1024];
    let (status, body) = api.put_blob(&Hash::of(&big).to_string(), big).await;
    expect(status, &body, 413, "blob_too_large");
    let (status, body) = api.get(&format!("/v1/blobs/{}", Hash::of(b"other"))).await;
    expect(status, &body, 404, "unknown_blob");

    // A good order with no provider is refunded at once, with the why-no-match reason;
    // submitting it again is a duplicate.
    let (order, escrow) = order_for(buyer, &chain, &module, 6, nonce, deadline);
    let (status, body) = api.submit(&order, &escrow).await;
    assert_eq!(status, 201, "{body}");
    let id = agora_proto::signed_order_id(&order);
    let view = api.wait_final(&id, Duration::from_secs(5)).await;
    assert_eq!(view.state, OrderState::Refunded);
    assert!(
        view.refund_reason
            .as_deref()
            .is_some_and(|r| r.contains("no provider")),
        "{view:?}"
    );
    let (status, body) = api.submit(&order, &escrow).await;
    expect(status, &body, 409, "duplicate_order");
    let (status, body) = api.get(&format!("/v1/orders/{id}/result")).await;
    expect(status, &body, 409, "conflict");
    let account = api.account(&buyer.account()).await;
    assert_eq!(
        account.balance,
        agora_node::config::DEV_USER_FUNDS,
        "the refund returned everything"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receipt_signed_by_another_key_is_refused_and_not_paid() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(config(dir.path())).await;
    let api = Api::new(&node);
    let keys = keys();
    let chain = ChainId::new(node.chain_id());
    let cheat =
        FakeProvider::start(&node, keys.users[2].clone(), PRICE, Behavior::ForeignSigner).await;
    api.wait_providers(1).await;
    let module = upload_hello(&api).await;
    let buyer = &keys.users[0];
    let nonce = api.account(&buyer.account()).await.next_nonce;
    let (order, escrow) = order_for(buyer, &chain, &module, 1, nonce, now_ms() + 60_000);
    let (status, body) = api.submit(&order, &escrow).await;
    assert_eq!(status, 201, "{body}");
    let view = api
        .wait_final(
            &agora_proto::signed_order_id(&order),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(view.state, OrderState::Refunded, "{view:?}");
    assert_eq!(view.cost.0, 0);
    let replies = cheat.replies.lock().unwrap().clone();
    assert!(
        matches!(replies.first(), Some(agora_proto::wire::MarketReply::Rejected { reason }) if reason.contains("not signed by the provider")),
        "{replies:?}"
    );
    let provider = api.account(&cheat.account()).await;
    assert_eq!(
        provider.balance,
        agora_node::config::DEV_USER_FUNDS,
        "the cheat was not paid"
    );
    assert_eq!(
        api.account(&buyer.account()).await.balance,
        agora_node::config::DEV_USER_FUNDS
    );
    cheat.stop().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_provider_loses_the_order_to_the_next_best() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(config(dir.path())).await;
    let api = Api::new(&node);
    let keys = keys();
    let chain = ChainId::new(node.chain_id());
    // The silent one is cheaper, so it wins first.
    let silent = FakeProvider::start(
        &node,
        keys.users[2].clone(),
        Price(PRICE.0 / 2),
        Behavior::Silent,
    )
    .await;
    let honest = FakeProvider::start(&node, keys.users[3].clone(), PRICE, Behavior::Honest).await;
    api.wait_providers(2).await;
    let module = upload_hello(&api).await;
    let buyer = &keys.users[0];
    let nonce = api.account(&buyer.account()).await.next_nonce;
    let (order, escrow) = order_for(buyer, &chain, &module, 1, nonce, now_ms() + 60_000);
    let (status, body) = api.submit(&order, &escrow).await;
    assert_eq!(status, 201, "{body}");
    // Follow it live (the silent attempt takes a few hundred ms to fail): the stream
    // carries every step in order and closes after the final one.
    let id = agora_proto::signed_order_id(&order);
    let stream = api
        .http
        .get(format!("{}/v1/orders/{id}/events", api.base))
        .send()
        .await
        .unwrap();
    let text = tokio::time::timeout(Duration::from_secs(10), stream.text())
        .await
        .expect("the stream ends after the final state")
        .unwrap();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        [
            "escrowed",
            "matched",
            "escrowed",
            "matched",
            "running",
            "verifying",
            "settled"
        ],
        "{text}"
    );
    let view = api.wait_final(&id, Duration::from_secs(10)).await;
    assert_eq!(view.state, OrderState::Settled, "{view:?}");
    assert_eq!(view.attempts, 2);
    assert_eq!(view.provider, Some(honest.account()));
    assert!(
        view.events
            .iter()
            .any(|e| e.detail.contains("no heartbeat")),
        "{view:?}"
    );
    assert_eq!(
        api.account(&silent.account()).await.balance,
        agora_node::config::DEV_USER_FUNDS
    );
    let (_, record) = api
        .get(&format!("/v1/providers/{}", silent.account()))
        .await;
    assert_eq!(record["failed"], 1, "{record}");
    silent.stop().await;
    honest.stop().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_keeps_orders_and_refunds_what_cannot_resume() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let buyer = &keys.users[0];
    let (settled_id, pending_id, height) = {
        let mut cfg = config(dir.path());
        // Long heartbeats: the silent provider still holds the order at shutdown.
        cfg.heartbeat = Duration::from_secs(20);
        let node = start(cfg).await;
        let api = Api::new(&node);
        let chain = ChainId::new(node.chain_id());
        let honest =
            FakeProvider::start(&node, keys.users[3].clone(), PRICE, Behavior::Honest).await;
        api.wait_providers(1).await;
        let module = upload_hello(&api).await;
        let nonce = api.account(&buyer.account()).await.next_nonce;
        let (first, escrow) = order_for(buyer, &chain, &module, 1, nonce, now_ms() + 60_000);
        assert_eq!(api.submit(&first, &escrow).await.0, 201);
        let settled_id = agora_proto::signed_order_id(&first);
        assert_eq!(
            api.wait_final(&settled_id, Duration::from_secs(10))
                .await
                .state,
            OrderState::Settled
        );
        honest.stop().await;
        let silent =
            FakeProvider::start(&node, keys.users[2].clone(), PRICE, Behavior::Silent).await;
        api.wait_providers(1).await;
        let (second, escrow) = order_for(buyer, &chain, &module, 2, nonce + 1, now_ms() + 60_000);
        assert_eq!(api.submit(&second, &escrow).await.0, 201);
        let pending_id = agora_proto::signed_order_id(&second);
        // Let the silent provider accept it.
        for _ in 0..100 {
            if api.order(&pending_id).await.state == OrderState::Matched {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let height = api.height().await;
        node.shutdown().await;
        silent.stop().await;
        (settled_id, pending_id, height)
    };
    let node = start(config(dir.path())).await;
    let api = Api::new(&node);
    assert!(api.height().await >= height);
    let settled = api.order(&settled_id).await;
    assert_eq!(settled.state, OrderState::Settled);
    assert!(settled.result.is_some(), "the result survives the restart");
    // No provider comes back: after the grace the pending order is refunded.
    let pending = api.wait_final(&pending_id, Duration::from_secs(10)).await;
    assert_eq!(pending.state, OrderState::Refunded, "{pending:?}");
    assert!(
        pending.events.iter().any(|e| e.detail.contains("restart")),
        "{pending:?}"
    );
    let (_, check) = api.get("/v1/ledger/verify").await;
    assert_eq!(check["verified"], true, "{check}");
    assert_eq!(check["supply"]["escrow"], 0, "{check}");
    let account = api.account(&buyer.account()).await;
    assert_eq!(
        account.balance.0,
        agora_node::config::DEV_USER_FUNDS.0 - settled.cost.0,
        "paid once, refunded the rest"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buyer_cancels_with_a_signed_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.heartbeat = Duration::from_secs(20);
    let node = start(cfg).await;
    let api = Api::new(&node);
    let keys = keys();
    let chain = ChainId::new(node.chain_id());
    let silent = FakeProvider::start(&node, keys.users[2].clone(), PRICE, Behavior::Silent).await;
    api.wait_providers(1).await;
    let module = upload_hello(&api).await;
    let buyer = &keys.users[0];
    let nonce = api.account(&buyer.account()).await.next_nonce;
    let (order, escrow) = order_for(buyer, &chain, &module, 1, nonce, now_ms() + 60_000);
    assert_eq!(api.submit(&order, &escrow).await.0, 201);
    let id = agora_proto::signed_order_id(&order);
    let forged = Signed::sign(&keys.users[1], &chain, 0, CancelOrder { order_id: id });
    let (status, body) = api
        .post(
            &format!("/v1/orders/{id}/cancel"),
            &CancelRequest {
                cancel: hexed::encode(&forged),
            },
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("bad_signature")),
        "{body}"
    );
    let cancel = Signed::sign(buyer, &chain, 0, CancelOrder { order_id: id });
    let (status, body) = api
        .post(
            &format!("/v1/orders/{id}/cancel"),
            &CancelRequest {
                cancel: hexed::encode(&cancel),
            },
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "refunded", "{body}");
    assert_eq!(
        api.account(&buyer.account()).await.balance,
        agora_node::config::DEV_USER_FUNDS
    );
    silent.stop().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_that_disconnects_loses_its_orders_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // Heartbeats far apart: only the disconnect can end the attempt quickly.
    cfg.heartbeat = Duration::from_secs(20);
    let node = start(cfg).await;
    let api = Api::new(&node);
    let keys = keys();
    let chain = ChainId::new(node.chain_id());
    let doomed = FakeProvider::start(&node, keys.users[2].clone(), PRICE, Behavior::Silent).await;
    api.wait_providers(1).await;
    let module = upload_hello(&api).await;
    let buyer = &keys.users[0];
    let nonce = api.account(&buyer.account()).await.next_nonce;
    let (order, escrow) = order_for(buyer, &chain, &module, 1, nonce, now_ms() + 60_000);
    assert_eq!(api.submit(&order, &escrow).await.0, 201);
    let id = agora_proto::signed_order_id(&order);
    for _ in 0..100 {
        if api.order(&id).await.state == OrderState::Matched {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let account = doomed.account();
    doomed.stop().await;
    let view = api.wait_final(&id, Duration::from_secs(5)).await;
    assert_eq!(view.state, OrderState::Refunded, "{view:?}");
    assert!(
        view.refund_reason
            .as_deref()
            .is_some_and(|r| r.contains("disconnected")),
        "{view:?}"
    );
    assert_eq!(
        api.account(&account).await.balance,
        agora_node::config::DEV_USER_FUNDS,
        "not paid"
    );
    let (_, asks) = api.get("/v1/asks").await;
    assert_eq!(
        asks.as_array().map(Vec::len),
        Some(0),
        "its asks left the book"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outputs_that_do_not_match_the_receipt_are_not_paid() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(config(dir.path())).await;
    let api = Api::new(&node);
    let keys = keys();
    let chain = ChainId::new(node.chain_id());
    let forger =
        FakeProvider::start(&node, keys.users[2].clone(), PRICE, Behavior::ForgedOutput).await;
    api.wait_providers(1).await;
    let module = upload(&api, output_module()).await;
    let buyer = &keys.users[0];
    let nonce = api.account(&buyer.account()).await.next_nonce;
    let (order, escrow) = order_for(buyer, &chain, &module, 1, nonce, now_ms() + 60_000);
    assert_eq!(api.submit(&order, &escrow).await.0, 201);
    let view = api
        .wait_final(
            &agora_proto::signed_order_id(&order),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(view.state, OrderState::Refunded, "{view:?}");
    assert!(
        view.refund_reason
            .as_deref()
            .is_some_and(|r| r.contains("digest")),
        "{view:?}"
    );
    assert_eq!(
        api.account(&forger.account()).await.balance,
        agora_node::config::DEV_USER_FUNDS,
        "not paid"
    );
    assert_eq!(
        api.account(&buyer.account()).await.balance,
        agora_node::config::DEV_USER_FUNDS
    );
    let (_, record) = api
        .get(&format!("/v1/providers/{}", forger.account()))
        .await;
    assert_eq!(record["failed"], 1, "{record}");
    forger.stop().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ledger_endpoints_take_transactions_and_show_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(config(dir.path())).await;
    let api = Api::new(&node);
    let keys = keys();
    let chain = ChainId::new(node.chain_id());
    let provider = &keys.users[2];
    let stake = agora_core::Amount::agr(100);
    let bond = Signed::sign(
        provider,
        &chain,
        0,
        agora_ledger::TxBody::Bond { amount: stake },
    );
    let (status, body) = api
        .post(
            "/v1/txs",
            &SubmitTx {
                tx: hexed::encode(&bond),
            },
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["height"], 1);
    assert_eq!(body["tx_id"], bond.id().to_string());
    // The same transaction again is a replay: refused with the ledger's reason.
    let (status, body) = api
        .post(
            "/v1/txs",
            &SubmitTx {
                tx: hexed::encode(&bond),
            },
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("tx_refused")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("already used"),
        "{body}"
    );
    let account = api.account(&provider.account()).await;
    assert_eq!(account.stake, stake);
    assert_eq!(account.next_nonce, 1);

    let (status, block) = api.get("/v1/blocks/1").await;
    assert_eq!(status, 200, "{block}");
    assert_eq!(block["txs"][0]["kind"], "bond");
    let (_, blocks) = api.get("/v1/blocks?from=1&limit=10").await;
    assert_eq!(blocks.as_array().map(Vec::len), Some(1));
    let (status, body) = api.get("/v1/blocks/2").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("unknown_block"))
    );
    let (_, index) = api.get("/v1/index").await;
    assert_eq!(index[0]["class"], serde_json::json!("cpu"), "{index}");
    let (status, body) = api.get("/v1/accounts/not-an-account").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deterministic_job_failure_is_refunded_not_reassigned() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(config(dir.path())).await;
    let api = Api::new(&node);
    let keys = keys();
    let chain = ChainId::new(node.chain_id());
    let failing =
        FakeProvider::start(&node, keys.users[2].clone(), PRICE, Behavior::JobFails).await;
    let other = FakeProvider::start(
        &node,
        keys.users[3].clone(),
        Price(PRICE.0 * 3 / 2),
        Behavior::Honest,
    )
    .await;
    api.wait_providers(2).await;
    let module = upload_hello(&api).await;
    let buyer = &keys.users[0];
    let nonce = api.account(&buyer.account()).await.next_nonce;
    let (order, escrow) = order_for(buyer, &chain, &module, 1, nonce, now_ms() + 60_000);
    assert_eq!(api.submit(&order, &escrow).await.0, 201);
    let view = api
        .wait_final(
            &agora_proto::signed_order_id(&order),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(view.state, OrderState::Refunded, "{view:?}");
    assert_eq!(
        view.attempts, 1,
        "any provider would fail the same way: no reassignment"
    );
    assert!(
        view.refund_reason
            .as_deref()
            .is_some_and(|r| r.contains("unreachable")),
        "{view:?}"
    );
    // The tail of stderr the provider signed reaches the buyer with the reason.
    assert!(
        view.refund_reason
            .as_deref()
            .is_some_and(|r| r.contains("--- stderr (last 22 bytes) ---\npanicked at main.rs:3\n")),
        "{view:?}"
    );
    assert_eq!(
        failing.replies.lock().unwrap().first(),
        Some(&agora_proto::wire::MarketReply::Ok)
    );
    assert_eq!(
        api.account(&buyer.account()).await.balance,
        agora_node::config::DEV_USER_FUNDS
    );
    failing.stop().await;
    other.stop().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_running_an_order_across_a_market_restart_delivers_and_is_paid_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.p2p_listen = fixed_p2p_addr();
    cfg.heartbeat = Duration::from_secs(20);
    cfg.resume_grace = Duration::from_secs(8);
    let keys = keys();
    let buyer = &keys.users[0];
    let node = start(cfg.clone()).await;
    let api = Api::new(&node);
    let chain = ChainId::new(node.chain_id());
    let provider = FakeProvider::start(
        &node,
        keys.users[2].clone(),
        PRICE,
        Behavior::HonestAfter(1_500),
    )
    .await;
    api.wait_providers(1).await;
    let module = upload_hello(&api).await;
    let nonce = api.account(&buyer.account()).await.next_nonce;
    let (order, escrow) = order_for(buyer, &chain, &module, 1, nonce, now_ms() + 60_000);
    assert_eq!(api.submit(&order, &escrow).await.0, 201);
    let id = agora_proto::signed_order_id(&order);
    for _ in 0..100 {
        if api.order(&id).await.state != OrderState::Escrowed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.shutdown().await;

    // The provider is still running it; it delivers to the restarted node.
    let node = start(cfg).await;
    let api = Api::new(&node);
    let view = api.wait_final(&id, Duration::from_secs(10)).await;
    assert_eq!(view.state, OrderState::Settled, "{view:?}");
    assert_eq!(view.attempts, 1, "no second run was needed");
    assert_eq!(view.provider, Some(provider.account()));
    assert!(
        view.events.iter().any(|e| e.detail.contains("waiting for")),
        "{view:?}"
    );
    let paid =
        api.account(&provider.account()).await.balance.0 - agora_node::config::DEV_USER_FUNDS.0;
    assert!(
        paid > 0 && paid <= view.cost.0,
        "paid once: {paid} of cost {}",
        view.cost.0
    );
    let (_, check) = api.get("/v1/ledger/verify").await;
    assert_eq!(check["verified"], true, "{check}");
    assert_eq!(check["supply"]["escrow"], 0, "{check}");
    provider.stop().await;
    node.shutdown().await;
}
