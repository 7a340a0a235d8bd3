//! What a container needs to use its assigned GPUs, and only those.
//!
//! Agora does this itself, without nvidia-container-toolkit: the container gets
//! - the device nodes `/dev/nvidia{minor}` of its assigned GPUs, plus the shared
//!   `/dev/nvidiactl`, `/dev/nvidia-uvm` and `/dev/nvidia-uvm-tools`, each with the
//!   host's major/minor numbers so the runtime can create the node and allow exactly
//!   these in the device cgroup ([`DeviceNode::cgroup_rule`]); other GPUs' nodes are
//!   neither created nor allowed;
//! - the host's user-space driver (`libcuda.so.1`, `libnvidia-ml.so.1`, the PTX JIT, …),
//!   found through `ldconfig -p` and bind-mounted read-only under `/usr/local/nvidia/lib64`,
//!   and `nvidia-smi` under `/usr/local/nvidia/bin`: the paths NVIDIA's CUDA images already
//!   search (the driver must match the kernel module, so it always comes from the host);
//! - `NVIDIA_VISIBLE_DEVICES` and `CUDA_VISIBLE_DEVICES` set to the assigned GPUs' UUIDs.
//!   UUIDs rather than `0..n`: they name the right GPUs even if a runtime fails to hide
//!   the others.
//!
//! When `nvidia-ctk` and a CDI spec exist ([`cdi_available`]) a runtime may use CDI
//! instead (`nvidia.com/gpu=<uuid>`); the device rules here remain the fallback and are
//! what runs on hosts without the toolkit.
//!
//! [`container_devices`] is pure; [`HostGpuFiles::probe`] reads the host (stat of
//! `/dev/nvidia*`, `ldconfig -p`, `PATH`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::types::GpuInfo;

/// Where driver libraries appear inside the container.
pub const CONTAINER_LIB_DIR: &str = "/usr/local/nvidia/lib64";
/// Where driver tools appear inside the container.
pub const CONTAINER_BIN_DIR: &str = "/usr/local/nvidia/bin";
/// Device nodes every GPU container needs besides its GPUs' own.
pub const CONTROL_NODES: &[&str] = &["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"];
/// Driver libraries to mount: (soname, required for CUDA to work).
pub const DRIVER_LIBRARIES: &[(&str, bool)] = &[
    ("libcuda.so.1", true),
    ("libnvidia-ml.so.1", true),
    ("libnvidia-ptxjitcompiler.so.1", false),
    ("libnvidia-nvvm.so.4", false),
    ("libcudadebugger.so.1", false),
];
/// Driver tools to mount.
pub const DRIVER_BINARIES: &[&str] = &["nvidia-smi"];

/// A device node for the container (`kind` is `c`: NVIDIA's nodes are character devices).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceNode {
    /// Path on the host and in the container, e.g. `/dev/nvidia0`.
    pub path: String,
    /// `c` for a character device.
    pub kind: char,
    /// Major number (195 for GPUs and nvidiactl; dynamic for nvidia-uvm).
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl DeviceNode {
    /// The device-cgroup rule that allows this node, e.g. `c 195:0 rwm`.
    pub fn cgroup_rule(&self) -> String {
        format!("{} {}:{} rwm", self.kind, self.major, self.minor)
    }
}

/// A host path bound into the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// Host path.
    pub source: String,
    /// Container path.
    pub destination: String,
    /// Mounted read-only (always, for driver files).
    pub readonly: bool,
}

/// Everything a container runtime needs to expose the assigned GPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerGpu {
    /// Device nodes to create and allow.
    pub devices: Vec<DeviceNode>,
    /// Read-only driver files.
    pub mounts: Vec<BindMount>,
    /// Environment for the container. `LD_LIBRARY_PATH` should be prepended to the image's.
    pub env: Vec<(String, String)>,
    /// What the host lacks; CUDA will likely fail in the container when this is not
    /// empty, so a provider should not accept GPU jobs then.
    pub missing: Vec<String>,
}

/// The host's NVIDIA device nodes and driver files, as [`HostGpuFiles::probe`] found them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostGpuFiles {
    /// Character devices under `/dev` named `nvidia*`, with their numbers.
    pub nodes: Vec<DeviceNode>,
    /// Driver library soname → host path (from `ldconfig -p`).
    pub libraries: BTreeMap<String, String>,
    /// Tool name → host path (from `PATH`).
    pub binaries: BTreeMap<String, String>,
}

impl HostGpuFiles {
    /// Reads this host: stats `/dev/nvidia*`, runs `ldconfig -p`, searches `PATH`.
    /// Missing pieces are simply absent.
    pub fn probe() -> HostGpuFiles {
        let nodes = nvidia_nodes(Path::new("/dev"));
        let ldconfig = ["ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"]
            .iter()
            .find_map(|tool| crate::detect::run_tool(tool, &["-p"], Duration::from_secs(10)).ok())
            .unwrap_or_default();
        let libraries = parse_ldconfig(&ldconfig)
            .into_iter()
            .filter(|(soname, _)| DRIVER_LIBRARIES.iter().any(|(l, _)| l == soname))
            .map(|(soname, path)| (soname, resolve(&path)))
            .collect();
        let binaries = DRIVER_BINARIES
            .iter()
            .filter_map(|name| Some((name.to_string(), find_on_path(name)?)))
            .collect();
        HostGpuFiles {
            nodes,
            libraries,
            binaries,
        }
    }
}

/// The device nodes, mounts and environment for a container assigned `assigned`, given
/// what the host has. No GPUs assigned: nothing at all.
pub fn container_devices(assigned: &[GpuInfo], host: &HostGpuFiles) -> ContainerGpu {
    let mut out = ContainerGpu::default();
    if assigned.is_empty() {
        return out;
    }
    for gpu in assigned {
        gpu_node(gpu, host, &mut out);
    }
    for path in CONTROL_NODES {
        match host.nodes.iter().find(|n| n.path == *path) {
            Some(node) => out.devices.push(node.clone()),
            None => out.missing.push(format!("{path} is not on the host")),
        }
    }
    driver_mounts(host, &mut out);
    out.env = environment(assigned);
    out
}

fn gpu_node(gpu: &GpuInfo, host: &HostGpuFiles, out: &mut ContainerGpu) {
    let Some(minor) = gpu.minor_number else {
        out.missing.push(format!(
            "GPU {} ({}) has no known minor number",
            gpu.index, gpu.uuid
        ));
        return;
    };
    let path = format!("/dev/nvidia{minor}");
    match host.nodes.iter().find(|n| n.path == path) {
        Some(node) => out.devices.push(node.clone()),
        None => out
            .missing
            .push(format!("{path} (GPU {}) is not on the host", gpu.index)),
    }
}

fn driver_mounts(host: &HostGpuFiles, out: &mut ContainerGpu) {
    for (soname, required) in DRIVER_LIBRARIES {
        match host.libraries.get(*soname) {
            Some(source) => out
                .mounts
                .push(read_only(source, CONTAINER_LIB_DIR, soname)),
            None if *required => out.missing.push(format!("{soname} not found by ldconfig")),
            None => {}
        }
    }
    for name in DRIVER_BINARIES {
        if let Some(source) = host.binaries.get(*name) {
            out.mounts.push(read_only(source, CONTAINER_BIN_DIR, name));
        }
    }
}

fn read_only(source: &str, dir: &str, name: &str) -> BindMount {
    BindMount {
        source: source.to_owned(),
        destination: format!("{dir}/{name}"),
        readonly: true,
    }
}

fn environment(assigned: &[GpuInfo]) -> Vec<(String, String)> {
    let uuids = assigned
        .iter()
        .map(|g| g.uuid.as_str())
        .collect::<Vec<_>>()
        .join(",");
    [
        ("NVIDIA_VISIBLE_DEVICES", uuids.as_str()),
        ("CUDA_VISIBLE_DEVICES", uuids.as_str()),
        ("NVIDIA_DRIVER_CAPABILITIES", "compute,utility"),
        ("LD_LIBRARY_PATH", CONTAINER_LIB_DIR),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Soname → path from `ldconfig -p` output, 64-bit (`x86-64`/`AArch64`) entries only; the
/// first entry of a soname wins, as it does for the dynamic loader.
pub fn parse_ldconfig(text: &str) -> BTreeMap<String, String> {
    let mut libraries = BTreeMap::new();
    for line in text.lines() {
        let Some((left, path)) = line.split_once("=>") else {
            continue;
        };
        let Some((soname, flags)) = left.trim().split_once(' ') else {
            continue;
        };
        let is_64 =
            flags.contains("x86-64") || flags.contains("AArch64") || flags.contains("64bit");
        if is_64 {
            libraries
                .entry(soname.to_owned())
                .or_insert_with(|| path.trim().to_owned());
        }
    }
    libraries
}

/// The character device at `path` with its numbers, or `None` if it is absent or not a
/// character device.
pub fn stat_device(path: &Path) -> Option<DeviceNode> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(path).ok()?;
    if !meta.file_type().is_char_device() {
        return None;
    }
    let rdev = meta.rdev();
    Some(DeviceNode {
        path: path.to_string_lossy().into_owned(),
        kind: 'c',
        major: libc::major(rdev),
        minor: libc::minor(rdev),
    })
}

/// The `nvidia*` character devices directly under `dir`, sorted by path.
pub fn nvidia_nodes(dir: &Path) -> Vec<DeviceNode> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut nodes: Vec<DeviceNode> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("nvidia"))
        .filter_map(|e| stat_device(&e.path()))
        .collect();
    nodes.sort_by(|a, b| a.path.cmp(&b.path));
    nodes
}

fn resolve(path: &str) -> String {
    std::fs::canonicalize(path)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| path.to_owned())
}

fn find_on_path(name: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .map(|p| p.to_string_lossy().into_owned())
}

/// Whether CDI can be used instead of Agora's own device rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdiStatus {
    /// `nvidia-ctk` on `PATH`, if found.
    pub nvidia_ctk: Option<String>,
    /// CDI spec files (`*.yaml`, `*.yml`, `*.json`) in `/etc/cdi` and `/var/run/cdi`.
    pub specs: Vec<String>,
    /// Both present: a CDI-aware runtime can be given `nvidia.com/gpu=<uuid>`.
    pub available: bool,
}

/// Looks for `nvidia-ctk` and CDI specs on this host.
pub fn cdi_available() -> CdiStatus {
    let specs = ["/etc/cdi", "/var/run/cdi"]
        .iter()
        .flat_map(|dir| cdi_specs(Path::new(dir)))
        .collect();
    cdi_status(find_on_path("nvidia-ctk"), specs)
}

/// The pure half of [`cdi_available`].
pub fn cdi_status(nvidia_ctk: Option<String>, specs: Vec<String>) -> CdiStatus {
    CdiStatus {
        available: nvidia_ctk.is_some() && !specs.is_empty(),
        nvidia_ctk,
        specs,
    }
}

fn cdi_specs(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut specs: Vec<String> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| is_spec(p))
        .map(|p: PathBuf| p.to_string_lossy().into_owned())
        .collect();
    specs.sort();
    specs
}

fn is_spec(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{MigMode, class_model};

    fn node(path: &str, major: u32, minor: u32) -> DeviceNode {
        DeviceNode {
            path: path.into(),
            kind: 'c',
            major,
            minor,
        }
    }

    fn gpu(index: u32, minor: Option<u32>) -> GpuInfo {
        GpuInfo {
            index,
            uuid: format!("GPU-{index}"),
            model: "NVIDIA H200".into(),
            class_model: class_model("NVIDIA H200"),
            memory_bytes: 143_771 << 20,
            pci_bus_id: String::new(),
            compute_capability: Some("9.0".into()),
            minor_number: minor,
            mig_mode: MigMode::Disabled,
        }
    }

    /// The H200 machine as recorded in `tests/fixtures/h200-dev-nvidia.txt` and
    /// `h200-ldconfig-p.txt`, plus (synthetic) two more GPUs.
    fn host() -> HostGpuFiles {
        let ldconfig = include_str!("../tests/fixtures/h200-ldconfig-p.txt");
        HostGpuFiles {
            nodes: vec![
                node("/dev/nvidia-uvm", 238, 0),
                node("/dev/nvidia-uvm-tools", 238, 1),
                node("/dev/nvidia0", 195, 0),
                node("/dev/nvidia1", 195, 1),
                node("/dev/nvidia2", 195, 2),
                node("/dev/nvidiactl", 195, 255),
            ],
            libraries: parse_ldconfig(ldconfig),
            binaries: [(
                "nvidia-smi".into(),
                "/usr/local/nvidia/bin/nvidia-smi".into(),
            )]
            .into(),
        }
    }

    #[test]
    fn the_recorded_ldconfig_finds_the_driver_first_in_cache_order() {
        let libs = parse_ldconfig(include_str!("../tests/fixtures/h200-ldconfig-p.txt"));
        assert_eq!(libs["libcuda.so.1"], "/usr/local/nvidia/lib64/libcuda.so.1");
        assert_eq!(
            libs["libnvidia-ml.so.1"],
            "/usr/local/nvidia/lib64/libnvidia-ml.so.1"
        );
        assert_eq!(
            libs["libcublas.so.13"],
            "/usr/local/cuda/targets/x86_64-linux/lib/libcublas.so.13"
        );
    }

    #[test]
    fn thirty_two_bit_libraries_are_ignored() {
        let libs = parse_ldconfig(include_str!("../tests/fixtures/synthetic-ldconfig-p.txt"));
        assert_eq!(libs["libcuda.so.1"], "/lib/x86_64-linux-gnu/libcuda.so.1");
        assert_eq!(
            libs["libnvidia-ml.so.1"],
            "/lib/x86_64-linux-gnu/libnvidia-ml.so.1"
        );
        assert!(libs.values().all(|p| !p.contains("i386")));
        assert!(parse_ldconfig("garbage\n=>\n x => y").is_empty());
    }

    #[test]
    fn only_the_assigned_gpu_nodes_are_exposed() {
        let out = container_devices(&[gpu(1, Some(1))], &host());
        let paths: Vec<&str> = out.devices.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/dev/nvidia1",
                "/dev/nvidiactl",
                "/dev/nvidia-uvm",
                "/dev/nvidia-uvm-tools"
            ]
        );
        let rules: Vec<String> = out.devices.iter().map(DeviceNode::cgroup_rule).collect();
        assert_eq!(
            rules,
            ["c 195:1 rwm", "c 195:255 rwm", "c 238:0 rwm", "c 238:1 rwm"]
        );
        assert!(out.missing.is_empty(), "{:?}", out.missing);
    }

    #[test]
    fn driver_files_are_mounted_read_only_where_cuda_images_look() {
        let out = container_devices(&[gpu(0, Some(0))], &host());
        assert!(out.mounts.iter().all(|m| m.readonly));
        let cuda = out
            .mounts
            .iter()
            .find(|m| m.destination.ends_with("libcuda.so.1"))
            .unwrap();
        assert_eq!(cuda.source, "/usr/local/nvidia/lib64/libcuda.so.1");
        assert_eq!(cuda.destination, "/usr/local/nvidia/lib64/libcuda.so.1");
        let smi = out
            .mounts
            .iter()
            .find(|m| m.destination.ends_with("nvidia-smi"))
            .unwrap();
        assert_eq!(smi.destination, "/usr/local/nvidia/bin/nvidia-smi");
        assert!(!out.mounts.iter().any(|m| m.source.contains("cublas")));
    }

    #[test]
    fn environment_names_the_assigned_uuids() {
        let out = container_devices(&[gpu(2, Some(2)), gpu(0, Some(0))], &host());
        let env: BTreeMap<_, _> = out.env.iter().cloned().collect();
        assert_eq!(env["NVIDIA_VISIBLE_DEVICES"], "GPU-2,GPU-0");
        assert_eq!(env["CUDA_VISIBLE_DEVICES"], "GPU-2,GPU-0");
        assert_eq!(env["NVIDIA_DRIVER_CAPABILITIES"], "compute,utility");
    }

    #[test]
    fn what_the_host_lacks_is_listed() {
        let bare = HostGpuFiles::default();
        let out = container_devices(&[gpu(0, Some(0)), gpu(5, None)], &bare);
        assert!(out.devices.is_empty());
        let missing = out.missing.join("\n");
        for expected in [
            "/dev/nvidia0",
            "GPU 5",
            "/dev/nvidiactl",
            "libcuda.so.1 not found",
            "libnvidia-ml.so.1",
        ] {
            assert!(missing.contains(expected), "{expected} not in {missing}");
        }
    }

    #[test]
    fn no_gpus_means_nothing_exposed() {
        assert_eq!(container_devices(&[], &host()), ContainerGpu::default());
    }

    #[test]
    fn cdi_needs_both_the_tool_and_a_spec() {
        assert!(!cdi_status(None, vec!["/etc/cdi/nvidia.yaml".into()]).available);
        assert!(!cdi_status(Some("/usr/bin/nvidia-ctk".into()), vec![]).available);
        assert!(
            cdi_status(
                Some("/usr/bin/nvidia-ctk".into()),
                vec!["/etc/cdi/nvidia.yaml".into()]
            )
            .available
        );
        assert!(is_spec(Path::new("/etc/cdi/nvidia.yaml")));
        assert!(!is_spec(Path::new("/etc/cdi/README")));
    }

    #[test]
    fn stat_reads_character_devices_only() {
        let null = stat_device(Path::new("/dev/null")).unwrap();
        assert_eq!((null.kind, null.major, null.minor), ('c', 1, 3));
        assert!(stat_device(Path::new(env!("CARGO_MANIFEST_PATH"))).is_none());
        assert!(stat_device(Path::new("/nonexistent")).is_none());
    }

    #[test]
    fn probing_this_host_does_not_fail() {
        let host = HostGpuFiles::probe();
        assert!(host.nodes.iter().all(|n| n.path.starts_with("/dev/nvidia")));
        let _ = cdi_available();
    }
}
