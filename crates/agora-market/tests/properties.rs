//! Property tests for the must-hold list: winners satisfy every constraint, the
//! indexed engine picks exactly what a brute-force scan picks, capacity is never
//! over-committed under any interleaving, results are deterministic, and bad input is
//! refused without changing anything.

mod common;

use std::collections::BTreeSet;

use agora_core::{Amount, Fuel, Price};
use agora_market::reference::reference_match;
use agora_market::resources::GIB;
use agora_market::{
    Ask, AskId, AttributeConstraint, AuctionTerms, Bid, Market, MarketConfig, MarketError, MatchId,
    MatchOutcome, Order, PricingRule, ReleaseReason, ReputationEvent, ResourceClass,
};
use common::*;
use proptest::prelude::*;

const MODELS: [&str; 2] = ["A100", "H100"];
const VRAM_GIB: [u64; 4] = [16, 24, 40, 80];
const REGIONS: [&str; 3] = ["eu", "us", "asia"];
const OPERATORS: [&str; 3] = ["o1", "o2", "o3"];
/// Prices are drawn from a small range (so equal prices, and ties, are common) and scaled
/// so that reputation and stake discounts are not lost to rounding.
const PRICE_UNIT: u64 = 1_000;

#[derive(Clone, Debug)]
struct AskSpec {
    provider: u32,
    name: u8,
    cores: u64,
    gpu: Option<(usize, usize, u32)>,
    region: Option<usize>,
    operator: usize,
    oci: bool,
    cpu_price: Option<u64>,
    gpu_price: u64,
    expires_hours: u64,
    small_jobs_only: bool,
}

fn ask_spec() -> impl Strategy<Value = AskSpec> {
    (
        (0u32..8, 0u8..2, 1u64..8),
        proptest::option::weighted(0.5, (0usize..2, 0usize..4, 1u32..4)),
        (
            proptest::option::weighted(0.8, 0usize..3),
            0usize..3,
            any::<bool>(),
        ),
        (proptest::option::weighted(0.8, 1u64..20), 1u64..20),
        (
            prop_oneof![1 => Just(1u64), 5 => Just(100)],
            proptest::bool::weighted(0.1),
        ),
    )
        .prop_map(
            |(
                (provider, name, cores),
                gpu,
                (region, operator, oci),
                (cpu_price, gpu_price),
                (expires_hours, small_jobs_only),
            )| AskSpec {
                provider,
                name,
                cores,
                gpu,
                region,
                operator,
                oci,
                cpu_price: if gpu.is_none() {
                    Some(cpu_price.unwrap_or(gpu_price))
                } else {
                    cpu_price
                },
                gpu_price,
                expires_hours,
                small_jobs_only,
            },
        )
}

fn build_ask(s: &AskSpec) -> Ask {
    let mut attrs: Vec<(&str, &str)> = vec![("operator", OPERATORS[s.operator])];
    if let Some(r) = s.region {
        attrs.push(("region", REGIONS[r]));
    }
    let name = format!("m{}", s.name);
    let mut ask = match s.gpu {
        Some((m, v, count)) => gpu_ask(
            s.provider,
            &name,
            MODELS[m],
            VRAM_GIB[v],
            count,
            s.gpu_price * PRICE_UNIT,
            &attrs,
        ),
        None => cpu_ask(s.provider, &name, s.cores, s.gpu_price * PRICE_UNIT, &attrs),
    };
    ask.capacity.cpu_millis = s.cores * 1000;
    ask.capacity.memory_bytes = s.cores * 2 * GIB;
    match s.cpu_price {
        Some(p) => ask
            .prices
            .insert(ResourceClass::cpu(), Price(p * PRICE_UNIT)),
        None => ask.prices.remove(&ResourceClass::cpu()),
    };
    if s.oci {
        ask.features.insert("oci".into());
    }
    if s.small_jobs_only {
        ask.max_job = Fuel::compute_units(5);
    }
    ask.expires_ms = s.expires_hours * HOUR;
    ask
}

#[derive(Clone, Debug)]
struct OrderSpec {
    cores: u64,
    mem_gib: u64,
    gpu: Option<(Option<usize>, usize, u32)>,
    region_rule: Option<(u8, usize)>,
    oci: bool,
    min_rep: u32,
    min_stake_agr: u64,
    replicas: u16,
    distinct: Option<bool>,
    cap: u64,
}

fn order_spec() -> impl Strategy<Value = OrderSpec> {
    (
        (1u64..4, 1u64..6),
        proptest::option::weighted(
            0.4,
            (
                proptest::option::weighted(0.7, 0usize..2),
                0usize..4,
                1u32..3,
            ),
        ),
        (
            proptest::option::weighted(0.5, (0u8..3, 0usize..3)),
            proptest::bool::weighted(0.2),
        ),
        (
            prop_oneof![3 => Just(0u32), 1 => 400_000u32..600_000],
            prop_oneof![3 => Just(0u64), 1 => 0u64..2_000],
        ),
        (
            prop_oneof![3 => Just(1u16), 1 => 2u16..4],
            proptest::option::weighted(0.3, any::<bool>()),
            4u64..30,
        ),
    )
        .prop_map(
            |(
                (cores, mem_gib),
                gpu,
                (region_rule, oci),
                (min_rep, min_stake_agr),
                (replicas, distinct, cap),
            )| OrderSpec {
                cores,
                mem_gib,
                gpu,
                region_rule,
                oci,
                min_rep,
                min_stake_agr,
                replicas,
                distinct,
                cap,
            },
        )
}

fn build_order(n: u64, s: &OrderSpec) -> Order {
    let mut order = match s.gpu {
        Some((model, v, count)) => gpu_order(
            n,
            model.map(|m| MODELS[m]),
            VRAM_GIB[v],
            count,
            s.cap * PRICE_UNIT,
        ),
        None => cpu_order(n, s.cores, s.cap * PRICE_UNIT),
    };
    order.demand.cpu_millis = s.cores * 1000;
    order.demand.memory_bytes = s.mem_gib * GIB;
    let req = &mut order.requirements;
    if let Some((kind, r)) = s.region_rule {
        req.attributes.push(match kind {
            0 => AttributeConstraint::equals("region", REGIONS[r]),
            1 => AttributeConstraint::one_of("region", &[REGIONS[r], REGIONS[(r + 1) % 3]]),
            _ => AttributeConstraint::not("region", REGIONS[r]),
        });
    }
    if s.oci {
        req.features.insert("oci".into());
    }
    req.min_reputation_ppm = s.min_rep;
    req.min_stake = Amount::agr(s.min_stake_agr);
    req.replicas = s.replicas;
    req.distinct_by = s
        .distinct
        .map(|by_region| if by_region { "region" } else { "operator" }.to_string());
    order
}

#[derive(Clone, Debug)]
enum Op {
    Upsert(AskSpec),
    Withdraw(usize),
    Submit(OrderSpec),
    Release(usize),
    Event(u32, u8),
    Stake(u32, u64),
    Auction(OrderSpec, Vec<(usize, u64)>, bool),
    Tick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => ask_spec().prop_map(Op::Upsert),
        1 => any::<usize>().prop_map(Op::Withdraw),
        5 => order_spec().prop_map(Op::Submit),
        3 => any::<usize>().prop_map(Op::Release),
        1 => (0u32..8, 0u8..4).prop_map(|(p, e)| Op::Event(p, e)),
        1 => (0u32..8, 0u64..2_000).prop_map(|(p, s)| Op::Stake(p, s)),
        1 => (order_spec(), proptest::collection::vec((any::<usize>(), 1u64..25), 0..6), any::<bool>())
            .prop_map(|(o, b, u)| Op::Auction(o, b, u)),
        1 => (0u64..3).prop_map(Op::Tick),
    ]
}

const EVENTS: [ReputationEvent; 4] = [
    ReputationEvent::VerifiedCompletion,
    ReputationEvent::Failure,
    ReputationEvent::Timeout,
    ReputationEvent::ProvenFault,
];

/// Plays `ops` on a fresh market, checking the invariants after every step; returns a
/// transcript of every result so two runs can be compared.
fn play(ops: &[Op], check: &mut dyn FnMut(&Market, &Op, &str, u64)) -> Vec<String> {
    let mut m = Market::default();
    let mut now = 0u64;
    let mut asks: Vec<AskId> = Vec::new();
    let mut live: Vec<MatchId> = Vec::new();
    let mut transcript = Vec::new();
    for (n, op) in ops.iter().enumerate() {
        let n = n as u64;
        let result = match op {
            Op::Upsert(spec) => {
                let ask = build_ask(spec);
                asks.push(ask.id);
                format!("{:?}", m.upsert_ask(ask, now))
            }
            Op::Withdraw(i) if !asks.is_empty() => {
                let id = asks[i % asks.len()];
                let owner = m.ask(&id).map(|a| a.provider).unwrap_or(provider(0));
                format!("{:?}", m.withdraw_ask(&id, &owner))
            }
            Op::Submit(spec) => {
                let out = m.submit_order(build_order(n, spec), now);
                if let Ok(MatchOutcome::Filled(fill)) = &out {
                    live.extend(fill.winners.iter().map(|w| w.match_id));
                }
                format!("{out:?}")
            }
            Op::Release(i) if !live.is_empty() => {
                let id = live.swap_remove(i % live.len());
                format!("{:?}", m.release(&id, ReleaseReason::Failed))
            }
            Op::Event(p, e) => {
                m.record_event(provider(*p), EVENTS[*e as usize], now);
                String::new()
            }
            Op::Stake(p, s) => {
                m.set_stake(provider(*p), Amount::agr(*s));
                String::new()
            }
            Op::Auction(spec, bids, uniform) => {
                let order = build_order(n, spec);
                let id = order.id;
                let rule = if *uniform {
                    PricingRule::UniformKPlusOne
                } else {
                    PricingRule::FirstPrice
                };
                let mut out = format!(
                    "{:?}",
                    m.open_auction(
                        order,
                        AuctionTerms {
                            closes_ms: now + 10,
                            rule
                        },
                        now
                    )
                );
                for (i, price) in bids.iter().filter(|_| !asks.is_empty()) {
                    let ask = asks[i % asks.len()];
                    let Some(owner) = m.ask(&ask).map(|a| a.provider) else {
                        continue;
                    };
                    let bid = Bid {
                        order: id,
                        provider: owner,
                        ask,
                        price: Price(*price * PRICE_UNIT),
                    };
                    out += &format!("{:?}", m.submit_bid(bid, now));
                }
                let closed = m.close_auction(&id, now + 10);
                if let Ok(MatchOutcome::Filled(fill)) = &closed {
                    live.extend(fill.winners.iter().map(|w| w.match_id));
                }
                out + &format!("{closed:?}")
            }
            Op::Tick(hours) => {
                now += hours * HOUR;
                let expired = m.expire(now);
                live.retain(|id| !expired.matches.contains(id));
                format!("{expired:?}")
            }
            _ => String::new(),
        };
        check(&m, op, &result, now);
        transcript.push(result);
    }
    transcript.push(format!("{:?}", m.index(&ResourceClass::cpu(), now)));
    transcript
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 160,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// No ask is ever reserved beyond its capacity, and reservations always equal the sum
    /// of live matches, under any interleaving of asks, updates, matches, releases,
    /// auctions and expiry.
    #[test]
    fn never_overcommitted(ops in proptest::collection::vec(op(), 1..60)) {
        play(&ops, &mut |m, op, _, _| {
            if let Err(violation) = m.audit() {
                panic!("after {op:?}: {violation}");
            }
        });
    }

    /// The same inputs give the same matches, prices and index values.
    #[test]
    fn deterministic(ops in proptest::collection::vec(op(), 1..40)) {
        let a = play(&ops, &mut |_, _, _, _| {});
        let b = play(&ops, &mut |_, _, _, _| {});
        prop_assert_eq!(a, b);
    }

    /// The indexed engine picks exactly the brute-force reference's winners, and every
    /// winner satisfies every constraint, within the cap, on k distinct providers.
    #[test]
    fn indexed_matches_reference_and_winners_qualify(
        asks in proptest::collection::vec(ask_spec(), 1..30),
        stakes in proptest::collection::vec(0u64..2_000, 8),
        mut events in proptest::collection::vec((0u32..8, 0u8..4, 0u64..120), 0..40),
        orders in proptest::collection::vec(order_spec(), 1..25),
    ) {
        // One-minute epochs that keep 98 % each, so reputations decay a lot between the
        // events and the orders two hours later, and the index's bounds are exercised.
        let mut config = MarketConfig::default();
        config.reputation.epoch_ms = 60_000;
        config.reputation.retain_per_epoch_ppb = 980_000_000;
        let mut m = Market::new(config).unwrap();
        for (p, s) in stakes.iter().enumerate() {
            m.set_stake(provider(p as u32), Amount::agr(*s));
        }
        events.sort_by_key(|e| e.2);
        let (early, late) = events.split_at(events.len() / 2);
        for (p, e, minute) in early {
            m.record_event(provider(*p), EVENTS[*e as usize], minute * 60_000);
        }
        for spec in &asks {
            let _ = m.upsert_ask(build_ask(spec), 0);
        }
        // Events after listing re-key the providers' asks.
        for (p, e, minute) in late {
            m.record_event(provider(*p), EVENTS[*e as usize], minute * 60_000);
        }
        let now = 2 * HOUR; // some asks have lapsed
        for (n, spec) in orders.iter().enumerate() {
            let order = build_order(n as u64, spec);
            let expected = reference_match(&m, &order, now);
            let preview = m.preview(&order, now);
            if let Ok(quote) = m.quote(&order, now) {
                prop_assert_eq!(&quote, &expected);
            }
            let outcome = m.submit_order(order.clone(), now);
            prop_assert_eq!(&preview, &outcome);
            match outcome {
                Ok(MatchOutcome::Filled(fill)) => {
                    prop_assert_eq!(&fill.winners, &expected);
                    check_winners(&m, &order, &fill.winners, now);
                }
                Ok(MatchOutcome::NoMatch(why)) => {
                    prop_assert!(expected.is_empty(), "reference matched: {:?}", expected);
                    prop_assert!(why.matching < u32::from(order.requirements.replicas), "order {:?}\nwhy {:?}", order, why);
                }
                Err(MarketError::NotEnoughProviders { .. }) => prop_assert!(expected.is_empty()),
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }
        }
        prop_assert!(m.audit().is_ok());
    }

    /// Bad input gets a typed error and leaves the market exactly as it was.
    #[test]
    fn bad_input_changes_nothing(
        asks in proptest::collection::vec(ask_spec(), 1..12),
        orders in proptest::collection::vec(order_spec(), 0..6),
        bad in 0u8..9,
    ) {
        let mut m = Market::default();
        let mut ids = Vec::new();
        for spec in &asks {
            let ask = build_ask(spec);
            ids.push(ask.id);
            let _ = m.upsert_ask(ask, 0);
        }
        for (n, spec) in orders.iter().enumerate() {
            let _ = m.submit_order(build_order(n as u64, spec), 0);
        }
        let before = fingerprint(&m, &ids, 0);
        let mut order = build_order(1_000, &orders.first().cloned().unwrap_or(OrderSpec {
            cores: 1, mem_gib: 1, gpu: None, region_rule: None, oci: false, min_rep: 0,
            min_stake_agr: 0, replicas: 1, distinct: None, cap: 10,
        }));
        let err = match bad {
            0 => { order.demand.cpu_millis = 0; m.submit_order(order, 0).err() }
            1 => { order.cap = Price(0); m.submit_order(order, 0).err() }
            2 => { order.requirements.replicas = 64; m.submit_order(order, 0).err() }
            3 => {
                order.requirements.attributes = vec![
                    AttributeConstraint::equals("region", "eu"),
                    AttributeConstraint::one_of("region", &["us", "asia"]),
                ];
                m.submit_order(order, 0).err()
            }
            4 => { order.demand.cpu_millis = u64::MAX; m.submit_order(order, 0).err() }
            5 => m.release(&MatchId(agora_core::Hash::of(b"nope")), ReleaseReason::Completed).err(),
            6 => m.withdraw_ask(&AskId(agora_core::Hash::of(b"nope")), &provider(0)).err(),
            7 => {
                let mut ask = build_ask(&asks[0]);
                ask.capacity.memory_bytes = 0;
                m.upsert_ask(ask, 0).err()
            }
            _ => {
                // A second bid from the same provider.
                let id = order.id;
                let ask = build_ask(&asks[0]);
                let opened = m.open_auction(order, AuctionTerms { closes_ms: 10, rule: PricingRule::FirstPrice }, 0);
                let bid = Bid { order: id, provider: ask.provider, ask: ask.id, price: Price(1) };
                match (opened, m.submit_bid(bid.clone(), 1)) {
                    (Ok(()), Ok(())) => {
                        let mid = fingerprint(&m, &ids, 0);
                        let err = m.submit_bid(bid, 2).err();
                        prop_assert_eq!(fingerprint(&m, &ids, 0), mid);
                        let duplicate = matches!(err, Some(MarketError::DuplicateBid { .. }));
                        prop_assert!(duplicate, "expected DuplicateBid, got {:?}", err);
                        return Ok(());
                    }
                    (Ok(()), Err(e)) => {
                        // The bid itself was refused; that must have changed nothing either.
                        let _ = m.cancel_order(&id);
                        Some(e)
                    }
                    (Err(e), _) => Some(e),
                }
            }
        };
        prop_assert!(err.is_some(), "bad input #{} was accepted", bad);
        prop_assert_eq!(fingerprint(&m, &ids, 0), before);
    }
}

/// Checks winners against the order using only the public API.
fn check_winners(m: &Market, order: &Order, winners: &[agora_market::Winner], now: u64) {
    let req = &order.requirements;
    assert_eq!(winners.len(), usize::from(req.replicas));
    let providers: BTreeSet<_> = winners.iter().map(|w| w.provider).collect();
    assert_eq!(providers.len(), winners.len(), "distinct providers");
    if let Some(key) = &req.distinct_by {
        let values: BTreeSet<_> = winners
            .iter()
            .map(|w| m.ask(&w.ask).and_then(|a| a.attributes.get(key).cloned()))
            .collect();
        assert_eq!(values.len(), winners.len(), "distinct {key}");
    }
    for w in winners {
        let ask = m.ask(&w.ask).expect("winner's ask is in the book");
        assert_eq!(ask.provider, w.provider);
        assert!(w.price <= order.cap && w.effective_price <= w.price);
        assert_eq!(ask.prices.get(&w.class), Some(&w.price));
        assert!(ask.expires_ms > now);
        assert!(req.attributes.iter().all(|c| c.admits(&ask.attributes)));
        assert!(req.features.iter().all(|f| ask.features.contains(f)));
        assert!(ask.min_job <= order.fuel && order.fuel <= ask.max_job);
        assert!(m.reputation(&w.provider, now).score_ppm >= req.min_reputation_ppm);
        if let Some(gpu) = &order.demand.gpu {
            let model = w.class.gpu_model().expect("gpu class");
            assert!(gpu.model.as_deref().is_none_or(|want| want == model));
            assert!(ask.capacity.gpus.iter().any(|g| g.model == model
                && g.vram_bytes >= gpu.min_vram_bytes
                && g.count >= gpu.count));
        } else {
            assert_eq!(w.class, ResourceClass::cpu());
        }
        assert!(ask.capacity.cpu_millis >= order.demand.cpu_millis);
    }
}

proptest! {
    #![proptest_config(config())]

    /// An auction's close (which stops evaluating bids early) picks exactly what the
    /// brute-force matcher picks on a book holding only the bidders' asks at their bid prices.
    #[test]
    fn auction_close_matches_brute_force_over_bids(
        asks in proptest::collection::vec(ask_spec(), 1..30),
        stakes in proptest::collection::vec(0u64..2_000, 8),
        events in proptest::collection::vec((0u32..8, 0u8..4), 0..20),
        spec in order_spec(),
        bids in proptest::collection::vec((any::<usize>(), 1u64..30), 0..20),
    ) {
        let setup = |m: &mut Market| {
            for (p, s) in stakes.iter().enumerate() {
                m.set_stake(provider(p as u32), Amount::agr(*s));
            }
            for (p, e) in &events {
                m.record_event(provider(*p), EVENTS[*e as usize], 0);
            }
        };
        let mut auction = Market::default();
        setup(&mut auction);
        let built: Vec<Ask> = asks.iter().map(build_ask).collect();
        for ask in &built {
            let _ = auction.upsert_ask(ask.clone(), 0);
        }
        let order = build_order(1, &spec);
        let terms = AuctionTerms { closes_ms: 10, rule: PricingRule::FirstPrice };
        if auction.open_auction(order.clone(), terms, 0).is_err() {
            return Ok(());
        }
        let mut only_bidders = Market::default();
        setup(&mut only_bidders);
        for (i, price) in &bids {
            // The ask as the market holds it (a later upsert of the same id replaced it).
            let Some(mut ask) = auction.ask(&built[i % built.len()].id).cloned() else {
                continue;
            };
            let price = Price(price * PRICE_UNIT);
            let bid = Bid { order: order.id, provider: ask.provider, ask: ask.id, price };
            if auction.submit_bid(bid, 1).is_ok() {
                for p in ask.prices.values_mut() {
                    *p = price;
                }
                prop_assert!(only_bidders.upsert_ask(ask, 0).is_ok());
            }
        }
        let expected = reference_match(&only_bidders, &order, 10);
        match auction.close_auction(&order.id, 10).unwrap() {
            MatchOutcome::Filled(fill) => prop_assert_eq!(fill.winners, expected),
            MatchOutcome::NoMatch(_) => prop_assert!(expected.is_empty()),
        }
        prop_assert!(auction.audit().is_ok());
    }
}

/// Whether `order` fills in a market holding only `asks`, with nothing reserved.
fn fills_when_idle(asks: &[Ask], order: &Order, now: u64) -> bool {
    let mut idle = Market::default();
    for ask in asks {
        let _ = idle.upsert_ask(ask.clone(), 0);
    }
    matches!(idle.preview(order, now), Ok(MatchOutcome::Filled(_)))
}

/// Whether some `k` of `asks`, alone and idle, fill `order` (brute force over subsets).
fn some_subset_fills(asks: &[Ask], k: usize, order: &Order, now: u64) -> bool {
    fn go(
        asks: &[Ask],
        k: usize,
        start: usize,
        chosen: &mut Vec<Ask>,
        f: &mut dyn FnMut(&[Ask]) -> bool,
    ) -> bool {
        if chosen.len() == k {
            return f(chosen);
        }
        (start..asks.len()).any(|i| {
            chosen.push(asks[i].clone());
            let found = go(asks, k, i + 1, chosen, f);
            chosen.pop();
            found
        })
    }
    go(asks, k, 0, &mut Vec::new(), &mut |subset| {
        fills_when_idle(subset, order, now)
    })
}

proptest! {
    #![proptest_config(config())]

    /// An order that misses says `only_busy` exactly when it would fill with every ask
    /// idle. With `distinct_by`, where the engine's greedy pick over all idle asks can
    /// fall short, it says so exactly when some set of idle asks would fill it.
    #[test]
    fn only_busy_means_it_would_match_with_free_capacity(
        asks in proptest::collection::vec(ask_spec(), 1..10),
        load in proptest::collection::vec(order_spec(), 0..40),
        probes in proptest::collection::vec(order_spec(), 1..10),
    ) {
        let mut m = Market::default();
        for spec in &asks {
            let _ = m.upsert_ask(build_ask(spec), 0);
        }
        let now = 2 * HOUR; // some asks have lapsed
        for (n, spec) in load.iter().enumerate() {
            let _ = m.submit_order(build_order(n as u64, spec), now);
        }
        // The asks as the book holds them (a later upsert of the same id replaced it).
        let mut held: Vec<Ask> = asks
            .iter()
            .filter_map(|spec| m.ask(&build_ask(spec).id).cloned())
            .collect();
        held.sort_by_key(|a| a.id);
        held.dedup_by_key(|a| a.id);
        for (n, spec) in probes.iter().enumerate() {
            let order = build_order(1_000 + n as u64, spec);
            let Ok(MatchOutcome::NoMatch(why)) = m.preview(&order, now) else {
                continue;
            };
            prop_assert!(why.capable <= u32::from(order.requirements.replicas));
            let idle = fills_when_idle(&held, &order, now);
            if order.requirements.distinct_by.is_none() {
                prop_assert_eq!(why.only_busy(), idle, "{}", why);
            } else {
                prop_assert!(!idle || why.only_busy(), "fills when idle: {}", why);
                let k = usize::from(order.requirements.replicas);
                prop_assert_eq!(why.only_busy(), some_subset_fills(&held, k, &order, now), "{}", why);
            }
        }
    }
}
