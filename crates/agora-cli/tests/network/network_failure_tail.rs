//! A job that fails after writing something, on a real network of processes (a market and
//! one provider): the provider signs a bounded tail of what the job wrote into its failure
//! report, and the buyer reads it under the refund reason in `agora job run` and
//! `agora job status`. A failed job is the job's own fault, so the buyer pays nothing.

use std::time::{Duration, Instant};

use crate::common_net::{AGORA, TestNet, sample};
use agora_client::OrderFilter;
use agora_proto::OrderState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_jobs_last_words_reach_the_buyer() {
    let started = Instant::now();
    let t = TestNet::start(1, |_| {}).await;
    let funds = t.account(&t.buyer.account()).await.balance;
    // life prints "life: step N population P" every 100 steps; 100,000 steps need far
    // more than 1 CU, so it runs out of fuel after printing a few.
    let mut command = tokio::process::Command::new(AGORA);
    command
        .args(["job", "run", "--market", &t.net.http_url, "--wallet"])
        .arg(&t.net.buyer_wallets[0])
        .args(["--verify", "none", "--max-cu", "1", "--output-dir"])
        .arg(t.scratch("out"))
        .arg(sample("life"))
        .args(["--", "100000", "4"])
        .env("TMPDIR", t.scratch("tmp"))
        .kill_on_drop(true);
    let output = t
        .within(Duration::from_secs(90), "agora job run", command.output())
        .await
        .expect("the agora binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let context = format!(
        "stdout: {stdout}\nstderr: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        t.logs()
    );
    assert_eq!(output.status.code(), Some(2), "refunded: {context}");
    assert!(stdout.contains("out of fuel"), "{context}");
    assert!(stdout.contains("--- stdout (last "), "{context}");
    assert!(stdout.contains("life: step 100 population "), "{context}");

    let orders = t
        .client
        .orders(&OrderFilter {
            buyer: Some(t.buyer.account()),
            ..OrderFilter::default()
        })
        .await
        .unwrap_or_else(|e| panic!("GET /v1/orders: {e}\n{}", t.logs()));
    assert_eq!(orders.len(), 1, "{orders:#?}");
    let view = &orders[0];
    assert_eq!(view.state, OrderState::Refunded, "{view:#?}");
    assert_eq!(view.attempts, 1, "the job's own failure is not retried");
    let reason = view.refund_reason.clone().unwrap_or_default();
    assert!(reason.contains("life: step 100 population "), "{reason}");

    // `agora job status` shows the same tail.
    let status = tokio::process::Command::new(AGORA)
        .args([
            "job",
            "status",
            &view.order_id.to_string(),
            "--market",
            &t.net.http_url,
        ])
        .output()
        .await
        .expect("the agora binary runs");
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{said}\n{}", t.logs());
    assert!(said.contains("reason    the job itself failed"), "{said}");
    assert!(said.contains("life: step 100 population "), "{said}");

    // Refunded in full: a failed job is not billed.
    assert_eq!(view.refunded, view.escrow, "{view:#?}");
    assert_eq!(t.account(&t.buyer.account()).await.balance, funds);
    t.assert_ledger_sound().await;
    eprintln!(
        "network_failure_tail: refunded with the job's stdout tail; whole test {:.1?}",
        started.elapsed()
    );
}
