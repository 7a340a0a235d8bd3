//! The pure state machine: [`apply`] one transaction to a [`State`].
//!
//! No I/O, no clock, no randomness: the block height and timestamp come in through
//! [`BlockContext`]. Every handler validates everything first and writes only after, so a
//! transaction that fails returns a [`LedgerError`] and leaves the state exactly as it was.
//!
//! # Who may sign what
//!
//! | transaction | signer |
//! |---|---|
//! | transfer, bond, unbond, withdraw | the account itself |
//! | open escrow | the buyer (whose balance is locked) |
//! | release escrow | the market authority only |
//! | refund escrow | the market authority at any time; anyone once the block timestamp ≥ the deadline |
//! | slash | the market authority only |
//! | record auction (no money moves) | the market authority only |
//! | mint voucher | the buyer, carrying a quote signed by the market authority |
//! | transfer / redeem voucher | the holder |
//! | expire voucher | anyone once the block timestamp ≥ the series' expiry |
//!
//! # Fees and slashing shares, exactly
//!
//! - **Market fee.** For each payout line `(payee, gross)` of a release,
//!   `fee = ⌊gross × fee_bps / 10 000⌋` goes to the treasury and `gross − fee` to the payee.
//!   The escrow shrinks by `Σ gross`. The fee is per line and rounds down, in the payee's
//!   favour, so the fee on a split payout can be a few base units lower than on one line.
//! - **Slash.** `reward = ⌊amount × slash_beneficiary_bps / 10 000⌋` goes to the named
//!   beneficiary and `amount − reward` is burnt. The amount comes out of bonded stake
//!   first, then out of unbonding entries, latest-maturing first.

use std::collections::BTreeMap;

use agora_core::identity::SignatureError;
use agora_core::{AccountId, Amount, ChainId, Hash};
use serde::{Deserialize, Serialize};

use crate::genesis::Params;
use crate::state::{Account, Escrow, EscrowStatus, Stake, State, Unbonding};
use crate::tx::{MAX_PAYOUTS, MAX_REASON_BYTES, Tx, TxBody};
use crate::voucher::{SignedQuote, VoucherSeries, VoucherTerms};

/// What a transaction is applied against besides the state: the block it lands in and the
/// chain's rules.
#[derive(Clone, Copy, Debug)]
pub struct BlockContext<'a> {
    /// The chain every transaction must be signed for.
    pub chain_id: &'a ChainId,
    /// The genesis parameters.
    pub params: &'a Params,
    /// The height of the block being built or replayed.
    pub height: u64,
    /// That block's timestamp, ms since the Unix epoch.
    pub timestamp_ms: u64,
}

/// One visible consequence of a transaction, for callers to show or react to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Balance moved between accounts.
    Transferred {
        /// Payer.
        from: AccountId,
        /// Payee.
        to: AccountId,
        /// Amount moved.
        amount: Amount,
    },
    /// A buyer locked budget for an order.
    EscrowOpened {
        /// The order.
        order_id: Hash,
        /// Who locked it.
        buyer: AccountId,
        /// How much.
        amount: Amount,
        /// Refundable by anyone from this block timestamp.
        deadline_ms: u64,
    },
    /// One payout line of a release.
    EscrowReleased {
        /// The order.
        order_id: Hash,
        /// Who was paid.
        payee: AccountId,
        /// What the payee received.
        net: Amount,
        /// What went to the treasury.
        fee: Amount,
    },
    /// What remained of an escrow went back to the buyer.
    EscrowRefunded {
        /// The order.
        order_id: Hash,
        /// Who got it back.
        buyer: AccountId,
        /// How much.
        amount: Amount,
    },
    /// Part of an escrow was burnt.
    EscrowBurned {
        /// The escrow.
        order_id: Hash,
        /// How much.
        amount: Amount,
    },
    /// Balance moved into bonded stake.
    Bonded {
        /// The provider.
        account: AccountId,
        /// How much.
        amount: Amount,
    },
    /// Bonded stake started unbonding.
    Unbonding {
        /// The provider.
        account: AccountId,
        /// How much.
        amount: Amount,
        /// When it can be withdrawn.
        matures_at_height: u64,
    },
    /// Matured unbonding stake went back to the balance.
    Withdrawn {
        /// The provider.
        account: AccountId,
        /// How much.
        amount: Amount,
    },
    /// A provider's stake was slashed.
    Slashed {
        /// Whose stake.
        provider: AccountId,
        /// How much in total.
        amount: Amount,
        /// Who received the reward.
        beneficiary: AccountId,
        /// The beneficiary's share.
        reward: Amount,
        /// The burnt rest.
        burned: Amount,
        /// The evidence hash.
        evidence: Hash,
        /// Why.
        reason: String,
    },
    /// Voucher units were minted against locked backing.
    VoucherMinted {
        /// Who holds them.
        holder: AccountId,
        /// The series.
        series: Hash,
        /// How many CU.
        cu: u64,
        /// What was locked from the holder's balance.
        backing: Amount,
    },
    /// Voucher units changed hands.
    VoucherTransferred {
        /// From.
        from: AccountId,
        /// To.
        to: AccountId,
        /// The series.
        series: Hash,
        /// How many CU.
        cu: u64,
    },
    /// Voucher units were spent on an order: their backing became its escrow.
    VoucherRedeemed {
        /// Who spent them (the order's buyer).
        holder: AccountId,
        /// The series.
        series: Hash,
        /// How many CU.
        cu: u64,
        /// The order whose escrow was opened.
        order_id: Hash,
        /// The escrow's amount.
        amount: Amount,
    },
    /// Expired voucher units were refunded to their holder.
    VoucherExpired {
        /// The holder.
        holder: AccountId,
        /// The series.
        series: Hash,
        /// How many CU expired.
        cu: u64,
        /// What went back to the holder's balance.
        refund: Amount,
    },
}

/// Everything a successful transaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effects {
    /// The events, in the order they happened.
    pub events: Vec<Event>,
}

/// Why a transaction was refused. The state is unchanged whenever one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The signature does not match the envelope.
    #[error("bad signature from {signer}: {source}")]
    BadSignature {
        /// The claimed signer.
        signer: AccountId,
        /// What was wrong.
        source: SignatureError,
    },
    /// Signed for another network.
    #[error("transaction signed for chain {found:?} but this chain is {expected:?}")]
    WrongChain {
        /// This chain.
        expected: ChainId,
        /// The envelope's chain.
        found: ChainId,
    },
    /// A nonce that was already used: a replay.
    #[error("nonce {found} of {signer} was already used; the next nonce is {expected}")]
    NonceReused {
        /// The signer.
        signer: AccountId,
        /// The account's next nonce.
        expected: u64,
        /// The transaction's nonce.
        found: u64,
    },
    /// A nonce beyond the next one: a transaction is missing before this one.
    #[error("nonce {found} of {signer} skips ahead; submit nonce {expected} first")]
    NonceSkipped {
        /// The signer.
        signer: AccountId,
        /// The account's next nonce.
        expected: u64,
        /// The transaction's nonce.
        found: u64,
    },
    /// The account has used every nonce.
    #[error("account {0} has used every nonce")]
    NonceExhausted(AccountId),
    /// An amount of zero where a positive one is needed.
    #[error("{what} must be positive")]
    ZeroAmount {
        /// Which amount.
        what: &'static str,
    },
    /// Not enough spendable balance.
    #[error("{account} has {have} but needs {need}")]
    InsufficientBalance {
        /// The account.
        account: AccountId,
        /// Its balance.
        have: Amount,
        /// What the transaction needs.
        need: Amount,
    },
    /// No escrow for this order.
    #[error("no escrow for order {0}")]
    UnknownEscrow(Hash),
    /// An escrow for this order was already opened (order ids are never reused).
    #[error("an escrow for order {0} already exists; order ids are never reused")]
    EscrowExists(Hash),
    /// The escrow is no longer open: released in full or refunded.
    #[error(
        "escrow for order {order_id} is closed ({status:?}); nothing is left to release or refund"
    )]
    EscrowClosed {
        /// The order.
        order_id: Hash,
        /// How it closed.
        status: EscrowStatus,
    },
    /// A release asking for more than the escrow still holds.
    #[error(
        "release of {requested} from order {order_id} exceeds the {remaining} that remain locked"
    )]
    ReleaseExceedsEscrow {
        /// The order.
        order_id: Hash,
        /// What remains locked.
        remaining: Amount,
        /// The sum of the payouts.
        requested: Amount,
    },
    /// A release with no payouts.
    #[error("a release must name at least one payout")]
    NoPayouts,
    /// A release with too many payouts.
    #[error("a release names {count} payouts; at most {max} are allowed")]
    TooManyPayouts {
        /// How many were named.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// An escrow deadline that is not after the block's timestamp.
    #[error("escrow deadline {deadline_ms} ms is not after the block timestamp {now_ms} ms")]
    DeadlineNotInFuture {
        /// The requested deadline.
        deadline_ms: u64,
        /// The block timestamp.
        now_ms: u64,
    },
    /// A refund by someone other than the market before the deadline.
    #[error(
        "only the market authority may refund before the deadline {deadline_ms} ms (block time {now_ms} ms)"
    )]
    DeadlineNotReached {
        /// The escrow's deadline.
        deadline_ms: u64,
        /// The block timestamp.
        now_ms: u64,
    },
    /// The signer may not do this.
    #[error("{signer} may not {action}; only {allowed} may")]
    Unauthorized {
        /// Who signed.
        signer: AccountId,
        /// What was attempted.
        action: &'static str,
        /// Who may.
        allowed: AccountId,
    },
    /// Unbonding more than is bonded.
    #[error("{account} cannot unbond {requested}: only {bonded} is bonded")]
    UnbondExceedsBonded {
        /// The provider.
        account: AccountId,
        /// Bonded stake.
        bonded: Amount,
        /// Requested.
        requested: Amount,
    },
    /// A withdrawal with no unbonding stake at all.
    #[error("{0} has no unbonding stake to withdraw")]
    NothingToWithdraw(AccountId),
    /// A withdrawal before any unbonding entry matured.
    #[error(
        "unbonding stake of {account} matures at height {matures_at_height}; this is height {height}"
    )]
    UnbondingNotMatured {
        /// The provider.
        account: AccountId,
        /// The earliest maturity.
        matures_at_height: u64,
        /// The current block height.
        height: u64,
    },
    /// Slashing more than the provider's bonded plus unbonding stake.
    #[error("cannot slash {requested} from {provider}: its stake is {stake}")]
    SlashExceedsStake {
        /// The provider.
        provider: AccountId,
        /// Bonded plus unbonding.
        stake: Amount,
        /// Requested.
        requested: Amount,
    },
    /// Evidence that already slashed once.
    #[error("evidence {0} was already used to slash; each fault is punished once")]
    EvidenceAlreadyUsed(Hash),
    /// A slash reason that is too long.
    #[error("slash reason is {len} bytes; at most {max} are allowed")]
    ReasonTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A sum or height that would not fit in 64 bits.
    #[error("arithmetic overflow in {0}")]
    Overflow(&'static str),
    /// A voucher quote not signed by the market authority.
    #[error(
        "the voucher quote is signed by {signer}; only the market authority {market} may vouch for a price"
    )]
    QuoteNotByMarket {
        /// Who signed the quote.
        signer: AccountId,
        /// The market authority.
        market: AccountId,
    },
    /// A voucher quote whose signature or chain does not check out.
    #[error("the voucher quote does not verify: {0}; ask the market for a fresh quote")]
    QuoteInvalid(String),
    /// A voucher quote used after its validity.
    #[error(
        "the voucher quote was valid until {valid_until_ms} ms; block time is {now_ms} ms; ask the market for a fresh quote"
    )]
    QuoteExpired {
        /// Its last valid block time.
        valid_until_ms: u64,
        /// The block timestamp.
        now_ms: u64,
    },
    /// A voucher class name that is empty, too long or has odd characters.
    #[error(
        "voucher class {0:?} is not a resource class name (1-64 bytes of letters, digits and `:._-`, e.g. `cpu`)"
    )]
    BadVoucherClass(String),
    /// Voucher terms whose window is empty or already over, or whose price is zero.
    #[error(
        "voucher terms are unusable: price {price} per CU, redeemable from {redeem_from_ms} ms until {expires_ms} ms, block time {now_ms} ms; the price must be positive and the expiry after both the block time and the window's start"
    )]
    BadVoucherTerms {
        /// The price per CU.
        price: u64,
        /// Start of the redeem window.
        redeem_from_ms: u64,
        /// Expiry.
        expires_ms: u64,
        /// The block timestamp.
        now_ms: u64,
    },
    /// No voucher of this series was ever minted.
    #[error("no voucher series {0} exists")]
    UnknownVoucherSeries(Hash),
    /// Spending or sending more voucher units than held.
    #[error("{holder} holds {have} CU of voucher series {series} but needs {need}")]
    InsufficientVouchers {
        /// The holder.
        holder: AccountId,
        /// The series.
        series: Hash,
        /// What it holds.
        have: u64,
        /// What the transaction needs.
        need: u64,
    },
    /// Moving or redeeming units of an expired series.
    #[error(
        "voucher series {series} expired at {expires_ms} ms (block time {now_ms} ms); it can only be refunded with an expire-voucher transaction"
    )]
    VoucherExpired {
        /// The series.
        series: Hash,
        /// Its expiry.
        expires_ms: u64,
        /// The block timestamp.
        now_ms: u64,
    },
    /// Redeeming a forward voucher before its delivery window opens.
    #[error(
        "voucher series {series} is redeemable from {redeem_from_ms} ms; block time is {now_ms} ms"
    )]
    VoucherNotYetRedeemable {
        /// The series.
        series: Hash,
        /// Start of the window.
        redeem_from_ms: u64,
        /// The block timestamp.
        now_ms: u64,
    },
    /// Expiring units before the series' expiry.
    #[error("voucher series {series} expires at {expires_ms} ms; block time is {now_ms} ms")]
    VoucherNotExpired {
        /// The series.
        series: Hash,
        /// Its expiry.
        expires_ms: u64,
        /// The block timestamp.
        now_ms: u64,
    },
}

/// A transaction whose signature was checked (singly or in a batch). Only this crate
/// makes them, so [`apply_verified`] cannot be handed an unchecked transaction.
#[derive(Clone, Copy, Debug)]
pub struct SignatureChecked<'a>(&'a Tx);

impl<'a> SignatureChecked<'a> {
    /// Vouches for `tx`'s signature; only called after verifying it.
    pub(crate) fn vouch(tx: &'a Tx) -> SignatureChecked<'a> {
        SignatureChecked(tx)
    }

    /// The transaction.
    pub fn tx(&self) -> &'a Tx {
        self.0
    }
}

/// Checks `tx`'s chain id and signature, then applies it. On error the state is unchanged.
pub fn apply(state: &mut State, tx: &Tx, ctx: &BlockContext) -> Result<Effects, LedgerError> {
    check_chain(tx, ctx)?;
    check_signature(tx)?;
    apply_verified(state, SignatureChecked::vouch(tx), ctx)
}

/// Checks the signature of one transaction on its own (strict ed25519).
pub fn check_signature(tx: &Tx) -> Result<(), LedgerError> {
    tx.signer
        .verify(&tx.signing_bytes(), &tx.signature)
        .map_err(|source| LedgerError::BadSignature {
            signer: tx.signer,
            source,
        })
}

/// Applies a transaction whose signature was already checked. On error the state is
/// unchanged.
pub fn apply_verified(
    state: &mut State,
    tx: SignatureChecked,
    ctx: &BlockContext,
) -> Result<Effects, LedgerError> {
    let tx = tx.tx();
    check_chain(tx, ctx)?;
    check_nonce(tx.signer, state.next_nonce(&tx.signer), tx.nonce)?;
    apply_body_as(state, tx.signer, &tx.body, ctx)
}

/// Applies `body` as `signer`'s next transaction **without an envelope**: no chain id, no
/// signature, no nonce to check (the signer's nonce still advances). Every rule of the body
/// itself — who may do what, balances, escrow, fees, stake and slashing shares — is the one
/// [`apply`] enforces; [`apply`] runs exactly this after its envelope checks.
///
/// This is for deterministic simulations and tests that apply millions of bodies whose
/// signers are the simulation's own parties, where ed25519 would dominate the run time.
/// Never feed it external input: nothing here proves that `signer` asked for `body`.
/// On error the state is unchanged.
pub fn apply_unsigned(
    state: &mut State,
    signer: AccountId,
    body: &TxBody,
    ctx: &BlockContext,
) -> Result<Effects, LedgerError> {
    apply_body_as(state, signer, body, ctx)
}

/// The body's rules, shared by the signed and the unsigned path.
fn apply_body_as(
    state: &mut State,
    signer: AccountId,
    body: &TxBody,
    ctx: &BlockContext,
) -> Result<Effects, LedgerError> {
    let account = state.account(&signer);
    let next_nonce = account
        .next_nonce
        .checked_add(1)
        .ok_or(LedgerError::NonceExhausted(signer))?;
    let events = match body {
        TxBody::Transfer { to, amount } => transfer(state, signer, *to, *amount)?,
        TxBody::OpenEscrow {
            order_id,
            amount,
            deadline_ms,
        } => open_escrow(state, ctx, signer, *order_id, *amount, *deadline_ms)?,
        TxBody::ReleaseEscrow { order_id, payouts } => {
            release_escrow(state, ctx, signer, *order_id, payouts)?
        }
        TxBody::RefundEscrow { order_id } => refund_escrow(state, ctx, signer, *order_id)?,
        TxBody::BurnEscrow { order_id, amount } => {
            burn_escrow(state, ctx, signer, *order_id, *amount)?
        }
        TxBody::Bond { amount } => bond(state, signer, *amount)?,
        TxBody::Unbond { amount } => unbond(state, ctx, signer, *amount)?,
        TxBody::Withdraw => withdraw(state, ctx, signer)?,
        TxBody::Slash {
            provider,
            amount,
            evidence,
            reason,
            beneficiary,
        } => slash(
            state,
            ctx,
            signer,
            SlashOrder {
                provider: *provider,
                amount: *amount,
                evidence: *evidence,
                reason,
                beneficiary: *beneficiary,
            },
        )?,
        TxBody::MintVoucher { quote, cu } => mint_voucher(state, ctx, signer, quote, *cu)?,
        TxBody::TransferVoucher { to, series, cu } => {
            transfer_voucher(state, ctx, signer, *to, *series, *cu)?
        }
        TxBody::RedeemVoucher {
            terms,
            cu,
            order_id,
            deadline_ms,
        } => redeem_voucher(
            state,
            ctx,
            signer,
            Redemption {
                terms,
                cu: *cu,
                order_id: *order_id,
                deadline_ms: *deadline_ms,
            },
        )?,
        TxBody::ExpireVoucher { holder, series } => expire_voucher(state, ctx, *holder, *series)?,
        TxBody::RecordAuction {
            order_id, terms, ..
        } => record_auction(state, ctx, signer, *order_id, terms)?,
    };
    // The body succeeded; bumping the nonce cannot fail any more.
    let after = state.account(&signer);
    state.set_account(
        signer,
        Account {
            next_nonce,
            ..after
        },
    );
    Ok(Effects { events })
}

fn check_chain(tx: &Tx, ctx: &BlockContext) -> Result<(), LedgerError> {
    if &tx.chain_id != ctx.chain_id {
        return Err(LedgerError::WrongChain {
            expected: ctx.chain_id.clone(),
            found: tx.chain_id.clone(),
        });
    }
    Ok(())
}

fn check_nonce(signer: AccountId, expected: u64, found: u64) -> Result<(), LedgerError> {
    match found.cmp(&expected) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(LedgerError::NonceReused {
            signer,
            expected,
            found,
        }),
        std::cmp::Ordering::Greater => Err(LedgerError::NonceSkipped {
            signer,
            expected,
            found,
        }),
    }
}

fn require_positive(amount: Amount, what: &'static str) -> Result<(), LedgerError> {
    if amount.is_zero() {
        Err(LedgerError::ZeroAmount { what })
    } else {
        Ok(())
    }
}

fn require_authority(
    ctx: &BlockContext,
    signer: AccountId,
    action: &'static str,
) -> Result<(), LedgerError> {
    let allowed = ctx.params.market_authority;
    if signer == allowed {
        Ok(())
    } else {
        Err(LedgerError::Unauthorized {
            signer,
            action,
            allowed,
        })
    }
}

/// The balance left after taking `need` from `account`, or the overdraft error.
fn debit(state: &State, account: AccountId, need: Amount) -> Result<Account, LedgerError> {
    let current = state.account(&account);
    let balance =
        current
            .balance
            .checked_sub(need)
            .map_err(|_| LedgerError::InsufficientBalance {
                account,
                have: current.balance,
                need,
            })?;
    Ok(Account { balance, ..current })
}

/// New account values after crediting each amount; computed in full before any write so a
/// failure leaves nothing half-done.
fn credits(
    state: &State,
    credits: &BTreeMap<AccountId, Amount>,
) -> Result<Vec<(AccountId, Account)>, LedgerError> {
    credits
        .iter()
        .map(|(id, amount)| {
            let current = state.account(id);
            let balance = current
                .balance
                .checked_add(*amount)
                .map_err(|_| LedgerError::Overflow("a balance"))?;
            Ok((*id, Account { balance, ..current }))
        })
        .collect()
}

fn add_to(
    map: &mut BTreeMap<AccountId, Amount>,
    id: AccountId,
    amount: Amount,
) -> Result<(), LedgerError> {
    let entry = map.entry(id).or_default();
    *entry = entry
        .checked_add(amount)
        .map_err(|_| LedgerError::Overflow("a credit"))?;
    Ok(())
}

fn transfer(
    state: &mut State,
    from: AccountId,
    to: AccountId,
    amount: Amount,
) -> Result<Vec<Event>, LedgerError> {
    require_positive(amount, "a transfer amount")?;
    let payer = debit(state, from, amount)?;
    if from != to {
        let payee = credits(state, &BTreeMap::from([(to, amount)]))?;
        state.set_account(from, payer);
        for (id, account) in payee {
            state.set_account(id, account);
        }
    }
    Ok(vec![Event::Transferred { from, to, amount }])
}

fn open_escrow(
    state: &mut State,
    ctx: &BlockContext,
    buyer: AccountId,
    order_id: Hash,
    amount: Amount,
    deadline_ms: u64,
) -> Result<Vec<Event>, LedgerError> {
    require_positive(amount, "an escrow amount")?;
    if state.escrow(&order_id).is_some() {
        return Err(LedgerError::EscrowExists(order_id));
    }
    if deadline_ms <= ctx.timestamp_ms {
        return Err(LedgerError::DeadlineNotInFuture {
            deadline_ms,
            now_ms: ctx.timestamp_ms,
        });
    }
    let payer = debit(state, buyer, amount)?;
    state.set_account(buyer, payer);
    state.set_escrow(
        order_id,
        Escrow {
            buyer,
            locked: amount,
            remaining: amount,
            released: Amount::ZERO,
            deadline_ms,
            status: EscrowStatus::Open,
        },
    );
    Ok(vec![Event::EscrowOpened {
        order_id,
        buyer,
        amount,
        deadline_ms,
    }])
}

/// Checks an auction record: the market authority's, for a known escrow, with bounded
/// terms. It changes no balance, escrow or stake.
fn record_auction(
    state: &State,
    ctx: &BlockContext,
    signer: AccountId,
    order_id: Hash,
    terms: &str,
) -> Result<Vec<Event>, LedgerError> {
    require_authority(ctx, signer, "record an auction")?;
    if terms.len() > MAX_REASON_BYTES {
        return Err(LedgerError::ReasonTooLong {
            len: terms.len(),
            max: MAX_REASON_BYTES,
        });
    }
    state
        .escrow(&order_id)
        .ok_or(LedgerError::UnknownEscrow(order_id))?;
    Ok(Vec::new())
}

/// The open escrow for `order_id`, or why there is none.
fn open_escrow_of(state: &State, order_id: Hash) -> Result<Escrow, LedgerError> {
    let escrow = *state
        .escrow(&order_id)
        .ok_or(LedgerError::UnknownEscrow(order_id))?;
    if escrow.status != EscrowStatus::Open {
        return Err(LedgerError::EscrowClosed {
            order_id,
            status: escrow.status,
        });
    }
    Ok(escrow)
}

fn release_escrow(
    state: &mut State,
    ctx: &BlockContext,
    signer: AccountId,
    order_id: Hash,
    payouts: &[(AccountId, Amount)],
) -> Result<Vec<Event>, LedgerError> {
    require_authority(ctx, signer, "release escrow")?;
    if payouts.is_empty() {
        return Err(LedgerError::NoPayouts);
    }
    if payouts.len() > MAX_PAYOUTS {
        return Err(LedgerError::TooManyPayouts {
            count: payouts.len(),
            max: MAX_PAYOUTS,
        });
    }
    for (_, amount) in payouts {
        require_positive(*amount, "a payout amount")?;
    }
    let escrow = open_escrow_of(state, order_id)?;
    let requested = Amount::sum(payouts.iter().map(|(_, a)| *a))
        .map_err(|_| LedgerError::Overflow("the payout total"))?;
    let remaining =
        escrow
            .remaining
            .checked_sub(requested)
            .map_err(|_| LedgerError::ReleaseExceedsEscrow {
                order_id,
                remaining: escrow.remaining,
                requested,
            })?;

    let mut to_credit = BTreeMap::new();
    let mut events = Vec::with_capacity(payouts.len());
    for (payee, gross) in payouts {
        let fee = gross.basis_points(ctx.params.fee_bps);
        let net = gross
            .checked_sub(fee)
            .map_err(|_| LedgerError::Overflow("a fee"))?;
        add_to(&mut to_credit, *payee, net)?;
        add_to(&mut to_credit, ctx.params.treasury, fee)?;
        events.push(Event::EscrowReleased {
            order_id,
            payee: *payee,
            net,
            fee,
        });
    }
    let credited = credits(state, &to_credit)?;
    let released = escrow
        .released
        .checked_add(requested)
        .map_err(|_| LedgerError::Overflow("the released total"))?;

    let status = if remaining.is_zero() {
        EscrowStatus::Released
    } else {
        EscrowStatus::Open
    };
    state.set_escrow(
        order_id,
        Escrow {
            remaining,
            released,
            status,
            ..escrow
        },
    );
    for (id, account) in credited {
        state.set_account(id, account);
    }
    Ok(events)
}

fn refund_escrow(
    state: &mut State,
    ctx: &BlockContext,
    signer: AccountId,
    order_id: Hash,
) -> Result<Vec<Event>, LedgerError> {
    let escrow = open_escrow_of(state, order_id)?;
    let by_authority = signer == ctx.params.market_authority;
    if !by_authority && ctx.timestamp_ms < escrow.deadline_ms {
        return Err(LedgerError::DeadlineNotReached {
            deadline_ms: escrow.deadline_ms,
            now_ms: ctx.timestamp_ms,
        });
    }
    let amount = escrow.remaining;
    let credited = credits(state, &BTreeMap::from([(escrow.buyer, amount)]))?;
    state.set_escrow(
        order_id,
        Escrow {
            remaining: Amount::ZERO,
            status: EscrowStatus::Refunded,
            ..escrow
        },
    );
    for (id, account) in credited {
        state.set_account(id, account);
    }
    Ok(vec![Event::EscrowRefunded {
        order_id,
        buyer: escrow.buyer,
        amount,
    }])
}

fn burn_escrow(
    state: &mut State,
    ctx: &BlockContext,
    signer: AccountId,
    order_id: Hash,
    amount: Amount,
) -> Result<Vec<Event>, LedgerError> {
    require_authority(ctx, signer, "burn escrow")?;
    require_positive(amount, "a burn amount")?;
    let escrow = open_escrow_of(state, order_id)?;
    let remaining =
        escrow
            .remaining
            .checked_sub(amount)
            .map_err(|_| LedgerError::ReleaseExceedsEscrow {
                order_id,
                remaining: escrow.remaining,
                requested: amount,
            })?;
    let burned = state
        .burned()
        .checked_add(amount)
        .map_err(|_| LedgerError::Overflow("the burnt total"))?;
    let status = if remaining.is_zero() {
        EscrowStatus::Released
    } else {
        EscrowStatus::Open
    };
    state.set_escrow(
        order_id,
        Escrow {
            remaining,
            status,
            ..escrow
        },
    );
    state.set_burned(burned);
    Ok(vec![Event::EscrowBurned { order_id, amount }])
}

fn bond(state: &mut State, account: AccountId, amount: Amount) -> Result<Vec<Event>, LedgerError> {
    require_positive(amount, "a bond amount")?;
    let payer = debit(state, account, amount)?;
    let mut stake = state.stake(&account).cloned().unwrap_or_default();
    stake.bonded = stake
        .bonded
        .checked_add(amount)
        .map_err(|_| LedgerError::Overflow("bonded stake"))?;
    state.set_account(account, payer);
    state.set_stake(account, stake);
    Ok(vec![Event::Bonded { account, amount }])
}

fn unbond(
    state: &mut State,
    ctx: &BlockContext,
    account: AccountId,
    amount: Amount,
) -> Result<Vec<Event>, LedgerError> {
    require_positive(amount, "an unbond amount")?;
    let mut stake = state.stake(&account).cloned().unwrap_or_default();
    stake.bonded =
        stake
            .bonded
            .checked_sub(amount)
            .map_err(|_| LedgerError::UnbondExceedsBonded {
                account,
                bonded: stake.bonded,
                requested: amount,
            })?;
    let matures_at_height = ctx
        .height
        .checked_add(ctx.params.unbonding_period_blocks)
        .ok_or(LedgerError::Overflow("the unbonding height"))?;
    // Entries maturing at the same height merge, which keeps the list one per block.
    match stake.unbonding.last_mut() {
        Some(last) if last.matures_at_height == matures_at_height => {
            last.amount = last
                .amount
                .checked_add(amount)
                .map_err(|_| LedgerError::Overflow("unbonding stake"))?;
        }
        _ => stake.unbonding.push(Unbonding {
            amount,
            matures_at_height,
        }),
    }
    state.set_stake(account, stake);
    Ok(vec![Event::Unbonding {
        account,
        amount,
        matures_at_height,
    }])
}

fn withdraw(
    state: &mut State,
    ctx: &BlockContext,
    account: AccountId,
) -> Result<Vec<Event>, LedgerError> {
    let stake = state.stake(&account).cloned().unwrap_or_default();
    let (matured, pending): (Vec<Unbonding>, Vec<Unbonding>) = stake
        .unbonding
        .iter()
        .partition(|u| u.matures_at_height <= ctx.height);
    if matured.is_empty() {
        return Err(match pending.iter().map(|u| u.matures_at_height).min() {
            Some(matures_at_height) => LedgerError::UnbondingNotMatured {
                account,
                matures_at_height,
                height: ctx.height,
            },
            None => LedgerError::NothingToWithdraw(account),
        });
    }
    let amount = Amount::sum(matured.iter().map(|u| u.amount))
        .map_err(|_| LedgerError::Overflow("the withdrawal"))?;
    let credited = credits(state, &BTreeMap::from([(account, amount)]))?;
    state.set_stake(
        account,
        Stake {
            bonded: stake.bonded,
            unbonding: pending,
        },
    );
    for (id, acc) in credited {
        state.set_account(id, acc);
    }
    Ok(vec![Event::Withdrawn { account, amount }])
}

struct SlashOrder<'a> {
    provider: AccountId,
    amount: Amount,
    evidence: Hash,
    reason: &'a str,
    beneficiary: AccountId,
}

fn slash(
    state: &mut State,
    ctx: &BlockContext,
    signer: AccountId,
    order: SlashOrder,
) -> Result<Vec<Event>, LedgerError> {
    require_authority(ctx, signer, "slash")?;
    let SlashOrder {
        provider,
        amount,
        evidence,
        reason,
        beneficiary,
    } = order;
    require_positive(amount, "a slash amount")?;
    if reason.len() > MAX_REASON_BYTES {
        return Err(LedgerError::ReasonTooLong {
            len: reason.len(),
            max: MAX_REASON_BYTES,
        });
    }
    if state.evidence_used(&evidence) {
        return Err(LedgerError::EvidenceAlreadyUsed(evidence));
    }
    let stake = state.stake(&provider).cloned().unwrap_or_default();
    let total = stake
        .total()
        .map_err(|_| LedgerError::Overflow("a stake"))?;
    if amount > total {
        return Err(LedgerError::SlashExceedsStake {
            provider,
            stake: total,
            requested: amount,
        });
    }
    let stake = take_from_stake(stake, amount);
    let reward = amount.basis_points(ctx.params.slash_beneficiary_bps);
    let burned = amount
        .checked_sub(reward)
        .map_err(|_| LedgerError::Overflow("a slash share"))?;
    let credited = credits(state, &BTreeMap::from([(beneficiary, reward)]))?;
    let burned_total = state
        .burned()
        .checked_add(burned)
        .map_err(|_| LedgerError::Overflow("the burnt total"))?;

    state.set_stake(provider, stake);
    if !reward.is_zero() {
        for (id, account) in credited {
            state.set_account(id, account);
        }
    }
    state.set_burned(burned_total);
    state.use_evidence(evidence);
    Ok(vec![Event::Slashed {
        provider,
        amount,
        beneficiary,
        reward,
        burned,
        evidence,
        reason: reason.to_owned(),
    }])
}

/// `stake` less `amount` (which must not exceed its total): bonded first, then unbonding
/// entries from the latest-maturing back.
fn take_from_stake(mut stake: Stake, amount: Amount) -> Stake {
    let from_bonded = amount.min(stake.bonded);
    stake.bonded = Amount(stake.bonded.0 - from_bonded.0);
    let mut left = amount.0 - from_bonded.0;
    while left > 0 {
        let Some(last) = stake.unbonding.last_mut() else {
            break;
        };
        let take = left.min(last.amount.0);
        last.amount = Amount(last.amount.0 - take);
        left -= take;
        if last.amount.is_zero() {
            stake.unbonding.pop();
        }
    }
    stake
}

fn require_units(cu: u64) -> Result<(), LedgerError> {
    if cu == 0 {
        Err(LedgerError::ZeroAmount {
            what: "a voucher CU count",
        })
    } else {
        Ok(())
    }
}

/// Checks that the market authority signed `quote` for this chain and that it is still
/// valid in this block.
fn check_quote(ctx: &BlockContext, quote: &SignedQuote) -> Result<(), LedgerError> {
    let market = ctx.params.market_authority;
    if quote.signer != market {
        return Err(LedgerError::QuoteNotByMarket {
            signer: quote.signer,
            market,
        });
    }
    quote
        .verify(ctx.chain_id)
        .map_err(|e| LedgerError::QuoteInvalid(e.to_string()))?;
    if ctx.timestamp_ms > quote.body.valid_until_ms {
        return Err(LedgerError::QuoteExpired {
            valid_until_ms: quote.body.valid_until_ms,
            now_ms: ctx.timestamp_ms,
        });
    }
    Ok(())
}

fn check_terms(ctx: &BlockContext, terms: &VoucherTerms) -> Result<(), LedgerError> {
    if !terms.class_is_well_formed() {
        return Err(LedgerError::BadVoucherClass(terms.class.clone()));
    }
    if terms.price_per_cu.0 == 0
        || terms.expires_ms <= ctx.timestamp_ms
        || terms.expires_ms <= terms.redeem_from_ms
    {
        return Err(LedgerError::BadVoucherTerms {
            price: terms.price_per_cu.0,
            redeem_from_ms: terms.redeem_from_ms,
            expires_ms: terms.expires_ms,
            now_ms: ctx.timestamp_ms,
        });
    }
    Ok(())
}

/// The series, refused if unknown or expired at this block.
fn live_series(ctx: &BlockContext, state: &State, id: Hash) -> Result<VoucherSeries, LedgerError> {
    let series = state
        .voucher_series(&id)
        .cloned()
        .ok_or(LedgerError::UnknownVoucherSeries(id))?;
    if ctx.timestamp_ms >= series.terms.expires_ms {
        return Err(LedgerError::VoucherExpired {
            series: id,
            expires_ms: series.terms.expires_ms,
            now_ms: ctx.timestamp_ms,
        });
    }
    Ok(series)
}

/// `holder`'s units of `series` less `cu`, or the shortfall.
fn take_units(state: &State, holder: AccountId, series: Hash, cu: u64) -> Result<u64, LedgerError> {
    let have = state.voucher_units(&holder, &series);
    have.checked_sub(cu)
        .ok_or(LedgerError::InsufficientVouchers {
            holder,
            series,
            have,
            need: cu,
        })
}

fn mint_voucher(
    state: &mut State,
    ctx: &BlockContext,
    buyer: AccountId,
    quote: &SignedQuote,
    cu: u64,
) -> Result<Vec<Event>, LedgerError> {
    require_units(cu)?;
    check_quote(ctx, quote)?;
    let terms = &quote.body.terms;
    check_terms(ctx, terms)?;
    let backing = terms
        .backing(cu)
        .ok_or(LedgerError::Overflow("a voucher's backing"))?;
    let payer = debit(state, buyer, backing)?;
    let id = terms.series_id();
    let mut series = state.voucher_series(&id).cloned().unwrap_or(VoucherSeries {
        terms: terms.clone(),
        outstanding_cu: 0,
    });
    series.outstanding_cu = series
        .outstanding_cu
        .checked_add(cu)
        .ok_or(LedgerError::Overflow("a series' outstanding CU"))?;
    // The series' total backing must stay countable as an Amount.
    series
        .terms
        .backing(series.outstanding_cu)
        .ok_or(LedgerError::Overflow("a series' backing"))?;
    let held = state
        .voucher_units(&buyer, &id)
        .checked_add(cu)
        .ok_or(LedgerError::Overflow("a voucher holding"))?;
    state.set_account(buyer, payer);
    state.set_voucher_series(id, series);
    state.set_voucher_units(buyer, id, held);
    Ok(vec![Event::VoucherMinted {
        holder: buyer,
        series: id,
        cu,
        backing,
    }])
}

fn transfer_voucher(
    state: &mut State,
    ctx: &BlockContext,
    from: AccountId,
    to: AccountId,
    series: Hash,
    cu: u64,
) -> Result<Vec<Event>, LedgerError> {
    require_units(cu)?;
    live_series(ctx, state, series)?;
    let left = take_units(state, from, series, cu)?;
    if from != to {
        let received = state
            .voucher_units(&to, &series)
            .checked_add(cu)
            .ok_or(LedgerError::Overflow("a voucher holding"))?;
        state.set_voucher_units(from, series, left);
        state.set_voucher_units(to, series, received);
    }
    Ok(vec![Event::VoucherTransferred {
        from,
        to,
        series,
        cu,
    }])
}

struct Redemption<'a> {
    terms: &'a VoucherTerms,
    cu: u64,
    order_id: Hash,
    deadline_ms: u64,
}

fn redeem_voucher(
    state: &mut State,
    ctx: &BlockContext,
    holder: AccountId,
    redemption: Redemption,
) -> Result<Vec<Event>, LedgerError> {
    let Redemption {
        terms,
        cu,
        order_id,
        deadline_ms,
    } = redemption;
    require_units(cu)?;
    let id = terms.series_id();
    let mut series = live_series(ctx, state, id)?;
    if ctx.timestamp_ms < series.terms.redeem_from_ms {
        return Err(LedgerError::VoucherNotYetRedeemable {
            series: id,
            redeem_from_ms: series.terms.redeem_from_ms,
            now_ms: ctx.timestamp_ms,
        });
    }
    let left = take_units(state, holder, id, cu)?;
    if state.escrow(&order_id).is_some() {
        return Err(LedgerError::EscrowExists(order_id));
    }
    if deadline_ms <= ctx.timestamp_ms {
        return Err(LedgerError::DeadlineNotInFuture {
            deadline_ms,
            now_ms: ctx.timestamp_ms,
        });
    }
    // Cannot overflow: the series' whole backing fitted when its units were minted.
    let amount = series
        .terms
        .backing(cu)
        .ok_or(LedgerError::Overflow("a voucher's backing"))?;
    series.outstanding_cu -= cu;
    state.set_voucher_series(id, series);
    state.set_voucher_units(holder, id, left);
    state.set_escrow(
        order_id,
        Escrow {
            buyer: holder,
            locked: amount,
            remaining: amount,
            released: Amount::ZERO,
            deadline_ms,
            status: EscrowStatus::Open,
        },
    );
    Ok(vec![
        Event::VoucherRedeemed {
            holder,
            series: id,
            cu,
            order_id,
            amount,
        },
        Event::EscrowOpened {
            order_id,
            buyer: holder,
            amount,
            deadline_ms,
        },
    ])
}

fn expire_voucher(
    state: &mut State,
    ctx: &BlockContext,
    holder: AccountId,
    id: Hash,
) -> Result<Vec<Event>, LedgerError> {
    let mut series = state
        .voucher_series(&id)
        .cloned()
        .ok_or(LedgerError::UnknownVoucherSeries(id))?;
    if ctx.timestamp_ms < series.terms.expires_ms {
        return Err(LedgerError::VoucherNotExpired {
            series: id,
            expires_ms: series.terms.expires_ms,
            now_ms: ctx.timestamp_ms,
        });
    }
    let cu = state.voucher_units(&holder, &id);
    require_units(cu).map_err(|_| LedgerError::InsufficientVouchers {
        holder,
        series: id,
        have: 0,
        need: 1,
    })?;
    let refund = series
        .terms
        .backing(cu)
        .ok_or(LedgerError::Overflow("a voucher's backing"))?;
    let credited = credits(state, &BTreeMap::from([(holder, refund)]))?;
    series.outstanding_cu -= cu;
    state.set_voucher_series(id, series);
    state.set_voucher_units(holder, id, 0);
    for (account, value) in credited {
        state.set_account(account, value);
    }
    Ok(vec![Event::VoucherExpired {
        holder,
        series: id,
        cu,
        refund,
    }])
}
