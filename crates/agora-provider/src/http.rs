//! The few calls the agent makes to the market's HTTP API: who the market is, the
//! agent's own ledger account, submitting its bond, the spot index and the market's view
//! of it as a provider.

use std::time::Duration;

use agora_core::AccountId;
use agora_ledger::Tx;
use agora_proto::api::{AccountView, ApiError, MarketInfo, ProviderView, SubmitTx, TxIncluded};
use serde::de::DeserializeOwned;

use crate::error::ProviderError;

/// How long one API call may take (a tx submission waits for its block).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client for the market node's HTTP API.
#[derive(Clone, Debug)]
pub struct MarketApi {
    base: String,
    client: reqwest::Client,
}

impl MarketApi {
    /// A client for the market at `base_url` (e.g. `http://127.0.0.1:7070`).
    pub fn new(base_url: &str) -> Result<MarketApi, ProviderError> {
        let base = base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ProviderError::Config(format!(
                "market URL {base_url:?} must start with http:// or https://"
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| ProviderError::Config(format!("cannot build an HTTP client: {e}")))?;
        Ok(MarketApi { base, client })
    }

    /// The market's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /v1/info`.
    pub async fn info(&self) -> Result<MarketInfo, ProviderError> {
        self.get("/v1/info").await
    }

    /// `GET /v1/accounts/{id}`.
    pub async fn account(&self, account: &AccountId) -> Result<AccountView, ProviderError> {
        self.get(&format!("/v1/accounts/{account}")).await
    }

    /// `GET /v1/providers/{id}`; `None` when the market does not know the provider yet.
    pub async fn provider(
        &self,
        account: &AccountId,
    ) -> Result<Option<ProviderView>, ProviderError> {
        match self.get(&format!("/v1/providers/{account}")).await {
            Ok(view) => Ok(Some(view)),
            Err(ProviderError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/index`, as raw JSON (the agent only needs a few fields of it).
    pub async fn index(&self) -> Result<serde_json::Value, ProviderError> {
        self.get("/v1/index").await
    }

    /// `POST /v1/txs`: waits until the block holding `tx` is committed.
    pub async fn submit_tx(&self, tx: &Tx) -> Result<TxIncluded, ProviderError> {
        let body = SubmitTx {
            tx: agora_proto::hexed::encode(tx),
        };
        let url = format!("{}/v1/txs", self.base);
        let response = self
            .client
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| self.unreachable(&url, e))?;
        self.decode(&url, response).await
    }

    /// `GET path` with a signed access header (private orders): the raw body.
    pub async fn get_signed_bytes(&self, path: &str, auth: &str) -> Result<Vec<u8>, ProviderError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .client
            .get(&url)
            .header(agora_seal::AUTH_HEADER, auth)
            .send()
            .await
            .map_err(|e| self.unreachable(&url, e))?;
        let status = response.status();
        if !status.is_success() {
            return self
                .decode::<serde_json::Value>(&url, response)
                .await
                .map(|_| Vec::new());
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.unreachable(&url, e))?;
        Ok(bytes.to_vec())
    }

    /// `PUT /v1/blobs/{hash}` of bytes in memory (a private order's sealed outputs).
    pub async fn put_blob(
        &self,
        hash: &agora_core::Hash,
        bytes: Vec<u8>,
    ) -> Result<(), ProviderError> {
        let url = format!("{}/v1/blobs/{hash}", self.base);
        let response = self
            .client
            .put(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .map_err(|e| self.unreachable(&url, e))?;
        self.decode::<serde_json::Value>(&url, response)
            .await
            .map(|_| ())
    }

    /// `POST path` with a JSON body whose answer carries nothing the agent needs.
    pub async fn post_json(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<(), ProviderError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .client
            .post(&url)
            .json(body)
            .send()
            .await
            .map_err(|e| self.unreachable(&url, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        self.decode::<serde_json::Value>(&url, response)
            .await
            .map(|_| ())
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ProviderError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| self.unreachable(&url, e))?;
        self.decode(&url, response).await
    }

    /// The body as `T` on success; the market's `ApiError` (or the raw text) otherwise.
    async fn decode<T: DeserializeOwned>(
        &self,
        url: &str,
        response: reqwest::Response,
    ) -> Result<T, ProviderError> {
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.unreachable(url, e))?;
        if !status.is_success() {
            let message = match serde_json::from_slice::<ApiError>(&bytes) {
                Ok(api) => format!("{}: {}", api.error, api.message),
                Err(_) => String::from_utf8_lossy(&bytes).chars().take(500).collect(),
            };
            return Err(ProviderError::Api {
                url: url.to_owned(),
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ProviderError::Api {
            url: url.to_owned(),
            status: status.as_u16(),
            message: format!("unexpected response body: {e}"),
        })
    }

    fn unreachable(&self, url: &str, error: reqwest::Error) -> ProviderError {
        ProviderError::MarketUnreachable {
            url: url.to_owned(),
            reason: error.to_string(),
        }
    }
}
