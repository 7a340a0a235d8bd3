//! Gossip on the `asks` topic: a provider's `Signed<AskOffer>`, decoded and judged the way
//! the market node does before it lists the ask (verify, signer = provider, then the
//! market's ask book).

use agora_core::Signed;
use agora_market::{Market, MarketConfig};
use agora_proto::AskOffer;

use crate::common::{round_trip, tamper, tamper_spot, verify_any};

/// See the module docs.
pub fn check(data: &[u8]) {
    let Some(offer) = round_trip::<Signed<AskOffer>>(data) else {
        return;
    };
    verify_any(&offer);
    let (spot, mask) = tamper_spot(data);
    tamper(&offer, spot, mask);
    let _ = offer.body.ask.provider == offer.signer;
    let mut market = Market::new(MarketConfig::default()).expect("the default config is valid");
    let ask = offer.body.ask.clone();
    for now in [0, offer.body.ask.expires_ms.saturating_sub(1), u64::MAX] {
        let _ = market.upsert_ask(ask.clone(), now);
    }
}
