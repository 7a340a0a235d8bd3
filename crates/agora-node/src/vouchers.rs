//! Compute vouchers over HTTP: the market's signed price quote a mint must carry, and an
//! account's voucher holdings.
//!
//! Minting, sending, redeeming and expiring are ordinary signed ledger transactions
//! (`POST /v1/txs`; a redemption that pays for an order goes in `POST /v1/orders` as its
//! `escrow_tx`), so the only thing the node adds is the price: the market authority
//! vouches, in a [`VoucherQuote`] valid for [`QUOTE_VALID_MS`], that the terms' price per CU
//! is the class's spot index (its best live ask) right now. The ledger rules are in
//! `agora_ledger::voucher`; the design is in docs/vouchers.md.

use std::str::FromStr;
use std::sync::Arc;

use agora_core::{AccountId, Price, Signed};
use agora_ledger::{VoucherQuote, VoucherTerms};
use agora_market::ResourceClass;
use agora_proto::api::{VoucherQuoteView, VoucherView};
use agora_proto::hexed;
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::chain::ChainError;
use crate::clock::now_ms;
use crate::error::ApiFailure;
use crate::http::parse_account;
use crate::node::Shared;

type AppState = Arc<Shared>;

/// How long a quote may be used for a mint, ms: long enough for a wallet to sign and
/// submit, short enough that the index cannot move far.
pub const QUOTE_VALID_MS: u64 = 60_000;

/// How long a voucher lives when the buyer names no expiry: 7 days.
pub const DEFAULT_LIFETIME_MS: u64 = 7 * 24 * 3_600_000;

/// The voucher routes, merged into the node's API.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(voucher_quote))
        .routes(routes!(account_vouchers))
}

/// What a buyer asks a quote for.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct QuoteQuery {
    /// The resource class (`cpu`, `gpu:<model>`).
    class: String,
    /// Redeemable from this Unix ms (default: the start of the current hour, so that the
    /// hour's mints at one price share a series; later for a forward purchase).
    redeem_from_ms: Option<u64>,
    /// Expires at this Unix ms (default: 7 days after the window opens).
    expires_ms: Option<u64>,
}

/// The market's signed price for a voucher series at the class's spot index.
#[utoipa::path(get, path = "/v1/vouchers/quote", tag = "ledger", params(QuoteQuery),
    responses(
        (status = 200, description = "VoucherQuoteView", body = VoucherQuoteView),
        (status = 400, description = "bad_request: unknown class, no live ask to price it, or an empty window", body = agora_proto::ApiError)))]
async fn voucher_quote(
    State(shared): State<AppState>,
    Query(query): Query<QuoteQuery>,
) -> Result<Json<VoucherQuoteView>, ApiFailure> {
    let now = now_ms();
    let class = ResourceClass::from_str(&query.class).map_err(|e| {
        ApiFailure::BadRequest(format!(
            "{:?} is not a resource class ({e}); use `cpu` or `gpu:<model>`",
            query.class
        ))
    })?;
    let (redeem_from_ms, expires_ms) = series_window(now, query.redeem_from_ms, query.expires_ms);
    if expires_ms <= now.max(redeem_from_ms) {
        return Err(ApiFailure::BadRequest(format!(
            "a voucher expiring at {expires_ms} ms could never be redeemed (now {now} ms, window opens {redeem_from_ms} ms); pick a later expiry"
        )));
    }
    let price = index_price(&shared, &class, now)?;
    let terms = VoucherTerms {
        class: class.as_str().to_owned(),
        price_per_cu: price,
        redeem_from_ms,
        expires_ms,
    };
    let quote = VoucherQuote {
        terms: terms.clone(),
        valid_until_ms: now + QUOTE_VALID_MS,
    };
    let signed = Signed::sign(
        &shared.identity.market_key,
        &shared.identity.chain_id,
        0,
        quote,
    );
    Ok(Json(VoucherQuoteView {
        series: terms.series_id(),
        class: terms.class,
        price_per_cu: price.0,
        redeem_from_ms,
        expires_ms,
        valid_until_ms: signed.body.valid_until_ms,
        quote: hexed::encode(&signed),
    }))
}

/// The series window a quote names. A window the buyer leaves to the market opens at the
/// start of the current hour and lasts [`DEFAULT_LIFETIME_MS`], so every voucher minted
/// within one hour at one price is one fungible series; times the buyer gives are kept as
/// given (a forward purchase picks its own window).
fn series_window(now: u64, redeem_from_ms: Option<u64>, expires_ms: Option<u64>) -> (u64, u64) {
    let from = redeem_from_ms.unwrap_or(now - now % SERIES_GRID_MS);
    let until = expires_ms.unwrap_or_else(|| from.saturating_add(DEFAULT_LIFETIME_MS));
    (from, until)
}

/// The grid default series windows are aligned to: one hour.
const SERIES_GRID_MS: u64 = 3_600_000;

/// The class's spot index: its best live ask. The market vouches for nothing else, so a
/// class with no live ask gets no quote.
fn index_price(shared: &Shared, class: &ResourceClass, now: u64) -> Result<Price, ApiFailure> {
    let book = shared.book();
    book.market
        .index(class, now)
        .best_ask
        .filter(|p| p.0 > 0)
        .ok_or_else(|| {
            ApiFailure::BadRequest(format!(
                "no provider has a live ask in class {class}, so the market has no index price to vouch for; try again when providers of that class are online"
            ))
        })
}

/// An account's voucher holdings, one line per series.
#[utoipa::path(get, path = "/v1/accounts/{id}/vouchers", tag = "ledger",
    params(("id" = String, Path, description = "The account id")),
    responses(
        (status = 200, description = "VoucherView lines", body = Vec<VoucherView>),
        (status = 400, description = "bad_request: not an account id, or a market settling on an EVM chain (vouchers live on the embedded ledger only)", body = agora_proto::ApiError)))]
async fn account_vouchers(
    State(shared): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<VoucherView>>, ApiFailure> {
    let account = parse_account(&id)?;
    let now = now_ms();
    let views = shared
        .chain
        .query(move |ledger| holdings(ledger.state(), &account, now))
        .await
        .map_err(|e| match e {
            ChainError::OnEvm { .. } => ApiFailure::BadRequest(
                "compute vouchers exist on the embedded ledger only; this market settles on an EVM chain".into(),
            ),
            other => ApiFailure::Internal(other.to_string()),
        })?;
    Ok(Json(views))
}

/// `account`'s holdings as API lines, with their status at `now`.
pub fn holdings(state: &agora_ledger::State, account: &AccountId, now: u64) -> Vec<VoucherView> {
    state
        .vouchers_of(account)
        .into_iter()
        .map(|(held, series)| {
            let terms = &series.terms;
            let status = if now >= terms.expires_ms {
                "expired"
            } else if now < terms.redeem_from_ms {
                "forward"
            } else {
                "redeemable"
            };
            VoucherView {
                series: held.series,
                class: terms.class.clone(),
                price_per_cu: terms.price_per_cu.0,
                redeem_from_ms: terms.redeem_from_ms,
                expires_ms: terms.expires_ms,
                cu: held.cu,
                backing: terms
                    .backing(held.cu)
                    .unwrap_or(agora_core::Amount(u64::MAX)),
                status: status.into(),
            }
        })
        .collect()
}

#[cfg(test)]
mod window_tests {
    use super::{DEFAULT_LIFETIME_MS, SERIES_GRID_MS, series_window};

    #[test]
    fn default_windows_within_one_hour_are_one_series() {
        let hour = 1_796_000 * SERIES_GRID_MS;
        let early = series_window(hour + 1, None, None);
        let late = series_window(hour + SERIES_GRID_MS - 1, None, None);
        assert_eq!(early, late);
        assert_eq!(early, (hour, hour + DEFAULT_LIFETIME_MS));
        assert_ne!(series_window(hour + SERIES_GRID_MS, None, None), early);
    }

    #[test]
    fn windows_the_buyer_gives_are_kept() {
        let now = 1_796_000 * SERIES_GRID_MS + 1234;
        assert_eq!(
            series_window(now, Some(now + 5), Some(now + 9)),
            (now + 5, now + 9)
        );
        assert_eq!(
            series_window(now, None, Some(now + 3000)),
            (now - 1234, now + 3000)
        );
    }
}
