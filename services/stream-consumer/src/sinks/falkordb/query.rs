//! The Cypher that FalkorDB runs for a plan: one `GRAPH.QUERY` per step, each a chain of `UNWIND` parts joined by
//! `WITH count(*) AS _`, with the rows passed as `CYPHER name=[…]` parameters (FalkorDB has no parameter binding
//! on the Redis protocol, so the values are written as Cypher literals here, and only here).
//!
//! One query is atomic in FalkorDB (a failing query leaves nothing behind, and queries on a graph run one at a
//! time, readers included), so the stream ID recorded in the last query of a plan is recorded only together with
//! the plan's last writes, and every change set of a plan becomes visible at once: its writes are all in one
//! query (a plan has more than one only around a `graph_reset`, which is an entry of its own). Every node has the
//! label `Node` (indexed on `id`) plus the label of its kind; the `_Meta` node of a graph holds the record:
//! `fence` (the newest writer's lease generation), `ms` and `seq` (the recorded stream ID, as integers so they
//! compare as numbers) and `last_id` (the same, as text, for people).
//!
//! Fencing: every query starts with the guard ([`guard`]): unless the writer's generation is at least the fence
//! and the recorded ID lies between the writer's and the plan's, it divides by zero, which aborts the query before
//! it wrote anything (FalkorDB has no other way to fail a query on purpose); otherwise it raises the fence. One
//! check per query, ahead of the writes, costs less than a condition in every part.
//!
//! What FalkorDB's time goes to, and so the shape of the text (measured in docs/BENCHMARKS.md, "FalkorDB sink
//! apply rate"):
//! - every value that changes from one commit to the next (the guard's generation and IDs, the record) is a
//!   parameter, so the query text after the parameters is the same for every commit of the same groups and
//!   FalkorDB runs its cached plan instead of parsing and planning the query again;
//! - a node row is its property map itself (it holds `id`, `kind` and `version`), looked up once by its indexed
//!   `id`; creating it, moving it to its new kind and updating it are `FOREACH` branches of that one lookup, since
//!   FalkorDB copies a row's maps and strings for every pass over it.

use std::{collections::BTreeSet, fmt::Write};

use codegraph_shared::event::StreamId;

use crate::sinks::{
    mapping::{PropValue, Props},
    plan::{EdgeRow, Plan, Removal, Step, Writes},
    Writer,
};

/// Label every node carries; indexed on `id`.
pub const NODE_LABEL: &str = "Node";
/// Label of the node that records the last applied stream ID.
pub const META_LABEL: &str = "_Meta";

pub const CREATE_INDEX: &str = "CREATE INDEX FOR (n:Node) ON (n.id)";
pub const READ_META: &str = "MATCH (g:_Meta {id: 'meta'}) RETURN g.fence, g.ms, g.seq";
pub const LABELS: &str = "CALL db.labels()";

/// Whether FalkorDB's error is a guard that did not hold ("Division by zero"; redis-rs shows the first word as
/// the error code).
pub fn refused(error: &str) -> bool {
    error.contains("Division") && error.contains("by zero")
}

/// The queries of `plan` written by `writer`, in order, each behind the guard.
/// `known_labels`: every label the graph may have, so a node that changes kind loses its old one.
pub fn plan_queries(plan: &Plan, writer: Writer, known_labels: &BTreeSet<String>) -> Vec<String> {
    let mut queries: Vec<Chain> = plan
        .steps
        .iter()
        .map(|step| match step {
            Step::Reset => {
                let mut c = Chain::default();
                c.part("MATCH (n:Node) DETACH DELETE n");
                c
            }
            Step::Changes(writes) => changes(writes, known_labels),
        })
        .collect();
    if queries.is_empty() {
        queries.push(Chain::default());
    }
    let last = plan.last_id;
    queries
        .last_mut()
        .expect("one query at least")
        .part("MATCH (g:_Meta {id: 'meta'}) SET g.last_id = $last_id, g.ms = $last_ms, g.seq = $last_seq");
    let count = queries.len();
    queries
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            c.guard_params(writer, last);
            if i + 1 == count {
                c.scalar("last_id", &string(&last.to_string()));
            }
            c.finish(GUARD)
        })
        .collect()
}

/// The first part of a plan's queries: fails ([`refused`]) unless the writer (`$gen`, `$rec_ms`, `$rec_seq`) may
/// write a plan ending at `$last_ms`-`$last_seq`, then raises the fence. Parameters, so the text stays the same.
pub const GUARD: &str = "OPTIONAL MATCH (g:_Meta {id: 'meta'}) WITH g, CASE WHEN g.fence <= $gen \
     AND (g.ms < $last_ms OR (g.ms = $last_ms AND g.seq <= $last_seq)) \
     AND (g.ms > $rec_ms OR (g.ms = $rec_ms AND g.seq >= $rec_seq)) THEN 1 ELSE 0 END AS ok \
     WITH g, 1 / ok AS _ SET g.fence = $gen";

/// Raises the fence to `generation`, or fails ([`refused`]) when a newer one wrote.
pub fn raise_fence(generation: u64) -> String {
    check(&format!("g.fence <= {generation}"), generation)
}

/// The record node `g` matched, the query aborted unless `condition` holds, the fence raised.
fn check(condition: &str, generation: u64) -> String {
    format!(
        "OPTIONAL MATCH (g:_Meta {{id: 'meta'}}) WITH g, CASE WHEN {condition} THEN 1 ELSE 0 END AS ok \
         WITH g, 1 / ok AS _ SET g.fence = {generation}"
    )
}

/// Empties the graph and records `0-0` under `generation`, or fails ([`refused`]) when a newer generation wrote.
/// A graph without a record is what it repairs.
pub fn reset(generation: u64) -> String {
    format!(
        "OPTIONAL MATCH (g:_Meta {{id: 'meta'}}) WITH CASE WHEN coalesce(g.fence, 0) <= {generation} THEN 1 ELSE 0 END AS ok \
         WITH 1 / ok AS _ MATCH (n:Node) DETACH DELETE n WITH count(*) AS _ \
         MERGE (m:_Meta {{id: 'meta'}}) SET m.fence = {generation}, m.ms = 0, m.seq = 0, m.last_id = '0-0'"
    )
}

/// Parameters and clauses of one query.
#[derive(Default)]
struct Chain {
    params: String,
    parts: Vec<String>,
    next_param: usize,
}

impl Chain {
    /// A list parameter of `rows`, each written by `row` straight into the parameter text; returns its name.
    fn param<R>(&mut self, rows: impl IntoIterator<Item = R>, row: impl Fn(&mut String, R)) -> String {
        let name = format!("p{}", self.next_param);
        self.next_param += 1;
        let _ = write!(self.params, "{name}=[");
        for (i, r) in rows.into_iter().enumerate() {
            if i > 0 {
                self.params.push(',');
            }
            row(&mut self.params, r);
        }
        self.params.push_str("] ");
        name
    }

    /// A parameter of one value (`literal`: its Cypher text).
    fn scalar(&mut self, name: &str, literal: &str) {
        let _ = write!(self.params, "{name}={literal} ");
    }

    /// The parameters [`GUARD`] reads.
    fn guard_params(&mut self, writer: Writer, last: StreamId) {
        let (r, g) = (writer.recorded, writer.generation);
        let _ =
            write!(self.params, "gen={g} rec_ms={} rec_seq={} last_ms={} last_seq={} ", r.ms, r.seq, last.ms, last.seq);
    }

    fn part(&mut self, clause: impl Into<String>) {
        self.parts.push(clause.into());
    }

    /// The query: `guard`, then the parts.
    fn finish(self, guard: &str) -> String {
        let parts: Vec<&str> = std::iter::once(guard).chain(self.parts.iter().map(String::as_str)).collect();
        let body = parts.join(" WITH count(*) AS _ ");
        format!("CYPHER {}{body}", self.params)
    }
}

fn changes(writes: &Writes, known_labels: &BTreeSet<String>) -> Chain {
    let mut c = Chain::default();
    for (kind, rows) in &writes.node_upserts {
        // A row is the node's property map: it holds `id`, `kind` and `version`.
        let p = c.param(rows, |out, r| push_map(out, &r.props));
        let kind_label = ident(kind);
        let stale: Vec<&String> =
            known_labels.iter().filter(|l| *l != kind && *l != NODE_LABEL && *l != META_LABEL).collect();
        // A kind change moves the node to its new label, read before the properties (which hold the old kind).
        let mut relabel = String::new();
        if !stale.is_empty() {
            relabel.push_str("REMOVE x");
            for label in stale {
                let _ = write!(relabel, ":{}", ident(label));
            }
            relabel.push(' ');
        }
        // New nodes are created with their labels: setting a label on an existing node costs FalkorDB far more
        // (it grows with the graph), so it is done only when a node's kind changed.
        c.part(format!(
            "UNWIND ${p} AS r OPTIONAL MATCH (x:Node {{id: r.id}}) \
             FOREACH (_ IN CASE WHEN x IS NULL THEN [1] ELSE [] END | CREATE (n:Node:{kind_label}) SET n = r) \
             FOREACH (_ IN CASE WHEN x.version < r.version AND x.kind <> r.kind THEN [1] ELSE [] END | \
             {relabel}SET x:{kind_label}) \
             FOREACH (_ IN CASE WHEN x.version < r.version THEN [1] ELSE [] END | SET x = r)"
        ));
    }
    removals(&mut c, &writes.edge_removals, |anchored| {
        if anchored {
            "MATCH (:Node {id: r.a})-[e]->() WHERE e.id = r.id AND e.version < r.v DELETE e"
        } else {
            "MATCH ()-[e]->() WHERE e.id = r.id AND e.version < r.v DELETE e"
        }
    });
    removals(&mut c, &writes.node_removals, |_| "MATCH (n:Node {id: r.id}) WHERE n.version < r.v DETACH DELETE n");
    for (rel_type, rows) in &writes.edge_upserts {
        let moved: Vec<&EdgeRow> = rows.iter().filter(|r| r.replaces).collect();
        if !moved.is_empty() {
            // The same id under another type or between other nodes: remove that edge first (a scan of the edges,
            // paid only for relationships updated in place).
            let p = c.param(moved, |out, r| {
                push_fields(out, &[("id", &r.id), ("s", &r.source), ("t", &r.target)]);
                let _ = write!(out, ",v:{}}}", r.version);
            });
            c.part(format!(
                "UNWIND ${p} AS r MATCH (a:Node)-[e]->(b:Node) WHERE e.id = r.id AND e.version < r.v \
                 AND (type(e) <> {} OR a.id <> r.s OR b.id <> r.t) DELETE e",
                string(rel_type)
            ));
        }
        // `p`, the edge's property map, holds `id` and `version`.
        let p = c.param(rows, |out, r| {
            push_fields(out, &[("s", &r.source), ("t", &r.target)]);
            out.push_str(",p:");
            push_map(out, &r.props);
            out.push('}');
        });
        c.part(format!(
            "UNWIND ${p} AS r MATCH (a:Node {{id: r.s}}), (b:Node {{id: r.t}}) MERGE (a)-[e:{} {{id: r.p.id}}]->(b) \
             WITH e, r WHERE e.version IS NULL OR e.version < r.p.version SET e = r.p",
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
        let p = c.param(rows, |out, r| {
            push_fields(out, &[("id", &r.id)]);
            let _ = write!(out, ",v:{}", r.version);
            if let Some(a) = &r.anchor {
                out.push_str(",a:");
                push_string(out, a);
            }
            out.push('}');
        });
        c.part(format!("UNWIND ${p} AS r {}", clause(anchored)));
    }
}

/// A Cypher string literal.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_string(&mut out, s);
    out
}

/// Writes the Cypher string literal of `s` to `out`.
fn push_string(out: &mut String, s: &str) {
    const SPECIAL: [char; 5] = ['\\', '\'', '\n', '\r', '\t'];
    out.reserve(s.len() + 2);
    out.push('\'');
    if !s.contains(SPECIAL) {
        out.push_str(s);
    } else {
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
    }
    out.push('\'');
}

/// Writes `{name:'value',…` (the map left open) to `out`.
fn push_fields(out: &mut String, fields: &[(&str, &str)]) {
    out.push('{');
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push(':');
        push_string(out, value);
    }
}

/// A label, relationship type or property key: bare when it is an identifier, else in backticks. FalkorDB's
/// parser has no escape for a backtick inside backticks, so a property key's backticks become `_`.
pub fn ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    push_ident(&mut out, name);
    out
}

fn push_ident(out: &mut String, name: &str) {
    let mut bytes = name.bytes();
    let plain = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if plain {
        out.push_str(name);
    } else {
        out.push('`');
        out.extend(name.chars().map(|c| if c == '`' { '_' } else { c }));
        out.push('`');
    }
}

/// A Cypher literal of a property value.
pub fn literal(v: &PropValue) -> String {
    let mut out = String::new();
    push_literal(&mut out, v);
    out
}

fn push_literal(out: &mut String, v: &PropValue) {
    match v {
        PropValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        PropValue::Int(i) => {
            let _ = write!(out, "{i}");
        }
        PropValue::Float(f) => {
            let s = format!("{f:?}");
            out.push_str(&s);
            if !s.contains(['.', 'e', 'E']) {
                out.push_str(".0");
            }
        }
        PropValue::Str(s) => push_string(out, s),
        PropValue::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_literal(out, item);
            }
            out.push(']');
        }
    }
}

/// Writes the Cypher map literal of `props` to `out`.
fn push_map(out: &mut String, props: &Props) {
    out.push('{');
    for (i, (k, v)) in props.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_ident(out, k);
        out.push(':');
        push_literal(out, v);
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::plan::{NodeRow, Removal, Writes};

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
        let mut row = String::new();
        push_fields(&mut row, &[("s", "it's"), ("t", "b\tc")]);
        assert_eq!(row, r"{s:'it\'s',t:'b\tc'");
        let props = vec![("we ird`".to_owned(), PropValue::Str("a\\b".into())), ("n".to_owned(), PropValue::Int(-1))];
        row.clear();
        push_map(&mut row, &props);
        assert_eq!(row, r"{`we ird_`:'a\\b',n:-1}");
    }

    const WRITER: Writer = Writer { generation: 3, recorded: StreamId { ms: 4, seq: 0 } };

    #[test]
    fn a_marker_plan_only_records_the_id_behind_the_guard() {
        let q = plan_queries(&Plan::marker(StreamId::new(5, 1)), WRITER, &BTreeSet::new());
        assert_eq!(
            q,
            vec![format!(
                "CYPHER gen=3 rec_ms=4 rec_seq=0 last_ms=5 last_seq=1 last_id='5-1' {GUARD} WITH count(*) AS _ \
                 MATCH (g:_Meta {{id: 'meta'}}) SET g.last_id = $last_id, g.ms = $last_ms, g.seq = $last_seq"
            )]
        );
    }

    #[test]
    fn one_query_per_step_with_the_record_in_the_last() {
        let mut writes = Writes::default();
        writes.node_upserts.insert(
            "class".into(),
            vec![NodeRow {
                id: "a".into(),
                version: 2,
                props: vec![("id".into(), PropValue::Str("a".into())), ("version".into(), PropValue::Int(2))],
                replaces: true,
            }],
        );
        writes.node_removals.push(Removal { id: "b".into(), version: 3, anchor: None });
        let plan = Plan { steps: vec![Step::Reset, Step::Changes(writes)], last_id: StreamId::new(9, 0) };
        let labels: BTreeSet<String> = ["Node", "_Meta", "file", "class"].map(String::from).into();
        let q = plan_queries(&plan, WRITER, &labels);
        assert_eq!(q.len(), 2);
        let guard = "gen=3 rec_ms=4 rec_seq=0 last_ms=9 last_seq=0";
        assert_eq!(q[0], format!("CYPHER {guard} {GUARD} WITH count(*) AS _ MATCH (n:Node) DETACH DELETE n"));
        let params = "CYPHER p0=[{id:'a',version:2}] p1=[{id:'b',v:3}] ";
        assert!(q[1].starts_with(&format!("{params}{guard} last_id='9-0' {GUARD} WITH count(*) AS _ UNWIND $p0")));
        assert!(q[1].contains("CREATE (n:Node:class) SET n = r)"), "{}", q[1]);
        assert!(q[1].contains("x.kind <> r.kind THEN [1] ELSE [] END | REMOVE x:file SET x:class)"), "{}", q[1]);
        let record = "MATCH (g:_Meta {id: 'meta'}) SET g.last_id = $last_id, g.ms = $last_ms, g.seq = $last_seq";
        assert!(q[1].ends_with(record), "{}", q[1]);
    }

    #[test]
    fn the_text_after_the_parameters_is_the_same_for_every_commit_of_the_same_groups() {
        // FalkorDB caches a query's plan by that text: values that change per commit must be parameters.
        let node = |id: &str, version: u64| NodeRow {
            id: id.into(),
            version,
            props: vec![("id".into(), PropValue::Str(id.into())), ("version".into(), PropValue::Int(version as i64))],
            replaces: false,
        };
        let body = |last: StreamId, writer: Writer, row: NodeRow| {
            let mut writes = Writes::default();
            writes.node_upserts.insert("file".into(), vec![row]);
            let plan = Plan { steps: vec![Step::Changes(writes)], last_id: last };
            let q = plan_queries(&plan, writer, &BTreeSet::new()).remove(0);
            q[q.find(GUARD).expect("the guard")..].to_owned()
        };
        let later = Writer { generation: 4, recorded: StreamId::new(9, 0) };
        assert_eq!(body(StreamId::new(9, 0), WRITER, node("a", 1)), body(StreamId::new(12, 3), later, node("b", 7)));
    }
}
