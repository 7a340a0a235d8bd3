//! [`Buyer`]: a key, a client and the market's identity — everything needed to turn
//! local files and a budget into a signed, escrowed order and to see it through.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use agora_core::hash::Hasher;
use agora_core::{AccountId, Amount, ChainId, Fuel, Hash, Keypair, Price, Signed};
use agora_ledger::{Tx, TxBody};
use agora_market::{AttributeConstraint, Demand, Requirements};
use agora_proto::VerifyPolicy;
use agora_proto::api::{JobResult, MarketInfo, Submitted, VerificationView};
use agora_proto::{
    CancelOrder, InputRef, JobSpec, OrderEvent, OrderRequest, OrderState, OrderView, SignedOrder,
    TaskRef, signed_order_id,
};
use serde::Serialize;
use tokio::sync::Mutex;

use crate::client::MarketClient;
use crate::error::ClientError;

/// Default price cap per CU: 0.1 AGR.
pub const DEFAULT_MAX_PRICE: Price = Price(100_000_000);
/// Default fuel budget: 10 CU.
pub const DEFAULT_FUEL_BUDGET: Fuel = Fuel::compute_units(10);
/// Default linear-memory limit: 128 MiB.
pub const DEFAULT_MEMORY_BYTES: u64 = 128 << 20;
/// Default time from submission to the deadline: 2 minutes.
pub const DEFAULT_DEADLINE_MS: u64 = 120_000;

/// A job as a buyer describes it: local files, arguments and a budget.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobRequest {
    /// The WASI command module on disk.
    pub module: PathBuf,
    /// Inputs: the name the job sees under `/input`, and the local file.
    pub inputs: Vec<(String, PathBuf)>,
    /// Arguments after the program name.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// The most paid per compute unit.
    pub max_price: Price,
    /// The fuel the job may burn.
    pub fuel_budget: Fuel,
    /// Distinct providers to run it on.
    pub replicas: u32,
    /// How the result is checked ([`VerifyPolicy::DEFAULT`] unless set).
    pub verify: VerifyPolicy,
    /// Only providers whose `region` attribute equals this.
    pub region: Option<String>,
    /// The job's memory limit in bytes.
    pub memory_bytes: u64,
    /// How long after submission the order must be settled, in ms.
    pub deadline_in_ms: u64,
    /// A short label for listings.
    pub label: String,
    /// Its place within a multi-task job.
    pub task: Option<TaskRef>,
}

impl JobRequest {
    /// A request for `module` with the default budget and no inputs or arguments.
    pub fn new(module: impl Into<PathBuf>) -> JobRequest {
        let module = module.into();
        let label = module
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        JobRequest {
            module,
            inputs: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            max_price: DEFAULT_MAX_PRICE,
            fuel_budget: DEFAULT_FUEL_BUDGET,
            replicas: 1,
            verify: VerifyPolicy::DEFAULT,
            region: None,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            deadline_in_ms: DEFAULT_DEADLINE_MS,
            label,
            task: None,
        }
    }

    /// The order body for this request once its files are uploaded as `job`; `now_ms`
    /// fixes the deadline. The escrow is exactly the worst case, and the shape is checked
    /// here so that a bad order never costs a round trip.
    pub fn order_request(&self, job: JobSpec, now_ms: u64) -> Result<OrderRequest, ClientError> {
        let requirements = Requirements {
            features: BTreeSet::from(["wasm".to_string()]),
            attributes: self
                .region
                .iter()
                .map(|region| AttributeConstraint::equals("region", region))
                .collect(),
            replicas: u16::try_from(self.replicas).unwrap_or(u16::MAX),
            ..Requirements::default()
        };
        let mut body = OrderRequest {
            demand: Demand {
                cpu_millis: 1_000,
                memory_bytes: job.memory_bytes,
                disk_bytes: 0,
                gpu: None,
            },
            job,
            requirements,
            max_price: self.max_price,
            fuel_budget: self.fuel_budget,
            deadline_ms: now_ms.saturating_add(self.deadline_in_ms + self.hold_ms()),
            escrow: Amount::ZERO,
            replicas: self.replicas,
            verify: self.verify,
            label: self.label.clone(),
            task: self.task.clone(),
        };
        body.escrow = body.worst_case()?;
        body.check_shape()?;
        Ok(body)
    }

    /// How much longer than the run the order must live: a challenge window (and the
    /// market's settlement margin after it) holds the result before it settles.
    fn hold_ms(&self) -> u64 {
        self.verify
            .challenge_window_ms()
            .map_or(0, |window| window + CHALLENGE_SETTLE_MARGIN_MS)
    }
}

/// Time an order under `challenge` keeps after its window for the market to settle it.
pub const CHALLENGE_SETTLE_MARGIN_MS: u64 = 5_000;

/// Tracks an account's next ledger nonce locally, so that a buyer submitting many orders
/// does not ask the node before each one. The ledger accepts nonces only in sequence, so
/// the tracker is either sure of the next one or knows it must fetch it again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NonceTracker {
    next: Option<u64>,
}

impl NonceTracker {
    /// A tracker that must fetch the nonce first.
    pub fn new() -> NonceTracker {
        NonceTracker::default()
    }

    /// The nonce to sign with next, if known.
    pub fn next(&self) -> Option<u64> {
        self.next
    }

    /// Learns the next nonce from the ledger (`AccountView::next_nonce`).
    pub fn sync(&mut self, next_nonce: u64) {
        self.next = Some(next_nonce);
    }

    /// Records that a transaction signed with `nonce` was included.
    pub fn consumed(&mut self, nonce: u64) {
        self.next = Some(nonce + 1);
    }

    /// Forgets the nonce: whether the last transaction was included is unknown (a broken
    /// connection, a server error) or the ledger said the nonce was wrong.
    pub fn forget(&mut self) {
        self.next = None;
    }
}

/// How an order ended, with its bill: what `agora job run` prints.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobSummary {
    /// The order.
    pub order_id: Hash,
    /// Its place within a multi-task job.
    pub task: Option<TaskRef>,
    /// `settled` or `refunded`.
    pub state: OrderState,
    /// The provider that ran it (the last one, after reassignments).
    pub provider: Option<AccountId>,
    /// The price per CU it was paid.
    pub price: Option<Price>,
    /// Compute units billed.
    pub compute_units: Option<f64>,
    /// What the buyer paid, fee included.
    pub cost: Amount,
    /// What came back from the escrow.
    pub refunded: Amount,
    /// Submission to final state, in ms.
    pub latency_ms: Option<u64>,
    /// Times it was (re)assigned.
    pub attempts: u32,
    /// The job's exit code, when settled.
    pub exit_code: Option<i32>,
    /// Its stdout (lossy UTF-8), when settled.
    pub stdout: Option<String>,
    /// Its stderr (lossy UTF-8), when settled.
    pub stderr: Option<String>,
    /// Why it was refunded (the why-no-match explanation included).
    pub refund_reason: Option<String>,
    /// Output files written locally.
    pub outputs: Vec<PathBuf>,
    /// The accepted result's digest, when settled.
    pub digest: Option<Hash>,
    /// How the result was checked: policy, runs, audit draw, slashes.
    pub verification: VerificationView,
}

impl JobSummary {
    /// The summary of a final order view, with the local paths of its downloaded outputs.
    pub fn from_view(view: &OrderView, outputs: Vec<PathBuf>) -> JobSummary {
        let result = view.result.as_ref();
        JobSummary {
            order_id: view.order_id,
            task: view.task.clone(),
            state: view.state,
            provider: view.provider,
            price: view.price,
            compute_units: result.map(|r| r.fuel_used.as_compute_units_f64()),
            cost: view.cost,
            refunded: view.refunded,
            latency_ms: view.latency_ms,
            attempts: view.attempts,
            exit_code: result.map(|r| r.exit_code),
            stdout: result.map(|r| r.stdout.clone()),
            stderr: result.map(|r| r.stderr.clone()),
            refund_reason: view.refund_reason.clone(),
            outputs,
            digest: result.map(|r| r.digest),
            verification: view.verification.clone(),
        }
    }

    /// Whether the job settled with exit code 0.
    pub fn succeeded(&self) -> bool {
        self.state == OrderState::Settled && self.exit_code == Some(0)
    }
}

/// A buyer: signs orders, escrows and cancellations with its key and submits them.
///
/// Submissions from one `Buyer` are serialized (each escrow takes the next ledger nonce
/// of the account); different `Buyer`s — different keys — submit concurrently.
#[derive(Debug)]
pub struct Buyer {
    key: Keypair,
    client: MarketClient,
    info: MarketInfo,
    chain: ChainId,
    nonces: Mutex<NonceTracker>,
}

impl Buyer {
    /// A buyer for the market at `url`, fetching its identity (`/v1/info`).
    pub async fn connect(key: Keypair, url: &str) -> Result<Buyer, ClientError> {
        let client = MarketClient::new(url)?;
        let info = client.info().await?;
        Ok(Buyer::new(key, client, info))
    }

    /// A buyer from parts already at hand.
    pub fn new(key: Keypair, client: MarketClient, info: MarketInfo) -> Buyer {
        let chain = ChainId::new(info.chain_id.clone());
        Buyer {
            key,
            client,
            info,
            chain,
            nonces: Mutex::new(NonceTracker::new()),
        }
    }

    /// The buyer's account.
    pub fn account(&self) -> AccountId {
        self.key.account()
    }

    /// The HTTP client.
    pub fn client(&self) -> &MarketClient {
        &self.client
    }

    /// The market's identity.
    pub fn info(&self) -> &MarketInfo {
        &self.info
    }

    /// Signs `body` with a fresh random salt as the envelope nonce, so that two identical
    /// orders get different ids.
    pub fn sign_order(&self, body: OrderRequest) -> SignedOrder {
        Signed::sign(&self.key, &self.chain, rand::random::<u64>(), body)
    }

    /// The `OpenEscrow` for `order`, signed with ledger nonce `ledger_nonce`.
    pub fn escrow_for(&self, order: &SignedOrder, ledger_nonce: u64) -> Tx {
        Signed::sign(
            &self.key,
            &self.chain,
            ledger_nonce,
            TxBody::OpenEscrow {
                order_id: signed_order_id(order),
                amount: order.body.escrow,
                deadline_ms: order.body.deadline_ms,
            },
        )
    }

    /// Signs `body` and its escrow with ledger nonce `ledger_nonce`: the pair
    /// `POST /v1/orders` takes.
    pub fn prepare(&self, body: OrderRequest, ledger_nonce: u64) -> (SignedOrder, Tx) {
        let order = self.sign_order(body);
        let escrow = self.escrow_for(&order, ledger_nonce);
        (order, escrow)
    }

    /// Uploads the module and inputs of `request` (skipping blobs the node has) and
    /// returns the job they make.
    pub async fn upload_job(&self, request: &JobRequest) -> Result<JobSpec, ClientError> {
        let (module, module_size) = self.upload_file(&request.module).await?;
        let mut inputs = Vec::with_capacity(request.inputs.len());
        for (name, path) in &request.inputs {
            let (hash, size) = self.upload_file(path).await?;
            inputs.push(InputRef {
                name: name.clone(),
                hash,
                size,
            });
        }
        Ok(JobSpec {
            module,
            module_size,
            inputs,
            args: request.args.clone(),
            env: request.env.clone(),
            memory_bytes: request.memory_bytes,
        })
    }

    async fn upload_file(&self, path: &Path) -> Result<(Hash, u64), ClientError> {
        let (hash, size) = hash_file(path).await?;
        self.client.upload_blob(path, &hash).await?;
        Ok((hash, size))
    }

    /// Signs and submits `body` with its escrow, using and advancing the tracked ledger
    /// nonce (fetched when unknown, re-fetched once if the ledger refuses it).
    pub async fn submit(&self, body: OrderRequest) -> Result<Submitted, ClientError> {
        let order = self.sign_order(body);
        let mut nonces = self.nonces.lock().await;
        let mut retried = false;
        loop {
            let nonce = match nonces.next() {
                Some(nonce) => nonce,
                None => {
                    let next = self.client.account(&self.account()).await?.next_nonce;
                    nonces.sync(next);
                    next
                }
            };
            let escrow = self.escrow_for(&order, nonce);
            match self.client.submit_order(&order, &escrow).await {
                Ok(submitted) => {
                    nonces.consumed(nonce);
                    return Ok(submitted);
                }
                Err(e) if e.is_nonce_error() && !retried => {
                    retried = true;
                    nonces.forget();
                }
                Err(e) => {
                    // A refusal (4xx) left the ledger untouched; anything else may not have.
                    if !matches!(&e, ClientError::Api { status, .. } if (400..500).contains(status))
                    {
                        nonces.forget();
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Uploads `request`'s files and submits its order; does not wait for the outcome.
    pub async fn submit_job(&self, request: &JobRequest) -> Result<Submitted, ClientError> {
        let job = self.upload_job(request).await?;
        let body = request.order_request(job, now_ms())?;
        self.submit(body).await
    }

    /// Cancels order `id` (refunding its escrow) with a signed cancellation.
    pub async fn cancel(&self, id: &Hash) -> Result<OrderView, ClientError> {
        let cancel = Signed::sign(
            &self.key,
            &self.chain,
            rand::random::<u64>(),
            CancelOrder { order_id: *id },
        );
        self.client.cancel(&cancel).await
    }

    /// Follows order `id` until it is final, calling `on_event` for each event, and
    /// returns its final view. Falls back to polling if the event stream breaks.
    pub async fn wait(
        &self,
        id: &Hash,
        mut on_event: impl FnMut(&OrderEvent),
    ) -> Result<OrderView, ClientError> {
        let mut seen = 0usize;
        if let Ok(mut events) = self.client.follow(id).await {
            loop {
                match events.next().await {
                    Ok(Some(event)) => {
                        seen += 1;
                        on_event(&event);
                    }
                    Ok(None) => return self.client.order(id).await,
                    // A broken stream is not a failed order: poll the order instead.
                    Err(_) => break,
                }
            }
        }
        loop {
            let view = self.client.order(id).await?;
            for event in view.events.iter().skip(seen) {
                on_event(event);
            }
            seen = seen.max(view.events.len());
            if view.state.is_final() {
                return Ok(view);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Downloads a settled order's output files into `dir` (created if needed), each
    /// hash-checked; returns the result and the local paths.
    pub async fn download_outputs(
        &self,
        result: &JobResult,
        dir: &Path,
    ) -> Result<Vec<PathBuf>, ClientError> {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| ClientError::io(dir, e))?;
        let mut paths = Vec::with_capacity(result.outputs.len());
        for output in &result.outputs {
            let name = safe_file_name(&output.name).ok_or_else(|| ClientError::BadResponse {
                what: "the order's result".into(),
                detail: format!("output name {:?} is not a plain file name", output.name),
            })?;
            let path = dir.join(name);
            self.client.download_blob(&output.hash, &path).await?;
            paths.push(path);
        }
        Ok(paths)
    }

    /// Runs `request` to the end: uploads, submits, follows (calling `on_event`),
    /// downloads the outputs into `out_dir` and returns the bill.
    pub async fn run_job(
        &self,
        request: &JobRequest,
        out_dir: &Path,
        mut on_event: impl FnMut(&OrderEvent),
    ) -> Result<JobSummary, ClientError> {
        let submitted = self.submit_job(request).await?;
        let view = self.wait(&submitted.order_id, &mut on_event).await?;
        let outputs = match &view.result {
            Some(result) if view.state == OrderState::Settled => {
                self.download_outputs(result, out_dir).await?
            }
            _ => Vec::new(),
        };
        Ok(JobSummary::from_view(&view, outputs))
    }
}

/// `name` if it is a single plain path component (a provider names outputs; never let it
/// write outside the output directory).
fn safe_file_name(name: &str) -> Option<&str> {
    let plain =
        !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
    plain.then_some(name)
}

/// The blake3 hash and size of a file, read in chunks on a blocking thread.
pub async fn hash_file(path: &Path) -> Result<(Hash, u64), ClientError> {
    let owned = path.to_path_buf();
    let joined = tokio::task::spawn_blocking(move || -> std::io::Result<(Hash, u64)> {
        use std::io::Read;
        let mut file = std::fs::File::open(&owned)?;
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok((hasher.finalize(), size));
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
    })
    .await;
    match joined {
        Ok(result) => result.map_err(|e| ClientError::io(path, e)),
        Err(e) => Err(ClientError::io(path, std::io::Error::other(e))),
    }
}

/// Unix time in ms (deadlines are absolute).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_tracker_advances_and_forgets() {
        let mut nonces = NonceTracker::new();
        assert_eq!(nonces.next(), None);
        nonces.sync(5);
        assert_eq!(nonces.next(), Some(5));
        nonces.consumed(5);
        assert_eq!(nonces.next(), Some(6));
        nonces.forget();
        assert_eq!(nonces.next(), None);
    }

    fn job() -> JobSpec {
        JobSpec {
            module: Hash::of(b"m"),
            module_size: 1,
            inputs: Vec::new(),
            args: vec!["1".into()],
            env: Vec::new(),
            memory_bytes: 64 << 20,
        }
    }

    #[test]
    fn order_request_escrows_the_worst_case_and_asks_for_the_region() {
        let mut request = JobRequest::new("x/pathtrace.wasm");
        request.region = Some("eu".into());
        request.replicas = 2;
        // Two replicas are the policy's N; the escrow covers both runs.
        request.verify = "replicate:2:2".parse().unwrap();
        let body = request.order_request(job(), 1_000).unwrap();
        assert_eq!(body.label, "pathtrace");
        assert_eq!(body.deadline_ms, 1_000 + DEFAULT_DEADLINE_MS);
        assert_eq!(body.escrow, body.worst_case().unwrap());
        let one_run = body.max_price.max_cost(body.fuel_budget).unwrap();
        assert_eq!(body.escrow.0, 2 * one_run.0);
        assert_eq!(body.requirements.replicas, 2);
        // Replicas the policy does not ask for are refused before anything is sent.
        request.verify = VerifyPolicy::DEFAULT;
        assert!(matches!(
            request.order_request(job(), 1_000),
            Err(ClientError::BadOrder(_))
        ));
        assert_eq!(
            body.requirements.attributes,
            vec![AttributeConstraint::equals("region", "eu")]
        );
        assert!(body.requirements.features.contains("wasm"));
        assert_eq!(body.demand.memory_bytes, 64 << 20);
    }

    #[test]
    fn order_request_refuses_a_bad_shape() {
        let mut request = JobRequest::new("m.wasm");
        request.fuel_budget = Fuel(0);
        assert!(matches!(
            request.order_request(job(), 0),
            Err(ClientError::BadOrder(_))
        ));
    }

    #[test]
    fn escrow_names_the_order() {
        let info = MarketInfo {
            chain_id: "test".into(),
            market: Keypair::from_seed("m").account(),
            treasury: Keypair::from_seed("t").account(),
            fee_bps: 0,
            allow_faulty_providers: false,
            height: 0,
            p2p_addrs: Vec::new(),
            peer_id: String::new(),
            version: String::new(),
        };
        let client = MarketClient::new("http://127.0.0.1:1").unwrap();
        let buyer = Buyer::new(Keypair::from_seed("b"), client, info);
        let body = JobRequest::new("m.wasm").order_request(job(), 0).unwrap();
        let (order, escrow) = buyer.prepare(body, 9);
        assert!(order.verify(&ChainId::new("test")).is_ok());
        assert_eq!(escrow.nonce, 9);
        assert_eq!(
            escrow.body,
            TxBody::OpenEscrow {
                order_id: signed_order_id(&order),
                amount: order.body.escrow,
                deadline_ms: order.body.deadline_ms,
            }
        );
    }

    #[test]
    fn output_names_cannot_escape() {
        assert_eq!(safe_file_name("tile.ppm"), Some("tile.ppm"));
        for bad in ["", ".", "..", "../x", "a/b", "a\\b"] {
            assert_eq!(safe_file_name(bad), None, "{bad:?}");
        }
    }
}
