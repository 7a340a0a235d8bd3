//! Provider → market requests over `/agora/rpc/1` (`agora_proto::ToMarket`: heartbeats,
//! deliveries with their receipts, failures, bids, Dutch acceptances) and the market's `MarketReply`.

use agora_proto::{MarketReply, ToMarket};

use crate::common::{round_trip, tamper, tamper_spot, verify_any};

/// See the module docs.
pub fn check(data: &[u8]) {
    let (spot, mask) = tamper_spot(data);
    match round_trip::<ToMarket>(data) {
        Some(ToMarket::Heartbeat(env)) => {
            verify_any(&env);
            tamper(&env, spot, mask);
        }
        Some(ToMarket::Deliver(delivery)) => {
            verify_any(&delivery.receipt);
            let _ = delivery.receipt.signer_is_provider();
            tamper(&delivery.receipt, spot, mask);
        }
        Some(ToMarket::Failed(env)) => {
            verify_any(&env);
            tamper(&env, spot, mask);
        }
        Some(ToMarket::Bid(env)) => {
            verify_any(&env);
            tamper(&env, spot, mask);
        }
        Some(ToMarket::Accept(env)) => {
            verify_any(&env);
            tamper(&env, spot, mask);
        }
        None => {}
    }
    let _ = round_trip::<MarketReply>(data);
}
