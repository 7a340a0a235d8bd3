//! The sharding rule: however claims and releases from several shards interleave, the
//! chain's lease table never grants a provider more leases than it has slots, never one
//! slot twice, and only the holder can release a slot. And a whole sharded run assigns
//! nobody twice, ends every job, and conserves money.

use agora_sim::shard::{self, Lease, LeaseError, LeaseTable, ShardConfig};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Claim { shard: u32, provider: u32 },
    Release { pick: usize },
    Forge { provider: u32, slot: u32 },
}

fn op(providers: u32) -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..4u32, 0..providers).prop_map(|(shard, provider)| Op::Claim { shard, provider }),
        3 => any::<usize>().prop_map(|pick| Op::Release { pick }),
        1 => (0..providers + 1, 0..5u32).prop_map(|(provider, slot)| Op::Forge { provider, slot }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_provider_slot_is_ever_double_assigned(
        slots in prop::collection::vec(1u32..4, 1..6),
        ops in prop::collection::vec(op(6), 1..300),
    ) {
        let mut table = LeaseTable::new(&slots);
        // The model: what each granted lease holds.
        let mut held: Vec<(u32, u32, u64)> = Vec::new();
        let mut next_order = 0u64;
        for op in ops {
            match op {
                Op::Claim { shard, provider } => {
                    next_order += 1;
                    let result = table.claim(provider, Lease { shard, order: next_order });
                    let p = provider as usize;
                    match result {
                        Ok(slot) => {
                            prop_assert!(p < slots.len());
                            prop_assert!(slot < slots[p]);
                            prop_assert!(!held.iter().any(|&(hp, hs, _)| hp == provider && hs == slot), "slot {slot} of {provider} granted twice");
                            held.push((provider, slot, next_order));
                        }
                        Err(LeaseError::Full { .. }) => {
                            let n = held.iter().filter(|&&(hp, _, _)| hp == provider).count() as u32;
                            prop_assert_eq!(n, slots[p], "refused while a slot was free");
                        }
                        Err(LeaseError::UnknownProvider(_)) => prop_assert!(p >= slots.len()),
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
                Op::Release { pick } if !held.is_empty() => {
                    let (provider, slot, order) = held.remove(pick % held.len());
                    prop_assert!(table.release(provider, slot, order).is_ok());
                    prop_assert!(table.release(provider, slot, order).is_err(), "released twice");
                }
                Op::Release { .. } => {}
                Op::Forge { provider, slot } => {
                    // Someone who holds nothing tries to free a slot: refused, nothing changes.
                    let before = table.held(provider);
                    prop_assert!(table.release(provider, slot, u64::MAX).is_err());
                    prop_assert_eq!(table.held(provider), before);
                }
            }
            for (p, &n) in slots.iter().enumerate() {
                prop_assert!(table.held(p as u32) <= n);
                let modeled = held.iter().filter(|&&(hp, _, _)| hp as usize == p).count() as u32;
                prop_assert_eq!(table.held(p as u32), modeled);
            }
            prop_assert!(table.audit().is_ok());
        }
    }
}

#[test]
fn a_sharded_run_assigns_nobody_twice_and_conserves_money() {
    let config = ShardConfig {
        shards: 3,
        providers: 120,
        jobs: 4_000,
        arrivals_per_s: 8,
        ..ShardConfig::default()
    };
    let report = shard::run(config);
    assert_eq!(report.double_assignments, 0);
    assert!(report.max_load <= 1.0, "{}", report.max_load);
    assert!(report.conserved);
    assert_eq!(report.settled + report.unplaced, 4_000);
    assert!(report.settled > 3_900, "{report:?}");
    assert!(report.cross_shard_claims > 0);
    // The gossip delay crosses regions: more than the in-region base latency.
    assert!(report.cross_shard_gossip_ms[0] > 2, "{report:?}");
    // With a busy book some optimistic matches race and lose; each is re-matched.
    assert!(report.refused > 0, "{report:?}");
}
