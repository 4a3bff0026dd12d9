//! The CDC envelope: the same JSON on the stream, on Pub/Sub and on the WebSocket.
//!
//! A stream entry is one of two forms (docs/DESIGN.md, "Change sets"):
//! - a **change set** (`"type":"change_set"`): everything one atomic graph mutation changed, as an ordered list of
//!   changes (`type`, `entity`, `version`, `data`), with the project, time and trace context once;
//! - a **single event** (`"type":"analysis_progress"`, `"graph_reset"`, …), and — in streams written before change
//!   sets — one graph change per entry. Readers accept both, so an upgrade needs no stream rewrite.
//!
//! The Function library writes each entry to the stream *without* its `id` (the stream entry ID is the id, and it
//! is only known once XADD has run) and publishes it *with* the id. Readers of the stream put the id back with
//! [`splice_id`], so every consumer sees the same envelope. A change is addressed as entry ID + index.

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

/// One change-data-capture event: a single-event entry, or one change of a change set ([`ChangeSet::events`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CdcEvent {
    /// The stream entry it belongs to.
    pub id: StreamId,
    /// Its position in the entry's change set (0 for a single event): entry ID + index name one change.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub index: u32,
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

/// The `type` of a change-set envelope.
pub const CHANGE_SET_TYPE: &str = "change_set";

/// One change of a change set: a per-entity event without what the set carries once (id, project, ts, trace).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Its position in the entry's set, present only where it differs from the position in this list: on the
    /// changes a WebSocket filter kept of a set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub entity: EntityRef,
    pub version: u64,
    #[serde(default)]
    pub data: serde_json::Value,
}

/// One stream entry read whole: a change set, or a single event as a set of one ([`ChangeSet::single`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeSet {
    pub id: StreamId,
    pub project: String,
    pub ts: String,
    pub trace: Option<TraceContext>,
    pub changes: Vec<Change>,
    /// The entry was a single event (a job event, `graph_reset`, or a change of a stream written before change
    /// sets), not a `change_set`.
    pub single: bool,
}

/// Both entry forms, as serde reads them.
#[derive(Deserialize)]
struct Envelope {
    id: StreamId,
    project: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    changes: Option<Vec<Change>>,
    #[serde(default)]
    entity: Option<EntityRef>,
    #[serde(default)]
    version: u64,
    #[serde(default)]
    data: serde_json::Value,
    #[serde(default)]
    ts: String,
    #[serde(default)]
    trace: Option<TraceContext>,
}

impl ChangeSet {
    /// Reads a stream entry (`id`, the [`STREAM_FIELD`] body), in either form.
    pub fn from_stream_entry(id: &str, body: &str) -> Result<Self, EnvelopeError> {
        Self::parse(id, &splice_id(id, body)?)
    }

    /// Reads a published (or WebSocket) envelope, which carries its id, in either form.
    pub fn from_json(json: &str) -> Result<Self, EnvelopeError> {
        Self::parse("", json)
    }

    fn parse(id: &str, json: &str) -> Result<Self, EnvelopeError> {
        let err = |source| EnvelopeError::Json { id: id.to_owned(), source };
        let env: Envelope = serde_json::from_str(json).map_err(err)?;
        let (changes, single) = if env.kind == CHANGE_SET_TYPE {
            let changes = env.changes.ok_or_else(|| err(serde::de::Error::missing_field("changes")))?;
            (changes, false)
        } else {
            let entity = env.entity.ok_or_else(|| err(serde::de::Error::missing_field("entity")))?;
            let event_type = serde_json::from_value(serde_json::Value::String(env.kind)).map_err(err)?;
            (vec![Change { index: None, event_type, entity, version: env.version, data: env.data }], true)
        };
        Ok(Self { id: env.id, project: env.project, ts: env.ts, trace: env.trace, changes, single })
    }

    /// Its changes as per-entity events, each with the entry's id and its index in the set.
    pub fn events(&self) -> impl Iterator<Item = CdcEvent> + '_ {
        self.changes.iter().enumerate().map(|(i, c)| CdcEvent {
            id: self.id,
            index: c.index.unwrap_or(i as u32),
            project: self.project.clone(),
            event_type: c.event_type,
            entity: c.entity.clone(),
            version: c.version,
            data: c.data.clone(),
            ts: self.ts.clone(),
            trace: self.trace.clone(),
        })
    }

    /// Consumes it into per-entity events (see [`ChangeSet::events`]).
    pub fn into_events(self) -> Vec<CdcEvent> {
        self.events().collect()
    }

    pub fn traceparent(&self) -> Option<&str> {
        self.trace.as_ref().and_then(|t| t.traceparent.as_deref())
    }

    /// The envelope as published (with its id): a single event as one, a change set as a change set.
    pub fn to_json(&self) -> String {
        let mut v = serde_json::json!({ "id": self.id, "project": self.project });
        if self.single {
            let c = &self.changes[0];
            v["type"] = serde_json::to_value(c.event_type).unwrap_or_default();
            v["entity"] = serde_json::to_value(&c.entity).unwrap_or_default();
            v["version"] = c.version.into();
            v["data"] = c.data.clone();
        } else {
            v["type"] = CHANGE_SET_TYPE.into();
            v["changes"] = serde_json::to_value(&self.changes).unwrap_or_default();
        }
        v["ts"] = self.ts.clone().into();
        if let Some(t) = &self.trace {
            v["trace"] = serde_json::to_value(t).unwrap_or_default();
        }
        v.to_string()
    }
}

/// Reads a stream entry, in either form, into its per-entity events (a single event gives one).
pub fn decode_entry(id: &str, body: &str) -> Result<Vec<CdcEvent>, EnvelopeError> {
    ChangeSet::from_stream_entry(id, body).map(ChangeSet::into_events)
}

/// Reads a published (or WebSocket) envelope, in either form, into its per-entity events.
pub fn decode_published(json: &str) -> Result<Vec<CdcEvent>, EnvelopeError> {
    ChangeSet::from_json(json).map(ChangeSet::into_events)
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

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl CdcEvent {
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
        let ev = decode_published(&json).unwrap().remove(0);
        assert_eq!(ev.id, StreamId::new(5, 1));
        assert_eq!(ev.event_type, EventType::NodeAdded);
        assert_eq!(splice_id("1-0", "{}").unwrap(), r#"{"id":"1-0"}"#);
        assert!(splice_id("1-0", "[1]").is_err());
    }

    #[test]
    fn unknown_types_are_kept_as_other() {
        let json =
            r#"{"id":"1-0","project":"p","type":"brand_new","entity":{"kind":"x","id":"y"},"version":0,"ts":"t"}"#;
        assert_eq!(decode_published(json).unwrap()[0].event_type, EventType::Other);
        let set = r#"{"id":"1-0","project":"p","type":"change_set","changes":[{"type":"brand_new","entity":{"kind":"x","id":"y"},"version":0}],"ts":"t"}"#;
        assert_eq!(decode_published(set).unwrap()[0].event_type, EventType::Other);
    }

    const SET: &str = r#"{"project":"p","type":"change_set","changes":[{"type":"node_added","entity":{"kind":"node","id":"a"},"version":1,"data":{"kind":"function"}},{"type":"relationship_deleted","entity":{"kind":"relationship","id":"r"},"version":3,"data":{}}],"ts":"t","trace":{"traceparent":"00-ab-cd-01"}}"#;

    #[test]
    fn a_change_set_reads_as_its_changes_in_order_with_entry_id_and_index() {
        let set = ChangeSet::from_stream_entry("9-2", SET).unwrap();
        assert!(!set.single);
        assert_eq!((set.id, set.project.as_str(), set.traceparent()), (StreamId::new(9, 2), "p", Some("00-ab-cd-01")));
        let events = set.clone().into_events();
        assert_eq!(events.len(), 2);
        assert_eq!(
            (events[0].index, events[0].event_type, events[0].entity.id.as_str()),
            (0, EventType::NodeAdded, "a")
        );
        assert_eq!((events[1].index, events[1].event_type, events[1].version), (1, EventType::RelationshipDeleted, 3));
        assert!(events.iter().all(|e| e.id == set.id && e.ts == "t" && e.traceparent() == Some("00-ab-cd-01")));
        // Published and read back, it is the same set.
        assert_eq!(ChangeSet::from_json(&set.to_json()).unwrap(), set);
    }

    #[test]
    fn the_kept_changes_of_a_filtered_frame_keep_their_indexes() {
        let frame = r#"{"id":"9-2","project":"p","type":"change_set","changes":[{"index":1,"type":"relationship_deleted","entity":{"kind":"relationship","id":"r"},"version":3,"data":{}}],"ts":"t"}"#;
        let events = decode_published(frame).unwrap();
        assert_eq!((events.len(), events[0].index, events[0].entity.id.as_str()), (1, 1, "r"));
    }

    #[test]
    fn a_single_event_entry_reads_as_a_set_of_one_and_publishes_as_before() {
        let body = r#"{"project":"p","type":"analysis_progress","entity":{"kind":"job","id":"j"},"version":4,"data":{"percent":50},"ts":"t"}"#;
        let set = ChangeSet::from_stream_entry("3-0", body).unwrap();
        assert!(set.single);
        assert_eq!(set.changes.len(), 1);
        assert_eq!((set.changes[0].event_type, set.changes[0].version), (EventType::AnalysisProgress, 4));
        let json: serde_json::Value = serde_json::from_str(&set.to_json()).unwrap();
        assert_eq!(json["type"], "analysis_progress");
        assert_eq!(json["entity"]["id"], "j");
        assert_eq!(json["id"], "3-0");
        assert_eq!(ChangeSet::from_json(&set.to_json()).unwrap(), set);
    }

    #[test]
    fn malformed_envelopes_are_errors() {
        for bad in [
            r#"{"project":"p","type":"change_set","ts":"t"}"#,
            r#"{"project":"p","type":"node_added","version":1,"ts":"t"}"#,
            r#"{"project":"p","type":"change_set","changes":[{"type":"node_added"}],"ts":"t"}"#,
            r#"{"type":"change_set","changes":[],"ts":"t"}"#,
            "[]",
        ] {
            assert!(ChangeSet::from_stream_entry("1-0", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn event_type_names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), serde_json::Value::String(t.as_str().into()));
        }
    }
}
