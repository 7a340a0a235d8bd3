//! The generic request-response channel between real nodes on loopback.

mod common;

use agora_core::canonical;
use agora_net::{NetError, NetEvent};
use common::{next_request, node_with, pair, until, within};
use serde::{Deserialize, Serialize};

/// What a well-formed request looks like to the test application.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Ping {
    nonce: u64,
    note: String,
}

/// A tiny application: answers well-formed `Ping`s with the nonce plus one and refuses
/// anything else with a typed reason, the way the market node will treat receipts.
async fn serve(mut events: tokio::sync::mpsc::Receiver<NetEvent>) {
    while let Some(event) = events.recv().await {
        let NetEvent::Request(request) = event else {
            continue;
        };
        let answer = match canonical::decode::<Ping>(&request.data) {
            Ok(ping) => request
                .responder
                .respond(canonical::encode(&(ping.nonce + 1))),
            Err(e) => request.responder.reject(format!("malformed request: {e}")),
        };
        answer.expect("answer sent");
    }
}

#[tokio::test]
async fn request_gets_the_applications_answer() {
    let (a, b) = pair("rpc-client", "rpc-server").await;
    tokio::spawn(serve(b.events));
    let ping = Ping {
        nonce: 41,
        note: "hello".into(),
    };
    let answer = within(
        "the answer",
        a.handle
            .request(b.handle.peer_id(), canonical::encode(&ping)),
    )
    .await
    .unwrap();
    assert_eq!(canonical::decode::<u64>(&answer).unwrap(), 42);
}

#[tokio::test]
async fn garbage_gets_an_error_answer_and_the_node_keeps_serving() {
    let (a, b) = pair("garbage-client", "sturdy-server").await;
    let server = b.handle.peer_id();
    tokio::spawn(serve(b.events));
    let garbage = vec![0xff, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x13, 0x37];
    let refused = within("the refusal", a.handle.request(server, garbage)).await;
    match refused {
        Err(NetError::Remote { peer, reason }) => {
            assert_eq!(peer, server);
            assert!(reason.contains("malformed request"), "{reason}");
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
    let ping = Ping {
        nonce: 1,
        note: String::new(),
    };
    let answer = within(
        "a later answer",
        a.handle.request(server, canonical::encode(&ping)),
    )
    .await
    .unwrap();
    assert_eq!(canonical::decode::<u64>(&answer).unwrap(), 2);
}

#[tokio::test]
async fn unanswered_request_fails_instead_of_hanging() {
    let (a, mut b) = pair("impatient", "forgetful").await;
    let server = b.handle.peer_id();
    let ask = tokio::spawn({
        let handle = a.handle.clone();
        async move { handle.request(server, b"anything".to_vec()).await }
    });
    let request = next_request(&mut b.events).await;
    drop(request); // the application forgets to answer
    let result = within("the failure", ask).await.unwrap();
    assert!(matches!(result, Err(NetError::Remote { .. })), "{result:?}");
}

#[tokio::test]
async fn oversized_requests_are_refused_by_both_sides() {
    let strict = node_with("strict-server", &[], |c| c.max_rpc_bytes = 1024).await;
    let addr = strict.handle.bootstrap_addr().await.unwrap();
    let lax = node_with("lax-client", &[addr], |c| c.max_rpc_bytes = 1 << 20).await;
    let server = strict.handle.peer_id();
    let (client, probe) = (lax.handle.clone(), strict.handle.clone());
    until("the nodes to connect", || async {
        client.peers().await.unwrap().contains(&server)
    })
    .await;
    tokio::spawn(serve(strict.events));

    // Locally: over our own limit, nothing is sent.
    let too_big = vec![1u8; 2 << 20];
    let local = lax.handle.request(server, too_big).await;
    assert!(
        matches!(
            local,
            Err(NetError::TooLarge {
                what: "request",
                ..
            })
        ),
        "{local:?}"
    );

    // Remotely: over the server's limit, the server refuses to read it.
    let remote = within(
        "the refusal",
        lax.handle.request(server, vec![2u8; 64 * 1024]),
    )
    .await;
    assert!(
        matches!(remote, Err(NetError::Request { .. })),
        "{remote:?}"
    );
    let ping = Ping {
        nonce: 9,
        note: "small".into(),
    };
    let answer = within(
        "a later answer",
        lax.handle.request(server, canonical::encode(&ping)),
    )
    .await
    .unwrap();
    assert_eq!(canonical::decode::<u64>(&answer).unwrap(), 10);
    assert!(probe.peers().await.unwrap().contains(&lax.handle.peer_id()));
}

#[tokio::test]
async fn request_to_a_stopped_node_fails_with_a_typed_error() {
    let (a, b) = pair("survivor", "quitter").await;
    let gone = b.handle.peer_id();
    b.handle.shutdown().await.unwrap();
    let result = within("the failure", a.handle.request(gone, b"hello?".to_vec())).await;
    assert!(
        matches!(result, Err(NetError::Request { .. })),
        "{result:?}"
    );
    // The stopped node's own handle says so too.
    assert!(matches!(b.handle.peers().await, Err(NetError::Stopped)));
}
