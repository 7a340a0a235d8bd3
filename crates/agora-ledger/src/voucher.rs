//! Compute vouchers: fungible, transferable claims on compute units of one resource class.
//!
//! A voucher series is fixed by its [`VoucherTerms`]: the resource class (`cpu`,
//! `gpu:<model>`), the price per CU its backing was locked at, and the window in which it
//! may be redeemed (`redeem_from_ms` ≤ block time < `expires_ms`). Every unit of one series
//! is interchangeable with every other, whoever minted it: balances are kept per
//! (holder, series) as a plain count of CU, so transfers split and merge freely. Two mints
//! with different terms are different series and never mix, because a CU locked at 3 per CU
//! is not worth a CU locked at 5.
//!
//! # Who vouches for the price
//!
//! The buyer signs the mint (it is their balance that is locked); the **market authority**
//! vouches for the price by signing a [`VoucherQuote`] for exactly these terms, valid until
//! a block time, which the mint carries. The ledger checks that quote's signature, chain,
//! signer and freshness. Without it a buyer could mint claims on "N CU" backed by one base
//! unit each and present them to providers who accepted the market's index.
//!
//! # Backing and conservation
//!
//! Minting moves `cu × price_per_cu` from the buyer's balance into the series' backing;
//! redeeming moves `cu × price_per_cu` from the backing into a new order escrow (which then
//! settles like any other escrow: the provider is paid its price × CU used, the unused rest
//! is refunded to the buyer's balance by the ordinary refund); expiring moves the holder's
//! units' backing back to the holder's balance. The backing of a series is therefore
//! always `outstanding_cu × price_per_cu`, and the ledger's conservation law counts it:
//! minted = Σ balances + Σ escrow + Σ stakes + Σ voucher backing + burned.
//!
//! # Forward purchase
//!
//! A forward purchase is a series whose `redeem_from_ms` lies after the mint: the price is
//! locked today, the CU can only be spent inside the delivery window, and whatever is not
//! spent by `expires_ms` is refunded at the locked price.

use agora_core::hash::Hasher;
use agora_core::{AccountId, Amount, Domain, Hash, Price, Signed, canonical};
use serde::{Deserialize, Serialize};

/// The longest resource-class name a voucher may carry, in bytes.
pub const MAX_CLASS_BYTES: usize = 64;

/// What one voucher series is: every unit with equal terms is interchangeable.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VoucherTerms {
    /// The resource class the units buy, as the market names it (`cpu`, `gpu:<model>`).
    pub class: String,
    /// The price per CU the backing is locked at, base units.
    pub price_per_cu: Price,
    /// Block time (ms) from which the units may be redeemed; the mint time for a plain
    /// voucher, a later date for a forward purchase.
    pub redeem_from_ms: u64,
    /// Block time (ms) from which the units can no longer be moved or redeemed, only
    /// expired (refunded to their holder).
    pub expires_ms: u64,
}

impl VoucherTerms {
    /// The series id: a hash of the terms, so equal terms always name the same series.
    pub fn series_id(&self) -> Hash {
        let mut h = Hasher::new();
        h.update(b"agora/voucher-series/v1")
            .update(&canonical::encode(self));
        h.finalize()
    }

    /// The backing of `cu` units, or `None` if it would not fit in an [`Amount`].
    pub fn backing(&self, cu: u64) -> Option<Amount> {
        self.price_per_cu.0.checked_mul(cu).map(Amount)
    }

    /// Whether the class name is one a voucher may carry: 1 to [`MAX_CLASS_BYTES`] bytes
    /// of ASCII letters, digits and `:._-`.
    pub fn class_is_well_formed(&self) -> bool {
        !self.class.is_empty()
            && self.class.len() <= MAX_CLASS_BYTES
            && self
                .class
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":._-".contains(&b))
    }
}

/// The market authority's promise that `terms` are at the market's index, valid for mints
/// in blocks up to `valid_until_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoucherQuote {
    /// The terms quoted.
    pub terms: VoucherTerms,
    /// The last block time (ms) at which a mint may use this quote.
    pub valid_until_ms: u64,
}

impl Domain for VoucherQuote {
    const TAG: &'static str = "agora/voucher-quote/v1";
}

/// A quote signed by the market authority (nonce unused: freshness is `valid_until_ms`).
pub type SignedQuote = Signed<VoucherQuote>;

/// A series in the state: its terms and how many of its units exist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoucherSeries {
    /// The terms.
    pub terms: VoucherTerms,
    /// Units minted and neither redeemed nor expired; Σ of the holdings of this series.
    pub outstanding_cu: u64,
}

impl VoucherSeries {
    /// What the outstanding units lock: `outstanding_cu × price_per_cu`.
    pub fn backing(&self) -> u128 {
        u128::from(self.outstanding_cu) * u128::from(self.terms.price_per_cu.0)
    }
}

/// One holder's units of one series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoucherHolding {
    /// Who holds them.
    pub holder: AccountId,
    /// Which series.
    pub series: Hash,
    /// How many CU.
    pub cu: u64,
}

/// The state key of `holder`'s units of `series`: a 32-byte hash, so holdings sit in the
/// bucketed state root like every other entry.
pub fn holding_key(holder: &AccountId, series: &Hash) -> Hash {
    let mut h = Hasher::new();
    h.update(b"agora/voucher-holding/v1")
        .update(holder.as_bytes())
        .update(series.as_bytes());
    h.finalize()
}
