//! One order's verification as a pure state machine: which run comes next, and when a
//! result is accepted, refunded or accepted unchecked.
//!
//! The market node drives it. After every run that delivered a result it hands over the
//! results so far ([`ReplicaReceipt`]s, in delivery order), the history of the provider of
//! the first run, and (for single-provider policies) the audit seed revealed after that
//! first receipt was recorded; [`Flow::on_result`] answers with a [`Step`]. Runs happen on
//! distinct providers; the node guarantees that, this module only counts.
//!
//! - `none` and `challenge` accept the first result (a challenge window is the node's to
//!   hold open; its dispute is settled by [`crate::dispute`]).
//! - `replicate:N:Q` runs N, then counts with [`QuorumRule::replicate`]; a split adds the
//!   fewest providers that could still reach a quorum, up to the cap, then refunds.
//! - `spot:P` and `adaptive` look at the first result: adaptive replicates an untrusted
//!   provider's job once more; otherwise the seed draws whether an independent provider
//!   re-runs it ([`crate::sampling::should_audit`]). A second run is counted with
//!   [`QuorumRule::audit`]: both must agree, a split brings in tie-breakers.

use agora_core::Hash;
use serde::{Deserialize, Serialize};

use crate::policy::VerifyPolicy;
use crate::quorum::{self, Accepted, NextStep, QuorumDecision, QuorumError, QuorumRule};
use crate::quorum::{ReplicaReceipt, RunResult};
use crate::sampling::{self, Exposure, ProviderHistory};

/// Where an order's verification stands; persisted with the order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// The order's policy.
    pub policy: VerifyPolicy,
    /// Runs wanted before the next count.
    pub target_runs: u32,
    /// How results are counted once more than one run is wanted.
    pub rule: Option<QuorumRule>,
    /// For single-provider policies: whether the first result was drawn for an audit, once
    /// the draw was made.
    pub audited: Option<bool>,
}

/// What the node does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Assign the order to one more distinct provider.
    RunAnother {
        /// Why, for the order's history.
        why: String,
    },
    /// Settle on this result.
    Accept {
        /// The result, who agreed, and who is to be slashed.
        accepted: Accepted,
        /// How it was checked, for the order's history and views.
        how: Checked,
    },
    /// No result can be accepted: refund the buyer; nobody is slashed.
    Refund {
        /// Why.
        why: String,
    },
}

/// How an accepted result was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Checked {
    /// Not re-run: `none`, `challenge` (until challenged), or a spot-check not drawn.
    Unchecked,
    /// A quorum of distinct providers agreed on it.
    Quorum {
        /// Votes for the accepted result.
        votes: u32,
        /// Runs that delivered a result.
        runs: u32,
    },
    /// The market re-executed the job itself (a challenge, or replicas that reached no
    /// quorum) and the result matched its run.
    Referee,
}

impl Flow {
    /// The flow of a new order under `policy`: one run first.
    pub fn new(policy: VerifyPolicy) -> Flow {
        let (target_runs, rule) = match policy {
            VerifyPolicy::Replicate { n, quorum } => {
                (n.max(1), Some(QuorumRule::replicate(n, quorum)))
            }
            _ => (1, None),
        };
        Flow {
            policy,
            target_runs,
            rule,
            audited: None,
        }
    }

    /// Whether the single-provider audit draw is still to be made: the first result is in
    /// and the policy samples. The node then reveals the seed and calls [`Flow::on_result`].
    pub fn needs_seed(&self, results: usize) -> bool {
        results == 1
            && self.audited.is_none()
            && matches!(
                self.policy,
                VerifyPolicy::Spot { .. } | VerifyPolicy::Adaptive { .. }
            )
    }

    /// The next step after a run delivered. `results` are every delivered result so far (at
    /// least one, one per provider); `first` is the history of the first run's provider as
    /// it was when that run was assigned; `seed` is the value revealed after the first
    /// receipt was recorded (only read when [`Flow::needs_seed`]); `order_id` binds the draw.
    /// The audit rate is [`sampling::plan`]'s, the policy's worst case; the market node,
    /// which knows the job's value and the provider's stake, calls
    /// [`Flow::on_result_at_risk`].
    pub fn on_result(
        &mut self,
        results: &[ReplicaReceipt],
        first: &ProviderHistory,
        seed: Option<Hash>,
        order_id: Hash,
    ) -> Result<Step, FlowError> {
        self.step(results, first, None, seed, order_id)
    }

    /// [`Flow::on_result`] with what the first run's job put at stake for its provider:
    /// the audit draw uses [`sampling::plan_at_risk`].
    pub fn on_result_at_risk(
        &mut self,
        results: &[ReplicaReceipt],
        first: &ProviderHistory,
        exposure: &Exposure,
        seed: Option<Hash>,
        order_id: Hash,
    ) -> Result<Step, FlowError> {
        self.step(results, first, Some(exposure), seed, order_id)
    }

    fn step(
        &mut self,
        results: &[ReplicaReceipt],
        first: &ProviderHistory,
        exposure: Option<&Exposure>,
        seed: Option<Hash>,
        order_id: Hash,
    ) -> Result<Step, FlowError> {
        let Some(head) = results.first() else {
            return Err(FlowError::NoResults);
        };
        let mut drawn = None;
        if self.needs_seed(results.len()) {
            let seed = seed.ok_or(FlowError::SeedMissing)?;
            let plan = match exposure {
                Some(exposure) => sampling::plan_at_risk(&self.policy, first, exposure),
                None => sampling::plan(&self.policy, first),
            };
            let draw = sampling::audit_draw_ppm(seed, order_id);
            let audit = plan.replicas > 1 || draw < plan.audit_ppm;
            self.audited = Some(audit);
            if audit {
                self.target_runs = 2;
                self.rule = Some(QuorumRule::audit());
                drawn = Some(if plan.replicas > 1 {
                    format!(
                        "replicating on another provider (adaptive: the provider has {} results in a row verified, fewer than it needs to be trusted)",
                        first.consecutive_verified
                    )
                } else {
                    format!(
                        "auditing on another provider (the draw {draw} ppm fell under the audit rate {} ppm)",
                        plan.audit_ppm
                    )
                });
            }
        }
        let Some(rule) = self.rule else {
            return Ok(Step::Accept {
                accepted: alone(head),
                how: Checked::Unchecked,
            });
        };
        let runs = u32::try_from(results.len()).unwrap_or(u32::MAX);
        if runs < self.target_runs {
            let reason = drawn.unwrap_or_else(|| self.reason_for_more().to_string());
            return Ok(Step::RunAnother {
                why: format!("result {runs} of {} in; {reason}", self.target_runs),
            });
        }
        match quorum::decide(&rule, results, runs)? {
            QuorumDecision::Accepted(accepted) => {
                let votes = u32::try_from(accepted.agreeing.len()).unwrap_or(u32::MAX);
                Ok(Step::Accept {
                    accepted,
                    how: Checked::Quorum { votes, runs },
                })
            }
            QuorumDecision::NoQuorum(no) => match no.next {
                NextStep::AddProviders(k) => {
                    self.target_runs = runs.saturating_add(k.max(1));
                    Ok(Step::RunAnother {
                        why: format!(
                            "{runs} results disagree (the leader has {} of {} votes); adding {} tie-breaking provider(s)",
                            no.leading_votes,
                            rule.quorum,
                            k.max(1)
                        ),
                    })
                }
                NextStep::Refund => Ok(Step::Refund {
                    why: format!(
                        "no result reached {} matching votes in {runs} runs (the most providers this order may use is {}); nobody is paid or slashed",
                        rule.quorum, rule.cap
                    ),
                }),
            },
        }
    }

    /// What accepting the results so far without the missing runs means, when no further
    /// distinct provider can be found: spot and adaptive accept the first result unchecked
    /// (said so in the order's history), replication refunds because the buyer asked for N.
    pub fn without_more_providers(&self, results: &[ReplicaReceipt]) -> Option<Accepted> {
        match self.policy {
            VerifyPolicy::Spot { .. } | VerifyPolicy::Adaptive { .. } if results.len() == 1 => {
                results.first().map(alone)
            }
            _ => None,
        }
    }

    fn reason_for_more(&self) -> &'static str {
        match (self.policy, self.audited) {
            (VerifyPolicy::Replicate { .. }, _) => "replicating on another provider",
            (VerifyPolicy::Adaptive { .. }, Some(true)) => {
                "auditing on another provider (adaptive: the provider is new, or the draw picked this job)"
            }
            _ => "auditing on another provider (the spot-check draw picked this job)",
        }
    }
}

/// A lone result accepted as it is.
fn alone(head: &ReplicaReceipt) -> Accepted {
    Accepted {
        result: head.result,
        agreeing: vec![head.provider],
        disagreeing: Vec::new(),
    }
}

/// The seed of an order's audit draw, from the market's signature over the order and the
/// first receipt's id. Ed25519 signatures are deterministic, so the market cannot pick among
/// seeds, nobody without the market key can predict it before the receipt exists, and
/// anyone can check the seed against the signature the market publishes.
pub fn audit_seed(signature: &[u8]) -> Hash {
    Hash::tagged("agora/audit-seed/v1", &[signature])
}

/// The message the market signs to reveal an audit seed.
pub fn audit_seed_message(order_id: Hash, receipt_id: Hash) -> Vec<u8> {
    let mut message = b"agora/audit-seed-message/v1".to_vec();
    message.extend_from_slice(order_id.as_bytes());
    message.extend_from_slice(receipt_id.as_bytes());
    message
}

/// Why a flow could not take a step (a bug in the caller, never external input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// Called with no results.
    #[error("a verification step needs at least one result")]
    NoResults,
    /// A sampling policy's draw needs the seed.
    #[error("the audit draw needs the seed revealed after the first receipt")]
    SeedMissing,
    /// The results could not be counted.
    #[error(transparent)]
    Quorum(#[from] QuorumError),
}

/// The result every honest run of the same job reports, for tests and simulations.
pub fn run_result(digest: Hash, fuel: agora_core::Fuel) -> RunResult {
    RunResult { digest, fuel }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::{AccountId, Fuel, Keypair};

    fn vote(who: &str, digest: &[u8]) -> ReplicaReceipt {
        ReplicaReceipt {
            provider: account(who),
            result: run_result(Hash::of(digest), Fuel(100)),
        }
    }

    fn account(who: &str) -> AccountId {
        Keypair::from_seed(who).account()
    }

    const ORDER: Hash = Hash([7; 32]);

    #[test]
    fn none_accepts_the_first_result_unchecked() {
        let mut flow = Flow::new(VerifyPolicy::None);
        let step = flow
            .on_result(&[vote("a", b"x")], &ProviderHistory::default(), None, ORDER)
            .unwrap();
        assert!(matches!(
            step,
            Step::Accept {
                how: Checked::Unchecked,
                ..
            }
        ));
    }

    #[test]
    fn replicate_runs_n_then_slashes_the_minority() {
        let mut flow = Flow::new("replicate:3:2".parse().unwrap());
        let h = ProviderHistory::default();
        let mut votes = vec![vote("a", b"x")];
        assert!(matches!(
            flow.on_result(&votes, &h, None, ORDER).unwrap(),
            Step::RunAnother { .. }
        ));
        votes.push(vote("b", b"wrong"));
        assert!(matches!(
            flow.on_result(&votes, &h, None, ORDER).unwrap(),
            Step::RunAnother { .. }
        ));
        votes.push(vote("c", b"x"));
        let Step::Accept { accepted, how } = flow.on_result(&votes, &h, None, ORDER).unwrap()
        else {
            panic!("expected acceptance");
        };
        assert_eq!(how, Checked::Quorum { votes: 2, runs: 3 });
        assert_eq!(accepted.to_slash().collect::<Vec<_>>(), vec![account("b")]);
    }

    #[test]
    fn replicate_split_adds_tie_breakers_then_refunds() {
        let mut flow = Flow::new("replicate:3:2".parse().unwrap());
        let h = ProviderHistory::default();
        let mut votes = vec![vote("a", b"1"), vote("b", b"2"), vote("c", b"3")];
        assert!(matches!(
            flow.on_result(&votes[..1], &h, None, ORDER).unwrap(),
            Step::RunAnother { .. }
        ));
        assert!(matches!(
            flow.on_result(&votes, &h, None, ORDER).unwrap(),
            Step::RunAnother { .. }
        ));
        votes.push(vote("d", b"4"));
        votes.push(vote("e", b"5"));
        assert!(matches!(
            flow.on_result(&votes, &h, None, ORDER).unwrap(),
            Step::Refund { .. }
        ));
    }

    #[test]
    fn an_untrusted_provider_is_replicated_under_adaptive() {
        let mut flow = Flow::new(VerifyPolicy::DEFAULT);
        let new = ProviderHistory::default();
        assert!(flow.needs_seed(1));
        let step = flow
            .on_result(&[vote("a", b"x")], &new, Some(Hash([1; 32])), ORDER)
            .unwrap();
        assert!(matches!(step, Step::RunAnother { .. }));
        let step = flow
            .on_result(&[vote("a", b"x"), vote("b", b"x")], &new, None, ORDER)
            .unwrap();
        assert!(matches!(
            step,
            Step::Accept {
                how: Checked::Quorum { votes: 2, runs: 2 },
                ..
            }
        ));
    }

    #[test]
    fn a_spot_draw_follows_the_seed() {
        let policy: VerifyPolicy = "spot:0.5".parse().unwrap();
        let h = ProviderHistory::default();
        let mut audited = 0;
        for i in 0..200u8 {
            let mut flow = Flow::new(policy);
            let seed = Hash([i; 32]);
            let step = flow
                .on_result(&[vote("a", b"x")], &h, Some(seed), ORDER)
                .unwrap();
            let drawn = sampling::should_audit(&policy, seed, ORDER, &h);
            assert_eq!(matches!(step, Step::RunAnother { .. }), drawn);
            audited += u32::from(drawn);
        }
        assert!(
            (60..140).contains(&audited),
            "{audited} of 200 audited at p = 0.5"
        );
    }

    #[test]
    fn a_sampling_policy_without_a_seed_is_an_error_not_a_guess() {
        let mut flow = Flow::new("spot:0.2".parse().unwrap());
        let err = flow.on_result(&[vote("a", b"x")], &ProviderHistory::default(), None, ORDER);
        assert_eq!(err, Err(FlowError::SeedMissing));
    }

    #[test]
    fn only_sampling_policies_accept_unchecked_when_no_other_provider_exists() {
        let one = [vote("a", b"x")];
        assert!(
            Flow::new(VerifyPolicy::DEFAULT)
                .without_more_providers(&one)
                .is_some()
        );
        assert!(
            Flow::new("replicate:3:2".parse().unwrap())
                .without_more_providers(&one)
                .is_none()
        );
    }
}
