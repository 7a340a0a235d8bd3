//! Gossipsub configuration: message ids, validation and peer scoring.
//!
//! Every message is signed by its author's libp2p key (`ValidationMode::Strict`), so the
//! author of a message is authenticated at the transport level and maps to an account
//! (see [`crate::identity`]). Messages are held back (not forwarded) until the
//! application reports a verdict, so an invalid message dies at the first honest node.
//!
//! Scoring is tuned for a market where honest nodes only forward messages they have
//! validated: a rejected message is strong evidence against the peer that sent it, so
//! each one costs a lot, while quiet peers are never punished for not publishing.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use libp2p::gossipsub::{
    self, ConfigBuilder, MessageAuthenticity, MessageId, PeerScoreParams, PeerScoreThresholds,
    TopicScoreParams, ValidationMode, score_parameter_decay,
};
use libp2p::identity::Keypair;

use crate::topic::Topic;

/// Room for what gossipsub wraps around a payload (signature, key, topic, sequence number).
const ENVELOPE_BYTES: usize = 4 * 1024;

/// Penalty per rejected message, squared by gossipsub: one rejection (-25) stops us
/// gossiping to the peer but still lets it publish; a second (-100) graylists it, so
/// everything it sends is ignored until the penalty decays.
const INVALID_MESSAGE_WEIGHT: f64 = -25.0;

/// Application-level score subtracted per misbehaviour outside gossip, such as serving a
/// blob whose content does not match its hash. Two such strikes push a peer below the
/// publish threshold.
pub(crate) const APP_PENALTY: f64 = 30.0;

/// The content-addressed message id: blake3 over topic and payload. Republishing the same
/// bytes is a duplicate however many peers relay it, which also defeats cheap replays.
fn message_id(message: &gossipsub::Message) -> MessageId {
    let hash = agora_core::Hash::tagged(
        "agora-net gossip message id v1",
        &[message.topic.as_str().as_bytes(), &message.data],
    );
    MessageId::from(hash.0.to_vec())
}

/// Builds the gossipsub behaviour for a node with `key`, accepting payloads up to
/// `max_payload` bytes.
pub(crate) fn behaviour(key: &Keypair, max_payload: usize) -> Result<gossipsub::Behaviour, String> {
    let config = ConfigBuilder::default()
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(message_id)
        .max_transmit_size(max_payload + ENVELOPE_BYTES)
        .heartbeat_interval(Duration::from_millis(700))
        .build()
        .map_err(|e| format!("gossipsub config: {e}"))?;
    let mut gossip = gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), config)
        .map_err(|e| format!("gossipsub: {e}"))?;
    gossip.with_peer_score(score_params(), score_thresholds())?;
    for topic in Topic::ALL {
        gossip
            .subscribe(&topic.ident())
            .map_err(|e| format!("subscribe to {topic}: {e}"))?;
    }
    Ok(gossip)
}

fn score_params() -> PeerScoreParams {
    PeerScoreParams {
        topics: Topic::ALL
            .into_iter()
            .map(|t| (t.hash(), topic_params()))
            .collect(),
        // Good behaviour cannot bank unlimited credit to offset later misbehaviour.
        topic_score_cap: 50.0,
        app_specific_weight: 1.0,
        // Devnets and benchmarks run many nodes on one host; colocation there is expected.
        ip_colocation_factor_whitelist: loopback(),
        ..PeerScoreParams::default()
    }
}

fn loopback() -> HashSet<IpAddr> {
    [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ]
    .into_iter()
    .collect()
}

fn topic_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        // Small, capped credit for staying in the mesh and for delivering new messages.
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 1000.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: score_parameter_decay(Duration::from_secs(600)),
        first_message_deliveries_cap: 20.0,
        // Market traffic is bursty; a mesh peer that relays little is not misbehaving.
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: INVALID_MESSAGE_WEIGHT,
        // Forgiven over about an hour.
        invalid_message_deliveries_decay: score_parameter_decay(Duration::from_secs(3600)),
        ..TopicScoreParams::default()
    }
}

fn score_thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: -80.0,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 5.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_configuration_is_valid() {
        score_params().validate().unwrap();
        score_thresholds().validate().unwrap();
        let key = Keypair::generate_ed25519();
        assert!(behaviour(&key, 1024).is_ok());
    }

    #[test]
    fn one_rejection_stops_gossip_two_graylist() {
        let t = score_thresholds();
        let one = INVALID_MESSAGE_WEIGHT;
        let two = INVALID_MESSAGE_WEIGHT * 4.0;
        assert!(one < t.gossip_threshold && one > t.publish_threshold);
        // gossipsub graylists strictly below the threshold.
        assert!(two < t.graylist_threshold);
    }
}
