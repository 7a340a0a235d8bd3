//! Hostile modules: each gets its typed error, and a normal job still runs afterwards in
//! the same executor.

mod common;

use std::time::Duration;

use agora_core::Fuel;
use agora_exec::{ExecError, Executor, WasmModule};
use common::*;

#[test]
fn infinite_loop_stops_at_the_fuel_limit() {
    let executor = executor();
    let job = job(module(r#"(func (export "_start") (loop (br 0)))"#), "loop");
    let err = executor.run(&job).unwrap_err();
    match &err {
        ExecError::OutOfFuel { fuel_used, .. } => assert_eq!(*fuel_used, job.limits.fuel),
        other => panic!("expected out of fuel, got {other}"),
    }
    assert!(err.to_string().contains("out of fuel"), "{err}");
    assert_normal_job_runs(&executor);
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let executor = executor();
    let bomb =
        module(r#"(func (export "_start") (loop (drop (memory.grow (i32.const 16))) (br 0)))"#);
    let err = executor.run(&job(bomb, "bomb")).unwrap_err();
    assert!(
        matches!(err, ExecError::MemoryLimit { what: "memory", limit, .. } if limit == 16 << 20),
        "{err}"
    );
    assert_normal_job_runs(&executor);
}

#[test]
fn huge_initial_memory_is_refused_at_instantiation() {
    let executor = executor();
    let wat = r#"(module (memory (export "memory") 1000) (func (export "_start")))"#;
    let big = WasmModule::new(wat::parse_str(wat).unwrap());
    let err = executor.run(&job(big, "big")).unwrap_err();
    assert!(
        matches!(
            err,
            ExecError::StartRefused {
                limit: "memory_bytes",
                ..
            }
        ),
        "{err}"
    );
    assert_normal_job_runs(&executor);
}

#[test]
fn deep_recursion_is_a_stack_overflow() {
    let executor = executor();
    let deep = module(r#"(func $f (export "_start") (call $f))"#);
    let mut job = job(deep, "deep");
    job.limits.fuel = Fuel(10_000_000_000);
    let err = executor.run(&job).unwrap_err();
    assert!(matches!(err, ExecError::StackOverflow { .. }), "{err}");
    assert_normal_job_runs(&executor);
}

/// Opens /output/big.bin and writes 60000 bytes to it forever.
const FILE_FLOOD: &str = r#"
  (data (i32.const 200) "big.bin")
  (func (export "_start")
    (if (call $path_open (i32.const 4) (i32.const 0) (i32.const 200) (i32.const 7)
          (i32.const 1) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 40))
      (then (call $proc_exit (i32.const 99))))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 60000))
    (loop (drop (call $fd_write (i32.load (i32.const 40)) (i32.const 0) (i32.const 1) (i32.const 8))) (br 0)))
"#;

#[test]
fn huge_file_output_hits_the_output_limit() {
    let executor = executor();
    let mut job = job(module(FILE_FLOOD), "flood");
    job.limits.fuel = Fuel(1_000_000_000);
    let err = executor.run(&job).unwrap_err();
    match err {
        ExecError::OutputLimit { written, limit, .. } => {
            assert_eq!(limit, 1 << 20);
            assert!(written > limit && written <= limit + 60000, "{written}");
        }
        other => panic!("expected output limit, got {other}"),
    }
    assert_normal_job_runs(&executor);
}

#[test]
fn stdio_cannot_be_swapped_for_a_file_to_dodge_the_output_limit() {
    let executor = executor();
    let open = r#"(call $path_open (i32.const 4) (i32.const 0) (i32.const 200) (i32.const 7)
          (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 40))"#;
    let renumber = module(&format!(
        r#"(data (i32.const 200) "big.bin")
        (func (export "_start")
          (drop {open})
          (call $proc_exit (call $fd_renumber (i32.load (i32.const 40)) (i32.const 1))))"#
    ));
    let outcome = executor.run(&job(renumber, "renumber")).unwrap();
    assert_eq!(
        outcome.exit_code, 58,
        "fd_renumber onto stdout must answer ENOTSUP"
    );
    let reopen = module(&format!(
        r#"(data (i32.const 200) "big.bin")
        (func (export "_start")
          (drop (call $fd_close (i32.const 1)))
          (drop {open})
          (call $proc_exit (i32.load (i32.const 40))))"#
    ));
    let outcome = executor.run(&job(reopen, "reopen")).unwrap();
    assert!(
        outcome.exit_code > 2,
        "a file got stdio's descriptor {}",
        outcome.exit_code
    );
    assert_normal_job_runs(&executor);
}

#[test]
fn huge_stdout_is_truncated_with_a_marker() {
    let executor = executor();
    let flood = module(
        r#"(func (export "_start") (local $i i32)
            (i32.store (i32.const 0) (i32.const 1024))
            (i32.store (i32.const 4) (i32.const 60000))
            (loop (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if 0 (i32.lt_u (local.get $i) (i32.const 100)))))"#,
    );
    let mut job = job(flood, "stdout-flood");
    job.limits.stdout_bytes = 4096;
    let outcome = executor.run(&job).unwrap();
    assert!(outcome.stdout.truncated);
    assert_eq!(outcome.stdout.total_bytes, 6_000_000);
    assert!(
        outcome
            .stdout
            .text()
            .ends_with("[agora: stdout truncated: 4096 of 6000000 bytes kept]\n")
    );
    assert_normal_job_runs(&executor);
}

/// Tries to open `path` under preopen `fd` with `oflags`, and exits with the errno.
fn open_and_exit(fd: u32, path: &str, oflags: u32) -> WasmModule {
    module(&format!(
        r#"(data (i32.const 200) "{path}")
        (func (export "_start")
          (call $proc_exit (call $path_open (i32.const {fd}) (i32.const 0) (i32.const 200)
            (i32.const {len}) (i32.const {oflags}) (i64.const 0x1fffffff) (i64.const 0x1fffffff)
            (i32.const 0) (i32.const 40))))"#,
        len = path.len()
    ))
}

/// `ENOTCAPABLE` and `EPERM`/`EACCES`/`EBADF`/`EROFS`: how WASI refuses access.
const DENIALS: [i32; 5] = [76, 63, 2, 8, 69];

#[test]
fn reading_outside_input_is_refused() {
    let executor = executor();
    for (fd, path) in [
        (3, "../../../../etc/passwd"),
        (3, "/etc/passwd"),
        // fd 5 is the scratch root `/`: `..` cannot leave it; fd 6 is no preopen at all.
        (5, "../../../../etc/passwd"),
        (6, "etc/passwd"),
    ] {
        let outcome = executor
            .run(&job(open_and_exit(fd, path, 0), path))
            .unwrap();
        assert!(
            DENIALS.contains(&outcome.exit_code),
            "{path}: errno {}",
            outcome.exit_code
        );
    }
    assert_normal_job_runs(&executor);
}

#[test]
fn writing_outside_output_is_refused() {
    let executor = executor();
    let escape = "agora-escape-test-file";
    let cases = [
        (4, format!("../../{escape}")),
        (3, "new.txt".to_string()),
        (4, format!("/tmp/{escape}")),
    ];
    for (fd, path) in cases {
        let outcome = executor
            .run(&job(open_and_exit(fd, &path, 1), &path))
            .unwrap();
        assert!(
            DENIALS.contains(&outcome.exit_code),
            "{path}: errno {}",
            outcome.exit_code
        );
        assert!(outcome.outputs.is_empty());
    }
    assert!(!std::env::temp_dir().join(escape).exists());
    assert_normal_job_runs(&executor);
}

#[test]
fn unknown_host_function_is_named() {
    let executor = executor();
    let wat = r#"(module (import "env" "steal_keys" (func)) (func (export "_start")))"#;
    let err = executor
        .run(&job(WasmModule::new(wat::parse_str(wat).unwrap()), "imp"))
        .unwrap_err();
    match &err {
        ExecError::UnsupportedImport { module, name } => {
            assert_eq!((module.as_str(), name.as_str()), ("env", "steal_keys"));
        }
        other => panic!("expected unsupported import, got {other}"),
    }
    assert!(err.to_string().contains("env::steal_keys"));
    let wasi_typo =
        r#"(module (import "wasi_snapshot_preview1" "sock_open" (func)) (func (export "_start")))"#;
    let err = executor
        .run(&job(
            WasmModule::new(wat::parse_str(wasi_typo).unwrap()),
            "imp2",
        ))
        .unwrap_err();
    assert!(matches!(err, ExecError::UnsupportedImport { .. }), "{err}");
    assert_normal_job_runs(&executor);
}

#[test]
fn malformed_missing_start_and_traps_are_typed() {
    let executor = executor();
    let err = executor
        .run(&job(WasmModule::new(b"\0asm garbage".to_vec()), "bad"))
        .unwrap_err();
    assert!(matches!(err, ExecError::MalformedModule { .. }), "{err}");
    // Not wasm at all: one line that says so, not wasmparser's pretty-printed byte arrays.
    let err = executor
        .run(&job(WasmModule::new(b"garbage".to_vec()), "not-wasm"))
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("not a WebAssembly module"), "{message}");
    assert!(!message.contains('\n'), "{message}");
    let lib = WasmModule::new(wat::parse_str(r#"(module (func (export "main")))"#).unwrap());
    assert!(matches!(
        executor.run(&job(lib, "lib")).unwrap_err(),
        ExecError::MissingStart
    ));
    let trap = module(r#"(func (export "_start") unreachable)"#);
    let err = executor.run(&job(trap, "trap")).unwrap_err();
    assert!(
        matches!(&err, ExecError::Trap { code, .. } if code.contains("unreachable")),
        "{err}"
    );
    assert_normal_job_runs(&executor);
}

#[test]
fn wall_clock_timeout_is_the_safety_net() {
    let executor = executor();
    let mut job = job(module(r#"(func (export "_start") (loop (br 0)))"#), "spin");
    job.limits.fuel = Fuel(u64::MAX / 2);
    job.limits.wall_timeout = Duration::from_millis(200);
    let err = executor.run(&job).unwrap_err();
    assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
    assert_normal_job_runs(&executor);
}
