#![no_main]
// See agora_fuzz::sealed_blob for what this target decodes and asserts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::sealed_blob::check(data));
