//! Faulty providers (`agora node provider --faulty MODE`, test networks only) on real
//! processes: refused on a chain whose genesis does not allow them; on a dev chain each
//! mode misbehaves as documented against the real market, under the `none` verification
//! policy, which settles whatever matches its receipt:
//!
//! - `wrong-output`: the order settles, paid, with a digest and an output that differ from
//!   a local `agora exec` of the same job (the stdout and the fuel are the honest ones);
//! - `skip-work`: the order settles with a made-up one-line stdout and fuel, and the
//!   provider never even fetched the module;
//! - `silent`: the honest receipt is delivered but its output cannot be fetched, so the
//!   attempt fails and the order is reassigned to (and settled by) an honest provider;
//! - `crash`: the provider process exits (code 86) mid-job and the order is reassigned
//!   and settled by an honest provider.
//!
//! Every test stops by itself within about half a minute.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common_net::{AGORA, TestNet, exec_locally, job, one_job_per_provider, sample};
use agora_client::JobRequest;
use agora_client::wallet::write_wallet;
use agora_core::{Amount, Fuel, Hash, Keypair};
use agora_devnet::{FaultMode, FaultPlan, LocalNetConfig};
use agora_ledger::Genesis;
use agora_node::{ChainSetup, MarketConfig, MarketNode};
use agora_proto::{OrderState, OrderView, VerifyPolicy};

/// Heartbeats asked of providers: a crash is noticed within a few hundred ms.
const HEARTBEAT_MS: &str = "200";
/// Each test's whole run, market start to the last check.
const TEST_LIMIT: Duration = Duration::from_secs(30);
/// The job: one small tile, with an output file (`/output/tile.ppm`) to withhold.
const TILE: [&str; 5] = ["32", "24", "0", "24", "2"];

fn tile_args() -> Vec<String> {
    TILE.iter().map(|s| s.to_string()).collect()
}

fn tile_job() -> JobRequest {
    let mut request = job("pathtrace", &tile_args());
    request.fuel_budget = Fuel::compute_units(5);
    // The market takes whatever matches its receipt: what each mode does shows plainly.
    // (What the other policies catch is the verification tests' and the demo's business.)
    request.verify = VerifyPolicy::None;
    request
}

/// A network of `providers` one-slot agents whose first (cheapest) one runs `plan`.
async fn net_with_faulty(providers: usize, plan: FaultPlan) -> TestNet {
    TestNet::start(providers, |c: &mut LocalNetConfig| {
        one_job_per_provider(c);
        c.market_args = vec!["--heartbeat-ms".into(), HEARTBEAT_MS.into()];
        c.faulty = vec![(0, plan)];
    })
    .await
}

/// Submits the tile job and waits for it to end (settled or refunded).
async fn run_tile(t: &TestNet) -> OrderView {
    let submitted = t
        .within(
            Duration::from_secs(10),
            "submitting",
            t.buyer.submit_job(&tile_job()),
        )
        .await
        .unwrap_or_else(|e| panic!("submit: {e}\n{}", t.logs()));
    t.wait_final(&submitted.order_id, Duration::from_secs(20))
        .await
}

/// Whether a file named `name` is anywhere under `dir`.
fn holds_file(dir: &Path, name: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            holds_file(&path, name)
        } else {
            path.file_name().is_some_and(|n| n == name)
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_provider_refuses_to_start_on_a_chain_that_does_not_allow_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // A non-dev chain: its genesis leaves allow_faulty_providers at false.
    let authority = Keypair::from_seed("faulty-test/authority");
    let provider = Keypair::from_seed("faulty-test/provider");
    let (mut genesis, _) = Genesis::dev("no-faults", 1, 1, Amount::agr(1_000));
    genesis.params.market_authority = authority.account();
    genesis.params.block_producer = authority.account();
    assert!(!genesis.params.allow_faulty_providers);
    let mut config = MarketConfig::dev(dir.path().join("market"), 0);
    config.chain = ChainSetup::Genesis {
        genesis: Box::new(genesis),
        key: Box::new(authority),
    };
    let market = MarketNode::start(config).await.expect("the market starts");
    let url = market.http_url();
    let wallet = dir.path().join("provider.json");
    write_wallet(&wallet, &provider, true).expect("a wallet");

    let started = Instant::now();
    let provider_dir = dir.path().join("provider");
    let run = move |fault: (&str, &str)| {
        let mut command = Command::new(AGORA);
        command
            .args(["node", "provider", "--market", &url, "--wallet"])
            .arg(&wallet)
            .arg("--data-dir")
            .arg(&provider_dir)
            .stdin(Stdio::null());
        match fault {
            ("flag", mode) => command.args(["--faulty", mode]),
            (_, mode) => command.env("AGORA_PROVIDER_FAULTY", mode),
        };
        command.output().expect("agora node provider runs")
    };
    let run = tokio::task::spawn_blocking(move || {
        [
            ("wrong-output", run(("flag", "wrong-output"))),
            ("crash:0.5", run(("flag", "crash:0.5"))),
            ("skip-work", run(("env", "skip-work"))),
        ]
    });
    let outputs = tokio::time::timeout(TEST_LIMIT, run)
        .await
        .expect("refused within the limit")
        .expect("the runs finished");
    for (mode, output) in outputs {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{mode}: started anyway: {stderr}");
        for needle in [
            "refusing to run as a faulty provider",
            mode,
            "\"no-faults\"",
            "test networks only",
            "allow_faulty_providers",
        ] {
            assert!(
                stderr.contains(needle),
                "{mode}: no {needle:?} in: {stderr}"
            );
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "refusing took {:?}",
        started.elapsed()
    );
    assert!(
        !dir.path().join("provider").join("provider.json").exists(),
        "a refused agent writes no provider.json"
    );
    market.shutdown().await;
}

#[test]
fn a_bad_fault_flag_lists_the_valid_forms() {
    for bad in ["lie", "silent:2", "crash:x"] {
        let output = Command::new(AGORA)
            .args([
                "node",
                "provider",
                "--market",
                "http://127.0.0.1:1",
                "--wallet",
                "nowhere.json",
                "--data-dir",
                "nowhere",
                "--faulty",
                bad,
            ])
            .output()
            .expect("agora runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("--faulty"), "{bad}: {stderr}");
        assert!(
            stderr.contains("wrong-output, skip-work, silent or crash")
                || stderr.contains("(0, 1]"),
            "{bad}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_output_is_settled_with_a_digest_no_honest_run_gives() {
    let started = Instant::now();
    let t = net_with_faulty(1, FaultMode::WrongOutput.into()).await;
    assert_eq!(t.net.faulty_providers().len(), 1);
    let cheat = t.net.provider_account(0).expect("provider 0");
    assert!(t.net.is_faulty(&cheat));
    let view = run_tile(&t).await;
    assert_eq!(view.state, OrderState::Settled, "{view:#?}\n{}", t.logs());
    assert_eq!(view.provider, Some(cheat));
    assert!(!view.cost.is_zero(), "the cheat was paid: {view:#?}");
    let result = view.result.as_ref().expect("a settled order has a result");
    let local = exec_locally(&sample("pathtrace"), &tile_args(), &t.scratch("local"));
    assert_ne!(result.digest, local.digest, "a wrong result");
    assert_eq!(result.stdout, local.stdout, "stdout looks honest");
    assert_eq!(result.fuel_used, local.fuel, "it did the work");
    let (local_hash, _) = &local.outputs["tile.ppm"];
    let remote = result
        .outputs
        .iter()
        .find(|o| o.name == "tile.ppm")
        .expect("the tile was delivered");
    assert_ne!(&remote.hash, local_hash, "the tile is corrupted");
    t.assert_ledger_sound().await;
    assert!(
        started.elapsed() < TEST_LIMIT,
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_work_settles_a_made_up_result_without_fetching_the_module() {
    let started = Instant::now();
    let t = net_with_faulty(1, FaultMode::SkipWork.into()).await;
    let cheat = t.net.provider_account(0).expect("provider 0");
    let view = run_tile(&t).await;
    assert_eq!(view.state, OrderState::Settled, "{view:#?}\n{}", t.logs());
    assert_eq!(view.provider, Some(cheat));
    let result = view.result.as_ref().expect("a settled order has a result");
    let local = exec_locally(&sample("pathtrace"), &tile_args(), &t.scratch("local"));
    assert_ne!(result.digest, local.digest);
    assert_ne!(result.stdout, local.stdout);
    assert_eq!(result.exit_code, 0);
    assert!(result.outputs.is_empty(), "{result:#?}");
    assert_eq!(result.stdout.lines().count(), 1, "{:?}", result.stdout);
    assert!(result.fuel_used.0 > 0 && result.fuel_used <= Fuel::compute_units(5));
    assert_ne!(result.fuel_used, local.fuel);
    let module = Hash::of(&std::fs::read(sample("pathtrace")).expect("the sample"));
    assert!(
        !holds_file(&t.net.providers[0].data_dir, &module.to_string()),
        "a provider that skips the work never fetches the module"
    );
    t.assert_ledger_sound().await;
    assert!(
        started.elapsed() < TEST_LIMIT,
        "took {:?}",
        started.elapsed()
    );
}

/// The order went to the faulty provider 0 first, then settled at provider 1 with the
/// honest result.
fn assert_reassigned_to_the_honest_one(t: &TestNet, view: &OrderView, local_digest: Hash) {
    let cheat = t.net.provider_account(0).expect("provider 0");
    let honest = t.net.provider_account(1).expect("provider 1");
    assert_eq!(view.state, OrderState::Settled, "{view:#?}\n{}", t.logs());
    assert!(
        view.events.iter().any(|e| e.provider == Some(cheat)),
        "the cheapest (faulty) provider was never assigned: {view:#?}"
    );
    assert_eq!(view.attempts, 2, "{view:#?}\n{}", t.logs());
    assert_eq!(view.provider, Some(honest), "{view:#?}");
    let result = view.result.as_ref().expect("a settled order has a result");
    assert_eq!(result.digest, local_digest);
    assert_eq!(result.provider, honest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_delivers_but_withholds_the_output_so_the_order_is_reassigned() {
    let started = Instant::now();
    let t = net_with_faulty(2, FaultMode::Silent.into()).await;
    let view = run_tile(&t).await;
    let local = exec_locally(&sample("pathtrace"), &tile_args(), &t.scratch("local"));
    assert_reassigned_to_the_honest_one(&t, &view, local.digest);
    // The silent one is alive (it only went quiet about that job) and unpaid.
    let cheat = t.net.provider_account(0).expect("provider 0");
    let seen = t.provider_view(&cheat).await;
    assert!(seen.earned.is_zero(), "{seen:#?}");
    t.assert_ledger_sound().await;
    assert!(
        started.elapsed() < TEST_LIMIT,
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_kills_the_provider_mid_job_and_the_order_is_reassigned() {
    let started = Instant::now();
    let mut t = net_with_faulty(2, FaultMode::Crash.into()).await;
    let view = run_tile(&t).await;
    let local = exec_locally(&sample("pathtrace"), &tile_args(), &t.scratch("local"));
    assert_reassigned_to_the_honest_one(&t, &view, local.digest);
    let crashed = &mut t.net.providers[0];
    let status = crashed
        .exit_status()
        .expect("the crash provider has exited");
    assert_eq!(
        status.code(),
        Some(agora_provider::fault::CRASH_EXIT_CODE),
        "{status}"
    );
    assert!(crashed.crashed_on_purpose());
    assert!(
        t.net.dead_child().is_none(),
        "a crash on purpose is not a dead child"
    );
    t.assert_ledger_sound().await;
    assert!(
        started.elapsed() < TEST_LIMIT,
        "took {:?}",
        started.elapsed()
    );
}
