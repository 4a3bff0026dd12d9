//! `batch_operations`: the body of `POST /api/graph/batch` as graph-api reads it (`routes::batch::BatchRequest`),
//! the validation of each operation's entity (`Node::validate`, `RelationshipInput::into_relationship`, as the
//! route's `to_mutation` calls them), and how a batch is cut into atomic Function calls (`functions::calls_by`).
//!
//! Input: a JSON body (starting with `{`), or bytes that build one whose fields sit on either side of each limit.
//! Properties:
//! - any body is read or refused, never a panic; a node or relationship is accepted exactly when the reference
//!   rules below accept it (ids 1..=512 bytes without control characters, labels `[A-Za-z_][A-Za-z0-9_]{0,63}`,
//!   names ≤ 1024 and files ≤ 4096 bytes, `line_end` not before `line_start`, properties ≤ 64 KiB as JSON); an
//!   accepted entity's canonical JSON reads back as the same entity; a relationship without an id gets
//!   `source|type|target`;
//! - the calls a list of operations is cut into hold every operation once, in order; each call has at most
//!   `max_ops` (clamped to 1..=1000) operations and, unless it is a single operation, at most 256 KiB of changes;
//!   a run of one group (e.g. one file's operations) that fits in one call is never split. The sizes of the second
//!   half come from the input's bytes (operations of up to ~300 KiB each), so the byte bound is crossed often.

use codegraph_shared::{
    functions::{calls_by, change_size, Expect, Mutation, MAX_CHANGE_SET_BYTES, MAX_OPS_PER_CALL},
    graph::{Node, Relationship},
};
use graph_api::routes::batch::{BatchOperation, BatchRequest};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use serde_json::{json, Value};

pub fn check(data: &[u8]) {
    if data.first() == Some(&b'{') {
        check_request(data);
    } else if let Ok(body) = arbitrary_batch(&mut Unstructured::new(data)) {
        // Most mutations of a JSON text break it: half the inputs build a batch of entities whose fields sit on
        // either side of each limit instead.
        check_request(body.to_string().as_bytes());
    }
    check_calls(data);
}

/// A text of one of the lengths (in characters, one more with the leading `f`), of one kind of character.
fn text(u: &mut Unstructured<'_>, lens: &[usize]) -> Result<String> {
    let len = *u.choose(lens)?;
    let fill = *u.choose(&["a", "é", "_", "\u{7}", "9", " "])?;
    Ok("f".repeat(usize::from(u.arbitrary::<bool>()?)) + &fill.repeat(len))
}

/// A batch whose ids, labels, names, files, lines and properties are at, below or above their limits.
fn arbitrary_batch(u: &mut Unstructured<'_>) -> Result<Value> {
    const IDS: [usize; 6] = [0, 1, 2, 511, 512, 513];
    const LABELS: [usize; 5] = [0, 1, 63, 64, 65];
    let mut ops = Vec::new();
    for _ in 0..u.int_in_range(1..=6)? {
        let op = match u.int_in_range(0..=3)? {
            0 | 1 => {
                let mut node =
                    json!({"id": text(u, &IDS)?, "kind": text(u, &LABELS)?, "name": text(u, &[0, 1024, 1025])?});
                if u.arbitrary()? {
                    node["file"] = json!(text(u, &[0, 4096, 4097])?);
                }
                for line in ["line_start", "line_end"] {
                    if u.arbitrary()? {
                        node[line] = json!(u.int_in_range(0..=3u32)?);
                    }
                }
                if u.arbitrary()? {
                    let big = *u.choose(&[10, 65_500, 65_521, 65_530])?;
                    node["properties"] = json!({"k": "v".repeat(big)});
                }
                json!({"op": "upsert_node", "node": node})
            }
            2 => {
                let mut rel = json!({"type": text(u, &LABELS)?, "source": text(u, &IDS)?, "target": text(u, &IDS)?});
                if u.arbitrary()? {
                    rel["id"] = json!(text(u, &IDS)?);
                }
                json!({"op": "upsert_relationship", "relationship": rel})
            }
            _ => json!({"op": *u.choose(&["delete_node", "delete_relationship"])?, "id": text(u, &IDS)?}),
        };
        ops.push(op);
    }
    Ok(json!({"operations": ops}))
}

fn check_request(data: &[u8]) {
    let Ok(request) = serde_json::from_slice::<BatchRequest>(data) else { return };
    let mut mutations = Vec::new();
    for op in request.operations {
        // What the route's `to_mutation` does with each operation.
        match op {
            BatchOperation::UpsertNode { node } => {
                let verdict = node.validate();
                assert_eq!(verdict.is_ok(), node_is_valid(&node), "{node:?}: {verdict:?}");
                if verdict.is_ok() {
                    let back: Node = serde_json::from_str(&node.canonical_json()).expect("canonical JSON reads");
                    assert_eq!(back, Node { version: None, ..node.clone() });
                    mutations.push(Mutation::UpsertNode(node, Expect::Any));
                }
            }
            BatchOperation::UpsertRelationship { relationship } => {
                let given = relationship.id.clone();
                let (rel_type, source, target) =
                    (relationship.rel_type.clone(), relationship.source.clone(), relationship.target.clone());
                let props = relationship.properties.clone();
                let verdict = relationship.into_relationship();
                let id = given.unwrap_or_else(|| format!("{source}|{rel_type}|{target}"));
                let valid = id_is_valid(&id)
                    && label_is_valid(&rel_type)
                    && id_is_valid(&source)
                    && id_is_valid(&target)
                    && properties_fit(&props);
                assert_eq!(verdict.is_ok(), valid, "{id:?} {rel_type:?} {source:?} {target:?}: {:?}", verdict.err());
                if let Ok(r) = verdict {
                    assert_eq!((&r.id, &r.rel_type, &r.source, &r.target), (&id, &rel_type, &source, &target));
                    let back: Relationship = serde_json::from_str(&r.canonical_json()).expect("canonical JSON reads");
                    assert_eq!(back, r);
                    mutations.push(Mutation::UpsertRelationship(r, Expect::Any));
                }
            }
            BatchOperation::DeleteNode { id } => mutations.push(Mutation::DeleteNode(id, Expect::Any)),
            BatchOperation::DeleteRelationship { id } => mutations.push(Mutation::DeleteRelationship(id, Expect::Any)),
        }
    }
    let max_ops = 1 + data.len() % 5;
    check_cut(&mutations, max_ops, |m| match m {
        Mutation::UpsertNode(n, _) => n.file.clone(),
        _ => None,
    });
}

fn id_is_valid(id: &str) -> bool {
    !id.is_empty() && id.len() <= 512 && !id.chars().any(char::is_control)
}

fn label_is_valid(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

fn properties_fit(props: &std::collections::BTreeMap<String, serde_json::Value>) -> bool {
    props.is_empty() || serde_json::to_string(props).is_ok_and(|s| s.len() <= 64 * 1024)
}

fn node_is_valid(n: &Node) -> bool {
    id_is_valid(&n.id)
        && label_is_valid(&n.kind)
        && n.name.len() <= 1024
        && n.file.as_ref().is_none_or(|f| f.len() <= 4096)
        && !matches!((n.line_start, n.line_end), (Some(a), Some(b)) if b < a)
        && properties_fit(&n.properties)
}

/// Operations of sizes chosen by the input: each byte is one delete whose id is `(byte % 64) * 2400` bytes long
/// (a change of up to ~300 KiB), in group `byte / 64` (group 0: none). The first byte picks `max_ops`.
fn check_calls(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else { return };
    let ops: Vec<Mutation> = rest
        .iter()
        .take(64)
        .enumerate()
        .map(|(i, &b)| {
            let id = format!("{}{}", b / 64, "x".repeat((b % 64) as usize * 2400 + i % 3));
            Mutation::DeleteNode(id, Expect::Any)
        })
        .collect();
    let max_ops = match first % 4 {
        0 => 0,
        1 => usize::MAX,
        _ => 1 + first as usize / 4,
    };
    check_cut(&ops, max_ops, |m| match m {
        Mutation::DeleteNode(id, _) if !id.starts_with('0') => Some(id.as_bytes()[0]),
        _ => None,
    });
}

fn check_cut<G: PartialEq>(ops: &[Mutation], max_ops: usize, group: impl Fn(&Mutation) -> Option<G> + Copy) {
    let calls = calls_by(ops, max_ops, group);
    let bound = max_ops.clamp(1, MAX_OPS_PER_CALL);
    // Every operation once, in order: the calls are consecutive slices covering `ops`.
    let mut at = 0;
    for call in &calls {
        assert!(!call.is_empty(), "an empty call");
        assert!(std::ptr::eq(call.as_ptr(), ops[at..].as_ptr()), "calls follow each other");
        at += call.len();
        assert!(call.len() <= bound, "{} operations in a call of at most {bound}", call.len());
        let bytes: usize = call.iter().map(change_size).sum();
        assert!(call.len() == 1 || bytes <= MAX_CHANGE_SET_BYTES, "{bytes} bytes in {} operations", call.len());
    }
    assert_eq!(at, ops.len(), "every operation is in a call");
    // Which call each operation went to.
    let call_of: Vec<usize> =
        calls.iter().enumerate().flat_map(|(c, call)| std::iter::repeat_n(c, call.len())).collect();
    let mut start = 0;
    while start < ops.len() {
        let g = group(&ops[start]);
        let mut end = start + 1;
        while end < ops.len() && g.is_some() && group(&ops[end]) == g {
            end += 1;
        }
        let bytes: usize = ops[start..end].iter().map(change_size).sum();
        if g.is_some() && end - start <= bound && bytes <= MAX_CHANGE_SET_BYTES {
            assert_eq!(call_of[start], call_of[end - 1], "the run {start}..{end} fits one call but was split");
        }
        start = end;
    }
}
