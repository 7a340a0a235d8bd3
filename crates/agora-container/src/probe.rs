//! Finding an OCI runtime that actually works on this host.
//!
//! Being installed is not enough: Debian 12's crun 1.8.1 refuses to start on a cgroup v1
//! "hybrid" host, and a non-root provider needs user namespaces. So [`probe`] tries crun
//! and then runc (on `PATH`, then in `/usr/sbin`, `/usr/local/sbin`, `/sbin`, `/usr/bin`)
//! by running a real container, `busybox true` in a throwaway rootfs, through the same
//! code path jobs take (spec, cgroup, output mount). The first that works is returned as a
//! [`Runtime`]; if none does, [`ProbeError`] says why for each, with the runtime's own
//! words and what to install or change.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use agora_core::Hash;
use serde::{Deserialize, Serialize};

use crate::cgroup::{self, CgroupVersion};
use crate::job::{ContainerJob, ContainerLimits};
use crate::rootfs;
use crate::run::{ContainerExecutor, ExecutorConfig};

/// Which OCI runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    /// crun (C, faster start).
    Crun,
    /// runc (Go, the reference runtime).
    Runc,
}

impl RuntimeKind {
    /// The binary's usual name.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Crun => "crun",
            RuntimeKind::Runc => "runc",
        }
    }
}

/// A runtime that started a container on this host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    /// crun or runc.
    pub kind: RuntimeKind,
    /// Path of the binary.
    pub binary: PathBuf,
    /// First line of `--version`.
    pub version: String,
    /// The host's cgroup hierarchy.
    pub cgroup: CgroupVersion,
    /// Whether containers run without root (user namespace, no cgroup limits).
    pub rootless: bool,
}

impl Runtime {
    /// A runtime at `binary`, described from this host without starting anything (use
    /// [`probe`] to know that it works).
    pub fn describe(kind: RuntimeKind, binary: &Path) -> Runtime {
        Runtime {
            kind,
            binary: binary.to_path_buf(),
            version: version_of(binary).unwrap_or_else(|| "unknown".into()),
            cgroup: cgroup::detect(Path::new(cgroup::CGROUP_ROOT)),
            rootless: !is_root(),
        }
    }
}

/// One runtime that was tried and failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeAttempt {
    /// The binary.
    pub binary: PathBuf,
    /// Its version line.
    pub version: String,
    /// Why it did not work.
    pub reason: String,
}

/// Why no runtime can be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// Neither crun nor runc is installed.
    #[error(
        "no OCI runtime installed: found neither crun nor runc on PATH or in /usr/sbin, /usr/local/sbin, /sbin, /usr/bin; \
         install one (`apt-get install runc`) to run container jobs"
    )]
    NoRuntime,
    /// The test rootfs could not be built.
    #[error(
        "cannot probe the container runtime: {reason}; a static busybox is needed for the test container \
         (`apt-get install busybox-static`)"
    )]
    NoProbeRootfs {
        /// What went wrong.
        reason: String,
    },
    /// Not root, and the kernel does not let users create user namespaces.
    #[error(
        "not root and user namespaces are unavailable ({reason}): run the provider as root, or allow \
         unprivileged user namespaces (sysctl user.max_user_namespaces>0, kernel.unprivileged_userns_clone=1, \
         kernel.apparmor_restrict_unprivileged_userns=0)"
    )]
    NoUserNamespaces {
        /// What was found.
        reason: String,
    },
    /// Every installed runtime failed to start the test container.
    #[error("no OCI runtime could start a container: {}", Attempts(.0))]
    AllFailed(Vec<ProbeAttempt>),
}

struct Attempts<'a>(&'a [ProbeAttempt]);

impl fmt::Display for Attempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "; " };
            write!(
                f,
                "{sep}{} ({}): {}",
                a.binary.display(),
                a.version,
                a.reason
            )?;
        }
        Ok(())
    }
}

/// What [`probe_with`] tries.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// Binaries to try in order; empty searches for crun then runc.
    pub candidates: Vec<PathBuf>,
    /// The static busybox for the test rootfs.
    pub busybox: PathBuf,
    /// The executor configuration the test container runs under.
    pub config: ExecutorConfig,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            candidates: Vec::new(),
            busybox: rootfs::default_busybox(),
            config: ExecutorConfig::default(),
        }
    }
}

/// Finds a working runtime with the default options.
pub fn probe() -> Result<Runtime, ProbeError> {
    probe_with(&ProbeOptions::default())
}

/// Finds a working runtime (see the module docs).
pub fn probe_with(options: &ProbeOptions) -> Result<Runtime, ProbeError> {
    let candidates = if options.candidates.is_empty() {
        find_candidates()
    } else {
        options.candidates.clone()
    };
    if candidates.is_empty() {
        return Err(ProbeError::NoRuntime);
    }
    if !is_root() {
        check_user_namespaces()?;
    }
    let scratch = tempfile::tempdir().map_err(|e| ProbeError::NoProbeRootfs {
        reason: format!("creating a temporary directory: {e}"),
    })?;
    let rootfs = scratch.path().join("rootfs");
    rootfs::busybox_rootfs(&rootfs, &options.busybox).map_err(|e| ProbeError::NoProbeRootfs {
        reason: format!("copying {}: {e}", options.busybox.display()),
    })?;
    let mut attempts = Vec::new();
    for binary in candidates {
        let runtime = Runtime::describe(kind_of(&binary), &binary);
        match trial(&runtime, &rootfs, &options.config) {
            Ok(()) => return Ok(runtime),
            Err(reason) => attempts.push(ProbeAttempt {
                binary,
                version: runtime.version,
                reason,
            }),
        }
    }
    Err(ProbeError::AllFailed(attempts))
}

/// Runs `busybox true` and expects exit 0 with nothing on stderr.
fn trial(runtime: &Runtime, rootfs: &Path, config: &ExecutorConfig) -> Result<(), String> {
    let executor = ContainerExecutor::new(runtime.clone(), config.clone());
    let mut job = ContainerJob::new(
        Hash::of(b"agora-container probe"),
        rootfs,
        vec!["/bin/busybox".into(), "true".into()],
    );
    job.limits = ContainerLimits {
        memory_bytes: 64 << 20,
        pids: 16,
        wall_timeout: Duration::from_secs(20),
        ..ContainerLimits::default()
    };
    match executor.run(&job) {
        Ok(run) if run.outcome.exit_code == 0 => Ok(()),
        Ok(run) => Err(format!(
            "the test container exited with {}: {}",
            run.outcome.exit_code,
            run.outcome.stderr.tail(2000).trim()
        )),
        Err(e) => Err(e.to_string()),
    }
}

fn find_candidates() -> Vec<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    for extra in ["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin"] {
        dirs.push(PathBuf::from(extra));
    }
    let mut found: Vec<PathBuf> = Vec::new();
    for name in ["crun", "runc"] {
        let hit = dirs.iter().map(|d| d.join(name)).find(|p| is_executable(p));
        if let Some(p) = hit {
            found.push(p);
        }
    }
    found
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// crun or runc, by the binary's name (anything else is driven like runc).
pub fn kind_of(binary: &Path) -> RuntimeKind {
    let name = binary.file_name().map(|n| n.to_string_lossy().into_owned());
    if name.is_some_and(|n| n.contains("crun")) {
        RuntimeKind::Crun
    } else {
        RuntimeKind::Runc
    }
}

fn version_of(binary: &Path) -> Option<String> {
    let out = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next().map(|l| l.trim().to_owned())
}

/// Whether this process is root (effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn check_user_namespaces() -> Result<(), ProbeError> {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Err(ProbeError::NoUserNamespaces {
            reason: "user.max_user_namespaces is 0".into(),
        });
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Err(ProbeError::NoUserNamespaces {
            reason: "kernel.unprivileged_userns_clone is 0".into(),
        });
    }
    // Ubuntu 23.10+: AppArmor lets only profiled programs create user namespaces.
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return Err(ProbeError::NoUserNamespaces {
            reason: "kernel.apparmor_restrict_unprivileged_userns is 1".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_names() {
        assert_eq!(kind_of(Path::new("/usr/bin/crun")), RuntimeKind::Crun);
        assert_eq!(kind_of(Path::new("/usr/sbin/runc")), RuntimeKind::Runc);
    }

    #[test]
    fn failures_list_each_attempt() {
        let e = ProbeError::AllFailed(vec![
            ProbeAttempt {
                binary: "/usr/bin/crun".into(),
                version: "crun version 1.8.1".into(),
                reason: "cgroups in hybrid mode not supported".into(),
            },
            ProbeAttempt {
                binary: "/usr/sbin/runc".into(),
                version: "runc version 1.1.5".into(),
                reason: "boom".into(),
            },
        ]);
        let text = e.to_string();
        assert!(text.contains("/usr/bin/crun (crun version 1.8.1): cgroups in hybrid mode not supported; /usr/sbin/runc"), "{text}");
        assert!(
            ProbeError::NoRuntime
                .to_string()
                .contains("apt-get install runc")
        );
    }

    #[test]
    fn missing_runtime_is_named() {
        let options = ProbeOptions {
            candidates: vec!["/nonexistent/runc".into()],
            ..ProbeOptions::default()
        };
        if !rootfs::default_busybox().exists() {
            return;
        }
        let err = probe_with(&options).unwrap_err();
        assert!(
            matches!(err, ProbeError::AllFailed(ref a) if a.len() == 1),
            "{err}"
        );
    }
}
