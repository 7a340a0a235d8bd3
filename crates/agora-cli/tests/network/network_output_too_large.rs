//! A job whose output is larger than the market's blob limit, on a real network of
//! processes (a market with a small `--max-blob-bytes`, two providers).
//!
//! Every honest provider computes the same output, so running the job on another
//! provider cannot help: the order is refunded after the first run, with a reason that
//! names the output, its size and the limit, and without counting against the provider.
//! `agora job run` exits 2 (refunded), prints that reason, and says the verification
//! was not run instead of leaving it `pending`.

use std::time::{Duration, Instant};

use crate::common_net::{AGORA, TestNet, sample};
use agora_client::OrderFilter;
use agora_proto::OrderState;

/// The market's blob limit: the pathtrace module (about 41 KB) fits, its image does not.
const BLOB_LIMIT: u64 = 64 * 1024;
/// A 200 x 200 P6 image: 15 header bytes and 120,000 of pixels.
const IMAGE_BYTES: u64 = 15 + 200 * 200 * 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_over_the_blob_limit_is_refunded_at_once_and_says_why() {
    let started = Instant::now();
    let t = TestNet::start(2, |c| {
        c.market_args = vec!["--max-blob-bytes".into(), BLOB_LIMIT.to_string()];
    })
    .await;
    let out = t.scratch("out");
    let mut command = tokio::process::Command::new(AGORA);
    command
        .args(["job", "run", "--market", &t.net.http_url, "--wallet"])
        .arg(&t.net.buyer_wallets[0])
        .arg("--output-dir")
        .arg(&out)
        .arg(sample("pathtrace"))
        .args(["--", "200", "200", "0", "200", "1"])
        .env("TMPDIR", t.scratch("tmp"))
        .kill_on_drop(true);
    let output = t
        .within(Duration::from_secs(90), "agora job run", command.output())
        .await
        .expect("the agora binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let context = format!("stdout: {stdout}\nstderr: {stderr}\n{}", t.logs());
    assert_eq!(output.status.code(), Some(2), "refunded: {context}");
    assert!(stdout.contains("outcome   refunded"), "{context}");
    let said = format!(
        "output tile.ppm is {IMAGE_BYTES} bytes, larger than the market's blob limit of {BLOB_LIMIT} bytes"
    );
    assert!(
        stdout.contains(&said),
        "the reason does not say {said:?}: {context}"
    );
    assert!(
        !stdout.contains("no other provider can run it"),
        "{context}"
    );
    // The default policy, `adaptive:0.05:10`, never got to check anything.
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("verify")).collect();
    assert!(
        matches!(lines[..], [line] if line.starts_with("verify    adaptive")
            && line.ends_with(" — not run (refunded)")),
        "{lines:?}: {context}"
    );

    // The market's record: one attempt, no reassignment, the escrow back in full.
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
    assert_eq!(
        view.attempts, 1,
        "run again although it could not help: {view:#?}"
    );
    assert!(
        !view.events.iter().any(|e| e.detail.contains("reassigning")),
        "{:#?}",
        view.events
    );
    assert_eq!(view.refunded, view.escrow, "{view:#?}");
    assert_eq!(view.verification.status, "failed", "{view:#?}");
    assert!(
        view.refund_reason
            .as_deref()
            .is_some_and(|r| r.contains(&said)),
        "{view:#?}"
    );
    // The provider delivered what the job computed: it is not blamed for it.
    let provider = view.provider.expect("the order had a provider");
    let record = t.provider_view(&provider).await;
    assert_eq!(record.failed, 0, "{record:#?}");
    t.assert_ledger_sound().await;
    eprintln!(
        "network_output_too_large: refunded after 1 attempt; whole test {:.1?}",
        started.elapsed()
    );
}
