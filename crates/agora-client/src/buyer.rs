//! [`Buyer`]: a key, a client and the market's identity — everything needed to turn
//! local files and a budget into a signed, escrowed order and to see it through.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agora_core::hash::Hasher;
use agora_core::{AccountId, Amount, ChainId, Fuel, Hash, Keypair, Price, Signed};
use agora_ledger::{Tx, TxBody};
use agora_market::{AttributeConstraint, Demand, GpuDemand, Requirements};
use agora_proto::api::{JobResult, MarketInfo, Submitted, VerificationView};
use agora_proto::{
    CancelOrder, InputRef, JobSpec, OrderEvent, OrderRequest, OrderState, OrderView, SignedOrder,
    TaskRef, signed_order_id,
};
use agora_proto::{VerifyPolicy, Workload};
use serde::Serialize;
use tokio::sync::Mutex;

use crate::client::MarketClient;
use crate::error::ClientError;

/// Default price cap per CU: 0.1 AGR.
pub const DEFAULT_MAX_PRICE: Price = Price(100_000_000);
/// Default fuel budget: 50 CU, enough for real compiler and synthesis runs (16–23 CU);
/// at the default price that locks 5 AGR in escrow, and what the job does not use comes
/// back when it settles.
pub const DEFAULT_FUEL_BUDGET: Fuel = Fuel::compute_units(50);
/// Default linear-memory limit: 128 MiB.
pub const DEFAULT_MEMORY_BYTES: u64 = 128 << 20;
/// Default time from submission to the deadline: 2 minutes.
pub const DEFAULT_DEADLINE_MS: u64 = 120_000;

/// A job as a buyer describes it: local files, arguments and a budget.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobRequest {
    /// The code on disk: a WASI command module, or an OCI image archive when `workload`
    /// is [`Workload::Oci`].
    pub module: PathBuf,
    /// What kind of code `module` is, and for an image how to run it.
    pub workload: Workload,
    /// CPU the job needs, in millicores (a container's CPU quota; 1000 = one core).
    pub cpu_millis: u64,
    /// GPUs the job needs, if any.
    pub gpu: Option<GpuDemand>,
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
    /// The job's scratch-disk limit in bytes (its `/`, `/tmp` and working tree), also what
    /// a provider must have free to take it; 0 leaves the provider's default (256 MiB).
    pub disk_bytes: u64,
    /// How long after submission the order must be settled, in ms.
    pub deadline_in_ms: u64,
    /// A short label for listings.
    pub label: String,
    /// Its place within a multi-task job.
    pub task: Option<TaskRef>,
    /// How the order is matched (instant unless set); an auction's window or clock is
    /// added to the deadline, so the job keeps its full run time.
    pub auction: agora_market::MatchTerms,
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
            workload: Workload::Wasm,
            cpu_millis: 1_000,
            gpu: None,
            inputs: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            max_price: DEFAULT_MAX_PRICE,
            fuel_budget: DEFAULT_FUEL_BUDGET,
            replicas: 1,
            verify: VerifyPolicy::DEFAULT,
            region: None,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            disk_bytes: 0,
            deadline_in_ms: DEFAULT_DEADLINE_MS,
            label,
            task: None,
            auction: agora_market::MatchTerms::Instant,
        }
    }

    /// The order body for this request once its files are uploaded as `job`; `now_ms`
    /// fixes the deadline. The escrow is exactly the worst case, and the shape is checked
    /// here so that a bad order never costs a round trip.
    pub fn order_request(&self, job: JobSpec, now_ms: u64) -> Result<OrderRequest, ClientError> {
        let mut features = BTreeSet::from([job.workload.feature().to_string()]);
        if self.gpu.is_some() {
            features.insert("gpu".to_string());
        }
        let requirements = Requirements {
            features,
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
                cpu_millis: self.cpu_millis,
                memory_bytes: job.memory_bytes,
                disk_bytes: self.disk_bytes,
                gpu: self.gpu.clone(),
            },
            job,
            requirements,
            max_price: self.max_price,
            fuel_budget: self.fuel_budget,
            deadline_ms: now_ms
                .saturating_add(self.deadline_in_ms + self.hold_ms() + self.auction.duration_ms()),
            escrow: Amount::ZERO,
            replicas: self.replicas,
            verify: self.verify,
            label: self.label.clone(),
            task: self.task.clone(),
            auction: self.auction,
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

/// Most times one order is sent when the ledger refuses its escrow's nonce (another
/// process signing with the same key took it): each retry fetches the next nonce again
/// and signs a new escrow.
pub const NONCE_ATTEMPTS: u32 = 10;

/// The backoff before retry `retry` (1-based) after a refused nonce: none for the first
/// (the locally tracked nonce was merely stale), then a random wait in
/// `[cap/2, cap]` with `cap` = 25 ms doubling up to 800 ms, so racing submitters spread
/// out instead of colliding again.
pub fn nonce_backoff(retry: u32) -> Duration {
    if retry <= 1 {
        return Duration::ZERO;
    }
    let cap_ms = 25u64 << (retry - 2).min(5);
    // Rounded up: at least half the cap, also for the odd first cap of 25 ms.
    Duration::from_millis(rand::random_range(cap_ms.div_ceil(2)..=cap_ms))
}

/// How long following an order keeps trying to reach a market that went away (a crash,
/// a restart) before giving up, unless [`Buyer::set_reconnect_window`] says otherwise.
pub const DEFAULT_RECONNECT_WINDOW: Duration = Duration::from_secs(60);

/// How long a submission waits for another process's submission with the same key
/// before going ahead without the lock (the nonce retries still keep it correct).
pub const SUBMIT_LOCK_WAIT: Duration = Duration::from_secs(30);

/// The backoff between attempts to reach a market that went away: 100 ms doubling to
/// 2 s, each with up to a quarter added at random so that many followers do not return
/// in step.
fn reconnect_backoff(failures: u32) -> Duration {
    let base_ms = (100u64 << failures.min(5)).min(2_000);
    Duration::from_millis(base_ms + rand::random_range(0..=base_ms / 4))
}

/// Where the progress notices of a [`Buyer`] go (reconnecting to the market, …).
#[derive(Clone)]
struct Notices(Arc<dyn Fn(&str) + Send + Sync>);

impl Notices {
    fn stderr() -> Notices {
        Notices(Arc::new(|line| eprintln!("{line}")))
    }

    fn say(&self, line: &str) {
        (self.0)(line);
    }
}

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notices")
    }
}

/// An advisory lock (`flock`) on a file shared by every process that signs with one key
/// on this machine, held while one submission picks its ledger nonce and commits its
/// escrow, so that concurrent `agora job run`s from one wallet take turns instead of
/// colliding. The kernel releases it when the file is closed, including when the process
/// dies, so a crash never leaves it held.
struct SubmitLock {
    _file: File,
}

impl SubmitLock {
    /// Takes the lock at `path`, waiting at most `wait`. `None` when the file cannot be
    /// opened or locked (an unsupported file system, another user's file) or the wait
    /// ran out: the submission then goes ahead unlocked and relies on its nonce retries.
    async fn acquire(path: &Path, wait: Duration) -> Option<SubmitLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .or_else(|_| File::open(path))
            .ok()?;
        let until = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => return Some(SubmitLock { _file: file }),
                Err(TryLockError::WouldBlock) if Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(rand::random_range(10..=40))).await;
                }
                Err(_) => return None,
            }
        }
    }
}

/// The default lock file of `account` at the market at `url` on `chain`: in the
/// temporary directory, named by a hash of the three, so that every wallet file holding
/// the key shares it and separate local networks (test nets with the same dev keys) do
/// not wait on each other.
fn default_submit_lock(chain: &ChainId, account: &AccountId, url: &str) -> PathBuf {
    let key = Hash::of(format!("{}\n{account}\n{url}", chain.0).as_bytes());
    std::env::temp_dir().join(format!("agora-submit-{}.lock", key.short()))
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
/// of the account); different `Buyer`s — different keys — submit concurrently. Across
/// processes that sign with the same key, submissions take turns on an advisory lock
/// file ([`Buyer::set_submit_lock`]), and an escrow whose nonce another process took
/// anyway (another machine, a lock that could not be had) is signed again with the next
/// nonce, up to [`NONCE_ATTEMPTS`] times.
#[derive(Debug)]
pub struct Buyer {
    key: Keypair,
    client: MarketClient,
    info: MarketInfo,
    chain: ChainId,
    nonces: Mutex<NonceTracker>,
    submit_lock: Option<PathBuf>,
    reconnect_window: Duration,
    notices: Notices,
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
        let submit_lock = Some(default_submit_lock(
            &chain,
            &key.account(),
            client.base_url(),
        ));
        Buyer {
            key,
            client,
            info,
            chain,
            nonces: Mutex::new(NonceTracker::new()),
            submit_lock,
            reconnect_window: DEFAULT_RECONNECT_WINDOW,
            notices: Notices::stderr(),
        }
    }

    /// Sets the lock file that submissions from every process signing with this key take
    /// turns on (`None`: no lock, nonce retries only). The default lives in the temporary
    /// directory (`$TMPDIR`), named by the chain, the account and the market's URL.
    pub fn set_submit_lock(&mut self, path: Option<PathBuf>) {
        self.submit_lock = path;
    }

    /// The lock file submissions take turns on, if any.
    pub fn submit_lock(&self) -> Option<&Path> {
        self.submit_lock.as_deref()
    }

    /// Sets how long [`Buyer::wait`] keeps trying to reach a market that went away
    /// (default [`DEFAULT_RECONNECT_WINDOW`]); zero gives up on the first failure.
    pub fn set_reconnect_window(&mut self, window: Duration) {
        self.reconnect_window = window;
    }

    /// Sends the buyer's progress notices (the market went away, reconnected) to
    /// `notice` instead of stderr.
    pub fn set_notices(&mut self, notice: impl Fn(&str) + Send + Sync + 'static) {
        self.notices = Notices(Arc::new(notice));
    }

    /// The buyer's key (private orders sign grants and access headers with it).
    pub(crate) fn key(&self) -> &Keypair {
        &self.key
    }

    /// The market's chain.
    pub(crate) fn chain(&self) -> &ChainId {
        &self.chain
    }

    /// Says `line` through the buyer's notices.
    pub(crate) fn notice(&self, line: &str) {
        self.notices.say(line);
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
                sealed: false,
            });
        }
        Ok(JobSpec {
            module,
            module_size,
            inputs,
            args: request.args.clone(),
            env: request.env.clone(),
            memory_bytes: request.memory_bytes,
            workload: request.workload.clone(),
        })
    }

    async fn upload_file(&self, path: &Path) -> Result<(Hash, u64), ClientError> {
        let (hash, size) = hash_file(path).await?;
        self.client.upload_blob(path, &hash).await?;
        Ok((hash, size))
    }

    /// Signs and submits `body` with its escrow, using and advancing the tracked ledger
    /// nonce (fetched when unknown). Other processes signing with the same key take turns
    /// on the submit lock; if the ledger still refuses the nonce (taken by a submission
    /// that did not take the lock, or a stale tracked one), the next nonce is fetched and
    /// the escrow signed again, after a short random backoff, up to [`NONCE_ATTEMPTS`]
    /// sends in all. The order itself is signed once: its id does not depend on the
    /// escrow's nonce, and a refused escrow leaves no trace of the order at the market.
    ///
    /// On a market that settles on an EVM chain the buyer opens the escrow on chain with
    /// its own key first ([`crate::evm`]); the node takes that escrow over, and the signed
    /// `OpenEscrow` only says which escrow it is (its ledger nonce is not used there).
    pub async fn submit(&self, body: OrderRequest) -> Result<Submitted, ClientError> {
        let order = self.sign_order(body);
        if let Some((rpc_url, contract)) = crate::evm::evm_settlement(&self.info) {
            {
                // One escrow transaction at a time per key: its EVM nonce comes from the
                // chain, so concurrent submissions would race for it.
                let _nonces = self.nonces.lock().await;
                let _turn = match &self.submit_lock {
                    Some(path) => SubmitLock::acquire(path, SUBMIT_LOCK_WAIT).await,
                    None => None,
                };
                crate::evm::open_escrow_on_chain(rpc_url, contract, &self.key, &order).await?;
            }
            return self
                .client
                .submit_order(&order, &self.escrow_for(&order, 0))
                .await;
        }
        self.submit_paid_by(&order, |nonce| self.escrow_for(&order, nonce))
            .await
    }

    /// Submits the signed `order` with the ledger transaction that pays for it,
    /// `payment(nonce)` (an escrow, a voucher redemption), using and advancing the
    /// tracked ledger nonce, on the submit lock, retrying a refused nonce: see
    /// [`Buyer::submit`].
    async fn submit_paid_by(
        &self,
        order: &SignedOrder,
        payment: impl Fn(u64) -> Tx,
    ) -> Result<Submitted, ClientError> {
        let mut nonces = self.nonces.lock().await;
        let _turn = match &self.submit_lock {
            Some(path) => SubmitLock::acquire(path, SUBMIT_LOCK_WAIT).await,
            None => None,
        };
        let mut sent = 0u32;
        loop {
            let nonce = match nonces.next() {
                Some(nonce) => nonce,
                None => {
                    let next = self.client.account(&self.account()).await?.next_nonce;
                    nonces.sync(next);
                    next
                }
            };
            sent += 1;
            match self.client.submit_order(order, &payment(nonce)).await {
                Ok(submitted) => {
                    nonces.consumed(nonce);
                    return Ok(submitted);
                }
                Err(e) if e.is_nonce_error() && sent < NONCE_ATTEMPTS => {
                    nonces.forget();
                    tokio::time::sleep(nonce_backoff(sent)).await;
                }
                Err(e) => {
                    // A refusal (4xx) left the ledger untouched; anything else may not
                    // have, and a refused nonce is stale.
                    let refused = matches!(&e, ClientError::Api { status, .. } if (400..500).contains(status));
                    if !refused || e.is_nonce_error() {
                        nonces.forget();
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Signs and submits `body` paid by redeeming units of the voucher series `terms`
    /// instead of locking balance: the order's price is capped at the voucher's locked
    /// price, and its escrow is the backing of the fewest CU that cover the worst-case
    /// bill. Returns the submission and the CU redeemed. The node checks the class and
    /// price; the ledger checks that this account holds the units inside their window.
    /// Like [`Buyer::submit`], it takes turns on the submit lock and retries a refused
    /// nonce, so the tasks of one job can redeem concurrently.
    pub async fn submit_with_voucher(
        &self,
        mut body: OrderRequest,
        terms: &agora_ledger::VoucherTerms,
    ) -> Result<(Submitted, u64), ClientError> {
        let unusable = |detail: String| ClientError::BadResponse {
            what: "the voucher's terms".into(),
            detail,
        };
        if terms.price_per_cu.0 == 0 {
            return Err(unusable("its price per CU is zero".into()));
        }
        body.max_price = body.max_price.min(terms.price_per_cu);
        let worst = body.worst_case()?;
        let cu = worst.0.div_ceil(terms.price_per_cu.0).max(1);
        body.escrow = terms
            .backing(cu)
            .ok_or_else(|| unusable(format!("{cu} CU overflow its backing")))?;
        body.check_shape()?;
        let order = self.sign_order(body);
        let redeem = |nonce| {
            Signed::sign(
                &self.key,
                &self.chain,
                nonce,
                TxBody::RedeemVoucher {
                    terms: terms.clone(),
                    cu,
                    order_id: signed_order_id(&order),
                    deadline_ms: order.body.deadline_ms,
                },
            )
        };
        let submitted = self.submit_paid_by(&order, redeem).await?;
        Ok((submitted, cu))
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

    /// Follows order `id` until it is final, calling `on_event` once for each event, and
    /// returns its final view.
    ///
    /// It follows the order's event stream. When the stream breaks it re-reads the order
    /// (delivering the events it missed) and follows the stream again; when the market
    /// cannot be reached (it crashed or is restarting) it says so through the notices
    /// (stderr by default) and keeps trying with backoff for the reconnect window
    /// ([`Buyer::set_reconnect_window`]), then fails with [`ClientError::MarketLost`]. A
    /// stream that keeps breaking while the market answers is given up for polling.
    pub async fn wait(
        &self,
        id: &Hash,
        mut on_event: impl FnMut(&OrderEvent),
    ) -> Result<OrderView, ClientError> {
        /// Stream breaks while the market answers before polling takes over.
        const STREAM_BREAKS: u32 = 3;
        let mut seen = 0usize;
        let mut outage: Option<Outage> = None;
        let mut streaming = true;
        let mut breaks = 0u32;
        loop {
            // After an outage the order is read first: it says where the order stands.
            if streaming && outage.is_none() {
                match self.client.follow(id).await {
                    Ok(mut events) => {
                        let before = seen;
                        // The stream starts with the order's whole history.
                        let mut replayed = 0usize;
                        let ended = loop {
                            match events.next().await {
                                Ok(Some(event)) => {
                                    replayed += 1;
                                    if replayed > seen {
                                        seen = replayed;
                                        on_event(&event);
                                    }
                                }
                                Ok(None) => break None,
                                Err(e) => break Some(e),
                            }
                        };
                        match ended {
                            None => breaks = 0,
                            Some(e) if e.is_unavailable() && seen > before => breaks = 0,
                            Some(e) if e.is_unavailable() => breaks += 1,
                            // An answer this client cannot read: the stream will not get
                            // better, the order's record may.
                            Some(_) => streaming = false,
                        }
                        if breaks >= STREAM_BREAKS {
                            streaming = false;
                        }
                    }
                    Err(e) if e.is_unavailable() => {}
                    // Refused (an unknown order) or unreadable: polling says which.
                    Err(_) => streaming = false,
                }
            }
            match self.client.order(id).await {
                Ok(view) => {
                    self.back_online(&mut outage, id, Some(view.state));
                    for event in view.events.iter().skip(seen) {
                        on_event(event);
                    }
                    seen = seen.max(view.events.len());
                    if view.state.is_final() {
                        return Ok(view);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) if e.is_unavailable() => {
                    let window = self.reconnect_window;
                    let down = outage.get_or_insert_with(|| {
                        self.notices.say(&format!(
                            "lost the market while following order {id}; reconnecting for up to {:.0} s ({e})",
                            window.as_secs_f64()
                        ));
                        Outage::new()
                    });
                    if down.since.elapsed() >= window {
                        return Err(ClientError::MarketLost {
                            order: *id,
                            waited_s: down.since.elapsed().as_secs(),
                            source: Box::new(e),
                        });
                    }
                    down.failures += 1;
                    tokio::time::sleep(reconnect_backoff(down.failures)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Ends an outage, if there was one, saying so.
    fn back_online(&self, outage: &mut Option<Outage>, id: &Hash, state: Option<OrderState>) {
        if let Some(down) = outage.take() {
            let state = state.map_or(String::new(), |s| format!("; order {id} is {s}"));
            self.notices.say(&format!(
                "reconnected to the market after {:.1} s{state}",
                down.since.elapsed().as_secs_f64()
            ));
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

/// A time the market could not be reached while following an order.
struct Outage {
    since: Instant,
    failures: u32,
}

impl Outage {
    fn new() -> Outage {
        Outage {
            since: Instant::now(),
            failures: 0,
        }
    }
}

/// `name` if it is a single plain path component (a provider names outputs; never let it
/// write outside the output directory).
pub(crate) fn safe_file_name(name: &str) -> Option<&str> {
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
            workload: agora_proto::Workload::Wasm,
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

    fn market_info() -> MarketInfo {
        MarketInfo {
            chain_id: "test".into(),
            market: Keypair::from_seed("m").account(),
            treasury: Keypair::from_seed("t").account(),
            fee_bps: 0,
            allow_faulty_providers: false,
            height: 0,
            p2p_addrs: Vec::new(),
            peer_id: String::new(),
            version: String::new(),
            max_blob_bytes: None,
            settlement: None,
        }
    }

    #[test]
    fn escrow_names_the_order() {
        let client = MarketClient::new("http://127.0.0.1:1").unwrap();
        let buyer = Buyer::new(Keypair::from_seed("b"), client, market_info());
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

    /// A fake market for the submit and follow paths: another signer takes the account's
    /// next nonce before each of the first `stolen` submissions; the order endpoint is
    /// down (503) for its first `down` reads, then reports `final_state`.
    #[derive(Default)]
    struct Fake {
        next_nonce: u64,
        stolen: u32,
        posts: Vec<u64>,
        down: u32,
        reads: u32,
        final_state: Option<OrderState>,
    }

    type FakeState = Arc<std::sync::Mutex<Fake>>;

    fn refusal(status: u16, code: &str, message: String) -> axum::response::Response {
        use axum::response::IntoResponse;
        let status = axum::http::StatusCode::from_u16(status).unwrap();
        let body = agora_proto::ApiError {
            error: code.to_string(),
            message,
        };
        (status, axum::Json(body)).into_response()
    }

    async fn fake_account(
        axum::extract::State(fake): axum::extract::State<FakeState>,
    ) -> axum::Json<agora_proto::api::AccountView> {
        let next_nonce = fake.lock().unwrap().next_nonce;
        axum::Json(agora_proto::api::AccountView {
            account: Keypair::from_seed("b").account(),
            balance: Amount(1 << 40),
            stake: Amount::ZERO,
            unbonding: Amount::ZERO,
            next_nonce,
        })
    }

    async fn fake_submit(
        axum::extract::State(fake): axum::extract::State<FakeState>,
        axum::Json(body): axum::Json<agora_proto::api::SubmitOrder>,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let order: SignedOrder = agora_proto::hexed::decode(&body.order, "order").unwrap();
        let escrow: Tx = agora_proto::hexed::decode(&body.escrow_tx, "escrow").unwrap();
        let mut fake = fake.lock().unwrap();
        fake.posts.push(escrow.nonce);
        if fake.stolen > 0 {
            fake.stolen -= 1;
            fake.next_nonce += 1;
        }
        if escrow.nonce != fake.next_nonce {
            let message = format!(
                "the ledger refused the escrow: nonce {} of {} was already used; the next nonce is {}",
                escrow.nonce, escrow.signer, fake.next_nonce
            );
            return refusal(400, "escrow_refused", message);
        }
        assert_eq!(
            escrow.body,
            TxBody::OpenEscrow {
                order_id: signed_order_id(&order),
                amount: order.body.escrow,
                deadline_ms: order.body.deadline_ms,
            },
            "every escrow opens the order it is sent with"
        );
        fake.next_nonce += 1;
        let submitted = Submitted {
            order_id: signed_order_id(&order),
            state: OrderState::Escrowed,
            escrow_height: 1,
        };
        (axum::http::StatusCode::CREATED, axum::Json(submitted)).into_response()
    }

    fn event(state: OrderState, at_ms: u64) -> OrderEvent {
        OrderEvent {
            order_id: Hash::of(b"o"),
            state,
            at_ms,
            provider: None,
            detail: String::new(),
        }
    }

    async fn fake_order(
        axum::extract::State(fake): axum::extract::State<FakeState>,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let mut fake = fake.lock().unwrap();
        fake.reads += 1;
        if fake.reads <= fake.down {
            return refusal(503, "internal", "restarting".into());
        }
        let state = fake.final_state.unwrap_or(OrderState::Running);
        let mut events = vec![
            event(OrderState::Escrowed, 1),
            event(OrderState::Running, 2),
        ];
        if state.is_final() {
            events.push(event(state, 3));
        }
        let view = OrderView {
            order_id: Hash::of(b"o"),
            buyer: Keypair::from_seed("b").account(),
            label: String::new(),
            task: None,
            state,
            max_price: Price(1),
            escrow: Amount(1),
            provider: None,
            price: None,
            cost: Amount::ZERO,
            refunded: Amount(1),
            attempts: 1,
            created_ms: 0,
            latency_ms: None,
            refund_reason: None,
            events,
            result: None,
            verification: VerificationView::default(),
        };
        axum::Json(view).into_response()
    }

    type Notes = Arc<std::sync::Mutex<Vec<String>>>;

    /// Serves `fake` on a free port; returns a buyer whose notices are collected (and
    /// the directory of its submit lock).
    async fn fake_market(fake: Fake) -> (Buyer, FakeState, Notes, tempfile::TempDir) {
        use axum::routing::{get, post};
        let state: FakeState = Arc::new(std::sync::Mutex::new(fake));
        let app = axum::Router::new()
            .route("/v1/accounts/{id}", get(fake_account))
            .route("/v1/orders", post(fake_submit))
            .route("/v1/orders/{id}", get(fake_order))
            // No event stream: the follower must do with the order's record.
            .route(
                "/v1/orders/{id}/events",
                get(|| async { refusal(503, "internal", "restarting".into()) }),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = MarketClient::new(&url).unwrap();
        let mut buyer = Buyer::new(Keypair::from_seed("b"), client, market_info());
        let dir = tempfile::tempdir().unwrap();
        buyer.set_submit_lock(Some(dir.path().join("submit.lock")));
        let notices = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = notices.clone();
        buyer.set_notices(move |line| sink.lock().unwrap().push(line.to_string()));
        (buyer, state, notices, dir)
    }

    #[tokio::test]
    async fn a_nonce_taken_by_another_process_is_retried_with_the_next_one() {
        let fake = Fake {
            next_nonce: 5,
            stolen: 3,
            ..Fake::default()
        };
        let (buyer, state, _, _dir) = fake_market(fake).await;
        let body = JobRequest::new("m.wasm")
            .order_request(job(), now_ms())
            .unwrap();
        let submitted = buyer.submit(body).await.unwrap();
        assert_eq!(submitted.state, OrderState::Escrowed);
        // Nonce 5 was taken before the first send, 6 and 7 before the next two; the
        // fourth escrow, signed after fetching again, carries 8.
        assert_eq!(state.lock().unwrap().posts, vec![5, 6, 7, 8]);
        // The tracker continues from the escrow that landed, without asking again.
        let body = JobRequest::new("m.wasm")
            .order_request(job(), now_ms())
            .unwrap();
        buyer.submit(body).await.unwrap();
        assert_eq!(state.lock().unwrap().posts, vec![5, 6, 7, 8, 9]);
    }

    #[tokio::test]
    async fn nonce_retries_are_bounded() {
        let fake = Fake {
            next_nonce: 0,
            stolen: u32::MAX,
            ..Fake::default()
        };
        let (buyer, state, _, _dir) = fake_market(fake).await;
        let body = JobRequest::new("m.wasm")
            .order_request(job(), now_ms())
            .unwrap();
        let err = buyer.submit(body).await.unwrap_err();
        assert!(err.is_nonce_error(), "{err}");
        assert_eq!(state.lock().unwrap().posts.len(), NONCE_ATTEMPTS as usize);
    }

    #[test]
    fn nonce_backoff_grows_and_stays_small() {
        assert_eq!(nonce_backoff(1), Duration::ZERO);
        for retry in 2..20 {
            let cap = Duration::from_millis(25 << (retry - 2).min(5));
            let wait = nonce_backoff(retry);
            assert!(wait >= cap / 2 && wait <= cap, "{retry}: {wait:?}");
        }
    }

    #[tokio::test]
    async fn following_rides_out_a_market_restart_and_says_so() {
        let fake = Fake {
            down: 3,
            final_state: Some(OrderState::Settled),
            ..Fake::default()
        };
        let (buyer, _, notices, _dir) = fake_market(fake).await;
        let mut states = Vec::new();
        let view = buyer
            .wait(&Hash::of(b"o"), |e| states.push(e.state))
            .await
            .unwrap();
        assert_eq!(view.state, OrderState::Settled);
        // Each event once, in order, although the stream never worked.
        assert_eq!(
            states,
            vec![
                OrderState::Escrowed,
                OrderState::Running,
                OrderState::Settled
            ]
        );
        let notices = notices.lock().unwrap().clone();
        assert_eq!(notices.len(), 2, "{notices:?}");
        assert!(
            notices[0].contains("reconnecting for up to 60 s"),
            "{notices:?}"
        );
        assert!(
            notices[1].starts_with("reconnected to the market after"),
            "{notices:?}"
        );
        assert!(notices[1].ends_with("is settled"), "{notices:?}");
    }

    #[tokio::test]
    async fn following_gives_up_after_the_reconnect_window() {
        let fake = Fake {
            down: u32::MAX,
            ..Fake::default()
        };
        let (mut buyer, state, notices, _dir) = fake_market(fake).await;
        buyer.set_reconnect_window(Duration::from_millis(600));
        let started = Instant::now();
        let err = buyer.wait(&Hash::of(b"o"), |_| {}).await.unwrap_err();
        assert!(matches!(err, ClientError::MarketLost { .. }), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(600));
        assert!(started.elapsed() < Duration::from_secs(5));
        // It kept trying, with backoff rather than a hot loop.
        let reads = state.lock().unwrap().reads;
        assert!((2..20).contains(&reads), "{reads} reads");
        assert_eq!(notices.lock().unwrap().len(), 1);
        assert!(err.to_string().contains("agora job status"), "{err}");
    }

    #[test]
    fn output_names_cannot_escape() {
        assert_eq!(safe_file_name("tile.ppm"), Some("tile.ppm"));
        for bad in ["", ".", "..", "../x", "a/b", "a\\b"] {
            assert_eq!(safe_file_name(bad), None, "{bad:?}");
        }
    }
}
