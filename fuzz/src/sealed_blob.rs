//! Private blobs (`agora-seal`): the sealed-blob format a buyer or provider opens after
//! fetching it from a market anyone can upload to, and the `x-agora-auth` header the market
//! checks on every private read. Arbitrary bytes must be refused with a typed error:
//!
//! - the header parser and the prefix sniff never panic;
//! - opening under a fixed data key fails unless the bytes really were sealed under it, and
//!   then the plaintext re-seals and re-opens to itself; the streaming and in-memory
//!   openers agree on what they accept and on the plaintext;
//! - an access header either fails typed or names its signer, and never one whose
//!   signature does not verify.

use agora_core::{AccountId, ChainId};
use agora_seal::{BlobAccess, DataKey, SealedHeader};

/// The data key the fuzzer's sealed inputs are tried under (the seed is sealed under it).
pub const FUZZ_KEY: [u8; 32] = [7; 32];

/// The request the access header is checked against, and the market's clock.
pub const ACCESS_PATH: &str = "/v1/blobs/fuzz";

/// The chain the seeds sign for.
pub fn chain() -> ChainId {
    ChainId::new("agora-fuzz")
}

/// Runs every check on `data`.
pub fn check(data: &[u8]) {
    let _ = SealedHeader::parse(data);
    let _ = agora_seal::is_sealed(data);
    check_open(data);
    if let Ok(text) = std::str::from_utf8(data) {
        check_access(text);
    }
}

fn check_open(data: &[u8]) {
    let key = DataKey::from_bytes(FUZZ_KEY);
    let in_memory = agora_seal::open(&key, data);
    let mut streamed = Vec::new();
    let stream = agora_seal::open_stream(&key, data, &mut streamed);
    assert_eq!(
        in_memory.is_ok(),
        stream.is_ok(),
        "the two openers disagree: {in_memory:?} / {stream:?}"
    );
    let Ok((header, plain)) = in_memory else {
        return;
    };
    assert_eq!(plain, streamed, "the two openers give different plaintext");
    let owner: AccountId = header.owner;
    let again = agora_seal::seal(&key, owner, &plain).expect("sealing never fails");
    let (reheader, reopened) = agora_seal::open(&key, &again).expect("a fresh seal opens");
    assert_eq!((reheader.owner, reopened), (owner, plain));
}

fn check_access(text: &str) {
    let checked = BlobAccess::check(text, &chain(), "GET", ACCESS_PATH, 0);
    if let Ok((signer, _order)) = checked {
        // What verified once verifies again: the check is a pure function of the text.
        let again = BlobAccess::check(text, &chain(), "GET", ACCESS_PATH, 0);
        assert_eq!(again.map(|(who, _)| who), Ok(signer));
    }
}
