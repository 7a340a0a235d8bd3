//! Discovery on the network task: identify feeds Kademlia, Kademlia finds peers, and
//! every peer found is dialled so gossip can reach it (unless
//! [`crate::NetConfig::discover_peers`] is off). The routing table is refreshed every
//! [`ROUTING_REFRESH`] while it holds anyone to ask.

use std::time::Duration;

use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{identify, kad};
use tokio::time::{Interval, MissedTickBehavior};
use tracing::debug;

use super::Driver;
use crate::behaviour::KAD_PROTOCOL;

/// How often a discovering node asks the network again for the peers closest to it.
pub(super) const ROUTING_REFRESH: Duration = Duration::from_secs(60);

/// The refresh timer: its first tick comes one period from now, not at once.
pub(super) fn refresh_timer() -> Interval {
    let start = tokio::time::Instant::now() + ROUTING_REFRESH;
    let mut timer = tokio::time::interval_at(start, ROUTING_REFRESH);
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    timer
}

/// The next tick of `timer`; never, for a node without one.
pub(super) async fn next_refresh(timer: &mut Option<Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

impl Driver {
    /// Refreshes the routing table from the peers in it. A node whose table is empty (a
    /// market whose providers stay out of discovery) has nobody to ask, and that is not
    /// worth a warning: identify bootstraps as soon as a discovering peer connects.
    pub(super) fn refresh_routing(&mut self) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        let known = kad
            .kbuckets()
            .map(|bucket| bucket.num_entries())
            .sum::<usize>();
        if known == 0 {
            return;
        }
        if let Err(e) = kad.bootstrap() {
            debug!(error = %e, known, "kademlia refresh not possible");
        }
    }

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
