//! End-to-end scenarios of the market's public API.

mod common;

use agora_core::{Amount, Fuel, Price};
use agora_market::resources::GIB;
use agora_market::{
    AttributeConstraint, AuctionTerms, Bid, Market, MarketError, MatchOutcome, PricingRule,
    ReleaseReason, ReputationEvent, ResourceClass,
};
use common::*;

fn filled(outcome: MatchOutcome) -> agora_market::Fill {
    match outcome {
        MatchOutcome::Filled(fill) => fill,
        MatchOutcome::NoMatch(why) => panic!("expected a fill, got: {why}"),
    }
}

#[test]
fn instant_match_takes_the_lowest_price_and_reserves_capacity() {
    let mut m = Market::default();
    m.upsert_ask(cpu_ask(1, "a", 4, 120, &[]), 0).unwrap();
    m.upsert_ask(cpu_ask(2, "b", 4, 100, &[]), 0).unwrap();
    let fill = filled(m.submit_order(cpu_order(1, 3, 200), 0).unwrap());
    assert_eq!(fill.winners.len(), 1);
    assert_eq!(fill.winners[0].provider, provider(2));
    assert_eq!(fill.winners[0].price, Price(100));
    let free = m.free_capacity(&fill.winners[0].ask).unwrap();
    assert_eq!(free.cpu_millis, 1000);
    // The next 3-core order cannot fit on provider 2 any more.
    let fill2 = filled(m.submit_order(cpu_order(2, 3, 200), 0).unwrap());
    assert_eq!(fill2.winners[0].provider, provider(1));
    // Releasing gives the capacity back at once.
    m.release(&fill.winners[0].match_id, ReleaseReason::Completed)
        .unwrap();
    assert_eq!(
        m.free_capacity(&fill.winners[0].ask).unwrap().cpu_millis,
        4000
    );
    assert!(matches!(
        m.complete(&fill.winners[0].match_id),
        Err(MarketError::UnknownMatch(_))
    ));
    m.audit().unwrap();
}

#[test]
fn a_slightly_dearer_much_more_reliable_provider_wins() {
    let mut m = Market::default();
    m.upsert_ask(cpu_ask(1, "cheap", 4, 100, &[]), 0).unwrap();
    m.upsert_ask(cpu_ask(2, "reliable", 4, 110, &[]), 0)
        .unwrap();
    for _ in 0..50 {
        m.record_event(provider(2), ReputationEvent::VerifiedCompletion, 0);
    }
    m.record_event(provider(1), ReputationEvent::ProvenFault, 0);
    m.set_stake(provider(2), Amount::agr(1_000));
    let fill = filled(m.submit_order(cpu_order(1, 1, 200), 0).unwrap());
    assert_eq!(fill.winners[0].provider, provider(2));
    assert_eq!(fill.winners[0].price, Price(110), "paid its own price");
    assert!(fill.winners[0].effective_price < Price(100));
    assert!(m.reputation(&provider(2), 0).score_ppm > m.reputation(&provider(1), 0).score_ppm);
}

#[test]
fn replicas_go_to_distinct_providers_and_distinct_regions() {
    let mut m = Market::default();
    m.upsert_ask(cpu_ask(1, "a", 8, 100, &[("region", "eu")]), 0)
        .unwrap();
    m.upsert_ask(cpu_ask(1, "b", 8, 101, &[("region", "us")]), 0)
        .unwrap();
    m.upsert_ask(cpu_ask(2, "a", 8, 102, &[("region", "eu")]), 0)
        .unwrap();
    m.upsert_ask(cpu_ask(3, "a", 8, 150, &[("region", "asia")]), 0)
        .unwrap();
    let mut order = cpu_order(1, 1, 200);
    order.requirements.replicas = 2;
    let fill = filled(m.preview(&order, 0).unwrap());
    let who: Vec<_> = fill.winners.iter().map(|w| w.provider).collect();
    assert_eq!(who, vec![provider(1), provider(2)]);
    order.requirements.distinct_by = Some("region".into());
    let fill = filled(m.submit_order(order, 0).unwrap());
    let who: Vec<_> = fill.winners.iter().map(|w| w.provider).collect();
    assert_eq!(
        who,
        vec![provider(1), provider(3)],
        "p2 is in eu like p1's cheapest ask"
    );
    m.audit().unwrap();
}

#[test]
fn explanation_reads_like_the_issue_example() {
    let mut m = Market::default();
    for p in 0..120u32 {
        let region = if p < 31 { "eu" } else { "us" };
        let ask = if p < 2 {
            gpu_ask(p, "m", "A100", 24, 4, 100, &[("region", region)])
        } else if p % 2 == 0 {
            gpu_ask(p, "m", "H100", 80, 4, 100, &[("region", region)])
        } else {
            cpu_ask(p, "m", 8, 100, &[("region", region)])
        };
        m.upsert_ask(ask, 0).unwrap();
    }
    let mut order = gpu_order(1, Some("A100"), 40, 1, 1_000);
    order
        .requirements
        .attributes
        .push(AttributeConstraint::equals("region", "eu"));
    let MatchOutcome::NoMatch(why) = m.submit_order(order, 0).unwrap() else {
        panic!("matched")
    };
    let text = why.to_string();
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        "0 of 120 providers match: region=eu (31 match) ∧ gpu=A100 (2 of those) ∧ vram ≥ 40 GiB (0 of those; nearest has 24 GiB)"
    );
    assert_eq!(why.nearest.len(), 3);
    let a100 = why
        .nearest
        .iter()
        .filter(|n| n.lacks[0] == "vram ≥ 40 GiB (has 24 GiB)")
        .count();
    assert_eq!(a100, 2, "{why}");
    let json = serde_json::to_string(&why).unwrap();
    assert!(json.contains("\"remaining\":31"));
}

#[test]
fn explanation_names_busy_capacity_and_distinctness() {
    let mut m = Market::default();
    m.upsert_ask(cpu_ask(1, "a", 2, 100, &[("operator", "x")]), 0)
        .unwrap();
    m.upsert_ask(cpu_ask(2, "a", 2, 100, &[("operator", "x")]), 0)
        .unwrap();
    let mut order = cpu_order(1, 1, 200);
    order.requirements.replicas = 2;
    order.requirements.distinct_by = Some("operator".into());
    let MatchOutcome::NoMatch(why) = m.submit_order(order, 0).unwrap() else {
        panic!("matched")
    };
    assert_eq!(why.matching, 1);
    assert!(
        why.to_string()
            .contains("2 needed): distinct by operator (1 match)"),
        "{why}"
    );
    assert_eq!(why.capable, 1, "one operator, however idle");
    assert!(
        !why.only_busy(),
        "waiting cannot make the operators distinct"
    );

    filled(m.submit_order(cpu_order(2, 2, 200), 0).unwrap());
    filled(m.submit_order(cpu_order(3, 2, 200), 0).unwrap());
    let MatchOutcome::NoMatch(why) = m.submit_order(cpu_order(4, 1, 200), 0).unwrap() else {
        panic!()
    };
    assert!(
        why.to_string()
            .contains("free cpu ≥ 1 core (0 match; nearest has 0m)"),
        "{why}"
    );
    assert!(
        why.only_busy(),
        "both providers could take it once idle: {why}"
    );
    assert!(
        why.to_string()
            .contains("busy: it would match once capacity frees")
    );
}

/// Fills both 2-core providers, so any 1-core order misses only on busy capacity;
/// returns the market and the matches holding it.
fn full_market() -> (Market, Vec<agora_market::MatchId>) {
    let mut m = Market::default();
    m.upsert_ask(cpu_ask(1, "a", 2, 100, &[("region", "eu")]), 0)
        .unwrap();
    m.upsert_ask(cpu_ask(2, "a", 2, 120, &[("region", "eu")]), 0)
        .unwrap();
    let held = (100..102)
        .map(|n| filled(m.submit_order(cpu_order(n, 2, 200), 0).unwrap()).winners[0].match_id)
        .collect();
    (m, held)
}

fn no_match(m: &mut Market, order: agora_market::Order) -> agora_market::NoMatchExplanation {
    match m.submit_order(order, 0).unwrap() {
        MatchOutcome::NoMatch(why) => why,
        MatchOutcome::Filled(fill) => panic!("matched: {fill:?}"),
    }
}

#[test]
fn an_order_blocked_only_by_full_providers_is_only_busy() {
    let (mut m, held) = full_market();
    let why = no_match(&mut m, cpu_order(1, 1, 200));
    assert_eq!((why.matching, why.capable, why.total), (0, 1, 2));
    assert!(why.only_busy(), "{why}");
    // Two replicas on the two (busy) providers: still only busy.
    let mut order = cpu_order(2, 1, 200);
    order.requirements.replicas = 2;
    let why = no_match(&mut m, order);
    assert_eq!(why.capable, 2);
    assert!(why.only_busy(), "{why}");
    // Capacity comes back: the order that waited matches.
    m.release(&held[0], ReleaseReason::Completed).unwrap();
    filled(m.submit_order(cpu_order(1, 1, 200), 0).unwrap());
}

#[test]
fn an_order_no_idle_provider_could_take_is_not_only_busy() {
    let (mut m, _) = full_market();
    let mut region = cpu_order(1, 1, 200);
    region
        .requirements
        .attributes
        .push(AttributeConstraint::equals("region", "us"));
    let cheap = cpu_order(2, 1, 90);
    let gpu = gpu_order(3, Some("A100"), 40, 1, 1_000);
    // Larger than either machine: free capacity is what excludes it, but no amount of
    // waiting frees 4 cores on a 2-core machine.
    let huge = cpu_order(4, 4, 200);
    for order in [region, cheap, gpu, huge] {
        let why = no_match(&mut m, order);
        assert_eq!(why.capable, 0, "{why}");
        assert!(!why.only_busy(), "{why}");
        assert!(!why.to_string().contains("busy:"), "{why}");
    }
    // Three replicas on two providers cannot wait their way in either.
    let mut order = cpu_order(5, 1, 200);
    order.requirements.replicas = 3;
    assert!(matches!(
        m.submit_order(order, 0),
        Err(MarketError::NotEnoughProviders { .. })
    ));
    m.upsert_ask(cpu_ask(3, "a", 2, 100, &[("region", "eu")]), 0)
        .unwrap();
    filled(m.submit_order(cpu_order(102, 2, 200), 0).unwrap());
    let mut order = cpu_order(6, 1, 200);
    order.requirements.replicas = 3;
    order.requirements.distinct_by = Some("region".into());
    let why = no_match(&mut m, order);
    assert_eq!(why.capable, 1, "one region: {why}");
    assert!(!why.only_busy());
}

#[test]
fn distinct_values_count_as_a_matching_not_a_tally() {
    // p1 runs machines in eu and us, p2 and p3 only in eu: two replicas distinct by
    // region fit (p1 in us, p2 in eu), three do not, though there are three providers
    // and p1's two regions look like enough values.
    let mut m = Market::default();
    m.upsert_ask(cpu_ask(1, "eu", 1, 100, &[("region", "eu")]), 0)
        .unwrap();
    m.upsert_ask(cpu_ask(1, "us", 1, 100, &[("region", "us")]), 0)
        .unwrap();
    m.upsert_ask(cpu_ask(2, "eu", 1, 100, &[("region", "eu")]), 0)
        .unwrap();
    m.upsert_ask(cpu_ask(3, "eu", 1, 100, &[("region", "eu")]), 0)
        .unwrap();
    for n in 100..104 {
        filled(m.submit_order(cpu_order(n, 1, 200), 0).unwrap());
    }
    for (replicas, capable) in [(2, 2), (3, 2)] {
        let mut order = cpu_order(u64::from(replicas), 1, 200);
        order.requirements.replicas = replicas;
        order.requirements.distinct_by = Some("region".into());
        let why = no_match(&mut m, order);
        assert_eq!(why.capable, capable, "{why}");
        assert_eq!(why.only_busy(), replicas == 2, "{why}");
    }
}

#[test]
fn an_explanation_without_capable_reads_as_not_busy() {
    let (mut m, _) = full_market();
    let why = no_match(&mut m, cpu_order(1, 1, 200));
    let mut json: serde_json::Value = serde_json::to_value(&why).unwrap();
    assert_eq!(json["capable"], 1);
    json.as_object_mut().unwrap().remove("capable");
    let old: agora_market::NoMatchExplanation = serde_json::from_value(json).unwrap();
    assert_eq!(old.capable, 0);
    assert!(
        !old.only_busy(),
        "an old explanation never keeps an order waiting"
    );
}

#[test]
fn reverse_auction_first_price_and_uniform() {
    for (rule, paid) in [
        (PricingRule::FirstPrice, [90, 95]),
        (PricingRule::UniformKPlusOne, [99, 99]),
    ] {
        let mut m = Market::default();
        for (p, price) in [(1, 90u64), (2, 95), (3, 99)] {
            m.upsert_ask(cpu_ask(p, "a", 4, 500, &[]), 0).unwrap();
            let _ = price;
        }
        let mut order = cpu_order(7, 1, 100);
        order.requirements.replicas = 2;
        let id = order.id;
        m.open_auction(
            order,
            AuctionTerms {
                closes_ms: 1_000,
                rule,
            },
            0,
        )
        .unwrap();
        for (p, price) in [(1, 90u64), (2, 95), (3, 99)] {
            let bid = Bid {
                order: id,
                provider: provider(p),
                ask: agora_market::AskId::named(&provider(p), "a"),
                price: Price(price),
            };
            m.submit_bid(bid, 10).unwrap();
        }
        let dup = Bid {
            order: id,
            provider: provider(1),
            ask: agora_market::AskId::named(&provider(1), "a"),
            price: Price(80),
        };
        assert!(matches!(
            m.submit_bid(dup, 20),
            Err(MarketError::DuplicateBid { .. })
        ));
        assert!(matches!(
            m.close_auction(&id, 999),
            Err(MarketError::AuctionStillOpen { .. })
        ));
        let fill = filled(m.close_auction(&id, 1_000).unwrap());
        let prices: Vec<u64> = fill.winners.iter().map(|w| w.price.0).collect();
        assert_eq!(prices, paid, "{rule:?}");
        assert!(matches!(
            m.close_auction(&id, 1_000),
            Err(MarketError::UnknownAuction(_))
        ));
        // The loser's capacity was never taken; the winners' is.
        assert_eq!(
            m.free_capacity(&agora_market::AskId::named(&provider(3), "a"))
                .unwrap()
                .cpu_millis,
            4000
        );
        assert_eq!(
            m.free_capacity(&agora_market::AskId::named(&provider(1), "a"))
                .unwrap()
                .cpu_millis,
            3000
        );
        m.audit().unwrap();
    }
}

#[test]
fn auction_refuses_bad_bids() {
    let mut m = Market::default();
    m.upsert_ask(cpu_ask(1, "a", 4, 100, &[("region", "us")]), 0)
        .unwrap();
    m.upsert_ask(cpu_ask(2, "a", 4, 100, &[("region", "eu")]), 0)
        .unwrap();
    let mut order = cpu_order(1, 1, 100);
    order
        .requirements
        .attributes
        .push(AttributeConstraint::equals("region", "eu"));
    let id = order.id;
    m.open_auction(
        order.clone(),
        AuctionTerms {
            closes_ms: 1_000,
            rule: PricingRule::FirstPrice,
        },
        0,
    )
    .unwrap();
    assert!(matches!(
        m.open_auction(
            order,
            AuctionTerms {
                closes_ms: 1_000,
                rule: PricingRule::FirstPrice
            },
            0
        ),
        Err(MarketError::DuplicateOrder(_))
    ));
    let bid = |p: u32, price: u64| Bid {
        order: id,
        provider: provider(p),
        ask: agora_market::AskId::named(&provider(p), "a"),
        price: Price(price),
    };
    assert!(matches!(
        m.submit_bid(bid(2, 0), 1),
        Err(MarketError::ZeroBid)
    ));
    assert!(matches!(
        m.submit_bid(bid(2, 101), 1),
        Err(MarketError::BidAboveCap { .. })
    ));
    let Err(MarketError::BidDoesNotQualify { lacks, .. }) = m.submit_bid(bid(1, 50), 1) else {
        panic!()
    };
    assert_eq!(lacks, vec!["region=eu".to_string()]);
    let stolen = Bid {
        ask: agora_market::AskId::named(&provider(2), "a"),
        ..bid(1, 50)
    };
    assert!(matches!(
        m.submit_bid(stolen, 1),
        Err(MarketError::NotYourAsk { .. })
    ));
    assert!(matches!(
        m.submit_bid(bid(2, 50), 1_000),
        Err(MarketError::AuctionClosed { .. })
    ));
    // No valid bid: the close explains over the bidders.
    let MatchOutcome::NoMatch(why) = m.close_auction(&id, 1_000).unwrap() else {
        panic!()
    };
    assert_eq!(why.scope, "bidders");
    assert_eq!(why.total, 0);
}

#[test]
fn withdraw_expire_and_updates_never_overcommit() {
    let mut m = Market::default();
    let ask = cpu_ask(1, "a", 4, 100, &[]);
    let id = ask.id;
    m.upsert_ask(ask.clone(), 0).unwrap();
    m.upsert_ask(cpu_ask(2, "a", 4, 200, &[]), 0).unwrap();
    let fill = filled(m.submit_order(cpu_order(1, 3, 200), 0).unwrap());
    // Shrinking below what is held is refused; shrinking to it is fine.
    let mut smaller = ask.clone();
    smaller.capacity.cpu_millis = 2000;
    assert!(matches!(
        m.upsert_ask(smaller.clone(), 0),
        Err(MarketError::UpdateWouldOvercommit { .. })
    ));
    smaller.capacity.cpu_millis = 3000;
    m.upsert_ask(smaller, 0).unwrap();
    assert_eq!(m.free_capacity(&id).unwrap().cpu_millis, 0);
    // Withdrawn: no new matches, but the live one keeps its capacity until released.
    assert!(matches!(
        m.withdraw_ask(&id, &provider(2)),
        Err(MarketError::NotYourAsk { .. })
    ));
    m.withdraw_ask(&id, &provider(1)).unwrap();
    assert_eq!(m.provider_count(), 1);
    assert!(m.ask(&id).is_some());
    m.audit().unwrap();
    // The order's deadline passes: the match expires and the drained ask leaves the book.
    let expired = m.expire(10 * HOUR);
    assert_eq!(expired.matches, vec![fill.winners[0].match_id]);
    assert!(m.ask(&id).is_none());
    assert!(matches!(
        m.withdraw_ask(&id, &provider(1)),
        Err(MarketError::UnknownAsk(_))
    ));
    // Asks lapse at their expiry.
    let expired = m.expire(100 * HOUR);
    assert_eq!(expired.asks.len(), 1);
    assert_eq!(m.ask_count(), 0);
    m.audit().unwrap();
}

#[test]
fn gpu_orders_use_gpu_classes() {
    let mut m = Market::default();
    m.upsert_ask(gpu_ask(1, "a", "A100", 80, 2, 300, &[]), 0)
        .unwrap();
    m.upsert_ask(gpu_ask(2, "h", "H100", 80, 8, 250, &[]), 0)
        .unwrap();
    m.upsert_ask(cpu_ask(3, "c", 64, 10, &[]), 0).unwrap();
    let any = filled(m.submit_order(gpu_order(1, None, 40, 2, 1_000), 0).unwrap());
    assert_eq!(any.winners[0].class, ResourceClass::gpu("H100"));
    let a100 = filled(
        m.submit_order(gpu_order(2, Some("A100"), 40, 2, 1_000), 0)
            .unwrap(),
    );
    assert_eq!(a100.winners[0].provider, provider(1));
    let MatchOutcome::NoMatch(why) = m
        .submit_order(gpu_order(3, Some("A100"), 40, 1, 1_000), 0)
        .unwrap()
    else {
        panic!()
    };
    assert!(
        why.to_string()
            .contains("free gpus ≥ 1 (0 of those; nearest has 0 free gpus)"),
        "{why}"
    );
    m.audit().unwrap();
}

#[test]
fn spot_index_tracks_cleared_prices_best_ask_and_depth() {
    let mut m = Market::default();
    m.upsert_ask(cpu_ask(1, "a", 1, 100, &[]), 0).unwrap();
    m.upsert_ask(cpu_ask(2, "a", 4, 120, &[]), 0).unwrap();
    m.upsert_ask(cpu_ask(3, "a", 4, 120, &[]), 0).unwrap();
    let before = m.index(&ResourceClass::cpu(), 0);
    assert_eq!(before.best_ask, Some(Price(100)));
    assert_eq!(before.depth_asks, 3);
    filled(m.submit_order(cpu_order(1, 1, 200), 1_000).unwrap());
    let mut big = cpu_order(2, 1, 200);
    big.fuel = Fuel::compute_units(30);
    filled(m.submit_order(big, 2_000).unwrap());
    let idx = m.index(&ResourceClass::cpu(), 2_000);
    // (100 × 10 + 120 × 30) / 40 = 115
    assert_eq!(idx.windows[0].vwap, Some(Price(115)));
    assert_eq!(idx.windows[0].trades, 2);
    assert_eq!(idx.best_ask, Some(Price(120)), "the 100 ask is full");
    assert_eq!(idx.levels.len(), 1);
    assert_eq!(idx.levels[0].asks, 2);
    assert_eq!(
        m.index(&ResourceClass::cpu(), 2_000 + 61_000).windows[0].vwap,
        None
    );
}

#[test]
fn bad_input_is_refused_with_a_typed_error_and_changes_nothing() {
    let mut m = Market::default();
    let ask = cpu_ask(1, "a", 4, 100, &[]);
    m.upsert_ask(ask.clone(), 0).unwrap();
    let ids = [ask.id];
    let before = fingerprint(&m, &ids, 0);
    let mut zero = ask.clone();
    zero.capacity.cpu_millis = 0;
    assert!(matches!(
        m.upsert_ask(zero, 0),
        Err(MarketError::ZeroResource { .. })
    ));
    let mut absurd = ask.clone();
    absurd.capacity.memory_bytes = u64::MAX;
    assert!(matches!(
        m.upsert_ask(absurd, 0),
        Err(MarketError::AbsurdResource { .. })
    ));
    let mut nogpu = ask.clone();
    nogpu.prices.insert(ResourceClass::gpu("A100"), Price(5));
    assert!(matches!(
        m.upsert_ask(nogpu, 0),
        Err(MarketError::InvalidAsk { .. })
    ));
    assert!(matches!(
        m.submit_order(cpu_order(1, 1, 0), 0),
        Err(MarketError::ZeroCap)
    ));
    let mut many = cpu_order(2, 1, 100);
    many.requirements.replicas = 2;
    assert!(matches!(
        m.submit_order(many, 0),
        Err(MarketError::NotEnoughProviders {
            replicas: 2,
            providers: 1
        })
    ));
    let mut contradictory = cpu_order(3, 1, 100);
    contradictory.requirements.attributes = vec![
        AttributeConstraint::equals("region", "eu"),
        AttributeConstraint::not("region", "eu"),
    ];
    assert!(matches!(
        m.submit_order(contradictory, 0),
        Err(MarketError::ContradictoryConstraints { .. })
    ));
    let mut huge = cpu_order(4, 1, 100);
    huge.demand.memory_bytes = 1 << 60;
    assert!(matches!(
        m.submit_order(huge, 0),
        Err(MarketError::AbsurdResource { .. })
    ));
    let mut late = cpu_order(5, 1, 100);
    late.deadline_ms = 0;
    assert!(matches!(
        m.submit_order(late, 0),
        Err(MarketError::InThePast { .. })
    ));
    assert!(matches!(
        m.cancel_order(&order_id(9)),
        Err(MarketError::UnknownOrder(_))
    ));
    assert!(matches!(
        m.close_auction(&order_id(9), 0),
        Err(MarketError::UnknownAuction(_))
    ));
    assert_eq!(fingerprint(&m, &ids, 0), before);
    // A matched order id cannot be reused while live.
    filled(m.submit_order(cpu_order(6, 1, 100), 0).unwrap());
    let before = fingerprint(&m, &ids, 0);
    assert!(matches!(
        m.submit_order(cpu_order(6, 1, 100), 0),
        Err(MarketError::DuplicateOrder(_))
    ));
    assert_eq!(fingerprint(&m, &ids, 0), before);
    let err = m
        .submit_order(cpu_order(7, 1, 0), 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cap"), "{err}");
    let _ = GIB;
}

#[test]
fn old_failures_fade_and_the_index_follows() {
    let mut m = Market::default();
    // Provider 1 failed a lot a long time ago; it also has the larger stake.
    for _ in 0..20 {
        m.record_event(provider(1), ReputationEvent::Failure, 0);
    }
    m.set_stake(provider(1), Amount::agr(1_000));
    let mut late = cpu_ask(1, "a", 4, 1_000_000, &[]);
    late.expires_ms = 10_000 * HOUR;
    m.upsert_ask(late, 0).unwrap();
    let mut fresh = cpu_ask(2, "a", 4, 1_000_000, &[]);
    fresh.expires_ms = 10_000 * HOUR;
    m.upsert_ask(fresh, 0).unwrap();
    let mut order = cpu_order(1, 1, 2_000_000);
    order.deadline_ms = 10_000 * HOUR;
    // Right after the failures the newcomer wins ...
    let now = fill_winner(&m, &order, 0);
    assert_eq!(now, provider(2));
    // ... but after a year of decay the failures are forgotten and the stake decides.
    let year = 8_760 * HOUR;
    assert_eq!(m.reputation(&provider(1), year).score_ppm, 500_000);
    assert_eq!(fill_winner(&m, &order, year), provider(1));
    assert_eq!(
        agora_market::reference::reference_match(&m, &order, year)[0].provider,
        provider(1)
    );
}

fn fill_winner(m: &Market, order: &agora_market::Order, now: u64) -> agora_core::AccountId {
    match m.preview(order, now).unwrap() {
        MatchOutcome::Filled(fill) => fill.winners[0].provider,
        MatchOutcome::NoMatch(why) => panic!("{why}"),
    }
}

#[test]
fn stats_count_fills_misses_and_releases_by_reason() {
    let mut m = Market::default();
    m.upsert_ask(cpu_ask(1, "a", 2, 100, &[]), 0).unwrap();
    let a = filled(m.submit_order(cpu_order(1, 1, 200), 0).unwrap());
    let b = filled(m.submit_order(cpu_order(2, 1, 200), 0).unwrap());
    assert!(matches!(
        m.submit_order(cpu_order(3, 1, 200), 0).unwrap(),
        MatchOutcome::NoMatch(_)
    ));
    m.complete(&a.winners[0].match_id).unwrap();
    m.release(&b.winners[0].match_id, ReleaseReason::Failed)
        .unwrap();
    let stats = m.stats();
    assert_eq!(
        (stats.filled, stats.unmatched, stats.completed, stats.failed),
        (2, 1, 1, 1)
    );
    assert_eq!(stats.cancelled + stats.expired, 0);
}

#[test]
fn award_now_takes_one_acceptance_at_once_and_only_once() {
    let mut m = Market::default();
    m.upsert_ask(cpu_ask(1, "a", 4, 500, &[]), 0).unwrap();
    // Provider 2 (the cheaper) has room for one job only, taken below by an instant order.
    m.upsert_ask(cpu_ask(2, "a", 1, 400, &[]), 0).unwrap();
    let order = cpu_order(9, 1, 100);
    let id = order.id;
    m.open_auction(
        order,
        AuctionTerms {
            closes_ms: 10_000,
            rule: PricingRule::FirstPrice,
        },
        0,
    )
    .unwrap();
    let accept = |p: u32, price: u64| Bid {
        order: id,
        provider: provider(p),
        ask: agora_market::AskId::named(&provider(p), "a"),
        price: Price(price),
    };
    // Above the cap: refused, the auction stays open.
    assert!(matches!(
        m.award_now(accept(1, 101), 5),
        Err(MarketError::BidAboveCap { .. })
    ));
    // An acceptance whose capacity is gone leaves the auction open, without the bid.
    filled(m.submit_order(cpu_order(10, 1, 500), 5).unwrap());
    assert!(matches!(
        m.award_now(accept(2, 40), 6).unwrap(),
        MatchOutcome::NoMatch(_)
    ));
    // The first acceptance that can run it wins at its price, at once.
    let fill = filled(m.award_now(accept(1, 60), 7).unwrap());
    assert_eq!(fill.winners.len(), 1);
    assert_eq!(fill.winners[0].provider, provider(1));
    assert_eq!(fill.winners[0].price, Price(60));
    // A second acceptance finds no auction.
    assert!(matches!(
        m.award_now(accept(2, 60), 8),
        Err(MarketError::UnknownAuction(_))
    ));
    m.audit().unwrap();
}

#[test]
fn an_abandoned_auction_takes_no_more_bids() {
    let mut m = Market::default();
    m.upsert_ask(cpu_ask(1, "a", 4, 500, &[]), 0).unwrap();
    let order = cpu_order(11, 1, 100);
    let id = order.id;
    m.open_auction(
        order,
        AuctionTerms {
            closes_ms: 10_000,
            rule: PricingRule::FirstPrice,
        },
        0,
    )
    .unwrap();
    assert!(m.abandon_auction(&id));
    assert!(!m.abandon_auction(&id));
    let bid = Bid {
        order: id,
        provider: provider(1),
        ask: agora_market::AskId::named(&provider(1), "a"),
        price: Price(50),
    };
    assert!(matches!(
        m.submit_bid(bid, 5),
        Err(MarketError::UnknownAuction(_))
    ));
    m.audit().unwrap();
}
