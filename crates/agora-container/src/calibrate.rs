//! How much fuel a second of this machine's CPU is worth, so that a container job and a
//! WASM job buying the same compute units get the same work done.
//!
//! WASM jobs are billed in fuel, one unit per WebAssembly instruction executed: exact and
//! the same on every machine. A container job runs native code, which cannot be counted
//! that way; what can be measured is its CPU time (from its cgroup). The bridge is a rate,
//! fuel per CPU second, measured on each provider machine by running **one reference
//! workload both ways**:
//!
//! 1. as a WASM module under agora-exec's [`WasmExecutor`] with fuel metering, which gives
//!    the fuel `F` the workload costs (a constant: the same on every machine);
//! 2. as the same integer algorithm compiled natively into this binary, timed with the
//!    thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`), which gives its CPU time `T` here
//!    (the best of a few rounds, so that preemption on a busy host does not count).
//!
//! Then `fuel_per_cpu_second = F / T` and a container job's fuel is
//! `cpu_ns × fuel_per_cpu_second / 10⁹` (u128 arithmetic, saturating). On a fast machine
//! `T` is small and a CPU second is worth more fuel: the buyer pays for work, not for
//! time, as with WASM. The workload is an xorshift64 generator feeding a multiply-add, a
//! dependent integer chain that neither wasmtime nor LLVM can fold (the Rust twin passes
//! its inputs and result through [`std::hint::black_box`]), and its exit code (the low 7
//! bits of the result) is compared between the two runs so that both surely did the same
//! work. It takes about 100 ms in an optimized build. A debug build times unoptimized
//! native code and overstates `T`; [`CalibrationReport::optimized`] says which it was.

use std::time::{Duration, Instant};

use agora_core::Hash;
use agora_exec::{ExecConfig, ExecError, Executor, WasmExecutor, WasmModule};

use crate::error::ContainerError;
use crate::job::Calibration;

/// Iterations of the reference workload in [`calibrate`].
pub const DEFAULT_ITERATIONS: u64 = 5_000_000;

/// The rate jobs use until a provider calibrates: about what an optimized build measures
/// on current x86-64 server cores (1.4–1.9 × 10¹⁰ on the development and GPU machines;
/// fuel counts every `local.get`/`local.set`, which native code does not spend time on).
pub const NOMINAL_FUEL_PER_CPU_SECOND: u64 = 16_000_000_000;

/// Native rounds timed; the fastest counts.
const NATIVE_ROUNDS: usize = 5;

/// The full measurement behind a [`Calibration`].
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrationReport {
    /// The rate.
    pub calibration: Calibration,
    /// Iterations of the workload.
    pub iterations: u64,
    /// Fuel the WASM run used.
    pub fuel: u64,
    /// CPU time of the fastest native run, in nanoseconds.
    pub native_cpu_ns: u64,
    /// Whether the native twin was compiled with optimizations (a debug build's rate is
    /// not meaningful).
    pub optimized: bool,
    /// Wall-clock time of the whole calibration.
    pub elapsed: Duration,
}

/// Measures this machine with [`DEFAULT_ITERATIONS`].
pub fn calibrate() -> Result<Calibration, ContainerError> {
    calibrate_with(DEFAULT_ITERATIONS).map(|r| r.calibration)
}

/// Measures this machine with `iterations` of the reference workload.
pub fn calibrate_with(iterations: u64) -> Result<CalibrationReport, ContainerError> {
    let start = Instant::now();
    let iterations = iterations.max(1000);
    let (fuel, wasm_code) = wasm_fuel(iterations)?;
    let (native_cpu_ns, native_code) = native_cpu_ns(iterations);
    if wasm_code != native_code {
        return Err(ExecError::Engine {
            context: "calibrating",
            message: format!(
                "the WASM and native workloads disagree ({wasm_code} vs {native_code}); refusing the rate"
            ),
        }
        .into());
    }
    let rate = u128::from(fuel) * 1_000_000_000 / u128::from(native_cpu_ns.max(1));
    let fuel_per_cpu_second = u64::try_from(rate).unwrap_or(u64::MAX);
    let optimized = !cfg!(debug_assertions);
    let measured_by = format!(
        "xorshift64 multiply-add x{iterations}: {fuel} fuel in wasm, {native_cpu_ns} ns CPU native{}",
        if optimized {
            ""
        } else {
            " (debug build: not meaningful)"
        }
    );
    Ok(CalibrationReport {
        calibration: Calibration {
            fuel_per_cpu_second,
            measured_by,
        },
        iterations,
        fuel,
        native_cpu_ns,
        optimized,
        elapsed: start.elapsed(),
    })
}

/// The reference workload in WAT; `_start` exits with the result's low 7 bits.
pub fn workload_wat(iterations: u64) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $x i64) (local $acc i64) (local $i i64)
    (local.set $x (i64.const {SEED}))
    (local.set $i (i64.const {iterations}))
    (loop $next
      (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
      (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
      (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 17))))
      (local.set $acc (i64.add (i64.mul (local.get $acc) (i64.const {MUL})) (local.get $x)))
      (local.set $i (i64.sub (local.get $i) (i64.const 1)))
      (br_if $next (i64.ne (local.get $i) (i64.const 0))))
    (call $exit (i32.wrap_i64 (i64.and (local.get $acc) (i64.const 127))))))"#
    )
}

const SEED: i64 = 0x2545_F491_4F6C_DD1D;
const MUL: i64 = 6_364_136_223_846_793_005;

/// The native twin of [`workload_wat`].
#[inline(never)]
pub fn workload_native(iterations: u64) -> u64 {
    let mut x = std::hint::black_box(SEED as u64);
    let mut acc = 0u64;
    let mut i = std::hint::black_box(iterations);
    loop {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        acc = acc.wrapping_mul(MUL as u64).wrapping_add(x);
        i -= 1;
        if i == 0 {
            break;
        }
    }
    std::hint::black_box(acc)
}

fn wasm_fuel(iterations: u64) -> Result<(u64, i32), ContainerError> {
    let bytes = wat::parse_str(workload_wat(iterations)).map_err(|e| ExecError::Engine {
        context: "assembling the calibration workload",
        message: e.to_string(),
    })?;
    let executor = WasmExecutor::new(ExecConfig::default())?;
    let mut job = executor.job(
        Hash::of(b"agora-container calibration"),
        WasmModule::new(bytes),
    );
    job.limits.fuel = agora_core::Fuel(u64::MAX / 2);
    let outcome = executor.run(&job)?;
    Ok((outcome.fuel_used.0, outcome.exit_code))
}

fn native_cpu_ns(iterations: u64) -> (u64, i32) {
    let mut best = u64::MAX;
    let mut code = 0;
    for _ in 0..NATIVE_ROUNDS {
        let before = thread_cpu_ns();
        let result = workload_native(iterations);
        best = best.min(thread_cpu_ns().saturating_sub(before));
        code = (result & 127) as i32;
    }
    (best, code)
}

/// CPU time of the calling thread.
fn thread_cpu_ns() -> u64 {
    // SAFETY: zeroed timespec is valid; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid clock id and pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasm_and_native_twins_agree_and_the_rate_follows() {
        let report = calibrate_with(200_000).unwrap();
        assert!(report.fuel > 200_000 * 10, "{report:?}");
        let expected = u128::from(report.fuel) * 1_000_000_000 / u128::from(report.native_cpu_ns);
        assert_eq!(u128::from(report.calibration.fuel_per_cpu_second), expected);
        // Fuel is exact: the same workload always costs the same.
        assert_eq!(calibrate_with(200_000).unwrap().fuel, report.fuel);
    }
}
