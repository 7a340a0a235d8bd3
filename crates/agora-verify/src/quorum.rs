//! Replication: which result a set of replicas agreed on, who disagreed, and what to do when
//! they did not agree enough.
//!
//! A vote is a whole [`RunResult`] — the result digest *and* the fuel used. The executor is
//! deterministic, so honest replicas agree on both; a receipt with the accepted digest but a
//! different fuel count is trying to bill for work it did not do, and counts as a
//! disagreement like a wrong digest.
//!
//! A result is accepted when it has at least `quorum` votes **and** strictly more than any
//! other result. The second condition only matters once extra providers have been added (a
//! policy's quorum is already a strict majority of its N), and it keeps the decision a pure
//! function of the receipts, whatever order they arrived in.

use std::collections::BTreeMap;

use agora_core::{AccountId, Fuel, Hash};
use serde::{Deserialize, Serialize};

/// How many providers beyond the policy's N may be added to settle a split vote. Two more
/// settle the usual split caused by a minority of faulty providers; past that the order is
/// refunded rather than chasing an unlucky draw with the buyer's money.
pub const DEFAULT_EXTRA_PROVIDERS: u32 = 2;

/// What one run produced: the executor's result digest and the fuel it consumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RunResult {
    /// The executor's canonical result digest.
    pub digest: Hash,
    /// Fuel the run used; the bill is price × fuel.
    pub fuel: Fuel,
}

/// One replica's receipt, as far as voting is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaReceipt {
    /// Who ran it.
    pub provider: AccountId,
    /// What it claims came out.
    pub result: RunResult,
}

/// The votes needed and the most providers that may be tried in total.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumRule {
    /// Votes a result needs.
    pub quorum: u32,
    /// The most distinct providers tried for one order, including the first N.
    pub cap: u32,
}

impl QuorumRule {
    /// The rule for `replicate:N:Q`: Q votes, at most N + [`DEFAULT_EXTRA_PROVIDERS`] tried.
    pub fn replicate(n: u32, quorum: u32) -> QuorumRule {
        QuorumRule {
            quorum,
            cap: n.saturating_add(DEFAULT_EXTRA_PROVIDERS),
        }
    }

    /// The rule when a single result is checked by a second run (a spot-check audit or
    /// adaptive's full replication): both must agree; a split brings in tie-breakers.
    pub fn audit() -> QuorumRule {
        QuorumRule::replicate(2, 2)
    }
}

/// Why the receipts could not be counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    /// One provider filed two receipts; a provider gets one vote per order.
    #[error("provider {0} filed more than one receipt for the order; each replica votes once")]
    DuplicateProvider(AccountId),
    /// More receipts than providers tried.
    #[error(
        "{receipts} receipts but only {tried} providers were tried; count every assigned provider"
    )]
    MoreReceiptsThanTried {
        /// Receipts given.
        receipts: usize,
        /// Providers tried.
        tried: u32,
    },
    /// A rule that can never accept anything.
    #[error(
        "quorum rule {quorum} votes of at most {cap} providers is invalid; need 1 <= quorum <= cap"
    )]
    InvalidRule {
        /// Votes needed.
        quorum: u32,
        /// Provider cap.
        cap: u32,
    },
}

/// A provider whose receipt disagreed with the accepted result: the one to slash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disagreement {
    /// The provider.
    pub provider: AccountId,
    /// What it claimed instead.
    pub claimed: RunResult,
}

/// A result the replicas settled on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The accepted result; its fuel is what is billed.
    pub result: RunResult,
    /// The providers that voted for it, in receipt order.
    pub agreeing: Vec<AccountId>,
    /// The providers that voted otherwise, in receipt order.
    pub disagreeing: Vec<Disagreement>,
}

impl Accepted {
    /// The fuel to bill: the accepted result's. Every honest replica reports the same count,
    /// so there is nothing to average or pick.
    pub fn billed_fuel(&self) -> Fuel {
        self.result.fuel
    }

    /// The providers whose receipts a quorum proved wrong.
    pub fn to_slash(&self) -> impl Iterator<Item = AccountId> + '_ {
        self.disagreeing.iter().map(|d| d.provider)
    }
}

/// What the market does when no result is accepted yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NextStep {
    /// Assign this many more distinct providers, then decide again.
    AddProviders(u32),
    /// Even the remaining providers under the cap could not produce a quorum: refund.
    Refund,
}

/// Receipts that did not settle on a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoQuorum {
    /// Votes of the leading result (0 with no receipts).
    pub leading_votes: u32,
    /// The fewest further votes the leader needs to be accepted.
    pub votes_short: u32,
    /// What to do about it.
    pub next: NextStep,
}

/// The outcome of counting votes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuorumDecision {
    /// A result reached the quorum with a strict lead.
    Accepted(Accepted),
    /// Not yet, or not at all.
    NoQuorum(NoQuorum),
}

/// Counts `receipts` under `rule`, with `tried` providers assigned so far (those that never
/// answered count as tried but have no receipt and are never slashed here: a timeout is a
/// reputation matter, not proof of fraud).
pub fn decide(
    rule: &QuorumRule,
    receipts: &[ReplicaReceipt],
    tried: u32,
) -> Result<QuorumDecision, QuorumError> {
    check_inputs(rule, receipts, tried)?;
    let tally = tally(receipts);
    let (leader, leading_votes) = leader(&tally);
    let runner_up = runner_up_votes(&tally, leader);
    let needed = rule.quorum.max(runner_up + 1);
    match leader {
        Some(result) if leading_votes >= needed => {
            Ok(QuorumDecision::Accepted(accept(result, receipts)))
        }
        _ => {
            let votes_short = needed - leading_votes;
            let room = rule.cap.saturating_sub(tried);
            let next = if votes_short <= room {
                NextStep::AddProviders(votes_short)
            } else {
                NextStep::Refund
            };
            Ok(QuorumDecision::NoQuorum(NoQuorum {
                leading_votes,
                votes_short,
                next,
            }))
        }
    }
}

fn check_inputs(
    rule: &QuorumRule,
    receipts: &[ReplicaReceipt],
    tried: u32,
) -> Result<(), QuorumError> {
    if rule.quorum == 0 || rule.quorum > rule.cap {
        return Err(QuorumError::InvalidRule {
            quorum: rule.quorum,
            cap: rule.cap,
        });
    }
    if receipts.len() > tried as usize {
        return Err(QuorumError::MoreReceiptsThanTried {
            receipts: receipts.len(),
            tried,
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for receipt in receipts {
        if !seen.insert(receipt.provider) {
            return Err(QuorumError::DuplicateProvider(receipt.provider));
        }
    }
    Ok(())
}

fn tally(receipts: &[ReplicaReceipt]) -> BTreeMap<RunResult, u32> {
    let mut votes = BTreeMap::new();
    for receipt in receipts {
        *votes.entry(receipt.result).or_insert(0u32) += 1;
    }
    votes
}

/// The result with the most votes; ties go to the smallest result so the choice is
/// deterministic (a tie is never accepted anyway).
fn leader(tally: &BTreeMap<RunResult, u32>) -> (Option<RunResult>, u32) {
    let mut best: (Option<RunResult>, u32) = (None, 0);
    for (result, &votes) in tally {
        if votes > best.1 {
            best = (Some(*result), votes);
        }
    }
    best
}

fn runner_up_votes(tally: &BTreeMap<RunResult, u32>, leader: Option<RunResult>) -> u32 {
    tally
        .iter()
        .filter(|(result, _)| Some(**result) != leader)
        .map(|(_, &votes)| votes)
        .max()
        .unwrap_or(0)
}

fn accept(result: RunResult, receipts: &[ReplicaReceipt]) -> Accepted {
    let (agree, disagree): (Vec<&ReplicaReceipt>, Vec<&ReplicaReceipt>) = receipts
        .iter()
        .partition(|receipt| receipt.result == result);
    Accepted {
        result,
        agreeing: agree.iter().map(|r| r.provider).collect(),
        disagreeing: disagree
            .iter()
            .map(|r| Disagreement {
                provider: r.provider,
                claimed: r.result,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(i: u8) -> AccountId {
        AccountId::from_bytes([i; 32])
    }

    fn result(tag: &[u8], fuel: u64) -> RunResult {
        RunResult {
            digest: Hash::of(tag),
            fuel: Fuel(fuel),
        }
    }

    fn receipts(results: &[RunResult]) -> Vec<ReplicaReceipt> {
        results
            .iter()
            .enumerate()
            .map(|(i, r)| ReplicaReceipt {
                provider: provider(i as u8),
                result: *r,
            })
            .collect()
    }

    fn accepted(decision: QuorumDecision) -> Accepted {
        match decision {
            QuorumDecision::Accepted(a) => a,
            QuorumDecision::NoQuorum(n) => panic!("expected a quorum, got {n:?}"),
        }
    }

    #[test]
    fn two_of_three_accepts_and_names_the_dissenter() {
        let good = result(b"good", 10);
        let bad = result(b"bad", 10);
        let rule = QuorumRule::replicate(3, 2);
        let a = accepted(decide(&rule, &receipts(&[good, bad, good]), 3).unwrap());
        assert_eq!(a.result, good);
        assert_eq!(a.agreeing, vec![provider(0), provider(2)]);
        assert_eq!(a.to_slash().collect::<Vec<_>>(), vec![provider(1)]);
        assert_eq!(a.billed_fuel(), Fuel(10));
    }

    #[test]
    fn same_digest_with_inflated_fuel_is_a_disagreement() {
        let good = result(b"good", 10);
        let padded = result(b"good", 99);
        let rule = QuorumRule::replicate(3, 2);
        let a = accepted(decide(&rule, &receipts(&[good, good, padded]), 3).unwrap());
        assert_eq!(a.billed_fuel(), Fuel(10));
        assert_eq!(a.disagreeing[0].claimed, padded);
    }

    #[test]
    fn a_three_way_split_adds_one_provider() {
        let rule = QuorumRule::replicate(3, 2);
        let split = receipts(&[result(b"a", 1), result(b"b", 1), result(b"c", 1)]);
        let decision = decide(&rule, &split, 3).unwrap();
        assert_eq!(
            decision,
            QuorumDecision::NoQuorum(NoQuorum {
                leading_votes: 1,
                votes_short: 1,
                next: NextStep::AddProviders(1),
            })
        );
    }

    #[test]
    fn refunds_when_the_cap_leaves_no_room() {
        let rule = QuorumRule::replicate(3, 2);
        let split = receipts(&[result(b"a", 1), result(b"b", 1), result(b"c", 1)]);
        let decision = decide(&rule, &split, rule.cap).unwrap();
        assert!(matches!(
            decision,
            QuorumDecision::NoQuorum(NoQuorum {
                next: NextStep::Refund,
                ..
            })
        ));
    }

    #[test]
    fn silent_providers_count_as_tried_and_are_not_slashed() {
        let rule = QuorumRule::replicate(3, 2);
        let good = result(b"good", 5);
        let one = receipts(&[good]);
        let decision = decide(&rule, &one, 3).unwrap();
        assert!(matches!(
            decision,
            QuorumDecision::NoQuorum(NoQuorum {
                votes_short: 1,
                next: NextStep::AddProviders(1),
                ..
            })
        ));
    }

    #[test]
    fn a_tie_above_quorum_is_not_accepted() {
        let rule = QuorumRule { quorum: 2, cap: 6 };
        let tie = receipts(&[
            result(b"a", 1),
            result(b"a", 1),
            result(b"b", 1),
            result(b"b", 1),
        ]);
        let decision = decide(&rule, &tie, 4).unwrap();
        assert!(matches!(
            decision,
            QuorumDecision::NoQuorum(NoQuorum {
                leading_votes: 2,
                votes_short: 1,
                ..
            })
        ));
    }

    #[test]
    fn refuses_inconsistent_inputs() {
        let rule = QuorumRule::replicate(3, 2);
        let mut dup = receipts(&[result(b"a", 1), result(b"a", 1)]);
        dup[1].provider = dup[0].provider;
        assert_eq!(
            decide(&rule, &dup, 3),
            Err(QuorumError::DuplicateProvider(provider(0)))
        );
        assert!(matches!(
            decide(&rule, &receipts(&[result(b"a", 1)]), 0),
            Err(QuorumError::MoreReceiptsThanTried { .. })
        ));
        assert!(matches!(
            decide(&QuorumRule { quorum: 0, cap: 3 }, &[], 0),
            Err(QuorumError::InvalidRule { .. })
        ));
    }
}
