//! One stream entry as the gateway fans it out: read once for routing and filtering, serialized once, shared.
//!
//! An entry is a change set (`"type":"change_set"`, the changes of one atomic mutation) or a single event (a job
//! event, `graph_reset`, or one graph change of a stream written before change sets); the gateway routes and
//! filters both as a list of changes (a single event is a list of one).
//!
//! The text that goes on the wire is the envelope exactly as Redis published it (or as the stream holds it, with
//! its id spliced back in). It is kept as a reference-counted [`Utf8Bytes`], so handing it to a thousand clients
//! clones a pointer, not the JSON. A client whose filter keeps only some changes of a set gets a frame cut from
//! that same text ([`GatewayEvent::partial_text`]): string work on the spans found while reading, no re-encoding.

use std::{borrow::Cow, fmt::Write, ops::Range, sync::Arc};

use axum::extract::ws::Utf8Bytes;
use codegraph_shared::{
    event::{splice_id, EventType, StreamId, CHANGE_SET_TYPE},
    stream::Entry,
};
use serde::Deserialize;
use serde_json::value::RawValue;

/// An entry ready for delivery. Cheap to clone.
#[derive(Clone, Debug)]
pub struct GatewayEvent(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    id: StreamId,
    /// The entry is a single event, not a `change_set`.
    single: bool,
    changes: Vec<ChangeHead>,
    /// The W3C trace context of the mutation, when it was traced.
    traceparent: Option<Box<str>>,
    /// Where the values of `project`, `ts` and `trace` are in `text`, for frames cut from it.
    project: Range<usize>,
    ts: Option<Range<usize>>,
    trace: Option<Range<usize>>,
    text: Utf8Bytes,
}

/// What a filter looks at in one change (of a set, or a single event).
#[derive(Debug)]
pub struct ChangeHead {
    event_type: EventType,
    entity_kind: Box<str>,
    entity_id: Box<str>,
    /// For relationships: the nodes at either end, so a node-id filter also sees the relationships touching it.
    ends: Option<(Box<str>, Box<str>)>,
    /// Where the change's object is in the text (change sets only).
    span: Range<usize>,
}

/// Why a payload is not an entry the gateway can forward.
#[derive(Debug, thiserror::Error)]
pub enum BadEvent {
    #[error("not UTF-8")]
    NotUtf8,
    #[error("not an envelope: {0}")]
    Json(#[from] serde_json::Error),
    #[error("stream entry: {0}")]
    Entry(#[from] codegraph_shared::event::EnvelopeError),
    #[error("change {0} of the set is not a JSON object")]
    NotAnObject(usize),
}

/// The fields routing needs, in either form; change objects and `data` are skipped by the parser, not copied.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    project: &'a RawValue,
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    #[serde(default, borrow)]
    changes: Option<Vec<&'a RawValue>>,
    #[serde(default, borrow)]
    entity: Option<EntityHead<'a>>,
    #[serde(default, borrow)]
    data: Option<DataHead<'a>>,
    #[serde(default, borrow)]
    ts: Option<&'a RawValue>,
    #[serde(default, borrow)]
    trace: Option<&'a RawValue>,
}

/// One change of a set, as routing reads it.
#[derive(Deserialize)]
struct ChangeFields<'a> {
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    entity: EntityHead<'a>,
    #[serde(default, borrow)]
    data: Option<DataHead<'a>>,
}

#[derive(Deserialize)]
struct TraceHead<'a> {
    #[serde(default, borrow)]
    traceparent: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct EntityHead<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    id: Cow<'a, str>,
}

#[derive(Deserialize)]
struct DataHead<'a> {
    #[serde(default, borrow)]
    source: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    target: Option<Cow<'a, str>>,
}

impl ChangeHead {
    fn new(event_type: &str, entity: EntityHead<'_>, data: Option<DataHead<'_>>, span: Range<usize>) -> Self {
        Self {
            event_type: EventType::parse(event_type).unwrap_or(EventType::Other),
            entity_kind: entity.kind.into(),
            entity_id: entity.id.into(),
            ends: data.and_then(|d| Some((d.source?.into(), d.target?.into()))),
            span,
        }
    }

    pub fn event_type(&self) -> EventType {
        self.event_type
    }

    pub fn entity_kind(&self) -> &str {
        &self.entity_kind
    }

    pub fn entity_id(&self) -> &str {
        &self.entity_id
    }

    /// The nodes a relationship change connects, when the change says.
    pub fn ends(&self) -> Option<(&str, &str)> {
        self.ends.as_ref().map(|(s, t)| (&**s, &**t))
    }
}

/// Where `part` (a slice borrowed from `whole`) lies in `whole`.
fn span_of(whole: &str, part: &str) -> Range<usize> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    start..start + part.len()
}

impl GatewayEvent {
    /// From a Pub/Sub payload, which carries its id.
    pub fn from_published(payload: Vec<u8>) -> Result<Self, BadEvent> {
        let text = Utf8Bytes::try_from(payload).map_err(|_| BadEvent::NotUtf8)?;
        Self::from_text(text)
    }

    /// From a stream entry (`id`, the body stored without its id).
    pub fn from_stream_entry(id: &str, body: &str) -> Result<Self, BadEvent> {
        Self::from_text(Utf8Bytes::from(splice_id(id, body)?))
    }

    /// From a CDC stream entry as read; an entry without an envelope is an error its reader skips past.
    pub fn from_entry(entry: &Entry) -> Result<Self, BadEvent> {
        Self::from_stream_entry(&entry.id.to_string(), entry.body.as_deref().unwrap_or_default())
    }

    fn from_text(text: Utf8Bytes) -> Result<Self, BadEvent> {
        let s = text.as_str();
        let head: Head = serde_json::from_str(s)?;
        let id: StreamId = head.id.parse().map_err(|e| BadEvent::Json(serde::de::Error::custom(e)))?;
        let single = head.event_type != CHANGE_SET_TYPE;
        let changes = if single {
            let entity = head.entity.ok_or_else(|| BadEvent::Json(serde::de::Error::missing_field("entity")))?;
            vec![ChangeHead::new(&head.event_type, entity, head.data, 0..0)]
        } else {
            let raw = head.changes.ok_or_else(|| BadEvent::Json(serde::de::Error::missing_field("changes")))?;
            let mut changes = Vec::with_capacity(raw.len());
            for (i, change) in raw.into_iter().enumerate() {
                // serde would also read a struct from an array; a frame cut from the text needs an object.
                if !change.get().starts_with('{') {
                    return Err(BadEvent::NotAnObject(i));
                }
                let fields: ChangeFields = serde_json::from_str(change.get())?;
                changes.push(ChangeHead::new(&fields.event_type, fields.entity, fields.data, span_of(s, change.get())));
            }
            changes
        };
        let traceparent: Option<Box<str>> = match head.trace {
            Some(raw) => serde_json::from_str::<TraceHead>(raw.get())?.traceparent.map(Into::into),
            None => None,
        };
        let project = span_of(s, head.project.get());
        let ts = head.ts.map(|r| span_of(s, r.get()));
        let trace = head.trace.map(|r| span_of(s, r.get()));
        Ok(Self(Arc::new(Inner { id, single, changes, traceparent, project, ts, trace, text })))
    }

    /// The trace context the entry carries, so its delivery joins the mutation's trace.
    pub fn traceparent(&self) -> Option<&str> {
        self.0.traceparent.as_deref()
    }

    pub fn id(&self) -> StreamId {
        self.0.id
    }

    /// True for a single-event entry (sent whole or not at all), false for a change set.
    pub fn is_single(&self) -> bool {
        self.0.single
    }

    /// The entry's changes, in order (one for a single event).
    pub fn changes(&self) -> &[ChangeHead] {
        &self.0.changes
    }

    /// The envelope, as it goes on the wire to a client that takes every change.
    pub fn text(&self) -> &Utf8Bytes {
        &self.0.text
    }

    /// A change-set frame that holds only the changes at `kept` (positions in the set, ascending), each with
    /// `"index":<position>` first so entry id + index still name it; `id`, `project`, `ts` and `trace` are the
    /// entry's. For a change set only: a single event is sent whole or not at all.
    pub fn partial_text(&self, kept: &[usize]) -> Utf8Bytes {
        let inner = &*self.0;
        let text = inner.text.as_str();
        let kept_bytes: usize = kept.iter().map(|&i| inner.changes[i].span.len() + 20).sum();
        let mut out = String::with_capacity(kept_bytes + 160);
        let _ = write!(out, r#"{{"id":"{}","project":"#, inner.id);
        out.push_str(&text[inner.project.clone()]);
        out.push_str(r#","type":""#);
        out.push_str(CHANGE_SET_TYPE);
        out.push_str(r#"","changes":["#);
        for (n, &i) in kept.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            // The object is `{…}` (checked when read); the index goes in after its brace.
            let rest = text[inner.changes[i].span.clone()][1..].trim_start();
            let _ = write!(out, r#"{{"index":{i}"#);
            if !rest.starts_with('}') {
                out.push(',');
            }
            out.push_str(rest);
        }
        out.push(']');
        if let Some(ts) = &inner.ts {
            out.push_str(r#","ts":"#);
            out.push_str(&text[ts.clone()]);
        }
        if let Some(trace) = &inner.trace {
            out.push_str(r#","trace":"#);
            out.push_str(&text[trace.clone()]);
        }
        out.push('}');
        Utf8Bytes::from(out)
    }

    pub fn len(&self) -> usize {
        self.0.text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.text.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use codegraph_shared::event::ChangeSet;

    use super::*;

    const BODY: &str = r#"{"project":"p","type":"relationship_added","entity":{"kind":"relationship","id":"r\"1"},"version":2,"data":{"source":"a","target":"b","x":[1,{"y":2}]},"ts":"t"}"#;

    const SET: &str = r#"{"project":"p","type":"change_set","changes":[{"type":"node_added","entity":{"kind":"node","id":"a"},"version":1,"data":{"kind":"function","changes":[]}},{"type":"relationship_deleted","entity":{"kind":"relationship","id":"r"},"version":3,"data":{"source":"a","target":"b"}}, { "type":"node_deleted","entity":{"kind":"node","id":"b\"q"},"version":2,"data":{}}],"ts":"t","trace":{"traceparent":"00-ab-cd-01"}}"#;

    #[test]
    fn keeps_the_trace_context() {
        let traced = BODY.replace(r#""ts":"t""#, r#""ts":"t","trace":{"traceparent":"00-ab-cd-01"}"#);
        assert_eq!(GatewayEvent::from_stream_entry("1-0", &traced).unwrap().traceparent(), Some("00-ab-cd-01"));
        assert_eq!(GatewayEvent::from_stream_entry("1-0", BODY).unwrap().traceparent(), None);
        assert_eq!(GatewayEvent::from_stream_entry("1-0", SET).unwrap().traceparent(), Some("00-ab-cd-01"));
    }

    #[test]
    fn a_single_event_reads_as_one_change_and_keeps_its_text() {
        let ev = GatewayEvent::from_stream_entry("7-1", BODY).unwrap();
        assert_eq!(ev.id(), StreamId::new(7, 1));
        assert!(ev.is_single());
        let [change] = ev.changes() else { panic!("one change") };
        assert_eq!(change.event_type(), EventType::RelationshipAdded);
        assert_eq!(change.entity_kind(), "relationship");
        assert_eq!(change.entity_id(), "r\"1");
        assert_eq!(change.ends(), Some(("a", "b")));
        assert!(ev.text().as_str().starts_with(r#"{"id":"7-1","project":"p""#));
        let published = GatewayEvent::from_published(ev.text().as_str().as_bytes().to_vec()).unwrap();
        assert_eq!(published.text(), ev.text());
    }

    #[test]
    fn a_change_set_reads_as_its_changes_in_order_and_keeps_its_text() {
        let ev = GatewayEvent::from_stream_entry("9-2", SET).unwrap();
        assert!(!ev.is_single());
        let kinds: Vec<_> = ev.changes().iter().map(|c| (c.event_type(), c.entity_id())).collect();
        assert_eq!(
            kinds,
            [(EventType::NodeAdded, "a"), (EventType::RelationshipDeleted, "r"), (EventType::NodeDeleted, "b\"q")]
        );
        assert_eq!(ev.changes()[1].ends(), Some(("a", "b")));
        assert_eq!(ev.changes()[0].ends(), None);
        assert_eq!(ev.text().as_str(), splice_id("9-2", SET).unwrap());
    }

    #[test]
    fn a_partial_frame_holds_the_kept_changes_with_their_indexes() {
        let ev = GatewayEvent::from_stream_entry("9-2", SET).unwrap();
        let text = ev.partial_text(&[0, 2]);
        let v: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
        assert_eq!(v["id"], "9-2");
        assert_eq!(v["project"], "p");
        assert_eq!(v["type"], "change_set");
        assert_eq!(v["ts"], "t");
        assert_eq!(v["trace"]["traceparent"], "00-ab-cd-01");
        let changes = v["changes"].as_array().unwrap();
        assert_eq!(changes.len(), 2);
        assert_eq!((changes[0]["index"].as_u64(), changes[0]["entity"]["id"].as_str()), (Some(0), Some("a")));
        assert_eq!(changes[0]["data"]["changes"], serde_json::json!([]));
        assert_eq!((changes[1]["index"].as_u64(), changes[1]["entity"]["id"].as_str()), (Some(2), Some("b\"q")));
        // Every reader of the envelope reads it, and the gateway reads it again the same way.
        let set = ChangeSet::from_json(text.as_str()).unwrap();
        assert_eq!(set.id, StreamId::new(9, 2));
        assert_eq!(set.changes.len(), 2);
        let again = GatewayEvent::from_published(text.as_str().as_bytes().to_vec()).unwrap();
        assert_eq!(again.changes().len(), 2);
        // Without ts or trace, the frame has neither.
        let bare = GatewayEvent::from_stream_entry(
            "1-0",
            r#"{"project":"p","type":"change_set","changes":[{"type":"node_added","entity":{"kind":"node","id":"a"}},{}]}"#,
        );
        assert!(bare.is_err(), "a change without type or entity is refused whole");
        let bare = GatewayEvent::from_stream_entry(
            "1-0",
            r#"{"project":"p","type":"change_set","changes":[{"type":"node_added","entity":{"kind":"node","id":"a"}},{"type":"x","entity":{"kind":"node","id":"b"}}]}"#,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(bare.partial_text(&[1]).as_str()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": "1-0", "project": "p", "type": "change_set",
                "changes": [{"index": 1, "type": "x", "entity": {"kind": "node", "id": "b"}}]})
        );
    }

    #[test]
    fn unknown_types_and_missing_data_are_fine() {
        let json =
            r#"{"id":"1-0","project":"p","type":"brand_new","entity":{"kind":"job","id":"j"},"version":1,"ts":"t"}"#;
        let ev = GatewayEvent::from_published(json.as_bytes().to_vec()).unwrap();
        assert_eq!(ev.changes()[0].event_type(), EventType::Other);
        assert_eq!(ev.changes()[0].ends(), None);
    }

    #[test]
    fn rejects_what_is_not_an_envelope() {
        for bad in [
            &b"\xff"[..],
            b"[]",
            b"{}",
            br#"{"id":"x","project":"p","type":"a","entity":{"kind":"n","id":"i"}}"#,
            br#"{"id":"1-0","type":"a","entity":{"kind":"n","id":"i"}}"#,
            br#"{"id":"1-0","project":"p","type":"a"}"#,
            br#"{"id":"1-0","project":"p","type":"change_set"}"#,
            br#"{"id":"1-0","project":"p","type":"change_set","changes":[["node_added",{"kind":"n","id":"i"}]]}"#,
            br#"{"id":"1-0","project":"p","type":"change_set","changes":[{"type":"node_added"}]}"#,
        ] {
            assert!(GatewayEvent::from_published(bad.to_vec()).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
