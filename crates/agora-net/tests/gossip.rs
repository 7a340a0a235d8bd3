//! Gossip between real nodes on loopback: discovery, every topic, validation, limits.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use agora_net::{NetError, NetEvent, Topic, Verdict, peer_id_of};
use common::{next_gossip, node, node_with, pair, publish_when_ready, until, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_discover_each_other_and_gossip_on_every_topic() {
    let boot = node("boot", &[]).await;
    let addr = boot.handle.bootstrap_addr().await.unwrap();
    let b = node("b", std::slice::from_ref(&addr)).await;
    // c joins once the bootstrap peer knows b, so c's first lookup can return b. (Two
    // nodes that join at the same instant may both ask before the bootstrap peer knows
    // either; they then find each other at the next periodic refresh, a minute later.)
    let (hboot, hb) = (boot.handle.clone(), b.handle.clone());
    until("the bootstrap peer to know b", || async {
        hboot.peers().await.unwrap().contains(&hb.peer_id())
    })
    .await;
    let mut c = node("c", &[addr]).await;

    // b and c only know the bootstrap peer; discovery must connect them directly.
    let hc = c.handle.clone();
    until("b and c to find each other", || async {
        hb.peers().await.unwrap().contains(&hc.peer_id())
            && hc.peers().await.unwrap().contains(&hb.peer_id())
    })
    .await;

    for topic in Topic::ALL {
        let payload = format!("{topic} from b").into_bytes();
        publish_when_ready(&b.handle, topic, payload.clone())
            .await
            .unwrap();
        let message = next_gossip(&mut c.events).await;
        assert_eq!(message.topic, topic);
        assert_eq!(message.data, payload);
        assert_eq!(message.author, b.handle.peer_id());
        // The binding the application relies on: author peer ↔ signing account.
        assert_eq!(message.author_account().unwrap(), b.key.account());
        c.handle.report(&message.id, Verdict::Accept).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_without_discovery_talk_to_their_bootstrap_peer_only() {
    let hub = node("hub", &[]).await;
    let addr = hub.handle.bootstrap_addr().await.unwrap();
    let leaf = |name| {
        node_with(name, std::slice::from_ref(&addr), |c| {
            c.discover_peers = false
        })
    };
    let (b, c, mut d) = (leaf("b").await, leaf("c").await, leaf("d").await);
    let mut hub = hub;
    let hh = hub.handle.clone();
    let leaves = [b.handle.peer_id(), c.handle.peer_id(), d.handle.peer_id()];
    // Every leaf subscribed at the hub, so the hub's relay reaches each of them.
    until("the hub to have every leaf subscribed", || async {
        let peers = hh.peers().await.unwrap();
        let subscribed = hh.topic_peers(Topic::Asks).await.unwrap();
        leaves
            .iter()
            .all(|leaf| peers.contains(leaf) && subscribed.contains(leaf))
    })
    .await;
    // Gossip from a leaf still reaches the hub, and the hub's relay the other leaves.
    publish_when_ready(&b.handle, Topic::Asks, b"ask from b".to_vec())
        .await
        .unwrap();
    let message = next_gossip(&mut hub.events).await;
    assert_eq!(message.author, b.handle.peer_id());
    hub.handle
        .report(&message.id, Verdict::Accept)
        .await
        .unwrap();
    let relayed = next_gossip(&mut d.events).await;
    assert_eq!(relayed.data, b"ask from b");
    // Several discovery rounds later the leaves still know the hub alone (with
    // discovery on they find each other within one; see the test above).
    tokio::time::sleep(Duration::from_secs(2)).await;
    for leaf in [&b, &c, &d] {
        assert_eq!(leaf.handle.peers().await.unwrap(), vec![hh.peer_id()]);
    }
    let stats = b.handle.stats();
    assert_eq!(stats.gossip_published, 1);
    assert!(stats.connections_opened >= 1);
    assert!(hub.handle.stats().gossip_received >= 1);
}

#[tokio::test]
async fn node_peer_id_is_its_account_key() {
    let n = node("binding", &[]).await;
    assert_eq!(n.handle.peer_id(), peer_id_of(&n.key.account()).unwrap());
    assert_eq!(
        agora_net::account_of(&n.handle.peer_id()).unwrap(),
        n.key.account()
    );
}

#[tokio::test]
async fn rejected_gossip_lowers_the_senders_score() {
    let (mut a, b) = pair("honest-a", "liar-b").await;
    let liar = b.handle.peer_id();
    publish_when_ready(&b.handle, Topic::Bids, b"not a signed bid".to_vec())
        .await
        .unwrap();
    let message = next_gossip(&mut a.events).await;
    let before = a.handle.peer_score(liar).await.unwrap().unwrap_or(0.0);
    a.handle.report(&message.id, Verdict::Reject).await.unwrap();
    let after = a.handle.peer_score(liar).await.unwrap().unwrap_or(0.0);
    assert!(
        after < before && after < 0.0,
        "score went from {before} to {after}"
    );
    // A verdict counts once; a second report is a caller bug, and says so.
    let again = a.handle.report(&message.id, Verdict::Accept).await;
    assert!(
        matches!(again, Err(NetError::UnknownMessage(_))),
        "{again:?}"
    );

    // A second rejection graylists the liar: what it sends next is not even delivered.
    publish_when_ready(&b.handle, Topic::Bids, b"another bogus bid".to_vec())
        .await
        .unwrap();
    let second = next_gossip(&mut a.events).await;
    a.handle.report(&second.id, Verdict::Reject).await.unwrap();
    let graylisted = a.handle.peer_score(liar).await.unwrap().unwrap_or(0.0);
    assert!(
        graylisted <= -80.0,
        "score after two rejections: {graylisted}"
    );
    b.handle
        .publish(Topic::Bids, b"a third try".to_vec())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    while let Ok(event) = a.events.try_recv() {
        assert!(
            !matches!(event, NetEvent::Gossip(_)),
            "graylisted peer was heard: {event:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_gossip_is_refused_by_sender_and_receiver() {
    // `big` allows 1 MiB messages; `strict` and `honest` keep the 256 KiB default.
    let mut strict = node("strict-limit", &[]).await;
    let addr = strict.handle.bootstrap_addr().await.unwrap();
    let big = node_with("big-limit", std::slice::from_ref(&addr), |c| {
        c.max_gossip_bytes = 1 << 20
    })
    .await;
    let honest = node("honest-peer", &[addr]).await;

    let oversized = vec![7u8; 300 * 1024];
    let refused = strict.handle.publish(Topic::Asks, oversized.clone()).await;
    assert!(
        matches!(refused, Err(NetError::TooLarge { limit, .. }) if limit == 256 * 1024),
        "{refused:?}"
    );

    // The permissive node sends it anyway: the strict node must drop it, stay up and
    // keep receiving from everyone else.
    publish_when_ready(&big.handle, Topic::Asks, oversized)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let normal = b"a normal ask".to_vec();
    publish_when_ready(&honest.handle, Topic::Asks, normal.clone())
        .await
        .unwrap();
    let received = next_gossip(&mut strict.events).await;
    assert_eq!(
        received.data, normal,
        "the oversized message must never be delivered"
    );
    assert_eq!(received.author, honest.handle.peer_id());
    // Nothing oversized trails in afterwards either.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(event) = strict.events.try_recv() {
        if let NetEvent::Gossip(late) = event {
            assert!(
                late.data.len() <= 256 * 1024,
                "oversized gossip was delivered"
            );
        }
    }
    let peers = strict.handle.peers().await.unwrap();
    assert!(peers.contains(&honest.handle.peer_id()), "{peers:?}");
}

#[tokio::test]
async fn subscriptions_are_reported_for_every_topic() {
    let (mut a, b) = pair("sub-a", "sub-b").await;
    let mut seen = BTreeSet::new();
    within("subscriptions on every topic", async {
        while seen.len() < Topic::ALL.len() {
            if let Some(NetEvent::Subscribed { peer, topic }) = a.events.recv().await {
                assert_eq!(peer, b.handle.peer_id());
                seen.insert(topic);
            }
        }
    })
    .await;
}
