//! Talking to an EVM node: signing with explicit nonces, sending, and watching receipts.
//!
//! Every transaction is signed here, once, and its raw bytes kept ([`Sent`]). Whatever goes
//! wrong afterwards (a request that times out because the node is frozen, a node restarted
//! without its pool, a reorg that dropped the block) is answered by broadcasting *the same
//! bytes* again: one signed transaction has one hash and one nonce, so it can be included at
//! most once. That, plus the contract's idempotence by order id, is why a retry never
//! settles twice.

use std::time::Duration;

use alloy::consensus::TxEnvelope;
use alloy::eips::eip2718::Encodable2718;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::{Provider, ProviderBuilder, RootProvider};
use alloy::rpc::types::{BlockNumberOrTag, TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::{RpcError, TransportErrorKind};
use tokio::time::{Instant, sleep, timeout};

/// What went wrong talking to the chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The endpoint is not a URL.
    #[error("{url:?} is not an RPC URL: {detail}")]
    BadUrl {
        /// The text.
        url: String,
        /// Why.
        detail: String,
    },
    /// The node kept failing or not answering for the whole retry window.
    #[error(
        "the EVM node did not answer {what} within {secs} s (last: {last}); is it running and reachable?"
    )]
    Unavailable {
        /// The request.
        what: String,
        /// The retry window.
        secs: u64,
        /// The last failure.
        last: String,
    },
    /// The node answered with an error other than a revert.
    #[error("the EVM node refused {what}: {detail}")]
    Refused {
        /// The request.
        what: String,
        /// Its answer.
        detail: String,
    },
    /// A call or gas estimate reverted; `data` is the revert data, if any.
    #[error("{what} reverted: {detail}")]
    Reverted {
        /// The call.
        what: String,
        /// The node's message.
        detail: String,
        /// ABI-encoded custom error.
        data: Option<Bytes>,
    },
    /// A transaction was mined but failed.
    #[error("transaction {hash} was mined in block {block} but reverted")]
    Failed {
        /// Its hash.
        hash: B256,
        /// The block.
        block: u64,
    },
    /// The transaction was never mined within the retry window.
    #[error(
        "transaction {hash} (nonce {nonce} of {from}) was not mined within {secs} s; it was rebroadcast and may still land"
    )]
    NotMined {
        /// Its hash.
        hash: B256,
        /// Its sender.
        from: Address,
        /// Its nonce.
        nonce: u64,
        /// The window.
        secs: u64,
    },
    /// Another transaction of the sender took this nonce, so this one can never be mined.
    #[error("nonce {nonce} of {from} was used by another transaction; {hash} will never be mined")]
    NonceUsed {
        /// The transaction that lost its nonce.
        hash: B256,
        /// Its sender.
        from: Address,
        /// The nonce.
        nonce: u64,
    },
    /// Signing failed.
    #[error("could not sign a transaction: {0}")]
    Sign(String),
}

/// A signed, broadcast transaction and everything needed to broadcast it again.
#[derive(Clone, Debug)]
pub struct Sent {
    /// Its hash.
    pub hash: B256,
    /// The signed bytes (EIP-2718).
    pub raw: Bytes,
    /// The sender.
    pub from: Address,
    /// The sender's nonce it uses.
    pub nonce: u64,
}

/// A connection to one EVM node, with timeouts and a retry window.
#[derive(Clone, Debug)]
pub struct Chain {
    provider: RootProvider,
    chain_id: u64,
    /// How long one request may take before it is retried.
    pub rpc_timeout: Duration,
    /// How long a request is retried, and a transaction awaited, before giving up.
    pub retry_for: Duration,
    /// Blocks on top of (and including) a receipt's before it counts as settled.
    pub confirmations: u64,
}

fn rpc_text(error: &RpcError<TransportErrorKind>) -> String {
    error.to_string()
}

impl Chain {
    /// Connects to `url` and reads the chain id.
    pub async fn connect(
        url: &str,
        rpc_timeout: Duration,
        retry_for: Duration,
    ) -> Result<Chain, ChainError> {
        let parsed =
            alloy::transports::http::reqwest::Url::parse(url).map_err(|e| ChainError::BadUrl {
                url: url.to_owned(),
                detail: e.to_string(),
            })?;
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect_http(parsed);
        let mut chain = Chain {
            provider,
            chain_id: 0,
            rpc_timeout,
            retry_for,
            confirmations: 1,
        };
        chain.chain_id = chain
            .retry("eth_chainId", || chain.provider.get_chain_id())
            .await?;
        Ok(chain)
    }

    /// The EVM chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The underlying provider, for reads the helpers here do not cover.
    pub fn provider(&self) -> &RootProvider {
        &self.provider
    }

    /// Runs `request` until it answers, retrying timeouts and transport failures (a frozen
    /// or restarting node) for [`Chain::retry_for`]. An error answer is returned at once.
    pub async fn retry<T, F, Fut>(&self, what: &str, mut request: F) -> Result<T, ChainError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::IntoFuture<Output = Result<T, RpcError<TransportErrorKind>>>,
    {
        let deadline = Instant::now() + self.retry_for;
        let mut backoff = Duration::from_millis(50);
        loop {
            let last = match timeout(self.rpc_timeout, request().into_future()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error)) if error.as_error_resp().is_some() => {
                    let payload = error.as_error_resp().expect("checked");
                    if let Some(data) = payload.as_revert_data() {
                        return Err(ChainError::Reverted {
                            what: what.to_owned(),
                            detail: payload.message.to_string(),
                            data: Some(data),
                        });
                    }
                    if payload.message.contains("revert") {
                        return Err(ChainError::Reverted {
                            what: what.to_owned(),
                            detail: payload.message.to_string(),
                            data: None,
                        });
                    }
                    return Err(ChainError::Refused {
                        what: what.to_owned(),
                        detail: rpc_text(&error),
                    });
                }
                Ok(Err(error)) => rpc_text(&error),
                Err(_) => format!("no answer within {} ms", self.rpc_timeout.as_millis()),
            };
            if Instant::now() >= deadline {
                return Err(ChainError::Unavailable {
                    what: what.to_owned(),
                    secs: self.retry_for.as_secs(),
                    last,
                });
            }
            sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// An `eth_call` against the latest block.
    pub async fn call(&self, to: Address, data: Bytes) -> Result<Bytes, ChainError> {
        let request = TransactionRequest::default().with_to(to).with_input(data);
        self.retry("eth_call", || self.provider.call(request.clone()))
            .await
    }

    /// The number of transactions `address` has had mined (its next nonce).
    pub async fn nonce(&self, address: Address) -> Result<u64, ChainError> {
        self.retry("eth_getTransactionCount", || {
            self.provider.get_transaction_count(address)
        })
        .await
    }

    /// The latest block number.
    pub async fn block_number(&self) -> Result<u64, ChainError> {
        self.retry("eth_blockNumber", || self.provider.get_block_number())
            .await
    }

    /// The latest block's number and timestamp (seconds).
    pub async fn head(&self) -> Result<(u64, u64), ChainError> {
        let block = self
            .retry("eth_getBlockByNumber", || {
                self.provider.get_block_by_number(BlockNumberOrTag::Latest)
            })
            .await?
            .ok_or_else(|| ChainError::Refused {
                what: "eth_getBlockByNumber(latest)".into(),
                detail: "no latest block".into(),
            })?;
        Ok((block.header.number, block.header.timestamp))
    }

    /// Whether `address` holds code (a deployed contract).
    pub async fn has_code(&self, address: Address) -> Result<bool, ChainError> {
        let code = self
            .retry("eth_getCode", || self.provider.get_code_at(address))
            .await?;
        Ok(!code.is_empty())
    }

    /// Signs a call (or, with `to` = `None`, a contract creation) from `signer` with
    /// `nonce`, after simulating it: a transaction that would revert is never sent, and
    /// the revert comes back as [`ChainError::Reverted`].
    pub async fn sign(
        &self,
        signer: &PrivateKeySigner,
        to: Option<Address>,
        data: Bytes,
        nonce: u64,
    ) -> Result<Sent, ChainError> {
        let from = signer.address();
        let mut request = TransactionRequest::default()
            .with_from(from)
            .with_input(data)
            .with_nonce(nonce)
            .with_chain_id(self.chain_id);
        request = match to {
            Some(to) => request.with_to(to),
            None => request.into_create(),
        };
        let gas = self
            .retry("eth_estimateGas", || {
                self.provider.estimate_gas(request.clone())
            })
            .await?;
        let fees = self
            .retry("eth_feeHistory", || self.provider.estimate_eip1559_fees())
            .await?;
        // Estimates are exact on a quiet chain; the margin covers state that moves between
        // the estimate and inclusion (a cold slot turned warm costs less, never more by much).
        let request = request
            .with_gas_limit(gas + gas / 5 + 10_000)
            .with_max_fee_per_gas(fees.max_fee_per_gas)
            .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas);
        let wallet = EthereumWallet::from(signer.clone());
        let envelope: TxEnvelope = request
            .build(&wallet)
            .await
            .map_err(|e| ChainError::Sign(e.to_string()))?;
        Ok(Sent {
            hash: *envelope.tx_hash(),
            raw: envelope.encoded_2718().into(),
            from,
            nonce,
        })
    }

    /// Broadcasts signed bytes. "Already known" and "nonce too low" answers are not
    /// errors here: the transaction (or the one that used its nonce) is already in;
    /// [`Chain::confirm`] finds out which.
    pub async fn broadcast(&self, sent: &Sent) -> Result<(), ChainError> {
        match self
            .retry("eth_sendRawTransaction", || async {
                self.provider
                    .send_raw_transaction(&sent.raw)
                    .await
                    .map(|_| ())
            })
            .await
        {
            Ok(()) => Ok(()),
            Err(ChainError::Refused { detail, .. })
                if detail.contains("already") || detail.contains("nonce too low") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The receipt of `sent` once it is [`Chain::confirmations`] deep, rebroadcasting the
    /// same bytes every second while it is missing (a pool lost to a restart or a reorg).
    pub async fn confirm(&self, sent: &Sent) -> Result<TransactionReceipt, ChainError> {
        let deadline = Instant::now() + self.retry_for;
        let mut last_broadcast = Instant::now();
        loop {
            match self.receipt(sent.hash).await? {
                Some(receipt) => {
                    let block = receipt.block_number.unwrap_or_default();
                    let head = self.block_number().await?;
                    if head + 1 >= block + self.confirmations {
                        if !receipt.status() {
                            return Err(ChainError::Failed {
                                hash: sent.hash,
                                block,
                            });
                        }
                        return Ok(receipt);
                    }
                }
                None if last_broadcast.elapsed() >= Duration::from_secs(1) => {
                    if self.nonce(sent.from).await? > sent.nonce {
                        // Mined nonces moved past ours without our receipt: someone else's
                        // transaction took it (checked after the receipt lookup, so ours
                        // was not simply mined in between).
                        if self.receipt(sent.hash).await?.is_none() {
                            return Err(ChainError::NonceUsed {
                                hash: sent.hash,
                                from: sent.from,
                                nonce: sent.nonce,
                            });
                        }
                        continue;
                    }
                    self.broadcast(sent).await?;
                    last_broadcast = Instant::now();
                }
                None => {}
            }
            if Instant::now() >= deadline {
                return Err(ChainError::NotMined {
                    hash: sent.hash,
                    from: sent.from,
                    nonce: sent.nonce,
                    secs: self.retry_for.as_secs(),
                });
            }
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// The receipt of `hash`, if it is mined.
    pub async fn receipt(&self, hash: B256) -> Result<Option<TransactionReceipt>, ChainError> {
        self.retry("eth_getTransactionReceipt", || {
            self.provider.get_transaction_receipt(hash)
        })
        .await
    }

    /// The canonical hash of block `number`, if the chain is that long.
    pub async fn block_hash(&self, number: u64) -> Result<Option<B256>, ChainError> {
        let block = self
            .retry("eth_getBlockByNumber", || {
                self.provider
                    .get_block_by_number(BlockNumberOrTag::Number(number))
            })
            .await?;
        Ok(block.map(|b| b.header.hash))
    }

    /// Signs, sends and confirms in one go.
    pub async fn transact(
        &self,
        signer: &PrivateKeySigner,
        to: Option<Address>,
        data: Bytes,
        nonce: u64,
    ) -> Result<(Sent, TransactionReceipt), ChainError> {
        let sent = self.sign(signer, to, data, nonce).await?;
        self.broadcast(&sent).await?;
        let receipt = self.confirm(&sent).await?;
        Ok((sent, receipt))
    }

    /// A raw JSON-RPC request (anvil's test methods: snapshots, time, balances).
    pub async fn raw<P, R>(&self, method: &'static str, params: P) -> Result<R, ChainError>
    where
        P: alloy::rpc::json_rpc::RpcSend + Clone,
        R: alloy::rpc::json_rpc::RpcRecv,
    {
        self.retry(method, || {
            self.provider.raw_request(method.into(), params.clone())
        })
        .await
    }
}
