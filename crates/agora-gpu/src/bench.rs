//! The provider's GPU benchmark: dense matrix multiply throughput through cuBLAS, measured
//! once at provider start and published with its asks.
//!
//! FP32 is `cublasSgemm` (plain FP32, no TF32), FP16 is `cublasGemmEx` with FP16 inputs
//! and outputs and FP32 accumulation (tensor cores), both on `N × N` matrices with
//! `N` = [`MATRIX_N`] (4096 if that does not fit). Each precision gets a warm-up, one
//! timed call to size the run, then as many calls as fit in its share of the budget,
//! timed from the first launch to a stream synchronisation. A GEMM is `2·N³` floating
//! point operations.
//!
//! CUDA is loaded at run time (`cudarc` with `dynamic-loading`): without
//! `libcuda.so.1` the benchmark returns [`GpuBenchError::NoDriver`] instead of failing to
//! build or panicking.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DeviceRepr, ValidAsZeroBits};
use serde::{Deserialize, Serialize};

/// The matrix side of the benchmark.
pub const MATRIX_N: usize = 8192;
/// The side tried when [`MATRIX_N`] does not fit in the GPU's memory.
pub const SMALL_MATRIX_N: usize = 4096;
/// Timed calls per precision are kept between these bounds.
const MIN_ITERATIONS: u32 = 3;
const MAX_ITERATIONS: u32 = 500;

/// What the benchmark measured on one GPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TflopsReport {
    /// The CUDA device ordinal measured.
    pub device_index: usize,
    /// The device's name as CUDA reports it.
    pub device_name: Option<String>,
    /// SGEMM throughput, 10¹² FP32 operations per second.
    pub fp32_tflops: f64,
    /// FP16 GEMM (FP32 accumulate) throughput, when it ran.
    pub fp16_tflops: Option<f64>,
    /// Why FP16 did not run, when it did not.
    pub fp16_error: Option<String>,
    /// Matrix side.
    pub matrix_n: usize,
    /// Timed SGEMM calls.
    pub iterations: u32,
    /// Timed FP16 calls.
    pub fp16_iterations: u32,
    /// Wall time of the whole benchmark, set-up included.
    pub elapsed: Duration,
}

/// Why the benchmark could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuBenchError {
    /// The CUDA driver library is not installed.
    #[error(
        "no CUDA driver: libcuda.so.1 not found; install the NVIDIA driver (or add its directory to LD_LIBRARY_PATH) to benchmark GPUs"
    )]
    NoDriver,
    /// cuBLAS is not installed.
    #[error(
        "no cuBLAS: libcublas.so.13 (or libcublas.so) not found; install the CUDA 13 libraries (e.g. the libcublas-13 package) or add them to LD_LIBRARY_PATH"
    )]
    NoCublas,
    /// A CUDA driver call failed.
    #[error("CUDA {step} failed: {detail}; check the GPU with nvidia-smi")]
    Driver {
        /// What was being done.
        step: &'static str,
        /// The driver's error.
        detail: String,
    },
    /// A cuBLAS call failed.
    #[error("cuBLAS {step} failed: {detail}; check the CUDA libraries match the driver")]
    Cublas {
        /// What was being done.
        step: &'static str,
        /// cuBLAS' status.
        detail: String,
    },
    /// The CUDA bindings panicked (e.g. a symbol the driver lacks).
    #[error("the CUDA bindings failed: {0}; the driver may be older than CUDA 13.0")]
    Panicked(String),
}

/// Measures FP32 (and FP16) GEMM throughput of CUDA device `device_index` within about
/// `duration_budget` of timed work (set-up comes on top: allocation and copies, well
/// under a second on a data-centre GPU).
pub fn measure_tflops(
    device_index: usize,
    duration_budget: Duration,
) -> Result<TflopsReport, GpuBenchError> {
    // SAFETY: only tries to dlopen the candidate library names.
    let (driver, blas) = unsafe {
        (
            cudarc::driver::sys::is_culib_present(),
            cudarc::cublas::sys::is_culib_present(),
        )
    };
    check_libraries(driver, blas)?;
    std::panic::catch_unwind(AssertUnwindSafe(|| run(device_index, duration_budget)))
        .unwrap_or_else(|panic| Err(GpuBenchError::Panicked(panic_text(&*panic))))
}

/// The typed error for missing libraries, if any (the pure half of the presence check).
pub fn check_libraries(driver_present: bool, cublas_present: bool) -> Result<(), GpuBenchError> {
    match (driver_present, cublas_present) {
        (false, _) => Err(GpuBenchError::NoDriver),
        (true, false) => Err(GpuBenchError::NoCublas),
        (true, true) => Ok(()),
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

fn driver(step: &'static str) -> impl Fn(cudarc::driver::DriverError) -> GpuBenchError {
    move |e| GpuBenchError::Driver {
        step,
        detail: e.to_string(),
    }
}

fn cublas(step: &'static str) -> impl Fn(cudarc::cublas::result::CublasError) -> GpuBenchError {
    move |e| GpuBenchError::Cublas {
        step,
        detail: format!("{e:?}"),
    }
}

fn run(device_index: usize, budget: Duration) -> Result<TflopsReport, GpuBenchError> {
    let start = Instant::now();
    let ctx = CudaContext::new(device_index).map_err(driver("context creation"))?;
    let stream = ctx.default_stream();
    let blas = CudaBlas::new(stream.clone()).map_err(cublas("handle creation"))?;
    let (matrix_n, fp32) = match time_precision::<f32>(&blas, &stream, MATRIX_N, budget / 2) {
        Err(e) if is_out_of_memory(&e) => (
            SMALL_MATRIX_N,
            time_precision::<f32>(&blas, &stream, SMALL_MATRIX_N, budget / 2)?,
        ),
        other => (MATRIX_N, other?),
    };
    let fp16 = time_precision::<half::f16>(&blas, &stream, matrix_n, budget * 3 / 10);
    Ok(TflopsReport {
        device_index,
        device_name: ctx.name().ok(),
        fp32_tflops: fp32.tflops(matrix_n),
        fp16_tflops: fp16.as_ref().ok().map(|t| t.tflops(matrix_n)),
        fp16_error: fp16.as_ref().err().map(ToString::to_string),
        matrix_n,
        iterations: fp32.iterations,
        fp16_iterations: fp16.map(|t| t.iterations).unwrap_or(0),
        elapsed: start.elapsed(),
    })
}

fn is_out_of_memory(error: &GpuBenchError) -> bool {
    matches!(error, GpuBenchError::Driver { detail, .. } if detail.contains("OUT_OF_MEMORY"))
}

/// Timed GEMM calls and the time they took.
struct Timing {
    iterations: u32,
    elapsed: Duration,
}

impl Timing {
    fn tflops(&self, n: usize) -> f64 {
        tflops(n, self.iterations, self.elapsed)
    }
}

/// 10¹² operations per second for `iterations` GEMMs of side `n` in `elapsed`.
pub fn tflops(n: usize, iterations: u32, elapsed: Duration) -> f64 {
    let ops = 2.0 * (n as f64).powi(3) * f64::from(iterations);
    ops / elapsed.as_secs_f64().max(1e-9) / 1e12
}

/// How many calls fit in `budget` when one takes `one`.
pub fn iterations_for(budget: Duration, one: Duration) -> u32 {
    let fit = budget.as_secs_f64() / one.as_secs_f64().max(1e-9);
    (fit as u32).clamp(MIN_ITERATIONS, MAX_ITERATIONS)
}

/// A host value for element `i` of a test matrix: small, varied, never all zeros (a GPU
/// multiplying zeros draws less power and would flatter the figure).
pub trait BenchElement: DeviceRepr + ValidAsZeroBits + Copy {
    /// The element for position `i`.
    fn element(i: usize) -> Self;
    /// `x` in this type.
    fn from_f32(x: f32) -> Self;
}

impl BenchElement for f32 {
    fn element(i: usize) -> Self {
        pattern(i)
    }
    fn from_f32(x: f32) -> Self {
        x
    }
}

impl BenchElement for half::f16 {
    fn element(i: usize) -> Self {
        half::f16::from_f32(pattern(i))
    }
    fn from_f32(x: f32) -> Self {
        half::f16::from_f32(x)
    }
}

fn pattern(i: usize) -> f32 {
    let mixed = (i as u64).wrapping_mul(2_654_435_761) >> 7;
    (mixed % 1024) as f32 / 1024.0 - 0.5
}

fn time_precision<T: BenchElement>(
    blas: &CudaBlas,
    stream: &Arc<CudaStream>,
    n: usize,
    budget: Duration,
) -> Result<Timing, GpuBenchError>
where
    CudaBlas: Gemm<T>,
{
    let host: Vec<T> = (0..n * n).map(T::element).collect();
    let a = stream.clone_htod(&host).map_err(driver("copy to GPU"))?;
    let b = stream.clone_htod(&host).map_err(driver("copy to GPU"))?;
    drop(host);
    let mut c = stream
        .alloc_zeros::<T>(n * n)
        .map_err(driver("allocation"))?;
    let mut gemm = |count: u32| -> Result<Duration, GpuBenchError> {
        let started = Instant::now();
        for _ in 0..count {
            gemm_once(blas, n, &a, &b, &mut c)?;
        }
        stream
            .synchronize()
            .map_err(driver("stream synchronisation"))?;
        Ok(started.elapsed())
    };
    gemm(2)?; // warm-up: cuBLAS picks and loads its kernels
    let iterations = iterations_for(budget, gemm(1)?);
    let elapsed = gemm(iterations)?;
    Ok(Timing {
        iterations,
        elapsed,
    })
}

fn gemm_once<T: BenchElement>(
    blas: &CudaBlas,
    n: usize,
    a: &CudaSlice<T>,
    b: &CudaSlice<T>,
    c: &mut CudaSlice<T>,
) -> Result<(), GpuBenchError>
where
    CudaBlas: Gemm<T>,
{
    let side = n as i32;
    let cfg = GemmConfig {
        transa: cublasOperation_t::CUBLAS_OP_N,
        transb: cublasOperation_t::CUBLAS_OP_N,
        m: side,
        n: side,
        k: side,
        alpha: T::from_f32(1.0),
        lda: side,
        ldb: side,
        beta: T::from_f32(0.0),
        ldc: side,
    };
    // SAFETY: a, b and c each hold n·n elements, matching m = n = k = ld* = n.
    unsafe { blas.gemm(cfg, a, b, c) }.map_err(cublas("GEMM"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_libraries_are_typed_errors_that_say_what_to_install() {
        let err = check_libraries(false, false).unwrap_err();
        assert_eq!(err, GpuBenchError::NoDriver);
        assert!(
            err.to_string()
                .starts_with("no CUDA driver: libcuda.so.1 not found"),
            "{err}"
        );
        let err = check_libraries(true, false).unwrap_err();
        assert!(err.to_string().contains("libcublas.so.13"), "{err}");
        assert!(check_libraries(true, true).is_ok());
    }

    #[test]
    fn without_cuda_the_benchmark_says_so() {
        // SAFETY: only tries to dlopen libcuda.
        let present = unsafe { cudarc::driver::sys::is_culib_present() };
        if present {
            return; // a GPU machine: covered by examples/gpu_report.rs on the device
        }
        let err = measure_tflops(0, Duration::from_millis(10)).unwrap_err();
        assert_eq!(err, GpuBenchError::NoDriver);
    }

    #[test]
    fn tflops_arithmetic() {
        // One 8192³ GEMM is 1.0995e12 operations.
        let t = tflops(8192, 10, Duration::from_secs(1));
        assert!((t - 10.995).abs() < 0.01, "{t}");
        assert_eq!(
            iterations_for(Duration::from_secs(2), Duration::from_millis(20)),
            100
        );
        assert_eq!(
            iterations_for(Duration::from_millis(1), Duration::from_secs(1)),
            3
        );
        assert_eq!(
            iterations_for(Duration::from_secs(100), Duration::ZERO),
            500
        );
    }

    #[test]
    fn test_matrices_are_not_zero() {
        let values: Vec<f32> = (0..4096).map(pattern).collect();
        assert!(values.iter().all(|v| (-0.5..0.5).contains(v)));
        let distinct: std::collections::BTreeSet<u32> =
            values.iter().map(|v| v.to_bits()).collect();
        assert!(distinct.len() > 500, "{}", distinct.len());
    }
}
