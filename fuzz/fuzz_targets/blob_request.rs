#![no_main]
// See agora_fuzz::blob_request for what this target decodes and asserts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::blob_request::check(data));
