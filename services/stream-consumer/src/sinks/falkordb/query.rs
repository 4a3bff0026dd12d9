//! The Cypher that FalkorDB runs for a plan: one `GRAPH.QUERY` per step, each a chain of `UNWIND` parts joined by
//! `WITH count(*) AS _`, with the rows passed as `CYPHER name=[…]` parameters (FalkorDB has no parameter binding
//! on the Redis protocol, so the values are written as Cypher literals here, and only here).
//!
//! One query is atomic in FalkorDB (a failing query leaves nothing behind), so the stream ID recorded in the
//! last query of a plan is recorded only together with the plan's last writes. Every node has the label `Node`
//! (indexed on `id`) plus the label of its kind; the `_Meta` node of a graph holds `last_id`.

use std::{collections::BTreeSet, fmt::Write};

use codegraph_shared::event::StreamId;

use crate::sinks::{
    mapping::{PropValue, Props},
    plan::{ChangeSet, EdgeRow, Plan, Removal, Step},
};

/// Label every node carries; indexed on `id`.
pub const NODE_LABEL: &str = "Node";
/// Label of the node that records the last applied stream ID.
pub const META_LABEL: &str = "_Meta";

pub const CREATE_INDEX: &str = "CREATE INDEX FOR (n:Node) ON (n.id)";
pub const READ_META: &str = "MATCH (m:_Meta) RETURN m.last_id";
pub const LABELS: &str = "CALL db.labels()";

/// The queries of `plan`, in order. `known_labels`: every label the graph may have, so a node that changes kind
/// loses its old one.
pub fn plan_queries(plan: &Plan, known_labels: &BTreeSet<String>) -> Vec<String> {
    let mut queries: Vec<Chain> = plan
        .steps
        .iter()
        .map(|step| match step {
            Step::Reset => {
                let mut c = Chain::default();
                c.part("MATCH (n:Node) DETACH DELETE n");
                c
            }
            Step::Changes(set) => changes(set, known_labels),
        })
        .collect();
    if queries.is_empty() {
        queries.push(Chain::default());
    }
    queries.last_mut().expect("one query at least").record(plan.last_id);
    queries.into_iter().map(Chain::finish).collect()
}

/// Parameters and clauses of one query.
#[derive(Default)]
struct Chain {
    params: String,
    parts: Vec<String>,
    next_param: usize,
}

impl Chain {
    fn param(&mut self, rows: impl IntoIterator<Item = String>) -> String {
        let name = format!("p{}", self.next_param);
        self.next_param += 1;
        let _ = write!(self.params, "{name}=[");
        for (i, row) in rows.into_iter().enumerate() {
            if i > 0 {
                self.params.push(',');
            }
            self.params.push_str(&row);
        }
        self.params.push_str("] ");
        name
    }

    fn part(&mut self, clause: impl Into<String>) {
        self.parts.push(clause.into());
    }

    fn record(&mut self, last: StreamId) {
        self.part(format!("MERGE (m:_Meta {{id: 'meta'}}) SET m.last_id = '{last}'"));
    }

    fn finish(self) -> String {
        let body = self.parts.join(" WITH count(*) AS _ ");
        if self.params.is_empty() {
            body
        } else {
            format!("CYPHER {}{body}", self.params)
        }
    }
}

fn changes(set: &ChangeSet, known_labels: &BTreeSet<String>) -> Chain {
    let mut c = Chain::default();
    for (kind, rows) in &set.node_upserts {
        let p = c.param(rows.iter().map(|r| format!("{{id:{},v:{},p:{}}}", string(&r.id), r.version, map(&r.props))));
        let kind_label = ident(kind);
        // New nodes are created with their labels: setting a label on an existing node costs FalkorDB far more
        // (it grows with the graph), so it is done only when a node's kind changed.
        c.part(format!(
            "UNWIND ${p} AS r OPTIONAL MATCH (x:Node {{id: r.id}}) WITH r, x WHERE x IS NULL \
             CREATE (n:Node:{kind_label}) SET n = r.p"
        ));
        // A kind change moves the node to its new label (read before the properties, which hold the old kind).
        let mut relabel =
            format!("UNWIND ${p} AS r MATCH (n:Node {{id: r.id}}) WHERE n.version < r.v AND n.kind <> r.p.kind");
        let stale: Vec<&String> =
            known_labels.iter().filter(|l| *l != kind && *l != NODE_LABEL && *l != META_LABEL).collect();
        if !stale.is_empty() {
            relabel.push_str(" REMOVE n");
            for label in stale {
                let _ = write!(relabel, ":{}", ident(label));
            }
        }
        let _ = write!(relabel, " SET n:{kind_label}");
        c.part(relabel);
        c.part(format!("UNWIND ${p} AS r MATCH (n:Node {{id: r.id}}) WHERE n.version < r.v SET n = r.p"));
    }
    removals(&mut c, &set.edge_removals, |anchored| {
        if anchored {
            "MATCH (:Node {id: r.a})-[e]->() WHERE e.id = r.id AND e.version < r.v DELETE e"
        } else {
            "MATCH ()-[e]->() WHERE e.id = r.id AND e.version < r.v DELETE e"
        }
    });
    removals(&mut c, &set.node_removals, |_| "MATCH (n:Node {id: r.id}) WHERE n.version < r.v DETACH DELETE n");
    for (rel_type, rows) in &set.edge_upserts {
        let moved: Vec<&EdgeRow> = rows.iter().filter(|r| r.replaces).collect();
        if !moved.is_empty() {
            // The same id under another type or between other nodes: remove that edge first (a scan of the edges,
            // paid only for relationships updated in place).
            let p = c.param(moved.iter().map(|r| {
                format!("{{id:{},s:{},t:{},v:{}}}", string(&r.id), string(&r.source), string(&r.target), r.version)
            }));
            c.part(format!(
                "UNWIND ${p} AS r MATCH (a:Node)-[e]->(b:Node) WHERE e.id = r.id AND e.version < r.v \
                 AND (type(e) <> {} OR a.id <> r.s OR b.id <> r.t) DELETE e",
                string(rel_type)
            ));
        }
        let p = c.param(rows.iter().map(|r| {
            format!(
                "{{id:{},s:{},t:{},v:{},p:{}}}",
                string(&r.id),
                string(&r.source),
                string(&r.target),
                r.version,
                map(&r.props)
            )
        }));
        c.part(format!(
            "UNWIND ${p} AS r MATCH (a:Node {{id: r.s}}), (b:Node {{id: r.t}}) MERGE (a)-[e:{} {{id: r.id}}]->(b) \
             WITH e, r WHERE e.version IS NULL OR e.version < r.v SET e = r.p",
            ident(rel_type)
        ));
    }
    c
}

fn removals(c: &mut Chain, rows: &[Removal], clause: impl Fn(bool) -> &'static str) {
    for anchored in [true, false] {
        let rows: Vec<&Removal> = rows.iter().filter(|r| r.anchor.is_some() == anchored).collect();
        if rows.is_empty() {
            continue;
        }
        let p = c.param(rows.iter().map(|r| match &r.anchor {
            Some(a) => format!("{{id:{},v:{},a:{}}}", string(&r.id), r.version, string(a)),
            None => format!("{{id:{},v:{}}}", string(&r.id), r.version),
        }));
        c.part(format!("UNWIND ${p} AS r {}", clause(anchored)));
    }
}

/// A Cypher string literal.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A label, relationship type or property key: bare when it is an identifier, else in backticks. FalkorDB's
/// parser has no escape for a backtick inside backticks, so a property key's backticks become `_`.
pub fn ident(name: &str) -> String {
    let mut bytes = name.bytes();
    let plain = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if plain {
        name.to_owned()
    } else {
        format!("`{}`", name.replace('`', "_"))
    }
}

/// A Cypher literal of a property value.
pub fn literal(v: &PropValue) -> String {
    match v {
        PropValue::Bool(b) => b.to_string(),
        PropValue::Int(i) => i.to_string(),
        PropValue::Float(f) => {
            let s = format!("{f:?}");
            if s.contains(['.', 'e', 'E']) {
                s
            } else {
                format!("{s}.0")
            }
        }
        PropValue::Str(s) => string(s),
        PropValue::List(items) => format!("[{}]", items.iter().map(literal).collect::<Vec<_>>().join(",")),
    }
}

/// A Cypher map literal of properties.
pub fn map(props: &Props) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in props.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}:{}", ident(k), literal(v));
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::plan::{ChangeSet, NodeRow, Removal};

    #[test]
    fn literals_escape_what_cypher_needs() {
        assert_eq!(string(r#"it's \ "q""#), r#"'it\'s \\ "q"'"#);
        assert_eq!(string("a\nb"), r"'a\nb'");
        assert_eq!(ident("line_start"), "line_start");
        assert_eq!(ident("we ird`"), "`we ird_`");
        assert_eq!(literal(&PropValue::Float(2.0)), "2.0");
        assert_eq!(literal(&PropValue::Float(1e300)), "1e300");
        let list = PropValue::List(vec![PropValue::Int(1), PropValue::Str("x".into()), PropValue::Bool(true)]);
        assert_eq!(literal(&list), "[1,'x',true]");
    }

    #[test]
    fn a_marker_plan_only_records_the_id() {
        let q = plan_queries(&Plan::marker(StreamId::new(5, 1)), &BTreeSet::new());
        assert_eq!(q, vec!["MERGE (m:_Meta {id: 'meta'}) SET m.last_id = '5-1'".to_owned()]);
    }

    #[test]
    fn one_query_per_step_with_the_record_in_the_last() {
        let mut set = ChangeSet::default();
        set.node_upserts.insert(
            "class".into(),
            vec![NodeRow {
                id: "a".into(),
                version: 2,
                props: vec![("id".into(), PropValue::Str("a".into()))],
                replaces: true,
            }],
        );
        set.node_removals.push(Removal { id: "b".into(), version: 3, anchor: None });
        let plan = Plan { steps: vec![Step::Reset, Step::Changes(set)], last_id: StreamId::new(9, 0) };
        let labels: BTreeSet<String> = ["Node", "_Meta", "file", "class"].map(String::from).into();
        let q = plan_queries(&plan, &labels);
        assert_eq!(q.len(), 2);
        assert_eq!(q[0], "MATCH (n:Node) DETACH DELETE n");
        assert!(q[1].starts_with("CYPHER p0=[{id:'a',v:2,p:{id:'a'}}] p1=[{id:'b',v:3}] UNWIND $p0"), "{}", q[1]);
        assert!(q[1].contains("CREATE (n:Node:class) SET n = r.p"), "{}", q[1]);
        assert!(q[1].contains("n.kind <> r.p.kind REMOVE n:file SET n:class"), "{}", q[1]);
        assert!(q[1].ends_with("SET m.last_id = '9-0'"), "{}", q[1]);
    }
}
