//! `agora node market`: runs a market node until SIGINT or SIGTERM.
//!
//! The node itself lives in `agora-node`; this module turns flags into a `MarketConfig`,
//! prints where the node listens (also written to `DATA_DIR/node.json`), waits for a
//! signal and shuts the node down cleanly. Logs go to stderr (`RUST_LOG` overrides).
//! Every tunable can also be set from the environment (`AGORA_MARKET_*`, see `--help`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agora_ledger::Genesis;
use agora_node::{ChainSetup, MarketConfig, MarketNode, RunningMarket, SettlementSetup};
use anyhow::{Context, bail};

/// Arguments of `agora node market`.
#[derive(clap::Args)]
pub struct Args {
    /// Where the ledger, order records, blobs and node.json live (created if missing).
    #[arg(long, env = "AGORA_MARKET_DATA_DIR")]
    pub data_dir: PathBuf,
    /// HTTP API address; port 0 picks a free port.
    #[arg(long, env = "AGORA_MARKET_HTTP", default_value = "127.0.0.1:7070")]
    pub http: SocketAddr,
    /// libp2p listen address; port 0 picks a free port.
    #[arg(long, env = "AGORA_MARKET_P2P", default_value = "/ip4/127.0.0.1/tcp/0")]
    pub p2p: String,
    /// Run a development chain with this many funded dev users (created on first start;
    /// keys derive from public seeds: never for real money).
    #[arg(long, conflicts_with_all = ["genesis", "key"])]
    pub dev: Option<usize>,
    /// The chain's genesis (JSON), used on first start and checked on later ones.
    #[arg(long, requires = "key")]
    pub genesis: Option<PathBuf>,
    /// The wallet of the genesis market authority and block producer.
    #[arg(long, requires = "genesis")]
    pub key: Option<PathBuf>,
    /// Largest blob accepted or fetched, in bytes.
    #[arg(long, env = "AGORA_MARKET_MAX_BLOB_BYTES", default_value_t = agora_node::config::DEFAULT_MAX_BLOB_BYTES)]
    pub max_blob_bytes: u64,
    /// Heartbeat interval asked of providers, in ms; three missed ones fail an attempt.
    #[arg(long, env = "AGORA_MARKET_HEARTBEAT_MS", default_value_t = agora_node::config::DEFAULT_HEARTBEAT.as_millis() as u64)]
    pub heartbeat_ms: u64,
    /// Attempts per order (first assignment plus reassignments) before refunding.
    #[arg(long, env = "AGORA_MARKET_MAX_ATTEMPTS", default_value_t = agora_node::config::DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: u32,
    /// How long the block producer gathers transactions before sealing a block, in ms
    /// (0: seal at once; group commit batches whatever arrives meanwhile).
    #[arg(long, env = "AGORA_MARKET_BLOCK_INTERVAL_MS", default_value_t = 0)]
    pub block_interval_ms: u64,
    /// After a restart, how long unfinished orders wait for their provider (or any
    /// provider) to come back before they are reassigned or refunded, in ms.
    #[arg(long, env = "AGORA_MARKET_RESUME_GRACE_MS", default_value_t = agora_node::config::DEFAULT_RESUME_GRACE.as_millis() as u64)]
    pub resume_grace_ms: u64,
    /// Most HTTP connections served at once; more wait in the listen backlog
    /// (default 1024).
    #[arg(long, env = agora_node::config::ENV_MAX_CONNECTIONS)]
    pub max_connections: Option<usize>,
    /// Close a connection with nothing in flight after this much silence, in ms; also how
    /// long a client may stall reading an answer or sending a body (default 60000).
    #[arg(long, env = agora_node::config::ENV_IDLE_TIMEOUT_MS)]
    pub idle_timeout_ms: Option<u64>,
    /// Time a client has to send a whole request head, in ms (default 10000).
    #[arg(long, env = agora_node::config::ENV_HEADER_TIMEOUT_MS)]
    pub header_timeout_ms: Option<u64>,
    /// The furthest an order's deadline may lie ahead, in ms (default 7 days).
    #[arg(long, env = agora_node::config::ENV_MAX_DEADLINE_MS)]
    pub max_deadline_ms: Option<u64>,
    /// Where the money is kept: `embedded` (the node's own ledger, the default) or `evm`
    /// (the AgoraMarket contract at --contracts on the chain at --rpc; the market key is
    /// its authority). See docs/settlement-evm.md.
    #[arg(
        long,
        value_enum,
        env = "AGORA_MARKET_SETTLEMENT",
        default_value = "embedded"
    )]
    pub settlement: SettlementKind,
    /// The EVM chain's JSON-RPC URL (with --settlement evm).
    #[arg(long, env = "AGORA_MARKET_RPC")]
    pub rpc: Option<String>,
    /// The deployed AgoraMarket contract, 0x… (with --settlement evm).
    #[arg(long, env = "AGORA_MARKET_CONTRACTS")]
    pub contracts: Option<String>,
    /// Print one JSON line (the contents of node.json) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Where a market keeps its money.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SettlementKind {
    /// The node's own hash-chained ledger.
    Embedded,
    /// The AgoraMarket contract on an EVM chain.
    Evm,
}

/// The settlement flags as the node's setting.
fn settlement_from(args: &Args) -> anyhow::Result<SettlementSetup> {
    match (args.settlement, &args.rpc, &args.contracts) {
        (SettlementKind::Embedded, None, None) => Ok(SettlementSetup::Embedded),
        (SettlementKind::Embedded, _, _) => {
            bail!("--rpc and --contracts only apply with --settlement evm")
        }
        (SettlementKind::Evm, Some(rpc), Some(contracts)) => Ok(SettlementSetup::Evm {
            rpc_url: rpc.clone(),
            contract: contracts.parse().with_context(|| {
                format!("--contracts {contracts:?} is not an EVM address (0x and 40 hex digits)")
            })?,
        }),
        (SettlementKind::Evm, _, _) => bail!(
            "--settlement evm needs --rpc URL and --contracts ADDRESS (the deployed AgoraMarket; `agora devnet --settlement evm` deploys one on a local anvil)"
        ),
    }
}

/// Runs the node until SIGINT or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::output::keep_running_without_stdout();
    init_logging();
    let config = config_from(&args)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(serve(config, args.json))
}

fn config_from(args: &Args) -> anyhow::Result<MarketConfig> {
    let chain = match (&args.dev, &args.genesis, &args.key) {
        (Some(users), _, _) => ChainSetup::Dev { users: *users },
        (None, Some(genesis), Some(key)) => {
            let text = std::fs::read_to_string(genesis)
                .with_context(|| format!("reading genesis {}", genesis.display()))?;
            let genesis: Genesis = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a genesis JSON file", genesis.display()))?;
            ChainSetup::Genesis {
                genesis: Box::new(genesis),
                key: Box::new(crate::cmd::wallet::load_wallet(key)?),
            }
        }
        _ => bail!("choose a chain: --dev USERS for a dev network, or --genesis FILE --key WALLET"),
    };
    let mut config = MarketConfig::dev(&args.data_dir, 0);
    config.chain = chain;
    config.settlement = settlement_from(args)?;
    config.http_listen = args.http;
    config.p2p_listen = args.p2p.parse().with_context(|| {
        format!(
            "--p2p {:?} is not a multiaddr (e.g. /ip4/0.0.0.0/tcp/7071)",
            args.p2p
        )
    })?;
    config.max_blob_bytes = args.max_blob_bytes;
    config.heartbeat = Duration::from_millis(args.heartbeat_ms.max(1));
    config.max_attempts = args.max_attempts.max(1);
    config.block_interval = Duration::from_millis(args.block_interval_ms);
    config.resume_grace = Duration::from_millis(args.resume_grace_ms);
    if let Some(max) = args.max_connections {
        config.max_connections = max;
    }
    if let Some(ms) = args.idle_timeout_ms {
        config.idle_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = args.header_timeout_ms {
        config.header_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = args.max_deadline_ms {
        config.max_deadline = Duration::from_millis(ms);
    }
    Ok(config)
}

async fn serve(config: MarketConfig, json: bool) -> anyhow::Result<ExitCode> {
    let data_dir = config.data_dir.clone();
    let node = MarketNode::start(config)
        .await
        .context("starting the market node")?;
    announce(&node, &data_dir, json)?;
    wait_for_signal().await?;
    if !json {
        outln!("stopping...");
    }
    node.shutdown().await;
    if json {
        outln!("{}", serde_json::json!({ "event": "stopped" }));
    } else {
        outln!("stopped");
    }
    Ok(ExitCode::SUCCESS)
}

fn announce(node: &RunningMarket, data_dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let file = data_dir.join(agora_node::NODE_FILE);
    if json {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", file.display()))?;
        outln!("{value}");
        return Ok(());
    }
    outln!(
        "market node for chain {} (market {})",
        node.chain_id(),
        node.market_account()
    );
    if let agora_proto::api::SettlementInfo::Evm {
        rpc_url,
        evm_chain_id,
        contract,
        ..
    } = node.settlement()
    {
        outln!("  settles   on EVM chain {evm_chain_id} at {rpc_url}, contract {contract}");
    }
    outln!("  HTTP API  {}", node.http_url());
    for addr in node.p2p_addrs() {
        outln!("  p2p       {addr}");
    }
    outln!("  OpenAPI   {}/openapi.json", node.http_url());
    outln!("  metrics   {}/metrics", node.http_url());
    outln!("  written   {}", file.display());
    outln!("press Ctrl-C to stop");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Logs to stderr; `RUST_LOG` overrides the default of info for the node.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,agora_node=info"));
    // Another command in this process may have installed one already; keep it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
