#![no_main]
// See agora_fuzz::api_json for what this target decodes and asserts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::api_json::check(data));
