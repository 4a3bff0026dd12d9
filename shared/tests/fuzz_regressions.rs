//! Inputs the fuzz targets (fuzz/, `make fuzz`) found to break a property of the shared readers, each kept as a
//! test of that property. The same inputs are seeds in fuzz/corpus/<target>/, so every fuzz run tries them first.

use codegraph_shared::event::{ChangeSet, StreamId};

/// cdc_envelope: the successor of the largest stream id overflowed (a panic in debug builds, `0-0` in release,
/// which sent a reader back to the start of the stream). A resume point or a snapshot's `since` can carry any id.
#[test]
fn the_largest_stream_id_is_its_own_successor() {
    let max: StreamId = "18446744073709551615-18446744073709551615".parse().unwrap();
    assert_eq!(max, StreamId::new(u64::MAX, u64::MAX));
    assert_eq!(max.successor(), max);
    assert_eq!(StreamId::new(u64::MAX, 7).successor(), StreamId::new(u64::MAX, 8));
    assert_eq!(StreamId::new(7, u64::MAX).successor(), StreamId::new(8, 0));
    let body = r#"{ "project" : "p", "type":"graph_reset","entity":{"kind":"project","id":"p"},"version":9,"data":null,"ts":"t","trace":null}"#;
    let set = ChangeSet::from_stream_entry("18446744073709551615-18446744073709551615", body).unwrap();
    assert_eq!(set.id.successor(), set.id);
    assert_eq!(ChangeSet::from_json(&set.to_json()).unwrap(), set);
}
