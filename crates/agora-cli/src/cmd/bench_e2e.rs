//! `agora bench e2e`: the whole loop's latency and throughput on a real local network.
//!
//! One market node and N provider agents run as separate processes on loopback
//! (`agora_devnet::LocalNet`); buyers are this process, talking to the market's HTTP API
//! with `agora_client` exactly as `agora job run` does: sign the order and its escrow,
//! submit, follow the order's events until it is final. The job is a trivial WASI command
//! (it prints 12 bytes), so the figures measure the market loop, not the workload:
//!
//! - a lone buyer submitting jobs one after another: submit → settled latency (p50, p95)
//!   and jobs/s — the baseline;
//! - many buyers submitting at once: settled jobs/s and latency under load, and the
//!   ratio to the baseline;
//! - one job with a large input blob: HTTP upload MiB/s, and submit → settled for that
//!   job against the trivial job's p50, the difference being the provider's fetch of the
//!   blob over libp2p (hash-checked chunks).
//!
//! At the end the market is stopped and its ledger replayed from genesis.
//!
//! `--settlement evm` runs the same phases on a network that settles on the `AgoraMarket`
//! contract on a local anvil (buyers open their escrows and providers bond on chain
//! themselves; docs/settlement-evm.md); `--settlement both` runs the embedded network,
//! then the EVM one, and reports them side by side with the EVM/embedded ratios.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_client::{Buyer, JobRequest};
use agora_core::{Fuel, Price};
use agora_devnet::{LocalNet, LocalNetConfig};
use agora_proto::{JobSpec, OciJob, OrderState, Workload};
use anyhow::{Context, bail};
use serde_json::json;

/// A WASI command that prints `hello agora` and exits 0 (also the job of `bench scale`).
pub(crate) const HELLO_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8) "hello agora\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 8))
    (i32.store (i32.const 4) (i32.const 12))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))))"#;

/// Arguments of `agora bench e2e`.
#[derive(clap::Args)]
pub struct Args {
    /// Provider agents.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub providers: u32,
    /// Buyers submitting at once in the throughput phase.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=512))]
    pub buyers: u32,
    /// Jobs each of those buyers submits, one after another.
    #[arg(long, default_value_t = 25)]
    pub jobs_per_buyer: u32,
    /// Jobs the lone buyer submits one after another (after 10 warm-up jobs).
    #[arg(long, default_value_t = 100)]
    pub sequential: u32,
    /// Size of the input blob of the transfer phase, in MiB (0 skips it).
    #[arg(long, default_value_t = 64)]
    pub blob_mib: u32,
    /// The verification policy of every order. `none` (the default) measures the market
    /// loop itself; `agora bench verify` measures what each policy costs.
    #[arg(long, default_value = "none", value_name = "POLICY")]
    pub verify: agora_proto::VerifyPolicy,
    /// Where the network's data goes [default: a temporary directory, removed after].
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Which job kind to measure: the trivial WASM job, the same echo in a container
    /// (the busybox sample image with `echo` as its entry point), or both side by side on
    /// one network.
    #[arg(long, value_enum, default_value_t = Kind::Wasm)]
    pub kind: Kind,
    /// Where the market settles: its embedded ledger, the contract on a local anvil, or
    /// both, one network after the other, side by side.
    #[arg(long, value_enum, default_value_t = Backends::Embedded)]
    pub settlement: Backends,
    /// Print the figures as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The settlement backends `agora bench e2e` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backends {
    /// The market's own ledger (the default).
    Embedded,
    /// The `AgoraMarket` contract on anvil.
    Evm,
    /// The embedded network, then the EVM one.
    Both,
}

impl Backends {
    /// Each backend to run, by name, and whether it settles on EVM.
    fn each(self) -> Vec<(&'static str, bool)> {
        match self {
            Backends::Embedded => vec![("embedded", false)],
            Backends::Evm => vec![("evm", true)],
            Backends::Both => vec![("embedded", false), ("evm", true)],
        }
    }
}

/// The job kinds `agora bench e2e` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// A WASI module that prints 12 bytes.
    Wasm,
    /// An OCI image (busybox) that prints the same 12 bytes.
    Oci,
    /// Both, one after the other on the same network.
    Both,
}

/// The busybox sample image (examples/containers), whose `echo` the container job runs.
const BUSYBOX_IMAGE: &[u8] = include_bytes!("../../../../examples/containers/busybox-hash.oci.tar");

/// Runs the benchmark.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let temp = tempfile::Builder::new()
        .prefix("agora-bench-e2e-")
        .tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let module_path = dir.join("hello.wasm");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(&module_path, wat::parse_str(HELLO_WAT)?)?;
    let image_path = dir.join("busybox.oci.tar");
    std::fs::write(&image_path, BUSYBOX_IMAGE)?;
    let requests = requests(args.kind, &module_path, &image_path);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut sections = Vec::new();
    let mut verified = true;
    for (name, on_evm) in args.settlement.each() {
        let net_dir = dir.join(if on_evm { "net-evm" } else { "net" });
        note(&args, &format!("settlement: {name}"));
        let (report, ok) = run_network(&args, &runtime, &requests, &dir, net_dir, on_evm)?;
        verified &= ok;
        sections.push((name, report));
    }
    let report = side_by_side(sections);
    if args.json {
        outln!("{report}");
    } else {
        print_settlements(&report);
    }
    Ok(if verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Starts one network (settling on anvil with `on_evm`), measures every job kind on it,
/// stops it, and checks its books: the embedded ledger replayed from genesis, or the
/// contract's tokens equal to its totals. Returns the report and whether the check held.
fn run_network(
    args: &Args,
    runtime: &tokio::runtime::Runtime,
    requests: &[(&'static str, JobRequest)],
    dir: &Path,
    net_dir: std::path::PathBuf,
    on_evm: bool,
) -> anyhow::Result<(serde_json::Value, bool)> {
    let mut config = LocalNetConfig::new(
        std::env::current_exe().context("finding the agora binary")?,
        net_dir,
        args.providers as usize,
    );
    config.buyers = 1 + args.buyers as usize;
    config.settle_on_evm = on_evm;
    // Enough declared capacity that every concurrent buyer's job finds a free slot at once
    // (otherwise it would wait in the queue, and the job itself is trivial): the figures
    // are the market loop's, not queueing behind busy providers.
    let per_provider = args.buyers.div_ceil(args.providers) + 2;
    config.provider_args = vec!["--cpus".into(), per_provider.to_string()];
    config.base_price = Price(20_000_000);
    let mut net = LocalNet::start(&config)?;
    note(args, "starting the network...");
    let report = runtime.block_on(async {
        net.wait_for_providers().await?;
        let mut reports = Vec::new();
        for (kind, request) in requests {
            note(args, &format!("measuring {kind} jobs..."));
            reports.push((*kind, measure(&net, args, request.clone(), dir).await?));
        }
        anyhow::Ok(combine(reports))
    })?;
    let mut report = report;
    // Every process stops; anvil, owned by `net`, runs until it is dropped.
    net.stop();
    let verified = match &net.evm {
        Some(chain) => {
            let supply = chain_supply(chain, net.buyer_keys.len() + net.providers.len());
            let ok = supply.as_ref().is_ok_and(|s| s.conserved());
            report["ledger"] = match supply {
                Ok(s) => json!({
                    "settled_on": "evm",
                    "contract": chain.market.to_string(),
                    "conserved": s.conserved(),
                    "escrowed": s.escrowed,
                    "burnt": s.burnt,
                }),
                Err(e) => json!({ "settled_on": "evm", "conserved": false, "error": e }),
            };
            ok
        }
        None => {
            let audit = agora_ledger::verify(net.ledger_dir());
            report["ledger"] = match &audit {
                Ok(r) => json!({ "verified": true, "height": r.height, "txs": r.txs }),
                Err(e) => json!({ "verified": false, "error": e.to_string() }),
            };
            audit.is_ok()
        }
    };
    Ok((report, verified))
}

/// The contract's totals and the tokens it holds, read over a connection of this process.
fn chain_supply(
    chain: &agora_devnet::evm::EvmChain,
    users: usize,
) -> Result<agora_evm::settlement::ChainSupply, String> {
    let keys = agora_ledger::DevKeys::new(users);
    let (genesis, _) =
        agora_ledger::Genesis::dev("agora-devnet", 0, users, agora_core::Amount::ZERO);
    let config = agora_evm::EvmConfig::new(
        chain.rpc_url.clone(),
        chain.market,
        agora_core::ChainId::new("agora-devnet"),
        genesis.params,
    );
    // The EVM client owns a runtime of its own: run it on a plain thread.
    std::thread::spawn(move || {
        agora_evm::EvmSettlement::connect(config, &keys.market)
            .and_then(|s| s.supply())
            .map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "the chain read panicked".to_string())?
}

/// One backend's report as it is (with its name); two side by side with EVM/embedded ratios.
fn side_by_side(mut sections: Vec<(&'static str, serde_json::Value)>) -> serde_json::Value {
    if sections.len() == 1 {
        let (name, mut report) = sections.remove(0);
        report["settlement"] = json!(name);
        return report;
    }
    let ratio = |key: &str| {
        let of = |r: &serde_json::Value| {
            // Either one kind's report, or the WASM one of a combined report.
            let r = if r[key].is_null() { &r["wasm"] } else { r };
            r[key].as_f64().unwrap_or(f64::NAN)
        };
        of(&sections[1].1) / of(&sections[0].1)
    };
    let mut out = json!({
        "evm_vs_embedded": {
            "latency_p50": ratio("latency_p50_ms"),
            "jobs_per_s": ratio("jobs_per_s"),
        }
    });
    for (name, report) in sections {
        out[name] = report;
    }
    out
}

fn print_settlements(r: &serde_json::Value) {
    if r["settlement"].is_null() {
        for name in ["embedded", "evm"] {
            outln!("== settlement: {name}");
            print_human(&r[name]);
        }
        outln!(
            "evm vs embedded: submit → settled p50 {:.2}×, jobs/s {:.2}×",
            r["evm_vs_embedded"]["latency_p50"].as_f64().unwrap_or(0.0),
            r["evm_vs_embedded"]["jobs_per_s"].as_f64().unwrap_or(0.0)
        );
    } else {
        outln!("== settlement: {}", r["settlement"].as_str().unwrap_or("?"));
        print_human(r);
    }
}

fn note(args: &Args, line: &str) {
    if !args.json {
        eprintln!("{line}");
    }
}

/// The trivial job of each kind measured: the WASM module, and the busybox image told to
/// echo the same bytes.
fn requests(kind: Kind, module: &Path, image: &Path) -> Vec<(&'static str, JobRequest)> {
    let mut wasm = JobRequest::new(module);
    wasm.fuel_budget = Fuel(10_000_000);
    wasm.memory_bytes = 16 << 20;
    let mut oci = JobRequest::new(image);
    oci.workload = Workload::Oci(OciJob {
        entrypoint: Some(vec!["/bin/echo".into()]),
        working_dir: None,
        network: false,
        deterministic: true,
        max_unpacked_bytes: 64 << 20,
    });
    oci.args = vec!["hello agora".into()];
    // A container's fuel is its CPU time: a runtime's start costs a few ms of it.
    oci.fuel_budget = Fuel::compute_units(2);
    oci.memory_bytes = 64 << 20;
    match kind {
        Kind::Wasm => vec![("wasm", wasm)],
        Kind::Oci => vec![("oci", oci)],
        Kind::Both => vec![("wasm", wasm), ("oci", oci)],
    }
}

/// One kind's report as it is; two side by side with the container/WASM ratios.
fn combine(mut reports: Vec<(&'static str, serde_json::Value)>) -> serde_json::Value {
    if reports.len() == 1 {
        let (kind, mut report) = reports.remove(0);
        report["kind"] = json!(kind);
        return report;
    }
    let ratio = |key: &str| {
        let of = |r: &serde_json::Value| r[key].as_f64().unwrap_or(f64::NAN);
        of(&reports[1].1) / of(&reports[0].1)
    };
    let mut out = json!({
        "oci_vs_wasm": {
            "latency_p50": ratio("latency_p50_ms"),
            "jobs_per_s": ratio("jobs_per_s"),
        }
    });
    for (kind, report) in reports {
        out[kind] = report;
    }
    out
}

async fn measure(
    net: &LocalNet,
    args: &Args,
    mut request: JobRequest,
    dir: &Path,
) -> anyhow::Result<serde_json::Value> {
    let mut buyers = Vec::new();
    for key in &net.buyer_keys {
        buyers.push(Arc::new(Buyer::connect(key.clone(), &net.http_url).await?));
    }
    let is_wasm = request.workload == Workload::Wasm;
    request.verify = args.verify;
    let job = buyers[0].upload_job(&request).await?;
    let bench = Arc::new(Bench { request, job });

    note(args, "lone buyer: warm-up, then sequential jobs...");
    for i in 0..10 {
        bench.run(&buyers[0], i).await?;
    }
    let started = Instant::now();
    let mut lone = Vec::new();
    for i in 0..args.sequential {
        lone.push(bench.run(&buyers[0], 1_000 + i).await?);
    }
    let lone_rate = f64::from(args.sequential) / started.elapsed().as_secs_f64();
    lone.sort();

    note(args, &format!("{} buyers at once...", args.buyers));
    let height_before = buyers[0].client().info().await?.height;
    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    for buyer in &buyers[1..] {
        let (buyer, bench, jobs) = (buyer.clone(), bench.clone(), args.jobs_per_buyer);
        running.spawn(async move {
            let mut latencies = Vec::with_capacity(jobs as usize);
            for i in 0..jobs {
                latencies.push(bench.run(&buyer, 100_000 + i).await?);
            }
            anyhow::Ok(latencies)
        });
    }
    let mut many = Vec::new();
    while let Some(joined) = running.join_next().await {
        many.extend(joined.context("a buyer task panicked")??);
    }
    let elapsed = started.elapsed();
    many.sort();
    let blocks = buyers[0].client().info().await?.height - height_before;
    let jobs = many.len();

    let blob = if args.blob_mib > 0 && is_wasm {
        note(
            args,
            &format!("one job with a {} MiB input...", args.blob_mib),
        );
        blob_phase(
            &buyers[0],
            &bench,
            args.blob_mib,
            dir,
            percentile(&lone, 0.5),
        )
        .await?
    } else {
        serde_json::Value::Null
    };

    let concurrent_rate = jobs as f64 / elapsed.as_secs_f64();
    Ok(json!({
        "providers": args.providers,
        "latency_p50_ms": percentile(&lone, 0.5),
        "jobs_per_s": concurrent_rate,
        "lone_buyer": {
            "jobs": lone.len(),
            "latency_p50_ms": percentile(&lone, 0.5),
            "latency_p95_ms": percentile(&lone, 0.95),
            "jobs_per_s": lone_rate,
        },
        "concurrent": {
            "buyers": args.buyers,
            "jobs": jobs,
            "seconds": elapsed.as_secs_f64(),
            "jobs_per_s": concurrent_rate,
            "latency_p50_ms": percentile(&many, 0.5),
            "latency_p95_ms": percentile(&many, 0.95),
            "blocks": blocks,
            "vs_lone_buyer": concurrent_rate / lone_rate,
        },
        "blob": blob,
    }))
}

/// The trivial job, uploaded once, submitted again and again.
struct Bench {
    request: JobRequest,
    job: JobSpec,
}

impl Bench {
    /// Submits one order as `buyer` and follows it until final: the client-side submit →
    /// settled time. `salt` goes into the label so every order has its own id.
    async fn run(&self, buyer: &Buyer, salt: u32) -> anyhow::Result<Duration> {
        let mut request = self.request.clone();
        request.label = format!("bench-{salt}");
        let body = request.order_request(self.job.clone(), agora_client::buyer::now_ms())?;
        let started = Instant::now();
        let submitted = buyer.submit(body).await?;
        let view = buyer.wait(&submitted.order_id, |_| {}).await?;
        if view.state != OrderState::Settled {
            bail!(
                "order {} ended {}: {}",
                view.order_id,
                view.state,
                view.refund_reason.unwrap_or_default()
            );
        }
        Ok(started.elapsed())
    }
}

/// Uploads a blob of `mib` MiB over HTTP, then runs one job with it as input (the
/// provider fetches it from the market over libp2p before running).
async fn blob_phase(
    buyer: &Buyer,
    bench: &Bench,
    mib: u32,
    dir: &Path,
    trivial_p50_ms: f64,
) -> anyhow::Result<serde_json::Value> {
    let path = dir.join("input.bin");
    write_pseudo_random(&path, u64::from(mib) << 20)?;
    let (hash, size) = agora_client::buyer::hash_file(&path).await?;
    let up = Instant::now();
    buyer.client().upload_blob(&path, &hash).await?;
    let upload_s = up.elapsed().as_secs_f64();
    let mut request = bench.request.clone();
    request.inputs = vec![("data.bin".into(), path.clone())];
    request.label = "bench-blob".into();
    let job = buyer.upload_job(&request).await?;
    let body = request.order_request(job, agora_client::buyer::now_ms())?;
    let started = Instant::now();
    let submitted = buyer.submit(body).await?;
    let view = buyer.wait(&submitted.order_id, |_| {}).await?;
    let job_ms = started.elapsed().as_secs_f64() * 1e3;
    if view.state != OrderState::Settled {
        bail!(
            "the blob job ended {}: {}",
            view.state,
            view.refund_reason.unwrap_or_default()
        );
    }
    let down = Instant::now();
    let fetched = dir.join("fetched.bin");
    buyer.client().download_blob(&hash, &fetched).await?;
    let download_s = down.elapsed().as_secs_f64();
    let mib = size as f64 / f64::from(1 << 20);
    let transfer_ms = (job_ms - trivial_p50_ms).max(0.001);
    Ok(json!({
        "mib": mib,
        "http_upload_mib_s": mib / upload_s,
        "http_download_mib_s": mib / download_s,
        "job_submit_to_settled_ms": job_ms,
        "provider_fetch_mib_s": mib / (transfer_ms / 1e3),
    }))
}

/// Writes `len` bytes of a fixed pseudo-random pattern (incompressible enough, and the
/// same in every run) in 1 MiB chunks.
fn write_pseudo_random(path: &Path, len: u64) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for byte in chunk.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
        let n = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(())
}

/// Nearest-rank percentile of sorted durations, in ms (0 for none).
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

fn print_human(r: &serde_json::Value) {
    if r["kind"].is_null() {
        for kind in ["wasm", "oci"] {
            print_kind(kind, &r[kind]);
        }
        outln!(
            "oci vs wasm: submit → settled p50 {:.2}×, jobs/s {:.2}×",
            r["oci_vs_wasm"]["latency_p50"].as_f64().unwrap_or(0.0),
            r["oci_vs_wasm"]["jobs_per_s"].as_f64().unwrap_or(0.0)
        );
    } else {
        print_kind(r["kind"].as_str().unwrap_or("?"), r);
    }
    print_ledger(r);
}

fn print_kind(kind: &str, r: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    outln!(
        "market + {} providers as processes on loopback; trivial {kind} job",
        r["providers"]
    );
    let lone = &r["lone_buyer"];
    outln!(
        "lone buyer:  {} jobs, submit → settled p50 {:.2} ms, p95 {:.2} ms, {:.1} jobs/s",
        lone["jobs"],
        f(&lone["latency_p50_ms"]),
        f(&lone["latency_p95_ms"]),
        f(&lone["jobs_per_s"])
    );
    let c = &r["concurrent"];
    outln!(
        "{} buyers:  {} jobs in {:.2} s = {:.1} jobs/s ({:.2}× the lone buyer), p50 {:.1} ms, p95 {:.1} ms, {} blocks",
        c["buyers"],
        c["jobs"],
        f(&c["seconds"]),
        f(&c["jobs_per_s"]),
        f(&c["vs_lone_buyer"]),
        f(&c["latency_p50_ms"]),
        f(&c["latency_p95_ms"]),
        c["blocks"]
    );
    let b = &r["blob"];
    if !b.is_null() {
        outln!(
            "{:.0} MiB input: HTTP upload {:.0} MiB/s, download {:.0} MiB/s; job submit → settled {:.0} ms (provider fetch ≈ {:.0} MiB/s)",
            f(&b["mib"]),
            f(&b["http_upload_mib_s"]),
            f(&b["http_download_mib_s"]),
            f(&b["job_submit_to_settled_ms"]),
            f(&b["provider_fetch_mib_s"])
        );
    }
}

fn print_ledger(r: &serde_json::Value) {
    if r["ledger"]["settled_on"] == "evm" {
        outln!(
            "chain: contract {}, tokens held {} its totals, {} base units still escrowed",
            r["ledger"]["contract"].as_str().unwrap_or("?"),
            if r["ledger"]["conserved"] == true {
                "equal"
            } else {
                "DO NOT EQUAL"
            },
            r["ledger"]["escrowed"]
        );
        return;
    }
    outln!(
        "ledger: {}",
        if r["ledger"]["verified"] == true {
            format!(
                "{} blocks, {} txs replayed and verified",
                r["ledger"]["height"], r["ledger"]["txs"]
            )
        } else {
            format!("verification FAILED: {}", r["ledger"]["error"])
        }
    );
}
