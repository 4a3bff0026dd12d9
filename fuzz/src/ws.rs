//! `ws_client_message`: what a WebSocket client may send the gateway (`protocol::ClientMessage`), the filter it
//! subscribes with (`filter::EventFilter`), and what that filter lets through of a stream entry.
//!
//! Input: `<client message text>\n<bytes>`; the bytes build a stream entry (a change set, or a single event) from a
//! small vocabulary of types, kinds and ids, so that filters written in the seeds (ids `a`, `b`, `c`) match some
//! changes and miss others. Properties:
//! - any text gets a message or a named refusal, never a panic;
//! - a subscription's filter is accepted exactly when the reference rules below accept it (an object with only
//!   the four criteria, each a list of strings: 1 to 32 valid projects, known event types, at most 32 entity kinds
//!   of 1..=64 bytes, at most 1024 node ids of 1..=512 bytes), and its acknowledgement lists what it holds;
//! - the frame the filter gives an entry is what the reference semantics say: nothing when no change passes, the
//!   entry as published when all pass, else a change set of exactly the passing changes with their indexes.
//!   A change passes when its type is listed (or no types are), its entity kind is listed (or none are), and,
//!   when node ids are listed, it is about one of those nodes or is a relationship with one at either end.

use std::collections::BTreeSet;

use codegraph_shared::{
    event::{ChangeSet, EventType},
    project::ProjectName,
};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use serde_json::{json, Value};
use ws_gateway::{
    filter::{EventFilter, MAX_ENTITY_KINDS, MAX_NODE_IDS, MAX_PROJECTS},
    gateway_event::GatewayEvent,
    protocol::ClientMessage,
};

pub fn check(data: &[u8]) {
    if data.first() == Some(&b'{') {
        let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
        let Ok(text) = std::str::from_utf8(&data[..split]) else { return };
        check_message(text, data.get(split + 1..).unwrap_or_default());
    } else {
        // Most mutations of a JSON text break it: half the inputs build a subscription from a vocabulary instead,
        // so the filter semantics are checked on many valid (and nearly valid) filters.
        let mut u = Unstructured::new(data);
        let Ok(filter) = arbitrary_filter(&mut u) else { return };
        let text = json!({"type": "subscribe", "filter": filter}).to_string();
        check_message(&text, u.take_rest());
    }
}

/// A filter of the vocabulary the entries use, sometimes with a value the rules refuse.
fn arbitrary_filter(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut types: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    types.push("node_exploded");
    let long = "k".repeat(65);
    let criteria: [(&str, Vec<&str>); 4] = [
        ("projects", vec!["p", "q", "default", "a b", ""]),
        ("event_types", types),
        ("entity_kinds", vec!["node", "relationship", "job", "project", "", &long]),
        ("node_ids", vec!["a", "b", "c", "a b", "é\"", ""]),
    ];
    let mut filter = serde_json::Map::new();
    for (key, words) in criteria {
        let value = match u.int_in_range(0..=9)? {
            0..=2 => continue,
            3 => Value::Null,
            4 => json!(u.choose(&words)?),
            5 => json!((0..40).map(|i| format!("{}{i}", u.choose(&words).unwrap_or(&"w"))).collect::<Vec<_>>()),
            _ => {
                let n = u.int_in_range(0..=3)?;
                json!((0..n).map(|_| u.choose(&words).copied()).collect::<Result<Vec<_>>>()?)
            }
        };
        filter.insert(key.to_owned(), value);
    }
    if u.ratio(1, 16)? {
        filter.insert("colour".to_owned(), json!("blue"));
    }
    Ok(Value::Object(filter))
}

fn check_message(text: &str, entry_bytes: &[u8]) {
    let message = match ClientMessage::parse(text) {
        Ok(m) => m,
        Err(e) => {
            assert!(!e.code.is_empty() && !e.message.is_empty(), "a refusal names its cause");
            // The error message clips what the client sent (64 characters of a type, each at most `\u{10ffff}`
            // escaped): a long message never comes back long.
            assert!(e.message.len() <= 1024, "{} bytes: {}", e.message.len(), e.message);
            return;
        }
    };
    let filter = match message {
        ClientMessage::Subscribe { filter, .. } => filter,
        ClientMessage::Ping | ClientMessage::Resume { .. } => return,
    };
    let reference = Reference::of(&filter);
    let accepted = EventFilter::from_json(filter.clone());
    match (&accepted, &reference) {
        (Ok(_), Some(_)) | (Err(_), None) => {}
        (Ok(f), None) => panic!("accepted a filter the rules refuse: {filter} → {f:?}"),
        (Err(e), Some(_)) => panic!("refused a filter the rules accept: {filter}: {e}"),
    }
    let (Ok(f), Some(r)) = (accepted, reference) else { return };
    check_acknowledgement(&f, &r);
    let Ok(entry) = Entry::arbitrary(&mut Unstructured::new(entry_bytes)) else { return };
    check_frame(&f, &r, &entry);
}

/// A filter as the rules read it, written without the gateway's code.
struct Reference {
    projects: Vec<String>,
    event_types: Option<Vec<String>>,
    entity_kinds: Option<Vec<String>>,
    node_ids: Option<Vec<String>>,
}

impl Reference {
    /// `None` when the rules refuse the filter.
    fn of(filter: &Value) -> Option<Reference> {
        let obj = filter.as_object()?;
        if obj.keys().any(|k| !["projects", "event_types", "entity_kinds", "node_ids"].contains(&k.as_str())) {
            return None;
        }
        // Each criterion: absent or null = not set; else a list of strings.
        let list = |key: &str| -> Option<Option<Vec<String>>> {
            match obj.get(key) {
                None | Some(Value::Null) => Some(None),
                Some(Value::Array(items)) => {
                    items.iter().map(|v| v.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>().map(Some)
                }
                Some(_) => None,
            }
        };
        let (projects, event_types, entity_kinds, node_ids) =
            (list("projects")?, list("event_types")?, list("entity_kinds")?, list("node_ids")?);
        let projects = match projects {
            None => vec!["default".to_owned()],
            Some(names) => {
                let valid = |n: &String| {
                    !n.is_empty()
                        && n.len() <= 64
                        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                };
                if !names.iter().all(valid) {
                    return None;
                }
                let mut distinct: Vec<String> = Vec::new();
                for n in names {
                    if !distinct.contains(&n) {
                        distinct.push(n);
                    }
                }
                if distinct.is_empty() || distinct.len() > MAX_PROJECTS {
                    return None;
                }
                distinct
            }
        };
        if let Some(types) = &event_types {
            if !types.iter().all(|t| EventType::ALL.iter().any(|k| k.as_str() == t)) {
                return None;
            }
        }
        let bounded = |l: &Option<Vec<String>>, max_items: usize, max_len: usize| {
            l.as_ref().is_none_or(|l| l.len() <= max_items && l.iter().all(|s| !s.is_empty() && s.len() <= max_len))
        };
        if !bounded(&entity_kinds, MAX_ENTITY_KINDS, 64) || !bounded(&node_ids, MAX_NODE_IDS, 512) {
            return None;
        }
        Some(Reference { projects, event_types, entity_kinds, node_ids })
    }

    fn passes(&self, change: &Value) -> bool {
        let s = |v: &Value| v.as_str().map(str::to_owned);
        let (kind, id) = (s(&change["entity"]["kind"]), s(&change["entity"]["id"]));
        let listed = |l: &Option<Vec<String>>, v: &Option<String>| {
            l.as_ref().is_none_or(|l| v.as_ref().is_some_and(|v| l.contains(v)))
        };
        if !listed(&self.event_types, &s(&change["type"])) || !listed(&self.entity_kinds, &kind) {
            return false;
        }
        let Some(ids) = &self.node_ids else { return true };
        let about_node = kind.as_deref() == Some("node") && id.as_ref().is_some_and(|id| ids.contains(id));
        let ends = (s(&change["data"]["source"]), s(&change["data"]["target"]));
        let touches = match ends {
            (Some(src), Some(dst)) => ids.contains(&src) || ids.contains(&dst),
            _ => false,
        };
        about_node || touches
    }
}

fn check_acknowledgement(f: &EventFilter, r: &Reference) {
    let projects: Vec<&str> = f.projects().iter().map(ProjectName::as_str).collect();
    assert_eq!(projects, r.projects, "the filter follows the distinct projects, in order");
    let ack = f.to_json();
    let strings = |v: &Value| -> BTreeSet<String> {
        v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect()
    };
    let set = |l: &Option<Vec<String>>| l.iter().flatten().cloned().collect::<BTreeSet<_>>();
    assert_eq!(strings(&ack["event_types"]), set(&r.event_types));
    assert_eq!(strings(&ack["entity_kinds"]), set(&r.entity_kinds));
    assert_eq!(strings(&ack["node_ids"]), set(&r.node_ids));
}

/// A stream entry made of a small vocabulary: `body` as the stream stores it, `changes` as the reference reads
/// them (`type`, `entity`, `data`).
struct Entry {
    single: bool,
    changes: Vec<Value>,
    body: String,
}

impl Entry {
    fn arbitrary(u: &mut Unstructured<'_>) -> Result<Entry> {
        const IDS: [&str; 6] = ["a", "b", "c", "a b", "é\"", "relationship"];
        const KINDS: [&str; 5] = ["node", "relationship", "job", "project", "Node"];
        let mut types: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        types.extend(["brand_new", "other"]);
        let n = u.int_in_range(1..=6)?;
        let single = n == 1 && u.arbitrary::<bool>()?;
        let mut changes = Vec::new();
        for _ in 0..n {
            let data = match u.int_in_range(0..=3)? {
                0 => json!({}),
                1 => json!({"source": u.choose(&IDS)?, "target": u.choose(&IDS)?, "properties": {}}),
                2 => json!({"source": u.choose(&IDS)?}),
                _ => json!({"id": u.choose(&IDS)?, "kind": "function", "name": "f"}),
            };
            changes.push(json!({
                "type": u.choose(&types)?,
                "entity": {"kind": u.choose(&KINDS)?, "id": u.choose(&IDS)?},
                "version": u.arbitrary::<u8>()?,
                "data": data,
            }));
        }
        let mut body = if single {
            let mut v = changes[0].clone();
            v["project"] = "p".into();
            v
        } else {
            json!({"project": "p", "type": "change_set", "changes": changes})
        };
        body["ts"] = "2026-11-29T00:00:00.000Z".into();
        if u.arbitrary::<bool>()? {
            body["trace"] = json!({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"});
        }
        Ok(Entry { single, changes, body: body.to_string() })
    }
}

fn check_frame(f: &EventFilter, r: &Reference, entry: &Entry) {
    let ev = GatewayEvent::from_stream_entry("42-7", &entry.body).expect("the gateway reads a well-formed entry");
    assert_eq!(ev.is_single(), entry.single);
    for (head, change) in ev.changes().iter().zip(&entry.changes) {
        assert_eq!(f.matches(head), r.passes(change), "filter {:?} on {change}", f.to_json());
    }
    let kept: Vec<usize> = (0..entry.changes.len()).filter(|&i| r.passes(&entry.changes[i])).collect();
    let frame = f.frame(&ev);
    let Some(frame) = frame else {
        assert!(kept.is_empty(), "no frame, yet changes {kept:?} pass");
        return;
    };
    assert!(!kept.is_empty(), "a frame though no change passes");
    assert_eq!(frame.changes as usize, kept.len());
    assert_eq!(frame.published_ms, Some(42));
    if kept.len() == entry.changes.len() {
        assert_eq!(frame.text, *ev.text(), "every change passes: the entry as published");
        return;
    }
    let cut = ChangeSet::from_json(frame.text.as_str())
        .unwrap_or_else(|e| panic!("a filtered frame does not read: {e}: {}", frame.text.as_str()));
    let got: Vec<(u32, String)> =
        cut.changes.iter().map(|c| (c.index.unwrap_or(u32::MAX), c.entity.id.clone())).collect();
    let want: Vec<(u32, String)> =
        kept.iter().map(|&i| (i as u32, entry.changes[i]["entity"]["id"].as_str().unwrap_or("").to_owned())).collect();
    assert_eq!(got, want, "the kept changes, in order, with their indexes");
    assert_eq!(cut.id.to_string(), "42-7");
}
