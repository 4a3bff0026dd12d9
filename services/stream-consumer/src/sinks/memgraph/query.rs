//! The Cypher that Memgraph runs for a plan: statements with `$parameters` (Bolt binds them, nothing is written
//! into the text but labels and types, which the plan has checked are identifiers), meant to run in one explicit
//! transaction together with the statement that records the last applied ID.
//!
//! Memgraph (community) has one database, so every project shares it: nodes carry a `project` property and are
//! merged on (`project`, `id`); `_Meta` nodes are one per project. Labels, types and properties are those of the
//! FalkorDB sink ([`crate::sinks::mapping`]).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::sinks::{
    falkordb::query::{ident, literal, string},
    mapping::{props_json, PropValue, Props},
    plan::{Plan, Removal, Step, Writes},
    Writer,
};

/// Indexes created on start (Memgraph answers an existing index with success).
pub const INDEXES: [&str; 3] =
    ["CREATE INDEX ON :Node(id)", "CREATE INDEX ON :Node(project)", "CREATE INDEX ON :_Meta(project)"];

/// The project's record: fence, recorded ID (ms, seq). No row: no record.
pub const READ_META: &str = "MATCH (m:_Meta {project: $project}) RETURN m.fence, m.ms, m.seq";
/// Raises the fence to `$gen` unless a newer generation wrote; 1 when it did.
pub const RAISE_FENCE: &str =
    "MATCH (m:_Meta {project: $project}) WHERE m.fence <= $gen SET m.fence = $gen RETURN count(m)";
/// First statement of a plan's transaction: the fence and the recorded ID checked, the fence raised; 1 when the
/// plan may be written.
pub const GUARD: &str = "MATCH (m:_Meta {project: $project}) WHERE m.fence <= $gen \
     AND (m.ms < $ms OR (m.ms = $ms AND m.seq <= $seq)) AND (m.ms > $rms OR (m.ms = $rms AND m.seq >= $rseq)) \
     SET m.fence = $gen RETURN count(m)";
/// First statement of a reset: 1 unless a newer generation wrote (a missing record is what a reset repairs).
pub const RESET_GUARD: &str =
    "OPTIONAL MATCH (m:_Meta {project: $project}) WITH coalesce(m.fence, 0) AS fence WHERE fence <= $gen RETURN count(*)";

/// One statement and its parameters (a JSON object; `project` is always among them).
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub text: String,
    pub params: Value,
}

impl Statement {
    /// The statement with its parameters written into the text as Cypher literals (`CYPHER name=value … query`,
    /// FalkorDB's form), for a server that cannot bind them.
    pub fn inlined(&self) -> String {
        let mut out = String::from("CYPHER ");
        for (name, value) in self.params.as_object().into_iter().flatten() {
            out.push_str(&ident(name));
            out.push('=');
            json_literal(value, &mut out);
            out.push(' ');
        }
        out.push_str(&self.text);
        out
    }

    fn new(text: impl Into<String>, project: &str, rows: Option<Vec<Value>>) -> Self {
        let mut params = json!({"project": project});
        if let Some(rows) = rows {
            params["rows"] = Value::Array(rows);
        }
        Self { text: text.into(), params }
    }
}

/// The statements of `plan`, ending with the one that records `plan.last_id`.
pub fn plan_statements(project: &str, plan: &Plan, known_labels: &BTreeSet<String>) -> Vec<Statement> {
    let mut out = Vec::new();
    for step in &plan.steps {
        match step {
            Step::Reset => {
                out.push(Statement::new("MATCH (n:Node {project: $project}) DETACH DELETE n", project, None))
            }
            Step::Changes(writes) => changes(&mut out, project, writes, known_labels),
        }
    }
    let mut record = Statement::new(
        "MATCH (m:_Meta {project: $project}) SET m.last_id = $last_id, m.ms = $ms, m.seq = $seq",
        project,
        None,
    );
    record.params["last_id"] = Value::String(plan.last_id.to_string());
    record.params["ms"] = json!(plan.last_id.ms);
    record.params["seq"] = json!(plan.last_id.seq);
    out.push(record);
    out
}

/// The guard of a plan written by `writer` (see [`GUARD`]).
pub fn guard(project: &str, writer: Writer, plan: &Plan) -> Statement {
    let mut s = Statement::new(GUARD, project, None);
    s.params["gen"] = json!(writer.generation);
    s.params["ms"] = json!(plan.last_id.ms);
    s.params["seq"] = json!(plan.last_id.seq);
    s.params["rms"] = json!(writer.recorded.ms);
    s.params["rseq"] = json!(writer.recorded.seq);
    s
}

/// A statement about the project's record with `$gen` (reading, raising the fence, the reset's guard).
pub fn fenced(text: &str, project: &str, generation: u64) -> Statement {
    let mut s = Statement::new(text, project, None);
    s.params["gen"] = json!(generation);
    s
}

/// The statements of a reset after its guard: the project's nodes removed, the record at `0-0` under `generation`.
pub fn reset_statements(project: &str, generation: u64) -> Vec<Statement> {
    vec![
        Statement::new("MATCH (n:Node {project: $project}) DETACH DELETE n", project, None),
        fenced(
            "MERGE (m:_Meta {project: $project}) SET m.fence = $gen, m.ms = 0, m.seq = 0, m.last_id = '0-0'",
            project,
            generation,
        ),
    ]
}

fn json_literal(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_i64() {
            Some(i) => out.push_str(&i.to_string()),
            None => out.push_str(&literal(&PropValue::Float(n.as_f64().unwrap_or(f64::NAN)))),
        },
        Value::String(s) => out.push_str(&string(s)),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_literal(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&ident(k));
                out.push(':');
                json_literal(item, out);
            }
            out.push('}');
        }
    }
}

fn props(p: &Props, project: &str) -> Value {
    let mut map = props_json(p);
    map.insert("project".into(), Value::String(project.to_owned()));
    Value::Object(map)
}

fn changes(out: &mut Vec<Statement>, project: &str, writes: &Writes, known_labels: &BTreeSet<String>) {
    for (kind, rows) in &writes.node_upserts {
        for replaces in [false, true] {
            let rows: Vec<Value> = rows
                .iter()
                .filter(|r| r.replaces == replaces)
                .map(|r| json!({"id": r.id, "v": r.version, "p": props(&r.props, project)}))
                .collect();
            if rows.is_empty() {
                continue;
            }
            let mut text = "UNWIND $rows AS r MERGE (n:Node {project: $project, id: r.id}) \
                            WITH n, r WHERE n.version IS NULL OR n.version < r.v SET n = r.p"
                .to_owned();
            let stale: Vec<&String> =
                known_labels.iter().filter(|l| *l != kind && *l != "Node" && *l != "_Meta").collect();
            if replaces && !stale.is_empty() {
                text.push_str(" REMOVE n");
                for l in stale {
                    text.push(':');
                    text.push_str(l);
                }
            }
            text.push_str(&format!(" SET n:{kind}"));
            out.push(Statement::new(text, project, Some(rows)));
        }
    }
    removals(out, project, &writes.edge_removals, |anchored| {
        if anchored {
            "UNWIND $rows AS r MATCH (:Node {project: $project, id: r.a})-[e]->() WHERE e.id = r.id AND e.version < r.v DELETE e"
        } else {
            "UNWIND $rows AS r MATCH (:Node {project: $project})-[e]->() WHERE e.id = r.id AND e.version < r.v DELETE e"
        }
    });
    removals(out, project, &writes.node_removals, |_| {
        "UNWIND $rows AS r MATCH (n:Node {project: $project, id: r.id}) WHERE n.version < r.v DETACH DELETE n"
    });
    for (rel_type, rows) in &writes.edge_upserts {
        let moved: Vec<Value> = rows
            .iter()
            .filter(|r| r.replaces)
            .map(|r| json!({"id": r.id, "s": r.source, "t": r.target, "v": r.version}))
            .collect();
        if !moved.is_empty() {
            let mut s = Statement::new(
                "UNWIND $rows AS r MATCH (a:Node {project: $project})-[e]->(b:Node) WHERE e.id = r.id AND e.version < r.v \
                 AND (type(e) <> $type OR a.id <> r.s OR b.id <> r.t) DELETE e",
                project,
                Some(moved),
            );
            s.params["type"] = Value::String(rel_type.clone());
            out.push(s);
        }
        let rows: Vec<Value> = rows
            .iter()
            .map(|r| json!({"id": r.id, "s": r.source, "t": r.target, "v": r.version, "p": props_json(&r.props)}))
            .collect();
        out.push(Statement::new(
            format!(
                "UNWIND $rows AS r MATCH (a:Node {{project: $project, id: r.s}}), (b:Node {{project: $project, id: r.t}}) \
                 MERGE (a)-[e:{rel_type} {{id: r.id}}]->(b) WITH e, r WHERE e.version IS NULL OR e.version < r.v SET e = r.p"
            ),
            project,
            Some(rows),
        ));
    }
}

fn removals(out: &mut Vec<Statement>, project: &str, rows: &[Removal], text: impl Fn(bool) -> &'static str) {
    for anchored in [true, false] {
        let rows: Vec<Value> = rows
            .iter()
            .filter(|r| r.anchor.is_some() == anchored)
            .map(|r| match &r.anchor {
                Some(a) => json!({"id": r.id, "v": r.version, "a": a}),
                None => json!({"id": r.id, "v": r.version}),
            })
            .collect();
        if !rows.is_empty() {
            out.push(Statement::new(text(anchored), project, Some(rows)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{change, single};
    use codegraph_shared::event::{ChangeSet, EventType, StreamId};

    fn ev(seq: u64, t: EventType, id: &str, version: u64, data: Value) -> ChangeSet {
        single(StreamId::new(7, seq), change(t, id, version, data))
    }

    #[test]
    fn a_batch_becomes_parameterised_statements_and_a_record() {
        let events = [
            ev(
                1,
                EventType::NodeAdded,
                "a",
                1,
                json!({"id": "a", "kind": "file", "name": "a", "properties": {"x": 1}}),
            ),
            ev(2, EventType::NodeUpdated, "b", 4, json!({"id": "b", "kind": "class", "name": "b"})),
            ev(
                3,
                EventType::RelationshipAdded,
                "a|calls|b",
                1,
                json!({"id": "a|calls|b", "type": "calls", "source": "a", "target": "b"}),
            ),
            ev(4, EventType::NodeDeleted, "c", 2, json!({"id": "c", "kind": "file", "name": "c"})),
        ];
        let plan = Plan::build(&events, StreamId::new(7, 4)).unwrap();
        let labels: BTreeSet<String> = ["Node", "_Meta", "file", "class", "module"].map(String::from).into();
        let s = plan_statements("proj", &plan, &labels);
        let texts: Vec<&str> = s.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts.len(), 5, "{texts:#?}");
        assert!(texts[0].ends_with("SET n = r.p REMOVE n:file:module SET n:class"), "{}", texts[0]);
        assert!(texts[1].ends_with("SET n:file"), "{}", texts[1]);
        assert!(texts[2].contains("DETACH DELETE n"));
        assert!(texts[3].contains("MERGE (a)-[e:calls {id: r.id}]->(b)"));
        assert!(texts[4].starts_with("MATCH (m:_Meta {project: $project}) SET m.last_id"));
        assert_eq!(
            s[1].params["rows"][0]["p"],
            json!({"id": "a", "kind": "file", "name": "a", "version": 1, "x": 1, "project": "proj"})
        );
        assert_eq!(s[4].params, json!({"project": "proj", "last_id": "7-4", "ms": 7, "seq": 4}));
        for st in &s {
            assert!(!st.text.contains("'"), "values are parameters, never literals: {}", st.text);
        }
    }

    #[test]
    fn inlined_parameters_are_escaped_literals() {
        let s = Statement {
            text: "RETURN $rows".into(),
            params: json!({"project": "p", "rows": [{"id": "it's", "x": 1.5, "n": null, "ok": true, "weird key": [2]}]}),
        };
        assert_eq!(
            s.inlined(),
            r"CYPHER project='p' rows=[{id:'it\'s',n:null,ok:true,`weird key`:[2],x:1.5}] RETURN $rows"
        );
    }

    #[test]
    fn an_updated_node_loses_its_other_labels() {
        let events = [ev(1, EventType::NodeUpdated, "b", 4, json!({"id": "b", "kind": "class", "name": "b"}))];
        let plan = Plan::build(&events, StreamId::new(7, 1)).unwrap();
        let labels: BTreeSet<String> = ["Node", "file", "class"].map(String::from).into();
        let s = plan_statements("proj", &plan, &labels);
        assert!(s[0].text.ends_with("SET n = r.p REMOVE n:file SET n:class"), "{}", s[0].text);
    }
}
