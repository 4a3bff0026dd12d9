//! PackStream, Bolt's value encoding: null, booleans, integers (in the smallest of tiny/8/16/32/64-bit forms),
//! 64-bit floats, UTF-8 strings, bytes, lists, maps (string keys, order kept) and tagged structures (nodes,
//! relationships, messages). Everything big-endian.

use std::fmt;

/// A PackStream value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    /// Keys in the order they were written: some servers read certain maps in a fixed order.
    Map(Vec<(String, Value)>),
    Struct(Structure),
}

/// A tagged structure (a message, or a graph value such as a node `0x4E` or relationship `0x52`).
#[derive(Clone, Debug, PartialEq)]
pub struct Structure {
    pub tag: u8,
    pub fields: Vec<Value>,
}

/// Tags of the graph structures a query can return.
pub const NODE: u8 = 0x4E;
pub const RELATIONSHIP: u8 = 0x52;

/// Deepest nesting decoded, so a hostile or broken peer cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// Why bytes are not a PackStream value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packstream: truncated value")]
    Truncated,
    #[error("packstream: unknown marker 0x{0:02X}")]
    UnknownMarker(u8),
    #[error("packstream: string is not UTF-8")]
    NotUtf8,
    #[error("packstream: map key is not a string")]
    MapKey,
    #[error("packstream: nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("packstream: {0} bytes left after the value")]
    Trailing(usize),
}

impl Value {
    /// Appends the encoding of `self` to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.push(0xC0),
            Value::Bool(false) => out.push(0xC2),
            Value::Bool(true) => out.push(0xC3),
            Value::Int(i) => encode_int(*i, out),
            Value::Float(f) => {
                out.push(0xC1);
                out.extend_from_slice(&f.to_be_bytes());
            }
            Value::String(s) => {
                header(out, s.len(), 0x80, [0xD0, 0xD1, 0xD2]);
                out.extend_from_slice(s.as_bytes());
            }
            Value::Bytes(b) => {
                // Bytes have no tiny form.
                header(out, b.len(), 0, [0xCC, 0xCD, 0xCE]);
                out.extend_from_slice(b);
            }
            Value::List(items) => {
                header(out, items.len(), 0x90, [0xD4, 0xD5, 0xD6]);
                for item in items {
                    item.encode(out);
                }
            }
            Value::Map(entries) => {
                header(out, entries.len(), 0xA0, [0xD8, 0xD9, 0xDA]);
                for (k, v) in entries {
                    Value::String(k.clone()).encode(out);
                    v.encode(out);
                }
            }
            Value::Struct(s) => {
                debug_assert!(s.fields.len() < 16, "a structure has at most 15 fields");
                out.push(0xB0 | (s.fields.len() as u8 & 0x0F));
                out.push(s.tag);
                for f in &s.fields {
                    f.encode(out);
                }
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes exactly one value from `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
        let mut reader = Reader { bytes, pos: 0 };
        let value = reader.value(0)?;
        match bytes.len() - reader.pos {
            0 => Ok(value),
            n => Err(DecodeError::Trailing(n)),
        }
    }

    /// A map value built from pairs.
    pub fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The JSON a reader expects: nodes as `{"labels", "properties"}`, relationships as `{"type", "properties"}`,
    /// bytes as a list of numbers, non-finite floats as null.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map(J::Number).unwrap_or(J::Null),
            Value::String(s) => J::String(s.clone()),
            Value::Bytes(b) => J::Array(b.iter().map(|x| J::from(*x)).collect()),
            Value::List(items) => J::Array(items.iter().map(Value::to_json).collect()),
            Value::Map(entries) => J::Object(entries.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
            Value::Struct(s) => match (s.tag, s.fields.as_slice()) {
                (NODE, [_, labels, props, ..]) => {
                    serde_json::json!({"labels": labels.to_json(), "properties": props.to_json()})
                }
                (RELATIONSHIP, [_, _, _, rel_type, props, ..]) => {
                    serde_json::json!({"type": rel_type.to_json(), "properties": props.to_json()})
                }
                _ => J::Array(s.fields.iter().map(Value::to_json).collect()),
            },
        }
    }
}

impl From<&serde_json::Value> for Value {
    fn from(v: &serde_json::Value) -> Self {
        use serde_json::Value as J;
        match v {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::String(s.clone()),
            J::Array(items) => Value::List(items.iter().map(Value::from).collect()),
            J::Object(map) => Value::Map(map.iter().map(|(k, v)| (k.clone(), Value::from(v))).collect()),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

fn encode_int(i: i64, out: &mut Vec<u8>) {
    if (-16..=127).contains(&i) {
        out.push(i as i8 as u8);
    } else if let Ok(v) = i8::try_from(i) {
        out.extend_from_slice(&[0xC8, v as u8]);
    } else if let Ok(v) = i16::try_from(i) {
        out.push(0xC9);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = i32::try_from(i) {
        out.push(0xCA);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(0xCB);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

/// A size header: tiny (`tiny | len` when `tiny != 0` and `len < 16`), else 8, 16 or 32-bit.
fn header(out: &mut Vec<u8>, len: usize, tiny: u8, markers: [u8; 3]) {
    if tiny != 0 && len < 16 {
        out.push(tiny | len as u8);
    } else if len <= u8::MAX as usize {
        out.extend_from_slice(&[markers[0], len as u8]);
    } else if len <= u16::MAX as usize {
        out.push(markers[1]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(markers[2]);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.bytes.len()).ok_or(DecodeError::Truncated)?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    /// The size after a sized marker: `width` 0, 1, 2 → 8, 16, 32 bits.
    fn size(&mut self, width: u8) -> Result<usize, DecodeError> {
        Ok(match width {
            0 => self.u8()? as usize,
            1 => u16::from_be_bytes(self.be()?) as usize,
            _ => u32::from_be_bytes(self.be()?) as usize,
        })
    }

    fn string(&mut self, len: usize) -> Result<String, DecodeError> {
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| DecodeError::NotUtf8)
    }

    fn list(&mut self, len: usize, depth: usize) -> Result<Value, DecodeError> {
        // Each item takes one byte at least: a length beyond what is left is a lie, not an allocation.
        let mut items = Vec::with_capacity(len.min(self.bytes.len() - self.pos));
        for _ in 0..len {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::List(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Value, DecodeError> {
        let mut entries = Vec::with_capacity(len.min(self.bytes.len() - self.pos));
        for _ in 0..len {
            let Value::String(key) = self.value(depth + 1)? else { return Err(DecodeError::MapKey) };
            entries.push((key, self.value(depth + 1)?));
        }
        Ok(Value::Map(entries))
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let marker = self.u8()?;
        Ok(match marker {
            0x00..=0x7F => Value::Int(marker as i64),
            0xF0..=0xFF => Value::Int(marker as i8 as i64),
            0x80..=0x8F => Value::String(self.string((marker & 0x0F) as usize)?),
            0x90..=0x9F => self.list((marker & 0x0F) as usize, depth)?,
            0xA0..=0xAF => self.map((marker & 0x0F) as usize, depth)?,
            0xB0..=0xBF => {
                let tag = self.u8()?;
                let mut fields = Vec::with_capacity((marker & 0x0F) as usize);
                for _ in 0..(marker & 0x0F) {
                    fields.push(self.value(depth + 1)?);
                }
                Value::Struct(Structure { tag, fields })
            }
            0xC0 => Value::Null,
            0xC1 => Value::Float(f64::from_be_bytes(self.be()?)),
            0xC2 => Value::Bool(false),
            0xC3 => Value::Bool(true),
            0xC8 => Value::Int(i8::from_be_bytes(self.be()?) as i64),
            0xC9 => Value::Int(i16::from_be_bytes(self.be()?) as i64),
            0xCA => Value::Int(i32::from_be_bytes(self.be()?) as i64),
            0xCB => Value::Int(i64::from_be_bytes(self.be()?)),
            0xCC..=0xCE => {
                let len = self.size(marker - 0xCC)?;
                Value::Bytes(self.take(len)?.to_vec())
            }
            0xD0..=0xD2 => {
                let len = self.size(marker - 0xD0)?;
                Value::String(self.string(len)?)
            }
            0xD4..=0xD6 => {
                let len = self.size(marker - 0xD4)?;
                self.list(len, depth)?
            }
            0xD8..=0xDA => {
                let len = self.size(marker - 0xD8)?;
                self.map(len, depth)?
            }
            other => return Err(DecodeError::UnknownMarker(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: Value) -> Vec<u8> {
        let bytes = v.to_bytes();
        assert_eq!(Value::decode(&bytes).unwrap(), v, "{bytes:02X?}");
        bytes
    }

    #[test]
    fn integers_take_the_smallest_form() {
        let cases: [(i64, &[u8]); 12] = [
            (0, &[0x00]),
            (127, &[0x7F]),
            (-16, &[0xF0]),
            (-17, &[0xC8, 0xEF]),
            (-128, &[0xC8, 0x80]),
            (128, &[0xC9, 0x00, 0x80]),
            (-129, &[0xC9, 0xFF, 0x7F]),
            (32_767, &[0xC9, 0x7F, 0xFF]),
            (32_768, &[0xCA, 0x00, 0x00, 0x80, 0x00]),
            (-2_147_483_648, &[0xCA, 0x80, 0x00, 0x00, 0x00]),
            (2_147_483_648, &[0xCB, 0, 0, 0, 0, 0x80, 0, 0, 0]),
            (i64::MIN, &[0xCB, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        ];
        for (i, bytes) in cases {
            assert_eq!(round_trip(Value::Int(i)), bytes, "{i}");
        }
        assert_eq!(round_trip(Value::Int(i64::MAX)).len(), 9);
    }

    #[test]
    fn scalars_round_trip_with_their_markers() {
        assert_eq!(round_trip(Value::Null), [0xC0]);
        assert_eq!(round_trip(Value::Bool(true)), [0xC3]);
        assert_eq!(round_trip(Value::Bool(false)), [0xC2]);
        assert_eq!(round_trip(Value::Float(1.1)), [0xC1, 0x3F, 0xF1, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9A]);
        round_trip(Value::Float(-0.0));
        round_trip(Value::Float(f64::MAX));
        assert_eq!(round_trip(Value::from("")), [0x80]);
        assert_eq!(round_trip(Value::from("A")), [0x81, 0x41]);
        assert_eq!(round_trip(Value::from("é")), [0x82, 0xC3, 0xA9]);
        assert_eq!(round_trip(Value::Bytes(vec![1, 2])), [0xCC, 2, 1, 2]);
        round_trip(Value::Bytes(vec![7; 300]));
    }

    #[test]
    fn sizes_switch_form_at_their_limits() {
        for (len, head) in [(15, vec![0x8F]), (16, vec![0xD0, 16]), (255, vec![0xD0, 255]), (256, vec![0xD1, 1, 0])] {
            let bytes = round_trip(Value::String("x".repeat(len)));
            assert_eq!(bytes[..head.len()], head[..], "string of {len}");
        }
        let long = round_trip(Value::String("y".repeat(70_000)));
        assert_eq!(long[..5], [0xD2, 0, 1, 0x11, 0x70]);
        for (len, head) in [(15, vec![0x9F]), (16, vec![0xD4, 16]), (300, vec![0xD5, 1, 44])] {
            let bytes = round_trip(Value::List(vec![Value::Null; len]));
            assert_eq!(bytes[..head.len()], head[..], "list of {len}");
        }
        let big = round_trip(Value::List(vec![Value::Int(1); 70_000]));
        assert_eq!(big[0], 0xD6);
        let map = |n: usize| Value::Map((0..n).map(|i| (format!("k{i}"), Value::Int(i as i64))).collect());
        assert_eq!(round_trip(map(15))[0], 0xAF);
        assert_eq!(round_trip(map(16))[..2], [0xD8, 16]);
        assert_eq!(round_trip(map(256))[..3], [0xD9, 1, 0]);
        assert_eq!(round_trip(map(70_000))[0], 0xDA);
    }

    #[test]
    fn nested_values_and_structures_round_trip() {
        let node = Value::Struct(Structure {
            tag: NODE,
            fields: vec![
                Value::Int(7),
                Value::List(vec![Value::from("Node"), Value::from("file")]),
                Value::map([("id", Value::from("a")), ("xs", Value::List(vec![Value::Float(1.5), Value::Int(-300)]))]),
                Value::from("4:x:7"),
            ],
        });
        let bytes = round_trip(Value::map([("n", node.clone()), ("m", Value::map([("k", Value::Null)]))]));
        assert_eq!(bytes[0], 0xA2);
        assert_eq!(
            node.to_json(),
            serde_json::json!({"labels": ["Node", "file"], "properties": {"id": "a", "xs": [1.5, -300]}})
        );
        let json = serde_json::json!({"a": [1, 2.5, "s", true, null, {"b": []}]});
        assert_eq!(Value::from(&json).to_json(), json);
    }

    #[test]
    fn broken_input_is_an_error_not_a_panic() {
        assert_eq!(Value::decode(&[0xD0, 5, b'a']), Err(DecodeError::Truncated));
        assert_eq!(Value::decode(&[0xC7]), Err(DecodeError::UnknownMarker(0xC7)));
        assert_eq!(Value::decode(&[0x82, 0xFF, 0xFE]), Err(DecodeError::NotUtf8));
        assert_eq!(Value::decode(&[0xA1, 0x01, 0x01]), Err(DecodeError::MapKey));
        assert_eq!(Value::decode(&[0x01, 0x02]), Err(DecodeError::Trailing(1)));
        assert_eq!(Value::decode(&[0xD6, 0xFF, 0xFF, 0xFF, 0xFF]), Err(DecodeError::Truncated), "no huge allocation");
        assert_eq!(Value::decode(&[0x91; 100]), Err(DecodeError::TooDeep));
    }
}
