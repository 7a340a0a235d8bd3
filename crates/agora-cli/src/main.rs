//! `agora`: the command-line front end of the Agora compute market.
//!
//! A thin binary: it parses arguments and wires the library crates together. Each
//! subcommand lives in its own module under [`cmd`]; deciding logic lives in the crates.

// `output` comes first: its macros are used by every command module.
#[macro_use]
mod output;

mod cmd;

use clap::{Parser, Subcommand};

/// Agora: an open marketplace for verifiable compute.
#[derive(Parser)]
#[command(name = "agora", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a throwaway local network (market + providers as processes) end to end and report.
    Demo(cmd::demo::Args),
    /// Inspect and audit a ledger data directory.
    #[command(subcommand)]
    Ledger(cmd::ledger::Command),
    /// Create and show keys.
    #[command(subcommand)]
    Wallet(cmd::wallet::Command),
    /// Run a WASM job locally, exactly as a provider would.
    Exec(cmd::exec::Args),
    /// Run a market node or a provider agent.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Start a local network (market + providers as processes) for trying the API by hand.
    Devnet(cmd::devnet::Args),
    /// Submit, follow and fetch jobs on a market (as a buyer).
    Job(Box<cmd::job::Args>),
    /// Look at a market: asks, the price index, providers.
    Market(cmd::market_query::Args),
    /// A provider's view of itself: stake, jobs, earnings.
    Provider(cmd::provider::Args),
    /// Compute vouchers: buy CU ahead at the index price, send, spend on jobs, refund.
    Voucher(cmd::voucher::Args),
    /// Measure throughput and latency of one part of the system.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum NodeCommand {
    /// The market node: matching, settlement, block production and the HTTP API.
    Market(cmd::node_market::Args),
    /// A provider agent: offers this machine's capacity and runs the jobs it wins.
    Provider(cmd::node_provider::Args),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Signed transfers verified, applied and durably committed per second.
    Ledger(cmd::ledger::BenchArgs),
    /// Instant matches per second and auction close time on a large book.
    Market(cmd::market::BenchArgs),
    /// Executor start latency, compile time and metering overhead.
    Exec(cmd::exec::BenchArgs),
    /// The whole loop on a local network of processes: submit → settled latency,
    /// settled jobs/s with many buyers, large-blob transfer.
    E2e(cmd::bench_e2e::Args),
    /// Dispute cost of a checkpointed job: the referee's one-step re-execution against the
    /// whole job, and bisection rounds.
    Dispute(cmd::bench_dispute::Args),
    /// What each verification policy costs and catches on the same workload with a share
    /// of faulty providers: overhead, wrong results accepted, detection, slashes.
    Verify(cmd::bench_verify::Args),
    /// A hundred provider processes beside a small baseline under the same load: latency,
    /// jobs/s, market CPU and memory, messages per job, provider memory; with --churn,
    /// providers killed and restarted while every job must still settle or refund.
    Scale(cmd::bench_scale::Args),
    /// Sealed-bid auctions and rising Dutch clocks on a local network of provider
    /// processes beside instant matching: window end → assignment latency, bids, and the
    /// Dutch price against the cheapest provider's, in clock steps.
    Auction(cmd::bench_auction::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => cmd::demo::run(args),
        Command::Ledger(command) => cmd::ledger::run(command),
        Command::Wallet(command) => cmd::wallet::run(command),
        Command::Exec(args) => cmd::exec::run(args),
        Command::Node(NodeCommand::Market(args)) => cmd::node_market::run(args),
        Command::Node(NodeCommand::Provider(args)) => cmd::node_provider::run(args),
        Command::Devnet(args) => cmd::devnet::run(args),
        Command::Job(args) => cmd::job::run(*args),
        Command::Market(args) => cmd::market_query::run(args),
        Command::Provider(args) => cmd::provider::run(args),
        Command::Voucher(args) => cmd::voucher::run(args),
        Command::Bench(BenchCommand::Ledger(args)) => cmd::ledger::bench(args),
        Command::Bench(BenchCommand::Market(args)) => cmd::market::bench(args),
        Command::Bench(BenchCommand::Exec(args)) => cmd::exec::bench(args),
        Command::Bench(BenchCommand::E2e(args)) => cmd::bench_e2e::run(args),
        Command::Bench(BenchCommand::Dispute(args)) => cmd::bench_dispute::run(args),
        Command::Bench(BenchCommand::Verify(args)) => cmd::bench_verify::run(args),
        Command::Bench(BenchCommand::Scale(args)) => cmd::bench_scale::run(args),
        Command::Bench(BenchCommand::Auction(args)) => cmd::bench_auction::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", error_chain(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, like `{:#}`, but without a cause whose text the
/// messages before it already include (many library errors quote their source).
fn error_chain(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
