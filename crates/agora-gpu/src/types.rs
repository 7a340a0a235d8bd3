//! The shared vocabulary: one GPU ([`GpuInfo`]) and a machine's detection result
//! ([`Detection`]).

use serde::{Deserialize, Serialize};

/// Whether a GPU is split into MIG (multi-instance GPU) slices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigMode {
    /// MIG capable, not split: the whole GPU can be handed to one job.
    Disabled,
    /// Split into MIG instances: not offered whole (see [`crate::placement`]).
    Enabled,
    /// The GPU has no MIG support.
    NotSupported,
    /// The source did not say.
    Unknown,
}

impl MigMode {
    /// Reads `Disabled`, `Enabled`, `N/A`, `[N/A]` (as `nvidia-smi` prints them).
    pub fn from_smi(text: &str) -> MigMode {
        match text.trim().to_ascii_lowercase().as_str() {
            "disabled" => MigMode::Disabled,
            "enabled" => MigMode::Enabled,
            "n/a" | "[n/a]" | "[not supported]" | "not supported" => MigMode::NotSupported,
            _ => MigMode::Unknown,
        }
    }
}

/// One GPU of this machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// The driver's index (NVML / `nvidia-smi` order, which is PCI bus order).
    pub index: u32,
    /// The stable id, e.g. `GPU-bbab14d7-c848-33dd-a12c-497857c54ff5`.
    pub uuid: String,
    /// The model as the driver names it, e.g. `NVIDIA H200`.
    pub model: String,
    /// The market's class name: [`class_model`] of [`model`](GpuInfo::model), e.g. `NVIDIA-H200`.
    pub class_model: String,
    /// Total memory in bytes.
    pub memory_bytes: u64,
    /// PCI bus id, e.g. `00000000:00:06.0`.
    pub pci_bus_id: String,
    /// CUDA compute capability, e.g. `9.0`, when the source reports it.
    pub compute_capability: Option<String>,
    /// The `N` of `/dev/nvidiaN`, when known.
    pub minor_number: Option<u32>,
    /// MIG state.
    pub mig_mode: MigMode,
}

/// Where a [`Detection`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectionSource {
    /// NVML through `nvml-wrapper`.
    Nvml,
    /// Parsed `nvidia-smi` output.
    NvidiaSmi,
    /// Neither worked: see [`Detection::why_none`].
    None,
}

/// The GPUs of this machine and its driver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detection {
    /// The GPUs, in index order; empty when there are none.
    pub gpus: Vec<GpuInfo>,
    /// The kernel driver version, e.g. `580.159.04`.
    pub driver_version: Option<String>,
    /// The highest CUDA version the driver supports, e.g. `13.0`.
    pub cuda_version: Option<String>,
    /// Which source answered.
    pub source: DetectionSource,
    /// Why there are no GPUs, when [`source`](Detection::source) is `None` or the list is
    /// empty.
    pub why_none: Option<String>,
    /// Why NVML was not used, when the answer came from `nvidia-smi` (or from nowhere).
    pub nvml_error: Option<String>,
}

impl Detection {
    /// No GPUs, for the reason given.
    pub fn none(why: impl Into<String>) -> Detection {
        Detection {
            gpus: Vec::new(),
            driver_version: None,
            cuda_version: None,
            source: DetectionSource::None,
            why_none: Some(why.into()),
            nvml_error: None,
        }
    }
}

/// The market's class name for a model: whitespace runs become one `-`
/// (`NVIDIA H100 80GB HBM3` → `NVIDIA-H100-80GB-HBM3`), as the provider's
/// `hardware.rs` has always written it.
pub fn class_model(model: &str) -> String {
    model.split_whitespace().collect::<Vec<_>>().join("-")
}

/// `13000` → `13.0`, the CUDA driver API's integer version as text.
pub fn cuda_version_text(version: i32) -> String {
    format!("{}.{}", version / 1000, (version % 1000) / 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_have_no_spaces() {
        assert_eq!(class_model("NVIDIA H200"), "NVIDIA-H200");
        assert_eq!(
            class_model("  NVIDIA H100 80GB  HBM3 "),
            "NVIDIA-H100-80GB-HBM3"
        );
        assert_eq!(class_model("Tesla T4"), "Tesla-T4");
    }

    #[test]
    fn cuda_versions_read_as_text() {
        assert_eq!(cuda_version_text(13000), "13.0");
        assert_eq!(cuda_version_text(12040), "12.4");
    }

    #[test]
    fn mig_modes_parse() {
        assert_eq!(MigMode::from_smi("Disabled"), MigMode::Disabled);
        assert_eq!(MigMode::from_smi(" Enabled "), MigMode::Enabled);
        assert_eq!(MigMode::from_smi("[N/A]"), MigMode::NotSupported);
        assert_eq!(MigMode::from_smi("weird"), MigMode::Unknown);
    }
}
