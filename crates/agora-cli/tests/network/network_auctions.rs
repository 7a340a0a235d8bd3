//! Auctions between real processes: one `agora node market` and three `agora node
//! provider`s on loopback, asking 20 M, 22 M and 24 M base units per CU (LocalNet's
//! spread). The agents watch the market's auction notices and bid or accept on their own.
//!
//! - A sealed-bid auction takes all three bids, keeps them hidden until the close, picks
//!   the cheapest, settles at its bid, and shows every signed bid and their digest after.
//! - A rising Dutch clock is accepted by the cheapest provider within one step of its price.
//! - Bad bids and acceptances are refused with a clear error and change nothing: after the
//!   window, above the cap, by a provider with no ask, a second bid, an unknown order, a bad
//!   signature, a stale clock price, a second acceptance, an acceptance after the clock.
//! - A clock nobody accepts refunds the whole escrow.

use std::time::Duration;

use crate::common_net::{AGORA, TestNet, job, sample};
use agora_core::{Hash, Keypair, Price, Signed};
use agora_market::{AskId, MatchTerms};
use agora_proto::api::{AuctionView, SubmitAccept, SubmitBid};
use agora_proto::wire::{Bid, DutchAccept};
use agora_proto::{OrderState, hexed};

const CHEAPEST: Price = Price(20_000_000);

fn provider_key(t: &TestNet, index: usize) -> Keypair {
    agora_client::wallet::load_wallet(&t.net.providers[index].wallet).expect("provider wallet")
}

fn signed_bid(t: &TestNet, key: &Keypair, order: Hash, price: Price, nonce: u64) -> String {
    let account = key.account();
    let bid = Bid {
        order_id: order,
        provider: account,
        ask: AskId::named(&account, "agent"),
        price,
    };
    hexed::encode(&Signed::sign(key, &t.net_chain(), nonce, bid))
}

fn signed_accept(
    t: &TestNet,
    key: &Keypair,
    order: Hash,
    step: u32,
    price: Price,
    nonce: u64,
) -> String {
    let account = key.account();
    let accept = DutchAccept {
        order_id: order,
        provider: account,
        ask: AskId::named(&account, "agent"),
        step,
        price,
    };
    hexed::encode(&Signed::sign(key, &t.net_chain(), nonce, accept))
}

trait Chain {
    fn net_chain(&self) -> agora_core::ChainId;
}

impl Chain for TestNet {
    fn net_chain(&self) -> agora_core::ChainId {
        agora_core::ChainId::new(&self.info.chain_id)
    }
}

/// POSTs a bid; the status and the error code or view.
async fn post_bid(t: &TestNet, order: Hash, bid: String) -> (u16, serde_json::Value) {
    post(t, &format!("/v1/orders/{order}/bids"), &SubmitBid { bid }).await
}

async fn post_accept(t: &TestNet, order: Hash, accept: String) -> (u16, serde_json::Value) {
    post(
        t,
        &format!("/v1/orders/{order}/accept"),
        &SubmitAccept { accept },
    )
    .await
}

async fn post<T: serde::Serialize>(t: &TestNet, path: &str, body: &T) -> (u16, serde_json::Value) {
    let response = t
        .http
        .post(format!("{}{path}", t.net.http_url))
        .json(body)
        .send()
        .await
        .expect("the market answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

async fn auction(t: &TestNet, order: Hash) -> AuctionView {
    t.http
        .get(format!("{}/v1/orders/{order}/auction", t.net.http_url))
        .send()
        .await
        .expect("the market answers")
        .json()
        .await
        .expect("an auction view")
}

fn refused(answer: &(u16, serde_json::Value), status: u16, says: &str) {
    assert_eq!(answer.0, status, "{:?}", answer.1);
    let message = answer.1["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "expected {says:?} in {message:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_auction_picks_the_cheapest_bid_and_refuses_bad_ones() {
    let t = TestNet::start(3, |_| {}).await;
    let cheapest = t.net.providers[0].account;
    let mut request = job("hashchain", &["100".into(), "1".into()]);
    request.auction = "sealed:3s".parse().expect("terms");
    let submitted = t.buyer.submit_job(&request).await.expect("submitted");
    let id = submitted.order_id;

    // While the window is open, the bids are sealed.
    let open = auction(&t, id).await;
    assert_eq!(open.status, "open", "{open:?}");
    assert!(
        open.bids.is_empty() && open.bids_digest.is_none(),
        "{open:?}"
    );
    assert_eq!(open.terms, "sealed:3s:first");

    // Bad bids, each refused and recorded nowhere.
    let key = provider_key(&t, 2);
    let above = signed_bid(&t, &key, id, Price(request.max_price.0 + 1), 9_001);
    refused(
        &post_bid(&t, id, above).await,
        409,
        "exceeds the order's cap",
    );
    let stranger = Keypair::from_seed("a provider with no ask");
    let no_ask = signed_bid(&t, &stranger, id, CHEAPEST, 1);
    refused(&post_bid(&t, id, no_ask).await, 409, "ask");
    let unknown = Hash::of(b"no such order");
    let lost = signed_bid(&t, &key, unknown, CHEAPEST, 9_002);
    refused(&post_bid(&t, unknown, lost).await, 404, "not known");
    let mut forged: Signed<Bid> =
        hexed::decode(&signed_bid(&t, &key, id, Price(1), 9_003), "bid").expect("decodes");
    forged.body.price = Price(2);
    refused(
        &post_bid(&t, id, hexed::encode(&forged)).await,
        400,
        "signature",
    );
    // The agents bid as soon as the notice arrives; a second bid from one is refused.
    let view = t
        .wait_order(&id, Duration::from_secs(3), "bid on", |_| true)
        .await;
    assert_eq!(view.state, OrderState::Escrowed, "{view:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while auction(&t, id).await.bid_count < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = signed_bid(&t, &key, id, Price(21_000_000), 9_004);
    refused(&post_bid(&t, id, second).await, 409, "already");

    let settled = t.wait_final(&id, Duration::from_secs(60)).await;
    assert_eq!(
        settled.state,
        OrderState::Settled,
        "{settled:#?}\n{}",
        t.logs()
    );
    assert_eq!(settled.provider, Some(cheapest));
    assert_eq!(settled.price, Some(CHEAPEST));

    let closed = auction(&t, id).await;
    assert_eq!(closed.status, "won", "{closed:?}");
    assert_eq!(closed.winner, Some(cheapest));
    assert_eq!(closed.bid_count, 3, "{closed:?}");
    let mut prices: Vec<u64> = closed.bids.iter().map(|b| b.price.0).collect();
    prices.sort_unstable();
    assert_eq!(prices, [20_000_000, 22_000_000, 24_000_000]);
    // Anyone can check each bid's signature and recompute the digest.
    let mut encoded = Vec::new();
    for b in &closed.bids {
        let bytes = hex::decode(&b.signed).expect("hex");
        let bid: Signed<Bid> = agora_core::canonical::decode(&bytes).expect("a signed bid");
        bid.verify(&t.net_chain()).expect("a valid signature");
        assert_eq!(bid.body.provider, b.provider);
        encoded.push(bytes);
    }
    let parts: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    assert_eq!(
        closed.bids_digest,
        Some(Hash::tagged("agora/auction-bids/v1", &parts))
    );
    // The winner was assigned after the window closed, never before.
    let matched = settled
        .events
        .iter()
        .find(|e| e.state == OrderState::Matched)
        .expect("a matched event");
    assert!(matched.at_ms >= closed.closes_ms, "{settled:#?}");

    // After the close a bid is refused.
    let late = signed_bid(&t, &key, id, CHEAPEST, 9_005);
    refused(&post_bid(&t, id, late).await, 409, "over");

    // The ledger holds the market's record of the auction: the digest, the winner.
    let recorded: Vec<_> = t
        .blocks()
        .await
        .into_iter()
        .flat_map(|b| b.txs)
        .filter_map(|tx| match tx.body {
            agora_ledger::TxBody::RecordAuction {
                order_id,
                bids,
                bids_digest,
                winner,
                ..
            } if order_id == id => Some((bids, bids_digest, winner, tx.signer)),
            _ => None,
        })
        .collect();
    assert_eq!(
        recorded,
        [(
            3,
            closed.bids_digest.expect("a digest"),
            Some((cheapest, CHEAPEST)),
            t.info.market
        )]
    );

    // An auction nobody can bid in (its cap is below every provider's price) refunds
    // the whole escrow at the close.
    let mut cheap = job("hashchain", &["100".into(), "1".into()]);
    cheap.max_price = Price(1_000_000);
    cheap.auction = "sealed:1s".parse().expect("terms");
    let id = t
        .buyer
        .submit_job(&cheap)
        .await
        .expect("submitted")
        .order_id;
    let refunded = t.wait_final(&id, Duration::from_secs(30)).await;
    assert_eq!(refunded.state, OrderState::Refunded, "{refunded:#?}");
    assert_eq!(refunded.refunded, refunded.escrow);
    assert!(
        refunded
            .refund_reason
            .as_deref()
            .is_some_and(|r| r.contains("closed with no bids")),
        "{refunded:?}"
    );
    assert_eq!(auction(&t, id).await.status, "no_bids");
    t.assert_ledger_sound().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rising_dutch_clock_settles_within_a_step_of_the_cheapest_price() {
    let t = TestNet::start(3, |_| {}).await;
    let cheapest = t.net.providers[0].account;
    let key = provider_key(&t, 1);

    // 10 steps of 1 s from 1 M to 30 M: the cheapest (20 M) is reached at step 6.
    let mut request = job("hashchain", &["100".into(), "1".into()]);
    let terms: MatchTerms = "dutch:1000000..30000000/10s".parse().expect("terms");
    let MatchTerms::Dutch(schedule) = terms else {
        unreachable!()
    };
    request.auction = terms;
    let id = t
        .buyer
        .submit_job(&request)
        .await
        .expect("submitted")
        .order_id;

    // Early on the clock is at step 0; accepting a later step's price is stale.
    let open = auction(&t, id).await;
    let clock = open.clock.clone().expect("the clock runs");
    assert!(clock.step <= 1, "{open:?}");
    let stale = signed_accept(&t, &key, id, 5, schedule.price_of(5), 9_100);
    refused(&post_accept(&t, id, stale).await, 409, "stale");

    let settled = t.wait_final(&id, Duration::from_secs(60)).await;
    assert_eq!(
        settled.state,
        OrderState::Settled,
        "{settled:#?}\n{}",
        t.logs()
    );
    assert_eq!(settled.provider, Some(cheapest));
    let price = settled.price.expect("a price");
    assert!(price >= CHEAPEST, "{price}");
    assert!(
        price.0 - CHEAPEST.0 <= schedule.max_step_rise().0,
        "settled at {price}, more than one step ({}) above {CHEAPEST}",
        schedule.max_step_rise()
    );
    let won = auction(&t, id).await;
    assert_eq!(won.status, "won");
    assert_eq!(won.bid_count, 1, "{won:?}");

    // A second acceptance is refused: the first one won.
    let again = signed_accept(&t, &key, id, 9, schedule.price_of(9), 9_101);
    refused(&post_accept(&t, id, again).await, 409, "already won");

    // A clock below every provider's price ends unaccepted and refunds everything.
    let mut low = job("hashchain", &["100".into(), "1".into()]);
    low.auction = "dutch:1..2/1s".parse().expect("terms");
    let id = t.buyer.submit_job(&low).await.expect("submitted").order_id;
    let refunded = t.wait_final(&id, Duration::from_secs(30)).await;
    assert_eq!(refunded.state, OrderState::Refunded, "{refunded:#?}");
    assert_eq!(refunded.refunded, refunded.escrow);
    assert!(
        refunded
            .refund_reason
            .as_deref()
            .is_some_and(|r| r.contains("without an acceptance")),
        "{refunded:?}"
    );
    let after = signed_accept(&t, &key, id, 1, Price(2), 9_102);
    refused(&post_accept(&t, id, after).await, 409, "over");

    // From the command line, a uniform-price sealed auction: the cheapest wins and is
    // paid the second-best bid.
    let mut command = tokio::process::Command::new(AGORA);
    command
        .args(["job", "run", "--json", "--verify", "none"])
        .args(["--auction", "sealed:1s:uniform"])
        .args(["--market", &t.net.http_url, "--wallet"])
        .arg(&t.net.buyer_wallets[0])
        .arg("--output-dir")
        .arg(t.scratch("out"))
        .arg(sample("hashchain"))
        .args(["--", "100", "1"])
        .env("TMPDIR", t.scratch("tmp"))
        .kill_on_drop(true);
    let output = t
        .within(Duration::from_secs(60), "agora job run", command.output())
        .await
        .expect("the agora binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}
{}",
        t.logs()
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON summary");
    let id: Hash = summary["order_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("an order id");
    let view = t.order(&id).await;
    assert_eq!(view.provider, Some(cheapest));
    assert_eq!(view.price, Some(Price(22_000_000)), "{view:#?}");
    assert_eq!(auction(&t, id).await.terms, "sealed:1s:uniform");
    t.assert_ledger_sound().await;
}
