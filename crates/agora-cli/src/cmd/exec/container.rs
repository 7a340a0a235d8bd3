//! `agora exec --image`: run an OCI image archive locally exactly as a provider would, so a
//! buyer can check an image (its entry point, its outputs, its determinism, its cost)
//! before paying for it.
//!
//! The same crates as the provider agent: `agora-oci` unpacks and checks the image into a
//! local store, `agora-container` runs it under this host's runc or crun with the provider's
//! sandbox and limits and meters its CPU time at this machine's calibration.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agora_container::{ContainerError, ContainerExecutor, ContainerJob, ExecutorConfig};
use agora_core::Hash;
use agora_oci::{ImageLimits, ImageStore, Overrides};
use anyhow::Context;

use super::{Args, EXIT_JOB_FAILED, job_exit_code, print_human, print_json, print_streams};

/// Runs `agora exec --image`.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let archive = args.image.as_ref().context("--image names the archive")?;
    let runtime = agora_container::probe()
        .map_err(|e| anyhow::anyhow!("this host cannot run containers: {e}"))?;
    let store = image_store(args)?;
    let image = store
        .load_archive_file(archive, &ImageLimits::default())
        .with_context(|| format!("loading the image {}", archive.display()))?;
    let process = image.config.process(&Overrides {
        entrypoint: args.entrypoint.as_ref().map(|p| vec![p.clone()]),
        args: (!args.args.is_empty()).then(|| args.args.clone()),
        env: super::parse_env(&args.env)?,
        working_dir: args.image_workdir.clone(),
    })?;
    let image_hash = Hash::of(&std::fs::read(archive).context("hashing the image")?);
    let mut job = ContainerJob::new(
        args.job_id.unwrap_or(image_hash),
        &image.rootfs,
        process.argv,
    );
    job.image = image_hash;
    job.env = process.env;
    job.cwd = process.cwd;
    for spec in &args.inputs {
        match super::read_input(spec)? {
            (input, false) => job.inputs.push(input),
            (input, true) => job.trees.push(input),
        }
    }
    if let Some(path) = &args.stdin {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        job.stdin = Some(bytes.into());
    }
    if !(args.cpus > 0.0 && args.cpus <= 1024.0) {
        anyhow::bail!(
            "--cpus {}: expected a number of cores between 0 and 1024",
            args.cpus
        );
    }
    job.limits.cpu_millis = ((args.cpus * 1000.0).round() as u64).max(1);
    job.limits.memory_bytes = args.memory;
    job.limits.output_bytes = args.output_limit;
    job.limits.tmp_bytes = args.disk_limit;
    job.limits.wall_timeout = Duration::from_secs(args.timeout);
    job.calibration = agora_container::calibrate().context("calibrating this machine")?;
    let work_dir = store.root().join("work");
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;
    let executor = ContainerExecutor::new(
        runtime,
        ExecutorConfig {
            work_dir,
            ..ExecutorConfig::default()
        },
    );
    match executor.run(&job) {
        Ok(ran) => {
            let dir = super::write_outputs(&ran.outcome, args.output_dir.as_deref())?;
            if args.json {
                print_json(&ran.outcome, dir.as_deref())?;
            } else {
                print_human(&ran.outcome, dir.as_deref());
                outln!(
                    "metered      {:.3} s CPU at {} fuel per CPU second, peak memory {} bytes",
                    ran.metering.cpu_ns as f64 / 1e9,
                    ran.metering.fuel_per_cpu_second,
                    ran.metering.peak_memory_bytes
                );
            }
            Ok(job_exit_code(ran.outcome.exit_code))
        }
        Err(err) if err.is_job_fault() => {
            print_failure(&err, args.json)?;
            eprintln!("error: job failed: {err}");
            Ok(ExitCode::from(EXIT_JOB_FAILED))
        }
        Err(err) => Err(err).context("running the container"),
    }
}

/// The local image store: `--image-store`, else `~/.cache/agora/images`.
fn image_store(args: &Args) -> anyhow::Result<ImageStore> {
    let dir = match &args.image_store {
        Some(dir) => dir.clone(),
        None => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".cache/agora/images"))
            .context("no HOME: pass --image-store DIR")?,
    };
    Ok(ImageStore::open(&dir)
        .with_context(|| format!("opening the image store {}", dir.display()))?
        .keep_blobs(false))
}

/// A failed run: its kind, and what it wrote before it stopped.
fn print_failure(err: &ContainerError, json: bool) -> anyhow::Result<()> {
    if json {
        let mut error = serde_json::json!({ "kind": err.kind(), "message": err.to_string() });
        if let Some(partial) = err.partial() {
            error["fuel_used"] = serde_json::json!(partial.fuel_used.0);
            error["stdout"] = serde_json::to_value(&partial.stdout)?;
            error["stderr"] = serde_json::to_value(&partial.stderr)?;
        }
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "error": error }))?
        );
        return Ok(());
    }
    outln!("failed       {}", err.kind());
    if let Some(partial) = err.partial() {
        print_streams(&partial.stdout, &partial.stderr);
    }
    Ok(())
}
