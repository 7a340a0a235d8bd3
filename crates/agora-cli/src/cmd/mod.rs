//! One module per `agora` subcommand. Each exposes its clap arguments and a `run`
//! function returning the process exit code.

pub mod bench_auction;
pub mod bench_dispute;
pub mod bench_e2e;
pub mod bench_scale;
pub mod bench_verify;
pub mod demo;
pub mod devnet;
pub mod exec;
pub mod job;
pub mod ledger;
pub mod market;
pub mod market_query;
pub mod node_market;
pub mod node_provider;
pub mod provider;
pub mod voucher;
pub mod wallet;
