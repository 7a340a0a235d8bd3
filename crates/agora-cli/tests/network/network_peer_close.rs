//! No `agora` process dies of a peer's closed connection (issue 13), with real processes.
//!
//! The `agora` binary once restored SIGPIPE's default action so that `agora … | head` ended
//! quietly; every socket written with `write`/`writev` then raised SIGPIPE whenever its
//! peer had gone, and the default action killed the whole process with status 141: a
//! market node killed by clients that stopped reading a download, a buyer killed by a node
//! that refused an upload without reading it, a demo killed mid-run. Each scenario is here:
//! - aborted downloads in a loop against a running market node: the node stays up;
//! - uploads over the market's blob limit from `agora job run` (an input, a module): a
//!   clear `blob_too_large` error naming the limit and exit status 1, never a signal;
//! - concurrent uploads of one blob, new and already stored, from clients that do not
//!   retry: every one succeeds (the node reads a duplicate's body before answering);
//! - a command whose stdout is closed before it prints ends quietly with status 0.
//!
//! The 10-provider replicate:3:2 demo, run repeatedly, is in `demo.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common_net::{AGORA, TestNet, sample};
use agora_core::Hash;

/// The market's blob limit where a test lowers it: between the montecarlo module (31 KiB)
/// and the pathtrace module (40 KiB).
const SMALL_BLOB_LIMIT: u64 = 35_000;

/// Bytes that do not repeat (xorshift), so each test blob is distinct.
fn noise(len: usize, seed: u8) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(seed);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Starts a download of `/v1/blobs/{hash}` over a raw connection, reads 256 KiB of the
/// answer and hangs up while the node is still sending, as `curl … | head -c 1000` does.
///
/// What arrived is drained before the close, so the close sends a FIN rather than a
/// reset: the node's next write is answered with a reset, and the write after it fails
/// with EPIPE, the error that raised SIGPIPE when the binary restored its default action
/// (the node died within 2 rounds of this, where a reset-only close rarely killed it).
fn abort_download(http_url: &str, hash: &Hash) {
    let address = http_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("the market accepts connections");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    write!(
        stream,
        "GET /v1/blobs/{hash} HTTP/1.1\r\nHost: {address}\r\n\r\n"
    )
    .expect("the request is sent");
    let mut head = vec![0u8; 256 << 10];
    stream.read_exact(&mut head).expect("the download starts");
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&head[..40])
    );
    stream.set_nonblocking(true).expect("a non-blocking socket");
    let mut sink = vec![0u8; 1 << 20];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_downloads_do_not_kill_the_market() {
    let mut net = TestNet::start(1, |_| {}).await;
    let blob = noise(24 << 20, 1);
    let stored = net
        .within(
            Duration::from_secs(60),
            "the upload",
            net.client.upload_bytes(blob),
        )
        .await
        .expect("a 24 MiB blob uploads");

    for round in 0..40 {
        let url = net.net.http_url.clone();
        let hash = stored.hash;
        tokio::task::spawn_blocking(move || abort_download(&url, &hash))
            .await
            .expect("the aborted download ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(dead) = net.net.dead_child() {
            panic!(
                "after {} aborted downloads: {dead}\n{}",
                round + 1,
                net.logs()
            );
        }
    }

    // Still serving: a whole download arrives and hashes to its name.
    let dest = net.scratch("download").join("blob");
    let size = net
        .within(
            Duration::from_secs(60),
            "the full download",
            net.client.download_blob(&stored.hash, &dest),
        )
        .await
        .unwrap_or_else(|e| panic!("the node no longer serves: {e}\n{}", net.logs()));
    assert_eq!(size, stored.size);
    assert!(net.net.dead_child().is_none(), "{}", net.logs());
    net.stop_and_verify();
}

/// `agora job run` with `extra` arguments, as a buyer with the network's first wallet.
fn job_run(net: &TestNet, module: &Path, extra: &[&str]) -> Output {
    Command::new(AGORA)
        .args(["job", "run", "--market", &net.net.http_url, "--wallet"])
        .arg(&net.net.buyer_wallets[0])
        .args(extra)
        .arg(module)
        .args(["--", "1000", "7"])
        .output()
        .expect("the agora binary runs")
}

/// Asserts a run refused for a blob over [`SMALL_BLOB_LIMIT`]: status 1 (not a signal)
/// and a message that says which limit and what to do.
fn assert_blob_refused(output: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{what}: exit {:?} (a signal is a crash); stderr: {stderr}",
        output.status
    );
    for needle in [
        "blob_too_large",
        "413",
        &SMALL_BLOB_LIMIT.to_string(),
        "split",
    ] {
        assert!(
            stderr.contains(needle),
            "{what}: stderr does not say {needle:?}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_the_limit_get_a_clear_refusal_from_the_cli() {
    let mut net = TestNet::start(1, |config| {
        config
            .market_args
            .extend(["--max-blob-bytes".into(), SMALL_BLOB_LIMIT.to_string()]);
    })
    .await;
    let scratch = net.scratch("inputs");
    let before = net.ledger_check().await;
    for (round, size) in [1usize << 20, 1 << 20, 8 << 20, 8 << 20]
        .into_iter()
        .enumerate()
    {
        let input = scratch.join(format!("input-{round}.bin"));
        std::fs::write(&input, noise(size, round as u8)).expect("the input is written");
        let input_arg = format!("data={}", input.display());
        let output = job_run(&net, &sample("montecarlo"), &["--input", &input_arg]);
        assert_blob_refused(&output, &format!("a {size}-byte input"));
    }
    for round in 0..3 {
        let output = job_run(&net, &sample("pathtrace"), &[]);
        assert_blob_refused(&output, &format!("a module over the limit, run {round}"));
    }
    // Nothing was escrowed for the refused jobs, and the node is still up.
    let after = net.ledger_check().await;
    assert_eq!(before.height, after.height, "{}", net.logs());
    assert!(net.net.dead_child().is_none(), "{}", net.logs());
    net.stop_and_verify();
}

/// PUTs `bytes` once on a fresh connection, with no retry; returns the HTTP status.
async fn put_once(base: String, bytes: Vec<u8>) -> Result<u16, String> {
    let hash = Hash::of(&bytes);
    let client = reqwest::Client::new();
    let response = client
        .put(format!("{base}/v1/blobs/{hash}"))
        .body(bytes)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(response.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_of_one_blob_all_succeed_without_retries() {
    let mut net = TestNet::start(1, |_| {}).await;
    for (round, stored_first) in [(0u8, false), (1, true), (2, true)] {
        let blob = noise(4 << 20, 10 + round);
        if stored_first {
            net.client
                .upload_bytes(blob.clone())
                .await
                .expect("the first upload");
        }
        let uploads: Vec<_> = (0..12)
            .map(|_| tokio::spawn(put_once(net.net.http_url.clone(), blob.clone())))
            .collect();
        for upload in uploads {
            let status = upload.await.expect("the upload task ran");
            assert!(
                matches!(status, Ok(200 | 201)),
                "round {round} (stored first: {stored_first}): {status:?}\n{}",
                net.logs()
            );
        }
    }
    assert!(net.net.dead_child().is_none(), "{}", net.logs());
    net.stop_and_verify();
}

#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    // The reader is gone before the command writes a byte.
    drop(reader);
    let output = Command::new(AGORA)
        .args(["exec", "--json"])
        .arg(sample("montecarlo"))
        .args(["--", "1000", "7"])
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("the agora binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "exit {:?}; stderr: {stderr}",
        output.status
    );
    assert!(
        stderr.is_empty(),
        "a closed stdout is not worth a word: {stderr}"
    );
}
