#![no_main]
// See agora_fuzz::rpc_to_provider for what this target decodes and asserts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::rpc_to_provider::check(data));
