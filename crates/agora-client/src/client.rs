//! [`MarketClient`]: one typed method per endpoint of the market node's HTTP API.

use std::path::Path;
use std::sync::Arc;

use agora_core::hash::Hasher;
use agora_core::{AccountId, Hash, Signed};
use agora_ledger::Tx;
use agora_market::{Ask, PriceIndex};
use agora_proto::api::ProviderView;
use agora_proto::api::{
    AccountView, CancelRequest, JobResult, MarketInfo, SubmitOrder, SubmitTx, Submitted, TxIncluded,
};
use agora_proto::{ApiError, CancelOrder, OrderEvent, OrderState, OrderView, SignedOrder, hexed};
use reqwest::{Method, RequestBuilder, Response, StatusCode, header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::OnceCell;

use crate::error::ClientError;
use crate::sse::SseParser;

/// The default market URL when neither a flag nor `AGORA_MARKET` names one.
pub const DEFAULT_MARKET_URL: &str = "http://127.0.0.1:7070";

/// `PUT /v1/blobs/{hash}`'s answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobStored {
    /// The blob's hash.
    pub hash: Hash,
    /// Its size in bytes.
    pub size: u64,
}

/// Filters for `GET /v1/orders`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderFilter {
    /// Only this buyer's orders.
    pub buyer: Option<AccountId>,
    /// Only orders in this state.
    pub state: Option<OrderState>,
    /// Only tasks of this job name.
    pub job: Option<String>,
    /// At most this many (the node caps it).
    pub limit: Option<usize>,
    /// Skip this many first.
    pub offset: Option<usize>,
}

impl OrderFilter {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if let Some(buyer) = &self.buyer {
            query.push(("buyer", buyer.to_string()));
        }
        if let Some(state) = self.state {
            query.push(("state", state.name().to_string()));
        }
        if let Some(job) = &self.job {
            query.push(("job", job.clone()));
        }
        if let Some(limit) = self.limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(offset) = self.offset {
            query.push(("offset", offset.to_string()));
        }
        query
    }
}

/// An HTTP client for one market node. Cheap to clone (the connection pool is shared).
#[derive(Clone, Debug)]
pub struct MarketClient {
    base: String,
    http: reqwest::Client,
    /// The node's blob limit, once asked (`None` inside: the node does not say).
    blob_limit: Arc<OnceCell<Option<u64>>>,
}

impl MarketClient {
    /// A client for the node at `base_url` (e.g. `http://127.0.0.1:7070`).
    pub fn new(base_url: &str) -> Result<MarketClient, ClientError> {
        let base = base_url.trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            // Small JSON requests otherwise wait on Nagle vs delayed ACK (~40 ms each).
            .tcp_nodelay(true)
            .build()
            .map_err(|source| ClientError::Transport {
                url: base.clone(),
                source,
            })?;
        Ok(MarketClient {
            base,
            http,
            blob_limit: Arc::default(),
        })
    }

    /// The node's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> (String, RequestBuilder) {
        let url = format!("{}{path}", self.base);
        (url.clone(), self.http.request(method, url))
    }

    async fn send(&self, url: &str, request: RequestBuilder) -> Result<Response, ClientError> {
        request
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.to_string(),
                source,
            })
    }

    /// Turns a non-2xx answer into [`ClientError::Api`] (or `BadResponse` without a body).
    async fn check(what: &str, response: Response) -> Result<Response, ClientError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        match serde_json::from_str::<ApiError>(&text) {
            Ok(error) => Err(ClientError::Api {
                what: what.to_string(),
                status: status.as_u16(),
                error,
            }),
            Err(_) => Err(ClientError::BadResponse {
                what: what.to_string(),
                detail: format!("status {status} with body {:?}", truncate(&text, 300)),
            }),
        }
    }

    async fn json<T: DeserializeOwned>(what: &str, response: Response) -> Result<T, ClientError> {
        let response = Self::check(what, response).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::BadResponse {
                what: what.to_string(),
                detail: format!("the body broke off: {e}"),
            })?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse {
            what: what.to_string(),
            detail: e.to_string(),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (url, request) = self.request(Method::GET, path);
        let response = self.send(&url, request).await?;
        Self::json(&format!("GET {path}"), response).await
    }

    async fn get_query<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&'static str, String)],
    ) -> Result<T, ClientError> {
        let (url, request) = self.request(Method::GET, path);
        let response = self.send(&url, request.query(query)).await?;
        Self::json(&format!("GET {path}"), response).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let (url, request) = self.request(Method::POST, path);
        let response = self.send(&url, request.json(body)).await?;
        Self::json(&format!("POST {path}"), response).await
    }

    /// `GET /v1/info`: the chain id and market account every signature needs.
    pub async fn info(&self) -> Result<MarketInfo, ClientError> {
        self.get("/v1/info").await
    }

    /// `GET /metrics`: the node's Prometheus text exposition, as it is.
    pub async fn metrics_text(&self) -> Result<String, ClientError> {
        let (url, request) = self.request(Method::GET, "/metrics");
        let response = Self::check("GET /metrics", self.send(&url, request).await?).await?;
        response.text().await.map_err(|e| ClientError::BadResponse {
            what: "GET /metrics".into(),
            detail: format!("the body broke off: {e}"),
        })
    }

    /// Whether the node already stores blob `hash` (`HEAD /v1/blobs/{hash}`).
    pub async fn has_blob(&self, hash: &Hash) -> Result<bool, ClientError> {
        let path = format!("/v1/blobs/{hash}");
        let (url, request) = self.request(Method::HEAD, &path);
        let response = self.send(&url, request).await?;
        match response.status() {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            // A node without HEAD support: let the upload decide.
            StatusCode::METHOD_NOT_ALLOWED => Ok(false),
            status => Err(ClientError::BadResponse {
                what: format!("HEAD {path}"),
                detail: format!("status {status}"),
            }),
        }
    }

    /// Uploads the file at `path`, whose blake3 hash is `hash`, streaming it from disk.
    /// Skips the transfer when the node already has the blob.
    pub async fn upload_blob(&self, path: &Path, hash: &Hash) -> Result<BlobStored, ClientError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ClientError::io(path, e))?;
        let size = file
            .metadata()
            .await
            .map_err(|e| ClientError::io(path, e))?
            .len();
        if self.has_blob(hash).await? {
            return Ok(BlobStored { hash: *hash, size });
        }
        self.check_blob_size(path, hash, size).await?;
        match self.put_file(file, size, hash).await {
            // A connection broken mid-upload (a node restarting, a proxy) may still have
            // delivered the blob. A blob is named by its hash, so an upload is idempotent:
            // look again, and send it once more if it is still missing.
            Err(ClientError::Transport { .. }) if self.has_blob(hash).await? => {
                Ok(BlobStored { hash: *hash, size })
            }
            Err(ClientError::Transport { .. }) => {
                let file = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| ClientError::io(path, e))?;
                self.put_file(file, size, hash).await
            }
            other => other,
        }
    }

    /// Refuses, before a byte is sent, a blob larger than the node's limit (from
    /// `GET /v1/info`, asked once per client): the node would refuse it with 413 halfway
    /// through, and a refusal read from a connection closed under a writing client can be
    /// lost to the reset.
    async fn check_blob_size(
        &self,
        path: &Path,
        hash: &Hash,
        size: u64,
    ) -> Result<(), ClientError> {
        let limit = self
            .blob_limit
            .get_or_try_init(|| async { Ok::<_, ClientError>(self.info().await?.max_blob_bytes) })
            .await?;
        match limit {
            Some(limit) if size > *limit => Err(ClientError::Api {
                what: format!("PUT /v1/blobs/{hash}"),
                status: StatusCode::PAYLOAD_TOO_LARGE.as_u16(),
                error: ApiError {
                    error: "blob_too_large".into(),
                    message: format!(
                        "{} is {size} bytes, larger than this market's limit of {limit} bytes; \
                         split the data into several inputs",
                        path.display()
                    ),
                },
            }),
            _ => Ok(()),
        }
    }

    async fn put_file(
        &self,
        file: tokio::fs::File,
        size: u64,
        hash: &Hash,
    ) -> Result<BlobStored, ClientError> {
        let route = format!("/v1/blobs/{hash}");
        let (url, request) = self.request(Method::PUT, &route);
        let request = request
            .header(header::CONTENT_LENGTH, size)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::from(file));
        let response = self.send(&url, request).await?;
        Self::json(&format!("PUT {route}"), response).await
    }

    /// Uploads bytes held in memory (small blobs, tests).
    pub async fn upload_bytes(&self, bytes: Vec<u8>) -> Result<BlobStored, ClientError> {
        let route = format!("/v1/blobs/{}", Hash::of(&bytes));
        let (url, request) = self.request(Method::PUT, &route);
        let response = self.send(&url, request.body(bytes)).await?;
        Self::json(&format!("PUT {route}"), response).await
    }

    /// Downloads blob `hash` into `dest`, hashing while writing; a blob that does not hash
    /// to its name is discarded and reported as [`ClientError::HashMismatch`]. The file
    /// appears at `dest` only once verified. Returns its size.
    pub async fn download_blob(&self, hash: &Hash, dest: &Path) -> Result<u64, ClientError> {
        let route = format!("/v1/blobs/{hash}");
        let (url, request) = self.request(Method::GET, &route);
        let response = self.send(&url, request).await?;
        let mut response = Self::check(&format!("GET {route}"), response).await?;
        let partial = partial_path(dest);
        let mut file = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| ClientError::io(&partial, e))?;
        let mut hasher = Hasher::new();
        let mut size = 0u64;
        let outcome: Result<(), ClientError> = async {
            while let Some(chunk) =
                response
                    .chunk()
                    .await
                    .map_err(|source| ClientError::Transport {
                        url: url.clone(),
                        source,
                    })?
            {
                hasher.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk)
                    .await
                    .map_err(|e| ClientError::io(&partial, e))?;
            }
            file.flush().await.map_err(|e| ClientError::io(&partial, e))
        }
        .await;
        drop(file);
        let actual = hasher.finalize();
        let outcome = outcome.and_then(|()| {
            if actual == *hash {
                Ok(())
            } else {
                Err(ClientError::HashMismatch {
                    expected: *hash,
                    actual,
                })
            }
        });
        if let Err(e) = outcome {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
        tokio::fs::rename(&partial, dest)
            .await
            .map_err(|e| ClientError::io(dest, e))?;
        Ok(size)
    }

    /// `GET path` with a signed `x-agora-auth` header (a private order's blobs and key
    /// grants): the raw body.
    pub async fn get_signed_bytes(&self, path: &str, auth: &str) -> Result<Vec<u8>, ClientError> {
        let (url, request) = self.request(Method::GET, path);
        let request = request.header(agora_seal::AUTH_HEADER, auth);
        let response = self.send(&url, request).await?;
        let response = Self::check(&format!("GET {path}"), response).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::BadResponse {
                what: format!("GET {path}"),
                detail: format!("the body broke off: {e}"),
            })?;
        Ok(bytes.to_vec())
    }

    /// `POST /v1/orders/{id}/keys`: a signed key grant for a private order.
    pub async fn post_grant(
        &self,
        order_id: &Hash,
        grant: &agora_seal::SignedKeyGrant,
    ) -> Result<(), ClientError> {
        let path = format!("/v1/orders/{order_id}/keys");
        let body = serde_json::json!({ "grant": hexed::encode(grant) });
        let (url, request) = self.request(Method::POST, &path);
        let response = self.send(&url, request.json(&body)).await?;
        Self::check(&format!("POST {path}"), response)
            .await
            .map(|_| ())
    }

    /// `POST /v1/orders`: a signed order with its signed escrow transaction.
    pub async fn submit_order(
        &self,
        order: &SignedOrder,
        escrow: &Tx,
    ) -> Result<Submitted, ClientError> {
        let body = SubmitOrder {
            order: hexed::encode(order),
            escrow_tx: hexed::encode(escrow),
        };
        self.post("/v1/orders", &body).await
    }

    /// `POST /v1/quote`: what `order` would cost, from the book as it stands; moves no
    /// money and records nothing.
    pub async fn quote(
        &self,
        order: &agora_proto::OrderRequest,
    ) -> Result<agora_proto::quote::QuoteView, ClientError> {
        self.post("/v1/quote", order).await
    }

    /// `GET /v1/orders/{id}`.
    pub async fn order(&self, id: &Hash) -> Result<OrderView, ClientError> {
        self.get(&format!("/v1/orders/{id}")).await
    }

    /// `GET /v1/orders/{id}/auction`: the order's auction (sealed bids show after the close).
    pub async fn auction(&self, id: &Hash) -> Result<agora_proto::api::AuctionView, ClientError> {
        self.get(&format!("/v1/orders/{id}/auction")).await
    }

    /// `GET /v1/orders?...`, newest first.
    pub async fn orders(&self, filter: &OrderFilter) -> Result<Vec<OrderView>, ClientError> {
        self.get_query("/v1/orders", &filter.query()).await
    }

    /// `GET /v1/orders/{id}/result` (a 409 `Api` error until the order is settled).
    pub async fn result(&self, id: &Hash) -> Result<JobResult, ClientError> {
        self.get(&format!("/v1/orders/{id}/result")).await
    }

    /// `GET /v1/orders/{id}/events`: the order's past events, then live ones, ending
    /// after a final state.
    pub async fn follow(&self, id: &Hash) -> Result<EventStream, ClientError> {
        let path = format!("/v1/orders/{id}/events");
        let (url, request) = self.request(Method::GET, &path);
        let request = request.header(header::ACCEPT, "text/event-stream");
        let response = self.send(&url, request).await?;
        let response = Self::check(&format!("GET {path}"), response).await?;
        Ok(EventStream {
            order: *id,
            url,
            response,
            parser: SseParser::new(),
            ready: std::collections::VecDeque::new(),
            finished: false,
        })
    }

    /// `POST /v1/orders/{id}/cancel` with the buyer's signed cancellation.
    pub async fn cancel(&self, cancel: &Signed<CancelOrder>) -> Result<OrderView, ClientError> {
        let body = CancelRequest {
            cancel: hexed::encode(cancel),
        };
        self.post(
            &format!("/v1/orders/{}/cancel", cancel.body.order_id),
            &body,
        )
        .await
    }

    /// `POST /v1/txs`: any signed ledger transaction; returns once it is in a block.
    pub async fn submit_tx(&self, tx: &Tx) -> Result<TxIncluded, ClientError> {
        self.post(
            "/v1/txs",
            &SubmitTx {
                tx: hexed::encode(tx),
            },
        )
        .await
    }

    /// `GET /v1/accounts/{id}`: balance, stake and the next ledger nonce.
    pub async fn account(&self, account: &AccountId) -> Result<AccountView, ClientError> {
        self.get(&format!("/v1/accounts/{account}")).await
    }

    /// `GET /v1/vouchers/quote`: the market's signed price for a voucher series of `class`
    /// redeemable in `[redeem_from_ms, expires_ms)` (node defaults when `None`), with the
    /// decoded quote a `MintVoucher` carries.
    pub async fn voucher_quote(
        &self,
        class: &str,
        redeem_from_ms: Option<u64>,
        expires_ms: Option<u64>,
    ) -> Result<
        (
            agora_proto::api::VoucherQuoteView,
            agora_ledger::SignedQuote,
        ),
        ClientError,
    > {
        let mut query = vec![("class", class.to_string())];
        query.extend(redeem_from_ms.map(|v| ("redeem_from_ms", v.to_string())));
        query.extend(expires_ms.map(|v| ("expires_ms", v.to_string())));
        let view: agora_proto::api::VoucherQuoteView =
            self.get_query("/v1/vouchers/quote", &query).await?;
        let quote =
            hexed::decode(&view.quote, "voucher quote").map_err(|e| ClientError::BadResponse {
                what: "the voucher quote".into(),
                detail: e.to_string(),
            })?;
        Ok((view, quote))
    }

    /// `GET /v1/accounts/{id}/vouchers`: the account's voucher units, per series.
    pub async fn vouchers(
        &self,
        account: &AccountId,
    ) -> Result<Vec<agora_proto::api::VoucherView>, ClientError> {
        self.get(&format!("/v1/accounts/{account}/vouchers")).await
    }

    /// `GET /v1/providers`.
    pub async fn providers(&self) -> Result<Vec<ProviderView>, ClientError> {
        self.get("/v1/providers").await
    }

    /// `GET /v1/providers/{id}`.
    pub async fn provider(&self, account: &AccountId) -> Result<ProviderView, ClientError> {
        self.get(&format!("/v1/providers/{account}")).await
    }

    /// `GET /v1/asks`: the live asks in the book.
    pub async fn asks(&self) -> Result<Vec<Ask>, ClientError> {
        self.get("/v1/asks").await
    }

    /// `GET /v1/index`: the spot price index per resource class.
    pub async fn index(&self) -> Result<Vec<PriceIndex>, ClientError> {
        self.get("/v1/index").await
    }

    /// `GET /v1/blocks?from=H&limit=N`, as the node's JSON block records.
    pub async fn blocks(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>, ClientError> {
        self.get_query(
            "/v1/blocks",
            &[("from", from.to_string()), ("limit", limit.to_string())],
        )
        .await
    }
}

/// A live order event stream (see [`MarketClient::follow`]).
#[derive(Debug)]
pub struct EventStream {
    order: Hash,
    url: String,
    response: Response,
    parser: SseParser,
    ready: std::collections::VecDeque<OrderEvent>,
    finished: bool,
}

impl EventStream {
    /// The next event; `None` after the final one (settled or refunded). A stream that
    /// ends before a final event is [`ClientError::StreamEnded`].
    pub async fn next(&mut self) -> Result<Option<OrderEvent>, ClientError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                if event.state.is_final() {
                    self.finished = true;
                    self.ready.clear();
                }
                return Ok(Some(event));
            }
            if self.finished {
                return Ok(None);
            }
            let chunk = self
                .response
                .chunk()
                .await
                .map_err(|source| ClientError::Transport {
                    url: self.url.clone(),
                    source,
                })?;
            let Some(chunk) = chunk else {
                return Err(ClientError::StreamEnded { order: self.order });
            };
            for message in self.parser.push(&chunk) {
                let event: OrderEvent =
                    serde_json::from_str(&message.data).map_err(|e| ClientError::BadResponse {
                        what: format!("the event stream of order {}", self.order),
                        detail: format!("event {:?}: {e}", message.event),
                    })?;
                self.ready.push_back(event);
            }
        }
    }
}

fn partial_path(dest: &Path) -> std::path::PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    dest.with_file_name(name)
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}
