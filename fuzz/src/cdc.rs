//! `cdc_envelope`: the CDC envelope and change-set readers of `codegraph_shared::event` (what every consumer, sink
//! and the dashboard's Rust peers read from Redis), stream ids, and the gateway's own reader of the same text.
//!
//! Input: `<stream id>\n<body as the stream stores it>`; the whole input is also read as a published envelope.
//! Properties:
//! - a stream id that parses prints back to the same id, and its successor is greater (but for the largest id);
//! - `splice_id` puts exactly the id in front of the body, and refuses only what is not an object;
//! - an envelope read (either form, stream or published) and published again (`ChangeSet::to_json`) reads back
//!   equal; `decode_entry` / `decode_published` give its changes with the entry's id and each change's index;
//! - the gateway (`GatewayEvent`) reads every envelope the consumer reads (whose changes' `data` carry string
//!   `source` / `target`, as the Function library writes them) and agrees on id, form and each change's type,
//!   entity and ends;
//! - a frame the gateway cuts from a change set for a filter (`partial_text`) reads back, with `ChangeSet`, as
//!   exactly the kept changes, each with its index, and the entry's id, project, time and trace.

use codegraph_shared::event::{decode_entry, decode_published, splice_id, Change, ChangeSet, StreamId};
use serde_json::Value;
use ws_gateway::gateway_event::GatewayEvent;

use crate::same_json;

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (id, body) = text.split_once('\n').unwrap_or(("1-0", text));
    check_stream_id(id);
    check_stream_entry(id, body);
    check_published(text);
}

fn check_stream_id(s: &str) {
    let Ok(id) = s.parse::<StreamId>() else { return };
    assert_eq!(id.to_string().parse::<StreamId>(), Ok(id), "{s:?} prints back");
    assert_eq!(serde_json::from_value::<StreamId>(Value::String(s.to_owned())).ok(), Some(id), "serde agrees");
    let next = id.successor();
    if id == StreamId::new(u64::MAX, u64::MAX) {
        assert_eq!(next, id, "the largest id has no successor");
    } else {
        assert!(next > id && (next.ms, next.seq) != (id.ms, id.seq), "{id}'s successor {next} is greater");
    }
}

fn check_stream_entry(id: &str, body: &str) {
    let spliced = splice_id(id, body);
    assert_eq!(spliced.is_ok(), body.trim_start().starts_with('{'), "splice refuses only non-objects");
    if let Ok(spliced) = &spliced {
        let head = format!("{{\"id\":\"{id}\"");
        assert!(spliced.starts_with(&head), "{spliced:?} starts with the id");
        assert!(spliced.len() > head.len(), "the body follows the id");
    }
    let set = ChangeSet::from_stream_entry(id, body);
    let events = decode_entry(id, body);
    assert_eq!(set.is_ok(), events.is_ok(), "decode_entry reads what ChangeSet reads");
    let Ok(set) = set else { return };
    if let Ok(sid) = id.parse::<StreamId>() {
        // An id with JSON in it could name another field; real ids never do.
        if !id.contains('"') && !id.contains('\\') {
            assert_eq!(set.id, sid, "the entry's id is the stream id");
        }
    }
    check_events(&set, events.unwrap());
    check_set(&set);
    if let Ok(spliced) = spliced {
        check_gateway(&set, &spliced);
    }
}

fn check_published(text: &str) {
    let set = ChangeSet::from_json(text);
    let events = decode_published(text);
    assert_eq!(set.is_ok(), events.is_ok(), "decode_published reads what ChangeSet reads");
    // The gateway reads every payload without panicking, whatever it is.
    let gateway = GatewayEvent::from_published(text.as_bytes().to_vec());
    let Ok(set) = set else { return };
    check_events(&set, events.unwrap());
    check_set(&set);
    if gateway.is_ok() {
        check_gateway(&set, text);
    }
}

/// The per-entity events are the set's changes, in order, named by entry id + index.
fn check_events(set: &ChangeSet, events: Vec<codegraph_shared::event::CdcEvent>) {
    assert_eq!(events.len(), set.changes.len());
    for (i, (e, c)) in events.iter().zip(&set.changes).enumerate() {
        assert_eq!(e.id, set.id);
        assert_eq!(e.index, c.index.unwrap_or(i as u32));
        assert_eq!((e.event_type, &e.entity, e.version), (c.event_type, &c.entity, c.version));
        assert!(same_json(&e.data, &c.data));
        assert_eq!((&e.project, &e.ts, &e.trace), (&set.project, &set.ts, &set.trace));
    }
}

/// Published again, the set reads back the same, and the gateway reads what was published.
fn check_set(set: &ChangeSet) {
    let json = set.to_json();
    let back = ChangeSet::from_json(&json).unwrap_or_else(|e| panic!("{json} does not read back: {e}"));
    assert_same_set(&back, set, &json);
    // The republished text is what the Function library writes: the gateway must read it.
    if set.changes.iter().all(|c| ends_are_strings(&c.data)) {
        let g = GatewayEvent::from_published(json.clone().into_bytes())
            .unwrap_or_else(|e| panic!("the gateway refuses {json}: {e}"));
        assert_eq!(g.is_single(), set.single);
    }
    check_gateway(set, &json);
}

fn assert_same_set(a: &ChangeSet, b: &ChangeSet, json: &str) {
    assert_eq!((a.id, &a.project, &a.ts, &a.trace, a.single), (b.id, &b.project, &b.ts, &b.trace, b.single), "{json}");
    assert_eq!(a.changes.len(), b.changes.len(), "{json}");
    for (x, y) in a.changes.iter().zip(&b.changes) {
        assert_eq!((x.index, x.event_type, &x.entity, x.version), (y.index, y.event_type, &y.entity, y.version));
        assert!(same_json(&x.data, &y.data), "{json}: {} != {}", x.data, y.data);
    }
}

/// What the gateway needs of a change's `data`: nothing, or an object whose `source` and `target` (relationship
/// ends, which node-id filters look at) are strings when present.
fn ends_are_strings(data: &Value) -> bool {
    match data {
        Value::Null => true,
        Value::Object(o) => ["source", "target"].iter().all(|k| matches!(o.get(*k), None | Some(Value::String(_)))),
        _ => false,
    }
}

/// The gateway's reader agrees with `set` (read from the same `text`), and the frames it cuts read back right.
fn check_gateway(set: &ChangeSet, text: &str) {
    let Ok(g) = GatewayEvent::from_published(text.as_bytes().to_vec()) else { return };
    assert_eq!(g.id(), set.id, "{text}");
    assert_eq!(g.is_single(), set.single, "{text}");
    assert_eq!(g.changes().len(), set.changes.len(), "{text}");
    for (h, c) in g.changes().iter().zip(&set.changes) {
        assert_eq!(h.event_type(), c.event_type, "{text}");
        assert_eq!((h.entity_kind(), h.entity_id()), (c.entity.kind.as_str(), c.entity.id.as_str()), "{text}");
        let ends = match (c.data.get("source"), c.data.get("target")) {
            (Some(Value::String(s)), Some(Value::String(t))) if c.data.is_object() => Some((s.as_str(), t.as_str())),
            _ => None,
        };
        assert_eq!(h.ends(), ends, "{text}");
    }
    if set.single || set.changes.is_empty() {
        return;
    }
    // A change that already carries an index is one of a frame the gateway cut: entries in the stream never do.
    if set.changes.iter().any(|c| c.index.is_some()) {
        return;
    }
    // Keep a subset chosen by the text itself (every subset shape shows up over many inputs).
    let seed = text.bytes().fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b));
    let kept: Vec<usize> = (0..set.changes.len()).filter(|i| seed >> (i % 64) & 1 == 1).collect();
    let frame = g.partial_text(&kept);
    let cut = ChangeSet::from_json(frame.as_str())
        .unwrap_or_else(|e| panic!("the frame cut from {text} does not read: {e}\nframe: {}", frame.as_str()));
    let expected = ChangeSet {
        changes: kept.iter().map(|&i| Change { index: Some(i as u32), ..set.changes[i].clone() }).collect(),
        single: false,
        ..set.clone()
    };
    assert_same_set(&cut, &expected, frame.as_str());
}
