//! The resource model: what a provider offers, what an order demands, and the resource
//! classes prices are quoted in.
//!
//! Quantities are integers in their natural unit (millicores, bytes, GPU counts) so that
//! capacity accounting is exact: a reservation subtracts exactly what a release adds back.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::MarketError;

/// One gibibyte, for readable sizes in code and messages.
pub const GIB: u64 = 1 << 30;
/// One mebibyte.
pub const MIB: u64 = 1 << 20;

/// The class a price is quoted for: `cpu`, or `gpu:<model>` (e.g. `gpu:A100`).
///
/// Prices differ by class because a GPU-hour and a core-hour are different goods; the spot
/// index is kept per class for the same reason.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResourceClass(String);

const GPU_PREFIX: &str = "gpu:";

impl ResourceClass {
    /// Plain CPU work.
    pub fn cpu() -> ResourceClass {
        ResourceClass("cpu".to_owned())
    }

    /// Work on GPUs of `model`.
    pub fn gpu(model: &str) -> ResourceClass {
        ResourceClass(format!("{GPU_PREFIX}{model}"))
    }

    /// The GPU model for `gpu:<model>` classes, `None` for `cpu`.
    pub fn gpu_model(&self) -> Option<&str> {
        self.0.strip_prefix(GPU_PREFIX)
    }

    /// The class name, e.g. `gpu:A100`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ResourceClass {
    type Err = MarketError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix(GPU_PREFIX) {
            _ if s == "cpu" => Ok(ResourceClass::cpu()),
            Some(model) if !model.is_empty() && !model.contains(char::is_whitespace) => {
                Ok(ResourceClass::gpu(model))
            }
            _ => Err(MarketError::UnknownResourceClass {
                class: s.to_owned(),
            }),
        }
    }
}

impl TryFrom<String> for ResourceClass {
    type Error = MarketError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ResourceClass> for String {
    fn from(class: ResourceClass) -> String {
        class.0
    }
}

impl fmt::Display for ResourceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ResourceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourceClass({})", self.0)
    }
}

/// A group of identical GPUs in one machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuGroup {
    /// Model name, e.g. `A100`; matched exactly against `gpu:<model>` classes.
    pub model: String,
    /// Memory of each GPU, in bytes.
    pub vram_bytes: u64,
    /// How many GPUs of this kind.
    pub count: u32,
}

/// The capacity an ask offers: the most that may be reserved on it at once.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Resources {
    /// CPU in millicores (1000 = one core).
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Scratch disk in bytes.
    pub disk_bytes: u64,
    /// GPU groups; a job's GPUs all come from one group.
    pub gpus: Vec<GpuGroup>,
}

/// A GPU need: `count` GPUs of one model with at least `min_vram_bytes` each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuDemand {
    /// A model, or `None` for any model (the order then spans every `gpu:*` class).
    pub model: Option<String>,
    /// Minimum memory per GPU.
    pub min_vram_bytes: u64,
    /// GPUs needed, all from one group.
    pub count: u32,
}

/// What one replica of an order reserves on its provider while it runs.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Demand {
    /// CPU in millicores.
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Scratch disk in bytes.
    pub disk_bytes: u64,
    /// GPUs, if the job needs any.
    pub gpu: Option<GpuDemand>,
}

impl Demand {
    /// The resource classes this demand can be priced in, given the classes present in
    /// the book (needed only for any-model GPU demands).
    pub fn classes<'a>(
        &self,
        book_classes: impl Iterator<Item = &'a ResourceClass>,
    ) -> Vec<ResourceClass> {
        match &self.gpu {
            None => vec![ResourceClass::cpu()],
            Some(GpuDemand {
                model: Some(model), ..
            }) => vec![ResourceClass::gpu(model)],
            Some(GpuDemand { model: None, .. }) => book_classes
                .filter(|c| c.gpu_model().is_some())
                .cloned()
                .collect(),
        }
    }
}

/// What one match holds on an ask; subtracted from free capacity until released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct Claim {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    /// (index of the GPU group in the ask, GPUs taken from it).
    pub gpu: Option<(usize, u32)>,
}

/// Bytes in a short human form: `24 GiB`, `512 MiB`, `1000 B`.
pub fn human_bytes(bytes: u64) -> String {
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else if bytes >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB as f64)
    } else if bytes >= MIB {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} B")
    }
}

/// Millicores in a short human form: `2 cores`, `1.5 cores`, `250m`.
pub fn human_cpu(millis: u64) -> String {
    if millis == 1000 {
        "1 core".into()
    } else if millis >= 1000 && millis.is_multiple_of(1000) {
        format!("{} cores", millis / 1000)
    } else if millis >= 1000 {
        format!("{:.1} cores", millis as f64 / 1000.0)
    } else {
        format!("{millis}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_parse_and_print() {
        assert_eq!(
            "cpu".parse::<ResourceClass>().unwrap(),
            ResourceClass::cpu()
        );
        let a100: ResourceClass = "gpu:A100".parse().unwrap();
        assert_eq!(a100.gpu_model(), Some("A100"));
        assert_eq!(a100.to_string(), "gpu:A100");
        for bad in ["", "gpu:", "tpu", "gpu:A 100"] {
            assert!(bad.parse::<ResourceClass>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<ResourceClass>("\"gpu:\"").is_err());
    }

    #[test]
    fn any_model_gpu_demand_spans_gpu_classes() {
        let book = [
            ResourceClass::cpu(),
            ResourceClass::gpu("A100"),
            ResourceClass::gpu("H100"),
        ];
        let demand = Demand {
            gpu: Some(GpuDemand {
                model: None,
                min_vram_bytes: 0,
                count: 1,
            }),
            ..Demand::default()
        };
        assert_eq!(
            demand.classes(book.iter()),
            vec![book[1].clone(), book[2].clone()]
        );
        assert_eq!(
            Demand::default().classes(book.iter()),
            vec![ResourceClass::cpu()]
        );
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(24 * GIB), "24 GiB");
        assert_eq!(human_bytes(512 * MIB), "512 MiB");
        assert_eq!(human_cpu(1500), "1.5 cores");
        assert_eq!(human_cpu(250), "250m");
    }
}
