//! Blob transfer between real nodes on loopback: integrity, corruption, limits.

mod common;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};

use agora_core::Hash;
use agora_net::NetError;
use common::{no_partial_files, pair, pair_with, within, write_pattern};

const MIB: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_transfers_intact_across_chunk_boundaries() {
    let (server, client) = pair("blob-server", "blob-client").await;
    let src = server.dir.path().join("input.bin");
    // Not a multiple of the chunk size: the last chunk is short.
    let expected = write_pattern(&src, 1, 5 * MIB + 12_345);
    assert_eq!(server.handle.store().put_file(&src).unwrap(), expected);

    let mut reports = Vec::new();
    let fetch = client
        .handle
        .fetch_blob_with_progress(server.handle.peer_id(), expected, |p| reports.push(p));
    let path = within("the fetch", fetch).await.unwrap();
    // One report per chunk (6 chunks: five full, one short), growing to the total.
    assert_eq!(reports.len(), 6, "{reports:?}");
    assert!(reports.windows(2).all(|w| w[0].received < w[1].received));
    let last = reports.last().unwrap();
    assert_eq!(
        (last.received, last.total),
        (5 * MIB + 12_345, 5 * MIB + 12_345)
    );
    assert_eq!(path, client.handle.store().path_of(&expected));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 5 * MIB + 12_345);
    let copy = client.dir.path().join("copy.bin");
    std::fs::copy(&path, &copy).unwrap();
    assert_eq!(client.handle.store().put_file(&copy).unwrap(), expected);
    assert!(no_partial_files(&client));

    // A second fetch is served from the local store.
    let again = client
        .handle
        .fetch_blob(server.handle.peer_id(), expected)
        .await
        .unwrap();
    assert_eq!(again, path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_blob_fails_with_hash_mismatch_and_is_not_stored() {
    let (server, client) = pair("lying-server", "careful-client").await;
    let liar = server.handle.peer_id();
    let src = server.dir.path().join("input.bin");
    let hash = write_pattern(&src, 2, 3 * MIB + 7);
    server.handle.store().put_file(&src).unwrap();
    // Flip one byte in the middle of the served copy: same size, wrong content.
    let served = server.handle.store().path_of(&hash);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&served)
        .unwrap();
    file.seek(SeekFrom::Start(MIB + 5)).unwrap();
    file.write_all(&[0x5a]).unwrap();
    drop(file);

    let before = client.handle.peer_score(liar).await.unwrap().unwrap_or(0.0);
    let result = within("the fetch", client.handle.fetch_blob(liar, hash)).await;
    match result {
        Err(NetError::HashMismatch {
            peer,
            expected,
            actual,
        }) => {
            assert_eq!(peer, liar);
            assert_eq!(expected, hash);
            assert_ne!(actual, hash);
        }
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
    assert!(!client.handle.store().contains(&hash));
    assert!(
        no_partial_files(&client),
        "the bad download must be deleted"
    );
    let after = client.handle.peer_score(liar).await.unwrap().unwrap_or(0.0);
    assert!(
        after < before && after < 0.0,
        "score went from {before} to {after}"
    );
}

#[tokio::test]
async fn oversized_blob_is_refused_before_download() {
    let (server, client) = pair_with("big-blob-server", "thrifty-client", |c| {
        c.max_blob_bytes = MIB
    })
    .await;
    let hash = server
        .handle
        .store()
        .put_bytes(&vec![3u8; 2 * MIB as usize])
        .unwrap();
    let result = within(
        "the fetch",
        client.handle.fetch_blob(server.handle.peer_id(), hash),
    )
    .await;
    assert!(
        matches!(result, Err(NetError::TooLarge { what: "blob", size, limit }) if size == 2 * MIB && limit == MIB),
        "{result:?}"
    );
    assert!(!client.handle.store().contains(&hash));
    assert!(no_partial_files(&client));
}

#[tokio::test]
async fn missing_blob_is_not_found() {
    let (server, client) = pair("empty-server", "hopeful-client").await;
    let hash = Hash::of(b"never stored");
    let result = within(
        "the fetch",
        client.handle.fetch_blob(server.handle.peer_id(), hash),
    )
    .await;
    assert!(
        matches!(result, Err(NetError::BlobNotFound { hash: h, .. }) if h == hash),
        "{result:?}"
    );
}

#[tokio::test]
async fn empty_blob_round_trips() {
    let (server, client) = pair("void-server", "void-client").await;
    let hash = server.handle.store().put_bytes(b"").unwrap();
    let path = within(
        "the fetch",
        client.handle.fetch_blob(server.handle.peer_id(), hash),
    )
    .await
    .unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().len(), 0);
}
