//! The market node against hostile and broken HTTP clients (issue 13): the connection cap
//! with the idle timeout, the header timeout against slowloris, event streams that outlive
//! the idle timeout, JSON refusals from the HTTP layer itself, bounded order deadlines,
//! and partial uploads swept on restart. A real node on loopback; every limit is set
//! short through its config so each test ends in a few seconds.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use agora_core::{ChainId, Hash};
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// One HTTP/1.1 request on a kept-alive raw connection; returns the status and the body.
async fn request(stream: &mut TcpStream, path: &str) -> (u16, String) {
    let head = format!("GET {path} HTTP/1.1\r\nHost: agora\r\n\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("request sent");
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("an answer within 10 s")
            .expect("read");
        assert!(
            n > 0,
            "the connection closed before the answer was complete"
        );
        bytes.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&bytes).to_string();
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let length: usize = text[..end]
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .expect("a Content-Length");
        if bytes.len() >= end + 4 + length {
            let status = text[9..12].parse().expect("a status code");
            return (status, text[end + 4..end + 4 + length].to_string());
        }
    }
}

/// Waits until the peer closes `stream` (EOF or reset); panics after `within`. Returns
/// whatever it sent before closing.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 1024];
    let until = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(until, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return seen,
            Ok(Ok(n)) => seen.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("the node kept the connection open for {within:?}"),
        }
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_the_cap_do_not_starve_a_new_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_connections = 4;
    cfg.idle_timeout = Duration::from_millis(400);
    cfg.header_timeout = Duration::from_millis(500);
    let node = start(cfg).await;
    let addr = node.http_addr();

    // Every slot taken by a kept-alive connection that made one request and went quiet.
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut stream = connect(addr).await;
        let (status, body) = request(&mut stream, "/health").await;
        assert_eq!(status, 200, "{body}");
        idle.push(stream);
    }
    // More clients connect and say nothing: they wait in the backlog behind the cap, and
    // once accepted each holds a slot until its header timeout.
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(connect(addr).await);
    }

    let started = Instant::now();
    let answer = reqwest::Client::new()
        .get(format!("{}/health", node.http_url()))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("a normal request is served once slots free up");
    let waited = started.elapsed();
    assert_eq!(answer.status().as_u16(), 200);
    assert!(
        waited >= Duration::from_millis(300),
        "answered after {waited:?}, before any idle connection timed out: the cap of 4 did not hold"
    );
    assert!(
        waited < Duration::from_secs(8),
        "answered only after {waited:?}"
    );
    // The node closed the idle ones (without an answer, they sent no request).
    for mut stream in idle {
        let sent = closed_within(&mut stream, Duration::from_secs(3)).await;
        assert!(sent.is_empty(), "{}", String::from_utf8_lossy(&sent));
    }
    for mut stream in silent {
        closed_within(&mut stream, Duration::from_secs(5)).await;
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_is_dropped_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.header_timeout = Duration::from_millis(400);
    cfg.idle_timeout = Duration::from_secs(30);
    let node = start(cfg).await;
    let api = Api::new(&node);

    let stream = connect(node.http_addr()).await;
    let started = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(b"GET /health HTTP/1.1\r\nHost: agora\r\n")
        .await
        .unwrap();
    // The head never ends: one more header byte every 50 ms, for as long as it is taken.
    let trickle = tokio::spawn(async move {
        let mut sent = 0usize;
        for byte in b"X-Slow: ".iter().cycle() {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            if sent > 200 {
                break;
            }
        }
        sent
    });
    let mut chunk = [0u8; 1024];
    let answer = timeout(Duration::from_secs(5), reader.read(&mut chunk))
        .await
        .expect("the node drops a slow head within 5 s");
    let dropped_after = started.elapsed();
    assert!(
        matches!(answer, Ok(0) | Err(_)),
        "the node answered a request whose head never ended: {:?}",
        answer.map(|n| String::from_utf8_lossy(&chunk[..n]).to_string())
    );
    assert!(
        dropped_after >= Duration::from_millis(300),
        "dropped after {dropped_after:?}, before the header timeout"
    );
    assert!(
        dropped_after < Duration::from_secs(3),
        "dropped only after {dropped_after:?}"
    );
    let trickled = trickle.await.unwrap();
    assert!(trickled < 200, "the node kept reading the trickle");
    // Everyone else is served as usual.
    let (status, body) = api.get("/health").await;
    assert_eq!(status, 200, "{body}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_outlives_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // Far shorter than the second between two `stats` events.
    cfg.idle_timeout = Duration::from_millis(300);
    cfg.header_timeout = Duration::from_millis(300);
    let node = start(cfg).await;

    let mut stream = connect(node.http_addr()).await;
    stream
        .write_all(
            b"GET /v1/dashboard/events HTTP/1.1\r\nHost: agora\r\nAccept: text/event-stream\r\n\r\n",
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    let until = Instant::now() + Duration::from_millis(3_500);
    loop {
        match tokio::time::timeout_at(until, stream.read(&mut chunk)).await {
            Ok(Ok(0)) => panic!(
                "the node closed the event stream: {}",
                String::from_utf8_lossy(&seen)
            ),
            Ok(Ok(n)) => seen.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => panic!("the event stream broke: {e}"),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let stats = text.matches("event: stats").count();
    assert!(
        stats >= 3,
        "{stats} stats events in 3.5 s with a 300 ms idle timeout: {text}"
    );
    node.shutdown().await;
}

/// Asserts an [`ApiError`](agora_proto::ApiError) answer with `status` and `code`.
async fn expect_api_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "{code}");
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = response.text().await.expect("a body");
    assert!(
        content_type.starts_with("application/json"),
        "{code}: {content_type} {text}"
    );
    let body: Value = serde_json::from_str(&text).expect("a JSON body");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let fields = body.as_object().map(|o| o.len());
    assert_eq!(fields, Some(2), "only `error` and `message`: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_of_the_http_layer_is_an_api_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_json_bytes = 1024;
    let node = start(cfg).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", node.http_url());

    // A path parameter that does not parse (the handler takes a number).
    let body = expect_api_error(
        http.get(url("/v1/blocks/not-a-height"))
            .send()
            .await
            .unwrap(),
        400,
        "bad_request",
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("not-a-height"),
        "{body}"
    );
    // A query that does not parse.
    let body = expect_api_error(
        http.get(url("/v1/orders?limit=many")).send().await.unwrap(),
        400,
        "bad_request",
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("limit"),
        "{body}"
    );
    // No such route.
    let body = expect_api_error(
        http.get(url("/v1/no-such-thing")).send().await.unwrap(),
        404,
        "no_route",
    )
    .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("/v1/no-such-thing"),
        "{body}"
    );
    // No such dashboard file (the dashboard's own plain-text 404).
    expect_api_error(
        http.get(url("/assets/no-such-file.js"))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    // A route that exists, asked with the wrong method: the Allow header stays.
    let response = http.delete(url("/v1/info")).send().await.unwrap();
    let allow = response
        .headers()
        .get(reqwest::header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(allow.contains("GET"), "Allow: {allow:?}");
    expect_api_error(response, 405, "method_not_allowed").await;
    // A JSON body over the node's limit.
    let oversized = json!({ "order": "00".repeat(2_048), "escrow_tx": "00" });
    let body = expect_api_error(
        http.post(url("/v1/orders"))
            .json(&oversized)
            .send()
            .await
            .unwrap(),
        413,
        "body_too_large",
    )
    .await;
    assert!(body["message"].as_str().unwrap().contains("1024"), "{body}");
    // A JSON route sent something else than JSON.
    expect_api_error(
        http.post(url("/v1/txs"))
            .header("content-type", "text/plain")
            .body("tx")
            .send()
            .await
            .unwrap(),
        400,
        "bad_request",
    )
    .await;
    // Successes are untouched.
    let ok = http.get(url("/metrics")).send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert!(ok.text().await.unwrap().contains("# "));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_deadlines_are_refused_with_the_allowed_range_and_nothing_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_deadline = Duration::from_secs(3_600);
    let node = start(cfg).await;
    let api = Api::new(&node);
    let keys = keys();
    let chain = ChainId::new(node.chain_id());
    let buyer = &keys.users[0];
    let module = upload_hello(&api).await;
    let before = api.account(&buyer.account()).await;
    let height = api.height().await;

    let now = now_ms();
    let refused = [
        ("two hours away", now + 2 * 3_600_000),
        ("far in the future", u64::MAX / 2),
        ("already past", now - 1_000),
        ("zero", 0),
    ];
    for (salt, (what, deadline)) in (1..).zip(refused) {
        let (order, escrow) = order_for(buyer, &chain, &module, salt, before.next_nonce, deadline);
        let (status, body) = api.submit(&order, &escrow).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error"], "deadline_out_of_range", "{what}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("from 1 ms to 3600000 ms (1 h)"),
            "{what}: {message}"
        );
    }
    // Nothing was committed: no order, no escrow, no nonce used, no block for them.
    let (_, orders) = api.get("/v1/orders").await;
    assert_eq!(orders, json!([]));
    let after = api.account(&buyer.account()).await;
    assert_eq!(after.next_nonce, before.next_nonce);
    assert_eq!(after.balance, before.balance);
    assert_eq!(api.height().await, height);

    // The dashboard's prepared orders are bounded the same way (from 5 s there: the
    // buyer still has to sign in the browser).
    let prepare = |deadline_in_ms: u64| {
        json!({
            "public_key": hex::encode(buyer.account().as_bytes()),
            "module": Hash::of(&module).to_string(),
            "max_price": 1_000,
            "max_cu": 1,
            "deadline_in_ms": deadline_in_ms,
            "salt": "7",
        })
    };
    for deadline_in_ms in [0, 4_999, 3_600_001, u64::MAX] {
        let (status, body) = api
            .post("/v1/dashboard/orders/prepare", &prepare(deadline_in_ms))
            .await;
        assert_eq!(status, 400, "{deadline_in_ms}: {body}");
        assert_eq!(body["error"], "deadline_out_of_range", "{body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains("from 5000 ms to 3600000 ms"), "{message}");
    }
    let (status, body) = api
        .post("/v1/dashboard/orders/prepare", &prepare(60_000))
        .await;
    assert_eq!(status, 200, "{body}");
    // A deadline within the range is accepted end to end.
    let (order, escrow) = order_for(
        buyer,
        &chain,
        &module,
        99,
        before.next_nonce,
        now_ms() + 60_000,
    );
    let (status, body) = api.submit(&order, &escrow).await;
    assert_eq!(status, 201, "{body}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_removes_partial_uploads_and_keeps_stored_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(config(dir.path())).await;
    let module = upload_hello(&Api::new(&node)).await;
    node.shutdown().await;

    // What uploads cut off by a crash leave behind.
    let tmp = dir.path().join("blobs").join("tmp");
    std::fs::write(tmp.join("4242-0.part"), vec![1u8; 1 << 20]).unwrap();
    std::fs::write(tmp.join("4242-1.part"), b"half a module").unwrap();
    std::fs::write(tmp.join(format!("{}-77.part", std::process::id())), b"x").unwrap();

    let node = start(config(dir.path())).await;
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in blobs/tmp: {left:?}");
    let api = Api::new(&node);
    let fetched = api
        .http
        .get(format!("{}/v1/blobs/{}", api.base, Hash::of(&module)))
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status().as_u16(), 200);
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), module.as_slice());
    node.shutdown().await;
}
