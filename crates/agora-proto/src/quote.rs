//! `POST /v1/quote`: what an order would cost, answered before any money moves.

use agora_core::Price;
use agora_market::{Quote, QuoteCandidate};
use serde::{Deserialize, Serialize};

/// The market's risk-adjusted quote for an unsigned order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuoteView {
    /// The order's verification policy, canonical form.
    pub policy: String,
    /// Every provider that qualifies now, best effective price first.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub candidates: Vec<QuoteCandidate>,
    /// The expectations (price, cost, success probability, totals with retries,
    /// verification overhead, escrow, reference cost).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub quote: Quote,
    /// Who pays for the verification overhead under this policy.
    pub verification_note: String,
    /// The reference cloud's price per CU, base units.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub reference_price: Price,
    /// Why no provider qualifies, when none does.
    pub no_match: Option<String>,
    /// The ledger height the quote was made at (a quote moves nothing).
    pub height: u64,
    /// When, Unix ms.
    pub at_ms: u64,
}
