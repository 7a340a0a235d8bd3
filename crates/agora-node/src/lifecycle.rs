//! An order's life on the market node, per issue 5's contract:
//! escrowed → matched (Assign accepted) → running (first heartbeat) → verifying (Deliver
//! received) → settled; or refunded at any point.
//!
//! Steps that need the book run under its lock and return [`Action`]s; the actions (RPC,
//! blocks) run in spawned tasks that re-check the order when they return. An attempt is
//! identified by its number, so a late answer for an attempt that was already failed or
//! superseded changes nothing. `busy` marks an order whose settlement or refund is in
//! flight: nothing else may act on it until that lands.
//!
//! **Waiting for capacity.** An order that misses only because every provider that could
//! run it is busy ([`NoMatchExplanation::only_busy`]) is not refunded: it stays escrowed
//! and waits, with one "waiting for capacity" event, until capacity frees or its deadline
//! passes (then it is refunded with the why-no-match explanation, so escrow is never
//! stuck). An order no provider could ever take is refunded at once, as before. Waiting
//! uses `resume_until_ms`, the field that already keeps an unmatched order from being
//! refunded through the post-restart grace: a waiting order's is its deadline.
//!
//! The queue is every unassigned order of the book, oldest submission first
//! ([`serve_queue`]). It is served whenever capacity may have freed (a settlement, a
//! refund or cancel, a failed or reassigned attempt, a new submission) and on every
//! watchdog pass, which also picks up providers' new or updated asks and reconnects
//! (those arrive in the p2p loop) within one period. Fairness: a waiting order that still
//! cannot be placed does not stop the pass. Orders need different machines (a GPU order
//! must not hold up CPU orders that have room), so strict head-of-line blocking would idle
//! capacity; the cost is that a large order can be overtaken by smaller ones while it
//! waits, which its deadline bounds. Identical terms are placed strictly in order: once
//! one order finds no room, later ones with the same terms are not tried in that pass.
//! An order whose attempt failed is offered to the next provider before the queue is
//! served: it had already been placed, and its time is running. A waiting order is not
//! refunded early when its capable providers leave (they usually redial at once); its
//! deadline ends the wait.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use agora_core::{AccountId, Amount, Fuel, Hash, Price, Signed};
use agora_exec::{OutputFile, result_digest};
use agora_ledger::{EscrowStatus, TxBody};
use agora_market::{
    AttributeConstraint, MatchOutcome, NoMatchExplanation, Order, ReleaseReason, ReputationEvent,
    Winner,
};
use agora_proto::api::JobResult;
use agora_proto::wire::{AbortJob, Assignment, Delivery, JobFailure, ProviderReply, ToProvider};
use agora_proto::{Heartbeat, OrderState};

use crate::chain::LedgerOp;
use crate::clock::now_ms;
use crate::node::{Book, OrderEntry, PROVIDER_ATTR, Shared};
use crate::verification;
use agora_verify::Checked;
use agora_verify::quorum::Accepted;

/// How a waiting order's event begins; the explanation follows.
pub const WAITING_FOR_CAPACITY: &str = "waiting for capacity";

/// Work decided under the lock, carried out after it.
#[derive(Debug)]
pub enum Action {
    /// Send the assignment of `attempt` to its provider.
    Assign {
        /// The order.
        id: Hash,
        /// The attempt.
        attempt: u32,
    },
    /// Commit a refund (the entry is already marked busy).
    Refund {
        /// The order.
        id: Hash,
        /// Why.
        reason: String,
    },
    /// Commit the settlement of an accepted result (the entry is already marked busy).
    Settle {
        /// The order.
        id: Hash,
        /// The accepted result, who agreed and who is slashed.
        accepted: Accepted,
        /// How it was checked.
        how: Checked,
    },
    /// Re-run the order on the market itself and settle by that run (the entry is
    /// already marked busy).
    Referee {
        /// The order.
        id: Hash,
    },
    /// Tell a provider to stop running an order.
    Abort {
        /// The provider.
        provider: AccountId,
        /// The order.
        id: Hash,
        /// Why.
        reason: String,
    },
}

/// Carries out `actions` in their own tasks.
pub fn run(shared: &Arc<Shared>, actions: Vec<Action>) {
    for action in actions {
        let shared = shared.clone();
        tokio::spawn(async move {
            match action {
                Action::Assign { id, attempt } => assign(shared, id, attempt).await,
                Action::Refund { id, reason } => refund(shared, id, reason).await,
                Action::Settle { id, accepted, how } => {
                    verification::settle(shared, id, accepted, how).await
                }
                Action::Referee { id } => crate::dispute::referee_decides(shared, id).await,
                Action::Abort {
                    provider,
                    id,
                    reason,
                } => abort(shared, provider, id, reason).await,
            }
        });
    }
}

/// Matches an unassigned order: assigns the winner; or, when every provider that could
/// run it is busy, lets it wait (see the module docs); or refunds with the explanation
/// (unless the order is still within its post-restart grace, when it waits). `before`
/// says what happened to the previous attempt, for the refund reason.
pub fn try_match(shared: &Shared, book: &mut Book, id: Hash, before: Option<&str>) -> Vec<Action> {
    let now = now_ms();
    if !book.orders.get(&id).is_some_and(unassigned) {
        return Vec::new();
    }
    let rule = shared.settings.fault_suspension;
    let Some((order, left_out)) = book.order_to_match(&id, &rule, now) else {
        return Vec::new();
    };
    let mut placed = match_one(book, order, now);
    if left_out && matches!(placed, Err(Miss::Never(_))) {
        // Nobody but providers suspended for a proven fault can run it: offer it to them
        // after all rather than refund. Their runs are never trusted meanwhile, so a
        // sampling policy replicates them.
        let Some(entry) = book.orders.get_mut(&id) else {
            return Vec::new();
        };
        entry.allow_suspended = true;
        let Some((order, _)) = book.order_to_match(&id, &rule, now) else {
            return Vec::new();
        };
        placed = match_one(book, order, now);
    }
    let miss = match placed {
        Ok(winner) => return assign_winner(shared, book, id, winner, now),
        Err(miss) => miss,
    };
    let Some(entry) = book.orders.get_mut(&id) else {
        return Vec::new();
    };
    let why = match miss {
        Miss::Busy(why) if now < entry.rec.order.body.deadline_ms => {
            wait_for_capacity(shared, entry, &why);
            return Vec::new();
        }
        Miss::Busy(why) => why.to_string(),
        Miss::Never(why) => why,
    };
    if now < entry.resume_until_ms {
        return Vec::new();
    }
    if let Some(actions) = verification::accept_without_more(shared, book, id, &why) {
        return actions;
    }
    shared.metrics.unmatched.inc();
    let reason = match before {
        Some(before) => format!("{before}; no other provider can run it: {why}"),
        None => format!("no provider can run this order: {why}"),
    };
    begin_refund(book, id, reason)
}

/// Submits `order` to the engine: its winner, or why there is none.
fn match_one(book: &mut Book, order: Order, now: u64) -> Result<Winner, Miss> {
    match book.market.submit_order(order, now) {
        Ok(MatchOutcome::Filled(fill)) => {
            fill.winners.into_iter().next().ok_or_else(|| {
                Miss::Never("the engine filled the order with no winner".to_string())
            })
        }
        Ok(MatchOutcome::NoMatch(why)) if why.only_busy() => Err(Miss::Busy(why)),
        Ok(MatchOutcome::NoMatch(why)) => Err(Miss::Never(why.to_string())),
        Err(err) => Err(Miss::Never(err.to_string())),
    }
}

/// Why an order found no provider.
enum Miss {
    /// Providers that could run it are all busy: worth waiting.
    Busy(NoMatchExplanation),
    /// No provider could run it, or the engine refused it.
    Never(String),
}

/// Whether the order is escrowed, has no provider, and nothing is acting on it: what
/// matching (and the queue) may pick up.
fn unassigned(entry: &OrderEntry) -> bool {
    // An order in an open auction is matched by the auction's close, not by the queue.
    !entry.busy
        && !entry.auction.as_ref().is_some_and(|a| a.is_open())
        && !entry.rec.state.is_final()
        && entry.match_id.is_none()
        && entry.resumed_from.is_none()
        && !entry.rec.verification.holds_result()
}

/// Records the match of attempt `attempts + 1` and returns its assignment.
pub(crate) fn assign_winner(
    shared: &Shared,
    book: &mut Book,
    id: Hash,
    winner: Winner,
    now: u64,
) -> Vec<Action> {
    shared.metrics.matches.inc();
    let provider = book.providers.entry(winner.provider).or_default();
    provider.running += 1;
    let Some(entry) = book.orders.get_mut(&id) else {
        return Vec::new();
    };
    entry.rec.attempts += 1;
    entry.rec.provider = Some(winner.provider);
    entry.rec.price = Some(winner.price);
    entry.match_id = Some(winner.match_id);
    entry.accepted = false;
    entry.last_beat_ms = now;
    // Placed: it no longer waits (for capacity, or through a restart's grace). Should this
    // attempt fail, the order waits again only if the next miss is also a busy one.
    entry.resume_until_ms = 0;
    shared.records.save(&entry.rec);
    vec![Action::Assign {
        id,
        attempt: entry.rec.attempts,
    }]
}

/// Keeps an order that missed on busy capacity escrowed until its deadline; records
/// that (with the explanation) when it starts waiting, not on every retry.
fn wait_for_capacity(shared: &Shared, entry: &mut OrderEntry, why: &NoMatchExplanation) {
    let deadline = entry.rec.order.body.deadline_ms;
    if entry.resume_until_ms >= deadline {
        return;
    }
    entry.resume_until_ms = deadline;
    shared.metrics.waited.inc();
    shared.enter(
        entry,
        OrderState::Escrowed,
        format!("{WAITING_FOR_CAPACITY}: {why}"),
    );
}

/// Whether the order is waiting for capacity (rather than new, or in a restart's grace).
fn waits_for_capacity(entry: &OrderEntry) -> bool {
    entry.resume_until_ms >= entry.rec.order.body.deadline_ms
}

/// Serves the queue: tries every unassigned order, oldest submission first (see the
/// module docs for why one that still cannot be placed does not stop the pass), and
/// refunds those whose deadline has passed. Call it, under the lock, whenever capacity
/// may have freed.
pub fn serve_queue(shared: &Shared, book: &mut Book) -> Vec<Action> {
    let now = now_ms();
    let mut queue: Vec<(u64, Hash)> = book
        .active
        .iter()
        .filter_map(|id| book.orders.get(id))
        .filter(|e| unassigned(e) && e.rec.escrow_height > 0 && e.pending_refund.is_none())
        .map(|e| (e.rec.created_ms, e.id()))
        .collect();
    queue.sort_unstable();
    let mut actions = Vec::new();
    // Terms that found no room in this pass: the same terms later in the queue would not
    // either, and skipping them keeps a long queue of alike orders cheap.
    let mut full: HashSet<Hash> = HashSet::new();
    let mut waiting = 0i64;
    for (_, id) in queue {
        let Some(entry) = book.orders.get(&id) else {
            continue;
        };
        if now >= entry.rec.order.body.deadline_ms {
            actions.extend(refund_unplaced(shared, book, id, now));
            continue;
        }
        if !waits_for_capacity(entry) {
            // New, or resumed after a restart: a full match, which refunds or starts
            // waiting as the miss says.
            actions.extend(try_match(shared, book, id, None));
        } else {
            let rule = shared.settings.fault_suspension;
            let Some((order, left_out)) = book.order_to_match(&id, &rule, now) else {
                continue;
            };
            let terms = terms_of(&order);
            // Room only at a provider suspended for a proven fault still calls for a full
            // match: `try_match` offers it the order when nobody else ever could (the
            // others all tried), and keeps waiting when they are only busy. Without this
            // an order whose last possible provider is suspended waited for its deadline.
            let room_if_suspended_allowed =
                || left_out && has_room(book, &book.orders[&id].market_order(), now);
            if full.contains(&terms)
                || !(has_room(book, &order, now) || room_if_suspended_allowed())
            {
                full.insert(terms);
            } else {
                actions.extend(try_match(shared, book, id, None));
            }
        }
        waiting += i64::from(book.orders.get(&id).is_some_and(unassigned));
    }
    shared.metrics.waiting.set(waiting);
    actions
}

/// `actions` (which freed capacity: a failed attempt, a refund), then the queue served.
fn then_serve(shared: &Shared, book: &mut Book, mut actions: Vec<Action>) -> Vec<Action> {
    actions.extend(serve_queue(shared, book));
    actions
}

/// Whether the engine would place `order` now. A quote, not a match: no explanation is
/// built for the (common) miss. An engine error (e.g. no provider listed for a moment)
/// counts as no room: the order was found servable when it started waiting, and its
/// deadline bounds the wait.
fn has_room(book: &Book, order: &Order, now: u64) -> bool {
    book.market
        .quote(order, now)
        .is_ok_and(|winners| !winners.is_empty())
}

/// What decides whether an order can be placed (not who placed it or its id).
fn terms_of(order: &Order) -> Hash {
    let terms = (&order.demand, &order.requirements, order.fuel, order.cap);
    Hash::of(&agora_core::canonical::encode(&terms))
}

/// Refunds an unassigned order whose deadline passed, saying why no provider took it.
fn refund_unplaced(shared: &Shared, book: &mut Book, id: Hash, now: u64) -> Vec<Action> {
    let Some(entry) = book.orders.get(&id) else {
        return Vec::new();
    };
    let waited = waits_for_capacity(entry);
    let rule = shared.settings.fault_suspension;
    let Some((order, _)) = book.order_to_match(&id, &rule, now) else {
        return Vec::new();
    };
    let why = book.market.explain(&order, now);
    if let Some(actions) = verification::accept_without_more(shared, book, id, &why.to_string()) {
        return actions;
    }
    let reason = if waited {
        format!("the deadline passed while {WAITING_FOR_CAPACITY}: {why}")
    } else {
        format!("the deadline passed before a provider took the order: {why}")
    };
    begin_refund(book, id, reason)
}

/// Marks an order busy for a refund, frees its match, and returns the refund action.
pub fn begin_refund(book: &mut Book, id: Hash, reason: String) -> Vec<Action> {
    let Some(entry) = book.orders.get_mut(&id) else {
        return Vec::new();
    };
    if entry.busy || entry.rec.state.is_final() {
        return Vec::new();
    }
    entry.busy = true;
    entry.pending_refund = None;
    crate::auctions::abandon(book, id);
    let Some(entry) = book.orders.get_mut(&id) else {
        return Vec::new();
    };
    let mut actions = Vec::new();
    if let Some(match_id) = entry.match_id.take() {
        let provider = entry.rec.provider;
        let _ = book.market.release(&match_id, ReleaseReason::Cancelled);
        if let Some(provider) = provider {
            if let Some(p) = book.providers.get_mut(&provider) {
                p.running = p.running.saturating_sub(1);
            }
            actions.push(Action::Abort {
                provider,
                id,
                reason: reason.clone(),
            });
        }
    }
    actions.push(Action::Refund { id, reason });
    actions
}

/// Fails attempt `attempt` of order `id`: frees the match, records `event` against the
/// provider, and reassigns (next best provider, never one that failed it) or, with no
/// attempts or time left, refunds.
pub fn fail_attempt(
    shared: &Shared,
    book: &mut Book,
    id: Hash,
    attempt: u32,
    reason: &str,
    event: ReputationEvent,
) -> Vec<Action> {
    let now = now_ms();
    let Some(entry) = book.orders.get_mut(&id) else {
        return Vec::new();
    };
    if entry.rec.attempts != attempt || entry.busy || entry.rec.state.is_final() {
        return Vec::new();
    }
    let match_id = entry.match_id.take();
    let resumed = entry.resumed_from.take();
    if match_id.is_none() && resumed.is_none() {
        return Vec::new();
    }
    let Some(provider) = entry.rec.provider else {
        return Vec::new();
    };
    entry.accepted = false;
    entry.rec.tried.push(provider);
    // Runs that delivered a result are not failures: each may need the next provider.
    let runs = u32::try_from(entry.rec.verification.runs.len()).unwrap_or(u32::MAX);
    let out_of_attempts = entry.rec.attempts >= shared.settings.max_attempts.saturating_add(runs);
    let past_deadline = now >= entry.rec.order.body.deadline_ms;
    if let Some(match_id) = match_id {
        let _ = book.market.release(&match_id, ReleaseReason::Failed);
        if let Some(p) = book.providers.get_mut(&provider) {
            p.running = p.running.saturating_sub(1);
        }
    }
    book.market.record_event(provider, event, now);
    book.providers.entry(provider).or_default().failed += 1;
    tracing::info!(order = %id, %provider, attempt, "attempt failed: {reason}");
    let mut actions = vec![Action::Abort {
        provider,
        id,
        reason: reason.to_string(),
    }];
    if out_of_attempts || past_deadline {
        let why = if past_deadline {
            "the deadline passed"
        } else {
            "no attempts left"
        };
        actions.extend(begin_refund(
            book,
            id,
            format!("attempt {attempt} by {provider} failed ({reason}) and {why}"),
        ));
        return actions;
    }
    shared.metrics.job("reassigned");
    if let Some(entry) = book.orders.get_mut(&id) {
        shared.enter(
            entry,
            OrderState::Escrowed,
            format!("attempt {attempt} by {provider} failed ({reason}); reassigning"),
        );
    }
    let before = format!("attempt {attempt} by {provider} failed ({reason})");
    actions.extend(try_match(shared, book, id, Some(&before)));
    actions
}

/// Sends the assignment of `attempt` and records the provider's answer.
async fn assign(shared: Arc<Shared>, id: Hash, attempt: u32) {
    let prepared = {
        let book = shared.book();
        book.orders
            .get(&id)
            .filter(|e| e.rec.attempts == attempt && e.match_id.is_some() && !e.busy)
            .and_then(|entry| {
                Some(Assignment {
                    order_id: id,
                    order: entry.rec.order.clone(),
                    provider: entry.rec.provider?,
                    price: entry.rec.price?,
                    attempt: attempt.saturating_sub(1),
                    heartbeat_ms: shared.settings.heartbeat_ms,
                })
            })
    };
    let Some(assignment) = prepared else { return };
    let provider = assignment.provider;
    let signed = Signed::sign(
        &shared.identity.market_key,
        &shared.identity.chain_id,
        shared.next_message_nonce(),
        assignment,
    );
    let answer = request_provider(&shared, provider, ToProvider::Assign(signed)).await;
    let mut book = shared.book();
    let actions = match answer {
        Ok(ProviderReply::Accepted) => {
            if let Some(entry) = book.orders.get_mut(&id) {
                let current = entry.rec.attempts == attempt && entry.match_id.is_some();
                if current && !entry.accepted && entry.rec.state == OrderState::Escrowed {
                    entry.accepted = true;
                    entry.last_beat_ms = entry.last_beat_ms.max(now_ms());
                    let price = entry.rec.price.unwrap_or(Price(0));
                    shared.enter(
                        entry,
                        OrderState::Matched,
                        format!("{provider} accepted at {price} (attempt {attempt})"),
                    );
                }
            }
            Vec::new()
        }
        Ok(ProviderReply::Declined { reason }) => {
            let failed = fail_attempt(
                &shared,
                &mut book,
                id,
                attempt,
                &format!("declined: {reason}"),
                ReputationEvent::Failure,
            );
            then_serve(&shared, &mut book, failed)
        }
        Err(reason) => {
            let failed = fail_attempt(
                &shared,
                &mut book,
                id,
                attempt,
                &format!("assignment not delivered: {reason}"),
                ReputationEvent::Failure,
            );
            then_serve(&shared, &mut book, failed)
        }
    };
    drop(book);
    run(&shared, actions);
}

/// Sends `message` to `provider` and decodes its reply.
async fn request_provider(
    shared: &Shared,
    provider: AccountId,
    message: ToProvider,
) -> Result<ProviderReply, String> {
    let peer = agora_net::peer_id_of(&provider).map_err(|e| e.to_string())?;
    let bytes = agora_core::canonical::encode(&message);
    let limit = Duration::from_millis(shared.settings.silence_limit_ms().max(2_000));
    let reply = tokio::time::timeout(limit, shared.net.request(peer, bytes))
        .await
        .map_err(|_| format!("no answer within {} ms", limit.as_millis()))?
        .map_err(|e| e.to_string())?;
    agora_core::canonical::decode(&reply).map_err(|e| format!("unreadable reply: {e}"))
}

/// Tells `provider` to stop running order `id`; best effort.
async fn abort(shared: Arc<Shared>, provider: AccountId, id: Hash, reason: String) {
    let body = AbortJob {
        order_id: id,
        reason,
    };
    let signed = Signed::sign(
        &shared.identity.market_key,
        &shared.identity.chain_id,
        shared.next_message_nonce(),
        body,
    );
    if let Err(e) = request_provider(&shared, provider, ToProvider::Abort(signed)).await {
        tracing::debug!(order = %id, %provider, "abort not delivered: {e}");
    }
}

/// Commits the refund of an order already marked busy, then records it.
async fn refund(shared: Arc<Shared>, id: Hash, reason: String) {
    let outcome = shared
        .chain
        .submit(vec![LedgerOp::Market(TxBody::RefundEscrow {
            order_id: id,
        })])
        .await;
    match outcome {
        Ok(_) => {
            let mut book = shared.book();
            finish_refunded(&shared, &mut book, id, reason);
        }
        Err(err) => {
            tracing::warn!(order = %id, "refund not committed: {err}");
            reconcile(&shared, id, Some(reason)).await;
        }
    }
}

/// Records a committed refund.
fn finish_refunded(shared: &Shared, book: &mut Book, id: Hash, reason: String) {
    let Some(entry) = book.orders.get_mut(&id) else {
        return;
    };
    entry.busy = false;
    entry.rec.refunded = entry
        .rec
        .order
        .body
        .escrow
        .checked_sub(entry.rec.cost)
        .unwrap_or(Amount::ZERO);
    entry.rec.refund_reason = Some(reason.clone());
    entry.rec.finished_ms = Some(now_ms());
    entry.rec.verification.close_refunded();
    shared.enter(entry, OrderState::Refunded, reason);
    shared.metrics.job("refunded");
    book.active.remove(&id);
}

/// After a settlement or refund did not commit: reads the escrow and either records the
/// final state the ledger already holds, or leaves the order for the watchdog to retry.
pub async fn reconcile(shared: &Arc<Shared>, id: Hash, refund_reason: Option<String>) {
    let escrow = shared.chain.escrow(id).await;
    let mut book = shared.book();
    match escrow {
        Ok(Some(escrow)) if escrow.status != EscrowStatus::Open => {
            if let Some(entry) = book.orders.get_mut(&id) {
                entry.rec.cost = escrow.released;
            }
            if escrow.released.is_zero() {
                let reason = refund_reason.unwrap_or_else(|| "refunded on the ledger".to_string());
                finish_refunded(shared, &mut book, id, reason);
            } else {
                finish_settled_without_result(
                    shared,
                    &mut book,
                    id,
                    escrow.released,
                    escrow.locked,
                );
            }
        }
        other => {
            if let Err(e) = other {
                tracing::warn!(order = %id, "cannot read escrow: {e}");
            }
            if let Some(entry) = book.orders.get_mut(&id) {
                entry.busy = false;
                entry.pending_refund = refund_reason;
            }
        }
    }
}

/// Records a settlement found on the ledger whose result record was lost (crash).
pub fn finish_settled_without_result(
    shared: &Shared,
    book: &mut Book,
    id: Hash,
    cost: Amount,
    locked: Amount,
) {
    let Some(entry) = book.orders.get_mut(&id) else {
        return;
    };
    entry.busy = false;
    entry.rec.cost = cost;
    entry.rec.refunded = locked.checked_sub(cost).unwrap_or(Amount::ZERO);
    entry.rec.finished_ms = Some(now_ms());
    shared.enter(
        entry,
        OrderState::Settled,
        "settled on the ledger before a market restart; the result record was lost",
    );
    shared.metrics.job("settled");
    book.active.remove(&id);
}

/// What a delivery is checked and billed against, taken under the lock.
pub struct Billing {
    /// The attempt that delivered.
    pub attempt: u32,
    /// Its provider.
    pub provider: AccountId,
    /// The price it was matched at.
    pub price: Price,
    /// The order's escrow.
    pub escrow: Amount,
    /// The fuel its receipt claims.
    pub fuel: Fuel,
}

/// Checks a delivery's receipt against the order (signature, signer = delivering peer =
/// assigned provider, order, module, fuel within budget). On success the order moves to
/// verifying (busy) and the outputs are checked and settled in a task.
pub fn accept_delivery(
    shared: &Arc<Shared>,
    peer: AccountId,
    delivery: Delivery,
) -> Result<(), String> {
    let receipt = &delivery.receipt;
    receipt
        .verify(&shared.identity.chain_id)
        .map_err(|e| format!("receipt rejected: {e}"))?;
    if !receipt.signer_is_provider() || receipt.signer != peer {
        return Err("the receipt is not signed by the provider that delivered it".to_string());
    }
    let id = receipt.body.order_id;
    let mut book = shared.book();
    let entry = book
        .orders
        .get_mut(&id)
        .ok_or_else(|| format!("order {id} is unknown to this market"))?;
    if entry.rec.state.is_final() || entry.busy || !entry.assigned_to(peer) {
        return Err(format!(
            "order {id} is not assigned to {peer} (it was reassigned, refunded or is being settled); this delivery will not be paid"
        ));
    }
    let attempt = entry.rec.attempts;
    let body = &entry.rec.order.body;
    let fault = if receipt.body.fuel_used > body.fuel_budget {
        Some(format!(
            "the receipt claims {} fuel, over the budget of {}",
            receipt.body.fuel_used.0, body.fuel_budget.0
        ))
    } else if receipt.body.module != body.job.module {
        Some("the receipt names another module".to_string())
    } else {
        None
    };
    if let Some(fault) = fault {
        let failed = fail_attempt(
            shared,
            &mut book,
            id,
            attempt,
            &fault,
            ReputationEvent::Failure,
        );
        let actions = then_serve(shared, &mut book, failed);
        drop(book);
        run(shared, actions);
        return Err(fault);
    }
    let billing = Billing {
        attempt,
        provider: peer,
        price: entry.rec.price.unwrap_or(Price(0)),
        escrow: body.escrow,
        fuel: receipt.body.fuel_used,
    };
    entry.busy = true;
    if !entry.accepted {
        entry.accepted = true;
        shared.enter(entry, OrderState::Matched, format!("{peer} took the order"));
    }
    shared.enter(
        entry,
        OrderState::Verifying,
        format!("{peer} delivered; checking outputs"),
    );
    drop(book);
    let shared = shared.clone();
    tokio::spawn(async move { verify_and_settle(shared, id, billing, delivery).await });
    Ok(())
}

/// Fetches the outputs and recomputes the digest; a run that checks out goes to the
/// order's verification (which settles, runs another provider or refunds), one that does
/// not fails the attempt. An output over the market's blob limit refunds the order at
/// once: every honest provider computes the same output, so no other run can deliver it.
async fn verify_and_settle(shared: Arc<Shared>, id: Hash, billing: Billing, delivery: Delivery) {
    let buyer = shared.book().orders.get(&id).and_then(|entry| {
        let order = &entry.rec.order;
        order.body.is_private().then_some(order.signer)
    });
    let fault = match check_outputs(&shared, billing.provider, buyer, &delivery).await {
        Ok(()) => return verification::on_delivered(shared, id, billing, delivery).await,
        Err(fault) => fault,
    };
    let mut book = shared.book();
    let current = book.orders.get_mut(&id).is_some_and(|entry| {
        entry.busy = false;
        entry.rec.attempts == billing.attempt
    });
    shared.metrics.job("rejected");
    let ended = match fault {
        OutputFault::TooLarge { .. } if current => {
            let reason = fault.to_string();
            tracing::info!(order = %id, provider = %billing.provider, "refunding: {reason}");
            begin_refund(&mut book, id, reason)
        }
        _ => fail_attempt(
            &shared,
            &mut book,
            id,
            billing.attempt,
            &fault.to_string(),
            ReputationEvent::Failure,
        ),
    };
    let actions = then_serve(&shared, &mut book, ended);
    drop(book);
    run(&shared, actions);
}

/// Why a delivery's outputs were not accepted.
#[derive(Debug, thiserror::Error)]
enum OutputFault {
    /// An output the market cannot store: the job's own outcome, the same on every
    /// provider.
    #[error(
        "output {name} is {size} bytes, larger than the market's blob limit of {limit} bytes; \
         every provider would produce the same output, so the order is refunded instead of \
         run again (write smaller outputs, or use a market with a larger limit)"
    )]
    TooLarge {
        /// The output's name.
        name: String,
        /// Its size.
        size: u64,
        /// The market's limit.
        limit: u64,
    },
    /// The provider's fault: an output that could not be fetched, or a digest mismatch.
    #[error("{0}")]
    Provider(String),
}

/// Fetches every output blob from the provider (hash-checked by the transfer) and
/// checks that the delivered result hashes to the receipt's digest. For a private order
/// (`sealed_to` is its buyer) the digest is over plaintext the market cannot see: it
/// checks instead that every output, stdout and stderr is sealed to the buyer, so no
/// plaintext reaches its store, and leaves the digest to the quorum and the buyer.
async fn check_outputs(
    shared: &Shared,
    provider: AccountId,
    sealed_to: Option<AccountId>,
    delivery: &Delivery,
) -> Result<(), OutputFault> {
    let limit = shared.settings.max_blob_bytes;
    if let Some(output) = delivery.outputs.iter().find(|o| o.size > limit) {
        return Err(OutputFault::TooLarge {
            name: output.name.clone(),
            size: output.size,
            limit,
        });
    }
    let peer =
        agora_net::peer_id_of(&provider).map_err(|e| OutputFault::Provider(e.to_string()))?;
    let mut files = Vec::with_capacity(delivery.outputs.len());
    for output in &delivery.outputs {
        shared
            .net
            .fetch_blob(peer, output.hash)
            .await
            .map_err(|e| {
                OutputFault::Provider(format!("output {} could not be fetched: {e}", output.name))
            })?;
        files.push(OutputFile {
            name: output.name.clone(),
            size: output.size,
            hash: output.hash,
            data: Vec::new(),
        });
    }
    if let Some(buyer) = sealed_to {
        return check_sealed(shared, buyer, delivery);
    }
    let digest = result_digest(
        delivery.exit_code,
        &delivery.stdout.data,
        &delivery.stderr.data,
        &files,
    );
    if digest != delivery.receipt.body.result_digest {
        return Err(OutputFault::Provider(
            "the delivered outputs do not match the receipt's digest".to_string(),
        ));
    }
    Ok(())
}

/// Checks that a private order's delivery holds ciphertext sealed to `buyer` only.
fn check_sealed(shared: &Shared, buyer: AccountId, delivery: &Delivery) -> Result<(), OutputFault> {
    let sealed_to_buyer =
        |head: &[u8]| agora_seal::is_sealed(head).is_some_and(|h| h.owner == buyer);
    let mut parts: Vec<(String, bool)> = vec![
        ("stdout".into(), sealed_to_buyer(&delivery.stdout.data)),
        ("stderr".into(), sealed_to_buyer(&delivery.stderr.data)),
    ];
    for output in &delivery.outputs {
        let head = shared
            .blobs
            .read_range(&output.hash, 0, agora_seal::HEADER_LEN as u64)
            .unwrap_or_default();
        parts.push((format!("output {}", output.name), sealed_to_buyer(&head)));
    }
    match parts.into_iter().find(|(_, sealed)| !sealed) {
        None => Ok(()),
        Some((what, _)) => Err(OutputFault::Provider(format!(
            "{what} of a private order is not sealed to the buyer {buyer}; the market keeps no plaintext of private orders"
        ))),
    }
}

/// Stores stdout and stderr as blobs so their exact bytes can be downloaded.
pub(crate) async fn store_stdio(shared: &Shared, delivery: &Delivery) -> (Hash, Hash) {
    let blobs = shared.blobs.clone();
    let out = delivery.stdout.data.clone();
    let err = delivery.stderr.data.clone();
    let stored = tokio::task::spawn_blocking(move || {
        // Identical output (common across tasks of one job) is stored once.
        let put = |bytes: &[u8]| {
            let hash = Hash::of(bytes);
            if blobs.contains(&hash) {
                return hash;
            }
            blobs.put_bytes(bytes).unwrap_or(hash)
        };
        (put(&out), put(&err))
    })
    .await;
    stored.unwrap_or_else(|_| {
        (
            Hash::of(&delivery.stdout.data),
            Hash::of(&delivery.stderr.data),
        )
    })
}

/// The result of a delivery. A private order's stdout and stderr are ciphertext: their
/// text is left empty, and the buyer reads them from blobs `stdout_hash`/`stderr_hash`.
pub(crate) fn job_result(
    delivery: &Delivery,
    (stdout_hash, stderr_hash): (Hash, Hash),
    private: bool,
) -> JobResult {
    let text = |data: &[u8]| {
        if private {
            String::new()
        } else {
            String::from_utf8_lossy(data).into_owned()
        }
    };
    JobResult {
        exit_code: delivery.exit_code,
        stdout: text(&delivery.stdout.data),
        stdout_hash,
        stdout_truncated: delivery.stdout.truncated,
        stderr: text(&delivery.stderr.data),
        stderr_hash,
        stderr_truncated: delivery.stderr.truncated,
        outputs: delivery.outputs.clone(),
        digest: delivery.receipt.body.result_digest,
        fuel_used: delivery.receipt.body.fuel_used,
        provider: delivery.receipt.body.provider,
        receipt: agora_proto::hexed::encode(&delivery.receipt),
    }
}

/// A provider's heartbeat: the order is alive (and running, from the first one).
pub fn heartbeat(shared: &Shared, peer: AccountId, beat: &Signed<Heartbeat>) -> Result<(), String> {
    beat.verify(&shared.identity.chain_id)
        .map_err(|e| format!("heartbeat rejected: {e}"))?;
    if beat.signer != peer || beat.body.provider != peer {
        return Err("the heartbeat is not signed by the provider that sent it".to_string());
    }
    let id = beat.body.order_id;
    let mut book = shared.book();
    if let Some(p) = book.providers.get_mut(&peer) {
        p.last_seen_ms = now_ms();
    }
    let entry = book
        .orders
        .get_mut(&id)
        .ok_or_else(|| format!("order {id} is unknown to this market"))?;
    if entry.rec.state.is_final() || !entry.assigned_to(peer) {
        return Err(format!(
            "order {id} is not assigned to {peer}; stop running it"
        ));
    }
    entry.last_beat_ms = now_ms();
    let resumed = entry.resumed_from == Some(peer);
    if resumed {
        // The provider held the order before a market restart and is still on it: keep
        // waiting for its delivery while it keeps beating.
        let silence = shared.settings.silence_limit_ms();
        entry.resume_until_ms = entry.resume_until_ms.max(entry.last_beat_ms + silence);
    }
    if entry.busy {
        return Ok(());
    }
    if !entry.accepted {
        entry.accepted = true;
        shared.enter(entry, OrderState::Matched, format!("{peer} took the order"));
    }
    if entry.rec.state == OrderState::Matched {
        shared.enter(entry, OrderState::Running, format!("{peer} is running it"));
    }
    if resumed {
        reclaim_capacity(&mut book, id, peer);
    }
    Ok(())
}

/// A provider that held an order before a market restart is beating for it again. The
/// restarted engine does not know that capacity is taken and would offer it to the next
/// order (which the provider would then decline, costing that order an attempt), so the
/// capacity is reserved again with an order only this provider's asks can fill, and the
/// order becomes an ordinary running assignment, watched by heartbeats from now on. If the
/// provider has not posted its ask again yet, the next heartbeat retries.
fn reclaim_capacity(book: &mut Book, id: Hash, provider: AccountId) {
    let Some(entry) = book.orders.get(&id) else {
        return;
    };
    let mut order = entry.market_order();
    order
        .requirements
        .attributes
        .push(AttributeConstraint::equals(
            PROVIDER_ATTR,
            &provider.to_string(),
        ));
    let now = now_ms();
    // `quote` first: a miss there costs no explanation, and misses are expected until the
    // provider's ask is back.
    if !book.market.quote(&order, now).is_ok_and(|w| !w.is_empty()) {
        return;
    }
    let Ok(MatchOutcome::Filled(fill)) = book.market.submit_order(order, now) else {
        return;
    };
    let Some(winner) = fill.winners.into_iter().next() else {
        return;
    };
    book.providers.entry(provider).or_default().running += 1;
    if let Some(entry) = book.orders.get_mut(&id) {
        entry.match_id = Some(winner.match_id);
        entry.resumed_from = None;
        entry.resume_until_ms = 0;
    }
    tracing::info!(order = %id, %provider, "capacity reclaimed for an order resumed after a restart");
}

/// A provider could not run an order: a deterministic failure (the job's own fault) is
/// refunded; any other fails the attempt and reassigns.
pub fn failure(
    shared: &Arc<Shared>,
    peer: AccountId,
    failure: &Signed<JobFailure>,
) -> Result<(), String> {
    failure
        .verify(&shared.identity.chain_id)
        .map_err(|e| format!("failure report rejected: {e}"))?;
    if failure.signer != peer || failure.body.provider != peer {
        return Err("the failure report is not signed by the provider that sent it".to_string());
    }
    failure.body.check_shape()?;
    let id = failure.body.order_id;
    let mut book = shared.book();
    let entry = book
        .orders
        .get(&id)
        .ok_or_else(|| format!("order {id} is unknown to this market"))?;
    if entry.rec.state.is_final() || entry.busy || !entry.assigned_to(peer) {
        return Err(format!("order {id} is not assigned to {peer}"));
    }
    let attempt = entry.rec.attempts;
    // The typed code leads the reason, so programs reading `refund_reason` can act on it.
    let reason = &format!("[{}] {}", failure.body.kind, failure.body.reason);
    let ended = if failure.body.deterministic {
        // The job's last words go with the reason: the buyer's only view of why it failed.
        let tails = failure.body.tails_text();
        begin_refund(
            &mut book,
            id,
            format!(
                "the job itself failed on {peer}: {reason} (any provider would fail the same way){tails}"
            ),
        )
    } else {
        fail_attempt(
            shared,
            &mut book,
            id,
            attempt,
            reason,
            ReputationEvent::Failure,
        )
    };
    let actions = then_serve(shared, &mut book, ended);
    drop(book);
    run(shared, actions);
    Ok(())
}

/// One watchdog pass: retries pending refunds, refunds orders past their deadline (with
/// the why-no-match explanation for those no provider took), fails silent attempts, and
/// serves the queue of orders waiting for providers.
pub fn watchdog_pass(shared: &Arc<Shared>) {
    let now = now_ms();
    let silence = shared.settings.silence_limit_ms();
    let mut book = shared.book();
    book.market.expire(now);
    let ids: Vec<Hash> = book.active.iter().copied().collect();
    let mut actions = Vec::new();
    for id in ids {
        let Some(entry) = book.orders.get(&id) else {
            continue;
        };
        if entry.busy || entry.rec.state.is_final() || entry.rec.escrow_height == 0 {
            continue;
        }
        if let Some(reason) = entry.pending_refund.clone() {
            actions.extend(begin_refund(&mut book, id, reason));
        } else if now >= entry.rec.order.body.deadline_ms && unassigned(entry) {
            actions.extend(refund_unplaced(shared, &mut book, id, now));
        } else if now >= entry.rec.order.body.deadline_ms {
            actions.extend(begin_refund(
                &mut book,
                id,
                "the deadline passed before the order settled".to_string(),
            ));
        } else if entry.match_id.is_some() && now > entry.last_beat_ms + silence {
            let attempt = entry.rec.attempts;
            let reason = format!("no heartbeat for {} ms", now - entry.last_beat_ms);
            actions.extend(fail_attempt(
                shared,
                &mut book,
                id,
                attempt,
                &reason,
                ReputationEvent::Timeout,
            ));
        } else if entry.resumed_from.is_some() && now >= entry.resume_until_ms {
            actions.extend(give_up_resumed(shared, &mut book, id));
        }
    }
    actions.extend(verification::release_held(shared, &mut book, now));
    // Unassigned orders are matched oldest first, not in the set's order. This also
    // serves the queue after what the p2p loop changed (new asks, reconnects) and what
    // `expire` released.
    actions.extend(serve_queue(shared, &mut book));
    drop(book);
    run(shared, actions);
}

/// The provider that held an order before a restart did not come back within the
/// grace: the order is assigned again (no reputation event: the market restarted, not
/// the provider), and the old provider is told to stop.
fn give_up_resumed(shared: &Shared, book: &mut Book, id: Hash) -> Vec<Action> {
    let Some(entry) = book.orders.get_mut(&id) else {
        return Vec::new();
    };
    let Some(provider) = entry.resumed_from.take() else {
        return Vec::new();
    };
    entry.rec.provider = None;
    entry.rec.price = None;
    shared.enter(
        entry,
        OrderState::Escrowed,
        format!("{provider} did not resume the order after the market restart; assigning again"),
    );
    let mut actions = vec![Action::Abort {
        provider,
        id,
        reason: "the market assigned the order again after a restart".to_string(),
    }];
    actions.extend(try_match(shared, book, id, None));
    actions
}

/// A provider's connection closed: its running attempts fail at once and its asks
/// leave the book.
pub fn provider_gone(shared: &Arc<Shared>, provider: AccountId) {
    let mut book = shared.book();
    let asks: Vec<_> = match book.providers.get_mut(&provider) {
        Some(entry) => {
            entry.connected = false;
            std::mem::take(&mut entry.asks).into_keys().collect()
        }
        None => return,
    };
    for ask in &asks {
        let _ = book.market.withdraw_ask(ask, &provider);
    }
    let assigned: Vec<(Hash, u32)> = book
        .active
        .iter()
        .filter_map(|id| book.orders.get(id))
        .filter(|e| e.match_id.is_some() && !e.busy && e.rec.provider == Some(provider))
        .map(|e| (e.id(), e.rec.attempts))
        .collect();
    let mut actions = Vec::new();
    for (id, attempt) in assigned {
        actions.extend(fail_attempt(
            shared,
            &mut book,
            id,
            attempt,
            "the provider disconnected",
            ReputationEvent::Failure,
        ));
    }
    // Its orders went back to the queue (or were refunded); serve it oldest first.
    actions.extend(serve_queue(shared, &mut book));
    drop(book);
    run(shared, actions);
}
