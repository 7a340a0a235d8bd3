//! The OCI runtime spec (`config.json`) of a job, as hand-written serde structs: only the
//! subset runc and crun need, every sandbox choice made here in one place.
//!
//! What a job gets, and why:
//!
//! - **Namespaces**: new mount, pid, ipc, uts, cgroup and network namespaces. The network
//!   namespace holds only loopback (runc brings `lo` up), so a job reaches nothing, not even
//!   the host's loopback. `network: true` drops the network namespace and the job shares the
//!   host's network stack: only for trusted jobs. A user namespace is added when the
//!   provider runs rootless (mapping container root to the provider's own uid) or when the
//!   executor is configured to map root to an unprivileged host range.
//! - **Filesystem**: the rootfs read-only; `/input` a read-only bind of the job's per-job
//!   input directory; `/output` a bind of the per-job output directory (a size-capped tmpfs,
//!   see [`crate::outputs`]); `/tmp` a tmpfs of `tmp_bytes`; `/proc`, `/dev`, `/sys` as in
//!   `runc spec`, with its masked and read-only `/proc` paths; extra read-only binds.
//! - **Privileges**: every capability set empty, `noNewPrivileges`, `RLIMIT_NOFILE` 1024
//!   (rootless also `RLIMIT_NPROC` in place of the pids cgroup),
//!   an OOM score that makes the job the host's first victim, and a seccomp deny-list
//!   ([`seccomp`]).
//! - **Devices**: the runtime's defaults plus the job's extra [`DeviceNode`]s, each allowed
//!   in the device cgroup; everything else denied.
//! - **Cgroups**: `cgroupsPath` is a child of the job's own cgroup ([`crate::cgroup`]),
//!   which carries the memory, CPU and pids limits. The limits live on the parent, not in
//!   this spec, because runc deletes the container's cgroup as the process exits and with
//!   it (on cgroup v1) the OOM and pids-limit event counters that typed failures need.

use std::path::Path;

use serde::Serialize;

use crate::job::{ContainerJob, DEFAULT_PATH, DeviceNode};

/// The OCI spec version written.
pub const OCI_VERSION: &str = "1.0.2";

/// A uid or gid mapping of a user namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdMap {
    /// First id inside the container.
    #[serde(rename = "containerID")]
    pub container_id: u32,
    /// First id on the host.
    #[serde(rename = "hostID")]
    pub host_id: u32,
    /// How many ids.
    pub size: u32,
}

/// How the job's user namespace maps ids, if it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserNamespace {
    /// uid mapping.
    pub uid: IdMap,
    /// gid mapping.
    pub gid: IdMap,
}

impl UserNamespace {
    /// Rootless: container root is the calling user, nobody else exists.
    pub fn rootless(uid: u32, gid: u32) -> Self {
        let one = |host_id| IdMap {
            container_id: 0,
            host_id,
            size: 1,
        };
        UserNamespace {
            uid: one(uid),
            gid: one(gid),
        }
    }
}

/// Where the host-side pieces of a job are, for [`build`].
#[derive(Clone, Debug)]
pub struct SpecParams<'a> {
    /// The job.
    pub job: &'a ContainerJob,
    /// Host directory shown read-only at `/input`.
    pub input_dir: &'a Path,
    /// Host directory shown at `/output`.
    pub output_dir: &'a Path,
    /// The container's cgroup path (`None`: no cgroup, rootless without delegation).
    pub cgroups_path: Option<String>,
    /// The user namespace, if any.
    pub userns: Option<UserNamespace>,
    /// Rootless runtime: `/sys` is bind-mounted (sysfs cannot be mounted) and devpts gets
    /// no `gid=5`.
    pub rootless: bool,
    /// `RLIMIT_FSIZE` for the job, when `/output` is not a size-capped tmpfs (see
    /// [`crate::outputs`]).
    pub fsize_limit: Option<u64>,
}

/// `config.json`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// OCI version.
    pub oci_version: &'static str,
    /// The process.
    pub process: Process,
    /// The root filesystem.
    pub root: Root,
    /// Hostname inside the uts namespace.
    pub hostname: &'static str,
    /// Mounts, in order.
    pub mounts: Vec<Mount>,
    /// Linux specifics.
    pub linux: Linux,
}

/// `process`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    /// No terminal: stdio are pipes.
    pub terminal: bool,
    /// uid/gid inside the container.
    pub user: User,
    /// argv.
    pub args: Vec<String>,
    /// `KEY=VALUE` strings.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// Capability sets (all empty).
    pub capabilities: Capabilities,
    /// Resource limits.
    pub rlimits: Vec<Rlimit>,
    /// `PR_SET_NO_NEW_PRIVS`.
    pub no_new_privileges: bool,
    /// `/proc/PID/oom_score_adj`.
    pub oom_score_adj: i32,
}

/// `process.user`.
#[derive(Clone, Debug, Serialize)]
pub struct User {
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
}

/// `process.capabilities`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Capabilities {
    /// Bounding set.
    pub bounding: Vec<String>,
    /// Effective set.
    pub effective: Vec<String>,
    /// Inheritable set.
    pub inheritable: Vec<String>,
    /// Permitted set.
    pub permitted: Vec<String>,
    /// Ambient set.
    pub ambient: Vec<String>,
}

/// One rlimit.
#[derive(Clone, Debug, Serialize)]
pub struct Rlimit {
    /// e.g. `RLIMIT_NOFILE`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Hard limit.
    pub hard: u64,
    /// Soft limit.
    pub soft: u64,
}

/// `root`.
#[derive(Clone, Debug, Serialize)]
pub struct Root {
    /// Host path of the rootfs.
    pub path: String,
    /// Mount it read-only.
    pub readonly: bool,
}

/// One mount.
#[derive(Clone, Debug, Serialize)]
pub struct Mount {
    /// Path in the container.
    pub destination: String,
    /// Filesystem type (`bind` for binds).
    #[serde(rename = "type")]
    pub kind: String,
    /// Source (a host path for binds).
    pub source: String,
    /// Mount options.
    pub options: Vec<String>,
}

/// `linux`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    /// uid mappings (user namespace only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uid_mappings: Vec<IdMap>,
    /// gid mappings (user namespace only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gid_mappings: Vec<IdMap>,
    /// Cgroup resources (device rules only, see the module docs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// The container's cgroup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroups_path: Option<String>,
    /// Namespaces to create.
    pub namespaces: Vec<Namespace>,
    /// Device nodes to create.
    pub devices: Vec<Device>,
    /// Paths hidden from the job.
    pub masked_paths: Vec<&'static str>,
    /// Paths made read-only.
    pub readonly_paths: Vec<&'static str>,
    /// The seccomp filter.
    pub seccomp: seccomp::Seccomp,
}

/// `linux.resources`.
#[derive(Clone, Debug, Serialize)]
pub struct Resources {
    /// Device cgroup rules, in order (deny all first, then allows).
    pub devices: Vec<DeviceRule>,
}

/// One device cgroup rule.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceRule {
    /// Allow or deny.
    pub allow: bool,
    /// `c`, `b` or absent for all.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Major number, absent for all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major: Option<i64>,
    /// Minor number, absent for all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minor: Option<i64>,
    /// `rwm` subset.
    pub access: &'static str,
}

/// One namespace.
#[derive(Clone, Debug, Serialize)]
pub struct Namespace {
    /// `pid`, `network`, `ipc`, `uts`, `mount`, `cgroup`, `user`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// One device node.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Path in the container.
    pub path: String,
    /// `c` or `b`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// Mode bits of the node.
    pub file_mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
}

/// runc's default masked paths (`runc spec`).
pub const MASKED_PATHS: [&str; 10] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

/// runc's default read-only paths (`runc spec`).
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Open files a job may have.
pub const NOFILE: u64 = 1024;

/// Builds the spec of a job (see the module docs for every choice).
pub fn build(p: &SpecParams<'_>) -> Spec {
    let job = p.job;
    Spec {
        oci_version: OCI_VERSION,
        process: process(job, rlimits(p)),
        root: Root {
            path: job.rootfs.to_string_lossy().into_owned(),
            readonly: true,
        },
        hostname: "agora",
        mounts: mounts(p),
        linux: linux(p),
    }
}

fn process(job: &ContainerJob, rlimits: Vec<Rlimit>) -> Process {
    let mut env: Vec<String> = job.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !job.env.iter().any(|(k, _)| k == "PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    Process {
        terminal: false,
        user: User { uid: 0, gid: 0 },
        args: job.argv.clone(),
        env,
        cwd: if job.cwd.is_empty() {
            "/".into()
        } else {
            job.cwd.clone()
        },
        capabilities: Capabilities::default(),
        rlimits,
        no_new_privileges: true,
        // Raising one's own OOM score needs no privilege: if the host runs short of
        // memory anyway, the kernel kills the job before the provider.
        oom_score_adj: 500,
    }
}

/// `RLIMIT_NOFILE` always; `RLIMIT_FSIZE` when `/output` is not a capped tmpfs; and,
/// rootless, where there is no cgroup to limit the job, `RLIMIT_NPROC` (counted per uid
/// inside the job's own user namespace) for the pids limit. Memory has no such stand-in:
/// `RLIMIT_AS` kills the runtime's own init (a Go program reserving much address space)
/// before the job starts, so rootless jobs run without a memory limit.
fn rlimits(p: &SpecParams<'_>) -> Vec<Rlimit> {
    let rlimit = |kind, value: u64| Rlimit {
        kind,
        hard: value,
        soft: value,
    };
    let mut rlimits = vec![rlimit("RLIMIT_NOFILE", NOFILE)];
    if let Some(bytes) = p.fsize_limit {
        // One byte over the limit, so that a file that reaches it is seen as over it.
        rlimits.push(rlimit("RLIMIT_FSIZE", bytes.saturating_add(1)));
    }
    if p.rootless {
        rlimits.push(rlimit("RLIMIT_NPROC", p.job.limits.pids));
    }
    rlimits
}

fn mount(destination: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
    Mount {
        destination: destination.into(),
        kind: kind.into(),
        source: source.into(),
        options: options.iter().map(|o| o.to_string()).collect(),
    }
}

fn bind(source: &Path, destination: &str, readonly: bool) -> Mount {
    let access = if readonly { "ro" } else { "rw" };
    mount(
        destination,
        "bind",
        &source.to_string_lossy(),
        &["rbind", "nosuid", "nodev", access],
    )
}

fn mounts(p: &SpecParams<'_>) -> Vec<Mount> {
    let limits = &p.job.limits;
    let tmp_size = format!("size={}", limits.tmp_bytes);
    let devpts: &[&str] = if p.rootless {
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
        ]
    } else {
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]
    };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &[]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount("/dev/pts", "devpts", "devpts", devpts),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        sysfs(p),
        mount(
            "/tmp",
            "tmpfs",
            "tmpfs",
            &["nosuid", "nodev", "mode=1777", &tmp_size],
        ),
        bind(p.input_dir, "/input", true),
        bind(p.output_dir, "/output", false),
    ];
    mounts.extend(
        p.job
            .mounts
            .iter()
            .map(|m| bind(&m.source, &m.destination, m.readonly)),
    );
    mounts
}

/// sysfs cannot be mounted from a user namespace that does not own the network namespace
/// of the host devices, so rootless runs bind the host's `/sys` read-only, like
/// `runc spec --rootless`.
fn sysfs(p: &SpecParams<'_>) -> Mount {
    if p.rootless {
        mount(
            "/sys",
            "none",
            "/sys",
            &["rbind", "nosuid", "noexec", "nodev", "ro"],
        )
    } else {
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )
    }
}

fn linux(p: &SpecParams<'_>) -> Linux {
    let (uid_mappings, gid_mappings) = match p.userns {
        Some(ns) => (vec![ns.uid], vec![ns.gid]),
        None => (Vec::new(), Vec::new()),
    };
    Linux {
        uid_mappings,
        gid_mappings,
        resources: p
            .cgroups_path
            .as_ref()
            .map(|_| device_rules(&p.job.devices)),
        cgroups_path: p.cgroups_path.clone(),
        namespaces: namespaces(p),
        devices: p.job.devices.iter().map(device).collect(),
        masked_paths: MASKED_PATHS.to_vec(),
        readonly_paths: READONLY_PATHS.to_vec(),
        seccomp: seccomp::profile(),
    }
}

fn namespaces(p: &SpecParams<'_>) -> Vec<Namespace> {
    let mut kinds = vec!["pid", "ipc", "uts", "mount", "cgroup"];
    if !p.job.network {
        kinds.push("network");
    }
    if p.userns.is_some() {
        kinds.push("user");
    }
    kinds.into_iter().map(|kind| Namespace { kind }).collect()
}

fn device_rules(devices: &[DeviceNode]) -> Resources {
    let mut rules = vec![DeviceRule {
        allow: false,
        kind: None,
        major: None,
        minor: None,
        access: "rwm",
    }];
    rules.extend(devices.iter().map(|d| DeviceRule {
        allow: true,
        kind: Some(d.kind.to_string()),
        major: Some(d.major),
        minor: Some(d.minor),
        access: "rwm",
    }));
    Resources { devices: rules }
}

fn device(d: &DeviceNode) -> Device {
    Device {
        path: d.path.clone(),
        kind: d.kind.to_string(),
        major: d.major,
        minor: d.minor,
        file_mode: 0o666,
        uid: 0,
        gid: 0,
    }
}

pub mod seccomp {
    //! The default seccomp profile: allow by default, and fail with `EPERM` a deny-list of
    //! syscalls a job has no business making, each of which is a known way out of a
    //! container or into the kernel's soft spots.
    //!
    //! A deny-list rather than Docker's allow-list: images run arbitrary Linux software and
    //! an allow-list that misses a new syscall breaks them in ways buyers cannot debug,
    //! while everything on this list either needs a capability the job does not have (a
    //! second line of defence) or is dangerous even without one (`unshare`/`clone` of a
    //! user namespace, `userfaultfd`, `bpf`, `perf_event_open`, `io_uring`, `keyctl`).
    //! `clone` is allowed except with a namespace flag; `clone3`, whose flags live in
    //! memory that seccomp cannot read, fails with `ENOSYS` so that libc falls back to
    //! `clone`. Names the kernel or libseccomp does not know are skipped by the runtime.

    use serde::Serialize;

    /// Syscalls that fail with `EPERM`.
    pub const DENIED: &[&str] = &[
        "acct",
        "add_key",
        "adjtimex",
        "bpf",
        "clock_adjtime",
        "clock_settime",
        "create_module",
        "delete_module",
        "finit_module",
        "fsconfig",
        "fsmount",
        "fsopen",
        "fspick",
        "get_kernel_syms",
        "init_module",
        "io_uring_enter",
        "io_uring_register",
        "io_uring_setup",
        "ioperm",
        "iopl",
        "kcmp",
        "kexec_file_load",
        "kexec_load",
        "keyctl",
        "lookup_dcookie",
        "mount",
        "mount_setattr",
        "move_mount",
        "name_to_handle_at",
        "nfsservctl",
        "open_by_handle_at",
        "open_tree",
        "perf_event_open",
        "pivot_root",
        "process_vm_readv",
        "process_vm_writev",
        "ptrace",
        "query_module",
        "quotactl",
        "reboot",
        "request_key",
        "setns",
        "settimeofday",
        "swapoff",
        "swapon",
        "syslog",
        "umount",
        "umount2",
        "unshare",
        "uselib",
        "userfaultfd",
        "ustat",
        "vhangup",
    ];

    /// The `clone` flags that create namespaces; `clone` with any of them is denied.
    pub const CLONE_NAMESPACE_FLAGS: [u64; 7] = [
        0x0002_0000, // CLONE_NEWNS
        0x0200_0000, // CLONE_NEWCGROUP
        0x0400_0000, // CLONE_NEWUTS
        0x0800_0000, // CLONE_NEWIPC
        0x1000_0000, // CLONE_NEWUSER
        0x2000_0000, // CLONE_NEWPID
        0x4000_0000, // CLONE_NEWNET
    ];

    /// `EPERM`.
    pub const EPERM: u32 = 1;
    /// `ENOSYS`.
    pub const ENOSYS: u32 = 38;

    /// `linux.seccomp`.
    #[derive(Clone, Debug, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Seccomp {
        /// What unlisted syscalls do.
        pub default_action: &'static str,
        /// Architectures the filter covers.
        pub architectures: Vec<&'static str>,
        /// The rules.
        pub syscalls: Vec<Rule>,
    }

    /// One rule.
    #[derive(Clone, Debug, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Rule {
        /// Syscall names.
        pub names: Vec<&'static str>,
        /// What matching calls do.
        pub action: &'static str,
        /// The errno returned.
        pub errno_ret: u32,
        /// Argument conditions (all must hold).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        pub args: Vec<Arg>,
    }

    /// One argument condition.
    #[derive(Clone, Debug, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Arg {
        /// Argument index.
        pub index: u32,
        /// The mask (for `SCMP_CMP_MASKED_EQ`).
        pub value: u64,
        /// The value the masked argument must equal.
        pub value_two: u64,
        /// Comparison.
        pub op: &'static str,
    }

    /// The architectures of this build's target, plus its 32-bit compat ABIs (so a 32-bit
    /// binary cannot slip past the filter).
    pub fn architectures() -> Vec<&'static str> {
        if cfg!(target_arch = "aarch64") {
            vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
        } else {
            vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        }
    }

    /// The profile.
    pub fn profile() -> Seccomp {
        let mut syscalls = vec![
            Rule {
                names: DENIED.to_vec(),
                action: "SCMP_ACT_ERRNO",
                errno_ret: EPERM,
                args: Vec::new(),
            },
            Rule {
                names: vec!["clone3"],
                action: "SCMP_ACT_ERRNO",
                errno_ret: ENOSYS,
                args: Vec::new(),
            },
        ];
        // One rule per flag: rules are OR-ed, the conditions inside one rule AND-ed.
        syscalls.extend(CLONE_NAMESPACE_FLAGS.iter().map(|&flag| Rule {
            names: vec!["clone"],
            action: "SCMP_ACT_ERRNO",
            errno_ret: EPERM,
            args: vec![Arg {
                index: clone_flags_index(),
                value: flag,
                value_two: flag,
                op: "SCMP_CMP_MASKED_EQ",
            }],
        }));
        Seccomp {
            default_action: "SCMP_ACT_ALLOW",
            architectures: architectures(),
            syscalls,
        }
    }

    /// `clone`'s flags are its first argument on x86-64 and arm64 (s390 differs).
    fn clone_flags_index() -> u32 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::Hash;
    use serde_json::Value;

    fn spec_json(job: &ContainerJob, userns: Option<UserNamespace>, rootless: bool) -> Value {
        let params = SpecParams {
            job,
            input_dir: Path::new("/b/input"),
            output_dir: Path::new("/b/output"),
            cgroups_path: (!rootless).then(|| "/agora/x/ctr".to_string()),
            userns,
            rootless,
            fsize_limit: rootless.then_some(10),
        };
        serde_json::to_value(build(&params)).unwrap()
    }

    fn job() -> ContainerJob {
        let mut job = ContainerJob::new(Hash::ZERO, "/rootfs", vec!["sh".into(), "-c".into()]);
        job.devices.push(DeviceNode {
            path: "/dev/nvidia0".into(),
            kind: 'c',
            major: 195,
            minor: 0,
        });
        job
    }

    #[test]
    fn sandbox_defaults() {
        let v = spec_json(&job(), None, false);
        assert_eq!(v["root"]["readonly"], true);
        assert_eq!(v["process"]["noNewPrivileges"], true);
        for set in [
            "bounding",
            "effective",
            "inheritable",
            "permitted",
            "ambient",
        ] {
            assert_eq!(v["process"]["capabilities"][set], Value::Array(vec![]));
        }
        let ns: Vec<&str> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert!(ns.contains(&"network") && ns.contains(&"pid") && !ns.contains(&"user"));
        assert!(
            v["process"]["env"][0]
                .as_str()
                .unwrap()
                .starts_with("PATH=")
        );
        let input = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/input")
            .unwrap();
        assert!(input["options"].as_array().unwrap().contains(&"ro".into()));
        let rules = v["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(rules[0]["allow"], false);
        assert_eq!(rules[1]["major"], 195);
        assert_eq!(v["linux"]["devices"][0]["path"], "/dev/nvidia0");
        let denied = v["linux"]["seccomp"]["syscalls"][0]["names"]
            .as_array()
            .unwrap();
        for name in ["unshare", "mount", "bpf", "ptrace", "setns", "keyctl"] {
            assert!(denied.contains(&name.into()), "{name} not denied");
        }
    }

    #[test]
    fn network_true_shares_the_host_network() {
        let mut j = job();
        j.network = true;
        let v = spec_json(&j, None, false);
        let ns = v["linux"]["namespaces"].to_string();
        assert!(!ns.contains("network"), "{ns}");
    }

    #[test]
    fn rootless_maps_the_caller_to_root() {
        let v = spec_json(&job(), Some(UserNamespace::rootless(1000, 1001)), true);
        assert_eq!(v["linux"]["uidMappings"][0]["containerID"], 0);
        assert_eq!(v["linux"]["uidMappings"][0]["hostID"], 1000);
        assert_eq!(v["linux"]["uidMappings"][0]["size"], 1);
        assert_eq!(v["linux"]["gidMappings"][0]["hostID"], 1001);
        assert!(v["linux"]["namespaces"].to_string().contains("\"user\""));
        assert!(v["linux"].get("cgroupsPath").is_none());
        let sys = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert_eq!(sys["source"], "/sys");
        assert!(!v["mounts"].to_string().contains("gid=5"));
        assert_eq!(v["process"]["rlimits"][1]["type"], "RLIMIT_FSIZE");
        assert_eq!(v["process"]["rlimits"][1]["hard"], 11);
        assert_eq!(v["process"]["rlimits"][2]["type"], "RLIMIT_NPROC");
    }
}
