#![no_main]
// See agora_fuzz::gossip_ask for what this target decodes and asserts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::gossip_ask::check(data));
