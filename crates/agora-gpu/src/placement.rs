//! Which of a provider's GPUs a job gets: a pure function of the GPUs, the ones busy with
//! running jobs and the job's [`GpuDemand`].
//!
//! Rules:
//! - A job's GPUs are all of one model (one market class), never busy, each with at least
//!   the demanded memory, and never in MIG mode (a MIG-split GPU cannot be handed out
//!   whole; MIG slices are not offered yet).
//! - Best fit across models: when the demand names no model, the model with the smallest
//!   memory that satisfies it is chosen, so large GPUs stay free for demands that need
//!   them (ties: the class name in byte order).
//! - Within the chosen model, the lowest free indices are taken, so placement is
//!   deterministic and reproducible.
//! - A demand that cannot be met gets a [`PlacementRefusal`] naming the closest miss,
//!   in this order: all busy (will clear), too little memory, not enough GPUs, model absent.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::types::{GpuInfo, MigMode, class_model};

/// What a job asks of a provider's GPUs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuDemand {
    /// The market class (`NVIDIA-H200`) or driver name (`NVIDIA H200`); any model when
    /// `None`. Compared case-insensitively, spaces and `-` alike.
    pub model: Option<String>,
    /// How many GPUs; 0 places nothing and always succeeds.
    pub count: u32,
    /// The least memory each GPU must have, in bytes.
    pub min_memory_bytes: u64,
}

/// Why a demand cannot be placed on this provider now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum PlacementRefusal {
    /// The provider has no GPU it can hand out.
    #[error("this provider has no GPU that can be assigned (none detected, or all in MIG mode)")]
    NoGpus,
    /// The provider has no GPU of the demanded model.
    #[error("no {model} GPU here; this provider has {available:?}")]
    ModelAbsent {
        /// The demanded class.
        model: String,
        /// The classes present.
        available: Vec<String>,
    },
    /// Fewer GPUs of the model than demanded, busy or not.
    #[error(
        "{model}: {wanted} GPUs demanded, this provider has {have} usable ({mig_excluded} more in MIG mode)"
    )]
    NotEnoughGpus {
        /// The class with the most GPUs that matched.
        model: String,
        /// GPUs demanded.
        wanted: u32,
        /// Usable GPUs of that class.
        have: u32,
        /// GPUs of that class excluded because they are in MIG mode.
        mig_excluded: u32,
    },
    /// Enough GPUs of the model, but too few with the demanded memory.
    #[error("{model}: each GPU needs {wanted_bytes} bytes, the largest has {largest_bytes}")]
    TooLittleMemory {
        /// The class.
        model: String,
        /// Memory demanded per GPU.
        wanted_bytes: u64,
        /// The largest GPU of that class.
        largest_bytes: u64,
    },
    /// Enough suitable GPUs exist but too many are assigned to running jobs; retry later.
    #[error("{model}: {wanted} GPUs demanded, {free} free, {busy} busy with running jobs")]
    AllBusy {
        /// The class.
        model: String,
        /// GPUs demanded.
        wanted: u32,
        /// Suitable GPUs free now.
        free: u32,
        /// Suitable GPUs busy now.
        busy: u32,
    },
}

/// The GPU indices (ascending) a demand gets, or why it gets none. `busy` holds the
/// indices already assigned to running jobs; the answer never contains one of them, nor
/// any index twice.
pub fn place(
    gpus: &[GpuInfo],
    busy: &BTreeSet<u32>,
    demand: &GpuDemand,
) -> Result<Vec<u32>, PlacementRefusal> {
    if demand.count == 0 {
        return Ok(Vec::new());
    }
    let groups = groups(gpus, demand.model.as_deref());
    let wanted = demand.count as usize;
    let best = groups
        .values()
        .filter_map(|group| group.choose(busy, demand.min_memory_bytes, wanted))
        .min_by_key(|(memory, indices)| (*memory, indices.first().copied()));
    match best {
        Some((_, indices)) => Ok(indices),
        None => Err(refusal(gpus, &groups, busy, demand)),
    }
}

/// The GPUs of one class, MIG ones apart.
#[derive(Default)]
struct Group<'a> {
    usable: Vec<&'a GpuInfo>,
    mig: u32,
}

impl Group<'_> {
    /// Usable GPUs with enough memory.
    fn eligible(&self, min_memory: u64) -> impl Iterator<Item = &GpuInfo> {
        self.usable
            .iter()
            .copied()
            .filter(move |g| g.memory_bytes >= min_memory)
    }

    /// The lowest `wanted` free eligible indices and the most memory among them.
    fn choose(
        &self,
        busy: &BTreeSet<u32>,
        min_memory: u64,
        wanted: usize,
    ) -> Option<(u64, Vec<u32>)> {
        let chosen: Vec<&GpuInfo> = self
            .eligible(min_memory)
            .filter(|g| !busy.contains(&g.index))
            .take(wanted)
            .collect();
        let memory = chosen.iter().map(|g| g.memory_bytes).max()?;
        (chosen.len() == wanted).then(|| (memory, chosen.iter().map(|g| g.index).collect()))
    }
}

/// GPUs by class, each class sorted by index, duplicate indices dropped, filtered by the
/// demanded model.
fn groups<'a>(gpus: &'a [GpuInfo], model: Option<&str>) -> BTreeMap<String, Group<'a>> {
    let wanted = model.map(normalise);
    let mut seen = BTreeSet::new();
    let mut sorted: Vec<&GpuInfo> = gpus.iter().collect();
    sorted.sort_by_key(|g| g.index);
    let mut groups: BTreeMap<String, Group<'a>> = BTreeMap::new();
    for gpu in sorted {
        let matches = wanted
            .as_ref()
            .is_none_or(|w| *w == normalise(&gpu.class_model));
        if !seen.insert(gpu.index) || !matches {
            continue;
        }
        let group = groups.entry(gpu.class_model.clone()).or_default();
        match gpu.mig_mode {
            MigMode::Enabled => group.mig += 1,
            _ => group.usable.push(gpu),
        }
    }
    groups
}

fn normalise(model: &str) -> String {
    class_model(model).to_ascii_lowercase()
}

fn refusal(
    gpus: &[GpuInfo],
    groups: &BTreeMap<String, Group<'_>>,
    busy: &BTreeSet<u32>,
    demand: &GpuDemand,
) -> PlacementRefusal {
    let wanted = demand.count as usize;
    let min = demand.min_memory_bytes;
    let all_busy = groups
        .iter()
        .filter(|(_, g)| g.eligible(min).count() >= wanted)
        .map(|(name, g)| {
            let free = g.eligible(min).filter(|x| !busy.contains(&x.index)).count();
            (free, name, g.eligible(min).count() - free)
        })
        .max_by_key(|(free, _, _)| *free);
    if let Some((free, model, busy)) = all_busy {
        return PlacementRefusal::AllBusy {
            model: model.clone(),
            wanted: demand.count,
            free: free as u32,
            busy: busy as u32,
        };
    }
    let short_of_memory = groups
        .iter()
        .filter(|(_, g)| g.usable.len() >= wanted)
        .map(|(name, g)| (g.usable.iter().map(|x| x.memory_bytes).max(), name))
        .max();
    if let Some((largest, model)) = short_of_memory {
        return PlacementRefusal::TooLittleMemory {
            model: model.clone(),
            wanted_bytes: min,
            largest_bytes: largest.unwrap_or(0),
        };
    }
    not_enough(gpus, groups, demand)
}

fn not_enough(
    gpus: &[GpuInfo],
    groups: &BTreeMap<String, Group<'_>>,
    demand: &GpuDemand,
) -> PlacementRefusal {
    let largest = groups
        .iter()
        .filter(|(_, g)| !g.usable.is_empty())
        .max_by_key(|(_, g)| g.usable.len());
    match (largest, &demand.model) {
        (Some((model, group)), _) => PlacementRefusal::NotEnoughGpus {
            model: model.clone(),
            wanted: demand.count,
            have: group.usable.len() as u32,
            mig_excluded: group.mig,
        },
        (None, Some(model)) if groups.is_empty() && !gpus.is_empty() => {
            let available: BTreeSet<String> = gpus.iter().map(|g| g.class_model.clone()).collect();
            PlacementRefusal::ModelAbsent {
                model: class_model(model),
                available: available.into_iter().collect(),
            }
        }
        (None, _) => PlacementRefusal::NoGpus,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GIB: u64 = 1 << 30;

    fn gpu(index: u32, model: &str, gib: u64) -> GpuInfo {
        GpuInfo {
            index,
            uuid: format!("GPU-{index}"),
            model: model.to_owned(),
            class_model: class_model(model),
            memory_bytes: gib * GIB,
            pci_bus_id: String::new(),
            compute_capability: None,
            minor_number: Some(index),
            mig_mode: MigMode::Disabled,
        }
    }

    fn demand(model: Option<&str>, count: u32, gib: u64) -> GpuDemand {
        GpuDemand {
            model: model.map(str::to_owned),
            count,
            min_memory_bytes: gib * GIB,
        }
    }

    fn machine() -> Vec<GpuInfo> {
        vec![
            gpu(0, "NVIDIA H200", 141),
            gpu(1, "NVIDIA H200", 141),
            gpu(2, "NVIDIA L4", 22),
            gpu(3, "NVIDIA H200", 141),
            gpu(4, "NVIDIA L4", 22),
        ]
    }

    fn busy(indices: &[u32]) -> BTreeSet<u32> {
        indices.iter().copied().collect()
    }

    #[test]
    fn lowest_free_indices_of_the_model_are_taken() {
        let gpus = machine();
        let got = place(&gpus, &busy(&[]), &demand(Some("NVIDIA-H200"), 2, 80));
        assert_eq!(got, Ok(vec![0, 1]));
        let got = place(&gpus, &busy(&[0]), &demand(Some("nvidia h200"), 2, 80));
        assert_eq!(got, Ok(vec![1, 3]));
    }

    #[test]
    fn any_model_means_the_smallest_gpus_that_fit() {
        let gpus = machine();
        assert_eq!(place(&gpus, &busy(&[]), &demand(None, 1, 16)), Ok(vec![2]));
        assert_eq!(place(&gpus, &busy(&[]), &demand(None, 1, 40)), Ok(vec![0]));
        assert_eq!(place(&gpus, &busy(&[2]), &demand(None, 1, 16)), Ok(vec![4]));
        assert_eq!(
            place(&gpus, &busy(&[2, 4]), &demand(None, 1, 16)),
            Ok(vec![0])
        );
    }

    #[test]
    fn zero_gpus_is_always_placed() {
        assert_eq!(place(&[], &busy(&[]), &demand(None, 0, 0)), Ok(vec![]));
    }

    #[test]
    fn refusals_name_the_closest_miss() {
        let gpus = machine();
        assert_eq!(
            place(&gpus, &busy(&[0, 1]), &demand(Some("NVIDIA-H200"), 2, 80)),
            Err(PlacementRefusal::AllBusy {
                model: "NVIDIA-H200".into(),
                wanted: 2,
                free: 1,
                busy: 2
            })
        );
        assert_eq!(
            place(&gpus, &busy(&[]), &demand(Some("NVIDIA-L4"), 2, 40)),
            Err(PlacementRefusal::TooLittleMemory {
                model: "NVIDIA-L4".into(),
                wanted_bytes: 40 * GIB,
                largest_bytes: 22 * GIB
            })
        );
        assert_eq!(
            place(&gpus, &busy(&[]), &demand(Some("NVIDIA-H200"), 4, 0)),
            Err(PlacementRefusal::NotEnoughGpus {
                model: "NVIDIA-H200".into(),
                wanted: 4,
                have: 3,
                mig_excluded: 0
            })
        );
        let err = place(&gpus, &busy(&[]), &demand(Some("NVIDIA A100"), 1, 0)).unwrap_err();
        assert_eq!(
            err,
            PlacementRefusal::ModelAbsent {
                model: "NVIDIA-A100".into(),
                available: vec!["NVIDIA-H200".into(), "NVIDIA-L4".into()]
            }
        );
        assert!(err.to_string().contains("no NVIDIA-A100 GPU here"), "{err}");
        assert_eq!(
            place(&[], &busy(&[]), &demand(None, 1, 0)),
            Err(PlacementRefusal::NoGpus)
        );
    }

    #[test]
    fn mig_gpus_are_not_handed_out() {
        let mut gpus = machine();
        gpus[0].mig_mode = MigMode::Enabled;
        let got = place(&gpus, &busy(&[]), &demand(Some("NVIDIA-H200"), 2, 0));
        assert_eq!(got, Ok(vec![1, 3]));
        let err = place(&gpus, &busy(&[]), &demand(Some("NVIDIA-H200"), 3, 0)).unwrap_err();
        assert!(
            matches!(
                err,
                PlacementRefusal::NotEnoughGpus {
                    have: 2,
                    mig_excluded: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        for g in &mut gpus {
            g.mig_mode = MigMode::Enabled;
        }
        let err = place(&gpus, &busy(&[]), &demand(None, 1, 0)).unwrap_err();
        assert_eq!(err, PlacementRefusal::NoGpus);
    }

    #[test]
    fn refusals_serialise_with_a_reason_tag() {
        let json = serde_json::to_value(PlacementRefusal::NoGpus).unwrap();
        assert_eq!(json["reason"], "no_gpus");
    }

    fn arb_gpus() -> impl Strategy<Value = Vec<GpuInfo>> {
        let models = ["NVIDIA H200", "NVIDIA L4", "Tesla T4"];
        proptest::collection::vec((0u32..12, 0usize..3, 1u64..160, any::<bool>()), 0..10).prop_map(
            move |specs| {
                specs
                    .into_iter()
                    .map(|(index, m, gib, mig)| {
                        let mut g = gpu(index, models[m], gib);
                        if mig {
                            g.mig_mode = MigMode::Enabled;
                        }
                        g
                    })
                    .collect()
            },
        )
    }

    fn arb_demand() -> impl Strategy<Value = GpuDemand> {
        let models = [None, Some("NVIDIA-H200"), Some("nvidia l4"), Some("A100")];
        (0usize..4, 0u32..5, 0u64..160)
            .prop_map(move |(m, count, gib)| demand(models[m], count, gib))
    }

    /// Whether some class has `count` free, non-MIG GPUs with the memory.
    fn feasible(gpus: &[GpuInfo], busy: &BTreeSet<u32>, d: &GpuDemand) -> bool {
        let mut free: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        let mut sorted: Vec<_> = gpus.iter().collect();
        sorted.sort_by_key(|g| g.index);
        for g in sorted {
            let model_ok = d
                .model
                .as_ref()
                .is_none_or(|m| normalise(m) == normalise(&g.class_model));
            if seen.insert(g.index)
                && model_ok
                && g.mig_mode != MigMode::Enabled
                && g.memory_bytes >= d.min_memory_bytes
                && !busy.contains(&g.index)
            {
                free.entry(g.class_model.clone())
                    .or_default()
                    .insert(g.index);
            }
        }
        d.count == 0 || free.values().any(|s| s.len() >= d.count as usize)
    }

    proptest! {
        #[test]
        fn placements_are_valid_and_refused_only_when_impossible(
            gpus in arb_gpus(),
            busy_list in proptest::collection::vec(0u32..12, 0..6),
            d in arb_demand(),
        ) {
            let busy: BTreeSet<u32> = busy_list.into_iter().collect();
            match place(&gpus, &busy, &d) {
                Ok(indices) => {
                    prop_assert_eq!(indices.len(), d.count as usize);
                    let unique: BTreeSet<u32> = indices.iter().copied().collect();
                    prop_assert_eq!(unique.len(), indices.len());
                    let chosen: Vec<&GpuInfo> = indices
                        .iter()
                        .map(|i| gpus.iter().find(|g| g.index == *i).unwrap())
                        .collect();
                    for g in &chosen {
                        prop_assert!(!busy.contains(&g.index));
                        prop_assert!(g.memory_bytes >= d.min_memory_bytes);
                        prop_assert_eq!(&g.class_model, &chosen[0].class_model);
                    }
                }
                Err(refusal) => prop_assert!(!feasible(&gpus, &busy, &d), "{refusal}"),
            }
        }

        #[test]
        fn successive_jobs_never_share_a_gpu(
            gpus in arb_gpus(),
            demands in proptest::collection::vec(arb_demand(), 1..8),
        ) {
            let mut busy = BTreeSet::new();
            for d in demands {
                if let Ok(indices) = place(&gpus, &busy, &d) {
                    for i in indices {
                        prop_assert!(busy.insert(i), "GPU {} assigned twice", i);
                    }
                }
            }
        }
    }
}
