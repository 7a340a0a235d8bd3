//! Starting and stopping nodes: configuration and listen errors are typed, a dead
//! bootstrap peer is not fatal, and a stopped node says so.

mod common;

use agora_net::{NetError, Network};
use common::{config, node, within};

#[tokio::test]
async fn invalid_configuration_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config("bad-config", &dir);
    cfg.chunk_bytes = 0;
    let result = Network::start(cfg).await;
    assert!(matches!(result, Err(NetError::Config(ref reason)) if reason.contains("chunk_bytes")));
}

#[tokio::test]
async fn unusable_listen_addresses_are_listen_errors() {
    // An address of another host (TEST-NET-3) cannot be bound; a transport we do not
    // run cannot be listened on at all.
    let unsupported = if cfg!(feature = "quic") {
        "/ip4/127.0.0.1/tcp/0/ws"
    } else {
        "/ip4/127.0.0.1/udp/0/quic-v1"
    };
    for bad in ["/ip4/203.0.113.7/tcp/0", unsupported] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config("misconfigured", &dir);
        cfg.listen = vec![bad.parse().unwrap()];
        let result = Network::start(cfg).await;
        assert!(
            matches!(result, Err(NetError::Listen { .. })),
            "{bad}: {result:?}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_bootstrap_peer_is_not_fatal() {
    // Port 9 (discard) on loopback: nothing listens, the dial fails fast.
    let dead: agora_net::Multiaddr = "/ip4/127.0.0.1/tcp/9".parse().unwrap();
    let lonely = node("lonely", &[dead]).await;
    assert!(lonely.handle.peers().await.unwrap().is_empty());
    let addr = lonely.handle.bootstrap_addr().await.unwrap();
    assert!(
        addr.to_string()
            .ends_with(&lonely.handle.peer_id().to_string())
    );
}

#[tokio::test]
async fn shutdown_stops_the_node_and_handles_report_it() {
    let n = node("short-lived", &[]).await;
    within("shutdown", n.handle.shutdown()).await.unwrap();
    assert!(matches!(
        n.handle.listen_addrs().await,
        Err(NetError::Stopped)
    ));
    let publish = n
        .handle
        .publish(agora_net::Topic::Asks, b"late".to_vec())
        .await;
    assert!(matches!(publish, Err(NetError::Stopped)), "{publish:?}");
}

#[cfg(feature = "quic")]
#[tokio::test]
async fn nodes_talk_over_quic() {
    let quic: agora_net::Multiaddr = "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap();
    let server = common::node_with("quic-server", &[], |c| c.listen = vec![quic.clone()]).await;
    let addr = server.handle.bootstrap_addr().await.unwrap();
    assert!(addr.to_string().contains("quic-v1"), "{addr}");
    let client = common::node_with("quic-client", &[addr], |c| c.listen = vec![quic]).await;
    let hash = server.handle.store().put_bytes(b"over quic").unwrap();
    let path = within(
        "a fetch over QUIC",
        client.handle.fetch_blob(server.handle.peer_id(), hash),
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), b"over quic");
}
