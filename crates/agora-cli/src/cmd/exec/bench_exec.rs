//! `agora bench exec`: metering overhead against native code, fuel and NaN
//! canonicalization on vs off, start latency of an empty job from the module cache, and
//! cold compile time of each sample job (medians over several runs), and a soak of mixed
//! hostile and normal jobs in one process with resident memory at its start and end.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_core::{Fuel, Hash};
use agora_exec::{
    ExecConfig, Executor, Input, JobSpec, NanMode, Profile, WasmExecutor, WasmModule, Workload,
};
use anyhow::{Context, bail};
use serde::Serialize;

/// The sample jobs whose compile time is measured.
const SAMPLES: [&str; 5] = ["pathtrace", "montecarlo", "logagg", "nn", "hashchain"];

/// The smallest WASI command: one page of memory and an empty `_start`.
const EMPTY_MODULE: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: [] -> []
    0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
    0x05, 0x03, 0x01, 0x00, 0x01, // memory section: min 1 page
    0x07, 0x13, 0x02, // export section, two exports
    0x06, b'm', b'e', b'm', b'o', b'r', b'y', 0x02, 0x00, // "memory" memory 0
    0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x00, // "_start" func 0
    0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code section: empty body
];

/// A sample job measured against its native build: name, arguments, inputs (NAME, file
/// under the jobs directory). Sizes are chosen so one run takes a fraction of a second.
struct Kernel {
    name: &'static str,
    args: &'static [&'static str],
    inputs: &'static [(&'static str, &'static str)],
}

/// The float-heavy kernels of the metering-overhead measurement.
const KERNELS: [Kernel; 2] = [
    Kernel {
        name: "pathtrace",
        args: &["160", "120", "0", "120", "16"],
        inputs: &[],
    },
    Kernel {
        name: "nn",
        args: &["batch", "50"],
        inputs: &[("batch", "inputs/batch.f32")],
    },
];

/// Arguments of `agora bench exec`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Runs per measurement (medians are reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Empty-job runs for the start-latency median.
    #[arg(long, default_value_t = 500)]
    pub start_runs: usize,
    /// Directory with the sample jobs (`<name>.wasm`, `build.sh`, `inputs/`).
    #[arg(long, default_value = "examples/jobs")]
    pub jobs_dir: PathBuf,
    /// Directory with native builds of the samples; built with `build.sh --native` if absent.
    #[arg(long)]
    pub native_dir: Option<PathBuf>,
    /// Mixed hostile and normal jobs run in this process to check memory stays flat.
    #[arg(long, default_value_t = 1000)]
    pub soak_jobs: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One kernel measured natively and under each engine profile.
#[derive(Serialize)]
struct Overhead {
    job: String,
    args: Vec<String>,
    native_ms: Option<f64>,
    native_skipped: Option<String>,
    fuel_on_ms: f64,
    fuel_off_ms: f64,
    nan_canon_off_ms: f64,
    /// Cranelift's canonicalization after every float operation (the profile before NaN
    /// guards), fuel on.
    nan_every_op_ms: f64,
    fuel_used: u64,
    ratio_fuel_vs_native: Option<f64>,
    ratio_every_op_vs_native: Option<f64>,
    ratio_fuel_on_vs_off: f64,
    ratio_nan_on_vs_off: f64,
    ratio_every_op_vs_guards: f64,
}

#[derive(Serialize)]
struct Compile {
    job: String,
    module_bytes: usize,
    cold_compile_ms: f64,
}

#[derive(Serialize)]
struct StartLatency {
    runs: usize,
    median_run_us: f64,
    median_instantiate_and_run_us: f64,
    p99_run_us: f64,
}

#[derive(Serialize)]
struct Soak {
    jobs: usize,
    seconds: f64,
    /// How the jobs ended: `exit_N` or an error kind.
    endings: BTreeMap<String, usize>,
    rss_start_kib: Option<u64>,
    rss_end_kib: Option<u64>,
    peak_rss_start_kib: Option<u64>,
    peak_rss_end_kib: Option<u64>,
}

#[derive(Serialize)]
struct Report {
    runs: usize,
    overhead: Vec<Overhead>,
    start_latency: StartLatency,
    compile: Vec<Compile>,
    soak: Soak,
}

/// Runs `agora bench exec`.
pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let jobs_dir = locate_jobs_dir(&args.jobs_dir)?;
    let runs = args.runs.max(1);
    let native = native_dir(&jobs_dir, args.native_dir.as_deref());
    let engines = Engines::new()?;
    let mut overhead = Vec::new();
    for kernel in &KERNELS {
        eprintln!(
            "measuring {} {} ({runs} rounds, each running native and the four engine profiles once)",
            kernel.name,
            kernel.args.join(" ")
        );
        overhead.push(measure_kernel(&engines, &jobs_dir, &native, kernel, runs)?);
    }
    eprintln!("measuring start latency ({} empty jobs)", args.start_runs);
    let start_latency = start_latency(&engines.deterministic, args.start_runs.max(1))?;
    eprintln!("measuring cold compile times");
    let compile = SAMPLES
        .iter()
        .map(|name| compile_time(&engines.deterministic, &jobs_dir, name, runs))
        .collect::<anyhow::Result<Vec<_>>>()?;
    eprintln!("running {} mixed hostile and normal jobs", args.soak_jobs);
    let soak = soak(&engines.deterministic, &jobs_dir, args.soak_jobs)?;
    let report = Report {
        runs,
        overhead,
        start_latency,
        compile,
        soak,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// One executor per engine profile measured.
struct Engines {
    deterministic: WasmExecutor,
    fuel_off: WasmExecutor,
    nan_off: WasmExecutor,
    nan_every_op: WasmExecutor,
}

impl Engines {
    fn new() -> anyhow::Result<Self> {
        let make = |profile: Profile| {
            WasmExecutor::new(ExecConfig {
                profile,
                ..ExecConfig::default()
            })
            .context("starting a WASM executor")
        };
        Ok(Engines {
            deterministic: make(Profile::DETERMINISTIC)?,
            fuel_off: make(Profile {
                fuel: false,
                ..Profile::DETERMINISTIC
            })?,
            nan_off: make(Profile {
                nan: NanMode::Off,
                ..Profile::DETERMINISTIC
            })?,
            nan_every_op: make(Profile {
                nan: NanMode::EveryOperation,
                ..Profile::DETERMINISTIC
            })?,
        })
    }
}

fn locate_jobs_dir(given: &Path) -> anyhow::Result<PathBuf> {
    let fallback = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/jobs");
    for dir in [given.to_owned(), fallback] {
        if dir.join("pathtrace.wasm").is_file() {
            return Ok(dir);
        }
    }
    bail!(
        "no sample jobs in {} (run from the repository root or pass --jobs-dir)",
        given.display()
    )
}

/// Native builds: the given directory, or a fresh `build.sh --native`; `Err` says why not.
fn native_dir(jobs_dir: &Path, given: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(dir) = given {
        return Ok(dir.to_owned());
    }
    let out = std::env::temp_dir().join(format!("agora-bench-native-{}", std::process::id()));
    let status = Command::new(jobs_dir.join("build.sh"))
        .arg("--native")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => Ok(out),
        Ok(s) => Err(format!(
            "`build.sh --native` failed ({s}); is clang installed?"
        )),
        Err(e) => Err(format!("could not run build.sh --native: {e}")),
    }
}

fn measure_kernel(
    engines: &Engines,
    jobs_dir: &Path,
    native: &Result<PathBuf, String>,
    kernel: &Kernel,
    runs: usize,
) -> anyhow::Result<Overhead> {
    let job = sample_job(jobs_dir, kernel.name, kernel.args, kernel.inputs)?;
    let mut native_run = match native {
        Ok(dir) => NativeRun::new(dir, jobs_dir, kernel).map_err(|err| format!("{err:#}")),
        Err(why) => Err(why.clone()),
    };
    let profiles = [
        &engines.deterministic,
        &engines.fuel_off,
        &engines.nan_off,
        &engines.nan_every_op,
    ];
    let mut fuel_used = 0;
    for (i, executor) in profiles.iter().enumerate() {
        let used = warm_up(executor, &job)?;
        if i == 0 {
            fuel_used = used;
        }
    }
    // Round robin: one run of each variant per round, so load that comes and goes on a
    // shared machine falls on all of them alike instead of on whichever ran during it.
    let mut times: [Vec<Duration>; 4] = Default::default();
    let mut native_times = Vec::with_capacity(runs);
    for _ in 0..runs {
        if let Ok(run) = &mut native_run {
            match run.once() {
                Ok(took) => native_times.push(took),
                Err(err) => native_run = Err(format!("{err:#}")),
            }
        }
        for (executor, times) in profiles.iter().zip(times.iter_mut()) {
            times.push(executor.run(&job)?.wall_time);
        }
    }
    let [mut on, mut off, mut nan_off, mut every_op] = times;
    let (fuel_on_ms, fuel_off_ms) = (median_ms(&mut on), median_ms(&mut off));
    let (nan_canon_off_ms, nan_every_op_ms) = (median_ms(&mut nan_off), median_ms(&mut every_op));
    let (native_ms, native_skipped) = match native_run {
        Ok(_) => (Some(median_ms(&mut native_times)), None),
        Err(why) => (None, Some(why)),
    };
    Ok(Overhead {
        job: kernel.name.to_owned(),
        args: kernel.args.iter().map(|a| a.to_string()).collect(),
        ratio_fuel_vs_native: native_ms.map(|n| fuel_on_ms / n),
        ratio_every_op_vs_native: native_ms.map(|n| nan_every_op_ms / n),
        native_ms,
        native_skipped,
        fuel_on_ms,
        fuel_off_ms,
        nan_canon_off_ms,
        nan_every_op_ms,
        fuel_used,
        ratio_fuel_on_vs_off: fuel_on_ms / fuel_off_ms,
        ratio_nan_on_vs_off: fuel_on_ms / nan_canon_off_ms,
        ratio_every_op_vs_guards: nan_every_op_ms / fuel_on_ms,
    })
}

fn sample_job(
    jobs_dir: &Path,
    name: &str,
    args: &[&str],
    inputs: &[(&str, &str)],
) -> anyhow::Result<JobSpec> {
    let path = jobs_dir.join(format!("{name}.wasm"));
    let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut job = JobSpec::new(Hash::of(name.as_bytes()), WasmModule::new(bytes));
    job.args = args.iter().map(|a| a.to_string()).collect();
    job.limits.fuel = Fuel::compute_units(1_000);
    for (input, file) in inputs {
        let data =
            fs::read(jobs_dir.join(file)).with_context(|| format!("reading input {file}"))?;
        job.inputs.push(Input {
            name: (*input).to_owned(),
            bytes: Arc::from(data),
        });
    }
    Ok(job)
}

/// Median of instantiate-plus-run time (compilation excluded: it is warmed first).
/// Runs `job` once to compile and warm it; returns the fuel it used.
fn warm_up(executor: &WasmExecutor, job: &JobSpec) -> anyhow::Result<u64> {
    let warm = executor
        .run(job)
        .with_context(|| format!("running {:?}", job.args))?;
    anyhow::ensure!(
        warm.exit_code == 0,
        "job exited {}: {}",
        warm.exit_code,
        warm.stderr.text()
    );
    Ok(warm.fuel_used.0)
}

/// The native build of one kernel, ready to be timed run by run.
struct NativeRun {
    exe: PathBuf,
    args: Vec<String>,
    input_dir: tempfile::TempDir,
}

impl NativeRun {
    /// Copies the kernel's inputs and runs it once to warm the page cache.
    fn new(native_dir: &Path, jobs_dir: &Path, kernel: &Kernel) -> anyhow::Result<Self> {
        let exe = native_dir.join(kernel.name);
        anyhow::ensure!(exe.is_file(), "no native build at {}", exe.display());
        let input_dir = tempfile::tempdir()?;
        for (input, file) in kernel.inputs {
            fs::copy(jobs_dir.join(file), input_dir.path().join(input))?;
        }
        let mut run = NativeRun {
            exe,
            args: kernel.args.iter().map(|a| a.to_string()).collect(),
            input_dir,
        };
        run.once()?;
        Ok(run)
    }

    /// Spawns the executable once; returns how long it took.
    fn once(&mut self) -> anyhow::Result<Duration> {
        let output_dir = tempfile::tempdir()?;
        let started = Instant::now();
        let status = Command::new(&self.exe)
            .args(&self.args)
            .env("AGORA_INPUT_DIR", self.input_dir.path())
            .env("AGORA_OUTPUT_DIR", output_dir.path())
            .stdout(std::process::Stdio::null())
            .status()
            .with_context(|| format!("running {}", self.exe.display()))?;
        let took = started.elapsed();
        anyhow::ensure!(
            status.success(),
            "native {} failed: {status}",
            self.exe.display()
        );
        Ok(took)
    }
}

fn start_latency(executor: &WasmExecutor, runs: usize) -> anyhow::Result<StartLatency> {
    let module = WasmModule::new(EMPTY_MODULE.to_vec());
    executor
        .prepare(&module)
        .context("compiling the empty module")?;
    let job = executor.job(Hash::of(b"empty"), module);
    let mut whole = Vec::with_capacity(runs);
    let mut inner = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let outcome = executor.run(&job)?;
        whole.push(started.elapsed());
        inner.push(outcome.wall_time);
    }
    whole.sort();
    let p99 = whole[(whole.len() * 99 / 100).min(whole.len() - 1)];
    Ok(StartLatency {
        runs,
        median_run_us: median_ms(&mut whole) * 1e3,
        median_instantiate_and_run_us: median_ms(&mut inner) * 1e3,
        p99_run_us: p99.as_secs_f64() * 1e6,
    })
}

fn compile_time(
    executor: &WasmExecutor,
    jobs_dir: &Path,
    name: &str,
    runs: usize,
) -> anyhow::Result<Compile> {
    let path = jobs_dir.join(format!("{name}.wasm"));
    let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let module = WasmModule::new(bytes);
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        times.push(executor.compile_uncached(&module)?);
    }
    Ok(Compile {
        job: name.to_owned(),
        module_bytes: module.bytes().len(),
        cold_compile_ms: median_ms(&mut times),
    })
}

/// The soak mix: (job, the ending it must have). Hostile ones hit each limit in turn.
fn soak_mix(jobs_dir: &Path) -> anyhow::Result<Vec<(JobSpec, &'static str)>> {
    let normal = sample_job(jobs_dir, "hashchain", &["2000", "7"], &[])?;
    let mut no_fuel = sample_job(jobs_dir, "hashchain", &["1000000000", "7"], &[])?;
    no_fuel.limits.fuel = Fuel(1_000_000);
    // nn declares 128 KiB of memory and grows it to read its batch: 192 KiB lets it start
    // and stops the growth; 64 KiB is below its own minimum, so it is refused at start.
    let mut no_memory = sample_job(jobs_dir, "nn", &["batch"], &[("batch", "inputs/batch.f32")])?;
    no_memory.limits.memory_bytes = 192 << 10;
    let mut below_minimum = no_memory.clone();
    below_minimum.limits.memory_bytes = 64 << 10;
    let mut no_output = sample_job(jobs_dir, "pathtrace", &["64", "48", "0", "48", "1"], &[])?;
    no_output.limits.output_bytes = 1024;
    let mut malformed = normal.clone();
    malformed.workload = Workload::Wasm(WasmModule::new(b"\0asm\x01\0\0\0garbage".to_vec()));
    let missing_input = sample_job(jobs_dir, "logagg", &["log"], &[])?;
    Ok(vec![
        (normal, "exit_0"),
        (no_fuel, "out_of_fuel"),
        (no_memory, "memory_limit"),
        (below_minimum, "start_refused"),
        (no_output, "output_limit"),
        (malformed, "malformed_module"),
        (missing_input, "exit_1"),
    ])
}

fn soak(executor: &WasmExecutor, jobs_dir: &Path, jobs: usize) -> anyhow::Result<Soak> {
    let mix = soak_mix(jobs_dir)?;
    let start = rss_kib();
    let started = Instant::now();
    let mut endings = BTreeMap::new();
    for i in 0..jobs {
        let (job, expected) = &mix[i % mix.len()];
        let ending = match executor.run(job) {
            Ok(outcome) => format!("exit_{}", outcome.exit_code),
            Err(err) => err.kind().to_owned(),
        };
        anyhow::ensure!(
            ending == *expected,
            "soak job {i}: expected {expected}, got {ending}"
        );
        *endings.entry(ending).or_insert(0) += 1;
    }
    let end = rss_kib();
    Ok(Soak {
        jobs,
        seconds: started.elapsed().as_secs_f64(),
        endings,
        rss_start_kib: start.map(|s| s.0),
        rss_end_kib: end.map(|e| e.0),
        peak_rss_start_kib: start.map(|s| s.1),
        peak_rss_end_kib: end.map(|e| e.1),
    })
}

/// (VmRSS, VmHWM) of this process in KiB, where /proc exists.
fn rss_kib() -> Option<(u64, u64)> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn median_ms(times: &mut [Duration]) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e3
}

fn print_report(report: &Report) {
    outln!(
        "metering overhead (median of {} runs; wasm = instantiate + run, module cached)",
        report.runs
    );
    for o in &report.overhead {
        outln!("  {} {}", o.job, o.args.join(" "));
        match (o.native_ms, &o.native_skipped) {
            (Some(ms), _) => outln!("    native              {ms:9.2} ms"),
            (None, Some(why)) => outln!("    native              skipped: {why}"),
            (None, None) => {}
        }
        outln!(
            "    wasm, deterministic  {:9.2} ms   ({} fuel; NaN guards, fuel on)",
            o.fuel_on_ms,
            o.fuel_used
        );
        outln!("    wasm, fuel off       {:9.2} ms", o.fuel_off_ms);
        outln!("    wasm, no NaN guards  {:9.2} ms", o.nan_canon_off_ms);
        outln!(
            "    wasm, canon every op {:9.2} ms   (the profile before NaN guards)",
            o.nan_every_op_ms
        );
        if let Some(r) = o.ratio_fuel_vs_native {
            outln!("    deterministic / native {r:7.2}x   (target <= 1.5x)");
        }
        if let Some(r) = o.ratio_every_op_vs_native {
            outln!("    every op / native    {r:9.2}x");
        }
        outln!("    fuel on / off        {:9.2}x", o.ratio_fuel_on_vs_off);
        outln!("    guards / no guards   {:9.2}x", o.ratio_nan_on_vs_off);
        outln!(
            "    every op / guards    {:9.2}x",
            o.ratio_every_op_vs_guards
        );
    }
    let s = &report.start_latency;
    outln!(
        "start latency of an empty job from the module cache ({} runs)",
        s.runs
    );
    outln!(
        "  executor.run median {:8.1} us   p99 {:8.1} us   (target median <= 1000 us)",
        s.median_run_us,
        s.p99_run_us
    );
    outln!(
        "  instantiate + run   {:8.1} us",
        s.median_instantiate_and_run_us
    );
    outln!("cold compile (median of {} runs)", report.runs);
    for c in &report.compile {
        outln!(
            "  {:<11} {:>8} bytes  {:8.1} ms",
            c.job,
            c.module_bytes,
            c.cold_compile_ms
        );
    }
    let k = &report.soak;
    let kib = |v: Option<u64>| v.map_or("n/a".to_owned(), |v| format!("{v} KiB"));
    outln!(
        "soak: {} mixed jobs in {:.1} s, endings {:?}",
        k.jobs,
        k.seconds,
        k.endings
    );
    outln!(
        "  RSS       start {:>12}   end {:>12}",
        kib(k.rss_start_kib),
        kib(k.rss_end_kib)
    );
    outln!(
        "  peak RSS  start {:>12}   end {:>12}",
        kib(k.peak_rss_start_kib),
        kib(k.peak_rss_end_kib)
    );
}
