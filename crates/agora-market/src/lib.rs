//! agora-market (being built).
