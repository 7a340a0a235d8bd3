//! Hostile and broken requests against the real market process over HTTP, while an
//! order is running on a real provider process.
//!
//! Proves, across the process boundary (the in-process node tests cover the handlers):
//! an order with a forged or missing signature, a garbled JSON body, an order signed
//! for another chain, a replayed escrow transaction, a blob whose content does not hash
//! to its URL, a blob over `--max-blob-bytes` (declared, and streamed without a length),
//! a JSON body over the node's limit, unknown or malformed order ids, and a
//! cancellation signed by someone other than the buyer each get a 4xx whose JSON body
//! has a stable code and a message naming the problem; afterwards the ledger height,
//! state root and every balance are exactly as before, the running order is untouched,
//! the market process is still alive, and the buyer's own signed cancel still works.

use std::time::{Duration, Instant};

use crate::common_net::{TestNet, job, one_job_per_provider};
use agora_core::{ChainId, Fuel, Hash, Price, Signature, Signed};
use agora_proto::api::{SubmitOrder, SubmitTx};
use agora_proto::{CancelOrder, OrderState, hexed, signed_order_id};
use serde_json::{Value, json};

/// The market's blob limit in this test (the sample modules are smaller).
const MAX_BLOB_BYTES: u64 = 64 * 1024;

/// One raw HTTP answer: status and JSON body (or the text as a JSON string).
struct Answer {
    what: String,
    status: u16,
    body: Value,
}

impl Answer {
    /// Asserts a refusal with `status`, error code `code`, and a message that mentions
    /// each of `mentions`.
    fn refused(&self, status: u16, code: &str, mentions: &[&str]) {
        let what = &self.what;
        assert_eq!(self.status, status, "{what}: {}", self.body);
        assert_eq!(self.body["error"], code, "{what}: {}", self.body);
        let message = self.body["message"].as_str().unwrap_or_default();
        for word in mentions {
            assert!(
                message.contains(word),
                "{what}: the message does not name {word:?}: {message:?}"
            );
        }
    }
}

/// A raw client: requests the typed client would refuse to make.
struct Raw<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
}

impl Raw<'_> {
    async fn send(&self, what: String, request: reqwest::RequestBuilder) -> Answer {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { what, status, body }
    }

    async fn get(&self, path: &str) -> Answer {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(format!("GET {path}"), request).await
    }

    async fn post(&self, path: &str, body: &impl serde::Serialize) -> Answer {
        let request = self.http.post(format!("{}{path}", self.base)).json(body);
        self.send(format!("POST {path}"), request).await
    }

    async fn post_bytes(&self, path: &str, body: &'static str) -> Answer {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        self.send(format!("POST {path} {body:?}"), request).await
    }

    /// Uploads `total` bytes under `name` with chunked transfer encoding (no declared
    /// length, so only the streaming count can stop it), over a plain socket.
    async fn put_chunked(&self, name: &Hash, total: usize) -> Answer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let what = format!("PUT /v1/blobs/{name} (chunked, {total} bytes)");
        let host = self
            .base
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let mut socket = tokio::net::TcpStream::connect(host)
            .await
            .unwrap_or_else(|e| panic!("{what}: cannot connect: {e}"));
        let mut request = format!(
            "PUT /v1/blobs/{name} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\
             Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        for chunk in vec![0x5Au8; total].chunks(16 * 1024) {
            request.extend(format!("{:x}\r\n", chunk.len()).into_bytes());
            request.extend_from_slice(chunk);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        // The node may answer and close before reading it all; the answer is what counts.
        let _ = socket.write_all(&request).await;
        let mut answer = Vec::new();
        let _ = socket.read_to_end(&mut answer).await;
        let text = String::from_utf8_lossy(&answer);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("{what}: not an HTTP answer: {text:?}"));
        let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
        Answer { what, status, body }
    }

    async fn put_blob(&self, name: &Hash, bytes: Vec<u8>) -> Answer {
        let path = format!("/v1/blobs/{name}");
        let request = self.http.put(format!("{}{path}", self.base)).body(bytes);
        self.send(format!("PUT {path}"), request).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_clear_4xx_answers_and_changes_nothing() {
    let started = Instant::now();
    let mut t = TestNet::start(1, |c| {
        c.buyers = 2;
        one_job_per_provider(c);
        c.market_args = vec!["--max-blob-bytes".into(), MAX_BLOB_BYTES.to_string()];
    })
    .await;
    // Garbage the node refuses before reading it (an oversized blob, a body past the
    // limit) makes it close the connection, so the raw client never reuses one: a pooled
    // connection could be dead for the next request.
    let unpooled = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client");
    let raw = Raw {
        http: &unpooled,
        base: &t.net.http_url,
    };
    let chain = ChainId::new(t.info.chain_id.clone());
    let buyer_key = t.net.buyer_keys[0].clone();
    let stranger = t.net.buyer_keys[1].clone();

    // A live order, running on the provider for longer than this test needs, signed
    // here so its escrow transaction can be replayed below.
    let mut request = job("montecarlo", &["40000000".into(), "3".into()]);
    request.fuel_budget = Fuel::compute_units(40);
    let spec = t
        .buyer
        .upload_job(&request)
        .await
        .expect("the module uploads");
    let body = request
        .order_request(spec, agora_client::buyer::now_ms())
        .expect("a well-formed order");
    let nonce = t.account(&buyer_key.account()).await.next_nonce;
    let (live_order, live_escrow) = t.buyer.prepare(body.clone(), nonce);
    let live = signed_order_id(&live_order);
    t.client
        .submit_order(&live_order, &live_escrow)
        .await
        .unwrap_or_else(|e| panic!("the live order: {e}\n{}", t.logs()));
    let running = t
        .wait_order(&live, Duration::from_secs(15), "running", |v| {
            v.state == OrderState::Running
        })
        .await;

    let accounts = [
        buyer_key.account(),
        stranger.account(),
        t.net.providers[0].account,
        t.info.treasury,
    ];
    let mut before = Vec::new();
    for account in &accounts {
        before.push(t.account(account).await);
    }
    let check_before = t.ledger_check().await;
    assert!(check_before.verified, "{check_before:?}");

    // Orders: forged, unsigned, garbled, for another chain.
    let submit = |order: &agora_proto::SignedOrder, escrow: &agora_ledger::Tx| SubmitOrder {
        order: hexed::encode(order),
        escrow_tx: hexed::encode(escrow),
    };
    let (mut forged, escrow) = t.buyer.prepare(body.clone(), nonce + 1);
    forged.body.max_price = Price(forged.body.max_price.0 * 2);
    raw.post("/v1/orders", &submit(&forged, &escrow))
        .await
        .refused(400, "bad_signature", &["signature"]);
    let (mut unsigned, escrow) = t.buyer.prepare(body.clone(), nonce + 1);
    unsigned.signature = Signature([0; 64]);
    raw.post("/v1/orders", &submit(&unsigned, &escrow))
        .await
        .refused(400, "bad_signature", &["signature"]);
    raw.post_bytes("/v1/orders", r#"{"order": "00ff"#)
        .await
        .refused(400, "bad_request", &["JSON"]);
    raw.post(
        "/v1/orders",
        &json!({"order": "not hex", "escrow_tx": "00"}),
    )
    .await
    .refused(400, "bad_request", &["order"]);
    raw.post("/v1/orders", &json!({"order": 42}))
        .await
        .refused(400, "bad_request", &["JSON"]);
    // The node answers 413 without reading the rest of the body and closes the
    // connection, so this request gets a connection of its own: a pooled one would be
    // dead for the next request.
    let padding = "0".repeat(2 << 20);
    let one_shot = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client");
    let raw_once = Raw {
        http: &one_shot,
        base: &t.net.http_url,
    };
    raw_once
        .post("/v1/orders", &json!({"order": padding, "escrow_tx": "00"}))
        .await
        .refused(413, "body_too_large", &["limit"]);
    let elsewhere = ChainId::new("agora-othernet");
    let foreign = Signed::sign(&buyer_key, &elsewhere, 1, body.clone());
    let foreign_escrow = Signed::sign(
        &buyer_key,
        &elsewhere,
        nonce + 1,
        agora_ledger::TxBody::OpenEscrow {
            order_id: signed_order_id(&foreign),
            amount: foreign.body.escrow,
            deadline_ms: foreign.body.deadline_ms,
        },
    );
    raw.post("/v1/orders", &submit(&foreign, &foreign_escrow))
        .await
        .refused(400, "bad_signature", &["agora-othernet"]);

    // The live order's escrow, replayed as a transaction: its nonce is spent.
    raw.post(
        "/v1/txs",
        &SubmitTx {
            tx: hexed::encode(&live_escrow),
        },
    )
    .await
    .refused(400, "tx_refused", &["nonce"]);

    // Blobs: content under another hash's name, and one byte over the limit.
    let named = Hash::of(b"what the name promises");
    let sent = b"something else entirely".to_vec();
    let actual = Hash::of(&sent).to_string();
    raw.put_blob(&named, sent)
        .await
        .refused(400, "hash_mismatch", &[actual.as_str()]);
    let big = vec![0xA5u8; MAX_BLOB_BYTES as usize + 1];
    let big_hash = Hash::of(&big);
    raw.put_blob(&big_hash, big).await.refused(
        413,
        "blob_too_large",
        &[&MAX_BLOB_BYTES.to_string()],
    );
    let streamed = Hash::of(&vec![0x5Au8; MAX_BLOB_BYTES as usize + 1]);
    raw.put_chunked(&streamed, MAX_BLOB_BYTES as usize + 1)
        .await
        .refused(413, "blob_too_large", &[&MAX_BLOB_BYTES.to_string()]);
    for hash in [named, actual.parse().expect("a hash"), big_hash, streamed] {
        raw.get(&format!("/v1/blobs/{hash}"))
            .await
            .refused(404, "unknown_blob", &[]);
    }

    // Unknown and malformed order ids.
    let nobody = Hash::of(b"no such order");
    let nobody_text = nobody.to_string();
    for path in [
        format!("/v1/orders/{nobody}"),
        format!("/v1/orders/{nobody}/result"),
        format!("/v1/orders/{nobody}/events"),
    ] {
        raw.get(&path)
            .await
            .refused(404, "unknown_order", &[nobody_text.as_str()]);
    }
    raw.get("/v1/orders/not-a-hash")
        .await
        .refused(400, "bad_request", &["not-a-hash"]);
    let cancel_nobody = Signed::sign(&buyer_key, &chain, 9, CancelOrder { order_id: nobody });
    raw.post(
        &format!("/v1/orders/{nobody}/cancel"),
        &json!({ "cancel": hexed::encode(&cancel_nobody) }),
    )
    .await
    .refused(404, "unknown_order", &[nobody_text.as_str()]);

    // A cancellation of the live order signed by another funded account.
    let hostile = Signed::sign(&stranger, &chain, 1, CancelOrder { order_id: live });
    raw.post(
        &format!("/v1/orders/{live}/cancel"),
        &json!({ "cancel": hexed::encode(&hostile) }),
    )
    .await
    .refused(400, "bad_signature", &["only the buyer"]);

    // Nothing changed: not the chain, not a balance, not the running order.
    assert!(
        t.net.dead_child().is_none(),
        "a process died:\n{}",
        t.logs()
    );
    let check_after = t.ledger_check().await;
    assert_eq!(check_after.height, check_before.height, "the ledger moved");
    assert_eq!(check_after.state_root, check_before.state_root);
    assert!(check_after.verified, "{check_after:?}");
    for (account, then) in accounts.iter().zip(&before) {
        let now = t.account(account).await;
        assert_eq!(&now, then, "account {account} changed");
    }
    let still = t.order(&live).await;
    assert_eq!(still.state, OrderState::Running, "{still:#?}");
    assert_eq!(
        (still.attempts, still.provider),
        (running.attempts, running.provider)
    );

    // The buyer's own cancel still works and returns every unit of the escrow.
    let cancelled = t
        .within(Duration::from_secs(15), "cancelling", t.buyer.cancel(&live))
        .await
        .unwrap_or_else(|e| panic!("the buyer's cancel: {e}\n{}", t.logs()));
    assert_eq!(cancelled.state, OrderState::Refunded, "{cancelled:#?}");
    assert_eq!(cancelled.refunded, cancelled.escrow, "{cancelled:#?}");
    assert_eq!(
        t.account(&buyer_key.account()).await.balance.0,
        before[0].balance.0 + cancelled.escrow.0,
        "the full escrow came back"
    );
    t.assert_ledger_sound().await;
    t.stop_and_verify();
    eprintln!("network_garbage: {:.1?}", started.elapsed());
}
