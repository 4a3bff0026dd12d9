//! Turns a batch of CDC entries (whole change sets, in stream order) into what a sink writes: per entity only its
//! last state, grouped by node kind and relationship type so each group is one `UNWIND` query, with `graph_reset`
//! as a barrier.
//!
//! Keeping only the last change of each entity is exact because every change carries the whole entity after it
//! (or, for a delete, before it) and its version. The groups are applied in an order that keeps the graph valid
//! at the end of the batch: node upserts, relationship deletes, node deletes, relationship upserts. A sink commits
//! a plan's writes between two resets at once, so every change set of the batch becomes visible whole.
//! An entity whose first change in the batch is not an `*_added` may already exist in the sink in another shape
//! (other kind, other endpoints), so it is flagged `replaces` and the query builders clean that up; a relationship
//! whose id is the derived `source|type|target` cannot change shape and is never flagged.

use std::collections::{BTreeMap, HashMap};

use codegraph_shared::{
    event::{Change, ChangeSet, EventType, StreamId},
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
pub struct Writes {
    /// Node kind → rows; kinds are valid labels.
    pub node_upserts: BTreeMap<String, Vec<NodeRow>>,
    pub edge_removals: Vec<Removal>,
    pub node_removals: Vec<Removal>,
    /// Relationship type → rows; types are valid labels.
    pub edge_upserts: BTreeMap<String, Vec<EdgeRow>>,
}

impl Writes {
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
    Changes(Writes),
}

/// What a sink commits for one batch, ending with the stream ID it has then applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub last_id: StreamId,
}

/// Why a stream entry cannot be applied: it would fail every time (a poison entry). The whole entry is at fault,
/// since its change set is applied whole or not at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("entry {id}, change {change}: {reason}")]
pub struct Unappliable {
    /// Position of the entry in the batch.
    pub index: usize,
    pub id: StreamId,
    /// Position of the failing change in the entry's change set.
    pub change: usize,
    pub reason: String,
}

/// How many of the next entries one commit takes, given each entry's number of changes in order: whole entries
/// of at most `max_changes` changes together, and at least one (a change set larger than that is a commit of its
/// own). Never a part of an entry, so a change set is in one plan, which the sink applies at once. An entry
/// counts as one change at least, so entries without changes are bounded too.
pub fn commit_len(changes: impl IntoIterator<Item = usize>, max_changes: usize) -> usize {
    let (mut taken, mut total) = (0, 0);
    for n in changes {
        let n = n.max(1);
        if taken > 0 && total + n > max_changes {
            break;
        }
        (taken, total) = (taken + 1, total + n);
    }
    taken
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
    /// The plan of `sets` (stream order; those the sink has already applied left out), committing `last_id`.
    /// Fails with the first entry that can never be applied; callers apply the entries before it on their own.
    pub fn build<'a>(sets: impl IntoIterator<Item = &'a ChangeSet>, last_id: StreamId) -> Result<Plan, Unappliable> {
        let mut steps = Vec::new();
        let mut pending: Vec<Entry> = Vec::new();
        // (is a relationship, id) → position in `pending`; the id is the change's, which equals its data's.
        let mut slot: HashMap<(bool, &'a str), usize> = HashMap::new();
        for (index, set) in sets.into_iter().enumerate() {
            for (position, c) in set.changes.iter().enumerate() {
                let change = c.index.map_or(position, |i| i as usize);
                let bad = |reason: String| Unappliable { index, id: set.id, change, reason };
                let (key, last) = match c.event_type {
                    EventType::GraphReset => {
                        flush(&mut steps, &mut pending, &mut slot);
                        steps.push(Step::Reset);
                        continue;
                    }
                    EventType::NodeAdded | EventType::NodeUpdated => {
                        let node: Node = decode(c).map_err(bad)?;
                        check_label("kind", &node.kind).map_err(|e| bad(e.to_string()))?;
                        same_id(c, &node.id).map_err(bad)?;
                        ((false, c.entity.id.as_str()), Last::Node(node, c.version))
                    }
                    EventType::NodeDeleted => {
                        ((false, c.entity.id.as_str()), Last::NodeGone(c.entity.id.clone(), c.version))
                    }
                    EventType::RelationshipAdded | EventType::RelationshipUpdated | EventType::RelationshipDeleted => {
                        let rel: Relationship = decode(c).map_err(bad)?;
                        check_label("type", &rel.rel_type).map_err(|e| bad(e.to_string()))?;
                        same_id(c, &rel.id).map_err(bad)?;
                        let key = (true, c.entity.id.as_str());
                        if c.event_type == EventType::RelationshipDeleted {
                            (key, Last::EdgeGone(rel, c.version))
                        } else {
                            (key, Last::Edge(rel, c.version))
                        }
                    }
                    // Job events and types this build does not know change no graph.
                    _ => continue,
                };
                match slot.get(&key) {
                    Some(&i) => {
                        let entry = &mut pending[i];
                        entry.moved |= c.event_type == EventType::RelationshipUpdated;
                        entry.last = last;
                    }
                    None => {
                        slot.insert(key, pending.len());
                        let moved = c.event_type == EventType::RelationshipUpdated;
                        pending.push(Entry { first: c.event_type, moved, last });
                    }
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
            Step::Changes(w) => w.node_upserts.keys().map(String::as_str).collect::<Vec<_>>(),
            Step::Reset => Vec::new(),
        })
    }
}

fn decode<T: serde::de::DeserializeOwned>(change: &Change) -> Result<T, String> {
    T::deserialize(&change.data).map_err(|e| format!("{} data is not a valid entity: {e}", change.event_type.as_str()))
}

fn same_id(change: &Change, id: &str) -> Result<(), String> {
    if change.entity.id == id {
        Ok(())
    } else {
        Err(format!("entity id {:?} differs from the data's id {id:?}", change.entity.id))
    }
}

/// A relationship whose id is derived from its endpoints and type cannot have been elsewhere under the same id, so
/// it needs no search of the whole graph (which costs a scan of every edge).
fn is_derived(rel: &Relationship) -> bool {
    rel.id == Relationship::derived_id(&rel.source, &rel.rel_type, &rel.target)
}

fn flush<K>(steps: &mut Vec<Step>, pending: &mut Vec<Entry>, slot: &mut HashMap<K, usize>) {
    if pending.is_empty() {
        return;
    }
    let mut writes = Writes::default();
    for entry in pending.drain(..) {
        let fresh = matches!(entry.first, EventType::NodeAdded | EventType::RelationshipAdded);
        match entry.last {
            Last::Node(node, version) => {
                let props = node_props(&node, version);
                let row = NodeRow { id: node.id, version, props, replaces: !fresh };
                writes.node_upserts.entry(node.kind).or_default().push(row);
            }
            Last::NodeGone(id, version) => writes.node_removals.push(Removal { id, version, anchor: None }),
            Last::Edge(rel, version) => {
                let row = EdgeRow {
                    id: rel.id.clone(),
                    source: rel.source.clone(),
                    target: rel.target.clone(),
                    version,
                    props: edge_props(&rel, version),
                    replaces: !fresh && !is_derived(&rel),
                };
                writes.edge_upserts.entry(rel.rel_type).or_default().push(row);
            }
            Last::EdgeGone(rel, version) => {
                let anchor = (!entry.moved || is_derived(&rel)).then_some(rel.source);
                writes.edge_removals.push(Removal { id: rel.id, version, anchor });
            }
        }
    }
    slot.clear();
    steps.push(Step::Changes(writes));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{change, change_set, single};
    use serde_json::json;

    fn one(seq: u64, t: EventType, id: &str, version: u64, data: serde_json::Value) -> ChangeSet {
        single(StreamId::new(1, seq), change(t, id, version, data))
    }

    fn node(id: &str, kind: &str) -> serde_json::Value {
        json!({"id": id, "kind": kind, "name": id})
    }

    fn rel(id: &str, s: &str, t: &str) -> serde_json::Value {
        json!({"id": id, "type": "calls", "source": s, "target": t})
    }

    fn writes(plan: &Plan) -> Vec<&Writes> {
        plan.steps.iter().filter_map(|s| if let Step::Changes(w) = s { Some(w) } else { None }).collect()
    }

    #[test]
    fn only_the_last_state_of_each_entity_is_written() {
        let sets = [
            change_set(
                StreamId::new(1, 1),
                vec![
                    change(EventType::NodeAdded, "a", 1, node("a", "file")),
                    change(EventType::NodeUpdated, "a", 2, node("a", "module")),
                    change(EventType::NodeAdded, "b", 1, node("b", "file")),
                ],
            ),
            one(4, EventType::RelationshipAdded, "r", 1, rel("r", "a", "b")),
            one(5, EventType::AnalysisProgress, "j", 1, json!({})),
        ];
        let plan = Plan::build(&sets, StreamId::new(1, 5)).unwrap();
        let w = writes(&plan);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].node_upserts["module"][0].version, 2);
        assert!(!w[0].node_upserts["module"][0].replaces, "first seen as added: nothing to replace");
        assert_eq!(w[0].node_upserts["file"].len(), 1);
        assert_eq!(w[0].edge_upserts["calls"][0].source, "a");
        assert_eq!(plan.last_id, StreamId::new(1, 5));
    }

    #[test]
    fn delete_then_add_in_one_batch_replaces_what_the_sink_had() {
        let sets = [
            one(1, EventType::NodeDeleted, "a", 2, node("a", "file")),
            one(2, EventType::NodeAdded, "a", 3, node("a", "class")),
        ];
        let plan = Plan::build(&sets, StreamId::new(1, 2)).unwrap();
        let row = &writes(&plan)[0].node_upserts["class"][0];
        assert!(row.replaces && row.version == 3);
        assert!(writes(&plan)[0].node_removals.is_empty());
    }

    #[test]
    fn a_moved_then_deleted_edge_is_searched_everywhere() {
        let sets = [
            one(1, EventType::RelationshipUpdated, "r", 2, rel("r", "c", "b")),
            one(2, EventType::RelationshipDeleted, "r", 3, rel("r", "c", "b")),
            one(3, EventType::RelationshipDeleted, "q", 2, rel("q", "a", "b")),
        ];
        let plan = Plan::build(&sets, StreamId::new(1, 3)).unwrap();
        let removals = &writes(&plan)[0].edge_removals;
        assert_eq!(removals[0].anchor, None);
        assert_eq!(removals[1].anchor.as_deref(), Some("a"));
    }

    #[test]
    fn a_node_delete_and_its_cascade_in_one_set_remove_both() {
        let set = change_set(
            StreamId::new(1, 1),
            vec![
                change(EventType::RelationshipDeleted, "a|calls|b", 2, rel("a|calls|b", "a", "b")),
                change(EventType::NodeDeleted, "a", 3, node("a", "file")),
            ],
        );
        let plan = Plan::build([&set], set.id).unwrap();
        let w = writes(&plan);
        assert_eq!((w.len(), w[0].edge_removals.len(), w[0].node_removals.len()), (1, 1, 1));
    }

    #[test]
    fn a_commit_takes_whole_entries_up_to_the_batch_size_and_a_larger_set_alone() {
        let commits = |sizes: &[usize], max: usize| {
            let mut rest = sizes;
            let mut out = Vec::new();
            while !rest.is_empty() {
                let n = commit_len(rest.iter().copied(), max);
                out.push(rest[..n].to_vec());
                rest = &rest[n..];
            }
            out
        };
        let got = commits(&[300, 10, 10, 600, 5, 95, 1], 100);
        assert_eq!(got, [vec![300], vec![10, 10], vec![600], vec![5, 95], vec![1]]);
        assert_eq!(commits(&[1; 5], 2), [vec![1, 1], vec![1, 1], vec![1]]);
        assert_eq!(commits(&[0, 0, 0], 2), [vec![0, 0], vec![0]], "an empty entry counts as one");
        assert_eq!(commit_len([], 10), 0);
    }

    #[test]
    fn reset_is_a_barrier() {
        let sets = [
            one(1, EventType::NodeAdded, "a", 1, node("a", "file")),
            one(2, EventType::GraphReset, "p", 1, json!({})),
            one(3, EventType::NodeAdded, "a", 2, node("a", "file")),
        ];
        let plan = Plan::build(&sets, StreamId::new(1, 3)).unwrap();
        assert!(matches!(plan.steps.as_slice(), [Step::Changes(_), Step::Reset, Step::Changes(_)]));
    }

    #[test]
    fn a_poison_entry_is_named_with_its_position_and_the_change_at_fault() {
        let sets = [
            one(1, EventType::NodeAdded, "a", 1, node("a", "file")),
            change_set(
                StreamId::new(1, 2),
                vec![
                    change(EventType::NodeAdded, "b", 1, node("b", "file")),
                    change(EventType::NodeAdded, "c", 1, node("c", "no spaces allowed")),
                ],
            ),
            one(3, EventType::NodeAdded, "d", 1, json!({"id": "d"})),
        ];
        let err = Plan::build(&sets, StreamId::new(1, 3)).unwrap_err();
        assert_eq!((err.index, err.id, err.change), (1, StreamId::new(1, 2), 1));
        assert!(err.reason.contains("kind"), "{}", err.reason);
        assert_eq!(Plan::build(&sets[2..], StreamId::new(1, 3)).unwrap_err().index, 0);
    }
}
