//! What a client of `/ws/events/filtered` asks for: projects, event types, entity kinds, node ids.
//!
//! A filter is validated once, when the client sends it; a bad filter gets an `error` message and leaves the
//! previous one in place. The same filter applies to live entries and to entries replayed from the stream.
//!
//! It applies per change ([`EventFilter::frame`]): a stream entry whose changes all pass goes out as published, one
//! whose changes all fail is not sent, and a change set of which only some pass goes out as a change set holding
//! those, each with its `index` in the entry. A single event is a set of one.

use std::collections::HashSet;

use axum::extract::ws::Utf8Bytes;
use codegraph_shared::{event::EventType, project::ProjectName};
use serde::Deserialize;

use crate::{
    gateway_event::{ChangeHead, GatewayEvent},
    outbox::Frame,
};

/// Most projects one client may follow.
pub const MAX_PROJECTS: usize = 32;
/// Most node ids in one filter.
pub const MAX_NODE_IDS: usize = 1024;
/// Most entity kinds in one filter.
pub const MAX_ENTITY_KINDS: usize = 32;

/// A validated filter. `None` criteria match everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFilter {
    projects: Vec<ProjectName>,
    /// Bit `i` set: `EventType::ALL[i]` passes.
    event_types: Option<u16>,
    entity_kinds: Option<Vec<Box<str>>>,
    node_ids: Option<HashSet<Box<str>>>,
}

/// Why a filter was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct BadFilter(pub String);

/// The filter as a client writes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    #[serde(default)]
    pub projects: Option<Vec<String>>,
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    #[serde(default)]
    pub entity_kinds: Option<Vec<String>>,
    #[serde(default)]
    pub node_ids: Option<Vec<String>>,
}

impl EventFilter {
    /// Every event of `projects`.
    pub fn projects_only(projects: Vec<ProjectName>) -> Self {
        Self { projects, event_types: None, entity_kinds: None, node_ids: None }
    }

    /// Validates a filter sent by a client (the JSON value of `"filter"`).
    pub fn from_json(value: serde_json::Value) -> Result<Self, BadFilter> {
        let spec: FilterSpec = serde_json::from_value(value).map_err(|e| BadFilter(format!("bad filter: {e}")))?;
        Self::from_spec(spec)
    }

    pub fn from_spec(spec: FilterSpec) -> Result<Self, BadFilter> {
        let projects = match spec.projects {
            None => vec![ProjectName::default_project()],
            Some(list) => parse_projects(list.iter().map(String::as_str))?,
        };
        let event_types = match spec.event_types {
            None => None,
            Some(list) => {
                let mut mask = 0u16;
                for name in &list {
                    let pos = EventType::ALL.iter().position(|t| t.as_str() == name).ok_or_else(|| {
                        let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                        BadFilter(format!("unknown event type {:?}; known types: {}", clip(name), known.join(", ")))
                    })?;
                    mask |= 1 << pos;
                }
                Some(mask)
            }
        };
        let entity_kinds =
            spec.entity_kinds.map(|l| bounded_list(l, "entity kinds", MAX_ENTITY_KINDS, 64)).transpose()?;
        let node_ids = match spec.node_ids {
            None => None,
            Some(l) => Some(bounded_list(l, "node ids", MAX_NODE_IDS, 512)?.into_iter().collect()),
        };
        Ok(Self { projects, event_types, entity_kinds, node_ids })
    }

    pub fn projects(&self) -> &[ProjectName] {
        &self.projects
    }

    /// True when nothing but the project is asked for: every change passes.
    pub fn passes_everything(&self) -> bool {
        self.event_types.is_none() && self.entity_kinds.is_none() && self.node_ids.is_none()
    }

    /// The frame a client with this filter gets for `ev`, if any: the entry as published when every change
    /// passes, nothing when none does, else a change set of the passing changes with their indexes (see
    /// [`GatewayEvent::partial_text`]). The project is checked by whoever routes the entry.
    pub fn frame(&self, ev: &GatewayEvent) -> Option<Frame> {
        self.frame_shared(ev, &mut PartialFrames::default())
    }

    /// [`EventFilter::frame`] for one of many clients of the same entry: a partial frame is cut once per distinct
    /// set of kept changes and its bytes shared through `cut` (which belongs to that one entry).
    pub fn frame_shared(&self, ev: &GatewayEvent, cut: &mut PartialFrames) -> Option<Frame> {
        let changes = ev.changes();
        if self.passes_everything() {
            return Some(Frame::entry(ev.text().clone(), ev.id(), changes.len()));
        }
        let kept: Vec<usize> = (0..changes.len()).filter(|&i| self.matches(&changes[i])).collect();
        if kept.is_empty() {
            None
        } else if kept.len() == changes.len() {
            Some(Frame::entry(ev.text().clone(), ev.id(), kept.len()))
        } else {
            let n = kept.len();
            Some(Frame::entry(cut.get_or_cut(ev, kept), ev.id(), n))
        }
    }

    /// True when the change passes every criterion.
    pub fn matches(&self, change: &ChangeHead) -> bool {
        if let Some(mask) = self.event_types {
            match EventType::ALL.iter().position(|t| *t == change.event_type()) {
                Some(pos) if mask & (1 << pos) != 0 => {}
                _ => return false,
            }
        }
        if let Some(kinds) = &self.entity_kinds {
            if !kinds.iter().any(|k| **k == *change.entity_kind()) {
                return false;
            }
        }
        if let Some(ids) = &self.node_ids {
            let about_node = change.entity_kind() == "node" && ids.contains(change.entity_id());
            let touches_node = change.ends().is_some_and(|(s, t)| ids.contains(s) || ids.contains(t));
            if !about_node && !touches_node {
                return false;
            }
        }
        true
    }

    /// The filter as JSON, as the `subscribed` acknowledgement shows it.
    pub fn to_json(&self) -> serde_json::Value {
        let types: Vec<&str> = self
            .event_types
            .map(|mask| {
                let on = |(i, _): &(usize, &EventType)| mask & (1 << i) != 0;
                EventType::ALL.iter().enumerate().filter(on).map(|(_, t)| t.as_str()).collect()
            })
            .unwrap_or_default();
        let kinds: Vec<&str> = self.entity_kinds.iter().flatten().map(|b| &**b).collect();
        let mut ids: Vec<&str> = self.node_ids.iter().flatten().map(|b| &**b).collect();
        ids.sort_unstable();
        serde_json::json!({
            "projects": self.projects,
            "event_types": types,
            "entity_kinds": kinds,
            "node_ids": ids,
        })
    }
}

/// The partial frames already cut from one entry, by the changes they keep: clients whose filters keep the same
/// changes share one buffer instead of each serializing its own.
#[derive(Default)]
pub struct PartialFrames {
    frames: Vec<(Vec<usize>, Utf8Bytes)>,
}

/// Most distinct partial frames remembered for one entry; further ones are cut for each client.
const MAX_PARTIAL_FRAMES: usize = 16;

impl PartialFrames {
    fn get_or_cut(&mut self, ev: &GatewayEvent, kept: Vec<usize>) -> Utf8Bytes {
        if let Some((_, text)) = self.frames.iter().find(|(k, _)| *k == kept) {
            return text.clone();
        }
        let text = ev.partial_text(&kept);
        if self.frames.len() < MAX_PARTIAL_FRAMES {
            self.frames.push((kept, text.clone()));
        }
        text
    }
}

/// Parses a list of project names (`?project=a,b` or a filter's `projects`): 1 to [`MAX_PROJECTS`], no repeats.
pub fn parse_projects<'a>(names: impl Iterator<Item = &'a str>) -> Result<Vec<ProjectName>, BadFilter> {
    let mut out: Vec<ProjectName> = Vec::new();
    for name in names {
        let p = ProjectName::parse(name).map_err(|e| BadFilter(e.to_string()))?;
        if !out.contains(&p) {
            out.push(p);
        }
        if out.len() > MAX_PROJECTS {
            return Err(BadFilter(format!("at most {MAX_PROJECTS} projects")));
        }
    }
    if out.is_empty() {
        return Err(BadFilter("name at least one project".into()));
    }
    Ok(out)
}

/// At most `max_items` non-empty strings of at most `max_len` bytes.
fn bounded_list(list: Vec<String>, what: &str, max_items: usize, max_len: usize) -> Result<Vec<Box<str>>, BadFilter> {
    if list.len() > max_items {
        return Err(BadFilter(format!("at most {max_items} {what}")));
    }
    if let Some(bad) = list.iter().find(|s| s.is_empty() || s.len() > max_len) {
        return Err(BadFilter(format!("bad entry in {what}: {:?}", clip(bad))));
    }
    Ok(list.into_iter().map(String::into_boxed_str).collect())
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(t: &str, kind: &str, id: &str, data: &str) -> GatewayEvent {
        let body = format!(
            r#"{{"project":"p","type":"{t}","entity":{{"kind":"{kind}","id":"{id}"}},"version":1,"data":{data},"ts":"t"}}"#
        );
        GatewayEvent::from_stream_entry("1-0", &body).unwrap()
    }

    /// Whether a client with filter `f` gets a frame for `ev`.
    fn passes(f: &EventFilter, ev: &GatewayEvent) -> bool {
        f.frame(ev).is_some()
    }

    #[test]
    fn an_empty_filter_follows_the_default_project_and_passes_everything() {
        let f = EventFilter::from_json(json!({})).unwrap();
        assert_eq!(f.projects(), [ProjectName::default_project()]);
        assert!(f.passes_everything());
        assert!(passes(&f, &event("node_added", "node", "a", "{}")));
        assert!(f.matches(&event("node_added", "node", "a", "{}").changes()[0]));
    }

    #[test]
    fn criteria_combine() {
        let f = EventFilter::from_json(json!({
            "projects": ["p", "q", "p"],
            "event_types": ["node_added", "relationship_added"],
            "node_ids": ["a"],
        }))
        .unwrap();
        assert_eq!(f.projects().len(), 2);
        assert!(passes(&f, &event("node_added", "node", "a", "{}")));
        assert!(!passes(&f, &event("node_added", "node", "b", "{}")));
        assert!(!passes(&f, &event("node_deleted", "node", "a", "{}")));
        assert!(passes(&f, &event("relationship_added", "relationship", "r", r#"{"source":"x","target":"a"}"#)));
        let kinds = EventFilter::from_json(json!({"entity_kinds": ["job"]})).unwrap();
        assert!(passes(&kinds, &event("analysis_progress", "job", "j", "{}")));
        assert!(!passes(&kinds, &event("node_added", "node", "a", "{}")));
    }

    const SET: &str = r#"{"project":"p","type":"change_set","changes":[{"type":"node_added","entity":{"kind":"node","id":"a"},"version":1,"data":{}},{"type":"relationship_deleted","entity":{"kind":"relationship","id":"r"},"version":3,"data":{"source":"b","target":"c"}},{"type":"node_deleted","entity":{"kind":"node","id":"b"},"version":2,"data":{}}],"ts":"t"}"#;

    #[test]
    fn a_change_set_is_filtered_per_change() {
        let set = GatewayEvent::from_stream_entry("5-0", SET).unwrap();
        let frame = |filter: serde_json::Value| EventFilter::from_json(filter).unwrap().frame(&set);
        // Every change passes: the entry as published.
        let all = frame(json!({})).unwrap();
        assert_eq!((&all.text, all.changes, all.published_ms), (set.text(), 3, Some(5)));
        let all = frame(json!({"node_ids": ["a", "b"]})).unwrap();
        assert_eq!((&all.text, all.changes), (set.text(), 3));
        // None passes: nothing.
        assert!(frame(json!({"event_types": ["node_updated"]})).is_none());
        assert!(frame(json!({"entity_kinds": ["job"]})).is_none());
        // Some pass: those, in order, with their indexes.
        let some = frame(json!({"node_ids": ["b"]})).unwrap();
        assert_eq!(some.changes, 2);
        let v: serde_json::Value = serde_json::from_str(some.text.as_str()).unwrap();
        let kept: Vec<_> =
            v["changes"].as_array().unwrap().iter().map(|c| (c["index"].clone(), c["type"].clone())).collect();
        assert_eq!(kept, [(json!(1), json!("relationship_deleted")), (json!(2), json!("node_deleted"))]);
        assert_eq!(
            (v["id"].as_str(), v["type"].as_str(), v["ts"].as_str()),
            (Some("5-0"), Some("change_set"), Some("t"))
        );
        let one = frame(json!({"entity_kinds": ["node"], "event_types": ["node_added"]})).unwrap();
        let v: serde_json::Value = serde_json::from_str(one.text.as_str()).unwrap();
        assert_eq!((one.changes, v["changes"][0]["index"].as_u64()), (1, Some(0)));
    }

    #[test]
    fn clients_keeping_the_same_changes_share_one_cut() {
        let set = GatewayEvent::from_stream_entry("5-0", SET).unwrap();
        let b = EventFilter::from_json(json!({"node_ids": ["b"]})).unwrap();
        let b_too = EventFilter::from_json(json!({"event_types": ["relationship_deleted", "node_deleted"]})).unwrap();
        let a = EventFilter::from_json(json!({"node_ids": ["a"]})).unwrap();
        let mut cut = PartialFrames::default();
        let first = b.frame_shared(&set, &mut cut).unwrap();
        let second = b_too.frame_shared(&set, &mut cut).unwrap();
        let other = a.frame_shared(&set, &mut cut).unwrap();
        // The same kept changes: the same bytes, not a copy.
        assert_eq!(first.text.as_str().as_ptr(), second.text.as_str().as_ptr());
        assert_eq!((first.changes, second.changes, other.changes), (2, 2, 1));
        assert_ne!(first.text, other.text);
        assert_eq!(first.text, b.frame(&set).unwrap().text, "shared or not, the same frame");
        assert_eq!(other.text, a.frame(&set).unwrap().text);
    }

    #[test]
    fn bad_filters_say_why() {
        for bad in [
            json!({"projects": []}),
            json!({"projects": ["a b"]}),
            json!({"projects": "p"}),
            json!({"event_types": ["node_exploded"]}),
            json!({"entity_kinds": [""]}),
            json!({"node_ids": [1]}),
            json!({"colour": "blue"}),
            json!([1, 2]),
            json!({"projects": (0..40).map(|i| format!("p{i}")).collect::<Vec<_>>()}),
        ] {
            assert!(EventFilter::from_json(bad.clone()).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_acknowledgement_shows_the_filter() {
        let f = EventFilter::from_json(json!({"event_types": ["node_added"], "node_ids": ["b", "a"]})).unwrap();
        assert_eq!(f.to_json()["event_types"], json!(["node_added"]));
        assert_eq!(f.to_json()["node_ids"], json!(["a", "b"]));
    }
}
