//! The HTTP API (axum 0.8): routes per issue 5's contract, documented with utoipa so the
//! OpenAPI document at `/openapi.json` ([`openapi`]) is generated from the handlers
//! themselves; `docs/http-api.md` is rendered from the same document.
//!
//! JSON bodies are capped ([`crate::MarketConfig::max_json_bytes`]); blob uploads are
//! streamed to disk through the blob store, hashed on the way and capped by the node's
//! blob limit. Every refusal is an [`ApiFailure`] with an `ApiError` body.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agora_core::{AccountId, Amount, Hash};
use agora_ledger::{Replayer, Tx, TxBody};
use agora_market::{Ask, ResourceClass};
use agora_proto::api::{
    AccountView, CancelRequest, JobResult, MarketInfo, OrderView, ProviderView, SettlementInfo,
    SubmitOrder, SubmitTx, Submitted, TxIncluded,
};
use agora_proto::{OrderEvent, OrderState, hexed};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, mpsc};
use utoipa::{IntoParams, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{BlobStored, BlockView, Health, LedgerCheck};
use crate::chain::{ChainError, LedgerOp};
use crate::clock::now_ms;
use crate::error::ApiFailure;
use crate::node::{OrderEntry, Shared};
use crate::{orders, p2p};

type AppState = Arc<Shared>;
type ApiResult<T> = Result<T, ApiFailure>;

/// Most orders one listing returns.
const MAX_LIST: usize = 1_000;
/// Most blocks one listing returns.
const MAX_BLOCKS: u64 = 100;
/// Blocks read from the ledger per step of an audit.
const AUDIT_CHUNK: u64 = 256;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Agora market node API",
        description = "Upload blobs, submit signed orders, follow them, fetch results, and read the market and its ledger. Signed payloads travel as hex of their canonical encoding (see agora-proto); asks and price indexes are the agora-market records `Ask` and `PriceIndex`."
    ),
    tags(
        (name = "market", description = "Who the market is, its asks, providers and prices"),
        (name = "orders", description = "Submitting and following orders"),
        (name = "blobs", description = "Content-addressed modules, inputs and outputs"),
        (name = "ledger", description = "Transactions, accounts, blocks and the audit"),
        (name = "ops", description = "Health and metrics"),
        (name = "dashboard", description = "What the web dashboard at / reads: pages of orders, figures, live events, browser signing")
    )
)]
struct ApiDoc;

/// Every route with its OpenAPI operation: the one list both the server ([`router`]) and
/// the published document ([`openapi`]) are built from, so they cannot disagree.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(info))
        .routes(routes!(put_blob, get_blob))
        .routes(routes!(submit_order, list_orders))
        .routes(routes!(crate::quote::quote_order))
        .routes(routes!(get_order))
        .routes(routes!(get_result))
        .routes(routes!(order_events))
        .routes(routes!(cancel_order))
        .routes(routes!(crate::private::post_keys, crate::private::get_keys))
        .routes(routes!(get_auction))
        .routes(routes!(submit_bid))
        .routes(routes!(accept_clock))
        .routes(routes!(challenge_order))
        .routes(routes!(submit_tx, crate::explorer::list_txs))
        .routes(routes!(get_account))
        .routes(routes!(list_providers))
        .routes(routes!(get_provider))
        .routes(routes!(list_asks))
        .routes(routes!(price_index))
        .routes(routes!(list_blocks))
        .routes(routes!(get_block))
        .routes(routes!(verify_ledger))
        .routes(routes!(health))
        .routes(routes!(metrics))
        .merge(crate::dashboard_api::routes())
        .merge(crate::vouchers::routes())
}

/// The OpenAPI document the node serves at `/openapi.json`; `docs/http-api.md` is
/// rendered from it (`crates/agora-node/tests/api_docs.rs`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// Builds the router with every route, the body limit and the OpenAPI document.
pub fn router(shared: AppState, max_json_bytes: usize) -> Router {
    let (router, openapi) = api_routes().split_for_parts();
    let openapi = Arc::new(openapi);
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let openapi = openapi.clone();
                async move { Json(openapi.as_ref().clone()) }
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(max_json_bytes))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            count_request,
        ))
        .with_state(shared)
        .merge(agora_dashboard::router())
}

/// Counts every API request (`agora_http_requests_total`), to say what a job costs in
/// requests.
async fn count_request(
    State(shared): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    shared.metrics.http_requests.inc();
    next.run(request).await
}

/// A JSON body whose rejections are [`ApiFailure`]s.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiFailure;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiFailure::BodyTooLarge {
                    limit: state.settings.max_json_bytes,
                })
            }
            Err(rejection) => Err(ApiFailure::BadRequest(format!(
                "the body is not the expected JSON: {}",
                rejection.body_text()
            ))),
        }
    }
}

pub(crate) fn parse_hash(text: &str) -> ApiResult<Hash> {
    text.parse()
        .map_err(|e| ApiFailure::BadRequest(format!("{text:?} is not a hash: {e}")))
}

pub(crate) fn parse_account(text: &str) -> ApiResult<AccountId> {
    text.parse()
        .map_err(|e| ApiFailure::BadRequest(format!("{text:?} is not an account id: {e}")))
}

fn internal(err: impl std::fmt::Display) -> ApiFailure {
    ApiFailure::Internal(err.to_string())
}

/// Who this market is.
#[utoipa::path(get, path = "/v1/info", tag = "market",
    responses((status = 200, description = "MarketInfo", body = agora_proto::api::MarketInfo)))]
async fn info(State(shared): State<AppState>) -> Json<MarketInfo> {
    let id = &shared.identity;
    Json(MarketInfo {
        chain_id: id.chain_id.0.clone(),
        market: id.market_key.account(),
        treasury: id.treasury,
        fee_bps: u32::from(id.fee_bps),
        allow_faulty_providers: id.allow_faulty_providers,
        height: shared.chain.progress().height,
        p2p_addrs: id.p2p_addrs.clone(),
        peer_id: id.peer_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        max_blob_bytes: Some(shared.settings.max_blob_bytes),
        settlement: Some(Box::new(shared.chain.settlement().clone())),
    })
}

/// Uploads a blob under its blake3 hash (streamed; the hash is checked on commit).
#[utoipa::path(put, path = "/v1/blobs/{hash}", tag = "blobs",
    params(("hash" = String, Path, description = "The blob's blake3 hash, hex")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Stored", body = BlobStored),
        (status = 200, description = "Already stored (the body is read and discarded)", body = BlobStored),
        (status = 400, description = "hash_mismatch: the content hashes to something else", body = agora_proto::ApiError),
        (status = 413, description = "blob_too_large (with `Connection: close` when the body was not read)", body = agora_proto::ApiError)))]
async fn put_blob(
    State(shared): State<AppState>,
    Path(hash): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match receive_blob(&shared, &hash, declared, body).await {
        Ok((status, stored)) => (status, Json(stored)).into_response(),
        Err(Refused {
            failure,
            body_unread: false,
        }) => failure.into_response(),
        // The client may still be writing a body nobody will read; the connection closes
        // after this answer, and the header says so instead of leaving the client to find
        // out from a reset.
        Err(Refused {
            failure,
            body_unread: true,
        }) => ([(header::CONNECTION, "close")], failure).into_response(),
    }
}

/// An upload refused, and whether its body was left unread.
struct Refused {
    failure: ApiFailure,
    body_unread: bool,
}

impl Refused {
    fn read(failure: ApiFailure) -> Refused {
        Refused {
            failure,
            body_unread: false,
        }
    }

    fn unread(failure: ApiFailure) -> Refused {
        Refused {
            failure,
            body_unread: true,
        }
    }
}

/// Bodies at most this large are read to their end before a refusal, so the client gets
/// the answer on an intact connection; larger ones are refused at once.
const DRAIN_BEFORE_REFUSAL: u64 = 64 << 10;

async fn receive_blob(
    shared: &Shared,
    hash: &str,
    declared: Option<u64>,
    body: Body,
) -> Result<(StatusCode, BlobStored), Refused> {
    let limit = shared.settings.max_blob_bytes;
    let expected = match parse_hash(hash) {
        Ok(expected) => expected,
        Err(failure) => return Err(refuse_before_reading(failure, declared, body).await),
    };
    if declared.is_some_and(|len| len > limit) {
        let failure = ApiFailure::BlobTooLarge { limit };
        return Err(refuse_before_reading(failure, declared, body).await);
    }
    if let Ok(size) = shared.blobs.size(&expected) {
        // Already stored (a concurrent upload of the same module, typically). Read the body
        // anyway: answering first would close the connection under a client that is still
        // writing, and break an upload that should simply succeed. Its declared length is
        // within the limit, and an undeclared one is cut at the limit.
        drain(body, limit).await?;
        let stored = BlobStored {
            hash: expected,
            size,
        };
        return Ok((StatusCode::OK, stored));
    }
    let (stored, total) = stream_to_store(shared, expected, body, limit).await?;
    Ok((
        StatusCode::CREATED,
        BlobStored {
            hash: stored,
            size: total,
        },
    ))
}

/// The answer to an upload refused before its body was read: small bodies are drained
/// first, so the client reads the refusal instead of a reset.
async fn refuse_before_reading(failure: ApiFailure, declared: Option<u64>, body: Body) -> Refused {
    if declared.is_some_and(|len| len <= DRAIN_BEFORE_REFUSAL)
        && drain(body, DRAIN_BEFORE_REFUSAL).await.is_ok()
    {
        return Refused::read(failure);
    }
    Refused::unread(failure)
}

/// Reads and discards `body`, refusing it beyond `limit` bytes.
async fn drain(body: Body, limit: u64) -> Result<(), Refused> {
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Refused::read(ApiFailure::BadRequest(format!("the upload broke off: {e}")))
        })?;
        total += chunk.len() as u64;
        if total > limit {
            return Err(Refused::unread(ApiFailure::BlobTooLarge { limit }));
        }
    }
    Ok(())
}

/// Streams `body` through the blob store's writer (hashing and disk writes on a blocking
/// thread) and commits it under `expected`; returns the hash and the size stored.
async fn stream_to_store(
    shared: &Shared,
    expected: Hash,
    body: Body,
    limit: u64,
) -> Result<(Hash, u64), Refused> {
    let writer = shared
        .blobs
        .writer()
        .map_err(|e| Refused::unread(internal(e)))?;
    let (chunks, mut inbox) = mpsc::channel::<Bytes>(8);
    let aborted = Arc::new(AtomicBool::new(false));
    let abort_seen = aborted.clone();
    let disk = tokio::task::spawn_blocking(move || {
        let mut writer = writer;
        while let Some(chunk) = inbox.blocking_recv() {
            writer.write(&chunk)?;
        }
        if abort_seen.load(Ordering::Relaxed) {
            // Dropping the writer deletes the partial file.
            return Ok(None);
        }
        writer.commit(Some(expected)).map(Some)
    });
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    let mut failure = None;
    let mut body_unread = false;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                let broke = ApiFailure::BadRequest(format!("the upload broke off: {e}"));
                failure = Some(Refused::read(broke));
                break;
            }
        };
        total += chunk.len() as u64;
        if total > limit {
            failure = Some(Refused::unread(ApiFailure::BlobTooLarge { limit }));
            break;
        }
        if chunks.send(chunk).await.is_err() {
            // The disk writer stopped; its error is the answer.
            body_unread = true;
            break;
        }
    }
    if failure.is_some() {
        aborted.store(true, Ordering::Relaxed);
    }
    drop(chunks);
    let stored = disk.await.map_err(|e| Refused::unread(internal(e)))?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    let refused = |failure| Refused {
        failure,
        body_unread,
    };
    match stored {
        Ok(Some(hash)) => Ok((hash, total)),
        Ok(None) => Err(refused(internal("the upload was abandoned"))),
        Err(agora_net::StoreError::HashMismatch { expected, actual }) => {
            Err(refused(ApiFailure::HashMismatch { expected, actual }))
        }
        Err(e) => Err(refused(internal(e))),
    }
}

/// Downloads a blob (streamed).
#[utoipa::path(get, path = "/v1/blobs/{hash}", tag = "blobs",
    params(("hash" = String, Path, description = "The blob's blake3 hash, hex")),
    responses(
        (status = 200, description = "The bytes", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 403, description = "forbidden: a sealed blob, and no x-agora-auth header from its owner or a party to an order that names it (docs/privacy.md)", body = agora_proto::ApiError),
        (status = 404, description = "unknown_blob", body = agora_proto::ApiError)))]
async fn get_blob(
    State(shared): State<AppState>,
    Path(hash): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let hash = parse_hash(&hash)?;
    crate::private::check_blob_read(&shared, &hash, &headers)?;
    let size = shared
        .blobs
        .size(&hash)
        .map_err(|_| ApiFailure::UnknownBlob(hash))?;
    let file = tokio::fs::File::open(shared.blobs.path_of(&hash))
        .await
        .map_err(|_| ApiFailure::UnknownBlob(hash))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        body,
    )
        .into_response())
}

/// Submits a buyer-signed order with its buyer-signed escrow; the escrow is committed
/// before the order is matched.
#[utoipa::path(post, path = "/v1/orders", tag = "orders",
    request_body = agora_proto::api::SubmitOrder,
    responses(
        (status = 201, description = "Submitted", body = agora_proto::api::Submitted),
        (status = 400, description = "bad_request, bad_signature, bad_order, deadline_out_of_range, unsupported, escrow_mismatch, missing_blob, blob_size_mismatch, escrow_refused", body = agora_proto::ApiError),
        (status = 409, description = "duplicate_order", body = agora_proto::ApiError),
        (status = 413, description = "body_too_large", body = agora_proto::ApiError)))]
async fn submit_order(
    State(shared): State<AppState>,
    ApiJson(request): ApiJson<SubmitOrder>,
) -> ApiResult<(StatusCode, Json<Submitted>)> {
    // The submission runs in its own task: a client that hangs up mid-way must not
    // cancel it between the durable record and the escrow block.
    let submitted = tokio::spawn(async move { orders::submit(&shared, request).await })
        .await
        .map_err(internal)??;
    Ok((StatusCode::CREATED, Json(submitted)))
}

/// Filters for order listings.
#[derive(Debug, Default, Deserialize, IntoParams)]
// Without this utoipa declares the fields as required path parameters.
#[into_params(parameter_in = Query)]
struct OrdersQuery {
    /// Only this buyer's orders.
    buyer: Option<String>,
    /// Only orders in this state.
    state: Option<String>,
    /// Only tasks of this multi-task job.
    job: Option<String>,
    /// At most this many (default 100, at most 1000).
    limit: Option<usize>,
    /// Skip this many first.
    offset: Option<usize>,
}

fn parse_state(text: &str) -> ApiResult<OrderState> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|_| {
        ApiFailure::BadRequest(format!(
            "unknown state {text:?}; use escrowed, matched, running, verifying, settled or refunded"
        ))
    })
}

/// Lists orders, newest first.
#[utoipa::path(get, path = "/v1/orders", tag = "orders", params(OrdersQuery),
    responses((status = 200, description = "OrderView records", body = Vec<agora_proto::api::OrderView>)))]
async fn list_orders(
    State(shared): State<AppState>,
    Query(query): Query<OrdersQuery>,
) -> ApiResult<Json<Vec<OrderView>>> {
    let buyer = query.buyer.as_deref().map(parse_account).transpose()?;
    let state = query.state.as_deref().map(parse_state).transpose()?;
    let limit = query.limit.unwrap_or(100).min(MAX_LIST);
    let offset = query.offset.unwrap_or(0);
    let book = shared.book();
    let views = book
        .sequence
        .iter()
        .rev()
        .filter_map(|id| book.orders.get(id))
        .filter(|e| buyer.is_none_or(|b| e.rec.order.signer == b))
        .filter(|e| state.is_none_or(|s| e.rec.state == s))
        .filter(|e| {
            query
                .job
                .as_deref()
                .is_none_or(|job| e.rec.order.body.task.as_ref().is_some_and(|t| t.job == job))
        })
        .skip(offset)
        .take(limit)
        .map(OrderEntry::view)
        .collect();
    Ok(Json(views))
}

/// One order, its bill and its history.
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders",
    params(("id" = String, Path, description = "The order id, hex")),
    responses(
        (status = 200, description = "OrderView", body = agora_proto::api::OrderView),
        (status = 404, description = "unknown_order", body = agora_proto::ApiError)))]
async fn get_order(
    State(shared): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<OrderView>> {
    let id = parse_hash(&id)?;
    shared
        .book()
        .orders
        .get(&id)
        .map(|e| Json(e.view()))
        .ok_or(ApiFailure::UnknownOrder(id))
}

/// A settled order's result (409 until settled).
#[utoipa::path(get, path = "/v1/orders/{id}/result", tag = "orders",
    params(("id" = String, Path, description = "The order id, hex")),
    responses(
        (status = 200, description = "JobResult", body = agora_proto::api::JobResult),
        (status = 404, description = "unknown_order", body = agora_proto::ApiError),
        (status = 409, description = "not settled (yet)", body = agora_proto::ApiError)))]
async fn get_result(
    State(shared): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<JobResult>> {
    let id = parse_hash(&id)?;
    let book = shared.book();
    let entry = book.orders.get(&id).ok_or(ApiFailure::UnknownOrder(id))?;
    match (&entry.rec.result, entry.rec.state) {
        (Some(result), _) => Ok(Json(result.clone())),
        (None, OrderState::Refunded) => Err(ApiFailure::Conflict(format!(
            "order {id} was refunded ({}); it has no result",
            entry
                .rec
                .refund_reason
                .as_deref()
                .unwrap_or("no reason recorded")
        ))),
        (None, state) => Err(ApiFailure::Conflict(format!(
            "order {id} is {state}; its result is available once it is settled (follow /v1/orders/{id}/events)"
        ))),
    }
}

/// Follows an order: its past events, then live ones, ending after a final state
/// (server-sent events; the event name is the state).
#[utoipa::path(get, path = "/v1/orders/{id}/events", tag = "orders",
    params(("id" = String, Path, description = "The order id, hex")),
    responses(
        (status = 200, description = "text/event-stream of agora_proto::api::OrderEvent", content_type = "text/event-stream", body = String),
        (status = 404, description = "unknown_order", body = agora_proto::ApiError)))]
async fn order_events(
    State(shared): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let id = parse_hash(&id)?;
    let live = shared.events.subscribe();
    if !shared.book().orders.contains_key(&id) {
        return Err(ApiFailure::UnknownOrder(id));
    }
    let (tx, rx) = mpsc::channel::<OrderEvent>(64);
    tokio::spawn(forward_events(shared, id, live, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        let sse = Event::default()
            .event(event.state.name())
            .json_data(&event)
            .unwrap_or_else(|_| Event::default().event("error"));
        Some((Ok(sse), rx))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Sends order `id`'s events from `next` on to `tx`; says whether a final one was sent.
async fn send_history(
    shared: &Shared,
    id: Hash,
    next: &mut usize,
    tx: &mpsc::Sender<OrderEvent>,
) -> Option<bool> {
    let history: Vec<OrderEvent> = {
        let book = shared.book();
        book.orders.get(&id)?.rec.events.get(*next..)?.to_vec()
    };
    for event in history {
        *next += 1;
        let done = event.state.is_final();
        tx.send(event).await.ok()?;
        if done {
            return Some(true);
        }
    }
    Some(false)
}

async fn forward_events(
    shared: AppState,
    id: Hash,
    mut live: broadcast::Receiver<crate::node::Published>,
    tx: mpsc::Sender<OrderEvent>,
) {
    let mut next = 0usize;
    match send_history(&shared, id, &mut next, &tx).await {
        Some(false) => {}
        _ => return,
    }
    loop {
        match live.recv().await {
            Ok(published) if published.order_id == id && published.seq >= next => {
                // Anything between `next` and this event comes from the history.
                match send_history(&shared, id, &mut next, &tx).await {
                    Some(false) => {}
                    _ => return,
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {
                match send_history(&shared, id, &mut next, &tx).await {
                    Some(false) => {}
                    _ => return,
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Cancels an order with the buyer's signed cancel; the escrow is refunded.
#[utoipa::path(post, path = "/v1/orders/{id}/cancel", tag = "orders",
    params(("id" = String, Path, description = "The order id, hex")),
    request_body = agora_proto::api::CancelRequest,
    responses(
        (status = 200, description = "The order after the refund", body = agora_proto::api::OrderView),
        (status = 400, description = "bad_signature", body = agora_proto::ApiError),
        (status = 409, description = "already final or being settled", body = agora_proto::ApiError)))]
async fn cancel_order(
    State(shared): State<AppState>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<CancelRequest>,
) -> ApiResult<Json<OrderView>> {
    let id = parse_hash(&id)?;
    Ok(Json(orders::cancel(&shared, id, request).await?))
}

/// An order's auction: the bid count while a sealed window is open; after the close
/// every signed bid, the rule, the winner and the digest of the bids.
#[utoipa::path(get, path = "/v1/orders/{id}/auction", tag = "auctions",
    params(("id" = String, Path, description = "The order id, hex")),
    responses(
        (status = 200, description = "AuctionView", body = agora_proto::api::AuctionView),
        (status = 404, description = "unknown_order", body = agora_proto::ApiError),
        (status = 409, description = "the order is matched instantly: no auction", body = agora_proto::ApiError)))]
async fn get_auction(
    State(shared): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<agora_proto::api::AuctionView>> {
    let id = parse_hash(&id)?;
    Ok(Json(crate::auctions::view(&shared, id)?))
}

/// A provider's signed sealed bid on an order in a sealed-bid auction.
#[utoipa::path(post, path = "/v1/orders/{id}/bids", tag = "auctions",
    params(("id" = String, Path, description = "The order id, hex")),
    request_body = agora_proto::api::SubmitBid,
    responses(
        (status = 200, description = "Taken; the auction (bids stay sealed until the close)", body = agora_proto::api::AuctionView),
        (status = 400, description = "bad_signature or bad_request", body = agora_proto::ApiError),
        (status = 404, description = "unknown_order", body = agora_proto::ApiError),
        (status = 409, description = "the window closed, the bid is above the cap, a second bid, or an ask that cannot run the order", body = agora_proto::ApiError)))]
async fn submit_bid(
    State(shared): State<AppState>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<agora_proto::api::SubmitBid>,
) -> ApiResult<Json<agora_proto::api::AuctionView>> {
    let id = parse_hash(&id)?;
    Ok(Json(crate::auctions::bid_over_http(&shared, id, &request)?))
}

/// A provider's signed acceptance of a Dutch clock's current step and price; the first
/// valid one wins and is assigned.
#[utoipa::path(post, path = "/v1/orders/{id}/accept", tag = "auctions",
    params(("id" = String, Path, description = "The order id, hex")),
    request_body = agora_proto::api::SubmitAccept,
    responses(
        (status = 200, description = "Won; the auction", body = agora_proto::api::AuctionView),
        (status = 400, description = "bad_signature or bad_request", body = agora_proto::ApiError),
        (status = 404, description = "unknown_order", body = agora_proto::ApiError),
        (status = 409, description = "a stale price, already won, the clock ended, or capacity that cannot take it", body = agora_proto::ApiError)))]
async fn accept_clock(
    State(shared): State<AppState>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<agora_proto::api::SubmitAccept>,
) -> ApiResult<Json<agora_proto::api::AuctionView>> {
    let id = parse_hash(&id)?;
    Ok(Json(crate::auctions::accept_over_http(
        &shared, id, &request,
    )?))
}

/// Challenges a result held under `challenge:WINDOW`: the challenger's signed result
/// and the escrow that bonds it. The market commits the bond and re-executes the job as
/// referee; the loser's bond or stake is slashed (see docs/verification.md).
#[utoipa::path(post, path = "/v1/orders/{id}/challenge", tag = "orders",
    params(("id" = String, Path, description = "The order id, hex")),
    request_body = agora_proto::api::ChallengeRequest,
    responses(
        (status = 200, description = "The order, challenged; follow it for the ruling", body = agora_proto::api::OrderView),
        (status = 400, description = "bad_signature, escrow_mismatch (the bond on chain differs), escrow_refused (the bond was not committed, or on an EVM market is not on chain) or bad_request", body = agora_proto::ApiError),
        (status = 409, description = "no result is held open for challenges, the window closed, the bond is too low, or the result is the provider's", body = agora_proto::ApiError)))]
async fn challenge_order(
    State(shared): State<AppState>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<agora_proto::api::ChallengeRequest>,
) -> ApiResult<Json<OrderView>> {
    let id = parse_hash(&id)?;
    Ok(Json(
        crate::dispute::file_challenge(&shared, id, request).await?,
    ))
}

/// Submits any signed ledger transaction and waits for the block that holds it.
#[utoipa::path(post, path = "/v1/txs", tag = "ledger",
    request_body = agora_proto::api::SubmitTx,
    responses(
        (status = 200, description = "TxIncluded", body = agora_proto::api::TxIncluded),
        (status = 400, description = "bad_signature or tx_refused (the ledger's reason)", body = agora_proto::ApiError)))]
async fn submit_tx(
    State(shared): State<AppState>,
    ApiJson(request): ApiJson<SubmitTx>,
) -> ApiResult<Json<TxIncluded>> {
    let tx: Tx = hexed::decode(&request.tx, "ledger transaction")
        .map_err(|e| ApiFailure::BadRequest(format!("field `tx`: {e}")))?;
    tx.verify(&shared.identity.chain_id).map_err(|e| {
        ApiFailure::BadSignature(format!(
            "the transaction's signature does not check out ({e})"
        ))
    })?;
    let signer = tx.signer;
    let touches_stake = matches!(
        tx.body,
        TxBody::Bond { .. } | TxBody::Unbond { .. } | TxBody::Slash { .. }
    );
    let included = shared
        .chain
        .submit(vec![LedgerOp::External(tx)])
        .await
        .map_err(|e| match e {
            ChainError::Refused(why) => ApiFailure::TxRefused(why),
            other => internal(other),
        })?;
    let inclusion = included
        .first()
        .ok_or_else(|| internal("the block producer returned no inclusion"))?;
    if touches_stake {
        p2p::refresh_stake(&shared, signer).await;
    }
    Ok(Json(TxIncluded {
        tx_id: inclusion.tx_id,
        height: inclusion.height,
    }))
}

/// An account's balance, stake and next nonce.
#[utoipa::path(get, path = "/v1/accounts/{id}", tag = "ledger",
    params(("id" = String, Path, description = "The account id")),
    responses(
        (status = 200, description = "AccountView", body = agora_proto::api::AccountView),
        (status = 404, description = "unknown_account: on an EVM market, an account with no address bound (buyers, strangers)", body = agora_proto::ApiError)))]
async fn get_account(
    State(shared): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<AccountView>> {
    let account = parse_account(&id)?;
    let view = shared
        .chain
        .read(move |books| {
            if !books.knows_account(&account) {
                return Ok(Err(unknown_evm_account(&account, &books.info())));
            }
            let record = books.account(&account)?;
            let stake = books.stake(&account)?.unwrap_or_default();
            let unbonding =
                Amount::sum(stake.unbonding.iter().map(|u| u.amount)).unwrap_or(Amount(u64::MAX));
            Ok::<_, String>(Ok(AccountView {
                account,
                balance: record.balance,
                stake: stake.bonded,
                unbonding,
                next_nonce: record.next_nonce,
            }))
        })
        .await
        .map_err(internal)?
        .map_err(internal)??;
    Ok(Json(view))
}

/// Why an EVM market cannot show `account`: it binds an address to an account only from a
/// provider's ask or a challenger's bond, and the chain has the balance under that address.
fn unknown_evm_account(account: &AccountId, info: &SettlementInfo) -> ApiFailure {
    let contract = match info {
        SettlementInfo::Evm { contract, .. } => contract.as_str(),
        SettlementInfo::Embedded => "",
    };
    ApiFailure::UnknownAccount(format!(
        "this market settles on an EVM chain and knows no address for account {account}: it \
         learns a provider's from its signed ask and a challenger's from its bond, while a \
         buyer's escrows each name their own opener and bind no address to the account; read \
         the balance from contract {contract} on that chain"
    ))
}

/// Every provider the market has seen.
#[utoipa::path(get, path = "/v1/providers", tag = "market",
    responses((status = 200, description = "ProviderView records", body = Vec<agora_proto::api::ProviderView>)))]
async fn list_providers(State(shared): State<AppState>) -> Json<Vec<ProviderView>> {
    let now = now_ms();
    let book = shared.book();
    let mut accounts: Vec<AccountId> = book.providers.keys().copied().collect();
    accounts.sort();
    Json(
        accounts
            .iter()
            .filter_map(|a| shared.provider_view(&book, a, now))
            .collect(),
    )
}

/// One provider.
#[utoipa::path(get, path = "/v1/providers/{id}", tag = "market",
    params(("id" = String, Path, description = "The provider's account id")),
    responses(
        (status = 200, description = "ProviderView", body = agora_proto::api::ProviderView),
        (status = 404, description = "unknown_provider", body = agora_proto::ApiError)))]
async fn get_provider(
    State(shared): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ProviderView>> {
    let account = parse_account(&id)?;
    let book = shared.book();
    shared
        .provider_view(&book, &account, now_ms())
        .map(Json)
        .ok_or(ApiFailure::UnknownProvider(id))
}

fn live_asks(shared: &Shared, now: u64) -> Vec<Ask> {
    let book = shared.book();
    let mut asks: Vec<Ask> = book
        .providers
        .values()
        .flat_map(|p| p.asks.values())
        .filter(|a| a.expires_ms > now)
        .cloned()
        .collect();
    asks.sort_by_key(|a| a.id);
    asks
}

/// Live asks, as their providers signed them.
#[utoipa::path(get, path = "/v1/asks", tag = "market",
    responses((status = 200, description = "[agora_market::Ask]", body = Vec<Object>)))]
async fn list_asks(State(shared): State<AppState>) -> Json<Vec<Ask>> {
    Json(live_asks(&shared, now_ms()))
}

/// The spot price index per resource class: best ask, depth, 1 min and 1 h VWAP.
#[utoipa::path(get, path = "/v1/index", tag = "market",
    responses((status = 200, description = "[agora_market::PriceIndex], one per class", body = Vec<Object>)))]
async fn price_index(State(shared): State<AppState>) -> Json<Vec<agora_market::PriceIndex>> {
    let now = now_ms();
    let mut classes: BTreeSet<ResourceClass> = live_asks(&shared, now)
        .into_iter()
        .flat_map(|a| a.prices.into_keys())
        .collect();
    classes.insert(ResourceClass::cpu());
    let book = shared.book();
    Json(classes.iter().map(|c| book.market.index(c, now)).collect())
}

/// Block range.
#[derive(Debug, Default, Deserialize, IntoParams)]
// Without this utoipa declares the fields as required path parameters.
#[into_params(parameter_in = Query)]
struct BlocksQuery {
    /// First height (default: the last `limit` blocks).
    from: Option<u64>,
    /// At most this many (default 20, at most 100).
    limit: Option<u64>,
}

/// Blocks, oldest first.
#[utoipa::path(get, path = "/v1/blocks", tag = "ledger", params(BlocksQuery),
    responses((status = 200, description = "Blocks", body = Vec<BlockView>)))]
async fn list_blocks(
    State(shared): State<AppState>,
    Query(query): Query<BlocksQuery>,
) -> ApiResult<Json<Vec<BlockView>>> {
    let limit = query.limit.unwrap_or(20).clamp(1, MAX_BLOCKS);
    let blocks = shared
        .chain
        .query(move |ledger| {
            let height = ledger.height();
            let from = query
                .from
                .unwrap_or_else(|| height.saturating_sub(limit - 1))
                .max(1);
            let to = height.min(from.saturating_add(limit - 1));
            (from..=to)
                .filter_map(|h| ledger.block(h).transpose())
                .map(|b| b.map(|b| BlockView::from(&b)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(ApiFailure::from)?
        .map_err(internal)?;
    Ok(Json(blocks))
}

/// One block.
#[utoipa::path(get, path = "/v1/blocks/{height}", tag = "ledger",
    params(("height" = u64, Path, description = "1 is the first block")),
    responses(
        (status = 200, description = "The block", body = BlockView),
        (status = 404, description = "unknown_block", body = agora_proto::ApiError)))]
async fn get_block(
    State(shared): State<AppState>,
    Path(height): Path<u64>,
) -> ApiResult<Json<BlockView>> {
    let block = shared
        .chain
        .query(move |ledger| ledger.block(height))
        .await
        .map_err(ApiFailure::from)?
        .map_err(internal)?
        .ok_or(ApiFailure::UnknownBlock(height))?;
    Ok(Json(BlockView::from(&block)))
}

/// Replays the whole chain from genesis (signatures, links, roots, rules,
/// conservation) while the node keeps running.
#[utoipa::path(get, path = "/v1/ledger/verify", tag = "ledger",
    responses((status = 200, description = "The audit", body = LedgerCheck)))]
pub(crate) async fn verify_ledger(State(shared): State<AppState>) -> ApiResult<Json<LedgerCheck>> {
    let (genesis, height) = shared
        .chain
        .query(|ledger| (ledger.genesis().clone(), ledger.height()))
        .await
        .map_err(ApiFailure::from)?;
    let mut replayer = Replayer::new(genesis).map_err(internal)?;
    let mut next = 1;
    let mut error = None;
    while next <= height && error.is_none() {
        let to = height.min(next + AUDIT_CHUNK - 1);
        let blocks = shared
            .chain
            .query(move |ledger| {
                (next..=to)
                    .map(|h| ledger.block(h))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
            .map_err(internal)?
            .map_err(internal)?;
        let (back, fault) = tokio::task::spawn_blocking(move || {
            for (i, block) in blocks.iter().enumerate() {
                let Some(block) = block else {
                    return (
                        replayer,
                        Some(format!("block {} is missing", next + i as u64)),
                    );
                };
                if let Err(e) = replayer.push(block) {
                    return (
                        replayer,
                        Some(format!("block {}: {e}", block.header.height)),
                    );
                }
            }
            (replayer, None)
        })
        .await
        .map_err(internal)?;
        replayer = back;
        error = fault;
        next = to + 1;
    }
    let conservation = replayer.state().check_conservation().is_ok();
    let replayed = replayer.tip().height;
    Ok(Json(LedgerCheck {
        verified: error.is_none() && conservation && replayed == height,
        conservation,
        height: replayed,
        state_root: Some(replayer.state_root()),
        txs: replayer.txs(),
        supply: Some(replayer.state().supply()),
        error,
    }))
}

/// Liveness.
#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200, description = "Alive", body = Health)))]
async fn health(State(shared): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        height: shared.chain.progress().height,
    })
}

/// Prometheus metrics (text exposition, names prefixed `agora_`).
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
async fn metrics(State(shared): State<AppState>) -> impl IntoResponse {
    let m = &shared.metrics;
    {
        let book = shared.book();
        let mut counts = std::collections::HashMap::new();
        for entry in book.orders.values() {
            *counts.entry(entry.rec.state).or_insert(0i64) += 1;
        }
        for state in [
            OrderState::Escrowed,
            OrderState::Matched,
            OrderState::Running,
            OrderState::Verifying,
            OrderState::Settled,
            OrderState::Refunded,
        ] {
            m.orders
                .get_or_create(&vec![("state", state.name())])
                .set(counts.get(&state).copied().unwrap_or(0));
        }
        m.peers.set(book.peers as i64);
        m.providers.set(book.market.provider_count() as i64);
    }
    let progress = shared.chain.progress();
    m.ledger_height.set(progress.height as i64);
    m.ledger_blocks.set(progress.blocks as i64);
    m.ledger_txs.set(progress.txs as i64);
    m.set_p2p(&shared.net.stats());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
}
