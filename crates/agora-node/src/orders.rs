//! Accepting and cancelling buyers' orders.
//!
//! A submission is checked completely before anything changes: the order's signature and
//! chain, its shape, that the escrow transaction is signed by the same buyer and opens
//! exactly this order's escrow (amount and deadline), that every blob it names is stored
//! with the declared size, that the module is one a provider would run at all (the
//! executor's pre-compile check: allowed wasm features, WASI imports, `_start`), and that
//! its id is new. Then the record is made durable, the
//! escrow goes into a block (on the EVM backend, the identical escrow the buyer opened on
//! chain itself is taken over instead), and only then is the order matched (or, when every provider
//! that could run it is busy, queued until one has room), so a crash at any point leaves
//! either nothing, or a record whose escrow the restart reconciles. A waiting order can be
//! cancelled like any other that is not being settled.

use std::sync::Arc;

use agora_core::{Hash, Signed};
use agora_ledger::{Tx, TxBody};
use agora_proto::api::{CancelRequest, OrderView, SubmitOrder, Submitted};
use agora_proto::{CancelOrder, OrderState, SignedOrder, hexed, signed_order_id};

use crate::books::{AdoptError, Books};
use crate::chain::{ChainError, LedgerOp};
use crate::clock::now_ms;
use crate::error::ApiFailure;
use crate::lifecycle::{self, begin_refund};
use crate::node::{OrderEntry, Shared};
use crate::records::OrderRecord;
use crate::verification::VerificationRecord;

/// A submission that passed every check that needs no state.
#[derive(Debug)]
pub struct CheckedSubmission {
    /// The order.
    pub order: SignedOrder,
    /// Its escrow transaction.
    pub escrow_tx: Tx,
    /// The order's id.
    pub id: Hash,
}

/// Decodes and checks a submission against `chain_id` at `now_ms` (no state needed);
/// its deadline must be in the future and at most `max_deadline_ms` away.
pub fn check_submission(
    request: &SubmitOrder,
    chain_id: &agora_core::ChainId,
    now_ms: u64,
    max_deadline_ms: u64,
) -> Result<CheckedSubmission, ApiFailure> {
    let order: SignedOrder = hexed::decode(&request.order, "signed order")
        .map_err(|e| ApiFailure::BadRequest(format!("field `order`: {e}")))?;
    let escrow_tx: Tx = hexed::decode(&request.escrow_tx, "ledger transaction")
        .map_err(|e| ApiFailure::BadRequest(format!("field `escrow_tx`: {e}")))?;
    order.verify(chain_id).map_err(|e| {
        ApiFailure::BadSignature(format!("the order's signature does not check out ({e}); sign it with the buyer key for chain {chain_id:?}", chain_id = chain_id.0))
    })?;
    escrow_tx.verify(chain_id).map_err(|e| {
        ApiFailure::BadSignature(format!("the escrow transaction's signature does not check out ({e}); sign it with the buyer key for chain {:?}", chain_id.0))
    })?;
    order
        .body
        .check_shape()
        .map_err(|e| ApiFailure::BadOrder(format!("{e}")))?;
    let body = &order.body;
    check_deadline(body.deadline_ms, now_ms, MIN_DEADLINE_MS, max_deadline_ms)?;
    crate::verification::check_order_terms(body, now_ms).map_err(ApiFailure::BadOrder)?;
    let id = signed_order_id(&order);
    if escrow_tx.signer != order.signer {
        return Err(ApiFailure::EscrowMismatch(format!(
            "the escrow is signed by {} but the order by {}; the buyer must sign both",
            escrow_tx.signer, order.signer
        )));
    }
    match &escrow_tx.body {
        TxBody::OpenEscrow {
            order_id,
            amount,
            deadline_ms,
        } if *order_id == id && *amount == body.escrow && *deadline_ms == body.deadline_ms => {}
        TxBody::OpenEscrow {
            order_id,
            amount,
            deadline_ms,
        } => {
            return Err(ApiFailure::EscrowMismatch(format!(
                "the escrow opens order {order_id} with {amount} until {deadline_ms}, but the order is {id} with escrow {} until {}; sign an OpenEscrow with exactly those",
                body.escrow, body.deadline_ms
            )));
        }
        TxBody::RedeemVoucher {
            terms,
            cu,
            order_id,
            deadline_ms,
        } => check_voucher_escrow(body, id, terms, *cu, *order_id, *deadline_ms)?,
        other => {
            return Err(ApiFailure::EscrowMismatch(format!(
                "`escrow_tx` is a {} transaction; it must be an OpenEscrow or a RedeemVoucher for order {id}",
                other.kind()
            )));
        }
    }
    Ok(CheckedSubmission {
        order,
        escrow_tx,
        id,
    })
}

/// An order paid by a voucher: the redemption must open exactly this order's escrow
/// (id, deadline, amount = the redeemed CU's backing), in the order's resource class, and
/// the order may not offer more per CU than the voucher's locked price (a voucher is a
/// claim on CU at the market's index, not a blank cheque). The ledger then checks that the
/// buyer holds the units and that the series is inside its redeem window.
fn check_voucher_escrow(
    body: &agora_proto::OrderRequest,
    id: Hash,
    terms: &agora_ledger::VoucherTerms,
    cu: u64,
    order_id: Hash,
    deadline_ms: u64,
) -> Result<(), ApiFailure> {
    if order_id != id || deadline_ms != body.deadline_ms {
        return Err(ApiFailure::EscrowMismatch(format!(
            "the voucher redemption opens order {order_id} until {deadline_ms}, but the order is {id} until {}; sign a RedeemVoucher with exactly those",
            body.deadline_ms
        )));
    }
    let class = body
        .demand
        .classes(std::iter::empty())
        .into_iter()
        .next()
        .unwrap_or_else(agora_market::ResourceClass::cpu);
    if terms.class != class.as_str() {
        return Err(ApiFailure::EscrowMismatch(format!(
            "the voucher is for resource class {:?} but the order runs on {:?}; pay with a voucher of class {:?} or with an OpenEscrow",
            terms.class,
            class.as_str(),
            class.as_str()
        )));
    }
    if body.max_price > terms.price_per_cu {
        return Err(ApiFailure::EscrowMismatch(format!(
            "the order offers up to {} but the voucher's CU were bought at {}; a voucher pays at most its locked price, so cap the order's price at it",
            body.max_price, terms.price_per_cu
        )));
    }
    if terms.backing(cu) != Some(body.escrow) {
        return Err(ApiFailure::EscrowMismatch(format!(
            "redeeming {cu} CU at {} locks {}, but the order's escrow is {}; redeem exactly the CU that back the order's escrow",
            terms.price_per_cu,
            terms
                .backing(cu)
                .map_or_else(|| "more than fits".to_string(), |a| a.to_string()),
            body.escrow
        )));
    }
    Ok(())
}

/// The nearest deadline a signed order may have, ms from its submission: any time in
/// the future (the buyer's clock set it; an order that cannot finish in time is refunded).
pub const MIN_DEADLINE_MS: u64 = 1;

/// Refuses a `deadline_ms` (Unix ms) that is not between `min_ms` and `max_ms` from
/// `now_ms`: a past one could never run, and an absurdly far one would lock its escrow and
/// its place in the books for ever.
pub fn check_deadline(
    deadline_ms: u64,
    now_ms: u64,
    min_ms: u64,
    max_ms: u64,
) -> Result<(), ApiFailure> {
    let away = i128::from(deadline_ms) - i128::from(now_ms);
    if away < i128::from(min_ms) || away > i128::from(max_ms) {
        return Err(ApiFailure::DeadlineOutOfRange {
            away_ms: i64::try_from(away).unwrap_or(if away < 0 { i64::MIN } else { i64::MAX }),
            min_ms,
            max_ms,
        });
    }
    Ok(())
}

/// Every blob the job names must be stored with its declared size.
fn check_blobs(shared: &Shared, order: &SignedOrder) -> Result<(), ApiFailure> {
    let job = &order.body.job;
    let named = std::iter::once((job.module, job.module_size))
        .chain(job.inputs.iter().map(|i| (i.hash, i.size)));
    for (hash, declared) in named {
        let stored = shared
            .blobs
            .size(&hash)
            .map_err(|_| ApiFailure::MissingBlob(hash))?;
        if stored != declared {
            return Err(ApiFailure::BlobSize {
                hash,
                stored,
                declared,
            });
        }
    }
    Ok(())
}

/// Refuses an order whose module every provider would refuse before compiling it (see
/// `agora_exec::precheck`), so the buyer's escrow is never locked for a job that cannot run.
/// Verdicts are remembered per module hash: they depend on the bytes alone.
async fn check_module(shared: &Shared, module: Hash) -> Result<(), ApiFailure> {
    static VERDICTS: std::sync::Mutex<Vec<(Hash, Option<String>)>> =
        std::sync::Mutex::new(Vec::new());
    const REMEMBERED: usize = 256;
    let remembered = |hash: &Hash| {
        let verdicts = VERDICTS.lock().unwrap_or_else(|p| p.into_inner());
        verdicts
            .iter()
            .find(|(h, _)| h == hash)
            .map(|(_, v)| v.clone())
    };
    let verdict = match remembered(&module) {
        Some(verdict) => verdict,
        None => {
            let path = shared.blobs.path_of(&module);
            let checked = tokio::task::spawn_blocking(move || {
                std::fs::read(&path).map(|bytes| agora_exec::precheck::check(&bytes))
            })
            .await
            .map_err(|e| ApiFailure::Internal(format!("the module check stopped: {e}")))?
            .map_err(|e| ApiFailure::Internal(format!("reading module {module}: {e}")))?;
            let verdict = checked.err().map(|err| err.to_string());
            let mut verdicts = VERDICTS.lock().unwrap_or_else(|p| p.into_inner());
            if verdicts.len() >= REMEMBERED {
                verdicts.remove(0);
            }
            verdicts.push((module, verdict.clone()));
            verdict
        }
    };
    match verdict {
        None => Ok(()),
        Some(why) => Err(ApiFailure::BadRequest(format!(
            "module {module} would be refused by every provider, so no escrow was taken: {why}"
        ))),
    }
}

/// `POST /v1/orders`.
pub async fn submit(shared: &Arc<Shared>, request: SubmitOrder) -> Result<Submitted, ApiFailure> {
    let now = now_ms();
    let checked = check_submission(
        &request,
        &shared.identity.chain_id,
        now,
        shared.settings.max_deadline_ms,
    )?;
    check_blobs(shared, &checked.order)?;
    // An image archive is checked by the provider that unpacks it: its typed failure
    // refunds the buyer (docs/containers.md).
    if checked.order.body.job.workload == agora_proto::Workload::Wasm {
        check_module(shared, checked.order.body.job.module).await?;
    }
    let id = checked.id;
    let policy = checked.order.body.verify;
    let auctioned = !checked.order.body.auction.is_instant();
    let record = OrderRecord {
        order: checked.order,
        state: OrderState::Escrowed,
        escrow_height: 0,
        provider: None,
        price: None,
        cost: agora_core::Amount::ZERO,
        refunded: agora_core::Amount::ZERO,
        attempts: 0,
        tried: Vec::new(),
        created_ms: now,
        finished_ms: None,
        refund_reason: None,
        events: Vec::new(),
        result: None,
        verification: VerificationRecord::new(policy),
    };
    {
        let mut book = shared.book();
        if book.orders.contains_key(&id) {
            return Err(ApiFailure::DuplicateOrder(id));
        }
        let mut entry = OrderEntry::new(record.clone());
        entry.busy = true;
        book.orders.insert(id, entry);
    }
    if let Err(e) = shared.records.save_durably(&record).await {
        shared.book().orders.remove(&id);
        return Err(ApiFailure::Internal(format!(
            "the order record could not be stored: {e}"
        )));
    }
    let included = lock_escrow(shared, checked.escrow_tx).await;
    let height = match included {
        Ok(inclusions) => inclusions.first().map(|i| i.height).unwrap_or(0),
        Err(err) => {
            shared.book().orders.remove(&id);
            if let Err(e) = shared.records.delete(id).await {
                tracing::warn!(order = %id, "could not delete the record of a refused order: {e}");
            }
            return Err(match err {
                SubmitFailure::Api(failure) => failure,
                SubmitFailure::Chain(ChainError::Refused(why)) => ApiFailure::EscrowRefused(why),
                SubmitFailure::Chain(other) => ApiFailure::Internal(other.to_string()),
            });
        }
    };
    let (state, actions) = {
        let mut book = shared.book();
        let Some(entry) = book.orders.get_mut(&id) else {
            return Err(ApiFailure::Internal(
                "the order vanished while its escrow was committed".into(),
            ));
        };
        entry.busy = false;
        entry.rec.escrow_height = height;
        let escrow = entry.rec.order.body.escrow;
        shared.enter(
            entry,
            OrderState::Escrowed,
            format!("{escrow} locked in block {height}"),
        );
        book.sequence.push(id);
        book.active.insert(id);
        // An auction order opens its auction instead of being matched; the queue then
        // leaves it alone until the close.
        let mut actions = if auctioned {
            crate::auctions::open(shared, &mut book, id, now_ms())
        } else {
            Vec::new()
        };
        // Through the queue, so orders already waiting for capacity are placed first.
        actions.extend(lifecycle::serve_queue(shared, &mut book));
        let state = book
            .orders
            .get(&id)
            .map(|e| e.rec.state)
            .unwrap_or(OrderState::Escrowed);
        (state, actions)
    };
    lifecycle::run(shared, actions);
    if auctioned {
        crate::auctions::start(shared, id);
    }
    Ok(Submitted {
        order_id: id,
        state,
        escrow_height: height,
    })
}

/// Locks the order's escrow: on the EVM backend a buyer opens it on chain with its own
/// key, and an identical escrow found there is taken over (a different one is refused as
/// `escrow_mismatch`); otherwise the signed `OpenEscrow` goes into a block (on the EVM
/// backend the node holds no participant's key, so it is refused: with no escrow on chain
/// the order cannot be taken).
async fn lock_escrow(
    shared: &Shared,
    escrow_tx: agora_ledger::Tx,
) -> Result<Vec<crate::chain::Inclusion>, SubmitFailure> {
    lock_with(shared, escrow_tx, Books::adopt_escrow).await
}

/// Locks a challenge bond as [`lock_escrow`] locks an order's escrow: on the EVM backend
/// the challenger opens it on chain itself and an identical one is taken over (a different
/// one is `escrow_mismatch`, none at all `escrow_refused`).
pub(crate) async fn lock_bond(
    shared: &Shared,
    bond_tx: agora_ledger::Tx,
) -> Result<(), ApiFailure> {
    lock_with(shared, bond_tx, Books::adopt_bond)
        .await
        .map(drop)
        .map_err(|err| match err {
            SubmitFailure::Api(failure) => failure,
            SubmitFailure::Chain(ChainError::Refused(why)) => {
                ApiFailure::EscrowRefused(format!("the bond was not committed: {why}"))
            }
            SubmitFailure::Chain(other) => {
                ApiFailure::TxRefused(format!("the bond was not committed: {other}"))
            }
        })
}

/// Takes over an identical escrow found on chain with `adopt`, or submits `escrow_tx`.
async fn lock_with(
    shared: &Shared,
    escrow_tx: agora_ledger::Tx,
    adopt: fn(&mut Books, &agora_ledger::Tx) -> Result<Option<u64>, AdoptError>,
) -> Result<Vec<crate::chain::Inclusion>, SubmitFailure> {
    let probe = escrow_tx.clone();
    let adopted = shared
        .chain
        .read(move |books| adopt(books, &probe))
        .await
        .map_err(SubmitFailure::Chain)?;
    match adopted {
        Ok(Some(height)) => Ok(vec![crate::chain::Inclusion {
            tx_id: escrow_tx.id(),
            height,
        }]),
        Ok(None) => shared
            .chain
            .submit(vec![LedgerOp::External(escrow_tx)])
            .await
            .map_err(SubmitFailure::Chain),
        Err(AdoptError::Mismatch(why)) => Err(SubmitFailure::Api(ApiFailure::EscrowMismatch(why))),
        Err(AdoptError::Read(why)) => Err(SubmitFailure::Chain(ChainError::Read(why))),
    }
}

/// Why [`lock_escrow`] failed.
enum SubmitFailure {
    Chain(ChainError),
    Api(ApiFailure),
}

/// `POST /v1/orders/{id}/cancel`: the buyer's signed cancel refunds an order that is not
/// being settled (a running provider is told to stop). Waits for the refund.
pub async fn cancel(
    shared: &Arc<Shared>,
    id: Hash,
    request: CancelRequest,
) -> Result<OrderView, ApiFailure> {
    let cancel: Signed<CancelOrder> = hexed::decode(&request.cancel, "signed cancel")
        .map_err(|e| ApiFailure::BadRequest(format!("field `cancel`: {e}")))?;
    cancel.verify(&shared.identity.chain_id).map_err(|e| {
        ApiFailure::BadSignature(format!("the cancel's signature does not check out ({e})"))
    })?;
    if cancel.body.order_id != id {
        return Err(ApiFailure::BadRequest(format!(
            "the signed cancel names order {} but the path names {id}",
            cancel.body.order_id
        )));
    }
    let mut events = shared.events.subscribe();
    let actions = {
        let mut book = shared.book();
        let entry = book.orders.get(&id).ok_or(ApiFailure::UnknownOrder(id))?;
        if cancel.signer != entry.rec.order.signer {
            return Err(ApiFailure::BadSignature(format!(
                "only the buyer {} may cancel this order",
                entry.rec.order.signer
            )));
        }
        if entry.rec.state.is_final() {
            return Err(ApiFailure::Conflict(format!(
                "order {id} is already {}; nothing to cancel",
                entry.rec.state
            )));
        }
        if entry.busy {
            return Err(ApiFailure::Conflict(format!(
                "order {id} is being settled or refunded right now; follow it to see the outcome"
            )));
        }
        let mut actions = begin_refund(&mut book, id, "cancelled by the buyer".to_string());
        // A cancelled running order frees its capacity for the next waiting one.
        actions.extend(lifecycle::serve_queue(shared, &mut book));
        actions
    };
    lifecycle::run(shared, actions);
    // Wait for the refund to land (or fail) so the answer shows the outcome.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(view) = final_view(shared, id) {
            return Ok(view);
        }
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            _ => break,
        }
    }
    shared
        .book()
        .orders
        .get(&id)
        .map(OrderEntry::view)
        .ok_or(ApiFailure::UnknownOrder(id))
}

fn final_view(shared: &Shared, id: Hash) -> Option<OrderView> {
    let book = shared.book();
    let entry = book.orders.get(&id)?;
    (entry.rec.state.is_final() || (!entry.busy && entry.pending_refund.is_some()))
        .then(|| entry.view())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::{Amount, ChainId, Fuel, Keypair, Price};
    use agora_market::{Demand, Requirements};
    use agora_proto::{JobSpec, OrderRequest};
    use proptest::prelude::*;

    const NOW: u64 = 1_000_000;
    const MAX_DEADLINE: u64 = 7 * 24 * 3_600_000;

    fn order(buyer: &Keypair, chain: &ChainId, salt: u64, escrow: u64) -> SignedOrder {
        let body = OrderRequest {
            job: JobSpec {
                module: Hash::of(b"module"),
                module_size: 6,
                inputs: Vec::new(),
                args: Vec::new(),
                env: Vec::new(),
                memory_bytes: 1 << 20,
                workload: agora_proto::Workload::Wasm,
            },
            demand: Demand {
                cpu_millis: 1_000,
                memory_bytes: 1 << 20,
                disk_bytes: 0,
                gpu: None,
            },
            requirements: Requirements::default(),
            max_price: Price(10),
            fuel_budget: Fuel::compute_units(1),
            deadline_ms: NOW + 60_000,
            escrow: Amount(escrow),
            replicas: 1,
            verify: agora_proto::VerifyPolicy::None,
            label: String::new(),
            task: None,
            auction: Default::default(),
        };
        Signed::sign(buyer, chain, salt, body)
    }

    fn escrow_tx(
        signer: &Keypair,
        chain: &ChainId,
        order_id: Hash,
        amount: u64,
        deadline_ms: u64,
    ) -> Tx {
        Signed::sign(
            signer,
            chain,
            0,
            TxBody::OpenEscrow {
                order_id,
                amount: Amount(amount),
                deadline_ms,
            },
        )
    }

    fn request(order: &SignedOrder, tx: &Tx) -> SubmitOrder {
        SubmitOrder {
            order: hexed::encode(order),
            escrow_tx: hexed::encode(tx),
        }
    }

    proptest! {
        /// A submission passes exactly when every part of the escrow matches the order
        /// and both are signed by the buyer for this chain; any single change is refused
        /// with the code that names it.
        #[test]
        fn only_an_exactly_matching_escrow_passes(
            salt in any::<u64>(),
            extra in 0u64..1_000,
            tamper in 0usize..6,
        ) {
            let chain = ChainId::new("orders-test");
            let buyer = Keypair::from_seed("buyer");
            let escrow = 10 + extra;
            let signed = order(&buyer, &chain, salt, escrow);
            let id = signed_order_id(&signed);
            let deadline = signed.body.deadline_ms;
            let (order, tx, code) = match tamper {
                0 => (signed.clone(), escrow_tx(&buyer, &chain, id, escrow, deadline), None),
                1 => (signed.clone(), escrow_tx(&buyer, &chain, id, escrow + 1, deadline), Some("escrow_mismatch")),
                2 => (signed.clone(), escrow_tx(&buyer, &chain, id, escrow, deadline - 1), Some("escrow_mismatch")),
                3 => (signed.clone(), escrow_tx(&buyer, &chain, Hash::of(&salt.to_le_bytes()), escrow, deadline), Some("escrow_mismatch")),
                4 => (signed.clone(), escrow_tx(&Keypair::from_seed("other"), &chain, id, escrow, deadline), Some("escrow_mismatch")),
                _ => {
                    let mut forged = signed.clone();
                    forged.body.escrow = Amount(escrow + 1);
                    (forged, escrow_tx(&buyer, &chain, id, escrow, deadline), Some("bad_signature"))
                }
            };
            let outcome = check_submission(&request(&order, &tx), &chain, NOW, MAX_DEADLINE);
            match code {
                None => prop_assert_eq!(outcome.map(|c| c.id).ok(), Some(id)),
                Some(code) => {
                    let err = outcome.err();
                    prop_assert_eq!(err.map(|e| e.status_and_code().1), Some(code));
                }
            }
        }
    }

    #[test]
    fn other_chains_and_past_deadlines_are_refused() {
        let chain = ChainId::new("orders-test");
        let buyer = Keypair::from_seed("buyer");
        let signed = order(&buyer, &chain, 1, 10);
        let id = signed_order_id(&signed);
        let tx = escrow_tx(&buyer, &chain, id, 10, signed.body.deadline_ms);
        let other = ChainId::new("elsewhere");
        let err = check_submission(&request(&signed, &tx), &other, NOW, MAX_DEADLINE).unwrap_err();
        assert_eq!(err.status_and_code().1, "bad_signature");
        let late = check_submission(&request(&signed, &tx), &chain, NOW + 120_000, MAX_DEADLINE)
            .unwrap_err();
        assert_eq!(late.status_and_code().1, "deadline_out_of_range");
        // Exactly now is not in the future either.
        let at_deadline = signed.body.deadline_ms;
        let now = check_submission(&request(&signed, &tx), &chain, at_deadline, MAX_DEADLINE);
        assert!(matches!(
            now,
            Err(ApiFailure::DeadlineOutOfRange {
                away_ms: 0,
                min_ms: MIN_DEADLINE_MS,
                ..
            })
        ));
        let small = order(&buyer, &chain, 2, 9);
        let tx = escrow_tx(
            &buyer,
            &chain,
            signed_order_id(&small),
            9,
            small.body.deadline_ms,
        );
        let err = check_submission(&request(&small, &tx), &chain, NOW, MAX_DEADLINE).unwrap_err();
        assert_eq!(
            err.status_and_code().1,
            "bad_order",
            "escrow below the worst case"
        );
    }

    #[test]
    fn a_deadline_beyond_the_limit_is_refused_with_the_range() {
        let chain = ChainId::new("orders-test");
        let buyer = Keypair::from_seed("buyer");
        let signed = order(&buyer, &chain, 3, 10);
        let tx = escrow_tx(
            &buyer,
            &chain,
            signed_order_id(&signed),
            10,
            signed.body.deadline_ms,
        );
        // The order's deadline is 60 s away: within 60 s it passes, beyond it is refused.
        assert!(check_submission(&request(&signed, &tx), &chain, NOW, 60_000).is_ok());
        let err = check_submission(&request(&signed, &tx), &chain, NOW, 59_999).unwrap_err();
        assert!(matches!(
            err,
            ApiFailure::DeadlineOutOfRange {
                away_ms: 60_000,
                min_ms: MIN_DEADLINE_MS,
                max_ms: 59_999
            }
        ));
        assert!(err.to_string().contains("from 1 ms to 59999 ms"), "{err}");
    }

    #[test]
    fn deadline_bounds_hold_at_the_extremes() {
        assert!(check_deadline(u64::MAX, 0, 1, MAX_DEADLINE).is_err());
        assert!(check_deadline(0, u64::MAX, 1, MAX_DEADLINE).is_err());
        assert!(check_deadline(NOW + MAX_DEADLINE, NOW, 1, MAX_DEADLINE).is_ok());
        assert!(check_deadline(NOW + MAX_DEADLINE + 1, NOW, 1, MAX_DEADLINE).is_err());
        assert!(check_deadline(NOW + 1, NOW, 1, MAX_DEADLINE).is_ok());
    }

    fn redeem_tx(
        buyer: &Keypair,
        chain: &ChainId,
        terms: &agora_ledger::VoucherTerms,
        cu: u64,
        order_id: Hash,
        deadline_ms: u64,
    ) -> Tx {
        Signed::sign(
            buyer,
            chain,
            0,
            TxBody::RedeemVoucher {
                terms: terms.clone(),
                cu,
                order_id,
                deadline_ms,
            },
        )
    }

    /// An order paid by a voucher passes only with the order's class, a price cap at most
    /// the voucher's price, and exactly the redeemed CU's backing as its escrow.
    #[test]
    fn a_voucher_pays_only_for_its_class_price_and_amount() {
        let chain = ChainId::new("orders-test");
        let buyer = Keypair::from_seed("buyer");
        let cpu = |price| agora_ledger::VoucherTerms {
            class: "cpu".into(),
            price_per_cu: Price(price),
            redeem_from_ms: 0,
            expires_ms: NOW + 3_600_000,
        };
        let gpu = agora_ledger::VoucherTerms {
            class: "gpu:A100".into(),
            ..cpu(10)
        };
        let check =
            |escrow: u64, terms: &agora_ledger::VoucherTerms, cu: u64, deadline_shift: u64| {
                let signed = order(&buyer, &chain, 7, escrow);
                let id = signed_order_id(&signed);
                let deadline = signed.body.deadline_ms - deadline_shift;
                let tx = redeem_tx(&buyer, &chain, terms, cu, id, deadline);
                check_submission(&request(&signed, &tx), &chain, NOW, MAX_DEADLINE)
                    .map(|c| c.id)
                    .map_err(|e| (e.status_and_code().1, e.to_string()))
            };
        assert!(check(10, &cpu(10), 1, 0).is_ok());
        // A dearer voucher pays for a cheaper cap: escrow 2 × 20 covers the worst case.
        assert!(check(40, &cpu(20), 2, 0).is_ok());
        let (code, why) = check(10, &gpu, 1, 0).unwrap_err();
        assert_eq!(code, "escrow_mismatch");
        assert!(why.contains("gpu:A100") && why.contains("cpu"), "{why}");
        let (code, why) = check(10, &cpu(5), 2, 0).unwrap_err();
        assert_eq!(code, "escrow_mismatch");
        assert!(why.contains("locked price"), "{why}");
        let (code, why) = check(10, &cpu(10), 2, 0).unwrap_err();
        assert_eq!(code, "escrow_mismatch");
        assert!(why.contains("redeem exactly"), "{why}");
        let (code, _) = check(10, &cpu(10), 1, 1).unwrap_err();
        assert_eq!(code, "escrow_mismatch");
    }
}
