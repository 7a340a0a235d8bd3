//! Container executor benchmark: start latency and CPU overhead, printed as one JSON line.
//!
//! ```text
//! cargo run --release -p agora-container --example container_bench
//! ```
//!
//! - **Start latency**: `RUNS` (30) jobs of `echo x` in a busybox rootfs; for each, the
//!   time from spawning the runtime to the job's first byte of stdout, and the whole
//!   `run()` (bundle, cgroup and output mount set up, run, read back, cleaned up); p50/p95.
//! - **CPU overhead**: a busybox `sh` arithmetic loop (`ITERATIONS`, 10⁶ ≈ 2 s here) run
//!   natively and in a container (CPU quota off), alternating for `ROUNDS` (5) rounds;
//!   median ratios of wall time and of CPU time (cgroup vs the native child's rusage).
//! - **Calibration**: [`agora_container::calibrate_with`] and how long it took.
//!
//! Environment: `RUNS`, `ROUNDS`, `ITERATIONS` override the counts; `AGORA_BUSYBOX` the
//! static busybox.

use std::process::Command;
use std::time::{Duration, Instant};

use agora_container::{ContainerExecutor, ContainerJob, ExecutorConfig, calibrate, probe, rootfs};
use agora_core::Hash;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let index = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[index]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs = env_or("RUNS", 30);
    let rounds = env_or("ROUNDS", 5);
    let iterations = env_or("ITERATIONS", 1_000_000);
    let runtime = probe()?;
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("rootfs");
    rootfs::busybox_rootfs(&root, &rootfs::default_busybox())?;
    let executor = ContainerExecutor::new(runtime.clone(), ExecutorConfig::default());

    let (first_byte, total) = start_latency(&executor, &root, runs)?;
    let cpu = cpu_overhead(&executor, &root, rounds, iterations)?;
    let report = calibrate::calibrate_with(calibrate::DEFAULT_ITERATIONS)?;

    let json = serde_json::json!({
        "bench": "container",
        "runtime": runtime.kind,
        "runtime_version": runtime.version,
        "cgroup": runtime.cgroup,
        "rootless": runtime.rootless,
        "runs": runs,
        "start_first_byte_ms": { "p50": percentile(&mut first_byte.clone(), 0.5), "p95": percentile(&mut first_byte.clone(), 0.95) },
        "run_total_ms": { "p50": percentile(&mut total.clone(), 0.5), "p95": percentile(&mut total.clone(), 0.95) },
        "cpu_job": cpu,
        "calibration": {
            "fuel_per_cpu_second": report.calibration.fuel_per_cpu_second,
            "fuel": report.fuel,
            "native_cpu_ns": report.native_cpu_ns,
            "optimized": report.optimized,
            "elapsed_ms": report.elapsed.as_secs_f64() * 1000.0,
        },
    });
    println!("{json}");
    Ok(())
}

/// First-byte and whole-run latencies of `runs` trivial jobs, in milliseconds.
fn start_latency(
    executor: &ContainerExecutor,
    root: &std::path::Path,
    runs: u64,
) -> Result<(Vec<f64>, Vec<f64>), Box<dyn std::error::Error>> {
    let mut first_byte = Vec::new();
    let mut total = Vec::new();
    // One warm-up run: page cache, runtime binary, cgroup parent.
    let job = ContainerJob::new(Hash::of(b"bench"), root, vec!["echo".into(), "x".into()]);
    executor.run(&job)?;
    for _ in 0..runs {
        let start = Instant::now();
        let run = executor.run(&job)?;
        total.push(start.elapsed().as_secs_f64() * 1000.0);
        first_byte.push(run.metering.first_stdout_ms.unwrap_or(f64::NAN));
    }
    Ok((first_byte, total))
}

/// Native vs container runs of the same busybox loop, alternating.
fn cpu_overhead(
    executor: &ContainerExecutor,
    root: &std::path::Path,
    rounds: u64,
    iterations: u64,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let script = format!("i=0; while [ $i -lt {iterations} ]; do i=$((i+1)); done");
    let busybox = rootfs::default_busybox();
    let (mut native_wall, mut native_cpu, mut ctr_wall, mut ctr_cpu) =
        (vec![], vec![], vec![], vec![]);
    let (mut wall_ratio, mut cpu_ratio) = (vec![], vec![]);
    for _ in 0..rounds {
        let (wall, cpu) = native(&busybox, &script)?;
        let mut job = ContainerJob::new(
            Hash::of(b"bench-cpu"),
            root,
            vec!["sh".into(), "-c".into(), script.clone()],
        );
        job.limits.cpu_millis = 0;
        job.limits.wall_timeout = Duration::from_secs(120);
        let start = Instant::now();
        let run = executor.run(&job)?;
        let cwall = start.elapsed().as_secs_f64() * 1000.0;
        let ccpu = run.metering.cpu_ns as f64 / 1e6;
        wall_ratio.push(cwall / wall);
        cpu_ratio.push(ccpu / cpu);
        native_wall.push(wall);
        native_cpu.push(cpu);
        ctr_wall.push(cwall);
        ctr_cpu.push(ccpu);
    }
    Ok(serde_json::json!({
        "iterations": iterations,
        "rounds": rounds,
        "native_wall_ms_median": percentile(&mut native_wall, 0.5),
        "native_cpu_ms_median": percentile(&mut native_cpu, 0.5),
        "container_wall_ms_median": percentile(&mut ctr_wall, 0.5),
        "container_cpu_ms_median": percentile(&mut ctr_cpu, 0.5),
        "wall_ratio_median": percentile(&mut wall_ratio, 0.5),
        "cpu_ratio_median": percentile(&mut cpu_ratio, 0.5),
    }))
}

/// Runs the script under the host's busybox; wall and CPU milliseconds of the child.
fn native(
    busybox: &std::path::Path,
    script: &str,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let before = children_cpu_ms();
    let start = Instant::now();
    let status = Command::new(busybox).args(["sh", "-c", script]).status()?;
    let wall = start.elapsed().as_secs_f64() * 1000.0;
    if !status.success() {
        return Err(format!("native run failed: {status}").into());
    }
    Ok((wall, children_cpu_ms() - before))
}

/// CPU time of this process's waited-for children, in milliseconds.
fn children_cpu_ms() -> f64 {
    // SAFETY: zeroed rusage is valid; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}
