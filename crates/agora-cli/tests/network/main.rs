//! The network suite: each module starts real `agora` processes on loopback (a market
//! node and provider agents, through `common_net::TestNet`) and drives them as a buyer
//! would. One test binary instead of one per file, so the workspace links (and CI
//! stores) a single executable for these tests; run one part with a filter, e.g.
//! `cargo test -p agora-cli --test network network_vouchers::`.
//!
//! The heavy suites that want the machine to themselves stay in their own binaries:
//! `chaos`, `demo`, `network_scale`, `network_verification`, `real_programs`,
//! `wasi_testsuite` and `ledger_crash`.

mod common_containers;
mod common_net;

mod devnet;
mod network_auctions;
mod network_concurrent_runs;
mod network_containers;
mod network_evm;
mod network_failure_tail;
mod network_faulty;
mod network_file_trees;
mod network_follow_reconnect;
mod network_garbage;
mod network_jobs;
mod network_market_crash;
mod network_output_too_large;
mod network_peer_close;
mod network_private;
mod network_provider_crash;
mod network_quote;
mod network_vouchers;
mod provider_shutdown;
