//! The stake rule's evidence: cheaters' profit as the slash per proven fault moves around
//! the rule's `S = C/p − R`, for several audit rates p.
//!
//! Each point is a whole simulation in which every buyer uses `spot:p`, a proven fault
//! costs `ratio × (C/p − R)` (capped at the provider's stake), and there is no suspension
//! after a fault (it deters on its own and would hide where the stake stops deterring). A cheating strategy *pays*
//! at a point when its cheats gained money: the cost they saved minus the pay they forfeited
//! and the stake slashed, counted cheat by cheat in the run (`gain_per_cheat_agr`). Losing
//! work to a damaged reputation also deters, and is deliberately not counted in the rule's
//! favour; the providers' whole profit per run is reported beside it.
//!
//! The expectation the points are checked against: one cheat saves the cost C and risks,
//! with probability p, the pay R and the slash S, so it gains `C − p·(R + S)` over honest
//! work; with `S = ratio × (C/p − R)` that is `(1 − ratio)·(C − p·R)` — positive below the
//! rule, zero at it, negative above it.

use std::fmt::Write as _;

use agora_verify::VerifyPolicy;
use serde::{Deserialize, Serialize};

use crate::config::{Behaviour, PPM, SimConfig};
use crate::report::Report;
use crate::world::World;

/// Audit rates swept, ppm.
pub const AUDIT_RATES_PPM: [u32; 4] = [20_000, 50_000, 100_000, 200_000];
/// Slash per fault as multiples of the rule, ppm.
pub const STAKE_RATIOS_PPM: [u32; 7] = [
    0, 500_000, 750_000, 1_000_000, 1_250_000, 1_500_000, 2_000_000,
];
/// Each cheating behaviour's share of providers in the sweep, ppm: 4 % each, 20 % cheaters
/// together, so every point has thousands of cheats to count.
pub const SWEEP_CHEATER_PPM: [u32; 5] = [40_000; 5];

/// The sweep's base configuration for `providers` and `jobs` per point.
pub fn base(providers: u32, jobs: u64, seed: u64) -> SimConfig {
    SimConfig {
        cheater_ppm: SWEEP_CHEATER_PPM,
        ..SimConfig::scaled(providers, jobs, seed)
    }
}

/// One behaviour at one point of the sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StrategyPoint {
    /// The behaviour.
    pub behaviour: Behaviour,
    /// Profit per run delivered, AGR.
    pub profit_per_run_agr: f64,
    /// Profit per provider, AGR.
    pub profit_per_provider_agr: f64,
    /// Its profit per run minus honest providers', AGR: > 0 means cheating paid.
    pub advantage_per_run_agr: f64,
    /// What one cheat gained over running the job, AGR: (cost saved − pay forfeited −
    /// slashed) ÷ cheats. Compare with `(1 − ratio)·(C − p·R)`.
    pub gain_per_cheat_agr: f64,
    /// Runs with a wrong result.
    pub cheats: u64,
    /// Caught.
    pub caught: u64,
    /// Whether its cheats gained money (gain per cheat > 0).
    pub pays: bool,
}

/// One (p, ratio) point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Audit rate, ppm.
    pub p_ppm: u32,
    /// Slash as a multiple of C/p − R.
    pub stake_ratio: f64,
    /// Honest providers' profit per run, AGR.
    pub honest_profit_per_run_agr: f64,
    /// Each cheating behaviour.
    pub strategies: Vec<StrategyPoint>,
    /// Wrong results accepted at this point.
    pub wrong_accepted: u64,
    /// Jobs settled.
    pub settled: u64,
}

/// The whole sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// The base configuration of every point (policies and stake ratio replaced).
    pub base: SimConfig,
    /// The points, by audit rate then ratio.
    pub points: Vec<SweepPoint>,
}

impl Sweep {
    /// A table a person reads: per audit rate and ratio, each strategy's profit per run over
    /// honest providers' (negative: cheating lost money).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = write!(s, "{:>8} {:>6} {:>11}", "p", "ratio", "honest/run");
        for b in &Behaviour::ALL[1..] {
            let _ = write!(s, " {:>12}", b.name());
        }
        s.push('\n');
        for pt in &self.points {
            let _ = write!(
                s,
                "{:>8} {:>6.2} {:>11.6}",
                pt.p_ppm as f64 / 1e6,
                pt.stake_ratio,
                pt.honest_profit_per_run_agr
            );
            for st in &pt.strategies {
                let mark = if st.pays { '+' } else { ' ' };
                let _ = write!(s, " {:>11.5}{mark}", st.gain_per_cheat_agr);
            }
            s.push('\n');
        }
        s.push_str("(gain per cheat over honest work, AGR; + marks a strategy that paid)\n");
        s
    }

    /// For each behaviour and audit rate, the smallest swept ratio from which that behaviour
    /// never paid again (None: it paid at the largest ratio too).
    pub fn break_even(&self, behaviour: Behaviour, p_ppm: u32) -> Option<f64> {
        let points: Vec<&SweepPoint> = self.points.iter().filter(|p| p.p_ppm == p_ppm).collect();
        let pays = |pt: &SweepPoint| {
            pt.strategies
                .iter()
                .find(|s| s.behaviour == behaviour)
                .is_some_and(|s| s.pays)
        };
        let last_paying = points.iter().rposition(|pt| pays(pt));
        match last_paying {
            None => points.first().map(|pt| pt.stake_ratio),
            Some(i) => points.get(i + 1).map(|pt| pt.stake_ratio),
        }
    }
}

/// Runs the sweep on `base` (its providers, jobs and seed) over `rates` × `ratios`.
pub fn run(base: &SimConfig, rates: &[u32], ratios: &[u32]) -> Sweep {
    let mut points = Vec::new();
    for &p_ppm in rates {
        for &ratio in ratios {
            let config = SimConfig {
                policies: vec![(VerifyPolicy::Spot { p_ppm }, 1)],
                stake_ratio_ppm: ratio,
                // The rule alone: a suspended cheater earns nothing for a while, which
                // would deter on its own and hide where the stake stops deterring.
                suspension: false,
                ..base.clone()
            };
            let report = match World::new(config) {
                Ok(world) => world.run(),
                Err(_) => continue,
            };
            points.push(point(&report, p_ppm, ratio));
        }
    }
    Sweep {
        base: base.clone(),
        points,
    }
}

fn point(report: &Report, p_ppm: u32, ratio: u32) -> SweepPoint {
    let honest = report.behaviour(Behaviour::Honest).profit_per_run_agr;
    let strategies = Behaviour::ALL[1..]
        .iter()
        .map(|&b| {
            let s = report.behaviour(b);
            let advantage = s.profit_per_run_agr - honest;
            StrategyPoint {
                behaviour: b,
                profit_per_run_agr: s.profit_per_run_agr,
                profit_per_provider_agr: s.profit_per_provider_agr,
                advantage_per_run_agr: advantage,
                gain_per_cheat_agr: s.gain_per_cheat_agr,
                cheats: s.cheats,
                caught: s.caught,
                pays: s.cheats > 0 && s.gain_per_cheat_agr > 0.0,
            }
        })
        .collect();
    SweepPoint {
        p_ppm,
        stake_ratio: f64::from(ratio) / f64::from(PPM),
        honest_profit_per_run_agr: honest,
        strategies,
        wrong_accepted: report.tally.wrong_accepted,
        settled: report.tally.settled,
    }
}
