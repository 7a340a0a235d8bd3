//! Agora's container executor: runs a job in an assembled OCI rootfs under a daemonless
//! OCI runtime (runc or crun), sandboxed, limited and metered through its cgroup, and
//! reports it in the same [`agora_exec::Outcome`] form, with the same canonical digest, as
//! a WASM job.
//!
//! - [`probe()`]: finds a runtime that really starts containers here ([`Runtime`]), or
//!   says why none does ([`ProbeError`]).
//! - [`ContainerJob`] / [`ContainerLimits`]: rootfs, argv, env, inputs, limits, extra
//!   devices and bind mounts (GPUs), network switch, [`Calibration`], cancel token.
//! - [`spec`]: the OCI `config.json`, with the sandbox (namespaces, read-only rootfs, no
//!   capabilities, `noNewPrivileges`, seccomp deny-list, masked `/proc` paths, device rules).
//! - [`cgroup`]: the job's own cgroup on v1 or v2: memory/CPU/pids limits, CPU time, peak
//!   memory, OOM kills, pids-limit hits.
//! - [`outputs`]: the size-capped `/output` and the read-back of its files.
//! - [`run`]: [`ContainerExecutor::run`]: bundle, runtime, deadline, cancellation,
//!   cleanup, result ([`ContainerRun`] with [`Metering`]), typed failures
//!   ([`ContainerError`]).
//! - [`calibrate()`]: measures fuel per CPU second so that container CPU time and WASM fuel
//!   buy the same work (formula and reasons in `docs/container-metering.md`).
//! - [`rootfs`]: a one-file busybox rootfs for the probe, tests and benchmarks.
//!
//! ```no_run
//! use agora_container::{ContainerExecutor, ContainerJob, ExecutorConfig, calibrate, probe};
//! use agora_core::Hash;
//!
//! let runtime = probe()?;                       // once, at provider start
//! let calibration = calibrate()?;               // once, at provider start
//! let executor = ContainerExecutor::new(runtime, ExecutorConfig::default());
//! let mut job = ContainerJob::new(Hash::of(b"job-1"), "/var/lib/agora/rootfs/abc", vec![
//!     "sh".into(), "-c".into(), "echo hi > /output/greeting".into(),
//! ]);
//! job.calibration = calibration;
//! let run = executor.run(&job)?;
//! println!("exit {} digest {} fuel {}", run.outcome.exit_code, run.outcome.digest, run.outcome.fuel_used.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(unused_crate_dependencies, missing_docs)]

pub mod calibrate;
pub mod cgroup;
pub mod error;
pub mod job;
pub mod outputs;
pub mod probe;
pub mod rootfs;
pub mod run;
pub mod spec;

pub use calibrate::{CalibrationReport, calibrate, calibrate_with};
pub use cgroup::CgroupVersion;
pub use error::ContainerError;
pub use job::{BindMount, Calibration, ContainerJob, ContainerLimits, DeviceNode};
pub use probe::{ProbeError, ProbeOptions, Runtime, RuntimeKind, probe, probe_with};
pub use run::{ContainerExecutor, ContainerRun, ExecutorConfig, Metering};
pub use spec::{IdMap, UserNamespace};
