//! Buyer orders: `SignedOrder` (the hex `order` of `POST /v1/orders`) and a bare
//! `OrderRequest` with its `JobSpec` (the dashboard's sign-in-browser flow), then the
//! shape checks and ids the node computes from them.

use agora_proto::{OrderRequest, SignedOrder, hexed, signed_order_id};

use crate::common::{round_trip, tamper, tamper_spot, verify_any};

fn shape(order: &OrderRequest) {
    let _ = order.check_shape();
    let _ = order.worst_case();
    let _ = order.billed_runs();
}

/// See the module docs.
pub fn check(data: &[u8]) {
    if let Some(order) = round_trip::<SignedOrder>(data) {
        verify_any(&order);
        shape(&order.body);
        let id = signed_order_id(&order);
        let back: SignedOrder = hexed::decode(&hexed::encode(&order), "signed order")
            .expect("the hex form of a decoded order decodes");
        assert_eq!(back, order);
        assert_eq!(signed_order_id(&back), id, "an order's id is not stable");
        let (spot, mask) = tamper_spot(data);
        tamper(&order, spot, mask);
    }
    if let Some(body) = round_trip::<OrderRequest>(data) {
        shape(&body);
    }
}
