//! How a Redis graph entity becomes the properties of a graph-database node or edge, the same for every sink.
//!
//! A node keeps `id`, `kind`, `name`, `file`, `line_start`, `line_end` and `version`; an edge keeps `id` and
//! `version` (its type and endpoints are the edge itself). Each user property becomes a property of the same name
//! (prefixed `prop_` when the name is one of those fields): strings, numbers, booleans and lists of them as they
//! are, anything nested (objects, lists of lists or objects) as its JSON text, `null` as no property at all.

use codegraph_shared::graph::{Node, Relationship};
use serde_json::Value;

/// A value a graph database stores as a property.
#[derive(Clone, Debug, PartialEq)]
pub enum PropValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<PropValue>),
}

/// The properties of one node or edge, in a stable order.
pub type Props = Vec<(String, PropValue)>;

const NODE_FIELDS: [&str; 7] = ["id", "kind", "name", "file", "line_start", "line_end", "version"];
const EDGE_FIELDS: [&str; 2] = ["id", "version"];

/// Prefix given to a user property whose name is taken by an entity field.
pub const SHADOWED_PREFIX: &str = "prop_";

pub fn node_props(node: &Node, version: u64) -> Props {
    let mut props = vec![
        ("id".to_owned(), PropValue::Str(node.id.clone())),
        ("kind".to_owned(), PropValue::Str(node.kind.clone())),
        ("name".to_owned(), PropValue::Str(node.name.clone())),
    ];
    if let Some(file) = &node.file {
        props.push(("file".to_owned(), PropValue::Str(file.clone())));
    }
    if let Some(l) = node.line_start {
        props.push(("line_start".to_owned(), PropValue::Int(l.into())));
    }
    if let Some(l) = node.line_end {
        props.push(("line_end".to_owned(), PropValue::Int(l.into())));
    }
    props.push(("version".to_owned(), version_value(version)));
    push_user_props(&mut props, &node.properties, &NODE_FIELDS);
    props
}

pub fn edge_props(rel: &Relationship, version: u64) -> Props {
    let mut props =
        vec![("id".to_owned(), PropValue::Str(rel.id.clone())), ("version".to_owned(), version_value(version))];
    push_user_props(&mut props, &rel.properties, &EDGE_FIELDS);
    props
}

/// Versions are stored as integers (Cypher integers are i64; a version never gets near the limit).
pub fn version_value(version: u64) -> PropValue {
    PropValue::Int(i64::try_from(version).unwrap_or(i64::MAX))
}

fn push_user_props(props: &mut Props, user: &std::collections::BTreeMap<String, Value>, fields: &[&str]) {
    for (key, value) in user {
        let Some(value) = prop_value(value) else { continue };
        let name = if fields.contains(&key.as_str()) { format!("{SHADOWED_PREFIX}{key}") } else { key.clone() };
        props.push((name, value));
    }
}

/// The stored form of a JSON value; `None` for `null`.
pub fn prop_value(value: &Value) -> Option<PropValue> {
    match value {
        Value::Null => None,
        Value::Array(items) if items.iter().all(is_scalar) => Some(PropValue::List(items.iter().map(scalar).collect())),
        v if is_scalar(v) => Some(scalar(v)),
        nested => Some(PropValue::Str(nested.to_string())),
    }
}

fn is_scalar(v: &Value) -> bool {
    matches!(v, Value::Bool(_) | Value::Number(_) | Value::String(_))
}

fn scalar(v: &Value) -> PropValue {
    match v {
        Value::Bool(b) => PropValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => PropValue::Int(i),
            None => PropValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => PropValue::Str(s.clone()),
        other => PropValue::Str(other.to_string()),
    }
}

impl PropValue {
    /// The JSON a reader of the graph database gets back for this value (what tests compare against).
    pub fn to_json(&self) -> Value {
        match self {
            Self::Bool(b) => Value::Bool(*b),
            Self::Int(i) => Value::from(*i),
            Self::Float(f) => Value::from(*f),
            Self::Str(s) => Value::String(s.clone()),
            Self::List(items) => Value::Array(items.iter().map(Self::to_json).collect()),
        }
    }
}

/// The expected properties as a JSON object (for comparisons in tests and tools).
pub fn props_json(props: &Props) -> serde_json::Map<String, Value> {
    props.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_and_user_properties_map_one_to_one() {
        let node: Node = serde_json::from_value(json!({
            "id": "py:a.py:f", "kind": "function", "name": "f", "file": "a.py", "line_start": 3,
            "properties": {"async": true, "args": ["a", "b"], "meta": {"x": 1}, "name": "shadow", "gone": null,
                           "ratio": 0.5, "nested": [[1]]}
        }))
        .unwrap();
        let got = props_json(&node_props(&node, 7));
        assert_eq!(
            serde_json::Value::Object(got),
            json!({"id": "py:a.py:f", "kind": "function", "name": "f", "file": "a.py", "line_start": 3,
                   "version": 7, "async": true, "args": ["a", "b"], "meta": "{\"x\":1}", "prop_name": "shadow",
                   "ratio": 0.5, "nested": "[[1]]"})
        );
    }

    #[test]
    fn edges_keep_id_version_and_properties() {
        let rel: Relationship = serde_json::from_value(json!({
            "id": "a|calls|b", "type": "calls", "source": "a", "target": "b", "properties": {"line": 4, "id": "x"}
        }))
        .unwrap();
        let got = props_json(&edge_props(&rel, 2));
        assert_eq!(serde_json::Value::Object(got), json!({"id": "a|calls|b", "version": 2, "line": 4, "prop_id": "x"}));
    }
}
