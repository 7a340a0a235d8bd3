//! The ledger explorer's read endpoints: transactions newest first with filters, escrows,
//! stakes, slashes with their evidence, search by id, and the dashboard's replay of the
//! chain (whose last result the overview shows).
//!
//! Blocks are read from the ledger in small chunks per query so that a scan never holds
//! the block producer for long; a scan stops after [`MAX_SCAN_BLOCKS`] blocks and says
//! where to continue (`next_before`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use agora_core::{AccountId, Amount, Hash};
use agora_ledger::{Block, EscrowStatus, TxBody};
use agora_proto::dashboard::VerifySummary;
use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::{LedgerCheck, TxView};
use crate::clock::now_ms;
use crate::error::ApiFailure;
use crate::http::parse_account;
use crate::node::Shared;

type AppState = Arc<Shared>;
type ApiResult<T> = Result<T, ApiFailure>;

/// Blocks read per ledger query.
const CHUNK: u64 = 64;
/// Most blocks one listing scans before it answers with what it found.
pub const MAX_SCAN_BLOCKS: u64 = 4_096;
/// Largest page of transactions or escrows.
const MAX_PAGE: usize = 200;
/// The overview re-runs the replay at most this often, and only if the chain grew.
const REVERIFY_MS: u64 = 60_000;

/// A transaction with the block that holds it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TxEntry {
    /// The block height.
    pub height: u64,
    /// The block's timestamp, Unix ms.
    pub timestamp_ms: u64,
    /// The transaction.
    pub tx: TxView,
}

/// `GET /v1/txs`: transactions, newest first.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TxPage {
    /// This page.
    pub txs: Vec<TxEntry>,
    /// Pass as `before` for the next page; absent at genesis.
    pub next_before: Option<u64>,
}

/// Transaction filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TxQuery {
    /// Only blocks below this height (default: the tip + 1).
    before: Option<u64>,
    /// Only this kind (`open-escrow`, `release-escrow`, `refund-escrow`, `slash`, ...).
    kind: Option<String>,
    /// Only transactions this account signed or is named in.
    account: Option<String>,
    /// At most this many (default 50, at most 200).
    limit: Option<usize>,
}

/// Whether `tx` was signed by `account` or names it.
fn touches(signer: &AccountId, body: &TxBody, account: &AccountId) -> bool {
    signer == account
        || match body {
            TxBody::Transfer { to, .. } | TxBody::TransferVoucher { to, .. } => to == account,
            TxBody::ExpireVoucher { holder, .. } => holder == account,
            TxBody::ReleaseEscrow { payouts, .. } => payouts.iter().any(|(a, _)| a == account),
            TxBody::Slash {
                provider,
                beneficiary,
                ..
            } => provider == account || beneficiary == account,
            _ => false,
        }
}

/// Reads blocks `from..=to`, newest first.
async fn blocks_desc(shared: &Shared, from: u64, to: u64) -> ApiResult<Vec<Block>> {
    let mut blocks = shared
        .chain
        .query(move |ledger| {
            (from..=to)
                .filter_map(|h| ledger.block(h).transpose())
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(ApiFailure::from)?
        .map_err(|e| ApiFailure::Internal(e.to_string()))?;
    blocks.reverse();
    Ok(blocks)
}

/// Scans down from `before` for up to `limit` transactions that `keep` accepts.
async fn scan(
    shared: &Shared,
    before: Option<u64>,
    limit: usize,
    max_blocks: u64,
    keep: impl Fn(&TxView) -> bool,
) -> ApiResult<TxPage> {
    let tip = shared.chain.progress().height;
    let mut next = before.unwrap_or(tip + 1).min(tip + 1);
    let floor = next.saturating_sub(max_blocks).max(1);
    let mut txs = Vec::new();
    while next > floor && txs.len() < limit {
        let from = next.saturating_sub(CHUNK).max(floor);
        let mut full = false;
        for block in blocks_desc(shared, from, next - 1).await? {
            let view = crate::api::BlockView::from(&block);
            for tx in view.txs.into_iter().rev().filter(|t| keep(t)) {
                txs.push(TxEntry {
                    height: view.height,
                    timestamp_ms: view.timestamp_ms,
                    tx,
                });
            }
            next = view.height;
            if txs.len() >= limit {
                full = true;
                break;
            }
        }
        if !full {
            next = from;
        }
    }
    // Whole blocks: a page may run over `limit` rather than cut a block in two.
    Ok(TxPage {
        txs,
        next_before: (next > 1).then_some(next),
    })
}

/// Transactions, newest first, by kind or account.
#[utoipa::path(get, path = "/v1/txs", tag = "ledger", params(TxQuery),
    responses((status = 200, description = "TxPage", body = TxPage)))]
pub async fn list_txs(
    State(shared): State<AppState>,
    Query(query): Query<TxQuery>,
) -> ApiResult<Json<TxPage>> {
    let account = query
        .account
        .as_deref()
        .filter(|a| !a.is_empty())
        .map(parse_account)
        .transpose()?;
    let kind = query.kind.filter(|k| !k.is_empty());
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let page = scan(&shared, query.before, limit, MAX_SCAN_BLOCKS, |tx| {
        kind.as_deref().is_none_or(|k| tx.kind == k)
            && account.is_none_or(|a| touches(&tx.signer, &tx.body, &a))
    })
    .await?;
    Ok(Json(page))
}

/// An escrow on the ledger.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EscrowEntry {
    /// The order it is for.
    #[schema(value_type = String)]
    pub order_id: Hash,
    /// The buyer.
    #[schema(value_type = String)]
    pub buyer: AccountId,
    /// Locked when opened.
    #[schema(value_type = u64)]
    pub locked: Amount,
    /// Still locked.
    #[schema(value_type = u64)]
    pub remaining: Amount,
    /// Released to payees (gross).
    #[schema(value_type = u64)]
    pub released: Amount,
    /// From when anyone may refund it, Unix ms.
    pub deadline_ms: u64,
    /// `open`, `released` or `refunded`.
    pub status: String,
}

/// `GET /v1/escrows`: one page of escrows, latest deadline first.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EscrowPage {
    /// Escrows passing the filter.
    pub total: u64,
    /// This page.
    pub escrows: Vec<EscrowEntry>,
}

/// Escrow filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EscrowQuery {
    /// Only `open`, `released` or `refunded` ones.
    status: Option<String>,
    /// Skip this many.
    offset: Option<usize>,
    /// At most this many (default 50, at most 200).
    limit: Option<usize>,
}

fn status_name(status: EscrowStatus) -> &'static str {
    match status {
        EscrowStatus::Open => "open",
        EscrowStatus::Released => "released",
        EscrowStatus::Refunded => "refunded",
    }
}

/// Escrows on the ledger, latest deadline first.
#[utoipa::path(get, path = "/v1/escrows", tag = "ledger", params(EscrowQuery),
    responses((status = 200, description = "EscrowPage", body = EscrowPage)))]
pub async fn list_escrows(
    State(shared): State<AppState>,
    Query(query): Query<EscrowQuery>,
) -> ApiResult<Json<EscrowPage>> {
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let offset = query.offset.unwrap_or(0);
    let status = query.status.filter(|s| !s.is_empty());
    let page = shared
        .chain
        .query(move |ledger| {
            let mut all: Vec<EscrowEntry> = ledger
                .state()
                .escrows()
                .filter(|(_, e)| status.as_deref().is_none_or(|s| status_name(e.status) == s))
                .map(|(id, e)| EscrowEntry {
                    order_id: *id,
                    buyer: e.buyer,
                    locked: e.locked,
                    remaining: e.remaining,
                    released: e.released,
                    deadline_ms: e.deadline_ms,
                    status: status_name(e.status).into(),
                })
                .collect();
            all.sort_by(|a, b| {
                b.deadline_ms
                    .cmp(&a.deadline_ms)
                    .then(a.order_id.cmp(&b.order_id))
            });
            EscrowPage {
                total: all.len() as u64,
                escrows: all.into_iter().skip(offset).take(limit).collect(),
            }
        })
        .await
        .map_err(ApiFailure::from)?;
    Ok(Json(page))
}

/// A provider's stake on the ledger.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StakeEntry {
    /// Whose.
    #[schema(value_type = String)]
    pub account: AccountId,
    /// Bonded.
    #[schema(value_type = u64)]
    pub bonded: Amount,
    /// Unbonding, not yet withdrawable.
    #[schema(value_type = u64)]
    pub unbonding: Amount,
}

/// Every stake on the ledger, largest first.
#[utoipa::path(get, path = "/v1/stakes", tag = "ledger",
    responses((status = 200, description = "StakeEntry records", body = Vec<StakeEntry>)))]
pub async fn list_stakes(State(shared): State<AppState>) -> ApiResult<Json<Vec<StakeEntry>>> {
    let mut stakes = shared
        .chain
        .query(|ledger| {
            ledger
                .state()
                .stakes()
                .map(|(account, s)| StakeEntry {
                    account: *account,
                    bonded: s.bonded,
                    unbonding: Amount(s.unbonding.iter().map(|u| u.amount.0).sum()),
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(ApiFailure::from)?;
    stakes.sort_by(|a, b| b.bonded.cmp(&a.bonded).then(a.account.cmp(&b.account)));
    Ok(Json(stakes))
}

/// A slash on the ledger with the order whose check proved the fault.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SlashEntry {
    /// The slash transaction and its block.
    pub entry: TxEntry,
    /// The order whose verification produced the evidence, if this node carries it.
    #[schema(value_type = Option<String>)]
    pub order_id: Option<Hash>,
    /// Hex of the canonical evidence record (anyone can re-check it), if known.
    pub evidence_record: Option<String>,
}

/// `GET /v1/slashes`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SlashPage {
    /// Slashes, newest first.
    pub slashes: Vec<SlashEntry>,
    /// Pass as `before` for older ones.
    pub next_before: Option<u64>,
}

/// The order and evidence record behind each evidence hash, from the orders' checks.
fn evidence_index(shared: &Shared) -> HashMap<Hash, (Hash, String)> {
    let book = shared.book();
    book.orders
        .values()
        .flat_map(|e| {
            let id = e.id();
            e.rec
                .verification
                .slashes
                .iter()
                .map(move |s| (s.evidence, (id, s.evidence_record.clone())))
        })
        .collect()
}

/// Slashes, newest first, each with its evidence: the hash and reason the ledger records,
/// and the evidence record itself from the order whose check proved the fault.
#[utoipa::path(get, path = "/v1/slashes", tag = "ledger", params(TxQuery),
    responses((status = 200, description = "SlashPage", body = SlashPage)))]
pub async fn list_slashes(
    State(shared): State<AppState>,
    Query(query): Query<TxQuery>,
) -> ApiResult<Json<SlashPage>> {
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let page = scan(&shared, query.before, limit, u64::MAX, |tx| {
        tx.kind == "slash"
    })
    .await?;
    let evidence = evidence_index(&shared);
    let slashes = page
        .txs
        .into_iter()
        .map(|entry| {
            let known = match &entry.tx.body {
                TxBody::Slash { evidence: e, .. } => evidence.get(e).cloned(),
                _ => None,
            };
            SlashEntry {
                order_id: known.as_ref().map(|k| k.0),
                evidence_record: known.map(|k| k.1),
                entry,
            }
        })
        .collect();
    Ok(Json(SlashPage {
        slashes,
        next_before: page.next_before,
    }))
}

/// What a search term names.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchHit {
    /// `order`, `account`, `block`, `tx`, `blob`, `evidence` (`id` is the slashed order)
    /// or `none`.
    pub kind: String,
    /// The id, normalised.
    pub id: String,
    /// For a transaction: the block that holds it.
    pub height: Option<u64>,
}

/// Search term.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// An order id, transaction id, blob hash, account id or block height.
    q: String,
}

/// Finds what an id names: an order, account, block height, transaction or blob.
#[utoipa::path(get, path = "/v1/search", tag = "ledger", params(SearchQuery),
    responses((status = 200, description = "SearchHit (kind `none` if nothing)", body = SearchHit)))]
pub async fn search(
    State(shared): State<AppState>,
    Query(query): Query<SearchQuery>,
) -> ApiResult<Json<SearchHit>> {
    let q = query.q.trim().to_string();
    let hit = |kind: &str, id: String, height| {
        Ok(Json(SearchHit {
            kind: kind.into(),
            id,
            height,
        }))
    };
    if let Ok(height) = q.parse::<u64>()
        && (1..=shared.chain.progress().height).contains(&height)
    {
        return hit("block", height.to_string(), Some(height));
    }
    if let Ok(account) = q.parse::<AccountId>() {
        return hit("account", account.to_string(), None);
    }
    let Ok(hash) = q.parse::<Hash>() else {
        return hit("none", q, None);
    };
    if shared.book().orders.contains_key(&hash) {
        return hit("order", hash.to_string(), None);
    }
    if let Some((order, _)) = evidence_index(&shared).get(&hash) {
        return hit("evidence", order.to_string(), None);
    }
    let page = scan(&shared, None, 1, u64::MAX, |tx| tx.id == hash).await?;
    if let Some(found) = page.txs.first() {
        return hit("tx", hash.to_string(), Some(found.height));
    }
    if shared.blobs.contains(&hash) {
        return hit("blob", hash.to_string(), None);
    }
    hit("none", q, None)
}

type VerifyCache = Mutex<HashMap<String, VerifySummary>>;

/// Last replay per node (keyed by peer id: several nodes may share a test process).
fn cache() -> &'static VerifyCache {
    static CACHE: OnceLock<VerifyCache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn running() -> &'static Mutex<HashMap<String, Arc<AtomicBool>>> {
    static RUNNING: OnceLock<Mutex<HashMap<String, Arc<AtomicBool>>>> = OnceLock::new();
    RUNNING.get_or_init(Default::default)
}

/// The dashboard's last replay of this node's chain.
pub fn last_verify(shared: &Shared) -> Option<VerifySummary> {
    let cache = cache().lock().unwrap_or_else(|p| p.into_inner());
    cache.get(&shared.identity.peer_id).cloned()
}

async fn verify_and_record(shared: AppState) -> ApiResult<LedgerCheck> {
    let started = std::time::Instant::now();
    let Json(check) = crate::http::verify_ledger(State(shared.clone())).await?;
    let summary = VerifySummary {
        verified: check.verified,
        height: check.height,
        txs: check.txs,
        error: check.error.clone(),
        at_ms: now_ms(),
        took_ms: started.elapsed().as_millis() as u64,
    };
    let mut cache = cache().lock().unwrap_or_else(|p| p.into_inner());
    cache.insert(shared.identity.peer_id.clone(), summary);
    Ok(check)
}

/// Starts a replay unless one is running, one finished less than a minute ago, or the
/// chain has not grown since the last.
pub fn verify_in_background(shared: &AppState) {
    let now = now_ms();
    let height = shared.chain.progress().height;
    if last_verify(shared).is_some_and(|v| v.height == height || now < v.at_ms + REVERIFY_MS) {
        return;
    }
    let flag = {
        let mut map = running().lock().unwrap_or_else(|p| p.into_inner());
        map.entry(shared.identity.peer_id.clone())
            .or_default()
            .clone()
    };
    if flag.swap(true, Ordering::AcqRel) {
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        let _ = verify_and_record(shared).await;
        flag.store(false, Ordering::Release);
    });
}

/// Replays the whole chain (as `GET /v1/ledger/verify`) and keeps the result as the
/// overview's "last verification".
#[utoipa::path(get, path = "/v1/dashboard/verify", tag = "dashboard",
    responses((status = 200, description = "The audit", body = LedgerCheck)))]
pub async fn dashboard_verify(State(shared): State<AppState>) -> ApiResult<Json<LedgerCheck>> {
    Ok(Json(verify_and_record(shared).await?))
}
