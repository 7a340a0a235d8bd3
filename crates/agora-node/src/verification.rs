//! The market node's side of verification: it drives each order's [`Flow`] run by run,
//! pays and slashes by the flow's decisions, and holds challengeable results.
//!
//! Runs happen one after another on distinct providers: a delivered, output-checked run
//! is recorded ([`on_delivered`]), its provider's capacity is freed and the provider is
//! excluded from the order, and the flow says whether another provider runs it, whether a
//! result is accepted (and who is slashed), or whether the buyer is refunded. One
//! assignment per order at a time keeps every other part of the lifecycle (heartbeats,
//! reassignment, restarts) exactly as it is for a single run.
//!
//! **Who pays.** The buyer pays for the accepted result: every agreeing replica under
//! `replicate:N:Q` (its escrow covers N runs), one run at the price its order matched at
//! under every other policy, even when that run's provider was caught and an auditor's
//! result is delivered instead. Audits and tie-breakers of the other policies are paid
//! from the market's verification fund (the market authority's balance), which the
//! beneficiary share of quorum slashes refills. A slash takes [`fault_slash`]: under
//! `adaptive`, the deterrent stake at the least audit rate a trusted provider can get
//! (1 %), the stake its audit rate relies on; under the other policies
//! `max(required stake, MIN_SLASH)` — the deterrent stake of
//! [`agora_verify::economics::required_stake`]. Either way capped at what the provider has.
//!
//! **Audit seed.** A spot-check draw is seeded by the market's Ed25519 signature over the
//! order id and the first receipt's id ([`agora_verify::flow::audit_seed`]): it does not
//! exist before the receipt, the provider cannot compute it, and the signature is
//! published in the order's verification view so anyone can re-check the draw.

use std::sync::Arc;

use agora_core::{AccountId, Amount, Fuel, Hash, Price, SignedReceipt};
use agora_ledger::TxBody;
use agora_market::ReputationEvent;
use agora_proto::OrderRequest;
use agora_proto::OrderState;
use agora_proto::api::{JobResult, RunView, SlashView, VerificationView};
use agora_proto::wire::Delivery;
use agora_verify::flow::{audit_seed, audit_seed_message};
use agora_verify::quorum::{Accepted, ReplicaReceipt, RunResult};
use agora_verify::{Checked, Evidence, Flow, Proof, ProviderHistory, Step, VerifyPolicy};
use serde::{Deserialize, Serialize};

use crate::chain::LedgerOp;
use crate::clock::now_ms;
use crate::lifecycle::{self, Action, Billing};
use crate::node::{Book, Shared};

/// The verification fund a `--dev` chain gives the market authority at genesis.
pub const DEV_VERIFICATION_FUND: Amount = Amount::agr(100_000);

/// The least a proven wrong result costs its provider, when the deterrence rule asks for
/// less (replication needs no deterrent stake: a lone cheater always meets a quorum).
pub const MIN_SLASH: Amount = Amount::agr(1);

/// How long before the order's deadline a challenge window closes at the latest, so the
/// settlement lands before anyone may refund the escrow.
pub const SETTLE_MARGIN_MS: u64 = 5_000;

/// The least time an order under `challenge` must leave beyond its window for the run.
pub const MIN_RUN_MS: u64 = 10_000;

/// Where an order's check stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Runs or the challenge window are still open.
    Pending,
    /// Accepted without a re-run.
    Unchecked,
    /// A quorum of distinct providers agreed.
    Verified,
    /// A challenge was filed; the referee decides.
    Challenged,
    /// No result could be accepted; refunded.
    Failed,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Unchecked => "unchecked",
            Status::Verified => "verified",
            Status::Challenged => "challenged",
            Status::Failed => "failed",
        }
    }
}

/// One run that delivered a result whose outputs checked out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Its signed receipt (the evidence, should it be proven wrong).
    pub receipt: SignedReceipt,
    /// The price per CU it was matched at.
    pub price: Price,
    /// What it delivered.
    pub result: JobResult,
    /// Whether it agreed with the accepted result, once one is.
    pub agreed: Option<bool>,
    /// What it was paid, gross.
    pub paid: Amount,
}

impl RunRecord {
    fn provider(&self) -> AccountId {
        self.receipt.body.provider
    }

    /// The run's vote. A WASM run votes its digest and its exact fuel count; a container
    /// run's fuel is its own machine's CPU time (`Receipt::metering`), which honest
    /// providers never measure alike, so it votes its digest alone and the bill is set
    /// from the agreeing runs afterwards ([`container_billed_fuel`]).
    fn vote(&self) -> ReplicaReceipt {
        let metered = self.receipt.body.metering.is_some();
        ReplicaReceipt {
            provider: self.provider(),
            result: RunResult {
                digest: self.receipt.body.result_digest,
                fuel: if metered {
                    Fuel(0)
                } else {
                    self.receipt.body.fuel_used
                },
            },
        }
    }
}

/// How an order's result is checked; persisted with the order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationRecord {
    /// The policy's state machine.
    pub flow: Flow,
    /// Every run that delivered, in order.
    pub runs: Vec<RunRecord>,
    /// The first run's provider's history when its result came in (adaptive's input).
    pub first_history: ProviderHistory,
    /// The market's signature whose hash seeded the audit draw.
    pub seed_signature: Option<Vec<u8>>,
    /// Where the check stands.
    pub status: Status,
    /// Slashes it caused.
    pub slashes: Vec<SlashView>,
    /// Under `challenge`: the held result's window end (Unix ms).
    pub challenge_until_ms: Option<u64>,
    /// Under `challenge`: when the result was recorded and its window opened (Unix ms).
    pub held_since_ms: Option<u64>,
    /// A challenge filed against the held result, and its ruling once decided.
    pub challenge: Option<crate::dispute::ChallengeRecord>,
}

impl VerificationRecord {
    /// A new order's record under `policy`.
    pub fn new(policy: VerifyPolicy) -> VerificationRecord {
        VerificationRecord {
            flow: Flow::new(policy),
            runs: Vec::new(),
            first_history: ProviderHistory::default(),
            seed_signature: None,
            status: Status::Pending,
            slashes: Vec::new(),
            challenge_until_ms: None,
            held_since_ms: None,
            challenge: None,
        }
    }

    /// Whether a result is held open for challenges (the order must not be re-matched).
    pub fn holds_result(&self) -> bool {
        self.challenge_until_ms.is_some()
            && matches!(self.status, Status::Pending | Status::Challenged)
    }

    /// The order was refunded: a check still open is over, with no result accepted
    /// (`failed`, whether or not any run delivered); a decided one stays as it was.
    pub fn close_refunded(&mut self) {
        if matches!(self.status, Status::Pending | Status::Challenged) {
            self.status = Status::Failed;
        }
    }

    /// Fuel every run claimed, summed.
    pub fn fuel_executed(&self) -> Fuel {
        Fuel(self.runs.iter().map(|r| r.receipt.body.fuel_used.0).sum())
    }

    /// The API view.
    pub fn view(&self) -> VerificationView {
        VerificationView {
            policy: self.flow.policy.to_string(),
            status: self.status.name().to_string(),
            runs: self
                .runs
                .iter()
                .map(|run| RunView {
                    provider: run.provider(),
                    digest: run.receipt.body.result_digest,
                    fuel: run.receipt.body.fuel_used,
                    price: run.price,
                    agreed: run.agreed,
                    paid: run.paid,
                })
                .collect(),
            audited: self.flow.audited,
            audit_seed_signature: self.seed_signature.as_ref().map(hex::encode),
            slashes: self.slashes.clone(),
            challenge_until_ms: self.challenge_until_ms,
            challenger: self.challenge.as_ref().map(|c| c.challenger),
            ruling: self.challenge.as_ref().and_then(|c| c.ruling.clone()),
            fuel_executed: self.fuel_executed(),
        }
    }

    /// Every run's vote, in delivery order.
    pub fn votes(&self) -> Vec<ReplicaReceipt> {
        self.runs.iter().map(RunRecord::vote).collect()
    }
}

/// Checks the order's terms that depend on its policy; `Err` says what to change.
pub fn check_order_terms(body: &OrderRequest, now_ms: u64) -> Result<(), String> {
    if let Some(window) = body.verify.challenge_window_ms() {
        let room = body.deadline_ms.saturating_sub(now_ms);
        let needed = window + SETTLE_MARGIN_MS + MIN_RUN_MS;
        if room < needed {
            return Err(format!(
                "under {} the result is held for {} ms before it settles, so the deadline must be at least {} ms away (it is {room} ms away); set a later deadline or a shorter window",
                body.verify, window, needed
            ));
        }
    }
    Ok(())
}

/// The stake a provider must have bonded to be offered this order: the deterrent stake
/// S ≥ C/p − R for the order's policy, with the reward R one run's worst-case bill and the
/// cost C taken as R (a cheater saves at most what honest work would have cost it).
pub fn required_stake(body: &OrderRequest) -> Amount {
    let per_run = body
        .max_price
        .max_cost(body.fuel_budget)
        .unwrap_or(Amount(u64::MAX));
    agora_verify::economics::required_stake(per_run, per_run, &body.verify)
}

/// What a proven fault on this order takes from a provider (capped at what it has).
///
/// Under `adaptive` the audit rate of a trusted provider falls as its stake grows
/// ([`exposure`]), down to 1 % ([`agora_verify::sampling::MIN_AUDIT_PPM`]). That is only
/// a deterrent if a caught fault costs the stake the rate relied on, so an adaptive order's
/// slash is the deterrent stake at 1 % (C/p − R, about 99 runs' worst-case bill) — and
/// [`exposure`] never counts more stake than this. Other policies slash the stake the
/// order required. Never less than [`MIN_SLASH`].
pub fn fault_slash(body: &OrderRequest) -> Amount {
    let required = required_stake(body).max(MIN_SLASH);
    if !matches!(body.verify, VerifyPolicy::Adaptive { .. }) {
        return required;
    }
    let per_run = body
        .max_price
        .max_cost(body.fuel_budget)
        .unwrap_or(Amount(u64::MAX));
    let at_least_rate = agora_verify::economics::deterrent_stake(
        per_run,
        per_run,
        agora_verify::sampling::MIN_AUDIT_PPM,
    );
    required.max(at_least_rate)
}

/// What a run of the order at `price` puts at stake for a provider with `stake`: the
/// reward R is the run's worst-case bill at that price, the cost C is taken as R (as in
/// [`required_stake`]), and S is the provider's bonded stake as the node last read it, but
/// no more than a proven fault on this order takes ([`fault_slash`]): stake beyond what
/// can be lost deters nothing. A stake read before a slash overstates S only until the
/// next read, and a slashed provider is untrusted (replicated) until long after that.
pub fn exposure(body: &OrderRequest, price: Price, stake: Amount) -> agora_verify::Exposure {
    let reward = price.max_cost(body.fuel_budget).unwrap_or(Amount(u64::MAX));
    agora_verify::Exposure {
        reward,
        cost: reward,
        stake: stake.min(fault_slash(body)),
    }
}

/// A delivery whose outputs checked out: records the run and takes the flow's next step.
pub async fn on_delivered(shared: Arc<Shared>, id: Hash, billing: Billing, delivery: Delivery) {
    let stdio = lifecycle::store_stdio(&shared, &delivery).await;
    let private = shared
        .book()
        .orders
        .get(&id)
        .is_some_and(|entry| entry.rec.order.body.is_private());
    let result = lifecycle::job_result(&delivery, stdio, private);
    let run = RunRecord {
        receipt: delivery.receipt,
        price: billing.price,
        result,
        agreed: None,
        paid: Amount::ZERO,
    };
    let mut book = shared.book();
    let actions = record_run(&shared, &mut book, id, &billing, run);
    drop(book);
    lifecycle::run(&shared, actions);
}

/// Records `run` for attempt `billing.attempt`, frees its provider, and asks the flow.
fn record_run(
    shared: &Shared,
    book: &mut Book,
    id: Hash,
    billing: &Billing,
    run: RunRecord,
) -> Vec<Action> {
    let provider = billing.provider;
    let now = now_ms();
    let rule = shared.settings.fault_suspension;
    let (history, stake) = book
        .providers
        .get(&provider)
        .map(|p| (rule.trusted_history(p.history, &p.faults, now), p.stake))
        .unwrap_or_default();
    let Some(entry) = book.orders.get_mut(&id) else {
        return Vec::new();
    };
    if entry.rec.attempts != billing.attempt || entry.rec.state.is_final() {
        return Vec::new();
    }
    entry.busy = false;
    let match_id = entry.match_id.take();
    entry.resumed_from = None;
    entry.rec.tried.push(provider);
    let receipt_id = run.receipt.id();
    let v = &mut entry.rec.verification;
    v.runs.push(run);
    if v.runs.len() == 1 {
        v.first_history = history;
    }
    let seed = if v.flow.needs_seed(v.runs.len()) {
        let message = audit_seed_message(id, receipt_id);
        let signature = shared.identity.market_key.sign(&message).0.to_vec();
        let seed = audit_seed(&signature);
        v.seed_signature = Some(signature);
        Some(seed)
    } else {
        None
    };
    let votes = v.votes();
    let first = v.first_history;
    let exposure = exposure(&entry.rec.order.body, billing.price, stake);
    let v = &mut entry.rec.verification;
    let step = v
        .flow
        .on_result_at_risk(&votes, &first, &exposure, seed, id);
    if let Some(match_id) = match_id {
        let _ = book.market.complete(&match_id);
    }
    if let Some(p) = book.providers.get_mut(&provider) {
        p.running = p.running.saturating_sub(1);
    }
    match step {
        Ok(Step::RunAnother { why }) => run_another(shared, book, id, why),
        Ok(Step::Accept { accepted, how }) => accept(shared, book, id, accepted, how),
        Ok(Step::Refund { why }) => {
            // The results contradict each other and no quorum is left to find: the market
            // re-runs the job itself, and its run decides who is right.
            let Some(entry) = book.orders.get_mut(&id) else {
                return Vec::new();
            };
            entry.busy = true;
            shared.enter(
                entry,
                OrderState::Verifying,
                format!("{why}; the market re-runs the job itself as referee"),
            );
            vec![Action::Referee { id }]
        }
        Err(err) => {
            tracing::error!(order = %id, "verification step failed: {err}");
            lifecycle::begin_refund(book, id, format!("verification could not proceed: {err}"))
        }
    }
}

/// Puts the order back in the queue for one more distinct provider.
fn run_another(shared: &Shared, book: &mut Book, id: Hash, why: String) -> Vec<Action> {
    if let Some(entry) = book.orders.get_mut(&id) {
        shared.enter(entry, OrderState::Escrowed, why.clone());
    }
    lifecycle::try_match(shared, book, id, Some(&why))
}

/// What to do instead of refunding when no further provider can run an order that
/// already has a result: sampling policies accept it unchecked (and say so); `None` means
/// refund as usual.
pub fn accept_without_more(
    shared: &Shared,
    book: &mut Book,
    id: Hash,
    why: &str,
) -> Option<Vec<Action>> {
    let rule = shared.settings.fault_suspension;
    let now = now_ms();
    let suspended = |who: &AccountId| {
        book.providers
            .get(who)
            .is_some_and(|p| rule.is_suspended(&p.faults, now))
    };
    let entry = book.orders.get(&id)?;
    let v = &entry.rec.verification;
    let accepted = v.flow.without_more_providers(&v.votes())?;
    if accepted.agreeing.iter().any(suspended) {
        // A provider suspended for a proven fault is never trusted unchecked: refund.
        return None;
    }
    let entry = book.orders.get_mut(&id)?;
    let detail =
        format!("no independent provider can re-run it ({why}); accepting the result unchecked");
    shared.enter(entry, OrderState::Verifying, detail);
    Some(accept(shared, book, id, accepted, Checked::Unchecked))
}

/// Settles on `accepted`, or holds it open for challenges first.
pub(crate) fn accept(
    shared: &Shared,
    book: &mut Book,
    id: Hash,
    accepted: Accepted,
    how: Checked,
) -> Vec<Action> {
    let Some(entry) = book.orders.get_mut(&id) else {
        return Vec::new();
    };
    let now = now_ms();
    let v = &mut entry.rec.verification;
    if let Some(window) = v.flow.policy.challenge_window_ms()
        && v.challenge_until_ms.is_none()
    {
        let deadline = entry.rec.order.body.deadline_ms;
        let until = (now + window).min(deadline.saturating_sub(SETTLE_MARGIN_MS));
        v.challenge_until_ms = Some(until);
        v.held_since_ms = Some(now);
        shared.enter(
                entry,
                OrderState::Verifying,
                format!("result held for challenges until {until} (Unix ms); it settles then if nobody challenges it"),
            );
        return Vec::new();
    }
    for run in &mut v.runs {
        let agreed = accepted.agreeing.contains(&run.provider());
        run.agreed = Some(agreed);
    }
    v.status = match how {
        Checked::Quorum { .. } | Checked::Referee => Status::Verified,
        Checked::Unchecked => Status::Unchecked,
    };
    entry.busy = true;
    vec![Action::Settle { id, accepted, how }]
}

/// Watchdog: settles held results whose challenge window closed unchallenged.
pub fn release_held(shared: &Shared, book: &mut Book, now: u64) -> Vec<Action> {
    let due: Vec<Hash> = book
        .active
        .iter()
        .filter_map(|id| book.orders.get(id))
        .filter(|e| {
            !e.busy
                && e.rec.verification.status == Status::Pending
                && e.rec
                    .verification
                    .challenge_until_ms
                    .is_some_and(|until| now >= until)
        })
        .map(|e| e.id())
        .collect();
    let mut actions = Vec::new();
    for id in due {
        let Some(entry) = book.orders.get(&id) else {
            continue;
        };
        let Some(head) = entry.rec.verification.runs.first() else {
            continue;
        };
        let accepted = Accepted {
            result: head.vote().result,
            agreeing: vec![head.provider()],
            disagreeing: Vec::new(),
        };
        actions.extend(accept(shared, book, id, accepted, Checked::Unchecked));
    }
    actions
}

/// Who is paid what, and who is slashed, for an accepted result.
struct Payments {
    /// From the buyer's escrow, gross.
    from_escrow: Vec<(AccountId, Amount)>,
    /// From the verification fund.
    from_fund: Vec<(AccountId, Amount)>,
    /// What the buyer locked.
    escrow: Amount,
    /// Slashes to try: provider, evidence, reason.
    slashes: Vec<(AccountId, Evidence, String)>,
    /// The result to deliver.
    result: Option<JobResult>,
    /// How much to slash each.
    slash_amount: Amount,
}

/// The fuel an accepted result is billed at. A WASM job: the accepted vote's exact count.
/// A container job: the least any agreeing run measured. Each run's fuel is its
/// provider's own cgroup reading converted at its published calibration, so the lowest
/// honest measurement is what the buyer pays every agreeing provider; a provider that
/// inflates its reading gains nothing when another run is compared.
fn billed_fuel(workload: &agora_proto::Workload, runs: &[RunRecord], accepted: &Accepted) -> Fuel {
    match workload {
        agora_proto::Workload::Wasm => accepted.billed_fuel(),
        agora_proto::Workload::Oci(_) => least_agreeing_fuel(
            runs.iter()
                .map(|run| (run.provider(), run.receipt.body.fuel_used)),
            &accepted.agreeing,
        ),
    }
}

/// The least fuel any of the `agreeing` providers' runs measured (0 when none ran).
fn least_agreeing_fuel(
    runs: impl Iterator<Item = (AccountId, Fuel)>,
    agreeing: &[AccountId],
) -> Fuel {
    runs.filter(|(provider, _)| agreeing.contains(provider))
        .map(|(_, fuel)| fuel)
        .min()
        .unwrap_or(Fuel(0))
}

fn payments(
    shared: &Shared,
    book: &Book,
    id: Hash,
    accepted: &Accepted,
    how: Checked,
) -> Option<Payments> {
    let entry = book.orders.get(&id)?;
    let body = &entry.rec.order.body;
    let v = &entry.rec.verification;
    let agreeing: Vec<&RunRecord> = v
        .runs
        .iter()
        .filter(|r| accepted.agreeing.contains(&r.provider()))
        .collect();
    let fuel = billed_fuel(&body.job.workload, &v.runs, accepted);
    let mut remaining = body.escrow;
    let mut from_escrow = Vec::new();
    let mut from_fund = Vec::new();
    let mut take = |who: AccountId, wanted: Amount, remaining: &mut Amount| {
        let paid = wanted.min(*remaining);
        *remaining = remaining.checked_sub(paid).unwrap_or(Amount::ZERO);
        if !paid.is_zero() {
            from_escrow.push((who, paid));
        }
        paid
    };
    let cost_at = |price: Price| price.cost(fuel).unwrap_or(Amount(u64::MAX));
    match v.flow.policy {
        VerifyPolicy::Replicate { .. } => {
            for run in &agreeing {
                take(run.provider(), cost_at(run.price), &mut remaining);
            }
        }
        _ => {
            // The buyer pays one run at the price its order first matched at.
            let buyer_price = v.runs.first().map(|r| r.price).unwrap_or(Price(0));
            for (i, run) in agreeing.iter().enumerate() {
                let own = cost_at(run.price);
                let paid = if i == 0 {
                    take(
                        run.provider(),
                        own.min(cost_at(buyer_price)),
                        &mut remaining,
                    )
                } else {
                    Amount::ZERO
                };
                let rest = own.checked_sub(paid).unwrap_or(Amount::ZERO);
                if !rest.is_zero() {
                    from_fund.push((run.provider(), rest));
                }
            }
        }
    }
    let proof = match how {
        Checked::Referee => Proof::Referee {
            result: accepted.result,
        },
        _ => Proof::Quorum {
            accepted: accepted.result,
            agreeing: accepted.agreeing.clone(),
        },
    };
    let chain = &shared.identity.chain_id;
    let slashes = v
        .runs
        .iter()
        .filter(|r| accepted.disagreeing.iter().any(|d| d.provider == r.provider()))
        .filter_map(|run| {
            let evidence =
                Evidence::from_receipt(&run.receipt, chain, proof.clone(), v.flow.policy);
            match evidence {
                Ok(evidence) => Some((
                    run.provider(),
                    evidence,
                    match how {
                        Checked::Referee => format!(
                            "order {id}: the market's re-execution got another result than the one it signed"
                        ),
                        _ => format!(
                            "order {id}: {} of {} distinct providers agreed on another result than the one it signed",
                            accepted.agreeing.len(),
                            v.runs.len()
                        ),
                    },
                )),
                Err(err) => {
                    tracing::warn!(order = %id, provider = %run.provider(), "no evidence: {err}");
                    None
                }
            }
        })
        .collect();
    Some(Payments {
        from_escrow,
        from_fund,
        escrow: body.escrow,
        slashes,
        result: agreeing.first().map(|r| r.result.clone()),
        slash_amount: fault_slash(body),
    })
}

/// Commits the settlement of an accepted result, then the slashes and the fund's
/// payments, then records it all.
pub async fn settle(shared: Arc<Shared>, id: Hash, accepted: Accepted, how: Checked) {
    let plan = {
        let book = shared.book();
        payments(&shared, &book, id, &accepted, how)
    };
    let Some(plan) = plan else { return };
    let cost = Amount::sum(plan.from_escrow.iter().map(|(_, a)| *a)).unwrap_or(plan.escrow);
    let mut ops = Vec::with_capacity(2);
    if !plan.from_escrow.is_empty() {
        ops.push(LedgerOp::Market(TxBody::ReleaseEscrow {
            order_id: id,
            payouts: plan.from_escrow.clone(),
        }));
    }
    if cost < plan.escrow {
        ops.push(LedgerOp::Market(TxBody::RefundEscrow { order_id: id }));
    }
    if let Err(err) = shared.chain.submit(ops).await {
        tracing::warn!(order = %id, "settlement not committed: {err}");
        if matches!(
            err,
            crate::chain::ChainError::Refused(_) | crate::chain::ChainError::Store(_)
        ) {
            lifecycle::reconcile(&shared, id, None).await;
        }
        return;
    }
    let slashed = slash_all(&shared, &plan).await;
    let fund_paid = pay_from_fund(&shared, id, &plan.from_fund).await;
    let mut book = shared.book();
    finish(
        &shared, &mut book, id, &accepted, how, &plan, cost, slashed, fund_paid,
    );
    let actions = lifecycle::serve_queue(&shared, &mut book);
    drop(book);
    lifecycle::run(&shared, actions);
}

/// Slashes every provider the quorum proved wrong, as far as its stake goes.
async fn slash_all(shared: &Shared, plan: &Payments) -> Vec<SlashView> {
    let mut done = Vec::new();
    for (provider, evidence, reason) in &plan.slashes {
        let who = *provider;
        let stake = shared
            .chain
            .stake(who)
            .await
            .ok()
            .flatten()
            .map(|s| {
                let unbonding = s.unbonding.iter().map(|u| u.amount.0).sum::<u64>();
                Amount(s.bonded.0.saturating_add(unbonding))
            })
            .unwrap_or(Amount::ZERO);
        let amount = plan.slash_amount.min(stake);
        let evidence_hash = evidence.hash();
        if amount.is_zero() {
            tracing::warn!(%provider, "proven wrong but has no stake to slash");
        } else {
            let op = LedgerOp::Market(TxBody::Slash {
                provider: who,
                amount,
                evidence: evidence_hash,
                reason: truncate(reason, agora_ledger::tx::MAX_REASON_BYTES),
                beneficiary: shared.identity.market_key.account(),
            });
            if let Err(err) = shared.chain.submit(vec![op]).await {
                tracing::warn!(%provider, "slash not committed: {err}");
                continue;
            }
        }
        done.push(SlashView {
            provider: who,
            amount,
            evidence: evidence_hash,
            evidence_record: hex::encode(agora_core::canonical::encode(evidence)),
            reason: reason.clone(),
        });
    }
    done
}

/// Pays audits and tie-breakers from the verification fund; returns who was paid.
async fn pay_from_fund(
    shared: &Shared,
    id: Hash,
    payments: &[(AccountId, Amount)],
) -> Vec<(AccountId, Amount)> {
    let mut paid = Vec::new();
    for (to, amount) in payments {
        let op = LedgerOp::Market(TxBody::Transfer {
            to: *to,
            amount: *amount,
        });
        match shared.chain.submit(vec![op]).await {
            Ok(_) => paid.push((*to, *amount)),
            Err(err) => {
                shared.metrics.job("audit-unpaid");
                tracing::warn!(order = %id, provider = %to, "the verification fund could not pay an audit: {err}");
            }
        }
    }
    paid
}

fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Records a committed settlement: the result, the bill, every run's pay, the slashes,
/// and the reputation and trust each run earned.
#[allow(clippy::too_many_arguments)]
fn finish(
    shared: &Shared,
    book: &mut Book,
    id: Hash,
    accepted: &Accepted,
    how: Checked,
    plan: &Payments,
    cost: Amount,
    slashed: Vec<SlashView>,
    fund_paid: Vec<(AccountId, Amount)>,
) {
    let now = now_ms();
    let Some(entry) = book.orders.get_mut(&id) else {
        return;
    };
    entry.busy = false;
    entry.rec.finished_ms = Some(now);
    let v = &mut entry.rec.verification;
    for run in &mut v.runs {
        let who = run.provider();
        let paid = plan
            .from_escrow
            .iter()
            .chain(fund_paid.iter())
            .filter(|(to, _)| *to == who)
            .fold(0u64, |sum, (_, a)| sum.saturating_add(a.0));
        run.paid = Amount(paid);
    }
    v.slashes = slashed.clone();
    let Some(mut result) = plan.result.clone() else {
        record_all_wrong(shared, book, id, accepted, &slashed, now);
        return;
    };
    let fuel = billed_fuel(
        &entry.rec.order.body.job.workload,
        &entry.rec.verification.runs,
        accepted,
    );
    // A container run's own measurement may be above the bill (the least agreeing one).
    result.fuel_used = fuel;
    entry.rec.cost = cost;
    entry.rec.refunded = plan.escrow.checked_sub(cost).unwrap_or(Amount::ZERO);
    entry.rec.provider = Some(result.provider);
    // The price shown with the provider is the one its run was matched at: the latest
    // assignment may be a replica's or an auditor's at another price.
    if let Some(run) = entry
        .rec
        .verification
        .runs
        .iter()
        .find(|r| r.provider() == result.provider)
    {
        entry.rec.price = Some(run.price);
    }
    entry.rec.result = Some(result);
    let checked = match how {
        Checked::Quorum { votes, runs } => format!("verified: {votes} of {runs} runs agreed"),
        Checked::Referee => "verified by the market's own re-execution".to_string(),
        Checked::Unchecked => "accepted unchecked".to_string(),
    };
    let detail = format!(
        "{checked}; paid {} for {:.6} CU; refunded {}{}",
        cost.0,
        fuel.as_compute_units_f64(),
        entry.rec.refunded.0,
        if slashed.is_empty() {
            String::new()
        } else {
            format!("; slashed {} provider(s) with evidence", slashed.len())
        }
    );
    let latency = entry.submitted.elapsed();
    shared.enter(entry, OrderState::Settled, detail);
    shared.metrics.settle_latency.observe(latency.as_secs_f64());
    shared.metrics.job("settled");
    book.active.remove(&id);
    for who in &accepted.agreeing {
        book.market
            .record_event(*who, ReputationEvent::VerifiedCompletion, now);
        let p = book.providers.entry(*who).or_default();
        p.history.consecutive_verified = p.history.consecutive_verified.saturating_add(1);
        p.completed += 1;
        let earned = plan
            .from_escrow
            .iter()
            .chain(fund_paid.iter())
            .filter(|(to, _)| to == who)
            .fold(Amount::ZERO, |sum, (_, a)| {
                sum.checked_add(*a).unwrap_or(sum)
            });
        p.earned = p.earned.checked_add(earned).unwrap_or(p.earned);
    }
    record_faults(shared, book, accepted, &slashed, now);
}

/// Every run was proven wrong by the referee: the buyer is refunded in full (the
/// settlement refunded the escrow), and the providers are slashed.
fn record_all_wrong(
    shared: &Shared,
    book: &mut Book,
    id: Hash,
    accepted: &Accepted,
    slashed: &[SlashView],
    now: u64,
) {
    let Some(entry) = book.orders.get_mut(&id) else {
        return;
    };
    entry.rec.cost = Amount::ZERO;
    entry.rec.refunded = entry.rec.order.body.escrow;
    let v = &mut entry.rec.verification;
    v.status = Status::Failed;
    let reason = format!(
        "the market's re-execution matched none of the {} results; refunded in full, {} provider(s) slashed",
        v.runs.len(),
        slashed.len()
    );
    entry.rec.refund_reason = Some(reason.clone());
    shared.enter(entry, OrderState::Refunded, reason);
    shared.metrics.job("refunded");
    book.active.remove(&id);
    record_faults(shared, book, accepted, slashed, now);
}

/// Reputation and trust for the providers a quorum or the referee proved wrong.
fn record_faults(
    shared: &Shared,
    book: &mut Book,
    accepted: &Accepted,
    slashed: &[SlashView],
    now: u64,
) {
    for wrong in accepted.to_slash() {
        book.market
            .record_event(wrong, ReputationEvent::ProvenFault, now);
        let p = book.providers.entry(wrong).or_default();
        p.history = ProviderHistory::default();
        p.faults.record(now);
        p.failed += 1;
        p.slashed += u64::from(
            slashed
                .iter()
                .any(|s| s.provider == wrong && !s.amount.is_zero()),
        );
    }
    let frauds = accepted.disagreeing.len();
    if frauds > 0 {
        shared.metrics.frauds.inc_by(frauds as u64);
    }
}

/// The executor the market uses as referee, started on first use.
fn referee_executor() -> Result<Arc<agora_exec::WasmExecutor>, String> {
    static EXECUTOR: std::sync::OnceLock<Arc<agora_exec::WasmExecutor>> =
        std::sync::OnceLock::new();
    if let Some(executor) = EXECUTOR.get() {
        return Ok(executor.clone());
    }
    let executor = agora_exec::WasmExecutor::new(agora_exec::ExecConfig::default())
        .map_err(|e| format!("the referee's executor did not start: {e}"))?;
    Ok(EXECUTOR.get_or_init(|| Arc::new(executor)).clone())
}

/// Re-executes order `id` on the market itself, from the module and inputs the buyer
/// uploaded here, exactly as a provider runs it (checkpointed if the module is): the
/// referee's result. The executor is deterministic, so this is the truth a dispute needs.
pub async fn referee_run(
    shared: &Shared,
    id: Hash,
    body: &OrderRequest,
) -> Result<RunResult, String> {
    if body.is_private() {
        // Its inputs are ciphertext to the market: a run on them would convict honest
        // providers. The caller refunds instead (docs/privacy.md).
        return Err("the order is private: its inputs are sealed to its providers, so the market cannot re-run it".into());
    }
    let blobs = shared.blobs.clone();
    let job = body.job.clone();
    let (fuel, memory) = (body.fuel_budget, body.job.memory_bytes);
    tokio::task::spawn_blocking(move || -> Result<RunResult, String> {
        use agora_exec::Executor;
        let executor = referee_executor()?;
        let bytes = std::fs::read(blobs.path_of(&job.module))
            .map_err(|e| format!("the module is not on this market: {e}"))?;
        let checkpointed = agora_exec::checkpoint::is_checkpointed(&bytes);
        let module =
            agora_exec::WasmModule::with_hash(bytes, job.module).map_err(|e| e.to_string())?;
        let mut spec = executor.job(id, module);
        spec.args = job.args.clone();
        spec.env = job.env.clone();
        for input in &job.inputs {
            let input =
                agora_exec::Input::from_file(input.name.clone(), &blobs.path_of(&input.hash))
                    .map_err(|e| format!("input {} is not on this market: {e}", input.name))?;
            spec.inputs.push(input);
        }
        spec.limits.fuel = fuel;
        spec.limits.memory_bytes = memory;
        let outcome = if checkpointed {
            executor
                .run_checkpointed(&spec)
                .map(|r| r.outcome)
                .map_err(|e| e.to_string())?
        } else {
            executor.run(&spec).map_err(|e| e.to_string())?
        };
        Ok(RunResult {
            digest: outcome.digest,
            fuel: outcome.fuel_used,
        })
    })
    .await
    .map_err(|e| format!("the referee's run was lost: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn account(i: u8) -> AccountId {
        AccountId::from_bytes([i; 32])
    }

    fn adaptive_order(max_price: u64, compute_units: u64) -> OrderRequest {
        OrderRequest {
            job: agora_proto::JobSpec {
                module: Hash::of(b"module"),
                module_size: 6,
                inputs: Vec::new(),
                args: Vec::new(),
                env: Vec::new(),
                memory_bytes: 1 << 20,
                workload: agora_proto::Workload::Wasm,
            },
            demand: agora_market::Demand {
                cpu_millis: 1_000,
                memory_bytes: 1 << 20,
                disk_bytes: 0,
                gpu: None,
            },
            requirements: agora_market::Requirements::default(),
            max_price: Price(max_price),
            fuel_budget: Fuel::compute_units(compute_units),
            deadline_ms: 60_000,
            escrow: Amount(u64::MAX),
            replicas: 1,
            verify: VerifyPolicy::DEFAULT,
            label: String::new(),
            task: None,
            auction: Default::default(),
        }
    }

    proptest! {
        /// Value-at-risk sampling never relies on stake a proven fault would not take: at
        /// the audit rate a trusted provider gets for any bond, however large, cheating on
        /// the job loses money in expectation given what the node actually slashes.
        #[test]
        fn the_audit_rate_relies_only_on_stake_a_fault_takes(
            max_price in 1u64..1_000_000,
            compute_units in 1u64..1_000,
            price_share in 1u64..=100,
            bonded in any::<u64>(),
            verified in 10u32..100_000,
        ) {
            let body = adaptive_order(max_price, compute_units);
            let price = Price((max_price * price_share / 100).max(1));
            let exposure = exposure(&body, price, Amount(bonded));
            let slash = fault_slash(&body).min(Amount(bonded));
            prop_assert!(exposure.stake <= slash);
            let history = ProviderHistory { consecutive_verified: verified };
            let plan = agora_verify::sampling::plan_at_risk(&body.verify, &history, &exposure);
            prop_assert!(agora_verify::economics::cheating_is_irrational(
                exposure.reward,
                exposure.cost,
                slash,
                plan.audit_ppm,
            ));
        }

        /// A container job's bill is one agreeing run's own measurement, never more than
        /// any agreeing run measured, and a disagreeing run cannot move it.
        #[test]
        fn a_container_bill_is_the_least_agreeing_measurement(
            fuels in proptest::collection::vec(1u64..1_000_000_000, 1..6),
            agree_mask in any::<u8>(),
            inflated in any::<u64>(),
        ) {
            let runs: Vec<(AccountId, Fuel)> = fuels
                .iter()
                .enumerate()
                .map(|(i, f)| (account(i as u8), Fuel(*f)))
                .collect();
            let agreeing: Vec<AccountId> = runs
                .iter()
                .enumerate()
                .filter(|(i, _)| agree_mask & (1 << i) != 0)
                .map(|(_, (a, _))| *a)
                .collect();
            let billed = least_agreeing_fuel(runs.iter().copied(), &agreeing);
            if agreeing.is_empty() {
                prop_assert_eq!(billed, Fuel(0));
            } else {
                prop_assert!(runs.iter().any(|(a, f)| agreeing.contains(a) && *f == billed));
                for (a, f) in &runs {
                    if agreeing.contains(a) {
                        prop_assert!(billed <= *f);
                    }
                }
            }
            let mut with_outlier = runs.clone();
            with_outlier.push((account(200), Fuel(inflated)));
            prop_assert_eq!(least_agreeing_fuel(with_outlier.into_iter(), &agreeing), billed);
        }
    }

    #[test]
    fn a_refund_closes_an_open_check_and_keeps_a_decided_one() {
        let policy: VerifyPolicy = "adaptive".parse().unwrap();
        let mut open = VerificationRecord::new(policy);
        open.close_refunded();
        assert_eq!(open.status, Status::Failed);
        assert_eq!(open.view().status, "failed");
        let mut challenged = VerificationRecord::new(policy);
        challenged.status = Status::Challenged;
        challenged.close_refunded();
        assert_eq!(challenged.status, Status::Failed);
        for decided in [Status::Unchecked, Status::Verified, Status::Failed] {
            let mut record = VerificationRecord::new(policy);
            record.status = decided;
            record.close_refunded();
            assert_eq!(record.status, decided);
        }
    }
}
