//! The difference between the desired graph and what Redis holds, as the mutations that turn one into the
//! other, in an order the Function library accepts chunk by chunk: edges that go first, then nodes (so no
//! edge points at a missing node), then edges, then nodes that go.

use std::collections::{BTreeMap, BTreeSet};

use codegraph_shared::{
    functions::{Expect, Mutation},
    graph::{Node, Relationship},
};

use crate::desired::{DesiredGraph, Owned, Owner};

/// The upserts borrow the desired graph's entities: a fresh analysis's delta is the whole graph, and a copy of it
/// (and of its mutations) would double the worker's memory. Mutations are made from it one call at a time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delta<'a> {
    pub delete_rels: Vec<String>,
    pub upsert_nodes: Vec<&'a Node>,
    pub upsert_rels: Vec<&'a Relationship>,
    pub delete_nodes: Vec<String>,
}

impl Delta<'_> {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        self.delete_rels.len() + self.upsert_nodes.len() + self.upsert_rels.len() + self.delete_nodes.len()
    }

    /// The mutations, in the order they must be applied, each made when it is taken.
    pub fn mutations(&self) -> impl Iterator<Item = Mutation> + '_ {
        let delete_rels = self.delete_rels.iter().map(|id| Mutation::DeleteRelationship(id.clone(), Expect::Any));
        let upsert_nodes = self.upsert_nodes.iter().map(|n| Mutation::UpsertNode((*n).clone(), Expect::Any));
        let upsert_rels = self.upsert_rels.iter().map(|r| Mutation::UpsertRelationship((*r).clone(), Expect::Any));
        let delete_nodes = self.delete_nodes.iter().map(|id| Mutation::DeleteNode(id.clone(), Expect::Any));
        delete_rels.chain(upsert_nodes).chain(upsert_rels).chain(delete_nodes)
    }
}

/// What must change so that the entities of `owners` match `desired`, given what Redis holds for them
/// (`current`). Something held by one of those owners and desired by none is deleted; something desired
/// and held differently (or not at all) is written.
pub fn diff<'a>(desired: &'a DesiredGraph, current: &BTreeMap<Owner, Owned>, owners: &BTreeSet<Owner>) -> Delta<'a> {
    let mut held_nodes: BTreeMap<&str, &Node> = BTreeMap::new();
    let mut held_rels: BTreeMap<&str, &Relationship> = BTreeMap::new();
    for owned in current.values() {
        held_nodes.extend(owned.nodes.iter().map(|(k, v)| (k.as_str(), v)));
        held_rels.extend(owned.rels.iter().map(|(k, v)| (k.as_str(), v)));
    }
    let mut delta = Delta::default();
    let mut wanted_nodes: BTreeSet<&str> = BTreeSet::new();
    let mut wanted_rels: BTreeSet<&str> = BTreeSet::new();
    for owner in owners {
        let Some(want) = desired.owners.get(owner) else { continue };
        for (id, n) in &want.nodes {
            wanted_nodes.insert(id);
            if held_nodes.get(id.as_str()).is_none_or(|h| h.canonical_json() != n.canonical_json()) {
                delta.upsert_nodes.push(n);
            }
        }
        for (id, r) in &want.rels {
            wanted_rels.insert(id);
            if held_rels.get(id.as_str()).is_none_or(|h| h.canonical_json() != r.canonical_json()) {
                delta.upsert_rels.push(r);
            }
        }
    }
    // Held by these owners but wanted by none of them: deleted, unless another owner now wants it.
    let mut everywhere: Option<(BTreeSet<&str>, BTreeSet<&str>)> = None;
    let mut desired_elsewhere = |id: &str, node: bool| {
        let (nodes, rels) = everywhere.get_or_insert_with(|| {
            let nodes = desired.owners.values().flat_map(|o| o.nodes.keys().map(String::as_str)).collect();
            let rels = desired.owners.values().flat_map(|o| o.rels.keys().map(String::as_str)).collect();
            (nodes, rels)
        });
        if node {
            nodes.contains(id)
        } else {
            rels.contains(id)
        }
    };
    for id in held_rels.keys() {
        if !wanted_rels.contains(id) && !desired_elsewhere(id, false) {
            delta.delete_rels.push((*id).to_owned());
        }
    }
    for id in held_nodes.keys() {
        if !wanted_nodes.contains(id) && !desired_elsewhere(id, true) {
            delta.delete_nodes.push((*id).to_owned());
        }
    }
    // Parents before children reads better in the event log; ids sort that way within a file.
    delta.upsert_nodes.sort_by(|a, b| node_rank(a).cmp(&node_rank(b)).then_with(|| a.id.cmp(&b.id)));
    delta
}

pub(crate) fn node_rank(n: &Node) -> u8 {
    match n.kind.as_str() {
        "directory" => 0,
        "file" => 1,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::fixture::Fixture;

    #[test]
    fn an_unchanged_graph_has_no_delta_and_a_removed_function_is_deleted_with_its_edges() {
        let before = Fixture::new().file("a.py", "def f():\n    g()\n\ndef g():\n    pass\n").desired();
        let all: BTreeSet<Owner> = before.owners.keys().cloned().collect();
        let held: BTreeMap<Owner, Owned> = before.owners.iter().map(|(k, v)| (k.clone(), (**v).clone())).collect();
        assert!(diff(&before, &held, &all).is_empty());
        let after = Fixture::new().file("a.py", "def f():\n    g()\n").desired();
        let d = diff(&after, &held, &all);
        assert_eq!(d.delete_nodes, ["py:a.py:g"]);
        let mut gone = d.delete_rels.clone();
        gone.sort();
        assert_eq!(gone, ["file:a.py|defines|py:a.py:g", "py:a.py:f|calls|py:a.py:g"]);
        // f now carries the call it could not resolve, and the file has fewer lines.
        let ids: Vec<&str> = d.upsert_nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["file:a.py", "py:a.py:f"]);
        assert!(d.upsert_rels.is_empty());
    }
}
