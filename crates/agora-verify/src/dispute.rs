//! Challenges: who is right, and the money moves that follow, as plain data.
//!
//! Under `challenge:WINDOW` a result is held for the window after its receipt is recorded. Any
//! staked party may challenge within it by posting a bond and the result it got. The market
//! re-executes (the executor is deterministic) or, for a checkpointed job, runs the
//! [`bisect`](crate::bisect) game, and then:
//!
//! | referee's result equals | challenger's bond | provider's stake at risk |
//! |---|---|---|
//! | the provider's | forfeited: `bond_to_provider_bps` to the provider, the rest burnt | kept |
//! | the challenger's | refunded | slashed: `slash_to_challenger_bps` to the challenger, the rest burnt |
//! | neither | burnt | slashed, all of it burnt |
//!
//! [`resolve_challenge`] returns a [`Settlement`]: instructions the market node turns into
//! ledger transactions. Every settlement conserves value — what goes in (the held bond and
//! the slashed stake) equals what is paid or refunded plus what is burnt — and
//! [`Settlement::flow`] checks it.

use agora_core::{AccountId, Amount, AmountError, Hash};
use serde::{Deserialize, Serialize};

use crate::bisect::{Party, Verdict};
use crate::evidence::{Evidence, EvidenceError, Proof};
use crate::policy::VerifyPolicy;
use crate::quorum::RunResult;

/// A provider's recorded result, as a challenge sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultClaim {
    /// The order.
    pub order_id: Hash,
    /// The provider.
    pub provider: AccountId,
    /// The id of its signed receipt.
    pub receipt: Hash,
    /// What it claimed.
    pub result: RunResult,
    /// When the receipt was recorded (the block timestamp); the window opens here.
    pub recorded_ms: u64,
    /// The provider's stake backing this order: what the deterrence condition counted on,
    /// and what a proven fault slashes.
    pub at_stake: Amount,
}

/// A challenge to a recorded result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// Who challenges; must be staked (the node checks that).
    pub challenger: AccountId,
    /// The result the challenger got.
    pub result: RunResult,
    /// The bond posted, held until the challenge is resolved.
    pub bond: Amount,
    /// When the challenge was recorded (the block timestamp).
    pub filed_ms: u64,
}

/// The challenge game's tunables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeRules {
    /// The smallest bond accepted; it keeps frivolous challenges from costing the market
    /// re-executions for free.
    pub min_bond: Amount,
    /// The share of a forfeited bond paid to the wrongly challenged provider, in basis points;
    /// the rest is burnt, so a provider gains nothing by provoking challenges from a sock puppet.
    pub bond_to_provider_bps: u16,
    /// The share of slashed stake paid to a winning challenger, in basis points; the rest is
    /// burnt. Set it to the genesis `slash_beneficiary_bps`, which is the split the ledger's
    /// slash transaction applies.
    pub slash_to_challenger_bps: u16,
}

impl Default for ChallengeRules {
    /// A 1 AGR minimum bond and half-and-half splits (the ledger's default slash split).
    fn default() -> Self {
        ChallengeRules {
            min_bond: Amount::agr(1),
            bond_to_provider_bps: 5_000,
            slash_to_challenger_bps: 5_000,
        }
    }
}

/// A challenge that cannot be accepted or resolved. Nothing was decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// The order's policy has no challenge window.
    #[error("policy {0} has no challenge window; only challenge:WINDOW results can be challenged")]
    NotChallengeable(VerifyPolicy),
    /// Filed after the window closed.
    #[error("challenge filed at {filed_ms} ms but the window closed at {closed_ms} ms")]
    WindowClosed {
        /// When it was filed.
        filed_ms: u64,
        /// When the window closed.
        closed_ms: u64,
    },
    /// Filed before the result it challenges was recorded.
    #[error("challenge filed at {filed_ms} ms, before the result was recorded at {recorded_ms} ms")]
    BeforeResult {
        /// When it was filed.
        filed_ms: u64,
        /// When the result was recorded.
        recorded_ms: u64,
    },
    /// The bond is below the minimum.
    #[error("bond {bond} is below the minimum {min}; post at least the minimum bond")]
    BondTooLow {
        /// Posted.
        bond: Amount,
        /// Required.
        min: Amount,
    },
    /// The challenger's result is the provider's: nothing to dispute.
    #[error("the challenger's result equals the provider's; there is nothing to dispute")]
    SameResult,
    /// A provider challenging itself.
    #[error("a provider cannot challenge its own result")]
    SelfChallenge,
    /// A share above 100 %.
    #[error("share {0} bps is above 10000 (100 %)")]
    BadShare(u16),
    /// The evidence for the slash could not be made.
    #[error("evidence: {0}")]
    Evidence(#[from] EvidenceError),
    /// Amounts out of range.
    #[error("amount: {0}")]
    Amount(#[from] AmountError),
}

/// Who the referee found right.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ruling {
    /// The provider's result stands; the challenger loses its bond.
    ProviderRight,
    /// The challenger was right; the provider is slashed.
    ChallengerRight,
    /// Neither matched the referee; both lose.
    BothWrong,
}

impl Ruling {
    /// The ruling from the referee's own run of the whole job.
    pub fn from_referee(claim: &ResultClaim, challenge: &Challenge, referee: RunResult) -> Ruling {
        if referee == claim.result {
            Ruling::ProviderRight
        } else if referee == challenge.result {
            Ruling::ChallengerRight
        } else {
            Ruling::BothWrong
        }
    }

    /// The ruling from a bisection verdict (the provider is the claimant).
    pub fn from_verdict(verdict: &Verdict) -> Ruling {
        match (
            verdict.lost(Party::Claimant),
            verdict.lost(Party::Challenger),
        ) {
            (true, false) => Ruling::ChallengerRight,
            (false, true) => Ruling::ProviderRight,
            _ => Ruling::BothWrong,
        }
    }
}

/// One money move, for the market node to turn into a ledger transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Instruction {
    /// Return held funds (a bond) to who posted them.
    Refund {
        /// To whom.
        to: AccountId,
        /// How much.
        amount: Amount,
    },
    /// Pay held funds to someone.
    Pay {
        /// To whom.
        to: AccountId,
        /// How much.
        amount: Amount,
    },
    /// Burn held funds.
    Burn {
        /// How much.
        amount: Amount,
    },
    /// Slash `amount` of `provider`'s stake on `evidence`: `reward` to `beneficiary`, the rest
    /// burnt. Maps to the ledger's slash transaction.
    Slash {
        /// Whose stake.
        provider: AccountId,
        /// How much.
        amount: Amount,
        /// [`Evidence::hash`] of the fault.
        evidence: Hash,
        /// Who gets the reward; `None` when nobody earned it and all of it is burnt.
        beneficiary: Option<AccountId>,
        /// The beneficiary's share.
        reward: Amount,
    },
}

/// Value in and out of a settlement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueFlow {
    /// The held funds plus the stake slashed.
    pub inputs: Amount,
    /// Paid or refunded to accounts.
    pub outputs: Amount,
    /// Destroyed.
    pub burnt: Amount,
}

/// Instructions that settle held funds (and slash stake).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// Funds held for this settlement before it (the challenger's bond).
    pub held: Amount,
    /// What to do, in order.
    pub instructions: Vec<Instruction>,
}

impl Settlement {
    /// Totals the flows, failing if a sum overflows or a slash rewards more than it takes.
    pub fn flow(&self) -> Result<ValueFlow, AmountError> {
        let mut flow = ValueFlow {
            inputs: self.held,
            outputs: Amount::ZERO,
            burnt: Amount::ZERO,
        };
        for instruction in &self.instructions {
            match *instruction {
                Instruction::Refund { amount, .. } | Instruction::Pay { amount, .. } => {
                    flow.outputs = flow.outputs.checked_add(amount)?;
                }
                Instruction::Burn { amount } => flow.burnt = flow.burnt.checked_add(amount)?,
                Instruction::Slash { amount, reward, .. } => {
                    flow.inputs = flow.inputs.checked_add(amount)?;
                    flow.outputs = flow.outputs.checked_add(reward)?;
                    flow.burnt = flow.burnt.checked_add(amount.checked_sub(reward)?)?;
                }
            }
        }
        Ok(flow)
    }

    /// Whether inputs = outputs + burnt.
    pub fn conserves(&self) -> bool {
        self.flow()
            .ok()
            .and_then(|f| {
                f.outputs
                    .checked_add(f.burnt)
                    .ok()
                    .map(|out| out == f.inputs)
            })
            .unwrap_or(false)
    }

    fn push(&mut self, instruction: Instruction) {
        let empty = match &instruction {
            Instruction::Refund { amount, .. }
            | Instruction::Pay { amount, .. }
            | Instruction::Burn { amount }
            | Instruction::Slash { amount, .. } => amount.is_zero(),
        };
        // Zero moves are left out: the ledger refuses zero transfers and slashes.
        if !empty {
            self.instructions.push(instruction);
        }
    }
}

/// A resolved challenge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// Who was right.
    pub ruling: Ruling,
    /// The evidence against the provider, when it was wrong; its hash is in the slash.
    pub evidence: Option<Evidence>,
    /// The money moves.
    pub settlement: Settlement,
}

/// Whether `challenge` may be filed against `claim` under `policy` and `rules`.
pub fn check_challenge(
    policy: &VerifyPolicy,
    claim: &ResultClaim,
    challenge: &Challenge,
    rules: &ChallengeRules,
) -> Result<(), ChallengeError> {
    let window_ms = policy
        .challenge_window_ms()
        .ok_or(ChallengeError::NotChallengeable(*policy))?;
    if challenge.filed_ms < claim.recorded_ms {
        return Err(ChallengeError::BeforeResult {
            filed_ms: challenge.filed_ms,
            recorded_ms: claim.recorded_ms,
        });
    }
    let closed_ms = claim.recorded_ms.saturating_add(window_ms);
    if challenge.filed_ms > closed_ms {
        return Err(ChallengeError::WindowClosed {
            filed_ms: challenge.filed_ms,
            closed_ms,
        });
    }
    if challenge.bond < rules.min_bond {
        return Err(ChallengeError::BondTooLow {
            bond: challenge.bond,
            min: rules.min_bond,
        });
    }
    if challenge.challenger == claim.provider {
        return Err(ChallengeError::SelfChallenge);
    }
    if challenge.result == claim.result {
        return Err(ChallengeError::SameResult);
    }
    check_shares(rules)
}

fn check_shares(rules: &ChallengeRules) -> Result<(), ChallengeError> {
    for share in [rules.bond_to_provider_bps, rules.slash_to_challenger_bps] {
        if share > 10_000 {
            return Err(ChallengeError::BadShare(share));
        }
    }
    Ok(())
}

/// Resolves a challenge by the referee's re-execution of the whole job.
pub fn resolve_challenge(
    policy: &VerifyPolicy,
    claim: &ResultClaim,
    challenge: &Challenge,
    referee: RunResult,
    rules: &ChallengeRules,
) -> Result<Resolution, ChallengeError> {
    let ruling = Ruling::from_referee(claim, challenge, referee);
    settle_dispute(
        policy,
        claim,
        challenge,
        ruling,
        Proof::Referee { result: referee },
        rules,
    )
}

/// Settles a challenge whose `ruling` is established by `proof` (a referee run, or a
/// bisection verdict with [`Proof::Bisection`]).
pub fn settle_dispute(
    policy: &VerifyPolicy,
    claim: &ResultClaim,
    challenge: &Challenge,
    ruling: Ruling,
    proof: Proof,
    rules: &ChallengeRules,
) -> Result<Resolution, ChallengeError> {
    check_challenge(policy, claim, challenge, rules)?;
    let mut settlement = Settlement {
        held: challenge.bond,
        instructions: Vec::new(),
    };
    let evidence = match ruling {
        Ruling::ProviderRight => {
            forfeit_bond(&mut settlement, challenge, Some(claim.provider), rules)?;
            None
        }
        Ruling::ChallengerRight => {
            settlement.push(Instruction::Refund {
                to: challenge.challenger,
                amount: challenge.bond,
            });
            let evidence = evidence_against(policy, claim, proof)?;
            slash(
                &mut settlement,
                claim,
                &evidence,
                Some(challenge.challenger),
                rules,
            );
            Some(evidence)
        }
        Ruling::BothWrong => {
            forfeit_bond(&mut settlement, challenge, None, rules)?;
            let evidence = evidence_against(policy, claim, proof)?;
            slash(&mut settlement, claim, &evidence, None, rules);
            Some(evidence)
        }
    };
    Ok(Resolution {
        ruling,
        evidence,
        settlement,
    })
}

/// The bond is lost: a share to the wrongly challenged provider (`None` when the provider
/// was wrong too and earns nothing), the rest burnt.
fn forfeit_bond(
    settlement: &mut Settlement,
    challenge: &Challenge,
    provider: Option<AccountId>,
    rules: &ChallengeRules,
) -> Result<(), ChallengeError> {
    let mut burnt = challenge.bond;
    if let Some(provider) = provider {
        let share = challenge.bond.basis_points(rules.bond_to_provider_bps);
        burnt = burnt.checked_sub(share)?;
        settlement.push(Instruction::Pay {
            to: provider,
            amount: share,
        });
    }
    settlement.push(Instruction::Burn { amount: burnt });
    Ok(())
}

fn slash(
    settlement: &mut Settlement,
    claim: &ResultClaim,
    evidence: &Evidence,
    beneficiary: Option<AccountId>,
    rules: &ChallengeRules,
) {
    let reward = match beneficiary {
        Some(_) => claim.at_stake.basis_points(rules.slash_to_challenger_bps),
        None => Amount::ZERO,
    };
    settlement.push(Instruction::Slash {
        provider: claim.provider,
        amount: claim.at_stake,
        evidence: evidence.hash(),
        beneficiary,
        reward,
    });
}

fn evidence_against(
    policy: &VerifyPolicy,
    claim: &ResultClaim,
    proof: Proof,
) -> Result<Evidence, EvidenceError> {
    let evidence = Evidence {
        order_id: claim.order_id,
        provider: claim.provider,
        receipt: claim.receipt,
        claimed: claim.result,
        proof,
        policy: *policy,
    };
    evidence.check()?;
    Ok(evidence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::Fuel;

    const POLICY: VerifyPolicy = VerifyPolicy::Challenge { window_ms: 30_000 };

    fn result(tag: &[u8]) -> RunResult {
        RunResult {
            digest: Hash::of(tag),
            fuel: Fuel(1_000),
        }
    }

    fn claim(tag: &[u8]) -> ResultClaim {
        ResultClaim {
            order_id: Hash::of(b"order"),
            provider: AccountId::from_bytes([1; 32]),
            receipt: Hash::of(b"receipt"),
            result: result(tag),
            recorded_ms: 1_000,
            at_stake: Amount::agr(10),
        }
    }

    fn challenge(tag: &[u8]) -> Challenge {
        Challenge {
            challenger: AccountId::from_bytes([2; 32]),
            result: result(tag),
            bond: Amount::agr(2),
            filed_ms: 5_000,
        }
    }

    fn resolve(provider: &[u8], challenger: &[u8], referee: &[u8]) -> Resolution {
        let rules = ChallengeRules::default();
        resolve_challenge(
            &POLICY,
            &claim(provider),
            &challenge(challenger),
            result(referee),
            &rules,
        )
        .unwrap()
    }

    #[test]
    fn challenging_an_honest_result_loses_the_bond() {
        let r = resolve(b"right", b"wrong", b"right");
        assert_eq!(r.ruling, Ruling::ProviderRight);
        assert!(r.evidence.is_none());
        assert_eq!(
            r.settlement.instructions,
            vec![
                Instruction::Pay {
                    to: AccountId::from_bytes([1; 32]),
                    amount: Amount::agr(1)
                },
                Instruction::Burn {
                    amount: Amount::agr(1)
                },
            ]
        );
        assert!(r.settlement.conserves());
    }

    #[test]
    fn challenging_a_wrong_result_wins_and_slashes() {
        let r = resolve(b"wrong", b"right", b"right");
        assert_eq!(r.ruling, Ruling::ChallengerRight);
        let evidence = r.evidence.clone().unwrap();
        assert_eq!(
            r.settlement.instructions,
            vec![
                Instruction::Refund {
                    to: AccountId::from_bytes([2; 32]),
                    amount: Amount::agr(2)
                },
                Instruction::Slash {
                    provider: AccountId::from_bytes([1; 32]),
                    amount: Amount::agr(10),
                    evidence: evidence.hash(),
                    beneficiary: Some(AccountId::from_bytes([2; 32])),
                    reward: Amount::agr(5),
                },
            ]
        );
        let flow = r.settlement.flow().unwrap();
        assert_eq!(flow.inputs, Amount::agr(12));
        assert_eq!((flow.outputs, flow.burnt), (Amount::agr(7), Amount::agr(5)));
    }

    #[test]
    fn when_both_are_wrong_both_lose_and_nobody_is_rewarded() {
        let r = resolve(b"wrong-1", b"wrong-2", b"right");
        assert_eq!(r.ruling, Ruling::BothWrong);
        let flow = r.settlement.flow().unwrap();
        assert_eq!(flow.outputs, Amount::ZERO);
        assert_eq!(flow.burnt, Amount::agr(12));
    }

    #[test]
    fn admission_rules() {
        let rules = ChallengeRules::default();
        let c = claim(b"a");
        let late = Challenge {
            filed_ms: 31_001,
            ..challenge(b"b")
        };
        assert!(matches!(
            check_challenge(&POLICY, &c, &late, &rules),
            Err(ChallengeError::WindowClosed {
                closed_ms: 31_000,
                ..
            })
        ));
        let on_the_edge = Challenge {
            filed_ms: 31_000,
            ..challenge(b"b")
        };
        assert!(check_challenge(&POLICY, &c, &on_the_edge, &rules).is_ok());
        let cheap = Challenge {
            bond: Amount(1),
            ..challenge(b"b")
        };
        assert!(matches!(
            check_challenge(&POLICY, &c, &cheap, &rules),
            Err(ChallengeError::BondTooLow { .. })
        ));
        assert_eq!(
            check_challenge(&POLICY, &c, &challenge(b"a"), &rules),
            Err(ChallengeError::SameResult)
        );
        assert_eq!(
            check_challenge(&VerifyPolicy::None, &c, &challenge(b"b"), &rules),
            Err(ChallengeError::NotChallengeable(VerifyPolicy::None))
        );
        let early = Challenge {
            filed_ms: 10,
            ..challenge(b"b")
        };
        assert!(matches!(
            check_challenge(&POLICY, &c, &early, &rules),
            Err(ChallengeError::BeforeResult { .. })
        ));
    }

    #[test]
    fn a_bisection_verdict_maps_to_a_ruling() {
        use crate::bisect::LossReason;
        let lost = Some(LossReason::Timeout { step: 3 });
        let verdict = |claimant_lost, challenger_lost| Verdict {
            claimant_lost,
            challenger_lost,
            rounds: 2,
        };
        assert_eq!(
            Ruling::from_verdict(&verdict(lost, None)),
            Ruling::ChallengerRight
        );
        assert_eq!(
            Ruling::from_verdict(&verdict(None, lost)),
            Ruling::ProviderRight
        );
        assert_eq!(
            Ruling::from_verdict(&verdict(lost, lost)),
            Ruling::BothWrong
        );
    }
}
