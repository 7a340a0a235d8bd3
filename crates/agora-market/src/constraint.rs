//! Each requirement of an order as a separate, named check on one (ask, class) pair.
//!
//! The explanation walks these one by one to count whom each excluded; the brute-force
//! reference matcher requires all of them. They are written independently of the
//! matcher's fused hot-path check (`engine::evaluate`), so the property tests that compare
//! the two catch a divergence in either.

use std::fmt;

use agora_core::{Amount, Fuel, Price};

use crate::book::{AskEntry, ProviderState};
use crate::order::Order;
use crate::requirements::AttributeConstraint;
use crate::resources::{Demand, ResourceClass, human_bytes, human_cpu};

/// One (ask, class) pair as a constraint sees it.
pub(crate) struct PairView<'a> {
    pub entry: &'a AskEntry,
    pub provider: &'a ProviderState,
    /// `None` when the ask quotes none of the order's classes.
    pub class: Option<&'a ResourceClass>,
    /// The price offered (ask price, or bid price in an auction).
    pub price: Option<Price>,
    pub score_ppm: u32,
    pub now_ms: u64,
}

/// One requirement.
#[derive(Clone, Debug)]
pub(crate) enum Constraint<'a> {
    Serves(&'a Demand),
    Live,
    Attribute(&'a AttributeConstraint),
    Feature(&'a str),
    Arch(&'a str),
    GpuVram(u64),
    GpuCount { min_vram: u64, count: u32 },
    JobSize(Fuel),
    PriceCap(Price),
    MinReputation(u32),
    MinStake(Amount),
    HasAttribute(&'a str),
    FreeCpu(u64),
    FreeMemory(u64),
    FreeDisk(u64),
    FreeGpus { min_vram: u64, count: u32 },
}

/// The result of one check: pass or not, and what the pair has (for "nearest has …").
pub(crate) struct Verdict<'a> {
    pub ok: bool,
    /// (closeness — larger is nearer —, what it has). Formatted only when shown, since an
    /// explanation checks every ask in the book.
    pub has: Option<(u64, Has<'a>)>,
}

/// What a pair has, as raw values.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Has<'a> {
    Text(&'a str),
    Bytes(u64),
    Cpu(u64),
    Count(u64, &'static str),
    JobRange(Fuel, Fuel),
    Price(Price),
    Ppm(u32),
    Stake(Amount),
}

impl fmt::Display for Has<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Has::Text(t) => f.write_str(t),
            Has::Bytes(b) => f.write_str(&human_bytes(*b)),
            Has::Cpu(m) => f.write_str(&human_cpu(*m)),
            Has::Count(n, what) => write!(f, "{n} {what}"),
            Has::JobRange(lo, hi) => write!(f, "{}..={} fuel", lo.0, hi.0),
            Has::Price(p) => write!(f, "{p}"),
            Has::Ppm(p) => write!(f, "{p} ppm"),
            Has::Stake(a) => write!(f, "{a}"),
        }
    }
}

impl<'a> Verdict<'a> {
    fn flag(ok: bool) -> Verdict<'a> {
        Verdict { ok, has: None }
    }

    fn at_least(have: u64, need: u64, has: Has<'a>) -> Verdict<'a> {
        Verdict {
            ok: have >= need,
            has: Some((have, has)),
        }
    }
}

/// The order's constraints, in the order the explanation cascades through them: where and
/// what the machine is first (attributes, class, features, GPUs), then the order's terms,
/// then what is free right now.
pub(crate) fn constraints_of(order: &Order) -> Vec<Constraint<'_>> {
    let req = &order.requirements;
    let mut out = vec![Constraint::Live];
    out.extend(req.attributes.iter().map(Constraint::Attribute));
    out.push(Constraint::Serves(&order.demand));
    out.extend(req.features.iter().map(|f| Constraint::Feature(f)));
    if let Some(arch) = &req.arch {
        out.push(Constraint::Arch(arch));
    }
    if let Some(gpu) = &order.demand.gpu {
        out.push(Constraint::GpuVram(gpu.min_vram_bytes));
        out.push(Constraint::GpuCount {
            min_vram: gpu.min_vram_bytes,
            count: gpu.count,
        });
    }
    out.push(Constraint::JobSize(order.fuel));
    out.push(Constraint::PriceCap(order.cap));
    if req.min_reputation_ppm > 0 {
        out.push(Constraint::MinReputation(req.min_reputation_ppm));
    }
    if !req.min_stake.is_zero() {
        out.push(Constraint::MinStake(req.min_stake));
    }
    if let Some(key) = &req.distinct_by {
        out.push(Constraint::HasAttribute(key));
    }
    out.push(Constraint::FreeCpu(order.demand.cpu_millis));
    out.push(Constraint::FreeMemory(order.demand.memory_bytes));
    if order.demand.disk_bytes > 0 {
        out.push(Constraint::FreeDisk(order.demand.disk_bytes));
    }
    if let Some(gpu) = &order.demand.gpu {
        out.push(Constraint::FreeGpus {
            min_vram: gpu.min_vram_bytes,
            count: gpu.count,
        });
    }
    out
}

impl Constraint<'_> {
    /// A short name for the explanation, e.g. `region=eu` or `free vram ≥ 40 GiB`.
    pub fn label(&self) -> String {
        match self {
            Constraint::Serves(demand) => match demand.gpu.as_ref().map(|g| g.model.as_deref()) {
                None => "offers cpu".into(),
                Some(Some(model)) => format!("gpu={model}"),
                Some(None) => "offers a gpu".into(),
            },
            Constraint::Live => "ask not expired".into(),
            Constraint::Attribute(c) => c.to_string(),
            Constraint::Feature(f) => format!("feature {f}"),
            Constraint::Arch(a) => format!("arch={a}"),
            Constraint::GpuVram(v) => format!("vram ≥ {}", human_bytes(*v)),
            Constraint::GpuCount { count, .. } => format!("gpus ≥ {count}"),
            Constraint::JobSize(fuel) => format!("takes jobs of {} fuel", fuel.0),
            Constraint::PriceCap(cap) => format!("price ≤ {cap}"),
            Constraint::MinReputation(ppm) => format!("reputation ≥ {ppm} ppm"),
            Constraint::MinStake(a) => format!("stake ≥ {a}"),
            Constraint::HasAttribute(k) => format!("has {k}"),
            Constraint::FreeCpu(m) => format!("free cpu ≥ {}", human_cpu(*m)),
            Constraint::FreeMemory(b) => format!("free memory ≥ {}", human_bytes(*b)),
            Constraint::FreeDisk(b) => format!("free disk ≥ {}", human_bytes(*b)),
            Constraint::FreeGpus { count, .. } => format!("free gpus ≥ {count}"),
        }
    }

    /// Checks the pair.
    pub fn check<'v>(&self, v: &PairView<'v>) -> Verdict<'v> {
        let ask = &v.entry.ask;
        match self {
            Constraint::Serves(_) => Verdict::flag(v.class.is_some() && v.price.is_some()),
            Constraint::Live => Verdict::flag(ask.expires_ms > v.now_ms),
            Constraint::Attribute(c) => Verdict::flag(c.admits(&ask.attributes)),
            Constraint::Feature(f) => Verdict::flag(ask.features.contains(*f)),
            Constraint::Arch(a) => Verdict {
                ok: ask.arch == *a,
                has: Some((0, Has::Text(&ask.arch))),
            },
            Constraint::GpuVram(min) => {
                let best = gpu_groups(v).map(|g| g.vram_bytes).max().unwrap_or(0);
                Verdict::at_least(best, *min, Has::Bytes(best))
            }
            Constraint::GpuCount { min_vram, count } => {
                let best = gpu_groups(v)
                    .filter(|g| g.vram_bytes >= *min_vram)
                    .map(|g| g.count)
                    .max()
                    .unwrap_or(0);
                Verdict::at_least(
                    u64::from(best),
                    u64::from(*count),
                    Has::Count(u64::from(best), "gpus"),
                )
            }
            Constraint::JobSize(fuel) => Verdict {
                ok: ask.min_job <= *fuel && *fuel <= ask.max_job,
                has: Some((0, Has::JobRange(ask.min_job, ask.max_job))),
            },
            Constraint::PriceCap(cap) => {
                let price = v.price.unwrap_or(Price(u64::MAX));
                Verdict {
                    ok: price <= *cap,
                    has: Some((u64::MAX - price.0, Has::Price(price))),
                }
            }
            Constraint::MinReputation(min) => Verdict::at_least(
                u64::from(v.score_ppm),
                u64::from(*min),
                Has::Ppm(v.score_ppm),
            ),
            Constraint::MinStake(min) => {
                Verdict::at_least(v.provider.stake.0, min.0, Has::Stake(v.provider.stake))
            }
            Constraint::HasAttribute(k) => Verdict::flag(ask.attributes.contains_key(*k)),
            Constraint::FreeCpu(need) => {
                let free = v.entry.free_cpu();
                Verdict::at_least(free, *need, Has::Cpu(free))
            }
            Constraint::FreeMemory(need) => {
                let free = v.entry.free_memory();
                Verdict::at_least(free, *need, Has::Bytes(free))
            }
            Constraint::FreeDisk(need) => {
                let free = v.entry.free_disk();
                Verdict::at_least(free, *need, Has::Bytes(free))
            }
            Constraint::FreeGpus { min_vram, count } => {
                let best = gpu_groups_indexed(v)
                    .filter(|(_, g)| g.vram_bytes >= *min_vram)
                    .map(|(i, _)| v.entry.free_gpus(i))
                    .max()
                    .unwrap_or(0);
                Verdict::at_least(
                    u64::from(best),
                    u64::from(*count),
                    Has::Count(u64::from(best), "free gpus"),
                )
            }
        }
    }
}

fn gpu_groups<'a>(
    v: &'a PairView<'a>,
) -> impl Iterator<Item = &'a crate::resources::GpuGroup> + 'a {
    gpu_groups_indexed(v).map(|(_, g)| g)
}

/// The ask's GPU groups of the pair's class model.
fn gpu_groups_indexed<'a>(
    v: &'a PairView<'a>,
) -> impl Iterator<Item = (usize, &'a crate::resources::GpuGroup)> + 'a {
    let model = v.class.and_then(ResourceClass::gpu_model);
    v.entry
        .ask
        .capacity
        .gpus
        .iter()
        .enumerate()
        .filter(move |(_, g)| model == Some(g.model.as_str()))
}
