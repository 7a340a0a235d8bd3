//! `agora job run` follows its order while the market process is SIGKILLed and started
//! again on the same data directory and HTTP port, on a real network of processes.
//!
//! Proves that the follower does not give up on the dropped connection: it says on
//! stderr that it is reconnecting, comes back once the market answers, reads where the
//! order stands and ends with the order's final state — the same state, bill and result
//! digest the market reports — and the exit code that state calls for.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common_net::{AGORA, TestNet, fast_crash_recovery, sample};
use agora_client::OrderFilter;
use agora_proto::OrderState;
use serde_json::Value;

/// After the restart, how long a resumed order waits for its provider to come back.
const RESUME_GRACE_MS: u64 = 3_000;
/// How long the market stays down: long enough for the follower to notice.
const DOWN_FOR: Duration = Duration::from_millis(1_500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_reconnects_after_a_market_crash_and_reports_the_final_state() {
    let started = Instant::now();
    let mut t = TestNet::start(1, |c| {
        fast_crash_recovery(c, RESUME_GRACE_MS);
    })
    .await;
    let buyer = t.buyer.account();
    let out = t.scratch("out");
    // A job that runs for seconds, so the market dies while it runs.
    let mut child = tokio::process::Command::new(AGORA)
        .args(["job", "run", "--json", "--verify", "none", "--max-cu", "30"])
        .args(["--market", &t.net.http_url, "--wallet"])
        .arg(&t.net.buyer_wallets[0])
        .arg("--output-dir")
        .arg(&out)
        .arg(sample("montecarlo"))
        .args(["--", "15000000", "3"])
        .env("TMPDIR", t.scratch("tmp"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the agora binary starts");

    // Wait until the follower's order runs.
    let filter = OrderFilter {
        buyer: Some(buyer),
        ..OrderFilter::default()
    };
    let running = t
        .within(Duration::from_secs(30), "the order to run", async {
            loop {
                if let Ok(orders) = t.client.orders(&filter).await
                    && let Some(order) = orders.first()
                {
                    if order.state == OrderState::Running {
                        return order.order_id;
                    }
                    assert!(
                        !order.state.is_final(),
                        "the order ended before the crash: {order:#?}"
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    assert!(
        child.try_wait().expect("the follower's status").is_none(),
        "the follower exited before the crash"
    );

    t.net.kill_market();
    tokio::time::sleep(DOWN_FOR).await;
    assert!(
        child.try_wait().expect("the follower's status").is_none(),
        "the follower gave up while the market was down\n{}",
        t.logs()
    );
    t.net
        .restart_market()
        .unwrap_or_else(|e| panic!("the market did not restart: {e}\n{}", t.logs()));

    let output = t
        .within(
            Duration::from_secs(90),
            "the follower to finish",
            child.wait_with_output(),
        )
        .await
        .expect("waiting for agora job run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("reconnecting for up to"),
        "the follower did not say it was reconnecting: {stderr}"
    );
    assert!(
        stderr.contains("reconnected to the market after"),
        "the follower did not say it was back: {stderr}"
    );
    let summary: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON summary ({e}), exit {:?}\nstdout: {stdout}\nstderr: {stderr}\n{}",
            output.status,
            t.logs()
        )
    });

    // What the follower printed is the order's final state as the market has it.
    let view = t.wait_final(&running, Duration::from_secs(10)).await;
    assert_eq!(summary["order_id"], running.to_string(), "{summary:#}");
    assert_eq!(
        summary["state"],
        serde_json::to_value(view.state).expect("a state"),
        "{summary:#}\n{view:#?}"
    );
    assert_eq!(summary["cost"], view.cost.0, "{summary:#}");
    assert_eq!(summary["refunded"], view.refunded.0, "{summary:#}");
    assert!(
        view.events
            .iter()
            .any(|e| e.detail.contains("resumed after a market restart")),
        "the order was not in flight when the market died: {:#?}",
        view.events
    );
    match view.state {
        OrderState::Settled => {
            let digest = view.result.as_ref().map(|r| r.digest.to_string());
            assert_eq!(summary["digest"].as_str(), digest.as_deref(), "{summary:#}");
            assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
        }
        OrderState::Refunded => assert_eq!(output.status.code(), Some(2), "stderr: {stderr}"),
        state => unreachable!("waited for a final state, got {state}"),
    }
    t.assert_ledger_sound().await;
    eprintln!(
        "network_follow_reconnect: the follower ended {} after a {DOWN_FOR:?} outage; whole test {:.1?}",
        view.state,
        started.elapsed()
    );
}
