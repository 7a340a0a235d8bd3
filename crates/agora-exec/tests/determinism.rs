//! Determinism of the sandbox: clocks, randomness and sleeps are functions of the job id,
//! and results and fuel repeat exactly.

mod common;

use std::sync::Arc;

use agora_exec::{ExecConfig, Executor, ModuleSource, WasmExecutor};
use common::*;

/// Prints 16 random bytes, the realtime and monotonic clocks, then sleeps one virtual
/// second and prints the monotonic clock again.
const ENTROPY: &str = r#"
  (func (export "_start")
    (drop (call $random_get (i32.const 96) (i32.const 16)))
    (drop (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 112)))
    (drop (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 120)))
    ;; subscription at 300: userdata 7, tag 0 (clock), monotonic, relative 1 s
    (i64.store (i32.const 300) (i64.const 7))
    (i32.store8 (i32.const 308) (i32.const 0))
    (i32.store (i32.const 316) (i32.const 1))
    (i64.store (i32.const 324) (i64.const 1000000000))
    (drop (call $poll_oneoff (i32.const 300) (i32.const 400) (i32.const 1) (i32.const 440)))
    (drop (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 128)))
    (i32.store (i32.const 0) (i32.const 96))
    (i32.store (i32.const 4) (i32.const 40))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    ;; exit 0 if the sleep moved the monotonic clock by at least a second, else 1
    (call $proc_exit (i64.lt_u (i64.sub (i64.load (i32.const 128)) (i64.load (i32.const 120)))
                               (i64.const 1000000000))))
"#;

#[test]
fn clocks_and_random_are_seeded_by_the_job_id() {
    let executor = executor();
    let a1 = executor.run(&job(module(ENTROPY), "job-a")).unwrap();
    let a2 = executor.run(&job(module(ENTROPY), "job-a")).unwrap();
    let b = executor.run(&job(module(ENTROPY), "job-b")).unwrap();
    assert_eq!(
        a1.exit_code, 0,
        "virtual sleep must advance the monotonic clock"
    );
    assert_eq!(a1.stdout, a2.stdout);
    assert_eq!(a1.digest, a2.digest);
    assert_eq!(a1.fuel_used, a2.fuel_used);
    assert_ne!(
        a1.stdout, b.stdout,
        "another job id sees other random bytes and time"
    );
    let realtime = u64::from_le_bytes(a1.stdout.data[16..24].try_into().unwrap());
    assert!((1_735_689_600_000_000_000..1_735_776_000_000_000_000).contains(&realtime));
}

#[test]
fn results_and_fuel_repeat_and_the_cache_is_used() {
    let executor = executor();
    let first = assert_normal_job_runs(&executor);
    let second = assert_normal_job_runs(&executor);
    assert_eq!(first.digest, second.digest);
    assert_eq!(first.fuel_used, second.fuel_used);
    assert!(first.fuel_used.0 > 0);
    assert_eq!(first.module_source, ModuleSource::Compiled);
    assert_eq!(second.module_source, ModuleSource::MemoryCache);
}

#[test]
fn disk_cache_survives_a_new_executor() {
    let dir = tempfile::tempdir().unwrap();
    let config = ExecConfig {
        cache_dir: Some(dir.path().to_owned()),
        ..ExecConfig::default()
    };
    let first = WasmExecutor::new(config.clone())
        .unwrap()
        .run(&cat_job("disk"))
        .unwrap();
    assert_eq!(first.module_source, ModuleSource::Compiled);
    let entries = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(entries, 1, "one compiled module on disk");
    let second = WasmExecutor::new(config)
        .unwrap()
        .run(&cat_job("disk"))
        .unwrap();
    assert_eq!(second.module_source, ModuleSource::DiskCache);
    assert_eq!(first.digest, second.digest);
    assert_eq!(first.fuel_used, second.fuel_used);
}

#[test]
fn one_executor_serves_many_threads() {
    let executor = Arc::new(executor());
    let expected = assert_normal_job_runs(&executor).digest;
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let executor = Arc::clone(&executor);
            std::thread::spawn(move || {
                (0..10)
                    .map(|_| assert_normal_job_runs(&executor).digest)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for handle in handles {
        assert!(handle.join().unwrap().iter().all(|d| *d == expected));
    }
}

#[test]
fn outcome_json_round_trips() {
    let outcome = assert_normal_job_runs(&executor());
    let json = serde_json::to_string(&outcome).unwrap();
    let back: agora_exec::Outcome = serde_json::from_str(&json).unwrap();
    assert_eq!(back.digest, outcome.digest);
    assert_eq!(back.stdout, outcome.stdout);
    assert_eq!(back.outputs[0].hash, outcome.outputs[0].hash);
}

#[test]
fn the_memory_cache_evicts_beyond_its_capacity() {
    let config = ExecConfig {
        memory_cache_entries: 1,
        ..ExecConfig::default()
    };
    let executor = WasmExecutor::new(config).unwrap();
    let other = job(module(r#"(func (export "_start"))"#), "other");
    assert_eq!(
        executor.run(&cat_job("a")).unwrap().module_source,
        ModuleSource::Compiled
    );
    assert_eq!(
        executor.run(&cat_job("a")).unwrap().module_source,
        ModuleSource::MemoryCache
    );
    assert_eq!(
        executor.run(&other).unwrap().module_source,
        ModuleSource::Compiled
    );
    assert_eq!(
        executor.run(&cat_job("a")).unwrap().module_source,
        ModuleSource::Compiled
    );
}

#[test]
fn arguments_and_environment_reach_the_job() {
    let counts = module(
        r#"(func (export "_start")
          (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
          (drop (call $environ_sizes_get (i32.const 8) (i32.const 12)))
          ;; exit with argc * 10 + envc
          (call $proc_exit (i32.add (i32.mul (i32.load (i32.const 0)) (i32.const 10))
                                    (i32.load (i32.const 8)))))"#,
    );
    let mut job = job(counts, "argv");
    job.args = vec!["one".into(), "two".into()];
    job.env = vec![("A".into(), "1".into())];
    let outcome = executor().run(&job).unwrap();
    assert_eq!(
        outcome.exit_code, 31,
        "argv[0] plus two arguments, one variable"
    );
}
