//! Building the swarm, binding its listeners and dialling bootstrap peers.

use std::time::Duration;

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm, noise, tcp, yamux};
use tracing::warn;

use crate::behaviour::Behaviour;
use crate::config::NetConfig;
use crate::error::NetError;

/// How long `start` waits for the listeners to bind.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// TCP + noise + yamux, and QUIC (its own encryption and multiplexing) with the `quic`
/// feature.
pub(super) fn build_swarm(
    key: libp2p::identity::Keypair,
    config: &NetConfig,
) -> Result<Swarm<Behaviour>, NetError> {
    let builder = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetError::Config(format!("transport: {e}")))?;
    #[cfg(feature = "quic")]
    let builder = builder.with_quic();
    let swarm = builder
        .with_behaviour(|key| Behaviour::new(key, config).map_err(Into::into))
        .map_err(|e| NetError::Config(format!("behaviour: {e}")))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_timeout))
        .build();
    Ok(swarm)
}

/// Binds every listen address and waits until each has reported a concrete address, so
/// `listen_addrs` is meaningful as soon as `start` returns.
pub(super) async fn listen(
    swarm: &mut Swarm<Behaviour>,
    addrs: &[Multiaddr],
) -> Result<(), NetError> {
    for addr in addrs {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    let mut bound = 0;
    let wait = async {
        while bound < addrs.len() {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { .. } => bound += 1,
                SwarmEvent::ListenerClosed {
                    addresses, reason, ..
                } => {
                    let reason = reason.err().map(|e| e.to_string()).unwrap_or_default();
                    let addr = addresses
                        .into_iter()
                        .next()
                        .unwrap_or_else(Multiaddr::empty);
                    return Err(NetError::Listen { addr, reason });
                }
                SwarmEvent::ListenerError { error, .. } => {
                    let addr = addrs.first().cloned().unwrap_or_else(Multiaddr::empty);
                    return Err(NetError::Listen {
                        addr,
                        reason: error.to_string(),
                    });
                }
                _ => {}
            }
        }
        Ok(())
    };
    tokio::time::timeout(LISTEN_TIMEOUT, wait)
        .await
        .map_err(|_| NetError::Listen {
            addr: addrs.first().cloned().unwrap_or_else(Multiaddr::empty),
            reason: "the listener did not report an address in time".into(),
        })?
}

pub(super) fn dial_bootstrap(swarm: &mut Swarm<Behaviour>, addr: &Multiaddr) {
    if let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() {
        swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
    }
    // A bootstrap peer that is down is not fatal: the others (or a later dial) may work.
    if let Err(e) = swarm.dial(addr.clone()) {
        warn!(%addr, error = %e, "cannot dial bootstrap peer");
    }
}
