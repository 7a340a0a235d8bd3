//! What the demo's verification caught, checked against the truth.
//!
//! The truth is not what the providers said: every settled job is run again here, in this
//! process, with the same module, arguments, limits and job id (the order id), and its
//! digest is compared with the digest the market accepted. A byzantine provider is known
//! by its account ([`agora_devnet::LocalNet::faulty_providers`]), so a slash can be told
//! apart as a caught cheat or an honest provider wronged.

use std::collections::HashSet;
use std::sync::Arc;

use agora_core::{AccountId, Hash};
use agora_exec::{ExecConfig, Executor, WasmExecutor, WasmModule};
use agora_proto::api::VerificationView;
use anyhow::Context;
use serde_json::json;

use super::plan::Task;

/// One settled job's result as accepted, and the truth.
pub struct Checked {
    /// The digest the market accepted.
    pub accepted: Hash,
    /// The digest of a local run of the same job.
    pub truth: Hash,
    /// How the market checked it.
    pub verification: VerificationView,
    /// The fuel billed (the accepted result's).
    pub billed_fuel: u64,
}

/// Runs `task` (as order `order`) locally and returns its result digest.
pub fn local_digest(executor: &WasmExecutor, task: &Task, order: Hash) -> anyhow::Result<Hash> {
    let bytes = std::fs::read(&task.request.module)
        .with_context(|| format!("reading {}", task.request.module.display()))?;
    let mut spec = executor.job(order, WasmModule::new(bytes));
    spec.args = task.request.args.clone();
    spec.env = task.request.env.clone();
    spec.limits.fuel = task.request.fuel_budget;
    spec.limits.memory_bytes = task.request.memory_bytes;
    let outcome = executor
        .run(&spec)
        .with_context(|| format!("running {} locally", task.label))?;
    Ok(outcome.digest)
}

/// Local truth runs of the container jobs: the same image store and runtime a provider
/// uses, on this host.
pub struct ContainerTruth {
    images: agora_oci::ImageStore,
    executor: agora_container::ContainerExecutor,
}

impl ContainerTruth {
    /// Probes this host's OCI runtime; the error says why container jobs cannot run here
    /// (then the demo runs WASM jobs only).
    pub fn start(store: &std::path::Path, disabled: bool) -> Result<ContainerTruth, String> {
        if disabled {
            return Err("turned off by --no-containers".into());
        }
        let runtime = agora_container::probe().map_err(|e| e.to_string())?;
        let images = agora_oci::ImageStore::open(store).map_err(|e| e.to_string())?;
        let config = agora_container::ExecutorConfig {
            work_dir: store.join("work"),
            ..agora_container::ExecutorConfig::default()
        };
        std::fs::create_dir_all(&config.work_dir).map_err(|e| e.to_string())?;
        Ok(ContainerTruth {
            images,
            executor: agora_container::ContainerExecutor::new(runtime, config),
        })
    }

    /// Runs the container `task` (as order `order`) locally and returns its digest.
    pub fn digest(&self, task: &Task, order: Hash) -> anyhow::Result<Hash> {
        let limits = agora_oci::ImageLimits::default();
        let image = self
            .images
            .load_archive_file(&task.request.module, &limits)
            .with_context(|| format!("unpacking {}", task.request.module.display()))?;
        let process = image.config.process(&agora_oci::Overrides {
            args: (!task.request.args.is_empty()).then(|| task.request.args.clone()),
            env: task.request.env.clone(),
            ..agora_oci::Overrides::default()
        })?;
        let mut job = agora_container::ContainerJob::new(order, &image.rootfs, process.argv);
        job.env = process.env;
        job.cwd = process.cwd;
        for (name, path) in &task.request.inputs {
            job.inputs
                .push(agora_exec::Input::from_file(name.clone(), path)?);
        }
        let ran = self
            .executor
            .run(&job)
            .with_context(|| format!("running {} locally", task.label))?;
        Ok(ran.outcome.digest)
    }
}

/// An executor for the local truth runs.
pub fn executor() -> anyhow::Result<Arc<WasmExecutor>> {
    Ok(Arc::new(
        WasmExecutor::new(ExecConfig::default()).context("starting the WASM executor")?,
    ))
}

/// The `verification` section of the report.
pub struct Summary {
    /// The policy every job ran under.
    pub policy: String,
    /// The byzantine providers.
    pub byzantine: HashSet<AccountId>,
    /// Settled jobs whose accepted digest is not the truth.
    pub wrong_results_accepted: usize,
    /// Runs a quorum proved wrong.
    pub frauds_detected: usize,
    /// Slashes of byzantine providers.
    pub frauds_slashed: usize,
    /// Slashes of honest providers.
    pub honest_slashed: usize,
    /// Fuel every run claimed.
    pub fuel_executed: u64,
    /// Fuel billed for the accepted results.
    pub fuel_billed: u64,
    /// Settled jobs checked against a local run.
    pub checked: usize,
}

impl Summary {
    /// Tallies `checked` under `policy` with `byzantine` providers.
    pub fn new(policy: String, byzantine: HashSet<AccountId>, checked: &[Checked]) -> Summary {
        let mut summary = Summary {
            policy,
            byzantine,
            wrong_results_accepted: 0,
            frauds_detected: 0,
            frauds_slashed: 0,
            honest_slashed: 0,
            fuel_executed: 0,
            fuel_billed: 0,
            checked: checked.len(),
        };
        for job in checked {
            let v = &job.verification;
            summary.wrong_results_accepted += usize::from(job.accepted != job.truth);
            summary.frauds_detected += v.runs.iter().filter(|r| r.agreed == Some(false)).count();
            for slash in &v.slashes {
                if summary.byzantine.contains(&slash.provider) {
                    summary.frauds_slashed += 1;
                } else {
                    summary.honest_slashed += 1;
                }
            }
            summary.fuel_executed += v.fuel_executed.0;
            summary.fuel_billed += job.billed_fuel;
        }
        summary
    }

    /// Compute units executed ÷ compute units billed (1.0 with nothing billed).
    pub fn overhead(&self) -> f64 {
        if self.fuel_billed == 0 {
            return 1.0;
        }
        self.fuel_executed as f64 / self.fuel_billed as f64
    }

    /// The JSON section.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "policy": self.policy,
            "byzantine_providers": self.byzantine.len(),
            "wrong_results_accepted": self.wrong_results_accepted,
            "frauds_detected": self.frauds_detected,
            "frauds_slashed": self.frauds_slashed,
            "honest_slashed": self.honest_slashed,
            "overhead": self.overhead(),
            "checked_against_local_runs": self.checked,
        })
    }

    /// One paragraph for people.
    pub fn print(&self) {
        outln!(
            "\nverification: {} with {} byzantine provider(s): {} wrong result(s) accepted of {} checked against a local run; {} fraud(s) detected, {} slashed; honest providers slashed: {}; overhead {:.2}× (CU executed ÷ CU billed)",
            self.policy,
            self.byzantine.len(),
            self.wrong_results_accepted,
            self.checked,
            self.frauds_detected,
            self.frauds_slashed,
            self.honest_slashed,
            self.overhead()
        );
    }
}
