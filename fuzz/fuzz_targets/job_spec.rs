#![no_main]
// See agora_fuzz::job_spec for what this target decodes and asserts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::job_spec::check(data));
