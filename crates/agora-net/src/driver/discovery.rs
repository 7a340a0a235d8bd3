//! Discovery on the network task: identify feeds Kademlia, Kademlia finds peers, and
//! every peer found is dialled so gossip can reach it (unless
//! [`crate::NetConfig::discover_peers`] is off).

use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{identify, kad};
use tracing::debug;

use super::Driver;
use crate::behaviour::KAD_PROTOCOL;

impl Driver {
    pub(super) fn on_identify(&mut self, event: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = event else {
            return;
        };
        if !info.protocols.contains(&KAD_PROTOCOL) {
            return;
        }
        let kad = &mut self.swarm.behaviour_mut().kad;
        for addr in info.listen_addrs {
            kad.add_address(&peer_id, addr);
        }
        // Ask the new peer for the peers closest to us: this is how a node that only
        // knows a bootstrap peer learns about the rest of the network.
        if !self.discover_peers {
            return;
        }
        if let Err(e) = kad.bootstrap() {
            debug!(error = %e, "kademlia bootstrap not possible yet");
        }
    }

    pub(super) fn on_kad(&mut self, event: kad::Event) {
        if let kad::Event::RoutingUpdated {
            peer, addresses, ..
        } = event
            && self.discover_peers
            && !self.swarm.is_connected(&peer)
        {
            // Gossip only reaches connected peers, so connect to everyone kad finds.
            let opts = DialOpts::peer_id(peer)
                .addresses(addresses.into_vec())
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                debug!(%peer, error = %e, "cannot dial discovered peer");
            }
        }
    }
}
