//! The command-line suite: `agora exec`, `agora job` prechecks and `agora ledger` run as
//! real processes, without a network. One test binary instead of one per file; run one
//! part with a filter, e.g. `cargo test -p agora-cli --test cli exec_determinism::`.

mod exec_cli;
mod exec_determinism;
mod job_precheck;
mod ledger_genesis;
mod ledger_tamper;
