//! `agora ledger`: create, inspect and audit a settlement ledger data directory, and
//! `agora bench ledger`: measure how fast it settles and replays.

mod bench;
mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use agora_core::{AccountId, Amount};
use agora_ledger::{DevKeys, Genesis, Ledger, Tx, VerifyError, verify};
use anyhow::{Context, bail};
use serde_json::json;

pub use bench::{BenchArgs, bench};

/// Subcommands of `agora ledger`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a ledger: from a genesis JSON file, or a dev genesis with seeded keys.
    Init {
        /// The data directory to create the ledger in.
        #[arg(long)]
        data_dir: PathBuf,
        /// A genesis JSON file; without it a dev chain is made whose keys derive from
        /// public seeds (`agora-dev/...`): for demos only, never for real money.
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// Funded users in the dev genesis.
        #[arg(long, default_value_t = 16)]
        users: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replay every block from genesis and check every signature, hash and state root.
    Verify {
        /// The ledger's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the chain summary, a block with its transactions, or an account.
    Show {
        /// The ledger's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Show the block at this height.
        #[arg(long)]
        height: Option<u64>,
        /// Show this account (balance, nonce, stake, escrows it opened).
        #[arg(long)]
        account: Option<AccountId>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write blocks of mixed transactions to a dev ledger until killed (crash tests).
    #[command(hide = true)]
    StressWrite {
        /// The ledger's data directory (made by `agora ledger init` without --genesis).
        #[arg(long)]
        data_dir: PathBuf,
        /// Transactions per block.
        #[arg(long, default_value_t = 50)]
        txs_per_block: usize,
        /// Stop after this many blocks (0: never).
        #[arg(long, default_value_t = 0)]
        blocks: u64,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `agora ledger`.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Init {
            data_dir,
            genesis,
            users,
            json,
        } => init(&data_dir, genesis.as_deref(), users, json),
        Command::Verify { data_dir, json } => run_verify(&data_dir, json),
        Command::Show {
            data_dir,
            height,
            account,
            json,
        } => show(&data_dir, height, account, json),
        Command::StressWrite {
            data_dir,
            txs_per_block,
            blocks,
            json,
        } => stress_write(&data_dir, txs_per_block, blocks, json),
    }
}

/// Milliseconds since the Unix epoch, from the system clock.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn init(
    data_dir: &Path,
    genesis_file: Option<&Path>,
    users: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (genesis, dev) = match genesis_file {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading genesis file {}", file.display()))?;
            let genesis: Genesis = serde_json::from_str(&text).with_context(|| {
                format!(
                    "parsing genesis file {} (see `Genesis` in agora-ledger)",
                    file.display()
                )
            })?;
            (genesis, false)
        }
        None => {
            if users == 0 {
                bail!("--users must be at least 1");
            }
            let (genesis, _) = Genesis::dev("agora-dev", now_ms(), users, Amount::agr(1_000_000));
            (genesis, true)
        }
    };
    let mut ledger = Ledger::create(data_dir, genesis.clone())
        .with_context(|| format!("creating a ledger in {}", data_dir.display()))?;
    let supply = genesis.supply()?;
    if json {
        let out = json!({
            "data_dir": data_dir,
            "chain_id": genesis.chain_id,
            "genesis_hash": genesis.hash(),
            "state_root": ledger.state_root(),
            "accounts": genesis.allocations.len(),
            "supply_base_units": supply.0,
            "dev_keys": dev,
            "genesis": genesis,
        });
        outln!("{out}");
    } else {
        outln!(
            "created ledger {} in {}: {} accounts, supply {supply}, genesis {}",
            genesis.chain_id,
            data_dir.display(),
            genesis.allocations.len(),
            genesis.hash().short()
        );
        if dev {
            outln!(
                "dev chain: keys derive from the public seeds agora-dev/{{market,treasury,producer,user/N}}; never hold real value"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_verify(data_dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    match verify(data_dir) {
        Ok(report) => {
            let secs = started.elapsed().as_secs_f64();
            let tx_per_s = if secs > 0.0 {
                report.txs as f64 / secs
            } else {
                0.0
            };
            if json {
                let out = json!({ "ok": true, "report": report, "elapsed_ms": secs * 1e3, "tx_per_s": tx_per_s.round() });
                outln!("{out}");
            } else {
                let s = report.supply;
                outln!(
                    "ok: chain {} height {} state root {} supply {} (balances {}, escrow {}, stake {}, vouchers {}, burned {}); replayed {} txs in {:.2}s ({:.0} tx/s)",
                    report.chain_id,
                    report.height,
                    report.state_root,
                    s.minted,
                    s.balances,
                    s.escrow,
                    s.stakes,
                    s.vouchers,
                    s.burned,
                    report.txs,
                    secs,
                    tx_per_s
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err @ (VerifyError::BadBlock { .. } | VerifyError::StoredStateDiffers { .. })) => {
            let height = match &err {
                VerifyError::BadBlock { height, .. }
                | VerifyError::StoredStateDiffers { height, .. } => *height,
                VerifyError::Store(_) => 0,
            };
            if json {
                outln!(
                    "{}",
                    json!({ "ok": false, "bad_height": height, "error": err.to_string() })
                );
            } else {
                eprintln!("verify failed at height {height}: {err}");
            }
            Ok(ExitCode::from(2))
        }
        Err(err) => {
            Err(anyhow::Error::new(err).context(format!("verifying {}", data_dir.display())))
        }
    }
}

fn show(
    data_dir: &Path,
    height: Option<u64>,
    account: Option<AccountId>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut ledger =
        Ledger::open(data_dir).with_context(|| format!("opening {}", data_dir.display()))?;
    let mut out = serde_json::Map::new();
    if height.is_none() && account.is_none() {
        out.insert("chain".into(), chain_summary(&mut ledger));
    }
    if let Some(h) = height {
        let block = ledger.block(h)?.with_context(|| {
            format!(
                "no block at height {h}; the chain is at height {}",
                ledger.height()
            )
        })?;
        out.insert("block".into(), block_json(&block));
    }
    if let Some(id) = account {
        out.insert("account".into(), account_json(&ledger, &id));
    }
    let out = serde_json::Value::Object(out);
    if json {
        outln!("{out}");
    } else {
        print_human(&out);
    }
    Ok(ExitCode::SUCCESS)
}

fn chain_summary(ledger: &mut Ledger) -> serde_json::Value {
    let root = ledger.state_root();
    let state = ledger.state();
    json!({
        "chain_id": ledger.genesis().chain_id,
        "height": ledger.height(),
        "head_hash": ledger.tip().hash,
        "timestamp_ms": ledger.tip().timestamp_ms,
        "state_root": root,
        "supply": state.supply(),
        "accounts": state.accounts().count(),
        "escrows_open": state.escrows().filter(|(_, e)| e.status == agora_ledger::EscrowStatus::Open).count(),
        "stakers": state.stakes().count(),
        "params": ledger.genesis().params,
    })
}

fn block_json(block: &agora_ledger::Block) -> serde_json::Value {
    let txs: Vec<_> = block.txs.iter().map(tx_json).collect();
    json!({ "hash": block.header.hash(), "header": block.header, "txs": txs })
}

fn tx_json(tx: &Tx) -> serde_json::Value {
    json!({ "id": tx.id(), "kind": tx.body.kind(), "signer": tx.signer, "nonce": tx.nonce, "body": tx.body })
}

fn account_json(ledger: &Ledger, id: &AccountId) -> serde_json::Value {
    let state = ledger.state();
    let escrows: Vec<_> = state
        .escrows()
        .filter(|(_, e)| e.buyer == *id)
        .map(|(order, e)| json!({ "order_id": order, "escrow": e }))
        .collect();
    json!({
        "id": id,
        "balance": state.balance(id),
        "balance_text": state.balance(id).to_string(),
        "next_nonce": state.next_nonce(id),
        "stake": state.stake(id),
        "escrows": escrows,
    })
}

/// Prints nested JSON as indented `key: value` lines, for people.
fn print_human(value: &serde_json::Value) {
    fn walk(value: &serde_json::Value, indent: usize, key: &str) {
        let pad = " ".repeat(indent);
        match value {
            serde_json::Value::Object(map) => {
                if !key.is_empty() {
                    outln!("{pad}{key}:");
                }
                let next = if key.is_empty() { indent } else { indent + 2 };
                for (k, v) in map {
                    walk(v, next, k);
                }
            }
            serde_json::Value::Array(items)
                if items.iter().any(|i| i.is_object() || i.is_array()) =>
            {
                outln!("{pad}{key}: ({} items)", items.len());
                for (i, item) in items.iter().enumerate() {
                    walk(item, indent + 2, &format!("[{i}]"));
                }
            }
            serde_json::Value::String(text) => outln!("{pad}{key}: {text}"),
            other => outln!("{pad}{key}: {other}"),
        }
    }
    walk(value, 0, "");
}

fn stress_write(
    data_dir: &Path,
    txs_per_block: usize,
    blocks: u64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut ledger =
        Ledger::open(data_dir).with_context(|| format!("opening {}", data_dir.display()))?;
    let genesis = ledger.genesis().clone();
    let keys = DevKeys::new(genesis.allocations.len());
    if keys.users.is_empty() || keys.producer.account() != genesis.params.block_producer {
        bail!("stress-write needs a dev ledger (made by `agora ledger init` without --genesis)");
    }
    let mut written = 0u64;
    while blocks == 0 || written < blocks {
        let height = ledger.height() + 1;
        let timestamp_ms = now_ms().max(ledger.tip().timestamp_ms);
        let mut rng = workload::SplitMix::new(height ^ timestamp_ms);
        let txs = workload::mixed(
            ledger.state(),
            &keys,
            &genesis,
            height,
            timestamp_ms,
            txs_per_block,
            &mut rng,
        );
        let outcome = ledger.produce_block(txs, timestamp_ms, &keys.producer)?;
        written += 1;
        if json {
            outln!(
                "{}",
                json!({ "height": outcome.header.height, "included": outcome.included.len(), "rejected": outcome.rejected.len() })
            );
        } else if written.is_multiple_of(100) || written == blocks {
            eprintln!(
                "stress-write: height {} ({} blocks written)",
                outcome.header.height, written
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
