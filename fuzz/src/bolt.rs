//! `bolt_packstream`: what the Memgraph sink reads from a Bolt server (stream-consumer's `sinks::memgraph::bolt`):
//! PackStream values, responses, and the chunked framing that carries them.
//!
//! Properties:
//! - any bytes decode to a value or an error, never a panic or an allocation beyond the input's size;
//! - a decoded value encodes to at most as many bytes (the encoder takes the smallest forms), and that encoding
//!   decodes to the same value (decode → encode → decode, compared by encoding so NaN payloads count too);
//! - a value built from the input encodes and decodes back to itself, also inside a RUN request's frame cut into
//!   chunks of sizes chosen by the input and fed to the reader in pieces of sizes chosen by the input;
//! - the incremental `Dechunker` fed the input in pieces finds the same messages as a plain reading of the whole.

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use stream_consumer::sinks::memgraph::bolt::{
    message::{Dechunker, Request, Response},
    packstream::{Structure, Value},
};

pub fn check(data: &[u8]) {
    check_decode(data);
    let _ = Response::decode(data);
    check_dechunker(data);
    let mut u = Unstructured::new(data);
    if let Ok(value) = arbitrary_value(&mut u, 0) {
        check_round_trip(&value);
        let _ = check_framed(&mut u, value);
    }
}

fn check_decode(data: &[u8]) {
    let Ok(value) = Value::decode(data) else { return };
    let bytes = value.to_bytes();
    assert!(bytes.len() <= data.len(), "{value:?}: {} bytes re-encoded from {}", bytes.len(), data.len());
    let again = Value::decode(&bytes).unwrap_or_else(|e| panic!("{value:?} encodes to bytes it cannot read: {e}"));
    assert_eq!(again.to_bytes(), bytes, "{value:?} reads back");
    let _ = value.to_json();
    let _ = value.to_string();
}

fn check_round_trip(value: &Value) {
    let bytes = value.to_bytes();
    let back = Value::decode(&bytes).unwrap_or_else(|e| panic!("{value:?} does not read back: {e}"));
    assert_eq!(back.to_bytes(), bytes, "{value:?} reads back");
    if !has_nan(value) {
        assert_eq!(&back, value);
    }
}

fn has_nan(v: &Value) -> bool {
    match v {
        Value::Float(f) => f.is_nan(),
        Value::List(items) => items.iter().any(has_nan),
        Value::Map(entries) => entries.iter().any(|(_, v)| has_nan(v)),
        Value::Struct(s) => s.fields.iter().any(has_nan),
        _ => false,
    }
}

/// A value of every kind and of sizes on both sides of each size form (15/16 items, 255/256 bytes, …).
fn arbitrary_value(u: &mut Unstructured<'_>, depth: usize) -> Result<Value> {
    let kind = u.int_in_range(0..=if depth < 4 { 9 } else { 6 })?;
    Ok(match kind {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::Int(u.arbitrary()?),
        3 => Value::Float(f64::from_bits(u.arbitrary()?)),
        4 => Value::String(arbitrary_string(u)?),
        5 => {
            let len = size(u)?;
            Value::Bytes(u.bytes(len.min(u.len()))?.to_vec())
        }
        6 => Value::Int(*u.choose(&[-17, -16, 127, 128, -129, 32_767, 32_768, i32::MIN as i64, i64::MIN, i64::MAX])?),
        7 => Value::List((0..size(u)?.min(40)).map(|_| arbitrary_value(u, depth + 1)).collect::<Result<_>>()?),
        8 => Value::Map(
            (0..size(u)?.min(40))
                .map(|_| Ok((arbitrary_string(u)?, arbitrary_value(u, depth + 1)?)))
                .collect::<Result<_>>()?,
        ),
        _ => Value::Struct(Structure {
            tag: u.arbitrary()?,
            fields: (0..u.int_in_range(0..=15)?).map(|_| arbitrary_value(u, depth + 1)).collect::<Result<_>>()?,
        }),
    })
}

/// A length: mostly small, often at a form boundary, now and then past 16 bits (rare, as it is slow).
fn size(u: &mut Unstructured<'_>) -> Result<usize> {
    Ok(match u.int_in_range(0..=15)? {
        0..=9 => u.int_in_range(0..=17)?,
        10..=12 => *u.choose(&[15, 16, 255, 256])?,
        13 => *u.choose(&[65_535, 65_536])?,
        _ => u.int_in_range(0..=300)?,
    })
}

fn arbitrary_string(u: &mut Unstructured<'_>) -> Result<String> {
    let len = size(u)?;
    let fill = *u.choose(&["x", "é", "\u{10FFFF}", "\0"])?;
    let mut s = fill.repeat(len / fill.len());
    s.push_str(u.arbitrary::<&str>()?);
    Ok(s)
}

/// Frames a RUN request whose parameters are `value` in chunks of sizes the input picks, feeds the wire to a
/// `Dechunker` in pieces the input picks, with keep-alives around it, and reads the request back.
fn check_framed(u: &mut Unstructured<'_>, value: Value) -> Result<()> {
    // Now and then a query longer than one chunk.
    let long = if u.ratio(1, 16)? { 65_000 } else { 0 };
    let query = "RETURN 1 // ".to_owned() + &"q".repeat(long + u.int_in_range(0..=1_000)?);
    let request = Request::Run { query: query.clone(), params: value.clone(), extra: Value::Map(Vec::new()) };
    // The standard framing, then the same body re-cut into smaller chunks.
    let mut standard = Vec::new();
    request.frame(&mut standard);
    let body =
        Value::Struct(Structure { tag: 0x10, fields: vec![Value::String(query), value, Value::Map(Vec::new())] })
            .to_bytes();
    let chunk = if u.arbitrary()? { u.int_in_range(1..=64usize)? } else { u.int_in_range(1..=65_535usize)? };
    let mut wire = vec![0, 0];
    wire.extend_from_slice(&standard);
    wire.extend_from_slice(&[0, 0, 0, 0]);
    for c in body.chunks(chunk) {
        wire.extend_from_slice(&(c.len() as u16).to_be_bytes());
        wire.extend_from_slice(c);
    }
    wire.extend_from_slice(&[0, 0]);
    let mut dechunker = Dechunker::default();
    let mut messages = Vec::new();
    let mut rest = wire.as_slice();
    while !rest.is_empty() {
        let n = u.int_in_range(1..=rest.len())?.max(rest.len() / 64);
        dechunker.push(&rest[..n]);
        rest = &rest[n..];
        while let Some(m) = dechunker.next_message() {
            messages.push(m);
        }
    }
    assert_eq!(messages.len(), 2, "two messages");
    assert!(messages.iter().all(|m| *m == body), "each message is the request's body");
    assert_eq!(dechunker.held(), 0);
    Ok(())
}

/// The incremental reader finds the messages a plain reading of the whole input finds.
fn check_dechunker(data: &[u8]) {
    let (expected, held) = dechunk_all(data);
    let mut dechunker = Dechunker::default();
    let mut found = Vec::new();
    // Piece sizes from the input itself, so many splits are tried.
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = (data[i % data.len()] as usize % 7 + 1).min(rest.len());
        i += 1;
        dechunker.push(&rest[..n]);
        rest = &rest[n..];
        while let Some(m) = dechunker.next_message() {
            found.push(m);
        }
    }
    assert_eq!(found, expected);
    assert_eq!(dechunker.held(), held, "bytes held for what is not complete");
    for m in &found {
        let _ = Response::decode(m);
    }
}

/// Chunks `[len u16][payload]`; a zero length ends a message, or is a keep-alive between messages. Returns the
/// messages and the bytes left over (incomplete chunks and the payload of an unfinished message).
fn dechunk_all(data: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let (mut messages, mut current, mut pos) = (Vec::new(), Vec::new(), 0);
    while pos + 2 <= data.len() {
        let len = u16::from_be_bytes([data[pos], data[pos + 1]]) as usize;
        if len == 0 {
            pos += 2;
            if !current.is_empty() {
                messages.push(std::mem::take(&mut current));
            }
            continue;
        }
        if pos + 2 + len > data.len() {
            break;
        }
        current.extend_from_slice(&data[pos + 2..pos + 2 + len]);
        pos += 2 + len;
    }
    (messages, data.len() - pos + current.len())
}
