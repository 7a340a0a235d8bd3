//! What can go wrong talking to a market node, each case saying what to do about it.

use std::path::PathBuf;

use agora_core::Hash;
use agora_proto::ApiError;

/// A failed client call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node could not be reached or the connection broke.
    #[error(
        "could not reach the market at {url}: {source}; is the market running at that URL? \
         (start one with `agora devnet`, or pass --market / set AGORA_MARKET)"
    )]
    Transport {
        /// The URL that was called.
        url: String,
        /// The HTTP client's failure.
        #[source]
        source: reqwest::Error,
    },
    /// The node answered with an error body.
    #[error("the market refused {what} ({status} {}): {}", .error.error, .error.message)]
    Api {
        /// What was asked, e.g. `POST /v1/orders`.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The node's error code and explanation.
        error: ApiError,
    },
    /// The buyer's own transaction on the market's EVM chain failed (opening an escrow);
    /// the message says what the chain or the contract answered.
    #[error("the escrow could not be opened on the market's EVM chain: {0}")]
    Settlement(String),
    /// The node answered something that is not what the API promises.
    #[error(
        "the market's answer to {what} is not what this client expects: {detail}; \
         are the client and the node the same version?"
    )]
    BadResponse {
        /// What was asked.
        what: String,
        /// What was wrong with the answer.
        detail: String,
    },
    /// A downloaded blob did not hash to its name; the partial file was removed.
    #[error(
        "blob {expected} downloaded with hash {actual}; the market or a provider served \
         corrupt data (the file was discarded; retry, or report the market)"
    )]
    HashMismatch {
        /// The hash asked for.
        expected: Hash,
        /// What the bytes hash to.
        actual: Hash,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The event stream ended before the order reached a final state.
    #[error(
        "the event stream for order {order} ended before the order was settled or refunded; \
         check it later with `agora job status {order}`"
    )]
    StreamEnded {
        /// The order being followed.
        order: Hash,
    },
    /// The market went away while an order was being followed and did not come back
    /// within the reconnect window.
    #[error(
        "lost the market while following order {order} and could not reach it again within \
         {waited_s} s ({source}); the order lives on in the market: check it later with \
         `agora job status {order}`"
    )]
    MarketLost {
        /// The order being followed.
        order: Hash,
        /// How long the client kept trying, in seconds.
        waited_s: u64,
        /// The last failure.
        #[source]
        source: Box<ClientError>,
    },
    /// The order would be refused before it is sent (shape, size or budget).
    #[error("the order is malformed: {0}")]
    BadOrder(#[from] agora_proto::order::OrderShapeError),
    /// A private order's sealing, keys or sealed result (docs/privacy.md).
    #[error("private order: {0}")]
    Private(String),
}

impl ClientError {
    /// A failed transaction of the buyer's own on the market's EVM chain.
    pub fn settlement(error: impl std::fmt::Display) -> ClientError {
        ClientError::Settlement(error.to_string())
    }

    /// The node's error code, when the node answered with one.
    pub fn api_code(&self) -> Option<&str> {
        match self {
            ClientError::Api { error, .. } => Some(error.error.as_str()),
            _ => None,
        }
    }

    /// Whether this is the node saying the ledger refused a transaction's nonce as one
    /// already used or one that skips ahead (code `escrow_refused` or `tx_refused`):
    /// the signer's next nonce must be fetched again and the transaction signed anew. An
    /// account that has used every nonce is not such a refusal: no retry can help it.
    pub fn is_nonce_error(&self) -> bool {
        match self {
            ClientError::Api { error, .. } => {
                let message = error.message.to_ascii_lowercase();
                matches!(error.error.as_str(), "escrow_refused" | "tx_refused")
                    && message.contains("nonce")
                    && (message.contains("already used") || message.contains("skips ahead"))
            }
            _ => false,
        }
    }

    /// Whether the market could not be reached or failed on its side (a broken
    /// connection, a 5xx answer): what a market that is restarting looks like, worth
    /// trying again later. A refusal (4xx) or an answer this client cannot read is not.
    pub fn is_unavailable(&self) -> bool {
        match self {
            ClientError::Transport { .. } | ClientError::StreamEnded { .. } => true,
            ClientError::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> ClientError {
        ClientError::Io {
            path: path.into(),
            source,
        }
    }
}
