//! Fuzz target `bolt_packstream`: the properties are in `codegraph_fuzz::bolt`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| codegraph_fuzz::bolt::check(data));
