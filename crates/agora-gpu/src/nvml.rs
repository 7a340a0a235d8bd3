//! GPU detection through NVML (`nvml-wrapper`, which loads `libnvidia-ml.so.1` at run
//! time): the first choice of [`crate::detect()`], since it needs no process and no parsing.

use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

use crate::types::{Detection, DetectionSource, GpuInfo, MigMode, class_model, cuda_version_text};

/// Lists GPUs through NVML, or says why NVML could not be used (the text becomes
/// [`Detection::nvml_error`]).
pub fn detect_nvml() -> Result<Detection, String> {
    let nvml = Nvml::init().map_err(|e| describe(&e))?;
    let count = nvml
        .device_count()
        .map_err(|e| format!("NVML device count: {e}"))?;
    let gpus = (0..count)
        .map(|index| gpu(&nvml, index))
        .collect::<Result<Vec<_>, _>>()?;
    let why_none = gpus.is_empty().then(|| "NVML reports no GPUs".to_owned());
    Ok(Detection {
        gpus,
        driver_version: nvml.sys_driver_version().ok(),
        cuda_version: nvml.sys_cuda_driver_version().ok().map(cuda_version_text),
        source: DetectionSource::Nvml,
        why_none,
        nvml_error: None,
    })
}

fn describe(error: &NvmlError) -> String {
    match error {
        NvmlError::LibloadingError(e) => format!(
            "NVML not available: libnvidia-ml.so.1 could not be loaded ({e}); install the NVIDIA driver to offer GPUs"
        ),
        NvmlError::DriverNotLoaded => {
            "NVML: the NVIDIA kernel driver is not loaded (modprobe nvidia)".to_owned()
        }
        NvmlError::NoPermission => {
            "NVML: no permission to open /dev/nvidia*; run the provider in the video group or as root"
                .to_owned()
        }
        other => format!("NVML init failed: {other}"),
    }
}

fn gpu(nvml: &Nvml, index: u32) -> Result<GpuInfo, String> {
    let context = |what: &str, e: NvmlError| format!("NVML GPU {index} {what}: {e}");
    let device = nvml
        .device_by_index(index)
        .map_err(|e| context("handle", e))?;
    let model = device.name().map_err(|e| context("name", e))?;
    Ok(GpuInfo {
        index,
        uuid: device.uuid().map_err(|e| context("uuid", e))?,
        class_model: class_model(&model),
        model,
        memory_bytes: device
            .memory_info()
            .map_err(|e| context("memory", e))?
            .total,
        pci_bus_id: device.pci_info().map(|p| p.bus_id).unwrap_or_default(),
        compute_capability: device
            .cuda_compute_capability()
            .ok()
            .map(|c| format!("{}.{}", c.major, c.minor)),
        minor_number: device.minor_number().ok(),
        mig_mode: match device.mig_mode() {
            Ok(mode) if mode.current == 1 => MigMode::Enabled,
            Ok(_) => MigMode::Disabled,
            Err(NvmlError::NotSupported) => MigMode::NotSupported,
            Err(_) => MigMode::Unknown,
        },
    })
}
