//! One accepted assignment, from blobs to a signed receipt.
//!
//! The job task fetches the module and inputs from the market peer (skipped for blobs
//! already in the local store), runs the order in the sandbox on a blocking thread with
//! the order id as the executor's job id (virtual clocks and seeded randomness derive from
//! it, so every honest provider produces the same digest), heartbeats while it runs, puts
//! the outputs in the local blob store for the market to fetch, and sends a
//! `Deliver` with the signed receipt — or a signed `JobFailure` saying whether the
//! failure is the job's own (deterministic) or this host's.
//!
//! A run can be halted at any point before it delivers (see `agent`): while fetching it
//! simply stops; while the sandbox runs, the job's cancel token stops it within an epoch
//! tick and the run waits for the sandbox to return, so that when the run ends its slot
//! and memory really are free. A halted run is never delivered; one cut off by shutdown
//! tells the market it gave the order up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_core::{AccountId, ContainerMetering};
use agora_core::{Fuel, Hash, Receipt, Signed};
use agora_exec::{CancelToken, ExecError, Executor, Input, Outcome, WasmExecutor, WasmModule};
use agora_net::{BlobStore, NetError, PeerId, StoreError};
use agora_proto::InputKind;
use agora_proto::OrderRequest;
use agora_proto::wire::{
    Assignment, Delivery, FAILURE_TAIL_BYTES, Heartbeat, JobFailure, MarketReply, OutputRef,
    Stream, ToMarket,
};
use tokio::sync::watch;

use crate::agent::{Halt, Reservation, RunGuard, Shared, now_ms};
use crate::containers::{ContainerAssignment, ContainerJobError};
use crate::fault::{self, FaultMode};

/// Heartbeat intervals are kept within these bounds whatever the market asks.
const HEARTBEAT_MIN: Duration = Duration::from_millis(50);
const HEARTBEAT_MAX: Duration = Duration::from_secs(60);
/// How long a result is offered to an unreachable market before giving up.
const DELIVERY_PATIENCE: Duration = Duration::from_secs(60);
/// The wait before the first retry; doubled each time up to the cap.
const DELIVERY_BACKOFF: Duration = Duration::from_millis(200);
const DELIVERY_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a run cut off by shutdown tries to tell the market (shutdown waits no
/// longer than this for it anyway).
const GIVE_UP_PATIENCE: Duration = Duration::from_secs(1);
/// What the market's heartbeat refusal says when the order is no longer this
/// provider's (reassigned, refunded or settled: agora-node's `lifecycle::heartbeat`).
/// The wire carries a refusal as text only, so the agent knows it by these words;
/// other refusals (a bad signature, say) are not a reason to stop.
const DISOWNED: &str = "stop running it";

/// Why a job produced no result.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JobError {
    /// A blob could not be fetched from the market.
    #[error("fetching {what} {hash}: {source}")]
    Fetch {
        what: &'static str,
        hash: Hash,
        source: NetError,
    },
    /// The executor refused or failed the job.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The image was refused, or the container run failed.
    #[error(transparent)]
    Container(#[from] ContainerJobError),
    /// A container job reached a provider that cannot run containers.
    #[error("this provider cannot run container jobs: {0}")]
    NoContainers(String),
    /// An output could not be stored.
    #[error("storing the outputs: {0}")]
    Store(#[from] StoreError),
    /// The sandbox thread panicked (a bug; never the job's fault).
    #[error("the sandbox thread failed: {0}")]
    Crashed(String),
    /// The provider shut down before the job finished; another provider may run it.
    #[error("the provider shut down before the job finished")]
    ShutDown,
    /// A private order's sealed inputs could not be opened: no key from the buyer, a key
    /// that does not open, a blob that does not authenticate. Any provider would fail
    /// alike, so the order is refunded.
    #[error("private order: {0}")]
    SealedInput(String),
    /// A private order's outcome could not be sealed and handed over (this host's or the
    /// market's trouble; another provider may run it).
    #[error("private order: {0}")]
    SealOutcome(String),
}

impl JobError {
    /// Whether any provider would fail the same way, so the order should be refunded
    /// rather than reassigned. Timeouts depend on machine speed, a hash mismatch on the
    /// market's bytes, and host errors on this host: none of those is the job's fault.
    fn deterministic(&self) -> bool {
        match self {
            JobError::Exec(e) => {
                e.is_job_fault()
                    && !matches!(
                        e,
                        ExecError::Timeout { .. } | ExecError::ModuleHashMismatch { .. }
                    )
            }
            JobError::Container(e) => e.deterministic(),
            JobError::SealedInput(_) => true,
            _ => false,
        }
    }

    /// The failure's type as a short code for the signed report.
    fn kind(&self) -> &'static str {
        match self {
            JobError::Exec(e) => e.kind(),
            JobError::Container(e) => e.kind(),
            JobError::NoContainers(_) => "no_containers",
            JobError::Fetch { .. } => "fetch",
            JobError::Store(_) | JobError::Crashed(_) => "host",
            JobError::ShutDown => "shut_down",
            JobError::SealedInput(_) => "sealed_input",
            JobError::SealOutcome(_) => "seal_outcome",
        }
    }

    /// Fuel the job burnt before it failed (zero when it never ran).
    fn fuel_used(&self) -> Fuel {
        match self {
            JobError::Exec(e) => e.fuel_used(),
            JobError::Container(e) => e.fuel_used(),
            _ => Fuel(0),
        }
    }

    /// The last bytes of stdout and stderr the job wrote before it failed, for the report.
    fn tails(&self) -> (String, String) {
        let partial = match self {
            JobError::Exec(e) => e.partial(),
            JobError::Container(e) => e.partial(),
            _ => None,
        };
        partial.map_or_else(Default::default, |p| {
            (
                p.stdout.tail(FAILURE_TAIL_BYTES),
                p.stderr.tail(FAILURE_TAIL_BYTES),
            )
        })
    }
}

/// A run's result and, for a container job, what its cgroup measured.
pub(crate) struct Ran {
    pub outcome: Outcome,
    pub metering: Option<ContainerMetering>,
}

impl From<Outcome> for Ran {
    fn from(outcome: Outcome) -> Ran {
        Ran {
            outcome,
            metering: None,
        }
    }
}

/// How a run ended.
// One value per run, returned once and matched at once: boxing the outcome would buy
// nothing but an allocation.
#[allow(clippy::large_enum_variant)]
enum Ended {
    /// The sandbox returned (or a blob could not be had): report this.
    Done(Result<Ran, JobError>),
    /// Halted first; nothing is delivered.
    Halted(Halt),
}

/// Runs `assignment` to its end and reports to the market; `reservation` is the slot and
/// memory it holds, `control` says when to halt, and `guard` forgets the run when it ends.
pub(crate) async fn run(
    guard: RunGuard,
    market_peer: PeerId,
    assignment: Assignment,
    reservation: Reservation,
    mut control: watch::Receiver<Option<Halt>>,
) {
    let shared = &guard.shared;
    let order_id = assignment.order_id;
    let fault = shared.fault_for(&order_id);
    let started = Instant::now();
    let heartbeats = tokio::spawn(heartbeat_loop(
        shared.clone(),
        market_peer,
        order_id,
        assignment.heartbeat_ms,
        started,
        control.clone(),
    ));
    let ended = match fault {
        // Made up at once; the reservation goes back unused.
        Some(FaultMode::SkipWork) => {
            Ended::Done(Ok(fault::made_up(&assignment, &shared.key.account()).into()))
        }
        Some(FaultMode::Crash) => {
            let work = execute(
                shared,
                market_peer,
                &assignment,
                reservation,
                &mut control,
                fault,
            );
            let every =
                Duration::from_millis(assignment.heartbeat_ms).clamp(HEARTBEAT_MIN, HEARTBEAT_MAX);
            fault::crash_during(work, every, &order_id.short()).await
        }
        _ => {
            execute(
                shared,
                market_peer,
                &assignment,
                reservation,
                &mut control,
                fault,
            )
            .await
        }
    };
    heartbeats.abort();
    let order = order_id.short();
    match ended {
        Ended::Done(result) => tokio::select! {
            () = report(shared, market_peer, &assignment, result) => {}
            // Aborted meanwhile (e.g. while retrying an unreachable market): the market
            // would refuse the report, so stop retrying it.
            halt = halted(&mut control) => tracing::info!(order, ?halt, "halted before the result was reported; dropping it"),
        },
        Ended::Halted(Halt::ShuttingDown) => {
            // Said at once, the market reassigns now rather than after heartbeat silence.
            let give_up = give_up_ms(&assignment, GIVE_UP_PATIENCE);
            report_failure(
                shared,
                market_peer,
                &assignment,
                JobError::ShutDown,
                give_up,
            )
            .await;
        }
        Ended::Halted(halt) => tracing::info!(order, ?halt, "stopped a halted job"),
    }
}

/// Delivers the outcome, or reports why there is none.
async fn report(
    shared: &Shared,
    market_peer: PeerId,
    assignment: &Assignment,
    result: Result<Ran, JobError>,
) {
    match result {
        Ok(ran) => deliver(shared, market_peer, assignment, ran).await,
        Err(error) => {
            let give_up = give_up_ms(assignment, DELIVERY_PATIENCE);
            report_failure(shared, market_peer, assignment, error, give_up).await;
        }
    }
}

/// Fetches the blobs, then runs the job and stores its outputs on a blocking thread,
/// until done or halted. The slot and memory are released only when the sandbox
/// returns, so the agent never runs more than it declared; a halt cancels the sandbox
/// and waits for it.
async fn execute(
    shared: &Shared,
    market_peer: PeerId,
    assignment: &Assignment,
    reservation: Reservation,
    control: &mut watch::Receiver<Option<Halt>>,
    fault: Option<FaultMode>,
) -> Ended {
    let fetched = tokio::select! {
        fetched = fetch_blobs(shared, market_peer, assignment) => fetched,
        halt = halted(control) => return Ended::Halted(halt),
    };
    let blobs = match fetched {
        Ok(blobs) => blobs,
        Err(error) => return Ended::Done(Err(error)),
    };
    let cancel = CancelToken::new();
    let mut sandbox = spawn_sandbox(
        shared,
        assignment,
        blobs,
        reservation,
        cancel.clone(),
        fault,
    );
    tokio::select! {
        joined = &mut sandbox => Ended::Done(joined.map_err(|e| JobError::Crashed(e.to_string())).and_then(|r| r)),
        halt = halted(control) => {
            cancel.cancel();
            // Within an epoch tick, unless it is still compiling the module; either way
            // the reservation is back when this returns.
            if let Err(e) = sandbox.await {
                tracing::warn!(error = %e, "a cancelled sandbox thread failed");
            }
            Ended::Halted(halt)
        }
    }
}

/// Resolves when the run is halted (at once if it already was).
async fn halted(control: &mut watch::Receiver<Option<Halt>>) -> Halt {
    match control.wait_for(Option::is_some).await {
        Ok(halt) => (*halt).unwrap_or(Halt::ShuttingDown),
        // The switch went without a word: only when the whole agent is dropped.
        Err(_) => Halt::ShuttingDown,
    }
}

/// Where the module and the named inputs are: in the local store, or, for a private
/// order's sealed inputs, opened into a directory that lives as long as this value.
struct Blobs {
    module: std::path::PathBuf,
    inputs: Vec<(String, std::path::PathBuf)>,
    _opened: Option<crate::private::OpenedInputs>,
}

/// Fetches the module and the inputs from the market (skipping those already stored);
/// a private order's sealed inputs are fetched and opened with the buyer's keys.
async fn fetch_blobs(
    shared: &Shared,
    market_peer: PeerId,
    assignment: &Assignment,
) -> Result<Blobs, JobError> {
    let job = &assignment.order.body.job;
    let module = fetch(shared, market_peer, "module", job.module).await?;
    let opened = if assignment.order.body.is_private() {
        let opened = crate::private::open_inputs(shared, assignment)
            .await
            .map_err(JobError::SealedInput)?;
        Some(opened)
    } else {
        None
    };
    let mut inputs = Vec::with_capacity(job.inputs.len());
    for input in &job.inputs {
        let plain = opened
            .iter()
            .flat_map(|o| o.files.iter())
            .find(|(hash, _)| input.sealed && *hash == input.hash);
        let path = match plain {
            Some((_, path)) => path.clone(),
            None => fetch(shared, market_peer, "input", input.hash).await?,
        };
        inputs.push((input.name.clone(), path));
    }
    Ok(Blobs {
        module,
        inputs,
        _opened: opened,
    })
}

/// Puts each fetched input where its name says (see [`agora_proto::InputRef`]): a file
/// under `/input`, a directory input unpacked there, the working tree, or stdin. The
/// executor unpacks the trees with its checks; the market refused malformed names already.
fn place_inputs(
    spec: &mut agora_exec::JobSpec,
    inputs: &[(String, std::path::PathBuf)],
) -> Result<(), JobError> {
    for (name, path) in inputs {
        let read = || {
            std::fs::read(path).map_err(|e| StoreError::Io {
                path: path.clone(),
                source: e,
            })
        };
        match agora_proto::input_kind(name) {
            Some(InputKind::File(file)) => spec.inputs.push(Input::from_file(file, path)?),
            Some(InputKind::Tree(dir)) => spec.trees.push(Input::new(dir, read()?)),
            Some(InputKind::Workdir) => spec.workdir = Some(read()?.into()),
            Some(InputKind::Stdin) => spec.stdin = Some(read()?.into()),
            None => {
                return Err(ExecError::InvalidJob(format!(
                    "input name {name:?} is not a file, directory, working-tree or stdin name"
                ))
                .into());
            }
        }
    }
    Ok(())
}

/// Runs the order on the blocking pool, holding `reservation` until the sandbox returns.
fn spawn_sandbox(
    shared: &Shared,
    assignment: &Assignment,
    blobs: Blobs,
    reservation: Reservation,
    cancel: CancelToken,
    fault: Option<FaultMode>,
) -> tokio::task::JoinHandle<Result<Ran, JobError>> {
    let provider = shared.key.account();
    let executor = shared.executor.clone();
    let containers = shared.containers.host.clone();
    let no_containers = shared.containers.support.why_not.clone();
    let store = shared.net.store().clone();
    let order = assignment.order.body.clone();
    let order_id = assignment.order_id;
    tokio::task::spawn_blocking(move || {
        let _held = reservation;
        // No point computing past the order's deadline: nobody would pay for it.
        let remaining = Duration::from_millis(order.deadline_ms.saturating_sub(now_ms()));
        let mut ran = match (order.job.workload.oci(), containers) {
            (None, _) => run_wasm(
                &*executor.get()?,
                provider,
                order_id,
                &order,
                &blobs,
                remaining,
                cancel,
            )?
            .into(),
            (Some(oci), Some(host)) => {
                let job = ContainerAssignment {
                    order_id,
                    order: &order,
                    oci,
                    image: &blobs.module,
                    inputs: &blobs.inputs,
                    remaining,
                    cancel,
                };
                let (outcome, metering) = host.run(job)?;
                Ran {
                    outcome,
                    metering: Some(metering),
                }
            }
            (Some(_), None) => {
                return Err(JobError::NoContainers(no_containers.unwrap_or_default()));
            }
        };
        match fault {
            Some(FaultMode::WrongOutput) => fault::corrupt(&mut ran.outcome, &provider, &order_id),
            // Delivered, but never there for the market to fetch.
            Some(FaultMode::Silent) => return Ok(ran),
            _ => {}
        }
        // A private order's outputs are sealed and uploaded at delivery; their plaintext
        // stays out of the store, which serves any peer.
        if !order.is_private() {
            store_outputs(&store, &ran.outcome)?;
        }
        Ok(ran)
    })
}

/// Runs a WASM order in the sandbox. Blocking.
fn run_wasm(
    executor: &WasmExecutor,
    provider: AccountId,
    order_id: Hash,
    order: &OrderRequest,
    blobs: &Blobs,
    remaining: Duration,
    cancel: CancelToken,
) -> Result<Outcome, JobError> {
    let bytes = std::fs::read(&blobs.module).map_err(|e| StoreError::Io {
        path: blobs.module.clone(),
        source: e,
    })?;
    let module = WasmModule::with_hash(bytes, order.job.module)?;
    let checkpointed = agora_exec::checkpoint::is_checkpointed(module.bytes());
    let mut spec = executor.job(order_id, module);
    spec.args = order.job.args.clone();
    spec.env = order.job.env.clone();
    place_inputs(&mut spec, &blobs.inputs)?;
    // A zero disk demand (every order signed before scratch trees existed) keeps the
    // executor's default disk limit.
    if order.demand.disk_bytes > 0 {
        spec.limits.disk_bytes = order.demand.disk_bytes;
    }
    spec.limits.fuel = order.fuel_budget;
    spec.limits.memory_bytes = order.job.memory_bytes;
    spec.limits.wall_timeout = spec
        .limits
        .wall_timeout
        .min(remaining)
        .max(Duration::from_secs(1));
    spec.cancel = cancel;
    // A module exporting `agora_step` runs under the checkpoint ABI, so its receipt can
    // commit to the step hashes a dispute bisects over.
    if checkpointed {
        let run = executor.run_checkpointed(&spec).map_err(ExecError::from)?;
        if let Some(commitment) = run.trace.receipt_commitment() {
            remember_checkpoint(provider, order_id, commitment);
        }
        Ok(run.outcome)
    } else {
        Ok(executor.run(&spec)?)
    }
}

/// The blob's path in the local store, fetched from the market first if missing.
async fn fetch(
    shared: &Shared,
    market_peer: PeerId,
    what: &'static str,
    hash: Hash,
) -> Result<std::path::PathBuf, JobError> {
    shared
        .net
        .fetch_blob(market_peer, hash)
        .await
        .map_err(|source| JobError::Fetch { what, hash, source })
}

/// Puts every output file in the store, where the market fetches it by hash. An output
/// already stored (the same file from an earlier job) is not written again: each write
/// costs an fsync.
fn store_outputs(store: &BlobStore, outcome: &Outcome) -> Result<(), StoreError> {
    for file in outcome.outputs.iter().filter(|f| !store.contains(&f.hash)) {
        let stored = store.put_bytes(&file.data)?;
        if stored != file.hash {
            return Err(StoreError::HashMismatch {
                expected: file.hash,
                actual: stored,
            });
        }
    }
    Ok(())
}

/// Sends a signed heartbeat every `heartbeat_ms` (the first at once) until cancelled.
/// If the market answers that the order is not this provider's any more, halts `run`:
/// nobody would pay for finishing it.
async fn heartbeat_loop(
    shared: Arc<Shared>,
    market_peer: PeerId,
    order_id: Hash,
    heartbeat_ms: u64,
    started: Instant,
    run: watch::Receiver<Option<Halt>>,
) {
    let every = Duration::from_millis(heartbeat_ms).clamp(HEARTBEAT_MIN, HEARTBEAT_MAX);
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let beat = Heartbeat {
            order_id,
            provider: shared.key.account(),
            elapsed_ms: started.elapsed().as_millis() as u64,
        };
        let signed = Signed::sign(&shared.key, &shared.market.chain, shared.next_nonce(), beat);
        let request = agora_core::canonical::encode(&ToMarket::Heartbeat(signed));
        match shared.net.request(market_peer, request).await {
            Ok(reply) => match agora_core::canonical::decode(&reply) {
                Ok(MarketReply::Rejected { reason }) if reason.contains(DISOWNED) => {
                    tracing::warn!(order = %order_id.short(), reason, "the market disowned a running job; stopping it");
                    shared.halt_run(&order_id, &run, Halt::Disowned);
                    return;
                }
                Ok(MarketReply::Rejected { reason }) => {
                    tracing::warn!(order = %order_id.short(), reason, "market rejected a heartbeat");
                }
                _ => {}
            },
            Err(e) => {
                tracing::debug!(order = %order_id.short(), error = %e, "heartbeat not delivered")
            }
        }
    }
}

/// Signs the receipt and sends the delivery; a private order's outcome is sealed to the
/// buyer first (the receipt's digest stays the one over the plaintext, so replicas agree).
async fn deliver(shared: &Shared, market_peer: PeerId, assignment: &Assignment, ran: Ran) {
    let Ran { outcome, metering } = ran;
    let sealed = if assignment.order.body.is_private() {
        match crate::private::seal_outcome(shared, assignment, &outcome).await {
            Ok(sealed) => Some(sealed),
            Err(reason) => {
                let give_up = give_up_ms(assignment, DELIVERY_PATIENCE);
                let error = JobError::SealOutcome(reason);
                report_failure(shared, market_peer, assignment, error, give_up).await;
                return;
            }
        }
    } else {
        None
    };
    let receipt = Receipt {
        order_id: assignment.order_id,
        provider: shared.key.account(),
        module: outcome.module_hash,
        result_digest: outcome.digest,
        fuel_used: outcome.fuel_used,
        wall_ms: outcome.wall_time.as_millis() as u64,
        checkpoint: take_checkpoint(shared.key.account(), assignment.order_id),
        metering,
    };
    let (stdout, stderr, outputs) = match sealed {
        Some(sealed) => (sealed.stdout, sealed.stderr, sealed.outputs),
        None => (
            stream(outcome.stdout),
            stream(outcome.stderr),
            outcome
                .outputs
                .iter()
                .map(|file| OutputRef {
                    name: file.name.clone(),
                    hash: file.hash,
                    size: file.size,
                })
                .collect(),
        ),
    };
    let delivery = Delivery {
        receipt: Signed::sign(
            &shared.key,
            &shared.market.chain,
            shared.next_nonce(),
            receipt,
        ),
        exit_code: outcome.exit_code,
        stdout,
        stderr,
        outputs,
        fuel_used: outcome.fuel_used,
    };
    let message = ToMarket::Deliver(Box::new(delivery));
    let order = assignment.order_id.short();
    let give_up = give_up_ms(assignment, DELIVERY_PATIENCE);
    match send(shared, market_peer, &message, give_up).await {
        Ok(()) => {
            tracing::info!(order, fuel = outcome.fuel_used.0, "delivered");
            shared
                .stats()
                .record_delivery(assignment.price, outcome.fuel_used);
        }
        Err(reason) => {
            tracing::warn!(order, reason, "delivery failed");
            shared.stats().failed += 1;
        }
    }
}

fn stream(captured: agora_exec::Captured) -> Stream {
    Stream {
        data: captured.data,
        total_bytes: captured.total_bytes,
        truncated: captured.truncated,
    }
}

/// Sends a signed `JobFailure`, retrying until `give_up_ms`.
async fn report_failure(
    shared: &Shared,
    market_peer: PeerId,
    assignment: &Assignment,
    error: JobError,
    give_up_ms: u64,
) {
    shared.stats().failed += 1;
    let (stdout_tail, stderr_tail) = error.tails();
    let failure = JobFailure {
        order_id: assignment.order_id,
        provider: shared.key.account(),
        reason: error.to_string(),
        kind: error.kind().to_owned(),
        deterministic: error.deterministic(),
        fuel_used: error.fuel_used(),
        stdout_tail,
        stderr_tail,
    };
    tracing::info!(
        order = %assignment.order_id.short(),
        reason = %failure.reason,
        deterministic = failure.deterministic,
        "job failed"
    );
    let signed = Signed::sign(
        &shared.key,
        &shared.market.chain,
        shared.next_nonce(),
        failure,
    );
    if let Err(reason) = send(shared, market_peer, &ToMarket::Failed(signed), give_up_ms).await {
        tracing::warn!(order = %assignment.order_id.short(), reason, "could not report the failure");
    }
}

/// Sends `message` to the market, retrying transport failures with capped exponential
/// backoff until `give_up_ms` (the market may be restarting; it resumes its orders and
/// still takes a delivery for one it assigned). A refusal is final.
async fn send(
    shared: &Shared,
    market_peer: PeerId,
    message: &ToMarket,
    give_up_ms: u64,
) -> Result<(), String> {
    let bytes = agora_core::canonical::encode(message);
    let mut wait = DELIVERY_BACKOFF;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let error = match shared.net.request(market_peer, bytes.clone()).await {
            Ok(reply) => {
                return match agora_core::canonical::decode::<MarketReply>(&reply) {
                    Ok(MarketReply::Ok) => Ok(()),
                    Ok(MarketReply::Rejected { reason }) => {
                        Err(format!("the market refused it: {reason}"))
                    }
                    Err(e) => Err(format!("the market's answer does not decode: {e}")),
                };
            }
            Err(NetError::Remote { reason, .. }) => {
                return Err(format!("the market refused it: {reason}"));
            }
            // This agent's own p2p node is gone: retrying cannot help.
            Err(NetError::Stopped) => return Err("the p2p node has stopped".into()),
            Err(e) => e,
        };
        if now_ms() + wait.as_millis() as u64 > give_up_ms {
            return Err(format!(
                "the market was unreachable after {attempt} attempts: {error}"
            ));
        }
        tracing::debug!(attempt, %error, "market unreachable; retrying");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(DELIVERY_BACKOFF_MAX);
    }
}

/// Until when a report about `assignment` is worth retrying: the order's deadline, and
/// at most `patience` from now.
fn give_up_ms(assignment: &Assignment, patience: Duration) -> u64 {
    let patience = now_ms() + patience.as_millis() as u64;
    assignment.order.body.deadline_ms.min(patience)
}

/// Step commitments of checkpointed runs, handed from the sandbox thread that ran the job to
/// the delivery that signs its receipt, by (provider, order).
static CHECKPOINTS: std::sync::Mutex<
    std::collections::BTreeMap<(agora_core::AccountId, Hash), agora_core::StepCommitment>,
> = std::sync::Mutex::new(std::collections::BTreeMap::new());

fn remember_checkpoint(
    provider: agora_core::AccountId,
    order_id: Hash,
    commitment: agora_core::StepCommitment,
) {
    let mut map = CHECKPOINTS.lock().unwrap_or_else(|p| p.into_inner());
    map.insert((provider, order_id), commitment);
}

fn take_checkpoint(
    provider: agora_core::AccountId,
    order_id: Hash,
) -> Option<agora_core::StepCommitment> {
    let mut map = CHECKPOINTS.lock().unwrap_or_else(|p| p.into_inner());
    map.remove(&(provider, order_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_jobs_own_faults_are_deterministic() {
        let own = [
            ExecError::OutOfFuel {
                fuel_used: Fuel(10),
                partial: None,
            },
            ExecError::Trap {
                code: "unreachable".into(),
                detail: None,
                fuel_used: Fuel(3),
                partial: None,
            },
            ExecError::StartRefused {
                limit: "memory_bytes",
                what: "too big".into(),
                advice: "shrink it",
            },
            ExecError::MalformedModule {
                reason: "bad magic".into(),
            },
            ExecError::MissingStart,
        ];
        for error in own {
            assert!(JobError::Exec(error).deterministic());
        }
        let not_own = [
            JobError::Exec(ExecError::Timeout {
                limit: Duration::from_secs(1),
                fuel_used: Fuel(5),
                partial: None,
            }),
            JobError::Exec(ExecError::ModuleHashMismatch {
                expected: Hash::of(b"a"),
                actual: Hash::of(b"b"),
            }),
            JobError::Exec(ExecError::Engine {
                context: "compiling",
                message: "oops".into(),
            }),
            JobError::Crashed("panic".into()),
            JobError::ShutDown,
            JobError::Exec(ExecError::Cancelled { fuel_used: Fuel(1) }),
            JobError::Store(StoreError::NotFound(Hash::of(b"x"))),
        ];
        for error in not_own {
            assert!(!error.deterministic(), "{error}");
        }
    }

    #[test]
    fn failures_report_the_fuel_burnt() {
        let trap = JobError::Exec(ExecError::Trap {
            code: "unreachable".into(),
            detail: None,
            fuel_used: Fuel(7),
            partial: None,
        });
        assert_eq!(trap.fuel_used(), Fuel(7));
        assert_eq!(JobError::Crashed("x".into()).fuel_used(), Fuel(0));
    }

    #[test]
    fn failures_report_bounded_tails_of_what_the_job_wrote() {
        let noisy = "x".repeat(3 * FAILURE_TAIL_BYTES) + "the end\n";
        let partial = agora_exec::PartialRun {
            stdout: agora_exec::Captured::new("stdout", b"partial result\n".to_vec(), 15),
            stderr: agora_exec::Captured::new(
                "stderr",
                noisy.clone().into_bytes(),
                noisy.len() as u64,
            ),
            fuel_used: Fuel(9),
        };
        let memory = JobError::Exec(
            ExecError::MemoryLimit {
                what: "memory",
                requested: 2,
                limit: 1,
                partial: None,
            }
            .with_partial(partial),
        );
        // The fuel of a failure without its own count comes from what ran.
        assert_eq!(memory.fuel_used(), Fuel(9));
        let (stdout, stderr) = memory.tails();
        assert_eq!(stdout, "partial result\n");
        assert_eq!(stderr.len(), FAILURE_TAIL_BYTES);
        assert!(stderr.ends_with("the end\n"), "{stderr}");
        assert_eq!(JobError::ShutDown.tails(), (String::new(), String::new()));
    }
}
