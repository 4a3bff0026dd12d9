//! Fuzz target `ws_client_message`: the properties are in `codegraph_fuzz::ws`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| codegraph_fuzz::ws::check(data));
