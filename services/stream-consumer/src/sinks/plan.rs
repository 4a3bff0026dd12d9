//! Turns a batch of CDC events (in stream order) into what a sink writes: per entity only its last state, grouped
//! by node kind and relationship type so each group is one `UNWIND` query, with `graph_reset` as a barrier.
//!
//! Keeping only the last event of each entity is exact because every event carries the whole entity after the
//! change (or, for a delete, before it) and its version. The groups are applied in an order that keeps the graph
//! valid at the end of the batch: node upserts, relationship deletes, node deletes, relationship upserts.
//! An entity whose first event in the batch is not an `*_added` may already exist in the sink in another shape
//! (other kind, other endpoints), so it is flagged `replaces` and the query builders clean that up; a relationship
//! whose id is the derived `source|type|target` cannot change shape and is never flagged.

use std::collections::{BTreeMap, HashMap};

use codegraph_shared::{
    event::{CdcEvent, EventType, StreamId},
    graph::{check_label, Node, Relationship},
};

use super::mapping::{edge_props, node_props, Props};

/// A node to create or update.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRow {
    pub id: String,
    pub version: u64,
    pub props: Props,
    /// It may exist in the sink under another kind (label).
    pub replaces: bool,
}

/// A relationship to create or update.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeRow {
    pub id: String,
    pub source: String,
    pub target: String,
    pub version: u64,
    pub props: Props,
    /// It may exist in the sink with another type or other endpoints.
    pub replaces: bool,
}

/// An entity to delete if the sink holds an older version of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Removal {
    pub id: String,
    pub version: u64,
    /// For an edge: the source node to find it from; `None` when it may have moved within the batch.
    pub anchor: Option<String>,
}

/// The writes between two resets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChangeSet {
    /// Node kind → rows; kinds are valid labels.
    pub node_upserts: BTreeMap<String, Vec<NodeRow>>,
    pub edge_removals: Vec<Removal>,
    pub node_removals: Vec<Removal>,
    /// Relationship type → rows; types are valid labels.
    pub edge_upserts: BTreeMap<String, Vec<EdgeRow>>,
}

impl ChangeSet {
    pub fn is_empty(&self) -> bool {
        self.node_upserts.is_empty()
            && self.edge_removals.is_empty()
            && self.node_removals.is_empty()
            && self.edge_upserts.is_empty()
    }
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Remove the project's whole graph.
    Reset,
    Changes(ChangeSet),
}

/// What a sink commits for one batch, ending with the stream ID it has then applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub last_id: StreamId,
}

/// Why an event cannot be applied: it would fail every time (a poison event).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("event {id}: {reason}")]
pub struct Unappliable {
    /// Position of the event in the batch.
    pub index: usize,
    pub id: StreamId,
    pub reason: String,
}

enum Last {
    Node(Node, u64),
    NodeGone(String, u64),
    Edge(Relationship, u64),
    EdgeGone(Relationship, u64),
}

struct Entry {
    first: EventType,
    moved: bool,
    last: Last,
}

impl Plan {
    /// The plan of `events` (stream order; those the sink has already applied left out), committing `last_id`.
    /// Fails with the first event that can never be applied; callers apply the events before it on their own.
    pub fn build(events: &[CdcEvent], last_id: StreamId) -> Result<Plan, Unappliable> {
        let mut steps = Vec::new();
        let mut pending: Vec<(String, Entry)> = Vec::new();
        let mut slot: HashMap<String, usize> = HashMap::new();
        for (index, event) in events.iter().enumerate() {
            let bad = |reason: String| Unappliable { index, id: event.id, reason };
            let (key, last) = match event.event_type {
                EventType::GraphReset => {
                    flush(&mut steps, &mut pending, &mut slot);
                    steps.push(Step::Reset);
                    continue;
                }
                EventType::NodeAdded | EventType::NodeUpdated => {
                    let node: Node = decode(event).map_err(bad)?;
                    check_label("kind", &node.kind).map_err(|e| bad(e.to_string()))?;
                    same_id(event, &node.id).map_err(bad)?;
                    (format!("n:{}", node.id), Last::Node(node, event.version))
                }
                EventType::NodeDeleted => {
                    (format!("n:{}", event.entity.id), Last::NodeGone(event.entity.id.clone(), event.version))
                }
                EventType::RelationshipAdded | EventType::RelationshipUpdated | EventType::RelationshipDeleted => {
                    let rel: Relationship = decode(event).map_err(bad)?;
                    check_label("type", &rel.rel_type).map_err(|e| bad(e.to_string()))?;
                    same_id(event, &rel.id).map_err(bad)?;
                    let key = format!("r:{}", rel.id);
                    if event.event_type == EventType::RelationshipDeleted {
                        (key, Last::EdgeGone(rel, event.version))
                    } else {
                        (key, Last::Edge(rel, event.version))
                    }
                }
                // Job events and types this build does not know change no graph.
                _ => continue,
            };
            match slot.get(&key) {
                Some(&i) => {
                    let entry = &mut pending[i].1;
                    entry.moved |= event.event_type == EventType::RelationshipUpdated;
                    entry.last = last;
                }
                None => {
                    slot.insert(key.clone(), pending.len());
                    let moved = event.event_type == EventType::RelationshipUpdated;
                    pending.push((key, Entry { first: event.event_type, moved, last }));
                }
            }
        }
        flush(&mut steps, &mut pending, &mut slot);
        Ok(Plan { steps, last_id })
    }

    /// A plan that only records `last_id` (everything before it was already applied or changes no graph).
    pub fn marker(last_id: StreamId) -> Plan {
        Plan { steps: Vec::new(), last_id }
    }

    /// Node kinds the plan writes.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().flat_map(|s| match s {
            Step::Changes(c) => c.node_upserts.keys().map(String::as_str).collect::<Vec<_>>(),
            Step::Reset => Vec::new(),
        })
    }
}

fn decode<T: serde::de::DeserializeOwned>(event: &CdcEvent) -> Result<T, String> {
    serde_json::from_value(event.data.clone())
        .map_err(|e| format!("{} data is not a valid entity: {e}", event.event_type.as_str()))
}

fn same_id(event: &CdcEvent, id: &str) -> Result<(), String> {
    if event.entity.id == id {
        Ok(())
    } else {
        Err(format!("entity id {:?} differs from the data's id {id:?}", event.entity.id))
    }
}

/// A relationship whose id is derived from its endpoints and type cannot have been elsewhere under the same id, so
/// it needs no search of the whole graph (which costs a scan of every edge).
fn is_derived(rel: &Relationship) -> bool {
    rel.id == Relationship::derived_id(&rel.source, &rel.rel_type, &rel.target)
}

fn flush(steps: &mut Vec<Step>, pending: &mut Vec<(String, Entry)>, slot: &mut HashMap<String, usize>) {
    if pending.is_empty() {
        return;
    }
    let mut set = ChangeSet::default();
    for (_, entry) in pending.drain(..) {
        let fresh = matches!(entry.first, EventType::NodeAdded | EventType::RelationshipAdded);
        match entry.last {
            Last::Node(node, version) => {
                let row = NodeRow { id: node.id.clone(), version, props: node_props(&node, version), replaces: !fresh };
                set.node_upserts.entry(node.kind).or_default().push(row);
            }
            Last::NodeGone(id, version) => set.node_removals.push(Removal { id, version, anchor: None }),
            Last::Edge(rel, version) => {
                let row = EdgeRow {
                    id: rel.id.clone(),
                    source: rel.source.clone(),
                    target: rel.target.clone(),
                    version,
                    props: edge_props(&rel, version),
                    replaces: !fresh && !is_derived(&rel),
                };
                set.edge_upserts.entry(rel.rel_type).or_default().push(row);
            }
            Last::EdgeGone(rel, version) => {
                let anchor = (!entry.moved || is_derived(&rel)).then_some(rel.source);
                set.edge_removals.push(Removal { id: rel.id, version, anchor });
            }
        }
    }
    slot.clear();
    steps.push(Step::Changes(set));
}

#[cfg(test)]
mod tests {
    use super::*;
    use codegraph_shared::event::EntityRef;
    use serde_json::json;

    fn ev(seq: u64, t: EventType, kind: &str, id: &str, version: u64, data: serde_json::Value) -> CdcEvent {
        CdcEvent {
            id: StreamId::new(1, seq),
            project: "p".into(),
            event_type: t,
            entity: EntityRef { kind: kind.into(), id: id.into() },
            version,
            data,
            ts: "t".into(),
            trace: None,
        }
    }

    fn node(id: &str, kind: &str) -> serde_json::Value {
        json!({"id": id, "kind": kind, "name": id})
    }

    fn rel(id: &str, s: &str, t: &str) -> serde_json::Value {
        json!({"id": id, "type": "calls", "source": s, "target": t})
    }

    fn changes(plan: &Plan) -> Vec<&ChangeSet> {
        plan.steps.iter().filter_map(|s| if let Step::Changes(c) = s { Some(c) } else { None }).collect()
    }

    #[test]
    fn only_the_last_state_of_each_entity_is_written() {
        let events = [
            ev(1, EventType::NodeAdded, "node", "a", 1, node("a", "file")),
            ev(2, EventType::NodeUpdated, "node", "a", 2, node("a", "module")),
            ev(3, EventType::NodeAdded, "node", "b", 1, node("b", "file")),
            ev(4, EventType::RelationshipAdded, "relationship", "r", 1, rel("r", "a", "b")),
            ev(5, EventType::AnalysisProgress, "job", "j", 1, json!({})),
        ];
        let plan = Plan::build(&events, StreamId::new(1, 5)).unwrap();
        let c = changes(&plan);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].node_upserts["module"][0].version, 2);
        assert!(!c[0].node_upserts["module"][0].replaces, "first seen as added: nothing to replace");
        assert_eq!(c[0].node_upserts["file"].len(), 1);
        assert_eq!(c[0].edge_upserts["calls"][0].source, "a");
        assert_eq!(plan.last_id, StreamId::new(1, 5));
    }

    #[test]
    fn delete_then_add_in_one_batch_replaces_what_the_sink_had() {
        let events = [
            ev(1, EventType::NodeDeleted, "node", "a", 2, node("a", "file")),
            ev(2, EventType::NodeAdded, "node", "a", 3, node("a", "class")),
        ];
        let plan = Plan::build(&events, StreamId::new(1, 2)).unwrap();
        let row = &changes(&plan)[0].node_upserts["class"][0];
        assert!(row.replaces && row.version == 3);
        assert!(changes(&plan)[0].node_removals.is_empty());
    }

    #[test]
    fn a_moved_then_deleted_edge_is_searched_everywhere() {
        let events = [
            ev(1, EventType::RelationshipUpdated, "relationship", "r", 2, rel("r", "c", "b")),
            ev(2, EventType::RelationshipDeleted, "relationship", "r", 3, rel("r", "c", "b")),
            ev(3, EventType::RelationshipDeleted, "relationship", "q", 2, rel("q", "a", "b")),
        ];
        let plan = Plan::build(&events, StreamId::new(1, 3)).unwrap();
        let removals = &changes(&plan)[0].edge_removals;
        assert_eq!(removals[0].anchor, None);
        assert_eq!(removals[1].anchor.as_deref(), Some("a"));
    }

    #[test]
    fn reset_is_a_barrier() {
        let events = [
            ev(1, EventType::NodeAdded, "node", "a", 1, node("a", "file")),
            ev(2, EventType::GraphReset, "project", "p", 1, json!({})),
            ev(3, EventType::NodeAdded, "node", "a", 2, node("a", "file")),
        ];
        let plan = Plan::build(&events, StreamId::new(1, 3)).unwrap();
        assert!(matches!(plan.steps.as_slice(), [Step::Changes(_), Step::Reset, Step::Changes(_)]));
    }

    #[test]
    fn a_poison_event_is_named_with_its_position() {
        let events = [
            ev(1, EventType::NodeAdded, "node", "a", 1, node("a", "file")),
            ev(2, EventType::NodeAdded, "node", "b", 1, node("b", "no spaces allowed")),
            ev(3, EventType::NodeAdded, "node", "c", 1, json!({"id": "c"})),
        ];
        let err = Plan::build(&events, StreamId::new(1, 3)).unwrap_err();
        assert_eq!((err.index, err.id), (1, StreamId::new(1, 2)));
        assert!(err.reason.contains("kind"), "{}", err.reason);
        assert_eq!(Plan::build(&events[2..], StreamId::new(1, 3)).unwrap_err().index, 0);
    }
}
