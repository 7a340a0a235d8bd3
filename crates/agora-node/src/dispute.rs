//! The market as referee: challenges to results held under `challenge:WINDOW`, and orders
//! whose replicas reached no quorum.
//!
//! A challenge is the challenger's signed result ([`ChallengeResult`]) and a bond: an
//! escrow the challenger opens under [`challenge_bond_id`] (on an EVM market the
//! challenger opens it on chain itself and the node takes over the identical escrow, as
//! it does a buyer's; see [`crate::orders::lock_bond`]). The node checks it with
//! [`agora_verify::dispute::check_challenge`] (window, bond, not the provider itself, a
//! different result), commits the bond, and re-executes the job itself
//! ([`verification::referee_run`]; the executor is deterministic).
//! [`agora_verify::dispute::resolve_challenge`] rules, and its instructions become ledger
//! transactions: the bond is refunded, or paid half to the provider with the rest burnt
//! (`BurnEscrow`); a provider proven wrong is slashed with the challenger as beneficiary
//! and the buyer refunded in full; a provider proven right is paid as usual.

use std::sync::Arc;

use agora_core::{AccountId, Amount, Hash, Signed};
use agora_ledger::{Tx, TxBody};
use agora_proto::api::{ChallengeRequest, OrderView, SlashView};
use agora_proto::{ChallengeResult, OrderState, challenge_bond_id, hexed};
use agora_verify::Checked;
use agora_verify::dispute::{
    Challenge, ChallengeRules, Instruction, ResultClaim, Ruling, check_challenge, resolve_challenge,
};
use agora_verify::quorum::{Accepted, Disagreement, RunResult};
use serde::{Deserialize, Serialize};

use crate::chain::LedgerOp;
use crate::clock::now_ms;
use crate::error::ApiFailure;
use crate::lifecycle::{self, Action};
use crate::node::Shared;
use crate::verification::{self, Status};

/// A challenge on record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeRecord {
    /// Who challenged.
    pub challenger: AccountId,
    /// The result it claimed.
    pub result: RunResult,
    /// Its bond.
    pub bond: Amount,
    /// The escrow holding the bond.
    pub bond_id: Hash,
    /// When it was filed (Unix ms).
    pub filed_ms: u64,
    /// The ruling, once decided.
    pub ruling: Option<String>,
}

/// Checks and records a challenge, commits its bond, and starts the referee.
pub async fn file_challenge(
    shared: &Arc<Shared>,
    id: Hash,
    request: ChallengeRequest,
) -> Result<OrderView, ApiFailure> {
    let chain = &shared.identity.chain_id;
    let signed: Signed<ChallengeResult> = hexed::decode(&request.challenge, "signed challenge")
        .map_err(|e| ApiFailure::BadRequest(format!("field `challenge`: {e}")))?;
    let bond_tx: Tx = hexed::decode(&request.bond_tx, "ledger transaction")
        .map_err(|e| ApiFailure::BadRequest(format!("field `bond_tx`: {e}")))?;
    signed.verify(chain).map_err(|e| {
        ApiFailure::BadSignature(format!(
            "the challenge's signature does not check out ({e})"
        ))
    })?;
    bond_tx.verify(chain).map_err(|e| {
        ApiFailure::BadSignature(format!("the bond's signature does not check out ({e})"))
    })?;
    let challenger = signed.signer;
    let bond_id = challenge_bond_id(&id, &challenger);
    let bond = match &bond_tx.body {
        TxBody::OpenEscrow {
            order_id, amount, ..
        } if *order_id == bond_id && bond_tx.signer == challenger => *amount,
        _ => {
            return Err(ApiFailure::EscrowMismatch(format!(
                "the bond must be an OpenEscrow signed by the challenger for escrow {bond_id} (challenge_bond_id of the order and the challenger)"
            )));
        }
    };
    if signed.body.order_id != id {
        return Err(ApiFailure::BadRequest(format!(
            "the challenge names order {}, not {id}",
            signed.body.order_id
        )));
    }
    let challenge = Challenge {
        challenger,
        result: RunResult {
            digest: signed.body.result_digest,
            fuel: signed.body.fuel_used,
        },
        bond,
        filed_ms: now_ms(),
    };
    reserve(shared, id, &challenge).await?;
    if let Err(failure) = crate::orders::lock_bond(shared, bond_tx).await {
        let mut book = shared.book();
        if let Some(entry) = book.orders.get_mut(&id) {
            entry.rec.verification.status = Status::Pending;
        }
        return Err(failure);
    }
    let view = {
        let mut book = shared.book();
        let entry = book
            .orders
            .get_mut(&id)
            .ok_or(ApiFailure::UnknownOrder(id))?;
        entry.rec.verification.challenge = Some(ChallengeRecord {
            challenger,
            result: challenge.result,
            bond,
            bond_id,
            filed_ms: challenge.filed_ms,
            ruling: None,
        });
        shared.enter(
            entry,
            OrderState::Verifying,
            format!("challenged by {challenger} with a bond of {bond}; the market re-executes the job as referee"),
        );
        entry.view()
    };
    let shared = shared.clone();
    tokio::spawn(async move { resolve(shared, id).await });
    Ok(view)
}

/// Marks the held result challenged if the challenge may be filed now.
async fn reserve(shared: &Shared, id: Hash, challenge: &Challenge) -> Result<(), ApiFailure> {
    let claim = {
        let book = shared.book();
        let entry = book.orders.get(&id).ok_or(ApiFailure::UnknownOrder(id))?;
        claim_of(entry)?
    };
    let at_stake = stake_at_risk(shared, &claim.0, claim.1.provider).await;
    let mut book = shared.book();
    let entry = book
        .orders
        .get_mut(&id)
        .ok_or(ApiFailure::UnknownOrder(id))?;
    let v = &mut entry.rec.verification;
    if v.status != Status::Pending || entry.busy {
        return Err(ApiFailure::Conflict(format!(
            "order {id}'s result is {} and cannot be challenged now",
            entry.rec.state
        )));
    }
    let claim = ResultClaim {
        at_stake,
        ..claim.1
    };
    check_challenge(
        &v.flow.policy,
        &claim,
        challenge,
        &ChallengeRules::default(),
    )
    .map_err(|e| ApiFailure::Conflict(format!("challenge refused: {e}")))?;
    v.status = Status::Challenged;
    Ok(())
}

/// The provider's held claim, and the order body.
fn claim_of(
    entry: &crate::node::OrderEntry,
) -> Result<(agora_proto::OrderRequest, ResultClaim), ApiFailure> {
    let v = &entry.rec.verification;
    let (Some(recorded_ms), Some(run)) = (v.held_since_ms, v.runs.first()) else {
        return Err(ApiFailure::Conflict(format!(
            "order {} holds no result open for challenges (policy {}, state {})",
            entry.id(),
            v.flow.policy,
            entry.rec.state
        )));
    };
    let vote = &v.votes()[0];
    Ok((
        entry.rec.order.body.clone(),
        ResultClaim {
            order_id: entry.id(),
            provider: vote.provider,
            receipt: run.receipt.id(),
            result: vote.result,
            recorded_ms,
            at_stake: Amount::ZERO,
        },
    ))
}

/// What a proven fault on this order costs `provider`: the deterrent stake (at least
/// [`verification::MIN_SLASH`]) as far as its stake goes.
async fn stake_at_risk(
    shared: &Shared,
    body: &agora_proto::OrderRequest,
    provider: AccountId,
) -> Amount {
    let stake = shared
        .chain
        .stake(provider)
        .await
        .ok()
        .flatten()
        .and_then(|s| s.total().ok())
        .unwrap_or(Amount::ZERO);
    verification::required_stake(body)
        .max(verification::MIN_SLASH)
        .min(stake)
}

/// Re-executes a challenged order and carries out the ruling.
async fn resolve(shared: Arc<Shared>, id: Hash) {
    let Some((body, claim, record)) = ({
        let book = shared.book();
        book.orders.get(&id).and_then(|entry| {
            let (body, claim) = claim_of(entry).ok()?;
            Some((body, claim, entry.rec.verification.challenge.clone()?))
        })
    }) else {
        return;
    };
    let claim = ResultClaim {
        at_stake: stake_at_risk(&shared, &body, claim.provider).await,
        ..claim
    };
    let challenge = Challenge {
        challenger: record.challenger,
        result: record.result,
        bond: record.bond,
        filed_ms: record.filed_ms,
    };
    let referee = verification::referee_run(&shared, id, &body).await;
    let resolution = referee.and_then(|r| {
        resolve_challenge(
            &body.verify,
            &claim,
            &challenge,
            r,
            &ChallengeRules::default(),
        )
        .map_err(|e| e.to_string())
    });
    let resolution = match resolution {
        Ok(resolution) => resolution,
        Err(err) => {
            // Nothing could be decided: the challenger gets its bond back and the held
            // result settles as it would have.
            tracing::warn!(order = %id, "challenge undecided: {err}");
            let _ = shared
                .chain
                .submit(vec![LedgerOp::Market(TxBody::RefundEscrow {
                    order_id: record.bond_id,
                })])
                .await;
            return rule(
                &shared,
                id,
                format!("undecided ({err}); bond refunded"),
                None,
                &claim,
            );
        }
    };
    let mut ops = Vec::new();
    let mut payouts = Vec::new();
    let mut slashes = Vec::new();
    for instruction in &resolution.settlement.instructions {
        match instruction {
            Instruction::Refund { .. } => ops.push(TxBody::RefundEscrow {
                order_id: record.bond_id,
            }),
            Instruction::Pay { to, amount } => payouts.push((*to, *amount)),
            Instruction::Burn { amount } => ops.push(TxBody::BurnEscrow {
                order_id: record.bond_id,
                amount: *amount,
            }),
            Instruction::Slash {
                provider,
                amount,
                evidence,
                beneficiary,
                ..
            } => slashes.push(TxBody::Slash {
                provider: *provider,
                amount: *amount,
                evidence: *evidence,
                reason: format!("order {id}: a challenge proved the signed result wrong"),
                // Nobody earned the reward (both were wrong): the verification fund.
                beneficiary: beneficiary.unwrap_or_else(|| shared.identity.market_key.account()),
            }),
        }
    }
    if !payouts.is_empty() {
        ops.insert(
            0,
            TxBody::ReleaseEscrow {
                order_id: record.bond_id,
                payouts,
            },
        );
    }
    ops.extend(slashes.iter().cloned());
    let ops = ops.into_iter().map(LedgerOp::Market).collect();
    if let Err(err) = shared.chain.submit(ops).await {
        tracing::warn!(order = %id, "challenge settlement not committed: {err}");
    }
    let slash = slashes
        .first()
        .and_then(|tx| match (tx, &resolution.evidence) {
            (TxBody::Slash { amount, reason, .. }, Some(evidence)) => Some(SlashView {
                provider: claim.provider,
                amount: *amount,
                evidence: evidence.hash(),
                evidence_record: hex::encode(agora_core::canonical::encode(evidence)),
                reason: reason.clone(),
            }),
            _ => None,
        });
    // A ruling against the provider with nothing left to slash still refunds the buyer.
    let wrong = !matches!(resolution.ruling, Ruling::ProviderRight);
    let ruling = match resolution.ruling {
        Ruling::ProviderRight => "provider right",
        Ruling::ChallengerRight => "challenger right",
        Ruling::BothWrong => "both wrong",
    };
    rule(
        &shared,
        id,
        ruling.to_string(),
        wrong.then_some(slash),
        &claim,
    );
}

/// Records the ruling and settles the order by it: paid if the provider's result stood,
/// refunded in full (its provider slashed) if it fell.
///
/// `wrong` is `None` when the provider's result stands, `Some(slash)` when it fell (the
/// slash, if its stake allowed one).
fn rule(
    shared: &Arc<Shared>,
    id: Hash,
    ruling: String,
    wrong: Option<Option<SlashView>>,
    claim: &ResultClaim,
) {
    let mut book = shared.book();
    let Some(entry) = book.orders.get_mut(&id) else {
        return;
    };
    let v = &mut entry.rec.verification;
    if let Some(record) = v.challenge.as_mut() {
        record.ruling = Some(ruling.clone());
    }
    let actions = match wrong {
        None => {
            v.status = Status::Pending;
            shared.enter(
                entry,
                OrderState::Verifying,
                format!("challenge ruled: {ruling}; the provider's result stands"),
            );
            let accepted = Accepted {
                result: claim.result,
                agreeing: vec![claim.provider],
                disagreeing: Vec::new(),
            };
            let how = if ruling.starts_with("undecided") {
                Checked::Unchecked
            } else {
                Checked::Referee
            };
            verification::accept(shared, &mut book, id, accepted, how)
        }
        Some(slash) => {
            v.status = Status::Failed;
            if let Some(run) = v.runs.first_mut() {
                run.agreed = Some(false);
            }
            let reason = format!(
                "challenge ruled: {ruling}; the provider's signed result was wrong, it is slashed {} and the buyer refunded",
                slash.as_ref().map_or(Amount::ZERO, |s| s.amount)
            );
            v.slashes.extend(slash);
            let provider = claim.provider;
            let now = now_ms();
            book.market
                .record_event(provider, agora_market::ReputationEvent::ProvenFault, now);
            let p = book.providers.entry(provider).or_default();
            p.history = agora_verify::ProviderHistory::default();
            p.faults.record(now);
            p.slashed += 1;
            shared.metrics.frauds.inc();
            lifecycle::begin_refund(&mut book, id, reason)
        }
    };
    drop(book);
    lifecycle::run(shared, actions);
}

/// Replicas that reached no quorum: the market re-runs the job and settles by its run.
/// Runs that match it are paid; the others are slashed with the referee's evidence; if
/// none matches, the buyer is refunded in full.
pub async fn referee_decides(shared: Arc<Shared>, id: Hash) {
    let body = {
        let book = shared.book();
        book.orders.get(&id).map(|e| e.rec.order.body.clone())
    };
    let Some(body) = body else { return };
    let referee = verification::referee_run(&shared, id, &body).await;
    let mut book = shared.book();
    let actions: Vec<Action> = match referee {
        Err(err) => {
            if let Some(entry) = book.orders.get_mut(&id) {
                entry.busy = false;
                entry.rec.verification.status = Status::Failed;
            }
            lifecycle::begin_refund(
                &mut book,
                id,
                format!("no quorum, and the market could not re-run the job as referee: {err}"),
            )
        }
        Ok(result) => {
            let Some(entry) = book.orders.get_mut(&id) else {
                return;
            };
            entry.busy = false;
            let votes = entry.rec.verification.votes();
            let agreeing = votes
                .iter()
                .filter(|v| v.result == result)
                .map(|v| v.provider)
                .collect();
            let disagreeing = votes
                .iter()
                .filter(|v| v.result != result)
                .map(|v| Disagreement {
                    provider: v.provider,
                    claimed: v.result,
                })
                .collect();
            let accepted = Accepted {
                result,
                agreeing,
                disagreeing,
            };
            verification::accept(&shared, &mut book, id, accepted, Checked::Referee)
        }
    };
    drop(book);
    lifecycle::run(&shared, actions);
}
