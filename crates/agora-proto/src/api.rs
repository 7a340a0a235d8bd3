//! The market node's HTTP API records (JSON).
//!
//! State-changing requests carry signed payloads as hex of their canonical encoding
//! ([`crate::hexed`]): an order and the buyer's escrow transaction ([`SubmitOrder`]), a
//! cancellation ([`CancelRequest`]), or any ledger transaction ([`SubmitTx`]). The node
//! verifies each signature against the chain id before anything changes, so the market
//! cannot forge a buyer's order and a client cannot act for another account.
//! Blob uploads need no signature: a blob is named by its blake3 hash, which the node
//! recomputes, so an upload can only ever store the bytes that hash names.

use agora_core::{AccountId, Amount, Fuel, Hash, Price};
use serde::{Deserialize, Serialize};

use crate::order::TaskRef;
use crate::wire::OutputRef;

/// Where an order is in its life. The happy path is
/// `Escrowed → Matched → Running → Verifying → Settled`; any state before `Settled` may
/// end in `Refunded` instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum OrderState {
    /// The budget is locked in escrow; not matched yet.
    Escrowed,
    /// A provider won it and has been told.
    Matched,
    /// The provider is running it (heartbeats arrive).
    Running,
    /// The provider delivered; the market is checking the receipt and outputs.
    Verifying,
    /// Paid out; the result is available.
    Settled,
    /// The escrow went back to the buyer (no match, cancelled, failed, or past deadline).
    Refunded,
}

impl OrderState {
    /// Whether the order is over.
    pub fn is_final(self) -> bool {
        matches!(self, OrderState::Settled | OrderState::Refunded)
    }

    /// The state's name as the API writes it.
    pub fn name(self) -> &'static str {
        match self {
            OrderState::Escrowed => "escrowed",
            OrderState::Matched => "matched",
            OrderState::Running => "running",
            OrderState::Verifying => "verifying",
            OrderState::Settled => "settled",
            OrderState::Refunded => "refunded",
        }
    }
}

impl std::fmt::Display for OrderState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One step in an order's life, as streamed by `GET /v1/orders/{id}/events` (SSE, event
/// name = the state) and listed in [`OrderView::events`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderEvent {
    /// The order.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub order_id: Hash,
    /// The state entered.
    pub state: OrderState,
    /// Unix ms when it was entered.
    pub at_ms: u64,
    /// The provider involved, if any.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub provider: Option<AccountId>,
    /// Human detail: the price, the refund reason, the why-no-match explanation...
    pub detail: String,
}

/// `POST /v1/orders`: a buyer-signed order and the buyer-signed `OpenEscrow` for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmitOrder {
    /// Hex of the canonical `SignedOrder`.
    pub order: String,
    /// Hex of the canonical ledger `Tx` (an `OpenEscrow` naming the order's id).
    pub escrow_tx: String,
}

/// The answer to [`SubmitOrder`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Submitted {
    /// The order's id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub order_id: Hash,
    /// Its state after the submission (usually `escrowed` or already `matched`).
    pub state: OrderState,
    /// The ledger height that holds the escrow.
    pub escrow_height: u64,
}

/// `POST /v1/orders/{id}/cancel`: hex of a buyer-signed `CancelOrder`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CancelRequest {
    /// Hex of the canonical `Signed<CancelOrder>`.
    pub cancel: String,
}

/// `POST /v1/orders/{id}/challenge`: a signed challenge and the escrow that bonds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChallengeRequest {
    /// Hex of the canonical `Signed<ChallengeResult>`.
    pub challenge: String,
    /// Hex of the challenger's `OpenEscrow` transaction for the bond, under
    /// `challenge_bond_id(order, challenger)`.
    pub bond_tx: String,
}

/// `POST /v1/txs`: hex of any signed ledger transaction (a transfer, a provider's bond...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmitTx {
    /// Hex of the canonical `Tx`.
    pub tx: String,
}

/// The answer to [`SubmitTx`]: the block that included it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TxIncluded {
    /// The transaction's id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub tx_id: Hash,
    /// The block height that holds it.
    pub height: u64,
}

/// A finished order's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobResult {
    /// The job's exit code.
    pub exit_code: i32,
    /// Its stdout (lossy UTF-8; the exact bytes are blob `stdout_hash`).
    pub stdout: String,
    /// The hash of the exact stdout bytes, fetchable from `/v1/blobs/{hash}`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub stdout_hash: Hash,
    /// Whether stdout was cut at the job's cap.
    pub stdout_truncated: bool,
    /// Its stderr (lossy UTF-8; exact bytes are blob `stderr_hash`).
    pub stderr: String,
    /// The hash of the exact stderr bytes.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub stderr_hash: Hash,
    /// Whether stderr was cut at the job's cap.
    pub stderr_truncated: bool,
    /// Output files, each downloadable from `/v1/blobs/{hash}`.
    pub outputs: Vec<OutputRef>,
    /// The canonical result digest the receipt commits to.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub digest: Hash,
    /// Fuel billed.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub fuel_used: Fuel,
    /// The provider that ran it.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub provider: AccountId,
    /// Hex of the provider's canonical signed receipt (self-contained evidence).
    pub receipt: String,
}

/// `GET /v1/orders/{id}`: an order, its bill and its history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderView {
    /// The order's id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub order_id: Hash,
    /// The buyer.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub buyer: AccountId,
    /// The buyer's label.
    pub label: String,
    /// Its place within a multi-task job.
    pub task: Option<TaskRef>,
    /// Where it is now.
    pub state: OrderState,
    /// The price cap per CU.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub max_price: Price,
    /// The escrow locked.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub escrow: Amount,
    /// The provider that won it (the latest, after reassignments).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub provider: Option<AccountId>,
    /// The price per CU it is paid.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub price: Option<Price>,
    /// What the buyer paid (fee included); zero unless settled.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub cost: Amount,
    /// What went back to the buyer.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub refunded: Amount,
    /// Times the order was (re)assigned.
    pub attempts: u32,
    /// Unix ms the order was accepted.
    pub created_ms: u64,
    /// Submit → final state, in ms, once final.
    pub latency_ms: Option<u64>,
    /// Why it was refunded, including the why-no-match explanation.
    pub refund_reason: Option<String>,
    /// Every state it went through.
    pub events: Vec<OrderEvent>,
    /// The result, once settled.
    pub result: Option<JobResult>,
    /// How the result is being or was checked.
    pub verification: VerificationView,
}

/// How an order's result is checked: the policy, every run that delivered, the audit draw
/// and the slashes it caused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerificationView {
    /// The order's policy in its text form (`none`, `replicate:3:2`, `spot:0.2`, …).
    pub policy: String,
    /// `pending`, `unchecked` (accepted without a re-run: `none`, a spot-check not drawn,
    /// a challenge window that closed unchallenged, or no independent provider), `verified`
    /// (a quorum of distinct providers agreed), `challenged`, or `failed` (no result could
    /// be accepted; refunded).
    pub status: String,
    /// Every run that delivered a result, in delivery order.
    pub runs: Vec<RunView>,
    /// For `spot` and `adaptive`: whether the first result was drawn for a re-run.
    pub audited: Option<bool>,
    /// The market's signature (hex) over the order and the first receipt, whose hash is the
    /// audit draw's seed: anyone can check the draw with the market's key.
    pub audit_seed_signature: Option<String>,
    /// Providers slashed for a result proven wrong.
    pub slashes: Vec<SlashView>,
    /// Under `challenge`: until when (Unix ms) a challenge may be filed.
    pub challenge_until_ms: Option<u64>,
    /// Who challenged the held result, if anyone did.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub challenger: Option<AccountId>,
    /// The referee's ruling on that challenge: `provider right`, `challenger right`,
    /// `both wrong`, or why it could not be decided.
    pub ruling: Option<String>,
    /// Fuel every run claimed, summed: the work executed to check this order.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub fuel_executed: Fuel,
}

/// One run of an order that delivered a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunView {
    /// Who ran it.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub provider: AccountId,
    /// The result digest its receipt signs.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub digest: Hash,
    /// The fuel its receipt claims.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub fuel: Fuel,
    /// The price per CU it was matched at.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub price: Price,
    /// Whether it agreed with the accepted result, once one is.
    pub agreed: Option<bool>,
    /// What it was paid (gross), from the escrow or the market's verification fund.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub paid: Amount,
}

/// A slash for a proven wrong result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SlashView {
    /// Whose stake.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub provider: AccountId,
    /// How much was taken.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub amount: Amount,
    /// The evidence hash the ledger's slash transaction records.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub evidence: Hash,
    /// The evidence record itself (hex of its canonical encoding), so anyone can re-check it.
    pub evidence_record: String,
    /// Why, in words.
    pub reason: String,
}

/// `GET /v1/providers`: a provider as the market sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProviderView {
    /// Its account.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub account: AccountId,
    /// Its libp2p peer id, when connected.
    pub peer: Option<String>,
    /// Bonded stake on the ledger.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub stake: Amount,
    /// Its reputation score (0..1).
    pub reputation: f64,
    /// How much history backs the score (0..1).
    pub confidence: f64,
    /// Jobs it is running now.
    pub running: u32,
    /// Jobs it completed and was paid for.
    pub completed: u64,
    /// Jobs it failed or abandoned.
    pub failed: u64,
    /// What it has been paid (before fees).
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub earned: Amount,
    /// Unix ms of its last ask or heartbeat.
    pub last_seen_ms: u64,
    /// Results in a row accepted without a fault (adaptive verification's trust count).
    pub consecutive_verified: u32,
    /// Times it was slashed for a wrong result.
    pub slashed: u64,
    /// Its current asks.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub asks: Vec<agora_market::Ask>,
}

/// The error body every non-2xx answer carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    /// A stable, machine-readable code, e.g. `bad_signature`, `escrow_mismatch`.
    pub error: String,
    /// What was wrong and what to do about it.
    pub message: String,
}

/// `GET /v1/info`: who this market is, for clients that sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MarketInfo {
    /// The chain id every signature must name.
    pub chain_id: String,
    /// The market authority's account.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub market: AccountId,
    /// The treasury that collects fees.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub treasury: AccountId,
    /// Market fee in basis points of each payout.
    pub fee_bps: u32,
    /// Whether this chain's genesis lets provider agents run with a fault mode
    /// (`agora node provider --faulty`, test networks only). Absent from markets that
    /// predate the flag, which reads as `false`.
    #[serde(default)]
    pub allow_faulty_providers: bool,
    /// Ledger height now.
    pub height: u64,
    /// The node's libp2p addresses, for providers to dial.
    pub p2p_addrs: Vec<String>,
    /// The node's peer id.
    pub peer_id: String,
    /// The node's version.
    pub version: String,
    /// The largest blob (module, input or output) the node accepts, in bytes, so a client
    /// can refuse an oversized upload before sending it. Absent from markets that predate
    /// the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_blob_bytes: Option<u64>,
    /// Where this market's money is kept. Absent from markets that predate the field, which
    /// settle on their embedded ledger.
    // Boxed: most clients never look, and `MarketInfo` is passed around by value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement: Option<Box<SettlementInfo>>,
}

/// Where a market settles: its embedded ledger, or the `AgoraMarket` contract on an EVM
/// chain (docs/settlement-evm.md), so clients and providers can send their own
/// transactions there and read balances, escrows and stakes from the chain itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SettlementInfo {
    /// The market node's own hash-chained ledger (`/v1/blocks`, `/v1/ledger/verify`).
    Embedded,
    /// A contract on an EVM chain.
    Evm {
        /// The chain's JSON-RPC endpoint the market uses.
        rpc_url: String,
        /// The EVM chain id.
        evm_chain_id: u64,
        /// The `AgoraMarket` contract, `0x…`.
        contract: String,
        /// The ERC-20 payment token, `0x…`.
        token: String,
    },
}

/// `GET /v1/accounts/{id}`: an account on the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountView {
    /// The account.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub account: AccountId,
    /// Spendable balance.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub balance: Amount,
    /// Bonded stake.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub stake: Amount,
    /// Stake unbonding.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub unbonding: Amount,
    /// The next ledger nonce it must sign with.
    pub next_nonce: u64,
}

/// `GET /v1/vouchers/quote`: the market authority's signed price for a voucher series,
/// which a buyer puts into its `MintVoucher` (see docs/vouchers.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VoucherQuoteView {
    /// The series id the quoted terms make.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub series: Hash,
    /// The resource class.
    pub class: String,
    /// The locked price per CU, base units: the class's best live ask when quoted.
    pub price_per_cu: u64,
    /// Redeemable from this block time (ms).
    pub redeem_from_ms: u64,
    /// Expires (refundable, no longer redeemable) from this block time (ms).
    pub expires_ms: u64,
    /// The last block time (ms) at which a mint may use this quote.
    pub valid_until_ms: u64,
    /// Hex of the canonical market-signed `Signed<VoucherQuote>`.
    pub quote: String,
}

/// One line of `GET /v1/accounts/{id}/vouchers`: an account's units of one series.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VoucherView {
    /// The series id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub series: Hash,
    /// The resource class its units buy.
    pub class: String,
    /// The locked price per CU, base units.
    pub price_per_cu: u64,
    /// Redeemable from this block time (ms).
    pub redeem_from_ms: u64,
    /// Expires from this block time (ms).
    pub expires_ms: u64,
    /// Units held.
    pub cu: u64,
    /// Their backing, base units (`cu × price_per_cu`).
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub backing: Amount,
    /// `forward` (window not open yet), `redeemable` or `expired` at the node's clock.
    pub status: String,
}

/// `POST /v1/orders/{id}/bids`: hex of a provider-signed sealed `Bid`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmitBid {
    /// Hex of the canonical `Signed<Bid>`.
    pub bid: String,
}

/// `POST /v1/orders/{id}/accept`: hex of a provider-signed `DutchAccept`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmitAccept {
    /// Hex of the canonical `Signed<DutchAccept>`.
    pub accept: String,
}

/// One bid (or a Dutch acceptance) as the auction recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BidView {
    /// The bidder.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub provider: AccountId,
    /// Its price per CU.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub price: Price,
    /// When the market took it, Unix ms.
    pub at_ms: u64,
    /// Hex of the provider-signed bid or acceptance, so anyone can check it.
    pub signed: String,
}

/// The Dutch clock where it stands now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClockView {
    /// The current step (0-based).
    pub step: u32,
    /// Its price per CU.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub price: Price,
    /// When the next step comes, Unix ms.
    pub until_ms: u64,
}

/// `GET /v1/orders/{id}/auction`: an order's auction. Bids are sealed: while the window
/// is open only their count shows; after the close the whole list does, with the rule and
/// the winner, so anyone can recompute the outcome (`bids_digest` is the blake3 hash of
/// the canonical list of signed bids, the value recorded on the ledger).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuctionView {
    /// The order.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub order_id: Hash,
    /// The buyer-signed terms in their text form (`sealed:5s:first`, `dutch:…`).
    pub terms: String,
    /// `open`, `won`, `no_bids` or `abandoned`.
    pub status: String,
    /// When the auction opened, Unix ms.
    pub opened_ms: u64,
    /// When it closes (or closed), Unix ms.
    pub closes_ms: u64,
    /// How many bids it has taken.
    pub bid_count: u32,
    /// The bids, in arrival order: empty while a sealed auction is open.
    pub bids: Vec<BidView>,
    /// The Dutch clock now, while it runs.
    pub clock: Option<ClockView>,
    /// Who won.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub winner: Option<AccountId>,
    /// At what price per CU.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub price: Option<Price>,
    /// When the close (or the winning acceptance) assigned the winner, Unix ms.
    pub awarded_ms: Option<u64>,
    /// The blake3 hash of the canonical list of signed bids, after the close.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub bids_digest: Option<Hash>,
    /// What happened, in words.
    pub outcome: String,
}
