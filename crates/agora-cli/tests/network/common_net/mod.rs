//! The harness every `network_*` test shares: a real network of `agora` processes (one
//! market node, N provider agents, from `agora_devnet::LocalNet`) under a temporary
//! directory, a buyer that talks to it over HTTP like any client, and the checks each
//! test ends with: the ledger audited (over the API while the market runs, from disk once
//! it is stopped), conservation of money, and the escrow transactions of every order
//! read back from the blocks.
//!
//! Every wait has a deadline, and every failure message quotes the end of every
//! process's log, because a multi-process failure is unreadable without them; set
//! `AGORA_TEST_KEEP=1` to keep the whole directory with the full logs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use agora_client::{Buyer, JobRequest, MarketClient};
use agora_core::{AccountId, Amount, Fuel, Hash};
use agora_devnet::{LocalNet, LocalNetConfig, log_tail};
use agora_ledger::{Supply, TxBody};
use agora_node::api::{BlockView, LedgerCheck};
use agora_proto::OrderView;
use agora_proto::api::{AccountView, MarketInfo, ProviderView};
use serde_json::Value;
use tempfile::TempDir;

/// The `agora` binary under test.
pub const AGORA: &str = env!("CARGO_BIN_EXE_agora");
/// How long starting a network (market, then every provider's first ask) may take.
pub const START_LIMIT: Duration = Duration::from_secs(30);
/// Set to keep a test's directory (data dirs and full logs of every process).
pub const KEEP_ENV: &str = "AGORA_TEST_KEEP";
/// How often state is polled while waiting.
const POLL: Duration = Duration::from_millis(50);

/// A sample job module from `examples/jobs`.
pub fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/jobs")
        .join(format!("{name}.wasm"))
}

/// A request for sample job `name` with `args` and the client's default budget.
pub fn job(name: &str, args: &[String]) -> JobRequest {
    let mut request = JobRequest::new(sample(name));
    request.args = args.to_vec();
    // One run per order: these suites test the lifecycle (placement, reassignment,
    // restarts, payment). What each policy adds is tested in network_verification.rs.
    request.verify = agora_proto::VerifyPolicy::None;
    request
}

/// Makes every provider run one job at a time: `--slots 1` bounds what the agent
/// accepts, and its ask then offers one core, which is what the market's matching
/// counts, so the market never assigns a busy agent a second order.
pub fn one_job_per_provider(config: &mut LocalNetConfig) {
    config.provider_slots = Some(1);
}

/// Makes the market recover from crashes quickly, for the suites that kill processes: a
/// 200 ms heartbeat (a killed provider's attempt fails within 0.6 s) and, after a market
/// restart, `resume_grace_ms` for unfinished orders to hear from their provider again.
pub fn fast_crash_recovery(config: &mut LocalNetConfig, resume_grace_ms: u64) {
    config.market_args.extend([
        "--heartbeat-ms".into(),
        "200".into(),
        "--resume-grace-ms".into(),
        resume_grace_ms.to_string(),
    ]);
}

/// A running local network, its first buyer and a raw HTTP client. Dropping it stops
/// every process (LocalNet's `Drop`) before the directory is removed (field order).
pub struct TestNet {
    /// The processes.
    pub net: LocalNet,
    /// The first funded buyer.
    pub buyer: Arc<Buyer>,
    /// A typed client for the market.
    pub client: MarketClient,
    /// For requests the typed client cannot make (garbage, the audit endpoint).
    pub http: reqwest::Client,
    /// Who the market is.
    pub info: MarketInfo,
    dir: TempDir,
}

impl TestNet {
    /// Starts a market and `providers` agents (after `configure` adjusted the config),
    /// waits for every provider's ask and connects the first buyer.
    pub async fn start(providers: usize, configure: impl FnOnce(&mut LocalNetConfig)) -> TestNet {
        let mut dir = tempfile::tempdir().expect("a temporary directory");
        if std::env::var_os(KEEP_ENV).is_some() {
            dir.disable_cleanup(true);
            eprintln!("{KEEP_ENV}: keeping {}", dir.path().display());
        }
        let mut config = LocalNetConfig::new(AGORA, dir.path().join("net"), providers);
        configure(&mut config);
        let mut net = LocalNet::start(&config)
            .unwrap_or_else(|e| panic!("the network did not start: {e}\n{}", all_logs(dir.path())));
        match tokio::time::timeout(START_LIMIT, net.wait_for_providers()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("a provider did not come up: {e}\n{}", all_logs(dir.path())),
            Err(_) => panic!(
                "providers not ready within {START_LIMIT:?}\n{}",
                all_logs(dir.path())
            ),
        }
        let client = net.client().expect("a market client");
        let buyer = Buyer::connect(net.buyer_keys[0].clone(), &net.http_url)
            .await
            .unwrap_or_else(|e| panic!("the buyer cannot connect: {e}\n{}", all_logs(dir.path())));
        let info = buyer.info().clone();
        TestNet {
            net,
            buyer: Arc::new(buyer),
            client,
            http: reqwest::Client::new(),
            info,
            dir,
        }
    }

    /// The end of every process's log (each market start has its own), for failure
    /// messages.
    pub fn logs(&self) -> String {
        all_logs(self.dir.path())
    }

    /// A scratch directory inside the test's directory.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path).expect("a scratch directory");
        path
    }

    /// Runs `step`, failing with every log if it takes longer than `limit`.
    pub async fn within<T>(&self, limit: Duration, what: &str, step: impl Future<Output = T>) -> T {
        match tokio::time::timeout(limit, step).await {
            Ok(value) => value,
            Err(_) => panic!("{what}: not done within {limit:?}\n{}", self.logs()),
        }
    }

    /// Index in `net.providers` of the agent with `account`.
    pub fn provider_index(&self, account: &AccountId) -> usize {
        self.net
            .providers
            .iter()
            .position(|p| p.account == *account)
            .unwrap_or_else(|| panic!("{account} is none of this network's providers"))
    }

    /// The accounts of every provider, in start order.
    pub fn provider_accounts(&self) -> Vec<AccountId> {
        self.net.providers.iter().map(|p| p.account).collect()
    }

    /// `GET /v1/orders/{id}`, failing with the logs if the market does not answer.
    pub async fn order(&self, id: &Hash) -> OrderView {
        self.client
            .order(id)
            .await
            .unwrap_or_else(|e| panic!("GET order {id}: {e}\n{}", self.logs()))
    }

    /// Polls order `id` until `done` holds, for at most `limit`.
    pub async fn wait_order(
        &self,
        id: &Hash,
        limit: Duration,
        what: &str,
        done: impl Fn(&OrderView) -> bool,
    ) -> OrderView {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            // The market may be restarting: a refused connection is not a verdict.
            if let Ok(view) = self.client.order(id).await
                && done(&view)
            {
                return view;
            }
            if tokio::time::Instant::now() > deadline {
                let last = self.client.order(id).await;
                panic!(
                    "order {id}: not {what} within {limit:?}; last seen {last:#?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls order `id` until it is settled or refunded.
    pub async fn wait_final(&self, id: &Hash, limit: Duration) -> OrderView {
        self.wait_order(id, limit, "settled or refunded", |v| v.state.is_final())
            .await
    }

    /// `GET /v1/accounts/{id}`.
    pub async fn account(&self, account: &AccountId) -> AccountView {
        self.client
            .account(account)
            .await
            .unwrap_or_else(|e| panic!("GET account {account}: {e}\n{}", self.logs()))
    }

    /// `GET /v1/providers/{id}`: the market's view of a provider.
    pub async fn provider_view(&self, account: &AccountId) -> ProviderView {
        self.client
            .provider(account)
            .await
            .unwrap_or_else(|e| panic!("GET provider {account}: {e}\n{}", self.logs()))
    }

    /// `GET /v1/ledger/verify`: the running market replays its own chain.
    pub async fn ledger_check(&self) -> LedgerCheck {
        let url = format!("{}/v1/ledger/verify", self.net.http_url);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}\n{}", self.logs()));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "GET {url}: {status} {text}");
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("GET {url} is not a LedgerCheck ({e}): {text}"))
    }

    /// Every block of the chain, oldest first, read through `GET /v1/blocks`.
    pub async fn blocks(&self) -> Vec<BlockView> {
        let height = self.ledger_check().await.height;
        let mut blocks: Vec<BlockView> = Vec::new();
        while (blocks.len() as u64) < height {
            let from = blocks.len() as u64 + 1;
            let page = self
                .client
                .blocks(from, 100)
                .await
                .unwrap_or_else(|e| panic!("GET blocks from {from}: {e}\n{}", self.logs()));
            assert!(!page.is_empty(), "no blocks from height {from} of {height}");
            for block in page {
                let block: BlockView = serde_json::from_value(block).expect("a BlockView");
                blocks.push(block);
            }
        }
        blocks
    }

    /// The audit every test ends with while the market runs: the chain replays, money is
    /// conserved and no escrow is left open. Returns the check.
    pub async fn assert_ledger_sound(&self) -> LedgerCheck {
        let check = self.ledger_check().await;
        assert!(
            check.verified && check.conservation && check.error.is_none(),
            "the market's ledger does not verify: {check:?}\n{}",
            self.logs()
        );
        let supply = check.supply.expect("the audit reports the supply");
        assert_conserved(&supply, "GET /v1/ledger/verify");
        assert_eq!(
            supply.escrow,
            Amount::ZERO,
            "escrow left locked after every order ended: {supply:?}\n{}",
            self.logs()
        );
        check
    }

    /// The audit of a test whose orders are all final: each order escrowed once on the
    /// chain, paid at most once and exactly its reported cost or refunded once
    /// ([`assert_paid_once`]); no escrow on the chain for an order not in `orders`; the
    /// buyer's balance its `funds` less the sum of the costs; the running market's own
    /// audit sound with nothing in escrow. Then the market is stopped and the real binary
    /// audits its ledger from disk, again with nothing in escrow.
    pub async fn assert_orders_accounted(
        &mut self,
        orders: &[&OrderView],
        buyer: &AccountId,
        funds: Amount,
    ) {
        let blocks = self.blocks().await;
        let txs = escrow_txs(&blocks);
        let logs = self.logs();
        for view in orders {
            assert_paid_once(view, txs.get(&view.order_id), &logs);
        }
        assert_eq!(
            txs.len(),
            orders.len(),
            "escrows on the chain for orders never made\n{logs}"
        );
        let total_cost: u64 = orders.iter().map(|v| v.cost.0).sum();
        let balance = self.account(buyer).await.balance;
        assert_eq!(
            balance.0,
            funds.0 - total_cost,
            "buyer balance = funds - Σ costs\n{logs}"
        );
        self.assert_ledger_sound().await;

        self.net.stop_market();
        let report = verify_with_cli(self.net.ledger_dir(), &self.logs());
        assert_eq!(
            report["report"]["supply"]["escrow"],
            Amount::ZERO.0,
            "nothing left in escrow: {report:#}"
        );
    }

    /// Stops the market cleanly, then replays its ledger from disk with the library's
    /// verifier (the market's store is locked while it runs) and checks conservation.
    pub fn stop_and_verify(&mut self) -> agora_ledger::VerifyReport {
        self.net.stop_market();
        let report = agora_ledger::verify(self.net.ledger_dir())
            .unwrap_or_else(|e| panic!("the ledger on disk does not verify: {e}\n{}", self.logs()));
        assert_conserved(&report.supply, "agora_ledger::verify");
        report
    }
}

/// The ends of every `*.log` under `dir` (market starts and provider agents).
fn all_logs(dir: &Path) -> String {
    let mut logs: Vec<PathBuf> = walk_logs(dir);
    logs.sort();
    logs.iter()
        .map(|path| log_tail(path))
        .collect::<Vec<_>>()
        .join("\n")
}

fn walk_logs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk_logs(&path));
        } else if path.extension().is_some_and(|e| e == "log") {
            found.push(path);
        }
    }
    found
}

/// minted = balances + escrow + stakes + voucher backing + burned, in exact integers.
pub fn assert_conserved(supply: &Supply, source: &str) {
    let held = supply.balances.0 as u128
        + supply.escrow.0 as u128
        + supply.stakes.0 as u128
        + supply.vouchers.0 as u128
        + supply.burned.0 as u128;
    assert_eq!(
        held, supply.minted.0 as u128,
        "{source}: money is not conserved: {supply:?}"
    );
}

/// The market fee taken from a gross payout, as the ledger computes it.
pub fn fee(gross: Amount, fee_bps: u32) -> Amount {
    Amount((gross.0 as u128 * fee_bps as u128 / 10_000) as u64)
}

/// The escrow transactions one order has on the chain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EscrowTxs {
    /// `OpenEscrow`s naming it.
    pub opened: u32,
    /// Each `ReleaseEscrow`'s payouts (payee, gross amount).
    pub releases: Vec<Vec<(AccountId, Amount)>>,
    /// `RefundEscrow`s naming it.
    pub refunds: u32,
}

impl EscrowTxs {
    /// Everything released to payees, fees included.
    pub fn released(&self) -> Amount {
        Amount(self.releases.iter().flatten().map(|(_, a)| a.0).sum())
    }
}

/// The escrow transactions of every order in `blocks`.
pub fn escrow_txs(blocks: &[BlockView]) -> BTreeMap<Hash, EscrowTxs> {
    let mut orders: BTreeMap<Hash, EscrowTxs> = BTreeMap::new();
    for tx in blocks.iter().flat_map(|b| &b.txs) {
        match &tx.body {
            TxBody::OpenEscrow { order_id, .. } => orders.entry(*order_id).or_default().opened += 1,
            TxBody::ReleaseEscrow { order_id, payouts } => orders
                .entry(*order_id)
                .or_default()
                .releases
                .push(payouts.clone()),
            TxBody::RefundEscrow { order_id } => orders.entry(*order_id).or_default().refunds += 1,
            _ => {}
        }
    }
    orders
}

/// Checks one final order against its transactions on the chain: opened once, paid at
/// most once and exactly its cost, refunded at most once; a settled order was paid
/// (when it cost anything), a refunded one was not.
pub fn assert_paid_once(view: &OrderView, txs: Option<&EscrowTxs>, logs: &str) {
    let id = view.order_id;
    let txs = txs.unwrap_or_else(|| panic!("order {id} has no escrow on the chain: {view:#?}"));
    assert_eq!(txs.opened, 1, "order {id}: escrow opened {txs:?}");
    assert!(
        txs.releases.len() <= 1,
        "order {id} was paid more than once: {txs:?}\n{logs}"
    );
    assert!(txs.refunds <= 1, "order {id} refunded twice: {txs:?}");
    assert_eq!(
        txs.released(),
        view.cost,
        "order {id}: released on the chain vs the cost the API reports: {txs:?} {view:#?}"
    );
    match view.state {
        agora_proto::OrderState::Settled => {
            assert!(
                view.cost.is_zero() || txs.releases.len() == 1,
                "settled order {id} has no payout: {txs:?}"
            );
        }
        agora_proto::OrderState::Refunded => {
            assert!(
                txs.releases.is_empty() && txs.refunds == 1,
                "refunded order {id} must be refunded once and never paid: {txs:?}\n{logs}"
            );
        }
        state => panic!("order {id} is still {state}: {view:#?}\n{logs}"),
    }
}

/// What `agora exec --json` reports for a job run on this machine.
#[derive(Clone, Debug)]
pub struct LocalRun {
    /// The canonical result digest.
    pub digest: Hash,
    /// Fuel burnt.
    pub fuel: Fuel,
    /// The exit code.
    pub exit_code: i32,
    /// Standard output.
    pub stdout: String,
    /// Output files: name → (blake3 hash, bytes).
    pub outputs: BTreeMap<String, (Hash, Vec<u8>)>,
}

/// Runs `agora exec MODULE --json -- ARGS` (the real binary), writing outputs under
/// `scratch`, and parses its report.
pub fn exec_locally(module: &Path, args: &[String], scratch: &Path) -> LocalRun {
    std::fs::create_dir_all(scratch).expect("a scratch directory");
    let out_dir = scratch.join("out");
    let output = Command::new(AGORA)
        .arg("exec")
        .arg(module)
        .arg("--json")
        .arg("--cache-dir")
        .arg(scratch.join("cache"))
        .arg("--output-dir")
        .arg(&out_dir)
        .arg("--")
        .args(args)
        .output()
        .expect("agora exec runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "agora exec {} {args:?} failed ({}): {stderr}",
        module.display(),
        output.status
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "agora exec --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    let field = |name: &str| {
        report
            .get(name)
            .unwrap_or_else(|| panic!("agora exec --json has no `{name}`: {report:#}"))
    };
    let hash = |value: &Value| -> Hash {
        value
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{value} is not a hash in {report:#}"))
    };
    let stdout = field("stdout")["data"]
        .as_str()
        .unwrap_or_else(|| panic!("stdout is not text: {report:#}"))
        .to_string();
    let mut outputs = BTreeMap::new();
    for file in field("outputs").as_array().expect("outputs is a list") {
        let name = file["name"].as_str().expect("an output name").to_string();
        let bytes = std::fs::read(out_dir.join(&name)).expect("the local output file");
        outputs.insert(name, (hash(&file["hash"]), bytes));
    }
    LocalRun {
        digest: hash(field("digest")),
        fuel: Fuel(field("fuel_used").as_u64().expect("fuel_used is a number")),
        exit_code: field("exit_code").as_i64().expect("exit_code is a number") as i32,
        stdout,
        outputs,
    }
}

/// `agora ledger verify --data-dir DIR --json` through the real binary (the market
/// must be stopped): its JSON report, after checking it passed.
pub fn verify_with_cli(data_dir: &Path, logs: &str) -> Value {
    let output = Command::new(AGORA)
        .args(["ledger", "verify", "--json", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("agora ledger verify runs");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "agora ledger verify printed no JSON ({e}): {} {}\n{logs}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(
        output.status.success() && report["ok"] == true,
        "agora ledger verify failed ({}): {report:#}\n{logs}",
        output.status
    );
    let supply: Supply = serde_json::from_value(report["report"]["supply"].clone())
        .unwrap_or_else(|e| panic!("no supply in the verify report ({e}): {report:#}"));
    assert_conserved(&supply, "agora ledger verify");
    report
}
