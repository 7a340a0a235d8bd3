//! A stand-in for the market node, built from the same parts the real one uses: an
//! agora-net peer with the market authority's key and a blob store, signing assignments
//! and checking what the provider sends back.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::time::Duration;

use agora_core::{AccountId, Amount, ChainId, Fuel, Hash, Keypair, Price, Signed};
use agora_exec::{OutputFile, result_digest};
use agora_market::{Demand, Requirements};
use agora_net::{NetConfig, NetEvent, NetHandle, Network, Responder, Topic, Verdict, peer_id_of};
use agora_proto::api::MarketInfo;
use agora_proto::order::{InputRef, JobSpec, OrderRequest, SignedOrder, signed_order_id};
use agora_proto::wire::{
    AbortJob, AskOffer, Assignment, Delivery, MarketReply, ProviderReply, ToMarket, ToProvider,
};
use tokio::sync::mpsc;

/// Every wait in these tests gives up after this long.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The WASI imports test modules use.
const IMPORTS: &str = r#"
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
"#;

/// Copies /input/data.txt to stdout and to /output/copy.txt.
pub fn cat_module() -> Vec<u8> {
    let body = r#"
  (data (i32.const 200) "data.txt")
  (data (i32.const 220) "copy.txt")
  (func (export "_start")
    (local $err i32) (local $n i32)
    (local.set $err (call $path_open (i32.const 3) (i32.const 0) (i32.const 200) (i32.const 8)
      (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 40)))
    (if (local.get $err) (then (call $proc_exit (local.get $err))))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 4096))
    (drop (call $fd_read (i32.load (i32.const 40)) (i32.const 0) (i32.const 1) (i32.const 8)))
    (local.set $n (i32.load (i32.const 8)))
    (i32.store (i32.const 4) (local.get $n))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (local.set $err (call $path_open (i32.const 4) (i32.const 0) (i32.const 220) (i32.const 8)
      (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 44)))
    (if (local.get $err) (then (call $proc_exit (local.get $err))))
    (drop (call $fd_write (i32.load (i32.const 44)) (i32.const 0) (i32.const 1) (i32.const 8))))
"#;
    wat::parse_str(format!("(module {IMPORTS} {body})")).expect("test WAT is valid")
}

/// Spins until its fuel runs out.
pub fn spin_module() -> Vec<u8> {
    let body = r#"(func (export "_start") (loop $l (br $l)))"#;
    wat::parse_str(format!("(module {IMPORTS} {body})")).expect("test WAT is valid")
}

/// The input the cat job reads.
pub const CAT_INPUT: &[u8] = b"agora over the network\n";

/// A message from the provider, with the responder to answer it.
pub struct FromProvider {
    pub message: ToMarket,
    pub responder: Responder,
}

/// The stand-in market.
pub struct FakeMarket {
    pub key: Keypair,
    pub chain: ChainId,
    pub net: NetHandle,
    events: mpsc::Receiver<NetEvent>,
    pending: VecDeque<FromProvider>,
    nonce: u64,
    _dir: tempfile::TempDir,
}

impl FakeMarket {
    pub async fn start() -> FakeMarket {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = Keypair::from_seed("market authority");
        let (net, events) = Network::start(NetConfig::new(key.clone(), dir.path().join("blobs")))
            .await
            .expect("market node starts");
        FakeMarket {
            key,
            chain: ChainId::new("provider-tests"),
            net,
            events,
            pending: VecDeque::new(),
            nonce: 0,
            _dir: dir,
        }
    }

    /// What `GET /v1/info` would say.
    pub async fn info(&self) -> MarketInfo {
        MarketInfo {
            chain_id: self.chain.0.clone(),
            market: self.key.account(),
            treasury: Keypair::from_seed("treasury").account(),
            fee_bps: 100,
            allow_faulty_providers: false,
            height: 1,
            p2p_addrs: vec![
                self.net
                    .bootstrap_addr()
                    .await
                    .expect("listening")
                    .to_string(),
            ],
            peer_id: self.net.peer_id().to_string(),
            version: "test".into(),
            max_blob_bytes: None,
            settlement: None,
        }
    }

    /// Stores a blob the provider will fetch.
    pub fn put(&self, bytes: &[u8]) -> Hash {
        self.net.store().put_bytes(bytes).expect("blob stored")
    }

    /// Waits for a valid ask signed by `provider`.
    pub async fn wait_for_ask(&mut self, provider: &AccountId) -> Signed<AskOffer> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("an ask arrives in time")
                .expect("market node running");
            match event {
                NetEvent::Gossip(msg) => {
                    let offer = agora_core::canonical::decode::<Signed<AskOffer>>(&msg.data);
                    let valid = matches!(&offer, Ok(o) if o.verify(&self.chain).is_ok()
                        && o.signer == o.body.ask.provider
                        && msg.author_account().ok() == Some(o.signer));
                    let verdict = if valid {
                        Verdict::Accept
                    } else {
                        Verdict::Reject
                    };
                    self.net.report(&msg.id, verdict).await.expect("verdict");
                    assert_eq!(msg.topic, Topic::Asks);
                    if let (true, Ok(offer)) = (valid, offer)
                        && &offer.signer == provider
                    {
                        return offer;
                    }
                }
                NetEvent::Request(req) => self.pending.push_back(decode_request(req)),
                _ => {}
            }
        }
    }

    /// The next request from a provider (heartbeat, delivery, failure).
    pub async fn next_message(&mut self) -> FromProvider {
        self.next_message_within(PATIENCE)
            .await
            .expect("a provider message arrives in time")
    }

    /// The next request from a provider, or `None` after `wait`.
    pub async fn next_message_within(&mut self, wait: Duration) -> Option<FromProvider> {
        if let Some(message) = self.pending.pop_front() {
            return Some(message);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .ok()??;
            match event {
                NetEvent::Request(req) => return Some(decode_request(req)),
                NetEvent::Gossip(msg) => {
                    // Asks keep coming; they are not what is awaited here.
                    let _ = self.net.report(&msg.id, Verdict::Ignore).await;
                }
                _ => {}
            }
        }
    }

    /// Waits past heartbeats for the delivery or failure; returns it and the heartbeats seen.
    pub async fn next_outcome(&mut self) -> (FromProvider, usize) {
        let mut heartbeats = 0;
        loop {
            let message = self.next_message().await;
            if let ToMarket::Heartbeat(beat) = &message.message {
                beat.verify(&self.chain).expect("heartbeat signed");
                heartbeats += 1;
                ack(message.responder);
                continue;
            }
            return (message, heartbeats);
        }
    }

    /// A buyer-signed order for `module` with the given inputs.
    pub fn order(
        &self,
        buyer: &Keypair,
        module: &[u8],
        inputs: Vec<InputRef>,
        fuel: Fuel,
    ) -> SignedOrder {
        let max_price = Price(1_000);
        let body = OrderRequest {
            job: JobSpec {
                module: Hash::of(module),
                module_size: module.len() as u64,
                inputs,
                args: vec!["job".into()],
                env: vec![],
                memory_bytes: 16 << 20,
                workload: agora_proto::Workload::Wasm,
            },
            demand: Demand {
                cpu_millis: 1000,
                memory_bytes: 16 << 20,
                disk_bytes: 0,
                gpu: None,
            },
            requirements: Requirements::default(),
            max_price,
            fuel_budget: fuel,
            deadline_ms: now_ms() + 600_000,
            escrow: max_price.max_cost(fuel).unwrap_or(Amount(u64::MAX)),
            replicas: 1,
            verify: agora_proto::VerifyPolicy::None,
            label: "test".into(),
            task: None,
            auction: Default::default(),
        };
        Signed::sign(buyer, &self.chain, rand_nonce(), body)
    }

    /// An assignment of `order` to `provider`, signed by `signer`.
    pub fn assignment(
        &mut self,
        signer: &Keypair,
        order: SignedOrder,
        provider: AccountId,
        price: Price,
    ) -> Signed<Assignment> {
        self.nonce += 1;
        let body = Assignment {
            order_id: signed_order_id(&order),
            order,
            provider,
            price,
            attempt: 0,
            heartbeat_ms: 100,
        };
        Signed::sign(signer, &self.chain, self.nonce, body)
    }

    /// Sends a request to `provider` and decodes its answer.
    pub async fn send(&self, provider: &AccountId, request: ToProvider) -> ProviderReply {
        let peer = peer_id_of(provider).expect("provider key is a peer id");
        let reply = self
            .net
            .request(peer, agora_core::canonical::encode(&request))
            .await
            .expect("the provider answers");
        agora_core::canonical::decode(&reply).expect("a ProviderReply")
    }

    /// A market-signed abort.
    pub fn abort(&mut self, signer: &Keypair, order_id: Hash) -> ToProvider {
        self.nonce += 1;
        ToProvider::Abort(Signed::sign(
            signer,
            &self.chain,
            self.nonce,
            AbortJob {
                order_id,
                reason: "test abort".into(),
            },
        ))
    }

    /// What the real market does with a delivery: check the receipt, fetch every output
    /// from the provider (hash-checked) and recompute the digest. Returns the outputs.
    pub async fn check_delivery(
        &self,
        delivery: &Delivery,
        provider: &AccountId,
        order_id: Hash,
    ) -> Vec<OutputFile> {
        let receipt = &delivery.receipt;
        receipt
            .verify(&self.chain)
            .expect("receipt signature and chain");
        assert!(receipt.signer_is_provider());
        assert_eq!(&receipt.body.provider, provider);
        assert_eq!(receipt.body.order_id, order_id);
        let peer = peer_id_of(provider).expect("peer id");
        let mut outputs = Vec::new();
        for output in &delivery.outputs {
            let path = self
                .net
                .fetch_blob(peer, output.hash)
                .await
                .expect("output fetched");
            let data = std::fs::read(path).expect("output readable");
            assert_eq!(data.len() as u64, output.size);
            outputs.push(OutputFile {
                name: output.name.clone(),
                size: output.size,
                hash: output.hash,
                data,
            });
        }
        let digest = result_digest(
            delivery.exit_code,
            &delivery.stdout.data,
            &delivery.stderr.data,
            &outputs,
        );
        assert_eq!(
            digest, receipt.body.result_digest,
            "digest re-derived from the fetched outputs"
        );
        outputs
    }
}

fn decode_request(req: agora_net::InboundRequest) -> FromProvider {
    let message = agora_core::canonical::decode(&req.data).expect("a ToMarket request");
    FromProvider {
        message,
        responder: req.responder,
    }
}

/// Answers `Ok`.
pub fn ack(responder: Responder) {
    responder
        .respond(agora_core::canonical::encode(&MarketReply::Ok))
        .expect("reply sent");
}

/// Answers `Rejected` with `reason`, as the market refuses a message.
pub fn refuse(responder: Responder, reason: &str) {
    let reply = MarketReply::Rejected {
        reason: reason.into(),
    };
    responder
        .respond(agora_core::canonical::encode(&reply))
        .expect("reply sent");
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn rand_nonce() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
