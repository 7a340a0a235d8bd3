//! The Agora provider agent (being built; see issue 5).
#![warn(unused_crate_dependencies, missing_docs)]
use agora_core as _;
use agora_proto as _;
