//! [`EvmSettlement`]: Agora's [`Settlement`] trait over the `AgoraMarket` contract.
//!
//! # How a submission runs
//!
//! 1. Transactions sent earlier and still inside the reorg window are checked: one whose
//!    receipt left the canonical chain is broadcast again, same bytes (see [`crate::chain`]).
//! 2. The slice of chain state the batch touches (balances, nonces, escrows, stakes, used
//!    evidence) is read into an [`agora_ledger::State`] and the batch is run through the
//!    embedded ledger's own pure [`agora_ledger::apply`]. That gives every refusal its exact
//!    typed [`LedgerError`] before any gas is spent, and the effects to report. The contract
//!    enforces the same rules again on its own; it is the authority, this is the preview.
//! 3. Accepted transactions go on chain in order. Consecutive market-authority escrow
//!    transactions (release, refund, burn, and payments from the verification fund) become
//!    one `settleBatch` call of up to
//!    [`EvmConfig::batch_size`] operations; a slash is one `slash` call; an account's own
//!    transaction is sent with that account's EVM key, which this process must hold
//!    ([`EvmSettlement::add_key`]) — otherwise the whole submission is refused before
//!    anything is sent, because in production an account sends its own transactions.
//! 4. An operation the contract skipped (its `OpSkipped` event) or a call that reverted
//!    after all (the chain moved between preview and inclusion) is reported as rejected.
//!
//! # Nonces
//!
//! An account's ledger nonce *is* its EVM nonce: its transaction is sent with exactly the
//! envelope's nonce, so a replayed envelope meets a used nonce. The market authority signs
//! many ledger transactions per EVM transaction, so its ledger nonce is the contract's
//! `authorityNonce`, advanced by each applied operation. Its EVM nonce is tracked here.
//!
//! # Time
//!
//! Deadlines and unbonding are judged by the chain's block timestamp and number, not by
//! the `timestamp_ms` a caller passes to `submit` (which the embedded ledger uses to
//! stamp its block): on a public chain nobody but the chain chooses the time.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use agora_core::{AccountId, Amount, ChainId, Hash, Keypair};
use agora_ledger::block::Rejected;
use agora_ledger::merkle::merkle_root;
use agora_ledger::{
    Account, BlockContext, BlockHeader, BlockOutcome, Effects, Escrow, EscrowStatus, LedgerError,
    Params, Settlement, Stake, State, Tx, TxBody, Unbonding, apply,
};
use alloy::primitives::{Address, B256, Bytes, FixedBytes, U256};
use alloy::rpc::types::{Filter, TransactionReceipt};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolError, SolEvent, SolInterface};
use futures::future::try_join_all;
use tokio::runtime::Runtime;

use crate::chain::{Chain, ChainError, Sent};
use crate::contracts::AgoraMarket::{self, AgoraMarketErrors};
use crate::contracts::{MarketConfig, TestToken, market_creation_code, test_token_creation_code};
use crate::keys::evm_signer;

/// How to reach the market contract.
#[derive(Clone, Debug)]
pub struct EvmConfig {
    /// The EVM node's JSON-RPC endpoint.
    pub rpc_url: String,
    /// The `AgoraMarket` contract.
    pub market: Address,
    /// The Agora network ledger envelopes are signed for.
    pub chain_id: ChainId,
    /// The rules; checked against the contract's immutable parameters on connect.
    pub params: Params,
    /// Blocks (including the receipt's) before a transaction counts as settled.
    pub confirmations: u64,
    /// How long one RPC request may take before it is retried.
    pub rpc_timeout: Duration,
    /// How long requests are retried, and transactions awaited, before giving up.
    pub retry_for: Duration,
    /// The most escrow operations in one `settleBatch` transaction.
    pub batch_size: usize,
    /// How many blocks back sent transactions are re-checked for reorgs.
    pub reorg_window: u64,
}

impl EvmConfig {
    /// Defaults for a local chain: one confirmation, 2 s per request, 60 s of retries,
    /// batches of 100, a 64-block reorg window.
    pub fn new(rpc_url: String, market: Address, chain_id: ChainId, params: Params) -> EvmConfig {
        EvmConfig {
            rpc_url,
            market,
            chain_id,
            params,
            confirmations: 1,
            rpc_timeout: Duration::from_secs(2),
            retry_for: Duration::from_secs(60),
            batch_size: 100,
            reorg_window: 64,
        }
    }
}

/// What can go wrong in the EVM backend. Refused transactions are not errors: they come
/// back as [`BlockOutcome::rejected`].
#[derive(Debug, thiserror::Error)]
pub enum EvmError {
    /// The chain could not be reached or refused a request.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The async runtime could not start.
    #[error("could not start the EVM client's runtime: {0}")]
    Runtime(std::io::Error),
    /// No contract at the configured address: a wrong address, or a chain that was reset
    /// (an anvil restarted without its state).
    #[error(
        "no contract at {market} on chain {chain}: wrong address, or the chain was reset (restart it with its saved state or redeploy)"
    )]
    NoContract {
        /// The configured market.
        market: Address,
        /// The EVM chain id.
        chain: u64,
    },
    /// The contract's fixed parameters differ from the rules this node runs.
    #[error("the market contract's {name} is {on_chain} but the genesis parameters say {expected}")]
    ParamsMismatch {
        /// Which parameter.
        name: &'static str,
        /// The contract's.
        on_chain: String,
        /// The genesis'.
        expected: String,
    },
    /// The authority key does not match the contract's authority.
    #[error("the market contract's authority is {on_chain}, not this key's {derived}")]
    WrongAuthority {
        /// The contract's.
        on_chain: Address,
        /// Derived from the key given.
        derived: Address,
    },
    /// An account has no known EVM address.
    #[error(
        "account {0} has no known EVM address; add its key (dev) or register the address it published (`evm.address` in its ask)"
    )]
    UnknownAccount(AccountId),
    /// An EVM address maps to no known account.
    #[error("EVM address {0} is not a known Agora account; register it first")]
    UnknownAddress(Address),
    /// An account's own transaction without its key here.
    #[error(
        "transaction {kind} of {account} must be sent by that account's own EVM key, which this node does not hold; the account sends it itself (nothing was submitted)"
    )]
    NoLocalKey {
        /// The account.
        account: AccountId,
        /// The transaction kind.
        kind: &'static str,
    },
    /// The chain answered something that cannot be decoded.
    #[error("unexpected answer from the market contract to {what}: {detail}")]
    Decode {
        /// The call.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// The contract refused assignments (an order not open or already assigned, a provider
    /// below the minimum stake); the others in the same call stand.
    #[error("the market contract refused assignments: {0}")]
    AssignmentRefused(String),
    /// The market authority sends settlement operations only.
    #[error(
        "the market authority may not send a {0} on the EVM backend; its key only settles, assigns and slashes"
    )]
    AuthorityAccountTx(&'static str),
    /// A transaction kind the contract has no counterpart for.
    #[error(
        "the EVM backend does not carry {0} transactions (they exist on the embedded ledger only); nothing was sent"
    )]
    Unsupported(&'static str),
    /// An escrow already open on chain for an order differs from the order.
    #[error(
        "the escrow on chain for order {order_id} has {field} {on_chain}, but the order says {expected}; open the escrow with exactly the order's id, amount and deadline from the buyer's own key (or sign a new order)"
    )]
    EscrowMismatch {
        /// The order.
        order_id: Hash,
        /// Which part differs.
        field: &'static str,
        /// What the chain holds.
        on_chain: String,
        /// What the order says.
        expected: String,
    },
    /// An address published by one account is already another account's.
    #[error(
        "EVM address {address} is already {owner}'s on this market; account {claimant} must publish an address of its own"
    )]
    AddressTaken {
        /// The address.
        address: Address,
        /// The account it belongs to.
        owner: AccountId,
        /// The account that published it too.
        claimant: AccountId,
    },
}

/// A contract deployed by [`EvmSettlement::deploy_dev`]: addresses and the funded keys.
#[derive(Clone, Debug)]
pub struct DevDeployment {
    /// The test token.
    pub token: Address,
    /// The market.
    pub market: Address,
}

/// A transaction sent and confirmed, kept for the reorg check.
#[derive(Clone, Debug)]
struct Watched {
    sent: Sent,
    block: u64,
    block_hash: B256,
}

/// One EVM transaction of a submission and the ledger transactions it carries.
enum Step {
    /// Authority escrow operations, each with the indices of the ledger transactions it
    /// carries (none for an assignment, two for a release coalesced with its refund).
    Batch(Vec<(Vec<usize>, AgoraMarket::Op)>),
    /// One call carrying one ledger transaction.
    Single {
        index: usize,
        from: Sender,
        data: Bytes,
    },
}

#[derive(Clone, Copy)]
enum Sender {
    Authority,
    Account(AccountId, u64),
}

/// What one step did: the ledger transactions it refused (index, why) and its receipt.
type StepResult = (Vec<(usize, LedgerError)>, Option<TransactionReceipt>);

/// Agora's settlement on an EVM chain.
pub struct EvmSettlement {
    runtime: Runtime,
    chain: Chain,
    config: EvmConfig,
    token: Address,
    authority: PrivateKeySigner,
    authority_account: AccountId,
    keys: HashMap<AccountId, PrivateKeySigner>,
    addresses: HashMap<AccountId, Address>,
    accounts: HashMap<Address, AccountId>,
    assignments: HashMap<Hash, Vec<Address>>,
    /// Buyers of escrows they opened on chain themselves, by order: an escrow's opener is
    /// paid its refund by the contract, so it needs no account-wide binding here.
    order_buyers: HashMap<Hash, AccountId>,
    min_stake: u64,
    authority_evm_nonce: Option<u64>,
    watched: Vec<Watched>,
    height: u64,
    receipts: Vec<TransactionReceipt>,
}

impl std::fmt::Debug for EvmSettlement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvmSettlement")
            .field("rpc_url", &self.config.rpc_url)
            .field("market", &self.config.market)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

fn runtime() -> Result<Runtime, EvmError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(EvmError::Runtime)
}

fn b32(hash: &Hash) -> FixedBytes<32> {
    FixedBytes(hash.0)
}

fn status_of(status: u8) -> Option<EscrowStatus> {
    match status {
        1 => Some(EscrowStatus::Open),
        2 => Some(EscrowStatus::Released),
        3 => Some(EscrowStatus::Refunded),
        _ => None,
    }
}

impl EvmSettlement {
    /// Deploys a test token and a market for `params` on a dev chain (anvil), funds every
    /// key in `funded` with gas money and `each` tokens deposited into the market, and
    /// returns the addresses. `deployer` pays for the deployment and must hold ether (an
    /// anvil dev account, or any key after `anvil_setBalance`).
    pub fn deploy_dev(
        rpc_url: &str,
        params: &Params,
        authority: &Keypair,
        treasury: &Keypair,
        min_stake: u64,
        funded: &[(&Keypair, Amount)],
    ) -> Result<DevDeployment, EvmError> {
        let runtime = runtime()?;
        runtime.block_on(async {
            let chain =
                Chain::connect(rpc_url, Duration::from_secs(5), Duration::from_secs(60)).await?;
            let deployer = evm_signer(authority);
            fund_gas(&chain, deployer.address()).await?;
            let mut nonce = chain.nonce(deployer.address()).await?;
            let (_, receipt) = chain
                .transact(&deployer, None, test_token_creation_code(), nonce)
                .await?;
            nonce += 1;
            let token = receipt.contract_address.ok_or(EvmError::Decode {
                what: "token deployment",
                detail: "no contract address in the receipt".into(),
            })?;
            let config = MarketConfig {
                token,
                authority: deployer.address(),
                treasury: evm_signer(treasury).address(),
                fee_bps: params.fee_bps,
                slash_beneficiary_bps: params.slash_beneficiary_bps,
                unbonding_period_blocks: params.unbonding_period_blocks,
                min_stake,
            };
            let (_, receipt) = chain
                .transact(&deployer, None, market_creation_code(&config), nonce)
                .await?;
            let market = receipt.contract_address.ok_or(EvmError::Decode {
                what: "market deployment",
                detail: "no contract address in the receipt".into(),
            })?;
            for (keypair, amount) in funded {
                fund_account(&chain, token, market, &evm_signer(keypair), amount.0).await?;
            }
            Ok(DevDeployment { token, market })
        })
    }

    /// Connects to a deployed market as its authority, checking the contract exists, its
    /// authority is `authority`'s EVM key and its parameters are `config.params`.
    pub fn connect(config: EvmConfig, authority: &Keypair) -> Result<EvmSettlement, EvmError> {
        let runtime = runtime()?;
        let chain = runtime.block_on(Chain::connect(
            &config.rpc_url,
            config.rpc_timeout,
            config.retry_for,
        ))?;
        let mut chain = chain;
        chain.confirmations = config.confirmations.max(1);
        let signer = evm_signer(authority);
        let mut settlement = EvmSettlement {
            runtime,
            chain,
            token: Address::ZERO,
            authority_account: authority.account(),
            authority: signer.clone(),
            keys: HashMap::new(),
            addresses: HashMap::new(),
            accounts: HashMap::new(),
            assignments: HashMap::new(),
            order_buyers: HashMap::new(),
            min_stake: 0,
            authority_evm_nonce: None,
            watched: Vec::new(),
            height: 0,
            receipts: Vec::new(),
            config,
        };
        settlement.check_contract()?;
        settlement.register(authority.account(), signer.address());
        Ok(settlement)
    }

    fn check_contract(&mut self) -> Result<(), EvmError> {
        let params = self.config.params.clone();
        let on_chain_authority = self.view(AgoraMarket::authorityCall {})?;
        if on_chain_authority != self.authority.address() {
            return Err(EvmError::WrongAuthority {
                on_chain: on_chain_authority,
                derived: self.authority.address(),
            });
        }
        let checks = [
            (
                "feeBps",
                u64::from(self.view(AgoraMarket::feeBpsCall {})?),
                u64::from(params.fee_bps),
            ),
            (
                "slashBeneficiaryBps",
                u64::from(self.view(AgoraMarket::slashBeneficiaryBpsCall {})?),
                u64::from(params.slash_beneficiary_bps),
            ),
            (
                "unbondingPeriodBlocks",
                self.view(AgoraMarket::unbondingPeriodBlocksCall {})?,
                params.unbonding_period_blocks,
            ),
        ];
        for (name, on_chain, expected) in checks {
            if on_chain != expected {
                return Err(EvmError::ParamsMismatch {
                    name,
                    on_chain: on_chain.to_string(),
                    expected: expected.to_string(),
                });
            }
        }
        self.token = self.view(AgoraMarket::tokenCall {})?;
        self.min_stake = self.view(AgoraMarket::minStakeCall {})?;
        let treasury = self.view(AgoraMarket::treasuryCall {})?;
        self.register(params.treasury, treasury);
        self.height = self.runtime.block_on(self.chain.block_number())?;
        Ok(())
    }

    /// Holds `keypair`'s EVM key, so this backend can send that account's own
    /// transactions (tests and devnets; in production accounts send their own).
    pub fn add_key(&mut self, keypair: &Keypair) {
        let signer = evm_signer(keypair);
        self.register(keypair.account(), signer.address());
        self.keys.insert(keypair.account(), signer);
    }

    /// Records the EVM address an account published (a provider's `evm.address`).
    pub fn register(&mut self, account: AccountId, address: Address) {
        self.addresses.insert(account, address);
        self.accounts.insert(address, account);
    }

    /// Whether the contract has a counterpart for this kind of transaction (escrows,
    /// transfers, stake, slashes); others exist on the embedded ledger only.
    pub fn carries(body: &TxBody) -> bool {
        matches!(
            body,
            TxBody::Transfer { .. }
                | TxBody::OpenEscrow { .. }
                | TxBody::ReleaseEscrow { .. }
                | TxBody::RefundEscrow { .. }
                | TxBody::BurnEscrow { .. }
                | TxBody::Bond { .. }
                | TxBody::Unbond { .. }
                | TxBody::Withdraw
                | TxBody::Slash { .. }
        )
    }

    /// Records the EVM address a provider published in its signed ask (`evm.address`),
    /// refusing one that is already another account's (payouts to either would be
    /// ambiguous).
    pub fn register_published(
        &mut self,
        account: AccountId,
        address: Address,
    ) -> Result<(), EvmError> {
        match self.accounts.get(&address) {
            Some(owner) if *owner != account => Err(EvmError::AddressTaken {
                address,
                owner: *owner,
                claimant: account,
            }),
            _ => {
                if let Some(old) = self.addresses.get(&account).copied()
                    && old != address
                {
                    self.accounts.remove(&old);
                }
                self.register(account, address);
                Ok(())
            }
        }
    }

    /// Records, from the market's own durable order record, that `buyer` is the buyer of
    /// `order_id`'s escrow (after a restart, for escrows buyers opened on chain
    /// themselves). It only names the account an escrow read reports; refunds go to the
    /// escrow's opener on chain whatever is recorded here.
    pub fn note_order_buyer(&mut self, order_id: Hash, buyer: AccountId) {
        self.order_buyers.insert(order_id, buyer);
    }

    /// Bonded stake the contract requires of a provider before an order is assigned to it.
    pub fn min_stake(&self) -> u64 {
        self.min_stake
    }

    /// Takes over an escrow the buyer opened on chain itself for `order_id`, if there is
    /// one: it must be open, untouched (nothing released, no assignment), for exactly
    /// `amount` until `deadline_ms`, and opened from `buyer`'s address when this market
    /// knows one for it (otherwise from an address no other account holds). Returns
    /// `None` when no escrow exists for the order (the buyer has not opened it).
    pub fn adopt_escrow(
        &mut self,
        order_id: Hash,
        buyer: AccountId,
        amount: Amount,
        deadline_ms: u64,
    ) -> Result<Option<Escrow>, EvmError> {
        let e = self.view(AgoraMarket::escrowOfCall {
            orderId: b32(&order_id),
        })?;
        let Some(status) = status_of(e.status) else {
            return Ok(None);
        };
        let mismatch = |field: &'static str, on_chain: String, expected: String| {
            Err(EvmError::EscrowMismatch {
                order_id,
                field,
                on_chain,
                expected,
            })
        };
        if status != EscrowStatus::Open {
            return mismatch("status", format!("{status:?}"), "Open".into());
        }
        if e.locked != amount.0 {
            return mismatch("amount", e.locked.to_string(), amount.0.to_string());
        }
        let deadline = e.deadlineMs.to::<u64>();
        if deadline != deadline_ms {
            return mismatch(
                "deadline (ms)",
                deadline.to_string(),
                deadline_ms.to_string(),
            );
        }
        if e.remaining != e.locked || e.released != 0 {
            return mismatch(
                "remaining",
                e.remaining.to_string(),
                format!("{} (untouched)", e.locked),
            );
        }
        if e.assigned != FixedBytes::<20>::ZERO {
            return mismatch("an assignment", "set".into(), "none yet".into());
        }
        let owner = self.accounts.get(&e.buyer).copied();
        match (self.address_of(&buyer), owner) {
            (Some(known), _) if known != e.buyer => {
                return mismatch("buyer", e.buyer.to_string(), known.to_string());
            }
            (None, Some(other)) if other != buyer => {
                return mismatch(
                    "buyer",
                    format!("{} (account {other})", e.buyer),
                    format!("an address of {buyer}"),
                );
            }
            _ => {}
        }
        self.order_buyers.insert(order_id, buyer);
        Ok(Some(Escrow {
            buyer,
            locked: Amount(e.locked),
            remaining: Amount(e.remaining),
            released: Amount(e.released),
            deadline_ms: deadline,
            status,
        }))
    }

    /// Takes over a challenge bond the challenger opened on chain under `bond_id`, as
    /// [`EvmSettlement::adopt_escrow`] does an order's escrow, and learns the challenger's
    /// EVM address from its opener when the market knows none yet: a slash the challenge
    /// wins pays the challenger's reward there. The opener is the challenger's known
    /// address or one no other account holds (`adopt_escrow` refused anything else).
    pub fn adopt_bond(
        &mut self,
        bond_id: Hash,
        challenger: AccountId,
        amount: Amount,
        deadline_ms: u64,
    ) -> Result<Option<Escrow>, EvmError> {
        let Some(escrow) = self.adopt_escrow(bond_id, challenger, amount, deadline_ms)? else {
            return Ok(None);
        };
        if self.address_of(&challenger).is_none() {
            let opener = self
                .view(AgoraMarket::escrowOfCall {
                    orderId: b32(&bond_id),
                })?
                .buyer;
            self.register(challenger, opener);
        }
        Ok(Some(escrow))
    }

    /// The EVM address of an account, if known.
    pub fn address_of(&self, account: &AccountId) -> Option<Address> {
        self.addresses.get(account).copied()
    }

    /// The market contract.
    pub fn market(&self) -> Address {
        self.config.market
    }

    /// The payment token.
    pub fn token(&self) -> Address {
        self.token
    }

    /// The chain connection (tests drive anvil's clock and snapshots through it).
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// Runs a future on this backend's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The receipts of the last submission's EVM transactions.
    pub fn last_receipts(&self) -> &[TransactionReceipt] {
        &self.receipts
    }

    fn view<C: SolCall>(&self, call: C) -> Result<C::Return, EvmError> {
        self.runtime.block_on(self.view_async(call))
    }

    async fn view_async<C: SolCall>(&self, call: C) -> Result<C::Return, EvmError> {
        let data = self
            .chain
            .call(self.config.market, call.abi_encode().into())
            .await?;
        C::abi_decode_returns(&data).map_err(|e| EvmError::Decode {
            what: C::SIGNATURE,
            detail: e.to_string(),
        })
    }

    async fn account_async(&self, id: &AccountId) -> Result<Account, EvmError> {
        let address = self.address(id)?;
        let balance = self.view_async(AgoraMarket::balanceOfCall(address));
        let next_nonce = async {
            if *id == self.authority_account {
                self.view_async(AgoraMarket::authorityNonceCall {}).await
            } else {
                Ok(self.chain.nonce(address).await?)
            }
        };
        let (balance, next_nonce) = futures::try_join!(balance, next_nonce)?;
        Ok(Account {
            balance: Amount(balance),
            next_nonce,
        })
    }

    async fn escrow_async(&self, order_id: &Hash) -> Result<Option<Escrow>, EvmError> {
        let e = self
            .view_async(AgoraMarket::escrowOfCall {
                orderId: b32(order_id),
            })
            .await?;
        let Some(status) = status_of(e.status) else {
            return Ok(None);
        };
        let buyer = match self.accounts.get(&e.buyer) {
            Some(id) => *id,
            None => match self.order_buyers.get(order_id) {
                Some(id) => *id,
                None => return Err(EvmError::UnknownAddress(e.buyer)),
            },
        };
        Ok(Some(Escrow {
            buyer,
            locked: Amount(e.locked),
            remaining: Amount(e.remaining),
            released: Amount(e.released),
            deadline_ms: e.deadlineMs.to::<u64>(),
            status,
        }))
    }

    async fn stake_async(&self, id: &AccountId) -> Result<Option<Stake>, EvmError> {
        let address = self.address(id)?;
        let s = self
            .view_async(AgoraMarket::stakeOfCall { account: address })
            .await?;
        if s.bonded == 0 && s.unbonding.is_empty() {
            return Ok(None);
        }
        Ok(Some(Stake {
            bonded: Amount(s.bonded),
            unbonding: s
                .unbonding
                .iter()
                .map(|u| Unbonding {
                    amount: Amount(u.amount),
                    matures_at_height: u.maturesAt,
                })
                .collect(),
        }))
    }

    fn address(&self, account: &AccountId) -> Result<Address, EvmError> {
        self.address_of(account)
            .ok_or(EvmError::UnknownAccount(*account))
    }

    fn account_id(&self, address: Address) -> Result<AccountId, EvmError> {
        self.accounts
            .get(&address)
            .copied()
            .ok_or(EvmError::UnknownAddress(address))
    }

    /// The contract's totals and the tokens it holds: balances + escrowed + staked + burnt
    /// must equal the tokens held (absent tokens sent to it outside `deposit`).
    pub fn supply(&self) -> Result<ChainSupply, EvmError> {
        let totals = self.view(AgoraMarket::totalsCall {})?;
        let held = self.runtime.block_on(
            self.chain.call(
                self.token,
                TestToken::balanceOfCall {
                    account: self.config.market,
                }
                .abi_encode()
                .into(),
            ),
        )?;
        let held = U256::from_be_slice(&held);
        Ok(ChainSupply {
            balances: totals.balances,
            escrowed: totals.escrowed,
            staked: totals.staked,
            burnt: totals.burnt,
            held,
        })
    }

    /// Assigns an order to providers (each with bonded stake ≥ the market's minimum); a
    /// release may then pay only them. Once per order, before any release.
    pub fn assign(&mut self, order_id: Hash, providers: &[AccountId]) -> Result<(), EvmError> {
        self.assign_batch(&[(order_id, providers.to_vec())])
    }

    /// Assigns many orders in `settleBatch` transactions of up to [`EvmConfig::batch_size`]
    /// operations (what a market does as it matches). Fails, naming the contract's reason,
    /// if any assignment was refused; the others stand.
    pub fn assign_batch(&mut self, orders: &[(Hash, Vec<AccountId>)]) -> Result<(), EvmError> {
        self.receipts.clear();
        let mut ops = Vec::with_capacity(orders.len());
        for (order_id, providers) in orders {
            let addresses = providers
                .iter()
                .map(|p| self.address(p))
                .collect::<Result<Vec<_>, _>>()?;
            ops.push(assign_op(*order_id, addresses));
        }
        let mut refused = Vec::new();
        for chunk in ops.chunks(self.config.batch_size.max(1)) {
            let nonce = self.view(AgoraMarket::authorityNonceCall {})?;
            let receipt = self.send_authority(
                AgoraMarket::settleBatchCall {
                    firstNonce: nonce,
                    ops: chunk.to_vec(),
                }
                .abi_encode()
                .into(),
            )?;
            let skips = skipped(&receipt);
            for (position, op) in chunk.iter().enumerate() {
                match skips.iter().find(|(p, _)| *p == position) {
                    Some((_, reason)) => refused.push(format!(
                        "order {}: {}",
                        Hash(op.orderId.0),
                        selector_name(*reason)
                    )),
                    None => {
                        self.assignments
                            .insert(Hash(op.orderId.0), op.providers.clone());
                    }
                }
            }
            self.receipts.push(receipt);
        }
        if refused.is_empty() {
            Ok(())
        } else {
            Err(EvmError::AssignmentRefused(refused.join("; ")))
        }
    }

    /// Re-checks transactions sent within the reorg window; from the first whose block is
    /// no longer canonical on, each is broadcast again (same bytes) and awaited. Blocks
    /// chain by hash, so when the newest watched block is canonical all older ones are, and
    /// the common case costs one request. Returns how many were resubmitted.
    pub fn recheck_reorgs(&mut self) -> Result<usize, EvmError> {
        let head = self.runtime.block_on(self.chain.block_number())?;
        let window = self.config.reorg_window;
        self.watched.retain(|w| w.block + window >= head);
        let canonical = |this: &EvmSettlement, w: &Watched| -> Result<bool, EvmError> {
            Ok(this.runtime.block_on(this.chain.block_hash(w.block))? == Some(w.block_hash))
        };
        match self.watched.last() {
            None => return Ok(0),
            Some(newest) if canonical(self, newest)? => return Ok(0),
            Some(_) => {}
        }
        let mut first_lost = 0;
        for (i, w) in self.watched.iter().enumerate() {
            if !canonical(self, w)? {
                first_lost = i;
                break;
            }
        }
        let lost: Vec<Watched> = self.watched.drain(first_lost..).collect();
        let mut resubmitted = 0;
        for w in lost {
            // Still mined (the reorg re-included it elsewhere)? Then only its place moved.
            let receipt = match self.runtime.block_on(self.chain.receipt(w.sent.hash))? {
                Some(receipt) => receipt,
                None => {
                    self.runtime.block_on(self.chain.broadcast(&w.sent))?;
                    resubmitted += 1;
                    self.runtime.block_on(self.chain.confirm(&w.sent))?
                }
            };
            self.watched.push(Watched {
                block: receipt.block_number.unwrap_or_default(),
                block_hash: receipt.block_hash.unwrap_or_default(),
                sent: w.sent,
            });
        }
        // The authority's EVM nonce is re-read: the reorg may have moved it.
        self.authority_evm_nonce = None;
        Ok(resubmitted)
    }

    fn ensure_contract(&self) -> Result<(), EvmError> {
        if !self
            .runtime
            .block_on(self.chain.has_code(self.config.market))?
        {
            return Err(EvmError::NoContract {
                market: self.config.market,
                chain: self.chain.chain_id(),
            });
        }
        Ok(())
    }

    /// Sends a call with the authority's key. Its EVM nonce is tracked here; if another
    /// sender of the same key took it (the transaction can then never be mined), the call
    /// is signed again with a fresh nonce, which is safe for exactly that reason.
    fn send_authority(&mut self, data: Bytes) -> Result<TransactionReceipt, EvmError> {
        let signer = self.authority.clone();
        let mut attempts = 0;
        loop {
            let nonce = match self.authority_evm_nonce {
                Some(n) => n,
                None => self
                    .runtime
                    .block_on(self.chain.nonce(self.authority.address()))?,
            };
            match self.send(&signer, data.clone(), nonce) {
                Ok(receipt) => {
                    self.authority_evm_nonce = Some(nonce + 1);
                    return Ok(receipt);
                }
                Err(EvmError::Chain(ChainError::NonceUsed { .. })) if attempts < 3 => {
                    attempts += 1;
                    self.authority_evm_nonce = None;
                }
                Err(e) => {
                    // Not sent, or unknown: read the nonce from the chain next time.
                    self.authority_evm_nonce = None;
                    return Err(e);
                }
            }
        }
    }

    fn send(
        &mut self,
        signer: &PrivateKeySigner,
        data: Bytes,
        nonce: u64,
    ) -> Result<TransactionReceipt, EvmError> {
        let market = self.config.market;
        let (sent, receipt) =
            self.runtime
                .block_on(self.chain.transact(signer, Some(market), data, nonce))?;
        self.watched.push(Watched {
            sent,
            block: receipt.block_number.unwrap_or_default(),
            block_hash: receipt.block_hash.unwrap_or_default(),
        });
        self.height = self.height.max(receipt.block_number.unwrap_or_default());
        Ok(receipt)
    }

    /// Reads the state the batch touches into a ledger [`State`], so the embedded rules can
    /// preview it.
    fn preview_state(&self, txs: &[Tx]) -> Result<State, EvmError> {
        let mut accounts = BTreeSet::new();
        let mut orders = BTreeSet::new();
        let mut stakers = BTreeSet::new();
        let mut evidence = BTreeSet::new();
        accounts.insert(self.config.params.treasury);
        for tx in txs {
            accounts.insert(tx.signer);
            match &tx.body {
                TxBody::Transfer { to, .. } => {
                    accounts.insert(*to);
                }
                TxBody::OpenEscrow { order_id, .. }
                | TxBody::RefundEscrow { order_id }
                | TxBody::BurnEscrow { order_id, .. } => {
                    orders.insert(*order_id);
                }
                TxBody::ReleaseEscrow { order_id, payouts } => {
                    orders.insert(*order_id);
                    accounts.extend(payouts.iter().map(|(p, _)| *p));
                }
                TxBody::Bond { .. } | TxBody::Unbond { .. } | TxBody::Withdraw => {
                    stakers.insert(tx.signer);
                }
                TxBody::Slash {
                    provider,
                    evidence: e,
                    beneficiary,
                    ..
                } => {
                    stakers.insert(*provider);
                    accounts.insert(*beneficiary);
                    evidence.insert(*e);
                }
                // Kinds the contract has no counterpart for are refused when planned.
                _ => {}
            }
        }
        // The reads are independent: issue them together (one round trip's latency, not
        // hundreds, for a batch of a hundred jobs).
        self.runtime.block_on(async {
            let escrows: Vec<(Hash, Escrow)> = try_join_all(orders.iter().map(|o| async move {
                Ok::<_, EvmError>(self.escrow_async(o).await?.map(|e| (*o, e)))
            }))
            .await?
            .into_iter()
            .flatten()
            .collect();
            accounts.extend(escrows.iter().map(|(_, e)| e.buyer));
            let known: Vec<AccountId> = accounts
                .iter()
                .filter(|id| self.address_of(id).is_some())
                .copied()
                .collect();
            let account_entries =
                try_join_all(known.iter().map(|id| async move {
                    Ok::<_, EvmError>((*id, self.account_async(id).await?))
                }));
            let stake_entries = try_join_all(stakers.iter().map(|id| async move {
                Ok::<_, EvmError>(self.stake_async(id).await?.map(|s| (*id, s)))
            }));
            let used = try_join_all(evidence.iter().map(|e| async move {
                let used = self
                    .view_async(AgoraMarket::evidenceUsedCall(b32(e)))
                    .await?;
                Ok::<_, EvmError>(used.then_some(*e))
            }));
            let totals = self.view_async(AgoraMarket::totalsCall {});
            let (account_entries, stake_entries, used, totals) =
                futures::try_join!(account_entries, stake_entries, used, totals)?;
            Ok(State::from_parts(
                account_entries,
                escrows,
                stake_entries.into_iter().flatten(),
                used.into_iter().flatten(),
                Amount::ZERO,
                Amount(totals.burnt),
            ))
        })
    }
    /// Turns the accepted transactions into EVM transactions, in order.
    fn plan(&mut self, accepted: &[(usize, &Tx)]) -> Result<Vec<Step>, EvmError> {
        let mut steps = Vec::new();
        let mut batch: Vec<(Vec<usize>, AgoraMarket::Op)> = Vec::new();
        let flush = |batch: &mut Vec<(Vec<usize>, AgoraMarket::Op)>, steps: &mut Vec<Step>| {
            if !batch.is_empty() {
                steps.push(Step::Batch(std::mem::take(batch)));
            }
        };
        // Assignments made by this plan, recorded in `self.assignments` once on chain.
        let mut assigned_now: HashMap<Hash, Vec<Address>> = HashMap::new();
        for (index, tx) in accepted {
            let index = *index;
            let authority = tx.signer == self.authority_account;
            match &tx.body {
                TxBody::ReleaseEscrow { order_id, payouts } if authority => {
                    let payees = payouts
                        .iter()
                        .map(|(p, _)| self.address(p))
                        .collect::<Result<Vec<_>, _>>()?;
                    let known = match self.assignments.get(order_id) {
                        Some(list) => Some(list.clone()),
                        None => match assigned_now.get(order_id) {
                            Some(list) => Some(list.clone()),
                            None => self.assigned_on_chain(order_id)?,
                        },
                    };
                    let providers = match known {
                        Some(list) => list,
                        None => {
                            // Callers of the plain Settlement API (which has no assignment
                            // step) assign the first release's payees just before paying.
                            let mut list = Vec::new();
                            for p in &payees {
                                if !list.contains(p) {
                                    list.push(*p);
                                }
                            }
                            batch.push((vec![], assign_op(*order_id, list.clone())));
                            assigned_now.insert(*order_id, list.clone());
                            list
                        }
                    };
                    let payouts = payees
                        .iter()
                        .zip(payouts)
                        .map(|(payee, (_, gross))| AgoraMarket::Payout {
                            payee: *payee,
                            gross: gross.0,
                        })
                        .collect();
                    batch.push((
                        vec![index],
                        AgoraMarket::Op {
                            kind: OP_RELEASE,
                            orderId: b32(order_id),
                            amount: 0,
                            providers,
                            payouts,
                        },
                    ));
                }
                TxBody::RefundEscrow { order_id } if authority => match batch.last_mut() {
                    // A job's release and the refund of its rest: one operation (fewer
                    // bytes and storage touches per job).
                    Some((indices, op))
                        if op.kind == OP_RELEASE
                            && op.orderId == b32(order_id)
                            && indices.len() == 1 =>
                    {
                        op.kind = OP_SETTLE;
                        indices.push(index);
                    }
                    _ => batch.push((
                        vec![index],
                        AgoraMarket::Op {
                            kind: OP_REFUND,
                            orderId: b32(order_id),
                            amount: 0,
                            providers: vec![],
                            payouts: vec![],
                        },
                    )),
                },
                // The verification fund: the authority pays an audit or a tie-breaking run
                // from its own balance (its share of slashes), as on the embedded ledger.
                TxBody::Transfer { to, amount } if authority => batch.push((
                    vec![index],
                    AgoraMarket::Op {
                        kind: OP_PAY,
                        orderId: FixedBytes::ZERO,
                        amount: 0,
                        providers: vec![],
                        payouts: vec![AgoraMarket::Payout {
                            payee: self.address(to)?,
                            gross: amount.0,
                        }],
                    },
                )),
                TxBody::BurnEscrow { order_id, amount } => batch.push((
                    vec![index],
                    AgoraMarket::Op {
                        kind: OP_BURN,
                        orderId: b32(order_id),
                        amount: amount.0,
                        providers: vec![],
                        payouts: vec![],
                    },
                )),
                TxBody::Slash {
                    provider,
                    amount,
                    evidence,
                    reason,
                    beneficiary,
                } => {
                    flush(&mut batch, &mut steps);
                    let data = AgoraMarket::slashCall {
                        nonce: 0, // filled in when sent
                        provider: self.address(provider)?,
                        amount: amount.0,
                        evidence: b32(evidence),
                        beneficiary: self.address(beneficiary)?,
                        reason: reason.clone(),
                    }
                    .abi_encode()
                    .into();
                    steps.push(Step::Single {
                        index,
                        from: Sender::Authority,
                        data,
                    });
                }
                body if authority => {
                    return Err(EvmError::AuthorityAccountTx(body.kind()));
                }
                body => {
                    flush(&mut batch, &mut steps);
                    let data = self.account_call(tx, body)?;
                    steps.push(Step::Single {
                        index,
                        from: Sender::Account(tx.signer, tx.nonce),
                        data,
                    });
                }
            }
            if batch.len() >= self.config.batch_size {
                flush(&mut batch, &mut steps);
            }
        }
        flush(&mut batch, &mut steps);
        Ok(steps)
    }

    /// The providers an order was assigned to on chain, from its `Assigned` event (the
    /// contract stores only their hash); `None` when unassigned.
    fn assigned_on_chain(&mut self, order_id: &Hash) -> Result<Option<Vec<Address>>, EvmError> {
        let escrow = self.view(AgoraMarket::escrowOfCall {
            orderId: b32(order_id),
        })?;
        if escrow.assigned == FixedBytes::<20>::ZERO {
            return Ok(None);
        }
        let filter = Filter::new()
            .address(self.config.market)
            .event_signature(AgoraMarket::Assigned::SIGNATURE_HASH)
            .topic1(b32(order_id))
            .from_block(0);
        let logs = self.runtime.block_on(
            self.chain
                .retry("eth_getLogs", || self.chain.provider().get_logs(&filter)),
        )?;
        let providers = logs
            .iter()
            .filter_map(|log| log.log_decode::<AgoraMarket::Assigned>().ok())
            .map(|log| log.inner.data.providers)
            .next_back();
        if let Some(list) = &providers {
            self.assignments.insert(*order_id, list.clone());
        }
        Ok(providers)
    }

    fn account_call(&self, tx: &Tx, body: &TxBody) -> Result<Bytes, EvmError> {
        if !self.keys.contains_key(&tx.signer) {
            return Err(EvmError::NoLocalKey {
                account: tx.signer,
                kind: body.kind(),
            });
        }
        Ok(match body {
            TxBody::Transfer { to, amount } => AgoraMarket::transferCall {
                to: self.address(to)?,
                amount: amount.0,
            }
            .abi_encode(),
            TxBody::OpenEscrow {
                order_id,
                amount,
                deadline_ms,
            } => AgoraMarket::openEscrowCall {
                orderId: b32(order_id),
                amount: amount.0,
                deadlineMs: *deadline_ms,
            }
            .abi_encode(),
            TxBody::RefundEscrow { order_id } => AgoraMarket::refundCall {
                orderId: b32(order_id),
            }
            .abi_encode(),
            TxBody::Bond { amount } => AgoraMarket::bondCall { amount: amount.0 }.abi_encode(),
            TxBody::Unbond { amount } => AgoraMarket::unbondCall { amount: amount.0 }.abi_encode(),
            TxBody::Withdraw => AgoraMarket::withdrawStakeCall {}.abi_encode(),
            other => return Err(EvmError::Unsupported(other.kind())),
        }
        .into())
    }

    /// Sends one step; returns the ledger transactions it refused (index, why) and its receipt.
    fn execute(&mut self, step: Step, authority_nonce: &mut u64) -> Result<StepResult, EvmError> {
        match step {
            Step::Batch(ops) => {
                let indices: Vec<Vec<usize>> = ops.iter().map(|(i, _)| i.clone()).collect();
                let ledger_ops = indices.iter().map(Vec::len).sum::<usize>() as u64;
                let ops: Vec<AgoraMarket::Op> = ops.into_iter().map(|(_, op)| op).collect();
                let call = AgoraMarket::settleBatchCall {
                    firstNonce: *authority_nonce,
                    ops,
                };
                match self.send_authority(call.abi_encode().into()) {
                    Ok(receipt) => {
                        let skips = skipped(&receipt);
                        let mut refused = Vec::new();
                        for (position, reason) in &skips {
                            if let (Some(carried), Some(op)) =
                                (indices.get(*position), call.ops.get(*position))
                            {
                                for index in carried {
                                    refused.push((*index, self.skip_error(*reason, op)));
                                }
                            }
                        }
                        // Assignments that went through are remembered for later releases.
                        for (position, op) in call.ops.iter().enumerate() {
                            if op.kind == OP_ASSIGN && !skips.iter().any(|(p, _)| *p == position) {
                                self.assignments
                                    .insert(Hash(op.orderId.0), op.providers.clone());
                            }
                        }
                        let applied = ledger_ops - refused.len() as u64;
                        *authority_nonce += applied;
                        Ok((refused, Some(receipt)))
                    }
                    Err(EvmError::Chain(ChainError::Reverted { data, .. })) => {
                        let error = self.revert_error(data.as_ref());
                        Ok((
                            indices
                                .into_iter()
                                .flatten()
                                .map(|i| (i, error.clone()))
                                .collect(),
                            None,
                        ))
                    }
                    Err(e) => Err(e),
                }
            }
            Step::Single { index, from, data } => {
                let result = match from {
                    Sender::Authority => {
                        // The slash call carries the authority nonce in its first word.
                        let mut call = AgoraMarket::slashCall::abi_decode(&data).map_err(|e| {
                            EvmError::Decode {
                                what: "slash",
                                detail: e.to_string(),
                            }
                        })?;
                        call.nonce = *authority_nonce;
                        let r = self.send_authority(call.abi_encode().into());
                        if r.is_ok() {
                            *authority_nonce += 1;
                        }
                        r
                    }
                    Sender::Account(account, nonce) => {
                        let signer = self.keys[&account].clone();
                        self.send(&signer, data, nonce)
                    }
                };
                match result {
                    Ok(receipt) => Ok((vec![], Some(receipt))),
                    Err(EvmError::Chain(ChainError::Reverted { data, .. })) => {
                        Ok((vec![(index, self.revert_error(data.as_ref()))], None))
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    fn revert_error(&self, data: Option<&Bytes>) -> LedgerError {
        match data.and_then(|d| AgoraMarketErrors::abi_decode(d).ok()) {
            Some(error) => self.ledger_error(error),
            None => self.contract_only("do this: the contract reverted without a known error"),
        }
    }

    /// A refusal the ledger's rules have no variant for (assignment, the stake minimum):
    /// reported as the authority not being allowed to do it.
    fn contract_only(&self, action: &'static str) -> LedgerError {
        LedgerError::Unauthorized {
            signer: self.authority_account,
            action,
            allowed: self.authority_account,
        }
    }

    /// The ledger error for an operation the contract skipped, rebuilt from its selector,
    /// the operation and the escrow as it stands now.
    fn skip_error(&self, selector: FixedBytes<4>, op: &AgoraMarket::Op) -> LedgerError {
        use AgoraMarket as M;
        let order_id = Hash(op.orderId.0);
        let s = selector.0;
        let escrow = || self.escrow(&order_id).ok().flatten();
        if s == M::UnknownEscrow::SELECTOR {
            LedgerError::UnknownEscrow(order_id)
        } else if s == M::EscrowClosed::SELECTOR {
            LedgerError::EscrowClosed {
                order_id,
                status: escrow().map_or(EscrowStatus::Released, |e| e.status),
            }
        } else if s == M::ReleaseExceedsEscrow::SELECTOR {
            let requested = if op.kind == OP_BURN {
                op.amount
            } else {
                op.payouts
                    .iter()
                    .map(|p| p.gross)
                    .fold(0u64, u64::saturating_add)
            };
            LedgerError::ReleaseExceedsEscrow {
                order_id,
                remaining: escrow().map_or(Amount::ZERO, |e| e.remaining),
                requested: Amount(requested),
            }
        } else if s == M::ZeroAmount::SELECTOR {
            LedgerError::ZeroAmount {
                what: "a payout amount",
            }
        } else if s == M::InsufficientBalance::SELECTOR {
            let have = self
                .account(&self.authority_account)
                .map_or(Amount::ZERO, |a| a.balance);
            LedgerError::InsufficientBalance {
                account: self.authority_account,
                have,
                need: Amount(
                    op.payouts
                        .iter()
                        .map(|p| p.gross)
                        .fold(0u64, u64::saturating_add),
                ),
            }
        } else if s == M::NoPayouts::SELECTOR {
            LedgerError::NoPayouts
        } else if s == M::TooManyPayouts::SELECTOR {
            LedgerError::TooManyPayouts {
                count: op.payouts.len().max(op.providers.len()),
                max: agora_ledger::tx::MAX_PAYOUTS,
            }
        } else if s == M::NotAssigned::SELECTOR {
            self.contract_only("release escrow to a provider the order was not assigned to")
        } else if s == M::StakeBelowMinimum::SELECTOR {
            self.contract_only("assign an order to a provider below the minimum stake")
        } else if s == M::AlreadyAssigned::SELECTOR {
            self.contract_only("assign an order twice")
        } else {
            self.contract_only("apply an operation the contract skipped")
        }
    }

    fn ledger_error(&self, error: AgoraMarketErrors) -> LedgerError {
        use AgoraMarketErrors as E;
        let id = |a: Address| self.account_id(a).unwrap_or(AccountId([0; 32]));
        let amount = |v: U256| Amount(u64::try_from(v).unwrap_or(u64::MAX));
        let ms = |v: U256| u64::try_from(v).unwrap_or(u64::MAX);
        match error {
            E::ZeroAmount(_) => LedgerError::ZeroAmount { what: "an amount" },
            E::InsufficientBalance(e) => LedgerError::InsufficientBalance {
                account: id(e.account),
                have: Amount(e.have),
                need: amount(e.need),
            },
            E::UnknownEscrow(e) => LedgerError::UnknownEscrow(Hash(e.orderId.0)),
            E::EscrowExists(e) => LedgerError::EscrowExists(Hash(e.orderId.0)),
            E::EscrowClosed(e) => LedgerError::EscrowClosed {
                order_id: Hash(e.orderId.0),
                status: status_of(e.status).unwrap_or(EscrowStatus::Released),
            },
            E::ReleaseExceedsEscrow(e) => LedgerError::ReleaseExceedsEscrow {
                order_id: Hash(e.orderId.0),
                remaining: Amount(e.remaining),
                requested: amount(e.requested),
            },
            E::NoPayouts(_) => LedgerError::NoPayouts,
            E::TooManyPayouts(e) => LedgerError::TooManyPayouts {
                count: usize::try_from(e.count).unwrap_or(usize::MAX),
                max: usize::try_from(e.max).unwrap_or(usize::MAX),
            },
            E::DeadlineNotInFuture(e) => LedgerError::DeadlineNotInFuture {
                deadline_ms: ms(e.deadlineMs),
                now_ms: ms(e.nowMs),
            },
            E::DeadlineNotReached(e) => LedgerError::DeadlineNotReached {
                deadline_ms: ms(e.deadlineMs),
                now_ms: ms(e.nowMs),
            },
            E::Unauthorized(e) => LedgerError::Unauthorized {
                signer: id(e.sender),
                action: "settle on the market contract",
                allowed: self.authority_account,
            },
            E::UnbondExceedsBonded(e) => LedgerError::UnbondExceedsBonded {
                account: id(e.account),
                bonded: Amount(e.bonded),
                requested: amount(e.requested),
            },
            E::NothingToWithdraw(e) => LedgerError::NothingToWithdraw(id(e.account)),
            E::UnbondingNotMatured(e) => LedgerError::UnbondingNotMatured {
                account: id(e.account),
                matures_at_height: e.maturesAt,
                height: ms(e.height),
            },
            E::SlashExceedsStake(e) => LedgerError::SlashExceedsStake {
                provider: id(e.provider),
                stake: amount(e.stake),
                requested: amount(e.requested),
            },
            E::EvidenceAlreadyUsed(e) => LedgerError::EvidenceAlreadyUsed(Hash(e.evidence.0)),
            E::ReasonTooLong(e) => LedgerError::ReasonTooLong {
                len: usize::try_from(e.len).unwrap_or(usize::MAX),
                max: usize::try_from(e.max).unwrap_or(usize::MAX),
            },
            E::Overflow(_) => LedgerError::Overflow(
                "an amount on chain (at most 2^64 - 1 base units, deadlines below 2^56 ms)",
            ),
            E::NotAssigned(_) => {
                self.contract_only("release escrow to a provider the order was not assigned to")
            }
            E::AlreadyAssigned(_) => self.contract_only("assign an order twice"),
            E::StakeBelowMinimum(_) => {
                self.contract_only("assign an order to a provider below the minimum stake")
            }
            E::AuthorityNonceMismatch(_) => self.contract_only(
                "settle with a stale authority nonce (another process settles with this key)",
            ),
            E::UnknownOp(_) | E::BadParameter(_) => {
                self.contract_only("send a malformed operation")
            }
            _ => self.contract_only("do this: the contract refused it"),
        }
    }

    fn header(&self, ids: &[Hash], submitter: &Keypair) -> Result<(BlockHeader, Hash), EvmError> {
        let block = self
            .runtime
            .block_on(self.chain.retry("eth_getBlockByNumber", || {
                self.chain
                    .provider()
                    .get_block_by_number(alloy::rpc::types::BlockNumberOrTag::Number(self.height))
            }))?
            .ok_or(EvmError::Decode {
                what: "eth_getBlockByNumber",
                detail: format!("block {} is missing", self.height),
            })?;
        let mut header = BlockHeader {
            height: block.header.number,
            prev_hash: Hash(block.header.parent_hash.0),
            tx_root: merkle_root(ids),
            state_root: Hash(block.header.state_root.0),
            timestamp_ms: block.header.timestamp.saturating_mul(1000),
            producer: submitter.account(),
            signature: agora_core::Signature([0; 64]),
        };
        header.signature = submitter.sign(&header.signing_bytes(&self.config.chain_id));
        let hash = header.hash();
        Ok((header, hash))
    }
}

use alloy::providers::Provider as _;

/// The market's token accounting, read from the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainSupply {
    /// Σ internal balances.
    pub balances: u64,
    /// Σ locked escrow.
    pub escrowed: u64,
    /// Σ bonded and unbonding stake.
    pub staked: u64,
    /// Burnt (locked in the contract forever).
    pub burnt: u64,
    /// Tokens the contract holds.
    pub held: U256,
}

impl ChainSupply {
    /// balances + escrowed + staked + burnt.
    pub fn accounted(&self) -> u128 {
        u128::from(self.balances)
            + u128::from(self.escrowed)
            + u128::from(self.staked)
            + u128::from(self.burnt)
    }

    /// Whether every token held is accounted for, and no more.
    pub fn conserved(&self) -> bool {
        U256::from(self.accounted()) == self.held
    }
}

const OP_RELEASE: u8 = 0;
const OP_REFUND: u8 = 1;
const OP_BURN: u8 = 2;
const OP_ASSIGN: u8 = 3;
const OP_SETTLE: u8 = 4;
const OP_PAY: u8 = 5;

fn assign_op(order_id: Hash, providers: Vec<Address>) -> AgoraMarket::Op {
    AgoraMarket::Op {
        kind: OP_ASSIGN,
        orderId: b32(&order_id),
        amount: 0,
        providers,
        payouts: vec![],
    }
}

/// The `OpSkipped` events of a receipt: (operation index, error selector).
fn skipped(receipt: &TransactionReceipt) -> Vec<(usize, FixedBytes<4>)> {
    receipt
        .inner
        .logs()
        .iter()
        .filter_map(|log| log.log_decode::<AgoraMarket::OpSkipped>().ok())
        .map(|log| {
            let data = log.inner.data;
            (
                usize::try_from(data.index).unwrap_or(usize::MAX),
                data.reason,
            )
        })
        .collect()
}

fn selector_name(selector: FixedBytes<4>) -> String {
    use AgoraMarket as M;
    let names = [
        (M::UnknownEscrow::SELECTOR, "UnknownEscrow"),
        (M::EscrowClosed::SELECTOR, "EscrowClosed"),
        (M::AlreadyAssigned::SELECTOR, "AlreadyAssigned"),
        (M::NoPayouts::SELECTOR, "NoPayouts"),
        (M::TooManyPayouts::SELECTOR, "TooManyPayouts"),
        (M::StakeBelowMinimum::SELECTOR, "StakeBelowMinimum"),
    ];
    names
        .iter()
        .find(|(s, _)| *s == selector.0)
        .map(|(_, name)| (*name).to_owned())
        .unwrap_or_else(|| format!("error 0x{}", hex::encode(selector.0)))
}

/// Gives `address` 1000 ether on a dev chain (anvil's `anvil_setBalance`).
pub async fn fund_gas(chain: &Chain, address: Address) -> Result<(), ChainError> {
    let wei = U256::from(10u64).pow(U256::from(21u64));
    chain
        .raw::<_, serde_json::Value>("anvil_setBalance", (address, wei))
        .await
        .map(|_| ())
}

/// Gas money, `amount` minted test tokens, approval and deposit into the market for one key.
pub async fn fund_account(
    chain: &Chain,
    token: Address,
    market: Address,
    signer: &PrivateKeySigner,
    amount: u64,
) -> Result<(), ChainError> {
    fund_gas(chain, signer.address()).await?;
    let mut nonce = chain.nonce(signer.address()).await?;
    let calls: [Bytes; 3] = [
        TestToken::mintCall {
            to: signer.address(),
            amount: U256::from(amount),
        }
        .abi_encode()
        .into(),
        TestToken::approveCall {
            spender: market,
            value: U256::from(amount),
        }
        .abi_encode()
        .into(),
        AgoraMarket::depositCall {
            amount: U256::from(amount),
        }
        .abi_encode()
        .into(),
    ];
    for (i, data) in calls.into_iter().enumerate() {
        let to = if i == 2 { market } else { token };
        chain.transact(signer, Some(to), data, nonce).await?;
        nonce += 1;
    }
    Ok(())
}

impl Settlement for EvmSettlement {
    type Error = EvmError;

    fn chain_id(&self) -> &ChainId {
        &self.config.chain_id
    }

    fn params(&self) -> &Params {
        &self.config.params
    }

    fn height(&self) -> u64 {
        self.height
    }

    fn account(&self, id: &AccountId) -> Result<Account, EvmError> {
        self.runtime.block_on(self.account_async(id))
    }

    fn escrow(&self, order_id: &Hash) -> Result<Option<Escrow>, EvmError> {
        self.runtime.block_on(self.escrow_async(order_id))
    }

    fn stake(&self, id: &AccountId) -> Result<Option<Stake>, EvmError> {
        self.runtime.block_on(self.stake_async(id))
    }

    fn submit(
        &mut self,
        txs: Vec<Tx>,
        _timestamp_ms: u64,
        submitter: &Keypair,
    ) -> Result<BlockOutcome, EvmError> {
        self.receipts.clear();
        self.ensure_contract()?;
        self.recheck_reorgs()?;
        let (head, head_time) = self.runtime.block_on(self.chain.head())?;
        self.height = self.height.max(head);
        let mut state = self.preview_state(&txs)?;
        let params = self.config.params.clone();
        let chain_id = self.config.chain_id.clone();
        let ctx = BlockContext {
            chain_id: &chain_id,
            params: &params,
            height: head + 1,
            timestamp_ms: head_time.saturating_mul(1000),
        };
        let mut rejected = Vec::new();
        let mut accepted = Vec::new();
        let mut effects: HashMap<usize, Effects> = HashMap::new();
        for (index, tx) in txs.iter().enumerate() {
            let known = self.known_parties(tx);
            let result = match known {
                Err(e) => return Err(e),
                Ok(()) => apply(&mut state, tx, &ctx),
            };
            match result {
                Ok(e) => {
                    effects.insert(index, e);
                    accepted.push((index, tx));
                }
                Err(error) => rejected.push(Rejected {
                    index,
                    id: tx.id(),
                    error,
                }),
            }
        }
        let steps = self.plan(&accepted)?;
        let mut authority_nonce = self.view(AgoraMarket::authorityNonceCall {})?;
        let mut refused_on_chain = BTreeSet::new();
        for step in steps {
            let (refused, receipt) = self.execute(step, &mut authority_nonce)?;
            for (index, error) in refused {
                refused_on_chain.insert(index);
                rejected.push(Rejected {
                    index,
                    id: txs[index].id(),
                    error,
                });
            }
            self.receipts.extend(receipt);
        }
        rejected.sort_by_key(|r| r.index);
        let included: Vec<(Hash, Effects)> = accepted
            .iter()
            .filter(|(i, _)| !refused_on_chain.contains(i))
            .map(|(i, tx)| (tx.id(), effects.remove(i).unwrap_or_default()))
            .collect();
        let ids: Vec<Hash> = included.iter().map(|(id, _)| *id).collect();
        let (header, hash) = self.header(&ids, submitter)?;
        Ok(BlockOutcome {
            header,
            hash,
            included,
            rejected,
        })
    }
}

impl EvmSettlement {
    /// Every party a transaction names must have a known EVM address.
    fn known_parties(&self, tx: &Tx) -> Result<(), EvmError> {
        self.address(&tx.signer)?;
        match &tx.body {
            TxBody::Transfer { to, .. } => self.address(to).map(|_| ()),
            TxBody::ReleaseEscrow { payouts, .. } => payouts
                .iter()
                .try_for_each(|(p, _)| self.address(p).map(|_| ())),
            TxBody::Slash {
                provider,
                beneficiary,
                ..
            } => self
                .address(provider)
                .and_then(|_| self.address(beneficiary))
                .map(|_| ()),
            _ => Ok(()),
        }
    }
}
