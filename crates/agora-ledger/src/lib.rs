//! agora-ledger (being built).
