//! Test harness: a real market node on loopback, buyers over HTTP, and providers that
//! are real agora-net nodes with their own keys, running jobs with the real executor and
//! signing real receipts. Their `Behavior` decides how (dis)honest they are.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_core::{
    AccountId, Amount, ChainId, Fuel, Hash, Keypair, Price, Receipt, Signed, canonical,
};
use agora_exec::{ExecConfig, Executor, WasmExecutor, WasmModule};
use agora_ledger::{DevKeys, Tx, TxBody};
use agora_market::{Ask, AskId, Demand, Requirements, ResourceClass, Resources};
use agora_net::{NetConfig, NetEvent, NetHandle, Network, PeerId, Topic, Verdict};
use agora_node::{MarketConfig, MarketNode, RunningMarket};
use agora_proto::api::{AccountView, OrderView, SubmitOrder};
use agora_proto::wire::{
    Delivery, JobFailure, MarketReply, OutputRef, ProviderReply, Stream, ToMarket, ToProvider,
};
use agora_proto::{AskOffer, Heartbeat, JobSpec, OrderRequest, SignedOrder, hexed};
use serde_json::Value;

/// Dev users: 0 and 1 are buyers, 2.. are providers.
pub const USERS: usize = 6;
/// Heartbeat interval in tests (silence limit: three of them).
pub const HEARTBEAT: Duration = Duration::from_millis(200);

/// A WASI command that prints `hello agora` and exits 0.
pub const HELLO_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8) "hello agora\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 8))
    (i32.store (i32.const 4) (i32.const 12))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))))"#;

/// A WASI command that prints `hello agora` and writes `42\n` to `/output/result.txt`
/// (the sandbox preopens `/output` as fd 4).
pub const OUTPUT_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8) "hello agora\n")
  (data (i32.const 100) "42\n")
  (data (i32.const 200) "result.txt")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 8))
    (i32.store (i32.const 4) (i32.const 12))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))
    (drop (call $path_open (i32.const 4) (i32.const 0) (i32.const 200) (i32.const 10)
      (i32.const 1) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 40)))
    (i32.store (i32.const 48) (i32.const 100))
    (i32.store (i32.const 52) (i32.const 3))
    (drop (call $fd_write (i32.load (i32.const 40)) (i32.const 48) (i32.const 1) (i32.const 60)))))"#;

pub fn output_module() -> Vec<u8> {
    wat::parse_str(OUTPUT_WAT).expect("the output module assembles")
}

pub fn hello_module() -> Vec<u8> {
    wat::parse_str(HELLO_WAT).expect("the test module assembles")
}

pub fn config(dir: &std::path::Path) -> MarketConfig {
    let mut config = MarketConfig::dev(dir, USERS);
    config.heartbeat = HEARTBEAT;
    config.resume_grace = Duration::from_millis(500);
    config
}

/// A loopback multiaddr on a port that was free a moment ago, so a restarted node can
/// listen where its providers expect it.
pub fn fixed_p2p_addr() -> agora_net::Multiaddr {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
}

pub async fn start(config: MarketConfig) -> RunningMarket {
    MarketNode::start(config)
        .await
        .expect("the market node starts")
}

pub fn keys() -> DevKeys {
    DevKeys::new(USERS)
}

/// An HTTP client for the node.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(node: &RunningMarket) -> Api {
        Api {
            base: node.http_url(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, path: &str, body: &impl serde::Serialize) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("POST");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn put_blob(&self, hash: &str, bytes: Vec<u8>) -> (u16, Value) {
        let resp = self
            .http
            .put(format!("{}/v1/blobs/{hash}", self.base))
            .body(bytes)
            .send()
            .await
            .expect("PUT");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn account(&self, account: &AccountId) -> AccountView {
        let (status, body) = self.get(&format!("/v1/accounts/{account}")).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body).expect("an AccountView")
    }

    pub async fn order(&self, id: &Hash) -> OrderView {
        let (status, body) = self.get(&format!("/v1/orders/{id}")).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body).expect("an OrderView")
    }

    pub async fn height(&self) -> u64 {
        self.get("/v1/info").await.1["height"]
            .as_u64()
            .expect("height")
    }

    /// Waits until the order is settled or refunded.
    pub async fn wait_final(&self, id: &Hash, within: Duration) -> OrderView {
        let until = tokio::time::Instant::now() + within;
        loop {
            let view = self.order(id).await;
            if view.state.is_final() {
                return view;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "order still {} after {within:?}: {view:?}",
                view.state
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until `count` providers have a live ask on the market.
    pub async fn wait_providers(&self, count: usize) {
        for _ in 0..400 {
            let (_, asks) = self.get("/v1/asks").await;
            if asks.as_array().is_some_and(|a| a.len() >= count) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{count} providers never listed asks");
    }

    pub async fn submit(&self, order: &SignedOrder, escrow: &Tx) -> (u16, Value) {
        self.post(
            "/v1/orders",
            &SubmitOrder {
                order: hexed::encode(order),
                escrow_tx: hexed::encode(escrow),
            },
        )
        .await
    }
}

/// A buyer order for `module` and its escrow, signed by `buyer` with ledger nonce `nonce`.
pub fn order_for(
    buyer: &Keypair,
    chain: &ChainId,
    module: &[u8],
    salt: u64,
    nonce: u64,
    deadline_ms: u64,
) -> (SignedOrder, Tx) {
    let policy = agora_proto::VerifyPolicy::None;
    let max_price = Price(2_000_000_000_000);
    order_verified_by(
        buyer,
        chain,
        module,
        (salt, nonce),
        deadline_ms,
        policy,
        max_price,
    )
}

/// [`order_for`] under verification `policy` (the escrow covers the runs it bills).
pub fn order_verified_by(
    buyer: &Keypair,
    chain: &ChainId,
    module: &[u8],
    (salt, nonce): (u64, u64),
    deadline_ms: u64,
    policy: agora_proto::VerifyPolicy,
    max_price: Price,
) -> (SignedOrder, Tx) {
    let fuel_budget = Fuel::compute_units(1);
    let body = OrderRequest {
        job: JobSpec {
            module: Hash::of(module),
            module_size: module.len() as u64,
            inputs: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            memory_bytes: 64 << 20,
            workload: agora_proto::Workload::Wasm,
        },
        demand: Demand {
            cpu_millis: 1_000,
            memory_bytes: 64 << 20,
            disk_bytes: 0,
            gpu: None,
        },
        requirements: Requirements::default(),
        max_price,
        fuel_budget,
        deadline_ms,
        escrow: max_price.max_cost(fuel_budget).expect("fits"),
        replicas: 1,
        verify: policy,
        label: format!("test {salt}"),
        task: None,
        auction: Default::default(),
    };
    let mut body = body;
    body.escrow = body.worst_case().expect("fits");
    let order = Signed::sign(buyer, chain, salt, body);
    let escrow = escrow_for(buyer, &order, nonce);
    (order, escrow)
}

pub fn escrow_for(buyer: &Keypair, order: &SignedOrder, nonce: u64) -> Tx {
    Signed::sign(
        buyer,
        &order.chain_id,
        nonce,
        TxBody::OpenEscrow {
            order_id: agora_proto::signed_order_id(order),
            amount: order.body.escrow,
            deadline_ms: order.body.deadline_ms,
        },
    )
}

pub fn now_ms() -> u64 {
    agora_node::clock::now_ms()
}

/// How a fake provider behaves once assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behavior {
    /// Runs the job, heartbeats, delivers a true receipt.
    Honest,
    /// Accepts, then never heartbeats or delivers.
    Silent,
    /// Runs the job but signs the receipt with another key.
    ForeignSigner,
    /// Runs the job, signs a true receipt, but serves other bytes as its output file.
    ForgedOutput,
    /// Reports a deterministic failure (as for a trap) instead of running.
    JobFails,
    /// Honest, but waits this many ms after its first heartbeat before delivering.
    HonestAfter(u64),
    /// Runs the job, then appends its own account to stdout and signs the digest of that:
    /// a consistent delivery of a wrong result, unlike any other provider's.
    WrongResult,
}

/// A provider agent made of real parts: its own agora-net node and key, the real
/// executor and real signed receipts.
pub struct FakeProvider {
    pub key: Keypair,
    pub net: NetHandle,
    /// The market's answers to this provider's deliveries.
    pub replies: Arc<Mutex<Vec<MarketReply>>>,
    _dir: tempfile::TempDir,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl FakeProvider {
    pub async fn start(
        node: &RunningMarket,
        key: Keypair,
        price: Price,
        behavior: Behavior,
    ) -> FakeProvider {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = NetConfig::new(key.clone(), dir.path().join("blobs"));
        let market_addr: agora_net::Multiaddr = node.p2p_addrs()[0].parse().expect("a multiaddr");
        config.bootstrap.push(market_addr.clone());
        let (net, mut events) = Network::start(config)
            .await
            .expect("provider network starts");
        let chain = ChainId::new(node.chain_id());
        let market = node.market_account();
        let market_peer = agora_net::peer_id_of(&market).expect("peer id");
        let replies = Arc::new(Mutex::new(Vec::new()));
        let executor = Arc::new(WasmExecutor::new(ExecConfig::default()).expect("executor"));
        let gossip = {
            let (net, key, chain) = (net.clone(), key.clone(), chain.clone());
            tokio::spawn(async move {
                for nonce in 0u64.. {
                    let offer = Signed::sign(
                        &key,
                        &chain,
                        nonce,
                        AskOffer {
                            ask: ask(&key, price),
                            running: 0,
                        },
                    );
                    let _ = net.publish(Topic::Asks, canonical::encode(&offer)).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        };
        let serve = {
            let (net, key, replies) = (net.clone(), key.clone(), replies.clone());
            tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    match event {
                        NetEvent::Gossip(msg) => {
                            let _ = net.report(&msg.id, Verdict::Accept).await;
                        }
                        NetEvent::Request(request) => {
                            let Ok(message) = canonical::decode::<ToProvider>(&request.data) else {
                                let _ = request.responder.reject("not a ToProvider message");
                                continue;
                            };
                            let reply = match message {
                                ToProvider::Assign(assignment) => {
                                    let valid = assignment.verify(&chain).is_ok()
                                        && assignment.signer == market;
                                    if valid {
                                        let job = Job {
                                            market_addr: market_addr.clone(),
                                            net: net.clone(),
                                            key: key.clone(),
                                            chain: chain.clone(),
                                            market_peer,
                                            executor: executor.clone(),
                                            replies: replies.clone(),
                                        };
                                        let order = assignment.body.order.clone();
                                        tokio::spawn(async move { job.run(order, behavior).await });
                                        ProviderReply::Accepted
                                    } else {
                                        ProviderReply::Declined {
                                            reason: "bad assignment".into(),
                                        }
                                    }
                                }
                                ToProvider::Abort(_) => ProviderReply::Accepted,
                            };
                            let _ = request.responder.respond(canonical::encode(&reply));
                        }
                        _ => {}
                    }
                }
            })
        };
        FakeProvider {
            key,
            net,
            replies,
            _dir: dir,
            tasks: vec![gossip, serve],
        }
    }

    pub fn account(&self) -> AccountId {
        self.key.account()
    }

    /// Disconnects and stops, as a killed provider would.
    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        let _ = self.net.shutdown().await;
    }
}

fn ask(key: &Keypair, price: Price) -> Ask {
    Ask {
        id: AskId::named(&key.account(), "test"),
        provider: key.account(),
        capacity: Resources {
            // Room for 64 one-core jobs at once, so benchmarks measure the loop, not
            // capacity refusals.
            cpu_millis: 64_000,
            memory_bytes: 4 << 30,
            disk_bytes: 1 << 30,
            gpus: Vec::new(),
        },
        arch: std::env::consts::ARCH.into(),
        features: BTreeSet::from(["wasm".to_string()]),
        attributes: BTreeMap::from([("region".to_string(), "eu".to_string())]),
        prices: BTreeMap::from([(ResourceClass::cpu(), price)]),
        min_job: Fuel(1),
        max_job: Fuel::compute_units(1_000),
        expires_ms: now_ms() + 10_000,
    }
}

struct Job {
    market_addr: agora_net::Multiaddr,
    net: NetHandle,
    key: Keypair,
    chain: ChainId,
    market_peer: PeerId,
    executor: Arc<WasmExecutor>,
    replies: Arc<Mutex<Vec<MarketReply>>>,
}

impl Job {
    async fn run(self, order: SignedOrder, behavior: Behavior) {
        if behavior == Behavior::Silent {
            return;
        }
        let order_id = agora_proto::signed_order_id(&order);
        if behavior == Behavior::JobFails {
            let failure = JobFailure {
                kind: "trap".into(),
                order_id,
                provider: self.key.account(),
                reason: "wasm trap: unreachable".into(),
                deterministic: true,
                fuel_used: Fuel(10),
                stdout_tail: String::new(),
                stderr_tail: "panicked at main.rs:3\n".into(),
            };
            let reply = self
                .send(ToMarket::Failed(Signed::sign(
                    &self.key,
                    &self.chain,
                    0,
                    failure,
                )))
                .await;
            self.replies.lock().expect("replies").push(reply);
            return;
        }
        let beat = Signed::sign(
            &self.key,
            &self.chain,
            0,
            Heartbeat {
                order_id,
                provider: self.key.account(),
                elapsed_ms: 0,
            },
        );
        self.send(ToMarket::Heartbeat(beat)).await;
        if let Behavior::HonestAfter(ms) = behavior {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let path = self
            .net
            .fetch_blob(self.market_peer, order.body.job.module)
            .await
            .expect("module fetched");
        let bytes = std::fs::read(path).expect("module read");
        let executor = self.executor.clone();
        let budget = order.body.fuel_budget;
        let outcome = tokio::task::spawn_blocking(move || {
            let mut spec = executor.job(order_id, WasmModule::new(bytes));
            spec.limits.fuel = budget;
            executor.run(&spec)
        })
        .await
        .expect("join")
        .expect("the job runs");
        let signer = match behavior {
            Behavior::ForeignSigner => Keypair::from_seed("not the provider"),
            _ => self.key.clone(),
        };
        let mut outcome = outcome;
        if behavior == Behavior::WrongResult {
            outcome
                .stdout
                .data
                .extend_from_slice(self.key.account().to_string().as_bytes());
            outcome.digest = agora_exec::result_digest(
                outcome.exit_code,
                &outcome.stdout.data,
                &outcome.stderr.data,
                &outcome.outputs,
            );
        }
        let receipt = Receipt {
            order_id,
            provider: signer.account(),
            module: outcome.module_hash,
            result_digest: outcome.digest,
            fuel_used: outcome.fuel_used,
            wall_ms: outcome.wall_time.as_millis() as u64,
            checkpoint: None,
            metering: None,
        };
        let mut outputs = Vec::new();
        for file in &outcome.outputs {
            let served = match behavior {
                Behavior::ForgedOutput => b"forged".to_vec(),
                _ => file.data.clone(),
            };
            let hash = self.net.store().put_bytes(&served).expect("output stored");
            outputs.push(OutputRef {
                name: file.name.clone(),
                hash,
                size: served.len() as u64,
            });
        }
        let delivery = Delivery {
            receipt: Signed::sign(&signer, &self.chain, 0, receipt),
            exit_code: outcome.exit_code,
            stdout: Stream {
                data: outcome.stdout.data.clone(),
                total_bytes: outcome.stdout.total_bytes,
                truncated: outcome.stdout.truncated,
            },
            stderr: Stream {
                data: outcome.stderr.data.clone(),
                total_bytes: outcome.stderr.total_bytes,
                truncated: outcome.stderr.truncated,
            },
            outputs,
            fuel_used: outcome.fuel_used,
        };
        let reply = self.send(ToMarket::Deliver(Box::new(delivery))).await;
        self.replies.lock().expect("replies").push(reply);
    }

    /// Sends to the market, redialling and retrying for a while if it is unreachable
    /// (it may be restarting), as a real agent does.
    async fn send(&self, message: ToMarket) -> MarketReply {
        let bytes = canonical::encode(&message);
        let mut last = String::new();
        for _ in 0..100 {
            match self.net.request(self.market_peer, bytes.clone()).await {
                Ok(reply) => {
                    return canonical::decode(&reply).unwrap_or(MarketReply::Rejected {
                        reason: "unreadable".into(),
                    });
                }
                Err(e) => last = e.to_string(),
            }
            let _ = self.net.dial(self.market_addr.clone()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        MarketReply::Rejected { reason: last }
    }
}

/// Uploads the hello module and returns its bytes.
pub async fn upload_hello(api: &Api) -> Vec<u8> {
    upload(api, hello_module()).await
}

/// Uploads `module` and returns its bytes.
pub async fn upload(api: &Api, module: Vec<u8>) -> Vec<u8> {
    let (status, body) = api
        .put_blob(&Hash::of(&module).to_string(), module.clone())
        .await;
    assert_eq!(status, 201, "{body}");
    module
}

/// Bonds `amount` of `key`'s balance as stake, through the API.
pub async fn bond(api: &Api, key: &Keypair, amount: Amount) {
    let nonce = api.account(&key.account()).await.next_nonce;
    let chain = ChainId::new(
        api.get("/v1/info").await.1["chain_id"]
            .as_str()
            .expect("chain"),
    );
    let tx = Signed::sign(key, &chain, nonce, TxBody::Bond { amount });
    let (status, body) = api
        .post(
            "/v1/txs",
            &agora_proto::api::SubmitTx {
                tx: hexed::encode(&tx),
            },
        )
        .await;
    assert!(status < 300, "bond refused: {body}");
}

pub fn amount(value: &Amount) -> u64 {
    value.0
}
