//! The job's own cgroup: limits, metering and cleanup, on cgroup v1 and v2.
//!
//! Every job gets a cgroup `/<parent>/<id>` that the executor creates and limits itself
//! (memory with no swap, CPU quota, pids); the runtime puts the container in a child
//! `/<parent>/<id>/ctr`. The split exists because `runc run` deletes the container's cgroup
//! the moment the process exits, before anyone could read it. Our cgroup survives, and its
//! counters are hierarchical: CPU time (v1 `cpuacct.usage`, v2 `cpu.stat usage_usec`) and
//! the memory high-water mark (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`, or the
//! largest `memory.current` sampled while the job ran on kernels before 5.19) include the
//! dead child's. Because the limits sit on our cgroup, the OOM kill counter (v1
//! `memory.oom_control`, v2 `memory.events`) and the pids-limit counter (`pids.events`)
//! count there too on v2, where events propagate to ancestors.
//!
//! Cgroup v1 does not propagate events: an OOM kill and a failed fork are counted only in
//! the runtime's own cgroup, which vanishes with the container. So on v1 the executor also
//! (a) registers an eventfd on our cgroup's `memory.oom_control` (`cgroup.event_control`),
//! which the kernel signals whenever our cgroup, where the memory limit sits, runs out of
//! memory, however late in the run; and (b) samples the runtime's child cgroup's
//! `memory.oom_control` and `pids.events` on every poll of the running job and keeps the
//! largest values. A fork bomb is caught by (b) because it runs until the deadline; a
//! job that hits the pids limit only in its last few milliseconds may go unnoticed on v1
//! (it then ends as its exit code says).
//!
//! [`JobCgroup::remove`] removes our cgroup and anything the runtime left below it in
//! every v1 hierarchy (runc creates the parent path in all of them).

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ContainerError;
use crate::job::ContainerLimits;

/// Where cgroups are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The CFS period used for the CPU quota (100 ms, the kernel default).
pub const CPU_PERIOD_US: u64 = 100_000;
/// The name of the runtime's child cgroup under the job's.
pub const CONTAINER_LEAF: &str = "ctr";

/// Which cgroup hierarchy the host uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupVersion {
    /// Legacy per-controller hierarchies (including the "hybrid" layout).
    V1,
    /// The unified hierarchy only.
    V2,
}

/// Which hierarchy `root` holds: v2 when it is the unified hierarchy itself (it then has
/// `cgroup.controllers`); a hybrid host, whose unified hierarchy sits at `root/unified`
/// without controllers, counts as v1 like runc counts it.
pub fn detect(root: &Path) -> CgroupVersion {
    if root.join("cgroup.controllers").exists() {
        CgroupVersion::V2
    } else {
        CgroupVersion::V1
    }
}

/// What the job's cgroup measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// CPU time of every process of the job, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory high-water mark in bytes.
    pub peak_memory_bytes: u64,
    /// Processes the kernel OOM-killed in the job.
    pub oom_kills: u64,
    /// Times a fork failed at the pids limit.
    pub pids_limit_hits: u64,
}

/// A job's cgroup (see the module docs).
#[derive(Debug)]
pub struct JobCgroup {
    version: CgroupVersion,
    root: PathBuf,
    /// `<parent>/<id>`, relative to a hierarchy's root.
    relative: String,
    /// The largest `memory.current` seen, for kernels without `memory.peak`.
    sampled_peak: AtomicU64,
    /// v1: the largest OOM-kill count seen in the runtime's child cgroup.
    sampled_oom_kills: AtomicU64,
    /// v1: the largest pids-limit count seen in the runtime's child cgroup.
    sampled_pids_hits: AtomicU64,
    /// v1: the eventfd the kernel signals on an OOM of our cgroup.
    oom_event: Option<OwnedFd>,
}

impl JobCgroup {
    /// Creates `/<parent>/<id>` under `root` and sets the job's limits on it.
    pub fn create(
        root: &Path,
        version: CgroupVersion,
        parent: &str,
        id: &str,
        limits: &ContainerLimits,
    ) -> Result<Self, ContainerError> {
        let mut cgroup = JobCgroup {
            version,
            root: root.to_path_buf(),
            relative: format!("{}/{id}", parent.trim_matches('/')),
            sampled_peak: AtomicU64::new(0),
            sampled_oom_kills: AtomicU64::new(0),
            sampled_pids_hits: AtomicU64::new(0),
            oom_event: None,
        };
        let made = match version {
            CgroupVersion::V1 => cgroup
                .create_v1(limits)
                .and_then(|()| cgroup.register_oom_event()),
            CgroupVersion::V2 => cgroup.create_v2(parent.trim_matches('/'), limits),
        };
        if let Err(e) = made {
            cgroup.remove();
            return Err(e);
        }
        Ok(cgroup)
    }

    /// The path to give the runtime as `cgroupsPath`.
    pub fn container_path(&self) -> String {
        format!("/{}/{CONTAINER_LEAF}", self.relative)
    }

    /// The job cgroup's directory in `controller`'s hierarchy (v1), or the unified one.
    pub fn dir(&self, controller: &str) -> PathBuf {
        match self.version {
            CgroupVersion::V1 => self.root.join(controller).join(&self.relative),
            CgroupVersion::V2 => self.root.join(&self.relative),
        }
    }

    fn create_v1(&self, limits: &ContainerLimits) -> Result<(), ContainerError> {
        for controller in ["memory", "cpu", "cpuacct", "pids"] {
            let dir = self.dir(controller);
            fs::create_dir_all(&dir)
                .map_err(|e| ContainerError::cgroup(format!("creating {}", dir.display()), e))?;
        }
        let memory = self.dir("memory");
        // Best effort: with swappiness 0 a full cgroup OOMs instead of swapping.
        let _ = fs::write(memory.join("memory.swappiness"), "0");
        write(&memory.join("memory.limit_in_bytes"), limits.memory_bytes)?;
        // Present only with swap accounting; memory+swap equal to memory means no swap.
        let memsw = memory.join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            write(&memsw, limits.memory_bytes)?;
        }
        if limits.cpu_millis > 0 {
            let cpu = self.dir("cpu");
            write(&cpu.join("cpu.cfs_period_us"), CPU_PERIOD_US)?;
            write(&cpu.join("cpu.cfs_quota_us"), quota_us(limits.cpu_millis))?;
        }
        write(&self.dir("pids").join("pids.max"), limits.pids)
    }

    /// Asks the kernel to signal an eventfd when our v1 memory cgroup runs out of memory.
    fn register_oom_event(&mut self) -> Result<(), ContainerError> {
        let memory = self.dir("memory");
        let control = fs::File::open(memory.join("memory.oom_control"))
            .map_err(|e| ContainerError::cgroup("opening memory.oom_control", e))?;
        // SAFETY: eventfd has no memory-safety preconditions.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(ContainerError::cgroup(
                "creating an eventfd",
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let event = unsafe { OwnedFd::from_raw_fd(raw) };
        let line = format!("{} {}", event.as_raw_fd(), control.as_raw_fd());
        write_str(&memory.join("cgroup.event_control"), &line)?;
        self.oom_event = Some(event);
        Ok(())
    }

    /// How many times the kernel signalled the OOM eventfd (0 without one).
    fn oom_events(&self) -> u64 {
        let Some(fd) = &self.oom_event else { return 0 };
        let mut count = 0u64;
        // SAFETY: reads 8 bytes into a u64 from a non-blocking eventfd we own.
        let n = unsafe { libc::read(fd.as_raw_fd(), (&raw mut count).cast(), 8) };
        if n == 8 { count } else { 0 }
    }

    fn create_v2(&self, parent: &str, limits: &ContainerLimits) -> Result<(), ContainerError> {
        let parent_dir = self.root.join(parent);
        let dir = self.dir("");
        fs::create_dir_all(&dir)
            .map_err(|e| ContainerError::cgroup(format!("creating {}", dir.display()), e))?;
        // Controllers must be enabled in every ancestor's subtree_control to appear below.
        for ancestor in [self.root.as_path(), parent_dir.as_path(), dir.as_path()] {
            enable_controllers(ancestor)?;
        }
        write(&dir.join("memory.max"), limits.memory_bytes)?;
        let swap = dir.join("memory.swap.max");
        if swap.exists() {
            write(&swap, 0)?;
        }
        // Best effort: kill the whole job on OOM rather than one process of it.
        let _ = fs::write(dir.join("memory.oom.group"), "1");
        if limits.cpu_millis > 0 {
            let max = format!("{} {CPU_PERIOD_US}", quota_us(limits.cpu_millis));
            write_str(&dir.join("cpu.max"), &max)?;
        }
        write(&dir.join("pids.max"), limits.pids)
    }

    /// Records what would otherwise be lost (see the module docs): v2 `memory.current` on
    /// kernels without `memory.peak`; v1 the runtime's cgroup's OOM kills and pids-limit
    /// hits. Cheap enough to call on every poll of the running job.
    pub fn sample(&self) {
        match self.version {
            CgroupVersion::V2 => {
                if !self.dir("").join("memory.peak").exists() {
                    let current = read_u64(&self.dir("").join("memory.current")).unwrap_or(0);
                    self.sampled_peak.fetch_max(current, Ordering::Relaxed);
                }
            }
            CgroupVersion::V1 => {
                let leaf = |c: &str, file: &str| self.dir(c).join(CONTAINER_LEAF).join(file);
                let oom = read_key(&leaf("memory", "memory.oom_control"), "oom_kill");
                self.sampled_oom_kills.fetch_max(oom, Ordering::Relaxed);
                let pids = read_key(&leaf("pids", "pids.events"), "max");
                self.sampled_pids_hits.fetch_max(pids, Ordering::Relaxed);
            }
        }
    }

    /// Reads the job's counters (missing files read as zero: a kernel without them).
    pub fn stats(&self) -> CgroupStats {
        match self.version {
            CgroupVersion::V1 => self.stats_v1(),
            CgroupVersion::V2 => self.stats_v2(),
        }
    }

    fn stats_v1(&self) -> CgroupStats {
        let memory = self.dir("memory");
        let oom_kills = read_key(&memory.join("memory.oom_control"), "oom_kill")
            .max(self.sampled_oom_kills.load(Ordering::Relaxed))
            .max(self.oom_events());
        let pids_limit_hits = read_key(&self.dir("pids").join("pids.events"), "max")
            .max(self.sampled_pids_hits.load(Ordering::Relaxed));
        CgroupStats {
            cpu_ns: read_u64(&self.dir("cpuacct").join("cpuacct.usage")).unwrap_or(0),
            peak_memory_bytes: read_u64(&memory.join("memory.max_usage_in_bytes")).unwrap_or(0),
            oom_kills,
            pids_limit_hits,
        }
    }

    fn stats_v2(&self) -> CgroupStats {
        let dir = self.dir("");
        let peak = read_u64(&dir.join("memory.peak"))
            .unwrap_or_else(|_| self.sampled_peak.load(Ordering::Relaxed));
        CgroupStats {
            cpu_ns: read_key(&dir.join("cpu.stat"), "usage_usec").saturating_mul(1000),
            peak_memory_bytes: peak,
            oom_kills: read_key(&dir.join("memory.events"), "oom_kill"),
            pids_limit_hits: read_key(&dir.join("pids.events"), "max"),
        }
    }

    /// Removes the job's cgroup, and the runtime's child if it is still there, from every
    /// hierarchy. Best effort: a cgroup whose last process is still exiting is busy for a
    /// moment, so each removal is retried briefly.
    pub fn remove(&self) {
        let hierarchies: Vec<PathBuf> = match self.version {
            CgroupVersion::V2 => vec![self.root.clone()],
            CgroupVersion::V1 => fs::read_dir(&self.root)
                .map(|entries| entries.flatten().map(|e| e.path()).collect())
                .unwrap_or_default(),
        };
        for hierarchy in hierarchies {
            let dir = hierarchy.join(&self.relative);
            if dir.exists() {
                remove_dir(&dir.join(CONTAINER_LEAF));
                remove_dir(&dir);
            }
        }
    }
}

/// The CFS quota of `millis` thousandths of a CPU over [`CPU_PERIOD_US`].
fn quota_us(millis: u64) -> u64 {
    // The kernel refuses quotas under 1 ms.
    (millis.saturating_mul(CPU_PERIOD_US) / 1000).max(1000)
}

fn enable_controllers(dir: &Path) -> Result<(), ContainerError> {
    let file = dir.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&file).unwrap_or_default();
    for controller in ["cpu", "memory", "pids"] {
        if !enabled.split_whitespace().any(|c| c == controller) {
            write_str(&file, &format!("+{controller}"))?;
        }
    }
    Ok(())
}

fn remove_dir(dir: &Path) {
    for attempt in 0..50 {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => {
                if attempt == 49 {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove cgroup");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn write(file: &Path, value: u64) -> Result<(), ContainerError> {
    write_str(file, &value.to_string())
}

fn write_str(file: &Path, value: &str) -> Result<(), ContainerError> {
    fs::write(file, value)
        .map_err(|e| ContainerError::cgroup(format!("writing {value} to {}", file.display()), e))
}

fn read_u64(file: &Path) -> io::Result<u64> {
    let text = fs::read_to_string(file)?;
    text.trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The value of the `key value` line in a flat-keyed cgroup file, or 0.
fn read_key(file: &Path, key: &str) -> u64 {
    let text = fs::read_to_string(file).unwrap_or_default();
    parse_key(&text, key)
}

fn parse_key(text: &str, key: &str) -> u64 {
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keyed_files_parse() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_key(text, "oom_kill"), 3);
        assert_eq!(
            parse_key("usage_usec 1500\nuser_usec 1000\n", "usage_usec"),
            1500
        );
        assert_eq!(parse_key("", "max"), 0);
    }

    #[test]
    fn quota_follows_millis() {
        assert_eq!(quota_us(1000), 100_000);
        assert_eq!(quota_us(2500), 250_000);
        assert_eq!(quota_us(1), 1000);
    }

    #[test]
    fn v2_paths_and_limits_in_a_fake_root() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("cgroup.controllers"), "cpu memory pids").unwrap();
        assert_eq!(detect(root.path()), CgroupVersion::V2);
        fs::create_dir_all(root.path().join("agora")).unwrap();
        let limits = ContainerLimits::default();
        let cg = JobCgroup::create(root.path(), CgroupVersion::V2, "agora", "j1", &limits).unwrap();
        assert_eq!(cg.container_path(), "/agora/j1/ctr");
        let dir = root.path().join("agora/j1");
        assert_eq!(
            fs::read_to_string(dir.join("memory.max")).unwrap(),
            "536870912"
        );
        assert_eq!(
            fs::read_to_string(dir.join("cpu.max")).unwrap(),
            "100000 100000"
        );
        fs::write(dir.join("cpu.stat"), "usage_usec 2000\n").unwrap();
        fs::write(dir.join("memory.events"), "oom 1\noom_kill 1\n").unwrap();
        let stats = cg.stats();
        assert_eq!(stats.cpu_ns, 2_000_000);
        assert_eq!(stats.oom_kills, 1);
    }
}
