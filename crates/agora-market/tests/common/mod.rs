//! Builders shared by the integration tests.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use agora_core::{AccountId, Fuel, Hash, Price};
use agora_market::resources::GIB;
use agora_market::{
    Ask, AskId, Demand, GpuDemand, GpuGroup, Market, Order, OrderId, Requirements, ResourceClass,
    Resources,
};

pub const HOUR: u64 = 3_600_000;

/// A provider account from a number (the market never checks signatures itself).
pub fn provider(i: u32) -> AccountId {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    bytes[31] = 0xA5;
    AccountId::from_bytes(bytes)
}

pub fn buyer() -> AccountId {
    AccountId::from_bytes([0xB0; 32])
}

pub fn order_id(n: u64) -> OrderId {
    OrderId(Hash::tagged("test-order", &[&n.to_le_bytes()]))
}

/// A CPU ask: `cores` cores, 4 GiB per core, at `price` per CU, with `attrs`.
pub fn cpu_ask(p: u32, name: &str, cores: u64, price: u64, attrs: &[(&str, &str)]) -> Ask {
    let provider = provider(p);
    Ask {
        id: AskId::named(&provider, name),
        provider,
        capacity: Resources {
            cpu_millis: cores * 1000,
            memory_bytes: cores * 4 * GIB,
            disk_bytes: 100 * GIB,
            gpus: Vec::new(),
        },
        arch: "x86_64".into(),
        features: ["wasm".to_string()].into(),
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        prices: [(ResourceClass::cpu(), Price(price))].into(),
        min_job: Fuel(1),
        max_job: Fuel::compute_units(1_000_000),
        expires_ms: 100 * HOUR,
    }
}

/// A GPU ask with `count` GPUs of `model` with `vram_gib` each.
pub fn gpu_ask(
    p: u32,
    name: &str,
    model: &str,
    vram_gib: u64,
    count: u32,
    price: u64,
    attrs: &[(&str, &str)],
) -> Ask {
    let mut ask = cpu_ask(p, name, 16, price, attrs);
    ask.capacity.gpus = vec![GpuGroup {
        model: model.into(),
        vram_bytes: vram_gib * GIB,
        count,
    }];
    ask.features.insert("gpu".into());
    ask.prices = [(ResourceClass::gpu(model), Price(price))].into();
    ask
}

/// An order for one replica of `cores` cores and 1 GiB, capped at `cap`.
pub fn cpu_order(n: u64, cores: u64, cap: u64) -> Order {
    Order {
        id: order_id(n),
        buyer: buyer(),
        demand: Demand {
            cpu_millis: cores * 1000,
            memory_bytes: GIB,
            disk_bytes: 0,
            gpu: None,
        },
        requirements: Requirements::default(),
        fuel: Fuel::compute_units(10),
        cap: Price(cap),
        deadline_ms: 10 * HOUR,
    }
}

pub fn gpu_order(n: u64, model: Option<&str>, vram_gib: u64, count: u32, cap: u64) -> Order {
    let mut order = cpu_order(n, 1, cap);
    order.demand.gpu = Some(GpuDemand {
        model: model.map(Into::into),
        min_vram_bytes: vram_gib * GIB,
        count,
    });
    order
}

/// Everything observable about a market's state, to show that a refused call changed nothing.
pub fn fingerprint(market: &Market, asks: &[AskId], now_ms: u64) -> String {
    let free: BTreeMap<String, Option<Resources>> = asks
        .iter()
        .map(|id| (id.to_string(), market.free_capacity(id)))
        .collect();
    let classes: BTreeSet<ResourceClass> = [
        ResourceClass::cpu(),
        ResourceClass::gpu("A100"),
        ResourceClass::gpu("H100"),
    ]
    .into();
    let indexes: Vec<_> = classes.iter().map(|c| market.index(c, now_ms)).collect();
    format!(
        "{} {} {:?} {:?}",
        market.ask_count(),
        market.provider_count(),
        free,
        indexes
    )
}
