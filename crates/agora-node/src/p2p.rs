//! The market's side of the p2p network: providers' signed asks arrive as gossip, their
//! heartbeats, deliveries and failure reports as requests ([`ToMarket`]).
//!
//! Gossip is judged before it spreads: an ask that does not decode, is not validly
//! signed for this chain, or whose signer is not both the ask's provider and the peer
//! that published it gets [`Verdict::Reject`], so the network scores the sender down.

use std::sync::Arc;

use agora_core::{AccountId, Signed, canonical};
use agora_net::{GossipMessage, InboundRequest, NetEvent, Topic, Verdict};
use agora_proto::AskOffer;
use agora_proto::api::SettlementInfo;
use agora_proto::wire::{MarketReply, ToMarket};
use tokio::sync::mpsc;

use crate::books::EVM_ADDRESS_ATTR;
use crate::clock::now_ms;
use crate::lifecycle;
use crate::node::{PROVIDER_ATTR, Shared};

/// How often a provider's stake is re-read from the ledger while it keeps gossiping.
const STAKE_REFRESH_MS: u64 = 10_000;

/// Handles network events until the network stops.
pub async fn event_loop(shared: Arc<Shared>, mut events: mpsc::Receiver<NetEvent>) {
    while let Some(event) = events.recv().await {
        match event {
            NetEvent::Gossip(message) => {
                let verdict = judge_gossip(&shared, &message);
                if verdict == Verdict::Reject {
                    shared.metrics.gossip_rejected.inc();
                }
                if let Err(e) = shared.net.report(&message.id, verdict).await {
                    tracing::debug!("gossip verdict not reported: {e}");
                }
            }
            NetEvent::Request(request) => {
                let shared = shared.clone();
                tokio::spawn(async move { answer(&shared, request) });
            }
            NetEvent::PeerConnected(peer) => {
                let mut book = shared.book();
                book.peers += 1;
                if let Ok(account) = agora_net::account_of(&peer)
                    && let Some(p) = book.providers.get_mut(&account)
                {
                    p.connected = true;
                }
            }
            NetEvent::PeerDisconnected(peer) => {
                {
                    let mut book = shared.book();
                    book.peers = book.peers.saturating_sub(1);
                }
                if let Ok(account) = agora_net::account_of(&peer) {
                    lifecycle::provider_gone(&shared, account);
                }
            }
            NetEvent::Subscribed { .. } => {}
        }
    }
}

/// Decides on a gossip message; only asks are expected.
fn judge_gossip(shared: &Arc<Shared>, message: &GossipMessage) -> Verdict {
    if message.topic != Topic::Asks {
        return Verdict::Ignore;
    }
    let Ok(offer) = canonical::decode::<Signed<AskOffer>>(&message.data) else {
        tracing::info!(peer = %message.author, "rejected gossip: not a signed ask");
        return Verdict::Reject;
    };
    if let Err(e) = offer.verify(&shared.identity.chain_id) {
        tracing::info!(peer = %message.author, "rejected ask: {e}");
        return Verdict::Reject;
    }
    let author = message.author_account().ok();
    if author != Some(offer.signer) || offer.body.ask.provider != offer.signer {
        tracing::info!(peer = %message.author, "rejected ask: signer, provider and author differ");
        return Verdict::Reject;
    }
    let provider = offer.signer;
    let now = now_ms();
    // On the EVM backend a provider is paid at the address it publishes in its signed ask;
    // one that publishes none could never be paid, so it is not listed.
    let evm_address = offer.body.ask.attributes.get(EVM_ADDRESS_ATTR).cloned();
    if evm_address.is_none() && matches!(shared.chain.settlement(), SettlementInfo::Evm { .. }) {
        tracing::info!(%provider, "ask not listed: this market settles on an EVM chain and the ask publishes no {EVM_ADDRESS_ATTR} to be paid at");
        return Verdict::Ignore;
    }
    let mut listed = offer.body.ask.clone();
    listed
        .attributes
        .insert(PROVIDER_ATTR.to_string(), provider.to_string());
    let mut book = shared.book();
    if let Err(e) = book.market.upsert_ask(listed, now) {
        tracing::debug!(%provider, "ask not listed: {e}");
        return Verdict::Ignore;
    }
    let entry = book.providers.entry(provider).or_default();
    entry.asks.insert(offer.body.ask.id, offer.body.ask.clone());
    entry.last_seen_ms = now;
    entry.connected = true;
    if entry.stake_read_ms + STAKE_REFRESH_MS <= now {
        entry.stake_read_ms = now;
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Some(address) = evm_address {
                register_evm_address(&shared, provider, address).await;
            }
            refresh_stake(&shared, provider).await
        });
    }
    Verdict::Accept
}

/// Records the EVM address `provider` published (on the EVM backend), so the node can
/// assign and pay it; one already held by another account is refused and logged.
async fn register_evm_address(shared: &Shared, provider: AccountId, address: String) {
    let registered = shared
        .chain
        .read(move |books| books.register_published(provider, &address))
        .await;
    if let Ok(Err(why)) = registered {
        tracing::warn!(%provider, "published EVM address not registered: {why}");
    }
}

/// Reads `provider`'s bonded stake from the ledger into the engine. On the EVM backend,
/// bonded stake below the contract's `minStake` counts as none: the contract would refuse
/// to assign the provider, so the market must not match it to orders that need stake.
pub async fn refresh_stake(shared: &Shared, provider: AccountId) {
    let stake = shared
        .chain
        .read(move |books| {
            let bonded = books.stake(&provider)?.map(|s| s.bonded);
            Ok::<_, String>(bonded.filter(|b| *b >= books.min_stake()))
        })
        .await;
    if let Ok(Ok(stake)) = stake {
        let stake = stake.unwrap_or(agora_core::Amount::ZERO);
        let mut book = shared.book();
        book.market.set_stake(provider, stake);
        book.providers.entry(provider).or_default().stake = stake;
    }
}

/// Answers one request from a provider.
fn answer(shared: &Arc<Shared>, request: InboundRequest) {
    let reply = match agora_net::account_of(&request.peer) {
        Err(e) => MarketReply::Rejected {
            reason: format!("unknown peer identity: {e}"),
        },
        Ok(peer) => match canonical::decode::<ToMarket>(&request.data) {
            Err(e) => MarketReply::Rejected {
                reason: format!("not a ToMarket message: {e}"),
            },
            Ok(message) => to_reply(handle(shared, peer, message)),
        },
    };
    if let MarketReply::Rejected { reason } = &reply {
        tracing::info!(peer = %request.peer, "refused provider message: {reason}");
    }
    if let Err(e) = request.responder.respond(canonical::encode(&reply)) {
        tracing::debug!("reply not sent: {e}");
    }
}

fn handle(shared: &Arc<Shared>, peer: AccountId, message: ToMarket) -> Result<(), String> {
    match message {
        ToMarket::Heartbeat(beat) => lifecycle::heartbeat(shared, peer, &beat),
        ToMarket::Deliver(delivery) => lifecycle::accept_delivery(shared, peer, *delivery),
        ToMarket::Failed(failure) => lifecycle::failure(shared, peer, &failure),
        ToMarket::Bid(bid) => {
            crate::auctions::bid(shared, Some(peer), &bid).map_err(|e| e.to_string())
        }
        ToMarket::Accept(accept) => {
            crate::auctions::accept(shared, Some(peer), &accept).map_err(|e| e.to_string())
        }
    }
}

fn to_reply(outcome: Result<(), String>) -> MarketReply {
    match outcome {
        Ok(()) => MarketReply::Ok,
        Err(reason) => MarketReply::Rejected { reason },
    }
}
