//! Container (OCI) jobs on this provider: whether it can run them, and running one.
//!
//! At start the agent probes for a working OCI runtime (runc or crun, see
//! `agora_container::probe`), opens its image store under the data directory, measures
//! how much fuel one second of its CPU is worth (the calibration its asks publish, so a
//! container CU buys the same work as a WASM CU: docs/container-metering.md) and detects
//! its GPUs. A host that cannot run containers keeps serving WASM jobs and says why in
//! its status and log; its asks then lack the `oci` feature, so the market never
//! assigns it a container job.
//!
//! Running one assignment: the image archive (a content-addressed blob like a module)
//! is unpacked into the store with every layer checked (`agora_oci`), its config and the
//! order's overrides give the process, the assigned GPUs are exposed, and the container
//! runs under the order's limits. CPU time beyond the fuel budget is cut off by the wall
//! clock: with a CPU quota of `cpu_millis`, the job cannot use more CPU than the budget
//! in `budget / quota` seconds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_container::{
    Calibration, ContainerError, ContainerExecutor, ContainerJob, ContainerLimits, ExecutorConfig,
};
use agora_core::{ContainerMetering, Fuel, Hash};
use agora_exec::{ExecError, Input, Outcome};
use agora_gpu::{Detection, GpuInfo, HostGpuFiles};
use agora_market::{GpuDemand, GpuGroup};
use agora_oci::{ImageError, ImageLimits, ImageStore, Overrides, SetuidPolicy};
use agora_proto::{InputKind, OciJob, OrderRequest};
use serde::{Deserialize, Serialize};

/// What the operator allows container jobs to do here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerPolicy {
    /// Offer container jobs at all (when a runtime works).
    pub enabled: bool,
    /// Give a network to jobs whose order asks for one; without this every container
    /// has a loopback device alone.
    pub allow_network: bool,
    /// A fixed calibration (fuel per CPU second) instead of measuring it at start.
    pub fuel_per_cpu_second: Option<u64>,
    /// Measure the GPUs' TFLOPS at start and publish them.
    pub gpu_benchmark: bool,
    /// Clear setuid/setgid bits in images instead of refusing the image (Debian and Ubuntu
    /// base images ship setuid programs; the container runs without capabilities and with
    /// `no_new_privs` either way, so the bits could not raise privileges anyway).
    pub strip_setuid: bool,
    /// Where images are unpacked; `None` is `DATA_DIR/images`. Providers on one host may
    /// share one store (each image is then unpacked once for all of them): concurrent
    /// assemblies of one image are safe, and the root filesystems are mounted read-only.
    /// Sharing processes must see each other's process ids (one PID namespace), since an
    /// unfinished assembly is judged abandoned by its process id.
    pub image_store: Option<PathBuf>,
}

impl Default for ContainerPolicy {
    /// Containers on, no network, measured calibration, GPU benchmark on.
    fn default() -> Self {
        ContainerPolicy {
            enabled: true,
            allow_network: false,
            fuel_per_cpu_second: None,
            gpu_benchmark: true,
            strip_setuid: false,
            image_store: None,
        }
    }
}

/// Most processes and threads one container job may have at once.
const PIDS_LIMIT: u64 = 512;
/// Added to the wall-clock limit the fuel budget implies: start-up, output collection.
const FUEL_DEADLINE_SLACK: Duration = Duration::from_secs(2);
/// How long the GPU benchmark may take at start.
const GPU_BENCH_BUDGET: Duration = Duration::from_secs(10);

/// What `provider status` and the asks say about container support.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerSupport {
    /// Whether this provider takes container jobs.
    pub available: bool,
    /// Why not, when it does not.
    pub why_not: Option<String>,
    /// The runtime, e.g. `runc version 1.1.5+ds1`.
    pub runtime: Option<String>,
    /// Fuel one CPU second is worth here.
    pub fuel_per_cpu_second: Option<u64>,
    /// How the calibration was obtained.
    pub calibration: Option<String>,
    /// GPUs that container jobs can be assigned.
    pub gpus: Vec<GpuInfo>,
    /// Driver version, when GPUs were found.
    pub gpu_driver: Option<String>,
    /// CUDA version the driver supports.
    pub gpu_cuda: Option<String>,
    /// FP32 TFLOPS of one GPU, when benchmarked.
    pub gpu_fp32_tflops: Option<f64>,
    /// Why GPUs are not offered, when there are none or they cannot be exposed.
    pub gpu_note: Option<String>,
}

/// A host that runs container jobs.
pub(crate) struct ContainerHost {
    executor: ContainerExecutor,
    images: ImageStore,
    setuid: SetuidPolicy,
    calibration: Calibration,
    allow_network: bool,
    gpu: GpuState,
}

/// The GPUs container jobs can be assigned, and which are busy.
#[derive(Default)]
struct GpuState {
    gpus: Vec<GpuInfo>,
    files: HostGpuFiles,
    driver: Option<String>,
    cuda: Option<String>,
    fp32_tflops: Option<f64>,
    note: Option<String>,
    busy: Arc<Mutex<BTreeSet<u32>>>,
}

/// Container support as found at start.
pub(crate) struct Containers {
    pub host: Option<Arc<ContainerHost>>,
    pub support: ContainerSupport,
}

impl Containers {
    /// Probes the runtime, opens the image store, calibrates and finds GPUs. Blocking
    /// (it starts a container and runs the calibration): call it off the async runtime.
    pub fn start(policy: &ContainerPolicy, data_dir: &Path) -> Containers {
        match ContainerHost::start(policy, data_dir) {
            Ok(host) => {
                let support = host.support();
                Containers {
                    host: Some(Arc::new(host)),
                    support,
                }
            }
            Err(why) => Containers {
                host: None,
                support: ContainerSupport::unavailable(why),
            },
        }
    }

    /// The features the asks list beyond `wasm`.
    pub fn features(&self) -> Vec<&'static str> {
        match &self.host {
            None => Vec::new(),
            Some(host) if host.gpu.gpus.is_empty() => vec!["oci"],
            Some(_) => vec!["oci", "gpu"],
        }
    }

    /// The GPU groups the asks offer: only GPUs container jobs can be given.
    pub fn gpu_groups(&self) -> Vec<GpuGroup> {
        let Some(host) = &self.host else {
            return Vec::new();
        };
        let detection = Detection {
            gpus: host.gpu.gpus.clone(),
            ..Detection::none("")
        };
        agora_gpu::offers(&detection)
            .into_iter()
            .map(|offer| GpuGroup {
                model: offer.class_model,
                vram_bytes: offer.memory_bytes,
                count: offer.count,
            })
            .collect()
    }

    /// The attributes the asks carry: runtime, calibration and GPU figures.
    pub fn attributes(&self) -> BTreeMap<String, String> {
        let s = &self.support;
        let mut out = BTreeMap::new();
        let mut put = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                out.insert(key.to_owned(), value);
            }
        };
        put("oci.runtime", s.runtime.clone());
        put(
            "oci.fuel_per_cpu_second",
            s.fuel_per_cpu_second.map(|f| f.to_string()),
        );
        put("gpu.driver", s.gpu_driver.clone());
        put("gpu.cuda", s.gpu_cuda.clone());
        put(
            "gpu.fp32_tflops",
            s.gpu_fp32_tflops.map(|t| format!("{t:.1}")),
        );
        out
    }
}

impl ContainerSupport {
    fn unavailable(why: String) -> ContainerSupport {
        ContainerSupport {
            available: false,
            why_not: Some(why),
            runtime: None,
            fuel_per_cpu_second: None,
            calibration: None,
            gpus: Vec::new(),
            gpu_driver: None,
            gpu_cuda: None,
            gpu_fp32_tflops: None,
            gpu_note: None,
        }
    }
}

impl ContainerHost {
    fn start(policy: &ContainerPolicy, data_dir: &Path) -> Result<ContainerHost, String> {
        if !policy.enabled {
            return Err("container jobs are turned off (--no-containers)".into());
        }
        let runtime = agora_container::probe().map_err(|e| e.to_string())?;
        // Only the assembled root filesystems are used: keeping each layer blob as well
        // would write every image twice (about 3x slower cold loads, docs/benchmarks.md).
        let store_dir = (policy.image_store.clone()).unwrap_or_else(|| data_dir.join("images"));
        let images = ImageStore::open(&store_dir)
            .map_err(|e| format!("opening the image store: {e}"))?
            .keep_blobs(false);
        let calibration = match policy.fuel_per_cpu_second {
            Some(rate) => Calibration::fixed(rate),
            None => agora_container::calibrate().map_err(|e| format!("calibrating: {e}"))?,
        };
        let config = ExecutorConfig {
            work_dir: data_dir.join("containers"),
            ..ExecutorConfig::default()
        };
        std::fs::create_dir_all(&config.work_dir)
            .map_err(|e| format!("creating {}: {e}", config.work_dir.display()))?;
        Ok(ContainerHost {
            executor: ContainerExecutor::new(runtime, config),
            images,
            setuid: if policy.strip_setuid {
                SetuidPolicy::Strip
            } else {
                SetuidPolicy::Refuse
            },
            calibration,
            allow_network: policy.allow_network,
            gpu: GpuState::detect(policy.gpu_benchmark),
        })
    }

    fn support(&self) -> ContainerSupport {
        ContainerSupport {
            available: true,
            why_not: None,
            runtime: Some(self.executor.runtime().version.clone()),
            fuel_per_cpu_second: Some(self.calibration.fuel_per_cpu_second),
            calibration: Some(self.calibration.measured_by.clone()),
            gpus: self.gpu.gpus.clone(),
            gpu_driver: self.gpu.driver.clone(),
            gpu_cuda: self.gpu.cuda.clone(),
            gpu_fp32_tflops: self.gpu.fp32_tflops,
            gpu_note: self.gpu.note.clone(),
        }
    }
}

impl GpuState {
    /// The detected GPUs, unless the host lacks the driver files to expose them to a
    /// container; benchmarked once when `benchmark` is set.
    fn detect(benchmark: bool) -> GpuState {
        let detection = agora_gpu::detect();
        let mut state = GpuState {
            driver: detection.driver_version.clone(),
            cuda: detection.cuda_version.clone(),
            ..GpuState::default()
        };
        if detection.gpus.is_empty() {
            state.note = Some(
                detection
                    .why_none
                    .unwrap_or_else(|| "no GPU detected".into()),
            );
            return state;
        }
        state.files = HostGpuFiles::probe();
        let exposed = agora_gpu::container_devices(&detection.gpus[..1], &state.files);
        if !exposed.missing.is_empty() {
            state.note = Some(format!(
                "GPUs found but they cannot be exposed to containers: missing {}",
                exposed.missing.join(", ")
            ));
            return state;
        }
        state.gpus = detection.gpus;
        if benchmark {
            match agora_gpu::measure_tflops(0, GPU_BENCH_BUDGET) {
                Ok(report) => state.fp32_tflops = Some(report.fp32_tflops),
                Err(e) => state.note = Some(format!("GPU benchmark failed: {e}")),
            }
        }
        state
    }

    /// Assigns GPUs for `demand`, held until the returned guard drops.
    fn assign(&self, demand: &GpuDemand) -> Result<GpuLease, ExecError> {
        let wanted = agora_gpu::GpuDemand {
            model: demand.model.clone(),
            count: demand.count,
            min_memory_bytes: demand.min_vram_bytes,
        };
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        // The market reserves GPUs when it matches, so a refusal here is this host's
        // trouble (a race, a changed machine), never the buyer's: the order is reassigned.
        let indices =
            agora_gpu::place(&self.gpus, &busy, &wanted).map_err(|why| ExecError::Host {
                context: "assigning GPUs".into(),
                source: std::io::Error::other(why.to_string()),
            })?;
        busy.extend(indices.iter().copied());
        let assigned = self
            .gpus
            .iter()
            .filter(|g| indices.contains(&g.index))
            .cloned()
            .collect::<Vec<_>>();
        Ok(GpuLease {
            exposed: agora_gpu::container_devices(&assigned, &self.files),
            indices,
            busy: self.busy.clone(),
        })
    }
}

/// GPUs assigned to one running job; given back on drop.
struct GpuLease {
    indices: Vec<u32>,
    exposed: agora_gpu::ContainerGpu,
    busy: Arc<Mutex<BTreeSet<u32>>>,
}

impl Drop for GpuLease {
    fn drop(&mut self) {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        for index in &self.indices {
            busy.remove(index);
        }
    }
}

/// Why a container job produced no result.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ContainerJobError {
    /// The image archive was refused (the buyer's fault unless the store failed).
    #[error("image refused: {0}")]
    Image(#[from] ImageError),
    /// The container run failed.
    #[error(transparent)]
    Run(#[from] ContainerError),
}

impl ContainerJobError {
    /// A short code for the signed report.
    pub fn kind(&self) -> &'static str {
        match self {
            ContainerJobError::Image(e) => e.kind(),
            ContainerJobError::Run(e) => e.kind(),
        }
    }

    /// Whether every provider would fail the same way (so the buyer is refunded rather
    /// than the order reassigned): a refused image or the job's own fault, but not a
    /// timeout (machine speed) nor this host's trouble.
    pub fn deterministic(&self) -> bool {
        match self {
            ContainerJobError::Image(e) => !matches!(e, ImageError::Io { .. }),
            ContainerJobError::Run(e) => {
                e.is_job_fault() && !matches!(e, ContainerError::Exec(ExecError::Timeout { .. }))
            }
        }
    }

    /// Fuel burnt before the failure.
    pub fn fuel_used(&self) -> Fuel {
        match self {
            ContainerJobError::Image(_) => Fuel(0),
            ContainerJobError::Run(e) => e.partial().map_or(Fuel(0), |p| p.fuel_used),
        }
    }

    /// What the job wrote before it failed.
    pub fn partial(&self) -> Option<&agora_exec::PartialRun> {
        match self {
            ContainerJobError::Image(_) => None,
            ContainerJobError::Run(e) => e.partial(),
        }
    }
}

/// One container job to run: the order, where its image and inputs are on disk.
pub(crate) struct ContainerAssignment<'a> {
    pub order_id: Hash,
    pub order: &'a OrderRequest,
    pub oci: &'a OciJob,
    pub image: &'a Path,
    pub inputs: &'a [(String, PathBuf)],
    pub remaining: Duration,
    pub cancel: agora_exec::CancelToken,
}

impl ContainerHost {
    /// Unpacks the image (or finds it in the store), runs the job in a container and
    /// meters it. Blocking.
    pub fn run(
        &self,
        job: ContainerAssignment<'_>,
    ) -> Result<(Outcome, ContainerMetering), ContainerJobError> {
        let order = job.order;
        let limits = ImageLimits {
            max_unpacked_bytes: job.oci.max_unpacked_bytes,
            setuid: self.setuid,
            ..ImageLimits::default()
        };
        let image = self.images.load_archive_file(job.image, &limits)?;
        let overrides = Overrides {
            entrypoint: job.oci.entrypoint.clone(),
            args: (!order.job.args.is_empty()).then(|| order.job.args.clone()),
            env: order.job.env.clone(),
            working_dir: job.oci.working_dir.clone(),
        };
        let process = image.config.process(&overrides)?;
        let mut spec = ContainerJob::new(job.order_id, &image.rootfs, process.argv);
        spec.image = order.job.module;
        spec.env = process.env;
        spec.cwd = process.cwd;
        place_inputs(&mut spec, job.inputs).map_err(ContainerError::from)?;
        spec.limits = self.limits(order, job.remaining);
        spec.network = job.oci.network && self.allow_network;
        spec.calibration = self.calibration.clone();
        spec.cancel = job.cancel;
        let _lease = match &order.demand.gpu {
            Some(demand) => {
                let lease = self.gpu.assign(demand).map_err(ContainerError::from)?;
                expose(&mut spec, &lease.exposed);
                Some(lease)
            }
            None => None,
        };
        let ran = self.executor.run(&spec)?;
        let metering = ContainerMetering {
            cpu_ns: ran.metering.cpu_ns,
            peak_memory_bytes: ran.metering.peak_memory_bytes,
            wall_ms: ran.metering.wall_ms,
            fuel_per_cpu_second: ran.metering.fuel_per_cpu_second,
        };
        if ran.outcome.fuel_used > order.fuel_budget {
            let partial = agora_exec::PartialRun {
                stdout: ran.outcome.stdout,
                stderr: ran.outcome.stderr,
                fuel_used: order.fuel_budget,
            };
            let error = ExecError::OutOfFuel {
                fuel_used: order.fuel_budget,
                partial: None,
            };
            return Err(ContainerError::from(error.with_partial(partial)).into());
        }
        Ok((ran.outcome, metering))
    }

    /// The container's limits from the order: its memory, CPU quota, and a wall clock
    /// that ends the run once the fuel budget's CPU time could have been spent.
    fn limits(&self, order: &OrderRequest, remaining: Duration) -> ContainerLimits {
        let mut limits = ContainerLimits {
            memory_bytes: order.job.memory_bytes,
            cpu_millis: order.demand.cpu_millis.max(1),
            ..ContainerLimits::default()
        };
        limits.pids = PIDS_LIMIT;
        if order.demand.disk_bytes > 0 {
            limits.tmp_bytes = order.demand.disk_bytes;
        }
        let budget = budget_wall_time(
            order.fuel_budget,
            self.calibration.fuel_per_cpu_second,
            limits.cpu_millis,
        );
        limits.wall_timeout = limits
            .wall_timeout
            .min(remaining)
            .min(budget)
            .max(Duration::from_secs(1));
        limits
    }
}

/// How long a job with CPU quota `cpu_millis` may run before it could have spent `budget`
/// of fuel at `fuel_per_cpu_second`, plus start-up slack.
fn budget_wall_time(budget: Fuel, fuel_per_cpu_second: u64, cpu_millis: u64) -> Duration {
    let cpu_ns = u128::from(budget.0) * 1_000_000_000 / u128::from(fuel_per_cpu_second.max(1));
    let wall_ns = cpu_ns * 1000 / u128::from(cpu_millis.max(1));
    let wall = Duration::from_nanos(u64::try_from(wall_ns).unwrap_or(u64::MAX));
    wall.saturating_add(FUEL_DEADLINE_SLACK)
}

/// Puts each input where its name says: files and directory inputs under `/input`, stdin.
/// A working tree is for WASM jobs: a container's tree is its image.
fn place_inputs(spec: &mut ContainerJob, inputs: &[(String, PathBuf)]) -> Result<(), ExecError> {
    for (name, path) in inputs {
        let read = || {
            std::fs::read(path).map_err(|source| ExecError::Host {
                context: format!("reading input {name}"),
                source,
            })
        };
        match agora_proto::input_kind(name) {
            Some(InputKind::File(file)) => spec.inputs.push(Input::from_file(file, path)?),
            Some(InputKind::Tree(dir)) => spec.trees.push(Input::new(dir, read()?)),
            Some(InputKind::Stdin) => spec.stdin = Some(read()?.into()),
            Some(InputKind::Workdir) => {
                return Err(ExecError::InvalidJob(
                    "a working tree (--workdir) is for WASM jobs; a container's files come from its image (add a layer, or a directory input)".into(),
                ));
            }
            None => {
                return Err(ExecError::InvalidJob(format!(
                    "input name {name:?} is not a file, directory or stdin name"
                )));
            }
        }
    }
    Ok(())
}

/// Adds the assigned GPUs' device nodes, driver mounts and environment to the job.
fn expose(spec: &mut ContainerJob, gpu: &agora_gpu::ContainerGpu) {
    spec.devices
        .extend(gpu.devices.iter().map(|d| agora_container::DeviceNode {
            path: d.path.clone(),
            kind: d.kind,
            major: i64::from(d.major),
            minor: i64::from(d.minor),
        }));
    spec.mounts
        .extend(gpu.mounts.iter().map(|m| agora_container::BindMount {
            source: PathBuf::from(&m.source),
            destination: m.destination.clone(),
            readonly: m.readonly,
        }));
    for (key, value) in &gpu.env {
        // The driver's library directory goes first; the image's own paths stay usable.
        let value = match spec.env.iter().find(|(k, _)| k == key) {
            Some((_, old)) if key == "LD_LIBRARY_PATH" && !old.is_empty() => {
                format!("{value}:{old}")
            }
            _ => value.clone(),
        };
        spec.env.retain(|(k, _)| k != key);
        spec.env.push((key.clone(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fuel_budget_bounds_the_wall_clock() {
        // 10 CU at 1e9 fuel per CPU second is 10 CPU seconds: 10 s on one core, 5 s on
        // two, 20 s on half a core (plus the slack).
        let slack = FUEL_DEADLINE_SLACK;
        let ten_cu = Fuel::compute_units(10);
        let rate = 1_000_000_000;
        assert_eq!(
            budget_wall_time(ten_cu, rate, 1000),
            Duration::from_secs(10) + slack
        );
        assert_eq!(
            budget_wall_time(ten_cu, rate, 2000),
            Duration::from_secs(5) + slack
        );
        assert_eq!(
            budget_wall_time(ten_cu, rate, 500),
            Duration::from_secs(20) + slack
        );
        // Saturates (at about 584 years) rather than overflowing.
        assert!(budget_wall_time(Fuel(u64::MAX), 1, 1) >= Duration::from_secs(500 * 365 * 86_400));
    }
}
