//! `agora bench ledger`: signed transfers verified, applied and durably committed per
//! second, then the replay (`verify`) speed over the same chain.
//!
//! Transactions are signed before the clock starts (signing is the wallets' work, not the
//! ledger's). Each block commits with `Durability::Immediate`, i.e. an fsync per block.
//! As a baseline in the same run, the same signatures are also checked one by one
//! (strict ed25519, one core), so the batch speed-up is visible.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use agora_core::Amount;
use agora_ledger::{CheckedBatch, Genesis, KeyCache, Ledger, Tx, verify};
use anyhow::Context;
use serde_json::json;

use super::workload::{SplitMix, transfers};

/// Arguments of `agora bench ledger`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Blocks to produce.
    #[arg(long, default_value_t = 30)]
    pub blocks: u64,
    /// Signed transfers per block.
    #[arg(long, default_value_t = 1000)]
    pub txs_per_block: usize,
    /// Funded accounts the transfers move between.
    #[arg(long, default_value_t = 10_000)]
    pub accounts: usize,
    /// Where to put the ledger [default: a temporary directory, removed afterwards].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `agora bench ledger`.
pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.blocks > 0 && args.txs_per_block > 0 && args.accounts > 1,
        "--blocks, --txs-per-block must be positive and --accounts at least 2"
    );
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temp.path().join("ledger"));
    let genesis_ms = super::now_ms();
    let (genesis, keys) =
        Genesis::dev("agora-bench", genesis_ms, args.accounts, Amount::agr(1_000));
    let mut ledger = Ledger::create(&dir, genesis.clone())
        .with_context(|| format!("creating {}", dir.display()))?;

    eprintln!(
        "bench ledger: signing {} transfers among {} accounts…",
        args.blocks as usize * args.txs_per_block,
        args.accounts
    );
    let mut rng = SplitMix::new(0xa60a);
    let mut batches: Vec<Vec<Tx>> = Vec::with_capacity(args.blocks as usize);
    let mut sim = genesis.initial_state()?;
    for _ in 0..args.blocks {
        let txs = transfers(&sim, &keys, &genesis.chain_id, args.txs_per_block, &mut rng);
        // Advance nonces for the next batch without timing anything.
        let ctx = agora_ledger::BlockContext {
            chain_id: &genesis.chain_id,
            params: &genesis.params,
            height: 0,
            timestamp_ms: genesis_ms,
        };
        for tx in &txs {
            agora_ledger::apply(&mut sim, tx, &ctx)
                .context("benchmark workload made an invalid transfer")?;
        }
        batches.push(txs);
    }

    let baseline_txs = &batches[0];
    let started = Instant::now();
    for tx in baseline_txs {
        agora_ledger::machine::check_signature(tx)?;
    }
    let single_per_s = baseline_txs.len() as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let checks = agora_ledger::block::verify_signatures(baseline_txs, &genesis.chain_id);
    let batch_per_s = baseline_txs.len() as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(
        checks.iter().all(Result::is_ok),
        "benchmark signatures failed to verify"
    );

    eprintln!(
        "bench ledger: producing {} blocks of {}…",
        args.blocks, args.txs_per_block
    );
    let mut block_ms = Vec::with_capacity(args.blocks as usize);
    let started = Instant::now();
    produce_pipelined(
        &mut ledger,
        batches,
        &keys.producer,
        genesis_ms,
        &mut block_ms,
    )?;
    let elapsed = started.elapsed().as_secs_f64();
    let total = args.blocks as f64 * args.txs_per_block as f64;
    let tx_per_s = total / elapsed;
    drop(ledger);

    eprintln!("bench ledger: replaying with verify…");
    let started = Instant::now();
    let report = verify(&dir)?;
    let verify_secs = started.elapsed().as_secs_f64();
    let verify_tx_per_s = report.txs as f64 / verify_secs;

    block_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| block_ms[((block_ms.len() - 1) as f64 * p).round() as usize];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if args.json {
        outln!(
            "{}",
            json!({
                "tx_per_s": tx_per_s.round(),
                "blocks": args.blocks,
                "txs_per_block": args.txs_per_block,
                "accounts": args.accounts,
                "elapsed_s": elapsed,
                "block_ms_median": pct(0.5),
                "block_ms_p99": pct(0.99),
                "verify_tx_per_s": verify_tx_per_s.round(),
                "verify_elapsed_s": verify_secs,
                "sig_single_per_s": single_per_s.round(),
                "sig_batch_per_s": batch_per_s.round(),
                "batch_speedup": batch_per_s / single_per_s,
                "threads": threads,
                "state_root": report.state_root,
            })
        );
    } else {
        outln!(
            "produce: {tx_per_s:.0} tx/s ({} blocks × {} transfers, {} accounts, fsync per block; block interval median {:.1} ms, p99 {:.1} ms)",
            args.blocks,
            args.txs_per_block,
            args.accounts,
            pct(0.5),
            pct(0.99)
        );
        outln!(
            "verify:  {verify_tx_per_s:.0} tx/s replay from genesis ({:.2}s)",
            verify_secs
        );
        outln!(
            "signatures: {batch_per_s:.0}/s batched on {threads} threads vs {single_per_s:.0}/s one by one ({:.1}×)",
            batch_per_s / single_per_s
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Produces one block per batch. A checker thread verifies the next batch's signatures
/// while this thread applies and commits the current block, as a market node does when it
/// checks transactions on arrival; every transaction is still verified, applied and
/// durably committed before its block counts.
fn produce_pipelined(
    ledger: &mut Ledger,
    batches: Vec<Vec<Tx>>,
    producer: &agora_core::Keypair,
    genesis_ms: u64,
    block_ms: &mut Vec<f64>,
) -> anyhow::Result<()> {
    let chain = ledger.genesis().chain_id.clone();
    std::thread::scope(|scope| {
        let (send, checked) = std::sync::mpsc::sync_channel::<CheckedBatch>(1);
        let chain = &chain;
        scope.spawn(move || {
            let mut keys = KeyCache::new();
            for txs in batches {
                if send
                    .send(CheckedBatch::with_keys(txs, chain, &mut keys))
                    .is_err()
                {
                    break;
                }
            }
        });
        let mut last = Instant::now();
        for batch in checked {
            let outcome =
                ledger.produce_checked_block(batch, genesis_ms + ledger.height() + 1, producer)?;
            anyhow::ensure!(
                outcome.rejected.is_empty(),
                "benchmark transfers were refused: {:?}",
                outcome.rejected.first()
            );
            block_ms.push(last.elapsed().as_secs_f64() * 1e3);
            last = Instant::now();
        }
        Ok(())
    })
}
