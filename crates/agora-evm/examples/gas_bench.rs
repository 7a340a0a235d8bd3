//! Gas and speed of settlement on the EVM backend, beside the embedded ledger in the same run.
//!
//! ```text
//! cargo run --release -p agora-evm --example gas_bench [-- --rounds N] [--distinct]
//! ```
//!
//! Jobs cycle through 20 buyers and 10 providers, so in a batch of 100 most balance slots
//! are already warm; `--distinct` gives every job of a batch its own buyer and provider
//! (every slot cold: the worst case for gas per job).
//!
//! For batch sizes 1, 10 and 100 it opens that many escrows (each buyer's own transaction),
//! assigns them (one authority transaction per batch) and settles them: per job a release
//! of 700 to its provider, fee to the treasury, and a refund of the other 300 to the buyer,
//! submitted through `Settlement::submit` as two ledger transactions per job. It reports
//! gas per job of each step from the receipts, and the submit → settled latency and jobs/s
//! of the settle step on anvil and on the embedded ledger (redb, fsync per block). Medians
//! over the rounds. Needs anvil (`cd contracts && npm ci --ignore-scripts`).

use std::time::{Duration, Instant};

use agora_core::{Amount, Hash, Keypair, Signed};
use agora_evm::{Anvil, EvmConfig, EvmSettlement};
use agora_ledger::{Genesis, Ledger, Settlement, Tx, TxBody};

const SIZES: [usize; 3] = [1, 10, 100];
const PRICE: u64 = 700;
const BUDGET: u64 = 1_000;

fn median<T: Copy + PartialOrd>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    values[values.len() / 2]
}

fn sign(settlement: &impl Settlement, key: &Keypair, nonce: u64, body: TxBody) -> Tx {
    Signed::sign(key, settlement.chain_id(), nonce, body)
}

/// The settle transactions of a batch: release to the provider, refund the rest.
fn settle_txs<S: Settlement>(
    s: &S,
    market: &Keypair,
    jobs: &[(Hash, Keypair, Keypair)],
) -> Vec<Tx> {
    let mut nonce = s
        .account(&market.account())
        .expect("authority account")
        .next_nonce;
    let mut txs = Vec::with_capacity(jobs.len() * 2);
    for (order_id, _, provider) in jobs {
        txs.push(sign(
            s,
            market,
            nonce,
            TxBody::ReleaseEscrow {
                order_id: *order_id,
                payouts: vec![(provider.account(), Amount(PRICE))],
            },
        ));
        txs.push(sign(
            s,
            market,
            nonce + 1,
            TxBody::RefundEscrow {
                order_id: *order_id,
            },
        ));
        nonce += 2;
    }
    txs
}

/// Opens the escrows of a batch (buyers' own transactions), one submission.
fn open_txs<S: Settlement>(s: &S, jobs: &[(Hash, Keypair, Keypair)], deadline_ms: u64) -> Vec<Tx> {
    let mut nonces = std::collections::HashMap::new();
    jobs.iter()
        .map(|(order_id, buyer, _)| {
            let nonce = nonces
                .entry(buyer.account())
                .or_insert_with(|| s.account(&buyer.account()).expect("buyer").next_nonce);
            let tx = sign(
                s,
                buyer,
                *nonce,
                TxBody::OpenEscrow {
                    order_id: *order_id,
                    amount: Amount(BUDGET),
                    deadline_ms,
                },
            );
            *nonce += 1;
            tx
        })
        .collect()
}

struct Row {
    size: usize,
    open_gas: u64,
    assign_gas: u64,
    settle_gas: u64,
    evm_latency: Duration,
    embedded_latency: Duration,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args()
        .skip_while(|a| a != "--rounds")
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(5);
    let distinct = std::env::args().any(|a| a == "--distinct");
    let (buyers_n, providers_n) = if distinct { (100, 100) } else { (20, 10) };
    let (genesis, keys) = Genesis::dev(
        "gas-bench",
        1_000,
        buyers_n + providers_n,
        Amount(1_000_000_000),
    );
    let buyers = &keys.users[..buyers_n];
    let providers = &keys.users[buyers_n..];

    let anvil = Anvil::spawn()?;
    let funded: Vec<(&Keypair, Amount)> = keys
        .users
        .iter()
        .map(|k| (k, Amount(1_000_000_000)))
        .collect();
    let deployment = EvmSettlement::deploy_dev(
        &anvil.endpoint(),
        &genesis.params,
        &keys.market,
        &keys.treasury,
        0,
        &funded,
    )?;
    let mut evm = EvmSettlement::connect(
        EvmConfig::new(
            anvil.endpoint(),
            deployment.market,
            genesis.chain_id.clone(),
            genesis.params.clone(),
        ),
        &keys.market,
    )?;
    for key in &keys.users {
        evm.add_key(key);
    }
    let dir = tempfile::tempdir()?;
    let mut embedded = Ledger::create(dir.path(), genesis.clone())?;
    let mut now_ms = 10_000;

    let mut rows = Vec::new();
    let mut serial = 0u64;
    for size in SIZES {
        let mut samples = Vec::new();
        for _ in 0..rounds {
            let jobs: Vec<(Hash, Keypair, Keypair)> = (0..size)
                .map(|_| {
                    serial += 1;
                    (
                        Hash::of(&serial.to_le_bytes()),
                        buyers[serial as usize % buyers_n].clone(),
                        providers[serial as usize % providers_n].clone(),
                    )
                })
                .collect();

            // EVM: open, assign, settle.
            let (_, chain_now) = evm.block_on(evm.chain().head())?;
            let opens = open_txs(&evm, &jobs, chain_now * 1000 + 3_600_000);
            let outcome = evm.submit(opens, 0, &keys.producer)?;
            assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
            let open_gas: u64 = evm.last_receipts().iter().map(|r| r.gas_used).sum();
            let assignments: Vec<(Hash, Vec<agora_core::AccountId>)> = jobs
                .iter()
                .map(|(o, _, p)| (*o, vec![p.account()]))
                .collect();
            evm.assign_batch(&assignments)?;
            let assign_gas: u64 = evm.last_receipts().iter().map(|r| r.gas_used).sum();
            let settles = settle_txs(&evm, &keys.market, &jobs);
            let started = Instant::now();
            let outcome = evm.submit(settles, 0, &keys.producer)?;
            let evm_latency = started.elapsed();
            assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
            let settle_gas: u64 = evm.last_receipts().iter().map(|r| r.gas_used).sum();

            // Embedded: the same ledger transactions.
            let opens = open_txs(&embedded, &jobs, now_ms + 3_600_000);
            now_ms += 1;
            embedded.submit(opens, now_ms, &keys.producer)?;
            let settles = settle_txs(&embedded, &keys.market, &jobs);
            now_ms += 1;
            let started = Instant::now();
            let outcome = embedded.submit(settles, now_ms, &keys.producer)?;
            let embedded_latency = started.elapsed();
            assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);

            samples.push(Row {
                size,
                open_gas: open_gas / size as u64,
                assign_gas: assign_gas / size as u64,
                settle_gas: settle_gas / size as u64,
                evm_latency,
                embedded_latency,
            });
        }
        rows.push(Row {
            size,
            open_gas: median(samples.iter().map(|r| r.open_gas).collect()),
            assign_gas: median(samples.iter().map(|r| r.assign_gas).collect()),
            settle_gas: median(samples.iter().map(|r| r.settle_gas).collect()),
            evm_latency: median(samples.iter().map(|r| r.evm_latency).collect()),
            embedded_latency: median(samples.iter().map(|r| r.embedded_latency).collect()),
        });
    }

    let supply = evm.supply()?;
    assert!(
        supply.conserved(),
        "conservation violated on chain: {supply:?}"
    );
    println!(
        "EVM settlement on anvil vs the embedded ledger, median of {rounds} rounds per batch size; {buyers_n} buyers, {providers_n} providers"
    );
    println!();
    println!(
        "| jobs per batch | open gas/job | assign gas/job | settle gas/job | settle+assign gas/job | EVM submit→settled | EVM jobs/s | embedded submit→settled | embedded jobs/s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let per_s = |d: Duration| r.size as f64 / d.as_secs_f64();
        println!(
            "| {} | {} | {} | {} | {} | {:.1} ms | {:.0} | {:.2} ms | {:.0} |",
            r.size,
            r.open_gas,
            r.assign_gas,
            r.settle_gas,
            r.settle_gas + r.assign_gas,
            r.evm_latency.as_secs_f64() * 1e3,
            per_s(r.evm_latency),
            r.embedded_latency.as_secs_f64() * 1e3,
            per_s(r.embedded_latency),
        );
    }
    println!();
    println!(
        "conservation on chain: {} accounted = {} held",
        supply.accounted(),
        supply.held
    );
    Ok(())
}
