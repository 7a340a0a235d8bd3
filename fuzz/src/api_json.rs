//! JSON bodies of the market node's state-changing HTTP requests (`POST /v1/orders`,
//! `/v1/txs`, `/v1/orders/{id}/cancel`, `/v1/orders/{id}/challenge`) and the hex-encoded
//! signed payloads inside them, decoded as the node decodes them.

use agora_core::Signed;
use agora_ledger::Tx;
use agora_proto::api::{CancelRequest, ChallengeRequest, SubmitOrder, SubmitTx};
use agora_proto::{CancelOrder, ChallengeResult, SignedOrder, hexed};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::common::{json_round_trip, verify_any};

/// Decodes hex `text` as `T` the way the node does; a value that decodes re-encodes to
/// hex that decodes to it again.
fn hex_field<T>(text: &str, what: &'static str) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let value: T = hexed::decode(text, what).ok()?;
    let back: T = hexed::decode(&hexed::encode(&value), what)
        .unwrap_or_else(|e| panic!("the hex of a decoded {what} does not decode: {e}"));
    assert_eq!(back, value, "a {what} changes through hex");
    Some(value)
}

fn body<T>(data: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let value: T = serde_json::from_slice(data).ok()?;
    json_round_trip(&value);
    Some(value)
}

/// See the module docs.
pub fn check(data: &[u8]) {
    if let Some(req) = body::<SubmitOrder>(data) {
        if let Some(order) = hex_field::<SignedOrder>(&req.order, "signed order") {
            verify_any(&order);
            let _ = order.body.check_shape();
        }
        if let Some(tx) = hex_field::<Tx>(&req.escrow_tx, "ledger transaction") {
            verify_any(&tx);
        }
    }
    if let Some(req) = body::<SubmitTx>(data)
        && let Some(tx) = hex_field::<Tx>(&req.tx, "ledger transaction")
    {
        verify_any(&tx);
    }
    if let Some(req) = body::<CancelRequest>(data)
        && let Some(cancel) = hex_field::<Signed<CancelOrder>>(&req.cancel, "signed cancel")
    {
        verify_any(&cancel);
    }
    if let Some(req) = body::<ChallengeRequest>(data) {
        if let Some(challenge) =
            hex_field::<Signed<ChallengeResult>>(&req.challenge, "signed challenge")
        {
            verify_any(&challenge);
        }
        if let Some(tx) = hex_field::<Tx>(&req.bond_tx, "ledger transaction") {
            verify_any(&tx);
        }
    }
}
