//! The properties the fuzz targets check, one module per target (`fuzz_targets/<name>.rs` only calls `check`).
//!
//! Each target asserts what must hold for *every* input, not just "no panic": a value read and written back reads
//! the same (round trips), two readers of the same text agree (the consumer's `ChangeSet` and the gateway's
//! `GatewayEvent`), a validation refuses exactly what a plain reference implementation written here refuses, and a
//! filter keeps exactly the changes the reference semantics keep. A failed assertion is a crash libFuzzer saves in
//! `fuzz/artifacts/<target>/`; each one found became a regression test beside the code it was about (see
//! `fuzz/README.md`).

pub mod batch;
pub mod bolt;
pub mod cdc;
pub mod ws;

/// JSON equality where numbers compare by value, floats to within a few units in the last place: serde_json
/// (built without its `float_roundtrip` feature) reads some decimal texts one unit off the nearest double, so a
/// float written back and read again can move by one unit (found by `cdc_envelope`; see fuzz/README.md).
pub fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(x), J::Number(y)) => {
            x == y
                || match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs()),
                    _ => false,
                }
        }
        (J::Array(x), J::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b)),
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}
