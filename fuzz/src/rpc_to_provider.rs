//! Market → provider requests over `/agora/rpc/1` (`agora_proto::ToProvider`: a
//! market-signed assignment that embeds the buyer-signed order, or an abort) and the
//! provider's `ProviderReply`; what a provider agent checks before it runs anything.

use agora_proto::{ProviderReply, ToProvider, signed_order_id};

use crate::common::{round_trip, tamper, tamper_spot, verify_any};

/// See the module docs.
pub fn check(data: &[u8]) {
    let (spot, mask) = tamper_spot(data);
    match round_trip::<ToProvider>(data) {
        Some(ToProvider::Assign(env)) => {
            verify_any(&env);
            let order = &env.body.order;
            verify_any(order);
            let _ = order.body.check_shape();
            let _ = signed_order_id(order) == env.body.order_id;
            tamper(&env, spot, mask);
        }
        Some(ToProvider::Abort(env)) => {
            verify_any(&env);
            tamper(&env, spot, mask);
        }
        None => {}
    }
    let _ = round_trip::<ProviderReply>(data);
}
