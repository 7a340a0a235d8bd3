//! Container (OCI) jobs through the market, end to end: a buyer runs `agora job run
//! --image ARCHIVE` (the real binary) against a real market node and provider processes
//! that unpack the image (`agora-oci`) and run it under runc (`agora-container`).
//!
//! - The sample `busybox-hash` image settles with the pinned outputs, a signed receipt
//!   carrying the cgroup metering (fuel > 0), and under `replicate:2:2` two providers
//!   agree on its digest.
//! - A non-deterministic image is refused before escrow under a policy that re-runs it,
//!   and runs unchecked (`none`) when declared non-deterministic alone.
//! - Hostile or broken images (truncated or altered archive, tar-slip, a write through a
//!   symlink, a device node, a setuid file, no entrypoint, larger than
//!   `--max-image-size`) and runaway jobs (fork bomb, memory bomb, 10 GiB to /output)
//!   end refunded in full, the reason naming the problem, and the provider serves the
//!   next job; a job that tries the network does not reach a listener on the host.
//!
//! Needs root and runc (the providers refuse container jobs otherwise; the tests then
//! fail, since their asks lack the `oci` feature).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common_containers::{
    CliRun, busybox_hash, busybox_layer, config, examples, expected_output_sha256, job_run,
    job_status, raw_layer, receipt_of, sha256_hex, write_image,
};
use crate::common_net::{TestNet, one_job_per_provider};
use agora_core::Amount;
use agora_devnet::LocalNetConfig;
use serde_json::Value;

/// Fuel one CPU second is worth on the test providers: fixed, so start-up skips the
/// calibration and 1 CU is one CPU second.
const FUEL_PER_CPU_SECOND: u64 = 1_000_000_000;
/// The most one `agora job run` may take here.
const JOB_LIMIT: Duration = Duration::from_secs(90);

/// Providers that run container jobs with a fixed calibration, no GPU benchmark, one job
/// at a time.
fn container_providers(config: &mut LocalNetConfig) {
    one_job_per_provider(config);
    config.provider_args.extend([
        "--fuel-per-cpu-second".into(),
        FUEL_PER_CPU_SECOND.to_string(),
        "--no-gpu-benchmark".into(),
    ]);
}

/// Starts a network whose every provider offers container jobs, or `None` (the test then
/// skips, saying why) where this host cannot run containers at all: no runc/crun, no
/// busybox-static for the runtime probe, no root or user namespaces. `.ci/run` installs
/// what they need.
async fn start(providers: usize) -> Option<TestNet> {
    if let Err(why) = agora_container::probe() {
        eprintln!("skipped: this host cannot run containers: {why}");
        return None;
    }
    let t = TestNet::start(providers, container_providers).await;
    for account in t.provider_accounts() {
        let view = t.provider_view(&account).await;
        assert!(
            view.asks.iter().any(|a| a.features.contains("oci")),
            "provider {account} does not offer container jobs (root and runc needed): {view:#?}\n{}",
            t.logs()
        );
    }
    Some(t)
}

/// The sample inputs as `--input NAME=PATH` flags: `/input/notes.txt`, `/input/sales.csv`,
/// as `test.sh` mounts `inputs/`.
fn sample_inputs() -> Vec<String> {
    ["notes.txt", "sales.csv"]
        .iter()
        .flat_map(|name| {
            let path = examples().join("inputs").join(name);
            ["--input".to_string(), format!("{name}={}", path.display())]
        })
        .collect()
}

async fn balance(t: &TestNet) -> Amount {
    t.account(&t.net.buyer_keys[0].account()).await.balance
}

fn order_id(run: &CliRun) -> agora_core::Hash {
    run.text("order_id")
        .parse()
        .unwrap_or_else(|e| panic!("no order id ({e}) in {run:#?}"))
}

/// Runs busybox-hash over the sample inputs with `flags` and checks the result is the
/// pinned one: settled, exit 0, stdout and `hashes.txt` as in `expected-outputs.sha256`
/// and `hashes.txt` the sha256 of each input. Returns the run.
async fn happy(t: &TestNet, flags: &[&str]) -> CliRun {
    let inputs = sample_inputs();
    let mut all: Vec<&str> = inputs.iter().map(String::as_str).collect();
    all.extend_from_slice(flags);
    let run = job_run(t, &busybox_hash(), &all, &[], JOB_LIMIT).await;
    assert_eq!(run.text("state"), "settled", "{run:#?}\n{}", t.logs());
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.json["exit_code"], 0, "{run:#?}");
    let stdout = run.text("stdout");
    assert_eq!(
        sha256_hex(stdout.as_bytes()),
        expected_output_sha256("busybox-hash/stdout"),
        "stdout: {stdout}"
    );
    let outputs: Vec<PathBuf> = run.json["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .map(|p| PathBuf::from(p.as_str().expect("a path")))
        .collect();
    let hashes = outputs
        .iter()
        .find(|p| p.ends_with("hashes.txt"))
        .unwrap_or_else(|| panic!("no hashes.txt among {outputs:?}"));
    let hashes = std::fs::read(hashes).expect("the downloaded hashes.txt");
    assert_eq!(
        sha256_hex(&hashes),
        expected_output_sha256("busybox-hash/hashes.txt")
    );
    let expected: String = ["notes.txt", "sales.csv"]
        .iter()
        .map(|name| {
            let bytes = std::fs::read(examples().join("inputs").join(name)).unwrap();
            format!("{}  {name}\n", sha256_hex(&bytes))
        })
        .collect();
    assert_eq!(String::from_utf8_lossy(&hashes), expected);
    run
}

/// The result's signed receipt carries the container metering and fuel > 0.
async fn assert_metered(t: &TestNet, run: &CliRun) -> Value {
    let view = job_status(t, &run.text("order_id")).await;
    assert_eq!(view["state"], "settled", "{view:#}");
    let result = &view["result"];
    let fuel = result["fuel_used"].as_u64().expect("fuel_used");
    assert!(fuel > 0, "no fuel billed: {view:#}");
    let receipt = receipt_of(result);
    let metering = receipt
        .metering
        .unwrap_or_else(|| panic!("a container receipt without metering: {receipt:#?}"));
    assert!(metering.cpu_ns > 0, "{metering:#?}");
    assert!(metering.peak_memory_bytes > 0, "{metering:#?}");
    assert_eq!(metering.fuel_per_cpu_second, FUEL_PER_CPU_SECOND);
    assert!(receipt.fuel_used.0 > 0, "{receipt:#?}");
    assert_eq!(
        receipt.fuel_used,
        agora_core::ContainerMetering::fuel(metering.cpu_ns, metering.fuel_per_cpu_second),
        "the receipt's fuel is its measured CPU time at its calibration"
    );
    view
}

/// The order views (from the typed client) of every order in `runs`.
async fn views(t: &TestNet, runs: &[&CliRun]) -> Vec<agora_proto::OrderView> {
    let mut out = Vec::new();
    for run in runs {
        out.push(t.order(&order_id(run)).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_images_settle_metered_replicated_and_nondeterminism_is_checked() {
    let started = Instant::now();
    let Some(mut t) = start(2).await else {
        return;
    };
    eprintln!("2 providers up in {:?}", started.elapsed());
    let funds = balance(&t).await;

    // One run, verify none: the pinned outputs, a metered receipt.
    let single = happy(&t, &["--verify", "none"]).await;
    assert_metered(&t, &single).await;
    assert!(single.json["compute_units"].as_f64().unwrap_or(0.0) > 0.0);
    eprintln!("single run settled at {:?}", started.elapsed());

    // replicate:2:2 on the two providers: both ran, their digests agree.
    let replicated = happy(&t, &["--verify", "replicate:2:2"]).await;
    let view = assert_metered(&t, &replicated).await;
    let verification = &view["verification"];
    assert_eq!(verification["policy"], "replicate:2:2", "{view:#}");
    assert_eq!(verification["status"], "verified", "{view:#}");
    let runs = verification["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "{view:#}");
    assert_ne!(runs[0]["provider"], runs[1]["provider"], "{view:#}");
    assert_eq!(runs[0]["digest"], runs[1]["digest"], "{view:#}");
    assert_eq!(runs[0]["digest"], view["result"]["digest"], "{view:#}");
    for run in runs {
        assert_eq!(run["agreed"], true, "{view:#}");
    }
    eprintln!("replicated run settled at {:?}", started.elapsed());

    // Non-deterministic under a policy that compares re-runs: refused before escrow.
    let before = balance(&t).await;
    let orders_before = t.client.orders(&Default::default()).await.unwrap().len();
    let inputs = sample_inputs();
    let mut flags: Vec<&str> = inputs.iter().map(String::as_str).collect();
    flags.extend(["--nondeterministic", "--verify", "replicate:2:2"]);
    let refused = job_run(&t, &busybox_hash(), &flags, &[], JOB_LIMIT).await;
    assert!(
        refused.code != Some(0) && refused.json.is_null(),
        "a non-deterministic replicated order was accepted: {refused:#?}"
    );
    assert!(
        refused.stderr.contains("non-deterministic") && refused.stderr.contains("--verify none"),
        "the refusal does not say why: {}",
        refused.stderr
    );
    assert_eq!(balance(&t).await, before, "nothing escrowed");
    assert_eq!(
        t.client.orders(&Default::default()).await.unwrap().len(),
        orders_before,
        "no order was placed"
    );

    // --nondeterministic alone: verified `none`, runs once.
    let unchecked = happy(&t, &["--nondeterministic"]).await;
    let view = assert_metered(&t, &unchecked).await;
    assert_eq!(view["verification"]["policy"], "none", "{view:#}");
    assert_eq!(
        view["verification"]["runs"].as_array().map(Vec::len),
        Some(1),
        "{view:#}"
    );

    let all = views(&t, &[&single, &replicated, &unchecked]).await;
    let refs: Vec<&agora_proto::OrderView> = all.iter().collect();
    let buyer = t.net.buyer_keys[0].account();
    t.assert_orders_accounted(&refs, &buyer, funds).await;
    eprintln!("done in {:?}", started.elapsed());
}

/// One bad input: the image, `agora job run` flags and job arguments, and what the
/// buyer's refund reason must contain.
struct BadCase {
    name: &'static str,
    image: PathBuf,
    flags: Vec<String>,
    args: Vec<String>,
    needle: &'static str,
}

fn case(
    name: &'static str,
    image: PathBuf,
    flags: &[&str],
    args: &[&str],
    needle: &'static str,
) -> BadCase {
    BadCase {
        name,
        image,
        flags: flags.iter().map(|s| s.to_string()).collect(),
        args: args.iter().map(|s| s.to_string()).collect(),
        needle,
    }
}

/// The sample image with one byte flipped in the middle of its only layer blob (the
/// manifest, config and index intact), written under `dir`.
fn altered_sample(dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(busybox_hash()).expect("the sample image");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    let altered = dir.join("altered.oci.tar");
    std::fs::write(&altered, &bytes).unwrap();
    altered
}

/// The hostile and broken images, written under `dir`.
fn bad_images(dir: &Path) -> Vec<BadCase> {
    use tar::EntryType::{Char, Directory, Regular, Symlink};
    let sample = std::fs::read(busybox_hash()).expect("the sample image");
    let truncated = dir.join("truncated.oci.tar");
    std::fs::write(&truncated, &sample[..sample.len() / 3]).unwrap();
    let altered = altered_sample(dir);

    let sh = config(&["/bin/sh", "-c", "echo hi"]);
    let base = agora_oci::single_file_layer("app/readme.txt", b"hello\n", 0o644);
    let slip = raw_layer(&[("../../../../tmp/agora-slip", Regular, 0o644, None, b"x")]);
    let through = raw_layer(&[
        ("etc2", Symlink, 0o777, Some("/etc"), b""),
        ("etc2/agora-owned", Regular, 0o644, None, b"x"),
    ]);
    let device = raw_layer(&[
        ("dev2/", Directory, 0o755, None, b""),
        ("dev2/mem", Char, 0o666, None, b""),
    ]);
    let setuid = agora_oci::single_file_layer("bin/su", b"#!/bin/sh\n", 0o4755);
    let none = agora_oci::ImageConfig::default();
    let image = |name: &str, layer: Vec<u8>, config: &agora_oci::ImageConfig| {
        write_image(dir, name, &[base.clone(), layer], config)
    };
    let verify = ["--verify", "none", "--deadline", "60s"];
    vec![
        // First, while the provider has never seen the sample image: a cached image is
        // re-checked too (see the test below).
        case(
            "altered layer byte",
            altered,
            &verify,
            &[],
            "digest mismatch",
        ),
        case(
            "truncated archive",
            truncated,
            &verify,
            &[],
            "bad image archive",
        ),
        case(
            "tar-slip layer",
            image("slip", slip, &sh),
            &verify,
            &[],
            "escapes the root filesystem",
        ),
        case(
            "write through an absolute symlink",
            image("through", through, &sh),
            &verify,
            &[],
            "below a symlink",
        ),
        case(
            "device node layer",
            image("device", device, &sh),
            &verify,
            &[],
            "device nodes and fifos are refused",
        ),
        case(
            "setuid file layer",
            image("setuid", setuid, &sh),
            &verify,
            &[],
            "setuid",
        ),
        case(
            "no entrypoint, no args",
            write_image(dir, "noentry", std::slice::from_ref(&base), &none),
            &verify,
            &[],
            "no Entrypoint or Cmd",
        ),
        case(
            "image over --max-image-size",
            busybox_hash(),
            &[
                "--verify",
                "none",
                "--deadline",
                "60s",
                "--max-image-size",
                "1MiB",
            ],
            &[],
            "image too large",
        ),
    ]
}

/// Runaway jobs on the sample image with `--entrypoint /bin/sh -- -c SCRIPT`, and a fork
/// bomb built as its own image from the host's busybox.
fn runaway_jobs(dir: &Path) -> Vec<BadCase> {
    let bomb = "f() { f | f & }; f; sleep 60; exit 1";
    let fork_bomb = write_image(
        dir,
        "forkbomb",
        &[busybox_layer()],
        &config(&["/bin/sh", "-c", bomb]),
    );
    let sh = [
        "--entrypoint",
        "/bin/sh",
        "--verify",
        "none",
        "--deadline",
        "60s",
    ];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        sh.iter().chain(extra.iter()).copied().collect()
    };
    vec![
        case(
            "fork bomb",
            fork_bomb,
            &["--verify", "none", "--deadline", "60s", "--max-cu", "4"],
            &[],
            "pids limit reached",
        ),
        case(
            "memory bomb under --memory 32MiB",
            busybox_hash(),
            &with(&["--memory", "32MiB", "--max-cu", "20"]),
            &[
                "-c",
                "awk 'BEGIN { s = \"xxxxxxxxxxxxxxxx\"; for (i = 0; i < 40; i++) s = s s; print length(s) }'",
            ],
            "memory limit exceeded",
        ),
        case(
            "10 GiB to /output (dd)",
            busybox_hash(),
            &with(&["--max-cu", "20"]),
            &["-c", "dd if=/dev/zero of=/output/big bs=1M count=10240"],
            "output limit exceeded",
        ),
    ]
}

/// Runs one bad case; returns what went wrong, if anything, and the refund reason seen.
async fn run_bad(t: &TestNet, case: &BadCase) -> (Vec<String>, String) {
    let mut wrong = Vec::new();
    let before = balance(t).await;
    let flags: Vec<&str> = case.flags.iter().map(String::as_str).collect();
    let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let run = job_run(t, &case.image, &flags, &args, JOB_LIMIT).await;
    let took = started.elapsed();
    let reason = run.text("refund_reason");
    eprintln!(
        "[{}] {} in {took:?}: {}",
        case.name,
        run.text("state"),
        reason.lines().next().unwrap_or("")
    );
    if run.text("state") != "refunded" || run.code != Some(2) {
        wrong.push(format!(
            "not refunded (exit {:?}): {:#}\n{}",
            run.code, run.json, run.stderr
        ));
        return (wrong, reason);
    }
    // A deterministic failure reported by the provider, not a deadline or a lost run.
    if !reason.contains("the job itself failed") {
        wrong.push(format!(
            "refunded, but not for the job's own failure: {reason}"
        ));
    }
    if !reason.contains(case.needle) {
        wrong.push(format!(
            "the reason does not say {:?}: {reason}",
            case.needle
        ));
    }
    let view = job_status(t, &run.text("order_id")).await;
    if view["state"] != "refunded" || view["cost"] != 0 || view["refund_reason"] != reason {
        wrong.push(format!("job status disagrees: {view:#}"));
    }
    let after = balance(t).await;
    if after != before {
        wrong.push(format!("buyer balance {before} before, {after} after"));
    }
    (wrong, reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_images_and_runaway_jobs_are_refunded_and_the_provider_keeps_serving() {
    let started = Instant::now();
    let Some(t) = start(1).await else {
        return;
    };
    let dir = t.scratch("images");
    let provider = t.provider_accounts()[0];
    let data_dir = t.net.providers[0].data_dir.clone();
    let mut failures = Vec::new();
    let mut cases = bad_images(&dir);
    cases.extend(runaway_jobs(&dir));
    for case in &cases {
        let started = Instant::now();
        let (mut wrong, _) = run_bad(&t, case).await;
        let took = started.elapsed();
        // The provider still serves: the next (happy) job settles.
        let next = job_run(
            &t,
            &busybox_hash(),
            &["--verify", "none", "--input", &notes_input()],
            &[],
            JOB_LIMIT,
        )
        .await;
        if next.text("state") != "settled" || next.json["exit_code"] != 0 {
            wrong.push(format!(
                "the next job did not settle: {:#}\n{}",
                next.json, next.stderr
            ));
        } else if next.json["provider"] != Value::String(provider.to_string()) {
            wrong.push(format!("the next job ran elsewhere: {:#}", next.json));
        }
        if case.name.starts_with("10 GiB to /output") {
            // Quickly, and nothing left behind: no file, no mounted tmpfs.
            if took > Duration::from_secs(20) {
                wrong.push(format!("took {took:?}"));
            }
            let used = du(&data_dir);
            if used > 64 << 20 {
                wrong.push(format!(
                    "the provider's data dir holds {used} bytes after it"
                ));
            }
            let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
            let prefix = data_dir.display().to_string();
            if let Some(line) = mounts.lines().find(|l| l.contains(&prefix)) {
                wrong.push(format!(
                    "still mounted under the provider's data dir: {line}"
                ));
            }
        }
        for w in wrong {
            failures.push(format!("[{}] {w}", case.name));
        }
    }
    eprintln!("bad cases done at {:?}", started.elapsed());
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        t.logs()
    );
    t.assert_ledger_sound().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_cannot_reach_the_hosts_network() {
    let Some(t) = start(1).await else {
        return;
    };
    let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("a listener");
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut targets = vec!["127.0.0.1".to_string()];
    if let Ok(out) = std::process::Command::new("hostname").arg("-I").output() {
        targets.extend(
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter(|a| !a.contains(':'))
                .map(str::to_string),
        );
    }
    let script = format!(
        "for a in {}; do \
           if wget -q -T 2 -O /dev/null http://$a:{port}/; then echo REACHED wget $a; exit 0; fi; \
           if echo hi | nc -w 2 $a {port}; then echo REACHED nc $a; exit 0; fi; \
         done; echo unreachable; exit 7",
        targets.join(" ")
    );
    // The order asks for a network; the provider's policy (no --allow-network) gives it
    // a loopback device alone.
    let run = job_run(
        &t,
        &busybox_hash(),
        &[
            "--network",
            "--entrypoint",
            "/bin/sh",
            "--verify",
            "none",
            "--deadline",
            "60s",
        ],
        &["-c", &script],
        JOB_LIMIT,
    )
    .await;
    eprintln!("network job: {:#}", run.json);
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the container reached the host's listener: {other:?}\n{run:#?}"),
    }
    let stdout = run.text("stdout");
    assert!(!stdout.contains("REACHED"), "{run:#?}");
    match run.text("state").as_str() {
        "settled" => {
            assert_eq!(run.json["exit_code"], 7, "{run:#?}");
            assert!(stdout.contains("unreachable"), "{run:#?}");
            assert_eq!(
                run.code,
                Some(1),
                "a non-zero exit is exit code 1: {run:#?}"
            );
        }
        "refunded" => {}
        state => panic!("network job ended {state}: {run:#?}"),
    }
    // And the provider still serves.
    let next = job_run(
        &t,
        &busybox_hash(),
        &["--verify", "none", "--input", &notes_input()],
        &[],
        JOB_LIMIT,
    )
    .await;
    assert_eq!(next.text("state"), "settled", "{next:#?}\n{}", t.logs());
}

/// A cached image is served from its unpacked rootfs, reading only the archive's index,
/// manifest and config: an archive whose layer blob was altered then runs on a provider
/// that has the image, while a provider without it refuses it (`digest_mismatch`, declared
/// deterministic: "any provider would fail the same way"). Required: refused either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_archive_of_a_cached_image_is_refused() {
    let Some(t) = start(1).await else {
        return;
    };
    happy(&t, &["--verify", "none"]).await;
    let case = case(
        "altered layer byte, image cached",
        altered_sample(&t.scratch("images")),
        &["--verify", "none", "--deadline", "60s"],
        &[],
        "digest mismatch",
    );
    let (wrong, _) = run_bad(&t, &case).await;
    assert!(wrong.is_empty(), "{wrong:#?}\n{}", t.logs());
}

/// busybox `head -c 10737418240 /dev/zero > /output/big` (the issue's `head -c 10G`; busybox
/// wants plain bytes) does not stop at ENOSPC: it keeps reading /dev/zero and failing
/// writes until the wall clock ends the run. /output is full by then, so the failure is
/// the output limit (deterministic, refunded at once), not a timeout (which reassigns the
/// order to another provider to fill its disk again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_output_then_a_timeout_is_an_output_limit_failure() {
    let Some(t) = start(1).await else {
        return;
    };
    let case = case(
        "10 GiB to /output (busybox head ignores ENOSPC)",
        busybox_hash(),
        &[
            "--entrypoint",
            "/bin/sh",
            "--verify",
            "none",
            "--deadline",
            "60s",
            "--max-cu",
            "3",
        ],
        &["-c", "head -c 10737418240 /dev/zero > /output/big"],
        "output limit exceeded",
    );
    let (wrong, _) = run_bad(&t, &case).await;
    assert!(wrong.is_empty(), "{wrong:#?}\n{}", t.logs());
}

/// docs/containers.md ("When it fails"): the buyer sees the failure's `kind` with the
/// reason. The market keeps the provider's reason text and tails but drops the signed
/// report's `kind`, so neither `agora job run --json` nor `agora job status --json` shows
/// the typed code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typed_failure_kind_reaches_the_buyer() {
    use tar::EntryType::Regular;
    let Some(t) = start(1).await else {
        return;
    };
    let dir = t.scratch("images");
    let slip = raw_layer(&[("../escape", Regular, 0o644, None, b"x")]);
    let image = write_image(&dir, "slip", &[slip], &config(&["/bin/sh"]));
    let run = job_run(&t, &image, &["--verify", "none"], &[], JOB_LIMIT).await;
    assert_eq!(run.text("state"), "refunded", "{run:#?}");
    let view = job_status(&t, &run.text("order_id")).await;
    assert!(
        view.to_string().contains("tar_slip") || run.json.to_string().contains("tar_slip"),
        "the kind `tar_slip` is nowhere in what the buyer sees: {view:#}"
    );
}

fn notes_input() -> String {
    format!(
        "notes.txt={}",
        examples().join("inputs/notes.txt").display()
    )
}

/// Bytes of regular files under `dir` (not following links).
fn du(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => du(&e.path()),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .sum()
}
