//! One module per `agora` subcommand. Each exposes its clap arguments and a `run`
//! function returning the process exit code.

pub mod demo;
pub mod exec;
pub mod ledger;
pub mod market;
pub mod wallet;
