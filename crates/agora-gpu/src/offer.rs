//! The GPU part of a provider's asks: identical GPUs grouped, with the driver and CUDA
//! versions and, once measured, the benchmark's TFLOPS.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{Detection, MigMode};

/// One group of identical GPUs as an ask advertises it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuOffer {
    /// Market class, e.g. `NVIDIA-H200`.
    pub class_model: String,
    /// Memory of each GPU, bytes.
    pub memory_bytes: u64,
    /// How many GPUs of this group can be assigned (MIG-mode GPUs are left out).
    pub count: u32,
    /// Compute capability, e.g. `9.0`.
    pub compute_capability: Option<String>,
    /// Driver version.
    pub driver_version: Option<String>,
    /// Highest CUDA version the driver supports.
    pub cuda_version: Option<String>,
    /// FP32 TFLOPS of one GPU, when benchmarked.
    pub fp32_tflops: Option<f64>,
    /// FP16 (tensor core) TFLOPS of one GPU, when benchmarked.
    pub fp16_tflops: Option<f64>,
}

/// The groups to advertise, by class then memory. Benchmark figures are filled in by the
/// caller (the benchmark runs on one GPU of a group).
pub fn offers(detection: &Detection) -> Vec<GpuOffer> {
    let mut groups: BTreeMap<(&str, u64), GpuOffer> = BTreeMap::new();
    for gpu in detection
        .gpus
        .iter()
        .filter(|g| g.mig_mode != MigMode::Enabled)
    {
        let key = (gpu.class_model.as_str(), gpu.memory_bytes);
        groups
            .entry(key)
            .or_insert_with(|| GpuOffer {
                class_model: gpu.class_model.clone(),
                memory_bytes: gpu.memory_bytes,
                count: 0,
                compute_capability: gpu.compute_capability.clone(),
                driver_version: detection.driver_version.clone(),
                cuda_version: detection.cuda_version.clone(),
                fp32_tflops: None,
                fp16_tflops: None,
            })
            .count += 1;
    }
    groups.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smi::{QUERY_FIELDS, parse_query_csv};
    use crate::types::DetectionSource;

    #[test]
    fn identical_gpus_are_one_offer_and_mig_ones_are_left_out() {
        let text = include_str!("../tests/fixtures/synthetic-multi-gpu-query.csv");
        let query = parse_query_csv(QUERY_FIELDS, text).unwrap();
        let detection = Detection {
            gpus: query.gpus,
            driver_version: query.driver_version,
            cuda_version: Some("12.4".into()),
            source: DetectionSource::NvidiaSmi,
            why_none: None,
            nvml_error: None,
        };
        let offers = offers(&detection);
        let summary: Vec<(&str, u32)> = offers
            .iter()
            .map(|o| (o.class_model.as_str(), o.count))
            .collect();
        assert_eq!(
            summary,
            [
                ("NVIDIA-A100-SXM4-40GB", 1),
                ("NVIDIA-A100-SXM4-80GB", 3),
                ("NVIDIA-L4", 2),
                ("Tesla-T4", 1)
            ]
        );
        assert!(
            offers
                .iter()
                .all(|o| o.cuda_version.as_deref() == Some("12.4"))
        );
        assert!(
            offers
                .iter()
                .all(|o| o.driver_version.as_deref() == Some("550.54.15"))
        );
    }

    #[test]
    fn no_gpus_no_offers() {
        assert!(offers(&Detection::none("no driver")).is_empty());
    }
}
