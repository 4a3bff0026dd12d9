//! The graph entities (nodes and relationships) and the limits every writer checks before a mutation.
//!
//! Entities are stored and sent as canonical JSON: fields in declaration order, properties sorted by key. The
//! Function library compares stored and incoming JSON byte for byte, so an upsert that changes nothing is
//! recognised without decoding and produces no event.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Longest node or relationship id, in bytes.
pub const MAX_ID_LEN: usize = 512;
/// Longest node name, in bytes.
pub const MAX_NAME_LEN: usize = 1024;
/// Longest file path, in bytes.
pub const MAX_FILE_LEN: usize = 4096;
/// Longest kind or relationship type, in bytes.
pub const MAX_LABEL_LEN: usize = 64;
/// Largest properties object, serialized, in bytes.
pub const MAX_PROPERTIES_BYTES: usize = 64 * 1024;

/// A node of the code graph: a directory, file, module, class, function, method…
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub id: String,
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_start: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_end: Option<u32>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub properties: BTreeMap<String, serde_json::Value>,
    /// Set on reads; ignored on writes (the Function library owns versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// A directed relationship between two nodes: contains, defines, imports, calls, inherits, implements…
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Relationship {
    pub id: String,
    #[serde(rename = "type")]
    pub rel_type: String,
    pub source: String,
    pub target: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub properties: BTreeMap<String, serde_json::Value>,
    /// Set on reads; ignored on writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// Why an entity may not be written.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct InvalidEntity {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidEntity {
    InvalidEntity { field, reason: reason.into() }
}

fn check_id(field: &'static str, id: &str) -> Result<(), InvalidEntity> {
    if id.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(invalid(field, format!("longer than {MAX_ID_LEN} bytes")));
    }
    if id.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// Kinds and relationship types become labels in the graph databases, so they are identifiers:
/// `[A-Za-z_][A-Za-z0-9_]{0,63}`.
pub fn check_label(field: &'static str, label: &str) -> Result<(), InvalidEntity> {
    let mut bytes = label.bytes();
    let first_ok = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_');
    if !first_ok || label.len() > MAX_LABEL_LEN || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(invalid(
            field,
            format!("{label:?} is not an identifier of 1 to {MAX_LABEL_LEN} characters [A-Za-z0-9_]"),
        ));
    }
    Ok(())
}

fn check_properties(props: &BTreeMap<String, serde_json::Value>) -> Result<(), InvalidEntity> {
    // Serialized length is what lands in Redis and in every event; counted without building the string.
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    if props.is_empty() {
        return Ok(());
    }
    let mut counter = Counter(0);
    let len = serde_json::to_writer(&mut counter, props).map(|()| counter.0).unwrap_or(usize::MAX);
    if len > MAX_PROPERTIES_BYTES {
        return Err(invalid("properties", format!("larger than {MAX_PROPERTIES_BYTES} bytes")));
    }
    Ok(())
}

impl Node {
    pub fn validate(&self) -> Result<(), InvalidEntity> {
        check_id("id", &self.id)?;
        check_label("kind", &self.kind)?;
        if self.name.len() > MAX_NAME_LEN {
            return Err(invalid("name", format!("longer than {MAX_NAME_LEN} bytes")));
        }
        if self.file.as_ref().is_some_and(|f| f.len() > MAX_FILE_LEN) {
            return Err(invalid("file", format!("longer than {MAX_FILE_LEN} bytes")));
        }
        if let (Some(a), Some(b)) = (self.line_start, self.line_end) {
            if b < a {
                return Err(invalid("line_end", "is before line_start"));
            }
        }
        check_properties(&self.properties)
    }

    /// The canonical JSON that is stored and compared (never with a version).
    pub fn canonical_json(&self) -> String {
        #[derive(Serialize)]
        struct Stored<'a> {
            id: &'a str,
            kind: &'a str,
            name: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            file: &'a Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            line_start: Option<u32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            line_end: Option<u32>,
            properties: &'a BTreeMap<String, serde_json::Value>,
        }
        let stored = Stored {
            id: &self.id,
            kind: &self.kind,
            name: &self.name,
            file: &self.file,
            line_start: self.line_start,
            line_end: self.line_end,
            properties: &self.properties,
        };
        serde_json::to_string(&stored).expect("a node always serializes")
    }
}

impl Relationship {
    /// The id given to a relationship created without one: unique per (source, type, target).
    pub fn derived_id(source: &str, rel_type: &str, target: &str) -> String {
        format!("{source}|{rel_type}|{target}")
    }

    pub fn validate(&self) -> Result<(), InvalidEntity> {
        check_id("id", &self.id)?;
        check_label("type", &self.rel_type)?;
        check_id("source", &self.source)?;
        check_id("target", &self.target)?;
        check_properties(&self.properties)
    }

    pub fn canonical_json(&self) -> String {
        #[derive(Serialize)]
        struct Stored<'a> {
            id: &'a str,
            #[serde(rename = "type")]
            rel_type: &'a str,
            source: &'a str,
            target: &'a str,
            properties: &'a BTreeMap<String, serde_json::Value>,
        }
        let stored = Stored {
            id: &self.id,
            rel_type: &self.rel_type,
            source: &self.source,
            target: &self.target,
            properties: &self.properties,
        };
        serde_json::to_string(&stored).expect("a relationship always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        serde_json::from_value(serde_json::json!({
            "id": "py:a.py:f", "kind": "function", "name": "f", "file": "a.py",
            "properties": {"z": 1, "a": [1, 2]}
        }))
        .unwrap()
    }

    #[test]
    fn canonical_json_is_stable_and_versionless() {
        let mut n = node();
        n.version = Some(9);
        let json = n.canonical_json();
        assert_eq!(
            json,
            r#"{"id":"py:a.py:f","kind":"function","name":"f","file":"a.py","properties":{"a":[1,2],"z":1}}"#
        );
    }

    #[test]
    fn validation_names_the_field() {
        let mut n = node();
        n.kind = "not a label".into();
        assert_eq!(n.validate().unwrap_err().field, "kind");
        let mut n = node();
        n.id = String::new();
        assert_eq!(n.validate().unwrap_err().field, "id");
        let mut n = node();
        n.line_start = Some(5);
        n.line_end = Some(2);
        assert_eq!(n.validate().unwrap_err().field, "line_end");
        let mut n = node();
        n.properties.insert("big".into(), serde_json::Value::String("x".repeat(MAX_PROPERTIES_BYTES)));
        assert_eq!(n.validate().unwrap_err().field, "properties");
        assert!(node().validate().is_ok());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let r: Result<Node, _> = serde_json::from_str(r#"{"id":"a","kind":"file","name":"a","colour":"red"}"#);
        assert!(r.is_err());
    }
}
