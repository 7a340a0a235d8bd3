//! `POST /v1/quote`: the risk-adjusted quote for an unsigned order, answered from the
//! book as it stands — no order is recorded, no escrow opened, no transaction sent.
//!
//! The shell gathers the inputs (the order as the market would match it, the candidates'
//! verification history, the node's attempt limit, the reference cloud price) and hands
//! them to the pure parts: [`agora_market::Market::quote_candidates`],
//! [`agora_verify::sampling::expected_overhead_at_risk_ppm`] and [`agora_market::quote`].

use std::sync::Arc;

use agora_core::{AccountId, Hash};
use agora_market::{Order, OrderId, QuoteTerms};
use agora_proto::OrderRequest;
use agora_proto::quote::QuoteView;
use agora_verify::{ProviderHistory, VerifyPolicy};
use axum::Json;
use axum::extract::State;

use crate::clock::now_ms;
use crate::error::ApiFailure;
use crate::http::ApiJson;
use crate::node::Shared;

type AppState = Arc<Shared>;

/// Quotes an unsigned order: qualifying providers, expected price and cost, the
/// verification overhead, the probability of success, the expected total with retries,
/// the reference cloud's cost, or why nothing qualifies. Moves no money.
#[utoipa::path(post, path = "/v1/quote", tag = "orders",
    request_body(content = Object, description = "An unsigned order: an OrderRequest as JSON (escrow may be 0), or `{\"body\": HEX}` with the hex of its canonical encoding (the `body` of `POST /v1/dashboard/orders/prepare`'s answer)"),
    responses(
        (status = 200, description = "The quote", body = QuoteView),
        (status = 400, description = "bad_request, bad_order", body = agora_proto::ApiError)))]
pub(crate) async fn quote_order(
    State(shared): State<AppState>,
    ApiJson(request): ApiJson<serde_json::Value>,
) -> Result<Json<QuoteView>, ApiFailure> {
    let mut body = order_of(request)?;
    body.escrow = body
        .worst_case()
        .map_err(|e| ApiFailure::BadOrder(e.to_string()))?;
    body.check_shape()
        .map_err(|e| ApiFailure::BadOrder(e.to_string()))?;
    body.verify
        .validate()
        .map_err(|e| ApiFailure::BadOrder(e.to_string()))?;
    let now = now_ms();
    let height = shared.chain.progress().height;
    let reference = crate::dashboard_api::reference().cloud_price_per_cu;
    let book = shared.book();
    let order = market_order(&body);
    let (candidates, no_match) = match book.market.quote(&order, now) {
        Ok(_) => {
            let candidates = book.market.quote_candidates(&order, now);
            let why = candidates
                .is_empty()
                .then(|| book.market.explain(&order, now).to_string());
            (candidates, why)
        }
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    // The overhead the node will incur on the first choice: its history and, for
    // adaptive, what the job puts at stake against its bond (as the audit draw weighs it).
    let rule = shared.settings.fault_suspension;
    let first = candidates.first().map(|c| {
        let (history, stake) = book
            .providers
            .get(&c.provider)
            .map(|p| (rule.trusted_history(p.history, &p.faults, now), p.stake))
            .unwrap_or_default();
        (
            history,
            crate::verification::exposure(&body, c.price, stake),
        )
    });
    drop(book);
    let terms = QuoteTerms {
        fuel: body.fuel_budget,
        cap: body.max_price,
        runs: body.billed_runs(),
        max_failures: shared.settings.max_attempts,
        verification_runs_ppm: match &first {
            Some((history, exposure)) => agora_verify::sampling::expected_overhead_at_risk_ppm(
                &body.verify,
                history,
                exposure,
            ),
            None => agora_verify::sampling::expected_overhead_ppm(
                &body.verify,
                &ProviderHistory::default(),
            ),
        },
        reference_price: Some(reference),
    };
    let quote = agora_market::quote(&candidates, &terms);
    let no_match = no_match.or_else(|| {
        (candidates.len() < terms.runs as usize).then(|| {
            format!(
                "only {} provider(s) qualify and {} needs {} distinct ones",
                candidates.len(),
                body.verify,
                terms.runs
            )
        })
    });
    Ok(Json(QuoteView {
        policy: body.verify.to_string(),
        verification_note: verification_note(&body.verify).to_string(),
        candidates,
        quote,
        reference_price: reference,
        no_match,
        height,
        at_ms: now,
    }))
}

/// The order in a quote request: JSON, or the hex of its canonical encoding.
fn order_of(request: serde_json::Value) -> Result<OrderRequest, ApiFailure> {
    if let Some(hex) = request.get("body").and_then(|b| b.as_str()) {
        return agora_proto::hexed::decode(hex, "order body").map_err(|e| {
            ApiFailure::BadRequest(format!("{e}; send the prepared order's `body` unchanged"))
        });
    }
    serde_json::from_value(request).map_err(|e| {
        ApiFailure::BadRequest(format!(
            "not an order: {e}; send an OrderRequest as JSON or {{\"body\": HEX}}"
        ))
    })
}

/// The order as the market would match its first run (as `OrderEntry::market_order`
/// builds it for a submitted one), under a placeholder id and buyer.
fn market_order(body: &OrderRequest) -> Order {
    let mut requirements = body.requirements.clone();
    requirements
        .features
        .insert(body.job.workload.feature().to_string());
    if body.demand.gpu.is_some() {
        requirements.features.insert("gpu".to_string());
    }
    requirements.replicas = 1;
    requirements.min_stake = requirements
        .min_stake
        .max(crate::verification::required_stake(body));
    Order {
        id: OrderId(Hash::of(b"agora quote")),
        buyer: AccountId::from_bytes([0; 32]),
        demand: body.demand.clone(),
        requirements,
        fuel: body.fuel_budget,
        cap: body.max_price,
        deadline_ms: body.deadline_ms,
    }
}

/// Who pays the runs verification adds (see `OrderRequest::billed_runs`).
fn verification_note(policy: &VerifyPolicy) -> &'static str {
    match policy {
        VerifyPolicy::Replicate { .. } => {
            "every replica that agrees is billed: the buyer pays the overhead"
        }
        VerifyPolicy::Spot { .. } | VerifyPolicy::Adaptive { .. } => {
            "audit and adaptive re-runs are paid by the market, not billed to the buyer"
        }
        VerifyPolicy::None => "no re-runs",
        VerifyPolicy::Challenge { .. } => {
            "re-runs happen only when a staked party challenges within the window"
        }
    }
}
