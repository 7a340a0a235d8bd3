//! Failures a buyer can debug: a job that fails at run time keeps the stdout and stderr it
//! wrote and the fuel it burnt, and a module that cannot start within its limits is refused
//! with a message that names the limit and the value.

mod common;

use agora_core::Fuel;
use agora_exec::{ExecError, Executor, WasmModule};
use common::*;

/// Writes "hello from the job\n" to stdout and "about to fail\n" to stderr, then runs `$then`.
fn speak_then(then: &str) -> WasmModule {
    module(&format!(
        r#"
  (data (i32.const 100) "hello from the job\n")
  (data (i32.const 140) "about to fail\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 19))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 140))
    (i32.store (i32.const 4) (i32.const 14))
    (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    {then})
"#
    ))
}

#[test]
fn a_trap_keeps_what_the_job_wrote_and_the_fuel_it_burnt() {
    let executor = executor();
    let job = job(speak_then("unreachable"), "speak-trap");
    let err = executor.run(&job).unwrap_err();
    let ExecError::Trap { fuel_used, .. } = &err else {
        panic!("expected a trap, got {err}");
    };
    let partial = err.partial().expect("a trap keeps the partial run");
    assert_eq!(partial.stdout.data, b"hello from the job\n");
    assert_eq!(partial.stderr.data, b"about to fail\n");
    assert_eq!(partial.stderr.tail(5), "fail\n");
    // The fuel billed is the fuel counted up to the trap: some work, far below the limit.
    assert!(
        fuel_used.0 > 0 && *fuel_used < job.limits.fuel,
        "{fuel_used:?}"
    );
    assert_eq!(partial.fuel_used, *fuel_used);
    assert_eq!(err.fuel_used(), *fuel_used);
    // The same job traps with the same fuel every time: the count is billable.
    let again = executor.run(&job).unwrap_err();
    assert_eq!(again.fuel_used(), *fuel_used);
    assert_normal_job_runs(&executor);
}

#[test]
fn out_of_fuel_after_output_keeps_the_output() {
    let executor = executor();
    let mut job = job(speak_then("(loop (br 0))"), "speak-spin");
    job.limits.fuel = Fuel(2_000_000);
    let err = executor.run(&job).unwrap_err();
    assert!(matches!(err, ExecError::OutOfFuel { .. }), "{err}");
    let partial = err.partial().expect("out of fuel keeps the partial run");
    assert_eq!(partial.stdout.text(), "hello from the job\n");
    assert_eq!(partial.stderr.text(), "about to fail\n");
    assert_eq!(partial.fuel_used, job.limits.fuel);
    assert_eq!(err.fuel_used(), job.limits.fuel);
}

#[test]
fn a_memory_limit_hit_while_running_keeps_the_output() {
    let executor = executor();
    let bomb = speak_then("(loop (drop (memory.grow (i32.const 16))) (br 0))");
    let err = executor.run(&job(bomb, "speak-bomb")).unwrap_err();
    assert!(matches!(err, ExecError::MemoryLimit { .. }), "{err}");
    let partial = err
        .partial()
        .expect("a memory breach keeps the partial run");
    assert_eq!(partial.stdout.text(), "hello from the job\n");
    assert!(err.fuel_used().0 > 0);
}

#[test]
fn an_initial_memory_above_the_limit_is_refused_naming_both() {
    let executor = executor();
    // 512 pages = 32 MiB, against the tests' 16 MiB limit.
    let wat = r#"(module (memory (export "memory") 512) (func (export "_start")))"#;
    let big = WasmModule::new(wat::parse_str(wat).unwrap());
    let err = executor.run(&job(big, "big-min")).unwrap_err();
    let message = err.to_string();
    assert!(message.starts_with("refused: "), "{message}");
    assert!(message.contains("33554432 bytes"), "{message}");
    assert!(
        message.contains("memory limit is 16777216 bytes"),
        "{message}"
    );
    assert!(
        matches!(
            err,
            ExecError::StartRefused {
                limit: "memory_bytes",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), "start_refused");
    assert!(err.is_job_fault());
    assert!(err.partial().is_none());
    assert_eq!(err.fuel_used(), Fuel(0));
    assert_normal_job_runs(&executor);
}

#[test]
fn a_second_memory_is_refused_before_it_runs() {
    let executor = executor();
    let wat = r#"(module
      (memory (export "memory") 1)
      (memory $second 1)
      (func (export "_start")))"#;
    let two = WasmModule::new(wat::parse_str(wat).unwrap());
    let err = executor.run(&job(two, "two-memories")).unwrap_err();
    // Refused by the static check (multi-memory is off) or, were it on, by the store's
    // count of one memory per job: either way a refusal that says why, not a trap.
    let message = err.to_string();
    assert!(message.starts_with("refused: "), "{message}");
    assert!(message.contains("memor"), "{message}");
    assert!(err.is_job_fault() && err.partial().is_none(), "{err:?}");
    assert_normal_job_runs(&executor);
}

#[test]
fn more_tables_than_a_job_may_have_are_refused_naming_the_count() {
    let executor = executor();
    let wat = r#"(module
      (memory (export "memory") 1)
      (table 1 funcref) (table 1 funcref) (table 1 funcref) (table 1 funcref) (table 1 funcref)
      (func (export "_start")))"#;
    let many = WasmModule::new(wat::parse_str(wat).unwrap());
    let err = executor.run(&job(many, "five-tables")).unwrap_err();
    let message = err.to_string();
    assert!(message.starts_with("refused: "), "{message}");
    assert!(
        message.contains("more tables than the 4 a job may have"),
        "{message}"
    );
    assert!(
        matches!(
            err,
            ExecError::StartRefused {
                limit: "tables",
                ..
            }
        ),
        "{err:?}"
    );
    assert_normal_job_runs(&executor);
}

#[test]
fn a_table_above_the_limit_is_refused() {
    let executor = executor();
    let wat = r#"(module
      (memory (export "memory") 1)
      (table 200000 funcref)
      (func (export "_start")))"#;
    let wide = WasmModule::new(wat::parse_str(wat).unwrap());
    let err = executor.run(&job(wide, "wide-table")).unwrap_err();
    let message = err.to_string();
    assert!(message.starts_with("refused: "), "{message}");
    assert!(message.contains("200000 elements"), "{message}");
    assert!(
        matches!(
            err,
            ExecError::StartRefused {
                limit: "table_elements",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_data_segment_outside_memory_is_refused() {
    let executor = executor();
    let wat = r#"(module
      (memory (export "memory") 1)
      (data (i32.const 65535) "xy")
      (func (export "_start")))"#;
    let broken = WasmModule::new(wat::parse_str(wat).unwrap());
    let err = executor.run(&job(broken, "oob-data")).unwrap_err();
    let message = err.to_string();
    assert!(message.starts_with("refused: "), "{message}");
    assert!(
        matches!(
            err,
            ExecError::StartRefused {
                limit: "data_segment",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_trapping_start_function_is_a_trap_not_a_refusal() {
    let executor = executor();
    let wat = r#"(module
      (memory (export "memory") 1)
      (func $boom unreachable)
      (start $boom)
      (func (export "_start")))"#;
    let boom = WasmModule::new(wat::parse_str(wat).unwrap());
    let err = executor.run(&job(boom, "start-trap")).unwrap_err();
    assert!(matches!(err, ExecError::Trap { .. }), "{err}");
}

#[test]
fn a_checkpointed_job_that_runs_out_of_fuel_keeps_its_progress_lines() {
    // life prints "life: step N population P" every 100 steps, then runs out of fuel.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/jobs/life.wasm");
    let bytes = std::fs::read(path).expect("examples/jobs/life.wasm is checked in");
    let executor = executor();
    let mut job = job(WasmModule::new(bytes), "life-spin");
    job.args = vec!["100000".into(), "4".into()];
    job.limits.fuel = Fuel(1_000_000_000);
    let err = match executor.run_checkpointed(&job) {
        Err(agora_exec::checkpoint::CheckpointError::Exec(err)) => err,
        other => panic!("expected out of fuel, got {:?}", other.map(|r| r.outcome)),
    };
    assert!(matches!(err, ExecError::OutOfFuel { .. }), "{err}");
    let partial = err.partial().expect("a failed step keeps the partial run");
    assert!(
        partial
            .stdout
            .text()
            .starts_with("life: step 100 population "),
        "{}",
        partial.stdout.text()
    );
    assert_eq!(partial.fuel_used, job.limits.fuel);
}
