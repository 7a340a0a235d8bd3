#![no_main]
// See agora_fuzz::text_forms for what this target decodes and asserts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::text_forms::check(data));
