//! WAT modules and helpers shared by the executor's tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use agora_core::{Fuel, Hash};
use agora_exec::{ExecConfig, Executor, Input, JobSpec, Limits, Outcome, WasmExecutor, WasmModule};

/// The WASI imports every test module may use.
pub const IMPORTS: &str = r#"
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_renumber" (func $fd_renumber (param i32 i32) (result i32)))
  (memory (export "memory") 1)
"#;

/// Builds a module from `body` (functions, data, and an exported `_start`).
pub fn module(body: &str) -> WasmModule {
    let text = format!("(module {IMPORTS} {body})");
    WasmModule::new(wat::parse_str(&text).expect("test WAT is valid"))
}

/// A normal job: copies /input/data.txt to stdout and to /output/copy.txt.
pub fn cat_module() -> WasmModule {
    module(
        r#"
  (data (i32.const 200) "data.txt")
  (data (i32.const 220) "copy.txt")
  (func (export "_start")
    (local $err i32) (local $n i32)
    ;; open /input/data.txt (fd 3 is /input) for reading
    (local.set $err (call $path_open (i32.const 3) (i32.const 0) (i32.const 200) (i32.const 8)
      (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 40)))
    (if (local.get $err) (then (call $proc_exit (local.get $err))))
    ;; iovec at 0: buffer 1024, length 4096
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 4096))
    (drop (call $fd_read (i32.load (i32.const 40)) (i32.const 0) (i32.const 1) (i32.const 8)))
    (local.set $n (i32.load (i32.const 8)))
    (i32.store (i32.const 4) (local.get $n))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    ;; create /output/copy.txt (fd 4 is /output)
    (local.set $err (call $path_open (i32.const 4) (i32.const 0) (i32.const 220) (i32.const 8)
      (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 44)))
    (if (local.get $err) (then (call $proc_exit (local.get $err))))
    (drop (call $fd_write (i32.load (i32.const 44)) (i32.const 0) (i32.const 1) (i32.const 8))))
"#,
    )
}

/// A job for `module` with small limits suited to tests.
pub fn job(module: WasmModule, id: &str) -> JobSpec {
    let mut job = JobSpec::new(Hash::of(id.as_bytes()), module);
    job.limits = Limits {
        fuel: Fuel(50_000_000),
        memory_bytes: 16 << 20,
        output_bytes: 1 << 20,
        wall_timeout: Duration::from_secs(20),
        ..Limits::default()
    };
    job
}

/// The normal job with its input.
pub fn cat_job(id: &str) -> JobSpec {
    let mut job = job(cat_module(), id);
    job.inputs.push(Input {
        name: "data.txt".into(),
        bytes: Arc::from(&b"agora sample\n"[..]),
    });
    job
}

/// Runs the normal job and checks its result, proving the executor still works.
pub fn assert_normal_job_runs(executor: &WasmExecutor) -> Outcome {
    let outcome = executor
        .run(&cat_job("normal"))
        .expect("the normal job runs");
    assert_eq!(outcome.exit_code, 0, "stderr: {}", outcome.stderr.text());
    assert_eq!(outcome.stdout.data, b"agora sample\n");
    assert_eq!(outcome.outputs.len(), 1);
    assert_eq!(outcome.outputs[0].name, "copy.txt");
    assert_eq!(outcome.outputs[0].hash, Hash::of(b"agora sample\n"));
    outcome
}

/// An executor with in-memory caching only.
pub fn executor() -> WasmExecutor {
    WasmExecutor::new(ExecConfig::default()).expect("executor starts")
}
