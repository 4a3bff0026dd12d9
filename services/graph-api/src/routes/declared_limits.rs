//! The limits the server enforces on its inputs, written into the OpenAPI document from the constants (and
//! settings) that enforce them, so the document and the checks cannot drift apart.
//!
//! utoipa derives the document from the handlers' Rust types (`String`, `u32`), which say nothing of what is
//! checked after deserialisation: `Node::validate` (`codegraph_shared::graph`), `ProjectName::parse`, the
//! handlers' ranges. Without this, a client generated from the document — or schemathesis in
//! `tests/security/api_attack.py` — sends values the server refuses with a 400 or 422. [`declare`] patches the
//! generated document once, at start-up; a rule that names a field or parameter the document no longer has
//! panics, so a renamed field fails every test that starts the service instead of silently losing its limit.
//! `tests/openapi_limits.rs` holds the declared numbers to the constants and to the server's answers.
//!
//! Only refusals are declared. A path id longer than any id can be answers 404 (declared all the same: no such
//! entity can exist), but a batch `delete_*` of such an id answers 200 `not_found`, so its id stays free.
//! What JSON Schema cannot say is said in the field's description:
//! - lengths are bytes on the server, characters in `maxLength` (the same for ASCII);
//! - an integer field refuses `2.0` (serde), which JSON Schema counts as the integer 2;
//! - rules across fields: `line_end` not before `line_start`, a derived relationship id
//!   (`<source>|<type>|<target>`) within the id length, `properties` within its serialized size.

use std::ops::RangeInclusive;

use codegraph_shared::{
    graph::{MAX_FILE_LEN, MAX_ID_LEN, MAX_LABEL_LEN, MAX_NAME_LEN, MAX_PROPERTIES_BYTES},
    project::MAX_PROJECT_LEN,
};
use serde_json::{json, Map, Value};

use super::{
    admin::{MAX_JOB_ID_LEN, MAX_PATH_LEN},
    intel::{CALL_DEPTH, CONFIDENCE, IMPACT_DEPTH, PATH_DEPTH},
    queries::{MAX_SEARCH_LEN, NEIGHBOR_DEPTH},
};
use crate::{
    cypher::MAX_PARAM_NAME,
    intel::{DEPENDENCY_TYPES, STRUCTURE_TYPES},
    settings::Settings,
};

/// No character of Unicode's `Cc` category, which is what `char::is_control` refuses.
const NO_CONTROL: &str = r"^[^\x00-\x1F\x7F-\x9F]*$";
/// Kinds and relationship types (`graph::check_label`); the length is `maxLength`.
const LABEL: &str = r"^[A-Za-z_][A-Za-z0-9_]*$";
/// A project name's alphabet (`ProjectName::parse`); the length is `minLength`/`maxLength`.
const PROJECT: &str = r"^[A-Za-z0-9._-]+$";
/// Job ids (`admin::load_job`).
const JOB_ID: &str = r"^[A-Za-z0-9-]+$";
/// Names of Cypher parameters and keys of the maps in them (`cypher::is_identifier`).
const IDENTIFIER: &str = r"^[A-Za-z_][A-Za-z0-9_]*$";

/// Writes the limits into `doc` (graph-api's whole document, as JSON), as the module says.
pub fn declare(doc: &mut Value, settings: &Settings) {
    // Every unsigned integer first, so the rules below may narrow one.
    unsigned_bounds(doc);
    for (pointer, keywords) in field_rules(settings) {
        let schema = doc.pointer_mut(pointer).unwrap_or_else(|| panic!("the OpenAPI document has no {pointer}"));
        merge(schema, keywords);
    }
    doc.pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
        .expect("the OpenAPI document has component schemas")
        .insert("CypherValue".into(), cypher_value());
    for (path, name, keywords) in parameter_rules() {
        let found = parameters(doc, |p, param| (p == path || path == "*") && param["name"] == name);
        assert!(!found.is_empty(), "no operation of {path} has a parameter {name}");
        for schema in found {
            merge(schema, keywords.clone());
        }
    }
}

/// The body and response fields, by JSON pointer.
fn field_rules(settings: &Settings) -> Vec<(&'static str, Value)> {
    let properties = json!({
        "description": format!("At most {MAX_PROPERTIES_BYTES} bytes as JSON.")
    });
    let line_end = json!({"description": "Not before `line_start`."});
    vec![
        ("/components/schemas/Node/properties/id", id()),
        ("/components/schemas/Node/properties/kind", label()),
        ("/components/schemas/Node/properties/name", text(0, MAX_NAME_LEN)),
        ("/components/schemas/Node/properties/file", text(0, MAX_FILE_LEN)),
        ("/components/schemas/Node/properties/line_end", line_end.clone()),
        ("/components/schemas/Node/properties/properties", properties.clone()),
        ("/components/schemas/NodePatch/properties/kind", label()),
        ("/components/schemas/NodePatch/properties/name", text(0, MAX_NAME_LEN)),
        ("/components/schemas/NodePatch/properties/file", text(0, MAX_FILE_LEN)),
        ("/components/schemas/NodePatch/properties/line_end", line_end),
        ("/components/schemas/NodePatch/properties/properties", properties.clone()),
        ("/components/schemas/Relationship/properties/id", id()),
        ("/components/schemas/Relationship/properties/type", label()),
        ("/components/schemas/Relationship/properties/source", id()),
        ("/components/schemas/Relationship/properties/target", id()),
        ("/components/schemas/Relationship/properties/properties", properties.clone()),
        ("/components/schemas/RelationshipInput/properties/id", id()),
        (
            "/components/schemas/RelationshipInput",
            json!({"description": format!(
                "Without an `id`, the one given (`<source>|<type>|<target>`) must be at most {MAX_ID_LEN} bytes too."
            )}),
        ),
        ("/components/schemas/RelationshipInput/properties/type", label()),
        ("/components/schemas/RelationshipInput/properties/source", id()),
        ("/components/schemas/RelationshipInput/properties/target", id()),
        ("/components/schemas/RelationshipInput/properties/properties", properties.clone()),
        ("/components/schemas/RelationshipPatch/properties/type", label()),
        ("/components/schemas/RelationshipPatch/properties/properties", properties),
        (
            "/components/schemas/BatchRequest/properties/operations",
            json!({"maxItems": settings.api.max_batch_operations}),
        ),
        ("/components/schemas/ReanalyzeRequest/properties/path", absolute_path()),
        ("/components/schemas/WatchRequest/properties/path", absolute_path()),
        ("/components/schemas/CypherRequest/properties/statement", statement(settings.falkordb.max_statement_bytes)),
        ("/components/schemas/CypherRequest/properties/min_id", json!({"pattern": format!("^{}$", stream_id())})),
        (
            "/components/schemas/CypherRequest/properties/params",
            json!({
                "propertyNames": {"pattern": IDENTIFIER, "maxLength": MAX_PARAM_NAME},
                "additionalProperties": {"$ref": "#/components/schemas/CypherValue"},
            }),
        ),
    ]
}

/// The parameters: (path, or `*` for every path; name; keywords).
fn parameter_rules() -> Vec<(&'static str, &'static str, Value)> {
    let symbol = text(1, MAX_ID_LEN);
    vec![
        ("*", "project", project()),
        ("/api/graph/nodes/{id}", "id", id()),
        ("/api/graph/nodes/{id}/neighbors", "id", id()),
        ("/api/graph/relationships/{id}", "id", id()),
        ("/api/graph/admin/jobs/{id}", "id", job_id()),
        ("/api/graph/admin/jobs/{id}/cancel", "id", job_id()),
        ("/api/graph/nodes/search", "q", text(1, MAX_SEARCH_LEN)),
        ("/api/graph/nodes/{id}/neighbors", "depth", range(NEIGHBOR_DEPTH)),
        ("/api/graph/subgraph", "cursor", json!({"pattern": format!("^{}$", page_cursor())})),
        ("/api/graph/snapshot", "cursor", json!({"pattern": format!("^{}\\.{}$", stream_id(), page_cursor())})),
        ("/api/graph/callers", "symbol", symbol.clone()),
        ("/api/graph/callers", "depth", range(CALL_DEPTH)),
        ("/api/graph/callers", "min_confidence", confidence()),
        ("/api/graph/callees", "symbol", symbol.clone()),
        ("/api/graph/callees", "depth", range(CALL_DEPTH)),
        ("/api/graph/callees", "min_confidence", confidence()),
        ("/api/graph/impact", "symbol", symbol.clone()),
        ("/api/graph/impact", "depth", range(IMPACT_DEPTH)),
        ("/api/graph/path", "from", symbol.clone()),
        ("/api/graph/path", "to", symbol.clone()),
        ("/api/graph/path", "max_depth", range(PATH_DEPTH)),
        ("/api/graph/path", "types", json!({"pattern": relationship_types()})),
        ("/api/graph/dependencies", "target", symbol.clone()),
        ("/api/graph/context", "symbol", symbol),
    ]
}

/// The schemas of the parameters `matches` picks, in every operation.
fn parameters(doc: &mut Value, matches: impl Fn(&str, &Value) -> bool) -> Vec<&mut Value> {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return Vec::new() };
    let mut found = Vec::new();
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for operation in item.values_mut() {
            let Some(params) = operation.get_mut("parameters").and_then(Value::as_array_mut) else { continue };
            for param in params {
                if matches(path, param) {
                    if let Some(schema) = param.get_mut("schema") {
                        found.push(schema);
                    }
                }
            }
        }
    }
    found
}

/// utoipa declares `u32`, `u64` and `usize` as integers with `minimum: 0` and no maximum (and `format: int32`
/// for a `u32`, whose range is not int32's); serde refuses a value past the type's largest.
fn unsigned_bounds(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let unsigned = map.get("minimum") == Some(&json!(0))
                && match map.get("type") {
                    Some(Value::String(t)) => t == "integer",
                    Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
                    _ => false,
                };
            if unsigned && !map.contains_key("maximum") {
                let (format, max) = match map.get("format").and_then(Value::as_str) {
                    Some("int32") => (Some("uint32"), u64::from(u32::MAX)),
                    Some("int64") => (Some("uint64"), u64::MAX),
                    _ => (None, usize::MAX as u64),
                };
                if let Some(format) = format {
                    map.insert("format".into(), json!(format));
                }
                map.insert("maximum".into(), json!(max));
            }
            map.values_mut().for_each(unsigned_bounds);
        }
        Value::Array(items) => items.iter_mut().for_each(unsigned_bounds),
        _ => {}
    }
}

/// Sets `keywords` on `schema`; a description is added to the one there.
fn merge(schema: &mut Value, keywords: Value) {
    let Value::Object(keywords) = keywords else { unreachable!("keywords are an object") };
    let schema = schema.as_object_mut().expect("a schema object");
    for (key, value) in keywords {
        match (key.as_str(), schema.get("description").and_then(Value::as_str), value.as_str()) {
            ("description", Some(old), Some(new)) => {
                let both = format!("{old}\n\n{new}");
                schema.insert(key, json!(both));
            }
            _ => {
                schema.insert(key, value);
            }
        }
    }
}

/// A string of `min` to `max` bytes.
fn text(min: usize, max: usize) -> Value {
    let mut keywords = Map::new();
    if min > 0 {
        keywords.insert("minLength".into(), json!(min));
    }
    keywords.insert("maxLength".into(), json!(max));
    let description =
        if min > 0 { format!("{min} to {max} bytes of UTF-8.") } else { format!("At most {max} bytes of UTF-8.") };
    keywords.insert("description".into(), json!(description));
    Value::Object(keywords)
}

/// A node or relationship id (`graph::check_id`).
fn id() -> Value {
    json!({
        "minLength": 1,
        "maxLength": MAX_ID_LEN,
        "pattern": NO_CONTROL,
        "description": format!("1 to {MAX_ID_LEN} bytes of UTF-8, no control characters."),
    })
}

/// A kind or relationship type (`graph::check_label`).
fn label() -> Value {
    json!({"minLength": 1, "maxLength": MAX_LABEL_LEN, "pattern": LABEL})
}

fn project() -> Value {
    json!({"minLength": 1, "maxLength": MAX_PROJECT_LEN, "pattern": PROJECT})
}

fn job_id() -> Value {
    json!({"minLength": 1, "maxLength": MAX_JOB_ID_LEN, "pattern": JOB_ID})
}

/// An absolute path without control characters (`admin::reanalyze`, `watch::check_path`).
fn absolute_path() -> Value {
    json!({
        "minLength": 1,
        "maxLength": MAX_PATH_LEN,
        "pattern": r"^/[^\x00-\x1F\x7F-\x9F]*$",
        "description": format!("Absolute, at most {MAX_PATH_LEN} bytes of UTF-8, no control characters."),
    })
}

/// A Cypher statement (`cypher::prepare`): something besides white space, no NUL, at most `max` bytes.
fn statement(max: usize) -> Value {
    json!({
        "maxLength": max,
        "pattern": r"^[^\x00]*[^\s\x00][^\x00]*$",
        "description": format!("At most {max} bytes of UTF-8 (`falkordb.max_statement_bytes`), no NUL."),
    })
}

/// A value of a Cypher parameter (`cypher::literal`): any JSON but an integer past `i64` (which FalkorDB
/// cannot hold), a string with a NUL, or a map key that is not an identifier.
fn cypher_value() -> Value {
    let own = "#/components/schemas/CypherValue";
    json!({
        "description": "A Cypher parameter's value.",
        "anyOf": [
            {"type": ["null", "boolean"]},
            {"type": "number", "not": {"type": "integer", "minimum": (i64::MAX as u64) + 1, "maximum": u64::MAX}},
            {"type": "string", "pattern": r"^[^\x00]*$"},
            {"type": "array", "items": {"$ref": own}},
            {
                "type": "object",
                "propertyNames": {"pattern": IDENTIFIER, "maxLength": MAX_PARAM_NAME},
                "additionalProperties": {"$ref": own},
            },
        ],
    })
}

fn range(range: RangeInclusive<u32>) -> Value {
    let (min, max) = range.into_inner();
    json!({"minimum": min, "maximum": max})
}

fn confidence() -> Value {
    let (min, max) = CONFIDENCE.into_inner();
    json!({"minimum": min, "maximum": max})
}

/// `/path`'s `types`: a comma-separated list of known types, each trimmed, empty items ignored.
fn relationship_types() -> String {
    let names = DEPENDENCY_TYPES.iter().chain(STRUCTURE_TYPES.iter()).copied().collect::<Vec<_>>().join("|");
    let item = format!(r"[\t-\r ]*(?:(?:{names})[\t-\r ]*)?");
    format!("^{item}(?:,{item})*$")
}

/// `store::PageCursor`: `<n>` (nodes) or `r<n>` (relationships), `n` as `str::parse::<u64>` takes it: an optional
/// `+`, then digits (any number of leading zeros) whose value fits.
fn page_cursor() -> String {
    format!(r"r?\+?0*{}", u64_digits())
}

/// A stream ID as `StreamId::from_str` takes it: `<ms>-<seq>` or `<ms>`, each 1 to 20 digits that fit a `u64`.
fn stream_id() -> String {
    let part = u64_digits();
    format!("{part}(?:-{part})?")
}

/// 1 to 20 digits (leading zeros allowed) whose value fits a `u64`.
fn u64_digits() -> String {
    let max = u64::MAX.to_string();
    let width = max.len();
    // A number as wide as the largest is at most it when, at the first digit where they differ, its digit is
    // smaller.
    let mut same_width: Vec<String> = max
        .bytes()
        .enumerate()
        .filter(|&(_, digit)| digit > b'0')
        .map(|(at, digit)| {
            let smaller = if digit == b'1' { "0".to_owned() } else { format!("[0-{}]", char::from(digit - 1)) };
            let rest = match width - at - 1 {
                0 => String::new(),
                1 => "[0-9]".to_owned(),
                n => format!("[0-9]{{{n}}}"),
            };
            format!("{}{smaller}{rest}", &max[..at])
        })
        .collect();
    same_width.push(max.clone());
    format!("(?:[0-9]{{1,{}}}|{})", width - 1, same_width.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64_digits_lists_the_prefixes_of_the_largest() {
        let re = u64_digits();
        assert!(re.starts_with("(?:[0-9]{1,19}|0[0-9]{19}|1[0-7][0-9]{18}|18[0-3][0-9]{17}|"), "{re}");
        assert!(re.ends_with("|1844674407370955160[0-9]|1844674407370955161[0-4]|18446744073709551615)"), "{re}");
    }

    #[test]
    fn unsigned_integers_get_their_types_largest_value() {
        let mut doc = json!({
            "u32": {"type": ["integer", "null"], "format": "int32", "minimum": 0},
            "u64": {"type": "integer", "format": "int64", "minimum": 0},
            "usize": {"type": "integer", "minimum": 0},
            "i32": {"type": "integer", "format": "int32"},
            "narrowed": {"type": "integer", "minimum": 0, "maximum": 5},
        });
        unsigned_bounds(&mut doc);
        assert_eq!(doc["u32"]["maximum"], json!(u32::MAX));
        assert_eq!(doc["u32"]["format"], "uint32");
        assert_eq!(doc["u64"]["maximum"], json!(u64::MAX));
        assert_eq!(doc["usize"]["maximum"], json!(usize::MAX as u64));
        assert_eq!(doc["i32"].get("maximum"), None);
        assert_eq!(doc["narrowed"]["maximum"], 5);
    }
}
