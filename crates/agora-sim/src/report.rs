//! What a run reports: wrong results accepted, each behaviour's profit, each policy's
//! verification overhead, the ledger's supply, and per-minute series (overhead, spot index,
//! providers online). Serialised as JSON; [`Report::summary`] is the human version.
//!
//! Money is reported in AGR as decimals for reading; every figure is computed from integer
//! base units first, and the serialisation is deterministic, so the same seed gives the
//! same bytes.

use std::fmt::Write as _;

use agora_core::Hash;
use agora_core::money::BASE_UNITS_PER_AGR;
use agora_ledger::Supply;
use agora_market::MarketStats;
use serde::{Deserialize, Serialize};

use crate::config::{Behaviour, SimConfig};
use crate::world::ratio;

/// Counts over the whole run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Jobs settled on an accepted result.
    pub settled: u64,
    /// Jobs refunded.
    pub refunded: u64,
    /// Accepted results that were wrong.
    pub wrong_accepted: u64,
    /// Jobs whose escrow the ledger refused (a buyer out of money).
    pub escrow_refused: u64,
    /// Times no (further) provider could run a job.
    pub no_provider: u64,
    /// Runs lost because their provider left.
    pub failed_runs: u64,
    /// Honest providers slashed (outvoted by colluders).
    pub honest_slashed: u64,
    /// Settlement transactions the ledger refused (should be 0).
    pub ledger_refusals: u64,
    /// Conservation checks that failed (must be 0).
    pub conservation_failures: u64,
    /// Providers that went offline.
    pub leaves: u64,
    /// Providers that came back.
    pub restarts: u64,
    /// New providers.
    pub joins: u64,
    /// Ask price updates.
    pub price_changes: u64,
}

/// One verification policy's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyStats {
    /// The policy in its CLI form.
    pub policy: String,
    /// Jobs that ended (settled or refunded).
    pub jobs: u64,
    /// Jobs settled.
    pub settled: u64,
    /// Jobs refunded.
    pub refunded: u64,
    /// Settled on a result nobody re-ran.
    pub unchecked: u64,
    /// Wrong results accepted.
    pub wrong_accepted: u64,
    /// Providers slashed on this policy's jobs.
    pub slashes: u64,
    /// Runs of settled jobs.
    pub runs: u64,
    /// Runs of refunded jobs (not in the overhead: nothing was billed).
    pub refunded_runs: u64,
    /// Fuel of every run of a settled job.
    pub fuel_executed: u128,
    /// Fuel billed (the accepted result's, once per settled job).
    pub fuel_billed: u128,
    /// What buyers paid, base units.
    pub buyer_paid: u128,
    /// Σ (end − arrival), ms.
    pub latency_ms_sum: u128,
    /// CU executed ÷ CU billed, over settled jobs.
    pub overhead: f64,
    /// Wrong results per settled job.
    pub wrong_rate: f64,
    /// Mean arrival → end, seconds.
    pub mean_latency_s: f64,
}

impl PolicyStats {
    /// Empty stats for `policy`.
    pub fn new(policy: String) -> PolicyStats {
        PolicyStats {
            policy,
            jobs: 0,
            settled: 0,
            refunded: 0,
            unchecked: 0,
            wrong_accepted: 0,
            slashes: 0,
            runs: 0,
            refunded_runs: 0,
            fuel_executed: 0,
            fuel_billed: 0,
            buyer_paid: 0,
            latency_ms_sum: 0,
            overhead: 0.0,
            wrong_rate: 0.0,
            mean_latency_s: 0.0,
        }
    }

    fn finish(&mut self) {
        self.overhead = ratio(self.fuel_executed, self.fuel_billed);
        self.wrong_rate = ratio(u128::from(self.wrong_accepted), u128::from(self.settled));
        self.mean_latency_s = ratio(self.latency_ms_sum, u128::from(self.jobs)) / 1_000.0;
    }
}

/// One behaviour's providers, together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BehaviourStats {
    /// The behaviour.
    pub behaviour: Behaviour,
    /// Providers that were active at some point.
    pub providers: u64,
    /// Runs delivered.
    pub runs: u64,
    /// Runs with a wrong result.
    pub cheats: u64,
    /// Times caught (outvoted and slashed).
    pub caught: u64,
    /// Stake slashed, base units.
    pub slashed: u128,
    /// Off-ledger compute cost of the runs it did, base units.
    pub cost: u128,
    /// Change in balance + stake on the ledger, base units.
    pub ledger_gain: i128,
    /// Cost its cheats saved (its own cost of the jobs it did not run), base units.
    pub cost_saved: u128,
    /// Pay its caught cheats forfeited, base units.
    pub pay_forfeited: u128,
    /// What one cheat gained over doing the job, AGR: (cost saved − pay forfeited − stake
    /// slashed) ÷ cheats, counted event by event in the run. Reputation and suspension
    /// (fewer jobs later) are not in it: they deter on top.
    pub gain_per_cheat_agr: f64,
    /// ledger_gain − cost, AGR.
    pub profit_agr: f64,
    /// Profit per provider, AGR.
    pub profit_per_provider_agr: f64,
    /// Profit per run delivered, AGR.
    pub profit_per_run_agr: f64,
    /// Share of its cheats that were caught.
    pub caught_per_cheat: f64,
}

impl BehaviourStats {
    /// Empty stats for `behaviour`.
    pub fn new(behaviour: Behaviour) -> BehaviourStats {
        BehaviourStats {
            behaviour,
            providers: 0,
            runs: 0,
            cheats: 0,
            caught: 0,
            slashed: 0,
            cost: 0,
            ledger_gain: 0,
            cost_saved: 0,
            pay_forfeited: 0,
            gain_per_cheat_agr: 0.0,
            profit_agr: 0.0,
            profit_per_provider_agr: 0.0,
            profit_per_run_agr: 0.0,
            caught_per_cheat: 0.0,
        }
    }

    /// Fills the derived figures.
    pub fn finish(&mut self) {
        let profit = self.ledger_gain - self.cost as i128;
        self.profit_agr = agr(profit);
        self.profit_per_provider_agr = per(profit, self.providers);
        self.profit_per_run_agr = per(profit, self.runs);
        self.caught_per_cheat = ratio(u128::from(self.caught), u128::from(self.cheats));
        let gain = self.cost_saved as i128 - self.pay_forfeited as i128 - self.slashed as i128;
        self.gain_per_cheat_agr = per(gain, self.cheats);
    }
}

/// One simulated minute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// Minutes since the start.
    pub minute: u64,
    /// Jobs that ended in the minute.
    pub settled: u64,
    /// CU executed ÷ CU billed over the jobs that ended in the minute.
    pub overhead: f64,
    /// The spot index: volume-weighted price of the last 60 s, AGR per CU.
    pub vwap_per_cu: Option<f64>,
    /// The best ask with free capacity, AGR per CU.
    pub best_ask_per_cu: Option<f64>,
    /// Asks with free capacity.
    pub depth_asks: u32,
    /// Providers online.
    pub online: u32,
    /// Wrong results accepted so far.
    pub wrong_accepted: u64,
}

/// The ledger at the end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LedgerReport {
    /// Minted at genesis, AGR.
    pub minted_agr: f64,
    /// Σ balances, AGR.
    pub balances_agr: f64,
    /// Σ locked escrow, AGR (0 once every job ended).
    pub escrow_agr: f64,
    /// Σ stakes, AGR.
    pub stakes_agr: f64,
    /// Burnt by slashing, AGR.
    pub burned_agr: f64,
    /// Whether minted = balances + escrow + stakes + burned, in base units, at every check.
    pub conserved: bool,
    /// Conservation checks made (every 10 simulated minutes and at the end).
    pub conservation_checks: u64,
    /// Transactions applied.
    pub transactions: u64,
    /// The final state root.
    pub state_root: String,
}

/// Everything one run found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The configuration that produced it.
    pub config: SimConfig,
    /// Simulated time, minutes.
    pub simulated_minutes: u64,
    /// Whole-run counts.
    pub tally: Tally,
    /// Per verification policy.
    pub policies: Vec<PolicyStats>,
    /// Per provider behaviour.
    pub behaviours: Vec<BehaviourStats>,
    /// The ledger at the end.
    pub ledger: LedgerReport,
    /// The market engine's counters.
    pub market: MarketStats,
    /// Per simulated minute.
    pub series: Vec<SeriesPoint>,
}

impl Report {
    /// Assembles the report (the world calls this once, at the end).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: SimConfig,
        tally: Tally,
        mut policies: Vec<PolicyStats>,
        behaviours: Vec<BehaviourStats>,
        supply: Supply,
        state_root: Hash,
        transactions: u64,
        conservation_checks: u64,
        market: MarketStats,
        series: Vec<SeriesPoint>,
    ) -> Report {
        for p in &mut policies {
            p.finish();
        }
        let ledger = LedgerReport {
            minted_agr: agr(supply.minted.0.into()),
            balances_agr: agr(supply.balances.0.into()),
            escrow_agr: agr(supply.escrow.0.into()),
            stakes_agr: agr(supply.stakes.0.into()),
            burned_agr: agr(supply.burned.0.into()),
            conserved: tally.conservation_failures == 0,
            conservation_checks,
            transactions,
            state_root: state_root.to_string(),
        };
        Report {
            simulated_minutes: series.last().map_or(0, |p| p.minute),
            config,
            tally,
            policies,
            behaviours,
            ledger,
            market,
            series,
        }
    }

    /// The stats of `behaviour`.
    pub fn behaviour(&self, behaviour: Behaviour) -> &BehaviourStats {
        self.behaviours
            .iter()
            .find(|b| b.behaviour == behaviour)
            .unwrap_or(&self.behaviours[0])
    }

    /// The report as pretty JSON (deterministic for a given run).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A few lines a person reads.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let c = &self.config;
        let t = &self.tally;
        let _ = writeln!(
            s,
            "{} providers, {} jobs, seed {}, stake ratio {:.2} × (C/p − R), {} simulated minutes",
            c.providers,
            c.jobs,
            c.seed,
            c.stake_ratio_ppm as f64 / 1e6,
            self.simulated_minutes
        );
        let _ = writeln!(
            s,
            "settled {}, refunded {}, no (further) provider {}, wrong results accepted {}, honest providers slashed {}, runs lost to churn {}",
            t.settled, t.refunded, t.no_provider, t.wrong_accepted, t.honest_slashed, t.failed_runs
        );
        let _ = writeln!(
            s,
            "\n{:<22} {:>8} {:>8} {:>9} {:>10} {:>9}",
            "policy", "jobs", "wrong", "wrong/job", "overhead", "latency"
        );
        for p in &self.policies {
            let _ = writeln!(
                s,
                "{:<22} {:>8} {:>8} {:>9.5} {:>9.3}× {:>8.1}s",
                p.policy, p.jobs, p.wrong_accepted, p.wrong_rate, p.overhead, p.mean_latency_s
            );
        }
        let _ = writeln!(
            s,
            "\n{:<12} {:>9} {:>9} {:>8} {:>8} {:>13} {:>13} {:>14}",
            "behaviour",
            "providers",
            "runs",
            "cheats",
            "caught",
            "profit/prov",
            "profit/run",
            "gain/cheat"
        );
        for b in &self.behaviours {
            let _ = writeln!(
                s,
                "{:<12} {:>9} {:>9} {:>8} {:>8} {:>10.4} AGR {:>9.6} AGR {:>10.6} AGR",
                b.behaviour.name(),
                b.providers,
                b.runs,
                b.cheats,
                b.caught,
                b.profit_per_provider_agr,
                b.profit_per_run_agr,
                b.gain_per_cheat_agr
            );
        }
        let l = &self.ledger;
        let _ = writeln!(
            s,
            "\nledger: {} transactions, minted {:.3} = balances {:.3} + escrow {:.3} + stakes {:.3} + burned {:.3} AGR: {}",
            l.transactions,
            l.minted_agr,
            l.balances_agr,
            l.escrow_agr,
            l.stakes_agr,
            l.burned_agr,
            if l.conserved {
                "conserved"
            } else {
                "NOT CONSERVED"
            }
        );
        s
    }
}

/// Base units as AGR.
pub fn agr(base_units: i128) -> f64 {
    base_units as f64 / BASE_UNITS_PER_AGR as f64
}

fn per(total: i128, n: u64) -> f64 {
    if n == 0 { 0.0 } else { agr(total) / n as f64 }
}
