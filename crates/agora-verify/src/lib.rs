//! Agora's verification core: how a buyer in a market of strangers never receives a wrong
//! result as a verified one, and why a provider who cheats loses more than it gains.
//!
//! Key components:
//! - [`policy`]: [`VerifyPolicy`] — `none`, `replicate:N:Q`, `spot:P`, `adaptive`,
//!   `challenge:WINDOW` — with its CLI forms, defaults ([`VerifyPolicy::DEFAULT`]) and the
//!   `--help` paragraph ([`POLICY_HELP`]).
//! - [`quorum`]: [`decide`] counts replicas' receipts into an accepted result (and the
//!   providers to slash) or says whether to add providers or refund.
//! - [`sampling`]: [`plan`] and [`should_audit`] — replicas up front and the spot-check draw
//!   from a seed revealed after the receipt; adaptive trust, weighted by what a job puts
//!   at stake against the provider's stake ([`plan_at_risk`], [`Exposure`]); expected
//!   overhead.
//! - [`trust`]: [`SuspensionRule`] — how long a proven fault keeps a provider out of
//!   matching (doubling with each fault), and that it is not trusted meanwhile.
//! - [`flow`]: [`Flow`], one order's verification as a state machine the market node
//!   drives run by run: run another provider, accept (and slash whom), or refund.
//! - [`economics`]: the deterrence condition S ≥ C/p − R: [`required_stake`] and
//!   [`check_bid_stake`]; the analytic detection rate for reports.
//! - [`checkpoint`] and [`bisect`]: the Merkle tree over a job's step hashes and the
//!   [`Bisection`] game that narrows two traces down to the one step the referee re-runs.
//! - [`evidence`] and [`dispute`]: [`Evidence`] of fraud with the hash a slash records, and
//!   [`resolve_challenge`], which turns a referee's result into a value-conserving
//!   [`Settlement`] of plain instructions.
//!
//! The market node drives it: per order it calls [`plan`]; on receipts [`decide`] or, once
//! the next block's hash is known, [`should_audit`]; on a challenge [`check_challenge`], the
//! re-execution (through `agora-exec`) and [`resolve_challenge`]; it turns the resulting
//! instructions into ledger transactions.
//!
//! ```
//! use agora_core::{AccountId, Fuel, Hash};
//! use agora_verify::*;
//!
//! let policy: VerifyPolicy = "replicate:3:2".parse()?;
//! let plan = plan(&policy, &ProviderHistory::default());
//! assert_eq!(plan.replicas, 3);
//!
//! let right = RunResult { digest: Hash::of(b"right"), fuel: Fuel(1_000) };
//! let wrong = RunResult { digest: Hash::of(b"wrong"), fuel: Fuel(1_000) };
//! let receipts: Vec<ReplicaReceipt> = [right, wrong, right]
//!     .into_iter()
//!     .enumerate()
//!     .map(|(i, result)| ReplicaReceipt { provider: AccountId::from_bytes([i as u8; 32]), result })
//!     .collect();
//! let QuorumDecision::Accepted(accepted) = decide(&QuorumRule::replicate(3, 2), &receipts, 3)? else {
//!     panic!("two of three agree");
//! };
//! assert_eq!(accepted.result, right);
//! assert_eq!(accepted.to_slash().collect::<Vec<_>>(), vec![AccountId::from_bytes([1; 32])]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The crate is pure: no I/O, no clock reads, no randomness of its own. Time (`now_ms`) and
//! seeds are arguments, the referee's re-execution comes in as a hash, and every decision is
//! made in integers (probabilities in parts per million, money in base units with checked
//! arithmetic), so any node that replays the same inputs reaches the same decisions.
#![warn(unused_crate_dependencies, missing_docs)]

pub mod bisect;
pub mod checkpoint;
pub mod dispute;
pub mod economics;
pub mod evidence;
pub mod flow;
pub mod policy;
pub mod quorum;
pub mod sampling;
pub mod trust;

pub use bisect::{
    Answer, BisectError, Bisection, Commitment, LossReason, Opening, Party, Progress, RefereeTask,
    Verdict, max_rounds,
};
pub use checkpoint::{
    InclusionProof, StateDigest, StepStatus, StepTree, step_root, verify_inclusion,
};
pub use dispute::{
    Challenge, ChallengeError, ChallengeRules, Instruction, Resolution, ResultClaim, Ruling,
    Settlement, ValueFlow, check_challenge, resolve_challenge, settle_dispute,
};
pub use economics::{
    StakeTooLow, check_bid_stake, detection_ppm, detection_probability, required_stake,
};
pub use evidence::{Evidence, EvidenceError, Proof};
pub use flow::{Checked, Flow, FlowError, Step};
pub use policy::{POLICY_HELP, PPM, PolicyError, VerifyPolicy};
pub use quorum::{
    Accepted, Disagreement, NextStep, NoQuorum, QuorumDecision, QuorumError, QuorumRule,
    ReplicaReceipt, RunResult, decide,
};
pub use sampling::{
    Exposure, MIN_AUDIT_PPM, ProviderHistory, VerificationPlan, expected_overhead_at_risk_ppm,
    expected_overhead_ppm, plan, plan_at_risk, should_audit, should_audit_at_risk,
};
pub use trust::{FaultRecord, SuspensionRule};

#[cfg(test)]
use {proptest as _, serde_json as _};
