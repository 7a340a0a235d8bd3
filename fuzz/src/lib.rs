//! The checks behind Agora's fuzz targets: one per decoder that reads bytes a peer, a
//! client or a job author controls.
//!
//! Each module has a `check(data)` that a fuzz target in `fuzz_targets/` calls with the
//! fuzzer's bytes; the same functions run in `cargo test` over the committed seeds
//! (`seeds/`, written by [`seeds`]). A check panics only when a property breaks:
//!
//! - the decoder itself never panics, whatever the bytes;
//! - a decoded value re-encodes to canonical bytes that decode to the same value
//!   (`decode(encode(x)) == x`) and re-encode to themselves, and the decoder refuses
//!   trailing bytes;
//! - a signed envelope re-signed from a decoded one verifies, and any one-byte change of
//!   its encoding that still decodes to a different envelope fails verification; batch
//!   verification never accepts what strict verification refuses;
//! - what the node does next with a decoded value (shape checks, the ledger's state
//!   machine, the market's ask book, the blob store) returns typed errors and keeps its
//!   invariants (conservation; a refused transaction changes nothing).
//!
//! Non-canonical but decodable bytes (an overlong varint, a verification policy in
//! capitals) are accepted by the decoders by design (old stored genesis files rely on
//! it), and every id in the protocol hashes the re-encoding, never the received bytes;
//! build with `--features strict` to make the checks fail on them anyway.

pub mod api_json;
pub mod blob_request;
pub mod common;
pub mod envelope;
pub mod gossip_ask;
pub mod job_spec;
pub mod ledger_tx;
pub mod receipt;
pub mod rpc_to_market;
pub mod rpc_to_provider;
pub mod sealed_blob;
pub mod seeds;
pub mod signed_order;
pub mod text_forms;

/// Every target: its name (the directory under `seeds/`) and its check.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("api_json", api_json::check),
    ("blob_request", blob_request::check),
    ("envelope", envelope::check),
    ("gossip_ask", gossip_ask::check),
    ("job_spec", job_spec::check),
    ("ledger_tx", ledger_tx::check),
    ("receipt", receipt::check),
    ("rpc_to_market", rpc_to_market::check),
    ("rpc_to_provider", rpc_to_provider::check),
    ("sealed_blob", sealed_blob::check),
    ("signed_order", signed_order::check),
    ("text_forms", text_forms::check),
];
