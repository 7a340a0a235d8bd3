//! Shared helpers for the integration tests: real nodes on 127.0.0.1, port 0.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use agora_core::Keypair;
use agora_net::{Multiaddr, NetConfig, NetError, NetEvent, NetHandle, Network, Topic};
use tempfile::TempDir;
use tokio::sync::mpsc;

/// Upper bound for anything a test waits on.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A running node, its events and the directory holding its blob store.
pub struct TestNode {
    pub handle: NetHandle,
    pub events: mpsc::Receiver<NetEvent>,
    pub key: Keypair,
    pub dir: TempDir,
}

/// A configuration for a node whose key derives from `name`.
pub fn config(name: &str, dir: &TempDir) -> NetConfig {
    NetConfig::new(Keypair::from_seed(name), dir.path().join("blobs"))
}

/// Starts a node named `name` that bootstraps from `bootstrap`.
pub async fn node(name: &str, bootstrap: &[Multiaddr]) -> TestNode {
    node_with(name, bootstrap, |_| {}).await
}

/// Like [`node`], with a chance to adjust the configuration.
pub async fn node_with(
    name: &str,
    bootstrap: &[Multiaddr],
    adjust: impl FnOnce(&mut NetConfig),
) -> TestNode {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = config(name, &dir);
    cfg.bootstrap = bootstrap.to_vec();
    adjust(&mut cfg);
    let key = cfg.keypair.clone();
    let (handle, events) = Network::start(cfg).await.expect("node starts");
    TestNode {
        handle,
        events,
        key,
        dir,
    }
}

/// Fails the test if `future` takes longer than [`PATIENCE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Polls `check` every 50 ms until it is true (bounded by [`PATIENCE`]).
pub async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// Two nodes, the second bootstrapped from the first, connected.
pub async fn pair(a: &str, b: &str) -> (TestNode, TestNode) {
    pair_with(a, b, |_| {}).await
}

/// Like [`pair`], adjusting the second node's configuration.
pub async fn pair_with(
    a: &str,
    b: &str,
    adjust_second: impl FnOnce(&mut NetConfig),
) -> (TestNode, TestNode) {
    let first = node(a, &[]).await;
    let addr = first.handle.bootstrap_addr().await.expect("listen address");
    let second = node_with(b, &[addr], adjust_second).await;
    let (h1, h2) = (first.handle.clone(), second.handle.clone());
    until("the pair to connect", || async {
        h1.peers().await.unwrap().contains(&h2.peer_id())
    })
    .await;
    (first, second)
}

/// Publishes once some peer has subscribed to `topic`.
pub async fn publish_when_ready(
    handle: &NetHandle,
    topic: Topic,
    data: Vec<u8>,
) -> Result<agora_net::MsgId, NetError> {
    within("a subscriber to publish to", async {
        loop {
            match handle.publish(topic, data.clone()).await {
                Err(NetError::NoPeers(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
                other => return other,
            }
        }
    })
    .await
}

/// The next gossip message on `events`, skipping other events.
pub async fn next_gossip(events: &mut mpsc::Receiver<NetEvent>) -> agora_net::GossipMessage {
    within("a gossip message", async {
        loop {
            match events.recv().await {
                Some(NetEvent::Gossip(message)) => return message,
                Some(_) => continue,
                None => panic!("event channel closed"),
            }
        }
    })
    .await
}

/// The next inbound request on `events`, skipping other events.
pub async fn next_request(events: &mut mpsc::Receiver<NetEvent>) -> agora_net::InboundRequest {
    within("an inbound request", async {
        loop {
            match events.recv().await {
                Some(NetEvent::Request(request)) => return request,
                Some(_) => continue,
                None => panic!("event channel closed"),
            }
        }
    })
    .await
}

/// Writes `len` bytes of seeded pseudo-random content to `path`, a megabyte at a time so
/// that even large test blobs never sit in memory, and returns their blake3 hash.
pub fn write_pattern(path: &std::path::Path, seed: u64, len: u64) -> agora_core::Hash {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut hasher = agora_core::hash::Hasher::new();
    let mut state = seed | 1;
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in block.chunks_mut(8) {
            // xorshift64: cheap, deterministic, incompressible enough for transfer tests.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
        }
        let take = left.min(block.len() as u64) as usize;
        file.write_all(&block[..take]).expect("write");
        hasher.update(&block[..take]);
        left -= take as u64;
    }
    file.flush().expect("flush");
    hasher.finalize()
}

/// Whether the store under `node` has no temp files left.
pub fn no_partial_files(node: &TestNode) -> bool {
    let tmp = node.handle.store().root().join("tmp");
    std::fs::read_dir(tmp)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}
