//! The simulation's promises, at a scale a debug build runs in seconds (the 10,000-provider,
//! 1,000,000-job run is the benchmark, not a test):
//!
//! - the same seed gives a byte-identical report, another seed another one;
//! - money is conserved across the whole run, every escrow ends, the ledger refuses nothing;
//! - the stake rule's economics: cheating loses money when a proven fault costs at least
//!   C/p − R (here 1.5×, a margin), and pays when it costs nothing;
//! - a bad configuration is refused with a typed error before anything runs.

use agora_sim::config::PPM;
use agora_sim::sweep;
use agora_sim::{Behaviour, ConfigError, SimConfig, World};
use agora_verify::VerifyPolicy;

fn small(seed: u64) -> SimConfig {
    SimConfig::scaled(300, 6_000, seed)
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let a = World::new(small(7)).unwrap().run().to_json();
    let b = World::new(small(7)).unwrap().run().to_json();
    assert_eq!(a, b, "two runs of seed 7 differ");
    let c = World::new(small(8)).unwrap().run().to_json();
    assert_ne!(a, c, "seeds 7 and 8 gave the same report");
}

#[test]
fn money_is_conserved_and_every_job_ends() {
    let report = World::new(small(3)).unwrap().run();
    let t = &report.tally;
    assert!(report.ledger.conserved, "{:?}", report.ledger);
    assert!(report.ledger.conservation_checks >= 2);
    assert_eq!(t.conservation_failures, 0);
    assert_eq!(t.ledger_refusals, 0, "the ledger refused a settlement");
    assert_eq!(report.ledger.escrow_agr, 0.0, "an escrow was left locked");
    assert_eq!(
        t.settled + t.refunded + t.escrow_refused,
        report.config.jobs
    );
    assert!(t.settled > report.config.jobs * 9 / 10, "{t:?}");
    // The run exercised what it claims to model.
    assert!(
        t.leaves > 0 && t.restarts > 0 && t.price_changes > 0,
        "{t:?}"
    );
    for b in &Behaviour::ALL[1..] {
        assert!(report.behaviour(*b).providers > 0, "no {b:?} provider");
    }
    assert!(report.series.iter().any(|p| p.vwap_per_cu.is_some()));
}

#[test]
fn replication_accepts_no_lone_liar_and_none_accepts_every_lie() {
    let report = World::new(small(5)).unwrap().run();
    let of = |name: &str| {
        report
            .policies
            .iter()
            .find(|p| p.policy == name)
            .unwrap_or_else(|| panic!("no {name} stats"))
    };
    let none = of("none");
    assert!(none.wrong_accepted > 0, "cheaters never got a `none` job");
    assert_eq!(none.overhead, 1.0);
    let replicate = of("replicate:3:2");
    assert!(replicate.overhead >= 3.0, "{}", replicate.overhead);
}

#[test]
fn cheating_loses_above_the_stake_rule_and_pays_without_stake() {
    let base = SimConfig {
        cheater_ppm: [60_000, 0, 0, 0, 0],
        ..SimConfig::scaled(400, 12_000, 11)
    };
    let p = 50_000;
    let result = sweep::run(&base, &[p], &[0, 3 * PPM / 2]);
    let always = |ratio: f64| {
        result
            .points
            .iter()
            .find(|pt| pt.stake_ratio == ratio)
            .and_then(|pt| {
                pt.strategies
                    .iter()
                    .find(|s| s.behaviour == Behaviour::Always)
            })
            .cloned()
            .unwrap_or_else(|| panic!("no point at ratio {ratio}"))
    };
    let free = always(0.0);
    let staked = always(1.5);
    assert!(
        free.cheats > 100 && staked.cheats > 100,
        "{free:?} {staked:?}"
    );
    assert!(
        free.pays,
        "without stake at risk cheating should pay: {free:?}"
    );
    assert!(!staked.pays, "at 1.5 × (C/p − R) cheating paid: {staked:?}");
    assert!(staked.advantage_per_run_agr < 0.0);
}

#[test]
fn bad_configurations_are_refused() {
    let zero = SimConfig {
        providers: 0,
        ..SimConfig::default()
    };
    assert_eq!(World::new(zero).err(), Some(ConfigError::Zero("providers")));
    let crowd = SimConfig {
        cheater_ppm: [PPM, 1, 0, 0, 0],
        ..SimConfig::default()
    };
    assert!(matches!(
        World::new(crowd).err(),
        Some(ConfigError::TooManyCheaters(_))
    ));
    let policy = SimConfig {
        policies: vec![(VerifyPolicy::Replicate { n: 3, quorum: 1 }, 1)],
        ..SimConfig::default()
    };
    assert!(matches!(
        World::new(policy).err(),
        Some(ConfigError::BadPolicy { .. })
    ));
    let few = SimConfig {
        providers: 3,
        ..SimConfig::default()
    };
    assert!(matches!(
        World::new(few).err(),
        Some(ConfigError::TooFewProviders { .. })
    ));
}
