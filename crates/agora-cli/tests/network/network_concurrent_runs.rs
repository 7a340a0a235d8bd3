//! Six `agora job run` processes at once from one wallet file, on a real network of
//! processes: every escrow needs the account's next ledger nonce, so the runs race for
//! nonces.
//!
//! Two rounds. In the first the runs share a temporary directory, so they take turns on
//! the submit lock every process signing with that key uses. In the second each run has
//! its own temporary directory, hence its own lock file: nothing serializes them, and
//! only the client's retry (fetch the next nonce, sign the escrow again, back off at
//! random) keeps them from failing with `nonce … was already used`. Both rounds must
//! settle all six orders, each with exactly one escrow on the chain, and the account's
//! nonce must have advanced by exactly one per order.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common_net::{AGORA, TestNet, assert_paid_once, escrow_txs, sample};
use agora_proto::OrderState;
use serde_json::Value;

/// Concurrent runs per round.
const RUNS: usize = 6;
/// How long one round (six uploads, submissions and runs) may take.
const ROUND_LIMIT: Duration = Duration::from_secs(120);

/// What one `agora job run` process did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Starts `RUNS` `agora job run --json` processes together, run `i` with the temporary
/// directory `tmp(i)`, and waits for all of them.
async fn round(t: &TestNet, name: &str, tmp: impl Fn(usize) -> PathBuf) -> Vec<Run> {
    let out = t.scratch(&format!("{name}-out"));
    let mut children = Vec::new();
    for i in 0..RUNS {
        let dir = tmp(i);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let child = tokio::process::Command::new(AGORA)
            .args(["job", "run", "--json", "--verify", "none"])
            .args(["--market", &t.net.http_url, "--wallet"])
            .arg(&t.net.buyer_wallets[0])
            .arg("--output-dir")
            .arg(&out)
            .arg(sample("montecarlo"))
            .args(["--", "20000", &format!("{}", i + 1)])
            .env("TMPDIR", &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the agora binary starts");
        children.push(child);
    }
    let waits = children.into_iter().map(|child| child.wait_with_output());
    let outputs = t
        .within(
            ROUND_LIMIT,
            &format!("{name}: {RUNS} concurrent runs"),
            futures_join_all(waits),
        )
        .await;
    outputs
        .into_iter()
        .map(|output| {
            let output = output.expect("waiting for agora job run");
            Run {
                code: output.status.code(),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        })
        .collect()
}

/// Awaits every future, concurrently (the processes run regardless; this only collects).
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.expect("a wait task"));
    }
    outputs
}

/// Checks that every run of a round exited 0 with a settled order; returns the ids.
fn settled_ids(t: &TestNet, name: &str, runs: &[Run]) -> Vec<agora_core::Hash> {
    let mut ids = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        assert!(
            !run.stderr.contains("already used"),
            "{name} run {i} saw a nonce refusal: {}\n{}",
            run.stderr,
            t.logs()
        );
        assert_eq!(
            run.code,
            Some(0),
            "{name} run {i} failed\nstdout: {}\nstderr: {}\n{}",
            run.stdout,
            run.stderr,
            t.logs()
        );
        let summary: Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("{name} run {i} printed no JSON ({e}): {}", run.stdout));
        assert_eq!(summary["state"], "settled", "{name} run {i}: {summary:#}");
        assert_eq!(summary["exit_code"], 0, "{name} run {i}: {summary:#}");
        let id = summary["order_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{name} run {i}: no order id in {summary:#}"));
        ids.push(id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_concurrent_runs_from_one_wallet_all_settle() {
    let started = Instant::now();
    let t = TestNet::start(3, |_| {}).await;
    let buyer = t.buyer.account();
    let nonce_before = t.account(&buyer).await.next_nonce;
    let tmp_root = t.scratch("tmp");

    // Round one: one temporary directory, so one submit lock for all six.
    let shared: &Path = &tmp_root.join("shared");
    let locked_started = Instant::now();
    let locked = round(&t, "locked", |_| shared.to_path_buf()).await;
    let locked_ids = settled_ids(&t, "locked", &locked);
    let locked_took = locked_started.elapsed();
    assert!(
        shared.read_dir().expect("the shared tmp").any(|e| e
            .expect("an entry")
            .file_name()
            .to_string_lossy()
            .ends_with(".lock")),
        "the runs took no submit lock in their TMPDIR"
    );

    // Round two: a temporary directory each, so no common lock: retries alone.
    let unlocked_started = Instant::now();
    let unlocked = round(&t, "unlocked", |i| tmp_root.join(format!("own-{i}"))).await;
    let unlocked_ids = settled_ids(&t, "unlocked", &unlocked);
    let unlocked_took = unlocked_started.elapsed();

    // One escrow per order, each order paid once, and one nonce per escrow.
    let all: Vec<_> = locked_ids.iter().chain(&unlocked_ids).copied().collect();
    let distinct: std::collections::BTreeSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), 2 * RUNS, "order ids repeat: {all:?}");
    let blocks = t.blocks().await;
    let txs = escrow_txs(&blocks);
    let logs = t.logs();
    for id in &all {
        let view = t.order(id).await;
        assert_eq!(view.state, OrderState::Settled, "{view:#?}");
        assert_paid_once(&view, txs.get(id), &logs);
    }
    let nonce_after = t.account(&buyer).await.next_nonce;
    assert_eq!(
        nonce_after - nonce_before,
        2 * RUNS as u64,
        "one ledger nonce per escrow"
    );
    t.assert_ledger_sound().await;
    eprintln!(
        "network_concurrent_runs: {RUNS} runs with a shared lock in {locked_took:.1?}, \
         {RUNS} without in {unlocked_took:.1?}; whole test {:.1?}",
        started.elapsed()
    );
}
