//! Private orders on a real network of processes (docs/privacy.md): sealed inputs, keys
//! granted after assignment, outputs sealed to the buyer, party-only blob reads.
//!
//! - `agora job run --private` runs a WASM job end to end; the market's whole data
//!   directory (blob store, order records, ledger) holds no byte string of the input or of
//!   the output afterwards, and the same job run in the clear has the same result digest
//!   (the receipt's digest is over the plaintext, so replicas agree whatever the
//!   ciphertexts).
//! - A stranger's GET of a sealed input is refused with 403, signed or not; the buyer's
//!   own signed GET is served.
//! - A key wrapped to another account, and a tampered ciphertext, each make the provider
//!   fail the job with a clear reason; the buyer is refunded in full.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common_net::{AGORA, TestNet, sample};
use agora_client::JobRequest;
use agora_client::private::SealedInput;
use agora_core::{AccountId, Hash, Keypair, Signed};
use agora_proto::{OrderState, VerifyPolicy};
use agora_seal::{BlobAccess, BlobKey, KeyGrant, RecipientKey};

/// A marker that appears in the input and, as the most requested path, in the output.
const MARKER: &str = "/very-private-path-7f3a9c";

/// A small access log whose top path is [`MARKER`].
fn access_log(dir: &Path) -> std::path::PathBuf {
    let mut log = String::new();
    for i in 0..200 {
        let path = if i % 3 == 0 { "/index.html" } else { MARKER };
        log.push_str(&format!(
            "10.0.{}.{} - - [04/Dec/2026:{:02}:00:00 +0000] \"GET {path} HTTP/1.1\" 200 {}\n",
            i % 7,
            i % 250,
            i % 24,
            100 + i
        ));
    }
    std::fs::create_dir_all(dir).expect("a scratch directory");
    let path = dir.join("access.log");
    std::fs::write(&path, log).expect("the input file");
    path
}

fn logagg(input: &Path) -> JobRequest {
    let mut request = JobRequest::new(sample("logagg"));
    request.inputs = vec![("log".into(), input.to_owned())];
    request.verify = VerifyPolicy::None;
    request
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_job_runs_end_to_end_and_the_market_keeps_no_plaintext() {
    let started = Instant::now();
    let t = TestNet::start(2, |_| {}).await;
    let input = access_log(&t.scratch("in"));
    let out = t.scratch("out");
    let mut command = tokio::process::Command::new(AGORA);
    command
        .args(["job", "run", "--private", "--json", "--verify", "none"])
        .args(["--market", &t.net.http_url, "--wallet"])
        .arg(&t.net.buyer_wallets[0])
        .arg("--output-dir")
        .arg(&out)
        .arg("--input")
        .arg(format!("log={}", input.display()))
        .arg(sample("logagg"))
        .env("TMPDIR", t.scratch("tmp"))
        .kill_on_drop(true);
    let output = t
        .within(
            Duration::from_secs(90),
            "agora job run --private",
            command.output(),
        )
        .await
        .expect("the agora binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let context = format!(
        "stdout: {stdout}\nstderr: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        t.logs()
    );
    assert_eq!(output.status.code(), Some(0), "{context}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("--json");
    assert_eq!(summary["state"], "settled", "{context}");
    let order_id: Hash = summary["order_id"].as_str().unwrap().parse().unwrap();
    // The buyer's client opened stdout and the output file.
    assert!(
        summary["stdout"]
            .as_str()
            .is_some_and(|s| s.contains(MARKER)),
        "stdout was not opened: {context}"
    );
    let opened = std::fs::read(out.join(order_id.short()).join("summary.json"))
        .unwrap_or_else(|e| panic!("the opened output: {e}\n{context}"));
    assert!(
        String::from_utf8_lossy(&opened).contains(MARKER),
        "{context}"
    );

    // Nothing the market wrote holds the input's or the output's plaintext.
    let input_bytes = std::fs::read(&input).unwrap();
    for (what, needle) in [
        ("the marker", MARKER.as_bytes()),
        (
            "the input's first line",
            input_bytes.split(|b| *b == b'\n').next().unwrap(),
        ),
        (
            "the output's first 40 bytes",
            &opened[..40.min(opened.len())],
        ),
    ] {
        let leaks = files_containing(&t.net.market_dir, needle);
        assert!(leaks.is_empty(), "{what} is in {leaks:?}\n{context}");
    }
    // The market's record holds no plaintext stdout either, and the result's blobs are
    // ciphertext that a stranger may not read.
    let view = t.order(&order_id).await;
    let result = view.result.clone().expect("a settled order has a result");
    assert_eq!(result.stdout, "", "{view:#?}");
    let denied = t
        .http
        .get(format!(
            "{}/v1/blobs/{}",
            t.net.http_url, result.outputs[0].hash
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status().as_u16(), 403);

    // `agora job result --output-dir` opens it too, with the buyer's wallet.
    let later = t.scratch("later");
    let output = tokio::process::Command::new(AGORA)
        .args(["job", "result", &order_id.to_string(), "--json"])
        .args(["--market", &t.net.http_url, "--wallet"])
        .arg(&t.net.buyer_wallets[0])
        .arg("--output-dir")
        .arg(&later)
        .output()
        .await
        .expect("the agora binary runs");
    let said: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("agora job result --json: {e}: {output:?}"));
    assert!(
        said["opened_stdout"]
            .as_str()
            .is_some_and(|s| s.contains(MARKER)),
        "{said:#}"
    );
    assert_eq!(std::fs::read(later.join("summary.json")).unwrap(), opened);

    // The same job in the clear: same digest (over the plaintext), same output.
    let clear = t
        .buyer
        .run_job(&logagg(&input), &t.scratch("clear"), |_| {})
        .await
        .unwrap_or_else(|e| panic!("the job in the clear: {e}\n{}", t.logs()));
    assert_eq!(clear.state, OrderState::Settled, "{clear:#?}");
    assert_eq!(clear.digest, Some(result.digest), "{clear:#?}");
    let clear_output = std::fs::read(&clear.outputs[0]).unwrap();
    assert_eq!(clear_output, opened);
    t.assert_ledger_sound().await;
    eprintln!("network_private end to end: {:.1?}", started.elapsed());
}

/// Submits a private order of `request` whose inputs are sealed, and posts the grant
/// `grant_for` makes once the order is assigned; returns the final view.
async fn run_with_grant(
    t: &TestNet,
    sealed: &[SealedInput],
    job: agora_proto::JobSpec,
    request: &JobRequest,
    grant_for: impl Fn(Hash, AccountId) -> Signed<KeyGrant>,
) -> agora_proto::OrderView {
    let body = request
        .order_request(job, agora_client::buyer::now_ms())
        .unwrap();
    let submitted = t.buyer.submit(body).await.expect("submitted");
    let id = submitted.order_id;
    let assigned = t
        .wait_order(&id, Duration::from_secs(30), "assigned", |v| {
            v.provider.is_some() || v.state.is_final()
        })
        .await;
    if let Some(provider) = assigned.provider {
        t.client
            .post_grant(&id, &grant_for(id, provider))
            .await
            .unwrap_or_else(|e| panic!("posting the grant: {e}\n{}", t.logs()));
    }
    let _ = sealed;
    t.wait_final(&id, Duration::from_secs(60)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_are_refused_and_inputs_that_do_not_open_are_refunded() {
    let t = TestNet::start(1, |c| c.buyers = 2).await;
    let input = access_log(&t.scratch("in"));
    let request = logagg(&input);
    let buyer_key = t.net.buyer_keys[0].clone();
    let chain = agora_core::ChainId::new(t.info.chain_id.clone());
    let stranger = Keypair::from_seed("stranger");

    // 1. A key wrapped to another account: the provider cannot open it.
    let (job, sealed) = t
        .buyer
        .upload_job_sealed(&request, &t.scratch("seal1"))
        .await
        .expect("sealed upload");
    let input_hash = sealed[0].hash;
    let url = format!("{}/v1/blobs/{input_hash}", t.net.http_url);
    let path = format!("/v1/blobs/{input_hash}");
    let get = |auth: Option<String>| {
        let mut request = t.http.get(&url);
        if let Some(auth) = auth {
            request = request.header(agora_seal::AUTH_HEADER, auth);
        }
        request.send()
    };
    let now = agora_client::buyer::now_ms();
    let anonymous = get(None).await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 403);
    let body: agora_proto::ApiError = anonymous.json().await.unwrap();
    assert_eq!(body.error, "forbidden");
    assert!(body.message.contains("private"), "{body:?}");
    let signed_by_stranger = BlobAccess::header(&stranger, &chain, "GET", &path, None, now);
    assert_eq!(
        get(Some(signed_by_stranger))
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    let signed_by_buyer = BlobAccess::header(&buyer_key, &chain, "GET", &path, None, now);
    let own = get(Some(signed_by_buyer)).await.unwrap();
    assert_eq!(own.status().as_u16(), 200);
    let own = own.bytes().await.unwrap();
    assert!(agora_seal::is_sealed(&own).is_some());
    let own_size = own.len() as u64;

    let wrong_key = run_with_grant(&t, &sealed, job, &request, |id, provider| {
        let input = &sealed[0];
        let to_stranger = RecipientKey::of(&stranger.account()).unwrap();
        let mut wrap = agora_seal::wrap_key(input.key(), &to_stranger, input.header()).unwrap();
        // Addressed to the provider, sealed to someone else.
        wrap.recipient = provider;
        Signed::sign(
            &buyer_key,
            &chain,
            1,
            KeyGrant {
                order_id: id,
                keys: vec![BlobKey {
                    blob: input.hash,
                    wrap,
                }],
            },
        )
    })
    .await;
    assert_eq!(wrong_key.state, OrderState::Refunded, "{wrong_key:#?}");
    assert_eq!(wrong_key.refunded, wrong_key.escrow, "{wrong_key:#?}");
    assert_eq!(wrong_key.cost, agora_core::Amount::ZERO, "{wrong_key:#?}");
    let reason = wrong_key.refund_reason.clone().unwrap_or_default();
    assert!(reason.contains("does not open"), "{reason}\n{}", t.logs());

    // The stranger's signed GET naming the order is refused too: not a party.
    let naming = BlobAccess::header(
        &stranger,
        &chain,
        "GET",
        &path,
        Some(wrong_key.order_id),
        now,
    );
    assert_eq!(get(Some(naming)).await.unwrap().status().as_u16(), 403);
    // Nor may a stranger read the order's key grants or post one of its own, and the
    // buyer may grant keys only for the order's sealed inputs.
    let keys_path = format!("/v1/orders/{}/keys", wrong_key.order_id);
    let stranger_keys = BlobAccess::header(&stranger, &chain, "GET", &keys_path, None, now);
    let refused = t.client.get_signed_bytes(&keys_path, &stranger_keys).await;
    assert!(
        matches!(
            &refused,
            Err(agora_client::ClientError::Api { status: 403, .. })
        ),
        "{refused:?}"
    );
    let grant_of = |signer: &Keypair, blob: Hash| {
        let to = RecipientKey::of(&stranger.account()).unwrap();
        let wrap = agora_seal::wrap_key(sealed[0].key(), &to, sealed[0].header()).unwrap();
        Signed::sign(
            signer,
            &chain,
            3,
            KeyGrant {
                order_id: wrong_key.order_id,
                keys: vec![BlobKey { blob, wrap }],
            },
        )
    };
    let posted = t
        .client
        .post_grant(&wrong_key.order_id, &grant_of(&stranger, input_hash))
        .await;
    assert!(
        matches!(
            &posted,
            Err(agora_client::ClientError::Api { status: 403, .. })
        ),
        "{posted:?}"
    );
    let not_an_input = t
        .client
        .post_grant(
            &wrong_key.order_id,
            &grant_of(&buyer_key, Hash::of(b"other")),
        )
        .await;
    assert!(
        matches!(
            &not_an_input,
            Err(agora_client::ClientError::Api { status: 400, .. })
        ),
        "{not_an_input:?}"
    );

    // Another buyer's order naming the blob does not make that buyer a party to it.
    let other = agora_client::Buyer::connect(t.net.buyer_keys[1].clone(), &t.net.http_url)
        .await
        .expect("the second buyer connects");
    let mut borrowed_job = t
        .buyer
        .upload_job(&JobRequest {
            inputs: Vec::new(),
            ..request.clone()
        })
        .await
        .expect("the module");
    borrowed_job.inputs.push(agora_proto::InputRef {
        name: "log".into(),
        hash: input_hash,
        size: own_size,
        sealed: true,
    });
    // Priced below every ask, so it never runs and its escrow goes back.
    let mut cheap = request.clone();
    cheap.max_price = agora_core::Price(1);
    let borrowed = other
        .submit(cheap.order_request(borrowed_job, now).unwrap())
        .await
        .expect("an order naming another buyer's blob is accepted");
    let through_own_order = BlobAccess::header(
        &t.net.buyer_keys[1],
        &chain,
        "GET",
        &path,
        Some(borrowed.order_id),
        agora_client::buyer::now_ms(),
    );
    assert_eq!(
        get(Some(through_own_order))
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    let _ = other.cancel(&borrowed.order_id).await;
    let ended = t
        .wait_final(&borrowed.order_id, Duration::from_secs(30))
        .await;
    assert_eq!(ended.state, OrderState::Refunded, "{ended:#?}");

    // 2. A tampered ciphertext with a key that opens its header: refused on opening.
    let (mut job, sealed) = t
        .buyer
        .upload_job_sealed(&request, &t.scratch("seal2"))
        .await
        .expect("sealed upload");
    let good = {
        let path = format!("/v1/blobs/{}", sealed[0].hash);
        let auth = BlobAccess::header(&buyer_key, &chain, "GET", &path, None, now);
        t.client.get_signed_bytes(&path, &auth).await.unwrap()
    };
    let mut tampered = good.clone();
    let last = tampered.len() - 20;
    tampered[last] ^= 0x01;
    let stored = t.client.upload_bytes(tampered).await.expect("uploaded");
    job.inputs[0].hash = stored.hash;
    job.inputs[0].size = stored.size;
    let tampered_order = run_with_grant(&t, &sealed, job, &request, |id, provider| {
        let input = &sealed[0];
        let to_provider = RecipientKey::of(&provider).unwrap();
        let wrap = agora_seal::wrap_key(input.key(), &to_provider, input.header()).unwrap();
        Signed::sign(
            &buyer_key,
            &chain,
            2,
            KeyGrant {
                order_id: id,
                keys: vec![BlobKey {
                    blob: stored.hash,
                    wrap,
                }],
            },
        )
    })
    .await;
    assert_eq!(
        tampered_order.state,
        OrderState::Refunded,
        "{tampered_order:#?}"
    );
    assert_eq!(tampered_order.refunded, tampered_order.escrow);
    let reason = tampered_order.refund_reason.clone().unwrap_or_default();
    assert!(
        reason.contains("does not authenticate"),
        "{reason}\n{}",
        t.logs()
    );
    t.assert_ledger_sound().await;
}
