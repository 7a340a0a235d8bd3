//! Where the market's money is kept: the embedded [`Ledger`] (the default) or the
//! `AgoraMarket` contract on an EVM chain ([`EvmSettlement`], `--settlement evm`).
//!
//! The block producer thread owns one [`Books`] and reads accounts, escrows and stakes and
//! submits batches through the same [`Settlement`] rules on either backend. What only the
//! embedded ledger has — its blocks, its full escrow and stake tables, its replayable
//! history — is reached through [`Books::ledger`]; on the EVM backend those live on the
//! chain, and [`SettlementInfo`] says which chain and contract to read them from.

use std::collections::HashSet;

use agora_core::{AccountId, Amount, ChainId, Keypair};
use agora_evm::EvmSettlement;
use agora_ledger::{Account, BlockOutcome, Escrow, Ledger, Settlement, Stake, Tx, TxBody};
use agora_proto::api::SettlementInfo;

/// The ask attribute in which a provider publishes the EVM address it is paid at.
pub const EVM_ADDRESS_ATTR: &str = "evm.address";

/// Why an escrow the buyer opened on chain was not taken over.
#[derive(Debug, Clone)]
pub enum AdoptError {
    /// It differs from the order (amount, deadline, buyer, or it is no longer fresh).
    Mismatch(String),
    /// The chain could not be read.
    Read(String),
}

/// The settlement backend the block producer runs over.
// One per node, owned by the producer thread for its whole life: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Books {
    /// The node's own hash-chained ledger.
    Embedded(Ledger),
    /// The contract on an EVM chain.
    Evm(EvmBooks),
}

/// The EVM backend and the accounts whose own transactions this node may send.
pub struct EvmBooks {
    /// The backend (its own single-threaded runtime; used on the producer thread only).
    pub settlement: Box<EvmSettlement>,
    /// Accounts whose EVM key this node holds, whose own transactions it may send. The
    /// market node passes none (not even on a dev chain): every other account's own
    /// transaction is refused before anything is sent, since the account sends it to the
    /// chain itself. Kept for tools that act for accounts they hold keys of.
    pub local_keys: HashSet<AccountId>,
    /// The JSON-RPC endpoint, as configured.
    pub rpc_url: String,
}

impl EvmBooks {
    /// Wraps `settlement` (connected to `rpc_url`), holding the EVM keys of `local` (dev
    /// chains only).
    pub fn new(mut settlement: EvmSettlement, rpc_url: String, local: &[Keypair]) -> EvmBooks {
        for key in local {
            settlement.add_key(key);
        }
        EvmBooks {
            settlement: Box::new(settlement),
            local_keys: local.iter().map(Keypair::account).collect(),
            rpc_url,
        }
    }

    /// What clients are told about this chain.
    pub fn info(&self) -> SettlementInfo {
        SettlementInfo::Evm {
            rpc_url: self.rpc_url.clone(),
            evm_chain_id: self.settlement.chain().chain_id(),
            contract: self.settlement.market().to_string(),
            token: self.settlement.token().to_string(),
        }
    }
}

impl Books {
    /// The Agora chain id signatures name.
    pub fn chain_id(&self) -> ChainId {
        match self {
            Books::Embedded(l) => Settlement::chain_id(l).clone(),
            Books::Evm(e) => e.settlement.chain_id().clone(),
        }
    }

    /// The last block's height (on the EVM backend: the EVM block number last seen).
    pub fn height(&self) -> u64 {
        match self {
            Books::Embedded(l) => Settlement::height(l),
            Books::Evm(e) => e.settlement.height(),
        }
    }

    /// What clients are told about where the money is.
    pub fn info(&self) -> SettlementInfo {
        match self {
            Books::Embedded(_) => SettlementInfo::Embedded,
            Books::Evm(e) => e.info(),
        }
    }

    /// The embedded ledger, if that is the backend.
    pub fn ledger(&mut self) -> Option<&mut Ledger> {
        match self {
            Books::Embedded(l) => Some(l),
            Books::Evm(_) => None,
        }
    }

    /// Whether the backend can name this account's money at all: always on the embedded
    /// ledger; on an EVM chain only when an address is bound to the account (a provider's
    /// from its signed ask, a challenger's from its bond).
    pub fn knows_account(&self, id: &AccountId) -> bool {
        match self {
            Books::Embedded(_) => true,
            Books::Evm(e) => e.settlement.address_of(id).is_some(),
        }
    }

    /// An account's balance and next nonce.
    pub fn account(&self, id: &AccountId) -> Result<Account, String> {
        match self {
            Books::Embedded(l) => Ok(l.state().account(id)),
            Books::Evm(e) => e.settlement.account(id).map_err(|e| e.to_string()),
        }
    }

    /// An order's escrow, open or closed.
    pub fn escrow(&self, order_id: &agora_core::Hash) -> Result<Option<Escrow>, String> {
        match self {
            Books::Embedded(l) => Ok(l.state().escrow(order_id).copied()),
            Books::Evm(e) => e.settlement.escrow(order_id).map_err(|e| e.to_string()),
        }
    }

    /// A provider's stake.
    pub fn stake(&self, id: &AccountId) -> Result<Option<Stake>, String> {
        match self {
            Books::Embedded(l) => Ok(l.state().stake(id).cloned()),
            Books::Evm(e) => e.settlement.stake(id).map_err(|e| e.to_string()),
        }
    }

    /// Bonded stake the backend requires before a provider can be assigned an order: the
    /// contract's `minStake` on the EVM backend; the embedded ledger has no such floor.
    pub fn min_stake(&self) -> Amount {
        match self {
            Books::Embedded(_) => Amount::ZERO,
            Books::Evm(e) => Amount(e.settlement.min_stake()),
        }
    }

    /// On the EVM backend, takes over the escrow the buyer opened on chain itself for the
    /// order `escrow_tx` (its signed `OpenEscrow`) names: `Ok(Some(height))` when it is
    /// there and identical (order id, amount, deadline, buyer), `Ok(None)` when the chain
    /// holds none (the transaction is then submitted as usual), and an error naming the
    /// difference otherwise. The embedded ledger always answers `Ok(None)`.
    pub fn adopt_escrow(&mut self, escrow_tx: &Tx) -> Result<Option<u64>, AdoptError> {
        let Books::Evm(evm) = self else {
            return Ok(None);
        };
        let TxBody::OpenEscrow {
            order_id,
            amount,
            deadline_ms,
        } = &escrow_tx.body
        else {
            return Ok(None);
        };
        match evm
            .settlement
            .adopt_escrow(*order_id, escrow_tx.signer, *amount, *deadline_ms)
        {
            Ok(Some(_)) => Ok(Some(evm.settlement.height())),
            Ok(None) => Ok(None),
            Err(e @ agora_evm::EvmError::EscrowMismatch { .. }) => {
                Err(AdoptError::Mismatch(e.to_string()))
            }
            Err(e) => Err(AdoptError::Read(e.to_string())),
        }
    }

    /// On the EVM backend, takes over the challenge bond the challenger opened on chain
    /// itself for the escrow `bond_tx` (its signed `OpenEscrow`) names, exactly as
    /// [`Books::adopt_escrow`] does an order's escrow, and learns the challenger's address
    /// from it (a slash the challenge wins pays its reward there).
    pub fn adopt_bond(&mut self, bond_tx: &Tx) -> Result<Option<u64>, AdoptError> {
        let (
            Books::Evm(evm),
            TxBody::OpenEscrow {
                order_id,
                amount,
                deadline_ms,
            },
        ) = (&mut *self, &bond_tx.body)
        else {
            return Ok(None);
        };
        match evm
            .settlement
            .adopt_bond(*order_id, bond_tx.signer, *amount, *deadline_ms)
        {
            Ok(Some(_)) => Ok(Some(evm.settlement.height())),
            Ok(None) => Ok(None),
            Err(e @ agora_evm::EvmError::EscrowMismatch { .. }) => {
                Err(AdoptError::Mismatch(e.to_string()))
            }
            Err(e) => Err(AdoptError::Read(e.to_string())),
        }
    }

    /// On the EVM backend, notes from the node's own order record who bought an order
    /// whose escrow the buyer opened on chain itself (used when resuming after a restart).
    pub fn note_order_buyer(&mut self, order_id: agora_core::Hash, buyer: AccountId) {
        if let Books::Evm(evm) = self {
            evm.settlement.note_order_buyer(order_id, buyer);
        }
    }

    /// On the EVM backend, records the payout address a provider published in its signed
    /// ask (`evm.address`); nothing to do on the embedded ledger.
    pub fn register_published(&mut self, provider: AccountId, address: &str) -> Result<(), String> {
        let Books::Evm(evm) = self else {
            return Ok(());
        };
        let address: agora_evm::Address = address.parse().map_err(|e| {
            format!("ask attribute {EVM_ADDRESS_ATTR} {address:?} is not an EVM address: {e}")
        })?;
        evm.settlement
            .register_published(provider, address)
            .map_err(|e| e.to_string())
    }

    /// Whether this backend can carry `tx` at all, checked before anything is sent so one
    /// transaction it cannot carry never fails a whole batch. The embedded ledger carries
    /// everything its rules accept; on the EVM backend an account's own transaction needs
    /// that account's key here (otherwise the account sends it to the contract itself),
    /// and every account named needs a known EVM address. The market authority's own
    /// transactions (settling, slashing, paying audits from the verification fund) are
    /// always carried.
    pub fn can_carry(&self, tx: &Tx, market: &AccountId) -> Result<(), String> {
        let Books::Evm(evm) = self else {
            return Ok(());
        };
        if !EvmSettlement::carries(&tx.body) {
            return Err(format!(
                "the EVM backend does not carry {} transactions (they exist on the embedded ledger only); nothing was sent",
                tx.body.kind()
            ));
        }
        if &tx.signer != market && !evm.local_keys.contains(&tx.signer) {
            return Err(format!(
                "on the EVM backend account {} sends its own {} to contract {} itself; this node holds no key for it and sent nothing",
                tx.signer,
                tx.body.kind(),
                evm.settlement.market()
            ));
        }
        let named: Vec<AccountId> = match &tx.body {
            TxBody::Transfer { to, .. } => vec![*to],
            TxBody::ReleaseEscrow { payouts, .. } => payouts.iter().map(|(p, _)| *p).collect(),
            TxBody::Slash {
                provider,
                beneficiary,
                ..
            } => vec![*provider, *beneficiary],
            _ => Vec::new(),
        };
        match named
            .iter()
            .find(|a| evm.settlement.address_of(a).is_none())
        {
            Some(unknown) => Err(format!(
                "account {unknown} has no known EVM address on this market; a provider is paid only at the address it published"
            )),
            None => Ok(()),
        }
    }

    /// Settles `txs` in order, durably; refused ones come back in the outcome.
    pub fn submit(
        &mut self,
        txs: Vec<Tx>,
        timestamp_ms: u64,
        producer: &Keypair,
    ) -> Result<BlockOutcome, String> {
        match self {
            Books::Embedded(l) => l
                .produce_block(txs, timestamp_ms, producer)
                .map_err(|e| e.to_string()),
            Books::Evm(e) => e
                .settlement
                .submit(txs, timestamp_ms, producer)
                .map_err(|e| e.to_string()),
        }
    }
}
