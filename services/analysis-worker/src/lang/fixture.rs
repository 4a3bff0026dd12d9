//! Fixture projects for the language tests: a few files in memory → the desired graph, with assertions that
//! print what the graph does have when they fail.

use std::collections::BTreeMap;

use codegraph_shared::graph::{Node, Relationship};

use crate::{
    analysis::{content_hash, Analyzer, Hooks, Loaded, Report},
    lang::Language,
};

#[derive(Default)]
pub struct Fixture {
    files: Vec<Loaded>,
}

pub struct FixtureGraph {
    pub nodes: BTreeMap<String, Node>,
    pub rels: BTreeMap<String, Relationship>,
}

impl Fixture {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn file(mut self, path: &str, text: &str) -> Self {
        let language = Language::of_path(path).expect("a fixture file of a known language");
        self.files.push(Loaded { path: path.into(), language, text: text.into(), hash: content_hash(text.as_bytes()) });
        self
    }

    /// The desired graph by owner.
    pub fn desired(self) -> crate::desired::DesiredGraph {
        Analyzer::new().analyze(self.files, Report::default(), "fixture", &Hooks::none()).unwrap().graph
    }

    pub fn analyze(self) -> FixtureGraph {
        let a = Analyzer::new().analyze(self.files, Report::default(), "fixture", &Hooks::none()).unwrap();
        let mut nodes = BTreeMap::new();
        let mut rels = BTreeMap::new();
        for owned in a.graph.owners.into_values() {
            let owned = std::sync::Arc::unwrap_or_clone(owned);
            nodes.extend(owned.nodes);
            rels.extend(owned.rels);
        }
        for r in rels.values() {
            assert!(nodes.contains_key(&r.source) && nodes.contains_key(&r.target), "dangling {}", r.id);
        }
        FixtureGraph { nodes, rels }
    }
}

impl FixtureGraph {
    fn dump(&self) -> String {
        let mut s = String::from("nodes:\n");
        for n in self.nodes.values() {
            s.push_str(&format!("  {} ({}) {:?}\n", n.id, n.kind, n.properties));
        }
        s.push_str("relationships:\n");
        for r in self.rels.values() {
            s.push_str(&format!("  {}\n", r.id));
        }
        s
    }

    pub fn has_node(&self, id: &str, kind: &str) -> &Node {
        match self.nodes.get(id) {
            Some(n) if n.kind == kind => n,
            _ => panic!("no {kind} node {id}\n{}", self.dump()),
        }
    }

    pub fn subkind(&self, id: &str, subkind: &str) {
        let n = self.has_node(id, "class");
        assert_eq!(n.properties.get("subkind").and_then(|v| v.as_str()), Some(subkind), "{id}");
    }

    pub fn has_edge(&self, source: &str, rel_type: &str, target: &str) {
        let id = Relationship::derived_id(source, rel_type, target);
        assert!(self.rels.contains_key(&id), "no edge {id}\n{}", self.dump());
    }

    pub fn no_edge_from(&self, source: &str, rel_type: &str, target: &str) {
        let id = Relationship::derived_id(source, rel_type, target);
        assert!(!self.rels.contains_key(&id), "unexpected edge {id}");
    }

    /// The node's `unresolved_calls` are exactly `calls`.
    pub fn unresolved(&self, id: &str, calls: &[&str]) {
        let n = self.nodes.get(id).unwrap_or_else(|| panic!("no node {id}\n{}", self.dump()));
        let got: Vec<&str> = n
            .properties
            .get("unresolved_calls")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        assert_eq!(got, calls, "unresolved calls of {id}");
    }
}
