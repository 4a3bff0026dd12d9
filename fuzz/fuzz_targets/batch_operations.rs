//! Fuzz target `batch_operations`: the properties are in `codegraph_fuzz::batch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| codegraph_fuzz::batch::check(data));
