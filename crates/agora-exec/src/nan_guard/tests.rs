//! Tests of the NaN guards: the rewrite keeps modules valid, and a guarded job's output does
//! not depend on which NaN bits the CPU's float operations produce.

use agora_core::Hash;
use wasmparser::{Operator, ValType, Validator, WasmFeatures};

use super::*;
use crate::profile::{NanMode, Profile};
use crate::wasm::{ExecConfig, WasmExecutor};
use crate::{Executor, WasmModule};

/// Models another CPU: after every operation that can produce a NaN, a NaN result is
/// replaced by an arbitrary NaN (any sign, any payload, quiet or signalling), drawn from a
/// seeded sequence. Real CPUs differ from each other in exactly this and nothing else.
struct Scramble {
    state: u64,
}

impl Scramble {
    fn next(&mut self) -> u64 {
        // splitmix64: a fixed, well-mixed sequence for test data (not cryptography).
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn f32_nan(&mut self) -> u32 {
        let r = self.next() as u32;
        let payload = (r & 0x007f_ffff).max(1);
        (r & 0x8000_0000) | 0x7f80_0000 | payload
    }

    fn f64_nan(&mut self) -> u64 {
        let r = self.next();
        let payload = (r & 0x000f_ffff_ffff_ffff).max(1);
        (r & 0x8000_0000_0000_0000) | 0x7ff0_0000_0000_0000 | payload
    }
}

impl Policy for Scramble {
    fn site(&self, op: &Operator<'_>, _globals: &[ValType]) -> Option<(Place, Lanes)> {
        use Operator as O;
        let lanes = match op {
            O::F32Add
            | O::F32Sub
            | O::F32Mul
            | O::F32Div
            | O::F32Sqrt
            | O::F32Min
            | O::F32Max
            | O::F32Ceil
            | O::F32Floor
            | O::F32Trunc
            | O::F32Nearest
            | O::F32DemoteF64 => Lanes::F32,
            O::F64Add
            | O::F64Sub
            | O::F64Mul
            | O::F64Div
            | O::F64Sqrt
            | O::F64Min
            | O::F64Max
            | O::F64Ceil
            | O::F64Floor
            | O::F64Trunc
            | O::F64Nearest
            | O::F64PromoteF32 => Lanes::F64,
            _ => simd_float_result(op)?,
        };
        Some((Place::After, lanes))
    }

    fn nan_bits(&mut self, lanes: Lanes) -> u128 {
        match lanes {
            Lanes::F32 => u128::from(self.f32_nan()),
            Lanes::F64 => u128::from(self.f64_nan()),
            Lanes::F32x4 => (0..4).fold(0, |acc, i| acc | u128::from(self.f32_nan()) << (32 * i)),
            Lanes::F64x2 => (0..2).fold(0, |acc, i| acc | u128::from(self.f64_nan()) << (64 * i)),
        }
    }
}

fn scrambled(module: &[u8], seed: u64) -> Vec<u8> {
    rewrite(module, &mut Scramble { state: seed })
        .expect("the scramble rewrite")
        .expect("the test module has float operations")
}

/// A job that makes NaNs every way arithmetic can (from signalling and quiet inputs with
/// payloads, from 0/0, sqrt(-1), inf-inf, two NaN operands, conversions, SIMD lanes) and
/// lets their bits escape every way the guard covers; then it prints the memory it wrote.
/// No NaN is copied from memory to memory through a float load and store.
const NAN_JOB: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $g32 (mut f32) (f32.const 0))
  (global $g64 (mut f64) (f64.const 0))
  ;; Inputs at 0: f32 sNaN with payload, f32 negative qNaN with payload,
  ;; at 8: f64 sNaN with payload, f64 negative qNaN with payload.
  (data (i32.const 0) "\01\00\80\7f\23\01\c0\ff")
  (data (i32.const 8) "\01\00\00\00\00\00\f0\7f\45\23\01\00\00\00\f8\ff")
  (global $out (mut i32) (i32.const 1024))
  (func $f32 (param f32)
    (f32.store (global.get $out) (local.get 0))
    (global.set $out (i32.add (global.get $out) (i32.const 4))))
  (func $f64 (param f64)
    (f64.store (global.get $out) (local.get 0))
    (global.set $out (i32.add (global.get $out) (i32.const 8))))
  (func $i32 (param i32)
    (i32.store (global.get $out) (local.get 0))
    (global.set $out (i32.add (global.get $out) (i32.const 4))))
  (func $i64 (param i64)
    (i64.store (global.get $out) (local.get 0))
    (global.set $out (i32.add (global.get $out) (i32.const 8))))
  (func $v128 (param v128)
    (v128.store (global.get $out) (local.get 0))
    (global.set $out (i32.add (global.get $out) (i32.const 16))))
  (func (export "_start")
    (local $i i32) (local $acc f64)
    ;; f32: arithmetic on NaN inputs and NaN-making operations, stored.
    (call $f32 (f32.add (f32.load (i32.const 0)) (f32.const 1)))
    (call $f32 (f32.add (f32.load (i32.const 0)) (f32.load (i32.const 4))))
    (call $f32 (f32.mul (f32.load (i32.const 4)) (f32.const -2)))
    (call $f32 (f32.div (f32.const 0) (f32.const 0)))
    (call $f32 (f32.sqrt (f32.const -1)))
    (call $f32 (f32.sub (f32.const inf) (f32.const inf)))
    (call $f32 (f32.min (f32.load (i32.const 0)) (f32.const 1)))
    (call $f32 (f32.max (f32.const -inf) (f32.load (i32.const 4))))
    (call $f32 (f32.nearest (f32.load (i32.const 0))))
    (call $f32 (f32.demote_f64 (f64.load (i32.const 8))))
    (call $f32 (f32.add (f32.const 1) (f32.const 2)))
    ;; copysign: the sign of a NaN becomes the sign of a number.
    (call $f32 (f32.copysign (f32.const 1) (f32.add (f32.load (i32.const 4)) (f32.const 0))))
    (call $f64 (f64.copysign (f64.const 1) (f64.mul (f64.load (i32.const 16)) (f64.const 3))))
    ;; reinterpret: the bits become an integer.
    (call $i32 (i32.reinterpret_f32 (f32.div (f32.const 0) (f32.const 0))))
    (call $i64 (i64.reinterpret_f64 (f64.sub (f64.const inf) (f64.const inf))))
    ;; f64 the same way.
    (call $f64 (f64.add (f64.load (i32.const 8)) (f64.const 1)))
    (call $f64 (f64.add (f64.load (i32.const 8)) (f64.load (i32.const 16))))
    (call $f64 (f64.div (f64.const 0) (f64.const 0)))
    (call $f64 (f64.sqrt (f64.const -1)))
    (call $f64 (f64.promote_f32 (f32.load (i32.const 4))))
    (call $f64 (f64.floor (f64.load (i32.const 16))))
    ;; globals (a checkpointed job's globals are hashed).
    (global.set $g32 (f32.mul (f32.load (i32.const 0)) (f32.const 2)))
    (global.set $g64 (f64.sub (f64.load (i32.const 16)) (f64.const 2)))
    (call $i32 (i32.reinterpret_f32 (global.get $g32)))
    (call $i64 (i64.reinterpret_f64 (global.get $g64)))
    ;; SIMD: float lanes are raw bits to integer SIMD.
    (call $v128 (f32x4.add (v128.load (i32.const 0)) (f32x4.splat (f32.const 1))))
    (call $v128 (f64x2.mul (v128.load (i32.const 8)) (f64x2.splat (f64.const -1))))
    (call $v128 (f32x4.sqrt (f32x4.splat (f32.const -1))))
    (call $i32 (i32x4.extract_lane 1 (f32x4.div (v128.load (i32.const 0)) (v128.load (i32.const 0)))))
    (call $v128 (f32x4.splat (f32.div (f32.const 0) (f32.const 0))))
    (call $v128 (f64x2.replace_lane 1 (v128.const i64x2 0 0) (f64.sqrt (f64.const -4))))
    (call $v128 (f64x2.promote_low_f32x4 (v128.load (i32.const 0))))
    ;; A loop: NaNs flow through locals and many operations before escaping.
    (local.set $acc (f64.load (i32.const 8)))
    (loop $more
      (local.set $acc (f64.add (f64.mul (local.get $acc) (f64.const 1.5)) (f64.const 0.25)))
      (call $f64 (local.get $acc))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (i32.const 8))))
    ;; Print everything written.
    (i32.store (i32.const 512) (i32.const 1024))
    (i32.store (i32.const 516) (i32.sub (global.get $out) (i32.const 1024)))
    (drop (call $fd_write (i32.const 1) (i32.const 512) (i32.const 1) (i32.const 600))))
)
"#;

fn nan_job() -> Vec<u8> {
    wat::parse_str(NAN_JOB).expect("the NaN test job assembles")
}

fn executor(nan: NanMode) -> WasmExecutor {
    WasmExecutor::new(ExecConfig {
        profile: Profile {
            nan,
            ..Profile::DETERMINISTIC
        },
        ..ExecConfig::default()
    })
    .expect("an executor")
}

fn stdout_of(exec: &WasmExecutor, module: Vec<u8>) -> Vec<u8> {
    let job = exec.job(Hash::ZERO, WasmModule::new(module));
    let outcome = exec.run(&job).expect("the job runs");
    assert_eq!(outcome.exit_code, 0);
    outcome.stdout.data.to_vec()
}

fn validate(module: &[u8]) {
    Validator::new_with_features(WasmFeatures::all())
        .validate_all(module)
        .expect("a rewritten module is valid");
}

#[test]
fn guarded_output_does_not_depend_on_nan_bits() {
    // Guard mode is exactly "no canonicalization in the engine" plus the rewrite, so the
    // other CPU is modelled by scrambling the guarded module: each NaN-producing operation
    // is followed by its scramble and then by any guard that belonged to it, as if the
    // hardware itself had produced the scrambled NaN.
    let guarded = guard(&nan_job()).unwrap().expect("the job has escapes");
    let engine = executor(NanMode::Off);
    let reference = stdout_of(&engine, guarded.clone());
    assert!(!reference.is_empty());
    for seed in 0..16 {
        let other_cpu = scrambled(&guarded, seed);
        validate(&other_cpu);
        assert_eq!(
            stdout_of(&engine, other_cpu),
            reference,
            "seed {seed}: NaN bits leaked into the output"
        );
    }
    // And the executor's Guard mode runs the same guarded code.
    assert_eq!(stdout_of(&executor(NanMode::Guard), nan_job()), reference);
}

#[test]
fn without_guards_nan_bits_do_leak() {
    // The control for the test above: the scramble really changes what an unguarded job
    // writes, so the equality above is evidence and not a tautology.
    let module = nan_job();
    let unguarded = executor(NanMode::Off);
    let reference = stdout_of(&unguarded, module.clone());
    for seed in 0..4 {
        assert_ne!(
            stdout_of(&unguarded, scrambled(&module, seed)),
            reference,
            "seed {seed}: the scramble changed nothing observable"
        );
    }
}

#[test]
fn guards_match_canonicalizing_every_operation() {
    // For NaNs made by arithmetic, canonicalizing at the escapes gives the same bytes as
    // Cranelift canonicalizing after every float operation (the previous profile).
    let module = nan_job();
    assert_eq!(
        stdout_of(&executor(NanMode::Guard), module.clone()),
        stdout_of(&executor(NanMode::EveryOperation), module)
    );
}

#[test]
fn escaped_nans_are_canonical() {
    let out = stdout_of(&executor(NanMode::Guard), nan_job());
    // The first eleven f32 results: ten NaNs, then 1 + 2.
    for (i, word) in out[..44].chunks(4).enumerate() {
        let bits = u32::from_le_bytes(word.try_into().unwrap());
        let expected = if i == 10 {
            3.0f32.to_bits()
        } else {
            CANONICAL_F32
        };
        assert_eq!(bits, expected, "f32 result {i}: {bits:#010x}");
    }
    // copysign(1, NaN) with the canonical (positive) NaN is +1.
    assert_eq!(&out[44..48], &1.0f32.to_le_bytes());
    assert_eq!(&out[48..56], &1.0f64.to_le_bytes());
}

#[test]
fn modules_without_escaping_floats_are_left_alone() {
    let ints = wat::parse_str(
        r#"(module (memory 1) (func (export "_start")
             (i32.store (i32.const 0) (i32.add (i32.const 1) (i32.const 2)))
             (drop (f64.add (f64.const 1) (f64.const 2)))))"#,
    )
    .unwrap();
    assert_eq!(guard(&ints).unwrap(), None);
}

#[test]
fn rewrite_keeps_locals_and_unreachable_code_valid() {
    let module = wat::parse_str(
        r#"(module (memory 1) (global $g (mut f64) (f64.const 0))
             (func (param f32 i32) (local i64 i64) (local v128)
               (f32.store (local.get 1) (local.get 0))
               (global.set $g (f64.const 1))
               (drop (f32x4.add (local.get 4) (local.get 4)))
               unreachable
               f64.store
               (drop (i64.reinterpret_f64)))
             (func (export "_start")))"#,
    )
    .unwrap();
    validate(&module);
    let guarded = guard(&module).unwrap().expect("it has sites");
    validate(&guarded);
}

#[test]
fn sample_jobs_stay_valid_after_the_rewrite() {
    // Their outputs are checked against examples/jobs/expected.sha256 by the CLI tests and
    // examples/jobs/test.sh; here: the rewrite of real clang output validates.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/jobs");
    for name in ["pathtrace", "montecarlo", "nn", "logagg", "hashchain"] {
        let bytes = std::fs::read(dir.join(format!("{name}.wasm"))).unwrap();
        if let Some(guarded) = guard(&bytes).unwrap() {
            validate(&guarded);
        }
    }
}

#[test]
fn malformed_modules_are_errors_not_panics() {
    for bytes in [
        &b"\0asm\x01\0\0\0\x0a\x05\x01"[..],
        b"\0asm\x01\0\0\0\x0a\x03\x01\x7f\x00",
    ] {
        assert!(matches!(
            guard(bytes),
            Err(ExecError::MalformedModule { .. })
        ));
    }
}
