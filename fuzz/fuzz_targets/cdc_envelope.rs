//! Fuzz target `cdc_envelope`: the properties are in `codegraph_fuzz::cdc`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| codegraph_fuzz::cdc::check(data));
