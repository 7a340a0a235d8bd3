//! Gossip on the network task: publishing, verdicts, penalties.

use std::collections::{HashMap, VecDeque};

use libp2p::PeerId;
use libp2p::gossipsub::{self, MessageAcceptance, MessageId, PublishError};
use tracing::warn;

use super::Driver;
use crate::error::NetError;
use crate::gossip::APP_PENALTY;
use crate::handle::{GossipMessage, MsgId, NetEvent, Verdict};
use crate::stats::Count;
use crate::topic::Topic;

/// Messages awaiting a verdict that we remember; older ones have left gossipsub's cache.
const MAX_AWAITING_VERDICT: usize = 16 * 1024;

/// Gossip messages handed to the application, with the peer to credit or blame.
#[derive(Default)]
pub(super) struct AwaitingVerdict {
    via: HashMap<MessageId, PeerId>,
    order: VecDeque<MessageId>,
}

impl AwaitingVerdict {
    fn insert(&mut self, id: MessageId, via: PeerId) {
        if self.order.len() >= MAX_AWAITING_VERDICT
            && let Some(oldest) = self.order.pop_front()
        {
            self.via.remove(&oldest);
        }
        self.order.push_back(id.clone());
        self.via.insert(id, via);
    }

    fn take(&mut self, id: &MessageId) -> Option<PeerId> {
        self.via.remove(id)
    }
}

impl Driver {
    pub(super) fn publish(&mut self, topic: Topic, data: Vec<u8>) -> Result<MsgId, NetError> {
        if data.len() > self.max_gossip {
            return Err(NetError::TooLarge {
                what: "gossip message",
                size: data.len() as u64,
                limit: self.max_gossip as u64,
            });
        }
        let size = data.len() as u64;
        let published = self
            .swarm
            .behaviour_mut()
            .gossip
            .publish(topic.hash(), data);
        if published.is_ok() {
            self.counters.bump(Count::GossipPublished);
        }
        published.map(MsgId).map_err(|e| match e {
            PublishError::NoPeersSubscribedToTopic => NetError::NoPeers(topic),
            PublishError::Duplicate => NetError::Duplicate(topic),
            PublishError::MessageTooLarge => NetError::TooLarge {
                what: "gossip message",
                size,
                limit: self.max_gossip as u64,
            },
            other => NetError::Publish {
                topic,
                reason: other.to_string(),
            },
        })
    }

    pub(super) fn report(&mut self, id: MsgId, verdict: Verdict) -> Result<(), NetError> {
        let via = self
            .awaiting_verdict
            .take(&id.0)
            .ok_or_else(|| NetError::UnknownMessage(id.to_string()))?;
        let acceptance = match verdict {
            Verdict::Accept => MessageAcceptance::Accept,
            Verdict::Reject => MessageAcceptance::Reject,
            Verdict::Ignore => MessageAcceptance::Ignore,
        };
        self.swarm
            .behaviour_mut()
            .gossip
            .report_message_validation_result(&id.0, &via, acceptance);
        Ok(())
    }

    pub(super) fn penalize(&mut self, peer: PeerId) {
        let score = self.penalties.entry(peer).or_insert(0.0);
        *score -= APP_PENALTY;
        let score = *score;
        warn!(%peer, score, "peer penalised");
        self.swarm
            .behaviour_mut()
            .gossip
            .set_application_score(&peer, score);
    }

    pub(super) fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                self.on_gossip_message(propagation_source, message_id, message);
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                if let Some(topic) = Topic::from_hash(&topic) {
                    self.emit(NetEvent::Subscribed {
                        peer: peer_id,
                        topic,
                    });
                }
            }
            _ => {}
        }
    }

    pub(super) fn on_gossip_message(
        &mut self,
        via: PeerId,
        id: MessageId,
        message: gossipsub::Message,
    ) {
        self.counters.bump(Count::GossipReceived);
        let topic = Topic::from_hash(&message.topic);
        let checked = match (topic, message.source) {
            (Some(topic), Some(author)) if message.data.len() <= self.max_gossip => {
                Some((topic, author))
            }
            _ => None,
        };
        let Some((topic, author)) = checked else {
            // Strict validation guarantees an author and we only join our own topics, so
            // this is a peer relaying something it should not, or an oversized payload.
            warn!(%via, size = message.data.len(), "rejecting malformed or oversized gossip");
            self.swarm
                .behaviour_mut()
                .gossip
                .report_message_validation_result(&id, &via, MessageAcceptance::Reject);
            return;
        };
        self.awaiting_verdict.insert(id.clone(), via);
        let event = GossipMessage {
            id: MsgId(id.clone()),
            topic,
            author,
            via,
            data: message.data,
        };
        if !self.emit(NetEvent::Gossip(event)) && self.awaiting_verdict.take(&id).is_some() {
            self.swarm
                .behaviour_mut()
                .gossip
                .report_message_validation_result(&id, &via, MessageAcceptance::Ignore);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> MessageId {
        MessageId::from(n.to_le_bytes().to_vec())
    }

    #[test]
    fn verdicts_are_taken_once() {
        let mut awaiting = AwaitingVerdict::default();
        let peer = PeerId::random();
        awaiting.insert(id(1), peer);
        assert_eq!(awaiting.take(&id(1)), Some(peer));
        assert_eq!(awaiting.take(&id(1)), None);
    }

    #[test]
    fn oldest_entries_are_forgotten_beyond_the_cap() {
        let mut awaiting = AwaitingVerdict::default();
        let peer = PeerId::random();
        for n in 0..=MAX_AWAITING_VERDICT {
            awaiting.insert(id(n), peer);
        }
        assert_eq!(awaiting.take(&id(0)), None);
        assert_eq!(awaiting.take(&id(MAX_AWAITING_VERDICT)), Some(peer));
        assert!(awaiting.order.len() <= MAX_AWAITING_VERDICT);
    }
}
