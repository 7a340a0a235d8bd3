//! The node endpoints the dashboard reads and the browser-signing path, over real HTTP
//! against a real market node (no browser needed): signatures over the prepared bytes are
//! accepted and any other signature is refused with nothing changed; order pages count,
//! slice and filter newest first; the explorer lists, finds and replays.

mod support;

use agora_core::{Fuel, Hash, Keypair, Signature};
use agora_proto::dashboard::{OrderPage, PreparedOrder, SignedSubmission};
use serde_json::{Value, json};
use support::{Net, hello_module};

async fn post(net: &Net, path: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", net.url))
        .json(body)
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sign(key: &Keypair, message_hex: &str) -> String {
    let bytes: Vec<u8> = (0..message_hex.len() / 2)
        .map(|i| u8::from_str_radix(&message_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let Signature(sig) = key.sign(&bytes);
    hex(&sig)
}

async fn prepare(net: &Net, key: &Keypair, module: Hash, salt: &str) -> PreparedOrder {
    let (status, body) = post(
        net,
        "/v1/dashboard/orders/prepare?module_name=hello.wasm",
        &json!({
            "public_key": hex(key.account().as_bytes()),
            "module": module.to_string(),
            "args": ["it's", "$(x)"],
            "max_price": 40_000_000u64,
            "max_cu": 1,
            "verify": "none",
            "label": "signed in a browser",
            "salt": salt,
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).expect("PreparedOrder")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signing_accepts_only_signatures_over_the_prepared_bytes() {
    let mut net = Net::start().await;
    net.add_provider(0, &[]).await;
    let buyer = net.keys.users[0].clone();
    let module = hello_module();
    let uploaded = reqwest::Client::new()
        .post(format!("{}/v1/dashboard/blobs", net.url))
        .body(module.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 201);
    let stored: Value = uploaded.json().await.unwrap();
    assert_eq!(
        stored["hash"],
        Hash::of(&module).to_string(),
        "the node hashes uploads"
    );
    let module = Hash::of(&module);

    let prepared = prepare(&net, &buyer, module, "18446744073709551615").await;
    assert_eq!(prepared.account, buyer.account());
    assert!(prepared.quote_price.is_some(), "{prepared:?}");
    assert!(
        prepared
            .command
            .ends_with("hello.wasm -- 'it'\\''s' '$(x)'"),
        "{}",
        prepared.command
    );
    let good = SignedSubmission {
        public_key: hex(buyer.account().as_bytes()),
        salt: "18446744073709551615".into(),
        body: prepared.body.clone(),
        escrow_nonce: prepared.escrow_nonce,
        order_signature: sign(&buyer, &prepared.order_message),
        escrow_signature: sign(&buyer, &prepared.escrow_message),
    };
    let height = net.get("/v1/info").await["height"].clone();

    // Every mismatch is refused before anything changes.
    let other = net.keys.users[1].clone();
    let mut cases = Vec::new();
    let mut swapped = good.clone();
    swapped.order_signature = good.escrow_signature.clone();
    swapped.escrow_signature = good.order_signature.clone();
    cases.push(("signatures swapped", swapped));
    let mut wrong_key = good.clone();
    wrong_key.order_signature = sign(&other, &prepared.order_message);
    cases.push(("order signed by someone else", wrong_key));
    let mut salted = good.clone();
    salted.salt = "7".into();
    cases.push(("another salt", salted));
    let mut renonced = good.clone();
    renonced.escrow_nonce += 1;
    cases.push(("another escrow nonce", renonced));
    let mut impostor = good.clone();
    impostor.public_key = hex(other.account().as_bytes());
    cases.push(("another signer", impostor));
    for (what, case) in cases {
        let (status, body) = post(&net, "/v1/dashboard/orders/signed", &json!(case)).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error"], "bad_signature", "{what}: {body}");
    }
    assert_eq!(
        net.get("/v1/info").await["height"],
        height,
        "nothing was committed"
    );
    let page: OrderPage = serde_json::from_value(net.get("/v1/dashboard/orders").await).unwrap();
    assert_eq!(page.total, 0);

    let (status, body) = post(&net, "/v1/dashboard/orders/signed", &json!(good)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["order_id"], prepared.order_id.to_string());
    let view = net.wait_final(&prepared.order_id).await;
    assert_eq!(view.state, agora_proto::OrderState::Settled, "{view:?}");
    assert_eq!(view.label, "signed in a browser");
    let (status, body) = post(&net, "/v1/dashboard/orders/signed", &json!(good)).await;
    assert_eq!(status, 409, "a replay is a duplicate: {body}");

    // Malformed fields are plain bad requests.
    let (status, _) = post(
        &net,
        "/v1/dashboard/orders/prepare",
        &json!({"public_key": "zz", "module": module.to_string(), "max_price": 1, "max_cu": 1, "salt": "1"}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, body) = post(
        &net,
        "/v1/dashboard/orders/prepare",
        &json!({"public_key": hex(buyer.account().as_bytes()), "module": Hash::of(b"nothing").to_string(), "max_price": 1, "max_cu": 1, "salt": "1"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "missing_blob", "{body}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_pages_and_the_explorer() {
    let mut net = Net::start().await;
    net.add_provider(0, &[]).await;
    let buyer = net.keys.users[0].clone();
    let module = hello_module();
    net.upload(&module).await;
    let mut nonce = net.next_nonce(&buyer).await;
    let mut ids = Vec::new();
    for i in 0..12u64 {
        let label = format!("job {i}");
        let sub = net
            .submit(
                &buyer,
                nonce,
                &module,
                &label,
                &[],
                Fuel::compute_units(1),
                i,
            )
            .await;
        nonce += 1;
        ids.push(sub.order_id);
    }
    for id in &ids {
        net.wait_final(id).await;
    }
    let page: OrderPage =
        serde_json::from_value(net.get("/v1/dashboard/orders?limit=5&offset=5").await).unwrap();
    assert_eq!(page.total, 12);
    let shown: Vec<Hash> = page.orders.iter().map(|o| o.order_id).collect();
    let expected: Vec<Hash> = ids.iter().rev().skip(5).take(5).copied().collect();
    assert_eq!(shown, expected, "newest first, offset 5");
    let labelled: OrderPage =
        serde_json::from_value(net.get("/v1/dashboard/orders?q=job%2011").await).unwrap();
    assert_eq!(labelled.total, 1);
    let settled: OrderPage =
        serde_json::from_value(net.get("/v1/dashboard/orders?state=settled").await).unwrap();
    assert_eq!(settled.total, 12);
    let provider = net.keys.users[2].account();
    let served: OrderPage = serde_json::from_value(
        net.get(&format!("/v1/dashboard/orders?provider={provider}"))
            .await,
    )
    .unwrap();
    assert_eq!(served.total, 12);
    assert!(
        net.get_raw("/v1/dashboard/orders?state=nope")
            .await
            .status()
            .is_client_error()
    );

    let stats = net.get("/v1/dashboard/stats").await;
    assert_eq!(stats["settled_total"], 12);
    assert_eq!(stats["providers_online"], 1);
    let fuel: u64 = futures_sum(&net, &ids).await;
    assert_eq!(stats["fuel_sold"].as_u64().unwrap(), fuel);
    let prices = net.get("/v1/dashboard/prices").await;
    let trades: u64 = prices
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["trades"].as_u64().unwrap())
        .sum();
    assert_eq!(trades, 12);

    // Explorer: escrows, transactions by kind and account, search, the replay.
    let escrows = net.get("/v1/escrows?limit=5").await;
    assert_eq!(escrows["total"], 12);
    assert_eq!(escrows["escrows"].as_array().unwrap().len(), 5);
    // A settled order's escrow pays the provider, then refunds what is left.
    let open = net.get("/v1/escrows?status=open").await;
    assert_eq!(open["total"], 0);
    let opened = net.get("/v1/txs?kind=open-escrow&limit=100").await;
    assert_eq!(opened["txs"].as_array().unwrap().len(), 12);
    let first = net.get("/v1/txs?limit=3").await;
    let before = first["next_before"].as_u64().expect("more pages");
    let next = net.get(&format!("/v1/txs?limit=3&before={before}")).await;
    let top = first["txs"][0]["height"].as_u64().unwrap();
    assert!(next["txs"][0]["height"].as_u64().unwrap() < top);
    let mine = net
        .get(&format!("/v1/txs?account={}&limit=200", buyer.account()))
        .await;
    assert!(mine["txs"].as_array().unwrap().len() >= 12);
    let stakes = net.get("/v1/stakes").await;
    assert_eq!(stakes[0]["account"], provider.to_string());
    assert_eq!(net.get("/v1/slashes").await["slashes"], json!([]));
    let tx_id = opened["txs"][0]["tx"]["id"].as_str().unwrap().to_string();
    let hit = net.get(&format!("/v1/search?q={tx_id}")).await;
    assert_eq!(hit["kind"], "tx");
    assert_eq!(
        net.get(&format!("/v1/search?q={}", ids[0])).await["kind"],
        "order"
    );
    assert_eq!(
        net.get(&format!("/v1/search?q={}", buyer.account())).await["kind"],
        "account"
    );
    assert_eq!(net.get("/v1/search?q=1").await["kind"], "block");
    assert_eq!(net.get("/v1/search?q=nonsense").await["kind"], "none");
    let replay = net.get("/v1/dashboard/verify").await;
    assert_eq!(replay["verified"], true, "{replay}");
    let stats = net.get("/v1/dashboard/stats").await;
    assert_eq!(stats["last_verify"]["verified"], true);
    let detail = net.get(&format!("/v1/dashboard/orders/{}", ids[0])).await;
    assert_eq!(detail["receipt_valid"], true);
    assert!(detail["cloud_cost"].is_u64());
    assert_eq!(detail["offers"][0]["provider"], provider.to_string());
    net.stop().await;
}

async fn futures_sum(net: &Net, ids: &[Hash]) -> u64 {
    let mut total = 0;
    for id in ids {
        total += net.order(id).await.result.expect("settled").fuel_used.0;
    }
    total
}
