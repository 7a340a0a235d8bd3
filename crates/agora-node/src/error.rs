//! The node's typed errors: [`NodeError`] for starting and running the node, and
//! [`ApiFailure`] for everything an HTTP request can be refused for, each with a stable
//! code, a status and a message that says what to do.

use std::path::PathBuf;

use agora_core::Hash;
use agora_proto::ApiError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why the node could not start or stopped working.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A file system operation on the data directory failed.
    #[error("{action} {path}: {source}; check that the data directory exists and is writable")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The ledger could not be created or opened.
    #[error("ledger: {0}")]
    Ledger(#[from] agora_ledger::StoreError),
    /// The genesis or keys do not fit the existing chain.
    #[error("chain setup: {0}")]
    Chain(String),
    /// The order records could not be read or written.
    #[error(
        "order records in {path}: {detail}; the file may be damaged (the ledger stays authoritative)"
    )]
    Records {
        /// The records file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The p2p layer could not start.
    #[error("p2p: {0}")]
    Net(#[from] agora_net::NetError),
    /// The blob store could not be opened.
    #[error("blob store: {0}")]
    Blobs(#[from] agora_net::StoreError),
    /// The HTTP listener could not be bound.
    #[error("cannot listen for HTTP on {addr}: {source}; pick a free port (or port 0)")]
    Http {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The block producer thread stopped.
    #[error("the block producer stopped; restart the node (the ledger on disk is intact)")]
    ProducerStopped,
}

/// Why an HTTP request was refused. Each maps to a status and an [`ApiError`] body whose
/// `error` is a stable code and whose `message` says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ApiFailure {
    /// The body or a parameter could not be read.
    #[error("{0}")]
    BadRequest(String),
    /// A signature or chain id did not check out.
    #[error("{0}")]
    BadSignature(String),
    /// The order is malformed.
    #[error("{0}")]
    BadOrder(String),
    /// The escrow transaction does not belong to the order.
    #[error("{0}")]
    EscrowMismatch(String),
    /// The ledger refused the escrow.
    #[error("the ledger refused the escrow: {0}")]
    EscrowRefused(String),
    /// The ledger refused a transaction.
    #[error("the ledger refused the transaction: {0}")]
    TxRefused(String),
    /// A blob the job names is not stored.
    #[error(
        "blob {0} named by the job is not on this market; upload it with PUT /v1/blobs/{0} first"
    )]
    MissingBlob(Hash),
    /// A blob's declared size differs from the stored one.
    #[error("blob {hash} is {stored} bytes but the job says {declared}; fix the job's size field")]
    BlobSize {
        /// The blob.
        hash: Hash,
        /// Its stored size.
        stored: u64,
        /// The size the job declared.
        declared: u64,
    },
    /// Uploaded content does not hash to the name it was uploaded under.
    #[error(
        "the uploaded content hashes to {actual}, not {expected}; upload it under its own blake3 hash"
    )]
    HashMismatch {
        /// The name used.
        expected: Hash,
        /// The real hash.
        actual: Hash,
    },
    /// An upload over the node's limit.
    #[error(
        "blob larger than this market's limit of {limit} bytes; split the data into several inputs"
    )]
    BlobTooLarge {
        /// The limit.
        limit: u64,
    },
    /// A JSON body over the node's limit.
    #[error(
        "request body larger than this market's limit of {limit} bytes; orders carry hashes, upload content as blobs"
    )]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// No such blob.
    #[error("blob {0} is not on this market")]
    UnknownBlob(Hash),
    /// No such order.
    #[error("order {0} is not known to this market; check the id")]
    UnknownOrder(Hash),
    /// No such block.
    #[error("block {0} does not exist yet; the ledger is shorter")]
    UnknownBlock(u64),
    /// No such provider.
    #[error("provider {0} has never offered capacity on this market")]
    UnknownProvider(String),
    /// An order with the same id exists.
    #[error("order {0} was already submitted; sign a new order with a fresh nonce to submit again")]
    DuplicateOrder(Hash),
    /// The order is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// Something the node does not support yet.
    #[error("{0}")]
    Unsupported(String),
    /// The node failed internally; nothing the caller did.
    #[error("internal error: {0}; the request may be retried")]
    Internal(String),
}

impl ApiFailure {
    /// The HTTP status and the stable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use ApiFailure::*;
        match self {
            BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            BadSignature(_) => (StatusCode::BAD_REQUEST, "bad_signature"),
            BadOrder(_) => (StatusCode::BAD_REQUEST, "bad_order"),
            EscrowMismatch(_) => (StatusCode::BAD_REQUEST, "escrow_mismatch"),
            EscrowRefused(_) => (StatusCode::BAD_REQUEST, "escrow_refused"),
            TxRefused(_) => (StatusCode::BAD_REQUEST, "tx_refused"),
            MissingBlob(_) => (StatusCode::BAD_REQUEST, "missing_blob"),
            BlobSize { .. } => (StatusCode::BAD_REQUEST, "blob_size_mismatch"),
            HashMismatch { .. } => (StatusCode::BAD_REQUEST, "hash_mismatch"),
            BlobTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "blob_too_large"),
            BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            UnknownBlob(_) => (StatusCode::NOT_FOUND, "unknown_blob"),
            UnknownOrder(_) => (StatusCode::NOT_FOUND, "unknown_order"),
            UnknownBlock(_) => (StatusCode::NOT_FOUND, "unknown_block"),
            UnknownProvider(_) => (StatusCode::NOT_FOUND, "unknown_provider"),
            DuplicateOrder(_) => (StatusCode::CONFLICT, "duplicate_order"),
            Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Unsupported(_) => (StatusCode::BAD_REQUEST, "unsupported"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ApiError {
        ApiError {
            error: self.status_and_code().1.to_string(),
            message: self.to_string(),
        }
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(code, "{self}");
        } else {
            tracing::debug!(code, "refused: {self}");
        }
        (status, Json(self.body())).into_response()
    }
}
