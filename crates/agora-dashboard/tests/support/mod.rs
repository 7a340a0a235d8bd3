//! Test harness for the dashboard: a real market node and provider agents in this process
//! (talking over loopback HTTP and libp2p only), buyers that sign orders over the API, and
//! headless Chromium driven through chromedriver (WebDriver, via `fantoccini`).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agora_core::{Amount, ChainId, Fuel, Hash, Keypair, Price, Signed};
use agora_ledger::{DevKeys, TxBody};
use agora_market::{Demand, Requirements};
use agora_node::{MarketConfig, MarketNode, RunningMarket};
use agora_proto::api::{OrderView, SubmitOrder, Submitted};
use agora_proto::{JobSpec, OrderRequest, hexed, signed_order_id};
use agora_provider::{
    CapacityOverrides, MarketLink, ProviderAgent, ProviderConfig, RunningProvider,
};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// Dev users: 0 and 1 buy, the rest provide.
pub const USERS: usize = 6;
/// How long anything in these tests may take.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// A WASI command that prints `hello agora` and exits 0.
pub const HELLO_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8) "hello agora\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 8))
    (i32.store (i32.const 4) (i32.const 12))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))))"#;

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where screenshots go: `target/dashboard-screenshots/` (or under `CARGO_TARGET_DIR`).
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let dir = target.join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

/// A market node with provider agents, all in this process.
pub struct Net {
    pub market: RunningMarket,
    pub url: String,
    pub keys: DevKeys,
    pub providers: Vec<RunningProvider>,
    dirs: Vec<tempfile::TempDir>,
    http: reqwest::Client,
}

impl Net {
    /// A market with no providers yet.
    pub async fn start() -> Net {
        Net::start_with_users(USERS).await
    }

    /// A market whose dev genesis funds `users` accounts.
    pub async fn start_with_users(users: usize) -> Net {
        let dir = tempfile::tempdir().expect("temp dir");
        let market = MarketNode::start(MarketConfig::dev(dir.path(), users))
            .await
            .expect("the market node starts");
        let url = market.http_url();
        Net {
            market,
            url,
            keys: DevKeys::new(users),
            providers: Vec::new(),
            dirs: vec![dir],
            http: reqwest::Client::new(),
        }
    }

    /// Starts provider agent `index` (dev user `2 + index`) with `attributes` on its ask.
    pub async fn add_provider(&mut self, index: usize, attributes: &[(&str, &str)]) {
        self.add_provider_full(2 + index, index, 2, attributes)
            .await;
    }

    /// Starts dev user `user` as a provider with `slots` slots (price step `index`).
    pub async fn add_provider_as(&mut self, user: usize, index: usize, slots: u32) {
        self.add_provider_full(user, index, slots, &[]).await;
    }

    async fn add_provider_full(
        &mut self,
        user: usize,
        index: usize,
        slots: u32,
        attributes: &[(&str, &str)],
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = self.keys.users[user].clone();
        let mut config = ProviderConfig::new(
            key.clone(),
            dir.path(),
            MarketLink::Http(self.url.clone()),
            Price(20_000_000 + 2_000_000 * index as u64),
        );
        config.stake = Amount::agr(100);
        config.attributes = attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        config.overrides = CapacityOverrides {
            cpus: Some(slots),
            memory_bytes: Some(1 << 30),
            disk_bytes: Some(1 << 30),
            slots: Some(slots),
        };
        config.ask_interval = Duration::from_millis(300);
        let provider = ProviderAgent::start(config).await.expect("provider starts");
        self.providers.push(provider);
        self.dirs.push(dir);
        let account = key.account().to_string();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let asks = self.get("/v1/asks").await;
            let listed = asks.as_array().is_some_and(|a| {
                a.iter()
                    .any(|ask| ask["provider"].as_str() == Some(account.as_str()))
            });
            if listed {
                return;
            }
            assert!(Instant::now() < deadline, "provider {index} never listed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// GET a JSON path of the node's API.
    pub async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET");
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.expect("JSON")
    }

    /// The raw response to GET `path`.
    pub async fn get_raw(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET")
    }

    pub async fn order(&self, id: &Hash) -> OrderView {
        serde_json::from_value(self.get(&format!("/v1/orders/{id}")).await).expect("OrderView")
    }

    pub async fn wait_final(&self, id: &Hash) -> OrderView {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let view = self.order(id).await;
            if view.state.is_final() {
                return view;
            }
            assert!(
                Instant::now() < deadline,
                "order {id} stuck in {}",
                view.state
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Uploads `bytes` as a blob.
    pub async fn upload(&self, bytes: &[u8]) -> Hash {
        let hash = Hash::of(bytes);
        let response = self
            .http
            .put(format!("{}/v1/blobs/{hash}", self.url))
            .body(bytes.to_vec())
            .send()
            .await
            .expect("upload");
        assert!(
            response.status().is_success(),
            "upload: {}",
            response.status()
        );
        hash
    }

    /// Signs and submits an order for `module` (already uploaded) as `buyer`, with
    /// ledger nonce `nonce`.
    #[allow(clippy::too_many_arguments)]
    pub async fn submit(
        &self,
        buyer: &Keypair,
        nonce: u64,
        module: &[u8],
        label: &str,
        args: &[&str],
        fuel: Fuel,
        salt: u64,
    ) -> Submitted {
        Submitter::new(self.url.clone(), self.market.chain_id())
            .submit_args(buyer, nonce, module, label, args, fuel, salt)
            .await
    }

    pub async fn next_nonce(&self, buyer: &Keypair) -> u64 {
        self.get(&format!("/v1/accounts/{}", buyer.account())).await["next_nonce"]
            .as_u64()
            .expect("nonce")
    }

    pub async fn stop(self) {
        for provider in self.providers {
            let _ = provider.shutdown().await;
        }
        self.market.shutdown().await;
    }
}

/// A buyer's client for one market, cheap to move into a task.
pub struct Submitter {
    http: reqwest::Client,
    url: String,
    chain: ChainId,
}

impl Submitter {
    pub fn new(url: String, chain: String) -> Submitter {
        Submitter {
            http: reqwest::Client::new(),
            url,
            chain: ChainId::new(chain),
        }
    }

    pub async fn next_nonce(&self, buyer: &Keypair) -> u64 {
        let account: Value = self
            .http
            .get(format!("{}/v1/accounts/{}", self.url, buyer.account()))
            .send()
            .await
            .expect("account")
            .json()
            .await
            .expect("JSON");
        account["next_nonce"].as_u64().expect("nonce")
    }

    /// Submits an order without arguments; returns its id.
    pub async fn submit(
        &self,
        buyer: &Keypair,
        nonce: u64,
        module: &[u8],
        label: &str,
        fuel: Fuel,
        salt: u64,
    ) -> Hash {
        self.submit_args(buyer, nonce, module, label, &[], fuel, salt)
            .await
            .order_id
    }

    /// Signs and submits an order for `module` (already uploaded) as dev user `buyer`,
    /// with ledger nonce `nonce`.
    #[allow(clippy::too_many_arguments)]
    pub async fn submit_args(
        &self,
        buyer: &Keypair,
        nonce: u64,
        module: &[u8],
        label: &str,
        args: &[&str],
        fuel: Fuel,
        salt: u64,
    ) -> Submitted {
        let chain = self.chain.clone();
        let max_price = Price(40_000_000);
        let body = OrderRequest {
            job: JobSpec {
                module: Hash::of(module),
                module_size: module.len() as u64,
                inputs: Vec::new(),
                args: args.iter().map(|a| a.to_string()).collect(),
                env: Vec::new(),
                memory_bytes: 16 << 20,
                workload: agora_proto::Workload::Wasm,
            },
            demand: Demand {
                cpu_millis: 1000,
                memory_bytes: 16 << 20,
                disk_bytes: 0,
                gpu: None,
            },
            requirements: Requirements {
                features: ["wasm".to_string()].into(),
                ..Requirements::default()
            },
            max_price,
            fuel_budget: fuel,
            deadline_ms: now_ms() + 120_000,
            escrow: max_price.max_cost(fuel).expect("fits"),
            replicas: 1,
            verify: agora_proto::VerifyPolicy::None,
            label: label.into(),
            task: None,
            auction: Default::default(),
        };
        let order = Signed::sign(buyer, &chain, salt, body);
        let escrow_tx = Signed::sign(
            buyer,
            &chain,
            nonce,
            TxBody::OpenEscrow {
                order_id: signed_order_id(&order),
                amount: order.body.escrow,
                deadline_ms: order.body.deadline_ms,
            },
        );
        let response = self
            .http
            .post(format!("{}/v1/orders", self.url))
            .json(&SubmitOrder {
                order: hexed::encode(&order),
                escrow_tx: hexed::encode(&escrow_tx),
            })
            .send()
            .await
            .expect("submit");
        let status = response.status();
        let text = response.text().await.expect("body");
        assert!(status.is_success(), "submit: {status} {text}");
        serde_json::from_str(&text).expect("Submitted")
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The hello module's bytes.
pub fn hello_module() -> Vec<u8> {
    wat::parse_str(HELLO_WAT).expect("the test module assembles")
}

/// Headless Chromium under a chromedriver this test started on a free loopback port.
pub struct Browser {
    pub client: Client,
    driver: Child,
}

fn find_binary(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path)).filter(|p| p.exists());
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or `None` when
    /// `AGORA_SKIP_BROWSER=1`. Without Chromium the test fails, saying what to install.
    pub async fn start() -> Option<Browser> {
        if std::env::var("AGORA_SKIP_BROWSER").is_ok_and(|v| v == "1") {
            eprintln!("AGORA_SKIP_BROWSER=1: skipping the browser test");
            return None;
        }
        let chromium = find_binary(
            "AGORA_CHROMIUM",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        );
        let driver = find_binary("AGORA_CHROMEDRIVER", &["/usr/bin/chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            panic!(
                "the dashboard's browser tests need headless Chromium and chromedriver \
                 (Debian packages `chromium` and `chromium-driver`, at /usr/bin/chromium and \
                 /usr/bin/chromedriver): run `.ci/run`, which installs them, or \
                 `apt-get install chromium chromium-driver`; set AGORA_SKIP_BROWSER=1 to skip"
            );
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1280,1000", "--no-first-run",
                         "--disable-extensions", "--disable-background-networking"],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("chromedriver at {url} did not start a session: {e}"),
            }
        };
        Some(Browser {
            client,
            driver: child,
        })
    }

    /// Opens `url` and waits until the page says its data is drawn.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("goto");
        self.wait_ready().await;
    }

    /// Waits for the current page's `main[data-ready]`.
    pub async fn wait_ready(&self) {
        self.wait_js("return document.getElementById('main').dataset.ready === '1'")
            .await;
    }

    /// Waits until `script` returns true.
    pub async fn wait_js(&self, script: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.client.execute(script, vec![]).await.expect("script");
            if value.as_bool() == Some(true) {
                return;
            }
            assert!(Instant::now() < deadline, "never true: {script}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the element `css` has text for which `check` holds; returns the text.
    pub async fn wait_text(&self, css: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut last = String::new();
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = el.text().await
            {
                if check(&text) {
                    return text;
                }
                last = text;
            }
            assert!(Instant::now() < deadline, "{css}: last text {last:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .expect("text")
    }

    /// Runs `script` and returns its value.
    pub async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.expect("script")
    }

    /// Saves a PNG of the window as `name.png` in [`screenshot_dir`].
    pub async fn screenshot(&self, name: &str) {
        self.js("window.scrollTo(0, 0); return true").await;
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(screenshot_dir().join(format!("{name}.png")), png).expect("write PNG");
    }

    /// Asserts that no script planted in data ran and no planted element exists.
    pub async fn assert_no_injection(&self, page: &str) {
        let ran = self
            .js("return [window.__pwned === undefined, document.querySelectorAll('img[src=\"x\"], script:not([src])').length]")
            .await;
        assert_eq!(ran, json!([true, 0]), "{page}: injected markup or script");
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// The dashboard's AGR text for `base` units (as dom.js `agr()` writes it).
pub fn agr_text(base: u64) -> String {
    let n = base as f64 / 1e9;
    if n == 0.0 {
        return "0 AGR".into();
    }
    let digits = if n >= 1.0 { 4 } else { 9 };
    let fixed = format!("{n:.digits$}");
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    format!("{trimmed} AGR")
}
