//! Many hostile and normal jobs in one process: no crash, every result as expected, memory
//! stable. Prints peak RSS at the start and the end (from /proc/self/status).

mod common;

use agora_core::Fuel;
use agora_exec::{ExecError, Executor};
use common::*;

/// (VmRSS, VmHWM) in KiB, when /proc is there.
fn rss_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn soak(jobs: usize) {
    let executor = executor();
    let hostile = [
        module(r#"(func (export "_start") (loop (br 0)))"#),
        module(r#"(func (export "_start") (loop (drop (memory.grow (i32.const 16))) (br 0)))"#),
        module(r#"(func $f (export "_start") (call $f))"#),
        module(r#"(func (export "_start") unreachable)"#),
    ];
    // Warm up caches so the start figure is taken with compiled code in memory.
    assert_normal_job_runs(&executor);
    let start = rss_kib();
    let mut expected_digest = None;
    for i in 0..jobs {
        if i % 2 == 0 {
            let digest = assert_normal_job_runs(&executor).digest;
            assert_eq!(*expected_digest.get_or_insert(digest), digest);
            continue;
        }
        let mut job = job(
            hostile[(i / 2) % hostile.len()].clone(),
            &format!("hostile-{i}"),
        );
        job.limits.fuel = Fuel(2_000_000);
        let err = executor.run(&job).expect_err("hostile jobs fail");
        assert!(
            matches!(
                err,
                ExecError::OutOfFuel { .. }
                    | ExecError::MemoryLimit { .. }
                    | ExecError::StackOverflow { .. }
                    | ExecError::Trap { .. }
            ),
            "job {i}: {err}"
        );
    }
    let end = rss_kib();
    if let (Some((rss0, hwm0)), Some((rss1, hwm1))) = (start, end) {
        println!("{jobs} jobs: VmRSS {rss0} -> {rss1} KiB, VmHWM {hwm0} -> {hwm1} KiB");
        // Each job maps up to 16 MiB of guest memory and frees it; growth beyond a few
        // tens of MiB over the run would mean something leaks per job.
        assert!(
            rss1 < rss0 + 64 * 1024,
            "RSS grew from {rss0} to {rss1} KiB over {jobs} jobs"
        );
    }
}

#[test]
fn two_hundred_hostile_and_normal_jobs_in_one_process() {
    soak(200);
}

#[test]
#[ignore = "1,000 jobs take a while in debug builds; run with --ignored --nocapture"]
fn a_thousand_hostile_and_normal_jobs_in_one_process() {
    soak(1000);
}
