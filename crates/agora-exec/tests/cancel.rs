//! Cancelling a job from another thread: a running job stops within about one epoch
//! tick and says it was cancelled (not its own fault); a job cancelled before it starts
//! never runs; a token nobody cancels changes nothing; and the executor keeps working.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_core::Fuel;
use agora_exec::{CancelToken, ExecError, Executor};
use common::*;

/// Far more than any check here waits; a cancelled job stops in about 10 ms.
const PROMPT: Duration = Duration::from_secs(1);

fn spin_job(id: &str) -> agora_exec::JobSpec {
    let mut job = job(module(r#"(func (export "_start") (loop (br 0)))"#), id);
    // Minutes of work, and no wall-clock limit to speak of: only the cancel can stop it.
    job.limits.fuel = Fuel::compute_units(10_000);
    job.limits.wall_timeout = Duration::from_secs(3600);
    job
}

#[test]
fn a_running_job_stops_promptly_when_cancelled() {
    let executor = Arc::new(executor());
    let job = spin_job("spin");
    let cancel = job.cancel.clone();
    let runner = {
        let executor = executor.clone();
        std::thread::spawn(move || executor.run(&job))
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(!runner.is_finished(), "the spin job ended by itself");
    let cancelled_at = Instant::now();
    cancel.cancel();
    while !runner.is_finished() {
        assert!(
            cancelled_at.elapsed() < PROMPT,
            "the job still runs {PROMPT:?} after its cancel"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let stopped_after = cancelled_at.elapsed();
    let err = runner.join().expect("no panic").unwrap_err();
    assert!(matches!(err, ExecError::Cancelled { .. }), "{err}");
    assert!(!err.is_job_fault(), "a cancel is not the job's fault");
    assert_eq!(err.kind(), "cancelled");
    eprintln!("cancelled job stopped {stopped_after:?} after the cancel");
    assert_normal_job_runs(&executor);
}

#[test]
fn a_job_cancelled_before_it_starts_does_not_run() {
    let executor = executor();
    let job = spin_job("never");
    job.cancel.cancel();
    let started = Instant::now();
    let err = executor.run(&job).unwrap_err();
    assert!(
        matches!(err, ExecError::Cancelled { fuel_used: Fuel(0) }),
        "{err}"
    );
    assert!(started.elapsed() < PROMPT);
    assert_normal_job_runs(&executor);
}

#[test]
fn a_token_nobody_cancels_changes_nothing() {
    let executor = executor();
    let plain = assert_normal_job_runs(&executor);
    let mut watched = cat_job("normal");
    let token = CancelToken::new();
    watched.cancel = token.clone();
    let outcome = executor.run(&watched).expect("the job runs");
    assert_eq!(
        (outcome.digest, outcome.fuel_used),
        (plain.digest, plain.fuel_used)
    );
    // Cancelling after the end is harmless.
    token.cancel();
    assert!(token.is_cancelled());
}

#[test]
fn the_wall_clock_limit_still_stops_a_job_with_a_token() {
    let executor = executor();
    let mut job = spin_job("slow");
    job.limits.wall_timeout = Duration::from_millis(150);
    let started = Instant::now();
    let err = executor.run(&job).unwrap_err();
    assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(150) && took < PROMPT,
        "timed out after {took:?}"
    );
}
