//! The node's typed errors: [`NodeError`] for starting and running the node, and
//! [`ApiFailure`] for everything an HTTP request can be refused for, each with a stable
//! code, a status and a message that says what to do.
//!
//! Every refusal leaves as an [`ApiError`] JSON body, including the ones no handler
//! writes: axum's own extractor rejections (a path or query that does not parse, a body
//! over the limit), an unknown route and a wrong method. [`json_errors`] is the
//! middleware that turns those into [`ApiFailure`]s on their way out.

use std::path::PathBuf;

use agora_core::Hash;
use agora_proto::ApiError;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
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
    /// The configuration cannot be run with.
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
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
    /// An account the settlement backend cannot name (on an EVM market: no address known).
    #[error("{0}")]
    UnknownAccount(String),
    /// An order with the same id exists.
    #[error("order {0} was already submitted; sign a new order with a fresh nonce to submit again")]
    DuplicateOrder(Hash),
    /// The order is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// The requester may not read this (a private blob, a stranger to the order).
    #[error("{0}")]
    Forbidden(String),
    /// Something the node does not support yet.
    #[error("{0}")]
    Unsupported(String),
    /// The order's deadline is outside the range this market accepts.
    #[error(
        "the order's deadline is {away_ms} ms from now; this market accepts deadlines from {min_ms} ms to {max_ms} ms ({max}) from now; set one within that range"
    , max = Millis::of(.max_ms))]
    DeadlineOutOfRange {
        /// How far ahead the deadline was (negative: already past).
        away_ms: i64,
        /// The nearest deadline accepted, ms from now.
        min_ms: u64,
        /// The furthest deadline accepted, ms from now.
        max_ms: u64,
    },
    /// No route has this path.
    #[error(
        "there is no {path} on this market (asked with {method}); GET /openapi.json lists every route"
    )]
    NoRoute {
        /// The method asked with.
        method: Method,
        /// The path asked for.
        path: String,
    },
    /// The route exists but not with this method.
    #[error("{path} does not answer {method}; the `Allow` header lists the methods it answers")]
    MethodNotAllowed {
        /// The method asked with.
        method: Method,
        /// The path asked for.
        path: String,
    },
    /// Another refusal from the HTTP layer (an extractor's rejection), with its status.
    #[error("{message}")]
    Http {
        /// The status it was refused with (4xx or 5xx).
        status: StatusCode,
        /// What the HTTP layer said.
        message: String,
    },
    /// The node failed internally; nothing the caller did.
    #[error("internal error: {0}; the request may be retried")]
    Internal(String),
    /// A view of the embedded ledger (blocks, escrow and stake tables, the audit) asked of
    /// a market that settles on an EVM chain; the message names the chain and contract.
    #[error("{0}")]
    SettledOnEvm(String),
}

impl From<crate::chain::ChainError> for ApiFailure {
    fn from(err: crate::chain::ChainError) -> ApiFailure {
        match err {
            crate::chain::ChainError::OnEvm { .. } => ApiFailure::SettledOnEvm(err.to_string()),
            other => ApiFailure::Internal(other.to_string()),
        }
    }
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
            UnknownAccount(_) => (StatusCode::NOT_FOUND, "unknown_account"),
            DuplicateOrder(_) => (StatusCode::CONFLICT, "duplicate_order"),
            Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Unsupported(_) => (StatusCode::BAD_REQUEST, "unsupported"),
            DeadlineOutOfRange { .. } => (StatusCode::BAD_REQUEST, "deadline_out_of_range"),
            NoRoute { .. } => (StatusCode::NOT_FOUND, "no_route"),
            MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Http { status, .. } => (*status, http_code(*status)),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            SettledOnEvm(_) => (StatusCode::NOT_FOUND, "settled_on_evm"),
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

/// The stable code of a refusal that only has an HTTP status.
fn http_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::LENGTH_REQUIRED => "length_required",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    }
}

/// A duration in ms, shown in the largest whole unit (`7 days`, `90 s`).
struct Millis(u64);

impl Millis {
    fn of(ms: &u64) -> Millis {
        Millis(*ms)
    }
}

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (86_400_000, "days"),
            (3_600_000, "h"),
            (60_000, "min"),
            (1_000, "s"),
        ];
        match UNITS
            .iter()
            .find(|(unit, _)| self.0 >= *unit && self.0.is_multiple_of(*unit))
        {
            Some((unit, name)) => write!(f, "{} {name}", self.0 / unit),
            None => write!(f, "{} ms", self.0),
        }
    }
}

/// How much of a non-JSON refusal's body [`json_errors`] reads to quote it.
const MAX_QUOTED_BODY: usize = 16 << 10;

/// Middleware: every answer outside 2xx/3xx that is not JSON yet (axum's extractor
/// rejections, the unknown-route 404, the 405, a 413 from the body limit) becomes an
/// [`ApiFailure`] with an [`ApiError`] body. The state is the JSON body limit, named in
/// the 413's message. JSON answers and every success pass untouched (event streams are
/// not buffered).
pub async fn json_errors(
    State(max_json_bytes): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_QUOTED_BODY)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string())
        .unwrap_or_default();
    let failure = match status {
        StatusCode::NOT_FOUND if text.is_empty() => ApiFailure::NoRoute { method, path },
        StatusCode::METHOD_NOT_ALLOWED => ApiFailure::MethodNotAllowed { method, path },
        StatusCode::PAYLOAD_TOO_LARGE => ApiFailure::BodyTooLarge {
            limit: max_json_bytes,
        },
        _ => ApiFailure::Http {
            status,
            message: if text.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("refused")
                    .to_lowercase()
            } else {
                text
            },
        },
    };
    let fresh = failure.into_response();
    // Keep what the refusal said in its headers (`Allow`, `Connection: close`), with
    // the new body's type and length.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::TRANSFER_ENCODING);
    let (new_parts, new_body) = fresh.into_parts();
    parts.status = new_parts.status;
    for (name, value) in &new_parts.headers {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, new_body)
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .is_some_and(|v| {
            let essence = v.split(';').next().unwrap_or_default().trim();
            essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_their_largest_whole_unit() {
        assert_eq!(Millis(7 * 86_400_000).to_string(), "7 days");
        assert_eq!(Millis(90_000).to_string(), "90 s");
        assert_eq!(Millis(3_600_000).to_string(), "1 h");
        assert_eq!(Millis(1_500).to_string(), "1500 ms");
    }

    #[test]
    fn the_deadline_refusal_states_the_range() {
        let failure = ApiFailure::DeadlineOutOfRange {
            away_ms: 0,
            min_ms: 1,
            max_ms: 604_800_000,
        };
        assert_eq!(
            failure.status_and_code(),
            (StatusCode::BAD_REQUEST, "deadline_out_of_range")
        );
        let message = failure.to_string();
        assert!(
            message.contains("from 1 ms to 604800000 ms (7 days)"),
            "{message}"
        );
    }

    #[test]
    fn http_refusals_keep_their_status_and_get_a_code() {
        let failure = ApiFailure::Http {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: "Expected request with `Content-Type: application/json`".into(),
        };
        assert_eq!(
            failure.status_and_code(),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        );
        assert_eq!(failure.body().error, "unsupported_media_type");
    }
}
