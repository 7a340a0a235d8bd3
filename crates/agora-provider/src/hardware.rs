//! What this machine has to offer: cores, memory, disk, GPUs and architecture.
//!
//! The parsers ([`parse_meminfo`], [`parse_nvidia_smi`], [`parse_size`]) are pure and
//! unit-tested on sample text; [`Hardware::detect`] is the thin layer that reads the
//! system (`available_parallelism`, `/proc/meminfo`, `statvfs` on the data directory and
//! `nvidia-smi` when it is installed). [`Capacity`] is what the agent declares in its
//! asks: the detected figures unless the operator overrides them.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use agora_market::{GpuGroup, Resources};
use serde::{Deserialize, Serialize};

/// One GPU as `nvidia-smi` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    /// Its model name with spaces replaced by `-` (the market's class names have no spaces).
    pub model: String,
    /// Its memory in bytes.
    pub vram_bytes: u64,
}

/// The machine as detected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hardware {
    /// Logical CPUs this process may use.
    pub cores: u32,
    /// Physical memory in bytes (`MemTotal`).
    pub memory_total_bytes: u64,
    /// Memory available for new work in bytes (`MemAvailable`).
    pub memory_available_bytes: u64,
    /// Free space on the data directory's file system, for non-root users.
    pub disk_free_bytes: u64,
    /// GPUs, empty when there are none or `nvidia-smi` is not installed.
    pub gpus: Vec<Gpu>,
    /// The CPU architecture, e.g. `x86_64`.
    pub arch: String,
}

/// Why a hardware figure could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum HardwareError {
    /// `/proc/meminfo` lacks a field or has one that is not a number of kB.
    #[error(
        "cannot read {field} from /proc/meminfo: {detail}; pass --memory SIZE to declare memory by hand"
    )]
    MemInfo {
        /// The field (`MemTotal` or `MemAvailable`).
        field: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A file could not be read or a system call failed.
    #[error("cannot inspect {what}: {source}")]
    Io {
        /// What was being inspected.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A size flag that is not a size.
    #[error(
        "invalid size {0:?}: expected bytes or a number with K, M, G or T (powers of 1024), e.g. 8G"
    )]
    Size(String),
}

/// Total and available memory from `/proc/meminfo` text, in bytes.
pub fn parse_meminfo(text: &str) -> Result<(u64, u64), HardwareError> {
    let field =
        |name: &'static str| -> Result<u64, HardwareError> {
            let line = text
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .ok_or_else(|| HardwareError::MemInfo {
                    field: name,
                    detail: "field missing".into(),
                })?;
            let mut words = line.split_whitespace();
            let kib: u64 = words.next().and_then(|n| n.parse().ok()).ok_or_else(|| {
                HardwareError::MemInfo {
                    field: name,
                    detail: format!("{:?} is not a number", line.trim()),
                }
            })?;
            match words.next() {
                Some("kB") => kib.checked_mul(1024).ok_or_else(|| HardwareError::MemInfo {
                    field: name,
                    detail: "value overflows".into(),
                }),
                other => Err(HardwareError::MemInfo {
                    field: name,
                    detail: format!("unit {other:?} is not kB"),
                }),
            }
        };
    Ok((field("MemTotal")?, field("MemAvailable")?))
}

/// GPUs from the output of
/// `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader` (e.g.
/// `NVIDIA H100 80GB HBM3, 81559 MiB`). Lines that do not parse are skipped: a GPU the
/// agent cannot describe is a GPU it does not offer.
pub fn parse_nvidia_smi(text: &str) -> Vec<Gpu> {
    text.lines()
        .filter_map(|line| {
            let (name, memory) = line.rsplit_once(',')?;
            let model = name.split_whitespace().collect::<Vec<_>>().join("-");
            let mut words = memory.split_whitespace();
            let amount: u64 = words.next()?.parse().ok()?;
            let scale = match words.next()? {
                "MiB" => 1 << 20,
                "GiB" => 1 << 30,
                "KiB" => 1 << 10,
                _ => return None,
            };
            (!model.is_empty() && amount > 0).then(|| Gpu {
                model,
                vram_bytes: amount.saturating_mul(scale),
            })
        })
        .collect()
}

/// Groups identical GPUs the way asks describe them (a job's GPUs come from one group).
pub fn group_gpus(gpus: &[Gpu]) -> Vec<GpuGroup> {
    let mut groups: BTreeMap<(&str, u64), u32> = BTreeMap::new();
    for gpu in gpus {
        *groups.entry((&gpu.model, gpu.vram_bytes)).or_default() += 1;
    }
    groups
        .into_iter()
        .map(|((model, vram_bytes), count)| GpuGroup {
            model: model.to_owned(),
            vram_bytes,
            count,
        })
        .collect()
}

/// A size such as `8G`, `512M`, `1.5G` or plain bytes; suffixes are powers of 1024 and
/// may end in `B`/`iB` (`8GiB`).
pub fn parse_size(text: &str) -> Result<u64, HardwareError> {
    let err = || HardwareError::Size(text.to_owned());
    let trimmed = text.trim();
    let upper = trimmed.to_ascii_uppercase();
    let number = upper
        .trim_end_matches("IB")
        .trim_end_matches('B')
        .trim_end();
    let (digits, shift) = match number.chars().last() {
        Some('K') => (&number[..number.len() - 1], 10),
        Some('M') => (&number[..number.len() - 1], 20),
        Some('G') => (&number[..number.len() - 1], 30),
        Some('T') => (&number[..number.len() - 1], 40),
        _ => (number, 0),
    };
    let value: f64 = digits.trim().parse().map_err(|_| err())?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(err());
    }
    Ok(bytes as u64)
}

impl Hardware {
    /// Reads this machine. `data_dir` must exist (its file system's free space is measured).
    /// GPUs are listed only if `nvidia-smi` runs and succeeds; otherwise there are none.
    pub fn detect(data_dir: &Path) -> Result<Hardware, HardwareError> {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let meminfo =
            std::fs::read_to_string("/proc/meminfo").map_err(|source| HardwareError::Io {
                what: "/proc/meminfo".into(),
                source,
            })?;
        let (memory_total_bytes, memory_available_bytes) = parse_meminfo(&meminfo)?;
        Ok(Hardware {
            cores,
            memory_total_bytes,
            memory_available_bytes,
            disk_free_bytes: disk_free(data_dir)?,
            gpus: detect_gpus(),
            arch: std::env::consts::ARCH.to_owned(),
        })
    }
}

/// Free bytes for unprivileged users on the file system holding `path`.
pub fn disk_free(path: &Path) -> Result<u64, HardwareError> {
    use std::os::unix::ffi::OsStrExt;
    let io = |source| HardwareError::Io {
        what: format!("free space of {}", path.display()),
        source,
    };
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` a properly sized,
    // zero-initialised out-parameter that statvfs fills on success.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(io(std::io::Error::last_os_error()));
    }
    #[allow(clippy::unnecessary_cast)] // the field widths differ between platforms
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// GPUs via `nvidia-smi`, or none when it is missing or fails.
fn detect_gpus() -> Vec<Gpu> {
    let output = Command::new("nvidia-smi")
        .args(["--query-gpu=name,memory.total", "--format=csv,noheader"])
        .output();
    match output {
        Ok(out) if out.status.success() => parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout)),
        _ => Vec::new(),
    }
}

/// Operator overrides of the detected figures (CLI `--cpus`, `--memory`, `--slots`, `--disk`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapacityOverrides {
    /// Cores to offer instead of all of them.
    pub cpus: Option<u32>,
    /// Memory to offer instead of what is available.
    pub memory_bytes: Option<u64>,
    /// Disk to offer instead of the free space.
    pub disk_bytes: Option<u64>,
    /// Jobs to run at once instead of one per offered core.
    pub slots: Option<u32>,
}

/// What the agent offers: the resources in its asks and how many jobs it runs at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// Cores offered: at most [`slots`](Capacity::slots).
    pub cpus: u32,
    /// Memory offered, bytes: also what the agent reserves from, byte for byte, so the
    /// market's accounting and the agent's agree.
    pub memory_bytes: u64,
    /// Scratch disk offered, bytes.
    pub disk_bytes: u64,
    /// GPU groups detected. Reported, but not offered in asks: the WASM executor runs on
    /// CPUs only, so offering GPUs would win orders the agent must then decline.
    pub gpus: Vec<GpuGroup>,
    /// Jobs run at once.
    pub slots: u32,
    /// The CPU architecture.
    pub arch: String,
}

/// Disk kept back from the offer so the data directory never fills up completely.
const DISK_RESERVE_BYTES: u64 = 1 << 30;

impl Capacity {
    /// The offer for `hardware` with `overrides` applied. Memory defaults to what is
    /// available now (not the total: other programs use the rest); slots default to one
    /// per core; every figure is at least 1 so the ask stays valid.
    ///
    /// The cores offered are at most the slots: the market sees only the ask, and
    /// matches one core per job, so an ask with more cores than slots wins orders the
    /// agent must decline (each decline costs the order an attempt and the provider
    /// reputation). A WASM job is single-threaded, so a core beyond the slots would idle
    /// anyway.
    pub fn from_hardware(hardware: &Hardware, overrides: &CapacityOverrides) -> Capacity {
        let cores = overrides.cpus.unwrap_or(hardware.cores).max(1);
        let slots = overrides.slots.unwrap_or(cores).max(1);
        Capacity {
            cpus: cores.min(slots),
            memory_bytes: overrides
                .memory_bytes
                .unwrap_or(hardware.memory_available_bytes)
                .max(1),
            disk_bytes: overrides
                .disk_bytes
                .unwrap_or(hardware.disk_free_bytes.saturating_sub(DISK_RESERVE_BYTES)),
            gpus: group_gpus(&hardware.gpus),
            slots,
            arch: hardware.arch.clone(),
        }
    }

    /// The resources an ask states (no GPUs; see [`Capacity::gpus`]).
    pub fn resources(&self) -> Resources {
        Resources {
            cpu_millis: u64::from(self.cpus) * 1000,
            memory_bytes: self.memory_bytes,
            disk_bytes: self.disk_bytes,
            gpus: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MEMINFO: &str = "MemTotal:       16318412 kB\nMemFree:         1186676 kB\nMemAvailable:   10514748 kB\nBuffers:          518480 kB\n";

    #[test]
    fn meminfo_is_read_in_bytes() {
        let (total, available) = parse_meminfo(MEMINFO).unwrap();
        assert_eq!(total, 16_318_412 * 1024);
        assert_eq!(available, 10_514_748 * 1024);
    }

    #[test]
    fn meminfo_problems_name_the_field() {
        let err = parse_meminfo("MemTotal: 12 kB\n").unwrap_err();
        assert!(err.to_string().contains("MemAvailable"), "{err}");
        let err = parse_meminfo("MemTotal: lots kB\nMemAvailable: 1 kB").unwrap_err();
        assert!(err.to_string().contains("MemTotal"), "{err}");
        let err = parse_meminfo("MemTotal: 12 MB\nMemAvailable: 1 kB").unwrap_err();
        assert!(err.to_string().contains("not kB"), "{err}");
    }

    #[test]
    fn nvidia_smi_lines_become_gpus() {
        let text = "NVIDIA H100 80GB HBM3, 81559 MiB\nNVIDIA H100 80GB HBM3, 81559 MiB\nTesla T4, 15360 MiB\n";
        let gpus = parse_nvidia_smi(text);
        assert_eq!(gpus.len(), 3);
        assert_eq!(gpus[0].model, "NVIDIA-H100-80GB-HBM3");
        assert_eq!(gpus[0].vram_bytes, 81_559 << 20);
        let groups = group_gpus(&gpus);
        assert_eq!(groups.len(), 2);
        let h100 = groups.iter().find(|g| g.model.contains("H100")).unwrap();
        assert_eq!(h100.count, 2);
    }

    #[test]
    fn unreadable_nvidia_smi_lines_are_skipped() {
        let text = "No devices were found\n, 100 MiB\nA100, many MiB\nA100, 40 PB\n";
        assert!(parse_nvidia_smi(text).is_empty());
        assert!(parse_nvidia_smi("").is_empty());
    }

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("8G").unwrap(), 8 << 30);
        assert_eq!(parse_size("8GiB").unwrap(), 8 << 30);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        for bad in ["", "G", "-1G", "0", "eight", "1e40T"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn capacity_follows_hardware_unless_overridden() {
        let hw = Hardware {
            cores: 8,
            memory_total_bytes: 32 << 30,
            memory_available_bytes: 20 << 30,
            disk_free_bytes: 100 << 30,
            gpus: vec![],
            arch: "x86_64".into(),
        };
        let cap = Capacity::from_hardware(&hw, &CapacityOverrides::default());
        assert_eq!((cap.cpus, cap.slots), (8, 8));
        assert_eq!(cap.memory_bytes, 20 << 30);
        assert_eq!(cap.disk_bytes, 99 << 30);
        assert_eq!(cap.resources().cpu_millis, 8000);
        let cap = Capacity::from_hardware(
            &hw,
            &CapacityOverrides {
                cpus: Some(2),
                memory_bytes: Some(1 << 30),
                slots: Some(0),
                disk_bytes: None,
            },
        );
        assert_eq!((cap.cpus, cap.slots, cap.memory_bytes), (1, 1, 1 << 30));
    }

    #[test]
    fn the_ask_never_offers_more_cores_than_slots() {
        let hw = Hardware {
            cores: 2,
            memory_total_bytes: 8 << 30,
            memory_available_bytes: 4 << 30,
            disk_free_bytes: 10 << 30,
            gpus: vec![],
            arch: "x86_64".into(),
        };
        let with = |cpus, slots| {
            let cap = Capacity::from_hardware(
                &hw,
                &CapacityOverrides {
                    cpus,
                    slots,
                    ..CapacityOverrides::default()
                },
            );
            (cap.cpus, cap.slots, cap.resources().cpu_millis)
        };
        // A one-slot agent on a two-core machine offers one core: the market assigns it
        // one job at a time, which is what it accepts.
        assert_eq!(with(None, Some(1)), (1, 1, 1000));
        assert_eq!(with(Some(8), Some(3)), (3, 3, 3000));
        // More slots than cores: every core is offered; jobs smaller than a core may share.
        assert_eq!(with(None, Some(4)), (2, 4, 2000));
        assert_eq!(with(None, None), (2, 2, 2000));
    }

    #[test]
    fn free_space_of_a_missing_directory_is_an_error() {
        let err = disk_free(Path::new("/nonexistent/agora/data")).unwrap_err();
        assert!(
            err.to_string().contains("free space of /nonexistent"),
            "{err}"
        );
    }

    #[test]
    fn this_machine_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let hw = Hardware::detect(dir.path()).unwrap();
        assert!(hw.cores >= 1);
        assert!(hw.memory_total_bytes >= hw.memory_available_bytes);
        assert!(hw.memory_total_bytes > 0);
        assert_eq!(hw.arch, std::env::consts::ARCH);
    }

    proptest! {
        #[test]
        fn whole_sizes_round_trip(n in 1u64..1_000_000, unit in 0usize..4) {
            let (suffix, shift) = [("K", 10), ("M", 20), ("G", 30), ("", 0)][unit];
            prop_assert_eq!(parse_size(&format!("{n}{suffix}")).unwrap(), n << shift);
        }

        #[test]
        fn meminfo_parser_never_panics(text in ".{0,200}") {
            let _ = parse_meminfo(&text);
            let _ = parse_nvidia_smi(&text);
        }
    }
}
