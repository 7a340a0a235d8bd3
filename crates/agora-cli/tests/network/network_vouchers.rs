//! Compute vouchers between real processes: one `agora node market`, one provider agent,
//! two buyers driving the real `agora voucher` binary over HTTP.
//!
//! The happy path: buyer A mints CU at the market's quoted index price (its balance drops
//! by exactly CU × price), sends part to buyer B, and B spends one CU on a WASM job that
//! settles; B's unused backing comes back to its balance, the provider is paid its price ×
//! CU used less the fee, and the ledger replays with conservation (voucher backing
//! included) holding. Then every bad input the issue names — a voucher spent twice, one
//! redeemed for the wrong class, an expired one, a transfer beyond what is held, a bad
//! signature — is refused with a clear error and moves nothing, an expired voucher's
//! backing is refunded to its holder, and a forward purchase cannot be spent before its
//! delivery window opens.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common_net::{AGORA, TestNet, fee, job, one_job_per_provider, sample};
use agora_core::{AccountId, Amount, ChainId, Hash, Price, Signed};
use agora_ledger::{TxBody, VoucherTerms};
use agora_proto::OrderState;
use agora_proto::api::VoucherView;
use serde_json::Value;

/// Runs `agora voucher SUBCOMMAND --json --market URL --wallet WALLET REST` (the common
/// flags first: job arguments after `--` end the command line).
fn voucher(t: &TestNet, wallet: &Path, args: &[&str]) -> (bool, Value, String) {
    let (subcommand, rest) = args.split_first().expect("a subcommand");
    let output = Command::new(AGORA)
        .args(["voucher", subcommand])
        .args(["--json", "--market", &t.net.http_url, "--wallet"])
        .arg(wallet)
        .args(rest)
        .output()
        .expect("agora voucher runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (output.status.success(), value, format!("{stdout}{stderr}"))
}

/// Like [`voucher`], failing the test unless it succeeded.
fn voucher_ok(t: &TestNet, wallet: &Path, args: &[&str]) -> Value {
    let (ok, value, text) = voucher(t, wallet, args);
    assert!(ok, "agora voucher {args:?} failed: {text}\n{}", t.logs());
    value
}

/// Like [`voucher`], expecting a refusal whose message contains `why`.
fn voucher_refused(t: &TestNet, wallet: &Path, args: &[&str], why: &str) {
    let (ok, _, text) = voucher(t, wallet, args);
    assert!(
        !ok,
        "agora voucher {args:?} should have been refused: {text}"
    );
    assert!(
        text.contains(why),
        "agora voucher {args:?}: expected {why:?} in: {text}"
    );
}

async fn holdings(t: &TestNet, account: &AccountId) -> Vec<VoucherView> {
    t.client
        .vouchers(account)
        .await
        .expect("the vouchers listing")
}

async fn units(t: &TestNet, account: &AccountId, series: &Hash) -> u64 {
    holdings(t, account)
        .await
        .iter()
        .find(|v| &v.series == series)
        .map_or(0, |v| v.cu)
}

/// Balances and voucher units of both buyers: what "nothing moved" compares.
async fn snapshot(
    t: &TestNet,
    a: &AccountId,
    b: &AccountId,
) -> (Amount, Amount, Vec<VoucherView>, Vec<VoucherView>) {
    (
        t.account(a).await.balance,
        t.account(b).await.balance,
        holdings(t, a).await,
        holdings(t, b).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vouchers_are_minted_sent_redeemed_for_a_job_and_refuse_bad_input() {
    let mut t = TestNet::start(1, |config| {
        one_job_per_provider(config);
        config.buyers = 2;
    })
    .await;
    let (key_a, key_b) = (t.net.buyer_keys[0].clone(), t.net.buyer_keys[1].clone());
    let (a, b) = (key_a.account(), key_b.account());
    let (wallet_a, wallet_b) = (
        t.net.buyer_wallets[0].clone(),
        t.net.buyer_wallets[1].clone(),
    );
    let provider = t.provider_accounts()[0];
    let provider_price = t.net.providers[0].price;

    // The quote is the class's spot index: the one provider's ask.
    let quote = voucher_ok(&t, &wallet_a, &["quote"]);
    assert_eq!(quote["price_per_cu"], provider_price.0, "{quote:#}");

    // A mints 5 CU: exactly 5 × price leaves its balance.
    let a_before = t.account(&a).await.balance;
    let minted = voucher_ok(&t, &wallet_a, &["mint", "--cu", "5"]);
    let series: Hash = minted["series"].as_str().unwrap().parse().unwrap();
    let price = minted["price_per_cu"].as_u64().unwrap();
    assert_eq!(price, provider_price.0);
    assert_eq!(
        t.account(&a).await.balance.0,
        a_before.0 - 5 * price,
        "minting locks CU × price"
    );
    assert_eq!(units(&t, &a, &series).await, 5);

    // A sends 3 CU to B.
    let series_arg = series.to_string();
    voucher_ok(
        &t,
        &wallet_a,
        &[
            "send",
            "--series",
            &series_arg,
            "--to",
            &b.to_string(),
            "--cu",
            "3",
        ],
    );
    assert_eq!(units(&t, &a, &series).await, 2);
    assert_eq!(units(&t, &b, &series).await, 3);
    let listed = voucher_ok(&t, &wallet_b, &["list"]);
    assert_eq!(listed[0]["cu"], 3, "{listed:#}");
    assert_eq!(listed[0]["status"], "redeemable");

    // B spends one CU on a WASM job, which settles.
    let b_before = t.account(&b).await.balance;
    let provider_before = t.account(&provider).await.balance;
    let module = sample("montecarlo");
    let redeemed = voucher_ok(
        &t,
        &wallet_b,
        &[
            "redeem",
            "--series",
            &series_arg,
            "--max-cu",
            "1",
            "--verify",
            "none",
            module.to_str().unwrap(),
            "--",
            "20000",
            "7",
        ],
    );
    assert_eq!(redeemed["cu_redeemed"], 1, "{redeemed:#}");
    let settled = &redeemed["job"];
    assert_eq!(settled["state"], "settled", "{redeemed:#}\n{}", t.logs());
    assert_eq!(settled["exit_code"], 0);
    let order_id: Hash = settled["order_id"].as_str().unwrap().parse().unwrap();
    let view = t.order(&order_id).await;
    assert_eq!(view.state, OrderState::Settled);
    assert!(view.cost.0 > 0 && view.cost.0 <= price, "{view:?}");
    assert_eq!(units(&t, &b, &series).await, 2, "one CU spent");
    // The unused part of the CU's backing is back in B's balance; nothing else moved.
    assert_eq!(
        t.account(&b).await.balance.0,
        b_before.0 + (price - view.cost.0),
        "B gets back the backing the job did not use"
    );
    assert_eq!(
        t.account(&provider).await.balance.0,
        provider_before.0 + view.cost.0 - fee(view.cost, t.info.fee_bps).0,
        "the provider is paid price × CU used, less the fee"
    );

    // Bad input: each refused with a clear error, nothing moved.
    let before = snapshot(&t, &a, &b).await;

    // Spent twice: A's last 2 CU go to B, then A tries to spend them again.
    voucher_ok(
        &t,
        &wallet_a,
        &[
            "send",
            "--series",
            &series_arg,
            "--to",
            &b.to_string(),
            "--cu",
            "2",
        ],
    );
    let after_send = snapshot(&t, &a, &b).await;
    voucher_refused(
        &t,
        &wallet_a,
        &[
            "send",
            "--series",
            &series_arg,
            "--to",
            &b.to_string(),
            "--cu",
            "2",
        ],
        "holds 0 CU",
    );
    voucher_refused(
        &t,
        &wallet_a,
        &["redeem", "--series", &series_arg, module.to_str().unwrap()],
        "holds no units",
    );
    assert_eq!(
        snapshot(&t, &a, &b).await,
        after_send,
        "a double spend moved something"
    );
    assert_eq!(units(&t, &b, &series).await, 4);
    assert_eq!(before.0, after_send.0, "sending vouchers moves no balance");

    // More than held.
    voucher_refused(
        &t,
        &wallet_b,
        &[
            "send",
            "--series",
            &series_arg,
            "--to",
            &a.to_string(),
            "--cu",
            "100",
        ],
        "holds 4 CU of voucher series",
    );
    assert_eq!(snapshot(&t, &a, &b).await, after_send);

    // Wrong class: B's CPU units named as a GPU series, for a CPU order: the node refuses
    // the class before the ledger is asked; and the ledger has no such series to spend.
    let held_line = holdings(&t, &b)
        .await
        .into_iter()
        .find(|v| v.series == series)
        .expect("B holds the series");
    let cpu_terms = VoucherTerms {
        class: held_line.class.clone(),
        price_per_cu: Price(held_line.price_per_cu),
        redeem_from_ms: held_line.redeem_from_ms,
        expires_ms: held_line.expires_ms,
    };
    assert_eq!(cpu_terms.series_id(), series);
    let gpu_terms = VoucherTerms {
        class: "gpu:A100".into(),
        ..cpu_terms.clone()
    };
    let buyer_b = agora_client::Buyer::connect(key_b.clone(), &t.net.http_url)
        .await
        .expect("buyer B connects");
    let request = job("montecarlo", &["1000".into(), "1".into()]);
    let spec = buyer_b.upload_job(&request).await.expect("upload");
    let body = request
        .order_request(spec, agora_client::buyer::now_ms())
        .expect("an order");
    let refused = buyer_b
        .submit_with_voucher(body.clone(), &gpu_terms)
        .await
        .expect_err("a GPU voucher cannot pay for a CPU order");
    let text = refused.to_string();
    assert!(
        text.contains("escrow_mismatch") || text.contains("resource class"),
        "{text}"
    );
    assert!(text.contains("gpu:A100"), "{text}");
    assert_eq!(
        snapshot(&t, &a, &b).await,
        after_send,
        "a wrong-class redemption moved something"
    );

    // Bad signature: a transfer whose signature was tampered with.
    let chain = ChainId::new(t.info.chain_id.clone());
    let nonce = t.account(&b).await.next_nonce;
    let mut forged = Signed::sign(
        &key_b,
        &chain,
        nonce,
        TxBody::TransferVoucher {
            to: a,
            series,
            cu: 1,
        },
    );
    forged.signature.0[7] ^= 0x40;
    let refused = t
        .client
        .submit_tx(&forged)
        .await
        .expect_err("a forged signature");
    assert!(refused.to_string().contains("signature"), "{refused}");
    assert_eq!(
        snapshot(&t, &a, &b).await,
        after_send,
        "a forged transfer moved something"
    );

    // Expired: A mints a voucher that lives 3 s; after that it can no longer be spent
    // or sent, only refunded to its holder, at the locked price.
    let a_balance = t.account(&a).await.balance;
    let short = voucher_ok(&t, &wallet_a, &["mint", "--cu", "2", "--expires-in", "3s"]);
    let short_series = short["series"].as_str().unwrap().to_string();
    assert_eq!(t.account(&a).await.balance.0, a_balance.0 - 2 * price);
    // Until the node's clock (which stamps blocks) is past the expiry.
    let expires_ms = short["expires_ms"].as_u64().unwrap();
    let wait = expires_ms.saturating_sub(agora_client::buyer::now_ms()) + 300;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let listed = voucher_ok(&t, &wallet_a, &["list"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["series"] == short_series.as_str() && v["status"] == "expired"),
        "{listed:#}"
    );
    let frozen = snapshot(&t, &a, &b).await;
    voucher_refused(
        &t,
        &wallet_a,
        &[
            "redeem",
            "--series",
            &short_series,
            module.to_str().unwrap(),
        ],
        "expired",
    );
    voucher_refused(
        &t,
        &wallet_a,
        &[
            "send",
            "--series",
            &short_series,
            "--to",
            &b.to_string(),
            "--cu",
            "1",
        ],
        "expired",
    );
    assert_eq!(
        snapshot(&t, &a, &b).await,
        frozen,
        "spending an expired voucher moved something"
    );
    // Anyone may refund it: B does, and A's balance is whole again.
    voucher_ok(
        &t,
        &wallet_b,
        &[
            "expire",
            "--series",
            &short_series,
            "--holder",
            &a.to_string(),
        ],
    );
    assert_eq!(t.account(&a).await.balance, a_balance);
    assert_eq!(holdings(&t, &a).await.len(), 0);

    // A forward purchase: 1 CU at today's price, deliverable from an hour from now. It is
    // listed as `forward` and cannot be spent before its window opens.
    let forward = voucher_ok(
        &t,
        &wallet_a,
        &[
            "mint",
            "--cu",
            "1",
            "--starts-in",
            "1h",
            "--expires-in",
            "2h",
        ],
    );
    let forward_series = forward["series"].as_str().unwrap().to_string();
    assert_eq!(forward["price_per_cu"], price);
    let listed = voucher_ok(&t, &wallet_a, &["list"]);
    assert_eq!(listed[0]["status"], "forward", "{listed:#}");
    let frozen = snapshot(&t, &a, &b).await;
    voucher_refused(
        &t,
        &wallet_a,
        &[
            "redeem",
            "--series",
            &forward_series,
            module.to_str().unwrap(),
        ],
        "is redeemable from",
    );
    assert_eq!(
        snapshot(&t, &a, &b).await,
        frozen,
        "an early redemption moved something"
    );

    // The ledger replays with conservation, voucher backing included, and no escrow left.
    let check = t.assert_ledger_sound().await;
    let supply = check.supply.expect("a supply");
    assert_eq!(
        supply.vouchers.0,
        5 * price,
        "B's 4 CU and A's forward CU are still backed"
    );
    t.stop_and_verify();
}

/// `agora job run --voucher SERIES` pays every task of a job spec with voucher units:
/// two tasks redeem concurrently (they take turns on the buyer's ledger nonce), each
/// settles, each redeems the CU its worst case needs, and what a task did not use comes
/// back to the balance. A series the buyer does not hold is refused before anything is
/// uploaded or moved. `agora job submit --voucher` pays the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_run_pays_each_task_of_a_spec_with_a_voucher() {
    let t = TestNet::start(2, one_job_per_provider).await;
    let buyer = t.net.buyer_keys[0].account();
    let wallet = t.net.buyer_wallets[0].clone();
    let minted = voucher_ok(&t, &wallet, &["mint", "--cu", "3"]);
    let series: Hash = minted["series"].as_str().unwrap().parse().unwrap();
    let price = minted["price_per_cu"].as_u64().unwrap();

    let spec = t.scratch("spec").join("montecarlo.toml");
    std::fs::create_dir_all(spec.parent().unwrap()).unwrap();
    std::fs::write(
        &spec,
        format!(
            "name = \"two-shards\"\nmodule = {:?}\nmax_cu = 1\nverify = \"none\"\n\
             concurrency = 2\n\n[[tasks]]\nargs = [\"20000\", \"1\"]\n\n\
             [[tasks]]\nargs = [\"20000\", \"2\"]\n",
            sample("montecarlo").display().to_string()
        ),
    )
    .unwrap();
    let run = |series: String| {
        let mut command = tokio::process::Command::new(AGORA);
        command
            .args(["job", "run", "--json", "--voucher", &series])
            .args(["--market", &t.net.http_url, "--wallet"])
            .arg(&wallet)
            .arg("--output-dir")
            .arg(t.scratch("out"))
            .arg(&spec)
            .env("TMPDIR", t.scratch("tmp"))
            .kill_on_drop(true);
        command
    };

    // Not held: refused before anything moves.
    let before = (t.account(&buyer).await, units(&t, &buyer, &series).await);
    let output = t
        .within(
            Duration::from_secs(30),
            "agora job run",
            run(Hash::of(b"no such series").to_string()).output(),
        )
        .await
        .expect("the agora binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("holds no units of voucher series"),
        "{stderr}"
    );
    assert_eq!(
        (t.account(&buyer).await, units(&t, &buyer, &series).await),
        before,
        "a refused voucher moved something"
    );

    let output = t
        .within(
            Duration::from_secs(90),
            "agora job run --voucher",
            run(series.to_string()).output(),
        )
        .await
        .expect("the agora binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        t.logs()
    );
    let summary: Value = serde_json::from_str(&stdout).expect("a JSON summary");
    assert_eq!(summary["settled"], 2, "{summary:#}");
    let mut cost = 0;
    for task in summary["tasks"].as_array().unwrap() {
        let id: Hash = task["order_id"].as_str().unwrap().parse().unwrap();
        let view = t.order(&id).await;
        assert_eq!(view.state, OrderState::Settled, "{view:?}");
        assert!(view.cost.0 > 0 && view.cost.0 <= price, "{view:?}");
        cost += view.cost.0;
    }
    assert_eq!(
        units(&t, &buyer, &series).await,
        1,
        "one CU per task redeemed"
    );
    assert_eq!(
        t.account(&buyer).await.balance.0,
        before.0.balance.0 + 2 * price - cost,
        "each task's unused backing comes back to the balance, and nothing else moves"
    );

    // `agora job submit --voucher` spends the last CU on one order without following it.
    let output = Command::new(AGORA)
        .args(["job", "submit", "--json", "--voucher", &series.to_string()])
        .args(["--verify", "none", "--max-cu", "1"])
        .args(["--market", &t.net.http_url, "--wallet"])
        .arg(&wallet)
        .arg(sample("montecarlo"))
        .args(["--", "20000", "3"])
        .env("TMPDIR", t.scratch("tmp"))
        .output()
        .expect("the agora binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let submitted: Value = serde_json::from_str(&stdout).expect("a JSON answer");
    let id: Hash = submitted[0]["order_id"].as_str().unwrap().parse().unwrap();
    let view = t.wait_final(&id, Duration::from_secs(60)).await;
    assert_eq!(view.state, OrderState::Settled, "{view:?}\n{}", t.logs());
    assert_eq!(units(&t, &buyer, &series).await, 0, "the last CU redeemed");
    t.assert_ledger_sound().await;
}
