#![no_main]
// See agora_fuzz::signed_order for what this target decodes and asserts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::signed_order::check(data));
