//! The agent's error type: what went wrong while starting or running, and what to do.

use std::path::PathBuf;

use agora_core::Amount;

use crate::hardware::HardwareError;
use crate::pricing::PricingError;

/// Why the provider agent could not start or carry out an operation.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The configuration cannot work.
    #[error("invalid provider configuration: {0}")]
    Config(String),
    /// The pricing strategy cannot work.
    #[error(transparent)]
    Pricing(#[from] PricingError),
    /// The machine could not be inspected.
    #[error(transparent)]
    Hardware(#[from] HardwareError),
    /// The market's HTTP API could not be reached.
    #[error(
        "cannot reach the market at {url}: {reason}; check --market and that the market node is running"
    )]
    MarketUnreachable {
        /// The URL asked.
        url: String,
        /// What the HTTP client said.
        reason: String,
    },
    /// The market answered with an error.
    #[error("the market answered {status} to {url}: {message}")]
    Api {
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The market's error code and message.
        message: String,
    },
    /// The provider's own transaction on the market's EVM chain (bonding stake) failed.
    #[error("could not bond stake on the market's EVM chain: {0}")]
    Settlement(String),
    /// The market's `/v1/info` is unusable (e.g. no p2p address to dial).
    #[error("the market's info is unusable: {0}")]
    MarketInfo(String),
    /// A fault mode was asked for on a network that does not allow faulty providers.
    #[error(
        "refusing to run as a faulty provider ({mode}): the market's chain {chain_id:?} does not allow faulty providers (its /v1/info does not say allow_faulty_providers: true); fault modes are for test networks only — drop --faulty, or use a test network whose genesis sets params.allow_faulty_providers (e.g. `agora node market --dev`)"
    )]
    FaultsNotAllowed {
        /// The fault mode asked for.
        mode: String,
        /// The market's chain.
        chain_id: String,
    },
    /// Not enough balance to bond the requested stake.
    #[error(
        "bonding {needed} more stake needs that much balance, but the account holds {balance}; fund the provider's account or lower --stake"
    )]
    InsufficientFunds {
        /// The stake still to bond.
        needed: Amount,
        /// The spendable balance.
        balance: Amount,
    },
    /// The peer-to-peer layer failed.
    #[error(transparent)]
    Net(#[from] agora_net::NetError),
    /// The blob store failed.
    #[error(transparent)]
    Store(#[from] agora_net::StoreError),
    /// The executor could not be set up.
    #[error("cannot set up the WASM executor: {0}")]
    Executor(#[from] agora_exec::ExecError),
    /// A file in the data directory could not be written or read.
    #[error("cannot use {path}: {source}; check that the data directory exists and is writable")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl ProviderError {
    /// Wraps an I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ProviderError {
        let path = path.into();
        move |source| ProviderError::Io { path, source }
    }
}
