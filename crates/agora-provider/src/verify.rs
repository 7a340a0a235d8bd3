//! The checks an assignment must pass before the agent spends anything on it.
//!
//! Pure functions: the caller passes the chain, the accounts and the clock. An assignment
//! is taken only if the market authority signed it for this chain, it names this
//! provider, it embeds an order the buyer really signed (for this chain, with the id the
//! assignment states, well formed and not past its deadline), and the order fits what
//! this agent offers. Capacity *now* (free slots) is the caller's business.

use agora_core::{AccountId, ChainId, Fuel, Signed};
use agora_proto::order::signed_order_id;
use agora_proto::wire::{AbortJob, Assignment};

use crate::hardware::Capacity;

/// What an assignment is checked against.
#[derive(Clone, Debug)]
pub struct AssignmentRules<'a> {
    /// The chain every signature must name.
    pub chain: &'a ChainId,
    /// The market authority, the only signer of assignments and aborts.
    pub market: &'a AccountId,
    /// This provider.
    pub me: &'a AccountId,
    /// What this agent offers.
    pub capacity: &'a Capacity,
    /// The largest fuel budget this agent takes.
    pub max_job: Fuel,
    /// Whether this agent runs container jobs.
    pub containers: bool,
    /// The GPU groups it offers to container jobs.
    pub gpus: &'a [agora_market::GpuGroup],
}

/// Why an assignment was declined; the text goes back to the market.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Decline {
    /// Not signed by the market authority, or the signature or chain is wrong.
    #[error("assignment not from the market: {0}")]
    NotFromMarket(String),
    /// The assignment names another provider.
    #[error("assignment is for provider {0}, not this one")]
    WrongProvider(AccountId),
    /// The embedded order's signature or chain is wrong.
    #[error("the buyer's order signature does not check: {0}")]
    BadOrder(String),
    /// The assignment's order id is not the embedded order's.
    #[error("the assignment's order id does not match the embedded order")]
    OrderIdMismatch,
    /// The order is malformed.
    #[error("malformed order: {0}")]
    Malformed(String),
    /// The order's deadline has passed.
    #[error("the order's deadline has passed")]
    PastDeadline,
    /// The order needs more than this agent offers.
    #[error("the order needs more than this provider offers: {0}")]
    TooBig(String),
    /// Every slot is busy.
    #[error("at capacity: all {slots} job slots are busy; assign another provider")]
    AtCapacity {
        /// The slots this agent has.
        slots: u32,
    },
    /// Running jobs hold too much of the declared memory.
    #[error(
        "not enough free memory: {needed_mib} MiB asked, {free_mib} MiB free; assign another provider"
    )]
    MemoryBusy {
        /// What the order needs.
        needed_mib: u64,
        /// What is free now.
        free_mib: u64,
    },
    /// The agent is shutting down.
    #[error("the provider is shutting down")]
    ShuttingDown,
}

impl Decline {
    /// Whether the refusal is only about what is busy right now (a slot or memory), so
    /// the same assignment may be taken a moment later.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            Decline::AtCapacity { .. } | Decline::MemoryBusy { .. }
        )
    }
}

/// Checks `signed` against `rules` at `now_ms`; returns the assignment when it may be run.
pub fn check_assignment<'s>(
    signed: &'s Signed<Assignment>,
    rules: &AssignmentRules<'_>,
    now_ms: u64,
) -> Result<&'s Assignment, Decline> {
    if &signed.signer != rules.market {
        return Err(Decline::NotFromMarket(format!(
            "signed by {}, the market is {}",
            signed.signer, rules.market
        )));
    }
    signed
        .verify(rules.chain)
        .map_err(|e| Decline::NotFromMarket(e.to_string()))?;
    let assignment = &signed.body;
    if &assignment.provider != rules.me {
        return Err(Decline::WrongProvider(assignment.provider));
    }
    let order = &assignment.order;
    order
        .verify(rules.chain)
        .map_err(|e| Decline::BadOrder(e.to_string()))?;
    if signed_order_id(order) != assignment.order_id {
        return Err(Decline::OrderIdMismatch);
    }
    order
        .body
        .check_shape()
        .map_err(|e| Decline::Malformed(e.to_string()))?;
    if order.body.deadline_ms <= now_ms {
        return Err(Decline::PastDeadline);
    }
    check_fits(&order.body, rules)?;
    Ok(assignment)
}

/// Whether the order's demand fits what the agent offers.
fn check_fits(
    order: &agora_proto::OrderRequest,
    rules: &AssignmentRules<'_>,
) -> Result<(), Decline> {
    let offered = rules.capacity.resources();
    let demand = &order.demand;
    let too_big = |what: &str, asked: u64, offered: u64| {
        Err(Decline::TooBig(format!(
            "{what} {asked} asked, {offered} offered"
        )))
    };
    if demand.cpu_millis > offered.cpu_millis {
        return too_big("cpu millicores", demand.cpu_millis, offered.cpu_millis);
    }
    let memory = demand.memory_bytes.max(order.job.memory_bytes);
    if memory > offered.memory_bytes {
        return too_big("memory bytes", memory, offered.memory_bytes);
    }
    if demand.disk_bytes > offered.disk_bytes {
        return too_big("disk bytes", demand.disk_bytes, offered.disk_bytes);
    }
    if order.fuel_budget > rules.max_job {
        return too_big("fuel", order.fuel_budget.0, rules.max_job.0);
    }
    if order.job.workload.oci().is_some() && !rules.containers {
        return Err(Decline::TooBig(
            "a container job: this agent runs WASM jobs only".into(),
        ));
    }
    if let Some(gpu) = &demand.gpu {
        let fits = |group: &&agora_market::GpuGroup| {
            gpu.model.as_ref().is_none_or(|m| *m == group.model)
                && group.count >= gpu.count
                && group.vram_bytes >= gpu.min_vram_bytes
        };
        if !rules.gpus.iter().any(|g| fits(&g)) {
            return Err(Decline::TooBig(format!(
                "{} GPU(s) of {} with {} bytes each asked; offered: {:?}",
                gpu.count,
                gpu.model.as_deref().unwrap_or("any model"),
                gpu.min_vram_bytes,
                rules.gpus
            )));
        }
    }
    Ok(())
}

/// Checks that an abort comes from the market authority on this chain.
pub fn check_abort(
    signed: &Signed<AbortJob>,
    chain: &ChainId,
    market: &AccountId,
) -> Result<(), Decline> {
    if &signed.signer != market {
        return Err(Decline::NotFromMarket(format!(
            "abort signed by {}, the market is {market}",
            signed.signer
        )));
    }
    signed
        .verify(chain)
        .map_err(|e| Decline::NotFromMarket(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::{Amount, Hash, Keypair, Price};
    use agora_market::{Demand, GpuDemand, Requirements};
    use agora_proto::{JobSpec, OrderRequest};

    struct World {
        chain: ChainId,
        market: Keypair,
        me: Keypair,
        buyer: Keypair,
        capacity: Capacity,
    }

    fn world() -> World {
        World {
            chain: ChainId::new("test"),
            market: Keypair::from_seed("market"),
            me: Keypair::from_seed("provider"),
            buyer: Keypair::from_seed("buyer"),
            capacity: Capacity {
                cpus: 2,
                memory_bytes: 1 << 30,
                disk_bytes: 1 << 30,
                gpus: vec![],
                slots: 2,
                arch: "x86_64".into(),
            },
        }
    }

    fn order() -> OrderRequest {
        OrderRequest {
            job: JobSpec {
                module: Hash::of(b"m"),
                module_size: 1,
                inputs: vec![],
                args: vec![],
                env: vec![],
                memory_bytes: 64 << 20,
                workload: agora_proto::Workload::Wasm,
            },
            demand: Demand {
                cpu_millis: 1000,
                memory_bytes: 64 << 20,
                disk_bytes: 0,
                gpu: None,
            },
            requirements: Requirements::default(),
            max_price: Price(1000),
            fuel_budget: Fuel::compute_units(1),
            deadline_ms: 10_000,
            escrow: Amount(1000),
            replicas: 1,
            verify: agora_proto::VerifyPolicy::None,
            label: "t".into(),
            task: None,
            auction: Default::default(),
        }
    }

    fn assign(w: &World, signer: &Keypair, body: OrderRequest) -> Signed<Assignment> {
        let order = Signed::sign(&w.buyer, &w.chain, 9, body);
        let assignment = Assignment {
            order_id: signed_order_id(&order),
            order,
            provider: w.me.account(),
            price: Price(10),
            attempt: 0,
            heartbeat_ms: 500,
        };
        Signed::sign(signer, &w.chain, 1, assignment)
    }

    fn check(w: &World, signed: &Signed<Assignment>) -> Result<(), Decline> {
        check_on(w, signed, false, &[])
    }

    fn check_on(
        w: &World,
        signed: &Signed<Assignment>,
        containers: bool,
        gpus: &[agora_market::GpuGroup],
    ) -> Result<(), Decline> {
        let (market, me) = (w.market.account(), w.me.account());
        let rules = AssignmentRules {
            chain: &w.chain,
            market: &market,
            me: &me,
            capacity: &w.capacity,
            max_job: Fuel::compute_units(100),
            containers,
            gpus,
        };
        check_assignment(signed, &rules, 1_000).map(|_| ())
    }

    #[test]
    fn container_and_gpu_orders_need_an_agent_that_offers_them() {
        let w = world();
        let mut container = order();
        container.job.workload = agora_proto::Workload::Oci(agora_proto::OciJob {
            entrypoint: None,
            working_dir: None,
            network: false,
            deterministic: true,
            max_unpacked_bytes: 1 << 30,
        });
        let signed = assign(&w, &w.market, container.clone());
        assert!(matches!(check(&w, &signed), Err(Decline::TooBig(_))));
        assert_eq!(check_on(&w, &signed, true, &[]), Ok(()));
        container.demand.gpu = Some(GpuDemand {
            model: Some("NVIDIA-H200".into()),
            min_vram_bytes: 100 << 30,
            count: 1,
        });
        let h200 = agora_market::GpuGroup {
            model: "NVIDIA-H200".into(),
            vram_bytes: 140 << 30,
            count: 1,
        };
        let signed = assign(&w, &w.market, container.clone());
        assert_eq!(
            check_on(&w, &signed, true, std::slice::from_ref(&h200)),
            Ok(())
        );
        let small = agora_market::GpuGroup {
            vram_bytes: 40 << 30,
            ..h200.clone()
        };
        assert!(matches!(
            check_on(&w, &signed, true, &[small]),
            Err(Decline::TooBig(_))
        ));
        container.demand.gpu.as_mut().unwrap().count = 2;
        let signed = assign(&w, &w.market, container);
        assert!(matches!(
            check_on(&w, &signed, true, &[h200]),
            Err(Decline::TooBig(_))
        ));
    }

    #[test]
    fn a_proper_assignment_passes() {
        let w = world();
        assert_eq!(check(&w, &assign(&w, &w.market, order())), Ok(()));
    }

    #[test]
    fn only_the_market_may_assign() {
        let w = world();
        let impostor = Keypair::from_seed("impostor");
        assert!(matches!(
            check(&w, &assign(&w, &impostor, order())),
            Err(Decline::NotFromMarket(_))
        ));
        let mut forged = assign(&w, &w.market, order());
        forged.body.price = Price(1_000_000);
        assert!(matches!(check(&w, &forged), Err(Decline::NotFromMarket(_))));
    }

    #[test]
    fn tampered_orders_and_other_providers_are_declined() {
        let w = world();
        let mut tampered = assign(&w, &w.market, order());
        tampered.body.order.body.fuel_budget = Fuel::compute_units(50);
        tampered = Signed::sign(&w.market, &w.chain, 2, tampered.body);
        assert!(matches!(check(&w, &tampered), Err(Decline::BadOrder(_))));

        let mut other = assign(&w, &w.market, order()).body;
        other.provider = Keypair::from_seed("someone").account();
        let other = Signed::sign(&w.market, &w.chain, 3, other);
        assert!(matches!(check(&w, &other), Err(Decline::WrongProvider(_))));

        let mut wrong_id = assign(&w, &w.market, order()).body;
        wrong_id.order_id = Hash::of(b"other");
        let wrong_id = Signed::sign(&w.market, &w.chain, 4, wrong_id);
        assert_eq!(check(&w, &wrong_id), Err(Decline::OrderIdMismatch));
    }

    #[test]
    fn orders_that_do_not_fit_are_declined() {
        let w = world();
        let mut big = order();
        big.demand.cpu_millis = 3000;
        assert!(matches!(
            check(&w, &assign(&w, &w.market, big)),
            Err(Decline::TooBig(_))
        ));
        let mut hungry = order();
        hungry.job.memory_bytes = 2 << 30;
        assert!(matches!(
            check(&w, &assign(&w, &w.market, hungry)),
            Err(Decline::TooBig(_))
        ));
        let mut gpu = order();
        gpu.demand.gpu = Some(GpuDemand {
            model: None,
            min_vram_bytes: 1,
            count: 1,
        });
        assert!(matches!(
            check(&w, &assign(&w, &w.market, gpu)),
            Err(Decline::TooBig(_))
        ));
        let mut late = order();
        late.deadline_ms = 999;
        assert_eq!(
            check(&w, &assign(&w, &w.market, late)),
            Err(Decline::PastDeadline)
        );
        let mut broke = order();
        broke.escrow = Amount(1);
        assert!(matches!(
            check(&w, &assign(&w, &w.market, broke)),
            Err(Decline::Malformed(_))
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// Whatever byte of a signed assignment is changed in transit, the result (if it
        /// still decodes to something different) is declined: every field is covered by
        /// the market's or the buyer's signature.
        #[test]
        fn any_tampering_is_declined(position in proptest::prelude::any::<proptest::sample::Index>(), flip in 1u8..=255) {
            let w = world();
            let original = assign(&w, &w.market, order());
            let mut bytes = agora_core::canonical::encode(&original);
            let at = position.index(bytes.len());
            bytes[at] ^= flip;
            if let Ok(tampered) = agora_core::canonical::decode::<Signed<Assignment>>(&bytes)
                && tampered != original
            {
                proptest::prop_assert!(check(&w, &tampered).is_err());
            }
        }
    }

    #[test]
    fn aborts_must_come_from_the_market() {
        let w = world();
        let body = AbortJob {
            order_id: Hash::of(b"o"),
            reason: "reassigned".into(),
        };
        let market = w.market.account();
        let good = Signed::sign(&w.market, &w.chain, 1, body.clone());
        assert_eq!(check_abort(&good, &w.chain, &market), Ok(()));
        let bad = Signed::sign(&w.buyer, &w.chain, 1, body);
        assert!(check_abort(&bad, &w.chain, &market).is_err());
    }
}
