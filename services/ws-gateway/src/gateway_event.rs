//! One CDC event as the gateway fans it out: read once for routing and filtering, serialized once, shared.
//!
//! The text that goes on the wire is the envelope exactly as Redis published it (or as the stream holds it, with
//! its id spliced back in). It is kept as a reference-counted [`Utf8Bytes`], so handing it to a thousand clients
//! clones a pointer, not the JSON.

use std::{borrow::Cow, sync::Arc};

use axum::extract::ws::Utf8Bytes;
use codegraph_shared::{
    event::{splice_id, EventType, StreamId},
    stream::Entry,
};
use serde::Deserialize;

/// An event ready for delivery. Cheap to clone.
#[derive(Clone, Debug)]
pub struct GatewayEvent(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    id: StreamId,
    event_type: EventType,
    entity_kind: Box<str>,
    entity_id: Box<str>,
    /// For relationships: the nodes at either end, so a node-id filter also sees the relationships touching it.
    ends: Option<(Box<str>, Box<str>)>,
    /// The W3C trace context of the mutation, when it was traced.
    traceparent: Option<Box<str>>,
    text: Utf8Bytes,
}

/// Why a payload is not an event the gateway can forward.
#[derive(Debug, thiserror::Error)]
pub enum BadEvent {
    #[error("not UTF-8")]
    NotUtf8,
    #[error("not an envelope: {0}")]
    Json(#[from] serde_json::Error),
    #[error("stream entry: {0}")]
    Entry(#[from] codegraph_shared::event::EnvelopeError),
}

/// The fields routing needs; everything else (notably `data`) is skipped by the parser, not copied.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    entity: EntityHead<'a>,
    #[serde(default, borrow)]
    data: Option<DataHead<'a>>,
    #[serde(default, borrow)]
    trace: Option<TraceHead<'a>>,
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
        let head: Head = serde_json::from_str(text.as_str())?;
        let id: StreamId = head.id.parse().map_err(|e| BadEvent::Json(serde::de::Error::custom(e)))?;
        let ends = head.data.and_then(|d| Some((d.source?.into(), d.target?.into())));
        let inner = Inner {
            id,
            event_type: EventType::parse(&head.event_type).unwrap_or(EventType::Other),
            entity_kind: head.entity.kind.into(),
            entity_id: head.entity.id.into(),
            ends,
            traceparent: head.trace.and_then(|t| t.traceparent).map(Into::into),
            text,
        };
        Ok(Self(Arc::new(inner)))
    }

    /// The trace context the event carries, so its delivery joins the mutation's trace.
    pub fn traceparent(&self) -> Option<&str> {
        self.0.traceparent.as_deref()
    }

    pub fn id(&self) -> StreamId {
        self.0.id
    }

    pub fn event_type(&self) -> EventType {
        self.0.event_type
    }

    pub fn entity_kind(&self) -> &str {
        &self.0.entity_kind
    }

    pub fn entity_id(&self) -> &str {
        &self.0.entity_id
    }

    /// The nodes a relationship event connects, when the event says.
    pub fn ends(&self) -> Option<(&str, &str)> {
        self.0.ends.as_ref().map(|(s, t)| (&**s, &**t))
    }

    /// The envelope, as it goes on the wire.
    pub fn text(&self) -> &Utf8Bytes {
        &self.0.text
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
    use super::*;

    const BODY: &str = r#"{"project":"p","type":"relationship_added","entity":{"kind":"relationship","id":"r\"1"},"version":2,"data":{"source":"a","target":"b","x":[1,{"y":2}]},"ts":"t"}"#;

    #[test]
    fn keeps_the_trace_context() {
        let traced = BODY.replace(r#""ts":"t""#, r#""ts":"t","trace":{"traceparent":"00-ab-cd-01"}"#);
        assert_eq!(GatewayEvent::from_stream_entry("1-0", &traced).unwrap().traceparent(), Some("00-ab-cd-01"));
        assert_eq!(GatewayEvent::from_stream_entry("1-0", BODY).unwrap().traceparent(), None);
    }

    #[test]
    fn reads_the_routing_fields_and_keeps_the_text() {
        let ev = GatewayEvent::from_stream_entry("7-1", BODY).unwrap();
        assert_eq!(ev.id(), StreamId::new(7, 1));
        assert_eq!(ev.event_type(), EventType::RelationshipAdded);
        assert_eq!(ev.entity_kind(), "relationship");
        assert_eq!(ev.entity_id(), "r\"1");
        assert_eq!(ev.ends(), Some(("a", "b")));
        assert!(ev.text().as_str().starts_with(r#"{"id":"7-1","project":"p""#));
        let published = GatewayEvent::from_published(ev.text().as_str().as_bytes().to_vec()).unwrap();
        assert_eq!(published.text(), ev.text());
    }

    #[test]
    fn unknown_types_and_missing_data_are_fine() {
        let json =
            r#"{"id":"1-0","project":"p","type":"brand_new","entity":{"kind":"job","id":"j"},"version":1,"ts":"t"}"#;
        let ev = GatewayEvent::from_published(json.as_bytes().to_vec()).unwrap();
        assert_eq!(ev.event_type(), EventType::Other);
        assert_eq!(ev.ends(), None);
    }

    #[test]
    fn rejects_what_is_not_an_envelope() {
        for bad in [&b"\xff"[..], b"[]", b"{}", br#"{"id":"x","type":"a","entity":{"kind":"n","id":"i"}}"#] {
            assert!(GatewayEvent::from_published(bad.to_vec()).is_err(), "{bad:?}");
        }
    }
}
