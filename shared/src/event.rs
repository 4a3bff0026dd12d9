//! The CDC event envelope: the same JSON on the stream, on Pub/Sub and on the WebSocket.
//!
//! The Function library writes each event to the stream *without* its `id` (the stream entry ID is the id, and
//! it is only known once XADD has run) and publishes it *with* the id. Readers of the stream put the id back
//! with [`splice_id`], so every consumer sees the same envelope.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// Field of a stream entry that holds the envelope (without its id).
pub const STREAM_FIELD: &str = "e";

/// A Redis stream entry ID, `<ms>-<seq>`: the offset of an event within its project's stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

/// Why a string is not a stream ID.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid stream id {0:?}: expected <milliseconds>-<sequence>, e.g. 1764201600123-0")]
pub struct InvalidStreamId(pub String);

impl StreamId {
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    pub fn new(ms: u64, seq: u64) -> Self {
        Self { ms, seq }
    }

    /// The smallest ID greater than this one.
    pub fn successor(self) -> Self {
        match self.seq.checked_add(1) {
            Some(seq) => Self { ms: self.ms, seq },
            None => Self { ms: self.ms + 1, seq: 0 },
        }
    }
}

impl FromStr for StreamId {
    type Err = InvalidStreamId;

    /// Accepts `<ms>-<seq>` and, as Redis does, a bare `<ms>` meaning `<ms>-0`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || InvalidStreamId(s.chars().take(64).collect());
        let (ms, seq) = match s.split_once('-') {
            Some((ms, seq)) => (ms, seq),
            None => (s, "0"),
        };
        let digits = |t: &str| !t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return Err(err());
        }
        Ok(Self { ms: ms.parse().map_err(|_| err())?, seq: seq.parse().map_err(|_| err())? })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl Serialize for StreamId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The kinds of event. Consumers ignore types they do not know ([`EventType::Other`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    NodeAdded,
    NodeUpdated,
    NodeDeleted,
    RelationshipAdded,
    RelationshipUpdated,
    RelationshipDeleted,
    GraphReset,
    AnalysisStarted,
    AnalysisProgress,
    AnalysisCompleted,
    AnalysisFailed,
    AnalysisCancelled,
    #[serde(other)]
    Other,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NodeAdded => "node_added",
            Self::NodeUpdated => "node_updated",
            Self::NodeDeleted => "node_deleted",
            Self::RelationshipAdded => "relationship_added",
            Self::RelationshipUpdated => "relationship_updated",
            Self::RelationshipDeleted => "relationship_deleted",
            Self::GraphReset => "graph_reset",
            Self::AnalysisStarted => "analysis_started",
            Self::AnalysisProgress => "analysis_progress",
            Self::AnalysisCompleted => "analysis_completed",
            Self::AnalysisFailed => "analysis_failed",
            Self::AnalysisCancelled => "analysis_cancelled",
            Self::Other => "other",
        }
    }

    /// Every known type, in the order of docs/DESIGN.md.
    pub const ALL: [EventType; 12] = [
        Self::NodeAdded,
        Self::NodeUpdated,
        Self::NodeDeleted,
        Self::RelationshipAdded,
        Self::RelationshipUpdated,
        Self::RelationshipDeleted,
        Self::GraphReset,
        Self::AnalysisStarted,
        Self::AnalysisProgress,
        Self::AnalysisCompleted,
        Self::AnalysisFailed,
        Self::AnalysisCancelled,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// What an event is about: `{"kind": "node"|"relationship"|"job"|"project", "id": …}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRef {
    pub kind: String,
    pub id: String,
}

/// W3C trace context carried in the envelope, so one trace spans HTTP request → Redis → gateway → sink.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

/// One change-data-capture event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CdcEvent {
    pub id: StreamId,
    pub project: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub entity: EntityRef,
    pub version: u64,
    #[serde(default)]
    pub data: serde_json::Value,
    pub ts: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
}

/// Why an envelope could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("stream entry {0} has no field {STREAM_FIELD:?}")]
    MissingField(String),
    #[error("stream entry {id} is not a JSON object envelope")]
    NotAnObject { id: String },
    #[error("event {id} is not a valid envelope: {source}")]
    Json { id: String, source: serde_json::Error },
}

/// Puts the stream ID into an envelope stored without it: `{"project":…}` → `{"id":"<id>","project":…}`.
///
/// This is string work, not a parse: the gateway forwards stream entries without decoding them twice.
pub fn splice_id(id: &str, body: &str) -> Result<String, EnvelopeError> {
    let rest = body.trim_start().strip_prefix('{').ok_or_else(|| EnvelopeError::NotAnObject { id: id.to_owned() })?;
    let mut out = String::with_capacity(body.len() + id.len() + 10);
    out.push_str("{\"id\":\"");
    out.push_str(id);
    out.push('"');
    if !rest.trim_start().starts_with('}') {
        out.push(',');
    }
    out.push_str(rest);
    Ok(out)
}

impl CdcEvent {
    /// Reads a stream entry (`id`, the [`STREAM_FIELD`] body) into an event.
    pub fn from_stream_entry(id: &str, body: &str) -> Result<Self, EnvelopeError> {
        let json = splice_id(id, body)?;
        serde_json::from_str(&json).map_err(|source| EnvelopeError::Json { id: id.to_owned(), source })
    }

    /// Reads a published (or WebSocket) envelope, which carries its id.
    pub fn from_json(json: &str) -> Result<Self, EnvelopeError> {
        serde_json::from_str(json).map_err(|source| EnvelopeError::Json { id: String::new(), source })
    }

    pub fn traceparent(&self) -> Option<&str> {
        self.trace.as_ref().and_then(|t| t.traceparent.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_parse_print_and_order() {
        let a: StreamId = "1764201600123-0".parse().unwrap();
        let b: StreamId = "1764201600123-7".parse().unwrap();
        let c: StreamId = "1764201600124".parse().unwrap();
        assert_eq!(a.to_string(), "1764201600123-0");
        assert!(a < b && b < c);
        assert_eq!(a.successor(), "1764201600123-1".parse().unwrap());
        assert_eq!(StreamId::new(5, u64::MAX).successor(), StreamId::new(6, 0));
        for bad in ["", "-", "1-", "-1", "a-1", "1-2-3", "1.5", "+", "$", "99999999999999999999999-0"] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn splice_puts_the_id_first() {
        let body =
            r#"{"project":"p","type":"node_added","entity":{"kind":"node","id":"n"},"version":1,"data":{},"ts":"t"}"#;
        let json = splice_id("5-1", body).unwrap();
        let ev = CdcEvent::from_json(&json).unwrap();
        assert_eq!(ev.id, StreamId::new(5, 1));
        assert_eq!(ev.event_type, EventType::NodeAdded);
        assert_eq!(splice_id("1-0", "{}").unwrap(), r#"{"id":"1-0"}"#);
        assert!(splice_id("1-0", "[1]").is_err());
    }

    #[test]
    fn unknown_types_are_kept_as_other() {
        let json =
            r#"{"id":"1-0","project":"p","type":"brand_new","entity":{"kind":"x","id":"y"},"version":0,"ts":"t"}"#;
        assert_eq!(CdcEvent::from_json(json).unwrap().event_type, EventType::Other);
    }

    #[test]
    fn event_type_names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), serde_json::Value::String(t.as_str().into()));
        }
    }
}
