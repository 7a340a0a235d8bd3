#![no_main]
// See agora_fuzz::ledger_tx for what this target decodes and asserts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::ledger_tx::check(data));
