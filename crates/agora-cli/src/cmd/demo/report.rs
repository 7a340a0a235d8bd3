//! The demo's report: one line per job, the final balances, the ledger audit.

use std::path::PathBuf;
use std::time::Duration;

use agora_client::JobSummary;
use agora_core::{AccountId, Amount, Price};
use agora_ledger::{VerifyError, VerifyReport};
use agora_proto::OrderState;
use serde_json::json;

use super::chain::ChainAudit;
use super::verify::Summary;

/// One job's result.
pub struct JobLine {
    /// The task's label.
    pub label: String,
    /// The order.
    pub order: Option<agora_core::Hash>,
    /// Who ran it, if anyone.
    pub provider: Option<AccountId>,
    /// The price per CU paid.
    pub price: Option<Price>,
    /// Compute units billed.
    pub compute_units: f64,
    /// What the buyer paid.
    pub cost: Amount,
    /// Submission to settlement, as the market measured it.
    pub latency_ms: f64,
    /// Times the order was assigned (more than 1: a provider failed and it was reassigned).
    pub attempts: u32,
    /// `settled` or why not.
    pub outcome: String,
    /// The accepted result's digest, when settled.
    pub digest: Option<agora_core::Hash>,
    /// How the market checked it, when settled.
    pub verification: Option<agora_proto::api::VerificationView>,
    /// Fuel billed for it.
    pub billed_fuel: u64,
}

impl JobLine {
    /// A line for the task labelled `label` from how its order ended.
    pub fn new(label: &str, summary: &JobSummary) -> JobLine {
        let outcome = match (summary.state, summary.exit_code) {
            (OrderState::Settled, Some(0)) => "settled".to_string(),
            (OrderState::Settled, code) => format!("settled, but the job exited with {code:?}"),
            (state, _) => format!(
                "{}: {}",
                state.name(),
                summary
                    .refund_reason
                    .as_deref()
                    .unwrap_or("no reason given")
            ),
        };
        JobLine {
            label: label.to_string(),
            order: Some(summary.order_id),
            provider: summary.provider,
            price: summary.price,
            compute_units: summary.compute_units.unwrap_or(0.0),
            cost: summary.cost,
            latency_ms: summary.latency_ms.unwrap_or(0) as f64,
            attempts: summary.attempts,
            outcome,
            digest: summary.digest,
            verification: (summary.state == OrderState::Settled)
                .then(|| summary.verification.clone()),
            billed_fuel: summary
                .compute_units
                .map_or(0, |cu| (cu * 1e9).round() as u64),
        }
    }

    /// A line for a task that never became an order.
    pub fn failed(label: &str, error: &anyhow::Error) -> JobLine {
        JobLine {
            label: label.to_string(),
            order: None,
            provider: None,
            price: None,
            compute_units: 0.0,
            cost: Amount::ZERO,
            latency_ms: 0.0,
            attempts: 0,
            outcome: format!("not submitted: {error:#}"),
            digest: None,
            verification: None,
            billed_fuel: 0,
        }
    }

    /// Whether the job was paid for checked work.
    pub fn settled(&self) -> bool {
        self.outcome == "settled"
    }

    /// A one-line summary for progress output.
    pub fn summary(&self) -> String {
        match (self.provider, self.price) {
            (Some(provider), Some(price)) => format!(
                "{} by {} at {price}: {:.4} CU, {}, {:.0} ms",
                self.outcome,
                short(&provider),
                self.compute_units,
                self.cost,
                self.latency_ms
            ),
            _ => self.outcome.clone(),
        }
    }
}

/// One account's final position.
pub struct Balance {
    /// Its role in the demo.
    pub role: String,
    /// The account.
    pub account: AccountId,
    /// Spendable balance.
    pub balance: Amount,
    /// Bonded plus unbonding stake.
    pub stake: Amount,
}

/// How the books were checked at the end.
pub enum Audit {
    /// The embedded ledger, replayed from genesis after the market stopped.
    Ledger(Result<VerifyReport, VerifyError>),
    /// The contract's totals read from the EVM chain (`--settlement evm`).
    Chain(Result<ChainAudit, String>),
}

impl Audit {
    fn is_ok(&self) -> bool {
        match self {
            Audit::Ledger(r) => r.is_ok(),
            Audit::Chain(r) => r.is_ok(),
        }
    }
}

/// Everything the demo shows at the end.
pub struct Report {
    jobs: Vec<JobLine>,
    balances: Vec<Balance>,
    height: u64,
    audit: Audit,
    image: Option<PathBuf>,
    data_dir: PathBuf,
    elapsed: Duration,
    verification: Summary,
}

impl Report {
    /// Assembles the report.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        jobs: Vec<JobLine>,
        balances: Vec<Balance>,
        height: u64,
        audit: Audit,
        image: Option<PathBuf>,
        data_dir: PathBuf,
        elapsed: Duration,
        verification: Summary,
    ) -> Report {
        Report {
            jobs,
            balances,
            height,
            audit,
            image,
            data_dir,
            elapsed,
            verification,
        }
    }

    fn settled(&self) -> usize {
        self.jobs.iter().filter(|j| j.settled()).count()
    }

    fn conservation(&self) -> bool {
        match &self.audit {
            Audit::Ledger(audit) => audit.as_ref().is_ok_and(|r| {
                let s = &r.supply;
                Amount::sum([s.balances, s.escrow, s.stakes, s.burned])
                    .is_ok_and(|total| total == s.minted)
            }),
            // Every escrow settled or refunded, and every token held accounted for.
            Audit::Chain(audit) => audit
                .as_ref()
                .is_ok_and(|a| a.conserved && a.escrowed.is_zero()),
        }
    }

    /// Every job settled, the replay verified, conservation held and no honest provider
    /// was slashed. (A wrong result accepted is reported, not failed: under `none` or an
    /// undrawn spot-check that is the policy's trade, priced by stake.)
    pub fn all_good(&self) -> bool {
        self.settled() == self.jobs.len()
            && self.audit.is_ok()
            && self.conservation()
            && self.verification.honest_slashed == 0
    }

    fn latency_percentile(&self, p: f64) -> f64 {
        let mut latencies: Vec<f64> = self
            .jobs
            .iter()
            .filter(|j| j.settled())
            .map(|j| j.latency_ms)
            .collect();
        latencies.sort_by(f64::total_cmp);
        percentile(&latencies, p)
    }

    /// The report as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let jobs: Vec<_> = self
            .jobs
            .iter()
            .map(|j| {
                json!({
                    "label": j.label,
                    "provider": j.provider,
                    "order": j.order,
                    "price": j.price.map(|p| p.0),
                    "compute_units": j.compute_units,
                    "cost": j.cost.0,
                    "latency_ms": j.latency_ms,
                    "attempts": j.attempts,
                    "outcome": j.outcome,
                })
            })
            .collect();
        let balances: Vec<_> = self
            .balances
            .iter()
            .map(|b| json!({"role": b.role, "account": b.account, "balance": b.balance.0, "stake": b.stake.0}))
            .collect();
        let audit = match &self.audit {
            Audit::Ledger(Ok(r)) => {
                json!({"verified": true, "state_root": r.state_root, "txs": r.txs, "supply": r.supply.minted.0})
            }
            Audit::Ledger(Err(e)) => json!({"verified": false, "error": e.to_string()}),
            Audit::Chain(Ok(a)) => json!({
                "settlement": "evm",
                "rpc_url": a.rpc_url,
                "contract": a.contract,
                "balances": a.balances.0,
                "escrowed": a.escrowed.0,
                "staked": a.staked.0,
                "burnt": a.burnt.0,
                "held": a.held,
                "conserved": a.conserved,
            }),
            Audit::Chain(Err(e)) => json!({"settlement": "evm", "error": e}),
        };
        json!({
            "jobs": {
                "submitted": self.jobs.len(),
                "settled": self.settled(),
                "refunded": self.jobs.len() - self.settled(),
                "list": jobs,
            },
            "latency_ms": { "p50": self.latency_percentile(0.5), "p95": self.latency_percentile(0.95) },
            "elapsed_s": self.elapsed.as_secs_f64(),
            "balances": balances,
            "ledger": {
                "height": self.height,
                "verified": self.audit.is_ok(),
                "conservation": self.conservation(),
                "data_dir": self.data_dir,
                "audit": audit,
            },
            "image": self.image,
            "verification": self.verification.to_json(),
            "ok": self.all_good(),
        })
    }

    /// The report for people.
    pub fn print(&self) {
        outln!(
            "\n{:<14} {:<12} {:>14} {:>10} {:>16} {:>10}  outcome",
            "job",
            "provider",
            "price/CU",
            "CU",
            "cost",
            "latency"
        );
        for j in &self.jobs {
            let provider = j.provider.map(|p| short(&p)).unwrap_or_else(|| "-".into());
            let price = j
                .price
                .map(|p| Amount(p.0).to_string())
                .unwrap_or_else(|| "-".into());
            outln!(
                "{:<14} {:<12} {:>14} {:>10.4} {:>16} {:>8.1}ms  {}",
                j.label,
                provider,
                price,
                j.compute_units,
                j.cost.to_string(),
                j.latency_ms,
                j.outcome
            );
        }
        outln!(
            "\n{} of {} jobs settled in {:.2} s; latency p50 {:.1} ms, p95 {:.1} ms",
            self.settled(),
            self.jobs.len(),
            self.elapsed.as_secs_f64(),
            self.latency_percentile(0.5),
            self.latency_percentile(0.95)
        );
        outln!(
            "\n{:<12} {:<50} {:>20} {:>12}",
            "account",
            "id",
            "balance",
            "stake"
        );
        for b in &self.balances {
            outln!(
                "{:<12} {:<50} {:>20} {:>12}",
                b.role,
                b.account.to_string(),
                b.balance.to_string(),
                b.stake.to_string()
            );
        }
        match &self.audit {
            Audit::Chain(Ok(a)) => outln!(
                "\nEVM chain {} contract {}: balances {} + escrowed {} + staked {} + burnt {} against {} of tokens held; conservation {}",
                a.rpc_url,
                a.contract,
                a.balances,
                a.escrowed,
                a.staked,
                a.burnt,
                a.held.parse::<u64>().map_or_else(
                    |_| format!("{} base units", a.held),
                    |h| Amount(h).to_string()
                ),
                if self.conservation() {
                    "holds"
                } else {
                    "VIOLATED"
                }
            ),
            Audit::Chain(Err(e)) => outln!("\nEVM chain: reading the contract FAILED: {e}"),
            Audit::Ledger(Ok(r)) => outln!(
                "\nledger: {} blocks, {} txs replayed from genesis and verified; state root {}; supply {}; conservation {}",
                r.height,
                r.txs,
                r.state_root.short(),
                r.supply.minted,
                if self.conservation() {
                    "holds"
                } else {
                    "VIOLATED"
                }
            ),
            Audit::Ledger(Err(e)) => outln!("\nledger: verification FAILED: {e}"),
        }
        if let Audit::Ledger(_) = self.audit {
            outln!(
                "market data: {} (try `agora ledger verify --data-dir {0}`)",
                self.data_dir.display()
            );
        }
        self.verification.print();
        match &self.image {
            Some(path) => outln!("image: {}", path.display()),
            None => outln!("image: none (a tile did not settle)"),
        }
    }
}

/// The `p`-quantile (0..=1) of sorted values, nearest-rank; 0 for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn short(account: &AccountId) -> String {
    agora_client::progress::short_account(account)
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(percentile(&v, 0.5), 5.0);
        assert_eq!(percentile(&v, 0.95), 10.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
