//! What a container job is: a rootfs, the process to start in it, its inputs, its limits,
//! the extra devices and mounts it may use, and the calibration that turns its CPU time
//! into fuel.
//!
//! The types mirror [`agora_exec::JobSpec`] where they can (inputs, trees, stdin, output
//! and stdio limits, the cancel token) so that a provider treats both kinds of job alike.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agora_core::Hash;
use agora_exec::{CancelToken, ExecError, Input};
use serde::{Deserialize, Serialize};

/// Resource ceilings of one container job. Breaching one fails the job with a typed error
/// (memory → [`ExecError::MemoryLimit`], output → [`ExecError::OutputLimit`], wall clock
/// → [`ExecError::Timeout`], pids → [`ContainerError::PidsLimit`](crate::ContainerError)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerLimits {
    /// Memory of the job's cgroup in bytes (memory + swap is set equal: no swap). It also
    /// covers the pages of `/tmp` and `/output`, which are tmpfs, and the runtime's short-lived
    /// init process (a few MiB).
    pub memory_bytes: u64,
    /// CPU quota in thousandths of a CPU (1000 = one full core); 0 leaves CPU unlimited.
    pub cpu_millis: u64,
    /// Most processes and threads the job may have at once.
    pub pids: u64,
    /// Wall-clock limit from start to exit.
    pub wall_timeout: Duration,
    /// Largest total of bytes in `/output`.
    pub output_bytes: u64,
    /// Most files and directories in `/output`.
    pub output_files: u64,
    /// Bytes of stdout kept; the rest is counted and dropped.
    pub stdout_bytes: u64,
    /// Bytes of stderr kept; the rest is counted and dropped.
    pub stderr_bytes: u64,
    /// Size of the writable `/tmp` tmpfs in bytes.
    pub tmp_bytes: u64,
}

impl Default for ContainerLimits {
    /// 512 MiB of memory, one core, 256 processes, 5 minutes, 64 MiB of outputs in at most
    /// 1024 files, 1 MiB of stdout and of stderr, 256 MiB of `/tmp`.
    fn default() -> Self {
        ContainerLimits {
            memory_bytes: 512 << 20,
            cpu_millis: 1000,
            pids: 256,
            wall_timeout: Duration::from_secs(300),
            output_bytes: 64 << 20,
            output_files: 1024,
            stdout_bytes: 1 << 20,
            stderr_bytes: 1 << 20,
            tmp_bytes: 256 << 20,
        }
    }
}

/// A device node the job may use (e.g. `/dev/nvidia0`): created in the container's `/dev`
/// and allowed by the device cgroup. Everything else in `/dev` beyond the runtime's
/// defaults (null, zero, full, random, urandom, tty, ptmx) is denied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceNode {
    /// Path inside the container, e.g. `/dev/nvidia0`.
    pub path: String,
    /// `c` (character) or `b` (block).
    pub kind: char,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
}

/// A host path bind-mounted into the container (driver libraries, tool directories).
/// The destination must already exist in the rootfs unless the rootfs is writable by the
/// runtime: runc creates missing mount points inside the rootfs directory itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// Absolute host path.
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub destination: String,
    /// Mount read-only (the normal case; a writable bind lets the job change the host).
    pub readonly: bool,
}

/// How CPU time becomes fuel on this machine: `fuel = cpu_ns × fuel_per_cpu_second / 10⁹`.
/// See [`crate::calibrate`] for how the rate is measured and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calibration {
    /// Fuel one second of this machine's CPU is worth.
    pub fuel_per_cpu_second: u64,
    /// How the rate was obtained (workload, figures, build), for the provider's status.
    pub measured_by: String,
}

impl Calibration {
    /// A fixed rate, e.g. from configuration or a previous [`crate::calibrate()`].
    pub fn fixed(fuel_per_cpu_second: u64) -> Self {
        Calibration {
            fuel_per_cpu_second,
            measured_by: "fixed".into(),
        }
    }

    /// The fuel `cpu_ns` nanoseconds of CPU time are worth (u128 math, saturating at
    /// `u64::MAX`).
    pub fn fuel_for_cpu_ns(&self, cpu_ns: u64) -> agora_core::Fuel {
        let fuel = u128::from(cpu_ns) * u128::from(self.fuel_per_cpu_second) / 1_000_000_000;
        agora_core::Fuel(u64::try_from(fuel).unwrap_or(u64::MAX))
    }
}

/// One job to run in a container.
#[derive(Clone, Debug)]
pub struct ContainerJob {
    /// The job's id (also seeds the container id).
    pub job_id: Hash,
    /// Content hash of the image the rootfs was assembled from; reported as the outcome's
    /// `module_hash`.
    pub image: Hash,
    /// The assembled root filesystem on the host. It is mounted read-only and never written,
    /// so one rootfs may serve many jobs at once. It must contain the mount points `/proc`,
    /// `/dev`, `/sys`, `/tmp`, `/input` and `/output`.
    pub rootfs: PathBuf,
    /// The process: `argv[0]` is looked up in `PATH` inside the container.
    pub argv: Vec<String>,
    /// Environment, in order; `PATH` defaults to the usual list when not given.
    pub env: Vec<(String, String)>,
    /// Working directory inside the container (absolute); `/` when empty.
    pub cwd: String,
    /// Files visible read-only as `/input/NAME`.
    pub inputs: Vec<Input>,
    /// Directory inputs as tar archives (see [`agora_exec::tree`]), unpacked on the host
    /// with its checks and visible read-only at `/input/NAME`.
    pub trees: Vec<Input>,
    /// The bytes the job reads on stdin; `None` is an empty stdin.
    pub stdin: Option<Arc<[u8]>>,
    /// Resource ceilings.
    pub limits: ContainerLimits,
    /// Share the host's network (`true`) or get a private network namespace with only
    /// loopback (`false`, the default and the only safe choice for untrusted jobs).
    pub network: bool,
    /// Extra device nodes (GPUs).
    pub devices: Vec<DeviceNode>,
    /// Extra bind mounts (driver libraries).
    pub mounts: Vec<BindMount>,
    /// CPU time → fuel rate.
    pub calibration: Calibration,
    /// Stops the run from another thread.
    pub cancel: CancelToken,
}

/// The `PATH` given to jobs that do not set one (the OCI/Docker default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl ContainerJob {
    /// A job running `argv` in `rootfs` with default limits, no inputs and no network.
    pub fn new(job_id: Hash, rootfs: impl Into<PathBuf>, argv: Vec<String>) -> Self {
        ContainerJob {
            job_id,
            image: Hash::ZERO,
            rootfs: rootfs.into(),
            argv,
            env: Vec::new(),
            cwd: "/".into(),
            inputs: Vec::new(),
            trees: Vec::new(),
            stdin: None,
            limits: ContainerLimits::default(),
            network: false,
            devices: Vec::new(),
            mounts: Vec::new(),
            calibration: Calibration::fixed(crate::calibrate::NOMINAL_FUEL_PER_CPU_SECOND),
            cancel: CancelToken::new(),
        }
    }

    /// Checks what can be checked before starting anything.
    pub fn validate(&self) -> Result<(), ExecError> {
        let invalid = |m: String| Err(ExecError::InvalidJob(m));
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return invalid("argv must name a program".into());
        }
        if self.argv.iter().any(|a| a.contains('\0')) {
            return invalid("an argument contains NUL".into());
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
                return invalid(format!(
                    "environment variable {key:?} must have a non-empty name without `=`, and no NUL"
                ));
            }
        }
        if !self.cwd.is_empty() && !self.cwd.starts_with('/') {
            return invalid(format!("cwd {:?} must be absolute", self.cwd));
        }
        self.validate_inputs()?;
        self.validate_limits()?;
        self.validate_extras()
    }

    fn validate_inputs(&self) -> Result<(), ExecError> {
        let mut names: Vec<&str> = Vec::new();
        for input in self.inputs.iter().chain(&self.trees) {
            let name = input.name.as_str();
            let bad = name.is_empty()
                || name == "."
                || name == ".."
                || name.contains(['/', '\\', '\0'])
                || name.len() > 255;
            if bad {
                return Err(ExecError::InvalidJob(format!(
                    "input name {name:?} must be a single file name (no `/`, `..` or NUL, at most 255 bytes)"
                )));
            }
            if names.contains(&name) {
                return Err(ExecError::InvalidJob(format!(
                    "input `{name}` is given twice"
                )));
            }
            names.push(name);
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), ExecError> {
        let l = &self.limits;
        // runc's init needs a few MiB inside the cgroup before the job even starts.
        if l.memory_bytes < 8 << 20 {
            return Err(ExecError::InvalidJob(
                "the memory limit must be at least 8 MiB (the runtime's init runs inside it)"
                    .into(),
            ));
        }
        if l.pids == 0 || l.wall_timeout.is_zero() || l.tmp_bytes == 0 {
            return Err(ExecError::InvalidJob(
                "the pids limit, wall-clock timeout and /tmp size must be above zero".into(),
            ));
        }
        Ok(())
    }

    fn validate_extras(&self) -> Result<(), ExecError> {
        for device in &self.devices {
            if !device.path.starts_with("/dev/") || !matches!(device.kind, 'c' | 'b') {
                return Err(ExecError::InvalidJob(format!(
                    "device {:?} must live under /dev and be of kind 'c' or 'b'",
                    device.path
                )));
            }
        }
        for mount in &self.mounts {
            let reserved = ["/", "/proc", "/dev", "/sys", "/input", "/output", "/tmp"];
            if !mount.source.is_absolute()
                || !mount.destination.starts_with('/')
                || reserved.contains(&mount.destination.trim_end_matches('/'))
                || mount.destination.split('/').any(|c| c == "..")
            {
                return Err(ExecError::InvalidJob(format!(
                    "bind mount {:?} -> {:?} needs absolute paths, no `..`, and not a reserved path",
                    mount.source, mount.destination
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuel_formula_is_exact_and_saturates() {
        let c = Calibration::fixed(2_000_000_000);
        assert_eq!(c.fuel_for_cpu_ns(1_500_000_000).0, 3_000_000_000);
        assert_eq!(c.fuel_for_cpu_ns(1).0, 2);
        assert_eq!(
            Calibration::fixed(u64::MAX).fuel_for_cpu_ns(u64::MAX).0,
            u64::MAX
        );
    }

    #[test]
    fn bad_jobs_are_refused() {
        let ok = ContainerJob::new(Hash::ZERO, "/r", vec!["true".into()]);
        assert!(ok.validate().is_ok());
        let mut j = ok.clone();
        j.argv.clear();
        assert!(j.validate().is_err());
        let mut j = ok.clone();
        j.inputs = vec![Input::new("../x", b"".to_vec())];
        assert!(j.validate().is_err());
        let mut j = ok.clone();
        j.limits.memory_bytes = 1 << 20;
        assert!(j.validate().is_err());
        let mut j = ok.clone();
        j.mounts = vec![BindMount {
            source: "/usr/lib".into(),
            destination: "/proc".into(),
            readonly: true,
        }];
        assert!(j.validate().is_err());
        let mut j = ok;
        j.devices = vec![DeviceNode {
            path: "/etc/x".into(),
            kind: 'c',
            major: 1,
            minor: 3,
        }];
        assert!(j.validate().is_err());
    }
}
