//! Ledger transactions: what a signer can ask the ledger to do.
//!
//! A transaction is a [`Signed`] envelope around a [`TxBody`]; the envelope carries the
//! signer, the chain id and the signer's nonce, and its signature covers all of them under
//! the domain tag [`TxBody::TAG`]. Who may sign which kind is enforced by
//! [`crate::apply`], not here.

use agora_core::{AccountId, Amount, Domain, Hash, Price, Signed};
use serde::{Deserialize, Serialize};

use crate::voucher::{SignedQuote, VoucherTerms};

/// A signed ledger transaction.
pub type Tx = Signed<TxBody>;

/// The longest slash reason accepted, in bytes. Reasons are stored on chain forever, so
/// they are short explanations that point at the evidence, not the evidence itself.
pub const MAX_REASON_BYTES: usize = 256;

/// The most payees one release may name, so one transaction's work stays bounded.
pub const MAX_PAYOUTS: usize = 64;

/// What a transaction does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxBody {
    /// Moves `amount` from the signer's balance to `to`.
    Transfer {
        /// The recipient.
        to: AccountId,
        /// How much, in base units; must be positive.
        amount: Amount,
    },
    /// Locks `amount` of the signer's (the buyer's) balance for order `order_id` until it is
    /// released to providers or refunded.
    OpenEscrow {
        /// The order the budget is for; unique for the life of the chain.
        order_id: Hash,
        /// The budget; must be positive.
        amount: Amount,
        /// Block timestamp (ms) from which anyone may trigger a refund.
        deadline_ms: u64,
    },
    /// Pays out of an open escrow; market authority only. Each payout's market fee goes to
    /// the treasury (see [`crate::apply`] for the exact rule).
    ReleaseEscrow {
        /// The escrow to pay from.
        order_id: Hash,
        /// Gross amounts per payee, fee included; their sum is what leaves the escrow.
        payouts: Vec<(AccountId, Amount)>,
    },
    /// Returns what is left of an escrow to its buyer and closes it. The market authority
    /// may refund at any time; anyone may once the block timestamp reaches the deadline.
    RefundEscrow {
        /// The escrow to refund.
        order_id: Hash,
    },
    /// Burns `amount` of an open escrow; market authority only. For a forfeited
    /// challenge bond: the share nobody earned is destroyed, so a provider cannot profit
    /// from provoking challenges with a sock puppet.
    BurnEscrow {
        /// The escrow to burn from.
        order_id: Hash,
        /// How much; positive and at most what remains locked.
        amount: Amount,
    },
    /// Moves `amount` of the signer's balance into its bonded stake.
    Bond {
        /// How much to bond; must be positive.
        amount: Amount,
    },
    /// Starts unbonding `amount` of the signer's bonded stake; it becomes withdrawable
    /// `unbonding_period_blocks` blocks later and stays slashable until then.
    Unbond {
        /// How much to unbond; must be positive.
        amount: Amount,
    },
    /// Moves every matured unbonding entry of the signer back to its balance.
    Withdraw,
    /// Takes `amount` of `provider`'s stake for a proven fault; market authority only. A
    /// share (genesis `slash_beneficiary_bps`) goes to `beneficiary`, the rest is burnt.
    Slash {
        /// Whose stake.
        provider: AccountId,
        /// How much; must be positive and at most the provider's bonded plus unbonding stake.
        amount: Amount,
        /// The hash of the fault's evidence; each piece of evidence slashes once.
        evidence: Hash,
        /// A short human explanation (at most [`MAX_REASON_BYTES`] bytes).
        reason: String,
        /// Who receives the beneficiary share, typically the challenger.
        beneficiary: AccountId,
    },
    /// Locks `cu × price_per_cu` of the signer's balance as the backing of `cu` voucher
    /// units of the quote's series and credits them to the signer. The quote must be signed
    /// by the market authority and still valid (see [`crate::voucher`]).
    MintVoucher {
        /// The market authority's quote for the series' terms.
        quote: SignedQuote,
        /// How many CU to mint; must be positive.
        cu: u64,
    },
    /// Moves `cu` units of `series` from the signer to `to`, before the series expires.
    TransferVoucher {
        /// The recipient.
        to: AccountId,
        /// The series id ([`VoucherTerms::series_id`]).
        series: Hash,
        /// How many CU; must be positive and at most what the signer holds.
        cu: u64,
    },
    /// Spends `cu` of the signer's units of the series with `terms` on order `order_id`:
    /// their backing becomes that order's escrow (the signer is its buyer), which then
    /// settles like one opened by [`TxBody::OpenEscrow`]. Only inside the redeem window.
    RedeemVoucher {
        /// The series' full terms, so a node can check the order against class and price
        /// without reading the ledger.
        terms: VoucherTerms,
        /// How many CU to spend; must be positive.
        cu: u64,
        /// The order the escrow is for; unique for the life of the chain.
        order_id: Hash,
        /// The escrow's refund deadline (block time, ms).
        deadline_ms: u64,
    },
    /// Refunds every unit `holder` has of an expired `series` to the holder's balance, at the
    /// series' price. Anyone may sign it once the block time reaches the expiry.
    ExpireVoucher {
        /// Whose units.
        holder: AccountId,
        /// Which series.
        series: Hash,
    },
    /// Puts a closed auction's evidence on the ledger; market authority only, and only for
    /// an order whose escrow exists. Moves nothing: anyone holding the signed bids (the
    /// order's `GET /v1/orders/{id}/auction`) can check them against `bids_digest` and
    /// recompute the winner under the buyer-signed `terms`.
    RecordAuction {
        /// The order auctioned.
        order_id: Hash,
        /// Its buyer-signed match terms in text form (at most [`MAX_REASON_BYTES`] bytes).
        terms: String,
        /// How many bids (or Dutch acceptances) were taken.
        bids: u32,
        /// The blake3 hash of the canonical list of signed bids, in arrival order.
        bids_digest: Hash,
        /// The winner and its price per CU, if anyone won.
        winner: Option<(AccountId, Price)>,
    },
}

impl Domain for TxBody {
    const TAG: &'static str = "agora/ledger-tx/v1";
}

impl TxBody {
    /// A short lowercase name of the kind, for logs and tables.
    pub fn kind(&self) -> &'static str {
        match self {
            TxBody::Transfer { .. } => "transfer",
            TxBody::OpenEscrow { .. } => "open-escrow",
            TxBody::ReleaseEscrow { .. } => "release-escrow",
            TxBody::RefundEscrow { .. } => "refund-escrow",
            TxBody::BurnEscrow { .. } => "burn-escrow",
            TxBody::Bond { .. } => "bond",
            TxBody::Unbond { .. } => "unbond",
            TxBody::Withdraw => "withdraw",
            TxBody::Slash { .. } => "slash",
            TxBody::MintVoucher { .. } => "mint-voucher",
            TxBody::TransferVoucher { .. } => "transfer-voucher",
            TxBody::RedeemVoucher { .. } => "redeem-voucher",
            TxBody::ExpireVoucher { .. } => "expire-voucher",
            TxBody::RecordAuction { .. } => "record-auction",
        }
    }
}
