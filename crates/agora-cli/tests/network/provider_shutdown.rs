//! `agora node provider` stopping, as a process: SIGTERM while a long job runs ends the
//! process within its `--shutdown-grace` and a few seconds (the job is cancelled, not
//! waited out), and an order the buyer cancels stops computing at once, so the agent's
//! only slot takes the next order on its first attempt and SIGTERM is prompt.

use std::time::{Duration, Instant};

use crate::common_net::{TestNet, job, one_job_per_provider};
use agora_core::Fuel;
use agora_proto::OrderState;

/// What a stopped agent may take beyond its grace: halting its jobs, closing the p2p
/// node, exiting. Generous for a loaded machine; a wedged agent never exits.
const EXIT_SLACK: Duration = Duration::from_secs(4);

/// A job that runs far longer than any of these tests (minutes on this machine).
fn long_job() -> agora_client::JobRequest {
    let mut request = job("montecarlo", &["400000000".into(), "3".into()]);
    request.fuel_budget = Fuel::compute_units(400);
    request
}

/// Sends SIGTERM to provider `index` and waits for the process to exit; returns how long
/// it took.
async fn sigterm_and_wait(t: &mut TestNet, index: usize, limit: Duration) -> Duration {
    let pid = t.net.providers[index].pid;
    // SAFETY: signalling a child of this process by its pid; it is reaped only below.
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "SIGTERM to provider {index} (pid {pid})");
    let sent = Instant::now();
    while t.net.providers[index].is_running() {
        assert!(
            sent.elapsed() < limit,
            "provider {index} still runs {limit:?} after SIGTERM\n{}",
            t.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sent.elapsed()
}

fn provider_log(t: &TestNet, index: usize) -> String {
    std::fs::read_to_string(&t.net.providers[index].log).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_long_job_running_exits_within_the_grace() {
    let grace = Duration::from_secs(1);
    let mut t = TestNet::start(1, |c| {
        one_job_per_provider(c);
        c.provider_args
            .extend(["--shutdown-grace".to_string(), "1s".to_string()]);
    })
    .await;
    let order = t
        .buyer
        .submit_job(&long_job())
        .await
        .unwrap_or_else(|e| panic!("submitting the long job: {e}\n{}", t.logs()))
        .order_id;
    t.wait_order(&order, Duration::from_secs(15), "running", |v| {
        v.state == OrderState::Running
    })
    .await;

    let took = sigterm_and_wait(&mut t, 0, grace + EXIT_SLACK).await;
    let log = provider_log(&t, 0);
    assert!(
        log.contains("cancelling the jobs still running"),
        "the job was not cut off:\n{log}"
    );
    // The agent said it gave the order up, so the market does not count it as running.
    let view = t
        .wait_order(&order, Duration::from_secs(10), "given up", |v| {
            v.state != OrderState::Running
        })
        .await;
    assert!(view.attempts >= 1, "{view:#?}");
    eprintln!(
        "provider_shutdown: SIGTERM with a running job: exited after {took:.1?} (grace {grace:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_order_frees_the_slot_at_once_and_sigterm_is_prompt() {
    let mut t = TestNet::start(1, one_job_per_provider).await;
    let long = t
        .buyer
        .submit_job(&long_job())
        .await
        .unwrap_or_else(|e| panic!("submitting the long job: {e}\n{}", t.logs()))
        .order_id;
    t.wait_order(&long, Duration::from_secs(15), "running", |v| {
        v.state == OrderState::Running
    })
    .await;
    let cancelled = t
        .within(Duration::from_secs(15), "cancelling", t.buyer.cancel(&long))
        .await
        .unwrap_or_else(|e| panic!("the buyer's cancel: {e}\n{}", t.logs()));
    assert_eq!(cancelled.state, OrderState::Refunded, "{cancelled:#?}");

    // The market aborted the job; its sandbox stops, and the one slot runs the next
    // order on its first attempt (a still-computing sandbox would make the agent decline).
    let short = job("montecarlo", &["100000".into(), "1".into()]);
    let next = t
        .buyer
        .submit_job(&short)
        .await
        .unwrap_or_else(|e| panic!("submitting the next job: {e}\n{}", t.logs()))
        .order_id;
    let view = t.wait_final(&next, Duration::from_secs(20)).await;
    assert_eq!(
        (view.state, view.attempts),
        (OrderState::Settled, 1),
        "{view:#?}\n{}",
        t.logs()
    );

    // Nothing runs any more, so nothing holds the process up.
    let took = sigterm_and_wait(&mut t, 0, EXIT_SLACK).await;
    assert!(
        provider_log(&t, 0).contains("stopped"),
        "no clean stop:\n{}",
        t.logs()
    );
    eprintln!("provider_shutdown: SIGTERM after an aborted job: exited after {took:.1?}");
}
