//! Wasm features under the deterministic profile: each feature that is on runs and is
//! metered identically across runs and executors; each feature that is off is refused by
//! the pre-compile check with the feature named; exceptions misbehaving (a trap in a
//! handler, an exception escaping `_start`, deep unwinding, host exits inside a handler)
//! end in a typed error and leave the executor able to run the next job.

mod common;

use agora_exec::precheck::{self, LEGACY_EH_REMEDY};
use agora_exec::{ExecConfig, ExecError, Executor, Outcome, WasmExecutor, WasmModule};
use common::*;

/// Runs `module` on a fresh executor twice (compile, then memory cache) and on a second
/// executor, and asserts that every run has the same exit code, output and fuel.
/// A check that an error is the refusal a case expects.
type ErrorCheck = dyn Fn(&ExecError) -> bool;

fn run_thrice(module: WasmModule, id: &str) -> Outcome {
    let first = executor();
    let second = executor();
    let runs: Vec<Outcome> = [&first, &first, &second]
        .into_iter()
        .map(|exec| exec.run(&job(module.clone(), id)).expect("the job runs"))
        .collect();
    for run in &runs[1..] {
        assert_eq!(run.exit_code, runs[0].exit_code, "{id}: exit code");
        assert_eq!(run.stdout.data, runs[0].stdout.data, "{id}: stdout");
        assert_eq!(run.fuel_used, runs[0].fuel_used, "{id}: fuel");
        assert_eq!(run.digest, runs[0].digest, "{id}: digest");
    }
    assert!(runs[0].fuel_used.0 > 0, "{id}: metered");
    runs.into_iter().next().unwrap()
}

/// A module whose `_start` exits with the i32 `$compute` returns.
fn exiting_with(body: &str) -> WasmModule {
    module(&format!(
        r#"{body}
  (func (export "_start") (call $proc_exit (call $compute)))"#
    ))
}

/// Each feature that is on, exercised so that the exit code proves it ran as specified.
const ON_FEATURES: &[(&str, &str, i32)] = &[
    (
        "tail calls",
        r#"(func $count (param $n i32) (param $acc i32) (result i32)
             (if (result i32) (i32.eqz (local.get $n))
               (then (local.get $acc))
               (else (return_call $count (i32.sub (local.get $n) (i32.const 1))
                                        (i32.add (local.get $acc) (i32.const 1))))))
           ;; a million tail calls in constant stack; exit code 1_000_000 mod 256 = 64
           (func $compute (result i32)
             (i32.and (call $count (i32.const 1000000) (i32.const 0)) (i32.const 255)))"#,
        64,
    ),
    (
        "bulk memory",
        r#"(data $d "\05\06\07")
           (func $compute (result i32)
             (memory.fill (i32.const 100) (i32.const 9) (i32.const 50))
             (memory.init $d (i32.const 120) (i32.const 0) (i32.const 3))
             (memory.copy (i32.const 300) (i32.const 100) (i32.const 50))
             (data.drop $d)
             ;; 9 (fill) + 7 (init, copied along) = 16
             (i32.add (i32.load8_u (i32.const 349)) (i32.load8_u (i32.const 322))))"#,
        16,
    ),
    (
        "multi-value",
        r#"(func $divmod (param i32 i32) (result i32 i32)
             (i32.div_u (local.get 0) (local.get 1)) (i32.rem_u (local.get 0) (local.get 1)))
           ;; 47 divmod 5 = (9, 2); a block taking both multiplies them: 18; plus 3
           (func $compute (result i32)
             (call $divmod (i32.const 47) (i32.const 5))
             (block (param i32 i32) (result i32) (i32.mul))
             (i32.add (i32.const 3)))"#,
        21,
    ),
    (
        "reference types",
        r#"(table $t 2 funcref)
           (table $e 1 externref)
           (elem declare func $seven)
           (func $seven (result i32) (i32.const 7))
           (func $compute (result i32)
             (table.set $t (i32.const 1) (ref.func $seven))
             (i32.add
               (call_indirect $t (result i32) (i32.const 1))
               (i32.add (ref.is_null (table.get $e (i32.const 0)))
                        (table.size $t))))"#,
        10,
    ),
    (
        "fixed-width SIMD",
        r#"(func $compute (result i32)
             (i32x4.extract_lane 3
               (i32x4.mul (v128.const i32x4 1 2 3 4) (v128.const i32x4 5 6 7 8))))"#,
        32,
    ),
    (
        "extended const",
        r#"(global $g i32 (i32.add (i32.const 40) (i32.mul (i32.const 1) (i32.const 2))))
           (func $compute (result i32) (global.get $g))"#,
        42,
    ),
    (
        "exceptions (exnref): throw and catch",
        r#"(tag $oops (param i32))
           (func $thrower (param $x i32) (result i32)
             (if (i32.gt_u (local.get $x) (i32.const 3)) (then (throw $oops (local.get $x))))
             (local.get $x))
           ;; x for x = 0..3 returned normally (6), 10x for x = 4, 5 caught (90): 96
           (func $compute (result i32)
             (local $i i32) (local $sum i32)
             (loop $next
               (local.set $sum (i32.add (local.get $sum)
                 (block $done (result i32)
                   (i32.mul (i32.const 10)
                     (block $caught (result i32)
                       (br $done (try_table (result i32) (catch $oops $caught)
                         (call $thrower (local.get $i)))))))))
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br_if $next (i32.lt_u (local.get $i) (i32.const 6))))
             (local.get $sum))"#,
        96,
    ),
    (
        "exceptions (exnref): catch_ref, throw_ref and catch_all",
        r#"(tag $e (param i32))
           (tag $other)
           ;; catches its own throw by reference and throws it on unchanged
           (func $rethrows (result i32)
             (block $h (result i32 exnref)
               (try_table (catch_ref $e $h) (throw $e (i32.const 5)))
               (unreachable))
             (throw_ref))
           (func $compute (result i32)
             (block $c (result i32)
               (try_table (result i32) (catch $e $c) (call $rethrows)))
             ;; 5 from the rethrown payload; catch_all adds 100 for a payload-less tag
             (block $any
               (try_table (catch_all $any) (throw $other)))
             (i32.add (i32.const 100)))"#,
        105,
    ),
    (
        "exceptions carrying floats (NaN-guarded code)",
        r#"(tag $f (param f64))
           ;; throws 0/0 (a NaN, computed at run time) as the payload; the handler stores it and reads its bits
           (func $compute (result i32)
             (local $caught f64)
             (local.set $caught
               (block $h (result f64)
                 (try_table (catch $f $h)
                   (throw $f (f64.div (f64.load (i32.const 0)) (f64.load (i32.const 0)))))
                 (f64.const 1)))
             (f64.store (i32.const 64) (local.get $caught))
             ;; a stored NaN is the canonical one (high word 0x7ff80000) on every CPU,
             ;; although x86 makes 0/0 with the sign bit set
             (select (i32.const 42) (i32.const 1)
               (i32.eq (i32.load (i32.const 68)) (i32.const 0x7ff80000))))"#,
        42,
    ),
];

#[test]
fn every_feature_that_is_on_runs_and_is_metered_identically() {
    for (name, body, expected) in ON_FEATURES {
        let module = exiting_with(body);
        precheck::check(module.bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let outcome = run_thrice(module, name);
        assert_eq!(outcome.exit_code, *expected, "{name}: the feature's result");
    }
}

/// A whole module (for features that need their own memory declarations).
fn whole(text: &str) -> WasmModule {
    WasmModule::new(wat::parse_str(text).expect("test WAT is valid"))
}

/// Modules that each use one feature the profile keeps off, and the name the refusal must
/// give that feature.
fn off_feature_modules() -> Vec<(&'static str, WasmModule)> {
    vec![
        (
            "legacy exception handling",
            exiting_with(
                r#"(tag $e)
                   (func $compute (result i32)
                     try (result i32)
                       throw $e
                     catch $e
                       i32.const 1
                     end)"#,
            ),
        ),
        (
            "threads",
            exiting_with(r#"(func $compute (result i32) (i32.atomic.load (i32.const 0)))"#),
        ),
        (
            "multi-memory",
            exiting_with(
                r#"(memory $second 1)
                   (func $compute (result i32) (i32.load $second (i32.const 0)))"#,
            ),
        ),
        (
            "memory64",
            whole(
                r#"(module (memory (export "memory") i64 1)
                     (func (export "_start") (drop (i32.load (i64.const 0)))))"#,
            ),
        ),
        (
            "custom page sizes",
            whole(
                r#"(module (memory (export "memory") 1 (pagesize 1))
                     (func (export "_start")))"#,
            ),
        ),
        (
            "garbage collection",
            exiting_with(
                r#"(type $pair (struct (field i32) (field i32)))
                   (func $compute (result i32)
                     (struct.get $pair 1 (struct.new $pair (i32.const 1) (i32.const 2))))"#,
            ),
        ),
        (
            "typed function references",
            exiting_with(
                r#"(type $ft (func (result i32)))
                   (elem declare func $one)
                   (func $one (result i32) (i32.const 1))
                   (func $compute (result i32) (call_ref $ft (ref.func $one)))"#,
            ),
        ),
        (
            "wide arithmetic",
            exiting_with(
                r#"(func $compute (result i32)
                     (drop (i64.add128 (i64.const 1) (i64.const 0) (i64.const 2) (i64.const 0)))
                     (i32.wrap_i64))"#,
            ),
        ),
        ("component model", whole("(component)")),
    ]
}

#[test]
fn every_feature_that_is_off_is_refused_by_name_before_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let executor = WasmExecutor::new(ExecConfig {
        cache_dir: Some(dir.path().to_owned()),
        ..ExecConfig::default()
    })
    .unwrap();
    for (feature, module) in off_feature_modules() {
        let checked = precheck::check(module.bytes()).expect_err(feature);
        let run = executor.run(&job(module, feature)).expect_err(feature);
        for err in [&checked, &run] {
            match err {
                ExecError::ForbiddenFeature { feature: named, .. } => {
                    assert!(named.contains(feature), "{feature}: named {named:?}")
                }
                other => panic!("{feature}: expected a forbidden-feature refusal, got {other}"),
            }
            assert!(err.to_string().starts_with("refused: "), "{err}");
            assert_eq!(err.kind(), "forbidden_feature");
        }
    }
    // Refused before compiling: nothing was compiled into the disk cache.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert_normal_job_runs(&executor);
}

#[test]
fn legacy_exception_handling_is_refused_with_the_rebuild_flag() {
    let (_, module) = off_feature_modules().remove(0);
    let err = executor().run(&job(module, "legacy-eh")).unwrap_err();
    let ExecError::ForbiddenFeature { feature, remedy } = &err else {
        panic!("expected a refusal, got {err}");
    };
    assert_eq!(
        feature,
        "legacy exception handling (try/catch/delegate/rethrow)"
    );
    assert_eq!(remedy, LEGACY_EH_REMEDY);
    assert!(
        err.to_string()
            .contains("clang++ -fwasm-exceptions -mllvm -wasm-use-legacy-eh=false"),
        "{err}"
    );
}

#[test]
fn a_module_using_two_off_features_gets_both_named() {
    let module = exiting_with(
        r#"(memory $second 1)
           (func $compute (result i32) (i32.atomic.load $second (i32.const 0)))"#,
    );
    match precheck::check(module.bytes()).unwrap_err() {
        ExecError::ForbiddenFeature { feature, .. } => {
            assert!(feature.contains("threads"), "{feature}");
            assert!(feature.contains("multi-memory"), "{feature}");
        }
        other => panic!("expected a refusal, got {other}"),
    }
}

#[test]
fn garbage_is_malformed_not_a_feature() {
    for bytes in [&b"not wasm at all"[..], b"\0asm\x01\0\0\0\x01\xff"] {
        let err = precheck::check(bytes).unwrap_err();
        assert!(matches!(err, ExecError::MalformedModule { .. }), "{err}");
    }
}

#[test]
fn imports_and_start_are_checked_before_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let executor = WasmExecutor::new(ExecConfig {
        cache_dir: Some(dir.path().to_owned()),
        ..ExecConfig::default()
    })
    .unwrap();
    let foreign = whole(
        r#"(module (import "env" "now" (func $now (result i64)))
             (memory (export "memory") 1) (func (export "_start") (drop (call $now))))"#,
    );
    let memory_import = whole(
        r#"(module (import "wasi_snapshot_preview1" "memory" (memory 1))
             (func (export "_start")))"#,
    );
    let wrong_signature = whole(
        r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i64)))
             (memory (export "memory") 1) (func (export "_start")))"#,
    );
    let no_start = module(r#"(func (export "main"))"#);
    let start_with_params = module(r#"(func (export "_start") (param i32))"#);
    let start_not_a_func = whole(r#"(module (global (export "_start") i32 (i32.const 0)))"#);

    let cases: [(WasmModule, &ErrorCheck); 6] = [
        (
            foreign,
            &|e| matches!(e, ExecError::UnsupportedImport { module, name } if module == "env" && name == "now"),
        ),
        (
            memory_import,
            &|e| matches!(e, ExecError::UnsupportedImport { name, .. } if name == "memory"),
        ),
        (wrong_signature, &|e| {
            e.to_string().contains("proc_exit") && e.to_string().contains("[i64] -> []")
        }),
        (no_start, &|e| matches!(e, ExecError::MissingStart)),
        (
            start_with_params,
            &|e| matches!(e, ExecError::MalformedModule { reason } if reason.contains("[i32] -> []")),
        ),
        (
            start_not_a_func,
            &|e| matches!(e, ExecError::MalformedModule { reason } if reason.contains("non-function")),
        ),
    ];
    for (index, (module, expected)) in cases.into_iter().enumerate() {
        let checked = precheck::check(module.bytes()).unwrap_err();
        assert!(expected(&checked), "case {index}: {checked}");
        let run = executor.run(&job(module, "refused")).unwrap_err();
        assert!(expected(&run), "case {index}: {run}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing compiled"
    );
    assert_normal_job_runs(&executor);
}

#[test]
fn a_trap_inside_a_catch_handler_is_a_typed_trap() {
    let executor = executor();
    let module = exiting_with(
        r#"(tag $e)
           (func $compute (result i32)
             (block $h (try_table (catch $e $h) (throw $e)))
             ;; the handler itself faults
             (i32.div_u (i32.const 1) (i32.const 0)))"#,
    );
    let err = executor.run(&job(module, "trap-in-handler")).unwrap_err();
    assert!(matches!(err, ExecError::Trap { .. }), "{err}");
    assert!(err.to_string().contains("divide by zero"), "{err}");
    assert_normal_job_runs(&executor);
}

#[test]
fn an_exception_escaping_start_is_a_typed_error() {
    let executor = executor();
    let module = module(
        r#"(tag $e (param i32))
           (func (export "_start") (throw $e (i32.const 7)))"#,
    );
    let first = executor.run(&job(module.clone(), "escape")).unwrap_err();
    let again = executor.run(&job(module, "escape")).unwrap_err();
    for err in [&first, &again] {
        assert!(matches!(err, ExecError::Trap { .. }), "{err}");
        assert!(err.to_string().contains("uncaught wasm exception"), "{err}");
        assert!(err.is_job_fault());
    }
    assert_normal_job_runs(&executor);
}

/// `$down` recurses `depth` times and throws at the bottom; only `$compute` catches, so the
/// exception unwinds every frame.
fn deep_thrower(depth: u32) -> WasmModule {
    exiting_with(&format!(
        r#"(tag $bottom (param i32))
           (func $down (param $n i32)
             (if (i32.eqz (local.get $n)) (then (throw $bottom (i32.const 33))))
             (call $down (i32.sub (local.get $n) (i32.const 1))))
           (func $compute (result i32)
             (block $h (result i32)
               (try_table (catch $bottom $h) (call $down (i32.const {depth})))
               (i32.const 0)))"#
    ))
}

#[test]
fn an_exception_unwinds_through_thousands_of_frames() {
    let outcome = run_thrice(deep_thrower(5_000), "deep-unwind");
    assert_eq!(outcome.exit_code, 33);
}

#[test]
fn ten_thousand_frames_overflow_the_pinned_stack_as_a_typed_error() {
    // The pinned 512 KiB wasm stack holds about 7,500 frames of even this smallest
    // recursive function, so the throw never happens: a stack overflow, typed, and the
    // executor runs the next job.
    let executor = executor();
    let err = executor
        .run(&job(deep_thrower(10_000), "deeper"))
        .unwrap_err();
    assert!(matches!(err, ExecError::StackOverflow { .. }), "{err}");
    assert_normal_job_runs(&executor);
}

#[test]
fn a_million_caught_throws_neither_leak_nor_vary() {
    // Each throw allocates an exception object on the GC heap; the collector must free the
    // caught ones, or the job would hit its memory limit.
    let module = exiting_with(
        r#"(tag $e (param i32))
           (func $compute (result i32)
             (local $i i32) (local $sum i32)
             (loop $next
               (local.set $sum (i32.add (local.get $sum)
                 (block $h (result i32)
                   (try_table (catch $e $h) (throw $e (i32.const 1)))
                   (i32.const 0))))
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br_if $next (i32.lt_u (local.get $i) (i32.const 1000000))))
             (i32.and (local.get $sum) (i32.const 127)))"#,
    );
    let outcome = run_thrice(module, "many-throws");
    // 1_000_000 mod 128
    assert_eq!(outcome.exit_code, 64);
}

#[test]
fn host_exits_and_fuel_exhaustion_are_not_caught_by_the_guest() {
    let executor = executor();
    // proc_exit is a host call that ends the job; a catch_all around it must not catch it.
    let exit = module(
        r#"(func (export "_start")
             (block $h (try_table (catch_all $h) (call $proc_exit (i32.const 7))))
             (call $proc_exit (i32.const 99)))"#,
    );
    let outcome = executor.run(&job(exit, "exit-in-try")).unwrap();
    assert_eq!(outcome.exit_code, 7);
    // Running out of fuel inside a catch_all is out of fuel, not a caught exception.
    let spin = module(
        r#"(func (export "_start")
             (block $h (try_table (catch_all $h) (loop (br 0))))
             (call $proc_exit (i32.const 99)))"#,
    );
    let spin_job = job(spin, "spin-in-try");
    let err = executor.run(&spin_job).unwrap_err();
    assert!(
        matches!(err, ExecError::OutOfFuel { fuel_used, .. } if fuel_used == spin_job.limits.fuel),
        "{err}"
    );
    // A trap inside a try_table is not catchable either.
    let trap = module(
        r#"(func (export "_start")
             (block $h (try_table (catch_all $h) (unreachable)))
             (call $proc_exit (i32.const 99)))"#,
    );
    let err = executor.run(&job(trap, "trap-in-try")).unwrap_err();
    assert!(matches!(err, ExecError::Trap { .. }), "{err}");
    assert_normal_job_runs(&executor);
}

#[test]
fn exceptions_kept_alive_count_against_the_memory_limit() {
    // Every caught exception is kept in an exnref table, so none can be freed: the GC heap
    // that holds them must hit the job's memory limit (16 MiB here), not grow unbounded.
    let executor = executor();
    let module = exiting_with(
        r#"(tag $e (param i32))
           (table $kept 1000000 exnref)
           (func $compute (result i32)
             (local $i i32) (local $caught exnref)
             (loop $next
               (block $h (result i32 exnref)
                 (try_table (catch_ref $e $h) (throw $e (local.get $i)))
                 (unreachable))
               (local.set $caught)
               (drop)
               (table.set $kept (local.get $i) (local.get $caught))
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br_if $next (i32.lt_u (local.get $i) (i32.const 1000000))))
             (i32.const 0))"#,
    );
    let mut job = job(module, "kept-exceptions");
    job.limits.table_elements = 1_000_000;
    let err = executor.run(&job).unwrap_err();
    assert!(
        matches!(err, ExecError::MemoryLimit { limit, .. } if limit == 16 << 20),
        "{err}"
    );
    assert_normal_job_runs(&executor);
}
