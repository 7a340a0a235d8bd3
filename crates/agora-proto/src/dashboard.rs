//! JSON records of the market node's dashboard endpoints (`/v1/dashboard/...`): the
//! paginated order listing, the overview's figures, the cleared-price history, the
//! reference cloud price, and the two-step browser signing of an order.
//!
//! Browser signing: the page posts the order's fields ([`PrepareOrder`]) with the buyer's
//! public key and a random salt; the node answers with the exact bytes to sign
//! ([`PreparedOrder`]: the `Signed<OrderRequest>` signing message and the `OpenEscrow`
//! transaction's signing message, which names the order id those bytes imply). The
//! browser signs both with its own Ed25519 key and posts the signatures back
//! ([`SignedSubmission`]); the node assembles the envelopes and submits them exactly as
//! `POST /v1/orders`, so a signature over anything else is refused (`bad_signature`).

use agora_core::{AccountId, Amount, Fuel, Hash, Price};
use serde::{Deserialize, Serialize};

use crate::api::OrderState;
use crate::order::{InputRef, TaskRef};

/// One order in a listing: what a table row shows, without events, logs or outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderSummary {
    /// The order's id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub order_id: Hash,
    /// The buyer's label.
    pub label: String,
    /// Its place within a multi-task job.
    pub task: Option<TaskRef>,
    /// Where it is now.
    pub state: OrderState,
    /// The buyer.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub buyer: AccountId,
    /// The provider that won it (the latest).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub provider: Option<AccountId>,
    /// The price cap per CU.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub max_price: Price,
    /// The price per CU it is paid.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub price: Option<Price>,
    /// Fuel billed, once settled (1 CU = 10^9).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub fuel_used: Option<Fuel>,
    /// What the buyer paid, fee included.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub cost: Amount,
    /// Distinct providers asked for.
    pub replicas: u32,
    /// The verification policy, in its text form.
    pub verify: String,
    /// Where its check stands (`pending`, `unchecked`, `verified`, `challenged`, `failed`).
    pub verification: String,
    /// Times it was (re)assigned.
    pub attempts: u32,
    /// Unix ms it was accepted.
    pub created_ms: u64,
    /// Submit → final state, ms.
    pub latency_ms: Option<u64>,
    /// The job's exit code, once settled.
    pub exit_code: Option<i32>,
}

/// `GET /v1/dashboard/orders`: one page of orders, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderPage {
    /// Orders passing the filters, in all pages.
    pub total: u64,
    /// Orders skipped before this page.
    pub offset: u64,
    /// The page size asked for.
    pub limit: u64,
    /// This page.
    pub orders: Vec<OrderSummary>,
}

/// The last replay of the chain the dashboard ran (`verified` false with `error` says
/// where it broke).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifySummary {
    /// Whether every block replayed and the supply adds up.
    pub verified: bool,
    /// The height replayed to.
    pub height: u64,
    /// Transactions replayed.
    pub txs: u64,
    /// The first problem found.
    pub error: Option<String>,
    /// Unix ms the replay finished.
    pub at_ms: u64,
    /// How long it took, ms.
    pub took_ms: u64,
}

/// `GET /v1/dashboard/stats`: the overview's figures, also streamed every second as the
/// `stats` event of `GET /v1/dashboard/events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DashboardStats {
    /// Unix ms of the snapshot.
    pub at_ms: u64,
    /// The ledger height.
    pub height: u64,
    /// Providers with a live ask.
    pub providers_online: u32,
    /// Providers the market has seen.
    pub providers_known: u32,
    /// Orders the node carries (final ones included).
    pub orders_total: u64,
    /// Orders matched, running or being verified now.
    pub running: u64,
    /// Orders waiting in escrow for a provider.
    pub waiting: u64,
    /// Orders settled in the last 60 s.
    pub settled_last_minute: u64,
    /// Orders accepted in the last 60 s.
    pub submitted_last_minute: u64,
    /// Orders settled, ever.
    pub settled_total: u64,
    /// Orders refunded, ever.
    pub refunded_total: u64,
    /// Fuel billed over every settled order (compute units sold × 10^9).
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub fuel_sold: Fuel,
    /// What buyers paid over every settled order, fee included.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub paid_total: Amount,
    /// CPU millicores reserved by running jobs over those offered by live asks (0..1).
    pub utilization: f64,
    /// CPU millicores offered by live asks.
    pub capacity_cpu_millis: u64,
    /// The spot price index per class (agora-market `PriceIndex`).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub index: Vec<agora_market::PriceIndex>,
    /// The dashboard's last replay of the chain, if one ran.
    pub last_verify: Option<VerifySummary>,
}

/// One minute of cleared trades in one class, from settled orders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PricePoint {
    /// The resource class (`cpu`, `gpu:MODEL`).
    pub class: String,
    /// Unix ms of the minute's start.
    pub minute_ms: u64,
    /// Fuel-weighted average price per CU paid in that minute.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub vwap: Price,
    /// Fuel settled in that minute.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub volume: Fuel,
    /// Orders settled in that minute.
    pub trades: u64,
}

/// `GET /v1/dashboard/reference`: the cloud price a finished job's cost is compared
/// with, as configured on the node (`AGORA_CLOUD_USD_PER_CORE_HOUR`, `AGORA_USD_PER_AGR`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReferencePrice {
    /// US dollars per vCPU-hour at the reference cloud.
    pub usd_per_core_hour: f64,
    /// US dollars per AGR, to put both on one scale.
    pub usd_per_agr: f64,
    /// Compute units per core-hour (1 CU ≈ one core-second: 3600).
    pub cu_per_core_hour: f64,
    /// The reference cloud's price per CU, in base units (rounded).
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub cloud_price_per_cu: Price,
    /// Where the figure comes from.
    pub source: String,
}

/// `POST /v1/dashboard/orders/prepare`: an order's fields, for the node to turn into the
/// bytes the buyer signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrepareOrder {
    /// The buyer's Ed25519 public key, 64 hex digits (the account it controls).
    pub public_key: String,
    /// The module's blob hash (uploaded first).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub module: Hash,
    /// Input files by hash.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub inputs: Vec<InputRef>,
    /// Arguments after the program name.
    #[serde(default)]
    pub args: Vec<String>,
    /// The most paid per CU, base units.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub max_price: Price,
    /// The fuel budget in compute units.
    pub max_cu: u64,
    /// The job's memory limit in bytes (default 128 MiB).
    pub memory_bytes: Option<u64>,
    /// Time from now to the deadline, ms (default 120 000).
    pub deadline_in_ms: Option<u64>,
    /// Distinct providers (default 1).
    pub replicas: Option<u32>,
    /// The verification policy's text form (default: the node's default policy).
    pub verify: Option<String>,
    /// Only providers whose `region` attribute equals this.
    pub region: Option<String>,
    /// A label for listings.
    #[serde(default)]
    pub label: String,
    /// The envelope nonce: a random salt that makes the order id unique, as a decimal
    /// string (JavaScript numbers cannot hold every u64).
    pub salt: String,
}

/// The answer to [`PrepareOrder`]: what to sign, what it will cost, and the same job as
/// an `agora job run` command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PreparedOrder {
    /// The buyer's account.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub account: AccountId,
    /// The id the order will have.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub order_id: Hash,
    /// Hex of the canonical `OrderRequest` body, to send back unchanged.
    pub body: String,
    /// Hex of the bytes the order signature must cover.
    pub order_message: String,
    /// The ledger nonce the escrow is signed with (the account's next).
    pub escrow_nonce: u64,
    /// Hex of the bytes the escrow signature must cover.
    pub escrow_message: String,
    /// The escrow the order locks (the worst case).
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub escrow: Amount,
    /// The deadline the body names, Unix ms.
    pub deadline_ms: u64,
    /// The buyer's spendable balance now.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub balance: Amount,
    /// The price per CU the best provider would charge now, if any matches.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub quote_price: Option<Price>,
    /// That provider.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub quote_provider: Option<AccountId>,
    /// Why nothing would match now (the market's explanation), if nothing would.
    pub no_match: Option<String>,
    /// The equivalent command line.
    pub command: String,
}

/// `POST /v1/dashboard/orders/signed`: the prepared order with the buyer's signatures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedSubmission {
    /// The buyer's public key, 64 hex digits.
    pub public_key: String,
    /// The salt the order was prepared with (decimal string).
    pub salt: String,
    /// [`PreparedOrder::body`], unchanged.
    pub body: String,
    /// [`PreparedOrder::escrow_nonce`].
    pub escrow_nonce: u64,
    /// Ed25519 signature over `order_message`, 128 hex digits.
    pub order_signature: String,
    /// Ed25519 signature over `escrow_message`, 128 hex digits.
    pub escrow_signature: String,
}
