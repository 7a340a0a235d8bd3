//! The ledger state and its commitment.
//!
//! [`State`] holds every balance, nonce, escrow, stake and used piece of slashing evidence,
//! plus the totals minted at genesis and burnt since. All maps are `BTreeMap`s so iteration
//! order, and therefore every encoding and hash, is the same on every node.
//!
//! # The state root
//!
//! [`State::state_root`] commits to all of it. Every key in the state is 32 bytes (an
//! account id or a hash), so each of the four sections (accounts, escrows, stakes,
//! evidence) is split into up to 65 536 buckets by the first two key bytes:
//!
//! ```text
//! bucket hash   = blake3("agora/state-bucket/v1" ‖ section ‖ for each entry in key order:
//!                        key ‖ len(value) as u32 LE ‖ canonical(value))
//! section root  = blake3("agora/state-section/v1" ‖ section ‖ for each non-empty bucket in order:
//!                        bucket index as u16 BE ‖ bucket hash)
//! state root    = blake3("agora/state-root/v1" ‖ minted LE ‖ burned LE ‖ the four section roots
//!                        [‖ voucher-series root ‖ voucher-holdings root])
//! ```
//!
//! The two voucher sections (keyed by series id and by [`crate::voucher::holding_key`])
//! join the root from the first minted voucher on; a chain that never minted one keeps
//! exactly the root it had before vouchers existed, so stored ledgers stay valid.
//!
//! Mutations mark their bucket dirty, so sealing a block rehashes only the buckets its
//! transactions touched: O(touched × bucket size) instead of O(state). Replay recomputes the
//! same structure from genesis in its own process, and [`State::recompute_state_root`]
//! rebuilds it from nothing, so the cache is never trusted, only reused. A key ground to
//! land in one bucket only makes that bucket slower to rehash; it cannot change a root.

use std::collections::{BTreeMap, BTreeSet};

use agora_core::hash::Hasher;
use agora_core::{AccountId, Amount, Hash, canonical};
use serde::{Deserialize, Serialize};

use crate::voucher::{VoucherHolding, VoucherSeries};

/// An account's spendable balance and the nonce its next transaction must carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Spendable base units.
    pub balance: Amount,
    /// The nonce the account's next transaction must carry (the count of its applied ones).
    pub next_nonce: u64,
}

/// Where an escrow stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EscrowStatus {
    /// Funds remain locked; releases and a refund are possible.
    Open,
    /// Everything locked was released to payees.
    Released,
    /// What remained went back to the buyer.
    Refunded,
}

/// A buyer's budget locked for one order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escrow {
    /// Who locked it and gets any refund.
    pub buyer: AccountId,
    /// How much was locked when opened.
    pub locked: Amount,
    /// How much is still locked (counted in the supply as escrow).
    pub remaining: Amount,
    /// Gross amount released so far (payees' net plus fees).
    pub released: Amount,
    /// Block timestamp (ms) from which anyone may trigger a refund.
    pub deadline_ms: u64,
    /// Whether it is still open.
    pub status: EscrowStatus,
}

/// Stake on its way out: slashable until it matures, then withdrawable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unbonding {
    /// How much.
    pub amount: Amount,
    /// The first block height at which it may be withdrawn.
    pub matures_at_height: u64,
}

/// A provider's stake.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stake {
    /// Bonded stake.
    pub bonded: Amount,
    /// Unbonding entries, oldest first.
    pub unbonding: Vec<Unbonding>,
}

impl Stake {
    /// Bonded plus unbonding: everything that can still be slashed.
    pub fn total(&self) -> Result<Amount, agora_core::AmountError> {
        Amount::sum(std::iter::once(self.bonded).chain(self.unbonding.iter().map(|u| u.amount)))
    }

    fn is_empty(&self) -> bool {
        self.bonded.is_zero() && self.unbonding.is_empty()
    }
}

/// The conservation law does not hold: a bug, never a user error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "conservation violated: minted {minted} but balances {balances} + escrow {escrow} + stakes {stakes} + voucher backing {vouchers} + burned {burned} = {total}"
)]
pub struct ConservationError {
    /// Minted at genesis.
    pub minted: u128,
    /// Σ balances.
    pub balances: u128,
    /// Σ remaining escrow.
    pub escrow: u128,
    /// Σ bonded and unbonding stake.
    pub stakes: u128,
    /// Σ voucher backing (outstanding CU × price per series).
    pub vouchers: u128,
    /// Burnt so far.
    pub burned: u128,
    /// The right-hand side.
    pub total: u128,
}

/// The supply broken down by where it sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supply {
    /// Minted at genesis.
    pub minted: Amount,
    /// Σ spendable balances.
    pub balances: Amount,
    /// Σ locked escrow.
    pub escrow: Amount,
    /// Σ bonded and unbonding stake.
    pub stakes: Amount,
    /// Σ backing locked by outstanding compute vouchers.
    pub vouchers: Amount,
    /// Burnt by slashing.
    pub burned: Amount,
}

/// The keys written or deleted since the last [`State::take_changes`], with their current
/// values (`None`: the entry no longer exists). Storage writes exactly these per block.
#[derive(Debug, Default)]
pub struct Changes {
    /// Accounts touched.
    pub accounts: Vec<(AccountId, Option<Account>)>,
    /// Escrows touched.
    pub escrows: Vec<(Hash, Option<Escrow>)>,
    /// Stakes touched.
    pub stakes: Vec<(AccountId, Option<Stake>)>,
    /// Evidence hashes newly used.
    pub evidence: Vec<Hash>,
    /// Voucher series touched.
    pub voucher_series: Vec<(Hash, Option<VoucherSeries>)>,
    /// Voucher holdings touched, by holding key.
    pub voucher_holdings: Vec<(Hash, Option<VoucherHolding>)>,
    /// The burnt total after the changes.
    pub burned: Amount,
}

/// Every balance, nonce, escrow and stake, with a cached commitment to them.
#[derive(Clone, Debug, Default)]
pub struct State {
    accounts: BTreeMap<AccountId, Account>,
    escrows: BTreeMap<Hash, Escrow>,
    stakes: BTreeMap<AccountId, Stake>,
    evidence: BTreeSet<Hash>,
    voucher_series: BTreeMap<Hash, VoucherSeries>,
    voucher_holdings: BTreeMap<Hash, VoucherHolding>,
    minted: Amount,
    burned: Amount,
    roots: RootCache,
    touched: Touched,
}

impl PartialEq for State {
    /// Equal contents; caches and change tracking are not part of a state's identity.
    fn eq(&self, other: &State) -> bool {
        self.accounts == other.accounts
            && self.escrows == other.escrows
            && self.stakes == other.stakes
            && self.evidence == other.evidence
            && self.voucher_series == other.voucher_series
            && self.voucher_holdings == other.voucher_holdings
            && self.minted == other.minted
            && self.burned == other.burned
    }
}

impl Eq for State {}

impl State {
    /// A state holding exactly these entries; zero-valued accounts and empty stakes are
    /// dropped so that equal ledgers always have equal roots. `minted` is the genesis supply.
    pub fn from_parts(
        accounts: impl IntoIterator<Item = (AccountId, Account)>,
        escrows: impl IntoIterator<Item = (Hash, Escrow)>,
        stakes: impl IntoIterator<Item = (AccountId, Stake)>,
        evidence: impl IntoIterator<Item = Hash>,
        minted: Amount,
        burned: Amount,
    ) -> State {
        State {
            accounts: accounts
                .into_iter()
                .filter(|(_, a)| *a != Account::default())
                .collect(),
            escrows: escrows.into_iter().collect(),
            stakes: stakes.into_iter().filter(|(_, s)| !s.is_empty()).collect(),
            evidence: evidence.into_iter().collect(),
            voucher_series: BTreeMap::new(),
            voucher_holdings: BTreeMap::new(),
            minted,
            burned,
            roots: RootCache::default(),
            touched: Touched::default(),
        }
    }

    /// This state with these voucher series and holdings added (as loaded from storage);
    /// empty holdings are dropped, like zero accounts.
    pub fn with_vouchers(
        mut self,
        series: impl IntoIterator<Item = (Hash, VoucherSeries)>,
        holdings: impl IntoIterator<Item = (Hash, VoucherHolding)>,
    ) -> State {
        self.voucher_series = series.into_iter().collect();
        self.voucher_holdings = holdings.into_iter().filter(|(_, h)| h.cu > 0).collect();
        self.roots = RootCache::default();
        self
    }

    /// The voucher series with this id, if any was ever minted.
    pub fn voucher_series(&self, series: &Hash) -> Option<&VoucherSeries> {
        self.voucher_series.get(series)
    }

    /// How many CU of `series` `holder` holds.
    pub fn voucher_units(&self, holder: &AccountId, series: &Hash) -> u64 {
        self.voucher_holdings
            .get(&crate::voucher::holding_key(holder, series))
            .map_or(0, |h| h.cu)
    }

    /// Every voucher series ever minted, in series-id order.
    pub fn all_voucher_series(&self) -> impl Iterator<Item = (&Hash, &VoucherSeries)> {
        self.voucher_series.iter()
    }

    /// Every non-empty voucher holding, in holding-key order.
    pub fn voucher_holdings(&self) -> impl Iterator<Item = &VoucherHolding> {
        self.voucher_holdings.values()
    }

    /// `holder`'s non-empty holdings with their series, in series-id order. Scans all
    /// holdings: fine for an API listing, not for a hot path.
    pub fn vouchers_of(&self, holder: &AccountId) -> Vec<(VoucherHolding, &VoucherSeries)> {
        let mut held: Vec<_> = self
            .voucher_holdings
            .values()
            .filter(|h| &h.holder == holder)
            .filter_map(|h| Some((*h, self.voucher_series.get(&h.series)?)))
            .collect();
        held.sort_by_key(|(h, _)| h.series);
        held
    }

    /// The account's balance and next nonce (zero for accounts never seen).
    pub fn account(&self, id: &AccountId) -> Account {
        self.accounts.get(id).copied().unwrap_or_default()
    }

    /// The account's spendable balance.
    pub fn balance(&self, id: &AccountId) -> Amount {
        self.account(id).balance
    }

    /// The nonce the account's next transaction must carry.
    pub fn next_nonce(&self, id: &AccountId) -> u64 {
        self.account(id).next_nonce
    }

    /// The escrow for `order_id`, open or closed.
    pub fn escrow(&self, order_id: &Hash) -> Option<&Escrow> {
        self.escrows.get(order_id)
    }

    /// The provider's stake, if any.
    pub fn stake(&self, id: &AccountId) -> Option<&Stake> {
        self.stakes.get(id)
    }

    /// Whether slashing evidence with this hash was already used.
    pub fn evidence_used(&self, evidence: &Hash) -> bool {
        self.evidence.contains(evidence)
    }

    /// All accounts with a balance or a nonce, in id order.
    pub fn accounts(&self) -> impl Iterator<Item = (&AccountId, &Account)> {
        self.accounts.iter()
    }

    /// All escrows ever opened, in order-id order.
    pub fn escrows(&self) -> impl Iterator<Item = (&Hash, &Escrow)> {
        self.escrows.iter()
    }

    /// All non-empty stakes, in provider order.
    pub fn stakes(&self) -> impl Iterator<Item = (&AccountId, &Stake)> {
        self.stakes.iter()
    }

    /// All used evidence hashes.
    pub fn used_evidence(&self) -> impl Iterator<Item = &Hash> {
        self.evidence.iter()
    }

    /// Minted at genesis.
    pub fn minted(&self) -> Amount {
        self.minted
    }

    /// Burnt by slashing so far.
    pub fn burned(&self) -> Amount {
        self.burned
    }

    /// Where the supply sits. Sums are exact while conservation holds; a sum that would
    /// overflow is reported by [`State::check_conservation`] instead.
    pub fn supply(&self) -> Supply {
        let (balances, escrow, stakes, vouchers) = self.sums();
        let clamp = |v: u128| Amount(u64::try_from(v).unwrap_or(u64::MAX));
        Supply {
            minted: self.minted,
            balances: clamp(balances),
            escrow: clamp(escrow),
            stakes: clamp(stakes),
            vouchers: clamp(vouchers),
            burned: self.burned,
        }
    }

    /// Checks minted = Σ balances + Σ escrow + Σ stakes (bonded and unbonding) + Σ voucher
    /// backing + burned.
    pub fn check_conservation(&self) -> Result<(), ConservationError> {
        let (balances, escrow, stakes, vouchers) = self.sums();
        let burned = self.burned.0 as u128;
        let total = balances + escrow + stakes + vouchers + burned;
        if total == self.minted.0 as u128 {
            Ok(())
        } else {
            Err(ConservationError {
                minted: self.minted.0 as u128,
                balances,
                escrow,
                stakes,
                vouchers,
                burned,
                total,
            })
        }
    }

    fn sums(&self) -> (u128, u128, u128, u128) {
        let balances = self.accounts.values().map(|a| a.balance.0 as u128).sum();
        let escrow = self.escrows.values().map(|e| e.remaining.0 as u128).sum();
        let stakes = self
            .stakes
            .values()
            .map(|s| {
                s.bonded.0 as u128 + s.unbonding.iter().map(|u| u.amount.0 as u128).sum::<u128>()
            })
            .sum();
        let vouchers = self
            .voucher_series
            .values()
            .map(VoucherSeries::backing)
            .sum();
        (balances, escrow, stakes, vouchers)
    }

    /// The state root, rehashing only buckets changed since the last call.
    pub fn state_root(&mut self) -> Hash {
        self.roots
            .refresh(&self.accounts, &self.escrows, &self.stakes, &self.evidence);
        self.roots
            .refresh_vouchers(&self.voucher_series, &self.voucher_holdings);
        self.roots.root(self.minted, self.burned)
    }

    /// The state root computed from nothing, ignoring every cache. Always equal to
    /// [`State::state_root`]; used when the cache must not be trusted.
    pub fn recompute_state_root(&self) -> Hash {
        let mut fresh = RootCache::default();
        fresh.refresh(&self.accounts, &self.escrows, &self.stakes, &self.evidence);
        fresh.refresh_vouchers(&self.voucher_series, &self.voucher_holdings);
        fresh.root(self.minted, self.burned)
    }

    /// Hands over (and forgets) the entries changed since the last call.
    pub fn take_changes(&mut self) -> Changes {
        let touched = std::mem::take(&mut self.touched);
        Changes {
            accounts: touched
                .accounts
                .into_iter()
                .map(|id| (id, self.accounts.get(&id).copied()))
                .collect(),
            escrows: touched
                .escrows
                .into_iter()
                .map(|id| (id, self.escrows.get(&id).copied()))
                .collect(),
            stakes: touched
                .stakes
                .into_iter()
                .map(|id| (id, self.stakes.get(&id).cloned()))
                .collect(),
            evidence: touched.evidence.into_iter().collect(),
            voucher_series: touched
                .voucher_series
                .into_iter()
                .map(|id| (id, self.voucher_series.get(&id).cloned()))
                .collect(),
            voucher_holdings: touched
                .voucher_holdings
                .into_iter()
                .map(|id| (id, self.voucher_holdings.get(&id).copied()))
                .collect(),
            burned: self.burned,
        }
    }

    // Mutators: the only way state changes, so the root cache and change tracking never
    // miss a write. Callers (the state machine) have validated everything beforehand.

    pub(crate) fn set_account(&mut self, id: AccountId, account: Account) {
        if account == Account::default() {
            self.accounts.remove(&id);
        } else {
            self.accounts.insert(id, account);
        }
        self.roots.accounts.mark(id.as_bytes());
        self.touched.accounts.insert(id);
    }

    pub(crate) fn set_escrow(&mut self, order_id: Hash, escrow: Escrow) {
        self.escrows.insert(order_id, escrow);
        self.roots.escrows.mark(order_id.as_bytes());
        self.touched.escrows.insert(order_id);
    }

    pub(crate) fn set_stake(&mut self, id: AccountId, stake: Stake) {
        if stake.is_empty() {
            self.stakes.remove(&id);
        } else {
            self.stakes.insert(id, stake);
        }
        self.roots.stakes.mark(id.as_bytes());
        self.touched.stakes.insert(id);
    }

    pub(crate) fn use_evidence(&mut self, evidence: Hash) {
        self.evidence.insert(evidence);
        self.roots.evidence.mark(evidence.as_bytes());
        self.touched.evidence.insert(evidence);
    }

    pub(crate) fn set_burned(&mut self, burned: Amount) {
        self.burned = burned;
    }

    pub(crate) fn set_voucher_series(&mut self, id: Hash, series: VoucherSeries) {
        self.voucher_series.insert(id, series);
        self.roots.voucher_series.mark(id.as_bytes());
        self.touched.voucher_series.insert(id);
    }

    /// Sets `holder`'s units of `series` to `cu` (zero removes the holding).
    pub(crate) fn set_voucher_units(&mut self, holder: AccountId, series: Hash, cu: u64) {
        let key = crate::voucher::holding_key(&holder, &series);
        if cu == 0 {
            self.voucher_holdings.remove(&key);
        } else {
            self.voucher_holdings
                .insert(key, VoucherHolding { holder, series, cu });
        }
        self.roots.voucher_holdings.mark(key.as_bytes());
        self.touched.voucher_holdings.insert(key);
    }
}

#[derive(Clone, Debug, Default)]
struct Touched {
    accounts: BTreeSet<AccountId>,
    escrows: BTreeSet<Hash>,
    stakes: BTreeSet<AccountId>,
    evidence: BTreeSet<Hash>,
    voucher_series: BTreeSet<Hash>,
    voucher_holdings: BTreeSet<Hash>,
}

/// A map key that is 32 bytes, so it can be bucketed by its first two.
trait Key32: Ord + Copy {
    fn bytes(&self) -> &[u8; 32];
    fn from_bytes(bytes: [u8; 32]) -> Self;
}

impl Key32 for AccountId {
    fn bytes(&self) -> &[u8; 32] {
        self.as_bytes()
    }
    fn from_bytes(bytes: [u8; 32]) -> Self {
        AccountId::from_bytes(bytes)
    }
}

impl Key32 for Hash {
    fn bytes(&self) -> &[u8; 32] {
        self.as_bytes()
    }
    fn from_bytes(bytes: [u8; 32]) -> Self {
        Hash(bytes)
    }
}

/// Something a section can hold: a map from keys to values, or a set (unit values).
trait Section {
    type Key: Key32;
    fn value_bytes(&self, key: &Self::Key) -> Option<Vec<u8>>;
    fn keys_in(&self, lo: Self::Key, hi: Self::Key) -> Vec<Self::Key>;
    fn all_keys(&self) -> Vec<Self::Key>;
}

impl<K: Key32, V: Serialize> Section for BTreeMap<K, V> {
    type Key = K;
    fn value_bytes(&self, key: &K) -> Option<Vec<u8>> {
        self.get(key).map(canonical::encode)
    }
    fn keys_in(&self, lo: K, hi: K) -> Vec<K> {
        self.range(lo..=hi).map(|(k, _)| *k).collect()
    }
    fn all_keys(&self) -> Vec<K> {
        self.keys().copied().collect()
    }
}

impl<K: Key32> Section for BTreeSet<K> {
    type Key = K;
    fn value_bytes(&self, key: &K) -> Option<Vec<u8>> {
        self.contains(key).then(Vec::new)
    }
    fn keys_in(&self, lo: K, hi: K) -> Vec<K> {
        self.range(lo..=hi).copied().collect()
    }
    fn all_keys(&self) -> Vec<K> {
        self.iter().copied().collect()
    }
}

fn bucket_of(key: &[u8; 32]) -> u16 {
    u16::from_be_bytes([key[0], key[1]])
}

/// Cached bucket hashes of one section.
#[derive(Clone, Debug)]
struct SectionCache {
    name: &'static [u8],
    buckets: BTreeMap<u16, Hash>,
    dirty: BTreeSet<u16>,
    built: bool,
}

impl SectionCache {
    fn new(name: &'static [u8]) -> SectionCache {
        SectionCache {
            name,
            buckets: BTreeMap::new(),
            dirty: BTreeSet::new(),
            built: false,
        }
    }

    fn mark(&mut self, key: &[u8; 32]) {
        if self.built {
            self.dirty.insert(bucket_of(key));
        }
    }

    fn refresh<S: Section>(&mut self, section: &S) {
        if !self.built {
            let keys = section.all_keys();
            let mut start = 0;
            while start < keys.len() {
                let bucket = bucket_of(keys[start].bytes());
                let end = start
                    + keys[start..]
                        .iter()
                        .take_while(|k| bucket_of(k.bytes()) == bucket)
                        .count();
                self.buckets
                    .insert(bucket, self.bucket_hash(section, &keys[start..end]));
                start = end;
            }
            self.built = true;
            return;
        }
        for bucket in std::mem::take(&mut self.dirty) {
            let [b0, b1] = bucket.to_be_bytes();
            let mut lo = [0u8; 32];
            let mut hi = [0xffu8; 32];
            (lo[0], lo[1], hi[0], hi[1]) = (b0, b1, b0, b1);
            let keys = section.keys_in(S::Key::from_bytes(lo), S::Key::from_bytes(hi));
            if keys.is_empty() {
                self.buckets.remove(&bucket);
            } else {
                self.buckets
                    .insert(bucket, self.bucket_hash(section, &keys));
            }
        }
    }

    fn bucket_hash<S: Section>(&self, section: &S, keys: &[S::Key]) -> Hash {
        let mut h = Hasher::new();
        h.update(b"agora/state-bucket/v1").update(self.name);
        for key in keys {
            let value = section.value_bytes(key).unwrap_or_default();
            h.update(key.bytes())
                .update(&(value.len() as u32).to_le_bytes())
                .update(&value);
        }
        h.finalize()
    }

    fn root(&self) -> Hash {
        let mut h = Hasher::new();
        h.update(b"agora/state-section/v1").update(self.name);
        for (bucket, hash) in &self.buckets {
            h.update(&bucket.to_be_bytes()).update(hash.as_bytes());
        }
        h.finalize()
    }
}

#[derive(Clone, Debug)]
struct RootCache {
    accounts: SectionCache,
    escrows: SectionCache,
    stakes: SectionCache,
    evidence: SectionCache,
    voucher_series: SectionCache,
    voucher_holdings: SectionCache,
}

impl Default for RootCache {
    fn default() -> RootCache {
        RootCache {
            accounts: SectionCache::new(b"accounts"),
            escrows: SectionCache::new(b"escrows"),
            stakes: SectionCache::new(b"stakes"),
            evidence: SectionCache::new(b"evidence"),
            voucher_series: SectionCache::new(b"voucher-series"),
            voucher_holdings: SectionCache::new(b"voucher-holdings"),
        }
    }
}

impl RootCache {
    fn refresh(
        &mut self,
        accounts: &BTreeMap<AccountId, Account>,
        escrows: &BTreeMap<Hash, Escrow>,
        stakes: &BTreeMap<AccountId, Stake>,
        evidence: &BTreeSet<Hash>,
    ) {
        self.accounts.refresh(accounts);
        self.escrows.refresh(escrows);
        self.stakes.refresh(stakes);
        self.evidence.refresh(evidence);
    }

    fn refresh_vouchers(
        &mut self,
        series: &BTreeMap<Hash, VoucherSeries>,
        holdings: &BTreeMap<Hash, VoucherHolding>,
    ) {
        self.voucher_series.refresh(series);
        self.voucher_holdings.refresh(holdings);
    }

    fn root(&self, minted: Amount, burned: Amount) -> Hash {
        let mut h = Hasher::new();
        h.update(b"agora/state-root/v1")
            .update(&minted.0.to_le_bytes())
            .update(&burned.0.to_le_bytes());
        for section in [&self.accounts, &self.escrows, &self.stakes, &self.evidence] {
            h.update(section.root().as_bytes());
        }
        // Series are never removed, so once a voucher was minted the sections stay in.
        if !self.voucher_series.buckets.is_empty() {
            for section in [&self.voucher_series, &self.voucher_holdings] {
                h.update(section.root().as_bytes());
            }
        }
        h.finalize()
    }
}
