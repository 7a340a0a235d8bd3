//! Blob transfer (`/agora/blob/1` in agora-net): the length-prefixed frame codec, the
//! `ChunkRequest` a peer sends, the `ChunkResponse` it answers and the `RpcReply` of
//! `/agora/rpc/1`; a decoded request is served from a real blob store the way the node
//! serves it.

use std::sync::LazyLock;

use agora_core::Hash;
use agora_net::BlobStore;
use agora_net::config::MAX_CHUNK_BYTES;
use agora_net::store::StoreError;
use agora_net::wire::{BLOB_PROTOCOL, ChunkRequest, ChunkResponse, FrameCodec, RpcReply};
use futures::executor::block_on;
use futures::io::Cursor;
use libp2p::request_response::Codec;

use crate::common::round_trip;

/// The frame limit the codec is fuzzed with (small, so that both sides of it are reached).
pub const FRAME_LIMIT: usize = 256;

/// Blobs in the store that requests are served from: empty, small, over one chunk of the
/// fuzzer's usual lengths.
pub fn stored_blobs() -> Vec<Vec<u8>> {
    vec![Vec::new(), b"hello, agora".to_vec(), vec![7u8; 5000]]
}

static STORE: LazyLock<(BlobStore, Vec<Hash>)> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("agora-fuzz-blobs-{}", std::process::id()));
    let store = BlobStore::open(&dir).expect("a blob store in the temp dir");
    let hashes = stored_blobs()
        .iter()
        .map(|b| store.put_bytes(b).expect("store a blob"))
        .collect();
    (store, hashes)
});

/// Serves `request` as `agora-net` does (size cap, then a clamped range read) and checks
/// the answer against the blob's content.
fn serve(request: &ChunkRequest) {
    if request.len as usize > MAX_CHUNK_BYTES {
        return;
    }
    let (store, _) = &*STORE;
    let size = match store.size(&request.hash) {
        Ok(size) => size,
        Err(StoreError::NotFound(_)) => return,
        Err(e) => panic!("the store failed: {e}"),
    };
    match store.read_range(&request.hash, request.offset, u64::from(request.len)) {
        Ok(data) => {
            assert!(request.offset <= size);
            let want = u64::from(request.len).min(size - request.offset);
            assert_eq!(data.len() as u64, want, "a range read of the wrong length");
            let whole = stored_blobs()
                .into_iter()
                .find(|b| Hash::of(b) == request.hash)
                .expect("only stored blobs are found");
            let start = request.offset as usize;
            assert_eq!(data, whole[start..start + data.len()], "wrong bytes served");
        }
        Err(StoreError::OutOfRange { .. }) => assert!(request.offset > size),
        Err(e) => panic!("the store failed: {e}"),
    }
}

/// See the module docs.
pub fn check(data: &[u8]) {
    let mut codec = FrameCodec::new(FRAME_LIMIT, FRAME_LIMIT);
    let read = block_on(codec.read_request(&BLOB_PROTOCOL, &mut Cursor::new(data)));
    if let Ok(frame) = read {
        assert!(
            frame.len() <= FRAME_LIMIT,
            "a frame over the limit was read"
        );
        assert_eq!(
            frame,
            data[4..4 + frame.len()],
            "the frame is not the bytes sent"
        );
        let mut out = Cursor::new(Vec::new());
        block_on(codec.write_response(&BLOB_PROTOCOL, &mut out, frame.clone()))
            .expect("a frame within the limit is written");
        let back =
            block_on(codec.read_response(&BLOB_PROTOCOL, &mut Cursor::new(out.into_inner())))
                .expect("a written frame reads back");
        assert_eq!(back, frame);
    }
    if let Some(request) = round_trip::<ChunkRequest>(data) {
        serve(&request);
    }
    let _ = round_trip::<ChunkResponse>(data);
    let _ = round_trip::<RpcReply>(data);
}
