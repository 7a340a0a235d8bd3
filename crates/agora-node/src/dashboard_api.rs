//! The read endpoints behind the web dashboard (`agora-dashboard`, served at `/`): the
//! overview's figures and their live stream, a paginated order listing, an order's detail
//! (spec, offers, explanation, receipt), the cleared-price history, the reference cloud
//! price, and browser signing of orders (prepare the bytes, take the signatures back).
//!
//! Every listing is computed from the in-memory book under its short lock, a page at a
//! time, so 10,000 orders list in well under a millisecond; nothing here writes state
//! except `POST /v1/dashboard/blobs` (content-addressed, like `PUT /v1/blobs`) and the
//! signed submission, which goes through [`crate::orders::submit`] and its checks.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use agora_core::{AccountId, Amount, Fuel, Hash, Price, Signature, Signed};
use agora_ledger::TxBody;
use agora_market::{AttributeConstraint, Demand, Order, OrderId, Requirements, ResourceClass};
use agora_proto::api::{OrderView, SubmitOrder, Submitted};
use agora_proto::dashboard::{
    DashboardStats, OrderPage, OrderSummary, PrepareOrder, PreparedOrder, PricePoint,
    ReferencePrice, SignedSubmission,
};
use agora_proto::{JobSpec, OrderRequest, OrderState, hexed};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::BlobStored;
use crate::clock::now_ms;
use crate::error::ApiFailure;
use crate::explorer;
use crate::http::{ApiJson, parse_account, parse_hash};
use crate::node::{Book, OrderEntry, Shared};

type AppState = Arc<Shared>;
type ApiResult<T> = Result<T, ApiFailure>;

/// Largest page of orders.
const MAX_PAGE: usize = 200;
/// Offers listed on an order's page.
const MAX_OFFERS: usize = 50;
/// How often the stream sends the overview's figures.
const STATS_EVERY: Duration = Duration::from_secs(1);
/// Default reference cloud price: US$ per vCPU-hour (docs/dashboard.md gives the source).
pub const DEFAULT_USD_PER_CORE_HOUR: f64 = 0.0425;
/// Default conversion of AGR to US$ for the comparison.
pub const DEFAULT_USD_PER_AGR: f64 = 1.0;
/// Where the default reference price comes from.
pub const REFERENCE_SOURCE: &str = "AWS EC2 on-demand, c6i.large (2 vCPU, $0.085/h), us-east-1, Linux, as listed in 2024; override with AGORA_CLOUD_USD_PER_CORE_HOUR and AGORA_USD_PER_AGR";

/// Order listing filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Only orders in this state.
    state: Option<String>,
    /// Only this buyer's orders.
    buyer: Option<String>,
    /// Only orders this provider won.
    provider: Option<String>,
    /// Only orders whose label contains this, or whose id starts with it.
    q: Option<String>,
    /// Skip this many (newest first).
    offset: Option<usize>,
    /// Page size (default 50, at most 200).
    limit: Option<usize>,
}

struct Filter {
    state: Option<OrderState>,
    buyer: Option<AccountId>,
    provider: Option<AccountId>,
    q: Option<String>,
}

impl Filter {
    fn from_query(query: &PageQuery) -> ApiResult<Filter> {
        let state = query
            .state
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                serde_json::from_value(serde_json::Value::String(s.to_string()))
                    .map_err(|_| ApiFailure::BadRequest(format!("unknown state {s:?}")))
            })
            .transpose()?;
        let account = |s: &Option<String>| {
            s.as_deref()
                .filter(|s| !s.is_empty())
                .map(parse_account)
                .transpose()
        };
        Ok(Filter {
            state,
            buyer: account(&query.buyer)?,
            provider: account(&query.provider)?,
            q: query.q.clone().filter(|q| !q.is_empty()),
        })
    }

    fn keeps(&self, entry: &OrderEntry) -> bool {
        let rec = &entry.rec;
        self.state.is_none_or(|s| rec.state == s)
            && self.buyer.is_none_or(|b| rec.order.signer == b)
            && self.provider.is_none_or(|p| rec.provider == Some(p))
            && self.q.as_deref().is_none_or(|q| {
                rec.order.body.label.contains(q) || entry.id().to_string().starts_with(q)
            })
    }
}

fn summary(entry: &OrderEntry) -> OrderSummary {
    let rec = &entry.rec;
    let body = &rec.order.body;
    OrderSummary {
        order_id: entry.id(),
        label: body.label.clone(),
        task: body.task.clone(),
        state: rec.state,
        buyer: rec.order.signer,
        provider: rec.provider,
        max_price: body.max_price,
        price: rec.price,
        fuel_used: rec.result.as_ref().map(|r| r.fuel_used),
        cost: rec.cost,
        replicas: body.replicas,
        verify: body.verify.to_string(),
        verification: rec.verification.view().status,
        attempts: rec.attempts,
        created_ms: rec.created_ms,
        latency_ms: rec.finished_ms.map(|f| f.saturating_sub(rec.created_ms)),
        exit_code: rec.result.as_ref().map(|r| r.exit_code),
    }
}

/// One page of orders, newest first, with the total that pass the filters.
#[utoipa::path(get, path = "/v1/dashboard/orders", tag = "dashboard", params(PageQuery),
    responses((status = 200, description = "OrderPage", body = OrderPage)))]
pub async fn order_page(
    State(shared): State<AppState>,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<OrderPage>> {
    let filter = Filter::from_query(&query)?;
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let offset = query.offset.unwrap_or(0);
    let book = shared.book();
    let mut total = 0u64;
    let mut orders = Vec::with_capacity(limit);
    for entry in book
        .sequence
        .iter()
        .rev()
        .filter_map(|id| book.orders.get(id))
    {
        if !filter.keeps(entry) {
            continue;
        }
        if total as usize >= offset && orders.len() < limit {
            orders.push(summary(entry));
        }
        total += 1;
    }
    Ok(Json(OrderPage {
        total,
        offset: offset as u64,
        limit: limit as u64,
        orders,
    }))
}

/// A live ask as an offer for one order: what it charges, what it ranks at.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Offer {
    /// The provider.
    #[schema(value_type = String)]
    pub provider: AccountId,
    /// The class priced.
    pub class: String,
    /// Its price per CU.
    #[schema(value_type = u64)]
    pub price: Price,
    /// The price adjusted by reputation and stake, which the market ranks by.
    #[schema(value_type = u64)]
    pub effective_price: Price,
    /// The provider's reputation (0..1).
    pub reputation: f64,
    /// Its bonded stake.
    #[schema(value_type = u64)]
    pub stake: Amount,
    /// Whether the price is within the order's cap.
    pub within_cap: bool,
    /// Whether this provider won the order (the latest assignment).
    pub won: bool,
}

/// `GET /v1/dashboard/orders/{id}`: everything the job page shows.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderDetail {
    /// The order, its bill, its events and its result.
    pub view: OrderView,
    /// The signed job: module, inputs, arguments, environment, memory limit.
    #[schema(value_type = Object)]
    pub job: JobSpec,
    /// What the job needs from a machine.
    #[schema(value_type = Object)]
    pub demand: Demand,
    /// Who may run it.
    #[schema(value_type = Object)]
    pub requirements: Requirements,
    /// The fuel budget.
    #[schema(value_type = u64)]
    pub fuel_budget: Fuel,
    /// The deadline, Unix ms.
    pub deadline_ms: u64,
    /// Replicas asked for.
    pub replicas: u32,
    /// The verification policy's text form.
    pub verify: String,
    /// Live asks priced in the order's class, best effective price first.
    pub offers: Vec<Offer>,
    /// While the order waits: the market's explanation of why nothing matches now.
    pub no_match: Option<String>,
    /// The provider's signed receipt, decoded, once settled.
    #[schema(value_type = Option<Object>)]
    pub receipt: Option<agora_core::Receipt>,
    /// Whether that receipt's signature checks out for this chain.
    pub receipt_valid: Option<bool>,
    /// What the compute units billed would cost at the reference cloud, base units.
    #[schema(value_type = Option<u64>)]
    pub cloud_cost: Option<Amount>,
}

fn class_of(demand: &Demand) -> ResourceClass {
    demand
        .classes(std::iter::empty())
        .into_iter()
        .next()
        .unwrap_or_else(ResourceClass::cpu)
}

fn offers(book: &Book, entry: &OrderEntry, now: u64) -> Vec<Offer> {
    let body = &entry.rec.order.body;
    let class = class_of(&body.demand);
    let pricing = &book.market.config().pricing;
    let mut offers: Vec<Offer> = book
        .providers
        .iter()
        .flat_map(|(account, p)| p.asks.values().map(move |a| (account, p, a)))
        .filter(|(_, _, a)| a.expires_ms > now)
        .filter_map(|(account, p, ask)| {
            let price = *ask.prices.get(&class)?;
            let rep = book.market.reputation(account, now);
            Some(Offer {
                provider: *account,
                class: class.to_string(),
                price,
                effective_price: pricing.effective(price, rep.score_ppm, p.stake),
                reputation: f64::from(rep.score_ppm) / 1e6,
                stake: p.stake,
                within_cap: price <= body.max_price,
                won: entry.rec.provider == Some(*account),
            })
        })
        .collect();
    offers.sort_by_key(|o| (o.effective_price, o.provider));
    offers.truncate(MAX_OFFERS);
    offers
}

/// An order's job page: its view plus the signed spec, offers, explanation and receipt.
#[utoipa::path(get, path = "/v1/dashboard/orders/{id}", tag = "dashboard",
    params(("id" = String, Path, description = "The order id, hex")),
    responses(
        (status = 200, description = "OrderDetail", body = OrderDetail),
        (status = 404, description = "unknown_order", body = agora_proto::ApiError)))]
pub async fn order_detail(
    State(shared): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<OrderDetail>> {
    let id = parse_hash(&id)?;
    let now = now_ms();
    let book = shared.book();
    let entry = book.orders.get(&id).ok_or(ApiFailure::UnknownOrder(id))?;
    let body = &entry.rec.order.body;
    let waiting = entry.rec.state == OrderState::Escrowed;
    let no_match = waiting.then(|| book.market.explain(&entry.market_order(), now).to_string());
    let receipt = entry
        .rec
        .result
        .as_ref()
        .and_then(|r| hexed::decode::<agora_core::SignedReceipt>(&r.receipt, "receipt").ok());
    let fuel = entry.rec.result.as_ref().map(|r| r.fuel_used);
    Ok(Json(OrderDetail {
        view: entry.view(),
        job: body.job.clone(),
        demand: body.demand.clone(),
        requirements: body.requirements.clone(),
        fuel_budget: body.fuel_budget,
        deadline_ms: body.deadline_ms,
        replicas: body.replicas,
        verify: body.verify.to_string(),
        offers: offers(&book, entry, now),
        no_match,
        receipt_valid: receipt
            .as_ref()
            .map(|r| r.verify(&shared.identity.chain_id).is_ok()),
        receipt: receipt.map(|r| r.body),
        cloud_cost: fuel.and_then(|f| reference().cloud_price_per_cu.cost(f)),
    }))
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
        .unwrap_or(default)
}

/// The reference cloud price, from the environment or the documented defaults.
pub fn reference() -> ReferencePrice {
    let usd_per_core_hour = env_f64("AGORA_CLOUD_USD_PER_CORE_HOUR", DEFAULT_USD_PER_CORE_HOUR);
    let usd_per_agr = env_f64("AGORA_USD_PER_AGR", DEFAULT_USD_PER_AGR);
    let cu_per_core_hour = 3_600.0;
    let agr_per_cu = usd_per_core_hour / cu_per_core_hour / usd_per_agr;
    let base = (agr_per_cu * agora_core::money::BASE_UNITS_PER_AGR as f64).round();
    let source = if std::env::var_os("AGORA_CLOUD_USD_PER_CORE_HOUR").is_some() {
        "configured on this node (AGORA_CLOUD_USD_PER_CORE_HOUR)".to_string()
    } else {
        REFERENCE_SOURCE.to_string()
    };
    ReferencePrice {
        usd_per_core_hour,
        usd_per_agr,
        cu_per_core_hour,
        cloud_price_per_cu: Price(base.clamp(1.0, u64::MAX as f64) as u64),
        source,
    }
}

/// The reference cloud price a job's cost is compared with.
#[utoipa::path(get, path = "/v1/dashboard/reference", tag = "dashboard",
    responses((status = 200, description = "ReferencePrice", body = ReferencePrice)))]
pub async fn reference_price() -> Json<ReferencePrice> {
    Json(reference())
}

/// The overview's figures now.
pub fn stats(shared: &Shared) -> DashboardStats {
    let now = now_ms();
    let minute_ago = now.saturating_sub(60_000);
    let book = shared.book();
    let mut s = DashboardStats {
        at_ms: now,
        height: shared.chain.progress().height,
        providers_online: 0,
        providers_known: book.providers.len() as u32,
        orders_total: book.orders.len() as u64,
        running: 0,
        waiting: 0,
        settled_last_minute: 0,
        submitted_last_minute: 0,
        settled_total: 0,
        refunded_total: 0,
        fuel_sold: Fuel(0),
        paid_total: Amount::ZERO,
        utilization: 0.0,
        capacity_cpu_millis: 0,
        index: Vec::new(),
        last_verify: explorer::last_verify(shared),
    };
    for entry in book.orders.values() {
        let rec = &entry.rec;
        if rec.created_ms >= minute_ago {
            s.submitted_last_minute += 1;
        }
        match rec.state {
            OrderState::Escrowed => s.waiting += 1,
            OrderState::Matched | OrderState::Running | OrderState::Verifying => s.running += 1,
            OrderState::Refunded => s.refunded_total += 1,
            OrderState::Settled => {
                s.settled_total += 1;
                if rec.finished_ms.is_some_and(|f| f >= minute_ago) {
                    s.settled_last_minute += 1;
                }
                let fuel = rec.result.as_ref().map_or(0, |r| r.fuel_used.0);
                s.fuel_sold = Fuel(s.fuel_sold.0.saturating_add(fuel));
                s.paid_total = Amount(s.paid_total.0.saturating_add(rec.cost.0));
            }
        }
    }
    let (mut capacity, mut free) = (0u64, 0u64);
    let mut classes = std::collections::BTreeSet::from([ResourceClass::cpu()]);
    for p in book.providers.values() {
        let live: Vec<_> = p.asks.values().filter(|a| a.expires_ms > now).collect();
        s.providers_online += u32::from(!live.is_empty());
        for ask in live {
            capacity += ask.capacity.cpu_millis;
            free += book
                .market
                .free_capacity(&ask.id)
                .map_or(ask.capacity.cpu_millis, |f| f.cpu_millis);
            classes.extend(ask.prices.keys().cloned());
        }
    }
    s.capacity_cpu_millis = capacity;
    if capacity > 0 {
        s.utilization = capacity.saturating_sub(free) as f64 / capacity as f64;
    }
    s.index = classes.iter().map(|c| book.market.index(c, now)).collect();
    s
}

/// The overview's figures: providers, jobs, compute units sold, utilization, the spot
/// index and the last chain replay.
#[utoipa::path(get, path = "/v1/dashboard/stats", tag = "dashboard",
    responses((status = 200, description = "DashboardStats", body = DashboardStats)))]
pub async fn dashboard_stats(State(shared): State<AppState>) -> Json<DashboardStats> {
    Json(stats(&shared))
}

/// History window.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PricesQuery {
    /// Minutes back from now (default 60, at most 1440).
    minutes: Option<u64>,
}

/// The price paid per class and minute, from settled orders: the spot index over time.
#[utoipa::path(get, path = "/v1/dashboard/prices", tag = "dashboard", params(PricesQuery),
    responses((status = 200, description = "PricePoint per class and minute, oldest first", body = Vec<PricePoint>)))]
pub async fn price_history(
    State(shared): State<AppState>,
    Query(query): Query<PricesQuery>,
) -> Json<Vec<PricePoint>> {
    let now = now_ms();
    let from = now.saturating_sub(query.minutes.unwrap_or(60).clamp(1, 1_440) * 60_000);
    let mut buckets: BTreeMap<(String, u64), (u128, u128, u64)> = BTreeMap::new();
    let book = shared.book();
    for rec in book.orders.values().map(|e| &e.rec) {
        let (Some(at), Some(price), Some(result)) = (rec.finished_ms, rec.price, &rec.result)
        else {
            continue;
        };
        if at < from || rec.state != OrderState::Settled {
            continue;
        }
        let class = class_of(&rec.order.body.demand).to_string();
        let slot = buckets.entry((class, at / 60_000 * 60_000)).or_default();
        let fuel = u128::from(result.fuel_used.0.max(1));
        slot.0 += u128::from(price.0) * fuel;
        slot.1 += fuel;
        slot.2 += 1;
    }
    Json(
        buckets
            .into_iter()
            .map(
                |((class, minute_ms), (notional, volume, trades))| PricePoint {
                    class,
                    minute_ms,
                    vwap: Price((notional / volume.max(1)) as u64),
                    volume: Fuel(volume.min(u128::from(u64::MAX)) as u64),
                    trades,
                },
            )
            .collect(),
    )
}

/// Live updates for the dashboard (server-sent events): a `stats` event (DashboardStats)
/// every second and an `order` event (OrderEvent) for every order state change.
#[utoipa::path(get, path = "/v1/dashboard/events", tag = "dashboard",
    responses((status = 200, description = "text/event-stream of `stats` and `order` events", content_type = "text/event-stream", body = String)))]
pub async fn dashboard_events(
    State(shared): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let live = shared.events.subscribe();
    let (tx, rx) = mpsc::channel::<Event>(256);
    tokio::spawn(feed(shared, live, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    Sse::new(stream.boxed()).keep_alive(KeepAlive::default())
}

fn json_event(name: &str, value: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(value)
        .unwrap_or_else(|_| Event::default().event("error"))
}

async fn feed(
    shared: AppState,
    mut live: broadcast::Receiver<crate::node::Published>,
    tx: mpsc::Sender<Event>,
) {
    let mut tick = tokio::time::interval(STATS_EVERY);
    loop {
        let event = tokio::select! {
            _ = tick.tick() => {
                explorer::verify_in_background(&shared);
                json_event("stats", &stats(&shared))
            }
            published = live.recv() => match published {
                Ok(p) => json_event("order", &p.event),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if tx.send(event).await.is_err() {
            return;
        }
    }
}

/// Stores an upload under the hash the node computes (the browser has no blake3).
#[utoipa::path(post, path = "/v1/dashboard/blobs", tag = "dashboard",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Stored", body = BlobStored),
        (status = 413, description = "blob_too_large", body = agora_proto::ApiError)))]
pub async fn upload_blob(
    State(shared): State<AppState>,
    body: Body,
) -> ApiResult<(StatusCode, Json<BlobStored>)> {
    let limit = shared.settings.max_blob_bytes;
    let writer = shared.blobs.writer().map_err(internal)?;
    let (chunks, mut inbox) = mpsc::channel::<axum::body::Bytes>(8);
    // Disk writes and hashing run on a blocking thread; the body streams to it. Dropping
    // the writer without committing (a broken or oversized upload) deletes the partial file.
    let disk = tokio::task::spawn_blocking(move || {
        let mut writer = writer;
        while let Some(chunk) = inbox.blocking_recv() {
            writer.write(&chunk)?;
        }
        Ok::<_, agora_net::StoreError>(writer)
    });
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiFailure::BadRequest(format!("the upload broke off: {e}")))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(ApiFailure::BlobTooLarge { limit });
        }
        if chunks.send(chunk).await.is_err() {
            break;
        }
    }
    drop(chunks);
    let writer = disk.await.map_err(internal)?.map_err(internal)?;
    let hash = tokio::task::spawn_blocking(move || writer.commit(None))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    Ok((StatusCode::CREATED, Json(BlobStored { hash, size })))
}

fn internal(err: impl std::fmt::Display) -> ApiFailure {
    ApiFailure::Internal(err.to_string())
}

fn public_key(text: &str) -> ApiResult<AccountId> {
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            ApiFailure::BadRequest("public_key must be 64 hex digits (an Ed25519 key)".into())
        })?;
    Ok(AccountId::from_bytes(bytes))
}

fn salt(text: &str) -> ApiResult<u64> {
    text.trim()
        .parse()
        .map_err(|_| ApiFailure::BadRequest("salt must be a decimal u64".into()))
}

/// A prepared order's deadline when the page names none, ms from now.
const DEFAULT_DEADLINE_IN_MS: u64 = 120_000;
/// The nearest deadline a prepared order may have, ms from now: the buyer still has to
/// sign it in the browser and send it back (the page's own minimum is 5 s).
pub const MIN_PREPARED_DEADLINE_MS: u64 = 5_000;

/// The order body the prepared fields make, deadline from `now`.
fn order_body(shared: &Shared, req: &PrepareOrder, now: u64) -> ApiResult<OrderRequest> {
    let module_size = shared
        .blobs
        .size(&req.module)
        .map_err(|_| ApiFailure::MissingBlob(req.module))?;
    let verify = match req.verify.as_deref().filter(|v| !v.is_empty()) {
        Some(text) => text
            .parse()
            .map_err(|e| ApiFailure::BadRequest(format!("verification policy {text:?}: {e}")))?,
        None => agora_verify::VerifyPolicy::DEFAULT,
    };
    let deadline_in_ms = req.deadline_in_ms.unwrap_or(DEFAULT_DEADLINE_IN_MS);
    let deadline_ms = now.saturating_add(deadline_in_ms);
    crate::orders::check_deadline(
        deadline_ms,
        now,
        MIN_PREPARED_DEADLINE_MS,
        shared.settings.max_deadline_ms,
    )?;
    let replicas = req.replicas.unwrap_or(1).max(1);
    let memory_bytes = req.memory_bytes.unwrap_or(128 << 20);
    let mut body = OrderRequest {
        job: JobSpec {
            module: req.module,
            module_size,
            inputs: req.inputs.clone(),
            args: req.args.clone(),
            env: Vec::new(),
            memory_bytes,
            workload: agora_proto::Workload::Wasm,
        },
        demand: Demand {
            cpu_millis: 1_000,
            memory_bytes,
            disk_bytes: 0,
            gpu: None,
        },
        requirements: Requirements {
            features: ["wasm".to_string()].into(),
            attributes: req
                .region
                .iter()
                .filter(|r| !r.is_empty())
                .map(|r| AttributeConstraint::equals("region", r))
                .collect(),
            replicas: u16::try_from(replicas).unwrap_or(u16::MAX),
            ..Requirements::default()
        },
        max_price: req.max_price,
        fuel_budget: Fuel::compute_units(req.max_cu),
        deadline_ms,
        escrow: Amount::ZERO,
        replicas,
        verify,
        label: req.label.clone(),
        task: None,
        auction: Default::default(),
    };
    body.escrow = body
        .worst_case()
        .map_err(|e| ApiFailure::BadOrder(e.to_string()))?;
    body.check_shape()
        .map_err(|e| ApiFailure::BadOrder(e.to_string()))?;
    Ok(body)
}

fn unsigned<T>(signer: AccountId, chain: &agora_core::ChainId, nonce: u64, body: T) -> Signed<T> {
    Signed {
        signer,
        chain_id: chain.clone(),
        nonce,
        body,
        signature: Signature([0; 64]),
    }
}

fn escrow_body(order_id: Hash, body: &OrderRequest) -> TxBody {
    TxBody::OpenEscrow {
        order_id,
        amount: body.escrow,
        deadline_ms: body.deadline_ms,
    }
}

/// Quotes `body` against the book now: the best price and provider, or why none.
fn quote(
    book: &Book,
    id: Hash,
    body: &OrderRequest,
    now: u64,
) -> (Option<(Price, AccountId)>, Option<String>) {
    let mut requirements = body.requirements.clone();
    requirements
        .features
        .insert(body.job.workload.feature().to_string());
    requirements.replicas = 1;
    let order = Order {
        id: OrderId(id),
        buyer: AccountId::from_bytes([0; 32]),
        demand: body.demand.clone(),
        requirements,
        fuel: body.fuel_budget,
        cap: body.max_price,
        deadline_ms: body.deadline_ms,
    };
    match book.market.quote(&order, now) {
        Ok(winners) if !winners.is_empty() => {
            (winners.first().map(|w| (w.price, w.provider)), None)
        }
        Ok(_) => (None, Some(book.market.explain(&order, now).to_string())),
        Err(e) => (None, Some(e.to_string())),
    }
}

/// Single-quotes `text` for a POSIX shell.
fn shell_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c))
    {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The `agora job run` command that submits the same job.
fn command(market: &str, req: &PrepareOrder, body: &OrderRequest, module_name: &str) -> String {
    let mut parts = vec![
        "agora job run".to_string(),
        format!("--market {}", shell_quote(market)),
        "--wallet WALLET.json".to_string(),
        format!("--max-price {}u", body.max_price.0),
        format!("--max-cu {}", req.max_cu),
        format!(
            "--memory {}",
            shell_quote(&format!("{} MiB", body.job.memory_bytes >> 20))
        ),
        format!(
            "--deadline {}s",
            req.deadline_in_ms
                .unwrap_or(DEFAULT_DEADLINE_IN_MS)
                .div_ceil(1_000)
        ),
    ];
    if body.replicas > 1 {
        parts.push(format!("--replicas {}", body.replicas));
    }
    if req.verify.as_deref().is_some_and(|v| !v.is_empty()) {
        parts.push(format!(
            "--verify {}",
            shell_quote(&body.verify.to_string())
        ));
    }
    if let Some(region) = req.region.as_deref().filter(|r| !r.is_empty()) {
        parts.push(format!("--region {}", shell_quote(region)));
    }
    if !body.label.is_empty() {
        parts.push(format!("--label {}", shell_quote(&body.label)));
    }
    for input in &body.job.inputs {
        parts.push(format!(
            "--input {}",
            shell_quote(&format!("{0}={0}", input.name))
        ));
    }
    parts.push(shell_quote(module_name));
    if !body.job.args.is_empty() {
        parts.push("--".into());
        parts.extend(body.job.args.iter().map(|a| shell_quote(a)));
    }
    parts.join(" ")
}

/// Module file name for the command line, if the page sent one.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PrepareQuery {
    /// The module's file name as the buyer picked it (for the command line only).
    module_name: Option<String>,
    /// The market URL the buyer sees (for the command line only).
    market: Option<String>,
}

/// Turns an order's fields into the exact bytes the buyer signs (the order envelope and
/// its `OpenEscrow`), with a quote and the equivalent `agora job run` command.
#[utoipa::path(post, path = "/v1/dashboard/orders/prepare", tag = "dashboard",
    params(PrepareQuery), request_body = PrepareOrder,
    responses(
        (status = 200, description = "PreparedOrder", body = PreparedOrder),
        (status = 400, description = "bad_request, bad_order, deadline_out_of_range, missing_blob", body = agora_proto::ApiError)))]
pub async fn prepare_order(
    State(shared): State<AppState>,
    Query(query): Query<PrepareQuery>,
    ApiJson(req): ApiJson<PrepareOrder>,
) -> ApiResult<Json<PreparedOrder>> {
    let signer = public_key(&req.public_key)?;
    let salt = salt(&req.salt)?;
    let now = now_ms();
    let body = order_body(&shared, &req, now)?;
    let chain = shared.identity.chain_id.clone();
    let order_id = agora_proto::order_id(&signer, &chain, salt, &body);
    let (balance, escrow_nonce) = shared
        .chain
        .account(signer)
        .await
        .map(|account| (account.balance, account.next_nonce))
        .map_err(|e| ApiFailure::Internal(e.to_string()))?;
    let escrow_msg = unsigned(signer, &chain, escrow_nonce, escrow_body(order_id, &body));
    let (quoted, no_match) = quote(&shared.book(), order_id, &body, now);
    let market = query.market.as_deref().unwrap_or("http://127.0.0.1:7070");
    let module_name = query.module_name.as_deref().unwrap_or("MODULE.wasm");
    Ok(Json(PreparedOrder {
        account: signer,
        order_id,
        body: hexed::encode(&body),
        order_message: hex::encode(unsigned(signer, &chain, salt, body.clone()).signing_bytes()),
        escrow_nonce,
        escrow_message: hex::encode(escrow_msg.signing_bytes()),
        escrow: body.escrow,
        deadline_ms: body.deadline_ms,
        balance,
        quote_price: quoted.map(|q| q.0),
        quote_provider: quoted.map(|q| q.1),
        no_match,
        command: command(market, &req, &body, module_name),
    }))
}

fn signature(text: &str, what: &str) -> ApiResult<Signature> {
    hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .map(Signature)
        .ok_or_else(|| ApiFailure::BadRequest(format!("{what} must be 128 hex digits")))
}

/// Assembles a prepared order and its escrow from the buyer's signatures and submits
/// them exactly like `POST /v1/orders` (every signature is checked there).
#[utoipa::path(post, path = "/v1/dashboard/orders/signed", tag = "dashboard",
    request_body = SignedSubmission,
    responses(
        (status = 201, description = "Submitted", body = agora_proto::api::Submitted),
        (status = 400, description = "bad_request, bad_signature, bad_order, deadline_out_of_range, escrow_mismatch, missing_blob, escrow_refused", body = agora_proto::ApiError),
        (status = 409, description = "duplicate_order", body = agora_proto::ApiError)))]
pub async fn submit_signed(
    State(shared): State<AppState>,
    ApiJson(req): ApiJson<SignedSubmission>,
) -> ApiResult<(StatusCode, Json<Submitted>)> {
    let signer = public_key(&req.public_key)?;
    let body: OrderRequest = hexed::decode(&req.body, "order body")
        .map_err(|e| ApiFailure::BadRequest(format!("field `body`: {e}")))?;
    let chain = &shared.identity.chain_id;
    let mut order = unsigned(signer, chain, salt(&req.salt)?, body);
    order.signature = signature(&req.order_signature, "order_signature")?;
    let order_id = agora_proto::signed_order_id(&order);
    let mut escrow = unsigned(
        signer,
        chain,
        req.escrow_nonce,
        escrow_body(order_id, &order.body),
    );
    escrow.signature = signature(&req.escrow_signature, "escrow_signature")?;
    let request = SubmitOrder {
        order: hexed::encode(&order),
        escrow_tx: hexed::encode(&escrow),
    };
    let submitted = tokio::spawn(async move { crate::orders::submit(&shared, request).await })
        .await
        .map_err(|e| ApiFailure::Internal(e.to_string()))??;
    Ok((StatusCode::CREATED, Json(submitted)))
}

/// The dashboard's and the explorer's routes (except `GET /v1/txs`, which shares its path
/// with `POST /v1/txs` in [`crate::http`]), merged into the node's API with their
/// OpenAPI operations.
pub fn routes() -> OpenApiRouter<AppState> {
    use crate::explorer::*;
    OpenApiRouter::new()
        .routes(routes!(order_page))
        .routes(routes!(order_detail))
        .routes(routes!(dashboard_stats))
        .routes(routes!(price_history))
        .routes(routes!(reference_price))
        .routes(routes!(dashboard_events))
        .routes(routes!(upload_blob))
        .routes(routes!(prepare_order))
        .routes(routes!(submit_signed))
        .routes(routes!(dashboard_verify))
        .routes(routes!(list_escrows))
        .routes(routes!(list_stakes))
        .routes(routes!(list_slashes))
        .routes(routes!(search))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_keeps_hostile_text_inert() {
        assert_eq!(shell_quote("plain-1.wasm"), "plain-1.wasm");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's $(rm -rf /)"), "'it'\\''s $(rm -rf /)'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn the_default_reference_price_is_about_a_hundred_thousandth_of_a_dollar_per_cu() {
        let r = reference();
        assert_eq!(r.cu_per_core_hour, 3_600.0);
        // $0.0425 / 3600 s at $1/AGR ≈ 11 806 base units per CU.
        assert!((11_000..13_000).contains(&r.cloud_price_per_cu.0), "{r:?}");
    }
}
