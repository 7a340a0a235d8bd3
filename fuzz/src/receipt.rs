//! Signed receipts (`agora_core::SignedReceipt`) inside deliveries and results, and the
//! slash evidence built from them (`agora_verify::Evidence`, published as hex).

use agora_core::SignedReceipt;
use agora_verify::Evidence;

use crate::common::{json_round_trip, round_trip, tamper, tamper_spot, verify_any};

/// See the module docs.
pub fn check(data: &[u8]) {
    if let Some(receipt) = round_trip::<SignedReceipt>(data) {
        verify_any(&receipt);
        let _ = receipt.signer_is_provider();
        json_round_trip(&receipt);
        let (spot, mask) = tamper_spot(data);
        tamper(&receipt, spot, mask);
    }
    if let Some(evidence) = round_trip::<Evidence>(data) {
        let _ = evidence.check();
        let _ = evidence.hash();
        json_round_trip(&evidence);
    }
}
