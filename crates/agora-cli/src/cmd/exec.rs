//! `agora exec`: run a WASM job locally exactly as a provider would, and
//! `agora bench exec`: measure the executor (see [`bench`]).
//!
//! Buyers use `agora exec` to test a job before paying for it; providers use it to check
//! their setup. The job id defaults to a hash of the module, arguments, environment and
//! inputs, so reruns of the same command see the same virtual clocks and random bytes and
//! give the same digest.

mod bench_exec;
mod size;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agora_core::{Fuel, Hash};
use agora_exec::{ExecConfig, Executor, Input, JobSpec, Outcome, WasmExecutor, WasmModule};
use anyhow::{Context, bail};

pub use bench_exec::{BenchArgs, bench};

/// Process exit code when the job failed with a typed error (trap, out of fuel, limits...).
const EXIT_JOB_FAILED: u8 = 3;

/// Arguments of `agora exec`.
#[derive(clap::Args)]
pub struct Args {
    /// The WASI preview-1 command module to run.
    pub module: PathBuf,
    /// An input file, visible to the job read-only as /input/NAME.
    #[arg(long = "input", value_name = "NAME=PATH")]
    pub inputs: Vec<String>,
    /// An environment variable for the job.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Where to write the job's /output files (default: a new directory ./agora-out-XXXX,
    /// made only when the job wrote any).
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Fuel budget (1 compute unit = 10^9 fuel).
    #[arg(long, default_value_t = 10_000_000_000)]
    pub fuel: u64,
    /// Largest linear memory, with a unit (e.g. 64MiB, 1GiB).
    #[arg(long, default_value = "256MiB", value_parser = size::parse_size)]
    pub memory: u64,
    /// Largest total size of /output, with a unit.
    #[arg(long, default_value = "64MiB", value_parser = size::parse_size)]
    pub output_limit: u64,
    /// Wall-clock safety net in seconds (fuel is the real limit).
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Job id (64 hex digits); seeds the virtual clocks and random source.
    #[arg(long)]
    pub job_id: Option<Hash>,
    /// Directory of the compiled-module cache (default: ~/.cache/agora/modules).
    #[arg(long, env = "AGORA_EXEC_CACHE", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Do not use the on-disk module cache.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,
    /// Print the full outcome as JSON.
    #[arg(long)]
    pub json: bool,
    /// Arguments passed to the job (after `--`).
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// Runs `agora exec`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let job = build_job(&args)?;
    let config = ExecConfig {
        cache_dir: cache_dir(&args),
        ..ExecConfig::default()
    };
    let executor = WasmExecutor::new(config).context("starting the WASM executor")?;
    match executor.run(&job) {
        Ok(outcome) => {
            let dir = write_outputs(&outcome, args.output_dir.as_deref())?;
            if args.json {
                print_json(&outcome, dir.as_deref())?;
            } else {
                print_human(&outcome, dir.as_deref());
            }
            Ok(job_exit_code(outcome.exit_code))
        }
        Err(err) if err.is_job_fault() => {
            if args.json {
                let record = serde_json::json!({ "error": { "kind": err.kind(), "message": err.to_string() } });
                outln!("{}", serde_json::to_string_pretty(&record)?);
            }
            eprintln!("error: job failed: {err}");
            Ok(ExitCode::from(EXIT_JOB_FAILED))
        }
        Err(err) => Err(err).context("running the job"),
    }
}

fn build_job(args: &Args) -> anyhow::Result<JobSpec> {
    let bytes = fs::read(&args.module)
        .with_context(|| format!("reading module {}", args.module.display()))?;
    let module = WasmModule::new(bytes);
    let inputs = args
        .inputs
        .iter()
        .map(|spec| read_input(spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let env = args
        .env
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("--env {kv:?} must be KEY=VALUE"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let job_id = args
        .job_id
        .unwrap_or_else(|| default_job_id(&module, &args.args, &env, &inputs));
    let mut job = JobSpec::new(job_id, module);
    job.args = args.args.clone();
    job.env = env;
    job.inputs = inputs;
    job.limits.fuel = Fuel(args.fuel);
    job.limits.memory_bytes = args.memory;
    job.limits.output_bytes = args.output_limit;
    job.limits.wall_timeout = Duration::from_secs(args.timeout);
    job.validate()?;
    Ok(job)
}

fn read_input(spec: &str) -> anyhow::Result<Input> {
    let Some((name, path)) = spec.split_once('=') else {
        bail!("--input {spec:?} must be NAME=PATH (the job sees /input/NAME)");
    };
    let bytes = fs::read(path).with_context(|| format!("reading input {name} from {path}"))?;
    Ok(Input {
        name: name.to_owned(),
        bytes: Arc::from(bytes),
    })
}

/// A job id that is a function of everything the job sees, so the same command gives the
/// same result every time.
fn default_job_id(
    module: &WasmModule,
    args: &[String],
    env: &[(String, String)],
    inputs: &[Input],
) -> Hash {
    let module_hash = module.hash();
    let mut parts: Vec<Vec<u8>> = vec![module_hash.as_bytes().to_vec()];
    parts.extend(args.iter().map(|a| a.as_bytes().to_vec()));
    parts.push(b"--env--".to_vec());
    parts.extend(env.iter().map(|(k, v)| format!("{k}={v}").into_bytes()));
    parts.push(b"--inputs--".to_vec());
    for input in inputs {
        parts.push(input.name.as_bytes().to_vec());
        parts.push(Hash::of(&input.bytes).as_bytes().to_vec());
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    Hash::tagged("agora.exec.local-job-id.v1", &refs)
}

fn cache_dir(args: &Args) -> Option<PathBuf> {
    if args.no_cache {
        return None;
    }
    args.cache_dir.clone().or_else(|| {
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/agora/modules"))
    })
}

/// Writes the job's outputs to `dir`, or to a fresh `./agora-out-XXXX` when there are any
/// and no directory was given. Returns where they went.
fn write_outputs(outcome: &Outcome, dir: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    let dir = match dir {
        Some(dir) => {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.to_owned()
        }
        None if outcome.outputs.is_empty() => return Ok(None),
        None => tempfile::Builder::new()
            .prefix("agora-out-")
            .tempdir_in(".")
            .context("creating an output directory in the current directory")?
            .keep(),
    };
    for file in &outcome.outputs {
        // Names come from walking the job's own /output, so they are relative and have no `..`.
        let path = dir.join(&file.name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&path, &file.data).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(Some(dir))
}

fn print_json(outcome: &Outcome, dir: Option<&Path>) -> anyhow::Result<()> {
    let mut record = serde_json::to_value(outcome)?;
    if let Some(map) = record.as_object_mut() {
        map.insert(
            "output_dir".into(),
            serde_json::json!(dir.map(|d| d.display().to_string())),
        );
    }
    outln!("{}", serde_json::to_string_pretty(&record)?);
    Ok(())
}

fn print_human(outcome: &Outcome, dir: Option<&Path>) {
    outln!("exit code    {}", outcome.exit_code);
    outln!("digest       {}", outcome.digest);
    outln!(
        "fuel         {} ({:.6} compute units)",
        outcome.fuel_used.0,
        outcome.compute_units
    );
    outln!(
        "wall time    {:.3} ms",
        outcome.wall_time.as_secs_f64() * 1e3
    );
    outln!(
        "peak memory  {}",
        size::format_size(outcome.peak_memory_bytes)
    );
    outln!(
        "module       {} ({:?})",
        outcome.module_hash,
        outcome.module_source
    );
    for (name, captured) in [("stdout", &outcome.stdout), ("stderr", &outcome.stderr)] {
        if captured.total_bytes > 0 {
            outln!("--- {name} ({} bytes) ---", captured.total_bytes);
            out!("{}", captured.text());
            if !captured.data.ends_with(b"\n") {
                outln!();
            }
        }
    }
    if let Some(dir) = dir {
        outln!("--- outputs in {} ---", dir.display());
    }
    for file in &outcome.outputs {
        outln!("{:>10}  {}  {}", file.size, file.hash, file.name);
    }
}

/// The job's own exit code becomes the process's (clamped to 0..=255).
fn job_exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}
