//! `agora exec`: run a WASM job locally exactly as a provider would, and
//! `agora bench exec`: measure the executor (see [`bench`]).
//!
//! With `--image`, it runs an OCI image archive in a container the way a provider does
//! ([`container`]).
//!
//! Buyers use `agora exec` to test a job before paying for it; providers use it to check
//! their setup. The job id defaults to a hash of the module, arguments, environment and
//! inputs, so reruns of the same command see the same virtual clocks and random bytes and
//! give the same digest.

mod bench_exec;
mod container;
mod size;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agora_core::{Fuel, Hash};
use agora_exec::tree::{self, TreeLimits};
use agora_exec::{ExecConfig, Executor, Input, JobSpec, Outcome, WasmExecutor, WasmModule};
use anyhow::{Context, bail};

pub use bench_exec::{BenchArgs, bench};

/// Process exit code when the job failed with a typed error (trap, out of fuel, limits...).
const EXIT_JOB_FAILED: u8 = 3;

/// Arguments of `agora exec`.
#[derive(clap::Args)]
pub struct Args {
    /// The WASI preview-1 command module to run.
    #[arg(required_unless_present = "image", conflicts_with = "image")]
    pub module: Option<PathBuf>,
    /// Run a container instead, as a provider would: an OCI image archive (`oci-archive` or
    /// `docker save` tarball) under this host's runc/crun, with /input, /output, the
    /// sandbox and the metering of a provider (docs/containers.md). Needs root (or user
    /// namespaces) and runc.
    #[arg(long, value_name = "ARCHIVE")]
    pub image: Option<PathBuf>,
    /// Replace the image's Entrypoint with this program (with --image).
    #[arg(long, value_name = "PROGRAM", requires = "image")]
    pub entrypoint: Option<String>,
    /// Replace the image's working directory (with --image).
    #[arg(long, value_name = "DIR", requires = "image")]
    pub image_workdir: Option<String>,
    /// CPU cores of the container's quota (with --image).
    #[arg(long, default_value_t = 1.0, requires = "image")]
    pub cpus: f64,
    /// Where unpacked images are kept (with --image; default: ~/.cache/agora/images).
    #[arg(long, value_name = "DIR", requires = "image")]
    pub image_store: Option<PathBuf>,
    /// An input, visible to the job read-only as /input/NAME: a file, a directory (packed
    /// into one deterministic tar blob: regular files, directories, and symlinks that stay
    /// inside it), or `tar:ARCHIVE` for a ready tar archive (checked and normalized the same way).
    #[arg(long = "input", value_name = "NAME=PATH|NAME=tar:ARCHIVE")]
    pub inputs: Vec<String>,
    /// Seed the job's writable scratch root `/` with this directory's tree (or `tar:ARCHIVE`);
    /// relative paths resolve there, /tmp always exists, and nothing is kept after the job.
    #[arg(long, value_name = "DIR|tar:ARCHIVE")]
    pub workdir: Option<String>,
    /// A file whose bytes are the job's stdin (default: empty stdin).
    #[arg(long, value_name = "FILE")]
    pub stdin: Option<PathBuf>,
    /// Largest total written to the job's scratch tree (/, /tmp, the seeded workdir), with a
    /// unit: the seed's bytes, every byte written (deleting gives none back), and 4 KiB per
    /// created file, directory or link.
    #[arg(long, default_value = "256MiB", value_parser = size::parse_size)]
    pub disk_limit: u64,
    /// An environment variable for the job.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Where to write the job's /output files (default: a new directory ./agora-out-XXXX,
    /// made only when the job wrote any).
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Fuel budget (1 compute unit = 10^9 fuel); the default, 50 CU, fits real compiler
    /// and synthesis runs.
    #[arg(long, default_value_t = 50_000_000_000)]
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
    if args.image.is_some() {
        return container::run(&args);
    }
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
                print_failure_json(&err)?;
            } else {
                print_failure_human(&err);
            }
            eprintln!("error: job failed: {err}");
            Ok(ExitCode::from(EXIT_JOB_FAILED))
        }
        Err(err) => Err(err).context("running the job"),
    }
}

fn build_job(args: &Args) -> anyhow::Result<JobSpec> {
    let path = args
        .module
        .as_ref()
        .context("name a WASI module, or --image ARCHIVE")?;
    let bytes = fs::read(path).with_context(|| format!("reading module {}", path.display()))?;
    let module = WasmModule::new(bytes);
    let mut inputs = Vec::new();
    let mut trees = Vec::new();
    for spec in &args.inputs {
        match read_input(spec)? {
            (input, false) => inputs.push(input),
            (input, true) => trees.push(input),
        }
    }
    let workdir = match &args.workdir {
        Some(source) => Some(Arc::from(read_tree(source).context("reading --workdir")?)),
        None => None,
    };
    let stdin = match &args.stdin {
        Some(path) => {
            Some(Arc::from(fs::read(path).with_context(|| {
                format!("reading --stdin {}", path.display())
            })?))
        }
        None => None,
    };
    let env = parse_env(&args.env)?;
    let job_id = args.job_id.unwrap_or_else(|| {
        let files = Files {
            inputs: &inputs,
            trees: &trees,
            workdir: workdir.as_deref(),
            stdin: stdin.as_deref(),
        };
        default_job_id(&module, &args.args, &env, &files)
    });
    let mut job = JobSpec::new(job_id, module);
    job.args = args.args.clone();
    job.env = env;
    job.inputs = inputs;
    job.trees = trees;
    job.workdir = workdir;
    job.stdin = stdin;
    job.limits.disk_bytes = args.disk_limit;
    job.limits.fuel = Fuel(args.fuel);
    job.limits.memory_bytes = args.memory;
    job.limits.output_bytes = args.output_limit;
    job.limits.wall_timeout = Duration::from_secs(args.timeout);
    job.validate()?;
    Ok(job)
}

/// The `--env KEY=VALUE` flags as pairs.
fn parse_env(env: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    env.iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("--env {kv:?} must be KEY=VALUE"))
        })
        .collect()
}

/// Reads `NAME=PATH`: a file input, or a directory input (`true`) packed from a directory
/// or a `tar:` archive.
fn read_input(spec: &str) -> anyhow::Result<(Input, bool)> {
    let Some((name, path)) = spec.split_once('=') else {
        bail!("--input {spec:?} must be NAME=PATH or NAME=tar:ARCHIVE (the job sees /input/NAME)");
    };
    if path.starts_with("tar:") || Path::new(path).is_dir() {
        let bytes = read_tree(path).with_context(|| format!("reading input {name}"))?;
        return Ok((Input::new(name, bytes), true));
    }
    let bytes = fs::read(path).with_context(|| format!("reading input {name} from {path}"))?;
    Ok((Input::new(name, bytes), false))
}

/// A tree as one deterministic tar: a directory packed, or `tar:ARCHIVE` checked and
/// normalized, so the same tree always gives the same blob.
pub fn read_tree(source: &str) -> anyhow::Result<Vec<u8>> {
    if let Some(archive) = source.strip_prefix("tar:") {
        let bytes = fs::read(archive).with_context(|| format!("reading tar archive {archive}"))?;
        return tree::normalize_tar(&bytes, &TreeLimits::default())
            .with_context(|| format!("checking tar archive {archive}"));
    }
    tree::pack_dir(Path::new(source)).with_context(|| format!("packing directory {source}"))
}

/// The file trees and stdin a job sees, for its default id.
struct Files<'a> {
    inputs: &'a [Input],
    trees: &'a [Input],
    workdir: Option<&'a [u8]>,
    stdin: Option<&'a [u8]>,
}

/// A job id that is a function of everything the job sees, so the same command gives the
/// same result every time.
fn default_job_id(
    module: &WasmModule,
    args: &[String],
    env: &[(String, String)],
    files: &Files<'_>,
) -> Hash {
    let module_hash = module.hash();
    let mut parts: Vec<Vec<u8>> = vec![module_hash.as_bytes().to_vec()];
    parts.extend(args.iter().map(|a| a.as_bytes().to_vec()));
    parts.push(b"--env--".to_vec());
    parts.extend(env.iter().map(|(k, v)| format!("{k}={v}").into_bytes()));
    parts.push(b"--inputs--".to_vec());
    for input in files.inputs {
        parts.push(input.name.as_bytes().to_vec());
        parts.push(Hash::of(&input.bytes).as_bytes().to_vec());
    }
    // Jobs without trees, workdir or stdin keep the ids they had before these existed.
    for input in files.trees {
        parts.push(format!("{}/", input.name).into_bytes());
        parts.push(Hash::of(&input.bytes).as_bytes().to_vec());
    }
    if let Some(workdir) = files.workdir {
        parts.push(b"--workdir--".to_vec());
        parts.push(Hash::of(workdir).as_bytes().to_vec());
    }
    if let Some(stdin) = files.stdin {
        parts.push(b"--stdin--".to_vec());
        parts.push(Hash::of(stdin).as_bytes().to_vec());
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
    print_streams(&outcome.stdout, &outcome.stderr);
    if let Some(dir) = dir {
        outln!("--- outputs in {} ---", dir.display());
    }
    for file in &outcome.outputs {
        outln!("{:>10}  {}  {}", file.size, file.hash, file.name);
    }
}

/// A failure as JSON: its kind and message, and for a run-time failure the fuel it burnt
/// and the stdout/stderr it wrote first (in the same form as a finished job's).
fn print_failure_json(err: &agora_exec::ExecError) -> anyhow::Result<()> {
    let mut error = serde_json::json!({ "kind": err.kind(), "message": err.to_string() });
    if let Some(partial) = err.partial() {
        error["fuel_used"] = serde_json::json!(partial.fuel_used.0);
        error["compute_units"] = serde_json::json!(partial.fuel_used.as_compute_units_f64());
        error["stdout"] = serde_json::to_value(&partial.stdout)?;
        error["stderr"] = serde_json::to_value(&partial.stderr)?;
    }
    outln!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({ "error": error }))?
    );
    Ok(())
}

/// What a failed job had done before it stopped: the fuel and what it wrote, so the error
/// line that follows is not the buyer's only clue.
fn print_failure_human(err: &agora_exec::ExecError) {
    let Some(partial) = err.partial() else { return };
    outln!("failed       {}", err.kind());
    outln!(
        "fuel         {} ({:.6} compute units)",
        partial.fuel_used.0,
        partial.fuel_used.as_compute_units_f64()
    );
    print_streams(&partial.stdout, &partial.stderr);
}

/// Prints each non-empty stream under a header with its size.
fn print_streams(stdout: &agora_exec::Captured, stderr: &agora_exec::Captured) {
    for (name, captured) in [("stdout", stdout), ("stderr", stderr)] {
        if captured.total_bytes > 0 {
            outln!("--- {name} ({} bytes) ---", captured.total_bytes);
            out!("{}", captured.text());
            if !captured.data.ends_with(b"\n") {
                outln!();
            }
        }
    }
}

/// The job's own exit code becomes the process's (clamped to 0..=255).
fn job_exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}
