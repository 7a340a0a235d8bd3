//! A participant's own transactions on the `AgoraMarket` contract.
//!
//! On the EVM backend the market node settles, assigns and slashes, and nothing else: a
//! buyer locks its own escrow and a provider bonds its own stake, each with the EVM key
//! its Agora identity derives ([`crate::keys`]), straight to the contract. [`Participant`]
//! is that side: it tops the account's balance on the contract up from the tokens it holds
//! (ERC-20 `approve` + `deposit`, only for the shortfall), then sends `openEscrow` or
//! `bond`. Every call is simulated before it is signed, so a refusal comes back decoded
//! and nothing is sent.

use std::time::Duration;

use agora_core::{Hash, Keypair};
use alloy::primitives::{Address, Bytes, FixedBytes, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolInterface};

use crate::chain::{Chain, ChainError};
use crate::contracts::AgoraMarket::{self, AgoraMarketErrors};
use crate::contracts::TestToken;
use crate::keys::evm_signer;

/// What can go wrong sending a participant's own transaction.
#[derive(Debug, thiserror::Error)]
pub enum ParticipantError {
    /// The chain could not be reached or answered wrongly.
    #[error(transparent)]
    Chain(ChainError),
    /// A configured address does not parse.
    #[error("{what} {text:?} is not an EVM address: {detail}")]
    BadAddress {
        /// Which address.
        what: &'static str,
        /// The text.
        text: String,
        /// Why.
        detail: String,
    },
    /// Neither the balance on the contract nor the tokens held cover the amount.
    #[error(
        "{address} needs {need} base units on market {market} but has {in_market} there and {tokens} tokens of {token} to deposit; fund that address with the payment token first (nothing was sent)"
    )]
    InsufficientFunds {
        /// The participant's EVM address.
        address: Address,
        /// The market.
        market: Address,
        /// The payment token.
        token: Address,
        /// What the transaction locks.
        need: u64,
        /// The balance on the contract.
        in_market: u64,
        /// Tokens held outside the contract.
        tokens: U256,
    },
    /// An escrow for this order already exists on chain with other terms or another
    /// opener: the order id is taken (order ids are used once).
    #[error(
        "order {order_id} already has an escrow on chain opened by {opener} for {locked} until {deadline_ms} ms (status {status}); sign a new order (a new id) instead"
    )]
    EscrowTaken {
        /// The order.
        order_id: Hash,
        /// Who opened it.
        opener: Address,
        /// Its amount.
        locked: u64,
        /// Its deadline.
        deadline_ms: u64,
        /// Its status code (1 open, 2 released, 3 refunded).
        status: u8,
    },
    /// The contract refused the call in simulation; nothing was sent.
    #[error("the market contract refused {what}: {reason} (nothing was sent)")]
    Refused {
        /// The request that was simulated.
        what: String,
        /// The decoded contract error.
        reason: String,
    },
    /// The chain answered something that cannot be decoded.
    #[error("unexpected answer from the chain to {what}: {detail}")]
    Decode {
        /// The call.
        what: &'static str,
        /// Why.
        detail: String,
    },
}

impl From<ChainError> for ParticipantError {
    fn from(error: ChainError) -> ParticipantError {
        match error {
            ChainError::Reverted { what, data, detail } => ParticipantError::Refused {
                what,
                reason: data
                    .as_ref()
                    .and_then(|d| AgoraMarketErrors::abi_decode(d).ok())
                    .map(|e| format!("{e:?}"))
                    .unwrap_or(detail),
            },
            other => ParticipantError::Chain(other),
        }
    }
}

/// How many times a transaction whose nonce another sender took is signed again.
const NONCE_RETRIES: u32 = 5;

/// Whether `error` means another transaction of the same sender took this one's nonce,
/// so this one was not and never will be applied.
fn lost_nonce(error: &ChainError) -> bool {
    match error {
        ChainError::NonceUsed { .. } => true,
        ChainError::Refused { detail, .. } => {
            detail.contains("underpriced") || detail.contains("nonce too low")
        }
        _ => false,
    }
}

/// An escrow this participant opened (or had already opened, identically).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenedEscrow {
    /// The opener: this participant's EVM address.
    pub buyer: Address,
    /// The block it was opened in; `None` when it was already open before this call.
    pub block: Option<u64>,
}

/// One Agora identity acting on the market contract with its derived EVM key.
#[derive(Clone, Debug)]
pub struct Participant {
    chain: Chain,
    signer: PrivateKeySigner,
    market: Address,
    token: Address,
}

/// Parses an `0x…` address, naming `what` on failure.
pub fn parse_address(what: &'static str, text: &str) -> Result<Address, ParticipantError> {
    text.parse().map_err(|e| ParticipantError::BadAddress {
        what,
        text: text.to_owned(),
        detail: format!("{e}"),
    })
}

impl Participant {
    /// Connects `keypair`'s derived EVM key to the market contract at `market` through
    /// `rpc_url` (as a market's `/v1/info` announces them); reads the payment token from
    /// the contract.
    pub async fn connect(
        rpc_url: &str,
        market: &str,
        keypair: &Keypair,
    ) -> Result<Participant, ParticipantError> {
        let market = parse_address("market contract", market)?;
        let chain =
            Chain::connect(rpc_url, Duration::from_secs(2), Duration::from_secs(60)).await?;
        let mut participant = Participant {
            chain,
            signer: evm_signer(keypair),
            market,
            token: Address::ZERO,
        };
        participant.token = participant.view(AgoraMarket::tokenCall {}).await?;
        Ok(participant)
    }

    /// This participant's EVM address.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// The chain connection.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// The balance on the market contract.
    pub async fn balance(&self) -> Result<u64, ParticipantError> {
        self.view(AgoraMarket::balanceOfCall(self.address())).await
    }

    /// Bonded stake on the market contract.
    pub async fn bonded(&self) -> Result<u64, ParticipantError> {
        let stake = self
            .view(AgoraMarket::stakeOfCall {
                account: self.address(),
            })
            .await?;
        Ok(stake.bonded)
    }

    /// The stake the contract requires before an order can be assigned to a provider.
    pub async fn min_stake(&self) -> Result<u64, ParticipantError> {
        self.view(AgoraMarket::minStakeCall {}).await
    }

    /// Locks `amount` for `order_id` until `deadline_ms` with this participant's own
    /// transaction, depositing the shortfall from its tokens first. Retrying is safe: an
    /// escrow this participant already opened with the same terms is reported, not opened
    /// twice; one opened by anyone else or with other terms is [`ParticipantError::EscrowTaken`].
    pub async fn open_escrow(
        &self,
        order_id: Hash,
        amount: u64,
        deadline_ms: u64,
    ) -> Result<OpenedEscrow, ParticipantError> {
        let existing = self
            .view(AgoraMarket::escrowOfCall {
                orderId: FixedBytes(order_id.0),
            })
            .await?;
        if existing.status != 0 {
            let deadline = existing.deadlineMs.to::<u64>();
            if existing.buyer == self.address()
                && existing.locked == amount
                && deadline == deadline_ms
                && existing.status == 1
            {
                return Ok(OpenedEscrow {
                    buyer: self.address(),
                    block: None,
                });
            }
            return Err(ParticipantError::EscrowTaken {
                order_id,
                opener: existing.buyer,
                locked: existing.locked,
                deadline_ms: deadline,
                status: existing.status,
            });
        }
        self.ensure_balance(amount).await?;
        let block = self
            .send(
                self.market,
                AgoraMarket::openEscrowCall {
                    orderId: FixedBytes(order_id.0),
                    amount,
                    deadlineMs: deadline_ms,
                }
                .abi_encode()
                .into(),
            )
            .await?;
        Ok(OpenedEscrow {
            buyer: self.address(),
            block: Some(block),
        })
    }

    /// Tops bonded stake up to `target` with this participant's own `bond`, depositing the
    /// shortfall from its tokens first. Returns what was bonded now (`None`: already there).
    pub async fn bond_to(&self, target: u64) -> Result<Option<u64>, ParticipantError> {
        let bonded = self.bonded().await?;
        if bonded >= target {
            return Ok(None);
        }
        let needed = target - bonded;
        self.ensure_balance(needed).await?;
        self.send(
            self.market,
            AgoraMarket::bondCall { amount: needed }.abi_encode().into(),
        )
        .await?;
        Ok(Some(needed))
    }

    /// Makes the balance on the contract at least `need`, depositing only the shortfall.
    async fn ensure_balance(&self, need: u64) -> Result<(), ParticipantError> {
        let in_market = self.balance().await?;
        if in_market >= need {
            return Ok(());
        }
        let shortfall = need - in_market;
        let held = self
            .chain
            .call(
                self.token,
                TestToken::balanceOfCall {
                    account: self.address(),
                }
                .abi_encode()
                .into(),
            )
            .await?;
        let tokens = U256::from_be_slice(&held);
        if tokens < U256::from(shortfall) {
            return Err(ParticipantError::InsufficientFunds {
                address: self.address(),
                market: self.market,
                token: self.token,
                need,
                in_market,
                tokens,
            });
        }
        // Standard ERC-20 `approve`; the test token's ABI is the ERC-20 one.
        self.send(
            self.token,
            TestToken::approveCall {
                spender: self.market,
                value: U256::from(shortfall),
            }
            .abi_encode()
            .into(),
        )
        .await?;
        self.send(
            self.market,
            AgoraMarket::depositCall {
                amount: U256::from(shortfall),
            }
            .abi_encode()
            .into(),
        )
        .await?;
        Ok(())
    }

    /// Signs with the next nonce, sends, awaits the receipt; returns its block. Another
    /// sender of the same key (a second process, or concurrent calls) may take the nonce
    /// first: the chain then refuses this transaction or it can never be mined, so it is
    /// signed again with a fresh nonce, a few times.
    async fn send(&self, to: Address, data: Bytes) -> Result<u64, ParticipantError> {
        let mut attempt = 0u32;
        loop {
            let nonce = self.chain.nonce(self.address()).await?;
            match self
                .chain
                .transact(&self.signer, Some(to), data.clone(), nonce)
                .await
            {
                Ok((_, receipt)) => return Ok(receipt.block_number.unwrap_or_default()),
                Err(e) if attempt < NONCE_RETRIES && lost_nonce(&e) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn view<C: SolCall>(&self, call: C) -> Result<C::Return, ParticipantError> {
        let data = self
            .chain
            .call(self.market, call.abi_encode().into())
            .await?;
        C::abi_decode_returns(&data).map_err(|e| ParticipantError::Decode {
            what: C::SIGNATURE,
            detail: e.to_string(),
        })
    }
}
