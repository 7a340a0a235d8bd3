//! The market refuses an order whose module no provider would run (a forbidden wasm
//! feature, a non-WASI import, no `_start`) before the escrow is taken: 400, the reason
//! named, no money locked, no order recorded.

mod common;

use agora_core::ChainId;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_module_no_provider_would_run_is_refused_before_escrow() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(config(dir.path())).await;
    let api = Api::new(&node);
    let keys = keys();
    let chain = ChainId::new(node.chain_id());
    let buyer = &keys.users[0];
    let before = api.account(&buyer.account()).await;
    let deadline = now_ms() + 60_000;

    let legacy_eh = wat::parse_str(
        r#"(module (tag $e) (memory (export "memory") 1)
             (func (export "_start") try throw $e catch $e end))"#,
    )
    .unwrap();
    let foreign_import = wat::parse_str(
        r#"(module (import "env" "clock" (func (result i64)))
             (memory (export "memory") 1) (func (export "_start")))"#,
    )
    .unwrap();
    let no_start =
        wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "main")))"#).unwrap();
    let cases = [
        (legacy_eh, "-wasm-use-legacy-eh=false"),
        (foreign_import, "env::clock"),
        (no_start, "no `_start`"),
    ];
    for (salt, (module, named)) in cases.into_iter().enumerate() {
        let module = upload(&api, module).await;
        let (order, escrow) = order_for(
            buyer,
            &chain,
            &module,
            salt as u64,
            before.next_nonce,
            deadline,
        );
        let (status, body) = api.submit(&order, &escrow).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "bad_request", "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(named), "{named}: {message}");
        assert!(message.contains("no escrow was taken"), "{message}");
        let (status, _) = api
            .get(&format!(
                "/v1/orders/{}",
                agora_proto::signed_order_id(&order)
            ))
            .await;
        assert_eq!(status, 404, "no order recorded");
    }
    let after = api.account(&buyer.account()).await;
    assert_eq!(after.balance, before.balance, "no money moved");
    assert_eq!(after.next_nonce, before.next_nonce, "no escrow transaction");

    // A module a provider would run is still accepted (and its escrow taken).
    let module = upload_hello(&api).await;
    let (order, escrow) = order_for(buyer, &chain, &module, 99, before.next_nonce, deadline);
    let (status, body) = api.submit(&order, &escrow).await;
    assert_eq!(status, 201, "{body}");
    node.shutdown().await;
}
