//! agora-exec (being built).
