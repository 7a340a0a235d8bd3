//! `agora job`: the buyer's commands — quote, run, submit, status, result, list, cancel.
//!
//! Everything goes through `agora_client` over the market node's HTTP API. `job run`
//! takes a WASI module or a job spec file (`docs/job-spec.md`); a spec with `[[tasks]]`
//! becomes one order per task, run concurrently, outputs gathered under
//! `OUTPUT_DIR/task-NNNN/`. Progress goes to stderr, results to stdout (JSON with
//! `--json`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use agora_client::buyer::now_ms;
use agora_client::progress::{bill_lines, event_line, short_account};
use agora_client::spec::{
    DEFAULT_MAX_IMAGE_BYTES, JobFile, parse_duration_ms, parse_price, parse_size,
};
use agora_client::{Buyer, DEFAULT_MARKET_URL, JobRequest, JobSummary, MarketClient, OrderFilter};
use agora_core::{Fuel, Hash};
use agora_ledger::VoucherTerms;
use agora_proto::api::Submitted;
use agora_proto::{OciJob, OrderState, STDIN_INPUT, WORKDIR_INPUT, Workload};
use anyhow::{Context, bail};
use serde_json::json;

use crate::cmd::wallet::{WalletFile, load_wallet};

/// The largest `--max-cu`: ten million CU (about 115 core-days), far below where the fuel
/// count (u64) would overflow.
const MAX_CU: u64 = 10_000_000;

/// Exit code of a job that settled but exited non-zero.
const EXIT_JOB_FAILED: u8 = 1;
/// Exit code of an order that was refunded (no match, failure, deadline, cancel).
const EXIT_REFUNDED: u8 = 2;

/// Arguments of `agora job`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: JobCommand,
}

#[derive(clap::Subcommand)]
enum JobCommand {
    /// Upload, escrow, submit, follow and download a job (or every task of a spec file).
    /// Exit code: 0 settled with exit 0, 1 the job exited non-zero, 2 refunded.
    Run(RunArgs),
    /// Submit a job (or every task of a spec file) and print the order ids; do not wait.
    Submit(SubmitArgs),
    /// What a job would cost, before any money moves: qualifying providers, expected
    /// price and total with retries, verification overhead, probability of success, the
    /// reference cloud's cost, or why nothing matches. Same arguments as `job run`;
    /// nothing is uploaded, escrowed or submitted.
    Quote(QuoteArgs),
    /// Show an order: state, provider, bill and history.
    Status(IdArgs),
    /// Show a settled order's result; download its output files with --output-dir.
    Result(ResultArgs),
    /// List orders, newest first (this wallet's unless --all).
    List(ListArgs),
    /// Cancel an order and refund its escrow.
    Cancel(IdArgs),
}

/// Where the market is, who signs, and how to print.
#[derive(clap::Args)]
struct Conn {
    /// The market node's HTTP URL.
    #[arg(long, env = "AGORA_MARKET", default_value = DEFAULT_MARKET_URL)]
    market: String,
    #[command(flatten)]
    wallet: WalletFile,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// `--verify`'s long help: the policies and the stake rule, and the default.
const VERIFY_LONG_HELP: &str = concat!(
    "How the result is checked before the provider is paid [default: adaptive].\n\n",
    "Verification policy: `none` accepts the provider's signed receipt (reputation only); ",
    "`replicate:N:Q` runs the job on N distinct providers, one after another, and accepts the ",
    "result Q of them agree on (Q > N/2; disagreeing providers are slashed; without a quorum ",
    "more providers are added, then the buyer is refunded; the escrow covers N runs); ",
    "`spot:P` runs once and has an independent provider re-run it with probability P (e.g. ",
    "spot:0.2), drawn from the market's signature over the receipt, so nobody can predict it; ",
    "`adaptive` (adaptive:FLOOR:FULL_UNTIL, default adaptive:0.05:10) re-runs every job of a ",
    "provider with fewer than FULL_UNTIL consecutive verified results, then audits with ",
    "probability max(1/count, FLOOR); `challenge:WINDOW` (e.g. challenge:30s) holds the result ",
    "for WINDOW, in which anyone may challenge it with a bond. Under spot and adaptive you pay ",
    "one run; the market pays its audits.\n\n",
    "Stake rule: a provider is offered the order only if its stake S >= C/p - R, with R the ",
    "job's worst-case pay, C its cost (taken as R) and p the audit probability, so cheating ",
    "never pays."
);

/// What to run and the budget; every flag may also be set in a spec file.
#[derive(clap::Args)]
struct JobArgs {
    /// A WASI module (`.wasm`) or a job spec file (`.toml`, see docs/job-spec.md).
    #[arg(required_unless_present = "image", conflicts_with = "image")]
    target: Option<PathBuf>,
    /// Run a container instead: an OCI image archive (`oci-archive` or `docker save`
    /// tarball) whose Entrypoint and Cmd run with /input and /output as for WASM jobs;
    /// job arguments after `--` replace the image's Cmd (docs/containers.md).
    #[arg(long, value_name = "ARCHIVE")]
    image: Option<PathBuf>,
    /// Replace the image's Entrypoint with this program (container jobs).
    #[arg(long, value_name = "PROGRAM")]
    entrypoint: Option<String>,
    /// Replace the image's working directory (container jobs; an absolute path).
    #[arg(long, value_name = "DIR")]
    image_workdir: Option<String>,
    /// Ask for network access (container jobs); providers whose policy forbids it run
    /// the job without one.
    #[arg(long)]
    network: bool,
    /// Declare the image non-deterministic: its results cannot be checked by re-running,
    /// so the order is verified `none` (reputation only).
    #[arg(long)]
    nondeterministic: bool,
    /// The largest unpacked image allowed, e.g. "2 GiB" [default: 4 GiB].
    #[arg(long, value_parser = parse_size)]
    max_image_size: Option<u64>,
    /// CPU cores the job needs (a container's CPU quota), e.g. 2 or 0.5 [default: 1].
    #[arg(long)]
    cpus: Option<f64>,
    /// GPUs the job needs, all of one model.
    #[arg(long)]
    gpus: Option<u32>,
    /// The GPU model (the market class name, e.g. NVIDIA-H200) [default: any].
    #[arg(long, requires = "gpus")]
    gpu_model: Option<String>,
    /// The least memory each GPU must have, e.g. "40 GiB".
    #[arg(long, value_parser = parse_size, requires = "gpus")]
    gpu_memory: Option<u64>,
    /// An input visible to the job read-only as /input/NAME (repeatable): a file, a
    /// directory (sent as one deterministic tar blob), or `tar:ARCHIVE`.
    #[arg(long = "input", value_name = "NAME=PATH")]
    inputs: Vec<String>,
    /// Seed the job's writable scratch root `/` (relative paths, /tmp) with this
    /// directory's tree, or `tar:ARCHIVE`.
    #[arg(long, value_name = "DIR|tar:ARCHIVE")]
    workdir: Option<String>,
    /// A file whose bytes are the job's stdin (default: empty stdin).
    #[arg(long, value_name = "FILE")]
    stdin: Option<PathBuf>,
    /// An environment variable for the job (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Most paid per compute unit, in AGR ("0.02", "0.02 AGR") or base units ("20000000u").
    #[arg(long, value_parser = parse_price)]
    max_price: Option<agora_core::Price>,
    /// Fuel budget in compute units (1 CU = 1e9 fuel); escrow = max price × this.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_CU))]
    max_cu: Option<u64>,
    /// Distinct providers to run it on (replicate:N:Q sets N; leave this at 1 or N).
    #[arg(long)]
    replicas: Option<u32>,
    /// How the result is checked before the provider is paid: none, replicate:N:Q,
    /// spot:P, adaptive (default), challenge:WINDOW.
    #[arg(long, value_name = "POLICY", long_help = VERIFY_LONG_HELP)]
    verify: Option<agora_proto::VerifyPolicy>,
    /// How the order is matched: instant (default), sealed:WINDOW[:first|uniform] (a
    /// sealed-bid auction, e.g. sealed:5s), or dutch:FROM..TO/DURATION[xSTEPS] (a clock
    /// rising from FROM to TO base units per CU in STEPS steps, default 10, e.g.
    /// dutch:10..200/10s); see docs/auctions.md.
    #[arg(long, value_name = "TERMS")]
    auction: Option<agora_market::MatchTerms>,
    /// Only providers whose region attribute equals this.
    #[arg(long)]
    region: Option<String>,
    /// The job's memory limit, e.g. "256 MiB".
    #[arg(long, value_parser = parse_size)]
    memory: Option<u64>,
    /// The job's scratch-disk limit (its /, /tmp and working tree), e.g. "1 GiB"; also what
    /// a provider must have free [default: the provider's, 256 MiB].
    #[arg(long, value_parser = parse_size)]
    disk_limit: Option<u64>,
    /// Time allowed from submission to settlement, e.g. "90s"; refunded after it.
    #[arg(long, value_parser = parse_duration_ms)]
    deadline: Option<u64>,
    /// A label shown in listings.
    #[arg(long)]
    label: Option<String>,
    /// Arguments for the job, after `--`.
    #[arg(last = true)]
    args: Vec<String>,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Where outputs go: DIR/ORDER/ for one job, DIR/task-NNNN/ per task of a spec.
    #[arg(long, default_value = "agora-out")]
    output_dir: PathBuf,
    /// Seal the inputs: the market stores ciphertext, each assigned provider gets the
    /// keys from this client once assigned (keep it running), and the outputs come back
    /// sealed to you (docs/privacy.md).
    #[arg(long)]
    private: bool,
    /// Pay with units of this voucher series (from `agora voucher list`) instead of the
    /// balance: each order's price is capped at the voucher's locked price and redeems
    /// the CU its worst case needs; what it does not use comes back to the balance
    /// (docs/vouchers.md).
    #[arg(long, value_name = "SERIES", conflicts_with = "private")]
    voucher: Option<Hash>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
struct SubmitArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Pay with units of this voucher series instead of the balance, as `agora job run
    /// --voucher` does.
    #[arg(long, value_name = "SERIES")]
    voucher: Option<Hash>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
struct QuoteArgs {
    #[command(flatten)]
    job: JobArgs,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
struct IdArgs {
    /// The order id (hex).
    id: String,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
struct ResultArgs {
    /// The order id (hex).
    id: String,
    /// Download the output files into this directory.
    #[arg(long)]
    output_dir: Option<PathBuf>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
struct ListArgs {
    /// Only orders in this state (escrowed, matched, running, verifying, settled, refunded).
    #[arg(long)]
    state: Option<String>,
    /// Only tasks of this job name.
    #[arg(long)]
    job: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Every buyer's orders, not only this wallet's.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    conn: Conn,
}

/// Runs `agora job`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match args.command {
            JobCommand::Run(a) => run_jobs(a).await,
            JobCommand::Submit(a) => submit(a).await,
            JobCommand::Quote(a) => quote(a).await,
            JobCommand::Status(a) => status(a).await,
            JobCommand::Result(a) => result(a).await,
            JobCommand::List(a) => list(a).await,
            JobCommand::Cancel(a) => cancel(a).await,
        }
    })
}

impl Conn {
    async fn buyer(&self) -> anyhow::Result<Buyer> {
        let key = load_wallet(&self.wallet.path()?)?;
        Ok(Buyer::connect(key, &self.market).await?)
    }

    fn client(&self) -> anyhow::Result<MarketClient> {
        Ok(MarketClient::new(&self.market)?)
    }

    /// Progress lines go to stderr unless JSON was asked for and nobody watches.
    fn show_progress(&self) -> bool {
        !self.json || std::io::stderr().is_terminal()
    }
}

/// The orders `args` describe: one for a module, one per task for a spec file, and the
/// temporary directory holding the tar blobs packed from directory inputs and working
/// trees (keep it until the orders are submitted).
fn requests(args: &JobArgs) -> anyhow::Result<(String, usize, Vec<JobRequest>, tempfile::TempDir)> {
    let target = args
        .target
        .as_ref()
        .or(args.image.as_ref())
        .context("name a WASI module, a job spec file or --image ARCHIVE")?;
    let is_spec = target.extension().is_some_and(|e| e == "toml");
    let (name, concurrency, mut requests) = if is_spec {
        let files = args.workdir.is_some() || args.stdin.is_some();
        if !args.inputs.is_empty() || !args.args.is_empty() || !args.env.is_empty() || files {
            bail!(
                "--input, --workdir, --stdin, --env and job arguments go into the spec file when \
                 running {} (the other flags override the spec for every task)",
                target.display()
            );
        }
        let file = JobFile::load(target)?;
        (file.name, file.concurrency, file.tasks)
    } else {
        let mut request = JobRequest::new(target);
        if args.image.is_some() {
            request.workload = Workload::Oci(OciJob {
                entrypoint: None,
                working_dir: None,
                network: false,
                deterministic: true,
                max_unpacked_bytes: DEFAULT_MAX_IMAGE_BYTES,
            });
        }
        request.inputs = args
            .inputs
            .iter()
            .map(|i| split_pair(i, "--input", "NAME=PATH").map(|(n, p)| (n, PathBuf::from(p))))
            .collect::<anyhow::Result<_>>()?;
        request.env = args
            .env
            .iter()
            .map(|e| split_pair(e, "--env", "KEY=VALUE"))
            .collect::<anyhow::Result<_>>()?;
        if let Some(workdir) = &args.workdir {
            request
                .inputs
                .push((WORKDIR_INPUT.into(), PathBuf::from(workdir)));
        }
        if let Some(stdin) = &args.stdin {
            request.inputs.push((STDIN_INPUT.into(), stdin.clone()));
        }
        request.args = args.args.clone();
        (request.label.clone(), 1, vec![request])
    };
    let packed = tempfile::Builder::new()
        .prefix("agora-trees-")
        .tempdir()
        .context("creating a directory for packed trees")?;
    for request in &mut requests {
        apply_overrides(args, request);
        apply_container_overrides(args, request)?;
        pack_trees(request, packed.path())?;
        check_files(request)?;
    }
    Ok((name, concurrency, requests, packed))
}

/// Packs each directory input (a directory or `tar:ARCHIVE`) and the working tree into
/// one deterministic tar file under `dir`, and names the input for what it is (`NAME/`
/// for a directory input, see [`agora_proto::InputRef`]). Identical trees give identical
/// blobs, which the market stores once.
fn pack_trees(request: &mut JobRequest, dir: &Path) -> anyhow::Result<()> {
    for (index, (name, path)) in request.inputs.iter_mut().enumerate() {
        let source = path.to_string_lossy().into_owned();
        let is_workdir = name == WORKDIR_INPUT;
        if !is_workdir && !source.starts_with("tar:") && !path.is_dir() {
            continue;
        }
        let what = if is_workdir {
            "the working tree".to_owned()
        } else {
            format!("input {name}")
        };
        let bytes = crate::cmd::exec::read_tree(&source)
            .with_context(|| format!("{}: {what}", request.label))?;
        let packed = dir.join(format!("tree-{}-{index}.tar", Hash::of(&bytes)));
        std::fs::write(&packed, &bytes).with_context(|| format!("writing {}", packed.display()))?;
        if !is_workdir {
            name.push('/');
        }
        *path = packed;
    }
    Ok(())
}

/// Refuses a job whose module or an input is not a readable file, or whose module every
/// provider would refuse (a forbidden wasm feature, a non-WASI import, no `_start`), before
/// anything is submitted or escrowed, so a typo in the tenth task does not leave nine orders
/// running unattended and a module that cannot run costs nothing.
fn check_files(request: &JobRequest) -> anyhow::Result<()> {
    let module = std::iter::once(("module", &request.module));
    let inputs = request.inputs.iter().map(|(_, path)| ("input", path));
    for (what, path) in module.chain(inputs) {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("{}: the {what} {}", request.label, path.display()))?;
        if !meta.is_file() {
            bail!(
                "{}: the {what} {} is not a file",
                request.label,
                path.display()
            );
        }
    }
    if request.workload != Workload::Wasm {
        // The provider that unpacks the image checks it; its typed failure refunds.
        return Ok(());
    }
    let module = std::fs::read(&request.module).with_context(|| {
        format!(
            "{}: reading the module {}",
            request.label,
            request.module.display()
        )
    })?;
    agora_exec::precheck::check(&module).with_context(|| {
        format!(
            "{}: the module {} would be refused by every provider (nothing was submitted)",
            request.label,
            request.module.display()
        )
    })?;
    Ok(())
}

fn apply_overrides(args: &JobArgs, request: &mut JobRequest) {
    if let Some(price) = args.max_price {
        request.max_price = price;
    }
    if let Some(cu) = args.max_cu {
        request.fuel_budget = Fuel::compute_units(cu);
    }
    if let Some(replicas) = args.replicas {
        request.replicas = replicas;
    }
    if let Some(verify) = args.verify {
        request.verify = verify;
    }
    if let Some(auction) = args.auction {
        request.auction = auction;
    }
    if let Some(region) = &args.region {
        request.region = Some(region.clone());
    }
    if let Some(memory) = args.memory {
        request.memory_bytes = memory;
    }
    if let Some(disk) = args.disk_limit {
        request.disk_bytes = disk;
    }
    if let Some(deadline) = args.deadline {
        request.deadline_in_ms = deadline;
    }
    if let Some(label) = &args.label {
        request.label = label.clone();
    }
}

/// The container and GPU flags, over what a spec file says.
fn apply_container_overrides(args: &JobArgs, request: &mut JobRequest) -> anyhow::Result<()> {
    if let Some(cpus) = args.cpus {
        if !(cpus > 0.0 && cpus <= 1024.0) {
            bail!("--cpus {cpus}: expected a number of cores between 0 and 1024");
        }
        request.cpu_millis = ((cpus * 1000.0).round() as u64).max(1);
    }
    if let Some(count) = args.gpus {
        request.gpu = (count > 0).then(|| agora_market::GpuDemand {
            model: args.gpu_model.clone(),
            min_vram_bytes: args.gpu_memory.unwrap_or(0),
            count,
        });
    }
    let container_flags = args.entrypoint.is_some()
        || args.image_workdir.is_some()
        || args.network
        || args.nondeterministic
        || args.max_image_size.is_some();
    let Workload::Oci(oci) = &mut request.workload else {
        if container_flags {
            bail!(
                "--entrypoint, --image-workdir, --network, --nondeterministic and --max-image-size \
                 apply to container jobs: name the image with --image ARCHIVE (or `image =` in the spec)"
            );
        }
        return Ok(());
    };
    if let Some(program) = &args.entrypoint {
        oci.entrypoint = Some(vec![program.clone()]);
    }
    if let Some(dir) = &args.image_workdir {
        oci.working_dir = Some(dir.clone());
    }
    oci.network |= args.network;
    if args.nondeterministic {
        oci.deterministic = false;
        if args.verify.is_none() {
            request.verify = agora_proto::VerifyPolicy::None;
        }
    }
    if let Some(size) = args.max_image_size {
        oci.max_unpacked_bytes = size;
    }
    Ok(())
}

fn split_pair(text: &str, flag: &str, form: &str) -> anyhow::Result<(String, String)> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => bail!("{flag} {text:?}: expected {form}"),
    }
}

fn parse_id(text: &str) -> anyhow::Result<Hash> {
    text.trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("{text:?} is not an order id (64 hex digits): {e}"))
}

/// Where task `index`'s outputs go.
fn task_dir(out: &Path, index: u32) -> PathBuf {
    out.join(format!("task-{index:04}"))
}

async fn run_jobs(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (name, concurrency, requests, _packed) = requests(&args.job)?;
    let buyer = Arc::new(args.conn.buyer().await?);
    let progress = args.conn.show_progress();
    let single = requests.len() == 1 && requests[0].task.is_none();
    let voucher = held_voucher(&buyer, args.voucher.as_ref())
        .await?
        .map(Arc::new);
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut running = tokio::task::JoinSet::new();
    for request in requests {
        let (buyer, limit, out) = (buyer.clone(), limit.clone(), args.output_dir.clone());
        let private = args.private;
        let voucher = voucher.clone();
        running.spawn(async move {
            let _slot = limit.acquire_owned().await;
            if private {
                run_private(&buyer, request, &out, progress).await
            } else {
                run_one(&buyer, request, voucher.as_deref(), &out, progress).await
            }
        });
    }
    let mut summaries = Vec::new();
    while let Some(joined) = running.join_next().await {
        summaries.push(joined.context("a task panicked")??);
    }
    summaries.sort_by_key(|s| s.task.as_ref().map(|t| t.index));
    print_run(&args.conn, &name, single, &summaries)?;
    Ok(ExitCode::from(exit_code(&summaries)))
}

/// Runs one order to the end, paid from the balance or with `voucher`'s units, and
/// downloads its outputs.
async fn run_one(
    buyer: &Buyer,
    request: JobRequest,
    voucher: Option<&VoucherTerms>,
    out: &Path,
    progress: bool,
) -> anyhow::Result<JobSummary> {
    let tag = match &request.task {
        Some(task) => format!("[task-{:04}] ", task.index),
        None => String::new(),
    };
    let started = now_ms();
    let (submitted, redeemed) = submit_one(buyer, &request, voucher)
        .await
        .with_context(|| format!("submitting {}", request.label))?;
    let id = submitted.order_id;
    if progress {
        match redeemed {
            Some(cu) => eprintln!("{tag}order {id}, paid with {cu} CU of the voucher"),
            None => eprintln!("{tag}order {id}"),
        }
    }
    let view = buyer
        .wait(&id, |event| {
            if progress {
                eprintln!("{tag}{}", event_line(event, started));
            }
        })
        .await?;
    let dir = match &request.task {
        Some(task) => task_dir(out, task.index),
        None => out.join(id.short()),
    };
    let mut outputs = Vec::new();
    if let (OrderState::Settled, Some(result)) = (view.state, &view.result) {
        outputs = buyer.download_outputs(result, &dir).await?;
        if !result.outputs.iter().any(|o| o.name == "stdout.txt") {
            let path = dir.join("stdout.txt");
            tokio::fs::write(&path, &result.stdout)
                .await
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(JobSummary::from_view(&view, outputs))
}

/// The terms of voucher `series` as this wallet holds it, or why it cannot pay: checked
/// before anything is uploaded.
async fn held_voucher(
    buyer: &Buyer,
    series: Option<&Hash>,
) -> anyhow::Result<Option<VoucherTerms>> {
    match series {
        Some(series) => {
            let terms =
                super::voucher::held_terms(buyer.client(), &buyer.account(), series).await?;
            Ok(Some(terms))
        }
        None => Ok(None),
    }
}

/// Uploads and submits `request`, paid from the balance or by redeeming `voucher` units;
/// returns the submission and the CU redeemed.
async fn submit_one(
    buyer: &Buyer,
    request: &JobRequest,
    voucher: Option<&VoucherTerms>,
) -> Result<(Submitted, Option<u64>), agora_client::ClientError> {
    let Some(terms) = voucher else {
        return Ok((buyer.submit_job(request).await?, None));
    };
    let job = buyer.upload_job(request).await?;
    let body = request.order_request(job, now_ms())?;
    let (submitted, cu) = buyer.submit_with_voucher(body, terms).await?;
    Ok((submitted, Some(cu)))
}

/// Runs one private order to the end (`--private`): its outputs are opened locally.
async fn run_private(
    buyer: &Buyer,
    request: JobRequest,
    out: &Path,
    progress: bool,
) -> anyhow::Result<JobSummary> {
    let tag = match &request.task {
        Some(task) => format!("[task-{:04}] ", task.index),
        None => String::new(),
    };
    let started = now_ms();
    let mut announced = false;
    let summary = buyer
        .run_private_job(
            &request,
            |id| match &request.task {
                Some(task) => task_dir(out, task.index),
                None => out.join(id.short()),
            },
            |event| {
                if progress {
                    if !announced {
                        eprintln!("{tag}order {} (private)", event.order_id);
                        announced = true;
                    }
                    eprintln!("{tag}{}", event_line(event, started));
                }
            },
        )
        .await
        .with_context(|| format!("running {} as a private order", request.label))?;
    let dir = match &request.task {
        Some(task) => task_dir(out, task.index),
        None => out.join(summary.order_id.short()),
    };
    if let (OrderState::Settled, Some(stdout)) = (summary.state, &summary.stdout)
        && !summary.outputs.iter().any(|o| o.ends_with("stdout.txt"))
    {
        let path = dir.join("stdout.txt");
        tokio::fs::write(&path, stdout)
            .await
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(summary)
}

fn exit_code(summaries: &[JobSummary]) -> u8 {
    if summaries.iter().any(|s| s.state != OrderState::Settled) {
        EXIT_REFUNDED
    } else if summaries.iter().any(|s| s.exit_code != Some(0)) {
        EXIT_JOB_FAILED
    } else {
        0
    }
}

fn print_run(
    conn: &Conn,
    name: &str,
    single: bool,
    summaries: &[JobSummary],
) -> anyhow::Result<()> {
    let settled = summaries
        .iter()
        .filter(|s| s.state == OrderState::Settled)
        .count();
    let cost: u64 = summaries.iter().map(|s| s.cost.0).sum();
    let refunded: u64 = summaries.iter().map(|s| s.refunded.0).sum();
    if conn.json {
        let value = if single {
            serde_json::to_value(&summaries[0])?
        } else {
            json!({
                "job": name,
                "tasks": summaries,
                "settled": settled,
                "refunded": summaries.len() - settled,
                "cost": cost,
                "refund": refunded,
            })
        };
        outln!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    if single {
        let summary = &summaries[0];
        if let Some(stdout) = summary.stdout.as_deref().filter(|s| !s.is_empty()) {
            out!("{stdout}");
            if !stdout.ends_with('\n') {
                outln!();
            }
        }
        for line in bill_lines(summary) {
            outln!("{line}");
        }
        return Ok(());
    }
    outln!("job {name}: {settled}/{} tasks settled", summaries.len());
    for s in summaries {
        let index = s.task.as_ref().map_or(0, |t| t.index);
        let who = s.provider.as_ref().map(short_account).unwrap_or_default();
        let detail = match (&s.state, &s.refund_reason) {
            // One line per task: the job's output tails that may follow the reason are
            // for `agora job status ORDER`.
            (OrderState::Refunded, Some(reason)) => reason.lines().next().unwrap_or("").to_owned(),
            _ => format!(
                "exit {} {:.4} CU {} ms",
                s.exit_code.map_or("-".into(), |c| c.to_string()),
                s.compute_units.unwrap_or(0.0),
                s.latency_ms.unwrap_or(0)
            ),
        };
        outln!("  task-{index:04}  {:<8}  {who:<14}  {detail}", s.state);
    }
    outln!(
        "cost {}   refunded {}",
        agora_core::Amount(cost),
        agora_core::Amount(refunded)
    );
    Ok(())
}

async fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let (_, _, requests, _packed) = requests(&args.job)?;
    let buyer = args.conn.buyer().await?;
    let voucher = held_voucher(&buyer, args.voucher.as_ref()).await?;
    let mut submitted = Vec::with_capacity(requests.len());
    for request in &requests {
        let (answer, _) = submit_one(&buyer, request, voucher.as_ref())
            .await
            .with_context(|| format!("submitting {}", request.label))?;
        if !args.conn.json {
            outln!("{}", answer.order_id);
        }
        submitted.push(answer);
    }
    if args.conn.json {
        outln!("{}", serde_json::to_string_pretty(&submitted)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit code of a quote that found no qualifying provider.
const EXIT_NO_MATCH: u8 = 2;

async fn quote(args: QuoteArgs) -> anyhow::Result<ExitCode> {
    let (_, _, requests, _packed) = requests(&args.job)?;
    let client = args.conn.client()?;
    let mut quotes = Vec::with_capacity(requests.len());
    for request in &requests {
        let job = local_job_spec(request).await?;
        let body = request
            .order_request(job, now_ms())
            .with_context(|| format!("building the order for {}", request.label))?;
        let quote = client
            .quote(&body)
            .await
            .with_context(|| format!("quoting {}", request.label))?;
        quotes.push((request.label.clone(), quote));
    }
    if args.conn.json {
        let views: Vec<_> = quotes.iter().map(|(_, q)| q).collect();
        match views.as_slice() {
            [one] => outln!("{}", serde_json::to_string_pretty(one)?),
            many => outln!("{}", serde_json::to_string_pretty(many)?),
        }
    } else {
        for (label, quote) in &quotes {
            if quotes.len() > 1 {
                outln!("== {label}");
            }
            print_quote(quote);
        }
    }
    let matched = quotes.iter().all(|(_, q)| q.no_match.is_none());
    Ok(ExitCode::from(if matched { 0 } else { EXIT_NO_MATCH }))
}

/// The job `request` makes, its files hashed here but not uploaded: a quote needs their
/// hashes and sizes only.
async fn local_job_spec(request: &JobRequest) -> anyhow::Result<agora_proto::JobSpec> {
    let (module, module_size) = agora_client::buyer::hash_file(&request.module).await?;
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for (name, path) in &request.inputs {
        let (hash, size) = agora_client::buyer::hash_file(path).await?;
        inputs.push(agora_proto::InputRef {
            name: name.clone(),
            hash,
            size,
            sealed: false,
        });
    }
    Ok(agora_proto::JobSpec {
        module,
        module_size,
        inputs,
        args: request.args.clone(),
        env: request.env.clone(),
        memory_bytes: request.memory_bytes,
        workload: request.workload.clone(),
    })
}

fn print_quote(view: &agora_proto::quote::QuoteView) {
    let q = &view.quote;
    let ppm = |v: u64| v as f64 / 1e6;
    outln!(
        "compute     {} CU (the whole fuel budget), policy {}",
        q.compute_units,
        view.policy
    );
    if let Some(why) = &view.no_match {
        outln!("no match    {why}");
        outln!(
            "escrow      {} would be locked, then refunded",
            q.worst_case
        );
        return;
    }
    outln!(
        "candidates  {} qualifying provider(s)",
        view.candidates.len()
    );
    for c in view.candidates.iter().take(5) {
        outln!(
            "  {}  {}  effective {}  success {:.1}%  stake {}",
            short_account(&c.provider),
            c.price,
            c.effective,
            ppm(u64::from(c.success_ppm)) * 100.0,
            c.stake
        );
    }
    if let (Some(price), Some(cost)) = (q.expected_price, q.expected_cost) {
        outln!("price       {price} expected; {cost} if the first choice(s) deliver");
    }
    outln!(
        "verify      {:.2}× runs ({})",
        ppm(q.verification_runs_ppm),
        view.verification_note
    );
    outln!(
        "success     {:.1}% within the market's attempts; {:.2} attempts expected",
        ppm(u64::from(q.success_ppm)) * 100.0,
        ppm(q.expected_attempts_ppm)
    );
    match q.expected_total_if_settled {
        Some(total) => outln!(
            "total       {total} expected if it settles ({} counting a refund as zero)",
            q.expected_total
        ),
        None => outln!("total       the order is not expected to settle"),
    }
    outln!("escrow      {} locked at most", q.worst_case);
    if let Some(cloud) = q.reference_cost {
        outln!(
            "cloud       {cloud} for one run at the reference price {}",
            view.reference_price
        );
    }
}

async fn status(args: IdArgs) -> anyhow::Result<ExitCode> {
    let id = parse_id(&args.id)?;
    let view = args.conn.client()?.order(&id).await?;
    if args.conn.json {
        outln!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(ExitCode::SUCCESS);
    }
    let summary = JobSummary::from_view(&view, Vec::new());
    for line in bill_lines(&summary) {
        outln!("{line}");
    }
    if !view.label.is_empty() {
        outln!("label     {}", view.label);
    }
    outln!(
        "escrow    {}   max price {} per CU",
        view.escrow,
        agora_core::Amount(view.max_price.0)
    );
    outln!("history");
    for event in &view.events {
        outln!("  {}", event_line(event, view.created_ms));
    }
    Ok(ExitCode::SUCCESS)
}

async fn result(args: ResultArgs) -> anyhow::Result<ExitCode> {
    let id = parse_id(&args.id)?;
    let client = args.conn.client()?;
    let result = client.result(&id).await?;
    let mut paths = Vec::new();
    // A private order's stdout, opened with the wallet's key (docs/privacy.md).
    let mut opened_stdout = None;
    if let Some(dir) = &args.output_dir {
        let buyer = Buyer::new(
            load_wallet(&args.conn.wallet.path()?)
                .unwrap_or_else(|_| agora_core::Keypair::from_seed("reader")),
            client.clone(),
            client.info().await?,
        );
        if buyer.is_sealed_result(&result).await? {
            let opened = buyer.open_result(id, &result, dir).await?;
            opened_stdout = Some(String::from_utf8_lossy(&opened.stdout).into_owned());
            paths = opened.outputs;
        } else {
            paths = buyer.download_outputs(&result, dir).await?;
        }
    }
    if args.conn.json {
        let mut value = json!({ "result": result, "downloaded": paths });
        if let Some(stdout) = &opened_stdout {
            value["opened_stdout"] = json!(stdout);
        }
        outln!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    out!("{}", opened_stdout.as_deref().unwrap_or(&result.stdout));
    outln!(
        "exit code {}   {:.6} CU   provider {}",
        result.exit_code,
        result.fuel_used.as_compute_units_f64(),
        result.provider
    );
    for output in &result.outputs {
        outln!(
            "output    {}  {} bytes  {}",
            output.name,
            output.size,
            output.hash
        );
    }
    for path in &paths {
        outln!("saved     {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let state = args
        .state
        .as_deref()
        .map(|s| serde_json::from_value::<OrderState>(json!(s)))
        .transpose()
        .map_err(|_| {
            anyhow::anyhow!(
                "unknown state; use escrowed, matched, running, verifying, settled or refunded"
            )
        })?;
    let buyer = if args.all {
        None
    } else {
        Some(load_wallet(&args.conn.wallet.path()?)?.account())
    };
    let filter = OrderFilter {
        buyer,
        state,
        job: args.job.clone(),
        limit: Some(args.limit),
        offset: None,
    };
    let views = args.conn.client()?.orders(&filter).await?;
    if args.conn.json {
        outln!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(ExitCode::SUCCESS);
    }
    if views.is_empty() {
        outln!("no orders");
    }
    for view in &views {
        let who = view
            .provider
            .as_ref()
            .map(short_account)
            .unwrap_or_default();
        let latency = view
            .latency_ms
            .map(|l| format!("{l} ms"))
            .unwrap_or_default();
        outln!(
            "{}  {:<9}  {:<14}  {:>14}  {:>8}  {}",
            view.order_id,
            view.state,
            who,
            view.cost.to_string(),
            latency,
            view.label
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn cancel(args: IdArgs) -> anyhow::Result<ExitCode> {
    let id = parse_id(&args.id)?;
    let view = args.conn.buyer().await?.cancel(&id).await?;
    if args.conn.json {
        outln!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        outln!(
            "order {} {}; refunded {}",
            view.order_id,
            view.state,
            view.refunded
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::Amount;

    fn summary(state: OrderState, exit: Option<i32>) -> JobSummary {
        JobSummary {
            order_id: Hash::of(b"o"),
            task: None,
            state,
            provider: None,
            price: None,
            compute_units: None,
            cost: Amount::ZERO,
            refunded: Amount::ZERO,
            latency_ms: None,
            attempts: 1,
            exit_code: exit,
            stdout: None,
            stderr: None,
            refund_reason: None,
            outputs: Vec::new(),
            digest: None,
            verification: Default::default(),
        }
    }

    #[test]
    fn exit_codes_rank_refunds_over_job_failures() {
        let ok = summary(OrderState::Settled, Some(0));
        let failed = summary(OrderState::Settled, Some(3));
        let refunded = summary(OrderState::Refunded, None);
        assert_eq!(exit_code(std::slice::from_ref(&ok)), 0);
        assert_eq!(exit_code(&[ok.clone(), failed.clone()]), EXIT_JOB_FAILED);
        assert_eq!(exit_code(&[failed, refunded, ok]), EXIT_REFUNDED);
    }

    #[test]
    fn pairs_and_ids_are_checked() {
        assert_eq!(
            split_pair("scene=a=b.txt", "--input", "NAME=PATH").unwrap(),
            ("scene".into(), "a=b.txt".into())
        );
        assert!(split_pair("=x", "--input", "NAME=PATH").is_err());
        assert!(split_pair("x", "--input", "NAME=PATH").is_err());
        assert!(parse_id("zz").is_err());
        assert_eq!(
            task_dir(Path::new("out"), 7),
            PathBuf::from("out/task-0007")
        );
    }
}
