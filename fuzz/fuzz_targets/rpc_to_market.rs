#![no_main]
// See agora_fuzz::rpc_to_market for what this target decodes and asserts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::rpc_to_market::check(data));
